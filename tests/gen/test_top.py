"""Whole tiles through the accelerator in amaranth.sim (small configuration): outputs and
membranes against the integer golden model (sw.golden), every counter against the exact
counter/cycle model (gen.cyclemodel), for STT, PTT and HTT, both row orders, every lane
packing, weight-stationary chunks, and the streaming host protocol with small rings."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.gen.config import load_config
from ttsnn.gen.cyclemodel import TileShape, tile_counters
from ttsnn.gen.driver import Driver, LayerOutputs
from ttsnn.gen.hostmap import ID_VALUE
from ttsnn.gen.sim import run_accelerator, run_programs
from ttsnn.sw.golden import golden_layer
from ttsnn.sw.qlayer import QuantTTLayer

CFG = load_config("small")


def make_layer(rng, mode, r, cin, cout, T, pool=False, residual=False, shifts=(1, 6, 7),
               schedule=None, threshold=20):
    if mode == "htt" and schedule is None:
        schedule = tuple(bool(b) for b in rng.integers(0, 2, T))
    return QuantTTLayer(
        mode=mode, w1=rng.integers(-128, 128, (r, cin)), w2=rng.integers(-128, 128, (r, r, 3)),
        w3=rng.integers(-128, 128, (r, r, 3)), w4=rng.integers(-128, 128, (cout, r)),
        shift1=shifts[0], shift2=shifts[1], shift3=shifts[2],
        scale=rng.integers(-300, 300, (2, cout)), affine_shift=5,
        bias=rng.integers(-100, 100, cout), threshold=threshold, leak_mul=3, leak_shift=2,
        pool=pool, residual=residual, schedule=schedule or ())


def run_layer(q, x, resid=None, tile_hw=None, pack=None, order=None, ring_limit=None):
    drv = Driver(CFG)
    # the cores resident (loaded before the start): the host keeps up, so the timing counters
    # equal the keeps-up model's (the early start: tests/gen/test_host_timing.py)
    plan = drv.plan(q, x.shape, tile_hw=tile_hw, pack=pack, order=order, early_start=False)
    progs = [drv.program(q, t, drv.window(x, t), drv.residual_tile(resid, t) if q.residual else None,
                         ring_limit=ring_limit)
             for t in plan]
    values = run_programs(CFG, progs)
    out = LayerOutputs(plan)
    per_tile = []
    for tile, prog, vals in zip(plan, progs, values):
        res = prog.decode(vals)
        out.add(tile, res)
        per_tile.append((tile, prog, res))
    return out, per_tile, drv


TIMING = ("cycles", "c1_stall", "c1_in_wait", "c2_stall", "c3_stall", "c4_stall", "adder_stall",
          "lif_stall", "c4_w_wait", "c2_w_wait", "c3_w_wait", "c1_w_wait")


def check(q, x, resid=None, tile_hw=None, pack=None, order=None, ring_limit=None):
    """Run the layer; compare outputs with the golden model and every counter with the model
    (the timing counters only when the host could fill and drain the rings without waits)."""
    out, per_tile, drv = run_layer(q, x, resid, tile_hw, pack, order, ring_limit)
    gold = golden_layer(q, x, resid, CFG)
    np.testing.assert_array_equal(out.membrane, gold.membrane.numpy())
    np.testing.assert_array_equal(out.spikes, gold.spikes.numpy())
    for tile, prog, res in per_tile:
        expect = tile_counters(CFG, TileShape.of(q, tile), window_ones=int(drv.window(x, tile).sum()),
                               spikes_out=int(res.spikes.sum()), words_in=prog.words_in,
                               words_out=prog.words_out)
        assert set(expect) == set(res.counters)
        skip = TIMING if ring_limit else ()
        diff = {k: (res.counters[k], expect[k]) for k in expect
                if k not in skip and res.counters[k] != expect[k]}
        assert not diff, f"tile {tile.index}: counters (rtl, model) differ: {diff}"
    return out, per_tile


def test_a_reused_simulation_starts_from_reset():
    """gen.sim runs every accelerator of one configuration on one compiled simulation, reset
    between runs: a tile run after another (whose cores, rows, counters and membranes it
    leaves behind) reads exactly what it reads on a new simulation, counters included."""
    rng = np.random.default_rng(21)
    drv = Driver(CFG)
    progs = []
    for mode, r, T in (("stt", 4, 3), ("htt", 2, 2)):
        q = make_layer(rng, mode, r=r, cin=5, cout=6, T=T)
        x = rng.integers(0, 2, (T, 5, 3, 4))
        tile = next(iter(drv.plan(q, x.shape, early_start=False)))
        progs.append(drv.program(q, tile, drv.window(x, tile)))
    run_programs(CFG, progs[:1])                            # leaves its state behind
    reused = run_programs(CFG, progs[1:])
    fresh = run_programs(CFG, progs[1:], reuse=False)
    assert reused == fresh
    assert any(reused[0])                                      # the run read something


@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_tile_modes(mode, order):
    rng = np.random.default_rng({"stt": 10, "ptt": 11, "htt": 12}[mode])
    q = make_layer(rng, mode, r=3, cin=5, cout=6, T=3,
                   schedule=(True, False, True) if mode == "htt" else None)
    x = rng.integers(0, 2, (3, 5, 4, 3))
    out, per_tile = check(q, x, order=order)
    assert 0 < out.spikes.mean() < 1          # the test exercises both outcomes
    assert all(t.order == order for t, _, _ in per_tile)


@pytest.mark.parametrize("pack", [0, 1, 2])
@pytest.mark.parametrize("mode", ["stt", "ptt"])
def test_every_lane_packing_with_scratchpad_chunks(mode, pack):
    """Pk = 1, 2, 4 rank lanes x Px = 4, 2, 1 columns; rank 6 gives 18 reduction steps, more
    than the 16-entry weight scratchpad: chunks replayed over several column blocks, partial
    sums parked in the scratchpads; width 7 leaves the last block partly empty."""
    rng = np.random.default_rng(20 + pack + (mode == "stt") * 5)
    q = make_layer(rng, mode, r=6, cin=5, cout=4, T=2)
    x = rng.integers(0, 2, (2, 5, 3, 7))
    out, per_tile = check(q, x, pack=pack)
    tile = per_tile[0][0]
    assert tile.pack == pack
    counters = per_tile[0][2].counters
    if CFG.lanes >> pack > 1 and tile.width > CFG.lanes >> pack:      # several blocks
        assert counters["c2_spad_reads"] > 0 and counters["c2_spad_writes"] > 0


def test_host_keeps_rings_small():
    """Rings of one or two rows: the host refills and drains them while the tile runs; the
    accelerator waits for it (c1_in_wait, lif_stall) and the results stay exact."""
    rng = np.random.default_rng(19)
    q = make_layer(rng, "ptt", r=3, cin=5, cout=6, T=3, residual=True)
    x = rng.integers(0, 2, (3, 5, 4, 3))
    resid = rng.integers(-3000, 3000, (3, 6, 4, 3))
    for ring in (1, 2):
        out, per_tile = check(q, x, resid, ring_limit=ring)
        c = per_tile[0][2].counters
        assert c["c1_in_wait"] > 0 and c["lif_stall"] > 0


def test_rank_and_channels_beyond_the_array_with_pool_and_residual():
    # r = 6 and Cout = 9 need two / three passes of the 4-PE clusters; pooling + residual
    rng = np.random.default_rng(13)
    q = make_layer(rng, "ptt", r=6, cin=9, cout=9, T=2, pool=True, residual=True)
    x = rng.integers(0, 2, (2, 9, 4, 4))
    resid = rng.integers(-3000, 3000, (2, 9, 2, 2))
    check(q, x, resid)


def test_stt_pool_residual_odd_width():
    rng = np.random.default_rng(14)
    q = make_layer(rng, "stt", r=5, cin=4, cout=3, T=2, pool=True, residual=True)
    x = rng.integers(0, 2, (2, 4, 2, 4))
    check(q, x, rng.integers(-3000, 3000, (2, 3, 1, 2)))


@pytest.mark.parametrize("mode", ["htt", "stt"])
def test_several_tiles_with_halos(mode):
    """Tiles inside the layer: halo rows and columns hold the neighbours' spikes (cluster 1
    computes them, STT's cluster 2 computes the halo columns of q2)."""
    rng = np.random.default_rng(15)
    q = make_layer(rng, mode, r=4, cin=6, cout=5, T=2, schedule=(False, True) if mode == "htt" else None)
    x = rng.integers(0, 2, (2, 6, 5, 5))
    _, per_tile = check(q, x, tile_hw=(3, 2))
    assert len(per_tile) == 6
    assert any(not t.zero_halo[2] and not t.zero_halo[3] for t, _, _ in per_tile)   # both sides
    assert any(not t.zero_halo[0] for t, _, _ in per_tile)                          # a top halo


