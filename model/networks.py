"""The two networks of the paper's Fig. 4, the paper's claims, and the calibration check."""

from __future__ import annotations

from typing import Mapping

from gen.config import HardwareConfig
from sw.arch import WORKLOADS, WorkloadSpec

from .counts import Sparsity
from .energy_table import EnergyTable
from .evaluate import NetworkEnergy, Workload, evaluate_modes

__all__ = ["FIG4_NETWORKS", "PAPER_REDUCTIONS", "CALIBRATION_NETWORK", "RESNET18_UNIFORM_RANK",
           "calibration_check", "SATA_HTT_CLOSE"]

#: MS-ResNet18's ranks were not published: a uniform rank (sw.arch.WORKLOADS says why 32).
RESNET18_UNIFORM_RANK: int = WORKLOADS["resnet18-cifar10"].uniform_rank  # type: ignore[assignment]


def _fig4_workload(spec: WorkloadSpec) -> Workload:
    # a uniform rank is given as a plain int, as the reports have always shown it
    ranks = spec.uniform_rank if spec.uniform_rank is not None else spec.ranks
    return Workload(spec.arch, spec.in_channels, spec.input_hw, spec.num_classes, spec.timesteps, ranks)


FIG4_NETWORKS: Mapping[str, Workload] = {
    spec.name: _fig4_workload(spec)
    for spec in (WORKLOADS["resnet18-cifar10"], WORKLOADS["resnet34-ncaltech101"])
}
CALIBRATION_NETWORK = WORKLOADS["resnet34-ncaltech101"].name

#: The paper's Fig. 4(b): training-energy change versus STT on the proposed accelerator.
PAPER_REDUCTIONS: Mapping[str, float] = {"ptt": -0.283, "htt": -0.435}
#: Tolerance of the calibration (percentage points, as the issue states).
TOLERANCE_PP = 5.0
#: "HTT close to STT" on the SATA-like accelerator: |HTT/STT - 1| below this, and closer to
#: STT than the dense model is (docs/energy_model.md discusses the remaining gap).
SATA_HTT_CLOSE = 0.25


def calibration_check(cfg: HardwareConfig, table: EnergyTable, sparsity: Sparsity | None = None,
                      results: Mapping[str, Mapping[str, NetworkEnergy]] | None = None) -> dict:
    """Evaluate the calibration targets; returns figures and a pass/fail per target."""
    wl = FIG4_NETWORKS[CALIBRATION_NETWORK]
    if results is None:
        results = {a: evaluate_modes(wl, a, cfg, table, sparsity) for a in ("proposed", "sata")}
    prop, sata = results["proposed"], results["sata"]
    red = {m: prop[m].total_pj / prop["stt"].total_pj - 1 for m in ("ptt", "htt")}
    sata_rel = {m: sata[m].total_pj / sata["stt"].total_pj - 1 for m in ("dense", "ptt", "htt")}
    checks = {
        "proposed_ptt_reduction": abs(100 * (red["ptt"] - PAPER_REDUCTIONS["ptt"])) <= TOLERANCE_PP,
        "proposed_htt_reduction": abs(100 * (red["htt"] - PAPER_REDUCTIONS["htt"])) <= TOLERANCE_PP,
        "sata_stt_below_dense": sata_rel["dense"] > 0,
        "sata_ptt_above_stt": sata_rel["ptt"] > 0,
        "sata_htt_close_to_stt": abs(sata_rel["htt"]) < SATA_HTT_CLOSE
                                 and abs(sata_rel["htt"]) < abs(sata_rel["dense"]),
    }
    return {"network": CALIBRATION_NETWORK, "proposed_vs_stt": red,
            "paper_proposed_vs_stt": dict(PAPER_REDUCTIONS), "tolerance_pp": TOLERANCE_PP,
            "sata_vs_stt": sata_rel, "checks": checks, "all_pass": all(checks.values())}
