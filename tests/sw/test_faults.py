"""Fault injection: every fault of docs/reliability.md gives the outcome the table promises.

Each test provokes one fault for real where the machine allows it (a kill with SIGKILL, a
crafted pickle, bytes overwritten in a checkpoint, an allocation the allocator refuses, a
small tmpfs when the tests run as root) and by an injected ``OSError`` otherwise, then checks
(1) the user gets one line saying what happened and what to do (exit status 2 from the CLI),
(2) nothing already written was lost, (3) no input file ran code.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import pickletools
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import ttsnn.sw.fileio
from ttsnn import sw
from ttsnn.sw.__main__ import main
from ttsnn.sw.checkpoint import load_checkpoint, payload_digest, save_checkpoint
from ttsnn.sw.cli_util import run_cli
from ttsnn.sw.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
QUIET = dict(progress=False, log=lambda s: None)


@pytest.fixture(autouse=True)
def _one_thread_afterwards():
    yield
    torch.set_num_threads(1)  # conftest's setting; some tests here train with 2 threads


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(arch="tiny", mode="ptt", ranks="uniform:2", timesteps=2, dataset="digits", size=8, epochs=1,
                batch_size=16, seed=1, out=str(tmp_path / "run"), threads=1, max_train_samples=32,
                max_test_samples=16, scheduler="constant")
    base.update(kw)
    return TrainConfig(**base).validate()


def _cli(capsys, *argv) -> tuple[int, list[str]]:
    """Run ``python -m sw ARGV`` in-process; the exit status and the lines of stderr."""
    capsys.readouterr()
    rc = run_cli(main, list(argv), prog="sw")
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _train_args(tmp_path, *extra, out=None):
    return ["train", "--arch", "tiny", "--mode", "ptt", "--ranks", "uniform:2", "-T", "2", "--size", "8",
            "--epochs", "1", "--batch-size", "16", "--max-train-samples", "32", "--max-test-samples", "16",
            "--threads", "1", "--seed", "1", "--scheduler", "constant", "--out", str(out or tmp_path / "run"), "--no-progress",
            *extra]


def _weights(path):
    return torch.load(path, weights_only=True)["model"]["state_dict"]


# ---- data loss -------------------------------------------------------------------------------

def test_train_into_an_existing_run_is_refused_without_resume_or_force(tmp_path, capsys):
    assert _cli(capsys, *_train_args(tmp_path))[0] == 0
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, err = _cli(capsys, *_train_args(tmp_path))
    assert rc == 2 and len(err) == 1 and "already holds a training run" in err[0] and "--force" in err[0]
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing touched
    rc, err = _cli(capsys, *_train_args(tmp_path, "--resume", "--force"))
    assert rc == 2 and len(err) == 1
    # asked for: --force replaces the run
    assert _cli(capsys, *_train_args(tmp_path, "--force", "--seed", "5"))[0] == 0
    assert json.loads((run / "config.json").read_text())["seed"] == 5
    assert load_checkpoint(run / "last.pt")["config"]["seed"] == 5


def test_init_from_the_checkpoint_the_run_would_overwrite_is_refused(tmp_path, capsys):
    assert _cli(capsys, *_train_args(tmp_path))[0] == 0
    ckpt = tmp_path / "run" / "last.pt"
    raw = ckpt.read_bytes()
    rc, err = _cli(capsys, *_train_args(tmp_path, "--init-from", str(ckpt), "--force"))
    assert rc == 2 and len(err) == 1 and "--init-from" in err[0]
    assert ckpt.read_bytes() == raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch PTT run and a dense checkpoint (read-only for the tests that use them)."""
    tmp = tmp_path_factory.mktemp("trained")
    train(_cfg(tmp), **QUIET)
    train(_cfg(tmp, mode="dense", out=str(tmp / "dense")), **QUIET)
    return tmp / "run" / "last.pt", tmp / "dense" / "last.pt"


