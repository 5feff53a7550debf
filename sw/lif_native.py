"""The rectangle-surrogate LIF's forward and backward loops as one compiled pass
(``sw/lif_kernel.c``), used by :mod:`sw.neurons` for float32 and float64 CPU tensors when it can be built.
The same library holds the BatchNorm passes of :mod:`sw.batchnorm` (:func:`kernel`,
:func:`run_split`).

Why: the eager loops run 8 element-wise kernels per timestep forward and 4 backward, each a
full pass over memory; the C loop reads the input once and writes the spikes and the two bool
masks in the same pass (and the backward reads the masks and gradients once). The results are
bit-identical to the eager loops (compiled without fused multiply-add; tested in
``tests/sw/test_lif_native.py``).

The library is compiled once with the system C compiler (``cc``, ``-O3``) into a cache
directory (``$SW_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/ttsnn-sw``, else ``~/.cache/ttsnn-sw``),
named by a hash of the source and flags, written atomically. Without a compiler, or with
``SW_NATIVE_LIF=0`` in the environment, :func:`available` is False and the eager loops run.
Work is split over ``torch.get_num_threads()`` threads (ctypes releases the GIL).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "lif_forward", "lif_backward", "ENABLED"]

_SOURCE = Path(__file__).with_name("lif_kernel.c")
# -fopenmp-simd: only the BatchNorm reductions' `omp simd reduction` pragmas (no OpenMP runtime)
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-fPIC",
          "-shared"]
#: columns per thread below which one thread does all (thread start-up would dominate)
_MIN_COLUMNS_PER_THREAD = 32768

#: whether :mod:`sw.neurons` may use the compiled loops (the bench flips it to compare)
ENABLED = os.environ.get("SW_NATIVE_LIF", "1") != "0"

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0


def _cache_dir() -> Path:
    if os.environ.get("SW_KERNEL_CACHE"):
        return Path(os.environ["SW_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ttsnn-sw"


def _build() -> ctypes.CDLL | None:
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    source = _SOURCE.read_bytes()
    # -march=native: the library is only valid on this kind of machine, so the machine is part
    # of the name (a cache directory shared between hosts never hands one a foreign build)
    machine = f"{platform.node()} {platform.machine()} {platform.processor()}"
    key = hashlib.sha256(source + " ".join(_FLAGS).encode() + machine.encode()).hexdigest()[:16]
    target = _cache_dir() / f"lif_kernel-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            try:
                subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", tmp], check=True,
                               capture_output=True, text=True)
                os.replace(tmp, target)   # atomic: concurrent builders each write a whole file
            except subprocess.CalledProcessError as err:
                os.unlink(tmp)
                warnings.warn(f"sw: compiling {_SOURCE.name} failed, using the slower eager LIF "
                              f"({err.stderr.strip().splitlines()[-1] if err.stderr else err})")
                return None
        lib = ctypes.CDLL(str(target))
    except OSError as err:        # an unwritable cache directory, a library that does not load
        warnings.warn(f"sw: the compiled LIF is unavailable ({err}); using the slower eager LIF "
                      f"(set SW_KERNEL_CACHE to a writable directory)")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        forward, backward = getattr(lib, f"lif_forward_{suffix}"), getattr(lib, f"lif_backward_{suffix}")
        forward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, real, real, real]
        backward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, real]
        forward.restype = backward.restype = None
        kernels = {"bn_sums": [ptr, i64, i64, i64, i64, ptr, ptr, ptr],
                   "bn_apply": [ptr, ptr, i64, i64, i64, i64, ptr, ptr],
                   "bn_grad_sums": [ptr, ptr, i64, i64, i64, i64, ptr, ptr, ptr],
                   "bn_grad_input": [ptr, ptr, ptr, i64, i64, i64, i64, ptr, ptr, ptr, ptr]}
        for name, argtypes in kernels.items():
            fn = getattr(lib, f"{name}_{suffix}")
            fn.argtypes, fn.restype = argtypes, None
    return lib


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _lib = _build()
                _tried = True
    return _lib


def built() -> bool:
    """Whether the compiled library exists (building it on first use)."""
    return _library() is not None


def available(x: Tensor) -> bool:
    """Whether the compiled loops can run on ``x`` (``[T, N]``, float32 or float64, CPU,
    contiguous)."""
    return (ENABLED and x.dtype in _SUFFIX and x.device.type == "cpu" and x.dim() == 2
            and x.is_contiguous() and _library() is not None)


def kernel(name: str, dtype: torch.dtype):
    """The compiled function ``name`` for ``dtype`` (only after :func:`available` said True)."""
    return getattr(_library(), f"{name}_{_SUFFIX[dtype]}")


def split_threads(items: int, min_items_per_thread: int) -> int:
    """How many threads :func:`run_split` uses for ``items`` work items."""
    return max(1, min(torch.get_num_threads(), items // max(1, min_items_per_thread)))


def run_split(items: int, threads: int, call, align: int = 1) -> None:
    """Run ``call(k, n0, n1)`` for the ``threads`` chunks ``k`` of ``[0, items)`` (chunk bounds
    on multiples of ``align``), chunk 0 on the calling thread, the others on a pool."""
    global _pool, _pool_size, _pool_pid
    if threads == 1:
        call(0, 0, items)
        return
    # a forked child (e.g. a DataLoader worker) inherits the pool but not its threads
    if _pool is None or _pool_size != threads - 1 or _pool_pid != os.getpid():
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="sw-lif")
        _pool_size, _pool_pid = threads - 1, os.getpid()
    bounds = [min(items, (items * i // threads + align - 1) // align * align) for i in range(threads)]
    bounds.append(items)
    futures = [_pool.submit(call, i, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    call(0, bounds[0], bounds[1])   # the calling thread takes the first chunk
    for f in futures:
        f.result()


def _split(columns: int, call) -> None:
    """Run ``call(n0, n1)`` over ``[0, columns)`` split across torch's intra-op thread count;
    chunk bounds on 64-column multiples keep each thread's rows cache-line aligned."""
    run_split(columns, split_threads(columns, _MIN_COLUMNS_PER_THREAD),
              lambda k, n0, n1: call(n0, n1), align=64)


