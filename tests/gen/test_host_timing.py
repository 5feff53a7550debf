"""The cycle model with the host at the port's rate (gen/hosttiming.py) against the RTL in
amaranth.sim: every timing counter (cycles, c1_in_wait, lif_stall and the engines' stalls)
and the host's bus cycles per tile, at host ports of 32, 64 and 256 bits, with rings small
enough that the host, not the datapath, sets the pace; in the generator's arrangement and in
the paper's (zero-skipping cluster 1, whose row lengths come from each tile's input spikes,
and STT's sequential chain)."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.gen.config import Arrangement, config_from_dict, load_config
from ttsnn.gen.cyclemodel import TileShape, tile_timing
from ttsnn.gen.driver import Driver, run_tile
from ttsnn.gen.hosttiming import host_tile_timing, shape_traffic, traffic_of_program
from ttsnn.gen.sim import SimBus, run_accelerator
from ttsnn.gen.zero_skip import expected_row_lens, zero_skip_row_lens

from tests.gen.test_top import TIMING, make_layer


def small(host_data: int, paper_arrangement: bool = False):
    """The small configuration at ``host_data`` bits; ``paper_arrangement``: with the
    zero-skipping cluster 1 and STT's sequential chain."""
    d = load_config("small").to_dict()
    d["widths"]["host_data"] = host_data
    if paper_arrangement:
        d["arrangement"] = {"stt_chain": "sequential", "cluster1": "zero_skip"}
    return config_from_dict(d, source=f"small, host_data={host_data}, paper_arrangement={paper_arrangement}")


class CountingBus(SimBus):
    """SimBus that counts the bus cycles it spends (writes 1, n reads n + 1, waits)."""

    def __init__(self, ctx, dut, max_wait):
        super().__init__(ctx, dut, max_wait)
        self.cycles = 0

    async def write(self, addr, data):
        await super().write(addr, data)
        self.cycles += 1

    async def read(self, addrs):
        out = await super().read(addrs)
        self.cycles += len(addrs) + 1 if addrs else 0
        return out

    async def wait_event(self):
        while not self.ctx.get(self.dut.event):
            await self.ctx.tick()
            self.cycles += 1


def run_layer(cfg, q, x, resid, ring_limit, tile_hw=None, early_start=None):
    """Every tile of the layer's plan on one simulated accelerator, the host at its port's
    rate: ``(driver, plan, [(program, decoded result, bus cycles)])``. ``early_start``: forced
    or forbidden (default: the planner's choice)."""
    drv = Driver(cfg)
    plan = drv.plan(q, x.shape, tile_hw=tile_hw, early_start=early_start)
    progs = [drv.program(q, t, drv.window(x, t), drv.residual_tile(resid, t) if q.residual else None,
                         ring_limit=ring_limit) for t in plan]
    out = []

    async def bench(ctx, dut):
        for prog in progs:
            bus = CountingBus(ctx, dut, 100_000)
            values = await run_tile(bus, prog)
            out.append((prog, prog.decode(values), bus.cycles))

    run_accelerator(cfg, bench)
    return drv, plan, out


CASES = [  # host bits, ring rows, mode, residual, tile (None: the planner's), paper arrangement, density
    (32, 1, "ptt", True, None, False, 0.5),
    (64, 2, "stt", False, (4, 4), False, 0.5),
    (256, 1, "htt", True, None, False, 0.5),
    (32, None, "ptt", False, (4, 2), False, 0.5),
    (32, 1, "ptt", True, None, True, 0.3),
    (64, 1, "stt", False, (4, 4), True, 0.5),
    (128, 2, "htt", True, None, True, 0.1),
    (32, None, "stt", True, (4, 2), True, 0.0),
]


@pytest.mark.parametrize("host_data,ring,mode,residual,tile_hw,paper_arr,density", CASES,
                         ids=[f"{c[0]}b-ring{c[1]}-{c[2]}" + ("-zero-skip" if c[5] else "") for c in CASES])