def test_export_and_decompose_never_overwrite_their_input_or_an_existing_output(tmp_path, capsys, trained):
    tt, dense = trained
    tt_raw, dense_raw = tt.read_bytes(), dense.read_bytes()
    for argv in (["export", "--checkpoint", str(tt), "--out", str(tt), "--force"],
                 ["export", "--checkpoint", str(tt), "--out", str(tt.parent / "." / tt.name)],
                 ["decompose", "--checkpoint", str(dense), "--mode", "ptt", "--ranks", "2", "--out", str(dense),
                  "--force", "--no-eval"]):
        rc, err = _cli(capsys, *argv)
        assert rc == 2 and len(err) == 1 and "is the input file" in err[0], err
    assert tt.read_bytes() == tt_raw and dense.read_bytes() == dense_raw
    out = tmp_path / "m.pt"
    out.write_bytes(b"a report of someone's")
    rc, err = _cli(capsys, "export", "--checkpoint", str(tt), "--out", str(out), "--json")
    assert rc == 2 and "already exists" in err[0] and "--force" in err[0]
    assert out.read_bytes() == b"a report of someone's"
    assert _cli(capsys, "export", "--checkpoint", str(tt), "--out", str(out), "--json", "--force")[0] == 0
    assert load_checkpoint(out)["model"]["hparams"]["merged_from"] == "ptt"


def test_decompose_refuses_an_unwritable_output_before_doing_any_work(tmp_path, capsys, trained, monkeypatch):
    _, dense = trained
    import ttsnn.sw.decompose
    from ttsnn import sw

    def must_not_run(*a, **k):
        raise AssertionError("decompose did its work before finding that --out cannot be written")

    monkeypatch.setattr(sw.decompose, "decompose_model", must_not_run)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, err = _cli(capsys, "decompose", "--checkpoint", str(dense), "--mode", "ptt", "--out",
                   str(blocker / "tt.pt"), "--no-eval")
    assert rc == 2 and len(err) == 1 and "not a directory" in err[0]
    existing = tmp_path / "tt.pt.json"
    existing.write_text("{}")
    rc, err = _cli(capsys, "decompose", "--checkpoint", str(dense), "--mode", "ptt", "--out",
                   str(tmp_path / "tt.pt"), "--no-eval")
    assert rc == 2 and "tt.pt.json already exists" in err[0]


_KILL_DURING_WRITE = textwrap.dedent("""
    import sys, time
    from ttsnn.sw.fileio import atomic_write

    def slow(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of the new version")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)

    atomic_write(sys.argv[1], slow)
""")