def lif_forward(x: Tensor, tau: float, v_threshold: float, half_width: float):
    """Spikes (float32), no-spike mask and window ``|u - V_th| < half_width`` (bool) of
    ``x`` ``[T, N]``; see :func:`sw.neurons._forward_loop`."""
    kernel = getattr(_library(), f"lif_forward_{_SUFFIX[x.dtype]}")
    steps, columns = x.shape
    spikes = torch.empty_like(x)
    no_spike = torch.empty(x.shape, dtype=torch.bool)
    window = torch.empty(x.shape, dtype=torch.bool)
    args = (x.data_ptr(), spikes.data_ptr(), no_spike.data_ptr(), window.data_ptr(), steps,
            columns)
    _split(columns, lambda n0, n1: kernel(*args, n0, n1, tau, v_threshold, half_width))
    return spikes, no_spike, window


def lif_backward(grad_spikes: Tensor, no_spike: Tensor, window: Tensor, tau: float) -> Tensor:
    """``dL/du`` ``[T, N]`` from ``dL/ds`` and the forward's masks; see
    :func:`sw.neurons._backward_loop` (rectangle surrogate, no membrane gradient)."""
    kernel = getattr(_library(), f"lif_backward_{_SUFFIX[grad_spikes.dtype]}")
    steps, columns = grad_spikes.shape
    grad_u = torch.empty_like(grad_spikes)
    args = (grad_spikes.data_ptr(), no_spike.data_ptr(), window.data_ptr(), grad_u.data_ptr(),
            steps, columns)
    _split(columns, lambda n0, n1: kernel(*args, n0, n1, tau))
    return grad_u
