"""The cluster-4-to-LIF engine alone in amaranth.sim (gen/engines/cluster4.py): fed with the
golden q23 values in ``line4`` and the driver's G4, affine and residual words, the membranes and
spikes it writes into the output ring equal the golden stages 4 to 6 (sw.golden: g4, max-pool,
affine, residual, LIF over every timestep, u(t-1) read back from the ring), in both row orders,
STT/PTT/HTT, with and without pooling and residual."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from ttsnn.gen.config import load_config
from ttsnn.gen.driver import Driver, output_row_order
from ttsnn.gen.engines import ClusterFourEngine
from ttsnn.gen.sim import start_engine
from ttsnn.gen.tilegeo import TileGeometryUnit
from ttsnn.sw import golden
from tests.gen.test_top import make_layer

CFG = load_config("small")
P, QB, MB = CFG.lanes, CFG.widths.activation, CFG.widths.membrane


def _signed(v, bits):
    return v - ((v >> (bits - 1)) << bits)


class Harness(Elaboratable):
    """The engine, the geometry unit, its read-only memories, and the output ring (membranes
    written and read back through one memory, as in the accelerator)."""

    def __init__(self, words: dict[str, list[int]], ring_words: int, w4_ring_words: int = 0):
        self.geometry = TileGeometryUnit(CFG)
        self.engine = ClusterFourEngine(CFG)
        self.words, self.ring_words = words, ring_words
        self.w4_ring_words = w4_ring_words      # > 0: w4 is a ring the testbench writes
        self.w4_wr = Memory(shape=P * CFG.widths.weight, depth=max(w4_ring_words, 2), init=[]) \
            if w4_ring_words else None

    def elaborate(self, platform):
        m = Module()
        m.submodules.geometry, m.submodules.engine = self.geometry, self.engine
        eng = self.engine
        m.d.comb += [self.geometry.desc.eq(eng.desc), eng.geo.eq(self.geometry.geo)]
        for name, words in self.words.items():
            port = getattr(eng, name)
            if name == "w4" and self.w4_wr is not None:
                m.submodules[name] = mem = self.w4_wr
                self.w4_write = mem.write_port()
            else:
                m.submodules[name] = mem = Memory(shape=len(port.data), depth=max(len(words), 2), init=words)
            rd = mem.read_port()
            m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
        m.submodules.ring = ring = Memory(shape=P * MB, depth=self.ring_words, init=[])
        rd, wr = ring.read_port(), ring.write_port()
        m.d.comb += [rd.en.eq(eng.membrane_in.en), rd.addr.eq(eng.membrane_in.addr),
                     eng.membrane_in.data.eq(rd.data),
                     wr.en.eq(eng.membrane_out.en), wr.addr.eq(eng.membrane_out.addr),
                     wr.data.eq(eng.membrane_out.data)]
        return m


def _line4_words(q23, geo, T):
    """line4 holding q23 rows 0..H-1 (H <= 3) of every timestep: slot (q % 3) * T + t, word
    block * ng + k // Pk, lane (x % Px) * Pk + k % Pk (docs/host_interface.md)."""
    _, r, H, W = q23.shape
    words = [0] * (3 * T * geo.rw4)
    for t in range(T):
        for q in range(H):
            for x in range(W):
                for k in range(r):
                    word = ((q % 3) * T + t) * geo.rw4 + (x // geo.Px) * geo.ng + k // geo.Pk
                    lane = (x % geo.Px) * geo.Pk + k % geo.Pk
                    words[word] |= (int(q23[t, k, q, x]) & ((1 << QB) - 1)) << (lane * QB)
    return words


def run_engine(q, x, resid, order, w4_ring: int = 0, host_gap: int = 0):
    """``w4_ring > 0``: G4 streamed through a ring of that many chunks, written by the
    testbench in the engine's order (output row, group) one word per cycle once a slot is
    free, ``host_gap`` idle cycles before each chunk (a slow host: cluster 4 waits)."""
    drv = Driver(CFG)
    tile = drv.plan(q, x.shape, order=order, early_start=False).tiles[0]
    assert len(drv.plan(q, x.shape, order=order, early_start=False)) == 1
    T, H, W = tile.timesteps, tile.height, tile.width
    assert H <= 3                                   # line4 holds every q23 row at once
    geo = drv.geometry(q, tile)
    gold = golden.golden_tile(q, drv.window(x, tile), resid, CFG, intermediates=True)
    Ho = H // 2 if q.pool else H
    n_rows = T * Ho
    weights = drv.weight_words(q, tile)
    words = {"line4": _line4_words(gold.q23.numpy(), geo, T), "w4": weights["w4"],
             "affine": weights["affine"],
             "residual": [w for row in drv.lane_words(resid, MB, order) for w in row] if q.residual else [0]}
    h = Harness(words, n_rows * geo.out_row_words, w4_ring * q.rank)
    eng = h.engine
    desc = drv.descriptor(q, tile, {"in": 1, "res": n_rows, "out": n_rows})
    desc["w4_ring"] = w4_ring
    membranes, spikes, totals = {}, {}, {}
    GO = -(-q.out_channels // P)
    chunks = [go for _ in range(n_rows) for go in range(GO)]      # the engine's read order
    host = {"n": 0, "k": 0, "gap": host_gap}

    def host_step(ctx):
        """One cycle of the G4 streaming host: write a word of the next chunk once its slot
        is free (``n < consumed + w4_ring``); after its last word, count it in ``w4_chunks``."""
        wr = h.w4_write
        ctx.set(wr.en, 0)
        n = host["n"]
        if n == len(chunks) or n >= ctx.get(eng.w4_consumed) + w4_ring:
            return
        if host["gap"]:
            host["gap"] -= 1
            return
        k = host["k"]
        ctx.set(wr.en, 1)
        ctx.set(wr.addr, (n % w4_ring) * q.rank + k)
        ctx.set(wr.data, words["w4"][chunks[n] * q.rank + k])
        if k == q.rank - 1:
            host.update(n=n + 1, k=0, gap=host_gap)
            ctx.set(eng.w4_chunks, n + 1)
        else:
            host["k"] = k + 1

    async def bench(ctx):
        # every q23 row is in line4; the ring holds every output row
        await start_engine(ctx, eng, desc, {"rows_written": 1 << 15, "res_rows": n_rows, "out_taken": 0},
                           h.geometry.latency)
        for _ in range(100_000):
            if w4_ring:
                host_step(ctx)
            if ctx.get(eng.membrane_out.en):
                membranes[ctx.get(eng.membrane_out.addr)] = ctx.get(eng.membrane_out.data)
            if ctx.get(eng.spikes.en):
                spikes[ctx.get(eng.spikes.addr)] = ctx.get(eng.spikes.data)
            for name, _ in eng.counts.shape():
                totals[name] = totals.get(name, 0) + ctx.get(eng.counts[name])
            await ctx.tick()
            if not ctx.get(eng.busy):
                break
        assert ctx.get(eng.out_rows) == n_rows

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    Wo = W // 2 if q.pool else W
    for n, (yo, t) in enumerate(output_row_order(Ho, T, order)):
        for xo in range(Wo):
            for go in range(GO):
                word = n * geo.out_row_words + xo * GO + go
                for lane in range(P):
                    c = go * P + lane
                    mem = _signed((membranes[word] >> (lane * MB)) & ((1 << MB) - 1), MB)
                    spk = (spikes[word] >> lane) & 1
                    if c < q.out_channels:
                        assert mem == gold.membrane[t, c, yo, xo], (t, c, yo, xo)
                        assert spk == gold.spikes[t, c, yo, xo], (t, c, yo, xo)
                    else:
                        assert spk == 0
    # counter increments: one MAC step per (output pixel, group, sub-pixel, k), one LIF update
    # per neuron, the spikes emitted
    sub = 4 if q.pool else 1
    assert totals["c4_busy"] == n_rows * Wo * GO * sub * q.rank
    assert totals["lif_updates"] == n_rows * Wo * q.out_channels
    assert totals["spikes_out"] == int(gold.spikes.sum())
    assert totals["membrane_reads"] == (T - 1) * Ho * Wo * GO
    assert totals["lif_stall"] == 0
    return totals


@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
@pytest.mark.parametrize("mode,pool,residual", [("stt", True, False), ("ptt", False, True),
                                                ("htt", True, True)])
def test_cluster4_engine_writes_the_golden_membranes_and_spikes(mode, pool, residual, order):
    rng = np.random.default_rng(11 + order)
    T, cout = 3, 6
    q = make_layer(rng, mode, r=3, cin=4, cout=cout, T=T, pool=pool, residual=residual, threshold=5)
    H, W = (2, 4) if pool else (3, 3)
    x = rng.integers(0, 2, (T, 4, H, W))
    s = 2 if pool else 1
    resid = rng.integers(-3000, 3000, (T, cout, H // s, W // s)) if residual else None
    run_engine(q, x, resid, order)


@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
@pytest.mark.parametrize("w4_ring,host_gap", [(2, 0), (3, 7), (1, 3)])
def test_cluster4_engine_streams_g4_through_a_ring(order, w4_ring, host_gap):
    """Streamed G4 (``desc.w4_ring > 0``): the same golden membranes and spikes when the
    host writes each (row, group) chunk into the ring as slots free up; a slow host makes
    cluster 4 wait (``c4_w_wait``)."""
    rng = np.random.default_rng(5 + order)
    T, cout = 2, 10                                  # 3 output groups of 4 lanes
    q = make_layer(rng, "ptt", r=3, cin=4, cout=cout, T=T, pool=True, residual=True, threshold=5)
    H, W = 2, 4
    x = rng.integers(0, 2, (T, 4, H, W))
    resid = rng.integers(-3000, 3000, (T, cout, H // 2, W // 2))
    totals = run_engine(q, x, resid, order, w4_ring=w4_ring, host_gap=host_gap)
    assert totals["w4_reads"] == T * (H // 2) * (W // 2) * 4 * 3 * q.rank
    # the testbench writes no chunk before the start: the first group waits for its r words
    assert totals["c4_w_wait"] > 0
    if w4_ring == 1:        # each chunk is written after the previous one's last use
        assert totals["c4_w_wait"] >= (T * (H // 2) * 3) * (q.rank + host_gap - 1)
