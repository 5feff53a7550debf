"""Backward tiles on the generated Verilog (cocotb + Verilator) against the golden backward,
bit for bit: the small configuration's coverage batch (cosim/backward.py) in ONE simulator
process after the cached build; the counters against counts made here from each tile's
shape and the golden model's saturations."""

from __future__ import annotations

import pytest

from ttsnn.gen.backward.cyclemodel import tile_counters

from ttsnn.cosim.backward import backward_coverage_cases, describe, run_backward_cases
from ttsnn.cosim.layer import RtlTarget

pytestmark = pytest.mark.cosim


def test_backward_coverage_batch_is_bit_exact(tmp_path):
    target = RtlTarget.for_config("small")
    cfg = target.config
    cases = backward_coverage_cases(cfg)
    results = run_backward_cases(target, cases, workdir=tmp_path)
    bad = [describe(r) for r in results if not r.match]
    assert not bad, "RTL differs from the golden backward:\n" + "\n".join(bad)
    P, S = cfg.lanes, cfg.gbuf_spikes_per_word
    saturated = 0
    for r in results:
        q, T = r.case.qlayer, r.case.e.shape[0]
        ring = r.case.e.shape[-2] * r.case.e.shape[-1]
        assert r.counters["lifg_updates"] == T * q.out_channels * ring, r.case.name
        assert r.counters["lifg_saturations"] == sum(r.golden.saturations.get(k, 0)
                                                     for k in ("lif", "current", "affine")), r.case.name
        assert r.counters["grad_saturations"] == sum(r.golden.saturations.get(k, 0)
                                                     for k in ("g4t", "g3t", "g23t", "g1t")), r.case.name
        assert r.counters["wgrad_updates"] > 0 and r.counters["stage_macs"] > 0
        assert r.cycles > r.counters["stage_busy"] + r.counters["lifg_busy"]
        saturated += r.counters["grad_saturations"] + r.counters["lifg_saturations"]
        # the cycle model equals every counter that does not depend on the data
        expect = tile_counters(r.stages, P, S)
        assert {k: r.counters[k] for k in expect} == expect, r.case.name
    assert saturated > 0                      # the saturating cases reached the edges
    assert any(r.case.trace.argmax is not None for r in results) and P >= 2


@pytest.mark.cosim_full
def test_paper_sized_backward_tile(tmp_path):
    """A backward tile at MS-ResNet18's second TT layer's shape (64 -> 64 channels, rank 32,
    T = 4, PTT, the shortcut's share; the 7 x 4 tile with all four timesteps that python -m
    gen.perf --backward picked for it before the chunked tiles) on the paper configuration's
    RTL, bit-exact, with its cycles equal to the cycle model's."""
    from ttsnn.gen.backward.cyclemodel import backward_cycles
    from ttsnn.gen.backward.tile_program import plan_backward_tile

    from ttsnn.cosim.backward import backward_tile_case

    target = RtlTarget.for_config("paper")
    cfg = target.config
    case = backward_tile_case(cfg, "paper-resnet18-layer", "ptt", 32, 64, 64, 4, 7, 4, extra=True)
    (r,) = run_backward_cases(target, [case], workdir=tmp_path)
    assert r.match, describe(r)
    plan = plan_backward_tile(case.qlayer, 4, 7, 4, cfg.lanes, cfg.widths.weight, r.golden.shifts,
                              [True] * 4, use_extra=True, pack_weights=False,
                              spikes_per_word=cfg.gbuf_spikes_per_word)
    assert r.cycles == sum(s.cycles for s in backward_cycles(plan.stages, cfg.lanes, cfg.gbuf_spikes_per_word))
    expect = tile_counters(r.stages, cfg.lanes, cfg.gbuf_spikes_per_word)
    assert {k: r.counters[k] for k in expect} == expect


@pytest.mark.parametrize("mode, T, channels, hw, pool, extra", [("htt", 4, 32, 4, False, False),
                                                                ("ptt", 6, 16, 6, True, True)],
                         ids=["htt-t4", "ptt-t6-pool-extra"])
