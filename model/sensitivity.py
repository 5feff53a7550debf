"""Sensitivity of the Fig. 4 figures to the model's constants and choices.

Each constant group (:data:`model.energy_table.GROUPS`) is moved to the low and the high end
of its published range with everything else central; the sparsities move by absolute steps
(as fractions); then the structural choices of the proposed design. The table reports
the proposed accelerator's PTT and HTT energy change versus STT and the SATA-like PTT and HTT
change versus STT (MS-ResNet34, N-Caltech101, published ranks, T=6).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

from ttsnn.gen.config import HardwareConfig

from .accelerators import make_accelerator
from .counts import Sparsity
from .energy_table import GROUPS, EnergyTable
from .evaluate import evaluate_layer
from .networks import PAPER_NETWORK, FIG4_NETWORKS

__all__ = ["sensitivity_table", "PARAMETERS"]

MODES = ("stt", "ptt", "htt")


GROUP_NAMES = {"dram": "DRAM energy per bit", "sram_leakage": "SRAM leakage",
               "sram_access": "SRAM access energy", "logic": "logic (add/mul) energy"}


def _table_params() -> list[tuple[str, Callable[[EnergyTable, str], EnergyTable]]]:
    return [(g, lambda t, lv, g=g: t.at_levels(**{g: lv})) for g in GROUPS]


PARAMETERS = tuple(GROUP_NAMES[g] for g in GROUPS) + ("spike sparsity", "gradient sparsity")


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


def _range_text(table: EnergyTable, g: str) -> str:
    if g == "dram":
        d = table.dram_memories[table.dram_memory]
        return f"{table.dram_memory} {d['low']:g} / {d['high']:g} pJ/bit"
    if g == "sram_leakage":
        return f"{table.leakage_density[0]:g} / {table.leakage_density[1]:g} mW/KB"
    if g == "sram_access":
        return f"x{table.access_range[0]:g} / x{table.access_range[2]:g}"
    return "published low / high"


def sensitivity_table(cfg: HardwareConfig, table: EnergyTable, sparsity: Sparsity | None = None,
                      sparsity_step: float = 0.05, progress: bool = True) -> dict:
    """Rows of (parameter, low, high, figures at low, figures at high) and the baseline."""
    sp = sparsity or Sparsity()
    wl = FIG4_NETWORKS[PAPER_NETWORK]
    accs = {a: make_accelerator(a, cfg) for a in ("proposed", "sata")}
    specs = {m: wl.specs(m) for m in MODES}

    def run(s: Sparsity):
        return {a: {m: [acc.run_layer(x, wl.timesteps, s) for x in specs[m]] for m in MODES}
                for a, acc in accs.items()}

    jobs = len(GROUPS) * 2 + 4 + 1 + 4
    bar = tqdm(total=jobs, desc="sensitivity", disable=not progress, leave=False)
    base_layers = run(sp)
    base = _figures(base_layers, accs, table)
    bar.update()
    rows = []
    for g, fn in _table_params():
        lo = _figures(base_layers, accs, fn(table, "low")); bar.update()
        hi = _figures(base_layers, accs, fn(table, "high")); bar.update()
        rows.append({"parameter": GROUP_NAMES[g], "change": _range_text(table, g),
                     "low": lo, "high": hi})
    others = [m for m in ("lpddr4", "ddr") if m in table.dram_memories and m != table.dram_memory]
    if len(others) == 2:  # the other physical DRAM types, central values
        figs = [_figures(base_layers, accs, table.with_dram(m)) for m in others]
        rows.append({"parameter": "DRAM type", "change": f"{others[0]} / {others[1]}",
                     "low": figs[0], "high": figs[1]})
    for name, field, value in (("spike sparsity", "spike", sp.spike), ("gradient sparsity", "grad", sp.grad)):
        vals = (max(0.0, value - sparsity_step), min(1.0, value + sparsity_step))
        figs = []
        for v in vals:
            figs.append(_figures(run(replace(sp, **{field: v}, per_layer={} if field == "spike" else sp.per_layer)),
                                 accs, table))
            bar.update(2)
        rows.append({"parameter": name, "change": f"{vals[0]:.2f} / {vals[1]:.2f} (from {value:.2f})",
                     "low": figs[0], "high": figs[1]})
    # structural choices of the proposed design: the paper's arrangement (proposed) against
    # the generator's own (both RTL, gen.config.Arrangement)
    from .accelerators import Proposed, ProposedRTL
    for name, make in (
            ("cluster 1 zero-skipping -> dense (every channel)", lambda: Proposed(cfg, cluster1="dense")),
            ("STT G2->G3 sequential -> row-pipelined", lambda: Proposed(cfg, stt_chain="pipelined")),
            ("both (the generator's own arrangement, proposed-rtl)", lambda: ProposedRTL(cfg))):
        alt = dict(accs, proposed=make())
        layers = dict(base_layers, proposed={m: [alt["proposed"].run_layer(x, wl.timesteps, sp)
                                                  for x in specs[m]] for m in MODES})
        fig = _figures(layers, alt, table)
        bar.update()
        rows.append({"parameter": name, "change": "structural", "low": base, "high": fig})
    bar.close()
    return {"network": PAPER_NETWORK, "baseline": base, "rows": rows,
            "dram_memory": table.dram_memory, "sparsity_step": sparsity_step}


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
