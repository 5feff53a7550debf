"""What reversible blocks (:mod:`sw.reversible`) change for BPTT on the accelerators.

The network is the reversible one that ``python -m sw train --reversible`` trains
(:func:`sw.arch.network_specs` with ``reversible=True``: shape-keeping blocks split into two
``C/2`` channel groups, their two convs ``C/2 -> C/2``). It is costed twice on the same
accelerator, layer by layer:

* ``stored``: plain BPTT, as for every other network (:meth:`Accelerator.run_layer`);
* ``recompute``: the reversible layers (F's and G's convs) keep nothing for the backward pass,
  relative to ``stored``:

  - forward: the maps kept in DRAM only for the weight update (a TT layer's G4 input and, for
    STT, G3's input: ``info['saved_bits']``) are not written;
  - backward: the layer's states (membrane + spike, ``state_bits`` per neuron and timestep) are
    not read back from DRAM; instead the group this layer's output was added to is read
    (``membrane`` bits per neuron and timestep: ``x = y - F(.)``) and subtracted (one add per
    neuron and timestep), and the layer's forward pass runs again (every count of its forward
    pass except its DRAM writes: the recomputed values are consumed on chip by the layer's
    own backward pass) with its cycles: once for the streamlined backward, twice for the
    naive one (invert, then re-run);
  - weight update: the saved maps are not read back.

The forward pass's other DRAM writes stay: in this model each layer's output states also carry
the data to the next layer (its input spikes, the membranes the coupling adds), so what a
reversible layer drops is the *keeping*: the DRAM footprint of the data stored for the backward
pass (``footprint_bits``) falls to the chain's last output, and the backward's re-reads. Whether
it pays in energy is the per-layer ``delta_pj`` (recompute - stored; negative pays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttsnn.sw.arch import network_specs

from .accelerators import Accelerator
from .counts import Counts, LayerResult, PassResult, Sparsity
from .energy_table import EnergyTable
from .evaluate import LayerEnergy, NetworkEnergy, Workload, evaluate_layer
from ttsnn.sw.cli_util import UserError

__all__ = ["BACKWARDS", "recompute_layer", "footprint_bits", "ReversibleComparison",
           "evaluate_reversible"]

BACKWARDS = {"streamlined": 1, "naive": 2}   # forward re-runs of a layer in its backward pass


def _minus(counts: Counts, key: tuple[str, str, int], n: float) -> Counts:
    """``counts`` with ``n`` fewer of ``key`` (never below zero: the model may have merged the
    removed traffic with other traffic of the same key)."""
    out = Counts()
    for k, v in counts.items():
        out.add(*k, max(0.0, v - n) if k == key else v)
    return out


def _neurons(spec, T: int) -> int:
    return spec.out_channels * spec.out_hw[0] * spec.out_hw[1] * T


def recompute_layer(res: LayerResult, spec, T: int, acc: Accelerator,
                    backward: str = "streamlined") -> LayerResult:
    """The counts of a reversible layer that recomputes instead of storing (see the module
    docstring); ``res`` is the same layer under plain BPTT."""
    if not spec.reversible:
        raise UserError(f"{spec.name} is not a reversible layer")
    if backward not in BACKWARDS:
        raise UserError(f"unknown reversible backward {backward!r}; choose one of {', '.join(BACKWARDS)}")
    w = acc.cfg.widths
    n = _neurons(spec, T)
    saved = float(res.info.get("saved_bits", 0.0))
    fwd, bwd, wu = (res.passes[p] for p in ("forward", "backward", "weight_update"))
    new_fwd = PassResult(_minus(fwd.counts, ("dram", "write", 1), saved), fwd.cycles, dict(fwd.busy))
    b = _minus(bwd.counts, ("dram", "read", 1), n * acc.state_bits)
    b.add("dram", "read", 1, n * w.membrane)          # the other group, to invert the coupling
    b.add("adder", "add", 16, n)                       # x = y - F(.)
    rerun = Counts({k: v for k, v in fwd.counts.items() if not (k[0] == "dram" and k[1] == "write")})
    b.update(rerun, BACKWARDS[backward])
    new_bwd = PassResult(b, bwd.cycles + BACKWARDS[backward] * fwd.cycles, dict(bwd.busy))
    new_wu = PassResult(_minus(wu.counts, ("dram", "read", 1), saved), wu.cycles, dict(wu.busy))
    info = dict(res.info, reversible=f"recompute ({backward})")
    return LayerResult(res.name, res.kind, res.mode,
                       {"forward": new_fwd, "backward": new_bwd, "weight_update": new_wu}, info)


def footprint_bits(res: LayerResult, spec, T: int, acc: Accelerator) -> float:
    """DRAM bits a layer keeps from its forward pass for the backward pass under plain BPTT:
    its states and the maps saved for the weight update."""
    if spec.kind not in ("conv1", "conv3x3"):
        return 0.0
    return _neurons(spec, T) * acc.state_bits + float(res.info.get("saved_bits", 0.0))


@dataclass
class ReversibleComparison:
    """One mode of the reversible network, ``stored`` and ``recompute``, layer by layer."""
    mode: str
    backward: str
    stored: NetworkEnergy
    recompute: NetworkEnergy
    footprint_stored_bits: float
    footprint_recompute_bits: float
    rows: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        s, r = self.stored, self.recompute
        cs, cr = s.cycles()["total"], r.cycles()["total"]
        return {"mode": self.mode, "backward": self.backward,
                "stored_pj": s.total_pj, "recompute_pj": r.total_pj,
                "delta_pj": r.total_pj - s.total_pj, "delta_frac": r.total_pj / s.total_pj - 1,
                "dram_stored_pj": s.by_category()["dram"], "dram_recompute_pj": r.by_category()["dram"],
                "cycles_stored": cs, "cycles_recompute": cr, "cycles_frac": cr / cs - 1,
                "footprint_stored_bits": self.footprint_stored_bits,
                "footprint_recompute_bits": self.footprint_recompute_bits,
                "footprint_ratio": self.footprint_stored_bits / max(self.footprint_recompute_bits, 1.0),
                "reversible_layers": len(self.rows),
                "layers_that_pay": [row["name"] for row in self.rows if row["delta_pj"] < 0]}


def evaluate_reversible(workload: Workload, mode: str, acc: Accelerator, table: EnergyTable,
                        sparsity: Sparsity | None = None, backward: str = "streamlined"
                        ) -> ReversibleComparison:
    """Cost the reversible network of ``workload`` in ``mode`` with and without recompute."""
    sp = sparsity or Sparsity()
    T = workload.timesteps
    specs = network_specs(workload.arch, workload.in_channels, workload.input_size,
                          workload.num_classes, mode, workload.ranks if mode != "dense" else None,
                          T, workload.schedule, reversible=True)
    stored: list[LayerEnergy] = []
    recomputed: list[LayerEnergy] = []
    rows: list[dict[str, Any]] = []
    fp_stored = fp_rec = 0.0
    rev_names = [s.name for s in specs if s.reversible]
    for i, spec in enumerate(specs):
        res = acc.run_layer(spec, T, sp)
        le = evaluate_layer(res, acc, table)
        stored.append(le)
        fp = footprint_bits(res, spec, T, acc)
        fp_stored += fp
        if not spec.reversible:
            recomputed.append(le)
            fp_rec += fp
            continue
        lr = evaluate_layer(recompute_layer(res, spec, T, acc, backward), acc, table)
        recomputed.append(lr)
        nxt = specs[i + 1] if i + 1 < len(specs) else None
        last_of_chain = nxt is None or not nxt.reversible
        # the chain's output (both groups' membranes) stays stored: the backward starts from it
        kept = 2 * _neurons(spec, T) * acc.cfg.widths.membrane if last_of_chain else 0.0
        fp_rec += kept
        d_dram = (sum(lr.energy[p]["dram"] for p in lr.energy) - sum(le.energy[p]["dram"] for p in le.energy))
        rows.append({"name": spec.name, "channels": f"{spec.in_channels}->{spec.out_channels}",
                     "hw": list(spec.out_hw), "stored_pj": le.total_pj, "recompute_pj": lr.total_pj,
                     "delta_pj": lr.total_pj - le.total_pj, "delta_dram_pj": d_dram,
                     "delta_cycles": sum(lr.cycles.values()) - sum(le.cycles.values()),
                     "footprint_saved_bits": fp - kept})
    assert len(rows) == len(rev_names)
    lk, mhz = acc.leakage_mw(table), acc.cfg.clock_mhz
    return ReversibleComparison(mode, backward, NetworkEnergy(acc.name, mode, workload, stored, lk, mhz),
                                NetworkEnergy(acc.name, mode, workload, recomputed, lk, mhz),
                                fp_stored, fp_rec, rows)


def print_reversible(comps: list[ReversibleComparison], title: str, layers: bool = True) -> None:
    """Per-network and per-layer tables (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    t = Table(title=title + ": reversible network, stored BPTT vs recompute; energies in uJ")
    for col in ("mode", "backward", "stored uJ", "recompute uJ", "change", "DRAM stored", "DRAM recompute",
                "cycles change", "footprint stored (KiB)", "footprint recompute (KiB)", "footprint ratio",
                "layers that pay"):
        t.add_column(col, justify="right")
    for c in comps:
        s = c.summary()
        t.add_row(c.mode, c.backward, f"{s['stored_pj'] * 1e-6:,.1f}", f"{s['recompute_pj'] * 1e-6:,.1f}",
                  f"{100 * s['delta_frac']:+.1f}%", f"{s['dram_stored_pj'] * 1e-6:,.1f}",
                  f"{s['dram_recompute_pj'] * 1e-6:,.1f}", f"{100 * s['cycles_frac']:+.1f}%",
                  f"{s['footprint_stored_bits'] / 8192:,.0f}", f"{s['footprint_recompute_bits'] / 8192:,.0f}",
                  f"{s['footprint_ratio']:.2f}x", f"{len(s['layers_that_pay'])} of {s['reversible_layers']}")
    console.print(t)
    if not layers:
        return
    for c in comps:
        lt = Table(title=f"{c.mode} ({c.backward}): reversible layers, recompute - stored")
        for col in ("layer", "channels", "out H x W", "stored uJ", "recompute uJ", "change", "DRAM change uJ",
                    "cycles change", "footprint saved (KiB)", "pays"):
            lt.add_column(col, justify="right")
        for r in c.rows:
            lt.add_row(r["name"], r["channels"], "x".join(map(str, r["hw"])), f"{r['stored_pj'] * 1e-6:,.2f}",
                       f"{r['recompute_pj'] * 1e-6:,.2f}", f"{100 * r['delta_pj'] / r['stored_pj']:+.1f}%",
                       f"{r['delta_dram_pj'] * 1e-6:+,.2f}", f"{r['delta_cycles']:+,.0f}",
                       f"{r['footprint_saved_bits'] / 8192:,.1f}", "yes" if r["delta_pj"] < 0 else "no")
        console.print(lt)