def test_a_layer_in_chunks_of_timesteps_on_the_verilog(tmp_path, mode, T, channels, hw, pool, extra):
    """Whole layers whose tiles do not hold all their timesteps on the small configuration:
    the driver runs them as chunks of timesteps (gen/backward/tiling.py), the LIF gradient
    carried from one program to the next in the gradient buffer of ONE simulator process.
    Bit-exact against the golden backward of the untiled layer; each program's counters equal
    the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("small")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, T, mode, T, channels, 8, channels, hw, hw, pool, extra)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold)
    assert tiles[0].timesteps < T                       # the case is what it says: chunked
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


def test_a_layer_whose_weights_and_sums_stream_on_the_verilog(tmp_path):
    """A layer whose cores exceed the small configuration's stage-weight and weight-gradient
    memories (32 -> 16 -> 32 channels, PTT, 8 x 8, T = 2, 4 lanes: 1,152 weight words against
    1,024, 640 sums against 512): the driver streams what does not fit (a stage's weights written before
    it, its sums read after it, in every program). Bit-exact against the golden backward of
    the untiled layer in ONE simulator process; each program's counters equal the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("small")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, 21, "ptt", 2, 32, 16, 32, 8, 8, False, False)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold)
    plan = tiles[0].program.plan
    assert plan.streamed_weights and plan.streamed_sums                  # the case is what it says
    assert len(tiles) == 2                       # two programs (one timestep each): sums read in both
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


@pytest.mark.parametrize("mode, pool, extra", [("stt", False, True), ("ptt", True, False), ("htt", False, False)],
                         ids=["stt-extra", "ptt-pool", "htt"])
def test_a_layer_with_two_pixels_per_pass_on_the_verilog(tmp_path, mode, pool, extra):
    """Rank 2 on the small configuration's 4 lanes (``r <= P/2``): the driver packs the
    mat-vec stages with ``r`` outputs and the outer products with ``r`` gradient channels two
    pixels per pass (the stage field ``pack``, the weight words' lanes repeated in both halves
    of the array, the sums' halves added by the host). Bit-exact against the golden backward of
    the untiled layer in ONE simulator process (the saturating shifts of ``layer_case``); each
    program's counters equal the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("small")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, 13, mode, 2, 8, 2, 8, 4, 4, pool, extra)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold)
    packed = {n for t in tiles for n, f in t.program.plan.stages if f["pack"]}
    assert {"q1", "g_q23", "dw1"} <= packed               # the case is what it says: packed
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


@pytest.mark.parametrize("mode, pool, extra", [("stt", False, True), ("ptt", True, False)], ids=["stt-extra", "ptt-pool"])
def test_a_layer_with_lanes_straddling_pixels_on_the_verilog(tmp_path, mode, pool, extra):
    """Rank 3 on the small configuration's 4 lanes (``P/2 <= r < P``): the driver straddles
    the mat-vec stages where that is faster (the stage field ``straddle``: a block row's
    (pixel, channel) pairs in passes of 4, the weight words rotated per pass, each pixel's
    lanes written with lane write enables), here ``q1`` (16 input spikes: one input word per
    pixel) and ``G4^T``, and the outer product ``dW1`` (each pass's pixels' gradient words read
    once, each accumulator lane adding its channel's products of up to two pixels), in both of
    the layer's two 2 x 6 tiles (the planner would run the 4 x 6 layer as one tile, its ring all
    outside: the tiles are given here). Bit-exact against the golden backward of the untiled
    layer in ONE simulator process; each program's counters equal the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("small")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, 17, mode, 2, 16, 3, 8, 4, 6, pool, extra)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold, tile=(2, 6, 2))
    assert len(tiles) == 2
    for t in tiles:                                      # the case is what it says: straddled, tiled
        straddled = {n for n, f in t.program.plan.stages if f["straddle"]}
        assert {"q1", "dw1"} <= straddled, straddled
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


