"""The host's side of a tile, independent of how a tile is planned or encoded: the program
of bus traffic (:class:`TileProgram`), the coroutine that runs it on any bus
(:func:`run_tile`: the amaranth.sim tests, the cocotb testbench and the host-rate model
``gen.hosttiming`` all drive this one), the order of input and output rows and the rows of
the streaming rings. ``gen.driver`` encodes layers into these programs; the host-rate model
times them without a driver, so that the planner (in ``gen.driver``) can rank tilings by it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from .config import HardwareConfig
from .geometry import TileGeometry

__all__ = ["TileResult", "HostBus", "TileProgram", "STREAMING_REGISTERS", "write_all", "run_tile", "input_row_order",
           "output_row_order", "input_pixel_order", "ring_rows", "whole_rings", "last_row_groups"]


#: the host registers :func:`run_tile` addresses by name (``TileProgram.registers``)
STREAMING_REGISTERS = ("status", "in_rows", "res_rows", "out_taken", "in_consumed", "res_consumed",
                       "out_rows", "w4_chunks", "w4_consumed", "w2_chunks", "w2_consumed", "w3_chunks",
                       "w3_consumed", "w1_chunks", "w1_consumed", "out_groups")


@dataclass
class TileResult:
    """Decoded outputs of one tile: ``spikes, membrane [T, Cout_tile, Ho, Wo]`` and counters;
    the trace's ``window`` bits and (pooling layers) ``argmax`` (0..3), the same shape, as
    the RTL wrote them into its trace words (None where not read)."""
    spikes: np.ndarray
    membrane: np.ndarray
    counters: dict[str, int]
    window: np.ndarray | None = None
    argmax: np.ndarray | None = None


class HostBus(Protocol):
    """What :func:`run_tile` needs from a bus: one write or pipelined reads per cycle, and a
    way to sleep until the accelerator's ``event`` line is high. A bus may also have
    ``write_block(pairs)``: the same writes, one per cycle, in one call (the cocotb
    testbench's player, cosim/player.py); :func:`write_all` uses it when there."""

    async def write(self, addr: int, data: int) -> None: ...
    async def read(self, addrs: Sequence[int]) -> list[int]: ...
    async def wait_event(self) -> None: ...


@dataclass
class TileProgram:
    """Host traffic of one tile.

    ``setup`` (writes) then ``start``; while the tile runs, the input rows (``in_rows``,
    ``res_rows``: the writes of each row) go into the rings as slots free up, and the output
    rows (``out_rows``: the addresses of each row) are read as they complete
    (:func:`run_tile` does all of it). After ``done``: ``counter_reads``. ``decode`` takes
    the values of every output row read followed by the counter values.
    ``words_in``/``words_out`` count the buffer-region words (the DRAM traffic: the
    ``host_words_in``/``host_words_out`` counters see the same numbers). A tile that streams
    G4 (``tile.w4_ring``) feeds ``w4_chunks`` into the ``w4`` ring like input rows. An empty
    chunk (no writes) is a chunk whose ring slot already holds its words (a ring that holds the
    whole core, written once: ``early_start``): it needs no free slot, only its count.
    """
    tile: Any                          # the gen.driver.Tile it runs (this module sits below the driver)
    setup: list[tuple[int, int]]
    start: tuple[int, int]
    in_rows: list[list[tuple[int, int]]]
    res_rows: list[list[tuple[int, int]]]
    out_rows: list[list[int]]
    counter_reads: list[int]
    rings: dict[str, int]              # in / res / out ring rows
    registers: dict[str, int]          # addresses of status and the streaming registers
    words_in: int
    words_out: int
    _decode: Any = field(repr=False)
    #: a streamed G4's chunks (the writes of each, in cluster 4's order), fed like input rows
    w4_chunks: list[list[tuple[int, int]]] = field(default_factory=list)
    #: streamed G2/G3's chunks (rings ``rings["w23"]``), in the clusters-2/3 engines' order
    w2_chunks: list[list[tuple[int, int]]] = field(default_factory=list)
    w3_chunks: list[list[tuple[int, int]]] = field(default_factory=list)
    #: a streamed G1's chunks (ring ``rings["w1"]``), in the zero-skipping cluster 1's order
    w1_chunks: list[list[tuple[int, int]]] = field(default_factory=list)
    #: early start (``Tile.early_start``): the cores come through rings that hold a whole core
    #: each; only the first input row and G1 chunk go in before the start, G1 first after it
    early_start: bool = False
    #: per output group of the tile's last output row, the positions in ``out_rows[-1]`` of
    #: its words' reads (:func:`last_row_groups`): :func:`run_tile` reads that row a group at
    #: a time as cluster 4 writes it (``out_groups``), so that only its last group is left
    #: after ``done``; empty: the row is read whole
    last_row_groups: list[list[int]] = field(default_factory=list)

    @property
    def reads(self) -> list[int]:
        """Every address read, in the order :meth:`decode` expects the values."""
        return [a for row in self.out_rows for a in row] + self.counter_reads

    def decode(self, values: Sequence[int]) -> TileResult:
        if len(values) != len(self.reads):
            raise ValueError(f"expected {len(self.reads)} read values, got {len(values)}")
        return self._decode([int(v) for v in values])


def last_row_groups(hmap, row_words: int, groups: int) -> list[list[int]]:
    """Per output group ``go`` of an output row (``row_words`` words ``x * groups + go``, read
    as its ``membrane`` words, then its ``trace`` words, every region sub-word of each), the
    positions of that group's reads in the row's list of reads; empty for a single group
    (nothing to read early)."""
    if groups <= 1:
        return []
    sub_m, sub_t = hmap.region("membrane").subwords, hmap.region("trace").subwords
    trace0 = row_words * sub_m
    return [[w * sub_m + k for w in range(g, row_words, groups) for k in range(sub_m)]
            + [trace0 + w * sub_t + k for w in range(g, row_words, groups) for k in range(sub_t)]
            for g in range(groups)]


async def write_all(bus: HostBus, pairs: Sequence[tuple[int, int]]) -> None:
    """Write ``pairs`` in order, one per cycle (``bus.write_block`` when the bus has one)."""
    block = getattr(bus, "write_block", None)
    if block is not None:
        await block(pairs)
        return
    for a, w in pairs:
        await bus.write(a, w)


async def run_tile(bus: HostBus, prog: TileProgram, max_polls: int = 10_000_000) -> list[int]:
    """Run one tile program on ``bus`` (docs/host_interface.md, "Running a tile"): set-up,
    input rows that fit the rings, start; then, until the last output row is read, fill the
    input rings as slots free up and read output rows as they complete, sleeping on the
    ``event`` line when nothing can move. Returns the values :meth:`TileProgram.decode` takes.

    Early start (``prog.early_start``): before the start only the first G1 chunk and the first
    input row (and the empty chunks that follow them: slots already loaded); after it G1's
    chunks come first in each round, since cluster 1 needs them soonest, each counted as soon
    as written, then the input rows (each counted), the residual, G2/G3 and G4 rows."""
    reg = prog.registers
    await write_all(bus, prog.setup)
    rings = prog.rings
    early = bool(getattr(prog, "early_start", False))

    async def feed(rows, n, consumed, ring, count_reg, limit=None, each=False):
        """Write rows ``n ..`` while their ring has a free slot (an empty row needs none; at
        most ``limit`` non-empty rows), then their count (``each``: after every non-empty
        row as well, so that the engine may start on it); returns the new count and whether
        it moved."""
        moved, written, counted = False, 0, n
        while n < len(rows) and (not rows[n] or n < consumed + ring):
            if rows[n]:
                if limit is not None and written == limit:
                    break
                written += 1
            await write_all(bus, rows[n])
            n += 1
            moved = True
            if each and rows[n - 1]:
                await bus.write(count_reg, n)
                counted = n
        if moved and n != counted:
            await bus.write(count_reg, n)
        return n, moved

    streams_w4, streams_w23 = bool(prog.w4_chunks), bool(prog.w2_chunks)
    streams_w1 = bool(getattr(prog, "w1_chunks", ()))
    first = 1 if early else None
    n_w1 = 0
    if streams_w1 and early:
        n_w1, _ = await feed(prog.w1_chunks, 0, 0, rings["w1"], reg["w1_chunks"], first)
    n_in, _ = await feed(prog.in_rows, 0, 0, rings["in"], reg["in_rows"], first)
    n_res, _ = await feed(prog.res_rows, 0, 0, rings["res"], reg["res_rows"], 0 if early else None)
    n_w4 = n_w2 = n_w3 = 0
    if streams_w23:
        n_w2, _ = await feed(prog.w2_chunks, 0, 0, rings["w23"], reg["w2_chunks"], 0 if early else None)
        n_w3, _ = await feed(prog.w3_chunks, 0, 0, rings["w23"], reg["w3_chunks"], 0 if early else None)
    if streams_w4:
        n_w4, _ = await feed(prog.w4_chunks, 0, 0, rings["w4"], reg["w4_chunks"], 0 if early else None)
    if streams_w1 and not early:
        n_w1, _ = await feed(prog.w1_chunks, 0, 0, rings["w1"], reg["w1_chunks"])
    await bus.write(*prog.start)
    values: list[int] = []
    polls = 0
    n_out = 0
    groups = list(getattr(prog, "last_row_groups", None) or [])
    last = len(prog.out_rows) - 1
    g_read = 0                          # groups of the last row read so far
    last_vals: list[int | None] = [None] * (len(prog.out_rows[-1]) if prog.out_rows else 0)

    async def read_groups(gs):
        """Read the groups ``gs`` of the last output row into ``last_vals``."""
        pos = [i for g in gs for i in groups[g]]
        for i, v in zip(pos, await bus.read([prog.out_rows[last][i] for i in pos])):
            last_vals[i] = v

    while True:
        polled = [reg["status"], reg["in_consumed"], reg["res_consumed"], reg["out_rows"]]
        if streams_w23:
            polled += [reg["w2_consumed"], reg["w3_consumed"]]
        if streams_w4:
            polled.append(reg["w4_consumed"])
        if streams_w1:
            polled.append(reg["w1_consumed"])
        status, in_c, res_c, out_r, *w_c = await bus.read(polled)
        w1_c = w_c.pop() if streams_w1 else 0
        m7 = False
        if streams_w1 and early:
            n_w1, m7 = await feed(prog.w1_chunks, n_w1, w1_c, rings["w1"], reg["w1_chunks"], each=True)
        n_in, m1 = await feed(prog.in_rows, n_in, in_c, rings["in"], reg["in_rows"], each=early)
        n_res, m2 = await feed(prog.res_rows, n_res, res_c, rings["res"], reg["res_rows"])
        if streams_w23:
            n_w2, m5 = await feed(prog.w2_chunks, n_w2, w_c[0], rings["w23"], reg["w2_chunks"])
            n_w3, m6 = await feed(prog.w3_chunks, n_w3, w_c[1], rings["w23"], reg["w3_chunks"])
            m2 = m2 or m5 or m6
        if streams_w4:
            n_w4, m4 = await feed(prog.w4_chunks, n_w4, w_c[-1], rings["w4"], reg["w4_chunks"])
            m2 = m2 or m4
        if streams_w1 and not early:
            n_w1, m7 = await feed(prog.w1_chunks, n_w1, w1_c, rings["w1"], reg["w1_chunks"])
        m2 = m2 or m7
        m3 = False
        while n_out < min(out_r, len(prog.out_rows)):
            if n_out == last and g_read:          # the rest of a row read a group at a time
                await read_groups(range(g_read, len(groups)))
                values += last_vals
            else:
                values += await bus.read(prog.out_rows[n_out])
            n_out += 1
            m3 = True
        if m3:
            await bus.write(reg["out_taken"], n_out)
        if n_out == len(prog.out_rows) and status & 2:
            break
        if not (m1 or m2 or m3) and n_out == last and g_read < len(groups) - 1:
            # the last row: its groups as they are written (out_groups has no event: poll)
            (done_groups,) = await bus.read([reg["out_groups"]])
            if done_groups > g_read:
                await read_groups(range(g_read, done_groups))
                g_read = done_groups
            polls += 1
            continue
        if not (m1 or m2 or m3):
            polls += 1
            if polls > max_polls:
                raise TimeoutError(f"tile {prog.tile.index}: no progress after {max_polls} waits "
                                   f"(inputs {n_in}/{len(prog.in_rows)}, outputs {n_out}/{len(prog.out_rows)})")
            await bus.wait_event()
    values += await bus.read(prog.counter_reads)
    return values


def input_row_order(height: int, timesteps: int, zero_halo: Sequence[bool],
                    order: int = 0) -> list[tuple[int, int]]:
    """Window rows ``(w, t)`` in the order cluster 1 reads them from the spike_in ring (``w`` =
    0 is the top halo row); rows outside the layer (``zero_halo``) are not sent. Row outer:
    rows 0..2 of every timestep, then row ``q + 2`` of every timestep for each output row
    ``q >= 1``; timestep outer: every row of timestep 0, then of timestep 1, ..."""
    from .cyclemodel import e1_rows
    return [(w, t) for w, t in e1_rows(height, timesteps, order)
            if not ((w == 0 and zero_halo[0]) or (w == height + 1 and zero_halo[1]))]


def output_row_order(height: int, timesteps: int, order: int = 0) -> list[tuple[int, int]]:
    """Output rows ``(y, t)`` in the order the tile produces them (also the residual rows)."""
    if order:
        return [(y, t) for t in range(timesteps) for y in range(height)]
    return [(y, t) for y in range(height) for t in range(timesteps)]


def input_pixel_order(width: int, zero_halo: Sequence[bool]) -> list[int]:
    """Window columns (0 = left halo) of an input row, in the order cluster 1 reads them: the
    two halo columns first, then the tile's columns; columns outside the layer are not sent."""
    cols = []
    if not zero_halo[2]:
        cols.append(0)
    if not zero_halo[3]:
        cols.append(width + 1)
    return cols + list(range(1, width + 1))


def ring_rows(cfg: HardwareConfig, geo: TileGeometry, order: int = 0,
              limit: int | None = None) -> dict[str, int]:
    """Rows of the spike_in, residual and output rings for a tile: as many as the regions
    hold, at most ``limit``; at least one, and for the output ring the rows the LIF reads
    back plus one (2 in row order 0, ``Ho + 1`` in order 1; ``tile_fit`` checks they fit)."""
    reg = cfg.regions
    rings = {"in": reg["spike_in"].depth // max(geo.in_row_words, 1),
             "res": reg["residual"].depth // max(geo.out_row_words, 1),
             "out": reg["membrane"].depth // max(geo.out_row_words, 1)}
    top = (1 << 16) - 1
    least = {"in": 1, "res": 1, "out": geo.lif_read_back_rows(order) + 1}
    return {k: max(least[k], min(v, limit or top, top)) for k, v in rings.items()}



def whole_rings(cfg: HardwareConfig, geo: TileGeometry, tile) -> dict[str, bool]:
    """Which cores of an early-start tile (``tile.early_start``; a ``gen.driver.Tile`` or a
    ``TileShape``) go through a ring that holds the whole core, one pass of chunks (G1: a
    window row's, G2/G3: a MAC row's, G4: an output row's): those the host writes once and
    whose later passes it declares (empty chunks). A ring smaller than that streams as
    usual. All False for a tile without early start."""
    from .zero_skip import w1_row_chunks
    early = bool(getattr(tile, "early_start", False))
    return {"w1": early and tile.w1_ring == w1_row_chunks(cfg, tile.rank, tile.pack),
            "w23": early and tile.w23_ring == geo.ng, "w4": early and tile.w4_ring == geo.go}
