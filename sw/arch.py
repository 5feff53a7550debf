"""The layer list of an MS-ResNet, as plain data (no torch).

:func:`network_specs` returns one :class:`ConvSpec` per weight layer (the stem conv, every 3x3
conv of the residual blocks, the 1x1 shortcut convs, the classifier) in forward order. Names are
the torch module names of the same layer in :mod:`sw.resnet` (``model.get_submodule(spec.name)``
is that layer): ``conv1``, ``layers.0.0.conv1`` ... Everything else that counts layers
(:mod:`sw.stats`, the performance model, the hardware replay) reads this list, so shapes and
costs live in one place.

:data:`WORKLOADS` is the one definition of the paper's benchmark workloads (MS-ResNet18 on
CIFAR10, MS-ResNet34 on N-Caltech101): every package that benchmarks, models or simulates them
builds its records from it.

:func:`resolve_ranks` turns the ranks a user wrote (uniform, per layer, a published preset)
into one validated rank per TT-able conv (it was sw/ranks.py, which imported this module
while this one imported it back).

Counting convention (see docs/counting.md): parameters exclude BatchNorm; a "FLOP" is one
multiply-accumulate of a conv or of the classifier (biases, BN, LIF, additions and pooling are
not counted), summed over all timesteps.

TT convs (rank ``r``, ``Cin -> Cout``) cost per full timestep, on an ``H x W`` map:
``G1: Cin*r*H*W``, ``G2: 3*r*r*H*W``, ``G3: 3*r*r*H*W``, ``G4: r*Cout*H*W`` (STT and PTT do the
same multiplications; PTT's ``/2`` and sum are not MACs). HTT's reduced timesteps run only G1
and G4. With the reference downsampling (``downsample=True``: chain at stride 1, then 2x2
max-pool) the whole chain runs at the *input* resolution. With the strided alternative
(``downsample=False`` and ``stride == 2``; see :mod:`sw.tt`) G1 runs at the input resolution,
G2/G3 carry the stride (STT: G2 halves rows, G3 halves columns; PTT: both halve both) and G4
runs at the output resolution.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence
from ttsnn.sw.cli_util import UserError

__all__ = [
    "ConvSpec", "ARCHS", "MODES", "TT_MODES", "DOWNSAMPLE_CHOICES", "STAGES",
    "network_specs", "default_schedule", "validate_schedule", "max_tt_rank", "parse_input_size",
    "tt_layers", "WorkloadSpec", "WORKLOADS", "reversible_specs", "reversible_block_prefixes",
    "PRESETS", "resolve_ranks", "describe_rank_syntax",
]

#: conv kinds; only ``conv3x3`` (the 3x3 convs inside residual blocks) can be TT.
KINDS = ("conv1", "conv3x3", "shortcut", "fc")
MODES = ("dense", "stt", "ptt", "htt")
TT_MODES = ("stt", "ptt", "htt")
DOWNSAMPLE_CHOICES = ("maxpool", "stride")

#: arch -> list of (channels, blocks, stride) per stage; stem width = first stage's channels.
STAGES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "resnet18": ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)),
    "resnet34": ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)),
    "tiny": ((16, 1, 1), (32, 1, 2)),
}
ARCHS = tuple(STAGES)


def default_schedule(timesteps: int) -> tuple[bool, ...]:
    """HTT's default schedule: the first half of the timesteps are full (PTT), the rest reduced.

    For odd ``T`` the middle timestep is full (``ceil(T/2)`` full timesteps), so ``T=1`` still
    has one full timestep. ``T=4`` gives the reference's ``(True, True, False, False)``.
    """
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
        raise UserError(f"timesteps must be a positive integer, got {timesteps!r}")
    n_full = (timesteps + 1) // 2
    return tuple(t < n_full for t in range(timesteps))


def validate_schedule(schedule: Iterable | None, timesteps: int) -> tuple[bool, ...]:
    """Return ``schedule`` as a tuple of bools of length ``timesteps`` (default if None).

    Accepts bools or 0/1 integers, or a string such as ``"1100"``. Raises ValueError when the
    length differs from ``timesteps`` or an entry is not a bool/0/1.
    """
    if schedule is None:
        return default_schedule(timesteps)
    if isinstance(schedule, str):
        text = schedule.replace(",", "").strip()
        if not text or any(c not in "01" for c in text):
            raise UserError(f"HTT schedule string must be made of 0/1 (1 = full timestep), "
                            f"got {schedule!r}")
        schedule = [c == "1" for c in text]
    entries = list(schedule)
    out = []
    for e in entries:
        if isinstance(e, bool) or (isinstance(e, int) and e in (0, 1)):
            out.append(bool(e))
        else:
            raise UserError(f"HTT schedule entries must be booleans (True = full timestep), "
                            f"got {e!r} in {entries!r}")
    if len(out) != timesteps:
        raise UserError(f"HTT schedule has {len(out)} entries but timesteps T={timesteps}: "
                        f"give exactly one bool per timestep (True = full/PTT, "
                        f"False = reduced/G1-G4 only)")
    return tuple(out)


def max_tt_rank(in_channels: int, out_channels: int) -> int:
    """Largest useful TT rank of a 3x3 conv ``Cin -> Cout``.

    The TT cores decompose the weight permuted to ``(Cin, 3, 3, Cout)``; its three unfoldings
    have ranks at most ``min(Cin, 9*Cout)``, ``min(3*Cin, 3*Cout)`` and ``min(9*Cin, Cout)``.
    A uniform rank equal to the largest of the three makes TT-SVD exact; a larger rank only
    adds parameters. Ranks must lie in ``1..max_tt_rank(Cin, Cout)``.
    """
    return max(min(in_channels, 9 * out_channels), 3 * min(in_channels, out_channels),
               min(9 * in_channels, out_channels))


def parse_input_size(input_size: int | Sequence[int] | str) -> tuple[int, int]:
    """``32`` -> (32, 32); ``(48, 64)`` -> (48, 64); ``"48x64"`` -> (48, 64)."""
    if isinstance(input_size, str):
        parts = input_size.lower().split("x")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise UserError(f"input size {input_size!r}: expected H, HxW") from None
        input_size = vals[0] if len(vals) == 1 else tuple(vals)
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        hw = (input_size, input_size)
    else:
        try:
            hw = tuple(int(v) for v in input_size)  # type: ignore[union-attr]
        except TypeError:
            raise UserError(f"input size must be an int or (H, W), got {input_size!r}") from None
    if len(hw) != 2 or min(hw) < 1:
        raise UserError(f"input size must be a positive int or a pair (H, W), got {input_size!r}")
    return hw  # type: ignore[return-value]


def _down(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Output size of a 3x3/pad-1 or 1x1/pad-0 conv, or a ceil-mode 2x2 max-pool."""
    return (math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))


