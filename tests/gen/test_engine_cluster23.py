"""The clusters-2/3 engine alone in amaranth.sim (gen/engines/cluster23.py): fed with the golden
q1 rows in ``line1`` (positions outside the layer hold garbage, which the engine must mask), the
q23 values it writes into ``line4`` equal the golden stage 4 (sw.golden.clusters23 through
golden_tile: STT via q2 in ``row2``, PTT merged by the adder array, HTT copying q1 on reduced
timesteps), for both row orders and lane packings, with halos inside and outside the layer."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory

from ttsnn.gen.config import load_config
from ttsnn.gen.driver import Driver
from ttsnn.gen.engines import ClusterTwoThreeEngine
from ttsnn.gen.sim import run_testbench, start_engine
from ttsnn.gen.tilegeo import TileGeometryUnit
from ttsnn.sw import golden
from tests.gen.test_top import make_layer

CFG = load_config("small")
P, QB = CFG.lanes, CFG.widths.activation


class Harness(Elaboratable):
    """The engine, the geometry unit, ``line1`` (preloaded), ``row2`` (written and read back by
    the engine, STT) and the weight memories."""

    def __init__(self, line1, w2, w3, ring_words: int = 0):
        self.geometry = TileGeometryUnit(CFG)
        self.engine = ClusterTwoThreeEngine(CFG)
        self.line1, self.w2, self.w3 = line1, w2, w3
        self.ring_words = ring_words         # > 0: w2/w3 are rings the testbench writes

    def elaborate(self, platform):
        m = Module()
        m.submodules.geometry, m.submodules.engine = self.geometry, self.engine
        eng = self.engine
        m.d.comb += [self.geometry.desc.eq(eng.desc), eng.geo.eq(self.geometry.geo)]

        def reads(mem, names):
            for name in names:
                port, rd = getattr(eng, name), mem.read_port()
                m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]

        m.submodules.line1 = line1 = Memory(shape=P * QB, depth=len(self.line1), init=self.line1)
        reads(line1, ("line1_a", "line1_b", "line1_c"))
        depth = self.ring_words or None
        m.submodules.w2 = w2 = Memory(shape=P * CFG.widths.weight, depth=depth or len(self.w2),
                                      init=[] if depth else self.w2)
        m.submodules.w3 = w3 = Memory(shape=P * CFG.widths.weight, depth=depth or len(self.w3),
                                      init=[] if depth else self.w3)
        if depth:
            self.w2_write, self.w3_write = w2.write_port(), w3.write_port()
        reads(w2, ("w2",))
        reads(w3, ("w3",))
        m.submodules.row2 = row2 = Memory(shape=P * QB, depth=CFG.regions["row2"].depth, init=[])
        reads(row2, ("row2_b", "row2_c"))
        wr = row2.write_port()
        m.d.comb += [wr.en.eq(eng.row2.en), wr.addr.eq(eng.row2.addr), wr.data.eq(eng.row2.data)]
        return m


def _line1_words(q1, geo, tile, order, rng):
    """line1 holding every window row of a 1-row tile (3 rows of each timestep): golden q1 where
    cluster 1 writes it, garbage where it writes nothing (zero rows and masked halo blocks)."""
    T, r, rows, cols = q1.shape
    W = cols - 2
    zt, zb, zl, zr = tile.zero_halo
    aligned = W % geo.Px == 0
    words = [int(v) for v in rng.integers(0, 1 << (P * QB), 3 * T * geo.rw1, dtype=np.uint64)]
    for t in range(T):
        for w in range(rows):
            if (w == 0 and zt) or (w == rows - 1 and zb):
                continue                          # a zero row: whatever the slot held before
            slot = t * rows + w if order else (w % 3) * T + t
            for x in range(-1, W + 1):
                if (x == -1 and zl) or (x == W and zr and aligned):
                    continue                      # a zero halo block: masked by the reader
                blk, lane_x = divmod(x + geo.Px, geo.Px)
                for k in range(r):
                    word = slot * geo.rw1 + blk * geo.ng + k // geo.Pk
                    lane = lane_x * geo.Pk + k % geo.Pk
                    value = 0 if x == W and zr else int(q1[t, k, w, x + 1]) & ((1 << QB) - 1)
                    words[word] = words[word] & ~(((1 << QB) - 1) << (lane * QB)) | (value << (lane * QB))
    return words


def run_engine(q, x, tile_hw, pack, order, w23_ring: int = 0, host_gap: int = 0):
    """``w23_ring > 0``: G2/G3 streamed through rings of that many chunks, written by the
    testbench in the engines' order (MAC row, rank group) one word of each per cycle once a
    slot is free, ``host_gap`` idle cycles before each chunk. Returns the counter totals."""
    totals = {}
    drv = Driver(CFG)
    rng = np.random.default_rng(3)
    plan = drv.plan(q, x.shape, tile_hw=tile_hw, pack=pack, order=order, early_start=False)
    for tile in plan:
        T, W = tile.timesteps, tile.width
        assert tile.height == 1                  # line1 holds the tile's 3 window rows at once
        geo = drv.geometry(q, tile)
        gold = golden.golden_tile(q, drv.window(x, tile), None, CFG, intermediates=True)
        weights = drv.weight_words(q, tile)
        h = Harness(_line1_words(gold.q1.numpy(), geo, tile, order, rng), weights["w2"], weights["w3"],
                    w23_ring * geo.ns)
        eng = h.engine
        desc = drv.descriptor(q, tile, {"in": 1, "res": 1, "out": 1})
        desc["w23_ring"] = w23_ring
        line4 = {}
        full = q.full_timesteps(T)
        chunks = [grp for t in range(T) if full[t] for grp in range(geo.ng)]    # one row per t
        host = {"n": [0, 0], "k": [0, 0], "gap": [host_gap, host_gap]}

        def host_step(ctx):
            """One cycle of the testbench host for each of G2 and G3: a word of the next chunk
            once its slot is free; after its last word, the chunk count."""
            for i, (wr, words, cnt, used) in enumerate(
                    ((h.w2_write, weights["w2"], eng.w2_chunks, eng.w2_consumed),
                     (h.w3_write, weights["w3"], eng.w3_chunks, eng.w3_consumed))):
                ctx.set(wr.en, 0)
                n = host["n"][i]
                if n == len(chunks) or n >= ctx.get(used) + w23_ring:
                    continue
                if host["gap"][i]:
                    host["gap"][i] -= 1
                    continue
                k = host["k"][i]
                ctx.set(wr.en, 1)
                ctx.set(wr.addr, (n % w23_ring) * geo.ns + k)
                ctx.set(wr.data, words[chunks[n] * geo.ns + k])
                if k == geo.ns - 1:
                    host["n"][i], host["k"][i], host["gap"][i] = n + 1, 0, host_gap
                    ctx.set(cnt, n + 1)
                else:
                    host["k"][i] = k + 1

        async def bench(ctx):
            # every window row is in line1, every line4 slot is free
            await start_engine(ctx, eng, desc, {"e1_rows": 1 << 15, "e4_released": 1 << 15}, h.geometry.latency)
            for _ in range(200_000):
                if w23_ring:
                    host_step(ctx)
                for name, _ in eng.counts.shape():
                    totals[name] = totals.get(name, 0) + ctx.get(eng.counts[name])
                if ctx.get(eng.line4.en):
                    line4[ctx.get(eng.line4.addr)] = ctx.get(eng.line4.data)
                await ctx.tick()
                if not ctx.get(eng.busy):
                    break
            # the counts are registered: the last busy cycle's come one cycle after it
            for name, _ in eng.counts.shape():
                totals[name] = totals.get(name, 0) + ctx.get(eng.counts[name])
            assert ctx.get(eng.q23_rows) == T

        run_testbench(h, bench)
        assert_line4_holds(line4, gold.q23.numpy(), geo, W, QB, tile.index)
    return totals



def assert_line4_holds(line4: dict, q23, geo, width: int, bits: int, where=None) -> None:
    """The ``line4`` words written for the tile's first output row (slot ``0 % 3``, word
    ``t * rw4 + (x // Px) * ng + k // Pk``, lane ``(x % Px) * Pk + k % Pk``) equal the golden
    ``q23 [T, r, 1, W]``."""
    T, r = q23.shape[0], q23.shape[1]
    for t in range(T):
        for x_ in range(width):
            for k in range(r):
                word = t * geo.rw4 + (x_ // geo.Px) * geo.ng + k // geo.Pk
                v = (line4[word] >> (((x_ % geo.Px) * geo.Pk + k % geo.Pk) * bits)) & ((1 << bits) - 1)
                assert v - ((v >> (bits - 1)) << bits) == q23[t, k, 0, x_], (where, t, k, x_)

@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
@pytest.mark.parametrize("mode,pack", [("stt", 0), ("stt", 1), ("ptt", 1), ("ptt", 2), ("htt", 0)])
def test_cluster23_engine_writes_the_golden_q23(mode, pack, order):
    rng = np.random.default_rng(5 + pack)
    T, r = 3, 5
    q = make_layer(rng, mode, r=r, cin=3, cout=2, T=T, schedule=(True, False, True) if mode == "htt" else None)
    x = rng.integers(0, 2, (T, 3, 1, 7))
    # 1 x 3 tiles of a 1 x 7 map: left/right halos inside and outside the layer, an unaligned
    # right edge; top and bottom rows outside the layer (masked)
    run_engine(q, x, (1, 3), pack, order)


@pytest.mark.parametrize("mode,pack,w23_ring,host_gap", [("ptt", 1, 2, 0), ("stt", 0, 1, 4),
                                                       ("htt", 1, 3, 9), ("stt", 1, 2, 11)])
def test_cluster23_engine_streams_g2_g3_through_rings(mode, pack, w23_ring, host_gap):
    """Streamed G2/G3 (``desc.w23_ring > 0``): the same golden q23 when the testbench host
    writes each (MAC row, rank group) chunk into the rings as slots free up; the engines wait
    for late chunks, counted in ``c2_w_wait`` (cluster 2, and cluster 3 in lock step) and, for
    STT, ``c3_w_wait`` (its own cluster-3 engine), and not in their other stalls."""
    rng = np.random.default_rng(7 + pack)
    T, r = 3, 5
    q = make_layer(rng, mode, r=r, cin=3, cout=2, T=T, schedule=(True, False, True) if mode == "htt" else None)
    x = rng.integers(0, 2, (T, 3, 1, 7))
    totals = run_engine(q, x, (1, 7), pack, 0, w23_ring, host_gap)
    assert totals["c2_w_wait"] > 0                # the first chunk is written after the start
    if mode != "stt":         # cluster 3 in lock step: its waits are cluster 2's
        assert totals["c3_w_wait"] == 0
        assert totals["c2_stall"] == totals["adder_stall"] == 0   # every q1 row and slot ready
    elif w23_ring == 1:       # one slot: each G3 chunk is written after the previous one's use
        assert totals["c3_w_wait"] > 0
