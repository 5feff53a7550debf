"""Measure spike and gradient sparsity of a trained sw/ model, for the energy model.

:func:`measure_sparsity` runs the model (forward and backward, as in BPTT training) on a few
batches and records, per weight layer of ``model.spec``:

- the fraction of zero elements of the layer's input (spikes for every layer but the stem
  and the classifier): the ``per_layer`` spike sparsity of :class:`model.counts.Sparsity`;
- the fraction of zero elements of the gradient every LIF passes back to its membrane input
  (the surrogate zeroes it away from the threshold), averaged into ``grad``.

``python -m model sparsity --checkpoint CKPT --data NAME [--data-path DIR]`` writes the JSON
that ``python -m model energy --sparsity FILE`` reads.
"""

from __future__ import annotations

from typing import Iterable

import torch
from ttsnn.sw.cli_util import UserError

__all__ = ["measure_sparsity"]


def measure_sparsity(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                     source: str = "measured") -> dict:
    """Per-layer input sparsity and mean output-gradient sparsity over ``batches``.

    ``model``: an :class:`sw.resnet.MSResNet` (``.spec`` names its layers); ``batches``:
    ``(x, y)`` with ``x`` as the model takes it (``[B, C, H, W]`` or ``[T, B, C, H, W]``).
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("model has no .spec layer list; build it with sw.resnet.ms_resnet")
    zeros_in: dict[str, list[float]] = {s.name: [0.0, 0.0] for s in spec}
    handles = []
    for s in spec:
        try:
            mod = model.get_submodule(s.name)
        except AttributeError:
            raise ValueError(f"model has no module {s.name!r} listed in its spec") from None

        def pre(_m, args, name=s.name):
            x = args[0].detach()
            zeros_in[name][0] += float((x == 0).sum())
            zeros_in[name][1] += x.numel()

        handles.append(mod.register_forward_pre_hook(pre))
    from ttsnn.sw.neurons import MultiStepLIF
    lif_zero = [0.0, 0.0]

    def back(_m, grad_in, grad_out):
        g = grad_in[0]
        if g is not None:
            lif_zero[0] += float((g == 0).sum())
            lif_zero[1] += g.numel()

    for mod in model.modules():
        if isinstance(mod, MultiStepLIF):
            handles.append(mod.register_full_backward_hook(back))
    model.train()
    n = 0
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            out = model(x)
            torch.nn.functional.cross_entropy(out, y).backward()
            n += 1
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    if n == 0:
        raise UserError("no batches to measure sparsity on")
    per_layer = {k: z / t for k, (z, t) in zeros_in.items() if t and k not in ("conv1", "fc")}
    grad = lif_zero[0] / lif_zero[1] if lif_zero[1] else 0.7
    spikes = list(per_layer.values())
    return {"spike": sum(spikes) / len(spikes) if spikes else 0.9, "grad": grad,
            "per_layer": per_layer, "source": f"{source} ({n} batches)"}