@dataclass(frozen=True)
class ConvSpec:
    """One weight layer of a network.

    ``kernel``: 3 (stem and block convs), 1 (shortcut), 1 for fc. ``stride``: the layer's
    overall stride. ``in_hw``/``out_hw``: feature-map sizes (fc: (1, 1)). ``mode``: 'dense' or
    a TT mode (only ``kind == 'conv3x3'``). ``rank``: TT rank (None when dense). ``downsample``:
    a TT conv with stride 2 using the reference downsampling (chain at stride 1, then 2x2
    max-pool); False for the strided alternative and for stride-1 or dense layers.
    ``schedule``: HTT's full-timestep flags (None for the other modes). ``reversible``: the conv
    is F's or G's conv of a reversible block (:mod:`sw.reversible`): it works on one of the two
    channel groups, ``C/2 -> C/2``.
    """
    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    mode: str = "dense"
    rank: int | None = None
    downsample: bool = False
    schedule: tuple[bool, ...] | None = None
    reversible: bool = False

    @property
    def membrane_shortcut(self) -> bool:
        """MS-ResNet adds the shortcut to the membrane input after each block's second conv
        (so that conv's LIF current also feeds the next block: its backward has a shortcut share)."""
        return self.kind == "conv3x3" and self.name.endswith(".conv2")

    @property
    def is_tt(self) -> bool:
        return self.mode in TT_MODES

    def params(self) -> int:
        """Weights (and the classifier's bias); no BatchNorm."""
        if self.kind == "fc":
            return self.in_channels * self.out_channels + self.out_channels
        if self.is_tt:
            r = self.rank
            return r * (self.in_channels + self.out_channels) + 6 * r * r
        return self.kernel * self.kernel * self.in_channels * self.out_channels

    def tt_core_macs(self, full: bool = True) -> dict[str, int]:
        """MACs per timestep of each TT core (G1..G4); reduced timesteps (``full=False``) only
        run G1 and G4 (both 0 cost entries are kept for G2/G3)."""
        if not self.is_tt:
            raise UserError(f"{self.name} is a dense layer; it has no TT cores")
        r, cin, cout = self.rank, self.in_channels, self.out_channels
        hi, wi = self.in_hw
        ho, wo = self.out_hw
        area_in, area_out = hi * wi, ho * wo
        if self.downsample or self.stride == 1:
            # reference: whole chain at the input resolution (max-pool afterwards)
            g1, g4 = cin * r * area_in, r * cout * area_in
            g2 = g3 = 3 * r * r * area_in
        else:  # strided alternative
            g1, g4 = cin * r * area_in, r * cout * area_out
            if self.mode == "stt":
                g2, g3 = 3 * r * r * ho * wi, 3 * r * r * area_out
            else:
                g2 = g3 = 3 * r * r * area_out
            if not full:
                g1 = cin * r * area_out  # reduced timestep: G1 on the subsampled input
        if not full:
            g2 = g3 = 0
        return {"g1": g1, "g2": g2, "g3": g3, "g4": g4}

    def macs_per_timestep(self, full: bool = True) -> int:
        """Multiply-accumulates for one timestep (``full=False``: an HTT reduced timestep)."""
        if self.kind == "fc":
            return self.in_channels * self.out_channels
        if self.is_tt:
            return sum(self.tt_core_macs(full).values())
        return (self.kernel * self.kernel * self.in_channels * self.out_channels
                * self.out_hw[0] * self.out_hw[1])

    def macs(self, timesteps: int) -> int:
        """MACs over ``timesteps`` (HTT: full timesteps per ``schedule``, the rest reduced).

        The classifier runs once per timestep in this count, as the paper counts it (the FC
        is linear, so FC(mean_t) and mean_t(FC) agree; counting it T times reproduces 2.2217 G).
        """
        if self.mode == "htt":
            sched = validate_schedule(self.schedule, timesteps)
            n_full = sum(sched)
            return (n_full * self.macs_per_timestep(True)
                    + (timesteps - n_full) * self.macs_per_timestep(False))
        return timesteps * self.macs_per_timestep(True)

    def dense(self) -> "ConvSpec":
        """The same layer as a dense conv (its counterpart in the dense model)."""
        return replace(self, mode="dense", rank=None, downsample=False, schedule=None)