def test_model_equals_rtl_with_host(host_data, ring, mode, residual, tile_hw, paper_arr, density):
    cfg = small(host_data, paper_arr)
    rng = np.random.default_rng(host_data + (ring or 0))
    q = make_layer(rng, mode, r=3, cin=5, cout=6, T=3, residual=residual,
                   schedule=(True, False, True) if mode == "htt" else None)
    x = (rng.random((3, 5, 4, 6)) < density).astype(int)
    resid = rng.integers(-50, 50, (3, 6, 4, 6)) if residual else None
    drv, _, tiles = run_layer(cfg, q, x, resid, ring, tile_hw)
    host_waits = 0
    for k, (prog, result, bus_cycles) in enumerate(tiles):
        rtl = result.counters
        shape = TileShape.of(q, prog.tile)
        lens = zero_skip_row_lens(cfg, shape, drv.window(x, prog.tile)) if paper_arr else None
        model = host_tile_timing(cfg, shape, traffic_of_program(prog, drv.map), fresh=k == 0, c1_lens=lens)
        diff = {c: (rtl[c], model[c]) for c in TIMING if rtl[c] != model[c]}
        assert not diff, f"tile {k}: (rtl, model) differ: {diff}"
        assert model["host_span"] == bus_cycles
        host_waits += rtl["c1_in_wait"] + rtl["lif_stall"]
    if ring == 1:       # one-row rings: the host sets the pace, its stalls are counted
        assert host_waits > 0


EARLY_CASES = [  # host bits, ring rows, mode, residual, tile, paper arrangement, density
    (256, None, "ptt", True, None, False, 0.5),       # one tile: the cores after the start
    (32, 1, "stt", False, (4, 2), False, 0.5),        # later strips: every chunk declared, none sent
    (64, 2, "htt", True, (4, 4), False, 0.5),
    (128, None, "ptt", True, None, True, 0.3),        # the zero-skipping cluster 1's rank groups
    (32, 1, "stt", True, (4, 2), True, 0.5),
]


# make test: the 64-bit ring and the zero-skipping cases; the rest (a CPU-minute each) make test-slow
EARLY_SLOW = {(256, None, "ptt"), (32, 1, "stt", False)}


def _early_param(c):
    slow = c[:3] in EARLY_SLOW or (c[:3] + (c[5],)) in EARLY_SLOW
    return pytest.param(*c, marks=pytest.mark.slow) if slow else c


@pytest.mark.parametrize("host_data,ring,mode,residual,tile_hw,paper_arr,density",
                         [_early_param(c) for c in EARLY_CASES],
                         ids=[f"{c[0]}b-ring{c[1]}-{c[2]}" + ("-zero-skip" if c[5] else "") for c in EARLY_CASES])
def test_early_start_model_equals_rtl(host_data, ring, mode, residual, tile_hw, paper_arr, density):
    """Early start (``Tile.early_start``: the cores loaded once, after the start, through rings
    that hold them whole; later passes' chunks declared, not sent): the outputs equal those of
    the resident-core plan (and the golden model through it: tests/gen/test_top.py), and the
    host-rate model's counters and bus cycles equal the RTL's on every tile."""
    cfg = small(host_data, paper_arr)
    rng = np.random.default_rng(host_data + 7)
    q = make_layer(rng, mode, r=3, cin=5, cout=6, T=3, residual=residual,
                   schedule=(True, False, True) if mode == "htt" else None)
    x = (rng.random((3, 5, 4, 6)) < density).astype(int)
    resid = rng.integers(-50, 50, (3, 6, 4, 6)) if residual else None
    drv, plan, tiles = run_layer(cfg, q, x, resid, ring, tile_hw, early_start=True)
    _, _, resident = run_layer(cfg, q, x, resid, ring, tile_hw, early_start=False)
    assert all(t.early_start and t.w1_ring and t.w23_ring and t.w4_ring for t in plan)
    assert any(not t.weights_change for t in plan) == (tile_hw is not None and tile_hw[1] < 6)
    for k, ((prog, result, bus_cycles), (_, ref, _)) in enumerate(zip(tiles, resident)):
        np.testing.assert_array_equal(result.spikes, ref.spikes)
        np.testing.assert_array_equal(result.membrane, ref.membrane)
        rtl = result.counters
        shape = TileShape.of(q, prog.tile)
        lens = zero_skip_row_lens(cfg, shape, drv.window(x, prog.tile)) if paper_arr else None
        traffic = traffic_of_program(prog, drv.map)
        model = host_tile_timing(cfg, shape, traffic, fresh=k == 0, c1_lens=lens)
        diff = {c: (rtl[c], model[c]) for c in TIMING if rtl[c] != model[c]}
        assert not diff, f"tile {k}: (rtl, model) differ: {diff}"
        assert model["host_span"] == bus_cycles
        if ring is None:          # (shape_traffic knows no ring limit)
            assert shape_traffic(cfg, shape, prog.tile.weights_change, read_counters=True) == traffic
        if not prog.tile.weights_change:      # the cores stay in their rings: no weight word sent
            assert not any(prog.w1_chunks + prog.w2_chunks + prog.w3_chunks + prog.w4_chunks)


