"""Exact counter and cycle model of one tile (pure Python, no Amaranth).

:func:`tile_counters` returns every performance counter of docs/host_interface.md as a
function of the tile's shape, mode, schedule and lane packing (and, for ``c1_adds`` and
``spikes_out``, of the data). The tests check it against the RTL's own counters in
amaranth.sim, so the energy model (model/) and ``gen.perf`` can use it for layers far too
large to simulate.

Timing: each engine issues one step per cycle and checks its inputs only at a row start
(docs/architecture.md, "Pipeline and stalls"); rows go in (row, timestep) order. The model
keeps one :class:`EngineTable` per engine, named like the engine components of gen/engines/
(``cluster1``, ``cluster23``, ``stt_cluster3``, ``cluster4``), and replays exactly their
row-level handshake, with a host that always keeps up (input rows
there when needed, output rows taken at once): the RTL's ``c1_in_wait`` and ``lif_stall``
count what a slower host adds. The zero-skipping cluster 1 (``arrangement.cluster1 =
"zero_skip"``) has data-dependent rows: ``c1_lens`` (gen.zero_skip.zero_skip_row_lens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Sequence

from ttsnn.sw.cli_util import UserError

from .config import HardwareConfig, ceil_div
from .engines.macloop import MAC_LATENCY
from .geometry import TAP_ORDER, TileGeometry, e1_rows
from .zero_skip import w1_row_chunks

__all__ = ["TileShape", "EngineTable", "tile_counters", "tile_timing", "ideal_cycles", "estimate_cycles",
           "PIPE_TAIL", "E4_WRITE_LATENCY", "ROW_VISIBLE", "MAC_ROW_VISIBLE", "LINE4_ROW_VISIBLE", "RELEASE_VISIBLE", "e1_rows",
           "TAP_ORDER", "row_accesses"]

#: Cycles from E4's last issue to its membrane and spike writes (issue, a: read and PE, b:
#: pool, c: into the affine pipeline, ``ClusterFourEngine.TAIL_STAGES`` = 6 stages of affine
#: and LIF (the LIF's add and saturation and its compares in stages of their own since issue
#: #24: one path of 62-64 generic levels before, docs/synthesis.md), the write): the engine's
#: ``ClusterFourEngine.WRITE_LATENCY``, its ``out_rows`` count visible one cycle later.
E4_WRITE_LATENCY = 9
#: Cycles from E4's last issue to the end of ``busy`` (the write, then ``busy`` low, idle).
PIPE_TAIL = E4_WRITE_LATENCY + 2
#: Cycles from a row's last issue until its "rows written" count is visible to the consumer.
ROW_VISIBLE = 3
#: The same for STT's q2 rows, which cluster 2 writes into ``row2``: issue, stage a, the
#: pipelined clusters' ``MAC_LATENCY`` cycles to stage b (the write), visible a cycle later.
MAC_ROW_VISIBLE = 2 + MAC_LATENCY
#: The same for the q23 rows the clusters-2/3 engines write into ``line4`` (E2's merged or
#: copied rows, STT's cluster 3's rows): written at stage c, a cycle after stage b (the adder
#: array's sums registered before the shift3 re-quantisation).
LINE4_ROW_VISIBLE = MAC_ROW_VISIBLE + 1
#: Cycles from a row's last issue until its "rows released" count is visible to the producer.
RELEASE_VISIBLE = 1


@dataclass(frozen=True)
class TileShape:
    """What the counters depend on: the tile's descriptor."""
    in_channels: int
    rank: int
    out_channels: int
    height: int
    width: int
    timesteps: int
    mode: str                      # "stt" | "ptt" | "htt"
    schedule: tuple[bool, ...]     # full timesteps (all True unless HTT)
    pool: bool = False
    residual: bool = False
    zero_halo: tuple[bool, bool, bool, bool] = (False, False, False, False)  # top, bottom, left, right
    pack: int = 0                  # log2 Pk of clusters 2/3
    order: int = 0                 # 0: row outer, 1: timestep outer
    w4_ring: int = 0               # > 0: G4 streamed through a ring of that many chunks
    w23_ring: int = 0              # > 0: G2 and G3 streamed through rings of that many chunks
    w1_ring: int = 0               # > 0: G1 streamed through a ring of that many chunks
    early_start: bool = False      # the rings hold whole cores, loaded after the start (host only)

    @classmethod
    def of(cls, qlayer, tile) -> "TileShape":
        """From a ``sw.qlayer.QuantTTLayer`` and a ``gen.driver.Tile``."""
        return cls(tile.in_channels, tile.rank, tile.out_channels, tile.height, tile.width,
                   tile.timesteps, qlayer.mode, tuple(qlayer.full_timesteps(tile.timesteps)),
                   qlayer.pool, qlayer.residual, tuple(tile.zero_halo), tile.pack, tile.order,
                   getattr(tile, "w4_ring", 0), getattr(tile, "w23_ring", 0), getattr(tile, "w1_ring", 0),
                   bool(getattr(tile, "early_start", False)))

    def full(self, t: int) -> bool:
        """Whether timestep ``t`` runs clusters 2/3 (always, except HTT's reduced ones)."""
        return self.mode != "htt" or bool(self.schedule[t])


