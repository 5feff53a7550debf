"""tinySNN's quantisation search applied to a TT-SNN on the accelerator's integer formats.

A *candidate* is a set of the accelerator's widths (weight, activation, membrane) and a
rounding mode of the weights and parameters. For each one:

- **PTQ**: every TT layer of the trained network is quantised once (:func:`sw.quantize.quantize_tt_layer`,
  calibrated on the float network's inputs to that layer) and the whole network is evaluated
  with each TT layer computed by the integer golden model (:func:`sw.golden.forward_stages`,
  bit-identical to the RTL); the other layers (stem, shortcuts, classifier) stay float, on the
  host, as in ``sw.hwlayer.hardware_forward``.
- **ITQ**: a short quantisation-aware fine-tuning with each TT layer's forward, backward and
  weight gradients computed by the accelerator's arithmetic at the candidate's widths
  (:class:`sw.hwlayer.HardwareLayer`, the machinery of ``python -m sw hw-finetune``), then
  evaluated as PTQ.
- **Memory** (tinySNN's definition, for the part the accelerator stores): ``#weights x weight
  bits + sum over neuron parameters of #params x bits``: the TT cores at the weight width, per
  output channel the folded BatchNorm (two scales at ``affine_scale`` bits, a bias at the
  membrane width), per layer the threshold (membrane width) and leak multiplier
  (``leak_mul`` bits), and every neuron's membrane potential at the membrane width. FP32
  memory: the same counts at 32 bits.

Energy needs model/'s energy table and the accelerator model, which sit above sw/ in the
package graph: the front end ``python -m model hw-explore`` prices the candidates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from ttsnn.sw import golden
from ttsnn.sw.quantize import (ROUNDING_MODES, capture_layer_io, layer_context, quantize_residual,
                         quantize_tt_layer, tt_layer_names)
from ttsnn.sw.cli_util import UserError

__all__ = ["Candidate", "layer_shapes", "memory_entries", "memory_bits", "fp32_memory_bits",
           "quantize_network", "integer_forward", "accuracy", "finetune_on_accelerator",
           "GRADIENT_ROUNDING"]

#: The gradient rounding of the ITQ fine-tuning for each weight rounding (the backward
#: datapath rounds a shift by floor, not towards zero: the nearest of its modes to truncation).
GRADIENT_ROUNDING = {"nearest": "nearest", "truncate": "floor", "stochastic": "stochastic"}


@dataclass(frozen=True)
class Candidate:
    """One point of the search: the accelerator's widths, the rounding, PTQ or ITQ."""
    weight: int
    activation: int
    membrane: int
    rounding: str = "nearest"
    scheme: str = "PTQ"

    def __post_init__(self) -> None:
        for name in ("weight", "activation", "membrane"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 32:
                raise UserError(f"candidate {name} width must be an integer in 2..32, got {v!r}")
        if self.membrane < self.activation:
            raise UserError(f"the membrane width ({self.membrane}) must be >= the activation width "
                            f"({self.activation}): the accelerator adds activations into the membrane")
        if self.rounding not in ROUNDING_MODES:
            raise UserError(f"unknown rounding {self.rounding!r}; choose from {', '.join(ROUNDING_MODES)}")
        if self.scheme not in ("PTQ", "ITQ"):
            raise UserError(f"scheme must be PTQ or ITQ, got {self.scheme!r}")

    @property
    def name(self) -> str:
        return f"{self.scheme} w{self.weight} a{self.activation} m{self.membrane} {self.rounding}"

    def widths(self, base: Any) -> SimpleNamespace:
        """The datapath widths of this candidate on top of ``base`` (a ``gen.config.Widths`` or
        a mapping): the accumulator grows to hold one product (``weight + activation``)."""
        b = golden.resolve_widths(base)
        return SimpleNamespace(weight=self.weight, activation=self.activation, membrane=self.membrane,
                               accumulator=max(b.accumulator, self.weight + self.activation),
                               affine_scale=b.affine_scale, leak_mul=b.leak_mul,
                               host_data=getattr(b, "host_data", 32))


# ---- memory ----------------------------------------------------------------------------------

def layer_shapes(model: nn.Module) -> list[dict[str, Any]]:
    """Per TT layer: channels, rank and the output neurons (``Cout x Ho x Wo``, from one
    forward pass of a zero input), in forward order."""
    names = tt_layer_names(model)
    if not names:
        raise UserError("the model has no TT layers: nothing runs on the accelerator")
    outs: dict[str, tuple[int, ...]] = {}

    def keep_shape(name: str):
        def hook(module, args, out) -> None:      # returns None: the output is left unchanged
            outs.setdefault(name, tuple(out.shape))
        return hook

    hooks = [layer_context(model, n).conv.register_forward_hook(keep_shape(n)) for n in names]
    hp = model.hparams
    size = hp["input_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    x = torch.zeros(1, hp["in_channels"], h, w)          # one image [B=1, C, H, W]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hk in hooks:
            hk.remove()
    rows = []
    for n in names:
        conv = layer_context(model, n).conv
        r = conv.g1.weight.shape[0]
        cin, cout = conv.in_channels, conv.out_channels
        neurons = 1
        for d in outs[n][-3:]:
            neurons *= int(d)
        rows.append({"name": n, "in_channels": cin, "rank": r, "out_channels": cout,
                     "weights": cin * r + 2 * 3 * r * r + r * cout, "neurons": neurons})
    return rows


def memory_entries(shapes: list[dict[str, Any]], widths: Any) -> list[tuple[str, int, int]]:
    """``(name, count, bits)`` of everything the accelerator stores for the network's TT layers
    at ``widths`` (fields ``weight``, ``membrane``, ``affine_scale``, ``leak_mul``)."""
    wd = golden.resolve_widths(widths)
    n_layers = len(shapes)
    channels = sum(s["out_channels"] for s in shapes)
    return [("TT-core weights", sum(s["weights"] for s in shapes), wd.weight),
            ("folded-BN scales (2 per channel)", 2 * channels, wd.affine_scale),
            ("folded-BN biases", channels, wd.membrane),
            ("thresholds", n_layers, wd.membrane),
            ("leak multipliers", n_layers, wd.leak_mul),
            ("membrane potentials", sum(s["neurons"] for s in shapes), wd.membrane)]


def memory_bits(shapes: list[dict[str, Any]], widths: Any) -> int:
    return sum(count * bits for _, count, bits in memory_entries(shapes, widths))


def fp32_memory_bits(shapes: list[dict[str, Any]]) -> int:
    """The same quantities stored as 32-bit floats."""
    return sum(count * 32 for _, count, _ in memory_entries(shapes, {
        "weight": 32, "activation": 32, "accumulator": 64, "membrane": 32, "affine_scale": 32,
        "leak_mul": 32}))


# ---- quantisation and the integer network ----------------------------------------------------

def quantize_network(model: nn.Module, calib_inputs: Tensor, widths: Any, rounding: str = "nearest",
                     seed: int = 0) -> dict[str, Any]:
    """Every TT layer of ``model`` as a ``QuantTTLayer`` at ``widths``, each calibrated once on
    its float inputs for ``calib_inputs`` (post-training quantisation)."""
    out = {}
    for i, name in enumerate(tt_layer_names(model)):
        ctx = layer_context(model, name)
        cal = capture_layer_io(model, ctx, calib_inputs)
        out[name] = quantize_tt_layer(ctx.conv, ctx.bn, tau=float(ctx.lif.tau),
                                      v_threshold=float(ctx.lif.v_threshold), calib_spikes=cal["spikes"],
                                      calib_residual=cal.get("residual"), widths=widths,
                                      rounding=rounding, seed=seed + i)
    return out


class _FrozenIntegerLayer:
    """A quantised TT layer in the place ``sw.hwlayer.hardware_forward`` expects a
    ``HardwareLayer``: forward only, with fixed (post-training) formats."""

    def __init__(self, conv: nn.Module, qlayer: Any, widths: Any):
        self.conv, self.q, self.wd = conv, qlayer, golden.resolve_widths(widths)
        qlayer.check_fits(self.wd)

    def forward(self, spikes: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor, dict]:
        q, wd = self.q, self.wd
        res_q = None if residual is None else quantize_residual(residual, q, wd)
        window = nn.functional.pad(spikes.to(torch.int64), (1, 1, 1, 1))   # [T, B, C, H+2, W+2]
        full = torch.tensor(q.full_timesteps(spikes.shape[0]))
        st = golden.forward_stages(q, window, res_q, wd, full)
        current = st.current.to(spikes.dtype) * 2.0 ** -q.frac_bits
        return st.spikes.to(spikes.dtype), current, {}


def integer_forward(model: nn.Module, x: Tensor, qlayers: dict[str, Any], widths: Any) -> Tensor:
    """Logits of ``model`` with every TT layer computed by the integer golden model."""
    from ttsnn.sw.hwlayer import hardware_forward

    layers = {n: _FrozenIntegerLayer(layer_context(model, n).conv, q, widths) for n, q in qlayers.items()}
    with torch.no_grad():
        return hardware_forward(model, x, layers)


def accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], qlayers: dict[str, Any] | None = None,
             widths: Any = None) -> float:
    """Top-1 accuracy over ``(model input, labels)`` batches: float (``qlayers`` None) or with
    the integer TT layers."""
    correct = n = 0
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            out = model(x) if qlayers is None else integer_forward(model, x, qlayers, widths)
            correct += int((out.argmax(1) == y).sum())
            n += int(y.shape[0])
    if n == 0:
        raise UserError("no evaluation samples")
    return correct / n


