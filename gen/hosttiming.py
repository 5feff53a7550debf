"""The host's share of a tile's cycles: the cycle model with a host at the port's rate.

:func:`gen.cyclemodel.tile_timing` assumes a host that always keeps up. Here the host is the
real one: :func:`gen.host_program.run_tile`, the same coroutine the amaranth.sim tests and the
cocotb testbench run, executed on :class:`ModelBus`, a bus that answers from the cycle
model instead of a simulator. The port moves one beat per cycle (a register or one region
sub-word of ``widths.host_data`` bits: the configured bandwidth), so the host delivers at
most that rate and no faster, like the testbenches. The engines' row tables of
:mod:`gen.cyclemodel` get the host's row handshakes as further dependencies (cluster 1 waits
for ``in_rows``, cluster 4 for ``res_rows`` and for ``out_taken`` to free an output slot),
and the bus's register reads and ``event`` line come from the rows scheduled so far. Both
sides advance together, so the result is exact: ``cycles``, ``c1_in_wait``, ``lif_stall``
and every other stall counter equal the RTL's (tests/gen/test_host_timing.py, amaranth.sim;
tests/cosim, Verilator), and ``host_span`` is the host's bus cycles for the whole tile
(set-up, weights, streaming, the reads after ``done``).

A tile that streams G4 (``TileShape.w4_ring``, descriptor ``w4_ring``) runs cluster 4's rows as
one table entry per output group (:func:`gen.cyclemodel._engine_tables`): each waits for the
host's chunk (``w4_chunks``) after the row's own host dependencies, and those cycles count as
``c4_w_wait``; ``w4_consumed`` steps at each group's last issue.

The zero-skipping cluster 1 (``arrangement.cluster1 = "zero_skip"``) has data-dependent rows:
:func:`host_tile_timing` takes its row lengths (``c1_lens``: exact from the tile's input
window, :func:`gen.zero_skip.zero_skip_row_lens`; or expected from a spike density,
:func:`gen.zero_skip.expected_row_lens`) and refuses to guess them. That engine steps one cycle
after it issues a row's word, so a row's ``in_consumed`` step (at its last step) comes one
cycle later than the dense engine's (at its last issue), and the tile's first cycle, which
fetches the first word, is a ``c1_stall``.

Register timing (gen/host.py, gen/engines/): a streaming register written in bus cycle
``w`` is visible to the engines from ``w + 1``; a read strobe in cycle ``c`` samples the
value of cycle ``c`` (data ``HOST_READ_LATENCY`` cycles later); ``event`` is high in cycle
``c`` when the last of {a change of the datapath's progress registers or ``done``, a read
of ``status``} in cycles ``< c`` was a change (a change wins over a read in the same
cycle). The engines' first issue is the cycle after the start write (or after the
geometry settles, ``pending``); that is cycle 0 of :func:`gen.cyclemodel.tile_timing`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

from .config import HardwareConfig
from .cyclemodel import (E4_WRITE_LATENCY, PIPE_TAIL, TileShape, _engine_tables, _latest, _schedule,
                         e1_rows, schedule_ready_rows, timing_counters)
from .host_program import STREAMING_REGISTERS

__all__ = ["HostTraffic", "ModelBus", "host_tile_timing", "traffic_of_program", "shape_traffic",
           "geometry_latency"]

#: placeholder addresses of the synthetic program (never a register address)
_REGION, _DESC = -1, -2


@lru_cache(maxsize=None)
def geometry_latency() -> int:
    """Cycles after a descriptor write until the tile geometry is valid (a start sooner
    waits: ``pending``)."""
    from .tilegeo import _depths       # TileGeometryUnit.latency, without building a unit
    return max(_depths().values())


@dataclass(frozen=True)
class HostTraffic:
    """The bus beats of one tile as :func:`gen.host_program.run_tile` moves them: set-up writes (the
    last descriptor write's position among them: the geometry settles after it), the writes
    of each input and residual row (region sub-words), the reads of each output row, the
    counter reads after ``done``, the ring sizes."""
    setup: int
    last_desc: int
    in_rows: tuple[int, ...]
    res_rows: tuple[int, ...]
    out_rows: tuple[int, ...]
    counter_reads: int
    rings: tuple[tuple[str, int], ...]
    w4_chunks: tuple[int, ...] = ()     # a streamed G4: the beats of each chunk
    w2_chunks: tuple[int, ...] = ()     # streamed G2/G3: the beats of each chunk
    w3_chunks: tuple[int, ...] = ()
    w1_chunks: tuple[int, ...] = ()     # a streamed G1: the beats of each chunk
    early_start: bool = False           # TileProgram.early_start (chunks of 0 beats: loaded slots)
    last_groups: tuple[int, ...] = ()   # the last output row's reads per output group (read early)


def traffic_of_program(prog, hmap) -> HostTraffic:
    """:class:`HostTraffic` of a :class:`gen.host_program.TileProgram`."""
    desc = {r.address for r in hmap.registers
            if r.name in _descriptor_names() or r.name.startswith("desc_word")}
    last = max((i for i, (a, _) in enumerate(prog.setup) if a in desc), default=-1)
    return HostTraffic(len(prog.setup), last, tuple(len(r) for r in prog.in_rows),
                       tuple(len(r) for r in prog.res_rows), tuple(len(r) for r in prog.out_rows),
                       len(prog.counter_reads), tuple(sorted(prog.rings.items())),
                       tuple(len(c) for c in prog.w4_chunks), tuple(len(c) for c in prog.w2_chunks),
                       tuple(len(c) for c in prog.w3_chunks), tuple(len(c) for c in prog.w1_chunks),
                       bool(getattr(prog, "early_start", False)),
                       tuple(len(g) for g in getattr(prog, "last_row_groups", ())))


@lru_cache(maxsize=1)
def _descriptor_names() -> frozenset[str]:
    from .hostmap import DESCRIPTOR_FIELDS
    return frozenset(n for n, _, _ in DESCRIPTOR_FIELDS)


def shape_traffic(cfg: HardwareConfig, s: TileShape, load_weights: bool = True,
                  read_counters: bool = False) -> HostTraffic:
    """:class:`HostTraffic` of a tile shape, counted from the geometry and the address map
    (no layer, no data; equal to :func:`traffic_of_program` of the driver's program, tested):
    the counter-clear write (which zeroes the streaming counts too), the descriptor (its
    ``desc_word`` registers), the cores and
    affine words when ``load_weights``; input rows of the window's computed pixels, residual
    and output rows of ``widths.host_data``-bit beats."""
    from .host_program import input_pixel_order, input_row_order, ring_rows, whole_rings
    from .geometry import TileGeometry
    from .hostmap import descriptor_words
    from .zero_skip import w1_chunk_words, w1_depth, w1_row_chunks
    hmap = _host_map(cfg)
    sub = {r.name: r.subwords for r in hmap.regions}
    g = TileGeometry.of_shape(cfg, s)
    n_desc = descriptor_words(cfg.widths.host_data)      # the descriptor in host words
    resident_w4 = 0 if s.w4_ring else g.go * s.rank * sub["w4"]
    resident_w23 = 0 if s.w23_ring else g.ng * g.ns * (sub["w2"] + sub["w3"])
    w1_words = w1_depth(cfg, s.rank, s.in_channels, s.pack)
    resident_w1 = 0 if s.w1_ring else w1_words * sub["w1"]
    early = bool(getattr(s, "early_start", False))     # the affine words travel with G4's chunks
    weights = (resident_w1 + resident_w23
               + resident_w4 + (0 if early else g.go * sub["affine"])) if load_weights else 0
    row_in = len(input_pixel_order(s.width, s.zero_halo)) * g.cw * sub["spike_in"]
    n_in = len(input_row_order(s.height, s.timesteps, s.zero_halo, s.order))
    n_out = s.timesteps * g.ho
    rings = ring_rows(cfg, g, s.order)
    if s.w4_ring:
        rings["w4"] = s.w4_ring
    n_chunks23 = s.height * sum(1 for t in range(s.timesteps) if s.full(t)) * g.ng if s.w23_ring else 0
    if s.w23_ring:
        rings["w23"] = s.w23_ring
    if s.w1_ring:        # per window row sent, one chunk per rank group (zero skipping) or rank
        rings["w1"] = s.w1_ring
    w1_chunks = ((w1_chunk_words(cfg, s.in_channels, s.pack) * sub["w1"],)
                 * (n_in * w1_row_chunks(cfg, s.rank, s.pack)) if s.w1_ring else ())
    w4_chunks = (s.rank * sub["w4"],) * (n_out * g.go) if s.w4_ring else ()
    w2_chunks, w3_chunks = (g.ns * sub["w2"],) * n_chunks23, (g.ns * sub["w3"],) * n_chunks23
    if early:     # a ring that holds the whole core: its first pass written once, the rest declared
        whole = whole_rings(cfg, g, s)

        def once(chunks, ring, core):
            return tuple(0 if whole[core] and not (load_weights and i < ring) else c
                         for i, c in enumerate(chunks))
        w1_chunks, w4_chunks = once(w1_chunks, s.w1_ring, "w1"), once(w4_chunks, s.w4_ring, "w4")
        w2_chunks, w3_chunks = once(w2_chunks, s.w23_ring, "w23"), once(w3_chunks, s.w23_ring, "w23")
        if load_weights:  # the affine words with G4's first output row of chunks
            w4_chunks = tuple(c + sub["affine"] if i < g.go else c for i, c in enumerate(w4_chunks))
    return HostTraffic(1 + n_desc + weights,
                       n_desc,
                       (row_in,) * n_in,
                       (g.out_row_words * sub["residual"],) * n_out if s.residual else (),
                       (g.out_row_words * (sub["membrane"] + sub["trace"]),) * n_out,   # membrane and trace words
                       2 * len(hmap.counters) if read_counters else 0, tuple(sorted(rings.items())),
                       w4_chunks, w2_chunks, w3_chunks, w1_chunks, early,
                       (g.wo * (sub["membrane"] + sub["trace"]),) * g.go if g.go > 1 else ())


_MAPS: dict[int, tuple[HardwareConfig, object]] = {}


def _host_map(cfg: HardwareConfig):
    """``gen.hostmap.host_map(cfg)``, kept per configuration object (the planner asks often)."""
    from .hostmap import host_map
    key = id(cfg)
    if key not in _MAPS or _MAPS[key][0] is not cfg:
        _MAPS[key] = (cfg, host_map(cfg))
    return _MAPS[key][1]


class _Registers:
    """Names of the streaming registers as :func:`gen.host_program.run_tile` addresses them."""
    NAMES = ("ctrl",) + STREAMING_REGISTERS

    def __init__(self):
        self.addr = {n: -10 - i for i, n in enumerate(self.NAMES)}
        self.name = {a: n for n, a in self.addr.items()}


@dataclass
class _ProgressTimes:
    """The progress registers' step times found so far, and where each scan goes on."""
    inc: list = field(default_factory=list)
    res: list = field(default_factory=list)
    out: list = field(default_factory=list)
    w4c: list = field(default_factory=list)
    w2c: list = field(default_factory=list)
    w3c: list = field(default_factory=list)
    w1c: list = field(default_factory=list)
    in_next: int = 0
    w1_next: int = 0
    end_next: int = 0
    w4_next: int = 0
    w2_next: int = 0
    w3_next: int = 0


class ModelBus:
    """:class:`gen.host_program.HostBus` on the cycle model: one write per cycle, ``n`` pipelined
    reads in ``n + 1`` cycles, ``wait_event`` until the modelled ``event`` line is high.

    ``fresh``: no tile has run since reset (otherwise the start resets the progress
    registers and ``done`` from the previous tile's values: a change the ``event`` line sees).
    """

    def __init__(self, cfg: HardwareConfig, s: TileShape, regs: _Registers, fresh: bool,
                 c1_lens: Sequence[float] | None = None):
        self.s, self.regs, self.fresh = s, regs, fresh
        self.now = 0                        # bus cycle from the tile's first set-up write
        self.origin: int | None = None      # bus cycle of the engines' cycle 0
        self.last_desc = -1
        self.latency = geometry_latency()
        # bus cycle each count is seen
        self.visible = {"in_rows": [], "res_rows": [], "out_taken": [], "w4_chunks": [], "w2_chunks": [],
                        "w3_chunks": [], "w1_chunks": []}
        self.last_status = None
        self.last_groups: tuple[int, ...] = ()    # HostTraffic.last_groups (out_groups' groups)
        self.tables = tables = _engine_tables(cfg, s, c1_lens)
        # the zero-skipping engine counts a row consumed at its last step, one cycle after its
        # last issue (the table's row end)
        self.c1_step_lag = int(cfg.arrangement.cluster1 == "zero_skip")
        self.c1, self.c4 = tables["cluster1"], tables["cluster4"]
        self._host_dependencies()
        self.scheduled = 0
        self._progress = _ProgressTimes(end_next=self.c4.segments - 1)

    # ---- the engines' host handshakes ------------------------------------------------------
    def _seen(self, name: str, k: int) -> int | None:
        """Engine cycle from which the host's count ``name`` exceeds ``k`` (None: not yet)."""
        v = self.visible[name]
        return None if k >= len(v) else max(0, v[k] - self.origin)

    def _host_dependencies(self) -> None:
        s = self.s
        top, bottom = s.zero_halo[0], s.zero_halo[1]
        c1 = self.c1
        idx, n = [], 0
        for w, _ in e1_rows(s.height, s.timesteps, s.order):
            zero = (w == 0 and top) or (w == s.height + 1 and bottom)
            idx.append(None if zero else n)
            n += 0 if zero else 1
        self.in_index = idx
        base1, base4 = self.c1.ready, self.c4.ready
        self.base1, self.host1, self.base4, self.host4 = {}, {}, {}, {}
        nseg = self.c4.segments
        streamed = bool(s.w4_ring)

        def ready1(u):
            """Entry ``u`` of cluster 1 (window row ``i``, or a rank group of it with a
            streamed G1): its row's input row (at the row's first entry), then a streamed G1's
            chunk; the cycles in between count as ``c1_in_wait``, then as ``c1_w_wait``."""
            t0 = base1(u)
            if t0 is None:
                return None
            self.base1[u] = t0
            i = c1.seg_row[u]
            first = u == c1.row_first[i]
            host = t0 if idx[i] is None or not first else _latest(t0, self._seen("in_rows", idx[i]))
            if host is None:
                return None
            self.host1[u] = host
            m = c1.chunk_of[u] if c1.chunk_of is not None else None
            return host if m is None else _latest(host, self._seen("w1_chunks", m))

        def ready4(u):
            """Segment ``u`` (output row ``u // nseg``): the row's host dependencies (a free
            output slot, the residual row), then a streamed G4's chunk ``u``; the cycles in
            between count as ``lif_stall``, then as ``c4_w_wait``."""
            t0 = base4(u)
            if t0 is None:
                return None
            self.base4[u] = t0
            row = u // nseg
            ring = dict(self.rings)["out"]
            deps = [self._seen("out_taken", row - ring) if row >= ring else 0]
            if s.residual:
                deps.append(self._seen("res_rows", row))
            host = _latest(t0, *deps)
            if host is None:
                return None
            self.host4[u] = host
            return _latest(host, self._seen("w4_chunks", u)) if streamed else host

        self.c1.ready, self.c4.ready = ready1, ready4
        self.base23, self.base3 = {}, {}
        if s.w23_ring:
            self._chunk_dependencies()

    def _chunk_dependencies(self) -> None:
        """Streamed G2/G3: each MAC group of the clusters-2/3 engines waits for its chunk after
        its own conditions (``c2_w_wait``, ``c3_w_wait``): cluster 2 for G2's, and for G3's
        while cluster 3 runs in lock step (PTT, HTT); STT's cluster-3 engine for G3's."""
        stt = self.s.mode == "stt"
        for name, regs, base in (("cluster23", ("w2_chunks",) if stt else ("w2_chunks", "w3_chunks"), self.base23),
                                 ("stt_cluster3", ("w3_chunks",), self.base3)):
            table = self.tables.get(name)
            if table is None:
                continue

            def ready(u, table=table, regs=regs, base=base, own=table.ready):
                t0 = own(u)
                if t0 is None:
                    return None
                base[u] = t0
                m = table.chunk_of[u]
                return t0 if m is None else _latest(t0, *(self._seen(r, m) for r in regs))
            table.ready = ready

    # ---- what the host reads -----------------------------------------------------------------
    def _advance(self) -> None:
        if self.origin is not None:
            schedule_ready_rows(list(self.tables.values()))

    def _count(self, times: list[int], cycle: int) -> int:
        return bisect_right(times, cycle)

    def _progress_times(self):
        """Engine cycles at which each progress register is seen to step (in order). Rows are
        only ever appended to the engines' tables, so each list grows by the entries scheduled
        since the last call (the host reads these registers hundreds of thousands of times per
        streamed layer: recomputing them from the first row made planning quadratic)."""
        c1, c4, p, lag = self.c1, self.c4, self._progress, self.c1_step_lag
        n1 = len(c1.starts)
        while p.in_next < len(self.in_index):
            i = p.in_next
            if self.in_index[i] is not None:
                if c1.row_last[i] >= n1:
                    break
                p.inc.append(c1.last(c1.row_last[i]) + 1 + lag)
            p.in_next += 1
        if self.s.w1_ring:
            p.w1c += [c1.last(u) + 1 + lag for u in range(p.w1_next, n1) if c1.chunk_of[u] is not None]
            p.w1_next = n1
        nseg, n4 = c4.segments, len(c4.starts)
        ends = range(p.end_next, n4, nseg)                   # each row's last segment
        if self.s.residual:
            p.res += [c4.last(u) + 1 for u in ends]
        p.out += [c4.last(u) + E4_WRITE_LATENCY + 1 for u in ends]
        p.end_next = ends[-1] + nseg if ends else p.end_next
        if self.s.w4_ring:
            p.w4c += [c4.last(u) + 1 for u in range(p.w4_next, n4)]
            p.w4_next = n4
        if self.s.w23_ring:
            c23, c3 = self.tables["cluster23"], self.tables.get("stt_cluster3")
            n23 = len(c23.starts)
            p.w2c += [c23.last(u) + 1 for u in range(p.w2_next, n23) if c23.chunk_of[u] is not None]
            p.w2_next = n23
            if c3 is not None:
                n3 = len(c3.starts)
                p.w3c += [c3.last(u) + 1 for u in range(p.w3_next, n3)]
                p.w3_next = n3
        return p.inc, p.res, p.out, p.w4c, p.w2c, p.w3c if "stt_cluster3" in self.tables else p.w2c, p.w1c

    def _done_cycle(self) -> int | None:
        """Engine cycle from which ``done`` is seen high (None: not known yet)."""
        c4 = self.c4
        if len(c4.starts) < len(c4.rows):
            return None
        return c4.end - 1 + PIPE_TAIL + 1

    def _value(self, name: str, bus_cycle: int, times) -> int:
        """Register ``name`` as read in ``bus_cycle`` (``times``: :meth:`_progress_times`)."""
        t = bus_cycle - self.origin
        inc, res, out, w4c, w2c, w3c, w1c = times
        if name == "status":
            done = self._done_cycle()
            return (1 if t >= 0 else 0) | (2 if done is not None and t >= done else 0)
        if name in self.visible:
            return self._count(self.visible[name], bus_cycle)
        if name == "out_groups":
            return self._out_groups(self._count(out, t), t)
        return self._count({"in_consumed": inc, "res_consumed": res, "out_rows": out,
                            "w4_consumed": w4c, "w2_consumed": w2c, "w3_consumed": w3c,
                            "w1_consumed": w1c}[name], t)

    def _out_groups(self, row: int, t: int) -> int:
        """``out_groups`` at engine cycle ``t`` while ``row`` output rows are complete: the
        groups of output row ``row`` whose last word is written (a group's last issue +
        ``E4_WRITE_LATENCY``, seen a cycle later), but for its last group (the row then
        counts in ``out_rows``, and ``out_groups`` is 0 again). Cluster 4 issues a row's
        groups back to back (its one entry per row), or one entry per group (streamed G4)."""
        c4, nseg = self.c4, self.c4.segments
        go = len(self.last_groups) if self.last_groups else 1
        n = 0
        for k in range(go - 1):
            if nseg > 1:
                u = row * nseg + k
                last = c4.last(u) if u < len(c4.starts) else None
            else:
                last = (c4.starts[row] + (k + 1) * (c4.lens[row] // go) - 1
                        if row < len(c4.starts) else None)
            if last is None or last + E4_WRITE_LATENCY + 1 > t:
                break
            n += 1
        return n

    def _changes(self) -> list[int]:
        """Engine cycles at which the ``event`` line sees a change (sorted)."""
        inc, res, out, w4c, w2c, w3c, w1c = self._progress_times()
        ch = set(inc) | set(res) | set(out) | set(w4c) | set(w2c) | set(w3c) | set(w1c)
        done = self._done_cycle()
        if done is not None:
            ch.add(done)
        if not self.fresh:
            ch.add(0)                 # the start resets the registers and done
        return sorted(ch)

    # ---- HostBus ----------------------------------------------------------------------------
    async def write(self, addr: int, data: int) -> None:
        name = self.regs.name.get(addr)
        if addr == _DESC:
            self.last_desc = self.now
        elif name in self.visible:
            seen = self.visible[name]
            if data < len(seen):
                raise AssertionError("the host's counts only grow within a tile")
            seen += [self.now + 1] * (data - len(seen))
        elif name == "ctrl" and data & 1:
            go = max(self.now, self.last_desc + 1 + self.latency)     # pending until settled
            self.origin = go + 1
        self.now += 1

    async def read(self, addrs) -> list[int]:
        if not addrs:
            return []
        self._advance()
        out = []
        times = self._progress_times()      # (the tables do not grow within one read)
        for i, a in enumerate(addrs):
            name = self.regs.name.get(a)
            if name is None:
                out.append(0)
                continue
            out.append(self._value(name, self.now + i, times))
            if name == "status":
                self.last_status = self.now + i
        self.now += len(addrs) + 1
        return out

    async def wait_event(self) -> None:
        self._advance()
        t_now = self.now - self.origin
        since = self.last_status - self.origin if self.last_status is not None else -(1 << 60)
        x = self._next_change(since)
        if x is None:
            raise AssertionError(f"modelled host waits for an event that never comes (cycle {t_now})")
        self.now = max(self.now, x + 1 + self.origin)

    def _next_change(self, since: int) -> int | None:
        """The first engine cycle ``>= since`` at which the ``event`` line sees a change (the
        first element of :meth:`_changes` from ``since``; each progress list is in time order,
        so a bisection per list, not a sort of all of them per wait)."""
        found = [lst[i] for lst in self._progress_times() if (i := bisect_left(lst, since)) < len(lst)]
        done = self._done_cycle()
        if done is not None and done >= since:
            found.append(done)
        if not self.fresh and 0 >= since:
            found.append(0)
        return min(found, default=None)


class _Program:
    """The synthetic :class:`gen.host_program.TileProgram` :func:`gen.host_program.run_tile` runs on the
    model bus: placeholder addresses, the real counts of beats."""

    def __init__(self, tr: HostTraffic, regs: _Registers):
        a = regs.addr
        setup = [(_REGION, 0)] * tr.setup
        if tr.last_desc >= 0:
            setup[tr.last_desc] = (_DESC, 0)
        self.setup = setup
        self.start = (a["ctrl"], 1)
        self.in_rows = [[(_REGION, 0)] * n for n in tr.in_rows]
        self.w4_chunks = [[(_REGION, 0)] * n for n in tr.w4_chunks]
        self.w2_chunks = [[(_REGION, 0)] * n for n in tr.w2_chunks]
        self.w3_chunks = [[(_REGION, 0)] * n for n in tr.w3_chunks]
        self.w1_chunks = [[(_REGION, 0)] * n for n in tr.w1_chunks]
        self.early_start = tr.early_start
        self.res_rows = [[(_REGION, 0)] * n for n in tr.res_rows]
        self.out_rows = [[_REGION] * n for n in tr.out_rows]
        self.counter_reads = [_REGION] * tr.counter_reads
        bounds = [sum(tr.last_groups[:g]) for g in range(len(tr.last_groups) + 1)]
        self.last_row_groups = [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]
        self.rings = dict(tr.rings)
        self.registers = {n: a[n] for n in STREAMING_REGISTERS}
        self.tile = type("T", (), {"index": -1})()


def _run(coro):
    """Run a coroutine that never suspends (the model bus answers at once)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the model bus suspended")  # pragma: no cover


def host_tile_timing(cfg: HardwareConfig, s: TileShape, traffic: HostTraffic,
                     fresh: bool = False, c1_lens: Sequence[float] | None = None) -> dict[str, int]:
    """:func:`gen.cyclemodel.tile_timing` with the host of :func:`gen.host_program.run_tile` at one
    beat per cycle: every timing counter, plus ``host_span`` (bus cycles of the whole tile
    program, from its first set-up write to its last read) and ``host_setup`` (bus cycles
    before the engines' cycle 0).

    ``c1_lens``: the zero-skipping cluster 1's row lengths, required with
    ``arrangement.cluster1 = "zero_skip"`` (ignored by the dense one) (exact: :func:`gen.zero_skip.zero_skip_row_lens` of
    the tile's window; expected: :func:`gen.zero_skip.expected_row_lens`, then the results are
    the schedule of expected lengths, not integers)."""
    key = (id(cfg), s, traffic, fresh, None if c1_lens is None else tuple(c1_lens))
    hit = _TIMED.get(key)
    if hit is not None and hit[0] is cfg:
        return dict(hit[1])
    out = _host_tile_timing(cfg, s, traffic, fresh, c1_lens)
    if len(_TIMED) >= 512:           # the planner and gen.perf time the same tiles: keep a few
        _TIMED.clear()
    _TIMED[key] = (cfg, out)
    return dict(out)


#: results of :func:`host_tile_timing` by (configuration, shape, traffic, fresh, row lengths)
_TIMED: dict[tuple, tuple[HardwareConfig, dict[str, int]]] = {}


def _host_tile_timing(cfg: HardwareConfig, s: TileShape, traffic: HostTraffic, fresh: bool,
                      c1_lens: Sequence[float] | None) -> dict[str, int]:
    from .host_program import run_tile
    zero_skip = cfg.arrangement.cluster1 == "zero_skip"
    if zero_skip and c1_lens is None:
        raise ValueError("the zero-skipping cluster 1's cycles depend on the spikes: pass c1_lens "
                         "(gen.zero_skip.zero_skip_row_lens of the tile's window, or expected_row_lens)")
    regs = _Registers()
    bus = ModelBus(cfg, s, regs, fresh, c1_lens)
    bus.rings = traffic.rings
    bus.last_groups = traffic.last_groups
    _run(run_tile(bus, _Program(traffic, regs)))
    tables = bus.tables
    _schedule(list(tables.values()))
    return _timing_counters(s, tables, bus)


def _timing_counters(s: TileShape, tables, bus: ModelBus) -> dict[str, int]:
    """The timing counters of a scheduled tile (:func:`gen.cyclemodel.timing_counters`, with
    the host's waits split off: ``c1_in_wait`` from ``c1_stall``, ``lif_stall`` and
    ``c4_w_wait`` from ``c4_stall``) and the host's bus cycles."""
    c1, c4 = tables["cluster1"], tables["cluster4"]
    in_wait = sum(bus.host1[u] - bus.base1[u] for u in range(len(c1.rows)))
    w1_wait = sum(c1.starts[u] - bus.host1[u] for u in range(len(c1.rows)))
    lif = sum(bus.host4[u] - bus.base4[u] for u in range(len(c4.rows)))
    w4_wait = sum(c4.starts[u] - bus.host4[u] for u in range(len(c4.rows)))
    out = timing_counters(s, tables, in_wait, lif, w4_wait, bus.base23 or None, bus.base3 or None, w1_wait)
    out["c1_stall"] += bus.c1_step_lag        # the zero-skipping engine's first-word fetch
    out["host_span"] = bus.now
    out["host_setup"] = bus.origin
    return out
