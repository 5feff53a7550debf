"""A backward tile through the whole accelerator in amaranth.sim: the host program of
gen/backward/host.py (tensors, stage weights, trace and folded-BN words written over the host
bus, one ``start`` per stage with ``pass = BACKWARD``, results read back) against the golden
backward (sw.golden_backward.backward_tile), and the counters against counts made here from
the tile's shape."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.gen.backward.cyclemodel import DATA_DEPENDENT, backward_cycles, tile_counters
from ttsnn.gen.backward.host import BackwardDoesNotFit, backward_program, backward_traffic, run_backward_tile
from ttsnn.gen.backward.stage_layout import StageKind
from ttsnn.gen.config import load_config
from ttsnn.gen.hostmap import BACKWARD_COUNTER_NAMES
from ttsnn.gen.sim import SimBus, run_accelerator
from tests.gen.test_backward_core_stages import _straddled_steps_by_hand, backward_case

CFG = load_config("small")


def _run(prog, cfg=CFG):
    out = []

    async def bench(ctx, dut):
        out.append(await run_backward_tile(SimBus(ctx, dut, 200_000), prog))

    run_accelerator(cfg, bench)
    return prog.decode(out[0])


def _run_programs(cfg, tiles) -> list:
    """Run a layer's programs in order on one accelerator (the stage weights, the sums and a
    chunk's carry stay in it from one program to the next); their decoded results."""
    out = []

    async def bench(ctx, dut):
        bus = SimBus(ctx, dut, 200_000)
        for t in tiles:
            out.append(t.program.decode(await run_backward_tile(bus, t.program)))

    run_accelerator(cfg, bench)
    return out


def _assert_matches_golden(got, gold) -> None:
    """A layer's combined result against the golden backward of the untiled layer (sample 0)."""
    np.testing.assert_array_equal(got.e_in, gold.e_in[:, 0].numpy(), err_msg="input gradient")
    np.testing.assert_array_equal(got.g_current, gold.g_current[:, 0].numpy(), err_msg="current gradient")
    for name in ("w1", "w2", "w3", "w4"):
        np.testing.assert_array_equal(got.dw[name], gold.dw[name][0].numpy(), err_msg=name)


def _program(q, x, trace, e, g_extra, gold):
    arg = None if trace.argmax is None else trace.argmax[:, 0].numpy()
    return backward_program(CFG, q, x[:, 0].numpy(), e[:, 0].numpy(), trace.spikes[:, 0].numpy(),
                            trace.window[:, 0].numpy(), arg, gold.shifts,
                            None if g_extra is None else g_extra[:, 0].numpy())


# make test keeps a case of each mode, of lane packing, straddling and wide stages; the
# others (20-60 CPU-s each in amaranth.sim) run in make test-slow
@pytest.mark.parametrize("case", [("ptt", 3, 4, 6, 1, 4, 2, True, True, True),
                                  ("stt", 4, 4, 8, 2, 2, 2, False, True, False),
                                  ("htt", 4, 8, 4, 2, 2, 2, False, False, False),
                                  ("stt", 2, 4, 8, 2, 2, 2, False, False, False),
                                  pytest.param(("ptt", 2, 8, 4, 2, 2, 4, True, True, True), marks=pytest.mark.slow),
                                  pytest.param(("htt", 2, 4, 8, 3, 2, 4, False, False, False), marks=pytest.mark.slow),
                                  pytest.param(("ptt", 3, 4, 6, 2, 2, 3, False, True, False), marks=pytest.mark.slow),
                                  ("stt", 3, 8, 8, 2, 2, 4, False, True, False),
                                  pytest.param(("stt", 7, 8, 8, 1, 2, 4, False, True, False), marks=pytest.mark.slow),
                                  ("ptt", 5, 8, 4, 2, 2, 4, False, True, True),
                                  pytest.param(("htt", 5, 4, 8, 3, 2, 4, False, False, False), marks=pytest.mark.slow)],
                         ids=["ptt-pool-extra", "stt", "htt-saturating", "stt-r2-packed-saturating",
                              "ptt-r2-packed-pool-extra", "htt-r2-packed-saturating", "ptt-odd-columns",
                              "stt-r3-straddled-dw1", "stt-r7-wide-straddled", "ptt-r5-wide-packed-extra",
                              "htt-r5-wide-packed-saturating"])