@pytest.mark.parametrize("streamed_w4", [False, True], ids=["resident", "early-start"])
def test_last_row_read_by_groups(streamed_w4):
    """The host reads a tile's last output row a group at a time as ``out_groups`` shows them
    written (gen/host_program.py): the values equal a whole-row read's, the host sees groups
    before the row completes, the tile ends sooner, and the model's ``out_groups`` (each
    group's last issue + E4_WRITE_LATENCY + 1; with a streamed G4 one cluster-4 entry per
    group) keeps its counters and bus cycles equal to the RTL's."""
    import dataclasses
    cfg = small(256)
    rng = np.random.default_rng(11)
    q = make_layer(rng, "stt", r=4, cin=5, cout=12, T=2)
    x = (rng.random((2, 5, 4, 6)) < 0.5).astype(int)
    drv = Driver(cfg)
    (tile,) = list(drv.plan(q, x.shape, early_start=streamed_w4))
    assert bool(tile.w4_ring) == streamed_w4
    prog = drv.program(q, tile, drv.window(x, tile), None)
    # 3 groups of 6 words, a membrane and a trace beat each (4 lanes: 64 and 16 bits)
    assert [len(g) for g in prog.last_row_groups] == [6 * 2] * 3
    whole = dataclasses.replace(prog, last_row_groups=[])
    seen, runs = [], []

    class GroupsBus(CountingBus):
        async def read(self, addrs):
            out = await super().read(addrs)
            if list(addrs) == [prog.registers["out_groups"]]:
                seen.append(out[0])
            return out

    async def bench(ctx, dut):
        for p in (prog, whole):
            bus = GroupsBus(ctx, dut, 100_000)
            values = await run_tile(bus, p)
            runs.append((p.decode(values), bus.cycles))

    run_accelerator(cfg, bench)
    (by_groups, span), (ref, span_whole) = runs
    np.testing.assert_array_equal(by_groups.spikes, ref.spikes)
    np.testing.assert_array_equal(by_groups.membrane, ref.membrane)
    assert max(seen) == 2 and span < span_whole
    for k, (p, (result, bus_cycles)) in enumerate(zip((prog, whole), runs)):
        model = host_tile_timing(cfg, TileShape.of(q, p.tile), traffic_of_program(p, drv.map), fresh=k == 0)
        diff = {c: (result.counters[c], model[c]) for c in TIMING if result.counters[c] != model[c]}
        assert not diff, f"(rtl, model) differ: {diff}"
        assert model["host_span"] == bus_cycles


