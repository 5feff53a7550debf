"""MS-ResNet backbones (membrane shortcut) with dense or TT 3x3 block convs.

Layout (every tensor between layers is ``[T, B, C, H, W]``)::

    x -> conv1 -> bn1 -> layers[0] ... layers[-1] -> head_lif -> mean over H, W -> mean over T -> fc

A basic block computes ``bn2(conv2(lif2(bn1(conv1(lif1(x)))))) + shortcut(x)``: the shortcut
(``nn.Identity`` or a 1x1 conv at the block's stride + BN, :class:`ConvBNShortcut`) is added to
the membrane potential that feeds the next block's LIF. BatchNorm statistics are shared over
time (:class:`BatchNormTB`: one BatchNorm2d over the folded ``(T*B, C, H, W)``).

Inputs: static images ``[B, C, H, W]`` are direct-coded (repeated T times); event frames
``[T, B, C, H, W]`` (time first) are used as they are.

The module names match :func:`sw.arch.network_specs` (``model.get_submodule(spec.name)``), so
``model.spec`` describes the layers of ``model`` one to one.

``reversible=True``: every block that keeps its shape (stride 1, ``Cin == Cout``) is a
:class:`sw.reversible.ReversibleBlock` (two channel groups, additive coupling, inputs recomputed
from outputs in the backward pass; ``reversible_backward`` picks how) and each stage a
:class:`sw.reversible.ReversibleSequential`; the downsampling blocks stay standard.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Sequence

from torch import Tensor, nn

from ttsnn.sw.arch import STAGES, ConvSpec, network_specs, parse_input_size, validate_schedule
from ttsnn.sw.neurons import MultiStepLIF
from ttsnn.sw.layers import BatchNormTB, make_conv as _make_conv
from ttsnn.sw.tt import DenseConv3x3, TTConv2d
from ttsnn.sw.cli_util import UserError

__all__ = ["BatchNormTB", "ConvBNShortcut", "BasicBlock", "MSResNet", "ms_resnet",
           "merge_to_dense"]


class ConvBNShortcut(nn.Module):
    """Projection shortcut: 1x1 conv at ``stride`` (no bias) + :class:`BatchNormTB`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.bn = BatchNormTB(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        y = self.conv(x.reshape(steps * batch, *x.shape[2:]))
        return self.bn(y.reshape(steps, batch, *y.shape[1:]))


class BasicBlock(nn.Module):
    """MS-ResNet basic block: LIF -> conv -> BN -> LIF -> conv -> BN, + membrane shortcut."""

    def __init__(self, conv1: ConvSpec, conv2: ConvSpec, downsample: str,
                 neuron: dict[str, Any]):
        super().__init__()
        self.lif1 = MultiStepLIF(**neuron)
        self.conv1 = _make_conv(conv1, downsample)
        self.bn1 = BatchNormTB(conv1.out_channels)
        self.lif2 = MultiStepLIF(**neuron)
        self.conv2 = _make_conv(conv2, downsample)
        self.bn2 = BatchNormTB(conv2.out_channels)
        if conv1.stride != 1 or conv1.in_channels != conv1.out_channels:
            self.shortcut: nn.Module = ConvBNShortcut(conv1.in_channels, conv1.out_channels,
                                                      conv1.stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(self.lif1(x)))
        out = self.bn2(self.conv2(self.lif2(out)))
        return out + self.shortcut(x)


def _make_block(conv1: ConvSpec, conv2: ConvSpec, hparams: dict[str, Any],
                neuron: dict[str, Any]) -> nn.Module:
    if conv1.reversible:
        from ttsnn.sw.reversible import ReversibleBlock

        return ReversibleBlock(conv1, conv2, hparams["downsample"], neuron,
                               hparams["reversible_frac_bits"])
    return BasicBlock(conv1, conv2, hparams["downsample"], neuron)


class MSResNet(nn.Module):
    """An MS-ResNet; build it with :func:`ms_resnet`. ``.spec`` is its layer list
    (:class:`sw.arch.ConvSpec`), ``.hparams`` the keyword arguments that rebuild it."""

    def __init__(self, spec: Sequence[ConvSpec], hparams: dict[str, Any]):
        super().__init__()
        self.spec = list(spec)
        self.hparams = dict(hparams)
        self.timesteps: int = hparams["timesteps"]
        self.in_channels: int = hparams["in_channels"]
        neuron = {k: hparams[k] for k in ("tau", "v_threshold", "alpha")}
        neuron["surrogate_function"] = hparams["surrogate"]
        by_name = {s.name: s for s in spec}
        stem = by_name["conv1"]
        self.conv1 = DenseConv3x3(stem.in_channels, stem.out_channels)
        self.bn1 = BatchNormTB(stem.out_channels)
        stages = []
        for si, (_, blocks, _) in enumerate(STAGES[hparams["arch"]]):
            stage = [_make_block(by_name[f"layers.{si}.{bi}.conv1"],
                                 by_name[f"layers.{si}.{bi}.conv2"], hparams, neuron)
                     for bi in range(blocks)]
            if hparams.get("reversible"):
                from ttsnn.sw.reversible import ReversibleSequential

                stages.append(ReversibleSequential(*stage, backward=hparams["reversible_backward"]))
            else:
                stages.append(nn.Sequential(*stage))
        self.layers = nn.ModuleList(stages)
        self.head_lif = MultiStepLIF(**neuron)
        fc = by_name["fc"]
        self.fc = nn.Linear(fc.in_channels, fc.out_channels)

    def check_input(self, x: Tensor) -> Tensor:
        """Validate ``x`` and return it as ``[T, B, C, H, W]`` (direct coding for 4-d input)."""
        if not isinstance(x, Tensor):
            raise UserError(f"MSResNet input must be a tensor, got {type(x).__name__}")
        expected = (f"[B, {self.in_channels}, H, W] images or [T={self.timesteps}, B, "
                    f"{self.in_channels}, H, W] frames")
        if x.dim() == 4:
            if x.shape[1] != self.in_channels:
                raise UserError(f"MSResNet input: expected {expected}; got shape "
                                f"{tuple(x.shape)} ({x.shape[1]} channels)")
            x = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        elif x.dim() == 5:
            if x.shape[0] != self.timesteps:
                raise UserError(f"MSResNet input: expected {expected}; got {x.shape[0]} "
                                f"timesteps in dim 0 (shape {tuple(x.shape)}); frames must be "
                                f"time-first (use x.transpose(0, 1) for [B, T, ...] data)")
            if x.shape[2] != self.in_channels:
                raise UserError(f"MSResNet input: expected {expected}; got shape "
                                f"{tuple(x.shape)} ({x.shape[2]} channels in dim 2)")
        else:
            raise UserError(f"MSResNet input: expected {expected}; got a {x.dim()}-d tensor of "
                            f"shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise UserError(f"MSResNet input must be floating point, got {x.dtype}")
        return x

    def features(self, x: Tensor) -> Tensor:
        """Membrane input of the head LIF, ``[T, B, C, H, W]``."""
        x = self.check_input(x)
        out = self.bn1(self.conv1(x))
        for stage in self.layers:
            out = stage(out)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]``."""
        spikes = self.head_lif(self.features(x))
        pooled = spikes.mean(dim=(3, 4)).mean(dim=0)
        return self.fc(pooled)


def ms_resnet(arch: str = "resnet18", mode: str = "dense", ranks=None, in_channels: int = 3,
              num_classes: int = 10, timesteps: int = 4,
              input_size: int | Sequence[int] | str = 32,
              schedule: Iterable[bool] | None = None, downsample: str = "maxpool",
              surrogate: str = "rectangle", tau: float = 0.25, v_threshold: float = 0.5,
              alpha: float | None = None, reversible: bool = False,
              reversible_backward: str = "streamlined",
              reversible_frac_bits: int | None = 12, norm: str = "bn") -> MSResNet:
    """Build an MS-ResNet (``arch``: 'resnet18', 'resnet34', 'tiny').

    ``mode``: 'dense' or a TT mode ('stt', 'ptt', 'htt') for the 3x3 convs of the residual
    blocks; ``ranks``: see :func:`sw.arch.resolve_ranks`; ``schedule``: HTT full-timestep flags
    (default first half); ``downsample``: 'maxpool' (reference) or 'stride'. ``surrogate``,
    ``tau``, ``v_threshold``, ``alpha``: the LIF options (:mod:`sw.neurons`). ``input_size``
    only enters the FLOP counts of ``.spec``; the network accepts any spatial size.
    ``reversible``: reversible shape-keeping blocks (:mod:`sw.reversible`), with
    ``reversible_backward`` ('streamlined', 'naive' or 'autograd') and the coupling's fixed-point
    grid ``2**-reversible_frac_bits`` (None: float coupling, not exactly invertible).
    ``norm``: 'bn' (:class:`BatchNormTB`), 'tdbn' or 'tebn' (:mod:`sw.plugin.methods`; tdBN's
    alpha is 1/sqrt(2) for the BNs whose outputs meet at a block's addition, 1 elsewhere).
    """
    if mode != "htt" and schedule is not None:
        raise UserError(f"schedule is only used by mode 'htt', not {mode!r}")
    sched = validate_schedule(schedule, timesteps) if mode == "htt" else None
    if not isinstance(reversible, bool):
        raise UserError(f"reversible must be true or false, got {reversible!r}")
    extra: dict[str, Any] = {}
    if reversible:
        from ttsnn.sw.reversible import BACKWARDS, _check_frac_bits

        if reversible_backward not in BACKWARDS:
            raise UserError(f"unknown reversible_backward {reversible_backward!r}; choose one of "
                            f"{', '.join(BACKWARDS)}")
        extra = dict(reversible=True, reversible_backward=reversible_backward,
                     reversible_frac_bits=_check_frac_bits(reversible_frac_bits))
    if norm != "bn":
        from ttsnn.sw.plugin.methods import NORMS

        if norm not in NORMS:
            raise UserError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
        if reversible:
            raise UserError(f"norm {norm!r} is not available with reversible blocks (their backward "
                            "recomputes BatchNormTB); use norm 'bn' or no reversible blocks")
        extra["norm"] = norm  # recorded only when not the default: older hparams stay valid
    spec = network_specs(arch, in_channels, input_size, num_classes, mode, ranks, timesteps,
                         sched, downsample, reversible=reversible)
    tt_ranks = [s.rank for s in spec if s.kind == "conv3x3"] if mode != "dense" else None
    hparams = dict(arch=arch, mode=mode, ranks=tt_ranks, in_channels=in_channels,
                   num_classes=num_classes, timesteps=timesteps,
                   input_size=list(parse_input_size(input_size)),
                   schedule=None if sched is None else list(sched), downsample=downsample,
                   surrogate=surrogate, tau=float(tau), v_threshold=float(v_threshold),
                   alpha=alpha, **extra)
    model = MSResNet(spec, hparams)
    if norm != "bn":
        from ttsnn.sw.plugin.methods import replace_tb_batchnorms

        replace_tb_batchnorms(model, norm, timesteps, v_threshold, _tdbn_alpha)
    return model


def _tdbn_alpha(name: str) -> float:
    """tdBN's alpha (Zheng et al. 2021): 1/sqrt(2) for the two BNs whose outputs are summed at a
    block's shortcut addition (the residual branch's last BN and a projection shortcut's BN),
    so that the sum has the threshold's scale; 1 for every other BN."""
    return 1 / math.sqrt(2) if name.endswith((".bn2", "shortcut.bn")) else 1.0


def merge_to_dense(model: MSResNet) -> MSResNet:
    """A copy of ``model`` whose TT convs are replaced by their merged dense convs (paper
    Eq. 6; HTT: :class:`sw.tt.ScheduledConv3x3` with a full and a reduced kernel). Same outputs
    up to float rounding. ``.hparams['merged_from']`` records the TT mode; ``.spec`` lists the
    dense layers."""
    if not isinstance(model, MSResNet):
        raise UserError(f"merge_to_dense expects an MSResNet, got {type(model).__name__}")
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, TTConv2d):
            parent_name, _, attr = name.rpartition(".")
            setattr(merged.get_submodule(parent_name), attr, module.to_dense())
    merged.spec = [s.dense() for s in model.spec]
    merged.hparams = dict(model.hparams, merged_from=model.hparams["mode"])
    return merged