def _rows(n_rows: int, timesteps: int, order: int) -> list[tuple[int, int]]:
    """(row, timestep) of the rows of clusters 2-4 in the tile's order."""
    if order:
        return [(y, t) for t in range(timesteps) for y in range(n_rows)]
    return [(y, t) for y in range(n_rows) for t in range(timesteps)]


def _e1_row_len(s: TileShape, g: TileGeometry, w: int) -> int:
    """Cycles of E1's window row ``w``: a row outside the layer takes one step, zero halo
    columns none."""
    top, bottom, left, right = s.zero_halo
    if (w == 0 and top) or (w == s.height + 1 and bottom):
        return 1
    return (s.width + 2 - int(left) - int(right)) * s.rank * g.ncc


def _e1_row_lens(cfg: HardwareConfig, s: TileShape, g: TileGeometry, rows1,
                 c1_lens: Sequence[int] | None) -> list[int]:
    """Cycles of each of E1's window rows. The dense cluster 1's depend on the shape only; the
    zero-skipping one's (``arrangement.cluster1 = "zero_skip"``) on the spikes: ``c1_lens``
    from :func:`gen.zero_skip.zero_skip_row_lens`, or without them the bound where every spike
    is 1 (one step per input channel of a pixel and rank group)."""
    if cfg.arrangement.cluster1 != "zero_skip":
        return [_e1_row_len(s, g, w) for w, _ in rows1]
    if c1_lens is not None:
        if len(c1_lens) != len(rows1):
            raise UserError(f"c1_lens has {len(c1_lens)} rows, the tile has {len(rows1)}")
        return list(c1_lens)
    top, bottom, left, right = s.zero_halo
    full = (s.width + 2 - int(left) - int(right)) * g.ng * s.in_channels
    return [1 if (w == 0 and top) or (w == s.height + 1 and bottom) else full for w, _ in rows1]


def _mac_row_len(s: TileShape, g: TileGeometry, t: int, blocks: int) -> int:
    if s.mode == "htt" and not s.full(t):
        return g.nb * g.ng                       # bypass copy
    return g.ng * blocks * g.r3


def _groups(blocks: int, B: int) -> list[int]:
    """Blocks in each block group (groups of up to B blocks sharing a weight chunk)."""
    return [min(B, blocks - i) for i in range(0, blocks, B)]


def _chunks(r3: int, C: int, nbi: int) -> list[tuple[int, int]]:
    """Step ranges ``[s0, s1)`` of the chunks of a reduction for a group of ``nbi`` blocks
    (a single block runs the whole reduction as one chunk)."""
    if nbi == 1:
        return [(0, r3)]
    return [(s0, min(r3, s0 + C)) for s0 in range(0, r3, C)]


@lru_cache(maxsize=4096)
def _step_fields(rank: int, pk: int) -> tuple[tuple[int, int], ...]:
    """(tap index, jl) of every step of the reduction (jb outer, tap, jl inner)."""
    out = []
    for jb in range(ceil_div(rank, pk)):
        lanes = min(pk, rank - jb * pk)
        for ti in range(3):
            out += [(ti, jl) for jl in range(lanes)]
    return tuple(out)