@pytest.mark.parametrize("mode", ["ptt", "stt"])
def test_zero_right_halo_after_a_tile_that_computed_it(mode):
    """Cluster 1 never writes zero-halo pixels: with a right edge that does not fill its block
    (width 5, Px = 4), column W's lane is zeroed by column W-1's write. The first strip
    computes its right halo (column 5, same lane), so line1 holds that value when the second
    strip, whose right halo lies outside the layer, reads its neighbour."""
    rng = np.random.default_rng(17)
    q = make_layer(rng, mode, r=3, cin=5, cout=4, T=2)
    x = rng.integers(0, 2, (2, 5, 3, 10))
    _, per_tile = check(q, x, tile_hw=(3, 5), pack=0)
    assert [(t.width, t.zero_halo[3]) for t, _, _ in per_tile] == [(5, False), (5, True)]


def test_all_zero_and_all_one_spikes_with_saturation():
    rng = np.random.default_rng(16)
    # shift1 = 0 and large weights saturate q1; all-one input maximises the sums
    q = make_layer(rng, "ptt", r=3, cin=7, cout=4, T=2, shifts=(0, 0, 0), threshold=-5)
    ones = np.ones((2, 7, 3, 3), dtype=np.int64)
    check(q, ones)
    zeros = np.zeros((2, 7, 3, 3), dtype=np.int64)
    out, _ = check(q, zeros)
    # zero input: membranes are the bias-driven constant path only
    assert np.all(out.membrane[0] == out.membrane[0][:, :1, :1])


