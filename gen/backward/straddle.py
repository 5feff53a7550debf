"""A projection, built in part: lanes over (pixel, channel) pairs that straddle pixels.

Built (the stage field ``straddle``, :class:`gen.backward.CoreStageEngine`, counted exactly by
:mod:`gen.backward.cyclemodel`): the mat-vec and outer-product stages of ``P/3 <= O < P`` lane
channels, pairs within a block row, as this module's loop nest; and, for ``O > P``, only the
last group's ``R`` channels (the full groups one pixel a pass): straddled as a stage of ``R``
channels where ``P/2 <= R``, two pixels a pass (``pack``) where ``R <= P/2``. The rest below
is a projection (for ``O > P``: passes of ``P`` pairs over all ``O`` channels, two weight words
a step), counted only where it takes fewer steps than the built stage.

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

from .cyclemodel import CONTROL_CYCLES, DRAIN, StageCycles, stage_cycles
from .stage_layout import StageKind, Taps

__all__ = ["straddle_pixels", "straddled_steps", "straddled_cycles", "STRADDLE_PROJECTIONS"]

_TAPS = {Taps.POINT: 1, Taps.ROWS: 3, Taps.COLS: 3, Taps.ROWS_COLS: 6}

#: the projections the per-layer table states: name -> (the stage kinds that straddle, whether
#: pairs straddle a block's rows too, whether stages of more than ``P`` lane channels straddle):
#: the mat-vec stages, the outer products (the weight gradients dW1, dW2, dW3, whose lanes are
#: the rank's gradient channels) as well, both with the block's pixels in one sequence (a block
#: row's last pass no longer partly empty; the output tensor's rows are contiguous, an input
#: pixel's address stepped per pixel slot), and that with only the stages of fewer than ``P``
#: lane channels (``O > P``: a pass's weights span two group words, docs/architecture.md)
STRADDLE_PROJECTIONS = {"matvec": ((StageKind.MATVEC,), False, True),
                        "all": ((StageKind.MATVEC, StageKind.OUTER), False, True),
                        "all_rows": ((StageKind.MATVEC, StageKind.OUTER), True, True),
                        "all_rows_below_p": ((StageKind.MATVEC, StageKind.OUTER), True, False)}


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
    # HTT's reduced timesteps copy or skip as today (from the stage unpacked and not straddled:
    # the built straddle, ``straddle``, runs this loop nest where P/3 <= O < P)
    steps = (stage_cycles("", {**f, "pack": 0, "straddle": 0}, lanes, spikes_per_word).steps
             - sum(full) * (unpacked - seqs * per_seq))
    return steps if steps < stage_cycles("", f, lanes, spikes_per_word).steps else None


def straddled_cycles(stages: Iterable[tuple[str, Mapping[str, int]]], exact: Iterable[StageCycles], lanes: int,
                     spikes_per_word: int, kinds: tuple[StageKind, ...], across_rows: bool = False,
                     wide: bool = True) -> int:
    """A run's cycles with the stages of ``kinds`` straddled where that takes fewer steps:
    the exact model's cycles (``exact``, :func:`gen.backward.cyclemodel.backward_cycles` of
    ``stages``) less the steps straddling saves, a mat-vec stage draining one cycle per pixel
    of a pass after its first (instead of a packed stage's one). ``wide``: stages of more than
    ``lanes`` lane channels straddle too."""
    total = 0
    for (_, f), sc in zip(stages, exact):
        chosen = StageKind(f["kind"]) in kinds and (wide or f["out_channels"] < lanes)
        steps = straddled_steps(f, lanes, spikes_per_word, across_rows) if chosen else None
        if steps is None:
            total += sc.cycles
            continue
        drain = sc.cycles - sc.steps
        if sc.kind == StageKind.MATVEC:
            drain = DRAIN[sc.kind] + CONTROL_CYCLES + straddle_pixels(f["out_channels"], lanes) - 1
        total += steps + drain
    return total


def weight_word_lanes(w_row, lanes: int) -> list:
    """The driver's layout of one weight word for a straddled stage of ``O < P`` channels
    (``O > P`` needs two words per step, docs/architecture.md): lane ``l`` holds channel
    ``l mod O`` (``w_row``: the ``O`` weights of one input channel and tap), so that the word
    and the word shifted down by ``O`` lanes, side by side, hold channel ``i mod O`` at every
    lane ``i < P + O``: a pass's weights are that pair's ``P`` lanes from its first channel
    ``s`` on (:func:`rotated_weights`)."""
    O = len(w_row)
    return [w_row[l % O] for l in range(lanes)]


def rotated_weights(word: list, s: int, channels: int) -> list:
    """The engine's weight rotation of a pass whose first channel is ``s``: lane ``l`` takes
    lane ``s + l`` of the word beside the word shifted down by ``channels`` lanes."""
    lanes = len(word)
    ext = word + [word[i - channels] for i in range(lanes, lanes + channels)]
    return [ext[s + l] for l in range(lanes)]


def _passes(npix: int, channels: int, lanes: int):
    """Each pass of ``npix`` pixels' (pixel, channel) pairs: its first pixel ``p0``, first
    channel ``s``, number of pairs and each lane's pixel slot (None past the last pair)."""
    pairs = npix * channels
    for k0 in range(0, pairs, lanes):
        p0, s = divmod(k0, channels)
        n = min(lanes, pairs - k0)
        yield p0, s, n, [(s + l) // channels if l < n else None for l in range(lanes)]


def straddled_matvec(x, w, lanes: int) -> list:
    """A lane-level model of a straddled mat-vec stage (no taps, no re-quantisation): ``x``
    ``[pixels][I]`` inputs, ``w`` ``[I][O]`` weights; per pass each lane accumulates its pixel's
    input times its rotated weight over the input channels, then each pixel slot's lanes are
    written rotated into that pixel's word (lane ``c + slot O - s`` to channel ``c``). Returns
    the ``[pixels][O]`` outputs, to compare with the plain product."""
    npix, O = len(x), len(w[0])
    out = [[None] * O for _ in range(npix)]
    for p0, s, n, slot in _passes(npix, O, lanes):
        acc = [0] * lanes
        for i in range(len(w)):
            # O < P: one word, rotated; O > P: the lanes span two of the row's group words
            # (a second weight read per step, or words laid out per phase: not in the projection)
            wl = (rotated_weights(weight_word_lanes(w[i], lanes), s, O) if O < lanes
                  else [w[i][(s + l) % O] for l in range(lanes)])
            for l in range(n):
                acc[l] += x[p0 + slot[l]][i] * wl[l]
        for k in range(max(slot[:n]) + 1):             # one write per pixel slot, lanes enabled
            for c in range(O):
                l = c + k * O - s
                if 0 <= l < n:
                    out[p0 + k][c] = acc[l]
    return out


def straddled_outer(g, x, lanes: int) -> list:
    """A lane-level model of a straddled outer product: ``g`` ``[pixels][O]`` gradients, ``x``
    ``[pixels][I]`` activations; per pass and input channel ``i`` each lane's product (its
    pixel's gradient at its channel times its pixel's activation ``i``), each slot's products
    rotated into their channels' lanes, the slots added lane by lane into entry ``i``. Returns
    the ``[I][O]`` sums."""
    npix, O, I = len(g), len(g[0]), len(x[0])
    entries = [[0] * O for _ in range(I)]
    for p0, s, n, slot in _passes(npix, O, lanes):
        for i in range(I):
            prod = [g[p0 + slot[l]][(s + l) % O] * x[p0 + slot[l]][i] if l < n else 0 for l in range(lanes)]
            for k in range(max(slot[:n]) + 1):
                for c in range(O):
                    l = c + k * O - s
                    if 0 <= l < n:
                        entries[i][c] += prod[l]
    return entries
