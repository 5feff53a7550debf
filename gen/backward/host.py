"""The host's side of a backward tile (docs/host_interface.md, "Backward stages"): what it
writes (the tile's tensors, stage weights, trace, folded-BN words), the stage registers of
each stage and its ``start``, and what it reads back (the input gradient, the current's
gradient, the weight-gradient sums, the counters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..config import HardwareConfig
from ..descriptor import Pass
from ..driver import affine_words
from ..hostmap import HostMap, host_map, region_reads, region_writes
from .cyclemodel import check_straddle
from .tiling import TileRun, layer_runs, ring_skips, run_stages, skipped_ring_words
from .tile_program import (BackwardTileProgram, gbuf_need, pack_tensor, pack_trace, plan_backward_tile, unpack_tensor,
                           unpack_wgrad)
from ttsnn.sw.cli_util import UserError

__all__ = ["BackwardTileResult", "BackwardHostProgram", "backward_program", "backward_traffic", "check_fits",
           "run_backward_tile",
           "BackwardDoesNotFit", "BackwardTile", "backward_layer_programs", "combine_tiles"]


class BackwardDoesNotFit(UserError):
    """A backward tile needs more of a backward memory than the configuration has; ``region``
    names it (``gbuf``, ``gweights``, ``trace`` or ``wgrad``), ``need`` its words."""

    def __init__(self, message: str, region: str = "", need: int = 0):
        super().__init__(message)
        self.region, self.need = region, need


@dataclass
class BackwardTileResult:
    """What a backward tile returns: ``e_in [T, Cin, H, W]``, ``g_current [T, Cout, Ho, Wo]``,
    ``dw`` (``w1 [r, Cin]``, ``w2``/``w3 [r, r, 3]``, ``w4 [Cout, r]``: the tile's sums) and
    ``counters`` (the forward bank's ``cycles`` and every backward counter). ``dw`` holds the
    sums the program read: all of them after a layer's last program, only the streamed ones
    (``BackwardTileProgram.streamed_sums``) after the others, None where it read none."""
    e_in: np.ndarray
    g_current: np.ndarray
    dw: dict[str, np.ndarray] | None
    counters: dict[str, int]


@dataclass
class BackwardHostProgram:
    """Host traffic of one backward tile: ``setup`` writes, then per stage its register writes
    and ``start`` (wait for ``done`` before the next), then ``reads``; :meth:`decode` takes the
    values read. ``words_in``/``words_out``: buffer-region words moved (DRAM traffic)."""
    plan: BackwardTileProgram
    setup: list[tuple[int, int]]
    stages: list[list[tuple[int, int]]]
    start: tuple[int, int]
    status: int
    reads: list[int]
    words_in: int
    words_out: int
    _decode: Callable[[list[int]], BackwardTileResult] = field(repr=False)
    #: region -> (its words the host writes, its words the host reads); a region word is
    #: ``subwords`` host words
    region_words: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: per stage, the addresses the host reads once the stage is done (the streamed sums)
    stage_reads: list[list[int]] = field(default_factory=list)

    def decode(self, values: Sequence[int]) -> BackwardTileResult:
        if len(values) != len(self.all_reads):
            raise ValueError(f"expected {len(self.all_reads)} read values, got {len(values)}")
        return self._decode([int(v) for v in values])

    @property
    def all_reads(self) -> list[int]:
        """Every address read, in the order of the values :func:`run_backward_tile` returns: the
        stages' reads, then the final ones."""
        return [a for r in self.stage_reads for a in r] + list(self.reads)


def check_fits(cfg: HardwareConfig, plan: BackwardTileProgram, trace_words: int) -> None:
    """Raise :class:`BackwardDoesNotFit` naming the first backward memory ``plan`` overflows."""
    regions = cfg.backward_regions
    gbuf = gbuf_need(plan, regions["gbuf"])
    for name, (need, have) in (("gbuf", gbuf), ("gweights", (plan.weight_span, regions["gweights"].depth)),
                               ("trace", (trace_words, regions["trace"].depth)),
                               ("wgrad", (plan.acc_entries, regions["wgrad"].depth))):
        if need > have:
            banks = f" (two banks of {need // 2})" if name == "gbuf" else ""
            raise BackwardDoesNotFit(
                f"backward tile: region {name!r} needs {need} words{banks}, the configuration has "
                f"{have} ([gradients] of {cfg.name}); use a smaller tile or larger "
                f"backward memories", name, need)


def backward_traffic(cfg: HardwareConfig, plan: BackwardTileProgram, timesteps: int,
                     hmap: HostMap | None = None, first: bool = True, last: bool = True,
                     zero_words: int = 0) -> tuple[dict[str, tuple[int, int]], int, int]:
    """What the host moves for one backward tile, from its plan alone: per memory the words it
    writes and reads (``x``, ``e`` and ``g_extra`` into ``gbuf``; stage weights; the trace,
    one word per ``e`` word; the folded-BN words; ``e_in`` and ``g_cur`` out of ``gbuf``; the
    weight-gradient sums), and the host words in and out (a region word is ``subwords`` host
    words). ``first``/``last`` as in :func:`backward_program` (a later tile of a layer writes no
    stage weights or folded-BN words; only the last reads the sums). :func:`backward_program`
    moves exactly these (tests/gen/test_top_backward.py). Streamed stage weights and sums
    (:func:`gen.backward.tile_program._keep_or_stream`) move in every program; ``zero_words``:
    the ``gbuf`` words of the ring pixels the program skips, written as zeros
    (:func:`gen.backward.tiling.skipped_ring_words`)."""
    hmap = hmap or host_map(cfg)
    T, t = timesteps, plan.tensors
    inputs = [n for n in ("x", "e", "g_extra") if n in t]
    streamed_w = sum(len(w) for _, w in plan.streamed_weights.values())
    streamed_s = sum(plan.wgrads[w].entries for w in plan.streamed_sums.values())
    resident_s = sum(spec.entries for n, spec in plan.wgrads.items() if n not in plan.streamed_sums.values())
    regions = {"gbuf": (sum(t[n].words(T) for n in inputs) + zero_words, t["e_in"].words(T) + t["g_cur"].words(T)),
               "gweights": ((len(plan.weight_words) if first else 0) + streamed_w, 0),
               "trace": (t["e"].words(T), 0),
               "affine": (-(-t["e"].channels // cfg.lanes) if first else 0, 0),
               "wgrad": (0, (resident_s if last else 0) + streamed_s)}
    sub = {n: hmap.region(n).subwords for n in regions}
    return (regions, sum(w * sub[n] for n, (w, _) in regions.items()),
            sum(r * sub[n] for n, (_, r) in regions.items()))


def dither_fields(qlayer, T: int, origin: tuple[int, int],
                  layer_hw: tuple[int, int], sample: int, seed: int, t0: int = 0,
                  skips: Mapping[str, tuple[int, int, int, int]] | None = None) -> dict[str, dict[str, int]]:
    """The stochastic rounding's stage fields (``idx_*``, ``key*``) of the stages that round,
    by stage name: each stage's output block in layer coordinates (docs/numerics.md: the LIF
    stage over the pooled map with its ring, G4^T over the pre-pool pixels with their ring,
    STT's G3^T with the ring rows, G2^T/G3^T and G1^T over the tile's pixels), sample
    ``sample``, the keys ``lowbias32(16 * seed + stage)``. ``origin``: the layer row and
    column of the tile's first pre-pool pixel; ``T`` the layer's timesteps, ``t0`` the first
    of the program's chunk; ``skips``: the ring rows and columns each ring stage skips
    (:func:`gen.backward.tiling.ring_skips`: its block starts a row or a column later)."""
    import torch

    from ttsnn.sw.golden_backward import STAGE_IDS, lowbias32

    def key(stage: str) -> int:
        return int(lowbias32(torch.tensor(16 * seed + STAGE_IDS[stage])).item())

    f = 2 if qlayer.pool else 1
    y0, x0 = origin

    def block(channels: int, hw: tuple[int, int], oy: int, ox: int) -> dict[str, int]:
        H, W = hw
        base = (((sample * T + t0) * channels) * H + oy) * W + ox
        return {"idx_base": base % (1 << 32), "idx_t": channels * H * W % (1 << 32), "idx_c": H * W % (1 << 32),
                "idx_y": W % (1 << 32)}

    r, cin, cout = qlayer.rank, qlayer.in_channels, qlayer.out_channels
    pooled = (layer_hw[0] // f, layer_hw[1] // f)
    # the first row and column of each ring stage's block (a skipped ring row or column moves it)
    sy, sx = (lambda n: (skips or {}).get(n, (0, 0, 0, 0))[0]), (lambda n: (skips or {}).get(n, (0, 0, 0, 0))[2])
    return {
        "lif": {**block(cout, pooled, y0 // f - 1, x0 // f - 1), "key": key("height"), "key_leak": key("leak"),
                "key_affine": key("affine")},
        "g_q23": {**block(r, layer_hw, y0 - 1 + sy("g_q23"), x0 - 1 + sx("g_q23")), "key": key("g4t")},
        "g_q2": {**block(r, layer_hw, y0 - 1 + sy("g_q2"), x0), "key": key("g3t")},
        "g_q1": {**block(r, layer_hw, y0, x0), "key": key("g23t")},
        "e_in": {**block(cin, layer_hw, y0, x0), "key": key("g1t")},
    }


def backward_program(cfg: HardwareConfig, qlayer, x: np.ndarray, e: np.ndarray, spikes: np.ndarray,
                     window: np.ndarray, argmax: np.ndarray | None, shifts: Mapping[str, int],
                     g_extra: np.ndarray | None = None, height_mul: int = 1, height_shift: int = 0,
                     hmap: HostMap | None = None, origin: tuple[int, int] = (0, 0),
                     layer_hw: tuple[int, int] | None = None, sample: int = 0,
                     seed: int = 0, first: bool = True, last: bool = True, t0: int = 0,
                     layer_timesteps: int | None = None, carry_in: bool = False,
                     carry_out: bool = False) -> BackwardHostProgram:
    """The host program of one backward tile of ``qlayer``: ``x [T, Cin, H + 2, W + 2]`` the
    forward window of input spikes, ``e``/``g_extra [T, Cout, Ho + 2, Wo + 2]`` the gradients
    over the output pixels and their ring, ``spikes``/``window``/``argmax`` the forward trace
    over the same ring, ``shifts`` the backward shifts (docs/numerics.md). With stochastic
    rounding, ``origin`` (the layer row and column of the tile's first pre-pool pixel),
    ``layer_hw`` (the layer's pre-pool map; default the tile's), ``sample`` and ``seed`` place
    the dither (:func:`dither_fields`). A layer's tiles share their weights and accumulate
    their weight-gradient sums in the RTL: ``first`` False (a later tile) writes no stage
    weights or folded-BN words and adds to the sums the earlier tiles left (``acc_clear = 0``);
    ``last`` False reads no sums (:meth:`BackwardHostProgram.decode` gives ``dw = None``).
    A tile whose timesteps run in chunks (:mod:`gen.backward.tiling`): the arrays hold the
    chunk's timesteps ``t0 ..`` of the layer's ``layer_timesteps``; ``carry_in``/``carry_out``
    as the stage fields (the chunk after a later one / before an earlier one)."""
    hmap = hmap or host_map(cfg)
    P, gb = cfg.lanes, cfg.gradients.width
    T, _, hw, ww = x.shape
    H, W = hw - 2, ww - 2
    layer_T = layer_timesteps or T
    if t0 < 0 or t0 + T > layer_T:
        raise UserError(f"timesteps {t0}..{t0 + T - 1} are not in the layer's {layer_T}")
    full = list(qlayer.full_timesteps(layer_T))[t0:t0 + T]
    run = TileRun(origin[0], origin[1], H, W, t0, T, first, last, carry_in, carry_out)
    layer = tuple(layer_hw) if layer_hw else None     # a tile alone: its ring may hold data
    plan = plan_backward_tile(qlayer, T, H, W, P, cfg.widths.weight, shifts, full, height_mul,
                              height_shift, use_extra=g_extra is not None,
                              bank_depth=cfg.backward_regions["gbuf"].bank_depth, carry=T < layer_T,
                              spikes_per_word=cfg.gbuf_spikes_per_word,
                              weight_depth=cfg.backward_regions["gweights"].depth,
                              acc_depth=cfg.backward_regions["wgrad"].depth,
                              pack_lanes=cfg.gradients.rounding != "stochastic",
                              straddle_lanes=cfg.gradients.rounding != "stochastic")
    for name, f in plan.stages:                 # what the core-stage engine does not build, refused
        try:
            check_straddle(f, P, cfg.gradients.rounding)
        except ValueError as err:
            raise UserError(f"stage {name}: {err}") from None
    for name, values in (("e", e), ("g_extra", g_extra)):
        spec = plan.tensors.get(name)
        if values is not None and np.shape(values) != (T, spec.channels, spec.rows, spec.cols):
            raise UserError(f"{name}: expected [T={T}, {spec.channels}, {spec.rows}, {spec.cols}] "
                            f"(output pixels plus the ring), got {list(np.shape(values))}")
    trace = pack_trace(spikes, window, argmax, P)
    check_fits(cfg, plan, len(trace))
    setup = [(hmap.register("ctrl").address, 2), (hmap.register("pass").address, int(Pass.BACKWARD))]
    inputs = [("x", x), ("e", e)] + ([("g_extra", g_extra)] if g_extra is not None else [])
    for name, values in inputs:
        spec = plan.tensors[name]
        setup += region_writes(hmap, "gbuf", pack_tensor(np.asarray(values), spec.lanes, 1 if spec.spikes else gb),
                               spec.base)
    if first:
        setup += region_writes(hmap, "gweights", plan.weight_words)
    setup += region_writes(hmap, "trace", trace)
    if first:
        setup += region_writes(hmap, "affine", affine_words(np.asarray(qlayer.scale), np.asarray(qlayer.bias), P,
                                                           cfg.widths.affine_scale, cfg.widths.membrane))
    # a later program adds to the sums of the layer's earlier ones; a chunk carries the LIF gradient
    zero_words = skipped_ring_words(plan, run, layer)
    skips = ring_skips(plan, run, layer)
    plan.stages = run_stages(plan, run, layer)
    words_in = len(setup) - 2
    if cfg.gradients.rounding == "stochastic":
        extra = dither_fields(qlayer, layer_T, origin, layer_hw or (H, W), sample, seed, t0, skips)
        plan.stages = [(n, {**f, **extra.get(n, {})}) for n, f in plan.stages]
    # a streamed stage's weights are written before it, its sums read after it; the ring pixels
    # it skips on the layer's border are written as zeros
    stages, stage_reads = [], []
    for name, fields in plan.stages:
        at, words = plan.streamed_weights.get(name, (0, []))
        zeros = [w for base, n in zero_words.get(name, []) for w in region_writes(hmap, "gbuf", [0] * n, base)]
        stages.append(zeros + region_writes(hmap, "gweights", words, at)
                      + [(hmap.register(f"bw_{f}").address, v) for f, v in sorted(fields.items())])
        sums = plan.wgrads.get(plan.streamed_sums.get(name, ""))
        stage_reads.append(region_reads(hmap, "wgrad", sums.entries, sums.base) if sums else [])
    words_in += sum(len(w) for w in stages) - sum(len(f) for _, f in plan.stages)
    outs = [(name, plan.tensors[name]) for name in ("e_in", "g_cur")]
    resident = [(n, spec) for n, spec in plan.wgrads.items() if n not in plan.streamed_sums.values()]
    reads: list[int] = []
    for _, spec in outs:
        reads += region_reads(hmap, "gbuf", spec.words(T), spec.base)
    if last:
        for _, spec in resident:
            reads += region_reads(hmap, "wgrad", spec.entries, spec.base)
    words_out = len(reads) + sum(map(len, stage_reads))
    counters = [hmap.counter("cycles")] + list(hmap.backward_counters)
    for c in counters:
        reads += [c.address, c.address + 1]
    hb = cfg.widths.host_data
    sub = {n: hmap.region(n).subwords for n in ("gbuf", "wgrad")}

    def words(values, n, k):
        return [sum(values[i * k + j] << (j * hb) for j in range(k)) for i in range(n)]

    def sums_of(values: list[int], pos: int, spec) -> tuple[np.ndarray, int]:
        n = spec.entries * sub["wgrad"]
        entries = words(values[pos:pos + n], spec.entries, sub["wgrad"])
        return unpack_wgrad(lambda a: entries[a - spec.base], spec, cfg.gradients.wgrad_tile), pos + n

    def decode(values: list[int]) -> BackwardTileResult:
        pos, tensors, got = 0, {}, {}
        for name, _ in plan.stages:
            if name in plan.streamed_sums:
                w = plan.streamed_sums[name]
                got[w], pos = sums_of(values, pos, plan.wgrads[w])
        for name, spec in outs:
            n = spec.words(T)
            tensors[name] = unpack_tensor(words(values[pos:], n, sub["gbuf"]),
                                          (T, spec.channels, spec.rows, spec.cols), P, gb)
            pos += n * sub["gbuf"]
        if last:
            for n, spec in resident:
                got[n], pos = sums_of(values, pos, spec)
        dw = _named_sums(got) if got else None
        cnt = {c.name: values[pos + 2 * i] | (values[pos + 2 * i + 1] << hb) for i, c in enumerate(counters)}
        return BackwardTileResult(tensors["e_in"], tensors["g_cur"], dw, cnt)

    zeros = sum(n for runs in zero_words.values() for _, n in runs)
    region_words = backward_traffic(cfg, plan, T, hmap, first, last, zeros)[0]
    return BackwardHostProgram(plan, setup, stages, (hmap.register("ctrl").address, 1),
                               hmap.register("status").address, reads, words_in, words_out, decode,
                               region_words, stage_reads)


def _named_sums(got: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The accumulator's sums (``[out, inner, taps]`` per ``WeightGradSpec``) as the cores'
    gradients: ``w4 [Cout, r]``, ``w1 [r, Cin]``, ``w2``/``w3 [r, r, 3]`` (PTT/HTT's ``w23``
    holds both)."""
    dw = {n: got[n][..., 0] for n in ("w4", "w1") if n in got}
    if "w23" in got:
        dw.update(w2=got["w23"][..., :3], w3=got["w23"][..., 3:])
    dw.update({n: got[n] for n in ("w2", "w3") if n in got})
    return dw


async def run_backward_tile(bus: Any, prog: BackwardHostProgram, max_polls: int = 10_000_000) -> list[int]:
    """Run ``prog`` on ``bus`` (a :class:`gen.driver.HostBus`): set-up, then each stage (its
    registers, ``start``, poll ``status`` until done), then the reads. Returns the values
    :meth:`BackwardHostProgram.decode` takes (:attr:`BackwardHostProgram.all_reads`'s)."""
    for a, v in prog.setup:
        await bus.write(a, v)
    values: list[int] = []
    stage_reads = list(getattr(prog, "stage_reads", None) or [[] for _ in prog.stages])
    for writes, after in zip(prog.stages, stage_reads):
        for a, v in writes:
            await bus.write(a, v)
        await bus.write(*prog.start)
        for _ in range(max_polls):
            await bus.wait_event()                   # done changed (reading status lowers event)
            status = (await bus.read([prog.status]))[0]
            if status == 0b10:                       # done, not busy
                break
        else:
            raise TimeoutError(f"a backward stage did not finish in {max_polls} status polls")
        if after:
            values += await bus.read(after)
    return values + await bus.read(prog.reads)


@dataclass
class BackwardTile:
    """One program of a layer's backward pass: pre-pool rows ``row0 .. row0 + height - 1``,
    columns ``col0 .. col0 + width - 1``, timesteps ``t0 .. t0 + timesteps - 1``."""
    row0: int
    col0: int
    height: int
    width: int
    program: BackwardHostProgram
    t0: int = 0
    timesteps: int | None = None


def backward_layer_programs(cfg: HardwareConfig, qlayer, x: np.ndarray, e: np.ndarray, spikes: np.ndarray,
                            window: np.ndarray, argmax: np.ndarray | None, shifts: Mapping[str, int],
                            g_extra: np.ndarray | None = None, height_mul: int = 1, height_shift: int = 0,
                            sample: int = 0, seed: int = 0,
                            tile: tuple[int, int, int] | None = None) -> list[BackwardTile]:
    """A whole layer's backward pass as the largest tiles that fit the backward memories
    (docs/architecture.md, "Backward datapath"; the same choice as ``python -m gen.perf
    --backward``), each tile's timesteps in chunks where that takes fewer cycles
    (:mod:`gen.backward.tiling`): ``x [T, Cin, H, W]`` the layer's input spikes,
    ``e``/``g_extra``/``spikes``/``window``/``argmax`` ``[T, C, Ho, Wo]`` over its output
    pixels. Each tile reads its one-pixel halo ring (zero outside the layer, the neighbour's
    values inside), so the tiles' results are the layer's exactly: ``e_in`` and ``g_current``
    blocks side by side, weight-gradient sums accumulated in the RTL over the programs, which
    therefore run in order on one accelerator (the first writes the stage weights, the last
    reads the sums, a chunk leaves the LIF gradient to the next in the gradient buffer;
    :func:`combine_tiles`). ``sample``/``seed``: the stochastic rounding's sample index and
    seed (each tile's dither is placed at its layer coordinates). ``tile``: ``(h, w, k)`` instead
    of the planner's choice (a test that needs several tiles of a layer one tile would cover)."""
    from .planner import backward_tile_shape

    hmap = host_map(cfg)
    T, _, H, W = x.shape
    s = 2 if qlayer.pool else 1
    # the largest tile whose tensors fit; when even the smallest does not, or the weights do not,
    # backward_program names the memory that is too small (BackwardDoesNotFit)
    h, w, k = tile or backward_tile_shape(cfg, qlayer, T, H, W, qlayer.full_timesteps(T), g_extra is not None)[:3]
    pad = lambda a: None if a is None else np.pad(np.asarray(a), ((0, 0), (0, 0), (1, 1), (1, 1)))  # noqa: E731
    xp, ep, gp = pad(x), pad(e), pad(g_extra)
    sp, wp, ap = pad(spikes), pad(window), pad(argmax)

    def program(run) -> BackwardHostProgram:
        r0, c0, th, tw, t0 = run.row0, run.col0, run.height, run.width, run.t0
        o0, p0, ho, wo = r0 // s, c0 // s, th // s, tw // s
        cut = lambda a: None if a is None else a[t0:t0 + k, :, o0:o0 + ho + 2, p0:p0 + wo + 2]  # noqa: E731
        return backward_program(cfg, qlayer, xp[t0:t0 + k, :, r0:r0 + th + 2, c0:c0 + tw + 2], cut(ep), cut(sp),
                                cut(wp), cut(ap), shifts, cut(gp), height_mul, height_shift, hmap,
                                origin=(r0, c0), layer_hw=(H, W), sample=sample, seed=seed, first=run.first,
                                last=run.last, t0=t0, layer_timesteps=T, carry_in=run.carry_in,
                                carry_out=run.carry_out)

    return [BackwardTile(run.row0, run.col0, run.height, run.width, program(run), run.t0, run.timesteps)
            for run in layer_runs(H, W, T, h, w, k)]


def combine_tiles(tiles: list[BackwardTile], results: list[BackwardTileResult], wgrad_bits: int,
                  pool: bool = False) -> BackwardTileResult:
    """The layer's result from its tiles' (``e_in``/``g_current`` blocks placed at each tile's
    position and chunk of timesteps; the sums of the tiles that read them added and wrapped to the tile accumulators'
    width: the RTL's own accumulation over a layer's tiles wraps the same way; counters added)."""
    s = 2 if pool else 1
    H = max(t.row0 + t.height for t in tiles)
    W = max(t.col0 + t.width for t in tiles)
    T = max(t.t0 + len(r.e_in) for t, r in zip(tiles, results))
    e_in = np.zeros((T,) + results[0].e_in.shape[1:2] + (H, W), np.int64)
    g_cur = np.zeros((T,) + results[0].g_current.shape[1:2] + (H // s, W // s), np.int64)
    for t, r in zip(tiles, results):
        ts = slice(t.t0, t.t0 + len(r.e_in))
        e_in[ts, :, t.row0:t.row0 + t.height, t.col0:t.col0 + t.width] = r.e_in
        g_cur[ts, :, t.row0 // s:(t.row0 + t.height) // s, t.col0 // s:(t.col0 + t.width) // s] = r.g_current
    half = 1 << (wgrad_bits - 1)
    sums = [r.dw for r in results if r.dw is not None]   # the last program's, and streamed ones
    names = dict.fromkeys(n for d in sums for n in d)
    dw = {n: np.vectorize(lambda v: ((int(v) + half) % (2 * half)) - half, otypes=[np.int64])(
        sum(d[n].astype(object) for d in sums if n in d)) for n in names}
    counters = {k: sum(r.counters[k] for r in results) for k in results[0].counters}
    return BackwardTileResult(e_in, g_cur, dw, counters)
