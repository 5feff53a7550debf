"""STT's cluster-3 engine alone in amaranth.sim (gen/engines/stt_cluster3.py): fed with the
golden q2 rows in ``row2`` (written row by row as the engine releases their half, the way
cluster 2 does; masked halo blocks hold garbage), driving a cluster 3 and a shift3
requantiser of its own harness, the q23 values it writes into ``line4`` equal the golden G3
stage (sw.golden: q2 = sat(rshift(G2(q1), shift2)), q23 = sat(rshift(G3(q2), shift3))), for
both row orders and lane packings, with halos inside and outside the layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

from ttsnn.gen.config import load_config
from ttsnn.gen.driver import Driver
from ttsnn.gen.engines.stt_cluster3 import SttClusterThreeEngine
from ttsnn.gen.sim import run_testbench, start_engine
from ttsnn.gen.tilegeo import TileGeometryUnit
from ttsnn.gen.units import MacCluster, Requantiser
from ttsnn.sw import golden
from tests.gen.test_engine_cluster23 import assert_line4_holds
from tests.gen.test_top import make_layer

CFG = load_config("small")
P, QB, AB, WB = CFG.lanes, CFG.widths.activation, CFG.widths.accumulator, CFG.widths.weight


class Harness(Elaboratable):
    """The engine, the geometry unit, ``row2`` (two q2 rows; the testbench writes them through
    ``wr_*``), ``w3``, and the cluster 3 and requantiser the clusters-2/3 engine lends it (with
    the register of cluster 3's sums before the requantiser: the engine writes at stage c)."""

    def __init__(self, row2_depth, w3):
        self.geometry = TileGeometryUnit(CFG)
        self.engine = SttClusterThreeEngine(CFG)
        self.row2_depth, self.w3 = row2_depth, w3
        self.wr_en, self.wr_addr, self.wr_data = Signal(), Signal(16), Signal(P * QB)

    def elaborate(self, platform):
        m = Module()
        m.submodules.geometry, m.submodules.engine = self.geometry, self.engine
        eng = self.engine
        m.d.comb += [self.geometry.desc.eq(eng.desc), eng.geo.eq(self.geometry.geo)]
        m.submodules.row2 = row2 = Memory(shape=P * QB, depth=self.row2_depth, init=[])
        for name in ("row2_b", "row2_c"):
            port, rd = getattr(eng, name), row2.read_port()
            m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
        wr = row2.write_port()
        m.d.comb += [wr.en.eq(self.wr_en), wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data)]
        m.submodules.w3 = w3 = Memory(shape=P * WB, depth=len(self.w3), init=self.w3)
        rd = w3.read_port()
        m.d.comb += [rd.en.eq(eng.w3.en), rd.addr.eq(eng.w3.addr), eng.w3.data.eq(rd.data)]
        ws = CFG.is_weight_stationary("cluster2")
        spads = (CFG.spad_weight_entries, CFG.spad_psum_entries) if ws else (0, 0)
        m.submodules.cluster3 = pe = MacCluster(P, WB, QB, AB, *spads, pipelined=True)
        m.d.comb += [pe.pack.eq(eng.geo.pack)]
        m.d.comb += [getattr(pe, k).eq(eng.cluster[k]) for k, _ in eng.cluster.shape()]
        # the lender's stage c: cluster 3's sums registered, then re-quantised into ``result``
        acc_c = Signal.like(pe.acc)
        m.d.sync += acc_c.eq(pe.acc)
        m.submodules.requant = rq = Requantiser(P, AB, QB)
        m.d.comb += [rq.i.eq(acc_c), rq.shift.eq(eng.desc.shift3), rq.rnd.eq(eng.desc["round"]),
                     eng.result.eq(rq.o)]
        return m


def _q2_row_words(q2, geo, tile, rng):
    """The ``rw1`` words of one q2 row (``q2 [r, W + 2]``, columns -1..W) as cluster 2 writes
    them; a halo block outside the layer holds garbage (the engine masks it)."""
    r, cols = q2.shape
    W = cols - 2
    zl, zr = tile.zero_halo[2], tile.zero_halo[3]
    words = [int(v) for v in rng.integers(0, 1 << (P * QB), geo.rw1, dtype=np.uint64)]
    for x in range(-1, W + 1):
        if (x == -1 and zl) or (x == W and zr and W % geo.Px == 0):
            continue
        blk, lane_x = divmod(x + geo.Px, geo.Px)
        for k in range(r):
            word, lane = blk * geo.ng + k // geo.Pk, lane_x * geo.Pk + k % geo.Pk
            value = int(q2[k, x + 1]) & ((1 << QB) - 1)
            words[word] = words[word] & ~(((1 << QB) - 1) << (lane * QB)) | (value << (lane * QB))
    return words


