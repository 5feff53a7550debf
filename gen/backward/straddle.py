"""A projection, not built: lanes over (pixel, channel) pairs that straddle pixels.

The core-stage engine puts one lane channel on each of the ``P`` lanes (two pixels per pass
where a stage has at most ``P/2``, the stage field ``pack``), so a stage with ``O`` lane
channels, ``O`` not a multiple of ``P``, leaves ``ceil(O/P) * P - O`` lanes idle in every
pass: MS-ResNet34's published ranks 17-31 (and 48-79) idle 1-15 of the 32 lanes in every
stage with ``r`` lane channels. The fix (docs/architecture.md, "Backward performance",
"Straddling pixels"): a block row's ``cols x O`` (pixel, channel) pairs laid out in passes of
``P`` consecutive pairs, lane ``l`` of pass ``j`` computing pair ``k = j P + l``, pixel
``k div O``, channel ``k mod O``; a pass touches up to ``ceil((P - 1) / O) + 1`` pixels (3 for
``P/2 < O < P - 1``), reads one input word per pixel and ``ceil(I / P)`` input channels (the
first pixel's words in steps without a MAC, as ``pack`` reads pixel ``x``'s) and writes each
pixel's lanes rotated into its output word with lane write enables.

This module gives the steps such a stage would issue, from the same descriptor fields the
exact cycle model (:mod:`gen.backward.cyclemodel`) reads, so that the per-layer table
(``python -m gen.perf --backward``) can say how far the change would take each layer. Its
numbers are a projection of an unbuilt design: nothing checks them against an RTL.

Assumptions: the same tiles and chunks as today's plan; passes within a block row (pairs do
not straddle rows), or (``across_rows``) over the block's pixels in one sequence; a stage
straddles where that takes fewer steps than today (``pack`` included); a pass pays
``(pixels - 1) * ceil(I / P)`` fetch steps, ``pixels`` the pixels it touches (the engine's
fetch loop bounded per pass, from the pass's first channel and its number of pairs); HTT's
reduced timesteps copy or skip as today (one step per output word); a mat-vec stage drains
``pixels - 1`` cycles more, ``pixels`` the most a pass touches (one write per pixel, as
``pack``'s second word). Optimistic: the weights rotated in the engine (lane ``l`` takes
channel ``(s + l) mod O`` of the stage's word, ``s`` the pass's first channel), so no more
weight words and no cycle for the rotation, and an outer product's products rotated into their
channels' lanes and each channel's (from at most ``ceil(P / O)`` pixels) added before the
accumulator's one update per step, in no cycle; no stage added to the write path for the
output rotation beyond those drain cycles. Stochastic rounding is excluded (its dither's lane
index assumes one pixel per pass), as for ``pack``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from .cyclemodel import DRAIN, PACKED_DRAIN, StageCycles, stage_cycles
from .stage_layout import StageKind, Taps

__all__ = ["straddle_pixels", "straddled_steps", "straddled_cycles", "STRADDLE_PROJECTIONS"]

_TAPS = {Taps.POINT: 1, Taps.ROWS: 3, Taps.COLS: 3, Taps.ROWS_COLS: 6}

#: the projections the per-layer table states: name -> (the stage kinds that straddle, whether
#: pairs straddle a block's rows too): the mat-vec stages, the outer products (the weight
#: gradients dW1, dW2, dW3, whose lanes are the rank's gradient channels) as well, and both with
#: the block's pixels in one sequence (a block row's last pass no longer partly empty; the output
#: tensor's rows are contiguous, an input pixel's address stepped per pixel slot)
STRADDLE_PROJECTIONS = {"matvec": ((StageKind.MATVEC,), False),
                        "all": ((StageKind.MATVEC, StageKind.OUTER), False),
                        "all_rows": ((StageKind.MATVEC, StageKind.OUTER), True)}


def straddle_pixels(channels: int, lanes: int) -> int:
    """The most pixels a pass of ``lanes`` consecutive (pixel, channel) pairs touches."""
    return -(-(lanes - 1) // channels) + 1


def straddled_steps(f: Mapping[str, int], lanes: int, spikes_per_word: int, across_rows: bool = False) -> int | None:
    """The steps stage ``f`` would issue with its lanes straddling pixels (``across_rows``: the
    block's rows too), or None where it would not straddle (not a mat-vec or outer product, its
    lane channels a multiple of ``lanes``, or no fewer steps so than the exact model's, packed
    or not)."""
    kind, O = StageKind(f["kind"]), f["out_channels"]
    if kind not in (StageKind.MATVEC, StageKind.OUTER) or O % lanes == 0:
        return None
    T, rows, cols, inner = f["timesteps"], f["rows"], f["cols"], f["in_channels"]
    groups = -(-O // lanes)
    full = [not f["use_schedule"] or bool((f["schedule"] >> t) & 1) for t in range(T)]
    in_words = -(-inner // (spikes_per_word if f.get("in_spikes") else lanes))
    taps = _TAPS[Taps(f["taps"])]
    seqs, pairs = (1, rows * cols * O) if across_rows else (rows, cols * O)     # pair sequences per timestep
    # pass j: pairs j P .. min(j P + P, pairs) - 1, one fetch step per input word and pixel after its first
    fetches = sum((min(j + lanes, pairs) - 1) // O - j // O for j in range(0, pairs, lanes))
    per_seq = taps * (-(-pairs // lanes) * inner + fetches * in_words)
    unpacked = rows * cols * groups * taps * inner       # a computed timestep's steps, one pixel per pass
    # HTT's reduced timesteps copy or skip as today
    steps = stage_cycles("", {**f, "pack": 0}, lanes, spikes_per_word).steps - sum(full) * (unpacked - seqs * per_seq)
    return steps if steps < stage_cycles("", f, lanes, spikes_per_word).steps else None


def straddled_cycles(stages: Iterable[tuple[str, Mapping[str, int]]], exact: Iterable[StageCycles], lanes: int,
                     spikes_per_word: int, kinds: tuple[StageKind, ...], across_rows: bool = False) -> int:
    """A run's cycles with the stages of ``kinds`` straddled where that takes fewer steps:
    the exact model's cycles (``exact``, :func:`gen.backward.cyclemodel.backward_cycles` of
    ``stages``) less the steps straddling saves, a mat-vec stage draining one cycle per pixel
    of a pass after its first (instead of a packed stage's one)."""
    total = 0
    for (_, f), sc in zip(stages, exact):
        steps = straddled_steps(f, lanes, spikes_per_word, across_rows) if StageKind(f["kind"]) in kinds else None
        if steps is None:
            total += sc.cycles
            continue
        drain = sc.cycles - sc.steps
        if sc.kind == StageKind.MATVEC:
            drain += (straddle_pixels(f["out_channels"], lanes) - 1) - (PACKED_DRAIN - DRAIN[sc.kind] if f.get("pack")
                                                                        else 0)
        total += steps + drain
    return total
