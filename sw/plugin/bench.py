"""Table III-style benchmark: each training method, dense baseline vs the same network with its
block convs converted to PTT by :func:`sw.plugin.convert` (the plug-in path, not the project's
own MS-ResNet), trained on the embedded digits and their event version.

The network (:class:`BenchNet`, a small plain-PyTorch SNN over ``[T, B, ...]``)::

    conv 3x3 in->c (stem, stays dense) -> norm -> LIF
    conv 3x3 c->2c            -> norm -> LIF       (16x16)
    conv 3x3 2c->2c stride 2  -> norm -> LIF       (8x8)
    conv 3x3 2c->4c stride 2  -> norm -> LIF       (4x4)
    mean over H, W -> linear -> logits per timestep [T, B, K]

with the project's LIF (:class:`sw.neurons.MultiStepLIF`) and, per method:

- ``tdbn``: :class:`~sw.plugin.methods.ThresholdDependentBN` norms, CE of the mean output;
- ``tebn``: :class:`~sw.plugin.methods.TemporalEffectiveBN` norms, CE of the mean output;
- ``tet``: BatchNorm shared over time, :func:`~sw.plugin.methods.tet_loss`;
- ``nda``: BatchNorm shared over time, CE of the mean output, :func:`~sw.plugin.methods.nda_augment`
  on the training batches (event data only).

Measured per run: test accuracy after the last epoch, the median wall time of one training step
(forward, backward, optimiser step; first step of each epoch excluded), and the trainable
parameters. Training: SGD (momentum 0.9, weight decay 1e-4), cosine learning rate, fixed seed,
the same data order for baseline and PTT.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ttsnn.sw.layers import BatchNormTB
from ttsnn.sw.neurons import MultiStepLIF
from ttsnn.sw.plugin.methods import METHODS, TemporalEffectiveBN, ThresholdDependentBN, nda_augment, tet_loss
from ttsnn.sw.cli_util import UserError

__all__ = ["BenchNet", "BenchRow", "run_benchmark", "format_table", "BENCH_DATASETS", "plot_rows"]

BENCH_DATASETS = ("digits", "digits-events")


class _FoldedConv(nn.Module):
    """A plain ``nn.Conv2d`` applied to ``[T, B, ...]`` by folding T into the batch (the way
    spikingjelly's SeqToANNContainer feeds it): the conv inside is what convert() replaces."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class BenchNet(nn.Module):
    """The benchmark SNN (module docstring); ``norm`` is 'bn', 'tdbn' or 'tebn'."""

    def __init__(self, in_channels: int, num_classes: int, timesteps: int, norm: str = "bn",
                 channels: int = 16, v_threshold: float = 0.5):
        super().__init__()
        c = channels
        widths = [(in_channels, c, 1), (c, 2 * c, 1), (2 * c, 2 * c, 2), (2 * c, 4 * c, 2)]
        self.timesteps = timesteps
        blocks = []
        for cin, cout, stride in widths:
            conv = _FoldedConv(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False))
            blocks += [conv, _norm(norm, cout, timesteps, v_threshold), MultiStepLIF(v_threshold=v_threshold)]
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(4 * c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` images (direct-coded: repeated T times) or ``[T, B, C, H, W]`` frames ->
        logits per timestep ``[T, B, K]``."""
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        return self.fc(self.features(x).mean(dim=(3, 4)))


def _norm(kind: str, channels: int, timesteps: int, v_threshold: float) -> nn.Module:
    if kind == "tdbn":
        return ThresholdDependentBN(channels, v_threshold=v_threshold)
    if kind == "tebn":
        return TemporalEffectiveBN(channels, timesteps)
    return BatchNormTB(channels)


#: method -> (norm, loss, augmentation)
RECIPES = {"tdbn": ("tdbn", "ce", False), "tebn": ("tebn", "ce", False),
           "tet": ("bn", "tet", False), "nda": ("bn", "ce", True)}


@dataclass
class BenchRow:
    dataset: str
    method: str
    model: str          # 'dense' or 'ptt'
    test_acc: float
    step_ms: float      # median training-step wall time
    params: int
    conv_params: int    # the converted (block) convs only
    steps: int


def _conv_params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if n.startswith("features.") and ".conv." in n and not n.startswith("features.0."))


def _loss(kind: str, outputs: Tensor, targets: Tensor) -> Tensor:
    return tet_loss(outputs, targets) if kind == "tet" else F.cross_entropy(outputs.mean(0), targets)


def _batches(dataset, batch_size: int, seed: int, epoch: int):
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(dataset), generator=gen).tolist()
    return DataLoader(dataset, batch_size=batch_size, sampler=order), gen


def _accuracy(model: nn.Module, dataset, events: bool) -> float:
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=256):
            out = model(x.transpose(0, 1) if events else x).mean(0)
            correct += int((out.argmax(1) == y).sum())
            n += int(y.shape[0])
    return correct / n


def train_one(model: nn.Module, method: str, train_set, test_set, events: bool, epochs: int,
              batch_size: int, seed: int, lr: float, progress: bool, desc: str) -> tuple[float, float, int]:
    """Train ``model`` with ``method``'s loss/augmentation; returns (test acc, median step s, steps)."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    _, loss_kind, augment = RECIPES[method]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    times: list[float] = []
    first_steps: list[float] = []
    for epoch in range(epochs):
        loader, gen = _batches(train_set, batch_size, seed, epoch)
        model.train()
        for i, (x, y) in enumerate(tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False,
                                        disable=not progress, file=sys.stderr)):
            if augment:
                x = nda_augment(x, gen)  # outside the timed step: data loading, not training
            t0 = time.perf_counter()
            out = model(x.transpose(0, 1) if events else x)
            loss = _loss(loss_kind, out, y)
            if not torch.isfinite(loss):
                raise UserError(f"{desc}: loss became {loss.item()}; lower the learning rate (--lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # the first step of an epoch pays for allocation warm-up: used only if nothing else is timed
            (times if i > 0 else first_steps).append(time.perf_counter() - t0)
        sched.step()
    times = times or first_steps
    return _accuracy(model, test_set, events), statistics.median(times), len(times)


def _subset(ds, limit: int | None):
    return ds if limit is None or limit >= len(ds) else torch.utils.data.Subset(ds, range(limit))


def run_benchmark(datasets: Iterable[str] = BENCH_DATASETS, methods: Iterable[str] = METHODS,
                  epochs: int = 6, batch_size: int = 64, timesteps: int = 4, rank: int = 8,
                  channels: int = 8, seed: int = 0, lr: float = 0.1, max_train_samples: int | None = None,
                  max_test_samples: int | None = None, progress: bool = True) -> list[BenchRow]:
    """Train baseline and PTT for every (data set, method) pair; NDA only on event data."""
    from ttsnn.sw.data import load_dataset
    from ttsnn.sw.plugin.convert import convert

    rows = []
    for name in datasets:
        if name not in BENCH_DATASETS:
            raise UserError(f"benchmark data set must be one of {', '.join(BENCH_DATASETS)}, got {name!r}")
        train_set, test_set, info = load_dataset(name, timesteps=timesteps)
        train_set, test_set = _subset(train_set, max_train_samples), _subset(test_set, max_test_samples)
        for method in methods:
            if method not in RECIPES:
                raise UserError(f"unknown method {method!r}; choose from {', '.join(RECIPES)}")
            if method == "nda" and not info.events:
                continue  # NDA augments event frames
            for model_kind in ("dense", "ptt"):
                torch.manual_seed(seed)
                model = BenchNet(info.in_channels, info.num_classes, timesteps, RECIPES[method][0], channels)
                if model_kind == "ptt":
                    # the stem stays dense, as in the paper; the cores start from their own init
                    model, _ = convert(model, "ptt", rank, exclude=["features.0.conv"], init="random")
                acc, step, n = train_one(model, method, train_set, test_set, info.events, epochs, batch_size,
                                         seed, lr, progress, f"{name}/{method}/{model_kind}")
                rows.append(BenchRow(name, method, model_kind, acc, step * 1e3,
                                     sum(p.numel() for p in model.parameters() if p.requires_grad),
                                     _conv_params(model), n))
    return rows


def format_table(rows: list[BenchRow]) -> str:
    """Table III layout: one line per (data set, method), baseline and PTT side by side."""
    head = (f"{'data set':<14} {'method':<6} {'acc dense':>9} {'acc PTT':>8} {'step ms dense':>13} "
            f"{'step ms PTT':>11} {'time':>7} {'params dense':>12} {'params PTT':>10} {'conv params':>15}")
    lines = [head, "-" * len(head)]
    by_key = {(r.dataset, r.method, r.model): r for r in rows}
    for ds, method in dict.fromkeys((r.dataset, r.method) for r in rows):
        d, p = by_key.get((ds, method, "dense")), by_key.get((ds, method, "ptt"))
        if d is None or p is None:
            continue
        change = (p.step_ms - d.step_ms) / d.step_ms * 100
        lines.append(f"{ds:<14} {method:<6} {d.test_acc:>9.4f} {p.test_acc:>8.4f} {d.step_ms:>13.2f} "
                     f"{p.step_ms:>11.2f} {change:>+6.1f}% {d.params:>12,} {p.params:>10,} "
                     f"{d.conv_params:>6,}->{p.conv_params:<6,}")
    return "\n".join(lines)


def rows_as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def plot_rows(rows: list[BenchRow], path: str) -> None:
    """Bar chart of the training-step time and accuracy, baseline vs PTT per (data set, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys((r.dataset, r.method) for r in rows))
    by_key = {(r.dataset, r.method, r.model): r for r in rows}
    labels = [f"{d}\n{m}" for d, m in keys]
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.4 * len(keys)) * 1.6, 3.6))
    for ax, field, title in ((axes[0], "step_ms", "training step (ms, median)"),
                             (axes[1], "test_acc", "test accuracy")):
        xs = range(len(keys))
        for off, kind in ((-0.2, "dense"), (0.2, "ptt")):
            ax.bar([x + off for x in xs], [getattr(by_key[k + (kind,)], field) for k in keys], 0.4,
                   label="baseline" if kind == "dense" else "PTT")
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
