"""The tiling driver: plans, halos, stitching, host-word encoding and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from gen.config import load_config
from gen.driver import Driver, LayerOutputs, TileResult, plan_layer
from sw.golden import golden_layer, golden_tile
from sw.qlayer import QuantTTLayer

SMALL = load_config("small")
PAPER = load_config("paper")


def layer(rng, mode="ptt", r=3, cin=6, cout=5, pool=False, residual=False):
    return QuantTTLayer(mode=mode, w1=rng.integers(-128, 128, (r, cin)),
                        w2=rng.integers(-128, 128, (r, r, 3)), w3=rng.integers(-128, 128, (r, r, 3)),
                        w4=rng.integers(-128, 128, (cout, r)), shift1=1, shift2=6, shift3=7,
                        scale=rng.integers(-300, 300, (2, cout)), affine_shift=5,
                        bias=rng.integers(-100, 100, cout), threshold=20, pool=pool, residual=residual)


@pytest.mark.parametrize("pool", [False, True])
def test_tiles_cover_the_layer_once_and_fit(pool):
    plan = plan_layer(PAPER, (4, 64, 32, 32), rank=24, out_channels=64, pool=pool)
    cover = np.zeros((64, 32, 32), int)
    for t in plan:
        assert t.height <= PAPER.limits.max_tile_height and t.width <= PAPER.limits.max_tile_width
        cover[t.out0:t.out0 + t.out_channels, t.row0:t.row0 + t.height, t.col0:t.col0 + t.width] += 1
        if pool:
            assert t.height % 2 == 0 and t.width % 2 == 0
    assert np.all(cover == 1)
    assert len(plan) > 1      # 32x32 at T=4 does not fit the state_out buffer in one tile


def test_output_channel_groups_when_cout_exceeds_the_limit():
    plan = plan_layer(SMALL, (2, 8, 4, 4), rank=4, out_channels=40)
    groups = sorted({(t.out0, t.out_channels) for t in plan})
    assert sum(n for _, n in groups) == 40 and all(n <= SMALL.limits.max_out_channels for _, n in groups)
    assert [t.weights_change for t in plan].count(True) == len(groups)


def test_tiled_golden_equals_untiled_golden():
    """Stitching per-tile golden results over the driver's windows gives the untiled layer:
    the halo convention of docs/numerics.md holds (the hardware tests use the same driver)."""
    rng = np.random.default_rng(20)
    for mode in ("stt", "ptt"):
        q = layer(rng, mode=mode)
        x = rng.integers(0, 2, (3, 6, 7, 5))
        drv = Driver(SMALL)
        plan = drv.plan(q, x.shape, tile_hw=(3, 2))
        out = LayerOutputs(plan)
        for t in plan:
            g = golden_tile(q, drv.window(x, t), None, SMALL)
            out.add(t, TileResult(g.spikes.numpy()[:, t.out0:t.out0 + t.out_channels],
                                  g.membrane.numpy()[:, t.out0:t.out0 + t.out_channels], {}))
        gold = golden_layer(q, x, None, SMALL)
        np.testing.assert_array_equal(out.membrane, gold.membrane.numpy())


def test_encoding_round_trip_and_word_counts():
    rng = np.random.default_rng(21)
    q = layer(rng, residual=True)
    x = rng.integers(0, 2, (2, 6, 3, 3))
    drv = Driver(SMALL)
    plan = drv.plan(q, x.shape)
    t = plan.tiles[0]
    prog = drv.program(q, t, drv.window(x, t), rng.integers(-100, 100, (2, 5, 3, 3)))
    m = drv.map
    region_writes = [a for a, _ in prog.writes if any(r.base <= a < r.base + r.span for r in m.regions)]
    assert prog.words_in == len(region_writes)
    # spike words: bit c of word ((t*5 + y)*5 + x) is the window's spike
    sp = m.region("spike_in")
    words = {a - sp.base: w for a, w in prog.writes if sp.base <= a < sp.base + sp.span}
    win = drv.window(x, t)
    for (tt, c, y, xx), v in np.ndenumerate(win):
        assert (words[(tt * 5 + y) * 5 + xx] >> c) & 1 == v
    # decode a fabricated read-back: membrane lane values and spikes come back in place
    mem = rng.integers(-(1 << 15), 1 << 15, (2, 8, 3, 3))
    spk = rng.integers(0, 2, (2, 8, 3, 3))
    mem_words = drv.lane_words(mem, 16)
    p = SMALL.lanes
    spk_words = [sum(int(spk[tt, g * p + l, y, xx]) << l for l in range(p))
                 for tt in range(2) for y in range(3) for xx in range(3) for g in range(2)]
    hb = 32
    vals = []
    for w in mem_words:
        vals += [(w >> (k * hb)) & 0xFFFFFFFF for k in range(m.region("membrane").subwords)]
    vals += spk_words
    vals += [0] * (len(prog.reads) - len(vals))
    res = prog.decode(vals)
    np.testing.assert_array_equal(res.membrane, mem[:, :5])
    np.testing.assert_array_equal(res.spikes, spk[:, :5])


def test_clear_errors():
    rng = np.random.default_rng(22)
    drv = Driver(SMALL)
    with pytest.raises(ValueError, match="rank = 9 exceeds"):
        plan_layer(SMALL, (2, 4, 4, 4), rank=9, out_channels=4)
    with pytest.raises(ValueError, match="weight streaming"):
        plan_layer(PAPER, (6, 512, 6, 6), rank=170, out_channels=512)
    with pytest.raises(ValueError, match="even height and width"):
        plan_layer(SMALL, (2, 4, 5, 4), rank=2, out_channels=4, pool=True)
    with pytest.raises(ValueError, match="expected \\(T, Cin, H, W\\)"):
        plan_layer(SMALL, (4, 4, 4), rank=2, out_channels=4)
    q = layer(rng)
    plan = drv.plan(q, (2, 6, 3, 3))
    with pytest.raises(ValueError, match="window: expected shape"):
        drv.program(q, plan.tiles[0], np.zeros((2, 6, 4, 4), int))
    with pytest.raises(ValueError, match="spikes must be 0 or 1"):
        drv.spike_words(np.full((1, 2, 3, 3), 2))
    with pytest.raises(FileNotFoundError, match="manifest"):
        Driver("/nonexistent/manifest.json")
