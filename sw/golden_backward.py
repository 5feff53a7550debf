"""Integer golden model of the backward pass (BPTT) of one TT layer, in PyTorch integer tensors.

This module implements the section "Backward pass" of docs/numerics.md, stage by stage, beside
the forward stages of :mod:`sw.golden`. The forward tile returns a :class:`ForwardTrace`: exactly
what the hardware keeps for the backward pass (per output neuron and timestep the spike and the
surrogate-window bit, per pooled output the 2-bit arg-max; the input spikes are the previous
layer's output spikes, kept anyway). :func:`backward_tile` consumes only that trace and the
incoming gradients; it recomputes the inter-stage activations ``q1``, ``q2`` and ``q23`` from
the input spikes, as the hardware does.

Every tensor here is ``[T, B, C, h, w]`` (``B`` samples, one tile pass each). Gradients are
integers of ``gradients.width`` bits; their float meaning (the value of one LSB) is bookkept by
:func:`gradient_lsbs`, never by the hardware. A stage's shift may be given as an integer or as
a function choosing it from the accumulator it re-quantises (:func:`calibrate_backward` uses
that to pick the smallest shift that does not saturate).

Tiles: a backward tile produces the input gradient and the weight-gradient sums of its own
``H x W`` pre-pool pixels from gradients over a one-pixel halo ring (``(Ho + 2) x (Wo + 2)`` in
output coordinates) and the forward window of input spikes (``(H + 2) x (W + 2)``), so tiles
never exchange partial sums; the ring's values are recomputed, and stochastic rounding is
hashed from layer coordinates, so they equal the neighbour's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Union

import numpy as np
import torch
from torch import Tensor

from ttsnn.sw import golden
from ttsnn.sw.golden import sat, wrap
from ttsnn.sw.qlayer import QuantTTLayer
from ttsnn.sw.quantize import pow2_fraction
from ttsnn.sw.cli_util import UserError

__all__ = [
    "GRAD_ROUNDINGS", "STAGE_IDS", "lowbias32", "element_index", "GradRounding", "requantize",
    "ForwardTrace", "forward_trace", "window_bits", "maxpool2x2_argmax", "BackwardParams",
    "lif_grad", "affine_product", "affine_grad", "maxpool2x2_grad", "g4_t", "g23_t_ptt", "g3_t", "g2_t", "g1_t",
    "wgrad_pointwise", "wgrad_rows", "wgrad_cols", "BackwardResult", "backward_tile",
    "backward_layer", "calibrate_backward", "gradient_lsbs", "surrogate_params",
    "pad_trace", "accumulate_batch",
]

GRAD_ROUNDINGS = ("nearest", "floor", "stochastic")
#: The salt of each re-quantising stage in the stochastic-rounding hash (docs/numerics.md).
STAGE_IDS = {"leak": 0, "height": 1, "affine": 2, "g4t": 3, "g3t": 4, "g23t": 5, "g1t": 6}
_M32 = 0xFFFFFFFF

#: A stage's shift: an integer, or "auto" (calibration: the smallest shift >= 0 that saturates
#: nothing on the data at hand).
ShiftOrAuto = Union[int, str]


# ---- stochastic rounding: a dither hashed from layer coordinates ---------------------------

def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2^32`` for ``0 <= x < 2^32``, without int64 overflow (16-bit halves)."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + ((hi * c) & 0xFFFF) * 65536) & _M32


def lowbias32(x: Tensor) -> Tensor:
    """The 32-bit integer hash used for the dither: xor-shift, multiply, twice (C. Wellons'
    ``lowbias32``; two constant multipliers per lane in hardware)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def element_index(shape: tuple[int, ...], origin: tuple[int, int], layer_hw: tuple[int, int],
                  sample0: int = 0) -> Tensor:
    """The layer coordinate index of every element of a ``[T, B, C, h, w]`` tensor whose
    pixel ``(0, 0)`` sits at layer row/column ``origin`` of a ``layer_hw`` map:
    ``((((b0 + b) * T + t) * C + c) * H + y) * W + x  mod 2^32``."""
    t_, b_, c_, h_, w_ = shape
    hl, wl = layer_hw
    t = torch.arange(t_).view(-1, 1, 1, 1, 1)
    b = torch.arange(b_).view(1, -1, 1, 1, 1) + sample0
    c = torch.arange(c_).view(1, 1, -1, 1, 1)
    y = (torch.arange(h_) + origin[0]).view(1, 1, 1, -1, 1)
    x = (torch.arange(w_) + origin[1]).view(1, 1, 1, 1, -1)
    idx = (((b * t_ + t) * c_ + c) * hl + y) * wl + x
    return idx & _M32


