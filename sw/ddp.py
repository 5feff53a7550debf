"""Data-parallel training helpers (``torchrun --nproc_per_node N -m sw train ...``).

* :func:`setup` reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
  ``MASTER_ADDR``/``MASTER_PORT``) and joins the process group: gloo on CPU, NCCL on CUDA;
  without torchrun (no ``WORLD_SIZE`` or 1) it is a single process and nothing is initialised.
* :func:`shard_batches`: every rank sees the same seeded permutation of the training set; each
  global batch of ``batch_size`` samples is split into ``world`` contiguous parts, rank ``r``
  loading only part ``r``. The union of the ranks' parts is the single-process batch, so a run
  on N processes takes the same steps as one process with the same (global) batch size.
* :class:`SyncBatchNormTB`: BatchNorm statistics over the whole global batch (all ranks), on
  CPU (gloo) as on GPU: torch's ``nn.SyncBatchNorm`` refuses CPU tensors. Without it each
  rank would normalise with the statistics of its own part, and N processes would train a
  different model than one process (docs/training.md, "Several processes").
* the loss of rank ``r`` is ``N / B * sum of its samples' losses``: DDP averages gradients
  over the N ranks, which gives the gradient of the mean loss over the global batch ``B``
  however the batch is split (the last one may split unevenly).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ttsnn.sw.layers import BatchNormTB
from ttsnn.sw.cli_util import UserError

__all__ = ["DistContext", "setup", "shard_batches", "part_bounds", "SyncBatchNormTB", "convert_sync_batchnorm",
           "all_reduce_sum", "resolve_device"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self, finished: bool = True) -> None:
        """Tear the process group down. After a normal finish every rank first waits for the
        others (rank 0 still writes its checkpoint and metrics): a gloo rank that tore down while
        its peer was still connected was seen to abort (SIGABRT, "terminate called without an
        active exception"), once in about ten CPU runs. After an error no rank waits: its peers
        may never arrive."""
        if self.initialised_here and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu`` or ``cuda`` (this process's GPU under torchrun); a clear error without CUDA."""
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda":
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    if not torch.cuda.is_available():
        raise UserError(f"--device cuda: no CUDA device is available (torch {torch.__version__}"
                        f"{' is a CPU-only build' if torch.version.cuda is None else ' sees no GPU'}); "
                        "use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"--device cuda: process {local_rank} of this node has no GPU "
                        f"({torch.cuda.device_count()} visible); use --nproc_per_node "
                        f"{torch.cuda.device_count()} or fewer")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(device: str) -> DistContext:
    """The process group of a torchrun launch (or a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank if world > 1 else 0)
    if world <= 1:
        return DistContext(device=dev)
    here = not dist.is_initialized()
    if here:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistContext(rank, world, local_rank, dev, here)


def shard_batches(order: list[int], batch_size: int, rank: int, world: int) -> list[list[int]]:
    """Rank ``rank``'s part of every global batch of ``order``: contiguous parts whose sizes
    differ by at most one. A last batch smaller than ``world`` would leave a rank empty: it is
    dropped (by every rank alike)."""
    out = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        if len(batch) < world:
            break
        lo, hi = part_bounds(len(batch), rank, world)
        out.append(batch[lo:hi])
    return out


def part_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``(lo, hi)`` of rank ``rank``'s contiguous part of ``n`` items split over ``world`` ranks
    (the first ``n % world`` ranks take one more)."""
    q, r = divmod(n, world)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sums over the ranks (float64), e.g. the loss and accuracy counts of an epoch."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the gradient of every rank's input is the sum of the ranks' output
    gradients (each rank's loss depends on the sum). torch's own differentiable all_reduce,
    torch.distributed.nn.functional.all_reduce, is deprecated."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # type: ignore[override]
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNormTB(BatchNormTB):
    """:class:`BatchNormTB` whose training-mode statistics are those of the global batch.

    The mean and the (biased) variance are reduced over all ranks in two passes
    (``sum x``, then ``sum (x - mean)^2``) with a differentiable all-reduce whose backward sums
    the gradients of the statistics over the ranks, so the input gradients are those of the
    single-process BatchNorm. Running statistics use the
    unbiased variance, as ``nn.BatchNorm2d`` does; every rank computes the same ones. Outside
    training, or in a single process, it is :class:`BatchNormTB`."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        steps, batch = x.shape[:2]
        xf = x.reshape(steps * batch, *x.shape[2:])
        dims = [0] + list(range(2, xf.dim()))
        count = torch.tensor([xf.numel() / xf.shape[1]], dtype=xf.dtype, device=xf.device)
        sums = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        shape = [1, -1] + [1] * (xf.dim() - 2)
        centred = xf - mean.reshape(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        return y.reshape(steps, batch, *y.shape[1:])


def convert_sync_batchnorm(model: torch.nn.Module) -> int:
    """Turn every :class:`BatchNormTB` of ``model`` into a :class:`SyncBatchNormTB` in place (same
    parameters and buffers, so checkpoints are unchanged); returns how many."""
    n = 0
    for m in model.modules():
        if type(m) is BatchNormTB:
            m.__class__ = SyncBatchNormTB
            n += 1
    return n
