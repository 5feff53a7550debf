"""Energy = counts x energy per action + leakage x time, per layer, pass and component."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ttsnn.gen.config import HardwareConfig
from ttsnn.sw.arch import MODES, network_specs

from .accelerators import Accelerator, make_accelerator
from .counts import CATEGORIES, PASSES, LayerResult, Sparsity, category
from .energy_table import EnergyTable
from ttsnn.sw.cli_util import UserError

__all__ = ["Workload", "LayerEnergy", "NetworkEnergy", "evaluate_layer", "evaluate_network",
           "evaluate_modes"]


@dataclass(frozen=True)
class Workload:
    """A network and how it is trained: what ``network_specs`` needs, plus T."""
    arch: str
    in_channels: int
    input_size: tuple[int, int]
    num_classes: int
    timesteps: int
    ranks: Any = None
    schedule: Any = None

    def specs(self, mode: str):
        return network_specs(self.arch, self.in_channels, self.input_size, self.num_classes,
                             mode, self.ranks if mode != "dense" else None, self.timesteps,
                             self.schedule)

    def describe(self) -> dict:
        return {"arch": self.arch, "input": [self.in_channels, *self.input_size],
                "num_classes": self.num_classes, "timesteps": self.timesteps,
                "ranks": self.ranks if isinstance(self.ranks, (str, int, type(None))) else list(self.ranks)}


@dataclass
class LayerEnergy:
    """Energy (pJ) of one layer: ``table[pass][category]`` and cycles per pass."""
    name: str
    kind: str
    mode: str
    energy: dict[str, dict[str, float]]
    cycles: dict[str, float]
    result: LayerResult = field(repr=False)

    @property
    def total_pj(self) -> float:
        return sum(sum(v.values()) for v in self.energy.values())


def evaluate_layer(res: LayerResult, accel: Accelerator, table: EnergyTable) -> LayerEnergy:
    leak_mw = accel.leakage_mw(table)
    period_ns = accel.cfg.clock_period_ns
    energy: dict[str, dict[str, float]] = {}
    cycles: dict[str, float] = {}
    for p in PASSES:
        pr = res.passes[p]
        e = {c: 0.0 for c in CATEGORIES}
        for (comp, action, bits), n in pr.counts.items():
            e[category(comp)] += n * table.energy(comp, action, bits, accel.memories)
        e["leakage"] = leak_mw * pr.cycles * period_ns  # mW x ns = pJ
        energy[p] = e
        cycles[p] = pr.cycles
    return LayerEnergy(res.name, res.kind, res.mode, energy, cycles, res)


@dataclass
class NetworkEnergy:
    """A network on one accelerator in one mode."""
    accel: str
    mode: str
    workload: Workload
    layers: list[LayerEnergy]
    leakage_mw: float
    clock_mhz: float

    @property
    def total_pj(self) -> float:
        return sum(l.total_pj for l in self.layers)

    def by_pass(self) -> dict[str, float]:
        return {p: sum(sum(l.energy[p].values()) for l in self.layers) for p in PASSES}

    def by_category(self) -> dict[str, float]:
        return {c: sum(l.energy[p][c] for l in self.layers for p in PASSES) for c in CATEGORIES}

    def by_pass_category(self) -> dict[str, dict[str, float]]:
        return {p: {c: sum(l.energy[p][c] for l in self.layers) for c in CATEGORIES} for p in PASSES}

    def cycles(self) -> dict[str, float]:
        out = {p: sum(l.cycles[p] for l in self.layers) for p in PASSES}
        out["total"] = sum(out.values())
        return out

    def to_dict(self, layers: bool = True) -> dict:
        d = {"accelerator": self.accel, "mode": self.mode, "workload": self.workload.describe(),
             "total_pj": self.total_pj, "by_pass_pj": self.by_pass(),
             "by_component_pj": self.by_category(), "by_pass_component_pj": self.by_pass_category(),
             "cycles": self.cycles(), "leakage_mw": self.leakage_mw, "clock_mhz": self.clock_mhz,
             "time_s": self.cycles()["total"] / (self.clock_mhz * 1e6)}
        if layers:
            d["layers"] = [{"name": l.name, "kind": l.kind, "mode": l.mode, "total_pj": l.total_pj,
                            "energy_pj": l.energy, "cycles": l.cycles,
                            "info": {k: v for k, v in l.result.info.items() if k != "counters"},
                            "counts": {p: l.result.passes[p].counts.to_list() for p in PASSES}}
                           for l in self.layers]
        return d


def evaluate_network(workload: Workload, mode: str, accel: str | Accelerator, cfg: HardwareConfig,
                     table: EnergyTable, sparsity: Sparsity | None = None) -> NetworkEnergy:
    """Energy of one BPTT training step (forward, backward, weight update) on one sample."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    acc = accel if isinstance(accel, Accelerator) else make_accelerator(accel, cfg)
    sp = sparsity or Sparsity()
    layers = [evaluate_layer(acc.run_layer(s, workload.timesteps, sp), acc, table)
              for s in workload.specs(mode)]
    return NetworkEnergy(acc.name, mode, workload, layers, acc.leakage_mw(table), cfg.clock_mhz)


def evaluate_modes(workload: Workload, accel: str, cfg: HardwareConfig, table: EnergyTable,
                   sparsity: Sparsity | None = None, modes: Iterable[str] = MODES
                   ) -> dict[str, NetworkEnergy]:
    acc = make_accelerator(accel, cfg)
    return {m: evaluate_network(workload, m, acc, cfg, table, sparsity) for m in modes}