@pytest.mark.parametrize("mode,r,cin,cout,T,H,W,pool", [
    ("stt", 1, 1, 1, 1, 1, 1, False),      # smallest tile, T = 1 (no membrane read-back)
    ("ptt", 1, 2, 3, 3, 1, 1, False),      # rows of one cycle: the LIF waits for its read-back
    ("htt", 2, 3, 3, 4, 2, 2, True),       # HTT with a random schedule over 4 steps, pooling
    ("ptt", 8, 2, 32, 1, 2, 1, False),     # rank and Cout at the small configuration's limits
])
def test_edge_shapes(mode, r, cin, cout, T, H, W, pool):
    rng = np.random.default_rng(r * 100 + cin * 10 + T)
    q = make_layer(rng, mode, r=r, cin=cin, cout=cout, T=T, pool=pool)
    for order in (0, 1):
        check(q, rng.integers(0, 2, (T, cin, H, W)), order=order)


@pytest.mark.parametrize("r,pool,hw,pack", [(3, False, (1, 1), 2), (4, False, (1, 1), 2),
                                           (8, False, (1, 1), None), (3, False, (1, 3), 2),
                                           (2, True, (2, 2), None)],
                         ids=["3-cycle", "4-cycle", "8-cycle", "9-cycle", "8-cycle-pooled"])
def test_membrane_read_back_of_short_rows(r, pool, hw, pack):
    """Cluster-4 rows of 3, 4, 8 and 9 cycles (rank r, one or three output pixels) back to back: HTT's
    reduced timestep after a full one runs at once, and its u(t-1) read must wait for the
    previous row's membrane write (8 cycles after issue, read port not transparent: rows
    shorter than 9 cycles wait, a 9-cycle row does not)."""
    rng = np.random.default_rng(64 + r)
    q = make_layer(rng, "htt", r=r, cin=4, cout=4, T=3, schedule=(False, True, False), pool=pool)
    for order in (0, 1):
        check(q, rng.integers(0, 2, (3, 4, *hw)), order=order, pack=pack)


def test_status_and_id_registers():
    drv = Driver(CFG)
    seen = {}

    async def bench(ctx, dut):
        for name in ("id", "status"):
            ctx.set(dut.host_addr, drv.map.register(name).address)
            ctx.set(dut.host_read, 1)
            await ctx.tick()
            ctx.set(dut.host_read, 0)
            assert not ctx.get(dut.host_rvalid)
            await ctx.tick()
            assert ctx.get(dut.host_rvalid)         # fixed latency of 2 cycles
            seen[name] = ctx.get(dut.host_rdata)

    run_accelerator(CFG, bench)
    assert seen["id"] == ID_VALUE
    assert seen["status"] == 0                      # neither busy nor done after reset


