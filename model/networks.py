"""The two networks of the paper's Fig. 4, the paper's claims, and the calibration check."""

from __future__ import annotations

from typing import Mapping

from gen.config import HardwareConfig

from .counts import Sparsity
from .energy_table import EnergyTable
from .evaluate import NetworkEnergy, Workload, evaluate_modes

__all__ = ["FIG4_NETWORKS", "PAPER_REDUCTIONS", "CALIBRATION_NETWORK", "RESNET18_UNIFORM_RANK",
           "calibration_check", "SATA_HTT_CLOSE"]

#: MS-ResNet18's ranks were not published; a uniform rank of 32 gives 0.346 GFLOPs over T=4
#: (sw.stats convention, max-pool downsampling), the closest power of two to the paper's
#: 0.372 G for its TT models (rank 32 is also within the paper configuration's max_rank).
RESNET18_UNIFORM_RANK = 32

FIG4_NETWORKS: Mapping[str, Workload] = {
    "MS-ResNet18/CIFAR10": Workload("resnet18", 3, (32, 32), 10, 4, RESNET18_UNIFORM_RANK),
    "MS-ResNet34/N-Caltech101": Workload("resnet34", 2, (48, 48), 101, 6, "paper-ncaltech101"),
}
CALIBRATION_NETWORK = "MS-ResNet34/N-Caltech101"

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