def network_specs(arch: str, in_channels: int, input_size: int | Sequence[int] | str,
                  num_classes: int, mode: str = "dense", ranks=None, timesteps: int = 4,
                  schedule: Iterable | None = None,
                  downsample: str = "maxpool", reversible: bool = False) -> list[ConvSpec]:
    """The weight layers of MS-ResNet ``arch`` in forward order.

    ``ranks`` (needed when ``mode`` is a TT mode) is anything :func:`resolve_ranks`
    accepts: an int, ``'uniform:R'``, a list or comma string with one rank per TT conv, or a
    preset such as ``'paper-ncaltech101'``. ``schedule`` is HTT's full-timestep flags (default
    :func:`default_schedule`). ``downsample`` picks how stride-2 TT convs downsample:
    ``'maxpool'`` (reference) or ``'stride'`` (strided G2/G3). ``reversible``: the blocks that
    keep their shape (stride 1, ``Cin == Cout``) become reversible blocks whose two convs work on
    half the channels (:func:`reversible_specs`); ranks are resolved on the standard network.
    """
    if arch not in STAGES:
        raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if downsample not in DOWNSAMPLE_CHOICES:
        raise UserError(f"unknown downsample {downsample!r}; choose one of "
                        f"{', '.join(DOWNSAMPLE_CHOICES)}")
    for what, v in (("in_channels", in_channels), ("num_classes", num_classes),
                    ("timesteps", timesteps)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"{what} must be a positive integer, got {v!r}")
    hw = parse_input_size(input_size)
    sched = validate_schedule(schedule, timesteps) if mode == "htt" else None
    if mode != "dense" and ranks is None:
        raise UserError(f"mode {mode!r} needs ranks (an int, 'uniform:R', a per-layer list or "
                        f"a preset such as 'paper-ncaltech101')")

    stages = STAGES[arch]
    width = stages[0][0]
    specs: list[ConvSpec] = [ConvSpec("conv1", "conv1", in_channels, width, 3, 1, hw, hw)]
    cin = width
    for si, (cout, blocks, first_stride) in enumerate(stages):
        for bi in range(blocks):
            stride = first_stride if bi == 0 else 1
            prefix = f"layers.{si}.{bi}"
            out_hw = _down(hw, stride)
            specs.append(ConvSpec(f"{prefix}.conv1", "conv3x3", cin, cout, 3, stride, hw, out_hw))
            specs.append(ConvSpec(f"{prefix}.conv2", "conv3x3", cout, cout, 3, 1, out_hw, out_hw))
            if stride != 1 or cin != cout:
                specs.append(ConvSpec(f"{prefix}.shortcut.conv", "shortcut", cin, cout, 1,
                                      stride, hw, out_hw))
            cin, hw = cout, out_hw
    specs.append(ConvSpec("fc", "fc", cin, num_classes, 1, 1, (1, 1), (1, 1)))

    if mode == "dense":
        return reversible_specs(specs) if reversible else specs
    rank_list = iter(resolve_ranks(ranks, specs))
    out = []
    for s in specs:
        if s.kind == "conv3x3":
            s = replace(s, mode=mode, rank=next(rank_list),
                        downsample=(s.stride != 1 and downsample == "maxpool"), schedule=sched)
        out.append(s)
    return reversible_specs(out) if reversible else out


