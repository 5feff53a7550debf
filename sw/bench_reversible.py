"""Training memory and step time of standard, checkpointed and reversible MS-ResNet blocks.

Variants (one training step = forward, loss, backward, SGD step on a fixed random batch):

* ``standard``: the MS-ResNet basic blocks, plain autograd (stores every layer's tensors);
* ``checkpoint``: the same blocks, each under ``torch.utils.checkpoint`` (non-reentrant;
  stores each block's input, re-runs the block in the backward pass);
* ``rev-stored``: the reversible network (:mod:`sw.reversible`) with plain autograd: the same
  function as the two below, storing its activations; separates the effect of the
  architecture (half-width F and G) from the effect of recomputation;
* ``rev-naive`` / ``rev-streamlined``: the reversible network with the recomputing backward
  (invert, re-run, autograd / one fused pass per block).

Two workloads: a *stack* of ``depth`` shape-keeping blocks on ``[T, B, C, H, W]`` (the node
measurement: memory over depth and T), and whole networks (MS-ResNet18 on 3x32x32, T=4;
MS-ResNet34 on 2x48x48 event frames, T=6; small batch), whose downsampling blocks are not
reversible and keep storing.

Memory comes from the untimed measurement step of :mod:`sw.bench`: ``saved`` = bytes autograd
saves for backward in the forward pass; ``peak`` = peak live torch CPU memory over the whole step
(PyTorch's MemTracker; parameters, gradients, optimiser state, activations, temporaries) and
``peak_act`` = its activation + temporary share at the peak. Step time: median of ``reps`` timed
steps after ``warmup``, the variants' steps interleaved (the machine's load changes hit all
alike); ``min`` is reported too, the steadier figure on a shared machine. The float-coupling
check runs :func:`sw.reversible.reconstruction_report` on a reversible stack with and without the
fixed-point grid and counts recomputed spikes that flip.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ttsnn.sw.arch import ConvSpec
from ttsnn.sw.bench import _quantiles, peak_step_memory, saved_tensor_bytes

__all__ = ["VARIANTS", "NETWORKS", "bench_stack", "bench_network", "float_flip_check",
           "format_rows", "plot_rows"]

VARIANTS = ("standard", "checkpoint", "rev-stored", "rev-naive", "rev-streamlined")
#: name -> (arch, in_channels, size, classes, T, events)
NETWORKS = {"resnet18": ("resnet18", 3, 32, 10, 4, False),
            "resnet34": ("resnet34", 2, 48, 101, 6, True)}
_NEURON = dict(tau=0.25, v_threshold=0.5, surrogate_function="rectangle", alpha=None)


def _checkpointed(block: nn.Module) -> nn.Module:
    from torch.utils.checkpoint import checkpoint

    block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)  # type: ignore
    return block


def _boost_bn(model: nn.Module, seed: int = 0) -> None:
    """BN affine weights that make the untrained layers spike at usual rates (10-40 %)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.4)


def _stack(variant: str, depth: int, channels: int, hw: int, frac_bits: int | None = 12) -> nn.Module:
    from ttsnn.sw.resnet import BasicBlock
    from ttsnn.sw.reversible import ReversibleBlock, ReversibleSequential

    if variant in ("standard", "checkpoint"):
        spec = ConvSpec("c", "conv3x3", channels, channels, 3, 1, (hw, hw), (hw, hw))
        blocks = [BasicBlock(spec, spec, "maxpool", _NEURON) for _ in range(depth)]
        if variant == "checkpoint":
            blocks = [_checkpointed(b) for b in blocks]
        model: nn.Module = nn.Sequential(*blocks)
    else:
        half = ConvSpec("c", "conv3x3", channels // 2, channels // 2, 3, 1, (hw, hw), (hw, hw),
                        reversible=True)
        blocks = [ReversibleBlock(half, half, "maxpool", _NEURON, frac_bits) for _ in range(depth)]
        model = ReversibleSequential(*blocks, backward=variant.removeprefix("rev-").replace(
            "stored", "autograd"))
    _boost_bn(model)
    return model.train()