@dataclass(frozen=True)
class GradRounding:
    """Rounding of every backward re-quantisation: ``nearest`` (half up), ``floor``, or
    ``stochastic`` (``floor((v + r) / 2^s)`` with ``r`` the low ``s`` bits of
    ``lowbias32(index ^ key)``, ``key = lowbias32(16 * seed + stage)``)."""
    mode: str = "nearest"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in GRAD_ROUNDINGS:
            raise UserError(f"gradient rounding must be one of {GRAD_ROUNDINGS}, got {self.mode!r}")

    def dither(self, stage: str, index: Callable[[], Tensor] | None) -> Tensor | None:
        """The 32 hashed bits of every element (stochastic rounding only; None otherwise)."""
        if self.mode != "stochastic":
            return None
        if index is None:
            raise ValueError("stochastic rounding needs the elements' layer coordinates")
        key = lowbias32(torch.tensor(16 * self.seed + STAGE_IDS[stage]))
        return lowbias32(index() ^ key)

    def shift(self, v: Tensor, s: int, stage: str, index: Callable[[], Tensor] | None,
              dither: Tensor | None = None) -> Tensor:
        """``v / 2^s`` rounded; ``s < 0`` is an exact left shift. ``dither``: the stage's
        :meth:`dither` bits when already computed (stochastic rounding)."""
        if s <= 0:
            return v * (1 << -s)
        if self.mode == "floor":
            return torch.div(v, 1 << s, rounding_mode="floor")
        if self.mode == "nearest":
            return torch.div(v + (1 << (s - 1)), 1 << s, rounding_mode="floor")
        if s > 32:
            raise UserError(f"stochastic rounding: shift {s} exceeds the 32 dither bits")
        bits = dither if dither is not None else self.dither(stage, index)
        return torch.div(v + (bits & ((1 << s) - 1)), 1 << s, rounding_mode="floor")


def requantize(acc: Tensor, shift: int, bits: int, rnd: GradRounding, stage: str,
               index: Callable[[], Tensor] | None) -> tuple[Tensor, int]:
    """``sat_G(round(acc / 2^shift))`` and the number of saturated elements."""
    v = rnd.shift(acc, shift, stage, index)
    q = sat(v, bits)
    return q, int((q != v).sum())


def _choose(shift: ShiftOrAuto, bits: int, apply: Callable[[int], Tensor]) -> tuple[int, Tensor]:
    """``(s, apply(s))``: ``shift`` itself, or for "auto" the smallest ``s >= 0`` whose
    ``apply(s)`` (the stage's rounded values at shift ``s``) fits signed ``bits``. The values
    come back so that the stage does not round them a second time."""
    if shift != "auto":
        return int(shift), apply(int(shift))
    lim = 1 << (bits - 1)
    s, v = 0, apply(0)
    if v.numel():
        start = int(v.abs().max()).bit_length() - bits - 1   # below this even the peak cannot fit
        if start > 0:
            s, v = start, apply(start)
    while v.numel() and not (int(v.max()) < lim and int(v.min()) >= -lim):
        if s >= 62:
            raise ValueError("no shift brings the gradients into the format")  # unreachable: v -> 0
        s += 1
        v = apply(s)
    return s, v


# ---- what the forward pass keeps --------------------------------------------------------------

