"""Streamed G4 (descriptor ``w4_ring``) and G2/G3 (``w23_ring``), docs/host_interface.md:
configurations whose ``w4`` (``w2``/``w3``) regions are smaller than the layer's cores, so the
planner streams them through rings of chunks that the host refills while the tile runs. Whole accelerator tiles in
amaranth.sim: outputs equal the golden layer, every counter equals the cycle model's
(:func:`gen.cyclemodel.tile_counters`), and with the host at the port's rate every timing
counter (``c4_w_wait`` included) and the host's bus cycles equal
:func:`gen.hosttiming.host_tile_timing`'s."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.gen.config import config_from_dict, load_config
from ttsnn.gen.cyclemodel import TileShape, tile_counters, tile_timing

from ttsnn.gen.driver import CoresDoNotFit, Driver, LayerOutputs, plan_layer, tile_fit, w1_ring_chunks, w4_ring_chunks
from ttsnn.gen.hosttiming import host_tile_timing, shape_traffic, traffic_of_program
from ttsnn.gen.zero_skip import zero_skip_row_lens
from ttsnn.sw.golden import golden_layer

from tests.gen.test_host_timing import run_layer
from tests.gen.test_top import TIMING, make_layer


def small_w4(host_data: int = 32, paper_arrangement: bool = False, max_rank: int | None = None):
    """The small configuration with G1/G4 regions of 16 words (64 weights): a G4 of more
    than 16 words (r x ceil(Cout/4)) does not fit and is streamed. ``max_rank = 4``: G2/G3
    regions of 12 words too (a rank above 4 streams G2/G3)."""
    d = load_config("small").to_dict()
    d["limits"]["max_pointwise_weights"] = 64
    d["buffers"]["weight"]["bytes"] = 1024
    if max_rank is not None:
        d["limits"]["max_rank"] = max_rank
        d["buffers"]["weight"]["bytes"] = 512
    d["widths"]["host_data"] = host_data
    if paper_arrangement:
        d["arrangement"] = {"stt_chain": "sequential", "cluster1": "zero_skip"}
    return config_from_dict(d, source=f"small with 16-word w4, host_data={host_data}, "
                                      f"paper_arrangement={paper_arrangement}, max_rank={max_rank}")


def test_planner_streams_g4_only_when_it_does_not_fit():
    cfg = small_w4()
    assert cfg.regions["w4"].depth == 16
    assert w4_ring_chunks(cfg, 4) == 4 and w4_ring_chunks(cfg, 5) == 3
    streamed = plan_layer(cfg, (2, 8, 4, 4), rank=4, out_channels=24, early_start=False)      # G4: 6 x 4 words
    assert {t.w4_ring for t in streamed} == {4}
    assert streamed.tile_out_channels == 24                    # no output-channel groups
    resident = plan_layer(cfg, (2, 8, 4, 4), rank=4, out_channels=16, early_start=False)      # G4: 4 x 4 words
    assert {t.w4_ring for t in resident} == {0}
    # the configuration it was made for, unchanged: nothing is streamed
    assert {t.w4_ring for t in plan_layer(load_config("small"), (2, 8, 4, 4), 4, 24, early_start=False)} == {0}


def test_streamed_traffic_equals_the_program():
    """The streamed chunks counted from the shape equal the driver's program beat for beat."""
    cfg = small_w4(64)
    drv = Driver(cfg)
    rng = np.random.default_rng(3)
    q = make_layer(rng, "ptt", r=5, cin=8, cout=20, T=2, pool=True, residual=True)
    x = rng.integers(0, 2, (2, 8, 4, 6))
    resid = rng.integers(-9, 9, (2, 20, 2, 3))
    for t in drv.plan(q, x.shape, early_start=False):
        assert t.w4_ring == 3
        prog = drv.program(q, t, drv.window(x, t), drv.residual_tile(resid, t), load_weights=True,
                           read_counters=False)
        assert len(prog.w4_chunks) == 2 * 2 * 5            # T x Ho x GO chunks of r words
        assert shape_traffic(cfg, TileShape.of(q, t)) == traffic_of_program(prog, drv.map)


