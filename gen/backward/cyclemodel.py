"""Cycle model of the backward datapath: one table per engine, beside the forward engines'
tables (gen/cyclemodel.py). The backward stages run one after the other, each a loop nest
issuing one step per cycle without stalls (the gradient buffer is private to the running
stage), so a stage's cycles and every one of its data-independent counters follow from its
descriptor: its steps plus its pipeline's drain, and the reads and writes each loop level
makes. Only the saturation counters depend on the data. ``tests/gen/test_top_backward.py``
and the Verilator batch (tests/cosim/test_backward_cosim.py) check the model against the
RTL's counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..hostmap import BACKWARD_COUNTER_NAMES
from .stage_layout import StageKind, Taps

__all__ = ["StageCycles", "stage_cycles", "backward_cycles", "tile_counters", "straddle_passes", "check_straddle",
           "DRAIN",
           "outer_drain",
           "PACKED_DRAIN",
           "CONTROL_CYCLES",
           "DATA_DEPENDENT",
           "STRADDLE_SLOTS",
           "straddle_fits"]

#: Cycles after a stage's last issue until its engine is idle: mat-vec issue -> a (the data) ->
#: m (the operands registered, into the MAC) -> the PE array's two more pipeline stages
#: (``CoreStageEngine.ARRAY_EXTRA``: product, lower half; its sums after the upper half)
#: -> b (the sums' lower halves) -> h (their upper halves: one add was 61 generic levels,
#: docs/synthesis.md) -> c (the rounding) -> d (the
#: saturation, the write), outer product issue -> a (the data, each lane's operands chosen) ->
#: o (the operands registered; the products into the accumulator: the choice, the multiplies
#: and their add were one path, docs/synthesis.md; the accumulator's writes follow in the idle
#: time; none when the last timestep is a skipped one), LIF issue -> a -> the LIF-gradient
#: lanes' seven registered stages (``LIFGradientLanes.LATENCY``) -> w (the writes).
DRAIN = {StageKind.MATVEC: 8, StageKind.OUTER: 2, StageKind.LIF: 8}
#: A packed mat-vec stage (``pack``) writes its last pixel pair's second word one cycle later.
PACKED_DRAIN = 9
#: Cycles of the top level's control per stage (``busy`` falls the cycle after the engines).
CONTROL_CYCLES = 1
#: Backward counters the model cannot know: they count saturated values.
DATA_DEPENDENT = ("lifg_saturations", "grad_saturations")
_TAPS = {Taps.POINT: 1, Taps.ROWS: 3, Taps.COLS: 3, Taps.ROWS_COLS: 6}
#: The most pixels a straddled pass touches: the core-stage engine's pixel slots (held input
#: words, fetch steps, writes), so a straddled mat-vec stage has at least ``P/3`` lane channels
#: (``ceil((P - 1) / O) + 1 <= 4``, and a pass's first pixel moves on by at most three).
STRADDLE_SLOTS = 4


def straddle_fits(kind: StageKind, channels: int, lanes: int) -> bool:
    """Whether a mat-vec or outer-product stage of ``channels < lanes`` lane channels (not a
    wide stage) can straddle on ``lanes`` PEs: where a pass touches at most
    :data:`STRADDLE_SLOTS` pixels and the next pass starts at most three pixels on, and an
    outer product's accumulator lane adds at most three pixels' products (its three
    multipliers): ``3 O >= P``, on 32 lanes 11-31 channels."""
    return 0 < channels < lanes and (STRADDLE_SLOTS - 1) * channels >= lanes


@dataclass(frozen=True)
class StageCycles:
    """One stage: ``steps`` issue cycles (the engine's busy counter), ``macs`` PE-array
    multiply-accumulates (mat-vec) or accumulator updates (outer) of the active lanes,
    ``cycles`` = steps + drain + control, and ``counters``: every backward counter the stage
    adds to (names of :data:`gen.hostmap.BACKWARD_COUNTERS`, the data-dependent ones left out)."""
    name: str
    kind: StageKind
    steps: int
    macs: int
    cycles: int
    counters: Mapping[str, int] = field(default_factory=dict)


def _lif_counters(f: Mapping[str, int], groups: int) -> dict[str, int]:
    """The LIF-gradient engine: ``e`` (and ``g_extra``) and the trace word read at a block's
    first position, ``g_cur`` written at the interior pixels, ``g_a4`` at every pre-pool
    position inside the tile (pooling: the ``(2 rows - 2) x (2 cols - 2)`` positions); with
    ``carry_in``/``carry_out`` a load step (one read) and a store step (one write) per group.
    Without pooling two columns take turns, so an odd ``cols`` issues an idle step per row,
    group and timestep (busy, nothing read or written)."""
    T, rows, cols = f["timesteps"], f["rows"], f["cols"]
    issued = rows * (cols if f["pool"] else cols + cols % 2) * groups * (T + f.get("carry_in", 0)
                                                                        + f.get("carry_out", 0))
    pixels = rows * cols * groups                  # (y, x, group)
    firsts = pixels * T
    loads, stores = pixels * f.get("carry_in", 0), pixels * f.get("carry_out", 0)
    a4 = ((2 * rows - 2) * (2 * cols - 2) if f["pool"] else rows * cols) * groups * T
    return {"lifg_busy": issued * (4 if f["pool"] else 1),
            "lifg_updates": rows * cols * f["out_channels"] * T,
            "trace_reads": firsts, "lifg_grad_reads": firsts * (1 + f["use_extra"]) + loads,
            "lifg_grad_writes": a4 + (rows - 2) * (cols - 2) * groups * T + stores}


def straddle_passes(cols: int, channels: int, lanes: int) -> list[tuple[int, int]]:
    """A straddled stage's passes over one block row (``straddle``): the ``cols x channels``
    (pixel, channel) pairs in passes of ``lanes`` consecutive pairs; each pass's pairs ``n``
    and the pixels it touches (from its first channel ``s = k0 mod channels``)."""
    pairs = cols * channels
    out = []
    for k0 in range(0, pairs, lanes):
        n = min(lanes, pairs - k0)
        out.append((n, (k0 % channels + n - 1) // channels + 1))
    return out


def _straddled_counters(f: Mapping[str, int], lanes: int, in_words: int,
                        full: list[bool]) -> tuple[int, int, dict[str, int], int]:
    """A straddled mat-vec stage (``straddle``): per block row and tap of a computed timestep
    each pass takes ``I`` MAC steps and ``ceil(I / P)`` fetch steps (spikes: ``ceil(I / S)``)
    per pixel it touches after its first, reading each of those pixels' input words, a weight
    word per MAC step; each pass writes one word per pixel it touches. HTT's reduced timesteps
    copy one pixel per step as unstraddled; before the first of them after a computed timestep
    the engine issues nothing for a cycle per pixel of that timestep's last pass after its
    first (its writes come before the copy's). Returns the steps, MACs, counters and the
    cycles beside the steps: those gaps and the pixels of the stage's last pass after its
    first (their writes drain one cycle each; none where the last timestep is a copy)."""
    rows, cols, inner = f["rows"], f["cols"], f["in_channels"]
    taps = _TAPS[Taps(f["taps"])]
    passes = straddle_passes(cols, f["out_channels"], lanes)
    per_row = sum(taps * (inner + (px - 1) * in_words) for _, px in passes)
    computed = rows * sum(full)                 # block rows of the computed timesteps
    copied = rows * cols * (len(full) - sum(full))
    macs = computed * cols * f["out_channels"] * taps * inner
    written = sum(px for _, px in passes)
    c = {"stage_busy": computed * per_row + copied, "in_reads": computed * taps * in_words * written + copied,
         "stage_macs": macs, "weight_reads": computed * len(passes) * taps * inner,
         "grad_writes": computed * written + copied}
    after_first = passes[-1][1] - 1
    gaps = after_first * sum(1 for t in range(len(full) - 1) if full[t] and not full[t + 1])
    return c["stage_busy"], macs, c, gaps + (after_first if full[-1] else 0)


def _core_counters(kind: StageKind, f: Mapping[str, int], groups: int, lanes: int, spikes_per_word: int,
                   full: list[bool]) -> tuple[int, int, dict[str, int]]:
    """The core-stage engine: per pixel and output group, ``ceil(I / P)`` input words per tap
    (the word is read once per ``P`` channels; spikes, ``in_spikes``: ``ceil(I / S)``), a weight word per mat-vec step, the gradient
    word once per outer-product pixel, one output word per mat-vec pixel; on HTT's reduced
    timesteps a mat-vec stage copies (one step, one input word, no weight, no MAC per output
    word). A packed stage (``pack``) steps over pixel pairs, each input word taking one step
    more (the first pixel's word read without a MAC or product, the second's with it): per
    pair and tap ``I + ceil(I / P)`` steps (spikes: ``I + ceil(I / S)``) instead of ``2 I``, a
    weight word or an accumulator update per MAC step (an outer product reads both pixels'
    gradient words, in the pair's first two steps). An outer-product
    stage skips HTT's reduced timesteps in one step each, but while its sums have not started
    (``acc_clear``, before the first full timestep) the first one writes zero sums over one
    pixel (every entry), and the later ones a zero word in their one step."""
    T, rows, cols, inner = f["timesteps"], f["rows"], f["cols"], f["in_channels"]
    pixels = rows * cols * groups                 # (y, x, output group) per timestep
    in_words = -(-inner // (spikes_per_word if f.get("in_spikes") else lanes))
    matvec = kind == StageKind.MATVEC
    packed = bool(f.get("pack"))
    passes = pixels // 2 if packed else pixels    # the array's passes per timestep
    inner_steps = inner + in_words if packed else inner
    copy = [matvec and not full[t] for t in range(T)]          # HTT's bypass: one step per output word
    taps = [_TAPS[Taps(f["taps"])] for _ in range(T)]
    steps, zero_words, summed, zeroed = [], 0, False, False
    for t in range(T):
        if copy[t]:
            steps.append(pixels)
        elif not matvec and not full[t]:        # skipped: one step, or one pixel of zero sums
            n = groups * taps[t] * inner if f["acc_clear"] and not (summed or zeroed) else 1
            zeroed = zeroed or n > 1
            zero_words += n if f["acc_clear"] and not summed else 0
            steps.append(n)
        else:
            steps.append(passes * taps[t] * inner_steps)
            summed = summed or not matvec
    done = [matvec or full[t] for t in range(T)]               # timesteps the stage computes
    macs = sum(rows * cols * f["out_channels"] * taps[t] * inner for t in range(T) if done[t] and not copy[t])
    c = {"stage_busy": sum(steps),
         "in_reads": sum(pixels if copy[t] else pixels * taps[t] * in_words for t in range(T) if done[t])}
    if matvec:
        c.update(stage_macs=macs, weight_reads=sum(passes * taps[t] * inner for t in range(T) if not copy[t]),
                 grad_writes=pixels * T)
    else:
        c.update(wgrad_updates=macs, grad_reads=pixels * sum(full),
                 wgrad_words=(sum(passes * taps[t] * inner for t in range(T) if done[t]) if packed
                              else sum(s for s, d in zip(steps, done) if d)) + zero_words)
    return sum(steps), macs, c


def outer_drain(f: Mapping[str, int], full: list[bool]) -> int:
    """Cycles after an outer-product stage's last issue until its engine is idle (``full``: its
    computed timesteps). A step updates the accumulator if it computes (its last step never
    only fetches) or, before the sums start (``acc_clear`` and no computed timestep yet), skips
    writing zeros; an update keeps the engine busy in stages a and o
    (``DRAIN[OUTER]`` cycles). The last timestep skipped in one step that updates nothing
    (the sums started, or no ``acc_clear``): the step before it, the last of a computed
    timestep ``T - 2``, is still in stage o one cycle on; none if ``T - 2`` was skipped too
    (then the sums had started before it, or never clear: no update)."""
    if full[-1] or (f["acc_clear"] and not any(full)):
        return DRAIN[StageKind.OUTER]
    return 1 if len(full) >= 2 and full[-2] else 0


def stage_cycles(name: str, f: Mapping[str, int], lanes: int, spikes_per_word: int) -> StageCycles:
    """The cycles and counters of one stage descriptor ``f`` (``gen.backward.stage_layout``
    fields) on ``lanes`` PEs, ``spikes_per_word`` spikes in a gradient-buffer word
    (``HardwareConfig.gbuf_spikes_per_word``)."""
    kind = StageKind(f["kind"])
    T = f["timesteps"]
    groups = -(-f["out_channels"] // lanes)
    full = [not f["use_schedule"] or bool((f["schedule"] >> t) & 1) for t in range(T)]
    if kind in (StageKind.MATVEC, StageKind.OUTER) and f["out_channels"] > lanes and (f.get("straddle")
                                                                                    or f.get("pack")):
        check_straddle(f, lanes)
        return _wide_stage(name, kind, f, lanes, spikes_per_word, full)
    if kind == StageKind.OUTER and f.get("straddle"):
        check_straddle(f, lanes)
        return _straddled_outer(name, f, lanes, spikes_per_word, full)
    if kind == StageKind.MATVEC and f.get("straddle"):
        check_straddle(f, lanes)
        in_words = -(-f["in_channels"] // (spikes_per_word if f.get("in_spikes") else lanes))
        steps, macs, counters, beside = _straddled_counters(f, lanes, in_words, full)
        cycles = steps + beside + DRAIN[kind] + CONTROL_CYCLES
        return StageCycles(name, kind, steps, macs, cycles, {**counters, "cycles": cycles})
    if kind == StageKind.LIF:
        counters = _lif_counters(f, groups)
        steps, macs = counters["lifg_busy"], counters["lifg_updates"]
    else:
        steps, macs, counters = _core_counters(kind, f, groups, lanes, spikes_per_word, full)
    drain = PACKED_DRAIN if kind == StageKind.MATVEC and f.get("pack") else DRAIN[kind]
    if kind == StageKind.OUTER:
        drain = outer_drain(f, full)
    if kind == StageKind.LIF and not f["pool"] and f["cols"] % 2:
        drain -= 1          # the last step is the idle second column of a pair: nothing to drain
    cycles = steps + drain + CONTROL_CYCLES
    return StageCycles(name, kind, steps, macs, cycles, {**counters, "cycles": cycles})


def _straddled_outer(name: str, f: Mapping[str, int], lanes: int, spikes_per_word: int,
                     full: list[bool]) -> StageCycles:
    """A straddled outer product (``straddle``): per block row and tap of a computed timestep
    each pass takes ``I`` update steps and ``ceil(I / P)`` fetch steps (spikes: ``ceil(I / S)``)
    per pixel it touches after its first, reading each of those pixels' input words, and, at
    its tap 0 and input channel 0, each of those pixels' gradient words; one accumulator word
    per update step. HTT's reduced timesteps are skipped as unstraddled (one step; before the
    sums start one pixel of zero sums, then a zero word per step)."""
    T, rows, cols, inner = f["timesteps"], f["rows"], f["cols"], f["in_channels"]
    taps = _TAPS[Taps(f["taps"])]
    in_words = -(-inner // (spikes_per_word if f.get("in_spikes") else lanes))
    passes = straddle_passes(cols, f["out_channels"], lanes)
    per_row = sum(taps * (inner + (px - 1) * in_words) for _, px in passes)
    written = sum(px for _, px in passes)           # (pixel, pass) pairs of a row
    steps, words, summed, zeroed = 0, 0, False, False
    for t in range(T):
        if full[t]:
            steps += rows * per_row
            words += rows * len(passes) * taps * inner
            summed = True
        else:                                   # skipped: one step, or one pixel of zero sums
            n = taps * inner if f["acc_clear"] and not (summed or zeroed) else 1
            zeroed = zeroed or n > 1
            steps += n
            words += n if f["acc_clear"] and not summed else 0
    computed = rows * sum(full)
    macs = computed * cols * f["out_channels"] * taps * inner
    c = {"stage_busy": steps, "in_reads": computed * taps * in_words * written, "wgrad_updates": macs,
         "grad_reads": computed * written, "wgrad_words": words}
    cycles = steps + outer_drain(f, full) + CONTROL_CYCLES
    return StageCycles(name, StageKind.OUTER, steps, macs, cycles, {**c, "cycles": cycles})


def _wide_stage(name: str, kind: StageKind, f: Mapping[str, int], lanes: int, spikes_per_word: int,
                full: list[bool]) -> StageCycles:
    """A *wide* stage (``O > P`` lane channels with ``straddle`` or ``pack``): per block row of a
    computed timestep two phases, first the ``ceil(O/P) - 1`` full groups of every pixel as
    unstraddled, then the last group's ``R`` channels of the row straddled (``straddle``, as a
    stage of ``R`` channels: :func:`_straddled_counters`, :func:`_straddled_outer`) or two pixels
    per pass (``pack``, as a packed stage of ``R`` channels). HTT's reduced timesteps copy
    (mat-vec: one step per output word, every group) or are skipped as unstraddled; before the
    first of them after a computed timestep a packed remainder's engine issues nothing for a
    cycle (its last pair's second word is written before the copy's first)."""
    T, rows, cols, inner = f["timesteps"], f["rows"], f["cols"], f["in_channels"]
    G = -(-f["out_channels"] // lanes)
    R = f["out_channels"] - (G - 1) * lanes
    taps = _TAPS[Taps(f["taps"])]
    in_words = -(-inner // (spikes_per_word if f.get("in_spikes") else lanes))
    matvec = kind == StageKind.MATVEC
    # the full groups' counts as a stage of (G - 1) P channels computing every timestep (the
    # reduced ones are counted on the whole stage below)
    head = {**f, "out_channels": (G - 1) * lanes, "pack": 0, "straddle": 0, "use_schedule": 0}
    a = stage_cycles("", head, lanes, spikes_per_word)
    tail = {**f, "out_channels": R, "use_schedule": 0}
    if f.get("straddle"):
        b = stage_cycles("", tail, lanes, spikes_per_word)
    else:
        b = stage_cycles("", {**tail, "pack": 1}, lanes, spikes_per_word)
    per_t = {k: (a.counters.get(k, 0) + b.counters.get(k, 0)) // T for k in set(a.counters) | set(b.counters)
             if k != "cycles"}
    n_full = sum(full)
    c = {k: v * n_full for k, v in per_t.items()}
    whole = stage_cycles("", {**f, "pack": 0, "straddle": 0}, lanes, spikes_per_word)
    if n_full < T:
        # the reduced timesteps as the unstraddled stage counts them: its counts less its
        # computed timesteps' (which are those of the head and tail's T computed ones * n_full / T)
        plain = stage_cycles("", {**f, "pack": 0, "straddle": 0, "use_schedule": 0}, lanes, spikes_per_word)
        for k, v in whole.counters.items():
            if k != "cycles":
                c[k] = c.get(k, 0) + v - plain.counters[k] // T * n_full
    steps = c["stage_busy"]
    macs = c["stage_macs"] if matvec else c["wgrad_updates"]
    if matvec:
        if f.get("straddle"):
            last_px = straddle_passes(cols, R, lanes)[-1][1] - 1
        else:
            last_px = 1                        # a pair's second word
        gaps = last_px * sum(1 for t in range(T - 1) if full[t] and not full[t + 1])
        drain = DRAIN[kind] + gaps + (last_px if full[-1] else 0)
    else:
        drain = outer_drain(f, full)
    cycles = steps + drain + CONTROL_CYCLES
    return StageCycles(name, kind, steps, macs, cycles, {**c, "cycles": cycles})


def check_straddle(f: Mapping[str, int], lanes: int, rounding: str = "nearest") -> None:
    """Refuse a stage descriptor whose ``straddle`` the core-stage engine does not build: only
    a mat-vec or outer-product stage of ``P/3 <= O < P`` lane (gradient) channels (a pass
    touches at most :data:`STRADDLE_SLOTS` pixels, one weight word or accumulator update per
    step, each accumulator lane adding at most three pixels' products) (:func:`straddle_fits`),
    without
    ``pack`` or stochastic rounding (its dither's lane index assumes one pixel per pass); HTT's
    reduced timesteps copy (mat-vec) or are skipped (outer) as unstraddled. A stage of
    ``O > P`` channels with ``straddle`` or ``pack`` (a *wide* stage, :func:`_wide_stage`)
    straddles or packs its last group's ``R = O - (ceil(O/P) - 1) P`` channels: ``P/2 <= R``
    straddled, ``R <= P/2`` packed (even ``cols``), with at least 3 steps per pixel and group."""
    O = f["out_channels"]
    wide = O > lanes and (f.get("straddle") or f.get("pack"))
    if not f.get("straddle") and not wide:
        return
    rem = O - (-(-O // lanes) - 1) * lanes           # the last group's lane channels
    why = None
    if StageKind(f["kind"]) not in (StageKind.MATVEC, StageKind.OUTER):
        why = "only a mat-vec or outer-product stage straddles"
    elif wide and f.get("straddle") and not 2 * rem >= lanes > rem:
        why = f"it needs P/2 <= the last group's {rem} channels < P, got out_channels {O} on {lanes} lanes"
    elif wide and f.get("pack") and not (2 * rem <= lanes and f["cols"] % 2 == 0):
        why = (f"a packed remainder needs at most P/2 channels in the last group and even cols, got "
               f"out_channels {O}, cols {f['cols']} on {lanes} lanes")
    elif wide and _TAPS[Taps(f["taps"])] * f["in_channels"] < 3:
        why = "a remainder phase needs at least 3 steps per pixel and group (its writes drain behind)"
    elif not wide and not straddle_fits(f["kind"], O, lanes):
        why = f"it needs P/3 <= out_channels < P, got {O} on {lanes} lanes"
    elif f.get("pack") and f.get("straddle"):
        why = "pack and straddle exclude each other"
    elif rounding == "stochastic":
        why = "stochastic rounding does not straddle"
    if why:
        raise ValueError(f"stage field straddle: {why}")


def backward_cycles(stages: Sequence[tuple[str, Mapping[str, int]]], lanes: int,
                    spikes_per_word: int) -> list[StageCycles]:
    """Every stage of a backward tile (``BackwardTileProgram.stages``)."""
    return [stage_cycles(n, f, lanes, spikes_per_word) for n, f in stages]


def tile_counters(stages: Sequence[tuple[str, Mapping[str, int]]], lanes: int,
                  spikes_per_word: int) -> dict[str, int]:
    """A backward tile's counters as the host reads them after its last stage: ``cycles`` and
    every backward counter but the :data:`DATA_DEPENDENT` ones, summed over its stages."""
    out = {n: 0 for n in ("cycles",) + BACKWARD_COUNTER_NAMES if n not in DATA_DEPENDENT}
    for s in backward_cycles(stages, lanes, spikes_per_word):
        for k, v in s.counters.items():
            out[k] += v
    return out