def test_out_groups_register_cycle_by_cycle():
    """``out_groups`` as the host reads it, polled every 5 bus cycles from the start to
    ``done`` (groups of 16 cycles: every phase of a group's end is sampled), equals the
    model's value in the same bus cycle (gen/hosttiming.py ModelBus): a group counts from
    its last issue + E4_WRITE_LATENCY + 1, 0 again when its row completes."""
    from ttsnn.gen.host_program import write_all
    from ttsnn.gen.hosttiming import ModelBus, _Program, _Registers, _run
    cfg = small(256)
    rng = np.random.default_rng(12)
    q = make_layer(rng, "ptt", r=4, cin=5, cout=12, T=2)
    x = (rng.random((2, 5, 4, 4)) < 0.5).astype(int)
    drv = Driver(cfg)
    (tile,) = list(drv.plan(q, x.shape, early_start=False))
    prog = drv.program(q, tile, drv.window(x, tile), None)
    assert prog.rings["in"] >= len(prog.in_rows) and prog.rings["out"] >= len(prog.out_rows)

    async def poll(bus, p, log):
        """Set up, every input row, start; then read (out_groups, out_rows, status,
        in_consumed: 4 reads in 5 cycles) until done."""
        await write_all(bus, p.setup)
        for row in p.in_rows:
            await write_all(bus, row)
        await bus.write(p.registers["in_rows"], len(p.in_rows))
        await bus.write(*p.start)
        while True:
            names = ("out_groups", "out_rows", "status", "in_consumed")
            log.append(tuple(await bus.read([p.registers[n] for n in names])))
            if log[-1][2] & 2:
                return

    rtl: list = []

    async def bench(ctx, dut):
        await poll(SimBus(ctx, dut, 100_000), prog, rtl)

    run_accelerator(cfg, bench)
    traffic = traffic_of_program(prog, drv.map)
    regs = _Registers()
    bus = ModelBus(cfg, TileShape.of(q, tile), regs, fresh=True)
    bus.rings, bus.last_groups = traffic.rings, traffic.last_groups
    model: list = []
    _run(poll(bus, _Program(traffic, regs), model))
    assert [v[0] for v in rtl].count(2) > 8      # groups seen before their row completes
    done = lambda log: [(g, rows, status & 2, n) for g, rows, status, n in log]  # noqa: E731 (the model keeps no busy bit)
    assert done(model) == done(rtl)


@pytest.mark.parametrize("paper_arr", [False, True], ids=["ours", "paper-arrangement"])
def test_wide_port_keeps_up(paper_arr):
    """With rings as large as the regions and a 512-bit port the host never holds the
    engines up: the host-timed model equals the model of a host that always keeps up (the
    zero-skipping cluster 1 with expected row lengths, fractional, at a 20 % density)."""
    cfg = small(512, paper_arr)
    for mode in ("stt", "ptt", "htt"):
        s = TileShape(5, 3, 6, 4, 6, 3, mode, (True, False, True), False, False,
                      (True, True, True, True), 0, 0)
        lens = expected_row_lens(cfg, s, 0.2) if paper_arr else None
        with_host = host_tile_timing(cfg, s, shape_traffic(cfg, s), c1_lens=lens)
        ideal = tile_timing(cfg, s, lens)
        assert {k: with_host[k] for k in ideal} == ideal
        assert with_host["c1_in_wait"] == with_host["lif_stall"] == 0


def test_zero_skip_needs_its_row_lengths():
    """The host-timed model does not guess the zero-skipping cluster 1's data-dependent rows."""
    cfg = small(32, paper_arrangement=True)
    assert cfg.arrangement == Arrangement("sequential", "zero_skip")
    s = TileShape(5, 3, 6, 4, 6, 3, "ptt", (True,) * 3)
    with pytest.raises(ValueError, match="c1_lens"):
        host_tile_timing(cfg, s, shape_traffic(cfg, s))


@pytest.mark.parametrize("host_data", [32, 128])
def test_shape_traffic_equals_program(host_data):
    """The traffic counted from the shape equals the driver's program beat for beat."""
    cfg = small(host_data)
    drv = Driver(cfg)
    rng = np.random.default_rng(5)
    for mode, residual, pool in (("ptt", True, False), ("stt", False, True), ("htt", True, True)):
        q = make_layer(rng, mode, r=3, cin=9, cout=6, T=2, pool=pool, residual=residual,
                       schedule=(True, False) if mode == "htt" else None)
        x = rng.integers(0, 2, (2, 9, 8, 8))
        ho = 4 if pool else 8
        resid = rng.integers(-9, 9, (2, 6, ho, ho)) if residual else None
        for t in drv.plan(q, x.shape, tile_hw=(4, 4)):
            prog = drv.program(q, t, drv.window(x, t), drv.residual_tile(resid, t) if residual else None,
                               load_weights=True, read_counters=False)
            assert shape_traffic(cfg, TileShape.of(q, t)) == traffic_of_program(prog, drv.map)


def test_host_data_validated():
    from ttsnn.gen.config import ConfigError
    d = load_config("small").to_dict()
    d["widths"]["host_data"] = 96
    with pytest.raises(ConfigError, match="widths.host_data"):
        config_from_dict(d, source="test")
