"""Integer golden model of the accelerator's datapath, in PyTorch integer tensors.

This module implements docs/numerics.md, stage by stage, with ``int64`` tensors and no
floating-point arithmetic. The co-simulation (``cosim/``) compares the generated Verilog with
:func:`golden_tile` bit for bit; the quantiser (``sw/quantize.py``) uses :func:`golden_layer`
to measure how far the integer layer is from the float one, and :func:`clusters23` (the
routing of the three modes, used by :func:`golden_tile` too) to choose its shifts.

The stage functions are small and pure (tensors in, tensors out) so that each can be tested on
its own; :func:`golden_tile` chains them exactly as the numerics page does. Window coordinates
follow the page: a tile of ``H x W`` output pixels reads a window of ``(H + 2) x (W + 2)`` input
pixels (a one-pixel halo ring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ttsnn.sw.arch import TT_MODES
from ttsnn.sw.qlayer import QuantTTLayer
from ttsnn.sw.cli_util import UserError

__all__ = [
    "GoldenResult", "golden_tile", "golden_layer", "resolve_widths",
    "sat", "wrap", "rshift", "g1", "g2", "g3", "merge_ptt", "Clusters23", "clusters23", "g4",
    "maxpool2x2", "affine",
    "add_residual", "lif", "tile_windows", "ForwardStages", "forward_stages", "core_weights",
]


# ---- helper operations (docs/numerics.md, "Helper operations") ------------------------------

def sat(v: Tensor, bits: int) -> Tensor:
    """``sat_b``: clamp to the signed ``bits``-bit range."""
    return v.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def wrap(v: Tensor, bits: int) -> Tensor:
    """``wrap_b``: keep the low ``bits`` bits, read as two's complement."""
    half = 1 << (bits - 1)
    if v.numel():
        lo, hi = torch.aminmax(v)
        if int(lo) >= -half and int(hi) < half:
            return v                       # nothing to wrap (the common case): skip the remainder
    return torch.remainder(v + half, 1 << bits) - half


_EXACT = 1 << 53     # float64 represents every integer below this exactly


def _peak(t: Tensor) -> int:
    lo, hi = torch.aminmax(t)
    return max(-int(lo), int(hi))


def int_einsum(equation: str, a: Tensor, b: Tensor) -> Tensor:
    """``torch.einsum`` of two integer tensors, exactly. Computed in float64 (BLAS) when every
    partial sum is provably below 2^53 (``max|a| * max|b| * terms``), in int64 otherwise: the
    result is the same integer either way, the float path is many times faster on CPU."""
    if a.numel() == 0 or b.numel() == 0:
        return torch.einsum(equation, a, b)
    ins, out = equation.split("->")
    sizes: dict[str, int] = {}
    for spec, shape in zip(ins.split(","), (a.shape, b.shape)):
        head, _, tail = spec.partition("...")
        sizes.update(zip(head, shape[:len(head)]))
        sizes.update(zip(tail, shape[len(shape) - len(tail):]))
    terms = 1
    for ch in set(ins.replace(",", "").replace(".", "")) - set(out):
        terms *= sizes[ch]
    bound = _peak(a) * _peak(b) * terms
    if bound >= _EXACT:
        return torch.einsum(equation, a, b)
    return torch.einsum(equation, a.double(), b.double()).round().to(torch.int64)


def rshift(v: Tensor, shift: int, rnd: int) -> Tensor:
    """``rshift``: arithmetic right shift by ``shift``; ``rnd = 1`` adds half an LSB first
    (round half up), ``rnd = 0`` floors. ``shift = 0`` is the identity."""
    if shift < 0:
        raise UserError(f"rshift: shift must be >= 0, got {shift}")
    if shift == 0:
        return v
    if rnd:
        v = v + (1 << (shift - 1))
    return torch.div(v, 1 << shift, rounding_mode="floor")


# ---- the stages ------------------------------------------------------------------------------

def g1(x: Tensor, w1: Tensor, acc_bits: int) -> Tensor:
    """Cluster 1: 1x1 conv of spikes ``x [..., Cin, Hw, Ww]`` by ``w1 [r, Cin]``, wrapped to
    the accumulator. Returns ``a1 [..., r, Hw, Ww]``."""
    return wrap(int_einsum("kc,...chw->...khw", w1, x), acc_bits)


