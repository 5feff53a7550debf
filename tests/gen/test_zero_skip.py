"""The paper's zero-skipping cluster 1 as a generator option (``arrangement.cluster1 =
"zero_skip"``, gen/engines/cluster1_zero_skip.py): validated; its transposed G1 layout and
data-dependent row lengths (gen/zero_skip.py) against hand-written cases; whole tiles of the
accelerator in amaranth.sim equal the golden model, with every counter equal to the cycle
model given the tile's input spikes (the engine alone: tests/gen/test_engine_cluster1.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ttsnn.gen.config import Arrangement, ConfigError, config_from_dict, load_config
from ttsnn.gen.cyclemodel import TileShape, tile_counters
from ttsnn.gen.driver import Driver, LayerOutputs
from ttsnn.gen.zero_skip import w1_depth, w1_words_zero_skip, zero_skip_row_lens
from ttsnn.sw.golden import golden_layer
from tests.gen.test_arrangement import _run_tiles
from tests.gen.test_top import make_layer

CFG = load_config("small")
ZS = dataclasses.replace(CFG, arrangement=Arrangement(cluster1="zero_skip"))
PAPER_ARR = dataclasses.replace(CFG, arrangement=Arrangement(stt_chain="sequential", cluster1="zero_skip"))


def test_cluster1_is_validated_and_defaults_to_dense():
    assert CFG.arrangement.cluster1 == "dense"
    data = ZS.to_dict()
    assert config_from_dict(data) == ZS
    data["arrangement"] = {"cluster1": "sparse"}
    with pytest.raises(ConfigError, match=r"arrangement\.cluster1.*dense.*zero_skip"):
        config_from_dict(data)


def test_transposed_g1_words_by_hand():
    """P = 4, Pk = 2 (Px = 2), r = 3, Cin = 3: word kg * 2 + c // 2, lane (c % 2) * 2 + j."""
    w1 = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])        # w1[k, c]
    words = w1_words_zero_skip(w1, pack=1, lanes=4)
    assert words == [[1, 4, 2, 5],    # kg 0, channels 0, 1: (w[0,0], w[1,0]), (w[0,1], w[1,1])
                     [3, 6, 0, 0],    # kg 0, channel 2, channel 3 padded
                     [7, 0, 8, 0],    # kg 1: rank 2 and a padded rank
                     [9, 0, 0, 0]]
    assert w1_depth(ZS, 3, 3, 1) == 4 and w1_depth(CFG, 3, 3, 1) == 3


def test_row_lengths_by_hand():
    """One timestep, a 1x2 tile with every halo outside the layer (rows 0 and 2 take one
    step, columns -1 and 2 are skipped), Cin = 40 (two 32-bit words), r = 3 at Pk = 2 (two
    rank groups): pixel 0 has 3 ones in word 0 and none in word 1 (3 + 1 steps), pixel 1 has
    33 ones (32 + 1)."""
    s = TileShape(40, 3, 2, 1, 2, 1, "ptt", (True,), zero_halo=(True, True, True, True), pack=1)
    win = np.zeros((1, 40, 3, 4), int)
    win[0, [0, 5, 31], 1, 1] = 1
    win[0, :33, 1, 2] = 1
    assert zero_skip_row_lens(ZS, s, win) == [1, 2 * (4 + 33), 1]


def _check_tiles(cfg, q, x, **plan):
    drv, tiles = _run_tiles(cfg, q, x, **plan)
    for tile, prog, res in tiles:
        s = TileShape.of(q, tile)
        win = drv.window(x, tile)
        expect = tile_counters(cfg, s, window_ones=int(win.sum()), spikes_out=int(res.spikes.sum()),
                               words_in=prog.words_in, words_out=prog.words_out,
                               c1_lens=zero_skip_row_lens(cfg, s, win))
        assert set(expect) == set(res.counters)
        diff = {k: (res.counters[k], expect[k]) for k in expect if res.counters[k] != expect[k]}
        assert not diff, f"tile {tile.index}: counters (rtl, model) differ: {diff}"
    return tiles


@pytest.mark.parametrize("mode,cfg,density,order,pack", [
    ("stt", PAPER_ARR, 0.3, 0, 1), ("ptt", ZS, 0.0, 1, 0), ("htt", ZS, 1.0, 0, 2), ("ptt", ZS, 0.1, 0, 1)],
    ids=["stt-paper-sparse", "ptt-all-zero", "htt-all-one", "ptt-10pc"])
def test_zero_skip_tiles_match_golden_and_the_cycle_model(mode, cfg, density, order, pack):
    rng = np.random.default_rng(50 + order + 2 * pack)
    T = 3
    q = make_layer(rng, mode, r=5, cin=4, cout=3, T=T, pool=mode == "htt",
                   schedule=(True, False, True) if mode == "htt" else None)
    x = (rng.random((T, 4, 4, 4 if mode == "htt" else 5)) < density).astype(int)
    tiles = _check_tiles(cfg, q, x, order=order, pack=pack)
    out = LayerOutputs(Driver(cfg).plan(q, x.shape, order=order, pack=pack, early_start=False))
    for tile, _, res in tiles:
        out.add(tile, res)
    gold = golden_layer(q, x, None, cfg)
    np.testing.assert_array_equal(out.membrane, gold.membrane.numpy())
    np.testing.assert_array_equal(out.spikes, gold.spikes.numpy())


@pytest.mark.parametrize("planned_for", [0.0, 1.0], ids=["planned-all-zero", "planned-all-one"])
def test_plans_for_any_density_run_any_spikes(planned_for):
    """The spike density only chooses the tiling (here Pk = 2, row outer for density 0 and
    Pk = 4, timestep outer for density 1): both plans run spikes of another density (0.3)
    bit-exactly, with every counter equal to the cycle model given those spikes."""
    rng = np.random.default_rng(61)
    T, cin = 3, 16
    q = make_layer(rng, "ptt", r=5, cin=cin, cout=4, T=T, pool=False, schedule=None)
    x = (rng.random((T, cin, 4, 5)) < 0.3).astype(int)
    plan = Driver(ZS).plan(q, x.shape, spike_density=planned_for, early_start=False)
    assert (plan.pack, plan.order) == ((1, 0) if planned_for == 0.0 else (2, 1))
    tiles = _check_tiles(ZS, q, x, spike_density=planned_for)
    out = LayerOutputs(plan)
    for tile, _, res in tiles:
        out.add(tile, res)
    gold = golden_layer(q, x, None, ZS)
    np.testing.assert_array_equal(out.membrane, gold.membrane.numpy())
    np.testing.assert_array_equal(out.spikes, gold.spikes.numpy())