def test_event_rises_with_progress_and_falls_on_status_read():
    """The event line: high once the tile frees input slots / completes rows / ends, low after
    the host reads status, high again at the next progress."""
    rng = np.random.default_rng(18)
    q = make_layer(rng, "ptt", r=2, cin=3, cout=3, T=2)
    x = rng.integers(0, 2, (2, 3, 2, 2))
    drv = Driver(CFG)
    tile = drv.plan(q, x.shape, early_start=False).tiles[0]
    prog = drv.program(q, tile, drv.window(x, tile))
    from ttsnn.gen.sim import SimBus
    log = []

    async def bench(ctx, dut):
        bus = SimBus(ctx, dut, 100_000)
        for a, w in prog.setup:
            await bus.write(a, w)
        for row in prog.in_rows:
            for a, w in row:
                await bus.write(a, w)
        await bus.write(prog.registers["in_rows"], len(prog.in_rows))
        await bus.write(*prog.start)
        await bus.wait_event()
        log.append(ctx.get(dut.event))
        await bus.read([prog.registers["status"]])
        await ctx.tick()
        log.append(ctx.get(dut.event))
        await bus.wait_event()                   # further progress raises it again
        log.append(ctx.get(dut.event))

    run_accelerator(CFG, bench)
    assert log == [1, 0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper", "paper_dense"])
def test_paper_configuration_wide_words(name):
    """A tiny tile on the paper configuration (32 lanes): multi-sub-word host words (256-bit
    weights, 1536-bit affine, 64-bit spike words), two rank and output groups, pooling; in the
    paper's arrangement (zero-skipping cluster 1, its rows from the tile's spikes) and in the
    generator's own (configs/paper_dense.toml)."""
    from ttsnn.gen.zero_skip import zero_skip_row_lens
    cfg = load_config(name)
    rng = np.random.default_rng(17)
    q = make_layer(rng, "ptt", r=40, cin=70, cout=33, T=2, pool=True, residual=True)
    x = rng.integers(0, 2, (2, 70, 2, 2))
    resid = rng.integers(-3000, 3000, (2, 33, 1, 1))
    drv = Driver(cfg)
    plan = drv.plan(q, x.shape, early_start=False)
    progs = [drv.program(q, t, drv.window(x, t), drv.residual_tile(resid, t)) for t in plan]
    values = run_programs(cfg, progs)
    out = LayerOutputs(plan)
    for tile, prog, vals in zip(plan, progs, values):
        res = prog.decode(vals)
        out.add(tile, res)
        shape, win = TileShape.of(q, tile), drv.window(x, tile)
        lens = zero_skip_row_lens(cfg, shape, win) if cfg.arrangement.cluster1 == "zero_skip" else None
        expect = tile_counters(cfg, shape, window_ones=int(win.sum()), spikes_out=int(res.spikes.sum()),
                               words_in=prog.words_in, words_out=prog.words_out, c1_lens=lens)
        assert res.counters == expect
    gold = golden_layer(q, x, resid, cfg)
    np.testing.assert_array_equal(out.membrane, gold.membrane.numpy())
    np.testing.assert_array_equal(out.spikes, gold.spikes.numpy())


def test_start_right_after_the_descriptor_waits_for_the_geometry():
    """The tile geometry is registered from the descriptor: a start written in the cycle after
    the last descriptor field still runs the tile correctly (it waits for the registers)."""
    rng = np.random.default_rng(23)
    q = make_layer(rng, "stt", r=5, cin=4, cout=3, T=2, pool=True)
    x = rng.integers(0, 2, (2, 4, 2, 4))
    drv = Driver(CFG)
    tile = drv.plan(q, x.shape, early_start=False).tiles[0]
    prog = drv.program(q, tile, drv.window(x, tile))
    desc = {r.address for r in drv.map.registers if r.name.startswith("desc_word")}   # the packed descriptor
    assert desc and all(a in desc for a, _ in prog.setup[1:1 + len(desc)])
    from ttsnn.gen.sim import SimBus
    from ttsnn.gen.driver import run_tile
    results = []

    async def bench(ctx, dut):
        bus = SimBus(ctx, dut, 100_000)
        # everything but the descriptor first (input rows included), then the descriptor,
        # then start at once
        rows = [w for row in prog.in_rows for w in row] + [(prog.registers["in_rows"], len(prog.in_rows))]
        prog.setup[:] = ([w for w in prog.setup if w[0] not in desc] + rows
                         + [w for w in prog.setup if w[0] in desc])
        prog.in_rows.clear()
        results.append(await run_tile(bus, prog))

    run_accelerator(CFG, bench)
    res = prog.decode(results[0])
    gold = golden_layer(q, x, None, CFG)
    np.testing.assert_array_equal(res.membrane, gold.membrane.numpy())
    # the wait for the geometry is not part of the tile's cycles
    assert res.counters["cycles"] == tile_counters(CFG, TileShape.of(q, tile))["cycles"]


def test_counters_are_final_in_the_cycle_done_rises():
    """The counter bank adds each cycle's increments one cycle late (a pipeline register
    between the engines' per-cycle increments and the 48-bit adds): a host that reads the
    counters in the very cycle ``done`` is first high still reads every counter's final value,
    equal to the exact cycle model and to a second read much later."""
    rng = np.random.default_rng(31)
    q = make_layer(rng, "ptt", r=3, cin=4, cout=3, T=2)
    x = rng.integers(0, 2, (2, 4, 2, 3))
    drv = Driver(CFG)
    tile = drv.plan(q, x.shape, early_start=False).tiles[0]
    prog = drv.program(q, tile, drv.window(x, tile))
    assert len(prog.out_rows) <= prog.rings["out"]   # no output row needs draining to finish
    from ttsnn.gen.sim import SimBus
    reads = []

    async def bench(ctx, dut):
        bus = SimBus(ctx, dut, 100_000)
        for a, w in prog.setup + [w for row in prog.in_rows for w in row]:
            await bus.write(a, w)
        await bus.write(prog.registers["in_rows"], len(prog.in_rows))
        await bus.write(*prog.start)
        while not ctx.get(dut.done):
            await ctx.tick()
        reads.append(await bus.read(prog.counter_reads))      # in the cycle done rose
        for _ in range(20):
            await ctx.tick()
        reads.append(await bus.read(prog.counter_reads))

    run_accelerator(CFG, bench)
    assert reads[0] == reads[1]
    counters = prog.decode([0] * (len(prog.reads) - len(prog.counter_reads)) + reads[0]).counters
    expect = tile_counters(CFG, TileShape.of(q, tile), window_ones=int(drv.window(x, tile).sum()),
                           spikes_out=counters["spikes_out"], words_in=prog.words_in, words_out=0)
    assert counters == expect


def _random_case(seed: int):
    """A random small layer with a random tiling, packing and row order (any the driver
    accepts: it picks what is left unset)."""
    rng = np.random.default_rng(1000 + seed)
    mode = ("stt", "ptt", "htt")[rng.integers(3)]
    r, cin, cout, T = (int(v) for v in (rng.integers(1, 9), rng.integers(1, 10), rng.integers(1, 9),
                                       rng.integers(1, 4)))
    pool, residual = bool(rng.integers(2)), bool(rng.integers(2))
    s = 2 if pool else 1
    H, W = int(rng.integers(1, 5)) * s, int(rng.integers(1, 6)) * s
    q = make_layer(rng, mode, r=r, cin=cin, cout=cout, T=T, pool=pool, residual=residual)
    x = rng.integers(0, 2, (T, cin, H, W))
    resid = rng.integers(-3000, 3000, (T, cout, H // s, W // s)) if residual else None
    lim = CFG.limits
    tile_hw = (min(int(rng.integers(1, H // s + 1)) * s, lim.max_tile_height),
               min(int(rng.integers(1, W // s + 1)) * s, lim.max_tile_width)) if rng.integers(2) else None
    pack = int(rng.integers(0, 3)) if rng.integers(2) else None
    order = int(rng.integers(0, 2)) if rng.integers(2) else None
    return q, x, resid, tile_hw, pack, order


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_layers(seed):
    """A sweep of random layers, tilings, packings and orders (halos on every side, unaligned
    edges): outputs against the golden model, every counter against the cycle model."""
    q, x, resid, tile_hw, pack, order = _random_case(seed)
    check(q, x, resid, tile_hw=tile_hw, pack=pack, order=order)