def _write_and_get_killed(target: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILL_DURING_WRITE, str(target)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: as a power cut would leave it
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_kill_during_a_write_keeps_the_old_file_and_the_next_start_removes_the_temporary(tmp_path):
    target = tmp_path / "run" / "last.pt"
    target.parent.mkdir()
    target.write_bytes(b"previous version")
    _write_and_get_killed(target)
    temps = list(target.parent.glob(".last.pt.*.tmp"))
    assert target.read_bytes() == b"previous version" and len(temps) == 1
    # a temp file of the old naming (no pid), old enough to be abandoned, goes too
    legacy = target.parent / ".last.pt.k3x9q2ab.tmp"
    legacy.write_bytes(b"x" * 100)
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    # one being written right now by a live process is left alone
    live = target.parent / f".last.pt.{os.getppid()}.abcdefgh.tmp"
    live.write_bytes(b"in progress")
    sw.fileio.atomic_write_bytes(target, b"next version")
    assert target.read_bytes() == b"next version"
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(["last.pt", live.name])


def test_kill_during_a_checkpoint_write_then_train_start_cleans_up(tmp_path, capsys):
    assert _cli(capsys, *_train_args(tmp_path))[0] == 0
    run = tmp_path / "run"
    _write_and_get_killed(run / "last.pt")
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # the checkpoint survived intact
    assert list(run.glob(".last.pt.*.tmp"))
    assert _cli(capsys, *_train_args(tmp_path, "--resume", "--epochs", "2"))[0] == 0
    assert not list(run.glob(".*.tmp"))
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_a_killed_training_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL at an arbitrary moment after the first checkpoint: --resume still reaches the
    weights of a run that was never interrupted."""
    args = _train_args(tmp_path, out=tmp_path / "killed")
    args[args.index("--epochs") + 1] = "3"
    proc = subprocess.Popen([sys.executable, "-m", "ttsnn.sw", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    epochs_done = load_checkpoint(ckpt)["epoch"]  # loads: never half-written
    assert 1 <= epochs_done <= 3
    cfg = _cfg(tmp_path, epochs=3, out=str(tmp_path / "killed"))
    train(cfg, resume=True, **QUIET)
    train(_cfg(tmp_path, epochs=3, out=str(tmp_path / "whole")), **QUIET)
    a, b = _weights(ckpt), _weights(tmp_path / "whole" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- disk full, unwritable outputs -------------------------------------------------------------

def test_disk_full_while_saving_is_one_line_and_the_previous_checkpoint_survives(tmp_path, capsys, monkeypatch):
    assert _cli(capsys, *_train_args(tmp_path))[0] == 0
    ckpt = tmp_path / "run" / "last.pt"
    raw = ckpt.read_bytes()
    real = sw.fileio._write_bytes

    def full_disk(tmp, data):
        with open(tmp, "wb") as f:
            f.write(bytes(data)[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sw.fileio, "_write_bytes", full_disk)
    rc, err = _cli(capsys, *_train_args(tmp_path, "--resume", "--epochs", "2"))
    assert rc == 2 and len(err) == 1, err
    assert f"cannot write {ckpt}" in err[0] and "disk is full" in err[0] and ".tmp" not in err[0]
    assert ckpt.read_bytes() == raw and not list(ckpt.parent.glob(".*.tmp"))
    monkeypatch.setattr(sw.fileio, "_write_bytes", real)
    assert _cli(capsys, *_train_args(tmp_path, "--resume", "--epochs", "2"))[0] == 0  # space freed: go on


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk_on_a_small_tmpfs(small_tmpfs, capsys):
    (small_tmpfs / "filler").write_bytes(b"\0" * (256 * 1024 - 16 * 1024))  # leave ~16 KiB
    out = small_tmpfs / "run"
    rc, err = _cli(capsys, *_train_args(small_tmpfs, out=out))
    assert rc == 2 and len(err) == 1, err
    assert "No space left on device" in err[0] and "disk is full" in err[0] and ".tmp" not in err[0]
    assert not list(out.glob(".*.tmp"))


def test_unwritable_output_names_the_output_not_a_temporary(tmp_path, monkeypatch):
    import tempfile

    def denied(dir=None, prefix="", suffix=""):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "x1y2" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as err:
        sw.fileio.atomic_write_text(tmp_path / "report.json", "{}")
    assert str(err.value).startswith(f"cannot write {tmp_path / 'report.json'}: Permission denied")
    assert ".tmp" not in str(err.value)
    monkeypatch.undo()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="is a file, not a directory|Not a directory"):
        sw.fileio.atomic_write_text(blocker / "report.json", "{}")


# ---- input files that must not run code or silently mislead ------------------------------------

class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_dir(tmp_path, batch_for) -> Path:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i, f in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        with open(d / f, "wb") as fh:
            fh.write(batch_for(f, i))
    return tmp_path


def _batch(labels=(0, 1, 2, 3), protocol=4, seed=0):
    x = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    return pickle.dumps({b"data": x, b"labels": list(labels), b"batch_label": b"b"}, protocol=protocol)


@pytest.mark.parametrize("where", ["data", "top", "labels"])
def test_a_crafted_cifar_batch_runs_no_code(tmp_path, capsys, where):
    marker = tmp_path / "pwned"
    evil = _RunsCode(marker)
    payload = {"data": {b"data": evil, b"labels": [0]}, "top": evil,
               "labels": {b"data": np.zeros((1, 3072), np.uint8), b"labels": [evil]}}[where]
    root = _cifar_dir(tmp_path, lambda f, i: pickle.dumps(payload) if f == "data_batch_1" else _batch())
    rc, err = _cli(capsys, *_train_args(tmp_path, "--dataset", "cifar10", "--data-path", str(root),
                                        "--size", "32"))
    assert rc == 2 and len(err) == 1 and "data_batch_1" in err[0] and "posix.system" in err[0], err
    assert not marker.exists()


def _py2_cifar_batch(x: np.ndarray, labels) -> bytes:
    """A batch pickled as Python 2's cPickle wrote the official files: protocol 2, numpy.core
    names, the raw bytes and keys as Python 2 strings (BINSTRING). Built by rewriting a
    Python 3 pickle of ASCII-range data, so the bytes are the same in both encodings."""

    class Py2Array:
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct
            return (_reconstruct, (np.ndarray, (0,), "b"),
                    (1, x.shape, x.dtype, False, x.tobytes().decode("latin1")))

    raw = pickle.dumps({"data": Py2Array(), "labels": list(labels), "batch_label": "training batch"}, protocol=2)
    raw = raw.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")
    out = bytearray(raw)
    for op, arg, pos in pickletools.genops(raw):
        if op.name == "BINUNICODE":
            out[pos] = ord("T")  # BINSTRING: same 4-byte length prefix
    return bytes(out)


def test_genuine_cifar_formats_still_load(tmp_path):
    from ttsnn.sw.data.images import read_cifar_batch

    x = np.random.default_rng(1).integers(0, 128, (3, 3072), dtype=np.uint8)
    for name, blob in [("py2", _py2_cifar_batch(x, [3, 1, 9]))] + [
            (f"p{p}", pickle.dumps({b"data": x, b"labels": [3, 1, 9]}, protocol=p)) for p in (2, 3, 4, 5)]:
        (tmp_path / name).write_bytes(blob)
        data, labels = read_cifar_batch(tmp_path / name, b"labels", 10)
        assert np.array_equal(data, x) and labels.tolist() == [3, 1, 9], name


def test_cifar_labels_out_of_range_are_a_clear_error(tmp_path, capsys):
    root = _cifar_dir(tmp_path, lambda f, i: _batch(labels=(0, 1, 12, 3)) if f == "test_batch" else _batch())
    rc, err = _cli(capsys, *_train_args(tmp_path, "--dataset", "cifar10", "--data-path", str(root),
                                        "--size", "32"))
    assert rc == 2 and len(err) == 1 and "test_batch: label 12 at index 2 is outside 0..9" in err[0], err


def _tensor_records(path):
    """(offset, size) of the tensor payloads inside a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 8]
    spans = []
    raw = Path(path).read_bytes()
    for info in infos:  # the local header is 30 bytes + name + extra field (alignment padding)
        name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
        extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
        spans.append((info.header_offset + 30 + name_len + extra_len, info.file_size))
    return spans