# an 8-lane design of its own (its Verilog generated and built first: minutes): make test-slow;
# make test runs the same passes in amaranth.sim (tests/gen/test_backward_core_stages.py,
# test_four_pixel_passes_on_eight_lanes_match_golden)
@pytest.mark.slow
def test_passes_of_four_pixels_on_eight_lanes_on_the_verilog(tmp_path):
    """Rank 3 on 8 lanes (``P/3 <= r < P/2``): the driver straddles the mat-vec stages with
    ``r`` outputs and the outer products with ``r`` gradient channels where that is faster
    (here ``q1``, ``G4^T`` and ``dW1`` at least), their passes of 8 (pixel, channel) pairs
    touching up to four pixels (the engine's slots 0-3; an accumulator lane adding up to three
    pixels' products), in both of the layer's two 2 x 8 tiles (rows of 24 pairs: three full
    passes, the second touching four pixels; on 2 x 6 tiles the driver packs ``dW1``).
    Bit-exact against the golden backward of the untiled layer in ONE simulator process; each
    program's counters equal the cycle model."""
    from ttsnn.gen.backward.cyclemodel import straddle_passes
    from ttsnn.gen.config import load_config

    from tests.gen.test_backward_core_stages import _small_with_lanes, layer_case

    target = RtlTarget.for_config(load_config(_small_with_lanes(8, tmp_path)))
    cfg = target.config
    assert cfg.lanes == 8
    q, x, trace, e, g_extra, gold = layer_case(cfg, 29, "stt", 2, 16, 3, 8, 4, 8, False, True)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold, tile=(2, 8, 2))
    assert len(tiles) == 2
    for t in tiles:                                      # the case is what it says: four-pixel passes
        stages = dict(t.program.plan.stages)
        assert {"q1", "g_q23", "dw1"} <= {n for n, f in stages.items() if f["straddle"]}
        assert all(max(px for _, px in straddle_passes(stages[n]["cols"], 3, 8)) == 4 for n in ("q1", "dw1"))
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


@pytest.mark.parametrize("mode, r, seed, extra", [("stt", 7, 19, True), ("htt", 5, 23, False)],
                         ids=["stt-r7-straddled-extra", "htt-r5-packed"])
