"""Reports: rich tables, JSON, CSV, Fig. 4-style plots (matplotlib, Agg) and a markdown summary.

All files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Sequence

from ttsnn.sw.fileio import atomic_write, atomic_write_json

from .counts import CATEGORIES, PASSES
from .evaluate import NetworkEnergy

__all__ = ["modes_summary", "print_modes_table", "write_json", "layers_csv", "plot_modes",
           "plot_fig4a", "plot_fig4b", "reduction"]

UJ = 1e-6  # pJ -> uJ


def reduction(results: Mapping[str, NetworkEnergy], mode: str, ref: str = "stt") -> float:
    """Fractional energy change of ``mode`` versus ``ref`` (negative = lower)."""
    return results[mode].total_pj / results[ref].total_pj - 1.0


def modes_summary(results: Mapping[str, NetworkEnergy]) -> dict:
    """The ``--json`` object: per mode, total pJ, breakdowns and cycles."""
    out = {}
    for m, r in results.items():
        cycles = r.cycles()
        out[m] = {"total_pj": r.total_pj,
                  "breakdown": {"by_pass_pj": r.by_pass(), "by_component_pj": r.by_category(),
                                "by_pass_component_pj": r.by_pass_category()},
                  "cycles": cycles,
                  "time_s": cycles["total"] / (r.clock_mhz * 1e6)}
        if "stt" in results:
            out[m]["vs_stt"] = reduction(results, m)
    return out


def print_modes_table(results: Mapping[str, NetworkEnergy], title: str, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = console or Console(width=170)
    t = Table(title=title)
    t.add_column("mode")
    t.add_column("total uJ", justify="right")
    t.add_column("vs STT", justify="right")
    for p in PASSES:
        t.add_column(p, justify="right")
    for c in CATEGORIES:
        t.add_column(c, justify="right")
    t.add_column("Mcycles", justify="right")
    for m, r in results.items():
        vs = f"{100 * reduction(results, m):+.1f}%" if "stt" in results else ""
        bp, bc = r.by_pass(), r.by_category()
        t.add_row(m, f"{r.total_pj * UJ:,.1f}", vs, *[f"{bp[p] * UJ:,.1f}" for p in PASSES],
                  *[f"{bc[c] * UJ:,.1f}" for c in CATEGORIES], f"{r.cycles()['total'] / 1e6:,.2f}")
    console.print(t)


def write_json(path: str | Path, data) -> None:
    atomic_write_json(path, data)


def layers_csv(rows_from: Sequence[tuple[str, str, NetworkEnergy]]) -> str:
    """CSV text: one row per (network, accelerator, mode, layer, pass) with energy per
    component (pJ) and cycles."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["network", "accelerator", "mode", "layer", "kind", "pass", *[f"{c}_pj" for c in CATEGORIES],
                "total_pj", "cycles"])
    for net, acc, r in rows_from:
        for l in r.layers:
            for p in PASSES:
                e = l.energy[p]
                w.writerow([net, acc, r.mode, l.name, l.kind, p, *[f"{e[c]:.6g}" for c in CATEGORIES],
                            f"{sum(e.values()):.6g}", f"{l.cycles[p]:.6g}"])
    return buf.getvalue()


def _save(fig, path: str | Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight"))


def _stacked(ax, names: Sequence[str], results: Sequence[NetworkEnergy], norm: float) -> None:
    import numpy as np
    bottom = np.zeros(len(results))
    colors = {"compute": "#4C72B0", "scratchpad": "#8172B2", "global_buffers": "#55A868",
              "dram": "#C44E52", "leakage": "#CCB974"}
    by_category = [r.by_category() for r in results]
    for c in CATEGORIES:
        vals = np.array([bc[c] / norm for bc in by_category])
        ax.bar(names, vals, bottom=bottom, label=c, color=colors[c])
        bottom += vals
    for i, v in enumerate(bottom):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)


def plot_modes(results: Mapping[str, NetworkEnergy], path: str | Path, title: str) -> None:
    """Stacked bars (by component) of every mode, normalised to STT (or the first mode)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ref = results.get("stt") or next(iter(results.values()))
    fig, ax = plt.subplots(figsize=(6, 4))
    _stacked(ax, [m.upper() for m in results], list(results.values()), ref.total_pj)
    ax.set_ylabel(f"training energy / {ref.mode.upper()}")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def plot_fig4a(sata: Mapping[str, Mapping[str, NetworkEnergy]], path: str | Path) -> None:
    """Fig. 4(a): dense, STT, PTT, HTT on the SATA-like accelerator, one panel per network,
    normalised to the dense model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(sata), figsize=(5 * len(sata), 4), squeeze=False)
    for ax, (net, res) in zip(axes[0], sata.items()):
        _stacked(ax, [m.upper() for m in res], list(res.values()), res["dense"].total_pj)
        ax.set_title(f"SATA-like: {net}")
        ax.set_ylabel("training energy / dense")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def plot_fig4b(proposed: Mapping[str, Mapping[str, NetworkEnergy]], path: str | Path,
               targets: Mapping[str, float] | None = None) -> None:
    """Fig. 4(b): STT, PTT, HTT on the proposed accelerator, normalised to STT, with the
    paper's reductions marked when given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(proposed), figsize=(5 * len(proposed), 4), squeeze=False)
    for ax, (net, res) in zip(axes[0], proposed.items()):
        sub = {m: res[m] for m in ("stt", "ptt", "htt") if m in res}
        _stacked(ax, [m.upper() for m in sub], list(sub.values()), res["stt"].total_pj)
        if targets and net in targets:
            first = True
            for i, m in enumerate(sub):
                if m in targets[net]:
                    ax.plot([i - 0.4, i + 0.4], [1 + targets[net][m]] * 2, "k--", lw=1,
                            label="paper, Fig. 4(b)" if first else None)
                    first = False
        ax.set_title(f"proposed: {net}")
        ax.set_ylabel("training energy / STT")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