def test_bytes_overwritten_in_a_checkpoint_are_detected(tmp_path, trained, capsys):
    tt, _ = trained
    raw = tt.read_bytes()
    spans = _tensor_records(tt)
    assert spans
    for k, (off, size) in enumerate(spans):
        damaged = bytearray(raw)
        mid = off + size // 2
        damaged[mid:mid + 4] = bytes(b ^ 0x5A for b in damaged[mid:mid + 4])
        bad = tmp_path / f"bad{k}.pt"
        bad.write_bytes(damaged)
        with pytest.raises(ValueError, match="damaged: its content does not match the sha256"):
            load_checkpoint(bad)
    # anywhere else in the file: an error, or (zip padding) the very same content
    reference = payload_digest(load_checkpoint(tt))
    for pos in range(0, len(raw) - 4, max(1, len(raw) // 97)):
        damaged = bytearray(raw)
        damaged[pos:pos + 4] = b"\xde\xad\xbe\xef"
        bad = tmp_path / "anywhere.pt"
        bad.write_bytes(damaged)
        try:
            ck = load_checkpoint(bad)
        except ValueError:
            continue
        assert payload_digest(ck) == reference == ck["sha256"], pos
    rc, err = _cli(capsys, "eval", "--checkpoint", str(tmp_path / "bad0.pt"))
    assert rc == 2 and len(err) == 1 and "damaged" in err[0]


# ---- silent wrong results ----------------------------------------------------------------------

def test_resume_with_another_thread_count_warns_and_without_one_adopts_the_recorded(tmp_path):
    train(_cfg(tmp_path, epochs=1, threads=2), **QUIET)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["env"]["threads"] == 2
    warnings = []
    train(_cfg(tmp_path, epochs=2, threads=1), resume=True, warn=warnings.append, **QUIET)
    assert len(warnings) == 1 and "threads 2 -> 1" in warnings[0] and "--threads 2" in warnings[0]
    # no --threads: the run goes on at the checkpoint's count, silently, bit-exactly
    train(_cfg(tmp_path, epochs=1, threads=2, out=str(tmp_path / "b")), **QUIET)
    warnings.clear()
    torch.set_num_threads(1)
    train(_cfg(tmp_path, epochs=2, threads=None, out=str(tmp_path / "b")), resume=True, warn=warnings.append,
          **QUIET)
    assert warnings == [] and torch.get_num_threads() == 2
    assert load_checkpoint(tmp_path / "b" / "last.pt")["config"]["threads"] == 2


def test_resume_with_other_library_versions_warns(tmp_path):
    train(_cfg(tmp_path), **QUIET)
    ckpt_path = tmp_path / "run" / "last.pt"
    ck = torch.load(ckpt_path, weights_only=True)
    ck["env"]["torch"] = "1.0.0"
    ck["sha256"] = payload_digest(ck)
    torch.save(ck, ckpt_path)
    warnings = []
    train(_cfg(tmp_path, epochs=2), resume=True, warn=warnings.append, **QUIET)
    assert len(warnings) == 1 and "torch 1.0.0 -> " in warnings[0] and "not be bit-identical" in warnings[0]


def test_a_finished_run_can_be_extended(tmp_path):
    # constant schedule: the extension is exactly the longer run
    train(_cfg(tmp_path, epochs=2), **QUIET)
    s = train(_cfg(tmp_path, epochs=3), resume=True, **QUIET)
    assert s["extended_at_epochs"] == [2] and s["epochs"] == 3
    train(_cfg(tmp_path, epochs=3, out=str(tmp_path / "whole")), **QUIET)
    a, b = _weights(tmp_path / "run" / "last.pt"), _weights(tmp_path / "whole" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # cosine: the added epochs anneal again from lr (a warm restart), stated in the log
    logs = []
    train(_cfg(tmp_path, epochs=2, scheduler="cosine", lr=0.1, out=str(tmp_path / "cos")), **QUIET)
    train(_cfg(tmp_path, epochs=4, scheduler="cosine", lr=0.1, out=str(tmp_path / "cos")), resume=True,
          progress=False, log=logs.append)
    rows = [json.loads(r) for r in (tmp_path / "cos" / "metrics.jsonl").read_text().splitlines()]
    # by hand: cosine over 2 epochs gives 0.1, 0.05; the restart over 2 more gives 0.1, 0.05 again
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.05, 0.1, 0.05])
    assert any("restarts" in m for m in logs)
    with pytest.raises(ValueError, match="already completed 4 epochs"):
        train(_cfg(tmp_path, epochs=3, scheduler="cosine", out=str(tmp_path / "cos")), resume=True, **QUIET)


def test_changing_the_length_of_an_unfinished_cosine_run_is_refused(tmp_path):
    import ttsnn.sw.train as tr

    original = tr.save_checkpoint

    def save_then_die(*a, **k):
        original(*a, **k)
        raise KeyboardInterrupt

    tr.save_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_cfg(tmp_path, epochs=3, scheduler="cosine"), **QUIET)
    finally:
        tr.save_checkpoint = original
    with pytest.raises(ValueError, match="finish it first"):
        train(_cfg(tmp_path, epochs=5, scheduler="cosine"), resume=True, **QUIET)


