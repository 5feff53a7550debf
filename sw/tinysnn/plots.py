"""Plots of the STDP networks (matplotlib, Agg, written atomically as PNG)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ttsnn.sw.fileio import atomic_write

__all__ = ["plot_receptive_fields", "plot_confusion", "plot_pareto"]


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    # the temporary name ends in .tmp, so the format is given rather than taken from it
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_receptive_fields(weights: Tensor, image_shape: tuple[int, int], path: str | Path,
                          assignments: Tensor | None = None, title: str = "") -> Path:
    """Each neuron's input weights as an image, in a square grid (label in the corner)."""
    plt = _plt()
    n = weights.shape[1]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = image_shape
    # one pixel of NaN (drawn blank) between the fields keeps neighbours apart
    fields = weights.t().reshape(n, h, w).float()
    padded = torch.full((rows * cols, h + 1, w + 1), float("nan"))
    padded[:n, :h, :w] = fields
    grid = padded.view(rows, cols, h + 1, w + 1).permute(0, 2, 1, 3).reshape(rows * (h + 1), cols * (w + 1))
    fig, ax = plt.subplots(figsize=(min(12, 1 + 0.45 * cols), min(12, 1 + 0.45 * rows)))
    im = ax.imshow(grid.numpy(), cmap="hot_r", interpolation="nearest")
    if assignments is not None and cols <= 20:
        for j in range(n):
            r, c = divmod(j, cols)
            ax.text(c * (w + 1) + 0.2, r * (h + 1) + 1.2, str(int(assignments[j])), fontsize=6, color="tab:blue")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title(title or f"receptive fields of {n} excitatory neurons")
    return _save(fig, path)


def plot_confusion(confusion: Tensor, path: str | Path, title: str = "") -> Path:
    plt = _plt()
    k = confusion.shape[0]
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_title(title or "confusion matrix")
    return _save(fig, path)


def plot_pareto(candidates: Sequence[dict[str, Any]], front: Sequence[int], path: str | Path,
                chosen: Sequence[dict[str, Any]] = (), title: str = "tinySNN candidates: accuracy vs memory",
                colours: dict[str, str] | None = None) -> Path:
    """Accuracy against memory (relative to each network's FP32 memory), Pareto front drawn;
    the colour of a point is ``colours[candidate['variant']]`` (default: the two networks)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"FP32": "*", "PTQ": "o", "ITQ": "s"}
    colours = colours or {"baseline": "tab:grey", "tinysnn": "tab:blue"}
    for c in candidates:
        ax.scatter(c["memory_bits"] / 8 / 1024, c["accuracy"], marker=markers.get(c.get("scheme"), "o"),
                   color=colours.get(c.get("variant"), "tab:green"), s=28, alpha=0.75)
    f = [candidates[i] for i in front]
    ax.plot([c["memory_bits"] / 8 / 1024 for c in f], [c["accuracy"] for c in f], "r-", lw=1, label="Pareto front")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in chosen:  # one label per chosen candidate, listing its mus
        by_name.setdefault(s["name"], []).append(s)
    for name, group in by_name.items():
        s = group[0]
        mus = ", ".join(f"{g['mu']:g}" for g in group)
        ax.annotate(f"{name}\n(mu = {mus})", (s["memory_bits"] / 8 / 1024, s["accuracy"]), fontsize=6,
                    xytext=(4, -14), textcoords="offset points")
    for name, m in markers.items():
        ax.scatter([], [], marker=m, color="k", label=name)
    for name, col in colours.items():
        ax.scatter([], [], marker="o", color=col, label=name)
    ax.set_xscale("log")
    from matplotlib.ticker import ScalarFormatter
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=6)
    ax.set_xlabel("memory (KiB)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(fig, path)