def g2(q1: Tensor, w2: Tensor, acc_bits: int) -> Tensor:
    """Cluster 2: 3x1 conv over rows without padding. ``q1 [..., r, H + 2, Wc]`` ->
    ``a2 [..., r, H, Wc]`` (window rows ``1..H``); ``w2 [r_out, r_in, 3]``."""
    h = q1.shape[-2] - 2
    acc = sum(int_einsum("kj,...jhw->...khw", w2[:, :, i], q1[..., i:i + h, :]) for i in range(3))
    return wrap(acc, acc_bits)


def g3(src: Tensor, w3: Tensor, acc_bits: int) -> Tensor:
    """Cluster 3: 1x3 conv over columns without padding. ``src [..., r, Hr, W + 2]`` ->
    ``a3 [..., r, Hr, W]`` (window columns ``1..W``); ``w3 [r_out, r_in, 3]``."""
    w = src.shape[-1] - 2
    acc = sum(int_einsum("kj,...jhw->...khw", w3[:, :, i], src[..., :, i:i + w]) for i in range(3))
    return wrap(acc, acc_bits)


def merge_ptt(a2: Tensor, a3: Tensor, shift3: int, rnd: int, act_bits: int) -> Tensor:
    """The adder array in PTT: ``m = a2 + a3`` (one bit wider, never wraps), then the /2
    average folded into the re-quantisation shift."""
    return sat(rshift(a2 + a3, shift3 + 1, rnd), act_bits)


#: A stage shift, or (calibration) a function choosing it from the tensor it re-quantises.
ShiftOrChooser = Union[int, Callable[[Tensor], int]]


@dataclass(frozen=True)
class Clusters23:
    """Step 4 of docs/numerics.md: ``a2`` (cluster 2), ``a3`` (cluster 3), ``q23`` (input of
    cluster 4) and the shifts used (chosen ones when a chooser was given)."""
    a2: Tensor
    a3: Tensor
    q23: Tensor
    shift2: int
    shift3: int


def clusters23(q1: Tensor, w2: Tensor, w3: Tensor, mode: str, shift2: ShiftOrChooser,
               shift3: ShiftOrChooser, rnd: int, act_bits: int, acc_bits: int,
               full: Tensor | None = None) -> Clusters23:
    """Clusters 2 and 3 with the routing of each mode (docs/numerics.md step 4), the one
    implementation of it.

    ``q1 [T, ..., r, H + 2, W + 2]`` is cluster 1's output on the whole window; ``full [T]``
    (bool, required for HTT) marks the full timesteps. STT: ``q2`` re-quantised by ``shift2``
    feeds G3; PTT: G2 and G3 both read ``q1``, merged with ``shift3 + 1``; HTT: PTT on full
    timesteps, ``q1`` bypassing on reduced ones. Returns ``a2, a3, q23`` as ``[T, ..., r, H, W]``
    (STT's ``a2`` is ``[..., H, W + 2]``, the columns G3 reads). A shift may be a function of
    the accumulator it re-quantises (``a2``; ``a3`` in STT, ``m = a2 + a3`` in PTT and HTT,
    over all timesteps), called once, so that a calibration chooses it on the same tensors.
    """
    if mode not in TT_MODES:
        raise UserError(f"mode must be 'stt', 'ptt' or 'htt', got {mode!r}")
    if mode == "htt" and full is None:
        raise UserError("HTT needs the full-timestep mask 'full' [T]")
    h, w = q1.shape[-2] - 2, q1.shape[-1] - 2

    def chosen(shift: ShiftOrChooser, acc: Tensor) -> int:
        return int(shift(acc)) if callable(shift) else int(shift)

    if mode == "stt":
        a2 = g2(q1, w2, acc_bits)                                         # [.., r, H, W+2]
        s2 = chosen(shift2, a2)
        a3 = g3(sat(rshift(a2, s2, rnd), act_bits), w3, acc_bits)         # [.., r, H, W]
        s3 = chosen(shift3, a3)
        return Clusters23(a2, a3, sat(rshift(a3, s3, rnd), act_bits), s2, s3)
    a2 = g2(q1[..., 1:w + 1], w2, acc_bits)                               # [.., r, H, W]
    a3 = g3(q1[..., 1:h + 1, :], w3, acc_bits)                            # [.., r, H, W]
    s2 = 0 if callable(shift2) else int(shift2)                           # unused outside STT
    s3 = int(shift3(a2 + a3)) if callable(shift3) else int(shift3)
    q23 = merge_ptt(a2, a3, s3, rnd, act_bits)
    if mode == "htt":
        mask = torch.as_tensor(full, dtype=torch.bool).reshape(-1, *([1] * (q23.dim() - 1)))
        q23 = torch.where(mask, q23, q1[..., 1:h + 1, 1:w + 1])
    return Clusters23(a2, a3, q23, s2, s3)