def test_out_of_memory_is_one_line_and_keeps_the_checkpoints(tmp_path, capsys, monkeypatch):
    assert _cli(capsys, *_train_args(tmp_path))[0] == 0
    raw = (tmp_path / "run" / "last.pt").read_bytes()
    import ttsnn.sw.train as tr

    def huge(x, info):
        return torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: the real CPU allocator refuses it

    monkeypatch.setattr(tr, "_to_model_input", huge)
    rc, err = _cli(capsys, *_train_args(tmp_path, "--resume", "--epochs", "2"))
    assert rc == 2 and len(err) == 1, err
    assert "out of memory in epoch 2" in err[0] and "1.05e+06 GiB" in err[0] and "--batch-size" in err[0]
    assert (tmp_path / "run" / "last.pt").read_bytes() == raw


@pytest.mark.parametrize("command", ["eval", "export", "decompose"])
def test_out_of_memory_in_eval_export_decompose_is_one_line(tmp_path, capsys, monkeypatch, trained, command):
    tt, dense = trained
    import ttsnn.sw.train as tr

    def huge(x, info):
        return torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: the real CPU allocator refuses it

    monkeypatch.setattr(tr, "_to_model_input", huge)
    out = tmp_path / "out.pt"
    argv = {"eval": ["eval", "--checkpoint", str(tt), "--batch-size", "8"],
            "export": ["export", "--checkpoint", str(tt), "--out", str(out), "--batch-size", "8"],
            "decompose": ["decompose", "--checkpoint", str(dense), "--mode", "ptt", "--ranks", "2",
                          "--out", str(out)]}[command]
    rc, err = _cli(capsys, *argv)
    verb = {"eval": "evaluating", "export": "exporting", "decompose": "decomposing"}[command]
    assert rc == 2 and len(err) == 1, err
    assert f"out of memory {verb}" in err[0] and "1.05e+06 GiB" in err[0], err
    assert ("--batch-size (now 8)" if command != "decompose" else "--no-eval") in err[0], err
    assert not out.exists() and not Path(str(out) + ".json").exists()


