"""The tiling driver: plans, halos, stitching, row orders, host-word encoding and clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ttsnn.gen.config import config_from_dict, load_config, log2
from ttsnn.gen.cyclemodel import TileShape, e1_rows, estimate_cycles, tile_timing
from ttsnn.gen.zero_skip import expected_row_lens
from ttsnn.sw.cli_util import UserError
from ttsnn.gen.driver import (CoresDoNotFit, Driver, LayerOutputs, TileResult, input_row_order, output_row_order,
                        plan_layer, plan_layer_any_weights)
from ttsnn.sw.golden import golden_layer, golden_tile
from ttsnn.sw.qlayer import QuantTTLayer

SMALL = load_config("small")
PAPER = load_config("paper")


def layer(rng, mode="ptt", r=3, cin=6, cout=5, pool=False, residual=False):
    return QuantTTLayer(mode=mode, w1=rng.integers(-128, 128, (r, cin)),
                        w2=rng.integers(-128, 128, (r, r, 3)), w3=rng.integers(-128, 128, (r, r, 3)),
                        w4=rng.integers(-128, 128, (cout, r)), shift1=1, shift2=6, shift3=7,
                        scale=rng.integers(-300, 300, (2, cout)), affine_shift=5,
                        bias=rng.integers(-100, 100, cout), threshold=20, pool=pool, residual=residual)


@pytest.mark.parametrize("cfg, shape, rank, cout, pool, tiles", [
    (PAPER, (4, 64, 32, 32), 24, 64, False, 1),      # streams whole: one tile, halos outside
    (PAPER, (4, 64, 32, 32), 24, 64, True, 1),
    (SMALL, (2, 8, 6, 20), 4, 6, False, 3),           # wider than max_tile_width: strips
    (SMALL, (2, 8, 6, 20), 4, 6, True, 3),
])
def test_tiles_cover_the_layer_once_and_fit(cfg, shape, rank, cout, pool, tiles):
    plan = plan_layer(cfg, shape, rank=rank, out_channels=cout, pool=pool)
    _, _, hh, ww = shape
    cover = np.zeros((cout, hh, ww), int)
    for t in plan:
        assert t.height <= cfg.limits.max_tile_height and t.width <= cfg.limits.max_tile_width
        cover[t.out0:t.out0 + t.out_channels, t.row0:t.row0 + t.height, t.col0:t.col0 + t.width] += 1
        if pool:
            assert t.height % 2 == 0 and t.width % 2 == 0
        # a window edge is zero halo exactly when it lies outside the layer
        assert t.zero_halo == (t.row0 == 0, t.row0 + t.height == hh, t.col0 == 0, t.col0 + t.width == ww)
    assert np.all(cover == 1)
    assert len(plan) == tiles


def test_row_orders():
    """Cluster 1 reads rows 0..2 of every timestep first (row outer) or every row of a
    timestep (timestep outer); rows outside the layer are never sent."""
    assert input_row_order(2, 2, (True, True, True, True), 0) == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert input_row_order(2, 2, (False, False, True, True), 0) == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (3, 0), (3, 1)]
    assert input_row_order(2, 2, (True, False, True, True), 1) == [
        (1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (3, 1)]
    assert output_row_order(2, 3, 0) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert output_row_order(2, 3, 1) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]


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


@pytest.mark.parametrize("order", [0, 1])
def test_encoding_round_trip_and_word_counts(order):
    rng = np.random.default_rng(21)
    q = layer(rng, residual=True)
    x = rng.integers(0, 2, (2, 6, 3, 3))
    drv = Driver(SMALL)
    plan = drv.plan(q, x.shape, tile_hw=(3, 2), order=order)    # a strip with a right halo
    t = plan.tiles[0]
    assert t.zero_halo == (True, True, True, False)
    prog = drv.program(q, t, drv.window(x, t), rng.integers(-100, 100, (2, 5, 3, 2)))
    m = drv.map
    in_region = lambda a: any(r.base <= a < r.base + r.span for r in m.regions)  # noqa: E731
    chunks = prog.w1_chunks + prog.w2_chunks + prog.w3_chunks + prog.w4_chunks   # cores through rings
    writes = prog.setup + [w for row in prog.in_rows + prog.res_rows + chunks for w in row]
    assert prog.words_in == sum(1 for a, _ in writes if in_region(a))
    assert prog.words_out == sum(len(r) for r in prog.out_rows)
    # spike rows: cluster 1's row order; in a row the right halo column (window column 3)
    # first, then columns 1, 2 (the left halo is outside the layer); bit c = channel c
    sp = m.region("spike_in")
    win = drv.window(x, t)
    rows = input_row_order(t.height, t.timesteps, t.zero_halo, order)
    assert len(prog.in_rows) == len(rows)
    for i, (w, tt) in enumerate(rows):
        base = (i % prog.rings["in"]) * 3
        words = {a - sp.base - base: v for a, v in prog.in_rows[i]}
        for k, col in enumerate((3, 1, 2)):
            for c in range(6):
                assert (words[k] >> c) & 1 == win[tt, c, w, col]
    # decode a fabricated read-back: membrane lane values, and the spikes and window bits of
    # the trace words (4 bits per lane: spike, window, arg-max), come back in place
    mem = rng.integers(-(1 << 15), 1 << 15, (2, 8, 3, 2))
    spk = rng.integers(0, 2, (2, 8, 3, 2))
    wnd = rng.integers(0, 2, (2, 8, 3, 2))
    p, hb = SMALL.lanes, 32
    vals = []
    for y, tt in output_row_order(3, 2, order):
        for xx in range(2):
            for g in range(2):
                w = sum((int(mem[tt, g * p + l, y, xx]) & 0xFFFF) << (16 * l) for l in range(p))
                vals += [(w >> (k * hb)) & 0xFFFFFFFF for k in range(m.region("membrane").subwords)]
        vals += [sum((int(spk[tt, g * p + l, y, xx]) | int(wnd[tt, g * p + l, y, xx]) << 1) << (4 * l)
                     for l in range(p))
                 for xx in range(2) for g in range(2)]
    vals += [0] * (len(prog.reads) - len(vals))
    res = prog.decode(vals)
    np.testing.assert_array_equal(res.membrane, mem[:, :5])
    np.testing.assert_array_equal(res.spikes, spk[:, :5])
    np.testing.assert_array_equal(res.window, wnd[:, :5])
    assert res.argmax is None                      # no pooling


def test_clear_errors():
    rng = np.random.default_rng(22)
    drv = Driver(SMALL)
    # a rank above limits.max_rank streams G2/G3 (tests/gen/test_weight_streaming.py), up to
    # 3 x max(max_in_channels, max_out_channels)
    assert {t.w23_ring > 0 for t in plan_layer(SMALL, (2, 4, 4, 4), rank=9, out_channels=4)} == {True}
    with pytest.raises(ValueError, match="rank = 97 exceeds"):
        plan_layer(SMALL, (2, 4, 4, 4), rank=97, out_channels=4)
    # G1 beyond region w1: both the dense cluster 1 (paper_dense) and the zero-skipping one
    # (paper) stream it
    dense = load_config("paper_dense")
    for r in (170, 79):
        assert all(t.w1_ring > 0 for t in plan_layer(dense, (6, 512, 6, 6), rank=r, out_channels=512))
    assert all(t.w1_ring > 0 for t in plan_layer(PAPER, (6, 512, 6, 6), rank=170, out_channels=512))
    with pytest.raises(ValueError, match="even height and width"):
        plan_layer(SMALL, (2, 4, 5, 4), rank=2, out_channels=4, pool=True)
    with pytest.raises(ValueError, match="expected \\(T, Cin, H, W\\)"):
        plan_layer(SMALL, (4, 4, 4), rank=2, out_channels=4)
    q = layer(rng)
    plan = drv.plan(q, (2, 6, 3, 3))
    with pytest.raises(ValueError, match="window: expected shape"):
        drv.program(q, plan.tiles[0], np.zeros((2, 6, 4, 4), int))
    with pytest.raises(ValueError, match="spikes must be 0 or 1"):
        drv.spike_rows(np.full((2, 6, 5, 5), 2), plan.tiles[0])
    with pytest.raises(ValueError, match="does not fit"):
        drv.program(q, dataclasses.replace(plan.tiles[0], pack=9), np.zeros((2, 6, 5, 5), int))
    with pytest.raises(FileNotFoundError, match="manifest"):
        Driver("/nonexistent/manifest.json")


def test_plan_layer_any_weights_falls_back_only_for_cores():
    """Layers whose cores exceed the weight regions even when streamed (a G1 chunk of one
    rank's ``ceil(Cin/P)`` words beyond region w1) are planned on a copy with a larger weight
    buffer (nothing else changes); any other misfit is still an error. Cores that stream
    plan on the configuration itself: MS-ResNet34's 512-channel shape on paper_dense (dense
    cluster 1) and paper (zero-skipping)."""
    d = load_config("small").to_dict()
    d["limits"]["max_pointwise_weights"], d["buffers"]["weight"]["bytes"] = 16, 1024
    tiny = config_from_dict(d, source="small, 4-word w1")
    assert tiny.arrangement.cluster1 == "dense" and tiny.regions["w1"].depth == 4
    plan, used, fits = plan_layer_any_weights(tiny, (2, 32, 4, 4), rank=4, out_channels=8)
    assert not fits and used is not tiny                 # a chunk: ceil(32/4) = 8 words > 4
    assert used.regions["w1"].depth >= 4 * 8 > tiny.regions["w1"].depth
    for name in ("spike_in", "interstage", "residual", "state_out"):
        assert used.buffers[name] == tiny.buffers[name]
    assert {t.rank for t in plan} == {4} and sum(t.out_channels for t in plan if t.row0 == t.col0 == 0) == 8
    for cfg in (load_config("paper_dense"), PAPER):
        plan, used, fits = plan_layer_any_weights(cfg, (6, 512, 6, 6), rank=170, out_channels=512)
        assert fits and used is cfg and all(t.w1_ring for t in plan)
    plan, used, fits = plan_layer_any_weights(PAPER, (4, 64, 8, 8), rank=16, out_channels=64)
    assert fits and used is PAPER
    with pytest.raises(ValueError, match="timesteps T = 9 exceeds") as exc:
        plan_layer_any_weights(PAPER, (9, 64, 8, 8), rank=16, out_channels=64)
    assert not isinstance(exc.value, CoresDoNotFit)


def _expected_cycles(cfg, plan, mode, density):
    """A plan's cycles when the zero-skipping cluster 1's rows take their expected lengths at
    ``density`` (what ``gen.perf`` reports)."""
    total = 0.0
    for t in plan:
        s = TileShape(t.in_channels, t.rank, t.out_channels, t.height, t.width, t.timesteps, mode,
                      (True,) * t.timesteps, plan.pool, False, t.zero_halo, t.pack, t.order)
        total += tile_timing(cfg, s, expected_row_lens(cfg, s, density))["cycles"]
    return total


@pytest.mark.parametrize("mode", ["stt", "ptt"])
def test_zero_skip_planner_plans_for_the_spike_density(mode):
    """The paper configuration (zero-skipping cluster 1) on the shape of MS-ResNet34
    ``layers.0.1.conv2`` (64 -> 64, rank 17, 48x48, T = 6): planned for density 0.1 (the
    default) it needs fewer expected cycles at 0.1 than the plan made for the all-ones bound
    (density 1: cluster 1 looks the busiest, so the widest packing wins), and no more than
    the plan of any lane packing forced."""
    assert PAPER.arrangement.cluster1 == "zero_skip"
    shape, rank, cout = (6, 64, 48, 48), 17, 64
    planned = plan_layer(PAPER, shape, rank, cout, mode=mode)
    assert planned == plan_layer(PAPER, shape, rank, cout, mode=mode, spike_density=0.1)
    for_ones = plan_layer(PAPER, shape, rank, cout, mode=mode, spike_density=1.0)
    assert planned.pack != for_ones.pack
    cycles = _expected_cycles(PAPER, planned, mode, 0.1)
    assert cycles < 0.9 * _expected_cycles(PAPER, for_ones, mode, 0.1)
    for pack in range(log2(PAPER.lanes) + 1):
        try:
            forced = plan_layer(PAPER, shape, rank, cout, mode=mode, pack=pack)
        except UserError:                        # that packing's rows do not fit
            continue
        assert cycles <= _expected_cycles(PAPER, forced, mode, 0.1)


def test_expected_row_lengths_at_density_one_are_the_all_ones_bound():
    """At density 1 every spike word of ``n`` channels takes ``n`` steps: a computed pixel
    costs ``ceil(r / Pk) * Cin`` steps (hand: r = 5, Pk = 2 -> 3 groups, Cin = 40; 4 + 2 - 2
    halo columns skipped = 4 pixels), a row outside the layer one."""
    s = TileShape(40, 5, 4, 2, 4, 2, "ptt", (True, True), zero_halo=(True, False, True, True), pack=1)
    rows = e1_rows(2, 2)
    expect = [1 if w == 0 else 4 * 3 * 40 for w, _ in rows]
    assert expected_row_lens(PAPER, s, 1.0) == expect
    assert estimate_cycles(PAPER, s, expected_row_lens(PAPER, s, 1.0)) == estimate_cycles(PAPER, s)


def test_spike_density_is_checked():
    with pytest.raises(UserError, match=r"spike_density must be a fraction in \[0, 1\], got 1.5"):
        plan_layer(PAPER, (2, 8, 4, 4), rank=3, out_channels=8, spike_density=1.5)
