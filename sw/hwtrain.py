"""Fine-tuning with the accelerator's arithmetic in the loop (``python -m sw hw-finetune``).

From one trained TT checkpoint, the same fine-tuning (same data order, optimiser and learning
rate) is run in several *variants*:

- ``float``: plain float autograd (the reference);
- ``nearest`` / ``floor`` / ``stochastic``: every TT layer's forward pass, backward pass and
  weight gradients computed by the integer golden models (:mod:`sw.hwlayer`) with that gradient
  rounding; the host keeps float master weights, steps the optimiser and re-quantises.

BatchNorm is folded and frozen in every variant (it is on the chip), so the comparison isolates
the arithmetic. Non-TT layers (stem, shortcut convs, classifier) train in float in all variants.
Per step the training loss is recorded; per epoch the test accuracy of the float master weights,
and at the end the test accuracy of the integer forward (inference on the accelerator).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ttsnn.sw.fileio import atomic_write, atomic_write_json
from ttsnn.sw.cli_util import UserError

__all__ = ["VARIANTS", "finetune", "plot_curves"]

VARIANTS = ("float", "nearest", "floor", "stochastic")


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            for p in m.parameters():
                p.requires_grad_(False)
    model.eval()        # running statistics stay; the LIF surrogate does not depend on the mode


def _hardware_layers(model, hw, rounding: str, seed: int) -> dict:
    from ttsnn.sw.hwlayer import HardwareLayer
    from ttsnn.sw.quantize import tt_layer_names

    hw_r = dataclasses.replace(hw, gradients=dataclasses.replace(hw.gradients, rounding=rounding))
    return {n: HardwareLayer(model, n, hw_r, seed=seed + i) for i, n in enumerate(tt_layer_names(model))}


def _accuracy(model, dataset, info, layers=None, batch_size: int = 64) -> float:
    from ttsnn.sw.hwlayer import hardware_forward
    from ttsnn.sw.train import _to_model_input

    correct = n = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            xin = _to_model_input(x, info)
            out = model(xin) if layers is None else hardware_forward(model, xin, layers)
            correct += int((out.argmax(1) == y).sum())
            n += int(y.shape[0])
    return correct / n


def _run_variant(variant: str, checkpoint: str, hw, data, *, epochs: int, batch_size: int,
                 lr: float, seed: int, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.hwlayer import hardware_forward
    from ttsnn.sw.train import _to_model_input

    train_set, test_set, info = data
    model, _ = load_model(checkpoint)
    _freeze_batchnorm(model)
    layers = None if variant == "float" else _hardware_layers(model, hw, variant, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    row = {"variant": variant, "step_loss": [], "epoch_test_acc": [_accuracy(model, test_set, info)]}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        loader = DataLoader(train_set, batch_size=batch_size, sampler=order)
        for x, y in tqdm(loader, desc=f"{variant} epoch {epoch + 1}/{epochs}", leave=False,
                         disable=not progress, file=sys.stderr):
            xin = _to_model_input(x, info)
            out = model(xin) if layers is None else hardware_forward(model, xin, layers)
            loss = F.cross_entropy(out, y)
            if not torch.isfinite(loss):
                raise UserError(f"{variant}: loss became {loss.item()}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            row["step_loss"].append(float(loss.detach()))
        row["epoch_test_acc"].append(_accuracy(model, test_set, info))
        log(f"{variant}: epoch {epoch + 1}/{epochs} train loss (last step) {row['step_loss'][-1]:.4f}, "
            f"test accuracy {row['epoch_test_acc'][-1]:.4f}")
    row["seconds"] = time.perf_counter() - t0
    row["final_test_acc"] = row["epoch_test_acc"][-1]
    if layers is not None:
        row["final_test_acc_integer_forward"] = _accuracy(model, test_set, info, layers)
        row["saturated_share"] = {n: l.stats.saturated_share for n, l in layers.items()}
    return row


def finetune(checkpoint: str, out: str | Path, hw, data, variants: tuple[str, ...] = ("float", "nearest", "stochastic"),
             *, epochs: int = 1, batch_size: int = 32, lr: float = 0.01, seed: int = 0,
             progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune ``checkpoint`` in each of ``variants`` on ``data = (train_set, test_set,
    info)`` (``sw.commands.hw_finetune.load_data`` reads the checkpoint's data set); write
    ``finetune.json`` and ``finetune.png`` (loss curves) under ``out`` and return the results."""
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.quantize import tt_layer_names

    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UserError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise UserError("epochs and batch size must be >= 1 and the learning rate > 0")
    model, _ = load_model(checkpoint)
    if not tt_layer_names(model):
        raise UserError(f"{checkpoint}: no TT layers to put on the accelerator (a dense model)")
    train_set, test_set, info = data
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"fine-tuning {checkpoint} ({model.hparams.get('mode')}) on {info.name}: {len(train_set)} train / "
        f"{len(test_set)} test samples, {epochs} epoch(s), batch {batch_size}, lr {lr}, BatchNorm frozen; "
        f"variants {', '.join(variants)} (config '{hw.name}', {hw.gradients.width}-bit gradients)")
    rows = [_run_variant(v, checkpoint, hw, (train_set, test_set, info), epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed, progress=progress, log=log)
            for v in variants]
    result = {"checkpoint": str(checkpoint), "config": hw.name, "gradient_bits": hw.gradients.width,
              "epochs": epochs, "batch_size": batch_size, "lr": lr, "train_samples": len(train_set),
              "test_samples": len(test_set), "variants": rows}
    atomic_write_json(out / "finetune.json", result)
    plot_curves(result, out / "finetune.png")
    return result


def plot_curves(result: dict, path: str | Path) -> None:
    """Training loss per step of every variant (and test accuracy per epoch), as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for row in result["variants"]:
        label = "float autograd" if row["variant"] == "float" else f"accelerator arithmetic ({row['variant']})"
        a1.plot(range(1, len(row["step_loss"]) + 1), row["step_loss"], label=label, lw=1.2)
        a2.plot(range(len(row["epoch_test_acc"])), row["epoch_test_acc"], marker="o", label=label)
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel("test accuracy (float master weights)")
    a1.legend(fontsize=8)
    fig.suptitle(f"fine-tuning {Path(result['checkpoint']).name}: {result['gradient_bits']}-bit gradients, "
                 f"BatchNorm frozen")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def summary_lines(result: dict) -> list[str]:
    """One line per variant: final test accuracy (float weights, integer forward), loss."""
    lines = []
    for r in result["variants"]:
        extra = (f", integer forward {r['final_test_acc_integer_forward']:.4f}"
                 if "final_test_acc_integer_forward" in r else "")
        lines.append(f"{r['variant']:<10} test accuracy {r['epoch_test_acc'][0]:.4f} -> {r['final_test_acc']:.4f}"
                     f"{extra}; last-step loss {r['step_loss'][-1]:.4f}; {r['seconds']:.0f} s")
    return lines