def _sw(*argv):
    return run_cli(main, list(argv), prog="sw")


def _model(*argv):
    from ttsnn.model.__main__ import main as model_main
    return run_cli(model_main, list(argv), prog="model")


def _gen(*argv):
    from ttsnn.gen.__main__ import main as gen_main
    return run_cli(gen_main, list(argv), prog="gen")


def _perf(*argv):
    from ttsnn.gen.perf import main as perf_main
    return run_cli(perf_main, list(argv), prog="ttsnn.gen.perf")


# command, existing output (relative to tmp_path) it would overwrite, the argv (with {t}: tmp_path,
# {ckpt}: a TT checkpoint); every one is refused before any work and keeps the file
_OVERWRITES = [
    (_sw, "q.png", ["quantize", "--checkpoint", "{ckpt}", "--config", "small", "--plot", "{t}/q.png"]),
    (_sw, "r.png", ["bench-reversible", "--depths", "1", "--timesteps", "2", "--networks", "none",
                    "--plot", "{t}/r.png"]),
    (_sw, "p.png", ["plugin-bench", "--epochs", "1", "--plot", "{t}/p.png"]),
    (_sw, "demo/report.json", ["demo", "--out", "{t}/demo", "--epochs", "1"]),
    (_model, "e.csv", ["energy", "--arch", "tiny", "--input", "1x8x8", "--ranks", "uniform:4", "--csv", "{t}/e.csv"]),
    (_model, "e.png", ["energy", "--arch", "tiny", "--input", "1x8x8", "--ranks", "uniform:4", "--plot", "{t}/e.png"]),
    (_model, "rep/summary.md", ["report", "--out", "{t}/rep"]),
    (_model, "rp/reproduce.md", ["reproduce", "--out", "{t}/rp"]),
    (_model, "se/sensitivity.json", ["sensitivity", "--out", "{t}/se"]),
    (_model, "s.json", ["sparsity", "--checkpoint", "{ckpt}", "--out", "{t}/s.json"]),
    (_gen, "rtl/manifest.json", ["--config", "small", "--out", "{t}/rtl"]),
    (_perf, "perf.json", ["--network", "resnet18-cifar10", "--modes", "ptt", "--json", "{t}/perf.json"]),
]


@pytest.mark.parametrize("run,existing,argv", _OVERWRITES,
                         ids=[f"{r.__name__[1:]}-{a[0]}-{e}" for r, e, a in _OVERWRITES])
