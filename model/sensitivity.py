"""Sensitivity of the calibration figures to the model's major parameters.

Each parameter is moved down and up by a relative step (default 25 %; the sparsities move by
absolute steps, as fractions) with everything else at its shipped value; the table reports
the proposed accelerator's PTT and HTT energy change versus STT and the SATA-like PTT and HTT
change versus STT (MS-ResNet34, N-Caltech101, published ranks, T=6).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from tqdm import tqdm

from gen.config import HardwareConfig

from .accelerators import make_accelerator
from .counts import Sparsity
from .energy_table import EnergyTable
from .evaluate import evaluate_layer
from .networks import CALIBRATION_NETWORK, FIG4_NETWORKS

__all__ = ["sensitivity_table", "PARAMETERS"]

MODES = ("stt", "ptt", "htt")


def _table_params(step: float) -> list[tuple[str, str, Callable[[EnergyTable, float], EnergyTable], float]]:
    return [
        ("DRAM energy per bit", "x", lambda t, f: t.with_overrides(dram_pj_per_bit=t.dram["read"] * f), step),
        ("SRAM leakage", "x", lambda t, f: t.with_overrides(leakage_factor=t.leakage_factor * f), step),
        ("SRAM access energy", "x", lambda t, f: t.with_overrides(scale={"sram": f}), step),
        ("multiplier PE MAC energy", "x", lambda t, f: t.with_overrides(scale={"mult_pe": f}), step),
        ("spike PE energy", "x", lambda t, f: t.with_overrides(scale={"spike_pe": f}), step),
    ]


PARAMETERS = ("DRAM energy per bit", "SRAM leakage", "SRAM access energy", "multiplier PE MAC energy",
              "spike PE energy", "spike sparsity", "gradient sparsity")


def _totals(layer_results, accs, table) -> dict[str, dict[str, float]]:
    """Network energy (pJ) per accelerator and mode from cached layer counts: only the energy
    table changes between the points of a sweep, so the counts are evaluated once."""
    return {a: {m: sum(evaluate_layer(r, accs[a], table).total_pj for r in rs)
                for m, rs in layer_results[a].items()} for a in accs}


def _figures(layer_results, accs, table) -> dict[str, float]:
    tot = _totals(layer_results, accs, table)
    return {"proposed_ptt": tot["proposed"]["ptt"] / tot["proposed"]["stt"] - 1,
            "proposed_htt": tot["proposed"]["htt"] / tot["proposed"]["stt"] - 1,
            "sata_ptt": tot["sata"]["ptt"] / tot["sata"]["stt"] - 1,
            "sata_htt": tot["sata"]["htt"] / tot["sata"]["stt"] - 1}


def sensitivity_table(cfg: HardwareConfig, table: EnergyTable, sparsity: Sparsity | None = None,
                      step: float = 0.25, sparsity_step: float = 0.05,
                      progress: bool = True) -> dict:
    """Rows of (parameter, low, high, figures at low, figures at high) and the baseline."""
    if not 0 < step < 1:
        raise ValueError(f"step must be a fraction in (0, 1), got {step}")
    sp = sparsity or Sparsity()
    wl = FIG4_NETWORKS[CALIBRATION_NETWORK]
    accs = {a: make_accelerator(a, cfg) for a in ("proposed", "sata")}
    specs = {m: wl.specs(m) for m in MODES}

    def run(s: Sparsity):
        return {a: {m: [acc.run_layer(x, wl.timesteps, s) for x in specs[m]] for m in MODES}
                for a, acc in accs.items()}

    jobs = len(_table_params(step)) * 2 + 4 + 1 + 3
    bar = tqdm(total=jobs, desc="sensitivity", disable=not progress, leave=False)
    base_layers = run(sp)
    base = _figures(base_layers, accs, table)
    bar.update()
    rows = []
    for name, kind, fn, st in _table_params(step):
        lo = _figures(base_layers, accs, fn(table, 1 - st)); bar.update()
        hi = _figures(base_layers, accs, fn(table, 1 + st)); bar.update()
        rows.append({"parameter": name, "change": f"-{100 * st:.0f}% / +{100 * st:.0f}%",
                     "low": lo, "high": hi})
    for name, field, value in (("spike sparsity", "spike", sp.spike), ("gradient sparsity", "grad", sp.grad)):
        vals = (max(0.0, value - sparsity_step), min(1.0, value + sparsity_step))
        figs = []
        for v in vals:
            figs.append(_figures(run(replace(sp, **{field: v}, per_layer={} if field == "spike" else sp.per_layer)),
                                 accs, table))
            bar.update(2)
        rows.append({"parameter": name, "change": f"{vals[0]:.2f} / {vals[1]:.2f} (from {value:.2f})",
                     "low": figs[0], "high": figs[1]})
    # structural choices of the proposed design: the generated RTL differs from the paper's
    from .accelerators import Proposed
    for name, kw in (("cluster 1 event-driven -> steps every channel (RTL)", {"event_driven": False}),
                     ("STT G2->G3 sequential -> row-pipelined (RTL)", {"stt_chain": "pipelined"}),
                     ("both (the generated RTL)", {"event_driven": False, "stt_chain": "pipelined"})):
        alt = dict(accs, proposed=Proposed(cfg, **kw))
        layers = dict(base_layers, proposed={m: [alt["proposed"].run_layer(x, wl.timesteps, sp)
                                                  for x in specs[m]] for m in MODES})
        fig = _figures(layers, alt, table)
        bar.update()
        rows.append({"parameter": name, "change": "structural", "low": base, "high": fig})
    bar.close()
    return {"network": CALIBRATION_NETWORK, "baseline": base, "rows": rows,
            "step": step, "sparsity_step": sparsity_step}


def sensitivity_markdown(result: dict) -> str:
    b = result["baseline"]
    lines = [f"Network: {result['network']}. Figures: energy change versus STT "
             f"(proposed PTT, proposed HTT, SATA-like PTT, SATA-like HTT), at the low / high "
             f"setting of each parameter.", "",
             f"| parameter | change | proposed PTT | proposed HTT | SATA-like PTT | SATA-like HTT |",
             "|---|---|---|---|---|---|",
             f"| (baseline) | | {100 * b['proposed_ptt']:+.1f}% | {100 * b['proposed_htt']:+.1f}% | "
             f"{100 * b['sata_ptt']:+.1f}% | {100 * b['sata_htt']:+.1f}% |"]
    for r in result["rows"]:
        cells = [f"{100 * r['low'][k]:+.1f}% / {100 * r['high'][k]:+.1f}%"
                 for k in ("proposed_ptt", "proposed_htt", "sata_ptt", "sata_htt")]
        lines.append(f"| {r['parameter']} | {r['change']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def calibration_search(cfg: HardwareConfig, table: EnergyTable, sparsity: Sparsity | None = None,
                       dram_points: int = 25, leakage_factors: Iterable[float] = (1.0, 1.5, 2.3),
                       progress: bool = True) -> dict:
    """The calibration rule of docs/energy_model.md, as a command: over a log-spaced grid of
    the DRAM energy per bit inside its published range and the SRAM leakage factors, the point
    whose larger deviation from the paper's PTT/HTT reductions is smallest, among the points
    where the SATA-like ordering holds (STT < dense, PTT > STT). Returns every grid point."""

    from .networks import PAPER_REDUCTIONS
    dram_entry = next(e for e in table.entries if e["kind"] == "dram")
    lo, hi = dram_entry["range"]
    sp = sparsity or Sparsity()
    wl = FIG4_NETWORKS[CALIBRATION_NETWORK]
    accs = {a: make_accelerator(a, cfg) for a in ("proposed", "sata")}
    modes = ("dense",) + MODES
    layers = {a: {m: [acc.run_layer(x, wl.timesteps, sp) for x in wl.specs(m)] for m in modes}
              for a, acc in tqdm(accs.items(), desc="counts", disable=not progress, leave=False)}
    points = []
    grid = [lo * (hi / lo) ** (i / (dram_points - 1)) for i in range(dram_points)]
    for lf in leakage_factors:
        for d in grid:
            t = table.with_overrides(dram_pj_per_bit=d, leakage_factor=lf)
            tot = _totals(layers, accs, t)
            red = {m: tot["proposed"][m] / tot["proposed"]["stt"] - 1 for m in ("ptt", "htt")}
            sata = {m: tot["sata"][m] / tot["sata"]["stt"] - 1 for m in ("dense", "ptt", "htt")}
            dev = max(abs(100 * (red[m] - PAPER_REDUCTIONS[m])) for m in red)
            points.append({"dram_pj_per_bit": d, "leakage_factor": lf, "proposed": red, "sata": sata,
                           "max_deviation_pp": dev, "sata_order": sata["dense"] > 0 and sata["ptt"] > 0})
    ok = [p for p in points if p["sata_order"]]
    best = min(ok or points, key=lambda p: p["max_deviation_pp"])
    return {"best": best, "points": points, "dram_range": [lo, hi]}
