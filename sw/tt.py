"""Tensor-train (TT) 3x3 convolutions of TT-SNN: STT, PTT, HTT, their dense baseline and
their merge back into dense kernels (paper Eq. 6).

All modules take and return ``[T, B, C, H, W]``; the convs fold T into the batch.

A TT conv replaces a 3x3 conv ``Cin -> Cout`` by four bias-free cores (rank ``r``):
``g1`` 1x1 ``Cin -> r``, ``g2`` 3x1 ``r -> r`` (padding (1, 0)), ``g3`` 1x3 ``r -> r``
(padding (0, 1)), ``g4`` 1x1 ``r -> Cout``. With ``o1 = g1(x[t])``:

- STT: ``g4(g3(g2(o1)))``
- PTT: ``g4((g2(o1) + g3(o1)) / 2)``
- HTT: PTT at the full timesteps of ``schedule`` (default: the first half,
  :func:`sw.arch.default_schedule`), ``g4(o1)`` at the others.

Downsampling (``stride=2``):

- ``downsample='maxpool'`` (reference): the chain runs at stride 1 and a 2x2 max-pool
  (``ceil_mode=True``, identical to the reference for even sizes and matching the stride-2
  shortcut's ``ceil(H/2)`` for odd ones) follows g4. Merged: 3x3 conv at stride 1, then the pool.
- ``downsample='stride'`` (alternative): g1 at stride 1; the 3-tap cores carry the stride, STT:
  g2 stride (2, 1) and g3 stride (1, 2); PTT: g2 and g3 both stride (2, 2); HTT's reduced
  timesteps apply g1 to ``x[..., ::2, ::2]``. The module then equals a plain 3x3 conv with
  stride 2 and padding 1 (no dilation, no skipped pixels), so merge-back gives a standard
  strided conv.

TT-SVD mapping (:func:`tt_svd_cores`): the weight ``W[o, i, kh, kw]`` is permuted to
``(Cin, kh, kw, Cout)`` and decomposed by tensorly's ``tensor_train`` with TT ranks
``(1, r, r, r, 1)`` into cores ``C0[1, Cin, r]``, ``C1[r, 3, r]``, ``C2[r, 3, r]``,
``C3[r, Cout, 1]``; then ``g1[a, i] = C0[0, i, a]``, ``g2[b, a, kh] = C1[a, kh, b]``,
``g3[c, b, kw] = C2[b, kw, c]``, ``g4[o, c] = C3[c, o, 0]``, so that
``W[o, i, kh, kw] = sum g4[o, c] g3[c, b, kw] g2[b, a, kh] g1[a, i]`` = the STT merged kernel.
"""

from __future__ import annotations

import numbers
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ttsnn.sw.arch import DOWNSAMPLE_CHOICES, TT_MODES, max_tt_rank, validate_schedule
from ttsnn.sw.tt_autograd import TTGeometry, is_binary, tt_conv
from ttsnn.sw.cli_util import UserError

__all__ = ["TTConv2d", "DenseConv3x3", "ScheduledConv3x3", "tt_svd_cores", "merge_cores",
           "check_tb_input", "relative_error"]


def check_tb_input(x: Tensor, channels: int, where: str) -> None:
    """Raise ValueError unless ``x`` is ``[T, B, channels, H, W]``."""
    if not isinstance(x, Tensor):
        raise UserError(f"{where}: expected a tensor [T, B, C, H, W], got {type(x).__name__}")
    if x.dim() != 5:
        raise UserError(f"{where}: expected a 5-d input [T, B, C={channels}, H, W], got shape "
                        f"{tuple(x.shape)}")
    if x.shape[2] != channels:
        raise UserError(f"{where}: expected {channels} input channels (dim 2 of [T, B, C, H, W]), "
                        f"got {x.shape[2]} (shape {tuple(x.shape)})")


