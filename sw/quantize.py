"""Post-training quantisation of a trained TT layer to the accelerator's integer formats.

A TT layer here is what one pass of the accelerator computes: a :class:`sw.tt.TTConv2d`, the
BatchNorm after it (folded), the optional membrane-shortcut input and the LIF neurons that
consume the sum. :func:`quantize_tt_layer` turns it into a :class:`sw.qlayer.QuantTTLayer`
whose arithmetic is docs/numerics.md (computed by :mod:`sw.golden`); :func:`compare_layer`
measures how far that integer layer is from the float one (spike agreement, membrane error).

Scales (all recorded in ``QuantTTLayer.float_scales``):

- ``w1`` and the shared ``w23`` (G2 and G3 must share one scale: PTT adds their outputs) are
  per-tensor; ``w4`` is per output channel, its scale folded into the affine ``scale``.
- Stage shifts are the smallest that keep the calibration data inside the activation width
  (no saturation on the calibration set) and every accumulator inside its width (no wrap).
- The membrane fixed point ``frac_bits`` is the largest that keeps the float membrane
  potentials and LIF inputs of the calibration set inside the membrane width.
- The affine ``scale[cls, o] / 2^affine_shift = bn_scale[o] * s_w4[o] * s_q23[cls] * 2^frac_bits``
  with ``affine_shift`` as large as the ``affine_scale`` width allows; ``cls`` 1 is HTT's
  reduced timesteps, whose G4 input is G1's output (another scale).

Weights and parameters are rounded to nearest by default; ``'truncate'`` (towards zero) and
``'stochastic'`` (unbiased, seeded) are selectable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ttsnn.sw import golden
from ttsnn.sw.qlayer import QuantTTLayer
from ttsnn.sw.cli_util import UserError

__all__ = ["ROUNDING_MODES", "LayerContext", "quantize_tt_layer", "float_layer_forward",
           "compare_layer", "fold_batchnorm", "leak_fixed_point", "tt_layer_names",
           "layer_context", "capture_layer_io", "quantize_model_layer", "w4_scales", "pow2_fraction"]

ROUNDING_MODES = ("nearest", "truncate", "stochastic")
_WIDE = 62  # accumulator width for calibration: wide enough never to wrap


# ---- small pure helpers ----------------------------------------------------------------------

def round_values(x: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """Round float ``x`` to integers: ``nearest`` (half away from zero), ``truncate`` (towards
    zero) or ``stochastic`` (``floor(x + U[0, 1))``, unbiased)."""
    if mode == "nearest":
        return torch.sign(x) * torch.floor(x.abs() + 0.5)
    if mode == "truncate":
        return torch.trunc(x)
    if mode == "stochastic":
        return torch.floor(x + torch.rand(x.shape, generator=generator, dtype=x.dtype))
    raise UserError(f"unknown rounding {mode!r}; choose one of {', '.join(ROUNDING_MODES)}")


def w4_scales(conv: nn.Module, weight_bits: int) -> Tensor:
    """Per-output-channel float scale of G4's integer weights (float64 ``[Cout]``): the
    channel's largest magnitude maps to the largest ``weight_bits`` integer."""
    g4w = conv.g4.weight.detach().double()[:, :, 0, 0]
    m4 = g4w.abs().amax(dim=1)
    return torch.where(m4 > 0, m4 / ((1 << (weight_bits - 1)) - 1), torch.ones_like(m4))


def _quantize_tensor(w: Tensor, bits: int, scale: Tensor | float, mode: str,
                     gen: torch.Generator) -> Tensor:
    lim = (1 << (bits - 1)) - 1
    return round_values(w / scale, mode, gen).clamp(-lim, lim).to(torch.int64)


