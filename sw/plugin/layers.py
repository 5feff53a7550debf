"""The modules that stand in for a converted 3x3 convolution of any network.

:class:`PluginTTConv` wraps the project's :class:`sw.tt.TTConv2d` (STT/PTT/HTT cores; nothing of
the TT maths is re-implemented here) and makes it accept whatever layout the host network feeds
its convolutions:

- ``'tb'``: ``[T, B, C, H, W]`` (spikingjelly multi-step ``step_mode='m'``, the project's own
  layers);
- ``'image'``: ``[N, C, H, W]``, any batch of images (spikingjelly's ``SeqToANNContainer`` folds
  ``T*B``; snnTorch loops call the conv once per timestep). STT and PTT treat every timestep
  alike, so they need nothing more;
- HTT does not: its full and reduced timesteps differ, so a 4-d input needs to say which
  timestep it is. ``'folded'``: ``[T*B, C, H, W]`` with ``timesteps`` known; ``'per-step'``: one
  timestep ``[B, C, H, W]`` per call, counted modulo ``timesteps`` (``reset()`` restarts the count;
  spikingjelly's ``functional.reset_net`` calls it).

A converted spikingjelly ``layer.Conv2d`` (a ``StepModule``) becomes :class:`SJPluginTTConv`
(:mod:`sw.plugin._spikingjelly`), which follows its ``step_mode`` ('m': ``'tb'``; 's': one
timestep per call) and answers ``functional.set_step_mode``.

:class:`PluginScheduledConv` is the merged form of an HTT layer (two dense 3x3 convs, full and
reduced kernel, picked per timestep); STT/PTT layers merge into the plain conv they replaced.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ttsnn.sw.arch import ConvSpec, validate_schedule
from ttsnn.sw.tt import TTConv2d
from ttsnn.sw.cli_util import UserError

__all__ = ["PluginTTConv", "PluginScheduledConv", "LAYOUTS"]

#: what a converted conv's input is (see the module docstring); 'step-mode' = follow spikingjelly
LAYOUTS = ("auto", "tb", "folded", "per-step")


class _TimestepLayout(nn.Module):
    """Dispatch on the input layout; subclasses give ``_steps`` (a ``[T, B, ...]`` input) and
    ``_one`` (one timestep ``[B, ...]``, full or reduced). Adds the replaced conv's bias."""

    def __init__(self, in_channels: int, out_channels: int, mode: str, layout: str,
                 timesteps: int | None, schedule: tuple[bool, ...] | None, bias: Tensor | None,
                 template: nn.Conv2d, name: str):
        super().__init__()
        self.in_channels, self.out_channels, self.mode = in_channels, out_channels, mode
        self.layout, self.timesteps, self.schedule, self.name = layout, timesteps, schedule, name
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        # The replaced conv on the meta device (no storage): what merge-back rebuilds, so the
        # merged layer is of the host library's class (e.g. spikingjelly's, with its step_mode).
        # Kept out of the module tree: no parameters, no state_dict entries.
        object.__setattr__(self, "_template", template)
        self.step = 0  # per-step HTT: the timestep the next call is
        self.last_call: tuple[int, int, tuple[int, int], tuple[int, int]] | None = None

    # ----- which layout this call is -------------------------------------------------------------
    def current_layout(self, x: Tensor) -> str:
        layout = self.layout
        if layout == "step-mode":
            layout = "tb" if getattr(self, "step_mode", "s") == "m" else "per-step"
        if self.mode != "htt" and layout != "tb":
            layout = "tb" if x.dim() == 5 else "image"   # every timestep alike: no count needed
        elif layout == "auto":
            layout = "tb"
        return layout

    def _check(self, x: Tensor, dims: int, layout: str) -> None:
        shape = "[T, B, C, H, W]" if dims == 5 else "[N, C, H, W]"
        if not isinstance(x, Tensor) or x.dim() != dims or x.shape[dims - 3] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise UserError(f"converted conv {self.name!r} ({self.mode}, layout {layout!r}): expected "
                            f"{shape} with C={self.in_channels}, got {got}")

    def _next_full(self) -> bool:
        sched = validate_schedule(self.schedule, self.timesteps)
        full = sched[self.step % len(sched)]
        self.step = (self.step + 1) % len(sched)
        return full

    def reset(self) -> None:
        """Restart the timestep count of per-step HTT (the next call is timestep 0)."""
        self.step = 0

    def forward(self, x: Tensor) -> Tensor:
        layout = self.current_layout(x)
        if layout == "tb":
            self._check(x, 5, layout)
            y = self._steps(x)
        elif layout == "image":
            self._check(x, 4, layout)
            y = self._steps(x.unsqueeze(0)).squeeze(0)
        elif layout == "folded":
            self._check(x, 4, layout)
            steps = self.timesteps
            if x.shape[0] % steps:
                raise UserError(f"converted conv {self.name!r}: folded input has {x.shape[0]} images, "
                                f"not a multiple of timesteps={steps} ([T*B, C, H, W] expected)")
            y = self._steps(x.reshape(steps, x.shape[0] // steps, *x.shape[1:])).flatten(0, 1)
        else:  # per-step
            self._check(x, 4, layout)
            y = self._one(x, self._next_full())
        if self.bias is not None:
            y = y + self.bias.view(-1, 1, 1)
        return y

    def extra_repr(self) -> str:
        extra = f", timesteps={self.timesteps}" if self.timesteps else ""
        return f"{self.name!r}, {self.in_channels}->{self.out_channels}, layout={self.layout!r}{extra}"

    def _record(self, n_full: int, n_reduced: int, x: Tensor, y: Tensor) -> None:
        # for sw.plugin.convert.count_macs: images run as full / reduced timesteps, map sizes
        self.last_call = (n_full, n_reduced, tuple(x.shape[-2:]), tuple(y.shape[-2:]))


class PluginTTConv(_TimestepLayout):
    """A TT conv (:class:`sw.tt.TTConv2d` in ``.tt``) standing in for a 3x3 conv of any network.

    Stride 2 uses TTConv2d's ``downsample='stride'``, which equals a plain 3x3 conv at stride 2,
    padding 1: merge-back gives the replaced conv's own geometry.
    """

    def __init__(self, tt: TTConv2d, layout: str, timesteps: int | None, bias: Tensor | None,
                 template: nn.Conv2d, name: str):
        super().__init__(tt.in_channels, tt.out_channels, tt.mode, layout, timesteps, tt.schedule,
                         bias, template, name)
        self.tt = tt
        self.rank = tt.rank

    def spec(self, in_hw=(0, 0), out_hw=(0, 0)) -> ConvSpec:
        """This layer as a :class:`sw.arch.ConvSpec` (the project's parameter/MAC formulas)."""
        return ConvSpec(self.name, "conv3x3", self.in_channels, self.out_channels, 3, self.tt.stride,
                        tuple(in_hw), tuple(out_hw), self.mode, self.rank, False, self.schedule)

    def _steps(self, x: Tensor) -> Tensor:
        y = self.tt(x)
        n_full = sum(self.tt.full_timesteps(x.shape[0]))
        self._record(n_full * x.shape[1], (x.shape[0] - n_full) * x.shape[1], x, y)
        return y

    def _one(self, x: Tensor, full: bool) -> Tensor:
        # one HTT timestep: the same core paths TTConv2d runs per timestep class
        y = self.tt._full(x) if full else self.tt._reduced(x)
        self._record(x.shape[0] if full else 0, 0 if full else x.shape[0], x, y)
        return y

    def merged(self) -> nn.Module:
        """The dense equivalent (paper Eq. 6): the replaced conv's class with the merged kernel
        (STT/PTT), or a :class:`PluginScheduledConv` of the full and reduced kernels (HTT)."""
        with torch.no_grad():
            full = _dense_from_template(self._template, self.tt.merged_kernel("full"), self.bias)
            if self.mode != "htt":
                return full
            reduced = _dense_from_template(self._template, self.tt.merged_kernel("reduced"), self.bias)
        return PluginScheduledConv(full, reduced, self)


def _dense_from_template(template: nn.Conv2d, kernel: Tensor, bias: Tensor | None) -> nn.Conv2d:
    dense = copy.deepcopy(template).to_empty(device=kernel.device)
    dense.weight.copy_(kernel.to(dense.weight.dtype))
    if dense.bias is not None:
        dense.bias.copy_(bias.to(dense.bias.dtype))
    dense.train(template.training)
    return dense


class PluginScheduledConv(_TimestepLayout):
    """Merged HTT layer: dense convs ``full`` and ``reduced`` (bias-free; the bias is added once
    here), picked per timestep with the TT layer's schedule and layout."""

    def __init__(self, full: nn.Conv2d, reduced: nn.Conv2d, source: PluginTTConv):
        bias = source.bias
        super().__init__(source.in_channels, source.out_channels, "htt", source.layout,
                         source.timesteps, source.schedule, bias, source._template, source.name)
        for conv in (full, reduced):
            conv.bias = None  # added once by _TimestepLayout.forward
            if hasattr(conv, "step_mode"):
                conv.step_mode = "s"  # always fed folded image batches from here
        self.full, self.reduced = full, reduced
        if hasattr(source, "step_mode"):
            self.__dict__["_host_step_mode"] = source.step_mode

    @property
    def step_mode(self) -> str:
        return self.__dict__.get("_host_step_mode", "s")

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in ("s", "m"):
            raise UserError(f"step_mode must be 's' or 'm', got {value!r}")
        self.__dict__["_host_step_mode"] = value

    def _steps(self, x: Tensor) -> Tensor:
        sched = validate_schedule(self.schedule, x.shape[0])
        outs = [(self.full if s else self.reduced)(x[t]) for t, s in enumerate(sched)]
        return torch.stack(outs)

    def _one(self, x: Tensor, full: bool) -> Tensor:
        return (self.full if full else self.reduced)(x)