@lru_cache(maxsize=4096)
def row_accesses(rank: int, pk: int, px: int, blocks: int, B: int, C: int) -> dict[str, int]:
    """Per output rank group and MAC row: line-buffer word reads of each port, weight-buffer
    reads, scratchpad accesses (docs/host_interface.md: reads happen when a word changes).
    ``portA0``: the part of ``portA`` reading the tap-0 row (the rest reads the tap-2 row;
    neither is read on a row outside the layer)."""
    steps = _step_fields(rank, pk)
    r3 = len(steps)
    a = dict.fromkeys(("portA", "portA0", "portB", "portC", "glb", "spad_w_rd",
                       "spad_w_wr", "spad_p_rd", "spad_p_wr"), 0)
    for nbi in _groups(blocks, B):
        chunks = _chunks(r3, C, nbi)
        for ci, (s0, s1) in enumerate(chunks):
            pa = pa0 = pb = pc = glb = 0
            for s in range(s0, s1):
                ti, jl = steps[s]
                first = s == s0
                new_op = first or jl == 0
                pa += ti != 0 and new_op
                pa0 += TAP_ORDER[ti] == 0 and new_op
                pc += ti != 0 and new_op
                pb += first or (jl == 0 and ti == 0)
                glb += first or s % px == 0
            a["portA"] += nbi * pa
            a["portA0"] += nbi * pa0
            a["portB"] += nbi * pb
            a["portC"] += nbi * pc
            a["glb"] += glb
            if nbi > 1:
                a["spad_w_wr"] += s1 - s0
                a["spad_w_rd"] += (nbi - 1) * (s1 - s0)
                if ci > 0:
                    a["spad_p_rd"] += nbi
                if ci < len(chunks) - 1:
                    a["spad_p_wr"] += nbi
    return a


def estimate_cycles(cfg: HardwareConfig, s: TileShape, c1_lens: Sequence[float] | None = None) -> float:
    """A quick estimate for the planner: the busiest engine's issue cycles plus the pipeline
    fill (the first three window rows of cluster 1 and one row of each later engine).
    ``c1_lens``: the zero-skipping cluster 1's row lengths in ``e1_rows`` order (the planner
    passes :func:`gen.zero_skip.expected_row_lens`; without them, its all-ones bound)."""
    g = TileGeometry.of_shape(cfg, s)
    if cfg.arrangement.cluster1 == "zero_skip":
        lens1 = _e1_row_lens(cfg, s, g, e1_rows(s.height, s.timesteps, s.order), c1_lens)
        busy1 = sum(lens1)
        rows1 = lens1[:3]                          # the first rows of the fill
    else:
        rows1 = [_e1_row_len(s, g, w) for w in range(s.height + 2)]
        busy1 = s.timesteps * sum(rows1)
    busy2 = sum(s.height * _mac_row_len(s, g, t, g.nbe2) for t in range(s.timesteps))
    busy3 = s.timesteps * s.height * g.ng * g.nb * g.r3 if s.mode == "stt" else 0
    row4 = g.wo * g.go * g.sub * s.rank
    busy4 = s.timesteps * g.ho * row4
    fill = sum(rows1[:3]) + max(busy2, busy3) // max(s.timesteps * s.height, 1) + row4
    return max(busy1, busy2, busy3, busy4) + fill


@dataclass
class EngineTable:
    """The row schedule of one engine, named like its component (gen/engines/): its rows,
    their lengths in cycles (one step per cycle), and ``ready(i)``: the first cycle row ``i``
    may issue, from this engine's previous row and the rows of the engines it waits for
    (None while one of those is not scheduled yet). ``starts`` fills in as the scheduler
    places rows."""
    name: str
    rows: list
    lens: list[int]
    ready: Callable[[int], int | None] = None
    starts: list[int] = field(default_factory=list)
    #: table entries per row (cluster 4 with a streamed G4: one per output group)
    segments: int = 1
    #: the row of each entry (None: one entry per row); for clusters 2/3 with streamed G2/G3
    #: a MAC row is one entry per output rank group, each waiting for its chunk
    seg_row: list | None = None
    #: per entry, the index of the weight chunk it waits for (None: none)
    chunk_of: list | None = None
    #: ``inner(i, start)``: cycles row ``i`` stalls between its first and last issue when it
    #: starts at ``start`` (STT's pipelined cluster 3 waits inside a row for cluster 2's rank
    #: groups); None: rows issue without a gap
    inner: Callable[[int, int], int] | None = None
    #: per scheduled row, the cycles it stalled inside (``inner``)
    extra: list = field(default_factory=list)

    def __post_init__(self):
        n = len(self.rows)
        rows = self.seg_row if self.seg_row is not None else list(range(n))
        self.seg_row = rows
        self.row_first, self.row_last = {}, {}
        for u, j in enumerate(rows):
            self.row_first.setdefault(j, u)
            self.row_last[j] = u

    def row_after(self, j: int, latency: int) -> int | None:
        """:meth:`after` of row ``j``'s last entry."""
        return self.after(self.row_last[j], latency)

    def segments_per_row(self, j: int) -> int:
        """Table entries of row ``j``."""
        return self.row_last[j] - self.row_first[j] + 1

    def row_len(self, j: int) -> int:
        """Cycles of row ``j`` (all its entries)."""
        return sum(self.lens[u] for u in range(self.row_first[j], self.row_last[j] + 1))

    def last(self, i: int) -> int:
        """Cycle of row ``i``'s last issue (its steps, and the cycles it stalled inside)."""
        return self.starts[i] + self.lens[i] + self.extra[i] - 1

    def place(self, start: int) -> None:
        """Schedule the next row at ``start``."""
        i = len(self.starts)
        self.starts.append(start)
        self.extra.append(self.inner(i, start) if self.inner is not None else 0)

    def after(self, i: int, latency: int) -> int | None:
        """Cycle from which row ``i`` is visible ``latency`` cycles after its last issue; None
        while that row is not scheduled yet."""
        return None if i >= len(self.starts) else self.last(i) + latency

    def free(self, i: int) -> int:
        """Cycle at which row ``i`` may start, as far as this engine's own row ``i - 1`` goes."""
        return self.last(i - 1) + 1 if i else 0

    @property
    def busy(self) -> int:
        return sum(self.lens)

    @property
    def end(self) -> int:
        """Cycle after the last issue."""
        return self.last(len(self.rows) - 1) + 1


