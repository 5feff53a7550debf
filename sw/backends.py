"""Execution backends: where independent jobs run (points of a design-space sweep; later the
tiles of a layer and the images of a co-simulation batch).

A job is a module-level function applied to one picklable item; jobs share nothing, so the
order they run in cannot change their results. Two backends, same interface:

* :class:`LocalBackend` (the default): a process pool on this machine, one worker per core
  (``workers=1`` runs the jobs in this process, one after another: no pool, easy to debug);
* :class:`RayBackend`: Ray tasks, on a throw-away single-node Ray started here, or on an
  existing cluster given by its address (``ray://head:10001`` or ``head:6379``); Ray is an
  optional dependency (``pip install -e '.[ray]'``), imported only when this backend is made.

Both yield ``(index, result)`` as jobs finish (:meth:`Backend.map_unordered`, what a resumable
caller journals) or the results in item order (:meth:`Backend.map`). An exception raised by a
job reaches the caller with the job's traceback; jobs that have not started yet are cancelled.
A job that must do something once per machine (e.g. the Verilator build of co-simulation) does
it under :func:`once_per_node`, a file lock in a node-local directory: it works the same in a
process pool and on Ray workers, which share nothing else.

Light on purpose (no torch, no gen/model imports): every package may use it (docs/scaling.md).
"""

from __future__ import annotations

import fcntl
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from ttsnn.sw.cli_util import UserError

__all__ = ["Backend", "LocalBackend", "RayBackend", "make_backend", "BACKENDS", "once_per_node"]

BACKENDS = ("local", "ray")


class Backend:
    """Runs ``fn(item)`` for every item; subclasses say where."""
    name = "base"
    workers = 1

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, fn(items[index]))`` in the order the jobs finish. Closing the iterator
        early (``break``, an exception in the caller, Ctrl-C) cancels the jobs not started."""
        raise NotImplementedError  # pragma: no cover - abstract

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(item) for item in items]``, run on the backend."""
        out: list[Any] = [None] * len(items)
        for i, r in self.map_unordered(fn, items):
            out[i] = r
        return out

    def describe(self) -> str:
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"

    def close(self) -> None:
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalBackend(Backend):
    """A pool of ``workers`` processes (default: every core this process may use)."""
    name = "local"

    def __init__(self, workers: int | None = None):
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UserError(f"--workers must be a positive integer, got {workers!r}")
        self.workers = workers

    def map_unordered(self, fn, items):
        if self.workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                yield i, fn(item)
            return
        # 'spawn': a forked child of a process that already ran OpenMP (torch) may deadlock
        pool = ProcessPoolExecutor(min(self.workers, len(items)), mp_context=get_context("spawn"))
        futures: dict[Future, int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
        finished = False
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=futures.__getitem__):
                    yield futures[f], f.result()
            finished = True
        finally:
            pool.shutdown(wait=finished, cancel_futures=True)


class RayBackend(Backend):
    """Ray tasks. ``address=None`` starts a private single-node Ray on this machine with
    ``workers`` CPUs (and stops it on :meth:`close`); an address joins that cluster, whose
    nodes must have this kit installed (docs/scaling.md)."""
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("--backend ray needs Ray: pip install -e '.[ray]' (ray==2.60.0), "
                            "or use --backend local") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
            if address:
                kw["address"] = address
            else:
                kw["num_cpus"] = workers or os.cpu_count() or 1
            try:
                ray.init(**kw)
            except ConnectionError as exc:
                raise UserError(f"--ray-address {address}: cannot connect to a Ray cluster there "
                                f"({exc}); start one with `ray start --head` or check the address") from None
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._task = ray.remote(_call)

    def describe(self) -> str:
        return f"ray ({self.workers} CPUs)"

    def map_unordered(self, fn, items):
        ray = self._ray
        refs = {self._task.remote(fn, item): i for i, item in enumerate(items)}
        finished = False
        try:
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield refs[done[0]], ray.get(done[0])
            finished = True
        finally:
            if not finished:
                for ref in refs:
                    ray.cancel(ref)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def make_backend(name: str = "local", *, workers: int | None = None, address: str | None = None) -> Backend:
    """The backend called ``name`` (``local`` or ``ray``); ``address`` only for Ray."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "local":
        if address:
            raise UserError("--ray-address is for --backend ray")
        return LocalBackend(workers)
    return RayBackend(address, workers)


def once_per_node(key: str, make: Callable[[Path], None], root: str | os.PathLike | None = None) -> Path:
    """``root/key`` made by ``make(tmp_dir)`` exactly once on this machine, whichever process of
    whichever backend asks first; the others wait for it and reuse it. ``root`` defaults to
    ``$TTSNN_NODE_CACHE`` or ``~/.cache/ttsnn``. ``key`` should name everything the result
    depends on (e.g. a hash of the generated Verilog and the build flags)."""
    if not key or "/" in key or key.startswith("."):
        raise UserError(f"once_per_node: key must be a plain file name, got {key!r}")
    base = Path(root or os.environ.get("TTSNN_NODE_CACHE") or Path.home() / ".cache" / "ttsnn")
    base.mkdir(parents=True, exist_ok=True)
    target = base / key
    with open(base / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also if this process dies
        if not target.exists():
            tmp = base / f".{key}.{os.getpid()}.tmp"
            tmp.mkdir()
            make(tmp)
            os.replace(tmp, target)
    return target
