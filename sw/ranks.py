"""TT ranks of a network: uniform, per layer, or a published preset.

:func:`resolve_ranks` turns what a user wrote (``16``, ``"uniform:16"``, ``"24,23,..."``, a list,
``"paper-ncaltech101"``) into one rank per TT-able conv (the 3x3 convs of the residual blocks, in
forward order, two per block) and checks each against the layer's bound
:func:`sw.arch.max_tt_rank` (``1 <= r <= max(min(Cin, 9*Cout), 3*min(Cin, Cout), min(9*Cin, Cout))``,
the rank at which TT-SVD of the ``(Cin, 3, 3, Cout)`` weight is exact).
"""

from __future__ import annotations

import numbers
import re
from typing import Sequence

from sw.arch import STAGES, ConvSpec, max_tt_rank, network_specs, tt_layers

__all__ = ["PRESETS", "resolve_ranks", "describe_rank_syntax"]

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
        raise ValueError(f"ranks: {what} {text.strip()!r} is not an integer; ranks must be "
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
            raise ValueError(f"unknown arch {arch_or_layers!r}; choose one of {', '.join(STAGES)}")
        layers = tt_layers(network_specs(arch_or_layers, 3, 32, 10))
    else:
        layers = tt_layers(arch_or_layers)
    n = len(layers)
    if n == 0:
        raise ValueError("this network has no 3x3 block convs to give ranks to")

    values: list[int]
    if ranks is None:
        raise ValueError(f"ranks missing: give {describe_rank_syntax()}")
    if isinstance(ranks, bool):
        raise ValueError(f"ranks: got a bool; give {describe_rank_syntax()}")
    if isinstance(ranks, numbers.Integral):
        values = [int(ranks)] * n
    elif isinstance(ranks, str):
        text = ranks.strip().lower()
        if text in PRESETS:
            preset_arch, preset = PRESETS[text]
            ref = tt_layers(network_specs(preset_arch, 3, 32, 10))
            if _channel_pattern(ref) != _channel_pattern(layers):
                raise ValueError(f"rank preset {text!r} is for {preset_arch} ({len(ref)} TT "
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
            raise ValueError(f"unknown rank preset {ranks!r}; ranks must be "
                             f"{describe_rank_syntax()}")
    else:
        try:
            items = list(ranks)
        except TypeError:
            raise ValueError(f"ranks: cannot use {ranks!r}; give {describe_rank_syntax()}") from None
        values = []
        for v in items:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                if isinstance(v, str):
                    values.append(_parse_int(v, "rank"))
                    continue
                raise ValueError(f"ranks: entry {v!r} is not an integer")
            values.append(int(v))

    if len(values) != n:
        raise ValueError(f"ranks: got {len(values)} ranks but the network has {n} TT convs "
                         f"(3x3 convs of the residual blocks, two per block); give one per conv "
                         f"or a single uniform rank")
    for spec, r in zip(layers, values):
        bound = max_tt_rank(spec.in_channels, spec.out_channels)
        if not 1 <= r <= bound:
            raise ValueError(f"rank {r} for layer {spec.name} ({spec.in_channels}->"
                             f"{spec.out_channels}) is out of range: allowed 1..{bound} "
                             f"(max(min(Cin,9Cout), 3min(Cin,Cout), min(9Cin,Cout)), the rank "
                             f"at which TT-SVD is exact)")
    return values