def maxpool2x2_argmax(a: Tensor) -> Tensor:
    """Position (0..3, raster order: row-major in the 2x2 block) of the first maximum of each
    2x2 block of ``a`` (signed); the hardware's comparator tree keeps the first on ties."""
    h, w = a.shape[-2:]
    blocks = a.reshape(*a.shape[:-2], h // 2, 2, w // 2, 2).movedim(-3, -2)
    flat = blocks.reshape(*blocks.shape[:-2], 4)
    return torch.argmax(flat, dim=-1)           # first index of the maximum


def window_bits(membrane: Tensor, lo: int, hi: int) -> Tensor:
    """The surrogate window bit ``m = lo < u < hi`` (strict both sides, the rectangle
    ``|u - V_th| < a/2`` in the membrane fixed point)."""
    return ((membrane > lo) & (membrane < hi)).to(torch.uint8)


@dataclass(frozen=True)
class ForwardTrace:
    """What the forward pass of one tile keeps for the backward pass, ``[T, B, ...]``.

    ``x``: the input-spike window ``[T, B, Cin, H + 2, W + 2]``; ``spikes`` and ``window``
    (uint8 0/1) ``[T, B, Cout, Ho, Wo]``; ``argmax`` (0..3, pooling layers only) the same
    shape. 2 bits per output neuron and timestep, plus 2 bits per pooled output.
    """
    x: Tensor
    spikes: Tensor
    window: Tensor
    argmax: Tensor | None

    @property
    def stored_bits(self) -> int:
        """Bits the hardware writes for this trace beyond the input spikes."""
        n = self.spikes.numel() + self.window.numel()
        return n + (2 * self.argmax.numel() if self.argmax is not None else 0)


def forward_trace(qlayer: QuantTTLayer, window_spikes: Tensor, residual: Tensor | None,
                  widths: Any, window_lo: int, window_hi: int) -> tuple[ForwardTrace, Tensor, Tensor]:
    """Run the forward tile (``sw.golden``'s stages) on ``window_spikes [T, B, Cin, H+2, W+2]``
    and return ``(trace, membrane, current)``; membrane and current (LIF input) are returned
    for the caller (the float model's shortcut), not kept by the hardware."""
    wd = golden.resolve_widths(widths)
    qlayer.check_fits(wd)
    x = window_spikes.to(torch.int64)
    full = torch.tensor(qlayer.full_timesteps(x.shape[0]))
    res = None if residual is None else residual.to(torch.int64)
    st = golden.forward_stages(qlayer, x, res, wd, full)
    arg = maxpool2x2_argmax(st.a4) if qlayer.pool else None
    trace = ForwardTrace(x=x, spikes=st.spikes, window=window_bits(st.membrane, window_lo, window_hi),
                         argmax=arg)
    return trace, st.membrane, st.current


def pad_trace(trace: ForwardTrace) -> ForwardTrace:
    """The trace of a whole layer with the zero halo ring a backward tile reads (outside the
    layer: no spike, no window, any arg-max)."""
    pad = lambda t: torch.nn.functional.pad(t, (1, 1, 1, 1))  # noqa: E731
    return ForwardTrace(x=trace.x, spikes=pad(trace.spikes), window=pad(trace.window),
                        argmax=None if trace.argmax is None else pad(trace.argmax))


# ---- backward stages (pure) -------------------------------------------------------------------

def lif_grad(e: Tensor, spikes: Tensor, window: Tensor, *, height_mul: int, height_shift: int,
             leak_mul: int, leak_shift: int, bits: int, rnd: GradRounding,
             index: Callable[[], Tensor] | None = None) -> tuple[Tensor, int]:
    """LIF gradient over time, ``t = T-1 .. 0`` (reset detached):
    ``d[t] = sat_G( m[t] ? round(e[t] * height_mul / 2^height_shift) : 0
    + (s[t] ? 0 : round(d[t+1] * leak_mul / 2^leak_shift)) )``, ``d[T] = 0``."""
    steps = e.shape[0]
    h_bits, l_bits = rnd.dither("height", index), rnd.dither("leak", index)
    d_next = torch.zeros_like(e[0])
    out, n_sat = [], 0
    for t in reversed(range(steps)):
        direct = torch.where(window[t].bool(),
                             rnd.shift(e[t] * height_mul, height_shift, "height", None,
                                       None if h_bits is None else h_bits[t]),
                             torch.zeros_like(e[t]))
        through = torch.where(spikes[t].bool(), torch.zeros_like(d_next),
                              rnd.shift(d_next * leak_mul, leak_shift, "leak", None,
                                        None if l_bits is None else l_bits[t]))
        v = direct + through
        d_next = sat(v, bits)
        n_sat += int((d_next != v).sum())
        out.append(d_next)
    return torch.stack(out[::-1]), n_sat


def affine_product(g_cur: Tensor, scale: Tensor, full: Tensor) -> Tensor:
    """The exact product of the folded-BatchNorm gradient: ``g_cur[t, o] * scale[cls_t, o]``,
    ``cls_t`` 0 on full and 1 on HTT's reduced timesteps (``g_cur [T, B, Cout, h, w]``)."""
    k = scale[(~full).to(torch.int64)].view(g_cur.shape[0], 1, -1, 1, 1)    # [T, 1, Cout, 1, 1]
    return g_cur * k


def affine_grad(g_cur: Tensor, scale: Tensor, full: Tensor, shift: int, bits: int,
                rnd: GradRounding, index: Callable[[], Tensor] | None = None) -> tuple[Tensor, int]:
    """Folded BatchNorm (frozen): ``g_p = sat_G(round(affine_product / 2^shift))``."""
    return requantize(affine_product(g_cur, scale, full), shift, bits, rnd, "affine", index)


def maxpool2x2_grad(g_p: Tensor, argmax: Tensor) -> Tensor:
    """Route each pooled gradient to the arg-max position of its 2x2 block."""
    onehot = torch.nn.functional.one_hot(argmax, 4).to(g_p.dtype)       # [..., h, w, 4]
    blocks = (onehot * g_p.unsqueeze(-1)).reshape(*g_p.shape, 2, 2)    # [..., h, w, 2, 2]
    h, w = g_p.shape[-2:]
    return blocks.movedim(-2, -3).reshape(*g_p.shape[:-2], 2 * h, 2 * w)


def g4_t(g_a4: Tensor, w4: Tensor, acc_bits: int) -> Tensor:
    """G4^T (1x1, ``Cout -> r``): ``acc[k] = sum_o w4[o, k] * g[o]``."""
    return wrap(golden.int_einsum("ok,...ohw->...khw", w4, g_a4), acc_bits)


def g2_t(g: Tensor, w2: Tensor, acc_bits: int) -> Tensor:
    """G2^T (3x1 transposed, gather form): ``g [..., r, H + 2, Wc]`` over the tile's rows and
    the halo rows -> ``acc [..., r, H, Wc]``: ``acc[j, y] = sum_{k, i} w2[k, j, i] *
    g[k, y + 1 - i]`` (window rows)."""
    h = g.shape[-2] - 2
    acc = sum(golden.int_einsum("kj,...khw->...jhw", w2[:, :, i], g[..., 2 - i:2 - i + h, :])
              for i in range(3))
    return wrap(acc, acc_bits)


def g3_t(g: Tensor, w3: Tensor, acc_bits: int) -> Tensor:
    """G3^T (1x3 transposed): ``g [..., r, Hr, W + 2]`` -> ``acc [..., r, Hr, W]``."""
    w = g.shape[-1] - 2
    acc = sum(golden.int_einsum("kj,...khw->...jhw", w3[:, :, i], g[..., :, 2 - i:2 - i + w])
              for i in range(3))
    return wrap(acc, acc_bits)


def g23_t_ptt(g: Tensor, w2: Tensor, w3: Tensor, acc_bits: int) -> Tensor:
    """PTT: both branches on the same gradient window ``g [..., r, H + 2, W + 2]``, summed:
    ``acc = G2^T g + G3^T g`` over the tile's ``H x W`` pixels (one adder wider)."""
    h, w = g.shape[-2] - 2, g.shape[-1] - 2
    return wrap(g2_t(g[..., :, 1:w + 1], w2, acc_bits + 1)
                + g3_t(g[..., 1:h + 1, :], w3, acc_bits + 1), acc_bits + 1)


def g1_t(g_q1: Tensor, w1: Tensor, acc_bits: int) -> Tensor:
    """G1^T (1x1, ``r -> Cin``): ``acc[c] = sum_k w1[k, c] * g[k]``."""
    return wrap(golden.int_einsum("kc,...khw->...chw", w1, g_q1), acc_bits)


def wgrad_pointwise(g: Tensor, act: Tensor) -> Tensor:
    """``dW[o, k] = sum_{t, pixels} g[t, b, o] * act[t, b, k]`` per sample: ``[B, O, K]``."""
    return golden.int_einsum("tbohw,tbkhw->bok", g, act)


def wgrad_rows(g: Tensor, act: Tensor) -> Tensor:
    """3x1 core: ``dW[k, j, i] = sum g[k, y, x] * act[j, y + i - 1, x]`` with ``g [.., H, W]``
    and ``act [.., H + 2, W]`` (window rows): ``[B, r, r, 3]``."""
    h = g.shape[-2]
    return torch.stack([golden.int_einsum("tbkhw,tbjhw->bkj", g, act[..., i:i + h, :])
                        for i in range(3)], dim=-1)


def wgrad_cols(g: Tensor, act: Tensor) -> Tensor:
    """1x3 core: ``dW[k, j, i] = sum g[k, y, x] * act[j, y, x + i - 1]``, ``act [.., H, W + 2]``."""
    w = g.shape[-1]
    return torch.stack([golden.int_einsum("tbkhw,tbjhw->bkj", g, act[..., i:i + w])
                        for i in range(3)], dim=-1)


# ---- one backward tile -----------------------------------------------------------------------

@dataclass(frozen=True)
class BackwardParams:
    """The per-layer constants of the backward pass (descriptor fields of the backward pass).

    ``window_lo``/``window_hi``: surrogate window in the membrane fixed point (the forward LIF
    computes the window bit with them); ``height_mul / 2^height_shift``: the surrogate height;
    ``shifts`` of the re-quantising stages: ``affine`` (folded-BN gradient), ``g4t`` (G4^T ->
    ``g_q23``), ``g3t`` (STT only: G3^T -> ``g_q2``), ``g23t`` (G2^T (+ G3^T) -> ``g_q1``),
    ``g1t`` (G1^T -> input gradient); "auto" during calibration.
    """
    window_lo: int
    window_hi: int
    height_mul: int = 1
    height_shift: int = 0
    shifts: Mapping[str, ShiftOrAuto] = field(default_factory=dict)

    def shift(self, stage: str) -> ShiftOrAuto:
        if stage not in self.shifts:
            raise ValueError(f"BackwardParams: no shift for stage {stage!r} (have {sorted(self.shifts)})")
        return self.shifts[stage]


@dataclass(frozen=True)
class BackwardResult:
    """One backward tile (or layer), per sample where it matters.

    ``e_in [T, B, Cin, H, W]``: gradient of the input spikes (the previous layer's ``e``);
    ``g_current [T, B, Cout, Ho, Wo]``: gradient of the LIF input current (also the residual
    input's gradient, which leaves the tile for the shortcut); ``dw`` the weight-gradient sums of
    each core over the tile's pixels and timesteps, per sample (``[B, ...]``, wrapped to
    ``gradients.wgrad_tile``); ``shifts`` the shifts used; ``saturations`` per stage.
    """
    e_in: Tensor
    g_current: Tensor
    dw: dict[str, Tensor]
    shifts: dict[str, int]
    saturations: dict[str, int]
    requantised: dict[str, int] = field(default_factory=dict)

    @property
    def saturated_share(self) -> float:
        """Saturated elements over all elements the stages re-quantised."""
        n = sum(self.requantised.values())
        return sum(self.saturations.values()) / n if n else 0.0


def _as5d(t: Tensor | None) -> Tensor | None:
    return None if t is None else (t.unsqueeze(1) if t.dim() == 4 else t).to(torch.int64)


@dataclass(frozen=True)
class _Coords:
    """Layer coordinates of a tile's tensors, for the stochastic-rounding index: the tile's
    own pre-pool pixels start at layer ``(y0, x0)`` of a pre-pool map ``hw``."""
    y0: int
    x0: int
    hw: tuple[int, int]
    pool: bool
    sample0: int

    def out_ring(self, shape) -> Callable[[], Tensor]:
        """Index of a tensor over the output pixels plus the halo ring (pooled if pooling)."""
        f = 2 if self.pool else 1
        hw = (self.hw[0] // f, self.hw[1] // f)
        return lambda: element_index(tuple(shape), (self.y0 // f - 1, self.x0 // f - 1), hw, self.sample0)

    def pre_pool(self, shape, ring_y: int, ring_x: int) -> Callable[[], Tensor]:
        """Index of a tensor over the pre-pool pixels plus halo rows/columns."""
        return lambda: element_index(tuple(shape), (self.y0 - ring_y, self.x0 - ring_x), self.hw,
                                     self.sample0)


@dataclass
class _Stage:
    """Shared state of one backward tile's stages: formats, rounding, coordinates, and the
    shifts used and saturations counted so far."""
    gb: int
    gacc: int
    rnd: GradRounding
    coords: _Coords
    params: BackwardParams
    used: dict[str, int] = field(default_factory=dict)
    sats: dict[str, int] = field(default_factory=dict)
    produced: dict[str, int] = field(default_factory=dict)

    def requant(self, stage: str, acc: Tensor, index: Callable[[], Tensor]) -> Tensor:
        dither = self.rnd.dither(stage, index)            # hashed once per stage
        rounded = lambda s: self.rnd.shift(acc, s, stage, index, dither)   # noqa: E731
        self.used[stage], v = _choose(self.params.shift(stage), self.gb, rounded)
        q = sat(v, self.gb)
        self.sats[stage], self.produced[stage] = int((q != v).sum()), v.numel()
        return q


def backward_tile(qlayer: QuantTTLayer, trace: ForwardTrace, e: Tensor, widths: Any, grads: Any,
                  params: BackwardParams, g_extra: Tensor | None = None,
                  rounding: GradRounding | None = None, origin: tuple[int, int] = (0, 0),
                  layer_hw: tuple[int, int] | None = None, sample0: int = 0) -> BackwardResult:
    """Backward pass of one tile, exactly as docs/numerics.md ("Backward pass") defines it.

    ``e [T, B, Cout, Ho + 2, Wo + 2]``: gradient of the output spikes over the tile's output
    pixels and a halo ring (zero outside the layer); ``g_extra`` (same shape, optional): the
    gradient reaching the LIF input current from its other consumers (the next block's
    membrane shortcut); ``trace``: the forward trace over the same ring (``x`` the forward
    window); ``grads``: a ``gen.config.GradientFormats``. ``origin``/``layer_hw``: where the
    tile's own pre-pool pixels sit in the layer (for the stochastic dither only).
    """
    wd = golden.resolve_widths(widths)
    x, e, g_extra = _as5d(trace.x), _as5d(e), _as5d(g_extra)
    steps, _, _, hw, ww = x.shape
    h, w = hw - 2, ww - 2
    ho, wo = (h // 2, w // 2) if qlayer.pool else (h, w)
    if e.dim() != 5 or tuple(e.shape[-2:]) != (ho + 2, wo + 2) or e.shape[2] != qlayer.out_channels \
            or e.shape[0] != steps:
        raise UserError(f"e: expected [T={steps}, B, {qlayer.out_channels}, {ho + 2}, {wo + 2}] "
                        f"(output pixels plus the halo ring), got {tuple(e.shape)}")
    if g_extra is not None and g_extra.shape != e.shape:
        raise UserError(f"g_extra: expected the shape of e {tuple(e.shape)}, got {tuple(g_extra.shape)}")
    st = _Stage(grads.width, grads.accumulator, rounding or GradRounding(grads.rounding),
                _Coords(origin[0], origin[1], tuple(layer_hw or (h, w)), qlayer.pool, sample0), params)
    full = torch.tensor(qlayer.full_timesteps(steps))
    w1, w2, w3, w4 = golden.core_weights(qlayer)

    # LIF gradient, and the current's gradient (+ the shortcut consumers' share)
    st.produced["lif"] = e.numel()
    d, st.sats["lif"] = lif_grad(e, _as5d(trace.spikes), _as5d(trace.window),
                                 height_mul=params.height_mul, height_shift=params.height_shift,
                                 leak_mul=qlayer.leak_mul, leak_shift=qlayer.leak_shift,
                                 bits=st.gb, rnd=st.rnd, index=st.coords.out_ring(e.shape))
    if g_extra is not None:
        v = d + g_extra
        d = sat(v, st.gb)
        st.sats["current"], st.produced["current"] = int((d != v).sum()), v.numel()
    # folded BatchNorm (frozen), then max-pool routing, over output pixels + ring
    scale = torch.from_numpy(np.array(qlayer.scale))
    g_p = st.requant("affine", affine_product(d, scale, full), st.coords.out_ring(d.shape))
    g_a4 = maxpool2x2_grad(g_p, _as5d(trace.argmax))[..., 1:h + 3, 1:w + 3] if qlayer.pool else g_p
    # recompute the forward activations from the input spikes (docs/numerics.md steps 1-4)
    q1 = sat(golden.rshift(golden.g1(x, w1, wd.accumulator), qlayer.shift1, qlayer.round), wd.activation)
    c23 = golden.clusters23(q1, w2, w3, qlayer.mode, qlayer.shift2, qlayer.shift3, qlayer.round,
                            wd.activation, wd.accumulator, full)
    dw = {"w4": wgrad_pointwise(g_a4[..., 1:h + 1, 1:w + 1], c23.q23)}
    acc4 = g4_t(g_a4, w4, st.gacc)                                   # [T, B, r, H+2, W+2]
    g_q23 = st.requant("g4t", acc4, st.coords.pre_pool(acc4.shape, 1, 1))
    if qlayer.mode == "stt":
        q2 = sat(golden.rshift(c23.a2, qlayer.shift2, qlayer.round), wd.activation)
        g_q1 = _stt_backward(g_q23, q1, q2, w2, w3, st, dw)
    else:
        g_q1 = _ptt_backward(g_q23, q1, w2, w3, full, qlayer.shift3, st, dw)
    dw["w1"] = wgrad_pointwise(g_q1, x[..., 1:h + 1, 1:w + 1])
    acc1 = g1_t(g_q1, w1, st.gacc)
    e_in = st.requant("g1t", acc1, st.coords.pre_pool(acc1.shape, 0, 0))
    dw = {n: wrap(v, grads.wgrad_tile) for n, v in sorted(dw.items())}
    return BackwardResult(e_in=e_in, g_current=d[..., 1:ho + 1, 1:wo + 1], dw=dw, shifts=st.used,
                          saturations=st.sats, requantised=st.produced)


def _stt_backward(g_q23: Tensor, q1: Tensor, q2: Tensor, w2: Tensor, w3: Tensor, st: _Stage,
                  dw: dict[str, Tensor]) -> Tensor:
    """STT's clusters 3 and 2 in reverse: ``g_a3 = g_q23`` (tile + ring), G3^T over the tile's
    rows and halo rows re-quantised to ``g_q2``, then G2^T to ``g_q1`` over the tile."""
    h, w = g_q23.shape[-2] - 2, g_q23.shape[-1] - 2
    dw["w3"] = wgrad_cols(g_q23[..., 1:h + 1, 1:w + 1], q2)
    acc3 = g3_t(g_q23, w3, st.gacc)                                  # [T, B, r, H+2, W]
    g_q2 = st.requant("g3t", acc3, st.coords.pre_pool(acc3.shape, 1, 0))
    dw["w2"] = wgrad_rows(g_q2[..., 1:h + 1, :], q1[..., 1:w + 1])
    acc2 = g2_t(g_q2, w2, st.gacc)                                   # [T, B, r, H, W]
    return st.requant("g23t", acc2, st.coords.pre_pool(acc2.shape, 0, 0))


def _ptt_backward(g_q23: Tensor, q1: Tensor, w2: Tensor, w3: Tensor, full: Tensor, shift3: int,
                  st: _Stage, dw: dict[str, Tensor]) -> Tensor:
    """PTT (and HTT's full timesteps): G2^T and G3^T on the same gradient ``g_a = g_q23``,
    summed, re-quantised to ``g_q1``. HTT's reduced timesteps bypass: ``g_q1 = g_q23`` aligned
    by ``2^(shift3 + 1 - g23t)`` (an exact left shift when negative), then saturated."""
    h, w = g_q23.shape[-2] - 2, g_q23.shape[-1] - 2
    fmask = full.view(-1, *([1] * (g_q23.dim() - 1)))
    g_a = torch.where(fmask, g_q23, torch.zeros_like(g_q23))         # reduced steps: no G2/G3
    dw["w2"] = wgrad_rows(g_a[..., 1:h + 1, 1:w + 1], q1[..., 1:w + 1])
    dw["w3"] = wgrad_cols(g_a[..., 1:h + 1, 1:w + 1], q1[..., 1:h + 1, :])
    acc = g23_t_ptt(g_a, w2, w3, st.gacc)                            # [T, B, r, H, W]
    bypass = g_q23[..., 1:h + 1, 1:w + 1]
    idx = st.coords.pre_pool(acc.shape, 0, 0)
    dither = st.rnd.dither("g23t", idx)

    def rounded(s: int) -> Tensor:
        return torch.where(fmask, st.rnd.shift(acc, s, "g23t", idx, dither),
                           st.rnd.shift(bypass, s - shift3 - 1, "g23t", idx, dither))

    st.used["g23t"], v = _choose(st.params.shift("g23t"), st.gb, rounded)
    g_q1 = sat(v, st.gb)
    st.sats["g23t"], st.produced["g23t"] = int((g_q1 != v).sum()), v.numel()
    return g_q1


# ---- whole layer, batch reduction, formats -----------------------------------------------------

def backward_layer(qlayer: QuantTTLayer, trace: ForwardTrace, e: Tensor, widths: Any, grads: Any,
                   params: BackwardParams, g_extra: Tensor | None = None,
                   rounding: GradRounding | None = None) -> BackwardResult:
    """The whole layer as one tile: ``trace`` of the untiled layer (:func:`forward_trace` of the
    zero-padded input), ``e``/``g_extra [T, B, Cout, Ho, Wo]``; the halo ring is zero."""
    pad = lambda t: None if t is None else torch.nn.functional.pad(_as5d(t), (1, 1, 1, 1))  # noqa: E731
    h, w = trace.x.shape[-2] - 2, trace.x.shape[-1] - 2
    return backward_tile(qlayer, pad_trace(trace), pad(e), widths, grads, params, pad(g_extra),
                         rounding, origin=(0, 0), layer_hw=(h, w))


def accumulate_batch(per_sample: Tensor, bits: int) -> tuple[Tensor, int]:
    """The batch accumulator: tile sums added in sample order, saturating to ``bits`` after each
    add. Returns the sum and the number of saturating additions (element-wise)."""
    acc = torch.zeros_like(per_sample[0])
    n_sat = 0
    for part in per_sample:
        v = acc + part
        acc = sat(v, bits)
        n_sat += int((acc != v).sum())
    return acc, n_sat


def surrogate_params(qlayer: QuantTTLayer, v_threshold: float, alpha: float, widths: Any,
                     shifts: Mapping[str, ShiftOrAuto] | None = None) -> BackwardParams:
    """The rectangle surrogate ``h = 1/alpha`` where ``|u - V_th| < alpha/2`` in the membrane
    fixed point of ``qlayer``: bounds rounded to the nearest integer, height as
    ``mul / 2^shift`` with ``mul`` of ``widths.leak_mul`` bits (the reference ``alpha = 1``:
    bounds ``0`` and ``2^frac_bits``, height ``1``: no multiplier)."""
    wd = golden.resolve_widths(widths)
    one = 2.0 ** qlayer.frac_bits
    lo = int(np.floor((v_threshold - alpha / 2) * one + 0.5))
    hi = int(np.floor((v_threshold + alpha / 2) * one + 0.5))
    mul, shift = pow2_fraction(1.0 / alpha, wd.leak_mul)
    return BackwardParams(window_lo=lo, window_hi=hi, height_mul=mul, height_shift=shift,
                          shifts=dict(shifts or {}))


def calibrate_backward(qlayer: QuantTTLayer, trace: ForwardTrace, e: Tensor, widths: Any,
                       grads: Any, params: BackwardParams, g_extra: Tensor | None = None,
                       rounding: GradRounding | None = None) -> BackwardParams:
    """Choose every stage shift as the smallest that saturates nothing on the calibration
    gradients (the whole layer as one tile); returns ``params`` with those shifts."""
    stages = ("affine", "g4t", "g3t", "g23t", "g1t") if qlayer.mode == "stt" else \
        ("affine", "g4t", "g23t", "g1t")
    auto = replace(params, shifts={s: "auto" for s in stages})
    res = backward_layer(qlayer, trace, e, widths, grads, auto, g_extra, rounding)
    return replace(params, shifts=dict(res.shifts))


def gradient_lsbs(qlayer: QuantTTLayer, shifts: Mapping[str, int], e_frac: int) -> dict[str, float]:
    """The float value of one LSB of each integer the backward pass produces, when one LSB of
    ``e`` (and of the current gradient) is ``2^-e_frac`` of ``dL/ds``: ``e_in`` (``dL/dx`` of the
    input spikes), ``g_current`` (``dL/dcur`` in float membrane units, also the residual's), and
    ``w1..w4`` in units of ``dL/dW_int`` (divide by a core's float weight scale to get ``dL/dW``)."""
    sh = dict(shifts)
    lsb_u = 2.0 ** -(e_frac + qlayer.frac_bits)             # dL/du_int
    lsb_a4 = lsb_u * 2.0 ** (sh["affine"] - qlayer.affine_shift)
    lsb_q23 = lsb_a4 * 2.0 ** sh["g4t"]
    if qlayer.mode == "stt":
        lsb_w3 = lsb_q23 * 2.0 ** -qlayer.shift3            # dL/da3_int
        lsb_w2 = lsb_w3 * 2.0 ** (sh["g3t"] - qlayer.shift2)  # dL/da2_int
        lsb_q1 = lsb_w2 * 2.0 ** sh["g23t"]
    else:
        lsb_w2 = lsb_w3 = lsb_q23 * 2.0 ** -(qlayer.shift3 + 1)
        lsb_q1 = lsb_w2 * 2.0 ** sh["g23t"]
    lsb_a1 = lsb_q1 * 2.0 ** -qlayer.shift1
    return {"e_in": lsb_a1 * 2.0 ** sh["g1t"], "g_current": 2.0 ** -e_frac,
            "w1": lsb_a1, "w2": lsb_w2, "w3": lsb_w3, "w4": lsb_a4}