def _latest(t0, *deps):
    return None if any(d is None for d in deps) else max(t0, *deps)


def _engine_tables(cfg: HardwareConfig, s: TileShape,
                   c1_lens: Sequence[int] | None = None) -> dict[str, EngineTable]:
    """One table per engine of the tile (the STT cluster-3 engine only for STT), with the
    row-level handshakes between them (docs/architecture.md, "Pipeline and stalls").
    ``c1_lens``: the zero-skipping cluster 1's row lengths (:func:`_e1_row_lens`)."""
    g = TileGeometry.of_shape(cfg, s)
    T, H = s.timesteps, s.height
    stt = s.mode == "stt"
    step = 2 if s.pool else 1
    rows1 = e1_rows(H, T, s.order)
    rows23 = _rows(H, T, s.order)
    rows4 = _rows(g.ho, T, s.order)
    c1 = _c1_table(s, rows1, _e1_row_lens(cfg, s, g, rows1, c1_lens), w1_row_chunks(cfg, s.rank, s.pack))
    # the zero-skipping cluster 1 steps one cycle after it issues a word (a row's table start
    # is its first issue), so its rows become visible one cycle later
    c1_visible = ROW_VISIBLE + (cfg.arrangement.cluster1 == "zero_skip")
    c23 = _mac_table("cluster23", s, rows23, [_mac_row_len(s, g, t, g.nbe2) for _, t in rows23],
                     [s.full(t) for _, t in rows23], g.ng)
    c3 = _mac_table("stt_cluster3", s, rows23 if stt else [], [g.ng * g.nb * g.r3] * (T * H) if stt else [],
                    [True] * (T * H) if stt else [], g.ng)
    # cluster 4's table: one entry per output row, or with a streamed G4 one per (row, output
    # group), the segments that wait for their G4 chunk (gen/hosttiming.py); a row's
    # dependencies hold for its first segment, its progress counts at its last
    nseg = g.go if s.w4_ring else 1
    segs4 = [(yo, t, go) for yo, t in rows4 for go in range(nseg)]
    c4 = EngineTable("cluster4", segs4, [g.wo * (g.go // nseg) * g.sub * s.rank] * len(segs4),
                     segments=nseg)
    idx1 = {wt: i for i, wt in enumerate(rows1)}
    seq23 = {qt: j for j, qt in enumerate(rows23)}
    seq4 = {yt: u * nseg + nseg - 1 for u, yt in enumerate(rows4)}      # a row's last segment
    back = g.lif_read_back_rows(s.order)
    # a neuron's u(t-1) read would come < E4_WRITE_LATENCY + 1 cycles after its issue
    short_rows = back * c4.lens[0] * nseg < E4_WRITE_LATENCY + 1 if rows4 else False
    # a window row waits for the E2 row that last reads the row its line1 slot held: row
    # (w - 3, t) (row outer: slots (w mod 3) * T + t); the row 3T back in E1's order (timestep
    # outer: one ring of 3T rows), last read by E2 row (min(w', H - 1), t')
    if s.order:
        slot_wait = {}
        for i in range(3 * T, len(rows1)):
            w, t = rows1[i - 3 * T]
            slot_wait[i] = seq23[(min(w, H - 1), t)]
    else:
        slot_wait = {i: seq23[(w - 3, t)] for i, (w, t) in enumerate(rows1) if w >= 3}

    def line4_free(q, t):
        """line4 slot of q23 row (q, t): row (q - 3, t) consumed by cluster 4."""
        return c4.after(seq4[((q - 3) // step, t)], RELEASE_VISIBLE) if q >= 3 else 0

    def ready1(u):
        i = c1.seg_row[u]
        t0 = c1.free(u)
        if u != c1.row_first[i]:             # a row's later rank group: no row-level dependency
            return t0
        return _latest(t0, c23.row_after(slot_wait[i], RELEASE_VISIBLE)) if i in slot_wait else t0

    # STT: cluster 2's row j waits for its row2 half (cluster 3 done with row j - 2); with the
    # paper's sequential chaining for cluster 3 to finish row j - 1 (gen.config.Arrangement)
    stt_back = 1 if cfg.arrangement.stt_chain == "sequential" else 2

    def ready23(u):
        j = c23.seg_row[u]
        if u != c23.row_first[j]:            # a row's later group: no row-level dependency
            return c23.free(u)
        q, t = rows23[j]
        out = (c3.row_after(j - stt_back, RELEASE_VISIBLE) if j >= stt_back else 0) if stt else line4_free(q, t)
        return _latest(c23.free(u), c1.row_after(idx1[(q + 2, t)], c1_visible), out)

    # STT's pipelined cluster 3 starts a row once cluster 2 has written the row's first rank
    # group (q2 channels 0..Pk-1) and waits inside it, at the first step of each input block
    # ``jb = k``, for cluster 2's group k (the engine's ``q2_groups``); the sequential chain
    # keeps the two clusters apart (a whole q2 row first)
    early3 = stt and cfg.arrangement.stt_chain == "pipelined" and g.ng > 1
    jb_first = _first_jb_steps(g) if early3 else ()

    def q2_group_visible(j, k):
        """Cycle from which cluster 2's rank group ``k`` of row ``j`` is seen by cluster 3."""
        if c23.segments_per_row(j) > 1:          # streamed G2/G3: one entry per group
            return c23.after(c23.row_first[j] + k, MAC_ROW_VISIBLE)
        u = c23.row_first[j]
        return c23.starts[u] + (k + 1) * (c23.lens[u] // g.ng) - 1 + MAC_ROW_VISIBLE

    def ready3(u):
        j = c3.seg_row[u]
        if u != c3.row_first[j]:
            return c3.free(u)
        q, t = rows23[j]
        if early3:          # the row's later groups decide its inner stalls: all of it scheduled
            if c23.row_last[j] >= len(c23.starts):
                return None
            return _latest(c3.free(u), q2_group_visible(j, 0), line4_free(q, t))
        return _latest(c3.free(u), c23.row_after(j, MAC_ROW_VISIBLE), line4_free(q, t))

    def inner3(u, start):
        """Cycles the row's first group stalls for cluster 2's later groups."""
        j = c3.seg_row[u]
        if u != c3.row_first[j]:
            return 0
        extra = 0
        for k, p in enumerate(jb_first, start=1):
            extra += max(0, q2_group_visible(j, k) - (start + p + extra))
        return extra

    if early3:
        c3.inner = inner3

    def ready4(u):
        yo, t, go = segs4[u]
        if go:                         # the row's later segments: no row-level dependency
            return c4.free(u)
        writer = c3 if stt else c23
        deps = [writer.row_after(seq23[(step * yo + step - 1, t)], LINE4_ROW_VISIBLE)]
        if short_rows and t > 0:       # wait until the row read back is written (+1 visible)
            deps.append(c4.after(u - back * nseg + nseg - 1, E4_WRITE_LATENCY + 1))
        return _latest(c4.free(u), *deps)

    c1.ready, c23.ready, c3.ready, c4.ready = ready1, ready23, ready3, ready4
    tables = {"cluster1": c1, "cluster23": c23, "stt_cluster3": c3, "cluster4": c4}
    return {k: v for k, v in tables.items() if v.rows}


def _first_jb_steps(g: TileGeometry) -> tuple[int, ...]:
    """For STT's cluster 3: the issue position, in a row's first output group, of the first
    step of each input block ``jb = 1 .. ng - 1`` (:class:`gen.engines.macloop.MacRowLoop`'s
    order: block groups of up to ``B`` blocks, chunks of up to ``C`` reduction steps, the
    group's blocks, the chunk's steps; a reduction step ``s`` has ``jb = s // (3 Pk)``). The
    first block group covers every ``jb``, so the later ones never wait."""
    nbi = _groups(g.nb, g.chunk_blocks)[0]
    out = []
    for k in range(1, g.ng):
        s = 3 * g.Pk * k
        if nbi == 1:
            out.append(s)
        else:
            ci = s // g.chunk_steps
            out.append(ci * g.chunk_steps * nbi + s - ci * g.chunk_steps)
    return tuple(out)


def _c1_table(s: TileShape, rows1, lens, ng: int) -> EngineTable:
    """Cluster 1's table: one entry per window row, or with a streamed G1 (``s.w1_ring``) one
    per G1 chunk of each window row inside the layer (``ng`` of them: the zero-skipping
    engine's rank groups, the dense engine's ranks; outer within the row, each the same
    steps), the ``m``-th such entry waiting for G1 chunk ``m``; a row outside the layer stays
    one entry and needs no chunk."""
    if not s.w1_ring:
        return EngineTable("cluster1", rows1, lens)
    top, bottom = s.zero_halo[:2]
    entries, seg_lens, seg_row, chunk_of = [], [], [], []
    m = 0
    for j, ((w, t), n) in enumerate(zip(rows1, lens)):
        zero = (w == 0 and top) or (w == s.height + 1 and bottom)
        parts = 1 if zero else ng
        for k in range(parts):
            entries.append(((w, t), k))
            seg_lens.append(n // parts if isinstance(n, int) else n / parts)
            seg_row.append(j)
            chunk_of.append(None if zero else m)
            m += not zero
    return EngineTable("cluster1", entries, seg_lens, seg_row=seg_row, chunk_of=chunk_of)


def _mac_table(name: str, s: TileShape, rows, lens, macs, ng: int) -> EngineTable:
    """The table of a clusters-2/3 engine: one entry per row, or with streamed G2/G3
    (``s.w23_ring``) one per output rank group of each MAC row (``macs``; HTT's copy rows
    stay one entry), the ``m``-th such group waiting for chunk ``m``."""
    if not s.w23_ring:
        return EngineTable(name, rows, lens)
    entries, seg_lens, seg_row, chunk_of = [], [], [], []
    m = 0
    for j, (row, n, mac) in enumerate(zip(rows, lens, macs)):
        parts = ng if mac else 1
        for k in range(parts):
            entries.append((row, k))
            seg_lens.append(n // parts)
            seg_row.append(j)
            chunk_of.append(m if mac else None)
            m += bool(mac)
    return EngineTable(name, entries, seg_lens, seg_row=seg_row, chunk_of=chunk_of)


def schedule_ready_rows(tables: Sequence[EngineTable]) -> None:
    """Place every row whose dependencies are known at its first ready cycle (rows in order
    per engine); rows that wait for something not yet scheduled (the host, gen/hosttiming.py)
    stay unscheduled."""
    progress = True
    while progress:
        progress = False
        for e in tables:
            while len(e.starts) < len(e.rows):
                t0 = e.ready(len(e.starts))
                if t0 is None:
                    break
                e.place(t0)
                progress = True


def _schedule(tables: Sequence[EngineTable]) -> None:
    """Place every row of every engine at its first ready cycle (rows in order per engine)."""
    schedule_ready_rows(tables)
    if any(len(e.starts) < len(e.rows) for e in tables):
        raise AssertionError("cycle model deadlocked")  # pragma: no cover


def tile_timing(cfg: HardwareConfig, s: TileShape, c1_lens: Sequence[int] | None = None) -> dict[str, int]:
    """Exact cycles of one tile: ``cycles`` (the counter), busy and stall cycles per engine
    (with a host that keeps up). ``c1_lens``: the zero-skipping cluster 1's row lengths
    (:func:`gen.zero_skip.zero_skip_row_lens`; without them, its all-ones bound)."""
    tables = _engine_tables(cfg, s, c1_lens)
    _schedule(list(tables.values()))
    out = timing_counters(s, tables)
    if cfg.arrangement.cluster1 == "zero_skip":
        out["c1_stall"] += 1                      # the tile's first cycle fetches the first word
    return out


def timing_counters(s: TileShape, tables: Mapping[str, EngineTable], in_wait: int = 0,
                    lif_wait: int = 0, w4_wait: int = 0, base23: Mapping[int, int] | None = None,
                    base3: Mapping[int, int] | None = None, w1_wait: int = 0) -> dict[str, int]:
    """The timing counters of a scheduled tile; ``in_wait``/``lif_wait``/``w4_wait``: the
    cycles cluster 1 and cluster 4 waited for the host (gen/hosttiming.py), counted as
    ``c1_in_wait``, ``lif_stall`` and ``c4_w_wait`` (a streamed G4's chunk) instead of
    ``c1_stall`` and ``c4_stall``. ``base23``/``base3``: per entry of the clusters-2/3
    tables, the cycle its own conditions held (gen/hosttiming.py; the cycles from there to its
    start waited for a streamed G2/G3 chunk: ``c2_w_wait``, ``c3_w_wait``). ``w1_wait``: the
    cycles cluster 1 waited for a streamed G1 chunk (``c1_w_wait`` instead of ``c1_stall``)."""
    c1, c23, c4 = tables["cluster1"], tables["cluster23"], tables["cluster4"]
    stt = s.mode == "stt"
    rows23 = _rows(s.height, s.timesteps, s.order)
    merging = [j for j, (_, t) in enumerate(rows23) if not stt and s.full(t)]
    b23 = base23 if base23 is not None else c23.starts
    stall_before = [b23[c23.row_first[j]] - c23.free(c23.row_first[j]) for j in range(len(rows23))]
    w2_wait = sum(c23.starts[u] - b23[u] for u in range(len(c23.rows)))
    out = {"cycles": c4.end - 1 + PIPE_TAIL,
           "c1_busy": c1.busy, "c1_stall": c1.end - c1.busy - in_wait - w1_wait, "c1_in_wait": in_wait,
           "c1_w_wait": w1_wait,
           "c2_busy": c23.busy, "c2_stall": c23.end - c23.busy - w2_wait, "c2_w_wait": w2_wait,
           "c3_w_wait": 0,
           "c4_busy": c4.busy, "c4_stall": c4.end - c4.busy - lif_wait - w4_wait,
           "adder_stall": sum(stall_before[j] for j in merging), "lif_stall": lif_wait,
           "c4_w_wait": w4_wait}
    if stt:
        c3 = tables["stt_cluster3"]
        b3 = base3 if base3 is not None else c3.starts
        w3_wait = sum(c3.starts[u] - b3[u] for u in range(len(c3.rows)))
        out["c3_busy"] = c3.busy
        out["c3_stall"] = c3.end - c3.busy - w3_wait
        out["c3_w_wait"] = w3_wait
    else:
        out["c3_busy"] = sum(c23.row_len(j) for j in merging)
        out["c3_stall"] = out["adder_stall"]
    return out


def tile_counters(cfg: HardwareConfig, s: TileShape, window_ones: int | None = None,
                  spikes_out: int | None = None, words_in: int | None = None,
                  words_out: int | None = None, c1_lens: Sequence[int] | None = None) -> dict[str, int]:
    """Every counter of one tile. ``window_ones`` (number of 1s in the input window, all
    timesteps) gives ``c1_adds``; ``spikes_out``, ``words_in``/``words_out`` (from
    :class:`gen.driver.TileProgram`) are data-dependent and passed through. Missing
    data-dependent values are left out of the result. ``c1_lens``: the zero-skipping
    cluster 1's row lengths (:func:`gen.zero_skip.zero_skip_row_lens`), which give its cycles
    (without them: its all-ones bound) and, with ``window_ones``, its ``w1_reads``."""
    g = TileGeometry.of_shape(cfg, s)
    T, H, W, r = s.timesteps, s.height, s.width, s.rank
    stt = s.mode == "stt"
    n_full = sum(1 for t in range(T) if s.full(t))
    n_copy = T - n_full
    acc2 = row_accesses(r, g.Pk, g.Px, g.nbe2, g.chunk_blocks, g.chunk_steps)
    acc3 = row_accesses(r, g.Pk, g.Px, g.nb, g.chunk_blocks, g.chunk_steps)
    mac_rows = H * n_full                       # E2 rows that run cluster 2
    per_g = lambda a, k: a[k] * g.ng * mac_rows  # noqa: E731
    out_px = g.ho * g.wo * g.go
    c = {
        "c1_slots": T * g.n1 * s.in_channels * r,
        "c2_macs": mac_rows * r * g.cols2 * g.r3,
        "c3_macs": mac_rows * r * W * g.r3,
        "c4_macs": T * g.ho * g.wo * g.sub * s.out_channels * r,
        "adder_busy": 0 if stt else mac_rows * g.ng * g.nb,
        "adds": 0 if stt else mac_rows * r * W,
        "lif_busy": T * out_px,
        "lif_updates": T * g.ho * g.wo * s.out_channels,
        "w1_reads": T * g.n1 * r * g.ncc,
        "w2_reads": per_g(acc2, "glb"),
        "w3_reads": per_g(acc3 if stt else acc2, "glb"),
        "w4_reads": T * out_px * g.sub * r,
        "affine_reads": T * out_px,
        "spike_in_reads": T * g.n1 * g.cw,
        # tap rows outside the layer (zero halo) are not read
        "line1_reads": (per_g(acc2, "portA") + per_g(acc2, "portB") + (0 if stt else per_g(acc2, "portC"))
                        - n_full * g.ng * (int(bool(s.zero_halo[0])) * acc2["portA0"]
                                           + int(bool(s.zero_halo[1])) * (acc2["portA"] - acc2["portA0"]))
                        + H * n_copy * g.nb * g.ng),
        "line1_writes": T * g.n1 * r,
        "row2_reads": per_g(acc3, "portB") + per_g(acc3, "portC") if stt else 0,
        "row2_writes": mac_rows * g.ng * g.nbe2 if stt else 0,
        "line4_reads": T * out_px * g.sub * g.ng,
        "line4_writes": T * H * g.nb * g.ng,
        "c2_spad_reads": per_g(acc2, "spad_w_rd") + per_g(acc2, "spad_p_rd"),
        "c2_spad_writes": per_g(acc2, "spad_w_wr") + per_g(acc2, "spad_p_wr"),
        "c3_spad_reads": per_g(acc3 if stt else acc2, "spad_w_rd") + per_g(acc3 if stt else acc2, "spad_p_rd"),
        "c3_spad_writes": per_g(acc3 if stt else acc2, "spad_w_wr") + per_g(acc3 if stt else acc2, "spad_p_wr"),
        "residual_reads": T * out_px if s.residual else 0,
        "membrane_reads": (T - 1) * out_px,
        "membrane_writes": T * out_px,
        "spikes_writes": T * out_px,
        "trace_writes": T * out_px,
    }
    if stt:
        c["c3_macs"] = mac_rows * r * W * g.r3
    c.update(tile_timing(cfg, s, c1_lens))
    if window_ones is not None:
        c["c1_adds"] = window_ones * r
    if cfg.arrangement.cluster1 == "zero_skip":
        _zero_skip_cluster1(c, cfg, s, g, window_ones, c1_lens)
    elif s.w1_ring:                               # streamed G1: every rank re-reads the row
        c["spike_in_reads"] *= r
    if spikes_out is not None:
        c["spikes_out"] = spikes_out
    if words_in is not None:
        c["host_words_in"] = words_in
    if words_out is not None:
        c["host_words_out"] = words_out
    return c


def _zero_skip_cluster1(c: dict, cfg: HardwareConfig, s: TileShape, g: TileGeometry,
                        window_ones: int | None, c1_lens: Sequence[int] | None) -> None:
    """The zero-skipping cluster 1's access counters (gen/engines/cluster1_zero_skip.py): one
    ``line1`` write per pixel and rank group, one G1 read per 1-spike and rank group, and
    ``c1_slots``: every step of a rank group offers its ranks' lanes (``r`` per pixel step)."""
    top, bottom = s.zero_halo[:2]
    rows1 = e1_rows(s.height, s.timesteps, s.order)
    lens = _e1_row_lens(cfg, s, g, rows1, c1_lens)
    computed = [n for n, (w, _) in zip(lens, rows1) if not ((w == 0 and top) or (w == s.height + 1 and bottom))]
    c["line1_writes"] = s.timesteps * g.n1 * g.ng
    steps = sum(computed)                         # float: expected lengths (model/tile.py)
    c["c1_slots"] = steps // g.ng * s.rank if isinstance(steps, int) else steps / g.ng * s.rank
    # without the data: the all-ones bound, as the cycles
    ones = window_ones if window_ones is not None else s.timesteps * g.n1 * s.in_channels
    c["w1_reads"] = ones * g.ng
    if s.w1_ring:                                 # streamed G1: every rank group re-reads the row
        c["spike_in_reads"] *= g.ng


def ideal_cycles(cfg: HardwareConfig, in_channels: int, rank: int, out_channels: int,
                 height: int, width: int, schedule: Sequence[bool], mode: str) -> dict[str, float]:
    """The ideal bound of a whole layer (issue 4, section 5): each cluster's operations
    (no halo, no padding of PEs) divided by its PEs; the bound is the busiest cluster's.
    ``height, width`` at input resolution (before pooling)."""
    p = cfg.lanes
    hw_ = height * width
    full = sum(1 for f in schedule if f) if mode == "htt" else len(schedule)
    T = len(schedule)
    ops = {
        "cluster1": T * hw_ * in_channels * rank,
        "cluster2": full * hw_ * 3 * rank * rank,
        "cluster3": full * hw_ * 3 * rank * rank,
        "cluster4": T * hw_ * rank * out_channels,
    }
    per = {k: v / p for k, v in ops.items()}
    busiest = max(per, key=per.get)
    return {"bound": per[busiest], "busiest": busiest, **{f"{k}_ops": v for k, v in ops.items()}}
