"""How close the accelerator's integer backward pass is to float autograd, on one TT layer of a
trained network and real data (``python -m sw grad-check``).

The layer's real inputs (input spikes, shortcut) and real incoming gradients (``dL/ds`` of its
output spikes and the gradient its LIF input current receives from the next block's shortcut)
are captured from a forward and backward pass of the whole float network on real images and
labels. Both sides then see the same inputs and incoming gradients:

- integer: the layer quantised to the configuration's formats, forward and backward by the
  golden models (:class:`sw.hwlayer.HardwareLayer`);
- float: the *same quantised layer* in float64 (the sw/ modules with the dequantised integer
  cores, the folded BatchNorm, the same LIF and rectangle surrogate), differentiated by autograd.

The report gives the cosine similarity of the input-spike gradient, the current (residual)
gradient and each core's weight gradient, and the share of gradients that saturated.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ttsnn.sw.hwlayer import HardwareLayer
from ttsnn.sw.neurons import lif_multistep
from ttsnn.sw.quantize import LayerContext, fold_batchnorm, layer_context, w4_scales

__all__ = ["capture_layer_gradients", "float_layer_gradients", "grad_check_layer", "cosine",
           "gradient_cosines"]


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two tensors seen as vectors (1.0 when both are zero)."""
    a, b = a.double().flatten(), b.double().flatten()
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a @ b) / (na * nb)


def capture_layer_gradients(model: nn.Module, ctx: LayerContext, inputs: Tensor,
                            labels: Tensor) -> dict[str, Tensor]:
    """One forward and backward pass of ``model`` (eval mode: BatchNorm frozen) with the
    cross-entropy loss; returns the layer's input ``spikes``, ``residual`` (shortcut output, or
    absent), ``current`` (LIF input), ``e = dL/ds`` of its output spikes and ``g_extra``: the
    current's gradient from its consumers other than the LIF (total minus the LIF's share)."""
    got: dict[str, Tensor] = {}

    def on_lif(module, args, out):
        cur = args[0]
        got["current"] = cur.detach()
        cur.register_hook(lambda g: got.setdefault("g_total", g.detach()))
        out.register_hook(lambda g: got.setdefault("e", g.detach()))

    hooks = [ctx.conv.register_forward_pre_hook(lambda m, a: got.setdefault("spikes", a[0].detach())),
             ctx.lif.register_forward_hook(on_lif)]
    if ctx.residual:
        hooks.append(ctx.block.shortcut.register_forward_hook(
            lambda m, a, out: got.setdefault("residual", out.detach())))
    try:
        model.eval()
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
    leaf = got["current"].clone().requires_grad_()
    spikes = ctx.lif(leaf)
    (d_lif,) = torch.autograd.grad(spikes, leaf, got["e"])
    got["g_extra"] = got.pop("g_total") - d_lif
    return got


def _lif_grad_from_trace(trace, e: Tensor, tau: float, height: float) -> Tensor:
    """The float LIF gradient (reset detached) with the integer forward's spikes and window
    bits: ``d[t] = m[t] * h * e[t] + tau * (1 - s[t]) * d[t+1]`` (docs/numerics.md)."""
    d = torch.zeros_like(e, dtype=torch.float64)
    nxt = torch.zeros_like(d[0])
    for t in reversed(range(e.shape[0])):
        nxt = trace.window[t].double() * height * e[t].double() + tau * (1 - trace.spikes[t].double()) * nxt
        d[t] = nxt
    return d