def _fold(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(y: Tensor, steps: int) -> Tensor:
    return y.reshape(steps, y.shape[0] // steps, *y.shape[1:])


def _check_rank(rank, in_channels: int, out_channels: int) -> int:
    bound = max_tt_rank(in_channels, out_channels)
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 1 <= rank <= bound:
        raise UserError(f"rank {rank!r} out of range for a {in_channels}->{out_channels} TT conv: "
                        f"allowed 1..{bound} (integers; sw.arch.max_tt_rank)")
    return int(rank)


def _check_conv_args(in_channels: int, out_channels: int, stride: int, downsample: str) -> None:
    for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"{what} must be a positive integer, got {v!r}")
    if stride not in (1, 2):
        raise UserError(f"stride must be 1 or 2, got {stride!r}")
    if downsample not in DOWNSAMPLE_CHOICES:
        raise UserError(f"unknown downsample {downsample!r}; choose one of "
                        f"{', '.join(DOWNSAMPLE_CHOICES)}")


def relative_error(reference: Tensor, approx: Tensor) -> float:
    """``||reference - approx|| / ||reference||`` (Frobenius; 0 when both are 0)."""
    ref = reference.detach().double()
    num = torch.linalg.vector_norm(ref - approx.detach().double()).item()
    den = torch.linalg.vector_norm(ref).item()
    return num / den if den > 0 else num


class DenseConv3x3(nn.Module):
    """Dense 3x3 conv (padding 1, no bias) over ``[T, B, C, H, W]``.

    ``maxpool=True`` runs the conv at ``stride`` and then a 2x2 ceil-mode max-pool: the merged
    form of a TT conv with the reference downsampling. ``weight`` is ``self.conv.weight``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 maxpool: bool = False):
        super().__init__()
        _check_conv_args(in_channels, out_channels, stride, "maxpool")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if maxpool else None

    @property
    def weight(self) -> Tensor:
        return self.conv.weight

    def forward(self, x: Tensor) -> Tensor:
        check_tb_input(x, self.in_channels, type(self).__name__)
        # channels-last, as the TT cores: oneDNN's 3x3 convs are faster in it on this CPU
        # (forward and backward; the 2-channel stem's forward 10x) and the layout then stays
        # the same through BatchNorm, LIF and the next conv (a no-op when it already is)
        y = self.conv(_fold(x).contiguous(memory_format=torch.channels_last))
        if self.pool is not None:
            y = self.pool(y)
        return _unfold(y, x.shape[0])


class ScheduledConv3x3(nn.Module):
    """Two dense 3x3 convs, ``full`` and ``reduced``, chosen per timestep by ``schedule``
    (True = full): the merged form of an HTT conv."""

    def __init__(self, in_channels: int, out_channels: int, schedule: Sequence[bool] | None = None,
                 stride: int = 1, maxpool: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.schedule = None if schedule is None else tuple(bool(s) for s in schedule)
        self.full = DenseConv3x3(in_channels, out_channels, stride, maxpool)
        self.reduced = DenseConv3x3(in_channels, out_channels, stride, maxpool)

    def forward(self, x: Tensor) -> Tensor:
        check_tb_input(x, self.in_channels, type(self).__name__)
        sched = validate_schedule(self.schedule, x.shape[0])
        # a schedule may have no full (or no reduced) timestep: never run a conv on an empty slice
        if all(sched):
            return self.full(x)
        if not any(sched):
            return self.reduced(x)
        full = torch.tensor(sched, device=x.device)
        y_full = self.full(x[full])
        out = y_full.new_empty((x.shape[0],) + tuple(y_full.shape[1:]))
        out[full] = y_full
        out[~full] = self.reduced(x[~full])
        return out


def merge_cores(g1: Tensor, g2: Tensor, g3: Tensor, g4: Tensor, mode: str,
                timestep_class: str = "full") -> Tensor:
    """Dense ``[Cout, Cin, 3, 3]`` kernel equal to a TT conv with these core weights.

    ``g1 [r, Cin, 1, 1]``, ``g2 [r, r, 3, 1]``, ``g3 [r, r, 1, 3]``, ``g4 [Cout, r, 1, 1]``.
    ``timestep_class='reduced'`` (HTT only): the kernel of ``g4(g1(x))``, centre tap only.
    """
    if mode not in TT_MODES:
        raise UserError(f"unknown TT mode {mode!r}; choose one of {', '.join(TT_MODES)}")
    if timestep_class not in ("full", "reduced"):
        raise UserError(f"timestep_class must be 'full' or 'reduced', got {timestep_class!r}")
    if timestep_class == "reduced" and mode != "htt":
        raise UserError(f"only HTT has reduced timesteps; mode {mode!r} has only 'full'")
    a1 = g1[:, :, 0, 0]          # [r, Cin]
    a2 = g2[:, :, :, 0]          # [r_out, r_in, kh]
    a3 = g3[:, :, 0, :]          # [r_out, r_in, kw]
    a4 = g4[:, :, 0, 0]          # [Cout, r]
    cout, cin = a4.shape[0], a1.shape[1]
    if mode == "stt":
        return torch.einsum("oc,cbw,bah,ai->oihw", a4, a3, a2, a1)
    kernel = a1.new_zeros(cout, cin, 3, 3)
    if timestep_class == "reduced":
        kernel[:, :, 1, 1] = a4 @ a1
        return kernel
    kernel[:, :, :, 1] += 0.5 * torch.einsum("ob,bah,ai->oih", a4, a2, a1)
    kernel[:, :, 1, :] += 0.5 * torch.einsum("ob,baw,ai->oiw", a4, a3, a1)
    return kernel


def tt_svd_cores(weight: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """TT-SVD (tensorly) of a dense 3x3 weight ``[Cout, Cin, 3, 3]`` into the four core weights
    ``(g1 [r,Cin,1,1], g2 [r,r,3,1], g3 [r,r,1,3], g4 [Cout,r,1,1])`` (see the module docstring
    for the index mapping). Where TT-SVD needs a smaller rank than ``r`` (an unfolding has lower
    rank), the cores are zero-padded to ``r``: the product is unchanged.
    """
    from tensorly.decomposition import tensor_train

    if not isinstance(weight, Tensor) or weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise UserError(f"tt_svd_cores: expected a 3x3 conv weight [Cout, Cin, 3, 3], got {shape}")
    cout, cin = weight.shape[:2]
    rank = _check_rank(rank, cin, cout)
    tensor = weight.detach().to("cpu", torch.float64).permute(1, 2, 3, 0).numpy()
    cores = tensor_train(np.ascontiguousarray(tensor), rank=[1, rank, rank, rank, 1])
    c0, c1, c2, c3 = (torch.from_numpy(np.asarray(c, dtype=np.float64)) for c in cores)
    r1, r2, r3 = c0.shape[2], c1.shape[2], c2.shape[2]
    dtype, device = weight.dtype, weight.device
    g1 = torch.zeros(rank, cin, 1, 1, dtype=torch.float64)
    g2 = torch.zeros(rank, rank, 3, 1, dtype=torch.float64)
    g3 = torch.zeros(rank, rank, 1, 3, dtype=torch.float64)
    g4 = torch.zeros(cout, rank, 1, 1, dtype=torch.float64)
    g1[:r1, :, 0, 0] = c0[0].T                       # [a, i]
    g2[:r2, :r1, :, 0] = c1.permute(2, 0, 1)         # [b, a, kh]
    g3[:r3, :r2, 0, :] = c2.permute(2, 0, 1)         # [c, b, kw]
    g4[:, :r3, 0, 0] = c3[:, :, 0].T                 # [o, c]
    return tuple(g.to(device=device, dtype=dtype) for g in (g1, g2, g3, g4))  # type: ignore


class TTConv2d(nn.Module):
    """TT-decomposed 3x3 conv (STT, PTT or HTT) over ``[T, B, Cin, H, W]``.

    ``rank`` in ``1..sw.arch.max_tt_rank(Cin, Cout)``; ``schedule`` (HTT only): one bool per
    timestep, True = full (PTT) timestep; default the first half (any T). ``stride`` 1 or 2 with
    ``downsample`` 'maxpool' (reference) or 'stride' (see the module docstring).

    Training on binary (0/1) inputs uses :func:`sw.tt_autograd.tt_conv` (same forward result;
    the backward keeps the input as ``torch.bool`` and recomputes the rank-channel
    intermediates, or keeps them too with ``keep_rank_intermediates``) unless ``memory_saving``
    is set to False; other inputs, eval mode and no-grad use the plain path.
    """

    memory_saving: bool = True
    #: with ``memory_saving``: also keep the rank-channel intermediates for the backward
    #: instead of recomputing them (:func:`sw.tt_autograd.tt_conv`'s ``keep_rank``): faster,
    #: more memory; off by default, as the hardware recomputes them (issue 18)
    keep_rank_intermediates: bool = False

    def __init__(self, in_channels: int, out_channels: int, rank: int, mode: str = "ptt",
                 stride: int = 1, downsample: str = "maxpool",
                 schedule: Iterable[bool] | None = None):
        super().__init__()
        _check_conv_args(in_channels, out_channels, stride, downsample)
        if mode not in TT_MODES:
            raise UserError(f"unknown TT mode {mode!r}; choose one of {', '.join(TT_MODES)}")
        rank = _check_rank(rank, in_channels, out_channels)
        if schedule is not None and mode != "htt":
            raise UserError(f"schedule is only used by mode 'htt', not {mode!r}")
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        self.mode, self.stride = mode, stride
        self.downsample = downsample if stride != 1 else "none"
        if schedule is not None:  # bools, 0/1 or a '1100' string; its length is checked per input
            entries = schedule.replace(",", "") if isinstance(schedule, str) else tuple(schedule)
            schedule = validate_schedule(entries, len(entries))
        self.schedule: tuple[bool, ...] | None = schedule
        strided = self.downsample == "stride"
        s2 = (2, 1) if mode == "stt" else (2, 2)
        s3 = (1, 2) if mode == "stt" else (2, 2)
        self.g1 = nn.Conv2d(in_channels, rank, 1, bias=False)
        self.g2 = nn.Conv2d(rank, rank, (3, 1), stride=s2 if strided else 1, padding=(1, 0),
                            bias=False)
        self.g3 = nn.Conv2d(rank, rank, (1, 3), stride=s3 if strided else 1, padding=(0, 1),
                            bias=False)
        self.g4 = nn.Conv2d(rank, out_channels, 1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if self.downsample == "maxpool" else None
        self.reconstruction_error: float | None = None

    # --- forward -------------------------------------------------------------------------
    # The cores have few channels (the rank), where oneDNN's NCHW convolutions are slow; in
    # channels-last layout the 1x1 cores are plain GEMMs. Inputs are converted once (a no-op
    # when the previous TT layer already produced channels-last) and outputs stay
    # channels-last: BatchNorm, the LIF and the next TT conv take them without copies.
    def _half_cross(self, o1: Tensor) -> Tensor:
        """PTT's ``(g2(o1) + g3(o1)) / 2``, computed as ``g2'(o1) + g3'(o1)`` with the g2/g3
        weights halved: halving is exact in binary floating point, so this is the same sum of
        the same (halved) products, without an element-wise division pass forward and
        backward."""
        conv = torch.nn.functional.conv2d
        y = conv(o1, self.g2.weight * 0.5, None, self.g2.stride, self.g2.padding)
        # in place: a conv's backward needs its input and weight, not its output
        return y.add_(conv(o1, self.g3.weight * 0.5, None, self.g3.stride, self.g3.padding))

    def _full(self, x: Tensor) -> Tensor:
        o1 = self.g1(x.contiguous(memory_format=torch.channels_last))
        inner = self.g3(self.g2(o1)) if self.mode == "stt" else self._half_cross(o1)
        y = self.g4(inner)
        return self.pool(y) if self.pool is not None else y

    def _reduced(self, x: Tensor) -> Tensor:
        if self.downsample == "stride":
            x = x[:, :, ::2, ::2]
        y = self.g4(self.g1(x.contiguous(memory_format=torch.channels_last)))
        return self.pool(y) if self.pool is not None else y

    def _htt_shared(self, x: Tensor, sched: tuple[bool, ...]) -> Tensor:
        """HTT (stride-1 cores) with g1 and g4 (and the pool) each run once over all
        timesteps; only the full timesteps go through g2/g3. The same maths as running
        :meth:`_full` / :meth:`_reduced` per timestep class (g1 and g4 act per image)."""
        steps, batch = x.shape[:2]
        o1 = self.g1(_fold(x).contiguous(memory_format=torch.channels_last))  # [T*B, r, H, W]
        n_full = sum(sched)
        if n_full == 0:
            inner = o1
        elif n_full == steps:
            inner = self._half_cross(o1)
        elif all(sched[:n_full]):   # full timesteps first (the default): no gather
            # split, not two slices: its backward is one cat, not two zero-filled full grads
            o1_full, o1_reduced = o1.split([n_full * batch, (steps - n_full) * batch])
            inner = torch.cat([self._half_cross(o1_full), o1_reduced])
        else:
            chunks = list(o1.split(batch))
            full_idx = [t for t in range(steps) if sched[t]]
            mid = self._half_cross(torch.cat([chunks[t] for t in full_idx])).split(batch)
            for k, t in enumerate(full_idx):
                chunks[t] = mid[k]
            inner = torch.cat(chunks)
        y = self.g4(inner)
        if self.pool is not None:
            y = self.pool(y)
        return _unfold(y, steps)

    def full_timesteps(self, timesteps: int) -> tuple[bool, ...]:
        """Which timesteps are full for a T-step input (all for STT/PTT)."""
        if self.mode != "htt":
            return (True,) * timesteps
        return validate_schedule(self.schedule, timesteps)

    def geometry(self, timesteps: int) -> TTGeometry:
        """The non-tensor configuration of this conv for a ``timesteps``-step input."""
        return TTGeometry(self.mode, tuple(self.g2.stride), tuple(self.g3.stride),
                          self.downsample, self.full_timesteps(timesteps))

    def forward(self, x: Tensor) -> Tensor:
        check_tb_input(x, self.in_channels, f"TTConv2d({self.mode})")
        steps = x.shape[0]
        if self.memory_saving and self.training and torch.is_grad_enabled() and is_binary(x):
            return tt_conv(x, self.g1.weight, self.g2.weight, self.g3.weight, self.g4.weight,
                           self.geometry(steps), keep_rank=self.keep_rank_intermediates)
        if self.mode != "htt":
            return _unfold(self._full(_fold(x)), steps)
        sched = self.full_timesteps(steps)
        if self.downsample != "stride":
            return self._htt_shared(x, sched)
        n_full = sum(sched)
        if all(sched[:n_full]):  # full timesteps first (the default): contiguous slices
            parts = []
            if n_full:
                parts.append(_unfold(self._full(_fold(x[:n_full])), n_full))
            if n_full < steps:
                parts.append(_unfold(self._reduced(_fold(x[n_full:])), steps - n_full))
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        full = torch.tensor(sched, device=x.device)
        y_full = _unfold(self._full(_fold(x[full])), n_full) if n_full else None
        y_red = _unfold(self._reduced(_fold(x[~full])), steps - n_full)
        out = y_red.new_empty((steps,) + tuple(y_red.shape[1:]))
        out[~full] = y_red
        if y_full is not None:
            out[full] = y_full
        return out

    # --- merge-back and TT-SVD -----------------------------------------------------------
    def merged_kernel(self, timestep_class: str = "full") -> Tensor:
        """The equivalent dense ``[Cout, Cin, 3, 3]`` kernel (paper Eq. 6) of the full or (HTT)
        reduced timesteps. Apply it at ``stride`` with padding 1 ('stride' downsampling), or at
        stride 1 followed by the 2x2 ceil-mode max-pool ('maxpool')."""
        return merge_cores(self.g1.weight, self.g2.weight, self.g3.weight, self.g4.weight,
                           self.mode, timestep_class)

    def to_dense(self) -> nn.Module:
        """A :class:`DenseConv3x3` (HTT: :class:`ScheduledConv3x3`) computing the same outputs."""
        maxpool = self.downsample == "maxpool"
        stride = 2 if self.downsample == "stride" else 1
        with torch.no_grad():
            if self.mode != "htt":
                dense = DenseConv3x3(self.in_channels, self.out_channels, stride, maxpool)
                dense.to(device=self.g1.weight.device, dtype=self.g1.weight.dtype)
                dense.conv.weight.copy_(self.merged_kernel("full"))
            else:
                dense = ScheduledConv3x3(self.in_channels, self.out_channels, self.schedule,
                                         stride, maxpool)
                dense.to(device=self.g1.weight.device, dtype=self.g1.weight.dtype)
                dense.full.conv.weight.copy_(self.merged_kernel("full"))
                dense.reduced.conv.weight.copy_(self.merged_kernel("reduced"))
        return dense

    def load_dense_weight(self, weight: Tensor) -> float:
        """Initialise g1..g4 by TT-SVD of ``weight`` ``[Cout, Cin, 3, 3]`` (copied into the conv
        weights). Returns, and keeps in ``.reconstruction_error``, the relative Frobenius error
        of the TT reconstruction (= the STT merged kernel); 0 up to rounding when
        ``rank == max_tt_rank(Cin, Cout)``. PTT/HTT compute a different function of the same
        cores (their merged kernels are cross-/centre-shaped), as in the paper.
        """
        expected = (self.out_channels, self.in_channels, 3, 3)
        if not isinstance(weight, Tensor) or tuple(weight.shape) != expected:
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise UserError(f"load_dense_weight: expected a weight of shape {expected} "
                            f"[Cout, Cin, 3, 3], got {got}")
        cores = tt_svd_cores(weight, self.rank)
        with torch.no_grad():
            for conv, core in zip((self.g1, self.g2, self.g3, self.g4), cores):
                conv.weight.copy_(core)
        approx = merge_cores(*(c.double() for c in cores), mode="stt")
        self.reconstruction_error = relative_error(weight, approx)
        return self.reconstruction_error

    @classmethod
    def from_dense(cls, weight: Tensor, rank: int, mode: str = "ptt", stride: int = 1,
                   downsample: str = "maxpool",
                   schedule: Iterable[bool] | None = None) -> "TTConv2d":
        """A TT conv initialised from a dense weight by TT-SVD (see :meth:`load_dense_weight`)."""
        if not isinstance(weight, Tensor) or weight.dim() != 4:
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise UserError(f"from_dense: expected a weight [Cout, Cin, 3, 3], got {got}")
        module = cls(weight.shape[1], weight.shape[0], rank, mode, stride, downsample, schedule)
        module.to(device=weight.device, dtype=weight.dtype)
        module.load_dense_weight(weight)
        return module

    def extra_repr(self) -> str:
        extra = f", schedule={self.schedule}" if self.mode == "htt" else ""
        return (f"{self.in_channels}, {self.out_channels}, rank={self.rank}, mode={self.mode!r}, "
                f"stride={self.stride}, downsample={self.downsample!r}{extra}")