def test_outputs_that_exist_need_force(tmp_path, capsys, trained, run, existing, argv):
    target = tmp_path / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("someone's result")
    argv = [a.format(t=tmp_path, ckpt=trained[0]) for a in argv]
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = run(*argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, err
    assert "already" in err[0] and "--force" in err[0], err
    assert target.read_text() == "someone's result"
    assert time.perf_counter() - t0 < 20  # refused before the work, not after it


def test_force_replaces_outputs_and_an_output_equal_to_the_input_is_refused(tmp_path, capsys, trained):
    for name in ("e.csv", "rtl/manifest.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("old")
    assert _model("energy", "--arch", "tiny", "--input", "1x8x8", "--ranks", "uniform:4", "--modes", "ptt", "--csv",
                  str(tmp_path / "e.csv"), "--force") == 0
    assert (tmp_path / "e.csv").read_text().startswith("network,")
    assert _gen("--config", "small", "--out", str(tmp_path / "rtl"), "--force") == 0
    assert json.loads((tmp_path / "rtl" / "manifest.json").read_text())["config"]["name"] == "small"
    tt = trained[0]
    raw = tt.read_bytes()
    capsys.readouterr()
    assert _model("sparsity", "--checkpoint", str(tt), "--out", str(tt), "--force") == 2
    assert "is the input file" in capsys.readouterr().err and tt.read_bytes() == raw


def test_htt_without_a_full_timestep_merges_back(tmp_path):
    from ttsnn.sw.resnet import merge_to_dense, ms_resnet

    torch.manual_seed(0)
    model = ms_resnet("tiny", mode="htt", ranks="uniform:2", in_channels=1, num_classes=10, timesteps=2,
                      input_size=8, schedule=[False, False]).eval()
    merged = merge_to_dense(model).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), merged(x), atol=1e-4)


def test_energy_table_entry_that_is_not_a_number_names_file_and_field(tmp_path):
    import yaml

    from ttsnn.model.energy_table import DEFAULT_TABLE, load_energy_table

    data = yaml.safe_load(Path(DEFAULT_TABLE).read_text())
    data["primitives"][2]["energy"] = "0.9 pJ"
    bad = tmp_path / "table.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError) as err:
        load_energy_table(bad)
    assert str(bad) in str(err.value) and "primitives[2]" in str(err.value) and "'energy'" in str(err.value)
    data = yaml.safe_load(Path(DEFAULT_TABLE).read_text())
    data["dram"]["memories"]["hbm2"]["central"] = True
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"dram\.memories\.hbm2: field 'central' must be a finite number"):
        load_energy_table(bad)


def test_buffers_beyond_what_is_built_and_costed_are_refused(tmp_path):
    from ttsnn.gen.config import ConfigError, MAX_BUFFER_BYTES, load_config

    text = (REPO / "configs" / "small.toml").read_text()
    start = text.index("[buffers.weight]")
    line = text.index("bytes = ", start)
    end = text.index("\n", line)
    bad = tmp_path / "huge.toml"
    bad.write_text(text[:line] + "bytes = 2048000000000" + text[end:])
    with pytest.raises(ConfigError, match=r"buffers\.weight\.bytes.*must be <= 16777216") as err:
        load_config(bad)
    assert str(bad) in str(err.value)
    assert MAX_BUFFER_BYTES == 16 * 2 ** 20


def _small_with(tmp_path, buffer: str, value: int) -> Path:
    text = (REPO / "configs" / "small.toml").read_text()
    start = text.index(f"[buffers.{buffer}]")
    line = text.index("bytes = ", start)
    end = text.index("\n", line)
    path = tmp_path / f"{buffer}_{value}.toml"
    path.write_text(text[:line] + f"bytes = {value}" + text[end:])
    return path


