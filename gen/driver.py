"""The software driver of the accelerator: tiling, host-interface encoding, the streaming host
protocol and decoding.

Pure Python + numpy (no Amaranth), shared by the amaranth.sim tests, the cocotb
co-simulation (cosim/) and the energy model (model/). It

* plans a layer as tiles (:func:`plan_layer`): column strips of the whole height (their
  windows carry a one-pixel halo, zero outside the layer), output-channel groups when the
  output rows or the cores do not fit otherwise, and the lane packing ``Pk x Px`` of
  clusters 2/3 that wastes fewest PE slots;
* turns one tile into host-interface traffic (:meth:`Driver.program`): the set-up writes
  (descriptor, weights when they change), the start write, and the rows streamed while the
  tile runs: input spike rows and residual rows in, output rows (membranes, spikes) out;
* runs that traffic on any bus (:func:`run_tile`, an ``async`` function used by the
  amaranth.sim tests and the cocotb testbench alike) with the flow control of
  docs/host_interface.md (ring slots, progress registers, the ``event`` line);
* decodes what was read (:meth:`TileProgram.decode`) and stitches tiles back into the
  layer's outputs (:class:`LayerOutputs`).

Every host word is counted (``TileProgram.words_in/words_out``): it is the DRAM traffic.
Addresses come from :func:`gen.hostmap.host_map` (the same map ``python -m gen`` writes to
the manifest), never from constants here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .config import (LINE1_SLOTS_PER_T, LINE4_SLOTS_PER_T, ROW2_SLOTS, HardwareConfig, ceil_div,
                     buffer_need_bytes, config_from_dict, load_config, log2)
from .descriptor import Pass
from .geometry import TAP_ORDER, TileGeometry
from .host_program import (STREAMING_REGISTERS, HostBus, TileProgram, TileResult, input_pixel_order,  # noqa: F401
                           input_row_order, last_row_groups, output_row_order, ring_rows, run_tile,
                           whole_rings, write_all)
from .hostmap import HostMap, descriptor_word_values, host_map, region_reads, region_writes
from .zero_skip import (DEFAULT_SPIKE_DENSITY, expected_row_lens, w1_chunk_words, w1_depth, w1_row_chunks,
                        w1_words_zero_skip)
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["Tile", "TilePlan", "TileProgram", "TileResult", "LayerOutputs", "Driver",
           "plan_layer", "load_manifest_config", "tile_fit", "TileGeometry", "run_tile",
           "HostBus", "TAP_ORDER", "input_row_order", "output_row_order", "CoresDoNotFit",
           "large_weights_config", "plan_layer_any_weights", "affine_words", "streamed_cores",
           "reference_window", "early_start_shape"]

MODE_CODES = {"stt": 0, "ptt": 1, "htt": 2}


@dataclass(frozen=True)
class Tile:
    """One pass of the datapath.

    ``row0, col0, height, width`` select output pixels of the layer at input resolution
    (before pooling); the input window is rows ``row0-1 .. row0+height`` and columns
    ``col0-1 .. col0+width`` of the layer (zero outside). ``out0, out_channels`` select the
    output-channel group. ``weights_change`` is True when the tile must (re)load the cores.
    ``pack`` is ``log2 Pk`` of clusters 2/3 (``Pk`` rank channels x ``P/Pk`` columns);
    ``order`` the row order (0: row outer, 1: timestep outer; docs/architecture.md).
    ``w4_ring``: 0 when G4 is resident in region ``w4``; ``n > 0`` when G4 is streamed through
    a ring of ``n`` chunks (one output group's ``r`` words each, per output row; the planner
    streams it only when the tile's whole G4 does not fit the region). ``w23_ring``: likewise
    for G2 and G3 (chunks of ``NS`` words, one output rank group of a MAC row each);
    ``w1_ring`` for G1 (chunks of :func:`gen.zero_skip.w1_chunk_words`: the zero-skipping
    cluster 1's ``ceil(Cin/Px)`` words, one rank group of a window row each; the dense one's
    ``ceil(Cin/P)`` words, one rank of a window row each). ``early_start``: every core goes
    through a ring after the start; a core that fits has a ring of one pass's chunks (one
    window row's / MAC row's / output row's), which holds it whole, so the host writes it
    once and declares the later passes' chunks present (:func:`gen.host_program.whole_rings`,
    :func:`gen.host_program.run_tile`); a streamed core keeps its ring. The engines start
    after the first G1 chunk and input row instead of after every core
    (:func:`early_start_shape`; the planner takes it where the host-rate model says it is
    faster).
    """
    index: int
    row0: int
    col0: int
    height: int
    width: int
    out0: int
    out_channels: int
    in_channels: int
    rank: int
    timesteps: int
    pool: bool
    weights_change: bool
    zero_halo: tuple[bool, bool, bool, bool] = (False, False, False, False)
    pack: int = 0
    order: int = 0
    w4_ring: int = 0
    w23_ring: int = 0
    w1_ring: int = 0
    early_start: bool = False

    @property
    def zero_halo_bits(self) -> int:
        """Descriptor field ``zero_halo``: bit 0 top, 1 bottom, 2 left, 3 right edge of the
        window lies outside the layer."""
        return sum(1 << i for i, z in enumerate(self.zero_halo) if z)

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.height + 2, self.width + 2

    @property
    def out_shape(self) -> tuple[int, int]:
        """(Ho, Wo): output pixels after pooling."""
        return (self.height // 2, self.width // 2) if self.pool else (self.height, self.width)


@dataclass(frozen=True)
class TilePlan:
    """All tiles of one layer, in execution order (output-channel group outer, strips)."""
    tiles: tuple[Tile, ...]
    timesteps: int
    in_channels: int
    out_channels: int
    rank: int
    height: int
    width: int
    pool: bool
    tile_height: int
    tile_width: int
    tile_out_channels: int
    pack: int
    order: int

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)


def tile_fit(cfg: HardwareConfig, timesteps: int, in_channels: int, rank: int, out_channels: int,
             height: int, width: int, pool: bool, zero_halo: Sequence[bool], pack: int,
             mode: str = "ptt", order: int = 0, w4_ring: int = 0, w23_ring: int = 0,
             w1_ring: int = 0) -> str | None:
    """None when the tile fits ``cfg``'s regions and limits, else the reason it does not
    (memoised per configuration object: the planner asks about the same shapes many times).
    ``w4_ring > 0``: G4 streamed through a ring of that many chunks of ``rank`` words;
    ``w23_ring > 0``: G2 and G3 through rings of that many chunks of ``NS`` words (then the
    rank may exceed ``limits.max_rank``, which sizes the resident G2/G3, up to
    :func:`streamed_rank_limit`); ``w1_ring > 0``: G1 through a ring of that many chunks of
    :func:`gen.zero_skip.w1_chunk_words` words."""
    key = ("tile_fit", timesteps, in_channels, rank, out_channels, height, width, bool(pool),
           tuple(bool(z) for z in zero_halo), pack, mode, order, w4_ring, w23_ring, w1_ring)
    memo = cfg.memo
    if key not in memo:
        memo[key] = _tile_fit(cfg, timesteps, in_channels, rank, out_channels, height, width,
                              pool, zero_halo, pack, mode, order, w4_ring, w23_ring, w1_ring)
    return memo[key]


def streamed_rank_limit(cfg: HardwareConfig) -> int:
    """The largest rank a tile with streamed G2/G3 may have: ``3 x max(max_in_channels,
    max_out_channels)`` (the configuration's own bound on ``limits.max_rank``)."""
    return 3 * max(cfg.limits.max_in_channels, cfg.limits.max_out_channels)


def w23_ring_chunks(cfg: HardwareConfig, ns: int) -> int:
    """Chunks of streamed G2/G3 rings: as many ``ns``-word chunks as region ``w2`` holds."""
    return min(cfg.regions["w2"].depth // max(ns, 1), (1 << 16) - 1)


def w1_ring_chunks(cfg: HardwareConfig, in_channels: int, pack: int) -> int:
    """Chunks of a streamed G1's ring: as many chunks as region ``w1`` holds (0 when not even
    one fits; at most the descriptor field's range)."""
    return min(cfg.regions["w1"].depth // max(w1_chunk_words(cfg, in_channels, pack), 1), (1 << 16) - 1)


def w4_ring_chunks(cfg: HardwareConfig, rank: int) -> int:
    """Chunks of a streamed G4's ring: as many ``rank``-word chunks as region ``w4`` holds
    (0 when not even one fits; at most the descriptor field's range)."""
    return min(cfg.regions["w4"].depth // max(rank, 1), (1 << 16) - 1)


def _tile_fit(cfg: HardwareConfig, timesteps: int, in_channels: int, rank: int, out_channels: int,
              height: int, width: int, pool: bool, zero_halo: Sequence[bool], pack: int,
              mode: str, order: int, w4_ring: int = 0, w23_ring: int = 0, w1_ring: int = 0) -> str | None:
    lim, reg = cfg.limits, cfg.regions
    if not 0 <= pack <= log2(cfg.lanes):
        return f"pack {pack} outside 0..{log2(cfg.lanes)}"
    if order not in (0, 1):
        return f"order {order} is not 0 (row outer) or 1 (timestep outer)"
    g = TileGeometry.of(cfg, in_channels, rank, out_channels, height, width, pool, zero_halo, pack, mode)
    back = g.lif_read_back_rows(order)
    checks = [
        ("limits.max_tile_height", height, lim.max_tile_height),
        ("limits.max_tile_width", width, lim.max_tile_width),
        ("limits.max_timesteps", timesteps, lim.max_timesteps),
        ("limits.max_in_channels", in_channels, lim.max_in_channels),
        ("limits.max_rank", rank, streamed_rank_limit(cfg) if w23_ring else lim.max_rank),
        ("limits.max_out_channels", out_channels, lim.max_out_channels),
        ("region w1 (G1 ring of streamed chunks)", w1_ring * w1_chunk_words(cfg, in_channels, pack),
         reg["w1"].depth) if w1_ring
        else ("region w1 (G1 core)", w1_depth(cfg, rank, in_channels, pack), reg["w1"].depth),
        ("region w2/w3 (G2/G3 rings of streamed chunks)", w23_ring * g.ns, reg["w2"].depth) if w23_ring
        else ("region w2/w3 (G2/G3 cores)", g.ng * g.ns, reg["w2"].depth),
        ("region w4 (G4 ring of streamed chunks)", w4_ring * rank, reg["w4"].depth) if w4_ring
        else ("region w4 (G4 core)", g.go * rank, reg["w4"].depth),
        ("region affine", g.go, reg["affine"].depth),
        ("region line1 (3 q1 rows per timestep)", LINE1_SLOTS_PER_T * timesteps * g.rw1, reg["line1"].depth),
        ("region line4 (2 q23 rows per timestep)", LINE4_SLOTS_PER_T * timesteps * g.rw4, reg["line4"].depth),
        ("region spike_in (one input row)", g.in_row_words, reg["spike_in"].depth),
        ("region membrane (the output ring: the rows the LIF reads back + 1)",
         (back + 1) * g.out_row_words, reg["membrane"].depth),
        ("region residual (one output row)", g.out_row_words, reg["residual"].depth),
    ]
    if mode == "stt":
        checks.append(("region row2 (2 q2 rows)", ROW2_SLOTS * g.rw1, reg["row2"].depth))
    for what, need, have in checks:
        if need > have:
            return f"{what}: needs {need}, has {have}"
    return None


def _strip_tiles(out_channels: int, hh: int, ww: int, cout_tile: int, th: int, tw: int):
    """``(o0, r0, c0, cout, h, w, zero_halo)`` of an ``out_channels x hh x ww`` output cut
    into ``cout_tile``-channel groups of ``th x tw`` pixels (edge tiles clipped), group by
    group, then row-major; ``zero_halo`` = (top, bottom, left, right) edges of the layer."""
    for o0 in range(0, out_channels, cout_tile):
        for r0 in range(0, hh, th):
            for c0 in range(0, ww, tw):
                h, w = min(th, hh - r0), min(tw, ww - c0)
                yield (o0, r0, c0, min(cout_tile, out_channels - o0), h, w,
                       (r0 == 0, r0 + h == hh, c0 == 0, c0 + w == ww))


#: Candidates (best estimates) timed exactly by the planner.
EXACT_CANDIDATES = 8


class CoresDoNotFit(UserError):
    """A layer's TT cores exceed the configuration's weight regions: no tiling can run it
    (G1, G2, G3 and G4 stream when they do not fit: a core refused here does not fit even as a
    ring of one chunk)."""


def _checked_layer(cfg: HardwareConfig, in_shape, rank: int, out_channels: int, pool: bool,
                   mode: str, schedule, spike_density):
    """:func:`plan_layer`'s arguments checked against ``cfg``: ``(T, Cin, H, W, schedule,
    spike density)``, or one clear error naming what does not fit."""
    if len(in_shape) != 4:
        raise UserError(f"in_shape: expected (T, Cin, H, W), got {tuple(in_shape)}")
    t, cin, hh, ww = (int(v) for v in in_shape)
    if mode not in MODE_CODES:
        raise UserError(f"mode must be one of {sorted(MODE_CODES)}, got {mode!r}")
    lim = cfg.limits
    for what, val, top in (("timesteps T", t, lim.max_timesteps), ("input channels", cin, lim.max_in_channels),
                           ("rank", rank, lim.max_rank)):
        if val < 1:
            raise UserError(f"layer {what} must be >= 1, got {val}")
        if what == "rank" and top < val <= streamed_rank_limit(cfg):
            continue                  # its G2/G3 may stream (the tiles' fit check decides)
        if val > top:
            hint = ("; larger ranks need larger weight regions (limits.max_rank): beyond the "
                    "streamed limit not even a ring of one chunk fits" if what == "rank" else "")
            error = CoresDoNotFit if what == "rank" else UserError
            raise error(f"layer {what} = {val} exceeds the configuration's limit {top} "
                        f"({cfg.name}, limits section){hint}")
    if hh < 1 or ww < 1 or out_channels < 1:
        raise UserError(f"layer shape must be positive, got H={hh}, W={ww}, Cout={out_channels}")
    if pool and (hh % 2 or ww % 2):
        raise UserError(f"a pooling layer needs an even height and width, got {hh}x{ww}")
    sched = tuple(schedule) if schedule is not None else (True,) * t
    density = DEFAULT_SPIKE_DENSITY if spike_density is None else float(spike_density)
    if not 0.0 <= density <= 1.0:
        raise UserError(f"spike_density must be a fraction in [0, 1], got {density:g}")
    if len(sched) != t:
        raise UserError(f"schedule has {len(sched)} entries for T={t}")
    return t, cin, hh, ww, sched, density


def plan_layer(cfg: HardwareConfig, in_shape: Sequence[int], rank: int, out_channels: int,
               pool: bool = False, residual: bool = False,
               tile_hw: tuple[int, int] | None = None, mode: str = "ptt",
               schedule: Sequence[bool] | None = None, pack: int | None = None,
               order: int | None = None, spike_density: float | None = None,
               early_start: bool | None = None) -> TilePlan:
    """Split a layer with input ``[T, Cin, H, W]`` into tiles that fit ``cfg``.

    Candidates are column strips as tall as ``limits.max_tile_height`` allows (the whole
    layer when it fits, so that every halo lies outside the layer and costs nothing),
    output-channel groups, the lane packings ``pack`` of clusters 2/3 and the two row orders;
    an estimate (the busiest engine's issue cycles plus the pipeline fill) ranks them and the
    exact cycle model (:func:`gen.cyclemodel.tile_timing`) picks among the best few
    (``schedule``: HTT's full timesteps, default all full). ``tile_hw``, ``pack`` and
    ``order`` force the tile size, the packing and the order.

    A zero-skipping cluster 1 (``arrangement.cluster1 = "zero_skip"``) takes a data-dependent
    number of cycles per row; the planner ranks the candidates with its expected row lengths
    when every input spike is 1 with probability ``spike_density``
    (:func:`gen.zero_skip.expected_row_lens`; default
    :data:`gen.zero_skip.DEFAULT_SPIKE_DENSITY`, 0.1, the density ``gen.perf`` uses), not with
    its all-ones bound, which would make cluster 1 look the busiest engine and favour
    packings that leave clusters 2/3 idle. The density only chooses among tilings that all
    fit: every plan runs any spikes bit-exactly, and the cycle model stays exact for given
    spikes (``tile_timing(..., c1_lens=zero_skip_row_lens(...))``).

    The chosen tiling's early-start variant (``Tile.early_start``: the resident cores loaded
    after the start through rings that hold them whole, the streamed ones through their rings;
    the engines start after the first G1 chunk and input row) is taken where the host-rate
    model (:mod:`gen.hosttiming`) gives the whole plan fewer bus cycles; ``early_start`` True
    forces it (where the variant fits), False forbids it.
    Raises ValueError naming the limit when the layer cannot run on ``cfg`` at all.
    """
    t, cin, hh, ww, sched, density = _checked_layer(cfg, in_shape, rank, out_channels, pool, mode,
                                                    schedule, spike_density)
    lim = cfg.limits
    skipping = cfg.arrangement.cluster1 == "zero_skip"

    def c1_lens(s):
        """The zero-skipping cluster 1's expected row lengths (None: the dense one's)."""
        return expected_row_lens(cfg, s, density) if skipping else None
    step = 2 if pool else 1
    p = cfg.lanes
    packs = [pack] if pack is not None else list(range(log2(p) + 1))
    orders = [order] if order is not None else [0, 1]
    couts = []
    c = min(out_channels, lim.max_out_channels)
    while True:
        couts.append(c)
        if c <= p:
            break
        c = max(p, ceil_div(c // 2, p) * p)
    if tile_hw is not None:
        th, tw = tile_hw
        if th < step or tw < step or th % step or tw % step:
            raise UserError(f"tile_hw {tile_hw}: must be positive (and even when pooling)")
        if th > lim.max_tile_height or tw > lim.max_tile_width:
            raise UserError(f"tile_hw {tile_hw} exceeds limits.max_tile_height/width "
                            f"({lim.max_tile_height}x{lim.max_tile_width})")
        sizes = [(th, tw)]
    else:
        th = min(hh, lim.max_tile_height // step * step)
        tws = sorted({min(ww, w) for w in range(step, lim.max_tile_width + 1, step)}, reverse=True)
        sizes = [(th, w_) for w_ in tws]
    from .cyclemodel import TileShape, estimate_cycles, tile_timing

    feasible = []
    reasons: list[str] = []
    for cout_tile in couts:
        for th_, tw_ in sizes:
            for pk_ in packs:
                for od in orders:
                    shapes = _strip_shapes(cfg, in_shape, rank, out_channels, cout_tile, th_, tw_,
                                           pk_, od, mode, sched, pool, residual, reasons)
                    if shapes is None:
                        continue
                    est = sum(n * estimate_cycles(cfg, s, c1_lens(s)) for s, n in shapes.items())
                    w4r = next(iter(shapes)).w4_ring
                    feasible.append((est, -th_ * tw_, -cout_tile, pk_, od, th_, tw_, cout_tile, shapes, w4r))
        if feasible and tile_hw is not None:
            break
    if not feasible:
        why = max(set(reasons), key=reasons.count) if reasons else "no candidate"
        cores = why.startswith("region w")
        hint = "; its TT cores exceed the weight buffer even when streamed" if cores else ""
        raise (CoresDoNotFit if cores else UserError)(
            f"layer T={t}, Cin={cin}, rank={rank}, Cout={out_channels}, {hh}x{ww} does not fit "
            f"configuration {cfg.name!r} in any tiling: {why}{hint}")
    # the estimate ignores the row order and how the engines wait for each other; the exact
    # model times both orders of the best few, and of the best tiling of every lane packing
    # (the estimate misranks packings whose engines take turns, e.g. STT's clusters 3 and 4)
    feasible.sort(key=lambda f: f[:5])
    best, best_cycles = feasible[0], None
    if len(feasible) > 1:
        groups: list[tuple] = []
        for cand in feasible:
            key = cand[3], cand[5], cand[6], cand[7]
            if key not in groups and (len(groups) < EXACT_CANDIDATES // 2
                                      or all(g[0] != cand[3] for g in groups)):
                groups.append(key)
        timed = [c for c in feasible if (c[3], c[5], c[6], c[7]) in groups]
        exact = {}
        for i, cand in enumerate(timed):
            exact[i] = cyc = sum(n * tile_timing(cfg, s, c1_lens(s))["cycles"] for s, n in cand[8].items())
            if best_cycles is None or cyc < best_cycles:
                best, best_cycles = cand, cyc
        # streamed cores: their chunk waits depend on the host, which the keeps-up model does
        # not see; then the best timed candidate of each lane packing is ranked again by the
        # host-rate model's bus cycles (the packing sets the chunk sizes and ring lengths)
        if any(s.w1_ring or s.w23_ring or s.w4_ring for c in timed for s in c[8]):
            per_pack: dict[int, int] = {}
            for i, cand in enumerate(timed):
                if cand[3] not in per_pack or exact[i] < exact[per_pack[cand[3]]]:
                    per_pack[cand[3]] = i
            best_cycles = None
            for i in per_pack.values():
                cyc = sum(n * _host_cycles(cfg, s, c1_lens(s)) for s, n in timed[i][8].items())
                if best_cycles is None or cyc < best_cycles:
                    best, best_cycles = timed[i], cyc
    _, _, _, pk_, od, th_, tw_, cout_tile, shapes_, w4r = best
    w23r, w1r = next(iter(shapes_)).w23_ring, next(iter(shapes_)).w1_ring
    strips = list(_strip_tiles(out_channels, hh, ww, cout_tile, th_, tw_))
    base = next(iter(shapes_))
    early = (_early_start_faster(cfg, strips, base, c1_lens) if early_start is None
             else early_start and early_start_shape(cfg, base) is not None)
    tiles = []
    for o0, r0, c0, cout_, h_, w_, halo in strips:
        first = r0 == 0 and c0 == 0                 # first tile of its output-channel group
        rings = w4r, w23r, w1r
        if early:         # each tile's rings hold its cores (G4's: its output group's)
            e = early_start_shape(cfg, _strip_shape(base, cout_, h_, w_, halo))
            if e is None:
                raise AssertionError(f"early start: strip {r0},{c0} of a fitting tiling does not fit")
            rings = e.w4_ring, e.w23_ring, e.w1_ring
        tiles.append(Tile(len(tiles), r0, c0, h_, w_, o0, cout_, cin, rank, t, pool, first, halo,
                          pk_, od, *rings, bool(early)))
    return TilePlan(tuple(tiles), t, cin, out_channels, rank, hh, ww, pool, th_, tw_, cout_tile,
                    pk_, od)


def early_start_shape(cfg: HardwareConfig, s):
    """The early-start variant of tile shape ``s`` (``Tile.early_start``): each resident core
    through a ring of one pass's chunks, i.e. the whole core (G1: a window row's, G2/G3: a MAC
    row's, G4: an output row's), streamed cores through their rings as before; None when the
    variant does not fit ``cfg``."""
    if s.early_start:
        return s
    g = TileGeometry.of_shape(cfg, s)
    e = dataclasses.replace(s, w1_ring=s.w1_ring or w1_row_chunks(cfg, s.rank, s.pack),
                            w23_ring=s.w23_ring or g.ng, w4_ring=s.w4_ring or g.go, early_start=True)
    if tile_fit(cfg, e.timesteps, e.in_channels, e.rank, e.out_channels, e.height, e.width, e.pool,
                e.zero_halo, e.pack, e.mode, e.order, e.w4_ring, e.w23_ring, e.w1_ring):
        return None
    return e


def _strip_shape(shape, out_channels: int, height: int, width: int, zero_halo):
    """``shape`` (a tile shape of a plan) for another strip of it."""
    return dataclasses.replace(shape, out_channels=out_channels, height=height, width=width,
                               zero_halo=tuple(bool(z) for z in zero_halo))


def _early_start_faster(cfg: HardwareConfig, strips, shape, c1_lens) -> bool:
    """Whether the early-start variant of a plan's tiles (``strips`` of :func:`_strip_tiles`;
    ``shape`` one of its tile shapes) fits and takes fewer bus cycles over the whole plan
    than the resident cores in the host-rate model (:func:`gen.hosttiming.host_tile_timing`;
    the first tile of each output-channel group loads the cores)."""
    from .hosttiming import host_tile_timing, shape_traffic
    cache: dict = {}
    total = {False: 0.0, True: 0.0}
    for _, r0, c0, cout_, h_, w_, halo in strips:
        base = _strip_shape(shape, cout_, h_, w_, halo)
        for early in (False, True):
            s = early_start_shape(cfg, base) if early else base
            if s is None:
                return False
            key = (s, r0 == 0 and c0 == 0)
            if key not in cache:
                cache[key] = host_tile_timing(cfg, s, shape_traffic(cfg, s, key[1]), c1_lens=c1_lens(s))["host_span"]
            total[early] += cache[key]
    return total[True] < total[False]


def _first_pass(chunks: list, ring: int, load: bool) -> list:
    """An early-start ring's chunks: the first ``ring`` (the whole core) written when the tile
    loads its cores, every later one empty (its slot already holds it)."""
    return [c if load and n < ring else [] for n, c in enumerate(chunks)]


def _host_cycles(cfg: HardwareConfig, s, c1_lens) -> float:
    """The host-rate model's bus cycles of one tile shape (its cores loaded, its streamed
    chunks fed at the port's rate: ``gen.hosttiming.host_tile_timing``)."""
    from .hosttiming import host_tile_timing, shape_traffic
    return host_tile_timing(cfg, s, shape_traffic(cfg, s), c1_lens=c1_lens)["host_span"]


def _strip_shapes(cfg: HardwareConfig, in_shape, rank: int, out_channels: int, cout_tile: int,
                  th: int, tw: int, pack: int, order: int, mode: str, sched, pool: bool,
                  residual: bool, reasons: list[str]) -> dict | None:
    """The tile shapes (with their counts) of one candidate tiling, or None when a tile does
    not fit (its reason appended to ``reasons``). G4 is streamed (``TileShape.w4_ring``) only
    when the candidate's whole G4 does not fit region ``w4`` and a ring of its chunks does:
    tilings that fit as before are planned as before."""
    from .cyclemodel import TileShape
    t, cin, hh, ww = (int(v) for v in in_shape)
    geo_go = ceil_div(cout_tile, cfg.lanes)
    ring = w4_ring_chunks(cfg, rank)
    w4r = ring if geo_go * rank > cfg.regions["w4"].depth and ring >= 1 else 0
    # G2/G3: ng groups of NS words each (their lane packing's)
    pk = 1 << pack if 0 <= pack <= log2(cfg.lanes) else 1        # (tile_fit names a bad pack)
    ng, ns = ceil_div(rank, pk), ceil_div(3 * rank, cfg.lanes // pk)
    ring23 = w23_ring_chunks(cfg, ns)
    w23r = ring23 if (ng * ns > cfg.regions["w2"].depth or rank > cfg.limits.max_rank) and ring23 >= 1 else 0
    # G1 (chunks of the configuration's cluster 1: a rank group of the transposed layout, or a rank)
    ring1 = w1_ring_chunks(cfg, cin, pack)
    w1r = ring1 if w1_depth(cfg, rank, cin, pack) > cfg.regions["w1"].depth and ring1 >= 1 else 0
    shapes: dict = {}
    for _, _, _, cout_, h_, w_, halo in _strip_tiles(out_channels, hh, ww, cout_tile, th, tw):
        why = tile_fit(cfg, t, cin, rank, cout_, h_, w_, pool, halo, pack, mode, order, w4r, w23r, w1r)
        if why:
            reasons.append(why)
            return None
        shape = TileShape(cin, rank, cout_, h_, w_, t, mode, sched, pool, residual, halo, pack,
                          order, w4r, w23r, w1r)
        shapes[shape] = shapes.get(shape, 0) + 1
    return shapes


def streamed_cores(cfg: HardwareConfig, rank: int, in_channels: int, out_channels: int) -> list[str]:
    """The weight regions (``w1``..``w4``) whose whole core of a layer exceeds the region of
    ``cfg``: what a weight-streaming design would have to stream (G4 too, although
    output-channel groups could split it, because each group recomputes G1-G3;
    docs/architecture.md, "Weight streaming: the analysis"). Empty when every core fits."""
    cores = {"w1": rank * in_channels, "w2": 3 * rank * rank, "w3": 3 * rank * rank,
             "w4": rank * out_channels}
    regions = cfg.regions
    return [n for n, weights in cores.items()
            if weights * cfg.widths.weight > regions[n].depth * regions[n].width_bits]


def large_weights_config(cfg: HardwareConfig, rank: int, pointwise: int) -> HardwareConfig:
    """``cfg`` with weight regions large enough for cores of rank ``rank`` and G1/G4 cores of
    ``pointwise`` weights: only the weight buffer and the rank/pointwise limits grow, the
    datapath and every other region stay. For timing and costing layers that would need
    weight streaming, never for generating hardware."""
    d = cfg.to_dict()
    d["limits"]["max_rank"] = max(rank + cfg.lanes, d["limits"]["max_rank"])     # + packing slack
    slack = rank * cfg.lanes
    if cfg.arrangement.cluster1 == "zero_skip":     # transposed G1: r padded to Pk, Cin to Px
        slack += (pointwise // max(rank, 1) + 1) * cfg.lanes
    d["limits"]["max_pointwise_weights"] = max(pointwise + slack, d["limits"]["max_pointwise_weights"])
    # the weight buffer just holds the enlarged regions (whole words per bank), so that the
    # copy obeys the buffer-size rule of gen.config like any configuration
    word = d["buffers"]["weight"]["width_bits"] * d["buffers"]["weight"]["banks"] // 8
    d["buffers"]["weight"]["bytes"] = ceil_div(buffer_need_bytes(d, "weight"), word) * word
    return config_from_dict(d, source=f"{cfg.name}+large-weights")


def plan_layer_any_weights(cfg: HardwareConfig, in_shape: Sequence[int], rank: int,
                           out_channels: int, **kw) -> tuple[TilePlan, HardwareConfig, bool]:
    """:func:`plan_layer` on ``cfg``, or, when only the layer's cores do not fit
    (:class:`CoresDoNotFit`), on :func:`large_weights_config` of it. Returns the plan, the
    configuration it is planned on and whether the cores fit ``cfg``."""
    try:
        return plan_layer(cfg, in_shape, rank, out_channels, **kw), cfg, True
    except CoresDoNotFit:
        big = large_weights_config(cfg, rank, max(int(in_shape[1]), out_channels) * rank)
        return plan_layer(big, in_shape, rank, out_channels, **kw), big, False


def reference_window(qlayer) -> tuple[int, int]:
    """The surrogate window ``(lo, hi)`` of the reference rectangle (``a = 1`` around the
    threshold, docs/numerics.md "What the forward pass keeps") in ``qlayer``'s membrane fixed
    point, taking ``threshold = V_th 2^f`` as exact: ``round(threshold -+ 2^f / 2)`` (half
    up, as :func:`sw.golden_backward.surrogate_params`). A training step passes the bounds of
    its own surrogate instead."""
    f, thr = int(qlayer.frac_bits), int(qlayer.threshold)
    half = 1 << (f - 1) if f > 0 else 0         # 2^f / 2; for f = 0 the +-1/2 rounds up
    return (thr - half, thr + half) if f > 0 else (thr, thr + 1)


def _descriptor_bound(v: int, mb: int) -> int:
    """A window bound as the descriptor holds it: clamped to the ``mb + 1``-bit range the LIF
    compares in (exact: a membrane is an ``mb``-bit value), two's complement in 32 bits."""
    v = min(max(int(v), -(1 << mb)), (1 << mb) - 1)
    return v & 0xFFFF_FFFF


class LayerOutputs:
    """Collects tile results into the layer's ``spikes, membrane [T, Cout, Ho, Wo]``, the
    trace's ``window`` bits and (pooling layers) ``argmax``, and sums the counters over tiles."""

    def __init__(self, plan: TilePlan):
        self.plan = plan
        ho, wo = (plan.height // 2, plan.width // 2) if plan.pool else (plan.height, plan.width)
        self.spikes = np.zeros((plan.timesteps, plan.out_channels, ho, wo), dtype=np.uint8)
        self.membrane = np.zeros((plan.timesteps, plan.out_channels, ho, wo), dtype=np.int64)
        self.window = np.zeros_like(self.spikes)
        self.argmax = np.zeros_like(self.spikes) if plan.pool else None
        self.counters: dict[str, int] = {}
        self.done = 0

    def add(self, tile: Tile, result: TileResult) -> None:
        s = 2 if tile.pool else 1
        r0, c0 = tile.row0 // s, tile.col0 // s
        ho, wo = tile.out_shape
        sl = (slice(None), slice(tile.out0, tile.out0 + tile.out_channels), slice(r0, r0 + ho),
              slice(c0, c0 + wo))
        self.spikes[sl] = result.spikes
        self.membrane[sl] = result.membrane
        if result.window is not None:
            self.window[sl] = result.window
        if self.argmax is not None and result.argmax is not None:
            self.argmax[sl] = result.argmax
        for k, v in result.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.done += 1


def _to_unsigned(v: int, bits: int) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit signed {bits} bits")
    return v & ((1 << bits) - 1)


def _to_signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _pack(values: Iterable[int], bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= _to_unsigned(int(v), bits) << (i * bits)
    return word


def load_manifest_config(path: str | Path) -> HardwareConfig:
    """The configuration recorded in a manifest written by ``python -m gen``."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise MissingFileError(f"manifest {str(p)!r} not found; run `python -m gen --config ... --out DIR`")
    data = json.loads(p.read_text())
    if "config" not in data:
        raise UserError(f"{p}: not a generator manifest (no 'config' entry)")
    return config_from_dict(data["config"], source=str(p))



def affine_words(scale: np.ndarray, bias: np.ndarray, lanes: int, scale_bits: int, bias_bits: int) -> list[int]:
    """Words of the ``affine`` region for ``scale [2, C]`` (full / reduced timesteps) and
    ``bias [C]``: word ``go``, lane ``l`` = (scale[0], scale[1], bias) of channel ``go*P + l``
    (channels past ``C`` zero). The forward's affine/residual/LIF tail and the backward's
    LIF-gradient engine read the same words."""
    groups = ceil_div(len(bias), lanes)
    sc = np.zeros((2, groups * lanes), np.int64); sc[:, :len(bias)] = scale
    bi = np.zeros(groups * lanes, np.int64); bi[:len(bias)] = bias
    lane_bits = 2 * scale_bits + bias_bits
    words = []
    for go in range(groups):
        word = 0
        for l in range(lanes):
            o = go * lanes + l
            ln = (_to_unsigned(int(sc[0, o]), scale_bits) | _to_unsigned(int(sc[1, o]), scale_bits) << scale_bits
                  | _to_unsigned(int(bi[o]), bias_bits) << (2 * scale_bits))
            word |= ln << (l * lane_bits)
        words.append(word)
    return words

class Driver:
    """Encodes tiles for one hardware configuration (a ``HardwareConfig``, a shipped name,
    a TOML path or a manifest path/dir)."""

    def __init__(self, config: HardwareConfig | str | Path):
        if isinstance(config, HardwareConfig):
            cfg = config
        elif str(config).endswith(".json") or (Path(config) / "manifest.json").is_file():
            cfg = load_manifest_config(config)
        else:
            cfg = load_config(config)
        self.config = cfg
        self.map: HostMap = host_map(cfg)

    # ---- planning --------------------------------------------------------------------------
    def plan(self, qlayer, in_shape: Sequence[int], tile_hw: tuple[int, int] | None = None,
             pack: int | None = None, order: int | None = None,
             spike_density: float | None = None, early_start: bool | None = None) -> TilePlan:
        """:func:`plan_layer` of ``qlayer`` on an input of ``in_shape`` (``spike_density``: what
        a zero-skipping cluster 1's tiling is chosen for; any spikes run on the plan;
        ``early_start``: force or forbid ``Tile.early_start``, default the planner's choice)."""
        qlayer.check_fits(self.config.widths)
        if len(in_shape) != 4:
            raise UserError(f"input: expected [T, Cin, H, W], got shape {tuple(in_shape)}")
        if in_shape[1] != qlayer.in_channels:
            raise UserError(f"input has {in_shape[1]} channels, the layer {qlayer.in_channels}")
        return plan_layer(self.config, in_shape, qlayer.rank, qlayer.out_channels, qlayer.pool,
                          qlayer.residual, tile_hw, qlayer.mode, qlayer.full_timesteps(in_shape[0]),
                          pack, order, spike_density, early_start)

    @staticmethod
    def window(spikes: np.ndarray, tile: Tile) -> np.ndarray:
        """The tile's input window ``[T, Cin, H+2, W+2]`` cut from the layer's spikes (zero
        outside the layer)."""
        pad = np.pad(np.asarray(spikes), ((0, 0), (0, 0), (1, 1), (1, 1)))
        return pad[:, :, tile.row0:tile.row0 + tile.height + 2, tile.col0:tile.col0 + tile.width + 2]

    @staticmethod
    def residual_tile(residual: np.ndarray, tile: Tile) -> np.ndarray:
        s = 2 if tile.pool else 1
        ho, wo = tile.out_shape
        r0, c0 = tile.row0 // s, tile.col0 // s
        return np.asarray(residual)[:, tile.out0:tile.out0 + tile.out_channels, r0:r0 + ho, c0:c0 + wo]

    def geometry(self, qlayer, tile: Tile) -> TileGeometry:
        return TileGeometry.of(self.config, tile.in_channels, tile.rank, tile.out_channels,
                               tile.height, tile.width, tile.pool, tile.zero_halo, tile.pack,
                               qlayer.mode)

    # ---- encoding --------------------------------------------------------------------------
    def _region_words(self, name: str, words: Sequence[int], offset: int = 0) -> list[tuple[int, int]]:
        return region_writes(self.map, name, words, offset)

    def _region_reads(self, name: str, count: int, offset: int = 0) -> list[int]:
        return region_reads(self.map, name, count, offset)

    def descriptor(self, qlayer, tile: Tile, rings: dict[str, int],
                   window: tuple[int, int] | None = None) -> dict[str, int]:
        """Descriptor register values of ``tile`` (unsigned register contents); ``window``:
        the surrogate window's bounds (default :func:`reference_window`)."""
        sched = qlayer.full_timesteps(tile.timesteps)
        lo, hi = reference_window(qlayer) if window is None else window
        mb = self.config.widths.membrane
        for name in ("shift1", "shift2", "shift3", "affine_shift", "leak_shift"):
            if getattr(qlayer, name) > 62:
                raise UserError(f"QuantTTLayer.{name} = {getattr(qlayer, name)}: the descriptor "
                                f"holds shifts up to 62 (PTT adds 1 to shift3 in 6 bits)")
        return {
            "in_channels": tile.in_channels, "rank": tile.rank, "out_channels": tile.out_channels,
            "height": tile.height, "width": tile.width, "timesteps": tile.timesteps,
            "mode": MODE_CODES[qlayer.mode],
            "schedule": sum(1 << t for t, full in enumerate(sched) if full),
            "pack": tile.pack, "order": tile.order,
            "shift1": qlayer.shift1, "shift2": qlayer.shift2, "shift3": qlayer.shift3,
            "affine_shift": qlayer.affine_shift, "leak_mul": qlayer.leak_mul,
            "leak_shift": qlayer.leak_shift,
            "threshold": _to_unsigned(qlayer.threshold, mb) if qlayer.threshold >= 0
            else qlayer.threshold & ((1 << self.config.widths.host_data) - 1),
            "round": qlayer.round, "pool": int(qlayer.pool), "residual": int(qlayer.residual),
            "zero_halo": tile.zero_halo_bits,
            "in_ring_rows": rings["in"], "res_ring_rows": rings["res"], "out_ring_rows": rings["out"],
            "pass": int(Pass.FORWARD), "w4_ring": tile.w4_ring, "w23_ring": tile.w23_ring,
            "w1_ring": tile.w1_ring,
            "window_lo": _descriptor_bound(lo, mb), "window_hi": _descriptor_bound(hi, mb),
        }

    def weight_words(self, qlayer, tile: Tile) -> dict[str, list[int]]:
        """Words of the regions w1, w2, w3, w4, affine for ``tile`` (its output-channel group
        and lane packing; layouts in docs/host_interface.md)."""
        cfg, p = self.config, self.config.lanes
        wb, sb, mb = cfg.widths.weight, cfg.widths.affine_scale, cfg.widths.membrane
        r, cin = qlayer.rank, qlayer.in_channels
        g = self.geometry(qlayer, tile)
        if cfg.arrangement.cluster1 == "zero_skip":      # transposed (gen/engines/cluster1_zero_skip.py)
            out = {"w1": [_pack(w, wb) for w in w1_words_zero_skip(np.asarray(qlayer.w1), tile.pack, p)]}
        else:
            w1 = np.zeros((r, g.ncc * p), np.int64); w1[:, :cin] = qlayer.w1
            out = {"w1": [_pack(w1[k, cc * p:(cc + 1) * p], wb) for k in range(r) for cc in range(g.ncc)]}
        steps = [(j, tap) for jb in range(g.ng) for tap in TAP_ORDER
                 for j in range(jb * g.Pk, min(r, (jb + 1) * g.Pk))]
        for name, w in (("w2", qlayer.w2), ("w3", qlayer.w3)):
            padded = np.zeros((g.ng * g.Pk, r, 3), np.int64); padded[:r] = w
            words = []
            for grp in range(g.ng):
                lanes = np.zeros((g.ns * g.Px, g.Pk), np.int64)
                for s, (j, tap) in enumerate(steps):
                    lanes[s] = padded[grp * g.Pk:(grp + 1) * g.Pk, j, tap]
                words += [_pack(lanes[i * g.Px:(i + 1) * g.Px].reshape(-1), wb) for i in range(g.ns)]
            out[name] = words
        co = slice(tile.out0, tile.out0 + tile.out_channels)
        w4 = np.zeros((g.go * p, r), np.int64); w4[:tile.out_channels] = qlayer.w4[co]
        out["w4"] = [_pack(w4[go * p:(go + 1) * p, k], wb) for go in range(g.go) for k in range(r)]
        out["affine"] = affine_words(np.asarray(qlayer.scale)[:, co], np.asarray(qlayer.bias)[co], p, sb, mb)
        return out

    def spike_rows(self, window: np.ndarray, tile: Tile) -> list[list[int]]:
        """spike_in words of every input row the tile streams, in cluster 1's order."""
        x = np.asarray(window)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise UserError("window: spikes must be 0 or 1")
        t, cin, _, _ = x.shape
        sw = self.config.spike_word_bits
        cw = ceil_div(cin, sw)
        cols = input_pixel_order(tile.width, tile.zero_halo)
        weights = np.array([1 << b for b in range(sw)], dtype=object)
        rows = []
        for w, tt in input_row_order(tile.height, tile.timesteps, tile.zero_halo, tile.order):
            bits = np.zeros((len(cols), cw * sw), np.uint8)
            bits[:, :cin] = x[tt][:, w][:, cols].T
            rows.append([int(v) for v in bits.reshape(-1, sw).astype(object).dot(weights)])
        return rows

    def lane_words(self, data: np.ndarray, bits: int, order: int = 0) -> list[list[int]]:
        """Rows of a ``[T, C, Ho, Wo]`` array in the residual/output layout, in the tile's
        row order: word ``x*GO + go`` of a row, lane ``l`` = channel ``go*P + l``."""
        p = self.config.lanes
        t, c, ho, wo = data.shape
        go = ceil_div(c, p)
        padded = np.zeros((t, go * p, ho, wo), np.int64); padded[:, :c] = data
        return [[_pack(padded[tt, g * p:(g + 1) * p, y, x], bits) for x in range(wo) for g in range(go)]
                for y, tt in output_row_order(ho, t, order)]

    def ring_rows(self, geo: TileGeometry, order: int = 0, limit: int | None = None) -> dict[str, int]:
        """:func:`gen.host_program.ring_rows` of this configuration."""
        return ring_rows(self.config, geo, order, limit)

    def program(self, qlayer, tile: Tile, window: np.ndarray, residual: np.ndarray | None = None,
                load_weights: bool | None = None, read_counters: bool = True,
                ring_limit: int | None = None, surrogate: tuple[int, int] | None = None) -> TileProgram:
        """Host traffic of one tile. ``window [T, Cin, H+2, W+2]``; ``residual [T, Cout_tile,
        Ho, Wo]`` when the layer has one. ``load_weights`` defaults to ``tile.weights_change``;
        ``ring_limit`` caps the ring rows (tests use it to exercise flow control);
        ``surrogate``: the window bounds ``(lo, hi)`` of the trace's window bits (default
        :func:`reference_window`). Each output row is read as its membrane words and its trace
        words (spike, window bit, arg-max per lane; the spike words hold nothing more)."""
        cfg, m = self.config, self.map
        window = np.asarray(window)
        if window.shape != (tile.timesteps, tile.in_channels) + tile.window_shape:
            raise UserError(f"window: expected shape {(tile.timesteps, tile.in_channels) + tile.window_shape}, "
                            f"got {window.shape}")
        why = tile_fit(cfg, tile.timesteps, tile.in_channels, tile.rank, tile.out_channels,
                       tile.height, tile.width, tile.pool, tile.zero_halo, tile.pack, qlayer.mode,
                       tile.order, tile.w4_ring, tile.w23_ring, tile.w1_ring)
        if why:
            raise UserError(f"tile {tile.index} does not fit configuration {cfg.name!r}: {why}")
        ho, wo = tile.out_shape
        if qlayer.residual:
            if residual is None:
                raise UserError("the layer has a residual input but none was given")
            residual = np.asarray(residual)
            if residual.shape != (tile.timesteps, tile.out_channels, ho, wo):
                raise UserError(f"residual: expected shape {(tile.timesteps, tile.out_channels, ho, wo)}, "
                                f"got {residual.shape}")
        geo = self.geometry(qlayer, tile)
        rings = self.ring_rows(geo, tile.order, ring_limit)
        if tile.w4_ring:
            rings["w4"] = tile.w4_ring
        if tile.w23_ring:
            rings["w23"] = tile.w23_ring
        if tile.w1_ring:
            rings["w1"] = tile.w1_ring
        reg = {name: m.register(name).address for name in STREAMING_REGISTERS}
        # clear the counters and the host's streaming counts (in_rows, ..., w1_chunks)
        setup: list[tuple[int, int]] = [(m.register("ctrl").address, 2)]
        # the descriptor packed into host words (desc_word<k>: 2 beats on a 256-bit port)
        words = descriptor_word_values(self.descriptor(qlayer, tile, rings, surrogate), cfg.widths.host_data)
        setup += [(m.register(f"desc_word{k}").address, v) for k, v in enumerate(words)]
        if load_weights is None:
            load_weights = tile.weights_change
        streams = tile.w4_ring or tile.w23_ring or tile.w1_ring
        weights = self.weight_words(qlayer, tile) if load_weights or streams else {}
        w1_chunks = self._w1_chunks(tile, weights) if tile.w1_ring else []
        early, whole = tile.early_start, whole_rings(cfg, geo, tile)
        if whole["w1"]:       # the ring holds the whole core: its first pass, once
            w1_chunks = _first_pass(w1_chunks, tile.w1_ring, load_weights)
        if early:             # the affine words travel with G4's first chunks (read after their wait)
            affine = self._region_words("affine", weights.pop("affine"))
            asub = m.region("affine").subwords
        words_in = sum(len(c) for c in w1_chunks)
        w4_chunks = []
        if tile.w4_ring:       # streamed G4: chunk (output row, group) into slot n % w4_ring
            r, w4 = tile.rank, weights.pop("w4")
            groups = [go for _ in range(tile.timesteps * ho) for go in range(geo.go)]
            for n, go in enumerate(groups):
                ws = self._region_words("w4", w4[go * r:(go + 1) * r], (n % tile.w4_ring) * r)
                if whole["w4"] and not (load_weights and n < tile.w4_ring):
                    ws = []
                if early and load_weights and n < geo.go:
                    ws = ws + affine[go * asub:(go + 1) * asub]
                words_in += len(ws)
                w4_chunks.append(ws)
        w2_chunks, w3_chunks = [], []
        if tile.w23_ring:      # streamed G2/G3: chunk (MAC row, rank group) into slot n % w23_ring
            ns, sched = geo.ns, qlayer.full_timesteps(tile.timesteps)
            w2, w3 = weights.pop("w2"), weights.pop("w3")
            mac_rows = [t for _, t in output_row_order(tile.height, tile.timesteps, tile.order) if sched[t]]
            groups = [grp for _ in mac_rows for grp in range(geo.ng)]
            for n, grp in enumerate(groups):
                for words, chunks, name in ((w2, w2_chunks, "w2"), (w3, w3_chunks, "w3")):
                    ws = self._region_words(name, words[grp * ns:(grp + 1) * ns], (n % tile.w23_ring) * ns)
                    if whole["w23"] and not (load_weights and n < tile.w23_ring):
                        ws = []
                    words_in += len(ws)
                    chunks.append(ws)
        if load_weights:
            for name, words in weights.items():
                ws = self._region_words(name, words)
                words_in += len(ws)
                setup += ws
        in_rows = []
        for i, row in enumerate(self.spike_rows(window, tile)):
            ws = self._region_words("spike_in", row, (i % rings["in"]) * geo.in_row_words)
            words_in += len(ws)
            in_rows.append(ws)
        res_rows = []
        if qlayer.residual:
            for i, row in enumerate(self.lane_words(residual, cfg.widths.membrane, tile.order)):
                ws = self._region_words("residual", row, (i % rings["res"]) * geo.out_row_words)
                words_in += len(ws)
                res_rows.append(ws)
        n_rows = tile.timesteps * ho
        out_rows = []
        for i in range(n_rows):
            base = (i % rings["out"]) * geo.out_row_words
            out_rows.append(self._region_reads("membrane", geo.out_row_words, base)
                            + self._region_reads("trace", geo.out_row_words, base))
        words_out = sum(len(r) for r in out_rows)
        last_groups = last_row_groups(m, geo.out_row_words, geo.go)
        counter_reads: list[int] = []
        n_cnt = 0
        if read_counters:
            for c in m.counters:
                counter_reads += [c.address, c.address + 1]
            n_cnt = len(m.counters)

        hb, p, mb = cfg.widths.host_data, cfg.lanes, cfg.widths.membrane
        msub = m.region("membrane").subwords
        ssub = m.region("trace").subwords
        go, n_words = geo.go, geo.out_row_words
        row_yt = output_row_order(ho, tile.timesteps, tile.order)

        def decode(values: list[int]) -> TileResult:
            mem = np.zeros((tile.timesteps, go * p, ho, wo), np.int64)
            spk = np.zeros((tile.timesteps, go * p, ho, wo), np.uint8)
            win, arg = np.zeros_like(spk), np.zeros_like(spk)
            i = 0
            for n in range(n_rows):
                y, tt = row_yt[n]
                mwords = [sum(values[i + j * msub + k] << (k * hb) for k in range(msub)) for j in range(n_words)]
                i += n_words * msub
                swords = [sum(values[i + j * ssub + k] << (k * hb) for k in range(ssub)) for j in range(n_words)]
                i += n_words * ssub
                for j in range(n_words):
                    x, g = divmod(j, go)
                    for l in range(p):
                        mem[tt, g * p + l, y, x] = _to_signed(mwords[j] >> (l * mb), mb)
                        bits = (swords[j] >> (4 * l)) & 0xF         # spike, window, arg-max
                        spk[tt, g * p + l, y, x] = bits & 1
                        win[tt, g * p + l, y, x] = (bits >> 1) & 1
                        arg[tt, g * p + l, y, x] = bits >> 2
            counters = {}
            for j, c in enumerate(m.counters[:n_cnt]):
                counters[c.name] = values[i + 2 * j] | (values[i + 2 * j + 1] << hb)
            c = tile.out_channels
            return TileResult(spk[:, :c], mem[:, :c], counters, win[:, :c], arg[:, :c] if tile.pool else None)

        return TileProgram(tile, setup, (m.register("ctrl").address, 1), in_rows, res_rows,
                           out_rows, counter_reads, rings, reg, words_in, words_out, decode, w4_chunks,
                           w2_chunks, w3_chunks, w1_chunks, early, last_groups)

    def _w1_chunks(self, tile: Tile, weights: dict[str, list[int]]) -> list[list[tuple[int, int]]]:
        """A streamed G1's chunks (removed from ``weights``): for every window row the tile
        sends (``input_row_order``), each rank group's ``ceil(Cin/Px)`` words (zero-skipping
        cluster 1) or each rank's ``ceil(Cin/P)`` words (dense), chunk ``n`` into ring slot
        ``n % w1_ring``, in cluster 1's read order."""
        w1 = weights.pop("w1")
        nw = w1_chunk_words(self.config, tile.in_channels, tile.pack)
        ng = w1_row_chunks(self.config, tile.rank, tile.pack)
        n_rows = len(input_row_order(tile.height, tile.timesteps, tile.zero_halo, tile.order))
        groups = [kg for _ in range(n_rows) for kg in range(ng)]
        return [self._region_words("w1", w1[kg * nw:(kg + 1) * nw], (n % tile.w1_ring) * nw)
                for n, kg in enumerate(groups)]