# ---- ITQ: quantisation-aware fine-tuning on the accelerator's arithmetic ---------------------

def finetune_on_accelerator(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], widths: Any,
                            gradients: Any, rounding: str, *, lr: float = 0.01, seed: int = 0) -> list[float]:
    """Fine-tune ``model`` in place on ``batches`` (model inputs, labels) with every TT layer's
    forward, backward and weight gradients computed by the golden models at ``widths``
    (``sw.hwlayer.HardwareLayer``; BatchNorm folded and frozen as on the chip; SGD with
    momentum 0.9 as ``python -m sw hw-finetune``). ``gradients``: a ``gen.config.GradientFormats``
    (its rounding is replaced by the one matching ``rounding``). Returns the loss per step."""
    import torch.nn.functional as F

    from ttsnn.sw.hwlayer import HardwareLayer, hardware_forward
    from ttsnn.sw.hwtrain import _freeze_batchnorm

    hw = SimpleNamespace(widths=golden.resolve_widths(widths),
                         gradients=dataclasses.replace(gradients, rounding=GRADIENT_ROUNDING[rounding]))
    _freeze_batchnorm(model)
    layers = {n: HardwareLayer(model, n, hw, seed=seed + i) for i, n in enumerate(tt_layer_names(model))}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    losses = []
    for x, y in batches:
        loss = F.cross_entropy(hardware_forward(model, x, layers), y)
        if not torch.isfinite(loss):
            raise UserError(f"ITQ fine-tuning: the loss became {loss.item()}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