def g4(q23: Tensor, w4: Tensor, acc_bits: int) -> Tensor:
    """Cluster 4: 1x1 conv ``r -> Cout`` by ``w4 [Cout, r]``, wrapped to the accumulator."""
    return wrap(int_einsum("ok,...khw->...ohw", w4, q23), acc_bits)


def maxpool2x2(a: Tensor) -> Tensor:
    """Signed 2x2 max-pool with stride 2 over the last two dimensions (both even)."""
    h, w = a.shape[-2:]
    if h % 2 or w % 2:
        raise UserError(f"max-pool needs an even tile height and width, got {h}x{w}")
    blocks = a.reshape(*a.shape[:-2], h // 2, 2, w // 2, 2)
    return blocks.amax(dim=(-3, -1))


def affine(p: Tensor, scale: Tensor, bias: Tensor, affine_shift: int, rnd: int,
           mem_bits: int) -> Tensor:
    """Folded BatchNorm: ``sat_Mb(rshift(p * scale, affine_shift) + bias)`` per channel.
    ``p [..., Cout, H, W]``; ``scale`` and ``bias`` ``[Cout]``."""
    prod = p * scale[:, None, None]
    return sat(rshift(prod, affine_shift, rnd) + bias[:, None, None], mem_bits)


def add_residual(cur: Tensor, res: Tensor, mem_bits: int) -> Tensor:
    """Membrane shortcut: ``sat_Mb(cur + res)``."""
    return sat(cur + res, mem_bits)


def lif(current: Tensor, threshold: int, leak_mul: int, leak_shift: int, rnd: int,
        mem_bits: int) -> tuple[Tensor, Tensor]:
    """LIF array over time. ``current [T, ...]`` -> ``(spikes uint8, membrane int64)``, both
    ``[T, ...]``; hard reset, leak ``rshift(u * leak_mul, leak_shift)``, strict threshold."""
    u = torch.zeros_like(current[0])
    s = torch.zeros_like(current[0], dtype=torch.bool)
    spikes, membrane = [], []
    for t in range(current.shape[0]):
        kept = torch.where(s, torch.zeros_like(u), u)
        leaked = rshift(kept * leak_mul, leak_shift, rnd)
        u = sat(leaked + current[t], mem_bits)
        s = u > threshold
        spikes.append(s.to(torch.uint8))
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane)


# ---- whole tile / whole layer ----------------------------------------------------------------

@dataclass(frozen=True)
class GoldenResult:
    """Outputs of one tile (or layer) over all timesteps.

    ``spikes [T, Cout, Ho, Wo]`` (uint8) and ``membrane [T, Cout, Ho, Wo]`` (int64) are what the
    accelerator writes to ``state_out``. The intermediates are filled when asked for
    (``intermediates=True``): ``q1 [T, r, H + 2, W + 2]`` (cluster 1, whole window),
    ``q23 [T, r, H, W]`` (input of cluster 4), ``a4 [T, Cout, H, W]`` (cluster 4) and
    ``current [T, Cout, Ho, Wo]`` (the LIF input, after affine and residual).
    """
    spikes: Tensor
    membrane: Tensor
    q1: Tensor | None = None
    q23: Tensor | None = None
    a4: Tensor | None = None
    current: Tensor | None = None