def reversible_block_prefixes(specs: Sequence[ConvSpec]) -> list[str]:
    """Names (``layers.<stage>.<block>``) of the blocks that can be reversible: stride 1, same
    channels in and out (no projection shortcut), an even channel count to split in two."""
    out = []
    for s in specs:
        if s.kind == "conv3x3" and s.name.endswith(".conv1"):
            if s.stride == 1 and s.in_channels == s.out_channels and s.in_channels % 2 == 0:
                out.append(s.name.rsplit(".", 1)[0])
    return out


def reversible_specs(specs: Sequence[ConvSpec]) -> list[ConvSpec]:
    """``specs`` with every shape-keeping block made reversible: its conv1 (inside F) and conv2
    (inside G) map one channel group to the other, ``C/2 -> C/2`` (ranks kept; a rank above
    :func:`max_tt_rank` of the halved conv is rejected when the conv is built)."""
    blocks = set(reversible_block_prefixes(specs))
    out = []
    for s in specs:
        if s.kind == "conv3x3" and s.name.rsplit(".", 1)[0] in blocks:
            half = s.in_channels // 2
            s = replace(s, in_channels=half, out_channels=half, reversible=True)
        out.append(s)
    return out


def tt_layers(specs: Sequence[ConvSpec]) -> list[ConvSpec]:
    """The layers that are (or could be) TT convs: the 3x3 convs of the residual blocks."""
    return [s for s in specs if s.kind == "conv3x3"]