def fold_batchnorm(bn: nn.Module | None, channels: int) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = a * x + b`` per channel (float64); identity for None."""
    if bn is None:
        return torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise UserError(f"expected a BatchNorm module after the TT conv, got {type(bn).__name__}")
    from ttsnn.sw.plugin.methods import TemporalEffectiveBN, ThresholdDependentBN

    if isinstance(bn, (ThresholdDependentBN, TemporalEffectiveBN)):
        # the accelerator folds one time-invariant BatchNorm; TEBN scales each timestep apart
        raise UserError(f"{type(bn).__name__} (a model trained with norm tdbn/tebn) is not a plain "
                        "BatchNorm the accelerator can fold; quantise a model trained with norm 'bn'")
    if bn.running_mean is None or bn.running_var is None:
        raise UserError("BatchNorm without running statistics cannot be folded "
                        "(track_running_stats=False)")
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(channels, dtype=torch.float64)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros(channels, dtype=torch.float64)
    a = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    return a, beta - bn.running_mean.detach().double() * a


def pow2_fraction(value: float, mul_bits: int, max_shift: int = 24) -> tuple[int, int]:
    """``(mul, shift)`` with ``0 <= mul < 2^mul_bits`` and ``mul / 2^shift`` closest to
    ``value >= 0``; the smallest shift among equally close ones (0.25 -> (1, 2))."""
    best = None
    for s in range(max_shift + 1):
        m = min(int(math.floor(value * (1 << s) + 0.5)), (1 << mul_bits) - 1)
        err = abs(m / (1 << s) - value)
        if best is None or err < best[0] - 1e-15:
            best = (err, m, s)
        if err == 0:
            break
    return best[1], best[2]


def leak_fixed_point(tau: float, mul_bits: int, max_shift: int = 24) -> tuple[int, int]:
    """``(leak_mul, leak_shift)`` with ``leak_mul < 2^mul_bits`` closest to ``tau``; the
    smallest shift among equally close ones (0.25 -> (1, 2))."""
    if not 0.0 <= tau <= 1.0:
        raise UserError(f"tau must lie in [0, 1], got {tau}")
    return pow2_fraction(tau, mul_bits, max_shift)


def _shift_for(lo: int, hi: int, bits: int, rnd: int, extra: int = 0) -> int:
    """Smallest ``s >= 0`` so that ``rshift(v, s + extra)`` of every ``v`` in ``[lo, hi]``
    fits signed ``bits`` (the range ends are the extremes: rshift is monotone)."""
    qmax, qmin = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    for s in range(0, 64):
        t = torch.tensor([lo, hi])
        r = golden.rshift(t, s + extra, rnd)
        if int(r[1]) <= qmax and int(r[0]) >= qmin:
            return s
    raise ValueError("no shift brings the calibration range into the format")  # unreachable


def _range(t: Tensor) -> tuple[int, int]:
    return (int(t.min()), int(t.max())) if t.numel() else (0, 0)


def _fits(t: Tensor, bits: int) -> bool:
    lo, hi = _range(t)
    return lo >= -(1 << (bits - 1)) and hi <= (1 << (bits - 1)) - 1


# ---- the float layer -------------------------------------------------------------------------

def float_layer_forward(conv: nn.Module, bn: nn.Module | None, tau: float, v_threshold: float,
                        spikes: Tensor, residual: Tensor | None = None) -> dict[str, Tensor]:
    """The float layer in float64: ``conv -> folded BN (+ residual) -> LIF``.

    ``spikes [T, B, Cin, H, W]``; returns ``spikes``, ``membrane`` and ``current`` (LIF input),
    all ``[T, B, Cout, Ho, Wo]``.
    """
    from ttsnn.sw.neurons import lif_multistep

    conv64 = _double_copy(conv)
    a, b = fold_batchnorm(bn, conv.out_channels)
    with torch.no_grad():
        y = conv64(spikes.double())
        cur = y * a[:, None, None] + b[:, None, None]
        if residual is not None:
            cur = cur + residual.double()
        s, u = lif_multistep(cur, tau=tau, v_threshold=v_threshold, return_membrane=True)
    return {"spikes": s, "membrane": u, "current": cur}


def _double_copy(conv: nn.Module) -> nn.Module:
    import copy
    return copy.deepcopy(conv).double().eval()


# ---- quantisation ----------------------------------------------------------------------------

def _check_conv(conv: nn.Module) -> None:
    from ttsnn.sw.tt import TTConv2d

    if not isinstance(conv, TTConv2d):
        raise UserError(f"only TT convs (sw.tt.TTConv2d) map onto the accelerator, got "
                        f"{type(conv).__name__}")
    if conv.downsample == "stride":
        raise UserError("the accelerator downsamples by 2x2 max-pool after G4; a TT conv with "
                        "downsample='stride' cannot be mapped (retrain with downsample='maxpool')")


def quantize_tt_layer(conv: nn.Module, bn: nn.Module | None, *, tau: float, v_threshold: float,
                      calib_spikes: Tensor, calib_residual: Tensor | None, widths: Any,
                      weight_bits: int | None = None, rounding: str = "nearest",
                      datapath_round: int = 1, seed: int = 0) -> QuantTTLayer:
    """Quantise one trained TT layer (conv + BN + LIF) to a :class:`QuantTTLayer`.

    ``calib_spikes [T, B, Cin, H, W]`` (0/1) and ``calib_residual [T, B, Cout, Ho, Wo]`` (float,
    membrane units; None without a shortcut) are the layer's inputs on calibration data.
    ``weight_bits`` (default: the configuration's weight width) may be lower to study
    precision; ``rounding`` applies to weights and parameters; ``datapath_round`` is the
    descriptor's ``round`` bit (1: round half up at every shift, 0: floor).
    """
    _check_conv(conv)
    wd = golden.resolve_widths(widths)
    if rounding not in ROUNDING_MODES:
        raise UserError(f"unknown rounding {rounding!r}; choose one of {', '.join(ROUNDING_MODES)}")
    wb = wd.weight if weight_bits is None else int(weight_bits)
    if not 2 <= wb <= wd.weight:
        raise UserError(f"weight_bits must lie in 2..{wd.weight} (the configuration's weight "
                        f"width), got {weight_bits}")
    if datapath_round not in (0, 1):
        raise UserError(f"datapath_round must be 0 or 1, got {datapath_round}")
    if calib_spikes.dim() != 5 or calib_spikes.shape[2] != conv.in_channels:
        raise UserError(f"calib_spikes: expected [T, B, {conv.in_channels}, H, W], got "
                        f"{tuple(calib_spikes.shape)}")
    if not torch.all((calib_spikes == 0) | (calib_spikes == 1)):
        raise UserError("calib_spikes: the layer input must be spikes (0/1)")
    pool = conv.downsample == "maxpool"
    if pool and (calib_spikes.shape[-1] % 2 or calib_spikes.shape[-2] % 2):
        raise UserError(f"a pooling layer needs an even input height and width, got "
                        f"{tuple(calib_spikes.shape[-2:])}")
    gen = torch.Generator().manual_seed(seed)
    rnd = datapath_round
    steps = calib_spikes.shape[0]
    full = torch.tensor(conv.full_timesteps(steps))

    g1w = conv.g1.weight.detach().double()[:, :, 0, 0]               # [r, Cin]
    g2w = conv.g2.weight.detach().double()[:, :, :, 0]               # [r, r, 3]
    g3w = conv.g3.weight.detach().double()[:, :, 0, :]               # [r, r, 3]
    g4w = conv.g4.weight.detach().double()[:, :, 0, 0]               # [Cout, r]
    wmax = (1 << (wb - 1)) - 1

    def scale_of(t: Tensor) -> float:
        m = float(t.abs().max())
        return m / wmax if m > 0 else 1.0

    s_w1 = scale_of(g1w)
    s_w23 = scale_of(torch.cat([g2w.flatten(), g3w.flatten()]))
    s_w4 = w4_scales(conv, wb)                                       # [Cout]
    w2 = _quantize_tensor(g2w, wb, s_w23, rounding, gen)
    w3 = _quantize_tensor(g3w, wb, s_w23, rounding, gen)
    w4 = _quantize_tensor(g4w, wb, s_w4[:, None], rounding, gen)

    x = torch.nn.functional.pad(calib_spikes.to(torch.int64), (1, 1, 1, 1))
    x = x.reshape(steps, -1, *x.shape[2:])                           # [T, B, Cin, H+2, W+2]
    ab, qb = wd.accumulator, wd.activation

    # G1 must not wrap: coarsen w1 (a power of two at a time) until it does not.
    while True:
        w1 = _quantize_tensor(g1w, wb, s_w1, rounding, gen)
        a1 = golden.g1(x, w1, _WIDE)
        if _fits(a1, ab):
            break
        s_w1 *= 2.0
    shift1, shift2, shift3 = _shift_for(*_range(a1), qb, rnd), 0, 0
    stt = conv.mode == "stt"

    def choose_shift2(a2: Tensor) -> int:
        return max(shift2, _shift_for(*_range(a2), qb, rnd))

    def choose_shift3(acc: Tensor) -> int:
        if stt:
            return max(shift3, _shift_for(*_range(acc), qb, rnd))
        m = acc[full] if conv.mode == "htt" else acc       # reduced timesteps bypass the merge
        return max(shift3, _shift_for(*_range(m), qb, rnd, extra=1))

    for _ in range(256):  # raise a shift whenever a later accumulator would wrap
        q1 = golden.sat(golden.rshift(a1, shift1, rnd), qb)
        # accumulators computed wide, so that an overflow of the real width is seen, not wrapped
        c23 = golden.clusters23(q1, w2, w3, conv.mode, choose_shift2, choose_shift3, rnd, qb,
                                _WIDE, full)
        if not _fits(c23.a2, ab) or (not stt and not _fits(c23.a3, ab)):
            shift1 += 1
            continue
        if stt:
            shift2 = c23.shift2
            if not _fits(c23.a3, ab):
                shift2 += 1
                continue
        shift3 = c23.shift3
        a4 = golden.g4(c23.q23, w4, _WIDE)
        if not _fits(a4[full], ab):
            shift3 += 1
            continue
        if not _fits(a4[~full], ab):
            shift1 += 1
            continue
        break
    else:  # pragma: no cover - each iteration raises a shift, and shifts are bounded by widths
        raise UserError("calibration did not converge: accumulators keep overflowing")

    s_q1 = s_w1 * 2.0 ** shift1
    if conv.mode == "stt":
        s_q23_full = s_w23 * (s_w23 * s_q1 * 2.0 ** shift2) * 2.0 ** shift3
    else:
        s_q23_full = s_w23 * s_q1 * 2.0 ** shift3
    s_q23 = torch.tensor([s_q23_full, s_q1], dtype=torch.float64)

    # membrane fixed point: the largest frac_bits keeping the float membrane in range
    ref = float_layer_forward(conv, bn, tau, v_threshold, calib_spikes, calib_residual)
    peak = max(float(ref["membrane"].abs().max()), float(ref["current"].abs().max()),
               abs(v_threshold), 1e-12)
    if calib_residual is not None:
        peak = max(peak, float(calib_residual.abs().max()))
    mmax = (1 << (wd.membrane - 1)) - 1
    frac_bits = int(math.floor(math.log2(mmax / peak)))
    frac_bits = max(0, min(frac_bits, wd.membrane - 1))

    a_bn, b_bn = fold_batchnorm(bn, conv.out_channels)
    mult = a_bn[None, :] * s_w4[None, :] * s_q23[:, None] * 2.0 ** frac_bits   # [2, Cout]
    smax = (1 << (wd.affine_scale - 1)) - 1
    peak_mult = float(mult.abs().max())
    affine_shift = int(math.floor(math.log2(smax / peak_mult))) if peak_mult > 0 else 0
    affine_shift = max(0, min(affine_shift, 62 - wd.accumulator - wd.affine_scale))
    scale = golden.sat(round_values(mult * 2.0 ** affine_shift, rounding, gen), wd.affine_scale).to(torch.int64)
    bias = golden.sat(round_values(b_bn * 2.0 ** frac_bits, rounding, gen), wd.membrane).to(torch.int64)
    threshold = int(round_values(torch.tensor(v_threshold * 2.0 ** frac_bits), rounding, gen))
    threshold = max(-mmax - 1, min(mmax, threshold))
    leak_mul, leak_shift = leak_fixed_point(tau, wd.leak_mul)

    return QuantTTLayer(
        mode=conv.mode, w1=w1.numpy(), w2=w2.numpy(), w3=w3.numpy(), w4=w4.numpy(),
        shift1=shift1, shift2=shift2, shift3=shift3, scale=scale.numpy(),
        affine_shift=affine_shift, bias=bias.numpy(), threshold=threshold, leak_mul=leak_mul,
        leak_shift=leak_shift, round=rnd, pool=pool, residual=calib_residual is not None,
        schedule=tuple(full.tolist()) if conv.mode == "htt" else (), frac_bits=frac_bits,
        float_scales={"w1": s_w1, "w23": s_w23, "w4_max": float(s_w4.max()), "q1": s_q1,
                      "q23_full": float(s_q23[0]), "q23_reduced": float(s_q23[1]),
                      "membrane": 2.0 ** -frac_bits, "weight_bits": float(wb)})


def quantize_residual(residual: Tensor, qlayer: QuantTTLayer, widths: Any,
                      rounding: str = "nearest") -> Tensor:
    """Membrane-shortcut input (float) in the membrane fixed point, saturated to its width."""
    wd = golden.resolve_widths(widths)
    r = round_values(residual.double() * 2.0 ** qlayer.frac_bits, rounding)
    return golden.sat(r, wd.membrane).to(torch.int64)


def compare_layer(qlayer: QuantTTLayer, conv: nn.Module, bn: nn.Module | None, *, tau: float,
                  v_threshold: float, spikes: Tensor, residual: Tensor | None,
                  widths: Any) -> dict[str, Any]:
    """Run the integer layer (golden model) and the float layer on the same inputs
    (``[T, B, ...]``) and report their agreement.

    ``spike_agreement``: fraction of output spikes (all neurons, timesteps and samples) that
    are equal; ``membrane_mae`` / ``membrane_max_error``: error of the dequantised membrane
    potential, in membrane units (``v_threshold`` is the spike threshold);
    ``membrane_rel_rmse``: RMS error over RMS of the float membrane.
    """
    ref = float_layer_forward(conv, bn, tau, v_threshold, spikes, residual)
    res_q = quantize_residual(residual, qlayer, widths) if residual is not None else None
    int_s, int_u = [], []
    for b in range(spikes.shape[1]):
        out = golden.golden_layer(qlayer, spikes[:, b].to(torch.int64),
                                  None if res_q is None else res_q[:, b], widths)
        int_s.append(out.spikes)
        int_u.append(out.membrane)
    s = torch.stack(int_s, dim=1)
    u = torch.stack(int_u, dim=1).double() * 2.0 ** -qlayer.frac_bits
    err = (u - ref["membrane"]).abs()
    rms_ref = float(ref["membrane"].pow(2).mean().sqrt())
    return {
        "spike_agreement": float((s == ref["spikes"].to(torch.uint8)).double().mean()),
        "float_spike_rate": float(ref["spikes"].mean()),
        "int_spike_rate": float(s.double().mean()),
        "membrane_mae": float(err.mean()),
        "membrane_max_error": float(err.max()),
        "membrane_rel_rmse": float(err.pow(2).mean().sqrt()) / rms_ref if rms_ref > 0 else 0.0,
        "neurons": int(s.numel()),
    }


# ---- layers of an MS-ResNet ------------------------------------------------------------------

@dataclass
class LayerContext:
    """Where a TT layer sits in an MS-ResNet: its conv, BN, the block it belongs to (whose
    shortcut feeds the residual for ``conv2``) and the LIF that consumes its output."""
    name: str
    conv: nn.Module
    bn: nn.Module
    block: nn.Module
    lif: nn.Module
    residual: bool


def tt_layer_names(model: nn.Module) -> list[str]:
    """Names of the TT convs of ``model`` in forward order."""
    from ttsnn.sw.tt import TTConv2d
    return [n for n, m in model.named_modules() if isinstance(m, TTConv2d)]


def layer_context(model: nn.Module, name: str) -> LayerContext:
    """Find the BN, block and following LIF of the TT conv ``name`` (e.g. ``layers.0.0.conv1``)."""
    names = tt_layer_names(model)
    if name not in names:
        avail = ", ".join(names) if names else "none (the model is dense; quantise a TT model)"
        raise UserError(f"layer {name!r} is not a TT layer of this model; available TT layers: "
                        f"{avail}")
    block_name, _, conv_attr = name.rpartition(".")
    block = model.get_submodule(block_name)
    if conv_attr == "conv1":
        return LayerContext(name, block.conv1, block.bn1, block, block.lif2, residual=False)
    # conv2: the sum goes to the next block's lif1, or the head LIF after the last block
    blocks = [n for n, m in model.named_modules() if hasattr(m, "lif1") and hasattr(m, "conv2")]
    i = blocks.index(block_name)
    lif = (model.get_submodule(blocks[i + 1]).lif1 if i + 1 < len(blocks) else model.head_lif)
    return LayerContext(name, block.conv2, block.bn2, block, lif, residual=True)


def capture_layer_io(model: nn.Module, ctx: LayerContext, inputs: Tensor) -> dict[str, Tensor]:
    """Run ``model`` on ``inputs`` and capture the TT layer's input spikes, its residual
    (shortcut output, for ``conv2``) and the float LIF input it feeds (for checking)."""
    got: dict[str, Tensor] = {}
    hooks = [
        ctx.conv.register_forward_pre_hook(lambda m, a: got.setdefault("spikes", a[0].detach())),
        ctx.lif.register_forward_pre_hook(lambda m, a: got.setdefault("lif_input", a[0].detach())),
    ]
    if ctx.residual:
        hooks.append(ctx.block.shortcut.register_forward_hook(
            lambda m, a, out: got.setdefault("residual", out.detach())))
    try:
        model.eval()
        with torch.no_grad():
            model(inputs)
    finally:
        for hk in hooks:
            hk.remove()
    return got


def quantize_model_layer(model: nn.Module, name: str, calib_inputs: Tensor, widths: Any,
                         eval_inputs: Tensor | None = None, **kwargs) -> tuple[QuantTTLayer, dict[str, Any], dict[str, Tensor]]:
    """Quantise TT layer ``name`` of an MS-ResNet calibrated on ``calib_inputs`` and compare it
    with the float layer on ``eval_inputs`` (default: the calibration inputs).

    Returns ``(qlayer, report, captured)`` with ``captured`` the evaluation inputs of the layer
    (``spikes``, ``residual``).
    """
    ctx = layer_context(model, name)
    tau, vth = float(ctx.lif.tau), float(ctx.lif.v_threshold)
    cal = capture_layer_io(model, ctx, calib_inputs)
    q = quantize_tt_layer(ctx.conv, ctx.bn, tau=tau, v_threshold=vth, calib_spikes=cal["spikes"],
                          calib_residual=cal.get("residual"), widths=widths, **kwargs)
    ev = cal if eval_inputs is None else capture_layer_io(model, ctx, eval_inputs)
    report = compare_layer(q, ctx.conv, ctx.bn, tau=tau, v_threshold=vth, spikes=ev["spikes"],
                           residual=ev.get("residual"), widths=widths)
    # the float reference chain must be the model's own: check against the captured LIF input
    ref = float_layer_forward(ctx.conv, ctx.bn, tau, vth, ev["spikes"], ev.get("residual"))
    report["float_chain_error"] = float((ref["current"] - ev["lif_input"].double()).abs().max())
    report.update(layer=name, mode=q.mode, in_channels=q.in_channels, rank=q.rank,
                  out_channels=q.out_channels, pool=q.pool, residual=q.residual,
                  shifts=[q.shift1, q.shift2, q.shift3], affine_shift=q.affine_shift,
                  frac_bits=q.frac_bits, weight_bits=int(q.float_scales["weight_bits"]),
                  timesteps=int(ev["spikes"].shape[0]), samples=int(ev["spikes"].shape[1]),
                  input_hw=list(ev["spikes"].shape[-2:]))
    return q, report, ev