def resolve_widths(widths: Any):
    """Accept a ``gen.config.Widths``, a ``HardwareConfig`` (its ``.widths``) or a mapping
    with the same field names."""
    if hasattr(widths, "widths"):
        widths = widths.widths
    if isinstance(widths, dict):
        from types import SimpleNamespace
        widths = SimpleNamespace(**widths)
    for name in ("weight", "activation", "accumulator", "membrane", "affine_scale", "leak_mul"):
        if not hasattr(widths, name):
            raise ValueError(f"widths: missing field {name!r}; pass a gen.config.Widths "
                             f"(load_config(...).widths)")
    return widths


def _int_tensor(name: str, value: Any) -> Tensor:
    t = torch.as_tensor(np.asarray(value)) if not isinstance(value, Tensor) else value
    if t.is_floating_point() or t.is_complex():
        raise UserError(f"{name}: expected an integer tensor, got dtype {t.dtype}")
    return t.to(torch.int64)


def golden_tile(qlayer: QuantTTLayer, window_spikes: Any, residual: Any | None, widths: Any,
                intermediates: bool = False) -> GoldenResult:
    """Compute one tile over all timesteps, exactly as docs/numerics.md defines it.

    ``window_spikes [T, Cin, H + 2, W + 2]`` holds 0/1 spikes of the tile and its halo ring;
    ``residual [T, Cout, Ho, Wo]`` (required iff ``qlayer.residual``) is the membrane-shortcut
    input, with ``Ho, Wo = H, W`` (or ``H/2, W/2`` when ``qlayer.pool``).
    """
    wd = resolve_widths(widths)
    qlayer.check_fits(wd)
    x = _int_tensor("window_spikes", window_spikes)
    if x.ndim != 4 or x.shape[0] < 1:
        raise UserError(f"window_spikes: expected [T, Cin, H+2, W+2] with T >= 1, got shape {tuple(x.shape)}")
    t_steps, cin, hw, ww = x.shape
    if cin != qlayer.in_channels:
        raise UserError(f"window_spikes: {cin} input channels, the layer has {qlayer.in_channels}")
    if hw < 3 or ww < 3:
        raise UserError(f"window_spikes: window {hw}x{ww} is smaller than 3x3 (1x1 tile + halo)")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise UserError("window_spikes: spikes must be 0 or 1, got values in "
                        f"[{int(x.min())}, {int(x.max())}]")
    h, w = hw - 2, ww - 2
    if qlayer.pool and (h % 2 or w % 2):
        raise UserError(f"pooling layer: tile {h}x{w} must have an even height and width")
    ho, wo = (h // 2, w // 2) if qlayer.pool else (h, w)
    cout = qlayer.out_channels
    if qlayer.residual:
        if residual is None:
            raise UserError("the layer has a residual input but none was given")
        res = _int_tensor("residual", residual)
        if tuple(res.shape) != (t_steps, cout, ho, wo):
            raise UserError(f"residual: expected shape {(t_steps, cout, ho, wo)}, got {tuple(res.shape)}")
        mlo, mhi = -(1 << (wd.membrane - 1)), (1 << (wd.membrane - 1)) - 1
        if res.numel() and (res.min() < mlo or res.max() > mhi):
            raise UserError(f"residual: values in [{int(res.min())}, {int(res.max())}] do not fit "
                            f"the {wd.membrane}-bit membrane format [{mlo}, {mhi}]")
    else:
        res = None
    full = torch.tensor(qlayer.full_timesteps(t_steps))
    st = forward_stages(qlayer, x, res, wd, full)
    if not intermediates:
        return GoldenResult(spikes=st.spikes, membrane=st.membrane)
    return GoldenResult(spikes=st.spikes, membrane=st.membrane, q1=st.q1, q23=st.q23, a4=st.a4,
                        current=st.current)


@dataclass(frozen=True)
class ForwardStages:
    """Every value of the forward chain of one tile (``[T, ..., C, h, w]``): what
    :func:`golden_tile` returns part of, and what the backward pass (``sw.golden_backward``)
    recomputes or keeps. ``clusters`` holds ``a2``/``a3`` and the shifts of step 4."""
    q1: Tensor
    clusters: Clusters23
    q23: Tensor
    a4: Tensor
    pooled: Tensor
    current: Tensor
    spikes: Tensor
    membrane: Tensor


def core_weights(qlayer: QuantTTLayer) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four cores of ``qlayer`` as int64 tensors ``w1 [r, Cin]``, ``w2``/``w3 [r, r, 3]``,
    ``w4 [Cout, r]``."""
    return tuple(torch.from_numpy(np.array(getattr(qlayer, n))) for n in ("w1", "w2", "w3", "w4"))


def forward_stages(qlayer: QuantTTLayer, x: Tensor, res: Tensor | None, wd: Any,
                   full: Tensor) -> ForwardStages:
    """Steps 1-9 of docs/numerics.md on a checked window ``x [T, ..., Cin, H + 2, W + 2]``
    (leading dimensions after ``T``, e.g. samples, are carried through), the residual
    ``res [T, ..., Cout, Ho, Wo]`` or None, ``full [T]`` the timestep classes."""
    ab, qb, mb, rnd = wd.accumulator, wd.activation, wd.membrane, qlayer.round
    w1, w2, w3, w4 = core_weights(qlayer)
    t_steps = x.shape[0]

    q1 = sat(rshift(g1(x, w1, ab), qlayer.shift1, rnd), qb)               # [T, r, H+2, W+2]
    c23 = clusters23(q1, w2, w3, qlayer.mode, qlayer.shift2, qlayer.shift3, rnd, qb, ab, full)
    a4 = g4(c23.q23, w4, ab)                                              # [T, Cout, H, W]
    p = maxpool2x2(a4) if qlayer.pool else a4

    scale = torch.from_numpy(np.array(qlayer.scale))                      # [2, Cout]
    bias = torch.from_numpy(np.array(qlayer.bias))
    cls = (~full).to(torch.int64)                                         # 0 full, 1 reduced
    cur = torch.stack([affine(p[t], scale[cls[t]], bias, qlayer.affine_shift, rnd, mb)
                       for t in range(t_steps)])
    if res is not None:
        cur = add_residual(cur, res, mb)
    spikes, membrane = lif(cur, qlayer.threshold, qlayer.leak_mul, qlayer.leak_shift, rnd, mb)
    return ForwardStages(q1=q1, clusters=c23, q23=c23.q23, a4=a4, pooled=p, current=cur,
                         spikes=spikes, membrane=membrane)


def golden_layer(qlayer: QuantTTLayer, spikes: Any, residual: Any | None, widths: Any,
                 intermediates: bool = False) -> GoldenResult:
    """The whole layer untiled: ``spikes [T, Cin, H, W]`` zero-padded by one pixel (equal to
    zero padding of each core, since no core has a bias) and computed as one tile."""
    x = _int_tensor("spikes", spikes)
    if x.ndim != 4:
        raise UserError(f"spikes: expected [T, Cin, H, W], got shape {tuple(x.shape)}")
    window = torch.nn.functional.pad(x, (1, 1, 1, 1))
    return golden_tile(qlayer, window, residual, widths, intermediates=intermediates)


def tile_windows(spikes: Tensor, tile_h: int, tile_w: int) -> Sequence[tuple[int, int, Tensor]]:
    """Split ``spikes [T, Cin, H, W]`` into ``(row0, col0, window)`` tiles of at most
    ``tile_h x tile_w`` outputs, each window with its one-pixel halo (zeros outside the layer).
    A reference for tests and for callers without the hardware driver."""
    padded = torch.nn.functional.pad(_int_tensor("spikes", spikes), (1, 1, 1, 1))
    h, w = spikes.shape[-2:]
    out = []
    for r0 in range(0, h, tile_h):
        for c0 in range(0, w, tile_w):
            r1, c1 = min(r0 + tile_h, h), min(c0 + tile_w, w)
            out.append((r0, c0, padded[..., r0:r1 + 2, c0:c1 + 2]))
    return out