@dataclass(frozen=True)
class WorkloadSpec:
    """One benchmark workload of the paper: a network, its input, its ranks and T.

    The single definition of the workloads that the training benchmark (:mod:`sw.bench`), the
    cycle report (:mod:`gen.perf`), the energy model (:mod:`model.networks`) and the
    co-simulation speed case (:mod:`cosim.cases`) all use; they build their own records from it.

    ``input_size`` is the side of a square input; ``ranks`` is in :func:`resolve_ranks` syntax;
    ``events`` is True for event-camera frames (``[T, B, C, H, W]``, binary) and False for
    direct-coded images (``[B, C, H, W]``).
    """

    name: str  #: display name, e.g. ``"MS-ResNet18/CIFAR10"``
    arch: str
    in_channels: int
    input_size: int
    num_classes: int
    timesteps: int
    ranks: str
    events: bool

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the input."""
        return (self.input_size, self.input_size)

    @property
    def uniform_rank(self) -> int | None:
        """The rank ``R`` when ``ranks`` is ``"uniform:R"``, else None."""
        kind, _, value = self.ranks.partition(":")
        return int(value) if kind == "uniform" and value else None


#: The paper's two benchmark workloads (Fig. 4), keyed by ``<arch>-<dataset>``.
#:
#: * MS-ResNet34 on N-Caltech101 event frames (2x48x48, 101 classes, T=6): the only workload
#:   with published ranks (``paper-ncaltech101``, :data:`PAPER_NCALTECH101_RESNET34`).
#: * MS-ResNet18 on CIFAR10 images (3x32x32, 10 classes, T=4): its ranks were not published;
#:   a uniform rank of 32 gives 0.346 GFLOPs over T=4 (sw.stats convention, max-pool
#:   downsampling), the closest power of two to the paper's 0.372 G for its TT models (rank 32
#:   is also within the paper configuration's max_rank).
WORKLOADS: Mapping[str, WorkloadSpec] = MappingProxyType({
    "resnet18-cifar10": WorkloadSpec("MS-ResNet18/CIFAR10", "resnet18", 3, 32, 10, 4,
                                     "uniform:32", events=False),
    "resnet34-ncaltech101": WorkloadSpec("MS-ResNet34/N-Caltech101", "resnet34", 2, 48, 101, 6,
                                         "paper-ncaltech101", events=True),
})


# ---- TT ranks: uniform, per layer, or a published preset ------------------------------------
# :func:`resolve_ranks` turns what a user wrote (``16``, ``"uniform:16"``, ``"24,23,..."``, a list,
# ``"paper-ncaltech101"``) into one rank per TT-able conv (the 3x3 convs of the residual blocks, in
# forward order, two per block) and checks each against the layer's bound
# :func:`max_tt_rank` (``1 <= r <= max(min(Cin, 9*Cout), 3*min(Cin, Cout), min(9*Cin, Cout))``,
# the rank at which TT-SVD of the ``(Cin, 3, 3, Cout)`` weight is exact).

#: Published ranks (SATA_Sim; paper's energy runs): MS-ResNet34 on N-Caltech101, block order,
#: two convs per block (stages of 64/128/256/512 channels).
PAPER_NCALTECH101_RESNET34: tuple[int, ...] = (
    24, 23, 22, 17, 16, 12,
    22, 31, 25, 25, 24, 21, 20, 19,
    48, 79, 64, 69, 63, 69, 60, 65, 63, 63, 62, 58,
    121, 170, 173, 147, 161, 108,
)

#: preset name -> (arch it belongs to, ranks)
PRESETS: dict[str, tuple[str, tuple[int, ...]]] = {
    "paper-ncaltech101": ("resnet34", PAPER_NCALTECH101_RESNET34),
}


def describe_rank_syntax() -> str:
    return ("an int (uniform), 'uniform:R', a comma-separated list with one rank per TT conv, "
            f"or a preset ({', '.join(PRESETS)})")


def _channel_pattern(layers: Sequence[ConvSpec]) -> list[tuple[int, int]]:
    return [(s.in_channels, s.out_channels) for s in layers]


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(f"ranks: {what} {text.strip()!r} is not an integer; ranks must be "
                        f"{describe_rank_syntax()}") from None


def resolve_ranks(ranks, arch_or_layers: str | Sequence[ConvSpec]) -> list[int]:
    """One validated rank per TT-able conv of a network.

    ``arch_or_layers``: an arch name (``'resnet18'``, ``'resnet34'``, ``'tiny'``) or the
    network's :class:`~sw.arch.ConvSpec` list (any mode; only ``kind == 'conv3x3'`` layers get
    ranks). Raises ValueError for an unknown preset, a preset of another arch, a list of the
    wrong length, or a rank outside ``1..max_tt_rank`` (naming the layer and the range).
    """
    if isinstance(arch_or_layers, str):
        if arch_or_layers not in STAGES:
            raise UserError(f"unknown arch {arch_or_layers!r}; choose one of {', '.join(STAGES)}")
        layers = tt_layers(network_specs(arch_or_layers, 3, 32, 10))
    else:
        layers = tt_layers(arch_or_layers)
    n = len(layers)
    if n == 0:
        raise UserError("this network has no 3x3 block convs to give ranks to")

    values: list[int]
    if ranks is None:
        raise UserError(f"ranks missing: give {describe_rank_syntax()}")
    if isinstance(ranks, bool):
        raise UserError(f"ranks: got a bool; give {describe_rank_syntax()}")
    if isinstance(ranks, numbers.Integral):
        values = [int(ranks)] * n
    elif isinstance(ranks, str):
        text = ranks.strip().lower()
        if text in PRESETS:
            preset_arch, preset = PRESETS[text]
            ref = tt_layers(network_specs(preset_arch, 3, 32, 10))
            if _channel_pattern(ref) != _channel_pattern(layers):
                raise UserError(f"rank preset {text!r} is for {preset_arch} ({len(ref)} TT "
                                f"convs); this network has {n} TT convs with other channels")
            values = list(preset)
        elif text.startswith("uniform:"):
            values = [_parse_int(text.split(":", 1)[1], "uniform rank")] * n
        elif re.fullmatch(r"[-+\d\s,]+", text):
            parts = [p for p in text.split(",")]
            values = [_parse_int(p, "rank") for p in parts]
            if len(values) == 1:
                values = values * n
        else:
            raise UserError(f"unknown rank preset {ranks!r}; ranks must be "
                            f"{describe_rank_syntax()}")
    else:
        try:
            items = list(ranks)
        except TypeError:
            raise UserError(f"ranks: cannot use {ranks!r}; give {describe_rank_syntax()}") from None
        values = []
        for v in items:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                if isinstance(v, str):
                    values.append(_parse_int(v, "rank"))
                    continue
                raise UserError(f"ranks: entry {v!r} is not an integer")
            values.append(int(v))

    if len(values) != n:
        raise UserError(f"ranks: got {len(values)} ranks but the network has {n} TT convs "
                        f"(3x3 convs of the residual blocks, two per block); give one per conv "
                        f"or a single uniform rank")
    for spec, r in zip(layers, values):
        bound = max_tt_rank(spec.in_channels, spec.out_channels)
        if not 1 <= r <= bound:
            raise UserError(f"rank {r} for layer {spec.name} ({spec.in_channels}->"
                            f"{spec.out_channels}) is out of range: allowed 1..{bound} "
                            f"(max(min(Cin,9Cout), 3min(Cin,Cout), min(9Cin,Cout)), the rank "
                            f"at which TT-SVD is exact)")
    return values