def test_a_layer_with_wide_stages_on_the_verilog(tmp_path, mode, r, seed, extra):
    """Ranks 7 and 5 on the small configuration's 4 lanes (``O > P``: a *wide* stage): the
    driver runs each block row's full groups one pixel a pass and then the last group's ``R``
    channels straddled (rank 7, ``R = 3``: the stage field ``straddle``) or two pixels a pass
    (rank 5, ``R = 1``: ``pack``) where that is faster, here ``q1``, ``G4^T`` and ``dW1`` at
    least (HTT's reduced timesteps in the packed ``q23``, ``G2^T + G3^T``, ``dW2 + dW3`` of the
    first tile), in both of the layer's two tiles. Bit-exact against the golden backward of the
    untiled layer in ONE simulator process; each program's counters equal the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("small")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, seed, mode, 2, 16, r, 8, 4, 6, False, extra)
    # two 2 x 6 tiles (the planner runs this 4 x 6 layer as one tile since the ring columns
    # outside the layer are skipped)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold, tile=(2, 6, 2))
    assert len(tiles) > 1
    for t in tiles:                                      # the case is what it says: wide, tiled
        chosen = {n for n, f in t.program.plan.stages if f["straddle" if r == 7 else "pack"]}
        assert {"q1", "g_q23", "dw1"} <= chosen, chosen
        assert all(f["out_channels"] > cfg.lanes for n, f in t.program.plan.stages if n in chosen)
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


# about a minute a case on the Verilog (make test-slow); make test runs the same one-row stages
# through the accelerator in amaranth.sim (tests/gen/test_top_backward.py, its r3, r5, r7 cases)
@pytest.mark.slow
@pytest.mark.parametrize("mode, r, seed, extra", [("stt", 3, 17, True), ("stt", 7, 19, True), ("htt", 5, 23, False)],
                         ids=["stt-r3-straddled-extra", "stt-r7-wide-straddled-extra", "htt-r5-wide-packed"])
def test_passes_across_a_blocks_rows_on_the_verilog(tmp_path, mode, r, seed, extra):
    """A packed or straddled stage whose block spans whole rows of its tensors runs as one
    row of ``rows x cols`` pixels, its passes continuing into the next row
    (gen/backward/tiling.py, ``flat_rows``): ranks 3 (straddled), 7 (a wide stage's last group
    straddled) and 5 (its last group packed) on the small configuration's 4 lanes, a 2 x 6
    layer in three 2 x 2 tiles. The middle tile skips no ring column, so its ``q1`` and G4^T
    (and rank 7's ``q2``) run as one row of 8 pixels; the edge tiles skip a ring column and
    run them row by row (the packed ones keep both ring columns and run as one row too).
    Bit-exact against the golden backward of the untiled layer in ONE simulator process; each
    program's counters equal the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("small")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, seed, mode, 2, 16, r, 8, 2, 6, False, extra)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold, tile=(2, 2, 2))
    assert len(tiles) == 3
    flat = [{n for n, f in t.program.plan.stages if f["kind"] in (0, 1) and (f["pack"] or f["straddle"])
             and (f["rows"], f["cols"]) == (1, 8)} for t in tiles]
    assert {"q1", "g_q23"} <= flat[1], flat                  # the case is what it says
    if r != 5:                                              # straddled: the edge tiles row by row
        assert not flat[0] and not flat[2], flat
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


@pytest.mark.cosim_full
def test_paper_sized_layer_in_chunks_of_timesteps(tmp_path):
    """An 8 x 16 block of MS-ResNet18's second TT layer (64 -> 64 channels, rank 32, T = 4,
    PTT, the shortcut's share) on the paper configuration's RTL, as the driver runs it: its
    tile holds one timestep at a time (the shape python -m gen.perf --backward picks for the
    layer), the LIF gradient carried between the four programs. Bit-exact against the golden
    backward of the block; every program's counters equal the cycle model."""
    from tests.gen.test_backward_core_stages import layer_case

    target = RtlTarget.for_config("paper")
    cfg = target.config
    q, x, trace, e, g_extra, gold = layer_case(cfg, 18, "ptt", 4, 64, 32, 64, 8, 16, False, True)
    tiles = _layer_programs(cfg, q, x, trace, e, g_extra, gold)
    assert len(tiles) == 4 and all(t.timesteps == 1 for t in tiles)
    _check_layer_on_the_verilog(target, tiles, q, gold, tmp_path)


def _layer_programs(cfg, q, x, trace, e, g_extra, gold, tile=None):
    """The driver's programs of a whole layer (``tests.gen.test_backward_core_stages.layer_case``;
    ``tile``: ``(h, w, k)`` instead of the planner's)."""
    from ttsnn.gen.backward.host import backward_layer_programs

    first = lambda t: None if t is None else t[:, 0].numpy()  # noqa: E731
    return backward_layer_programs(cfg, q, first(x), first(e), first(trace.spikes), first(trace.window),
                                   first(trace.argmax), gold.shifts, first(g_extra), tile=tile)


def _check_layer_on_the_verilog(target, tiles, q, gold, workdir):
    """Run a layer's programs in one simulator process: the combined result equals the golden
    backward, each program's counters the cycle model's."""
    from ttsnn.cosim.backward import compare_backward, simulate_backward
    from ttsnn.gen.backward.host import combine_tiles

    cfg = target.config
    results = simulate_backward(target, [t.program for t in tiles], workdir)
    decoded = [t.program.decode(r.values) for t, r in zip(tiles, results)]
    got = combine_tiles(tiles, decoded, cfg.gradients.wgrad_tile, q.pool)
    assert not any(compare_backward(gold, got).values()), compare_backward(gold, got)
    for t, r in zip(tiles, decoded):
        expect = tile_counters(t.program.plan.stages, cfg.lanes, cfg.gbuf_spikes_per_word)
        assert {k: r.counters[k] for k in expect} == expect