def _network(variant: str, name: str, frac_bits: int | None = 12) -> tuple[nn.Module, tuple]:
    from ttsnn.sw.resnet import BasicBlock, ms_resnet

    arch, cin, size, classes, steps, events = NETWORKS[name]
    rev = variant.startswith("rev-")
    model = ms_resnet(arch, "dense", in_channels=cin, num_classes=classes, timesteps=steps,
                      input_size=size, reversible=rev,
                      reversible_backward=variant.removeprefix("rev-").replace("stored", "autograd")
                      if rev else "streamlined", reversible_frac_bits=frac_bits)
    if variant == "checkpoint":
        for m in model.modules():
            if isinstance(m, BasicBlock):
                _checkpointed(m)
    _boost_bn(model)
    return model.train(), (cin, size, classes, steps, events)


def _stepper(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x))
        loss.backward()
        opt.step()
    return step, opt


def _measure_all(models: dict[str, nn.Module], x: torch.Tensor,
                 loss_fn: Callable[[torch.Tensor], torch.Tensor], reps: int, warmup: int,
                 memory: bool) -> dict[str, dict[str, Any]]:
    """Time the variants' steps interleaved (rep 1 of every variant, then rep 2, ...), so that a
    change in the machine's load hits all of them alike; then measure memory one by one."""
    steppers = {v: _stepper(m, x, loss_fn) for v, m in models.items()}
    for _ in range(warmup):
        for step, _ in steppers.values():
            step()
    times: dict[str, list[float]] = {v: [] for v in models}
    for _ in range(reps):
        for v, (step, _) in steppers.items():
            t0 = time.perf_counter()
            step()
            times[v].append(time.perf_counter() - t0)
    rows = {}
    for v, model in models.items():
        q1, med, q3 = _quantiles(times[v])
        row: dict[str, Any] = {"median_s": med, "iqr_s": q3 - q1, "min_s": min(times[v]),
                               "params": sum(p.numel() for p in model.parameters())}
        if memory:
            step, opt = steppers[v]
            opt.zero_grad(set_to_none=True)
            loss, row["saved_bytes"] = saved_tensor_bytes(lambda: loss_fn(model(x)))
            loss.backward()
            opt.zero_grad(set_to_none=True)
            mem = peak_step_memory(step, model, opt) or {}
            row["peak_bytes"], row["peak_act_bytes"] = mem.get("peak_bytes"), mem.get("activation_bytes")
        rows[v] = row
    return rows


def bench_stack(depths: Sequence[int], timesteps: Sequence[int], variants: Sequence[str] = VARIANTS,
                channels: int = 64, hw: int = 16, batch: int = 2, reps: int = 3, warmup: int = 1,
                memory: bool = True, seed: int = 0, progress: Callable[[str], None] = lambda s: None
                ) -> list[dict[str, Any]]:
    """One row per (T, depth, variant) for a stack of shape-keeping blocks."""
    rows = []
    for steps in timesteps:
        x = torch.randn(steps, batch, channels, hw, hw, generator=torch.Generator().manual_seed(seed)) + 0.3
        for depth in depths:
            progress(f"stack T={steps} depth={depth}")
            models = {}
            for variant in variants:
                torch.manual_seed(seed)
                models[variant] = _stack(variant, depth, channels, hw)
            res = _measure_all(models, x, lambda out: out.square().mean(), reps, warmup, memory)
            rows += [{"workload": "stack", "T": steps, "depth": depth, "variant": v,
                      "shape": [steps, batch, channels, hw, hw], **r} for v, r in res.items()]
    return rows


