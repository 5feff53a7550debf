"""Fine-tuning with the accelerator's arithmetic in the loop, a sample of its steps checked on
the RTL (``python -m cosim finetune-check``).

The loop is ``python -m sw hw-finetune``'s integer variant (sw/hwtrain.py, sw/hwlayer.py):
every TT layer's forward, backward and weight gradients by the golden models, float master
weights, SGD. On ``rtl_steps`` of the ``steps`` (evenly spaced), the chosen layer's backward of
the batch's first sample also runs on the generated RTL under Verilator (cosim/train_step.py's
:func:`backward_on_rtl`) and must equal the golden result the loop uses, bit for bit.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
import torch.nn.functional as F
from ttsnn.sw.cli_util import UserError

__all__ = ["finetune_check"]


def _checked_layer_class():
    from ttsnn.sw import golden_backward as GB
    from ttsnn.sw.hwlayer import HardwareLayer

    class RtlCheckedLayer(HardwareLayer):
        """A :class:`HardwareLayer` whose integer backward is also run on the RTL when
        ``check_next`` is set (the batch's first sample), the mismatches recorded."""

        def __init__(self, *args, target, **kw):
            super().__init__(*args, **kw)
            self.target, self.check_next, self.checks = target, False, []

        def backward(self, saved, e, g_extra):
            from ttsnn.cosim.backward import compare_backward
            from ttsnn.cosim.train_step import backward_on_rtl

            res, e_frac, ints = self.integer_backward(saved, e, g_extra)
            if self.check_next:
                self.check_next = False
                tr = saved["trace"]
                one = GB.ForwardTrace(x=tr.x[:, :1], spikes=tr.spikes[:, :1], window=tr.window[:, :1],
                                      argmax=None if tr.argmax is None else tr.argmax[:, :1])
                extra = ints[1][:, :1] if len(ints) > 1 else None
                got, tiles, wall = backward_on_rtl(self.target, self.hw, saved["q"], one, ints[0][:, :1],
                                                    extra, res.shifts, saved["params"])
                mism = compare_backward(res, got)
                self.checks.append({"call": self.stats.calls, "match": not any(mism.values()),
                                    "mismatches": mism, "cycles": int(got.counters["cycles"]),
                                    "tiles": len({(t.row0, t.col0) for t in tiles}),
                                    "programs": len(tiles), "sim_wall_s": wall})
            return self.float_gradients(saved["q"], res.e_in, res.g_current, res.dw, res.shifts, e_frac, e.dtype)

    return RtlCheckedLayer


def finetune_check(checkpoint: str, layer: str, config: Any = "paper", *, steps: int = 4,
                   rtl_steps: int = 2, batch_size: int = 8, lr: float = 0.002, seed: int = 0,
                   rtl_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``steps`` fine-tuning steps of ``checkpoint`` with ``rtl_steps`` of them checked on
    the RTL for ``layer``; returns the report (``match``: every checked step bit-exact)."""
    from rich.console import Console

    from ttsnn.cosim.layer import RtlTarget
    from ttsnn.cosim.toolchain import setup_toolchain
    from ttsnn.gen.config import HardwareConfig, load_config
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.commands.hw_finetune import load_data
    from ttsnn.sw.hwlayer import HardwareLayer, hardware_forward
    from ttsnn.sw.hwtrain import _freeze_batchnorm
    from ttsnn.sw.quantize import layer_context, tt_layer_names
    from ttsnn.sw.train import _to_model_input

    if steps < 1 or not 0 <= rtl_steps <= steps or batch_size < 1 or not lr > 0:
        raise UserError("--steps and --batch-size must be >= 1, --rtl-steps in 0..steps, --lr > 0")
    console = Console(stderr=True, quiet=not progress)
    setup_toolchain()
    hw = config if isinstance(config, HardwareConfig) else load_config(config)
    hw = dataclasses.replace(hw, gradients=dataclasses.replace(hw.gradients, rounding="nearest"))
    model, meta = load_model(checkpoint)
    layer_context(model, layer)                     # lists the TT layers when the name is wrong
    target = RtlTarget.for_config(hw, rtl_dir)
    train_set, _, info = load_data(checkpoint, max_train_samples=steps * batch_size, max_test_samples=1)
    _freeze_batchnorm(model)
    checked_cls = _checked_layer_class()
    layers = {n: (checked_cls(model, n, hw, seed=seed + i, target=target) if n == layer
                  else HardwareLayer(model, n, hw, seed=seed + i))
              for i, n in enumerate(tt_layer_names(model))}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed)).tolist()
    check_at = {round(k * steps / rtl_steps) for k in range(rtl_steps)} if rtl_steps else set()
    losses, t0 = [], time.monotonic()
    for step in range(steps):
        idx = [order[(step * batch_size + j) % len(order)] for j in range(batch_size)]
        x = torch.stack([train_set[i][0] for i in idx])
        y = torch.tensor([int(train_set[i][1]) for i in idx])
        layers[layer].check_next = step in check_at
        with console.status(f"step {step + 1}/{steps}" + (" (backward also on the RTL)" if step in check_at else "")):
            out = hardware_forward(model, _to_model_input(x, info), layers)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))
    checks = layers[layer].checks
    return {"checkpoint": str(checkpoint), "layer": layer, "config": hw.name, "steps": steps,
            "batch_size": batch_size, "lr": lr, "step_loss": losses, "checked_steps": sorted(check_at),
            "checks": checks, "match": len(checks) == len(check_at) and all(c["match"] for c in checks),
            "wall_s": time.monotonic() - t0}