def test_keeps_up_timing_is_the_resident_one():
    """With a host that keeps up a streamed G4 costs nothing: the same cycles as resident."""
    cfg = small_w4()
    s = TileShape(8, 4, 24, 4, 4, 2, "ptt", (True, True), True, True, (True,) * 4, 0, 0, w4_ring=4)
    big = load_config("small")
    from dataclasses import replace
    assert tile_timing(cfg, s) == tile_timing(big, replace(s, w4_ring=0))


CASES = [  # host bits, input ring rows, mode, pool, residual, rank, paper arrangement, max_rank
    # (the chunks hold cluster 4 up in the 64-bit STT and 32-bit HTT cases)
    (32, 1, "ptt", True, True, 4, False, None),
    (64, None, "stt", False, False, 5, False, None),
    (32, 2, "htt", False, True, 4, True, None),
    (128, 1, "stt", True, False, 5, True, None),
    # G2/G3 streamed too (rank 6 > max_rank 4)
    (32, None, "ptt", False, True, 6, False, 4),
    (64, 1, "stt", True, False, 6, False, 4),
    (32, 2, "htt", False, False, 5, True, 4),
    (128, None, "stt", False, True, 6, True, 4),
]


def _check_tiles(cfg, drv, q, x, resid, plan, tiles, zero_skip: bool) -> dict[str, int]:
    """Every tile's counters equal the model's, its timing counters and bus cycles the host-rate
    model's, the layer's outputs the golden layer's; returns the chunk-wait counters summed
    over the tiles."""
    out = LayerOutputs(plan)
    waits = dict.fromkeys(("c1_w_wait", "c2_w_wait", "c3_w_wait", "c4_w_wait"), 0)
    for k, (prog, result, bus_cycles) in enumerate(tiles):
        tile, rtl = prog.tile, result.counters
        out.add(tile, result)
        shape = TileShape.of(q, tile)
        window = drv.window(x, tile)
        lens = zero_skip_row_lens(cfg, shape, window) if zero_skip else None
        expect = tile_counters(cfg, shape, window_ones=int(window.sum()),
                               spikes_out=int(result.spikes.sum()), words_in=prog.words_in,
                               words_out=prog.words_out, c1_lens=lens)
        assert set(expect) == set(rtl)
        diff = {c: (rtl[c], v) for c, v in expect.items() if c not in TIMING and rtl[c] != v}
        assert not diff, f"tile {k}: counters (rtl, model) differ: {diff}"
        model = host_tile_timing(cfg, shape, traffic_of_program(prog, drv.map), fresh=k == 0, c1_lens=lens)
        diff = {c: (rtl[c], model[c]) for c in TIMING if rtl[c] != model[c]}
        assert not diff, f"tile {k}: timing (rtl, host model) differ: {diff}"
        assert model["host_span"] == bus_cycles
        for c in waits:
            waits[c] += rtl[c]
    gold = golden_layer(q, x, resid, cfg)
    np.testing.assert_array_equal(out.membrane, gold.membrane.numpy())
    np.testing.assert_array_equal(out.spikes, gold.spikes.numpy())
    return waits


