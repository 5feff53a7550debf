"""The accelerator's arithmetic inside PyTorch training: one TT layer (TT conv, frozen folded
BatchNorm, membrane shortcut, LIF) whose forward pass, backward pass and weight gradients are
computed by the integer golden models (:mod:`sw.golden`, :mod:`sw.golden_backward`), while the
host keeps float master weights.

Per call, as a host driving the accelerator would:

1. re-quantise the layer from its current float weights (:func:`sw.quantize.quantize_tt_layer`,
   calibrated on the batch at hand), quantise the residual;
2. run the integer forward tile over the whole layer, keeping only the trace the hardware keeps;
3. on backward, quantise the incoming float gradients (of the output spikes, and of the LIF
   input current from its other consumers) to ``gradients.width`` bits with a power-of-two scale
   chosen from their range, run the integer backward with each stage's shift chosen from the
   batch's own ranges (dynamic power-of-two scaling by the host), and return float gradients
   of the input spikes, the residual and the four cores (``dL/dW = dL/dW_int / weight scale``).

BatchNorm is folded and frozen (no gradient, running statistics unchanged), as on the chip.
:func:`hardware_forward` runs a whole MS-ResNet with every TT layer so computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ttsnn.sw import golden_backward as GB
from ttsnn.sw.quantize import (layer_context, quantize_residual, quantize_tt_layer, round_values,
                         tt_layer_names, w4_scales)
from ttsnn.sw.cli_util import UserError

__all__ = ["HardwareLayer", "hardware_forward", "LayerStats", "quantize_gradient"]


def quantize_gradient(values: list[Tensor], bits: int, rounding: str,
                      generator: torch.Generator | None = None) -> tuple[list[Tensor], int]:
    """Float gradients sharing one format -> ``(integers, e_frac)``: the largest ``e_frac``
    (``-64 .. 62``) that keeps ``max |v| * 2^e_frac`` within half the signed ``bits`` range,
    leaving one bit of headroom for the LIF gradient's sum over time (``<= 4/3 max |e|`` with
    the reference leak) and the shortcut gradient added to it."""
    peak = max((float(v.abs().max()) for v in values if v.numel()), default=0.0)
    lim = (1 << (bits - 2)) - 1
    e_frac = 62 if peak == 0 else max(-64, min(62, math.floor(math.log2(lim / peak))))
    mode = "stochastic" if rounding == "stochastic" else "nearest"   # host-side, before the chip
    out = [round_values(v.double() * 2.0 ** e_frac, mode, generator).clamp(-lim, lim)
           .to(torch.int64) for v in values]
    return out, e_frac


@dataclass
class LayerStats:
    """What the integer backward passes of one layer saw: shifts, saturations, gradient count."""
    calls: int = 0
    saturations: int = 0
    gradients: int = 0
    last_shifts: dict[str, int] = field(default_factory=dict)

    @property
    def saturated_share(self) -> float:
        return self.saturations / self.gradients if self.gradients else 0.0


class HardwareLayer:
    """TT layer ``name`` of an MS-ResNet run with the accelerator's integer arithmetic.

    ``hw``: a ``gen.config.HardwareConfig`` (its widths and gradient formats); ``seed`` seeds the
    stochastic rounding (advanced per call so that steps differ); ``calib_samples``: the samples
    of each batch the host calibrates the forward formats on (the rest may saturate, as on the
    chip).
    """

    def __init__(self, model: nn.Module, name: str, hw: Any, seed: int = 0, calib_samples: int = 8):
        self.ctx = layer_context(model, name)
        self.name = name
        self.hw = hw
        lif = self.ctx.lif
        if getattr(lif, "surrogate_function", "rectangle") != "rectangle":
            raise UserError(f"layer {name}: the accelerator's LIF gradient implements the rectangle "
                            f"surrogate, the model uses {lif.surrogate_function!r}")
        self.tau, self.vth = float(lif.tau), float(lif.v_threshold)
        self.alpha = float(lif.alpha if getattr(lif, "alpha", None) is not None else 1.0)
        self.seed = seed
        self.calib_samples = int(calib_samples)
        self.stats = LayerStats()
        self._gen = torch.Generator().manual_seed(seed)

    @property
    def conv(self) -> nn.Module:
        return self.ctx.conv

    def forward(self, spikes: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor, dict]:
        """``spikes [T, B, Cin, H, W]`` (0/1 float), ``residual`` float or None ->
        ``(out_spikes, current, saved)`` with ``current`` the dequantised LIF input (what the
        next block's shortcut reads) and ``saved`` what :meth:`backward` needs."""
        wd = self.hw.widths
        with torch.no_grad():
            n = self.calib_samples
            q = quantize_tt_layer(self.conv, self.ctx.bn, tau=self.tau, v_threshold=self.vth,
                                  calib_spikes=spikes[:, :n],
                                  calib_residual=None if residual is None else residual[:, :n],
                                  widths=wd)
            params = GB.surrogate_params(q, self.vth, self.alpha, wd)
            res_q = None if residual is None else quantize_residual(residual, q, wd)
            window = nn.functional.pad(spikes.to(torch.int64), (1, 1, 1, 1))
            trace, _, current = GB.forward_trace(q, window, res_q, wd, params.window_lo,
                                                 params.window_hi)
        out = trace.spikes.to(spikes.dtype)
        cur = current.to(spikes.dtype) * 2.0 ** -q.frac_bits
        return out, cur, {"q": q, "params": params, "trace": trace}

    def backward(self, saved: dict, e: Tensor, g_extra: Tensor | None) -> dict[str, Tensor]:
        """Float gradients ``e = dL/d(out spikes)``, ``g_extra = dL/d(current)`` from the
        current's other consumers -> float ``x``, ``residual`` and core-weight gradients."""
        res, e_frac, _ = self.integer_backward(saved, e, g_extra)
        return self.float_gradients(saved["q"], res.e_in, res.g_current, res.dw, res.shifts, e_frac, e.dtype)

    def integer_backward(self, saved: dict, e: Tensor, g_extra: Tensor | None):
        """The integer backward of :meth:`backward`: ``(result, e_frac, ints)`` with ``ints``
        the quantised incoming gradients (``e``, and ``g_extra`` when given)."""
        q, params, trace = saved["q"], saved["params"], saved["trace"]
        grads = self.hw.gradients
        parts = [e] + ([g_extra] if g_extra is not None else [])
        ints, e_frac = quantize_gradient(parts, grads.width, grads.rounding, self._gen)
        auto = GB.BackwardParams(params.window_lo, params.window_hi, params.height_mul,
                                 params.height_shift, {s: "auto" for s in
                                                       ("affine", "g4t", "g3t", "g23t", "g1t")})
        rnd = GB.GradRounding(grads.rounding, seed=self.seed * 100003 + self.stats.calls)
        res = GB.backward_layer(q, trace, ints[0], self.hw.widths, grads, auto,
                                ints[1] if g_extra is not None else None, rnd)
        self._count(res)
        return res, e_frac, ints

    def float_gradients(self, q, e_in: Tensor, g_current: Tensor, dw: dict[str, Tensor],
                        shifts: dict[str, int], e_frac: int, dtype: torch.dtype) -> dict[str, Tensor]:
        """The integer results of a backward pass (``e_in``/``g_current [T, B, ...]``, per-sample
        weight-gradient sums ``dw``, the shifts used, the incoming gradient's ``e_frac``; from
        the golden model or the RTL) as float gradients of ``x``, ``residual`` and the cores
        (the batch accumulator sums the samples, saturating)."""
        grads = self.hw.gradients
        lsb = GB.gradient_lsbs(q, shifts, e_frac)
        dw = {n: GB.accumulate_batch(v, grads.wgrad_batch)[0].double() * lsb[n] for n, v in dw.items()}
        s_w4 = w4_scales(self.conv, int(q.float_scales["weight_bits"]))
        conv = self.conv
        out = {
            "x": e_in.to(dtype) * lsb["e_in"],
            "residual": g_current.to(dtype) * lsb["g_current"],
            "g1": (dw["w1"] / q.float_scales["w1"]).reshape(conv.g1.weight.shape),
            "g2": (dw["w2"] / q.float_scales["w23"]).reshape(conv.g2.weight.shape),
            "g3": (dw["w3"] / q.float_scales["w23"]).reshape(conv.g3.weight.shape),
            "g4": (dw["w4"] / s_w4[:, None]).reshape(conv.g4.weight.shape),
        }
        return {k: v.to(dtype) for k, v in out.items()}

    def _count(self, res: GB.BackwardResult) -> None:
        self.stats.calls += 1
        self.stats.saturations += sum(res.saturations.values())
        self.stats.gradients += sum(res.requantised.values())
        self.stats.last_shifts = dict(res.shifts)


class _HardwareLayerFunction(torch.autograd.Function):
    """Autograd around :class:`HardwareLayer`: inputs ``(spikes, residual, g1, g2, g3, g4)``
    (the cores are the float master weights), outputs ``(out_spikes, current)``."""

    @staticmethod
    def forward(ctx, layer: HardwareLayer, spikes, residual, *weights):
        out, cur, saved = layer.forward(spikes, residual if residual.numel() else None)
        ctx.layer, ctx.saved, ctx.has_residual = layer, saved, residual.numel() > 0
        return out, cur

    @staticmethod
    def backward(ctx, grad_out, grad_cur):
        if grad_out is None:
            grad_out = torch.zeros_like(ctx.saved["trace"].spikes, dtype=torch.float32)
        g = ctx.layer.backward(ctx.saved, grad_out, grad_cur)
        res = g["residual"] if ctx.has_residual else None
        return None, g["x"], res, g["g1"], g["g2"], g["g3"], g["g4"]


def apply_layer(layer: HardwareLayer, spikes: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run ``layer`` under autograd (gradients reach the spikes, residual and cores)."""
    c = layer.conv
    res = residual if residual is not None else spikes.new_zeros(0)
    return _HardwareLayerFunction.apply(layer, spikes, res, c.g1.weight, c.g2.weight,
                                        c.g3.weight, c.g4.weight)


def hardware_forward(model: nn.Module, x: Tensor, layers: dict[str, HardwareLayer] | None) -> Tensor:
    """Logits of an MS-ResNet with each TT layer in ``layers`` (name -> :class:`HardwareLayer`)
    computed by the accelerator's arithmetic; with ``layers=None`` every layer runs its float
    modules (conv, BN, shortcut, LIF), which is ``model(x)`` written out layer by layer."""
    names = set(tt_layer_names(model))
    if not names:
        raise UserError("the model has no TT layers; the accelerator trains TT layers only")
    x = model.check_input(x)
    cur = model.bn1(model.conv1(x))
    blocks = [m for stage in model.layers for m in stage]
    spikes = blocks[0].lif1(cur)
    prefix = {id(m): n for n, m in model.named_modules()}

    def run(block, which: str, s: Tensor, residual: Tensor | None):
        name = f"{prefix[id(block)]}.{which}"
        if layers is not None and name in layers:
            return apply_layer(layers[name], s, residual)
        ctx = layer_context(model, name)
        c = getattr(block, "bn1" if which == "conv1" else "bn2")(getattr(block, which)(s))
        c = c + residual if residual is not None else c
        return ctx.lif(c), c

    for block in blocks:
        mid, _ = run(block, "conv1", spikes, None)
        spikes, cur = run(block, "conv2", mid, block.shortcut(cur))
    pooled = spikes.mean(dim=(3, 4)).mean(dim=0)
    return model.fc(pooled)
