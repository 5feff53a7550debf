"""The paper's STT chaining as a generator option (``arrangement.stt_chain = "sequential"``,
gen.config.Arrangement): validated; in amaranth.sim the clusters-2/3 engine writes the golden
q23 and clusters 2 and 3 never issue in the same cycle (they do in the pipelined chaining);
whole STT tiles equal the golden model with every counter equal to the cycle model's, and
every counter but the cycles and stalls equal to the pipelined chaining's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tests.gen.test_engine_cluster23 as e23_test
from ttsnn.gen.config import Arrangement, ConfigError, config_from_dict, load_config
from ttsnn.gen.cyclemodel import TileShape, tile_counters
from ttsnn.gen.driver import Driver
from ttsnn.gen.sim import run_programs, run_testbench, start_engine
from ttsnn.sw import golden
from ttsnn.sw.golden import golden_layer
from tests.gen.test_top import TIMING, make_layer

CFG = load_config("small")
SEQ = dataclasses.replace(CFG, arrangement=Arrangement(stt_chain="sequential"))


def test_stt_chain_is_validated_and_defaults_to_pipelined():
    assert CFG.arrangement.stt_chain == "pipelined"
    data = CFG.to_dict()
    assert config_from_dict(data) == CFG                      # round trip with the section
    del data["arrangement"]
    assert config_from_dict(data).arrangement == Arrangement()  # optional section
    data["arrangement"] = {"stt_chain": "paper"}
    with pytest.raises(ConfigError, match=r"arrangement\.stt_chain.*pipelined.*sequential"):
        config_from_dict(data)
    data["arrangement"] = {"chain": "sequential"}
    with pytest.raises(ConfigError, match=r"arrangement\.chain.*unknown field"):
        config_from_dict(data)


def _overlap(cfg, monkeypatch, order):
    """Run the clusters-2/3 engine of ``cfg`` alone on a 1-row STT tile (golden q1 in line1):
    check its line4 against golden q23, return (cycles where clusters 2 and 3 both issued,
    cycles either issued)."""
    monkeypatch.setattr(e23_test, "CFG", cfg)
    rng = np.random.default_rng(7)
    T = 4
    q = make_layer(rng, "stt", r=5, cin=3, cout=2, T=T)
    x = rng.integers(0, 2, (T, 3, 1, 6))
    drv = Driver(cfg)
    tile = next(iter(drv.plan(q, x.shape, tile_hw=(1, 6), pack=1, order=order, early_start=False)))
    geo = drv.geometry(q, tile)
    gold = golden.golden_tile(q, drv.window(x, tile), None, cfg, intermediates=True)
    weights = drv.weight_words(q, tile)
    h = e23_test.Harness(e23_test._line1_words(gold.q1.numpy(), geo, tile, order, rng),
                         weights["w2"], weights["w3"])
    eng = h.engine
    both, either, line4 = [0], [0], {}

    async def bench(ctx):
        await start_engine(ctx, eng, drv.descriptor(q, tile, {"in": 1, "res": 1, "out": 1}),
                           {"e1_rows": 1 << 15, "e4_released": 1 << 15}, h.geometry.latency)
        for _ in range(100_000):
            c2, c3 = ctx.get(eng.counts.c2_busy), ctx.get(eng.counts.c3_busy)
            both[0] += c2 & c3
            either[0] += c2 | c3
            if ctx.get(eng.line4.en):
                line4[ctx.get(eng.line4.addr)] = ctx.get(eng.line4.data)
            await ctx.tick()
            if not ctx.get(eng.busy):
                break
        assert ctx.get(eng.q23_rows) == T

    run_testbench(h, bench)
    e23_test.assert_line4_holds(line4, gold.q23.numpy(), geo, tile.width, cfg.widths.activation)
    return both[0], either[0]


@pytest.mark.parametrize("order", [0, 1], ids=["row-outer", "timestep-outer"])
def test_sequential_chain_never_runs_clusters_2_and_3_at_once(monkeypatch, order):
    both_seq, busy_seq = _overlap(SEQ, monkeypatch, order)
    both_pipe, busy_pipe = _overlap(CFG, monkeypatch, order)
    assert both_seq == 0 and busy_seq > 0
    assert both_pipe > 0                      # the pipelined chaining does overlap them
    assert busy_seq == busy_pipe + both_pipe  # same issue cycles, none shared any more


def _run_tiles(cfg, q, x, **plan):
    """Every tile of the plan on one simulated accelerator, the cores resident (loaded before
    the start, so that the host keeps up and the keeps-up cycle model applies)."""
    drv = Driver(cfg)
    tiles = list(drv.plan(q, x.shape, early_start=False, **plan))
    progs = [drv.program(q, t, drv.window(x, t)) for t in tiles]
    values = run_programs(cfg, progs)
    out = []
    for tile, prog, vals in zip(tiles, progs, values):
        res = prog.decode(vals)
        out.append((tile, prog, res))
    return drv, out


@pytest.mark.parametrize("order,pack,pool,hw", [pytest.param(0, 1, False, (4, 5), marks=pytest.mark.slow),
                                                (1, 0, True, (4, 4)),   # make test: one case (a CPU-minute each)
                                                pytest.param(0, 2, False, (3, 7), marks=pytest.mark.slow)])
def test_sequential_stt_tiles_match_golden_and_the_cycle_model(order, pack, pool, hw):
    rng = np.random.default_rng(30 + order + 2 * pack)
    T = 3
    q = make_layer(rng, "stt", r=5, cin=4, cout=3, T=T, pool=pool)
    x = rng.integers(0, 2, (T, 4) + hw)
    gold = golden_layer(q, x, None, SEQ)
    drv, seq = _run_tiles(SEQ, q, x, order=order, pack=pack)
    _, pipe = _run_tiles(CFG, q, x, order=order, pack=pack)
    for (tile, prog, res), (_, _, res_pipe) in zip(seq, pipe):
        assert tile.order == order and tile.pack == pack
        np.testing.assert_array_equal(res.spikes, res_pipe.spikes)
        np.testing.assert_array_equal(res.membrane, res_pipe.membrane)
        expect = tile_counters(SEQ, TileShape.of(q, tile), window_ones=int(drv.window(x, tile).sum()),
                               spikes_out=int(res.spikes.sum()), words_in=prog.words_in,
                               words_out=prog.words_out)
        diff = {k: (res.counters[k], expect[k]) for k in expect if res.counters[k] != expect[k]}
        assert not diff, f"tile {tile.index}: counters (rtl, model) differ: {diff}"
        # the same work as the pipelined chaining, in more cycles
        same = {k for k in res.counters if k not in TIMING}
        assert {k: res.counters[k] for k in same} == {k: res_pipe.counters[k] for k in same}
        assert res.counters["cycles"] > res_pipe.counters["cycles"]
    if len(seq) == 1:
        np.testing.assert_array_equal(seq[0][2].membrane, gold.membrane.numpy())
        np.testing.assert_array_equal(seq[0][2].spikes, gold.spikes.numpy())


def test_ptt_and_htt_tiles_are_unchanged_by_the_stt_chain():
    rng = np.random.default_rng(41)
    for mode in ("ptt", "htt"):
        q = make_layer(rng, mode, r=3, cin=4, cout=3, T=3, schedule=(True, False, True) if mode == "htt" else None)
        shape = TileShape(4, 3, 3, 4, 5, 3, mode, q.full_timesteps(3) if mode == "htt" else (True,) * 3)
        assert tile_counters(SEQ, shape) == tile_counters(CFG, shape)
