"""spikingjelly-aware variant of :class:`sw.plugin.layers.PluginTTConv`; imported only when a
spikingjelly layer is converted (the rest of ``sw`` never needs spikingjelly)."""

from __future__ import annotations

from spikingjelly.activation_based import base

from ttsnn.sw.plugin.layers import PluginTTConv

__all__ = ["SJPluginTTConv"]


class SJPluginTTConv(PluginTTConv, base.StepModule):
    """A converted spikingjelly ``layer.Conv2d``: a ``StepModule`` (``functional.set_step_mode``
    switches it) whose input is ``[T, B, C, H, W]`` in multi-step mode ('m') and one timestep
    ``[B, C, H, W]`` in single-step mode ('s'), as the conv it replaces."""

    def __init__(self, *args, step_mode: str = "s", **kwargs):
        super().__init__(*args, **kwargs)
        self.step_mode = step_mode

    def extra_repr(self) -> str:
        return super().extra_repr() + f", step_mode={self.step_mode}"