def test_a_buffer_larger_than_its_regions_rounded_to_a_power_of_two_is_refused(tmp_path):
    from ttsnn.gen.config import ConfigError, load_config

    # small.toml's weight regions, by hand: P = 4 lanes of 8-bit weights; w1 and w4 hold
    # max_pointwise_weights = 256 weights (64 words of 32 bits = 256 B each), w2 and w3
    # ceil(3 * max_rank^2 / P) = 48 words (192 B each), affine one word of 4 x (16 + 16 + 16)
    # bits per output group, 32 / 4 = 8 groups (192 B): 1088 B, a power of two above it 2048
    need = 256 + 192 + 192 + 256 + 192
    assert load_config(_small_with(tmp_path, "weight", 2048)).buffers["weight"].bytes == 2048
    assert load_config(_small_with(tmp_path, "weight", need)).buffers["weight"].bytes == need
    bad = _small_with(tmp_path, "weight", 4096)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "buffers.weight.bytes" in msg and str(bad) in msg and "must be <= 2048, got 4096" in msg
    assert "(w1, w2, w3, w4, affine) need 1088 bytes" in msg and "power of two" in msg
    # a buffer whose regions fill it (the output ring) may not grow past the rounding either:
    # the ring would grow with it, but not beyond MAX_BUFFER_BYTES (the test above)
    with pytest.raises(ConfigError, match=r"buffers\.weight\.bytes.*must be <= 2048"):
        load_config(_small_with(tmp_path, "weight", 2048 + 16))


def _verilog_memories(rtl_dir: Path) -> dict[str, int]:
    """Bits of every ``reg [W-1:0] mem_<region> [D-1:0];`` of a generated design."""
    import re
    from ttsnn.gen.emit import read_verilog, verilog_files

    found = re.findall(r"reg \[(\d+):0\] mem_(\w+) \[(\d+):0\];", read_verilog(verilog_files(rtl_dir)))
    return {name: (int(hi) + 1) * (int(depth) + 1) for hi, name, depth in found}


@pytest.mark.parametrize("name", ["small", "paper"])
def test_configuration_rtl_and_energy_model_agree_on_buffer_sizes(name):
    """The shipped configurations, the committed RTL (rtl/<name>/) and the energy model: the
    RTL's memories of each buffer fit the configured size, which is at most their size rounded
    up to a power of two, and the model charges the configured size."""
    from ttsnn.gen.config import buffer_size_limit, load_config, region_bytes_by_buffer
    from ttsnn.model.accelerators import Proposed

    cfg = load_config(name)
    mems = _verilog_memories(REPO / "rtl" / name)
    built: dict[str, int] = {}
    for region in cfg.regions.values():  # which buffer each memory of the RTL is carved from
        built[region.buffer] = built.get(region.buffer, 0) + mems[region.name]
    assert set(built) == set(cfg.buffers)
    model = Proposed(cfg)
    for buf, spec in cfg.buffers.items():
        need = -(-built[buf] // 8)
        assert need == region_bytes_by_buffer(cfg)[buf]
        word = spec.width_bits * spec.banks // 8
        allowed = max(1 << (need - 1).bit_length(), -(-need // word) * word)
        assert need <= spec.bytes <= allowed, buf
        assert buffer_size_limit(need, word) == allowed
        assert model.memories[buf].bytes == spec.bytes


def test_the_large_weights_costing_copy_obeys_the_same_rule():
    from ttsnn.gen.config import load_config, region_bytes_by_buffer
    from ttsnn.gen.driver import large_weights_config

    big = large_weights_config(load_config("paper"), rank=170, pointwise=512 * 170)
    need = region_bytes_by_buffer(big)["weight"]
    word = big.buffers["weight"].width_bits * big.buffers["weight"].banks // 8
    assert need > load_config("paper").buffers["weight"].bytes
    assert big.buffers["weight"].bytes == -(-need // word) * word  # its regions, to a whole word


def test_torch_save_to_a_full_tmpfs_is_recognised_as_a_full_disk(small_tmpfs):
    """Writers that call torch.save on a path (the event-frame cache) get the same line, not
    torch's C++ "unexpected pos" trace."""
    target = small_tmpfs / "frames.pt"
    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device"):
        sw.fileio.atomic_write(target, lambda tmp: torch.save(torch.zeros(200_000), tmp))
    assert list(small_tmpfs.iterdir()) == []
