"""sw.backends: results in item order whatever order jobs finish in, errors reach the caller,
and once_per_node builds once however many processes ask."""

import math
import multiprocessing
import time

import pytest

from ttsnn.sw.backends import LocalBackend, make_backend, once_per_node


def _slow_square(x):
    time.sleep(0.05 * (3 - x % 3))     # later items finish first
    return x * x


def _fails_on_3(x):
    if x == 3:
        raise ArithmeticError("job 3 failed")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_local_backend_returns_every_result_in_item_order(workers):
    items = list(range(7))
    with LocalBackend(workers) as b:
        assert b.map(_slow_square, items) == [x * x for x in items]
        got = dict(b.map_unordered(math.factorial, items))
    assert got == {i: math.factorial(i) for i in items}


def test_a_failing_job_raises_in_the_caller():
    with pytest.raises(ArithmeticError, match="job 3 failed"):
        LocalBackend(2).map(_fails_on_3, list(range(6)))


@pytest.mark.parametrize("kw, msg", [({"name": "mpi"}, "unknown backend"),
                                     ({"name": "local", "workers": 0}, "positive integer"),
                                     ({"name": "local", "address": "x:1"}, "for --backend ray")])
def test_bad_backend_arguments_are_clear_errors(kw, msg):
    name = kw.pop("name")
    with pytest.raises(ValueError, match=msg):
        make_backend(name, **kw)


def _build(args):
    root, log = args

    def make(d):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.2)               # the others arrive while this one builds
        (d / "artifact").write_text("ok")
    return (once_per_node("verilator-abc", make, root) / "artifact").read_text()


def test_once_per_node_builds_once_for_every_process(tmp_path):
    log = tmp_path / "log"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        got = pool.map(_build, [(tmp_path / "cache", log)] * 3)
    assert got == ["ok"] * 3
    assert log.read_text() == "built\n"