def test_backward_tile_on_the_accelerator(case):
    q, x, trace, e, g_extra, gold = backward_case(case)
    prog = _program(q, x, trace, e, g_extra, gold)
    # the traffic computed from the plan alone (what the energy model charges) is what the
    # program moves: its set-up writes and result reads, word for word
    _, words_in, words_out = backward_traffic(CFG, prog.plan, case[4])
    assert (words_in, words_out) == (prog.words_in, prog.words_out)
    assert prog.words_in == len(prog.setup) - 2 and prog.words_out == len(prog.reads) - 2 * (1 + len(BACKWARD_COUNTER_NAMES))
    res = _run(prog)
    np.testing.assert_array_equal(res.e_in, gold.e_in[:, 0].numpy())
    np.testing.assert_array_equal(res.g_current, gold.g_current[:, 0].numpy())
    for name in ("w1", "w2", "w3", "w4"):
        np.testing.assert_array_equal(res.dw[name], gold.dw[name][0].numpy(), err_msg=name)
    # counters against the tile's shape: every core-stage step is one busy cycle, the LIF
    # gradient updates every neuron of the ring once per timestep
    mode, r, cin, cout, T, H, W, pool, _, _ = case
    ho, wo = (H // 2, W // 2) if pool else (H, W)
    ring = (ho + 2) * (wo + 2)
    # without pooling the LIF engine runs the columns in pairs: an odd ring width issues an
    # idle step per row, group and timestep
    issued = (ho + 2) * (wo + 2 + (0 if pool else (wo + 2) % 2))
    assert res.counters["lifg_updates"] == T * cout * ring
    assert res.counters["lifg_busy"] == T * issued * -(-cout // CFG.lanes) * (4 if pool else 1)
    full = q.full_timesteps(T)

    def stage_steps(f):
        """HTT's reduced timesteps: a mat-vec stage copies one word per pixel and group; an
        outer product skips them in one step, but the first one before its sums start
        (``acc_clear``, no full timestep yet) writes zero sums: one pixel's steps. A packed
        stage (rank <= P/2): per pixel pair and tap, a step per input channel and one more per
        input word (the first pixel's read alone)."""
        groups, taps = -(-f["out_channels"] // CFG.lanes), {0: 1, 1: 3, 2: 3, 3: 6}[f["taps"]]
        full_steps = f["rows"] * f["cols"] * groups * taps * f["in_channels"]
        if f["straddle"]:
            full_steps = _straddled_steps_by_hand(f)
        elif f["pack"]:
            # (a wide stage, O > P: its full groups one pixel a pass, its last group packed)
            words = -(-f["in_channels"] // (CFG.gbuf_spikes_per_word if f["in_spikes"] else CFG.lanes))
            full_steps = f["rows"] * (f["cols"] * (groups - 1) * taps * f["in_channels"]
                                      + f["cols"] // 2 * taps * (f["in_channels"] + words))
        n, started, zeroed = 0, False, False
        for t in range(f["timesteps"]):
            reduced = f["use_schedule"] and not full[t]
            if reduced and f["kind"] == 0:
                n += f["rows"] * f["cols"] * groups
            elif reduced:
                first = f["acc_clear"] and not started and not zeroed
                n += groups * taps * f["in_channels"] if first else 1
                zeroed = zeroed or first
            else:
                n += full_steps
                started = True
        return n
    # the rank-2 cases run their r-output stages two pixels per pass (2 of the 4 lanes each)
    narrow = [f for _, f in prog.plan.stages if f["out_channels"] <= CFG.lanes]
    assert any(f["pack"] for f in narrow) == (2 * r <= CFG.lanes)
    steps = sum(stage_steps(f) for name, f in prog.plan.stages if name != "lif")
    assert res.counters["stage_busy"] == steps
    assert res.counters["grad_saturations"] == sum(v for k, v in gold.saturations.items()
                                                   if k in ("g4t", "g3t", "g23t", "g1t"))
    assert res.counters["lifg_saturations"] == sum(gold.saturations.get(k, 0) for k in ("lif", "current", "affine"))
    assert res.counters["cycles"] > res.counters["stage_busy"] + res.counters["lifg_busy"]
    # the cycle model (gen/backward/cyclemodel.py) equals every busy and cycle counter
    model = backward_cycles(prog.plan.stages, CFG.lanes, CFG.gbuf_spikes_per_word)
    assert res.counters["stage_busy"] == sum(s.steps for s in model if s.kind != StageKind.LIF)
    assert res.counters["lifg_busy"] == sum(s.steps for s in model if s.kind == StageKind.LIF)
    assert res.counters["stage_macs"] == sum(s.macs for s in model if s.kind == StageKind.MATVEC)
    assert res.counters["wgrad_updates"] == sum(s.macs for s in model if s.kind == StageKind.OUTER)
    assert res.counters["cycles"] == sum(s.cycles for s in model)
    # ... and every other counter that does not depend on the data
    expect = tile_counters(prog.plan.stages, CFG.lanes, CFG.gbuf_spikes_per_word)
    assert {k: res.counters[k] for k in expect} == expect
    assert set(res.counters) - set(expect) == set(DATA_DEPENDENT)
    # reads and writes counted here from the tile's tensors: the LIF gradient reads e (and
    # g_extra) and a trace word per ring pixel, group and timestep
    groups = -(-cout // CFG.lanes)
    assert res.counters["trace_reads"] == T * ring * groups
    assert res.counters["lifg_grad_reads"] == T * ring * groups * (1 if g_extra is None else 2)
    # every mat-vec stage writes one word per pixel and output group of its block; a straddled
    # one a word per pixel each pass touches (a pixel two passes share, twice)
    def writes(f):
        G = -(-f["out_channels"] // CFG.lanes)
        if f["straddle"]:
            # (a wide stage, O > P: a word per pixel and full group, then its last group's R
            # channels straddled)
            O = f["out_channels"] - (G - 1) * CFG.lanes
            n = f["cols"] * O
            per_row = sum((k0 % O + min(CFG.lanes, n - k0) - 1) // O + 1 for k0 in range(0, n, CFG.lanes))
            per_row += f["cols"] * (G - 1)
            return sum(f["rows"] * (per_row if full[t] or not f["use_schedule"] else f["cols"] * G)
                       for t in range(f["timesteps"]))
        return f["timesteps"] * f["rows"] * f["cols"] * -(-f["out_channels"] // CFG.lanes)
    assert res.counters["grad_writes"] == sum(writes(f) for _, f in prog.plan.stages if f["kind"] == 0)
    # the rank-3 cases straddle the stages where that takes fewer cycles (q1 here: its input
    # is spikes, one word per pixel, so a pass of two pixels takes one step more than one)
    assert any(f["straddle"] for f in narrow) == (r == 3)
    # ... and the outer product dW1 where its 8 input spikes (one word per pixel) cost a fetch
    # step per extra pixel against 8 update steps saved per pass of 4 pairs instead of 3
    assert {n for n, f in prog.plan.stages if f["straddle"] and f["kind"] == 1
            and f["out_channels"] < CFG.lanes} == ({"dw1"} if cin == 8 and r == 3 else set())
    # the rank-5 and 7 cases straddle (R = 3) or pack (R = 1) the last group of their r-output
    # stages where the model says that is faster: q1 at least (spikes, one input word a pixel)
    wide = {n: f for n, f in prog.plan.stages if f["out_channels"] > CFG.lanes and f["kind"] in (0, 1)}
    if r in (5, 7):
        assert wide["q1"]["straddle" if r == 7 else "pack"]
    if not case[8]:
        assert res.counters["grad_saturations"] > 0


def test_a_tile_too_large_for_the_backward_memories_is_refused():
    q, x, trace, e, g_extra, gold = backward_case(("ptt", 4, 8, 8, 2, 2, 4, False, True, False))
    big = load_config("small")
    from dataclasses import replace
    tiny = replace(big, gradients=replace(big.gradients, buffer_bytes=256))
    arg = None
    with pytest.raises(BackwardDoesNotFit, match="region 'gbuf' needs"):
        backward_program(tiny, q, x[:, 0].numpy(), e[:, 0].numpy(), trace.spikes[:, 0].numpy(),
                         trace.window[:, 0].numpy(), arg, gold.shifts)


@pytest.mark.parametrize("case", [pytest.param(("stt", 4, 4, 8, 2, 2, 2, False, True, True), marks=pytest.mark.slow),
                                  ("htt", 3, 4, 4, 3, 4, 4, True, True, False)], ids=["stt-extra", "htt-pool"])
def test_stochastic_rounding_on_the_accelerator(case):
    """``gradients.rounding = "stochastic"``: the engines hash each rounded element's layer
    coordinates (a tile placed inside a larger layer, sample 1, seed 3), bit-exact with the
    golden backward's dither."""
    from dataclasses import replace

    from ttsnn.sw.golden_backward import BackwardParams, GradRounding, backward_tile

    cfg = replace(CFG, gradients=replace(CFG.gradients, rounding="stochastic"))
    q, x, trace, e, g_extra, gold = backward_case(case)
    T, H, W = case[4], case[5], case[6]
    origin, layer_hw, sample, seed = (2, 4), (H + 6, W + 8), 1, 3
    params = BackwardParams(window_lo=0, window_hi=0, shifts=gold.shifts)
    want = backward_tile(q, trace, e, cfg, cfg.gradients, params, g_extra, rounding=GradRounding("stochastic", seed),
                         origin=origin, layer_hw=layer_hw, sample0=sample)
    nearest = backward_tile(q, trace, e, CFG, CFG.gradients, params, g_extra)
    assert not np.array_equal(want.e_in.numpy(), nearest.e_in.numpy())     # the dither changes results
    arg = None if trace.argmax is None else trace.argmax[:, 0].numpy()
    prog = backward_program(cfg, q, x[:, 0].numpy(), e[:, 0].numpy(), trace.spikes[:, 0].numpy(),
                            trace.window[:, 0].numpy(), arg, gold.shifts,
                            None if g_extra is None else g_extra[:, 0].numpy(),
                            origin=origin, layer_hw=layer_hw, sample=sample, seed=seed)
    res = _run(prog, cfg)
    np.testing.assert_array_equal(res.e_in, want.e_in[:, 0].numpy(), err_msg="input gradient")
    np.testing.assert_array_equal(res.g_current, want.g_current[:, 0].numpy(), err_msg="current gradient")
    for name in ("w1", "w2", "w3", "w4"):
        np.testing.assert_array_equal(res.dw[name], want.dw[name][0].numpy(), err_msg=name)


def test_a_layers_tiles_accumulate_their_weight_gradients_in_the_rtl():
    """A layer cut into tiles (a small gradient buffer): the first tile writes the stage
    weights, the later ones add to its sums (acc_clear = 0), only the last reads them; input,
    current and weight gradients equal the golden backward of the untiled layer."""
    from dataclasses import replace

    import torch

    from ttsnn.gen.backward.host import backward_layer_programs, combine_tiles
    from ttsnn.sw import golden_backward as GB
    from tests.gen.test_backward_core_stages import make_layer

    cfg = replace(CFG, gradients=replace(CFG.gradients, buffer_bytes=2048))
    rng = np.random.default_rng(11)
    T, cin, r, cout, H, W = 2, 4, 4, 4, 6, 6
    q = make_layer(rng, "htt", r, cin, cout, T, pool=True, shifts=(2, 7, 8))
    x = torch.tensor(rng.integers(0, 2, (T, 1, cin, H, W)))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    trace, membrane, _ = GB.forward_trace(q, padded, None, CFG, 0, 64)
    lo, hi = (int(v) for v in np.quantile(membrane.numpy(), [0.2, 0.8]))
    trace, _, _ = GB.forward_trace(q, padded, None, CFG, lo, hi)
    e = torch.tensor(rng.integers(-2000, 2000, (T, 1, cout, H // 2, W // 2)))
    shifts = {s: 2 for s in ("affine", "g4t", "g23t", "g1t")}
    params = GB.BackwardParams(window_lo=lo, window_hi=hi, shifts=shifts)
    gold = GB.backward_layer(q, trace, e, cfg, cfg.gradients, params)
    first = lambda t: t[:, 0].numpy()  # noqa: E731
    tiles = backward_layer_programs(cfg, q, first(x), first(e), first(trace.spikes), first(trace.window),
                                    first(trace.argmax), gold.shifts)
    assert len(tiles) >= 3
    assert tiles[1].program.words_in < tiles[0].program.words_in          # no stage weights again
    out = _run_programs(cfg, tiles)
    assert all(res.dw is None for res in out[:-1]) and out[-1].dw is not None
    got = combine_tiles(tiles, out, cfg.gradients.wgrad_tile, q.pool)
    np.testing.assert_array_equal(got.e_in, gold.e_in[:, 0].numpy())
    np.testing.assert_array_equal(got.g_current, gold.g_current[:, 0].numpy())
    for name in ("w1", "w2", "w3", "w4"):
        np.testing.assert_array_equal(got.dw[name], gold.dw[name][0].numpy(), err_msg=name)


# both about a CPU-minute: make test-slow (make test runs timestep chunks in
# test_programs_skip_the_ring_pixels_outside_the_layer's chunk cases)
@pytest.mark.parametrize("mode, rounding, pool, extra", [pytest.param("htt", "stochastic", True, True,
                                                                       marks=pytest.mark.slow),
                                                          pytest.param("stt", "nearest", False, False,
                                                                       marks=pytest.mark.slow)],
                         ids=["htt-pool-extra-stochastic", "stt"])
def test_a_layer_whose_timesteps_run_in_chunks(mode, rounding, pool, extra):
    """A gradient buffer too small for a tile's four timesteps: the driver runs each tile as
    chunks of timesteps, the latest first, the LIF gradient carried from one chunk's program to
    the next in the gradient buffer (gen/backward/tiling.py). The results equal the golden
    backward of the whole layer; each program's counters equal the cycle model, and the carry
    steps are counted here by hand: one load (a read) per neuron group and ring pixel where a
    later chunk ran, one store (a write) where an earlier one follows."""
    from dataclasses import replace

    from ttsnn.gen.backward.host import backward_layer_programs, combine_tiles
    from tests.gen.test_backward_core_stages import layer_case

    cfg = replace(CFG, gradients=replace(CFG.gradients, buffer_bytes=1024, rounding=rounding))
    T, seed, s = 4, 7, 2 if pool else 1
    q, x, trace, e, g_extra, gold = layer_case(cfg, 5, mode, T, 4, 4, 6, 4, 4, pool, extra,
                                               seed if rounding == "stochastic" else None)
    cout = q.out_channels
    first = lambda t: None if t is None else t[:, 0].numpy()  # noqa: E731
    tiles = backward_layer_programs(cfg, q, first(x), first(e), first(trace.spikes), first(trace.window),
                                    first(trace.argmax), gold.shifts, first(g_extra), seed=seed)
    k = tiles[0].timesteps
    assert k < T and len({(t.row0, t.col0) for t in tiles}) * (T // k) == len(tiles)   # chunked, as planned
    out = _run_programs(cfg, tiles)
    got = combine_tiles(tiles, out, cfg.gradients.wgrad_tile, q.pool)
    _assert_matches_golden(got, gold)
    groups = -(-cout // cfg.lanes)
    for t, res in zip(tiles, out):
        lif = dict(t.program.plan.stages)["lif"]
        later, earlier = t.t0 + k < T, t.t0 > 0
        assert (lif["carry_in"], lif["carry_out"]) == (later, earlier)
        ring = (t.height // s + 2) * (t.width // s + 2)
        issued = (t.height // s + 2) * (t.width // s + 2 + (0 if pool else (t.width + 2) % 2))
        assert res.counters["lifg_busy"] == (k + later + earlier) * issued * groups * (4 if pool else 1)
        assert res.counters["lifg_grad_reads"] == (k * (1 + extra) + later) * ring * groups
        assert res.counters["trace_reads"] == k * ring * groups
        expect = tile_counters(t.program.plan.stages, cfg.lanes, cfg.gbuf_spikes_per_word)
        assert {n: res.counters[n] for n in expect} == expect


@pytest.mark.parametrize("mode, pool, extra, entries", [("ptt", True, True, 28), pytest.param("stt", False, False, 28, marks=pytest.mark.slow),
                                                         ("htt", False, True, 20)],
                         ids=["ptt-pool-extra", "stt", "htt-branch-sums"])
def test_a_layer_whose_weights_and_sums_do_not_all_fit(mode, pool, extra, entries):
    """Stage-weight and weight-gradient memories smaller than the layer's cores: the driver
    keeps what fits for the whole layer and streams the rest through one slot, writing a
    streamed stage's weights before it and reading a streamed stage's sums after it in every
    program (gen/backward/tile_program.py, ``_keep_or_stream``). The sizes here, by hand
    (P = 4 lanes, 8-bit weights: a weight word holds 4 output channels; Cin = r = 4, Cout = 6):
    weight words q1 4, G4^T 6, G1^T 4, and 24 for each three-tap pair (PTT's q23 and G2^T/G3^T;
    STT's four single-tap-row stages 12 each); weight-gradient entries w4 8, w1 4, w23 24
    (STT: w2, w3 12 each). The results equal the golden backward of the untiled layer, each
    program's traffic what the plan says, and its counters the cycle model's. With 20 sums
    HTT's w23 (24) alone does not fit: the planner runs one outer-product stage per branch
    (w2 and w3, 12 each), keeps w4 (8) and streams the others through a 12-entry slot (keeping
    w2 or w3 instead would need 12 + 12)."""
    from dataclasses import replace

    from ttsnn.gen.backward.host import backward_layer_programs, combine_tiles
    from tests.gen.test_backward_core_stages import layer_case

    # 40 weight words and 28 sums: PTT keeps q1, G4^T, G1^T (14) + a 24-word slot for q23 and
    # G2^T/G3^T; keeps w1 (4) + a 24-entry slot for w4 and w23
    cfg = replace(CFG, gradients=replace(CFG.gradients, buffer_bytes=2048, stage_weight_bytes=160,
                                         wgrad_entries=entries))
    assert cfg.backward_regions["gweights"].depth == 40 and cfg.backward_regions["wgrad"].depth == entries
    q, x, trace, e, g_extra, gold = layer_case(cfg, 9, mode, 2, 4, 4, 6, 4, 4, pool, extra)
    first = lambda t: None if t is None else t[:, 0].numpy()  # noqa: E731
    tiles = backward_layer_programs(cfg, q, first(x), first(e), first(trace.spikes), first(trace.window),
                                    first(trace.argmax), gold.shifts, first(g_extra))
    plan = tiles[0].program.plan
    if mode == "ptt":
        assert set(plan.streamed_weights) == {"q23", "g_q1"} and len(plan.weight_words) == 14
        assert set(plan.streamed_sums.values()) == {"w4", "w23"} and plan.acc_entries == 28
    elif mode == "htt":
        names = [n for n, _ in plan.stages]
        assert "dw23" not in names and names.index("dw2") + 1 == names.index("dw3")
        assert set(plan.wgrads) == {"w4", "w2", "w3", "w1"} and plan.acc_entries == 20
        assert sorted(plan.streamed_sums.values()) == ["w1", "w2", "w3"]
    else:
        assert plan.streamed_weights and plan.streamed_sums
        assert plan.weight_span <= 40 and plan.acc_entries <= 28
    assert len(tiles) >= 2
    out = _run_programs(cfg, tiles)
    got = combine_tiles(tiles, out, cfg.gradients.wgrad_tile, q.pool)
    _assert_matches_golden(got, gold)
    streamed = {"w23": ("w2", "w3")}.get
    for t, res in zip(tiles, out):
        prog = t.program
        names = {n for w in prog.plan.streamed_sums.values() for n in streamed(w, (w,))}
        assert set(res.dw or {}) == (names | ({"w1", "w2", "w3", "w4"} if t is tiles[-1] else set()))
        # the ring pixels a program skips on the layer's border are written as zeros
        ring = {"q1": "q1", "q2": "q2", "g_q23": "g_q23", "g_q2": "g_q2"}
        zeros = sum((prog.plan.tensors[o].rows * prog.plan.tensors[o].cols - f["rows"] * f["cols"])
                    * prog.plan.tensors[o].groups * (t.timesteps or 2)
                    for n, f in prog.plan.stages for o in [ring.get(n)] if o)
        _, words_in, words_out = backward_traffic(cfg, prog.plan, t.timesteps or 2, first=t is tiles[0],
                                                  last=t is tiles[-1], zero_words=zeros)
        assert (words_in, words_out) == (prog.words_in, prog.words_out)
        expect = tile_counters(prog.plan.stages, cfg.lanes, cfg.gbuf_spikes_per_word)
        assert {k: res.counters[k] for k in expect} == expect


@pytest.mark.parametrize("mode, rounding, pool, extra, T, r, H, W, buffer_bytes", [
    pytest.param("stt", "nearest", False, False, 2, 4, 6, 10, 2048, marks=pytest.mark.slow),
    ("htt", "nearest", False, True, 4, 2, 4, 6, 2048),
    ("ptt", "nearest", True, True, 4, 4, 4, 12, 3072),
    pytest.param("stt", "stochastic", False, False, 2, 4, 12, 4, 1024, marks=pytest.mark.slow)],
    ids=["stt-one-timestep", "htt-r2-packed-chunks-extra", "ptt-pool-chunks-extra",
         "stt-stochastic"])   # stt-stochastic (a CPU-minute): make test-slow
def test_programs_skip_the_ring_pixels_outside_the_layer(mode, rounding, pool, extra, T, r, H, W, buffer_bytes):
    """Programs on the layer's border: the recomputed ``q1`` and G4^T skip the ring rows and
    columns that lie outside the layer (zero there), STT's ``q2`` the columns and its G3^T the
    rows; the host writes their words as zeros instead, and the stages write into their
    tensors with the tensors' strides (stage fields ``out_rows``, ``out_cols``;
    gen/backward/tiling.py, ``ring_skips``). Layers in tiles with one, two or no side outside,
    of one timestep and in chunks of two; a stage with two pixels per pass (rank 2 on 4 lanes)
    skips a column only where both are outside (it keeps an even number of columns). Each
    stage's block counted here from the tile's place; bit-exact against the golden backward of
    the whole layer (stochastic rounding: the dither of the skipped stages starts a row or a
    column later), each program's counters equal the cycle model, its traffic what the plan
    says with those zeros."""
    from dataclasses import replace

    from ttsnn.gen.backward.host import backward_layer_programs, combine_tiles
    from tests.gen.test_backward_core_stages import layer_case

    cfg = replace(CFG, gradients=replace(CFG.gradients, buffer_bytes=buffer_bytes, rounding=rounding))
    seed = 5
    q, x, trace, e, g_extra, gold = layer_case(cfg, 13, mode, T, 4, r, 4, H, W, pool, extra,
                                               seed if rounding == "stochastic" else None)
    first = lambda t: None if t is None else t[:, 0].numpy()  # noqa: E731
    tiles = backward_layer_programs(cfg, q, first(x), first(e), first(trace.spikes), first(trace.window),
                                    first(trace.argmax), gold.shifts, first(g_extra), seed=seed)
    # as planned: tiles with a column (and a row or a later chunk) inside the layer, programs of
    # one timestep or chunks of two
    assert {t.timesteps for t in tiles} == ({1} if T == 2 else {2})
    assert len({t.col0 for t in tiles}) >= 2 and len(tiles) > len({t.col0 for t in tiles})
    # ring stage -> (over the ring rows, over the ring columns)
    ring = {"q1": (True, True), "g_q23": (True, True)}
    if mode == "stt":
        ring.update(q2=(False, True), g_q2=(True, False))
    packed_one_side, flattened = False, 0
    for t in tiles:
        plan, k = t.program.plan, t.timesteps
        top, bottom = t.row0 == 0, t.row0 + t.height == H
        left, right = t.col0 == 0, t.col0 + t.width == W
        zeros = 0
        for name, (rows, cols) in ring.items():
            f = dict(plan.stages)[name]
            out = plan.tensors[name]
            skip_cols = cols and not (f["pack"] and left != right)
            packed_one_side |= bool(cols and f["pack"] and left != right)
            expect = (out.rows - (top + bottom if rows else 0), out.cols - (left + right if skip_cols else 0))
            # a packed or straddled block that spans whole rows of its tensors runs as one row
            # (gen/backward/tiling.py, ``flat_rows``)
            if (f["pack"] or f["straddle"]) and expect[0] > 1 and expect[1] == f["in_cols"] == out.cols:
                expect = (1, expect[0] * expect[1])
                flattened += 1
            assert (f["rows"], f["cols"]) == expect, (name, t.row0, t.col0)
            assert (f["out_rows"], f["out_cols"]) == (out.rows, out.cols)
            zeros += (out.rows * out.cols - f["rows"] * f["cols"]) * out.groups * k
        _, words_in, words_out = backward_traffic(cfg, plan, k, first=t is tiles[0], last=t is tiles[-1],
                                                  zero_words=zeros)
        assert (words_in, words_out) == (t.program.words_in, t.program.words_out)
    assert packed_one_side == (r == 2)
    # the rank-2 layer's packed q1 and g_q23 run as one row where no ring column is skipped
    assert (flattened > 0) == (r == 2)
    out = _run_programs(cfg, tiles)
    got = combine_tiles(tiles, out, cfg.gradients.wgrad_tile, q.pool)
    _assert_matches_golden(got, gold)
    for t, res in zip(tiles, out):
        expect = tile_counters(t.program.plan.stages, cfg.lanes, cfg.gbuf_spikes_per_word)
        assert {k: res.counters[k] for k in expect} == expect


def test_a_straddled_block_of_whole_rows_runs_as_one_row():
    """A straddled (or packed) stage whose block spans whole rows of its input and output
    tensors runs as one row of ``rows x cols`` pixels (gen/backward/tiling.py, ``flat_rows``):
    its passes continue from one row into the next instead of leaving a row's last pass partly
    empty. The rank-3 tile on 4 lanes: the recomputed ``q1`` over the 4 x 6 window of a 2 x 4
    tile, 8 input spikes (one word a pixel). Counted by hand: one row of 24 pixels is 72
    (pixel, channel) pairs, 18 passes of 4, each touching 2 pixels (9 steps: 8 MACs and a
    fetch), 162 steps per timestep; row by row, each row's 18 pairs take four passes of 2
    pixels and one of 2 pairs on 1 pixel (44 steps), 176 per timestep. The cycle model agrees
    (and equals the RTL's counters: ``test_backward_tile_on_the_accelerator[stt-r3-straddled-dw1]``
    runs this program)."""
    from ttsnn.gen.backward.cyclemodel import stage_cycles

    case = ("stt", 3, 8, 8, 2, 2, 4, False, True, False)
    q, x, trace, e, g_extra, gold = backward_case(case)
    prog = _program(q, x, trace, e, g_extra, gold)
    f = dict(prog.plan.stages)["q1"]
    assert (f["straddle"], f["rows"], f["cols"], f["in_cols"], f["out_cols"]) == (1, 1, 24, 6, 6)
    T = case[4]
    assert stage_cycles("q1", f, CFG.lanes, CFG.gbuf_spikes_per_word).steps == T * 162
    assert stage_cycles("q1", {**f, "rows": 4, "cols": 6}, CFG.lanes, CFG.gbuf_spikes_per_word).steps == T * 176
    # dW1's block (the tile's 2 x 4 pixels) is not its input window's rows (6 columns): row by row
    d = dict(prog.plan.stages)["dw1"]
    assert (d["straddle"], d["rows"], d["cols"], d["in_cols"]) == (1, 2, 4, 6)


def test_which_blocks_run_as_one_row():
    """``flat_rows``: only a packed or straddled mat-vec or outer-product stage whose block
    has its input tensor's and its output (outer: gradient) tensor's columns, and fewer than
    2^16 (pixel, channel) pairs (the engine counts a row's pairs in 16 bits)."""
    from ttsnn.gen.backward.tiling import flat_rows

    base = dict(kind=int(StageKind.MATVEC), rows=4, cols=6, in_cols=6, out_cols=6, g_cols=0, out_channels=3,
                pack=0, straddle=1)
    assert (flat_rows(base)["rows"], flat_rows(base)["cols"]) == (1, 24)
    assert flat_rows({**base, "straddle": 0, "pack": 1})["cols"] == 24
    assert flat_rows({**base, "straddle": 0}) == {**base, "straddle": 0}          # one pixel a pass
    assert flat_rows({**base, "in_cols": 8}) == {**base, "in_cols": 8}            # a wider input window
    assert flat_rows({**base, "out_cols": 8}) == {**base, "out_cols": 8}          # ring columns skipped
    assert flat_rows({**base, "kind": int(StageKind.LIF)})["rows"] == 4
    outer = {**base, "kind": int(StageKind.OUTER), "out_cols": 0}
    assert flat_rows(outer)["rows"] == 4 and flat_rows({**outer, "g_cols": 6})["rows"] == 1
    big = {**base, "rows": 128, "cols": 64, "in_cols": 64, "out_cols": 64, "out_channels": 8}   # 65,536 pairs
    assert flat_rows(big) == big and flat_rows({**big, "out_channels": 7})["cols"] == 8192
