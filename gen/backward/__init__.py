"""The backward pass (BPTT) of the accelerator: its units and engines, one component per file
(docs/architecture.md, "Backward datapath"; arithmetic: docs/numerics.md, "Backward pass")."""

from .grad_requantiser import GradientRequantiser
from .lif_gradient import LIFGradientLanes
from .wgrad_accumulator import WeightGradientAccumulator

__all__ = ["GradientRequantiser", "LIFGradientLanes", "WeightGradientAccumulator"]
