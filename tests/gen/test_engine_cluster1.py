"""Cluster 1's engine alone in amaranth.sim (gen/engines/cluster1.py): fed from memories holding
the driver's spike rows and G1 words, every q1 value it writes into ``line1`` equals the golden
stage 1 (sw.golden: ``sat(rshift(g1(x, w1), shift1))``), for both row orders, lane packings and
tiles with and without computed halos; the counter increments add up to the hand formulas.
The zero-skipping engine (gen/engines/cluster1_zero_skip.py) runs through the same harness on
hand-made spike patterns (all-zero, all-one, random), its step counts written by hand."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from ttsnn.gen.config import load_config
from ttsnn.gen.driver import Driver
from ttsnn.gen.engines import ClusterOneEngine, ClusterOneZeroSkipEngine
from ttsnn.gen.sim import start_engine
from ttsnn.gen.tilegeo import TileGeometryUnit
from ttsnn.sw import golden
from ttsnn.sw.qlayer import QuantTTLayer

CFG = load_config("small")
# zero skipping, and inputs of up to two 32-bit spike words
ZS = dataclasses.replace(CFG, arrangement=dataclasses.replace(CFG.arrangement, cluster1="zero_skip"),
                         limits=dataclasses.replace(CFG.limits, max_in_channels=64))


class Harness(Elaboratable):
    """The engine, the geometry unit, and read-only memories for its two read ports."""

    def __init__(self, spike_words, w1_words, engine=ClusterOneEngine, cfg=CFG, w1_depth=None):
        self.geometry = TileGeometryUnit(cfg)
        self.engine = engine(cfg)
        self.spike_words, self.w1_words = spike_words, w1_words
        # a streamed G1 (w1_depth: the ring's words): the testbench host writes the chunks
        self.w1_depth = w1_depth
        self.w1_we, self.w1_waddr = Signal(), Signal(16)
        self.w1_wdata = Signal(CFG.lanes * CFG.widths.weight)

    def elaborate(self, platform):
        m = Module()
        m.submodules.geometry, m.submodules.engine = self.geometry, self.engine
        eng = self.engine
        m.d.comb += [self.geometry.desc.eq(eng.desc), eng.geo.eq(self.geometry.geo)]
        for name, words, width in (("spike_in", self.spike_words, CFG.spike_word_bits),
                                   ("w1", self.w1_words, CFG.lanes * CFG.widths.weight)):
            ring = name == "w1" and self.w1_depth is not None
            depth = self.w1_depth if ring else max(len(words), 2)
            m.submodules[name] = mem = Memory(shape=width, depth=depth, init=[] if ring else words)
            port, rd = getattr(eng, name), mem.read_port()
            m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
            if ring:
                wr = mem.write_port()
                m.d.comb += [wr.en.eq(self.w1_we), wr.addr.eq(self.w1_waddr), wr.data.eq(self.w1_wdata)]
        return m


def _layer(rng, r, cin):
    return QuantTTLayer(mode="ptt", w1=rng.integers(-128, 128, (r, cin)), w2=np.zeros((r, r, 3), int),
                        w3=np.zeros((r, r, 3), int), w4=np.zeros((2, r), int), shift1=2, shift2=0,
                        shift3=0, scale=np.ones((2, 2), int), affine_shift=0, bias=np.zeros(2, int),
                        threshold=1, leak_mul=1, leak_shift=1)


def _rows_in_engine_order(order, T, H):
    """(t, window row) of every row cluster 1 writes, in its order."""
    if order:
        return [(t, w) for t in range(T) for w in range(H + 2)]
    return [(t, w) for q in range(H) for t in range(T) for w in ((0, 1, 2) if q == 0 else (q + 2,))]


def run_engine(q, x, tile_hw, pack, order, cfg=CFG, w1_ring=0, host_gap=0):
    """Run every tile of the layer through cluster 1's engine of ``cfg`` (dense or zero
    skipping), check every q1 value against the golden stage, and the counters against the
    hand formulas. Returns the number of q1 values checked. ``w1_ring > 0``: G1 streamed
    through a ring of that many chunks (zero skipping: a rank group's ``ceil(Cin/Px)`` words;
    dense: a rank's ``ceil(Cin/P)`` words), which a testbench host writes one word per ``1 +
    host_gap`` cycles as slots free up (``w1_consumed``), in the engine's read order."""
    zero_skip = cfg.arrangement.cluster1 == "zero_skip"
    drv = Driver(cfg)
    plan = drv.plan(q, x.shape, tile_hw=tile_hw, pack=pack, order=order, early_start=False)
    checked = 0
    for tile in plan:
        window = drv.window(x, tile)
        geo = drv.geometry(q, tile)
        rows = drv.spike_rows(window, tile)
        spike_words = [w for row in rows for w in row]          # every row preloaded, no wrap
        w1_words = drv.weight_words(q, tile)["w1"]
        desc = drv.descriptor(q, tile, {"in": len(rows), "res": 1, "out": 1})
        # a chunk: the words of one rank group (zero skipping) or one rank (dense)
        nw = -(-tile.in_channels // (cfg.lanes >> tile.pack)) if zero_skip else geo.ncc
        per_row = geo.ng if zero_skip else q.rank
        chunks = [w1_words[kg * nw:(kg + 1) * nw] for _ in rows for kg in range(per_row)] if w1_ring else []
        desc["w1_ring"] = w1_ring
        h = Harness(spike_words, w1_words, ClusterOneZeroSkipEngine if zero_skip else ClusterOneEngine, cfg,
                    w1_ring * nw if w1_ring else None)
        eng = h.engine
        T, H, W = tile.timesteps, tile.height, tile.width
        writes: dict[int, dict[int, int]] = {}
        finished: list[dict[int, dict[int, int]]] = []
        totals: dict[str, int] = {}

        async def bench(ctx):
            # cluster 2 keeps up: every line1 slot is free
            await start_engine(ctx, eng, desc, {"in_rows": len(rows), "released": 1 << 15,
                                                "released_e1_order": 1 << 15}, h.geometry.latency)
            done = 0
            sent, word, gap = 0, 0, 0                     # the host: chunks written, next word, wait
            for _ in range(100_000):
                ctx.set(h.w1_we, 0)
                if sent < len(chunks) and sent < ctx.get(eng.w1_consumed) + w1_ring:
                    if gap:
                        gap -= 1
                    else:
                        ctx.set(h.w1_we, 1)
                        ctx.set(h.w1_waddr, (sent % w1_ring) * nw + word)
                        ctx.set(h.w1_wdata, chunks[sent][word])
                        word, gap = word + 1, host_gap
                        if word == nw:
                            sent, word = sent + 1, 0
                            ctx.set(eng.w1_chunks, sent)      # visible with the last word written
                en = ctx.get(eng.line1.en)
                if en:
                    addr, data = ctx.get(eng.line1.addr), ctx.get(eng.line1.data)
                    qb = CFG.widths.activation
                    for lane in range(CFG.lanes):
                        if en >> lane & 1:
                            writes.setdefault(addr, {})[lane] = (data >> (lane * qb)) & ((1 << qb) - 1)
                for name, _ in eng.counts.shape():
                    totals[name] = totals.get(name, 0) + ctx.get(eng.counts[name])
                totals["_cycles"] = totals.get("_cycles", 0) + 1
                await ctx.tick()
                totals["_w1_consumed"] = ctx.get(eng.w1_consumed)
                while done < ctx.get(eng.rows_done):      # a row is complete: keep its words
                    finished.append({a: dict(v) for a, v in writes.items()})
                    done += 1
                if not ctx.get(eng.busy):
                    break

        sim = Simulator(h)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()

        order_rows = _rows_in_engine_order(order, T, H)
        assert len(finished) == len(order_rows)
        xt = torch.from_numpy(np.array(window))
        q1 = golden.sat(golden.rshift(golden.g1(xt, torch.from_numpy(np.array(q.w1)), CFG.widths.accumulator),
                                      q.shift1, q.round), CFG.widths.activation).numpy()   # [T, r, H+2, W+2]
        zt, zb, zl, zr = ((tile.zero_halo_bits >> i) & 1 for i in range(4))
        for n, (t, w) in enumerate(order_rows):
            if (w == 0 and zt) or (w == H + 1 and zb):
                continue                                   # a zero row: never written
            slot = n % (3 * T) if order else (w % 3) * T + t
            for x_ in range(-1, W + 1):
                if (x_ == -1 and zl) or (x_ == W and zr):
                    continue                               # zero halo column: never computed
                blk, lane_x = divmod(x_ + geo.Px, geo.Px)
                for k in range(q.rank):
                    word = slot * geo.rw1 + blk * geo.ng + k // geo.Pk
                    lane = lane_x * geo.Pk + k % geo.Pk
                    got = finished[n][word][lane]
                    got -= (got >> (CFG.widths.activation - 1)) << CFG.widths.activation
                    assert got == q1[t, k, w, x_ + 1], (tile.index, t, w, x_, k)
                    checked += 1
        zero_rows = [(t, w) for t, w in order_rows if (w == 0 and zt) or (w == H + 1 and zb)]
        computed = [(t, w, x_) for t, w in order_rows if (t, w) not in zero_rows
                    for x_ in range(-1 + zl, W + 1 - zr)]
        ones = int(sum(window[t, :, w, x_ + 1].sum() for t, w, x_ in computed))
        if w1_ring:
            assert _all_chunks_used(chunks, totals)
            check = _zero_skip_counters if zero_skip else _dense_counters
            check(totals, q, window, computed, len(zero_rows), ones, geo, streamed=True)
        else:
            check = _zero_skip_counters if zero_skip else _dense_counters
            check(totals, q, window, computed, len(zero_rows), ones, geo)
    return checked


def _all_chunks_used(chunks, totals):
    """Every G1 chunk was used: one ``w1_consumed`` step each (counted by the bench)."""
    return totals.get("_w1_consumed", 0) == len(chunks)


def _dense_counters(totals, q, window, computed, n_zero_rows, ones, geo, streamed=False):
    """One step per (pixel, k, P-channel chunk) of a computed row, one per zero row; one
    spike word read per pixel, or with a streamed G1 (rank outer within a row) one per pixel
    and rank. Cycles without a step: none resident, G1 chunk waits streamed."""
    n_px = len(computed)
    ncc = -(-q.in_channels // CFG.lanes)
    assert totals["c1_busy"] == n_px * q.rank * ncc + n_zero_rows
    assert totals["w1_reads"] == n_px * q.rank * ncc
    assert totals["c1_slots"] == n_px * q.rank * q.in_channels
    assert totals["line1_writes"] == n_px * q.rank
    assert totals["c1_adds"] == ones * q.rank
    cw = -(-q.in_channels // CFG.spike_word_bits)
    assert totals["spike_in_reads"] == n_px * cw * (q.rank if streamed else 1)
    assert totals["c1_stall"] == 0 and totals["c1_in_wait"] == 0
    # every cycle until the last step is a step or (streamed) a G1 chunk wait
    assert totals["c1_busy"] + totals["c1_w_wait"] + 2 == totals["_cycles"]
    assert (totals["c1_w_wait"] > 0) == streamed


def _zero_skip_counters(totals, q, window, computed, n_zero_rows, ones, geo, streamed=False):
    """Per pixel and rank group of Pk: one step per 1-spike of each spike word, one for an
    all-zero word; one step per zero row; one stall (the first word's fetch). A streamed G1
    (rank group outer within a row) reads every spike word once per rank group, and the
    cycles without a step are the first word's fetch or G1 chunk waits."""
    sw = ZS.spike_word_bits
    steps = 0
    for t, w, x_ in computed:
        s = window[t, :, w, x_ + 1]
        steps += sum(max(1, int(s[c0:c0 + sw].sum())) for c0 in range(0, q.in_channels, sw))
    groups = [min(geo.Pk, q.rank - k0) for k0 in range(0, q.rank, geo.Pk)]
    assert totals["c1_busy"] == steps * len(groups) + n_zero_rows
    assert totals["w1_reads"] == ones * len(groups)
    assert totals["c1_slots"] == steps * q.rank
    assert totals["c1_adds"] == ones * q.rank
    assert totals["line1_writes"] == len(computed) * len(groups)
    assert totals["spike_in_reads"] == len(computed) * -(-q.in_channels // sw) * (len(groups) if streamed else 1)
    assert totals["c1_in_wait"] == 0
    if not streamed:
        assert totals["c1_stall"] == 1 and totals["c1_w_wait"] == 0
        return
    # every cycle from the start until the last step is a step, the first fetch or a chunk wait
    assert totals["c1_stall"] == 1 and totals["c1_w_wait"] > 0


@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
@pytest.mark.parametrize("pack", [0, 1])
def test_cluster1_engine_writes_the_golden_q1(order, pack):
    rng = np.random.default_rng(7 + pack + 2 * order)
    q = _layer(rng, r=3, cin=6)
    x = rng.integers(0, 2, (2, 6, 4, 5))
    # 2x3 tiles of a 4x5 map: every tile has some halos inside the layer (computed) and some
    # outside (zero), the last column strip has an unaligned right edge
    assert run_engine(q, x, (2, 3), pack, order) > 0


@pytest.mark.parametrize("order,pack,ring,gap", [(0, 0, 1, 0), (1, 1, 2, 3), (0, 1, 3, 1), (1, 0, 3, 0)])
def test_cluster1_engine_with_streamed_g1(order, pack, ring, gap):
    """A streamed G1 on the dense engine (descriptor ``w1_ring``): the ranks of a row go one
    after the other, each waiting for its chunk of ``ceil(Cin/P)`` words, which a slow
    testbench host writes into a ring of 1-3 chunks as ``w1_consumed`` frees slots; q1 equals
    the golden stage, every chunk is used once, the steps are the resident engine's, every
    rank re-reads the row's spike words and the waits count as ``c1_w_wait``."""
    rng = np.random.default_rng(41 + pack + 2 * order)
    q = _layer(rng, r=3, cin=10)
    x = rng.integers(0, 2, (2, 10, 4, 5))
    assert run_engine(q, x, (2, 3), pack, order, w1_ring=ring, host_gap=gap) > 0


@pytest.mark.parametrize("pattern", ["zeros", "ones", "random"])
@pytest.mark.parametrize("order,pack", [(0, 0), (1, 1), (0, 2)])
def test_zero_skip_cluster1_writes_the_golden_q1(pattern, order, pack):
    """The zero-skipping engine (arrangement.cluster1 = "zero_skip") on hand-made spike
    patterns: no spike at all (one step per spike word), every spike 1 (one step per channel),
    random; 40 input channels span two 32-bit spike words, rank 5 leaves a partial group
    (rank 4 at Pk = 4, where a partial group's transposed core would not fit region w1)."""
    rng = np.random.default_rng(11 + pack + 2 * order)
    q = _layer(rng, r=5 if pack < 2 else 4, cin=40)
    shape = (2, 40, 4, 5)
    x = {"zeros": np.zeros(shape, int), "ones": np.ones(shape, int),
         "random": (rng.random(shape) < 0.3).astype(int)}[pattern]
    assert run_engine(q, x, (2, 3), pack, order, cfg=ZS) > 0


@pytest.mark.parametrize("order,pack,ring,gap", [(0, 0, 1, 0), (1, 1, 2, 3), (0, 1, 3, 1)])
def test_zero_skip_cluster1_with_streamed_g1(order, pack, ring, gap):
    """A streamed G1 (descriptor ``w1_ring``): the rank groups of a row go one after the other,
    each waiting for its chunk of ``ceil(Cin/Px)`` words, which a slow testbench host writes
    into a ring of 1-3 chunks as ``w1_consumed`` frees slots; q1 equals the golden stage, every
    chunk is used once, the steps are the resident engine's and the waits count as
    ``c1_w_wait``."""
    rng = np.random.default_rng(31 + pack + 2 * order)
    q = _layer(rng, r=5, cin=40)
    x = (rng.random((2, 40, 4, 5)) < 0.3).astype(int)
    assert run_engine(q, x, (2, 3), pack, order, cfg=ZS, w1_ring=ring, host_gap=gap) > 0