def _random_layer(rng, mode, r, cin, cout, pool, residual, density):
    """A random layer of two timesteps on 4x4 pixels, its input spikes (1 with probability
    ``density``) and residual membranes (None without a shortcut)."""
    T, H, W = 2, 4, 4
    q = make_layer(rng, mode, r=r, cin=cin, cout=cout, T=T, pool=pool, residual=residual,
                   schedule=(True, False) if mode == "htt" else None)
    x = (rng.random((T, cin, H, W)) < density).astype(int)
    s = 2 if pool else 1
    resid = rng.integers(-200, 200, (T, cout, H // s, W // s)) if residual else None
    return q, x, resid


def _case_layer(host_data, mode, pool, residual, r, paper_arr, max_rank):
    """A case's configuration, layer, input spikes and residual membranes (``CASES``)."""
    cfg = small_w4(host_data, paper_arr, max_rank)
    rng = np.random.default_rng(host_data + r)
    return (cfg, *_random_layer(rng, mode, r, 8, 24, pool, residual, 0.4))


def test_g23_cases_cover_rings_of_two_and_three_chunks():
    """The whole-accelerator G2/G3 cases run rings of two chunks (cluster 2 on one chunk pair
    while the host writes the next: the paper configuration's r = 161-173 layers at Pk = 16)
    and of three; planning only, the simulation is in the test below."""
    rings = set()
    for host_data, _ring, mode, pool, residual, r, paper_arr, max_rank in CASES:
        if max_rank is not None:
            cfg, q, x, _ = _case_layer(host_data, mode, pool, residual, r, paper_arr, max_rank)
            rings |= {t.w23_ring for t in Driver(cfg).plan(q, x.shape, early_start=False)}
    assert rings == {2, 3}


@pytest.mark.parametrize("host_data,ring,mode,pool,residual,r,paper_arr,max_rank", CASES,
                         ids=[f"{c[0]}b-ring{c[1]}-{c[2]}-r{c[5]}" + ("-zero-skip" if c[6] else "")
                              + ("-g23" if c[7] else "") for c in CASES])
def test_streamed_cores_are_bit_exact_and_modelled(host_data, ring, mode, pool, residual, r, paper_arr,
                                                   max_rank):
    cfg, q, x, resid = _case_layer(host_data, mode, pool, residual, r, paper_arr, max_rank)
    drv, plan, tiles = run_layer(cfg, q, x, resid, ring, early_start=False)
    assert all(t.w4_ring == w4_ring_chunks(cfg, r) for t in plan)
    assert all(bool(t.w23_ring) == (max_rank is not None) for t in plan)
    waits = _check_tiles(cfg, drv, q, x, resid, plan, tiles, paper_arr)
    w4_waits, w23_waits = waits["c4_w_wait"], waits["c2_w_wait"] + waits["c3_w_wait"]
    # coverage: where the host's chunks come late, the wait is counted (its value checked above)
    if max_rank is None:
        assert (w4_waits > 0) == (mode != "ptt" and host_data < 128)
    else:                # rings of 1-2 chunks: the G2/G3 chunks hold clusters 2/3 up in every case
        assert w23_waits > 0


def small_w1(host_data: int = 32, w1_words: int = 8, max_rank: int | None = None, dense: bool = False):
    """The small configuration in the paper's arrangement (zero-skipping cluster 1) with a G1
    region of ``w1_words`` words (the G4 region as large): a transposed G1 of more words
    (``ceil(r/Pk) * ceil(Cin/Px)``) is streamed. ``dense``: the generator's own arrangement
    (dense cluster 1, pipelined STT) instead, whose G1 of ``r * ceil(Cin/P)`` words streams
    when larger."""
    base = small_w4(host_data, not dense, max_rank)
    assert base.arrangement.cluster1 == ("dense" if dense else "zero_skip")
    d = base.to_dict()
    d["limits"]["max_pointwise_weights"] = w1_words * base.lanes
    return config_from_dict(d, source=f"small, {'dense' if dense else 'zero-skip'}, {w1_words}-word w1, "
                                      f"host_data={host_data}, max_rank={max_rank}")


def test_planner_streams_g1_only_when_it_does_not_fit():
    cfg = small_w1()
    assert cfg.regions["w1"].depth == 8
    assert w1_ring_chunks(cfg, 16, 0) == 2 and w1_ring_chunks(cfg, 16, 2) == 0
    # transposed G1 of rank 4, 16 channels: 4 x 4 words at Pk = 1 (16 > 8: a ring of 2 chunks)
    streamed = plan_layer(cfg, (2, 16, 4, 4), rank=4, out_channels=4, pack=0, early_start=False)
    assert {t.w1_ring for t in streamed} == {2}
    # Pk = 4: one group of 16 words, not even one chunk fits: refused, the region named
    with pytest.raises(CoresDoNotFit, match="region w1"):
        plan_layer(cfg, (2, 16, 4, 4), rank=4, out_channels=4, pack=2, early_start=False)
    resident = plan_layer(cfg, (2, 8, 4, 4), rank=2, out_channels=4, pack=0, early_start=False)   # 2 x 2 words
    assert {t.w1_ring for t in resident} == {0}


def test_planner_streams_dense_g1_only_when_it_does_not_fit():
    """The dense cluster 1's G1 (``r * ceil(Cin/P)`` words, chunks of one rank's
    ``ceil(Cin/P)`` words whatever the lane packing) streams when it exceeds region ``w1``."""
    cfg = small_w1(dense=True)
    assert cfg.regions["w1"].depth == 8 and cfg.lanes == 4
    assert w1_ring_chunks(cfg, 16, 0) == 2 and w1_ring_chunks(cfg, 16, 2) == 2
    assert w1_ring_chunks(cfg, 32, 0) == 1
    # rank 4, 16 channels: 4 x 4 words (16 > 8): a ring of 2 chunks, at every packing
    for pack in (0, 2):
        plan = plan_layer(cfg, (2, 16, 4, 4), rank=4, out_channels=4, pack=pack, early_start=False)
        assert {t.w1_ring for t in plan} == {2}
    plan = plan_layer(cfg, (2, 8, 4, 4), rank=4, out_channels=4, early_start=False)   # 4 x 2 words
    assert {t.w1_ring for t in plan} == {0}
    # 36 channels: a chunk of 9 words exceeds the region: refused, the region named
    d = cfg.to_dict()
    d["limits"]["max_in_channels"] = 36
    wide = config_from_dict(d, source="small, dense, 8-word w1, 36 channels")
    with pytest.raises(CoresDoNotFit, match="region w1"):
        plan_layer(wide, (2, 36, 4, 4), rank=4, out_channels=4, early_start=False)
    assert "region w1 (G1 ring" in tile_fit(wide, 2, 36, 4, 4, 4, 4, False, (True,) * 4, 0, w1_ring=1)


def test_streamed_g1_traffic_equals_the_program():
    """The streamed G1 chunks counted from the shape equal the driver's program beat for beat,
    and the G1 words the shape counts are the transposed layout's (``ceil(r/Pk)*ceil(Cin/Px)``)."""
    cfg = small_w1(64)
    drv = Driver(cfg)
    rng = np.random.default_rng(5)
    q = make_layer(rng, "ptt", r=5, cin=16, cout=4, T=2, pool=False, residual=True)
    x = rng.integers(0, 2, (2, 16, 4, 4))
    resid = rng.integers(-9, 9, (2, 4, 4, 4))
    for t in drv.plan(q, x.shape, pack=0, early_start=False):
        assert t.w1_ring == 2
        prog = drv.program(q, t, drv.window(x, t), drv.residual_tile(resid, t), load_weights=True,
                           read_counters=False)
        assert len(prog.w1_chunks) == 2 * 4 * 5            # T x window rows sent x rank groups
        assert shape_traffic(cfg, TileShape.of(q, t)) == traffic_of_program(prog, drv.map)
    dense = Driver(small_w1(64, dense=True))                # dense: one chunk of 4 words per rank
    for t in dense.plan(q, x.shape, pack=1, early_start=False):
        assert t.w1_ring == 2
        prog = dense.program(q, t, dense.window(x, t), dense.residual_tile(resid, t), load_weights=True,
                             read_counters=False)
        assert len(prog.w1_chunks) == 2 * 4 * 5 and {len(c) for c in prog.w1_chunks} == {4}
        assert shape_traffic(dense.config, TileShape.of(q, t)) == traffic_of_program(prog, dense.map)
    big = Driver(load_config("paper"))
    q = make_layer(rng, "ptt", r=6, cin=64, cout=32, T=1)
    t = big.plan(q, (1, 64, 4, 4), pack=1, early_start=False).tiles[0]
    prog = big.program(q, t, np.zeros((1, 64, 6, 6), int), load_weights=True, read_counters=False)
    assert shape_traffic(big.config, TileShape.of(q, t)) == traffic_of_program(prog, big.map)


G1_CASES = [  # host bits, input ring rows, mode, pool, residual, rank, max_rank, w1 words, dense cluster 1
    (32, 1, "ptt", False, True, 4, None, 8, False),
    (64, None, "stt", True, False, 5, None, 8, False),
    (32, 2, "htt", False, True, 4, None, 4, False),
    (128, 1, "stt", False, False, 6, 4, 8, False),          # G1-G4 all streamed
    # the dense cluster 1: chunks of one rank's ceil(16/4) = 4 words (rings of 2 and 1)
    (32, 1, "ptt", False, True, 3, None, 8, True),
    (64, None, "stt", True, False, 4, None, 4, True),
    (32, 2, "htt", True, True, 3, None, 8, True),
    (128, 1, "stt", False, False, 6, 4, 8, True),           # G1-G4 all streamed
]


@pytest.mark.parametrize("host_data,ring,mode,pool,residual,r,max_rank,w1_words,dense", G1_CASES,
                         ids=[f"{c[0]}b-ring{c[1]}-{c[2]}-r{c[5]}-w1x{c[7]}" + ("-g23" if c[6] else "")
                              + ("-dense" if c[8] else "") for c in G1_CASES])
def test_streamed_g1_is_bit_exact_and_modelled(host_data, ring, mode, pool, residual, r, max_rank, w1_words,
                                              dense):
    cfg = small_w1(host_data, w1_words, max_rank, dense)
    rng = np.random.default_rng(host_data + r + 7)
    q, x, resid = _random_layer(rng, mode, r, 16, 8, pool, residual, 0.3)
    drv, plan, tiles = run_layer(cfg, q, x, resid, ring, early_start=False)
    assert all(t.w1_ring > 0 for t in plan)
    assert all(bool(t.w23_ring) == (max_rank is not None) for t in plan)
    w1_waits = _check_tiles(cfg, drv, q, x, resid, plan, tiles, not dense)["c1_w_wait"]
    assert w1_waits > 0            # the chunks come late somewhere (their count checked above)


def test_keeps_up_timing_of_streamed_g1_is_the_resident_one():
    """With a host that keeps up a streamed G1 costs nothing: the same cycles as resident."""
    from dataclasses import replace
    cfg = small_w1()
    s = TileShape(16, 4, 8, 4, 4, 2, "ptt", (True, True), False, True, (True,) * 4, 0, 0, w1_ring=2)
    rng = np.random.default_rng(1)
    lens = zero_skip_row_lens(cfg, s, (rng.random((2, 16, 6, 6)) < 0.3).astype(int))
    big = small_w4(32, True)
    assert tile_timing(cfg, s, lens) == tile_timing(big, replace(s, w1_ring=0), lens)
    dense, dense_big = small_w1(dense=True), small_w4(32, False)
    assert tile_timing(dense, s) == tile_timing(dense_big, replace(s, w1_ring=0))


EARLY_STREAMED = [  # host bits, input ring rows, mode, pool, residual, rank, max_rank, w1 words, dense
    (64, None, "ptt", False, True, 4, None, 8, True),       # G1 streamed; G2/G3, G4 whole rings
    (32, 1, "stt", True, False, 6, 4, 8, True),             # G1-G4 all streamed
    (128, 2, "htt", False, True, 4, None, 8, False),        # zero-skipping cluster 1, G1 streamed
]


@pytest.mark.parametrize("host_data,ring,mode,pool,residual,r,max_rank,w1_words,dense", EARLY_STREAMED,
                         ids=[f"{c[0]}b-ring{c[1]}-{c[2]}-r{c[5]}" + ("-dense" if c[8] else "-zero-skip")
                              for c in EARLY_STREAMED])
def test_early_start_with_streamed_cores(host_data, ring, mode, pool, residual, r, max_rank, w1_words, dense):
    """Early start on a plan that streams cores: the streamed cores keep their rings and are
    sent every pass, the resident ones go through rings that hold them whole (sent once); the
    outputs equal the golden layer's, every counter the cycle model's, the timing counters
    and bus cycles the host-rate model's."""
    from ttsnn.gen.geometry import TileGeometry
    from ttsnn.gen.host_program import whole_rings
    cfg = small_w1(host_data, w1_words, max_rank, dense)
    rng = np.random.default_rng(host_data + r + 11)
    q, x, resid = _random_layer(rng, mode, r, 16, 8, pool, residual, 0.3)
    streamed = Driver(cfg).plan(q, x.shape, early_start=False)
    drv, plan, tiles = run_layer(cfg, q, x, resid, ring, early_start=True)
    for s, t in zip(streamed, plan):
        whole = whole_rings(cfg, TileGeometry.of_shape(cfg, t), t)
        assert t.early_start and t.w1_ring and t.w23_ring and t.w4_ring
        for core, before, now in (("w1", s.w1_ring, t.w1_ring), ("w23", s.w23_ring, t.w23_ring),
                                  ("w4", s.w4_ring, t.w4_ring)):
            assert (now == before) if before else whole[core]
    assert any(t.w1_ring and not whole_rings(cfg, TileGeometry.of_shape(cfg, t), t)["w1"] for t in plan)
    _check_tiles(cfg, drv, q, x, resid, plan, tiles, not dense)