def run_engine(q, x, tile_hw, pack, order):
    drv = Driver(CFG)
    rng = np.random.default_rng(4)
    plan = drv.plan(q, x.shape, tile_hw=tile_hw, pack=pack, order=order, early_start=False)
    _, w2, w3, _ = golden.core_weights(q)
    for tile in plan:
        T, W = tile.timesteps, tile.width
        assert tile.height == 1                  # one q23 row per timestep
        geo = drv.geometry(q, tile)
        gold = golden.golden_tile(q, drv.window(x, tile), None, CFG, intermediates=True)
        # the golden stages by hand: q2 on every window column, then G3 and shift3
        q2 = golden.sat(golden.rshift(golden.g2(gold.q1, w2, AB), q.shift2, q.round), QB)  # [T, r, 1, W+2]
        q23 = golden.sat(golden.rshift(golden.g3(q2, w3, AB), q.shift3, q.round), QB)     # [T, r, 1, W]
        assert torch.equal(q23, gold.q23)
        rows = [_q2_row_words(q2[t, :, 0].numpy(), geo, tile, rng) for t in range(T)]  # row j: t = j
        h = Harness(CFG.regions["row2"].depth, drv.weight_words(q, tile)["w3"])
        eng = h.engine
        desc = drv.descriptor(q, tile, {"in": 1, "res": 1, "out": 1})
        line4 = {}

        async def write_row(ctx, j):
            for i, word in enumerate(rows[j]):
                ctx.set(h.wr_en, 1)
                ctx.set(h.wr_addr, (j % 2) * geo.rw1 + i)
                ctx.set(h.wr_data, word)
                await ctx.tick()
            ctx.set(h.wr_en, 0)

        async def bench(ctx):
            for name, value in desc.items():
                ctx.set(eng.desc[name], value)
            ctx.set(eng.e4_released, 1 << 15)        # every line4 slot is free
            for j in range(min(2, T)):
                await write_row(ctx, j)
            ctx.set(eng.q2_rows, min(2, T))
            await ctx.tick().repeat(h.geometry.latency + 1)
            ctx.set(eng.start, 1)
            await ctx.tick()
            ctx.set(eng.start, 0)
            written, pending = min(2, T), []
            for _ in range(200_000):
                if ctx.get(eng.line4.en):
                    line4[ctx.get(eng.line4.addr)] = ctx.get(eng.line4.data)
                # cluster 2's part: row j into its half once row j - 2 is released, one word
                # per cycle, counted in q2_rows after its last word
                ctx.set(h.wr_en, 0)
                if pending:
                    ctx.set(h.wr_en, 1)
                    ctx.set(h.wr_addr, pending[0][0])
                    ctx.set(h.wr_data, pending[0][1])
                    pending.pop(0)
                    if not pending:
                        written += 1
                elif written < T and ctx.get(eng.released) >= written - 1:
                    pending = [((written % 2) * geo.rw1 + i, w) for i, w in enumerate(rows[written])]
                await ctx.tick()
                ctx.set(eng.q2_rows, written)
                if not ctx.get(eng.busy) and written == T:
                    break
            assert ctx.get(eng.q23_rows) == T and ctx.get(eng.released) == T

        run_testbench(h, bench)
        assert_line4_holds(line4, q23, geo, W, QB, tile.index)


@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
@pytest.mark.parametrize("pack", [0, 1, 2])
def test_stt_cluster3_engine_writes_the_golden_q23(pack, order):
    rng = np.random.default_rng(11 + pack)
    T, r = 3, 5
    q = make_layer(rng, "stt", r=r, cin=3, cout=2, T=T)
    x = rng.integers(0, 2, (T, 3, 1, 7))
    # 1 x 3 tiles of a 1 x 7 map: left/right halos inside and outside the layer, an unaligned
    # right edge
    run_engine(q, x, (1, 3), pack, order)


def test_stt_cluster3_engine_stays_idle_outside_stt():
    """Its start runs it only for STT: on a PTT descriptor every output stays 0."""
    rng = np.random.default_rng(2)
    q = make_layer(rng, "ptt", r=4, cin=3, cout=2, T=2)
    drv = Driver(CFG)
    tile = next(iter(drv.plan(q, (2, 3, 1, 4), early_start=False)))
    h = Harness(CFG.regions["row2"].depth, drv.weight_words(q, tile)["w3"])
    eng = h.engine

    async def bench(ctx):
        await start_engine(ctx, eng, drv.descriptor(q, tile, {"in": 1, "res": 1, "out": 1}),
                           {"q2_rows": 1 << 15, "e4_released": 1 << 15}, h.geometry.latency)
        for _ in range(50):
            assert not ctx.get(eng.busy) and not ctx.get(eng.line4.en) and not ctx.get(eng.w3.en)
            assert ctx.get(eng.counts.as_value()) == 0
            await ctx.tick()

    run_testbench(h, bench)
