"""The two networks of the paper's Fig. 4 and the paper's Fig. 4(b) reductions (the claims
themselves, with what the model gives, are in :mod:`model.reproduce`)."""

from __future__ import annotations

from typing import Mapping

from ttsnn.sw.arch import WORKLOADS, WorkloadSpec

from .evaluate import Workload

__all__ = ["FIG4_NETWORKS", "PAPER_REDUCTIONS", "PAPER_NETWORK", "RESNET18_UNIFORM_RANK"]

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
#: The network of the paper's Fig. 4(b) reductions (MS-ResNet34, N-Caltech101, published ranks).
PAPER_NETWORK = WORKLOADS["resnet34-ncaltech101"].name

#: The paper's Fig. 4(b): training-energy change versus STT on the proposed accelerator.
PAPER_REDUCTIONS: Mapping[str, float] = {"ptt": -0.283, "htt": -0.435}
