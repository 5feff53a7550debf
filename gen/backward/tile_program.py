"""The driver side of a backward tile: where each tensor lives in the gradient buffer, the
weight words of every core stage (transposed, taps flipped), and the sequence of stage
descriptors that :class:`gen.backward.CoreStageEngine` runs (docs/numerics.md, "Backward
pass", steps 4-7; the recomputation of steps 1-4 first).

A tile is the golden model's backward tile: ``H x W`` pre-pool pixels, the input window of
``(H + 2) x (W + 2)`` spikes, gradients over the tile plus a one-pixel ring.
"""

from __future__ import annotations

from dataclasses import dataclass, replace, field
from typing import Mapping

import numpy as np

from .cyclemodel import check_straddle, stage_cycles, straddle_fits
from .stage_layout import STAGE_FIELDS, Requant, StageKind, Taps
from ttsnn.sw.cli_util import UserError

__all__ = ["TensorSpec", "WeightGradSpec", "BackwardTileProgram", "plan_backward_tile",
           "pack_tensor", "unpack_tensor", "unpack_wgrad", "pack_trace", "bank_conflicts", "gbuf_need"]


@dataclass(frozen=True)
class TensorSpec:
    """A ``[T, channels, rows, cols]`` tensor in the gradient buffer from word ``base``:
    ``lanes`` channels per word, of ``Gb`` bits each, or of one bit (``spikes``)."""
    name: str
    channels: int
    rows: int
    cols: int
    base: int
    lanes: int
    spikes: bool = False
    #: a tensor of one timestep whatever the tile's (the LIF gradient carried between chunks)
    single: bool = False

    @property
    def groups(self) -> int:
        return -(-self.channels // self.lanes)

    def words(self, timesteps: int) -> int:
        return (1 if self.single else timesteps) * self.rows * self.cols * self.groups


@dataclass(frozen=True)
class WeightGradSpec:
    """A core's weight-gradient sums in the accumulator: entry
    ``base + (tap * ceil(out/P) + o // P) * inner + i``, lane ``o % P``."""
    name: str
    taps: int
    out: int          # gradient-side channels (lanes)
    inner: int        # activation-side channels
    base: int
    lanes: int

    @property
    def entries(self) -> int:
        return self.taps * -(-self.out // self.lanes) * self.inner


@dataclass
class BackwardTileProgram:
    timesteps: int
    tensors: dict[str, TensorSpec]
    weight_words: list[int]
    stages: list[tuple[str, dict[str, int]]]
    wgrads: dict[str, WeightGradSpec]
    buffer_words: int = 0           # the words from 0 to the end of the last tensor
    bank_words: tuple[int, int] = (0, 0)    # the words each bank of the gradient buffer holds
    acc_entries: int = 0
    notes: list[str] = field(default_factory=list)
    #: stage -> (word, its weight words): weights that do not stay in ``gweights`` for the whole
    #: layer; the host writes them at ``word`` before the stage, in every program
    #: (:func:`_keep_or_stream`). ``weight_words`` are the ones written once, from word 0.
    streamed_weights: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    #: stage -> the weight-gradient sums (``wgrads`` key) the host reads right after the stage
    #: in every program: they do not stay in the accumulator over the layer's programs
    streamed_sums: dict[str, str] = field(default_factory=dict)

    @property
    def weight_span(self) -> int:
        """The ``gweights`` words the tile uses: the resident weights and the streamed slot."""
        return len(self.weight_words) + max((len(w) for _, w in self.streamed_weights.values()), default=0)


def gbuf_need(plan: BackwardTileProgram, region) -> tuple[int, int]:
    """The gradient-buffer words ``plan`` needs and has in ``region`` (the configuration's
    ``gbuf``): its fuller bank times the banks, against the region's depth."""
    return max(plan.bank_words) * region.banks, region.bank_depth * region.banks


def _signed_field(v: int, bits: int) -> int:
    return int(v) & ((1 << bits) - 1)


def pack_tensor(values: np.ndarray, lanes: int, bits: int) -> list[int]:
    """``values [T, C, rows, cols]`` -> words of ``lanes`` lanes of ``bits`` bits."""
    T, C, R, K = values.shape
    groups = -(-C // lanes)
    words = [0] * (T * R * K * groups)
    v = np.asarray(values, dtype=np.int64)
    for t in range(T):
        for c in range(C):
            for y in range(R):
                for x in range(K):
                    w = ((t * R + y) * K + x) * groups + c // lanes
                    words[w] |= _signed_field(v[t, c, y, x], bits) << ((c % lanes) * bits)
    return words


def unpack_tensor(words: list[int], shape: tuple[int, int, int, int], lanes: int, bits: int) -> np.ndarray:
    T, C, R, K = shape
    groups = -(-C // lanes)
    out = np.zeros(shape, dtype=np.int64)
    for t in range(T):
        for c in range(C):
            for y in range(R):
                for x in range(K):
                    v = (words[((t * R + y) * K + x) * groups + c // lanes] >> ((c % lanes) * bits)) & ((1 << bits) - 1)
                    out[t, c, y, x] = v - ((v >> (bits - 1)) << bits)
    return out


def unpack_wgrad(read_entry, spec: WeightGradSpec, bits: int) -> np.ndarray:
    """The sums of ``spec`` as ``[out, inner, taps]`` (``read_entry(entry) -> word``). Where
    ``out <= P/2`` the sum of output ``o`` is lane ``o`` plus lane ``P/2 + o`` (modulo
    ``2^bits``): a packed outer product (``pack``) adds pixel ``x + 1``'s terms in the upper
    half; an unpacked one leaves it zero (the core-stage engine adds zero in the lanes past a
    group's channels). Where ``out > P`` likewise in the last group where its channels fit half
    the lanes (a wide stage that packs it, ``pack``; a layer's tiles may pack it in one tile and
    not in the next, into the same sums)."""
    out = np.zeros((spec.out, spec.inner, spec.taps), dtype=np.int64)
    groups = -(-spec.out // spec.lanes)
    rem = spec.out - (groups - 1) * spec.lanes           # the last group's channels
    halves = 2 * spec.out <= spec.lanes
    mask = (1 << bits) - 1
    for tap in range(spec.taps):
        for g in range(groups):
            for i in range(spec.inner):
                word = read_entry(spec.base + (tap * groups + g) * spec.inner + i)
                for l in range(min(spec.lanes, spec.out - g * spec.lanes)):
                    v = (word >> (l * bits)) & mask
                    if halves or (g == groups - 1 and 2 * rem <= spec.lanes):
                        v = (v + (word >> ((spec.lanes // 2 + l) * bits))) & mask
                    out[g * spec.lanes + l, i, tap] = v - ((v >> (bits - 1)) << bits)
    return out


def _weight_words(mats: list[np.ndarray], lanes: int, bits: int, packed: bool = False,
                  straddled: bool = False) -> list[int]:
    """Per-tap matrices ``[I, O]`` -> words ``(tap * I + i) * ceil(O/P) + o // P``; ``packed``
    (a stage with ``pack``, ``O <= P/2``): output ``o`` in lanes ``o`` and ``P/2 + o`` (the
    two pixels of a pass), the rest zero; ``straddled`` (``straddle``, ``O < P``): lane ``l``
    holds output ``l mod O`` (the engine rotates the word per pass). ``O > P`` (a wide stage,
    :func:`gen.backward.cyclemodel.check_straddle`): the full groups as unpacked, the last
    group's ``R`` outputs as a stage of ``R`` outputs packed or straddled."""
    words = []
    for w in mats:
        I, O = w.shape
        groups = -(-O // lanes)
        rem = O - (groups - 1) * lanes                 # the last group's outputs
        if packed and 2 * rem > lanes:
            raise ValueError(f"packed weights need at most P/2 outputs in the last group, got O = {O}, P = {lanes}")
        if straddled and rem >= lanes:
            raise ValueError(f"straddled weights need fewer than P outputs in the last group, got O = {O}, "
                             f"P = {lanes}")
        for i in range(I):
            for g in range(groups):
                word, base = 0, g * lanes
                last = g == groups - 1
                for l in range(lanes if straddled and last else min(lanes, O - base)):
                    v = _signed_field(w[i, base + (l % rem if straddled and last else l)], bits)
                    word |= v << (l * bits)
                    if packed and last:
                        word |= v << ((lanes // 2 + l) * bits)
                words.append(word)
    return words


def packs(stage: Mapping[str, int], lanes: int, spikes_per_word: int) -> bool:
    """Whether a mat-vec or outer-product stage runs two pixels per pass (``pack``): its
    outputs (an outer product's gradient channels) fit half the lanes, its block has an even
    number of columns, and it takes fewer cycles so (the exact cycle model: ``I + ceil(I / P)``
    steps per pixel pair and tap instead of ``2 I``; a mat-vec stage one more drain cycle; HTT's
    copy and skip take as many steps as unpacked)."""
    if (stage["kind"] not in (StageKind.MATVEC, StageKind.OUTER) or 2 * stage["out_channels"] > lanes
            or stage["cols"] % 2):
        return False
    one = stage_cycles("", {**stage, "pack": 0}, lanes, spikes_per_word).cycles
    return stage_cycles("", {**stage, "pack": 1}, lanes, spikes_per_word).cycles < one


def packs_remainder(stage: Mapping[str, int], lanes: int, spikes_per_word: int) -> bool:
    """Whether a stage of ``O > P`` lane channels packs its last group (``pack`` on a wide
    stage, :func:`gen.backward.cyclemodel.check_straddle`): that group's ``R <= P/2``
    channels of two pixels per pass, the full groups as unpacked, where the exact cycle model
    says it is faster."""
    O = stage["out_channels"]
    G = -(-O // lanes)
    if stage["kind"] not in (StageKind.MATVEC, StageKind.OUTER) or G < 2 or 2 * (O - (G - 1) * lanes) > lanes:
        return False
    try:
        check_straddle({**stage, "pack": 1, "straddle": 0}, lanes)
    except ValueError:
        return False
    one = stage_cycles("", {**stage, "pack": 0}, lanes, spikes_per_word).cycles
    return stage_cycles("", {**stage, "pack": 1}, lanes, spikes_per_word).cycles < one


def can_straddle(stage: Mapping[str, int], lanes: int) -> bool:
    """Whether the core-stage engine can run a stage with its lanes straddling pixels
    (``straddle``, :func:`gen.backward.cyclemodel.check_straddle`): a mat-vec stage of
    ``P/3 <= O < P`` lane channels or an outer-product stage of ``P/3 <= O < P``
    gradient channels (:func:`gen.backward.cyclemodel.straddle_fits`; HTT's reduced timesteps
    copy or are skipped as unstraddled)."""
    O = stage["out_channels"]
    if stage["kind"] not in (StageKind.MATVEC, StageKind.OUTER):
        return False
    if O > lanes:                                # a wide stage straddles its last group
        try:
            check_straddle({**stage, "pack": 0, "straddle": 1}, lanes)
        except ValueError:
            return False
        return True
    return straddle_fits(stage["kind"], O, lanes)


def straddles(stage: Mapping[str, int], lanes: int, spikes_per_word: int) -> bool:
    """Whether a mat-vec or outer-product stage runs with its lanes straddling pixels (``straddle``): it can
    (:func:`can_straddle`) and takes fewer cycles so than unpacked and packed (:func:`packs`)
    by the exact cycle model (each pass pays a fetch step per input word and pixel after its
    first: on few lanes and few input channels it often does not)."""
    if not can_straddle(stage, lanes):
        return False
    plain = {**stage, "pack": 0, "straddle": 0}
    best = min(stage_cycles("", {**plain, "pack": int(packs(plain, lanes, spikes_per_word)
                                                      or packs_remainder(plain, lanes, spikes_per_word))}, lanes,
                            spikes_per_word).cycles,
               stage_cycles("", plain, lanes, spikes_per_word).cycles)
    return stage_cycles("", {**plain, "straddle": 1}, lanes, spikes_per_word).cycles < best


def _stage(**fields: int) -> dict[str, int]:
    known = {name for name, _, _ in STAGE_FIELDS}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"unknown stage fields {sorted(unknown)}")
    return {name: int(fields.get(name, 0)) for name in known}


def pack_trace(spikes: np.ndarray, window: np.ndarray, argmax: np.ndarray | None, lanes: int) -> list[int]:
    """Trace words of ``[T, Cout, rows, cols]`` spikes, window bits and arg-max (or None):
    word as a tensor's, 4 bits per lane (spike, window, arg-max)."""
    arg = np.zeros_like(spikes) if argmax is None else np.asarray(argmax)
    packed = np.asarray(spikes).astype(np.int64) | (np.asarray(window).astype(np.int64) << 1) | (arg.astype(np.int64) << 2)
    return pack_tensor(packed, lanes, 4)


def _tile_tensors(qlayer, T: int, H: int, W: int, P: int, use_extra: bool, carry: bool,
                  spikes_per_word: int) -> dict[str, TensorSpec]:
    """The tile's tensors, each after the one before (``_place`` then assigns them banks)."""
    cin, r, cout, mode = qlayer.in_channels, qlayer.rank, qlayer.out_channels, qlayer.mode
    ho, wo = (H // 2, W // 2) if qlayer.pool else (H, W)
    tensors: dict[str, TensorSpec] = {}
    base = 0
    shapes = [("e", cout, ho + 2, wo + 2), ("g_cur", cout, ho, wo),
              ("x", cin, H + 2, W + 2), ("q1", r, H + 2, W + 2), ("q23", r, H, W),
              ("g_a4", cout, H + 2, W + 2), ("g_q23", r, H + 2, W + 2), ("g_q1", r, H, W), ("e_in", cin, H, W)]
    if use_extra:
        shapes.append(("g_extra", cout, ho + 2, wo + 2))
    if mode == "stt":
        shapes += [("q2", r, H, W + 2), ("g_q2", r, H + 2, W)]
    if carry:
        shapes.append(("carry", cout, ho + 2, wo + 2))
    for name, c, rows, cols in shapes:
        spec = (TensorSpec(name, c, rows, cols, base, spikes_per_word, spikes=True) if name == "x"
                else TensorSpec(name, c, rows, cols, base, P, single=name == "carry"))
        tensors[name] = spec
        base += spec.words(T)
    return tensors


def plan_backward_tile(qlayer, timesteps: int, height: int, width: int, lanes: int, weight_bits: int,
                       shifts: Mapping[str, int], full: list[bool], height_mul: int = 1,
                       height_shift: int = 0, use_extra: bool = False,
                       pack_weights: bool = True, overlay: bool = True,
                       bank_depth: int | None = None, carry: bool = False, *,
                       spikes_per_word: int, weight_depth: int | None = None,
                       acc_depth: int | None = None, pack_lanes: bool = False,
                       straddle_lanes: bool = False) -> BackwardTileProgram:
    """The stages of one backward tile of ``qlayer`` (``height x width`` pre-pool pixels,
    ``full[t]`` the timestep classes): tensors, weight words and stage descriptors, the
    LIF-gradient stage first. ``shifts``: the backward shifts (``affine``, ``g4t``, ``g23t``,
    ``g1t``; STT also ``g3t``); ``height_mul / 2^height_shift``: the surrogate height;
    ``use_extra``: the LIF input's gradient has a shortcut share ``g_extra``; ``pack_weights``
    False leaves the weight words zero (their count and addresses are the same: for planning);
    ``overlay`` False keeps every tensor in words of its own (to inspect the intermediates after
    a run) instead of sharing words between tensors whose lifetimes do not overlap. The tensors
    are placed in the gradient buffer's two banks (:func:`_place`); ``bank_depth`` is the
    configuration's (``Region.bank_depth`` of ``gbuf``) for a tile the accelerator runs, None
    for planning or a flat model memory (bank 1 right after bank 0's words). ``spikes_per_word``:
    the input spikes ``x`` are stored one bit per channel, that many in a word
    (``HardwareConfig.gbuf_spikes_per_word``). ``carry``: the tile's timesteps are one chunk of
    several (:mod:`gen.backward.tiling`): the LIF stage loads and stores the LIF gradient
    carried between chunks in a tensor ``carry`` that lives throughout (``carry_in`` and
    ``carry_out`` set; the driver clears them for the first and last chunk), so that every
    chunk's program places its tensors alike. ``weight_depth``/``acc_depth``: the words of
    ``gweights`` and ``wgrad`` (None: unlimited); where the stages' weights or weight-gradient
    sums do not all fit, some go through a slot the host refills or reads around their stage
    in every program (:func:`_keep_or_stream`); PTT/HTT's six-tap sums run as one stage per
    branch where they alone exceed ``acc_depth``. ``pack_lanes``: the mat-vec stages with at
    most ``P/2`` outputs, and the outer products with at most ``P/2`` gradient channels, run two
    pixels per pass where that is faster (:func:`packs`; not with stochastic rounding, whose
    per-lane index assumes one pixel per pass). ``straddle_lanes``: the mat-vec stages of
    ``P/3 <= O < P`` outputs, and the outer products of ``P/3 <= O < P`` gradient channels,
    straddle pixels where that is faster (:func:`straddles`; not with stochastic rounding
    either)."""
    T, H, W, P = timesteps, height, width, lanes
    mode = qlayer.mode
    cin, r, cout = qlayer.in_channels, qlayer.rank, qlayer.out_channels
    w1, w2, w3, w4 = (np.asarray(getattr(qlayer, n), dtype=np.int64) for n in ("w1", "w2", "w3", "w4"))
    if qlayer.pool and (H % 2 or W % 2):
        raise UserError(f"a pooling layer's backward tile needs an even height and width, got {H}x{W}")
    ho, wo = (H // 2, W // 2) if qlayer.pool else (H, W)
    tensors = _tile_tensors(qlayer, T, H, W, P, use_extra, carry, spikes_per_word)
    wwords: list[int] = []
    blocks: dict[int, list[int]] = {}       # each stage's weight words, by their first word

    def weights(mats, packed=False, straddled=False) -> int:
        start = len(wwords)
        if pack_weights:
            wwords.extend(_weight_words(mats, P, weight_bits, packed, straddled))
        else:
            wwords.extend([0] * sum(m.shape[0] * -(-m.shape[1] // P) for m in mats))
        blocks[start] = wwords[start:]
        return start

    def src(name):
        s = tensors[name]
        return dict(in_base=s.base, in_rows=s.rows, in_cols=s.cols, in_channels=s.channels, in_spikes=s.spikes)

    def dst(name):
        t = tensors[name]
        return dict(out_base=t.base, out_channels=t.channels, out_rows=t.rows, out_cols=t.cols)

    def grad(name, gy, gx):
        s = tensors[name]
        return dict(g_base=s.base, g_rows=s.rows, g_cols=s.cols, gy=gy, gx=gx, out_channels=s.channels)

    def matvec(name, mats, **fields):
        """A mat-vec stage: straddled where :func:`straddles` says so, else packed where
        :func:`packs` does, its weights laid out to match."""
        f = _stage(**fields)
        f["straddle"] = int(straddle_lanes and straddles(f, P, spikes_per_word))
        f["pack"] = int(pack_lanes and not f["straddle"] and (packs(f, P, spikes_per_word) or straddle_lanes
                                                              and packs_remainder(f, P, spikes_per_word)))
        f["w_base"] = weights(mats, bool(f["pack"]), bool(f["straddle"]))
        return name, f

    sched = sum(1 << t for t, f in enumerate(full) if f)
    htt = mode == "htt"
    fwd = dict(kind=StageKind.MATVEC, timesteps=T, requant=Requant.FORWARD, round=qlayer.round)
    bwd = dict(kind=StageKind.MATVEC, timesteps=T, requant=Requant.GRADIENT)
    lif = _stage(kind=StageKind.LIF, timesteps=T, rows=ho + 2, cols=wo + 2, out_channels=cout,
                 in_base=tensors["e"].base, out_base=tensors["g_a4"].base, cur_base=tensors["g_cur"].base,
                 g_base=tensors["g_extra"].base if use_extra else 0, use_extra=use_extra,
                 trace_base=0, pool=qlayer.pool, shift=shifts["affine"], schedule=sched, use_schedule=htt,
                 height_mul=height_mul, height_shift=height_shift, leak_mul=qlayer.leak_mul,
                 leak_shift=qlayer.leak_shift, carry_in=carry, carry_out=carry,
                 carry_base=tensors["carry"].base if carry else 0)
    stages = [("lif", lif), matvec("q1", [w1.T], **fwd, **src("x"), **dst("q1"), rows=H + 2, cols=W + 2,
                                   taps=Taps.POINT, shift=qlayer.shift1)]
    if mode == "stt":
        stages.append(matvec("q2", [w2[:, :, i].T for i in range(3)], **fwd, **src("q1"), **dst("q2"), rows=H,
                             cols=W + 2, taps=Taps.ROWS, shift=qlayer.shift2))
        stages.append(matvec("q23", [w3[:, :, i].T for i in range(3)], **fwd, **src("q2"), **dst("q23"), rows=H,
                             cols=W, taps=Taps.COLS, shift=qlayer.shift3))
    else:
        stages.append(matvec("q23", [w2[:, :, i].T for i in range(3)] + [w3[:, :, i].T for i in range(3)],
                             **fwd, **src("q1"), **dst("q23"), rows=H, cols=W, taps=Taps.ROWS_COLS,
                             fy=1, fx=1, shift=qlayer.shift3 + 1, schedule=sched, use_schedule=htt))
    wg: dict[str, WeightGradSpec] = {}
    entries = 0

    def wgrad(name, taps, out, inner):
        nonlocal entries
        wg[name] = WeightGradSpec(name, taps, out, inner, entries, P)
        entries += wg[name].entries
        return dict(kind=StageKind.OUTER, timesteps=T, rows=H, cols=W, acc_base=wg[name].base, acc_clear=1)

    stages.append(("dw4", _stage(**wgrad("w4", 1, cout, r), **src("q23"), **grad("g_a4", 1, 1), taps=Taps.POINT)))
    stages.append(matvec("g_q23", [w4], **bwd, **src("g_a4"), **dst("g_q23"), rows=H + 2, cols=W + 2,
                         taps=Taps.POINT, shift=shifts["g4t"]))
    flipped2 = [w2[:, :, 2 - i] for i in range(3)]          # [k, j]: input k, output j
    flipped3 = [w3[:, :, 2 - i] for i in range(3)]
    if mode == "stt":
        stages.append(("dw3", _stage(**wgrad("w3", 3, r, r), **src("q2"), **grad("g_q23", 1, 1), taps=Taps.COLS)))
        stages.append(matvec("g_q2", flipped3, **bwd, **src("g_q23"), **dst("g_q2"), rows=H + 2, cols=W,
                             taps=Taps.COLS, shift=shifts["g3t"]))
        stages.append(("dw2", _stage(**wgrad("w2", 3, r, r), **src("q1"), **grad("g_q2", 1, 0), taps=Taps.ROWS,
                                     fx=1)))
        stages.append(matvec("g_q1", flipped2, **bwd, **src("g_q2"), **dst("g_q1"), rows=H, cols=W, taps=Taps.ROWS,
                             shift=shifts["g23t"]))
    else:
        s_bypass = shifts["g23t"] - qlayer.shift3 - 1
        if s_bypass < -15:
            raise UserError(f"HTT bypass: the left shift {-s_bypass} exceeds 15 (g23t {shifts['g23t']}, "
                            f"shift3 {qlayer.shift3})")
        if acc_depth is not None and 6 * -(-r // P) * r > acc_depth:
            # the two branches' sums do not fit together: one stage per branch (the same sums)
            stages.append(("dw2", _stage(**wgrad("w2", 3, r, r), **src("q1"), **grad("g_q23", 1, 1),
                                         taps=Taps.ROWS, fx=1, schedule=sched, use_schedule=htt)))
            stages.append(("dw3", _stage(**wgrad("w3", 3, r, r), **src("q1"), **grad("g_q23", 1, 1),
                                         taps=Taps.COLS, fy=1, schedule=sched, use_schedule=htt)))
        else:
            stages.append(("dw23", _stage(**wgrad("w23", 6, r, r), **src("q1"), **grad("g_q23", 1, 1),
                                          taps=Taps.ROWS_COLS, fy=1, fx=1, schedule=sched, use_schedule=htt)))
        stages.append(matvec("g_q1", flipped2 + flipped3, **bwd, **src("g_q23"), **dst("g_q1"), rows=H, cols=W,
                             taps=Taps.ROWS_COLS, fy=1, fx=1, shift=shifts["g23t"], schedule=sched,
                             use_schedule=htt, alt_shift=abs(s_bypass), alt_left=s_bypass < 0))
    stages.append(("dw1", _stage(**wgrad("w1", 1, r, cin), **src("x"), **grad("g_q1", 0, 0), taps=Taps.POINT,
                                 fy=1, fx=1)))
    stages.append(matvec("e_in", [w1], **bwd, **src("g_q1"), **dst("e_in"), rows=H, cols=W, taps=Taps.POINT,
                         shift=shifts["g1t"]))
    # the outer products (no weights to lay out) straddled where :func:`straddles` says so, else
    # packed where :func:`packs` does
    def outer(f):
        f = {**f, "straddle": int(straddle_lanes and straddles(f, P, spikes_per_word))}
        return {**f, "pack": int(pack_lanes and not f["straddle"] and (packs(f, P, spikes_per_word) or straddle_lanes
                                                                        and packs_remainder(f, P, spikes_per_word)))}
    stages = [(n, outer(f)) if f["kind"] == StageKind.OUTER else (n, f) for n, f in stages]
    tensors, stages, words, bank_words = _place(tensors, stages, T, overlay, bank_depth)
    stages, wwords, streamed_w = _stream_weights(stages, blocks, weight_depth)
    stages, wg, entries, streamed_s = _stream_sums(stages, wg, entries, acc_depth)
    return BackwardTileProgram(T, tensors, wwords, stages, wg, buffer_words=words, bank_words=bank_words,
                               acc_entries=entries, streamed_weights=streamed_w, streamed_sums=streamed_s)


def _keep_or_stream(sizes: Mapping[str, int], depth: int | None) -> tuple[list[str], list[str]]:
    """Which blocks of a backward memory (``sizes``, in stage order) stay in it for the whole
    layer and which share one slot after them, the host refilling (stage weights) or reading
    (weight-gradient sums) the slot around the block's stage in every program: everything
    stays when it fits ``depth`` words; else the split that moves the fewest words per program,
    then the fewest blocks. Where no split fits (the largest block alone is too big) every
    block streams, so that the tile's need is the largest block's (``check_fits`` names it)."""
    names = list(sizes)
    if depth is None or sum(sizes.values()) <= depth:
        return names, []
    best: tuple | None = None
    for mask in range(1 << len(names)):
        keep = [n for i, n in enumerate(names) if mask >> i & 1]
        stream = [n for n in names if n not in keep]
        if not stream or sum(sizes[n] for n in keep) + max(sizes[n] for n in stream) > depth:
            continue
        key = (sum(sizes[n] for n in stream), len(stream))
        if best is None or key < best[0]:
            best = (key, keep, stream)
    return (best[1], best[2]) if best else ([], names)


def _stream_weights(stages: list, blocks: dict[int, list[int]], depth: int | None):
    """The stages' weight blocks placed in ``gweights`` (:func:`_keep_or_stream`): the stages
    with ``w_base`` moved, the words written once, the streamed blocks by stage."""
    used = {n: f["w_base"] for n, f in stages if f["kind"] == StageKind.MATVEC}
    keep, stream = _keep_or_stream({n: len(blocks[b]) for n, b in used.items()}, depth)
    if not stream:
        return stages, [w for b in sorted(blocks) for w in blocks[b]], {}
    words: list[int] = []
    base = {}
    for n in keep:
        base[n] = len(words)
        words += blocks[used[n]]
    slot = len(words)
    moved = [(n, {**f, "w_base": base.get(n, slot)} if n in used else f) for n, f in stages]
    return moved, words, {n: (slot, blocks[used[n]]) for n in stream}


def _stream_sums(stages: list, wg: dict[str, WeightGradSpec], entries: int, depth: int | None):
    """The outer-product stages' sums placed in ``wgrad`` (:func:`_keep_or_stream`): the stages
    with ``acc_base`` moved, the moved sums, the entries used, the streamed sums by stage."""
    of_stage = {n: next(k for k, w in wg.items() if w.base == f["acc_base"])
                for n, f in stages if f["kind"] == StageKind.OUTER}
    keep, stream = _keep_or_stream({w: wg[w].entries for w in of_stage.values()}, depth)
    if not stream:
        return stages, wg, entries, {}
    base, at = {}, 0
    for w in keep:
        base[w], at = at, at + wg[w].entries
    moved = {w: replace(spec, base=base.get(w, at)) for w, spec in wg.items()}
    entries = at + max(wg[w].entries for w in stream)
    stages = [(n, {**f, "acc_base": moved[of_stage[n]].base} if n in of_stage else f) for n, f in stages]
    return stages, moved, entries, {n: w for n, w in of_stage.items() if w in stream}


#: Tensors the host writes before the first stage and reads after the last.
_HOST_INPUTS, _HOST_OUTPUTS = ("x", "e", "g_extra"), ("e_in", "g_cur")

#: The gradient-buffer port each stage field's tensor goes through (gen/backward/datapath.py:
#: ``grad_a``/``grad_b`` read, ``grad_w``/``grad_w2`` write). Each bank of the buffer has one
#: read and one write port, so the two tensors a stage reads at once, and the two it writes,
#: live in different banks.
_PORT_OF = {StageKind.MATVEC: {"in_base": "read_a", "out_base": "write_a"},
            StageKind.OUTER: {"in_base": "read_a", "g_base": "read_b"},
            StageKind.LIF: {"in_base": "read_a", "g_base": "read_b", "out_base": "write_a", "cur_base": "write_b",
                            "carry_base": "carry"}}       # the carry steps use a port alone
_SAME_CYCLE = (("read_a", "read_b"), ("write_a", "write_b"))


def _stage_tensors(f: Mapping[str, int]) -> list[tuple[str, int]]:
    """The gradient-buffer tensors a stage reads or writes, as ``(field, base)``."""
    kind = StageKind(f["kind"])
    if kind == StageKind.MATVEC:
        return [("in_base", f["in_base"]), ("out_base", f["out_base"])]
    if kind == StageKind.OUTER:
        return [("in_base", f["in_base"]), ("g_base", f["g_base"])]
    used = [("in_base", f["in_base"]), ("out_base", f["out_base"]), ("cur_base", f["cur_base"])]
    carried = f.get("carry_in") or f.get("carry_out")
    return used + ([("g_base", f["g_base"])] if f["use_extra"] else []) + (
        [("carry_base", f["carry_base"])] if carried else [])


def bank_conflicts(stages: list, tensor_at) -> list[tuple[str, str]]:
    """The pairs of tensors one stage reads (or writes) in the same cycle; ``tensor_at(base)``
    names the tensor at a base."""
    pairs = []
    for _, f in stages:
        port = {_PORT_OF[StageKind(f["kind"])][name]: tensor_at(base) for name, base in _stage_tensors(f)}
        pairs += [(port[a], port[b]) for a, b in _SAME_CYCLE if a in port and b in port]
    return pairs


def _lifetimes(tensors: dict[str, TensorSpec], stages: list) -> dict[str, tuple[int, int]]:
    """A tensor lives from the stage that writes it (the host's inputs: before the first) to
    the last stage that reads it (the host's outputs: after the last)."""
    by_base = {t.base: name for name, t in tensors.items()}
    life = {name: [len(stages), -1] for name in tensors}
    for name in _HOST_INPUTS:
        if name in life:
            life[name][0] = -1
    for name in _HOST_OUTPUTS + (("carry",) if "carry" in life else ()):
        life[name][1] = len(stages)
    if "carry" in life:                 # the chunk before wrote it, the chunk after reads it
        life["carry"][0] = -1
    for i, (_, f) in enumerate(stages):
        for _, b in _stage_tensors(f):
            lo_hi = life[by_base[b]]
            lo_hi[0], lo_hi[1] = min(lo_hi[0], i), max(lo_hi[1], i)
    return {name: (lo, hi) for name, (lo, hi) in life.items()}


def _first_fit(names: list[str], sizes: Mapping[str, int], life) -> tuple[dict[str, int], int]:
    """Offsets of ``names`` in one bank: two share words only when their lifetimes (``life``;
    None: every tensor lives throughout) do not overlap. First fit in order of birth."""
    placed: list[tuple[int, int, int, int]] = []       # (start, end, first, last)
    offsets = {}
    for name in names:
        size, (first, last) = sizes[name], (life[name] if life else (0, 0))
        busy = sorted((a, b) for a, b, f0, l0 in placed if f0 <= last and first <= l0)
        start = 0
        for a, b in busy:
            if start + size <= a:
                break
            start = max(start, b)
        placed.append((start, start + size, first, last))
        offsets[name] = start
    return offsets, max((b for _, b, _, _ in placed), default=0)


def _two_colourings(names: list[str], pairs: list[tuple[str, str]]) -> list[dict[str, int]]:
    """Every assignment of ``names`` to two banks that separates each pair, up to swapping the
    banks of a whole connected group (each group is two-coloured once, then flipped or not)."""
    adjacent: dict[str, set[str]] = {n: set() for n in names}
    for a, b in pairs:
        adjacent[a].add(b)
        adjacent[b].add(a)
    colour: dict[str, int] = {}
    groups: list[list[str]] = []
    for seed in names:
        if seed in colour:
            continue
        colour[seed], group, todo = 0, [], [seed]
        while todo:
            n = todo.pop()
            group.append(n)
            for other in adjacent[n]:
                if other not in colour:
                    colour[other] = 1 - colour[n]
                    todo.append(other)
                elif colour[other] == colour[n]:
                    raise ValueError(f"gradient buffer: no two-bank placement separates {n} and {other}")
        groups.append(group)
    out = []
    for flips in range(1 << (len(groups) - 1)):       # the first group stays: swapping all is the same
        c = dict(colour)
        for g, group in enumerate(groups[1:]):
            if flips >> g & 1:
                c.update({n: 1 - colour[n] for n in group})
        out.append(c)
    return out


def _place(tensors: dict[str, TensorSpec], stages: list, T: int, overlay: bool,
           bank_depth: int | None) -> tuple[dict, list, int, tuple[int, int]]:
    """Place the tensors in the gradient buffer's two banks (``config.GBUF_BANKS``): the
    tensors a stage uses in the same cycle in different banks (:func:`bank_conflicts`), and,
    with ``overlay``, two tensors of one bank in the same words only when their lifetimes do
    not overlap. Every tensor a stage reads was written whole by an earlier stage or the host,
    so the values never depend on what a word held before; a stage's input and output are both
    alive during it, so they never share. The tiles are larger than with every tensor at once
    (docs/architecture.md, "Backward datapath"). Of the placements that separate the pairs,
    the one whose fuller bank is smallest. Bank 1 starts at word ``bank_depth`` (None: right
    after bank 0's words). Returns the moved tensors, the stages with their bases moved, the
    words spanned and each bank's words."""
    names = list(tensors)
    life = _lifetimes(tensors, stages) if overlay else None
    if life:
        names.sort(key=lambda n: (life[n][0], list(tensors).index(n)))
    sizes = {n: tensors[n].words(T) for n in names}
    by_base = {t.base: name for name, t in tensors.items()}
    best = None
    for colour in _two_colourings(names, bank_conflicts(stages, by_base.__getitem__)):
        banks = [_first_fit([n for n in names if colour[n] == b], sizes, life) for b in (0, 1)]
        key = (max(w for _, w in banks), sum(w for _, w in banks))
        if best is None or key < best[0]:
            best = (key, colour, banks)
    _, colour, banks = best
    start1 = banks[0][1] if bank_depth is None else bank_depth
    base = {n: banks[colour[n]][0][n] + (start1 if colour[n] else 0) for n in names}
    moved = {n: replace(t, base=base[n]) for n, t in tensors.items()}
    new_base = {t.base: base[name] for name, t in tensors.items()}
    stages = [(n, {**f, **{k: new_base[b] for k, b in _stage_tensors(f)}}) for n, f in stages]
    span = max((base[n] + sizes[n] for n in names), default=0)
    return moved, stages, span, (banks[0][1], banks[1][1])
