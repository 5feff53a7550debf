"""The backward pass (BPTT) of the accelerator: its units and engines, one component per file
(docs/architecture.md, "Backward datapath"; arithmetic: docs/numerics.md, "Backward pass").

The components are imported lazily (``from ttsnn.gen.backward import BackwardDatapath`` works), so
that :mod:`gen.hostmap` can read :mod:`gen.backward.stage_layout` without importing the
engines, which import the host map.
"""

from importlib import import_module

_WHERE = {
    "GradientRequantiser": "grad_requantiser", "LIFGradientLanes": "lif_gradient",
    "WeightGradientAccumulator": "wgrad_accumulator", "CoreStageEngine": "core_stage_engine",
    "LIFGradientEngine": "lif_gradient_engine", "BackwardDatapath": "datapath",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