def bench_network(name: str, variants: Sequence[str] = VARIANTS, batch: int = 2, reps: int = 3,
                  warmup: int = 1, memory: bool = True, seed: int = 0,
                  progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """One row per variant for a whole MS-ResNet (``name`` in :data:`NETWORKS`)."""
    progress(name)
    models = {}
    for variant in variants:
        torch.manual_seed(seed)
        models[variant], (cin, size, classes, steps, events) = _network(variant, name)
    g = torch.Generator().manual_seed(seed + 1)
    shape = ((steps, batch) if events else (batch,)) + (cin, size, size)
    x = torch.rand(shape, generator=g)
    if events:
        x = (x < 0.2).float()
    y = torch.randint(0, classes, (batch,), generator=g)
    res = _measure_all(models, x, lambda out: F.cross_entropy(out, y), reps, warmup, memory)
    blocks = sum(1 for s in next(iter(models.values())).spec if s.kind == "conv3x3") // 2
    return [{"workload": name, "T": steps, "depth": blocks, "variant": v, "shape": list(shape), **r}
            for v, r in res.items()]


def float_flip_check(depth: int = 8, channels: int = 64, hw: int = 16, steps: int = 4, batch: int = 2,
                     seed: int = 0) -> dict[str, Any]:
    """Reconstruction of a stack of reversible blocks with float coupling (no grid) and with the
    default fixed-point grid: max error and recomputed spikes that differ from the real ones."""
    from ttsnn.sw.reversible import DEFAULT_FRAC_BITS, reconstruction_report

    out = {}
    x = torch.randn(steps, batch, channels, hw, hw, generator=torch.Generator().manual_seed(seed)) + 0.3
    for label, bits in (("float", None), ("fixed", DEFAULT_FRAC_BITS)):
        torch.manual_seed(seed)
        rep = reconstruction_report(_stack("rev-streamlined", depth, channels, hw, bits), x)
        out[label] = {k: rep[k] for k in ("flips", "spikes_checked", "max_abs_error")}
    out["setup"] = {"depth": depth, "shape": [steps, batch, channels, hw, hw]}
    return out


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.2f}"


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Markdown table; ratios are against the ``standard`` (``rev-naive``) row of the same
    workload, T and depth (memory: standard / variant; time: variant / standard, medians)."""
    base = {(r["workload"], r["T"], r["depth"]): r for r in rows if r["variant"] == "standard"}
    naive = {(r["workload"], r["T"], r["depth"]): r for r in rows if r["variant"] == "rev-naive"}
    lines = ["| workload | T | blocks | variant | step median (s) | step min (s) | vs standard | vs rev-naive | "
             "params | saved (MiB) | saved: standard / this | peak act. (MiB) | peak act.: standard / this | "
             "peak total (MiB) |", "|" + "---|" * 14]
    for r in rows:
        key = (r["workload"], r["T"], r["depth"])
        b, n = base.get(key), naive.get(key)

        def ratio(k, row=r, b=b):
            return "-" if not b or not row.get(k) or b.get(k) is None else f"{b[k] / row[k]:.2f}x"
        t_std = f"{r['median_s'] / b['median_s']:.2f}x" if b else "-"
        t_naive = f"{(r['median_s'] / n['median_s'] - 1) * 100:+.1f} %" if n else "-"
        lines.append(f"| {r['workload']} | {r['T']} | {r['depth']} | {r['variant']} | {r['median_s']:.3f} | "
                     f"{r['min_s']:.3f} | "
                     f"{t_std} | {t_naive} | {r['params']:,} | {_mib(r.get('saved_bytes'))} | "
                     f"{ratio('saved_bytes')} | {_mib(r.get('peak_act_bytes'))} | {ratio('peak_act_bytes')} | "
                     f"{_mib(r.get('peak_bytes'))} |")
    return "\n".join(lines)


def plot_rows(rows: list[dict[str, Any]], path: str) -> None:
    """Saved-for-backward memory and step time of the stack over depth (one line per variant
    and T)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stack = [r for r in rows if r["workload"] == "stack"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    styles = {"standard": "k-o", "checkpoint": "b-s", "rev-stored": "g--^", "rev-naive": "m-v",
              "rev-streamlined": "r-D"}
    ts = sorted({r["T"] for r in stack})
    for steps in ts:
        alpha = 0.35 + 0.65 * (steps / max(ts))
        for v, style in styles.items():
            pts = sorted((r["depth"], r) for r in stack if r["T"] == steps and r["variant"] == v)
            if not pts:
                continue
            d = [p[0] for p in pts]
            axes[0].plot(d, [p[1].get("saved_bytes", 0) / 2**20 for p in pts], style, alpha=alpha,
                         label=f"{v} T={steps}")
            axes[1].plot(d, [(p[1].get("peak_act_bytes") or 0) / 2**20 for p in pts], style, alpha=alpha)
            axes[2].plot(d, [p[1]["median_s"] for p in pts], style, alpha=alpha)
    for ax, title in zip(axes, ("saved for backward (MiB)", "peak activation memory (MiB)",
                                "training step (s, median)")):
        ax.set_xlabel("blocks in the stack")
        ax.set_xscale("log", base=2)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7, ncol=2)
    shape = stack[0]["shape"] if stack else []
    fig.suptitle(f"Reversible vs standard MS-ResNet blocks, stack of shape-keeping blocks, "
                 f"[T, B, C, H, W] = {shape} (CPU)")
    fig.tight_layout()
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