def _pool_at(a4: Tensor, argmax: Tensor) -> Tensor:
    """2x2 max-pool that picks, in each block, the position ``argmax`` (0..3, raster order)."""
    h, w = a4.shape[-2:]
    blocks = a4.reshape(*a4.shape[:-2], h // 2, 2, w // 2, 2).movedim(-3, -2)
    flat = blocks.reshape(*blocks.shape[:-2], 4)
    return flat.gather(-1, argmax.unsqueeze(-1)).squeeze(-1)


def float_layer_gradients(layer: HardwareLayer, q, spikes: Tensor, residual: Tensor | None,
                          e: Tensor, g_extra: Tensor, trace=None) -> dict[str, Tensor]:
    """Float64 autograd of the quantised layer ``q`` (dequantised cores in a copy of the sw/
    TT conv, folded BatchNorm, LIF with the model's surrogate): gradients of the input spikes,
    the current and the four cores, for incoming gradients ``e`` (spikes) and ``g_extra``.
    With ``trace`` (the integer forward's), the LIF gradient uses its spikes and window bits
    instead of the float membranes', and max-pooling its arg-max: what is left of the
    difference is the backward arithmetic's own."""
    conv = copy.deepcopy(layer.conv).double()
    s_w4 = w4_scales(layer.conv, int(q.float_scales["weight_bits"]))
    with torch.no_grad():
        for name, ints, scale in (("g1", q.w1, q.float_scales["w1"]), ("g2", q.w2, q.float_scales["w23"]),
                                  ("g3", q.w3, q.float_scales["w23"]), ("g4", q.w4, s_w4[:, None])):
            w = getattr(conv, name).weight
            w.copy_((torch.tensor(ints, dtype=torch.float64) * scale).reshape(w.shape))
    a, b = fold_batchnorm(layer.ctx.bn, conv.out_channels)
    x = spikes.double().requires_grad_()
    if trace is not None and trace.argmax is not None:
        conv.pool = None                 # pool by the integer forward's arg-max instead
        y = _pool_at(conv(x), trace.argmax)
    else:
        y = conv(x)
    cur = y * a[:, None, None] + b[:, None, None]
    if residual is not None:
        cur = cur + residual.double()
    cur.retain_grad()
    out = lif_multistep(cur, tau=layer.tau, v_threshold=layer.vth, surrogate="rectangle",
                        alpha=layer.alpha)
    if trace is None:
        torch.autograd.backward([out, cur], [e.double(), g_extra.double()])
    else:
        cur.backward(_lif_grad_from_trace(trace, e, layer.tau, 1.0 / layer.alpha) + g_extra.double())
    return {"x": x.grad, "current": cur.grad, "spikes": out.detach(),
            **{n: getattr(conv, n).weight.grad for n in ("g1", "g2", "g3", "g4")}}


_PAIRS = {"input": ("x", "x"), "current": ("residual", "current"),
          **{f"w{i}": (f"g{i}", f"g{i}") for i in (1, 2, 3, 4)}}


def gradient_cosines(g_int: dict[str, Tensor], ref: dict[str, Tensor]) -> dict[str, float]:
    """Cosine of each integer-derived gradient (:meth:`HardwareLayer.backward`'s names) with its
    float reference (:func:`float_layer_gradients`' names)."""
    return _cosines(g_int, ref)


def _cosines(g_int: dict[str, Tensor], ref: dict[str, Tensor]) -> dict[str, float]:
    return {k: cosine(g_int[a], ref[b]) for k, (a, b) in _PAIRS.items()}


def _norm_ratios(g_int: dict[str, Tensor], ref: dict[str, Tensor]) -> dict[str, float]:
    """``|integer| / |float|`` per gradient: the cosine cannot see a wrong scale, this can."""
    out = {}
    for k, (a, b) in _PAIRS.items():
        nb = float(ref[b].double().norm())
        out[k] = float(g_int[a].double().norm()) / nb if nb > 0 else float("nan")
    return out


def grad_check_layer(model: nn.Module, name: str, inputs: Tensor, labels: Tensor, hw: Any,
                     widths: list[int] | None = None, rounding: str | None = None) -> dict[str, Any]:
    """Integer vs float gradients of TT layer ``name`` on ``inputs``/``labels`` for each gradient
    width in ``widths`` (default: the configuration's). Returns one row per width."""
    ctx = layer_context(model, name)
    cap = capture_layer_gradients(model, ctx, inputs, labels)
    rows = []
    for bits in widths or [hw.gradients.width]:
        grads = dataclasses.replace(hw.gradients, width=bits, rounding=rounding or hw.gradients.rounding)
        hw_b = dataclasses.replace(hw, gradients=grads)          # validated like any configuration
        layer = HardwareLayer(model, name, hw_b)
        out, _, saved = layer.forward(cap["spikes"], cap.get("residual"))
        g_int = layer.backward(saved, cap["e"], cap["g_extra"])
        ref = float_layer_gradients(layer, saved["q"], cap["spikes"], cap.get("residual"), cap["e"],
                                    cap["g_extra"])
        same = float_layer_gradients(layer, saved["q"], cap["spikes"], cap.get("residual"),
                                     cap["e"], cap["g_extra"], trace=saved["trace"])
        cos, cos_same = _cosines(g_int, ref), _cosines(g_int, same)
        rows.append({"gradient_bits": bits, "rounding": grads.rounding, "grad_cosine": cos,
                     "min_grad_cosine": min(cos.values()), "grad_cosine_same_forward": cos_same,
                     "norm_ratio_same_forward": _norm_ratios(g_int, same),
                     "saturated_share": layer.stats.saturated_share,
                     "saturations": layer.stats.saturations, "shifts": layer.stats.last_shifts,
                     "forward_spike_agreement": float((out == ref["spikes"].to(out.dtype)).double().mean())})
    return {"layer": name, "mode": ctx.conv.mode, "samples": int(cap["spikes"].shape[1]),
            "timesteps": int(cap["spikes"].shape[0]), "residual": ctx.residual, "rows": rows}
