"""The backward datapath (gen/backward/: the LIF-gradient engine and the core-stage engine)
running whole backward tiles in amaranth.sim, as the driver plans them
(gen/backward/tile_program.py): the LIF gradient over the halo ring, the recomputed
q1/q2/q23, G4^T, G3^T/G2^T, G1^T and the weight-gradient outer products, chained through one
gradient buffer. Compared with sw.golden_backward.backward_tile (input gradient ``e_in``, the
current's gradient, every weight gradient) and the intermediate tensors with the golden stage
functions, for STT, PTT and HTT, with and without pooling, the shortcut share and saturation."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest
import torch
from amaranth.hdl import Cat, Elaboratable, Module
from amaranth.lib.memory import Memory

from ttsnn.gen.backward import BackwardDatapath
from ttsnn.gen.backward.stepped_address import STAGE_LATENCY
from ttsnn.gen.backward.tile_program import pack_tensor, pack_trace, plan_backward_tile, unpack_tensor, unpack_wgrad
from ttsnn.gen.config import load_config
from ttsnn.gen.driver import affine_words
from ttsnn.gen.sim import run_testbench
from ttsnn.sw import golden
from ttsnn.sw.golden import sat
from ttsnn.sw.golden_backward import (BackwardParams, ForwardTrace, GradRounding, affine_product, backward_layer,
                                backward_tile, forward_trace, lif_grad, maxpool2x2_grad)
from tests.gen.test_top import make_layer

CFG = load_config("small")
P, GB, WB, S = CFG.lanes, CFG.gradients.width, CFG.widths.weight, CFG.gbuf_spikes_per_word


def _pack(spec, values) -> list[int]:
    """A host input's words: the spikes ``x`` one bit per channel, the gradients ``Gb`` bits."""
    return pack_tensor(np.asarray(values), spec.lanes, 1 if spec.spikes else GB)


class Harness(Elaboratable):
    """The backward datapath, the gradient buffer (two read and two write ports), the stage
    weights, the trace and the affine words."""

    def __init__(self, buffer: list[int], weights: list[int], trace: list[int], affine: list[int]):
        self.dp = BackwardDatapath(CFG)
        self.buffer = Memory(shape=P * GB, depth=len(buffer), init=buffer)
        self.mems = {"weights": Memory(shape=P * WB, depth=max(len(weights), 2), init=weights),
                     "trace": Memory(shape=P * 4, depth=max(len(trace), 2), init=trace),
                     "affine": Memory(shape=CFG.regions["affine"].width_bits, depth=max(len(affine), 2), init=affine)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.dp, m.submodules.buffer = self.dp, self.buffer
        dp = self.dp
        ports = [(dp.grad_a, self.buffer), (dp.grad_b, self.buffer)]
        for name, mem in self.mems.items():
            m.submodules[name] = mem
            ports.append((getattr(dp, name), mem))
        for port, mem in ports:
            rd = mem.read_port()
            m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
        for port in (dp.grad_w, dp.grad_w2):          # grad_w: an enable per lane, grad_w2 every lane
            wr = self.buffer.write_port(granularity=GB)
            en = port.en if len(port.en) == P else Cat(*[port.en] * P)
            m.d.comb += [wr.en.eq(en), wr.addr.eq(port.addr), wr.data.eq(port.data)]
        return m


def _golden_g_a4(q, trace, e, g_extra, params, rnd):
    """Backward steps 1-4 (what the LIF-gradient engine produces), as backward_tile does them."""
    full = torch.tensor(q.full_timesteps(e.shape[0]))
    d, _ = lif_grad(e, trace.spikes, trace.window, height_mul=params.height_mul,
                    height_shift=params.height_shift, leak_mul=q.leak_mul, leak_shift=q.leak_shift,
                    bits=GB, rnd=rnd)
    if g_extra is not None:
        d = sat(d + g_extra, GB)
    prod = affine_product(d, torch.from_numpy(np.array(q.scale)), full)
    g_p = sat(rnd.shift(prod, params.shifts["affine"], "affine", None), GB)
    if not q.pool:
        return g_p
    h, w = trace.x.shape[-2] - 2, trace.x.shape[-1] - 2
    return maxpool2x2_grad(g_p, trace.argmax)[..., 1:h + 3, 1:w + 3]


def _run(prog, buffer, trace, affine):
    dut = Harness(buffer, prog.weight_words, trace, affine)
    dp = dut.dp
    result = {}

    async def bench(ctx):
        for name, fields in prog.stages:
            for f, v in fields.items():
                ctx.set(dp.stage[f], v)
            for _ in range(STAGE_LATENCY):          # the strides' products settle
                await ctx.tick()
            ctx.set(dp.start, 1)
            await ctx.tick()
            ctx.set(dp.start, 0)
            cycles = 1
            while ctx.get(dp.busy):
                await ctx.tick()
                cycles += 1
            result[f"cycles_{name}"] = cycles
        result["buffer"] = [ctx.get(dut.buffer.data[a]) for a in range(len(buffer))]
        sums = {}
        for a in range(prog.acc_entries):
            ctx.set(dp.wgrad_rd_en, 1)
            ctx.set(dp.wgrad_rd_addr, a)
            await ctx.tick()
            sums[a] = ctx.get(dp.wgrad_rd_data)
        ctx.set(dp.wgrad_rd_en, 0)
        result["sums"] = sums

    run_testbench(dut, bench)
    return result


def _run_tile(prog, q, x, trace, e, g_extra, buffer):
    """Run a planned tile on the datapath: the host's inputs written into ``buffer`` (the
    gradient buffer's initial words), the trace and the folded-BN words."""
    T = prog.timesteps
    inputs = [("x", x[:, 0]), ("e", e[:, 0])] + ([("g_extra", g_extra[:, 0])] if g_extra is not None else [])
    for name, values in inputs:
        spec = prog.tensors[name]
        buffer[spec.base:spec.base + spec.words(T)] = _pack(spec, values.numpy())
    trace_words = pack_trace(trace.spikes[:, 0].numpy(), trace.window[:, 0].numpy(),
                             None if trace.argmax is None else trace.argmax[:, 0].numpy(), P)
    affine = affine_words(np.array(q.scale), np.array(q.bias), P, CFG.widths.affine_scale, CFG.widths.membrane)
    return _run(prog, buffer, trace_words, affine)


CASES = [  # mode, r, cin, cout, T, H, W, pool, auto shifts (False: shifts that saturate), g_extra
    ("ptt", 4, 8, 8, 2, 2, 4, False, True, False),
    ("stt", 4, 4, 8, 2, 2, 2, False, True, True),
    ("htt", 4, 4, 4, 3, 2, 2, False, True, False),
    ("ptt", 3, 4, 6, 1, 4, 2, True, True, True),        # partial lane groups, pooling
    ("stt", 4, 8, 4, 1, 2, 2, False, False, False),     # saturating shifts
    ("htt", 3, 4, 4, 4, 4, 4, True, False, True),       # pooling, HTT classes, saturating
]


def backward_case(case):
    """A backward tile of an interior tile (random layer, spikes, gradients) and its golden
    result: ``(q, x, trace, e, g_extra, gold)``, tensors ``[T, 1, ...]``."""
    mode, r, cin, cout, T, H, W, pool, auto, extra = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    q = make_layer(rng, mode, r, cin, cout, T, pool=pool, shifts=(2, 7, 8))
    # an interior tile: the forward of a larger block gives the trace over the halo ring
    m = 2 if pool else 1
    big = torch.tensor(rng.integers(0, 2, (T, 1, cin, H + 2 * m + 2, W + 2 * m + 2)))
    _, membrane, _ = forward_trace(q, big, None, CFG, 0, 64)
    lo, hi = (int(v) for v in np.quantile(membrane.numpy(), [0.2, 0.8]))   # a window half the neurons are in
    big_trace, _, _ = forward_trace(q, big, None, CFG, lo, hi)
    x = big[..., m:m + H + 2, m:m + W + 2]
    trace = ForwardTrace(x=x, spikes=big_trace.spikes, window=big_trace.window, argmax=big_trace.argmax)
    ho, wo = (H // 2, W // 2) if pool else (H, W)
    e = torch.tensor(rng.integers(-2000, 2000, (T, 1, cout, ho + 2, wo + 2)))
    g_extra = torch.tensor(rng.integers(-3000, 3000, e.shape)) if extra else None
    stages = ("affine", "g4t", "g3t", "g23t", "g1t") if mode == "stt" else ("affine", "g4t", "g23t", "g1t")
    shifts = {s: "auto" for s in stages} if auto else {s: 2 for s in stages}
    params = BackwardParams(window_lo=lo, window_hi=hi, shifts=shifts)
    rnd = GradRounding(CFG.gradients.rounding)
    gold = backward_tile(q, trace, e, CFG, CFG.gradients, params, g_extra, rounding=rnd)
    return q, x, trace, e, g_extra, gold


def layer_case(cfg, seed: int, mode: str, T: int, cin: int, r: int, cout: int, H: int, W: int,
               pool: bool, extra: bool, rounding_seed: int | None = None):
    """A whole (untiled) random layer and its golden backward, for the driver's tiling:
    ``(q, x, trace, e, g_extra, gold)``, ``x``/``e``/``g_extra`` ``[T, 1, C, h, w]`` over the
    layer (no ring), the trace of the zero-padded input with a window half the neurons are in;
    ``rounding_seed``: stochastic rounding with that seed (else the configuration's)."""
    rng = np.random.default_rng(seed)
    q = make_layer(rng, mode, r, cin, cout, T, pool=pool, shifts=(2, 7, 8))
    x = torch.tensor(rng.integers(0, 2, (T, 1, cin, H, W)))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    _, membrane, _ = forward_trace(q, padded, None, cfg, 0, 64)
    lo, hi = (int(v) for v in np.quantile(membrane.numpy(), [0.2, 0.8]))
    trace, _, _ = forward_trace(q, padded, None, cfg, lo, hi)
    s = 2 if pool else 1
    e = torch.tensor(rng.integers(-3000, 3000, (T, 1, cout, H // s, W // s)))
    g_extra = torch.tensor(rng.integers(-3000, 3000, e.shape)) if extra else None
    params = BackwardParams(window_lo=lo, window_hi=hi, shifts={k: 2 for k in ("affine", "g4t", "g3t", "g23t", "g1t")})
    rnd = GradRounding("stochastic", rounding_seed) if rounding_seed is not None else None
    gold = backward_layer(q, trace, e, cfg, cfg.gradients, params, g_extra, rnd)
    return q, x, trace, e, g_extra, gold


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-r{c[1]}-T{c[4]}-{c[5]}x{c[6]}"
                         + ("-pool" if c[7] else "") + ("" if c[8] else "-sat") + ("-extra" if c[9] else ""))
def test_backward_tile_matches_golden(case):
    _check_tile_against_golden(case)


def _check_tile_against_golden(case, pack_lanes: bool = False):
    """Run ``case``'s tile on the datapath and compare every tensor and sum with the golden
    stages; returns the program and the run's results."""
    return _check_tile_against_golden_with(case, pack_lanes=pack_lanes)


def _check_tile_against_golden_with(case, pack_lanes: bool = False, straddle_lanes: bool = False):
    """:func:`_check_tile_against_golden` with the driver's lane options."""
    mode, r, cin, cout, T, H, W, pool, auto, extra = case
    q, x, trace, e, g_extra, gold = backward_case(case)
    rnd = GradRounding(CFG.gradients.rounding)
    params = BackwardParams(window_lo=0, window_hi=0, shifts=gold.shifts)
    full = q.full_timesteps(T)
    # every tensor in words of its own, so that the intermediates can be checked after the run
    # (test_overlaid_tensors_give_the_same_results checks the shared layout the driver uses)
    prog = plan_backward_tile(q, T, H, W, P, WB, gold.shifts, list(full), use_extra=extra, overlay=False,
                              spikes_per_word=S, pack_lanes=pack_lanes, straddle_lanes=straddle_lanes)
    out = _run_tile(prog, q, x, trace, e, g_extra, [0] * prog.buffer_words)

    def tensor(name):
        s = prog.tensors[name]
        return unpack_tensor(out["buffer"][s.base:s.base + s.words(T)], (T, s.channels, s.rows, s.cols), P, GB)

    wd = golden.resolve_widths(CFG)
    w1, w2, w3, w4 = golden.core_weights(q)
    q1 = sat(golden.rshift(golden.g1(x[:, 0], w1, wd.accumulator), q.shift1, q.round), wd.activation)
    c23 = golden.clusters23(q1, w2, w3, q.mode, q.shift2, q.shift3, q.round, wd.activation, wd.accumulator,
                            torch.tensor(full))
    np.testing.assert_array_equal(tensor("q1"), q1.numpy())
    np.testing.assert_array_equal(tensor("q23"), c23.q23.numpy())
    np.testing.assert_array_equal(tensor("g_a4"), _golden_g_a4(q, trace, e, g_extra, params, rnd)[:, 0].numpy())
    np.testing.assert_array_equal(tensor("g_cur"), gold.g_current[:, 0].numpy(), err_msg="current gradient")
    np.testing.assert_array_equal(tensor("e_in"), gold.e_in[:, 0].numpy(), err_msg="input gradient")
    read = lambda a: out["sums"][a]   # noqa: E731
    bits = CFG.gradients.wgrad_tile
    got = {n: unpack_wgrad(read, spec, bits) for n, spec in prog.wgrads.items()}
    np.testing.assert_array_equal(got["w4"][..., 0], gold.dw["w4"][0].numpy(), err_msg="dW4")
    np.testing.assert_array_equal(got["w1"][..., 0], gold.dw["w1"][0].numpy(), err_msg="dW1")
    if mode == "stt":
        np.testing.assert_array_equal(got["w2"], gold.dw["w2"][0].numpy(), err_msg="dW2")
        np.testing.assert_array_equal(got["w3"], gold.dw["w3"][0].numpy(), err_msg="dW3")
    else:
        np.testing.assert_array_equal(got["w23"][..., :3], gold.dw["w2"][0].numpy(), err_msg="dW2")
        np.testing.assert_array_equal(got["w23"][..., 3:], gold.dw["w3"][0].numpy(), err_msg="dW3")
    assert np.abs(tensor("e_in")).sum() > 0 and any(v.any() for v in got.values())
    if not auto:
        assert sum(gold.saturations.values()) > 0
    return prog, out


PACKED_CASES = [  # rank <= P/2 (2 of the small configuration's 4 lanes): two pixels per pass
    ("ptt", 2, 8, 8, 2, 2, 4, False, True, False),
    ("stt", 2, 4, 8, 2, 2, 2, False, True, True),
    ("htt", 2, 4, 4, 3, 2, 2, False, True, False),
    ("ptt", 1, 4, 6, 1, 4, 2, True, False, True),        # pooling, saturating shifts, rank 1
]
#: The mat-vec stages with ``r`` outputs and the outer products with ``r`` gradient channels
#: (dW1, dW2, dW3; dW4's are Cout), whose blocks have an even number of columns here (W
#: even), by hand (HTT's q23, G2^T + G3^T and dW2 + dW3 too: their reduced timesteps copy or
#: skip as unpacked ones do); rank 1's q23, G2^T + G3^T and dW2 + dW3 take as long packed
#: (1 + 1 steps per pair and tap).
_PACKED = {"ptt": {"q1", "q23", "g_q23", "g_q1", "dw23", "dw1"},
           "stt": {"q1", "q2", "q23", "g_q23", "g_q2", "g_q1", "dw3", "dw2", "dw1"},
           "htt": {"q1", "q23", "g_q23", "g_q1", "dw23", "dw1"}}


@pytest.mark.parametrize("case", PACKED_CASES, ids=lambda c: f"{c[0]}-r{c[1]}-T{c[4]}-{c[5]}x{c[6]}"
                         + ("-pool" if c[7] else "") + ("" if c[8] else "-sat"))
def test_packed_stages_match_golden(case):
    """Lane packing (``pack``): the stages with ``r <= P/2`` outputs compute pixels ``x`` and
    ``x + 1`` in the two halves of the array, the driver repeating each weight word's lanes in
    both; the outer products with ``r`` gradient channels add pixel ``x + 1``'s terms in the
    upper half of each sum (the host adds the halves). The tensors and sums are the golden
    model's all the same, and each stage's cycles are counted here by hand: a packed stage
    takes ``I + ceil(I / P)`` steps per pixel pair and tap (spikes: ``ceil(I / S)``; the first
    pixel's input word read in a step of its own), a mat-vec stage's pipeline drains in nine
    cycles (the second word written one cycle after the first), an outer product's in two (the
    data, then the registered operands into the accumulator), one more for the control; and
    equal the cycle model's."""
    from ttsnn.gen.backward.cyclemodel import stage_cycles

    mode, r, T = case[0], case[1], case[4]
    prog, out = _check_tile_against_golden(case, pack_lanes=True)
    if mode == "htt":           # the case is what it says: reduced timesteps in packed stages
        assert not all(backward_case(case)[0].full_timesteps(T))
    packed = {n for n, f in prog.stages if f["pack"]}
    assert packed == (_PACKED[mode] - {"q23", "g_q1", "dw23"} if r == 1 else _PACKED[mode])
    for name, f in prog.stages:
        assert out[f"cycles_{name}"] == stage_cycles(name, f, P, S).cycles, name
        if f["pack"] and not f["use_schedule"]:
            taps = {0: 1, 1: 3, 2: 3, 3: 6}[f["taps"]]
            words = -(-f["in_channels"] // (S if f["in_spikes"] else P))
            steps = T * f["rows"] * f["cols"] // 2 * taps * (f["in_channels"] + words)
            assert out[f"cycles_{name}"] == steps + (9 if f["kind"] == 0 else 2) + 1, name


STRADDLED_CASES = [  # P/2 <= rank < P (3 or 2 of the small configuration's 4 lanes): lanes straddle pixels
    ("stt", 3, 4, 8, 2, 2, 4, False, True, False),
    ("ptt", 3, 4, 6, 1, 4, 2, True, True, True),         # pooling, the shortcut's share
    ("htt", 3, 4, 4, 3, 2, 3, False, True, False),       # reduced timesteps: q23, G2^T + G3^T copy them
    ("htt", 3, 4, 6, 3, 2, 4, False, True, False),       # a computed timestep's last pass of 2 pixels, then a copy
    ("stt", 3, 6, 3, 1, 2, 3, False, False, False),      # saturating shifts; G1^T (O = Cin = 6) does not
    ("stt", 2, 4, 4, 2, 2, 3, False, True, True),        # rank P/2 on odd columns (pack needs even ones)
]


def _straddles_by_hand(O: int, taps: int, inner: int, kind: int) -> bool:
    """Whether the engine straddles a mat-vec or outer-product (``kind``) stage of ``O`` lane
    channels: ``P/3 <= O < P`` (a pass touches at most four pixels, an accumulator lane adds
    at most three pixels' products); or ``O > P`` whose last
    group's ``R`` channels are ``P/2 <= R < P``, with at least three steps per pixel and group."""
    R = O - (-(-O // P) - 1) * P
    return (P / 3 <= O < P) or (O > P and P / 2 <= R < P and taps * inner >= 3)


def _straddled_steps_by_hand(f) -> int:
    """A straddled stage's steps per computed timestep, counted pass by pass: per block row the
    ``cols x O`` pairs in passes of ``P``, pass ``j`` from pair ``jP`` (first channel
    ``s = jP mod O``, ``n`` pairs) touches ``(s + n - 1) // O + 1`` pixels and takes ``I`` steps
    plus a fetch step per input word and pixel after its first, per tap. (HTT's reduced
    timesteps copy one pixel per step.)"""
    taps = {0: 1, 1: 3, 2: 3, 3: 6}[f["taps"]]
    words = -(-f["in_channels"] // (S if f["in_spikes"] else P))
    O = f["out_channels"]
    G = -(-O // P)
    O -= (G - 1) * P                    # a wide stage straddles its last group's channels
    pairs = f["cols"] * O
    per_row = f["cols"] * (G - 1) * taps * f["in_channels"]       # its full groups, one pixel a pass
    for k0 in range(0, pairs, P):
        n = min(P, pairs - k0)
        pixels = (k0 % O + n - 1) // O + 1
        per_row += taps * (f["in_channels"] + (pixels - 1) * words)
    return f["rows"] * per_row


@pytest.mark.parametrize("case", STRADDLED_CASES, ids=lambda c: f"{c[0]}-r{c[1]}-T{c[4]}-{c[5]}x{c[6]}"
                         + ("-pool" if c[7] else "") + ("" if c[8] else "-sat"))
def test_straddled_stages_match_golden(case, monkeypatch):
    """Lanes straddling pixels (``straddle``): the mat-vec stages with ``P/2 <= O < P`` outputs
    run a block row's (pixel, channel) pairs in passes of ``P``, each lane its pair's pixel's
    input and its channel's weight (the driver's word, rotated per pass), each pixel's sums
    written rotated into its word with its lanes enabled. The tensors and sums are the golden
    model's all the same; each straddled stage's cycles are counted here by hand (steps, the
    mat-vec drain of eight cycles plus one per pixel of the stage's last pass after its first,
    one for the control) and equal the cycle model's, as every other stage's do."""
    from ttsnn.gen.backward import tile_program

    # every stage that can straddle does (on 4 lanes and a few input channels the fetch steps
    # often cost what the filled lane saves, so the driver's choice alone would test little)
    monkeypatch.setattr(tile_program, "straddles", lambda f, lanes, spw: tile_program.can_straddle(f, lanes))
    _check_straddled_tile(case)


def _check_straddled_tile(case):
    """:func:`test_straddled_stages_match_golden` on this module's configuration (``CFG``,
    ``P``): the golden tensors and sums, which stages straddle, and every stage's cycles."""
    from ttsnn.gen.backward.cyclemodel import stage_cycles

    mode, r = case[0], case[1]
    prog, out = _check_tile_against_golden_with(case, pack_lanes=True, straddle_lanes=True)
    straddled = {n for n, f in prog.stages if f["straddle"]}
    want = set()
    if _straddles_by_hand(r, 1, r, 0):          # the mat-vec stages with r outputs
        want |= {"q1", "q2", "q23", "g_q23", "g_q2", "g_q1"} if mode == "stt" else {"q1", "q23", "g_q23", "g_q1"}
    if _straddles_by_hand(r, 1, r, 1):          # the outer products with r gradient channels
        if mode == "stt":
            want |= {"dw1", "dw2", "dw3"}
        else:                   # G2 and G3's sums in one stage or, where they do not fit, two
            want |= {"dw1"} | ({"dw23"} if "dw23" in dict(prog.stages) else {"dw2", "dw3"})
    if _straddles_by_hand(case[3], 1, r, 1):    # dW4's gradient channels are Cout's
        want |= {"dw4"}
    if _straddles_by_hand(case[2], 1, r, 0):    # G1^T's outputs are Cin's
        want |= {"e_in"}
    assert straddled == want, straddled
    for name, f in prog.stages:
        assert out[f"cycles_{name}"] == stage_cycles(name, f, P, S).cycles, name
        if f["straddle"] and f["kind"] == 1:
            # an outer product: no writes; HTT's reduced timesteps skipped in one step each, the
            # first before the sums start (acc_clear) writing zero sums over one pixel
            full = [not f["use_schedule"] or (f["schedule"] >> t) & 1 for t in range(f["timesteps"])]
            taps = {0: 1, 1: 3, 2: 3, 3: 6}[f["taps"]]
            steps = 0
            for t, c in enumerate(full):
                zeros = f["acc_clear"] and t == 0          # (no earlier timestep: the sums not started)
                steps += _straddled_steps_by_hand(f) if c else (taps * f["in_channels"] if zeros else 1)
            # the drain: the last step's update in stages a and o; a last timestep skipped
            # (no update), the step before it still in o if that one computed
            drain = 2 if full[-1] else int(len(full) > 1 and bool(full[-2]))
            assert out[f"cycles_{name}"] == steps + drain + 1, name
        elif f["straddle"]:
            G, cols = -(-f["out_channels"] // P), f["cols"]
            O = f["out_channels"] - (G - 1) * P             # (a wide stage: its last group's, straddled)
            full = [not f["use_schedule"] or (f["schedule"] >> t) & 1 for t in range(f["timesteps"])]
            last = (((cols * O - 1) // P) * P) % O                  # the last pass's first channel
            n_last = cols * O - ((cols * O - 1) // P) * P
            drain = 8 + ((last + n_last - 1) // O if full[-1] else 0)
            # a computed timestep before a reduced one: its last pass's writes before the copy's
            gaps = (last + n_last - 1) // O * sum(full[t] and not full[t + 1] for t in range(len(full) - 1))
            steps = sum(_straddled_steps_by_hand(f) if c else f["rows"] * cols * G for c in full)
            assert out[f"cycles_{name}"] == steps + gaps + drain + 1, name
    if mode == "htt":           # the case is what it says: reduced timesteps in straddled stages
        assert any(f["straddle"] and f["use_schedule"] for _, f in prog.stages)
        assert not all(backward_case(case)[0].full_timesteps(case[4]))


#: an 8-lane variant of the small configuration: mat-vec stages of 3 lane channels (P/3 <= 3 <
#: P/2) straddle with passes of up to four pixels (a row of 6 or 8 columns: the pass from pair 8,
#: first channel 2, touches pixels 2-5), and so do the outer products with 3 gradient channels
#: (dW1, dW2, dW3: an accumulator lane adds up to three pixels' products); G1^T's 6 outputs and
#: dW4's 5 and 6 gradient channels (P/2 <= O < P) up to three
STRADDLED_CASES_8 = [
    ("stt", 3, 6, 5, 2, 2, 6, False, True, False),
    pytest.param(("htt", 3, 6, 6, 3, 4, 6, True, False, True), marks=pytest.mark.slow),  # pooling, saturating, copies
]


@pytest.mark.parametrize("case", STRADDLED_CASES_8, ids=["stt-r3", "htt-r3-pool-sat"])
def test_four_pixel_passes_on_eight_lanes_match_golden(case, monkeypatch, tmp_path):
    """Lanes straddling pixels down to ``P/3`` lane channels: on 8 lanes rank 3's passes touch
    up to four pixels (slots 0-3: four input and gradient words held, the first pixel moving
    on by up to three, four writes a pass; an outer product's lane adding up to three pixels'
    products). The tensors and sums are the golden
    model's; the straddled stages are those counted by hand, and each stage's cycles are
    counted by hand and equal the cycle model's (:func:`_check_straddled_tile`)."""
    from ttsnn.gen.backward import tile_program
    from ttsnn.gen.backward.cyclemodel import straddle_passes

    cfg = load_config(_small_with_lanes(8, tmp_path))
    for name, v in (("CFG", cfg), ("P", cfg.lanes), ("GB", cfg.gradients.width), ("WB", cfg.widths.weight),
                    ("S", cfg.gbuf_spikes_per_word)):
        monkeypatch.setitem(globals(), name, v)       # the harness reads the module's configuration
    monkeypatch.setattr(tile_program, "straddles", lambda f, lanes, spw: tile_program.can_straddle(f, lanes))
    # the case is what it says: a row of rank 3 on 8 lanes has a pass of four pixels
    assert max(px for _, px in straddle_passes(case[6], 3, 8)) == 4
    _check_straddled_tile(case)


def _small_with_lanes(lanes: int, directory) -> str:
    """The small configuration with ``lanes`` PEs in every cluster, as a TOML file in
    ``directory`` (its path)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "configs" / "small.toml").read_text()
    text = text.replace('name = "small"', f'name = "small{lanes}"')
    text = re.sub(r"^(spike_pes|g2_pes|g3_pes|g4_pes|adder_lanes|lif_lanes) = 4$", rf"\1 = {lanes}", text,
                  flags=re.M)
    path = pathlib.Path(directory) / f"small{lanes}.toml"
    path.write_text(text)
    return str(path)


def test_input_spikes_over_several_words():
    """More input channels than spikes in a gradient-buffer word (``gbuf_spikes_per_word``):
    the recomputed q1 and dW1 take channel ``i``'s spike from bit ``i % S`` of word ``i // S``."""
    test_backward_tile_matches_golden(("ptt", 4, S + 8, 4, 1, 2, 2, False, True, False))


def test_weight_gradient_sums_start_at_the_first_full_timestep():
    """HTT with a reduced timestep 0: the outer-product stages skip it, so the first full
    timestep must start the sums (stale accumulator words from an earlier tile stay out)."""
    case = ("htt", 4, 4, 4, 3, 2, 2, False, True, False)
    q, x, trace, e, g_extra, gold = backward_case(case)
    q = dataclasses.replace(q, schedule=(False, True, True))
    gold = backward_tile(q, trace, e, CFG, CFG.gradients,
                         BackwardParams(window_lo=0, window_hi=0, shifts=gold.shifts), rounding=GradRounding())
    prog = plan_backward_tile(q, 3, 2, 2, P, WB, gold.shifts, list(q.full_timesteps(3)), spikes_per_word=S)
    buffer = [0] * prog.buffer_words
    for name, values in (("x", x[:, 0]), ("e", e[:, 0])):
        spec = prog.tensors[name]
        buffer[spec.base:spec.base + spec.words(3)] = _pack(spec, values.numpy())
    trace_words = pack_trace(trace.spikes[:, 0].numpy(), trace.window[:, 0].numpy(), None, P)
    affine = affine_words(np.array(q.scale), np.array(q.bias), P, CFG.widths.affine_scale, CFG.widths.membrane)
    # an earlier stage leaves non-zero sums in every entry of dW2/dW3 (spikes x spikes)
    dw23 = dict(prog.stages)["dw23"]
    xb = prog.tensors["x"].base
    prog.stages = [("stale", dict(dw23, in_base=xb, g_base=xb, use_schedule=0))] + prog.stages
    out = _run(prog, buffer, trace_words, affine)
    got = unpack_wgrad(lambda a: out["sums"][a], prog.wgrads["w23"], CFG.gradients.wgrad_tile)
    np.testing.assert_array_equal(got[..., :3], gold.dw["w2"][0].numpy())
    np.testing.assert_array_equal(got[..., 3:], gold.dw["w3"][0].numpy())


def test_a_stage_with_every_timestep_skipped_leaves_zero_sums():
    """HTT with only reduced timesteps: dW2/dW3 get no term; the accumulator must read zero,
    not what an earlier stage left in it."""
    case = ("htt", 4, 4, 4, 2, 2, 2, False, True, False)
    q, x, trace, e, g_extra, gold = backward_case(case)
    q = dataclasses.replace(q, schedule=(False, False))
    prog = plan_backward_tile(q, 2, 2, 2, P, WB, gold.shifts, list(q.full_timesteps(2)), spikes_per_word=S)
    buffer = [0] * prog.buffer_words
    spec = prog.tensors["x"]
    buffer[spec.base:spec.base + spec.words(2)] = _pack(spec, np.ones((2, 4, 4, 4), np.int64))
    dw23 = dict(prog.stages)["dw23"]
    xb = prog.tensors["x"].base
    prog.stages = [("stale", dict(dw23, in_base=xb, g_base=xb, use_schedule=0)), ("dw23", dw23)]
    out = _run(prog, buffer, [0, 0], [0, 0])
    got = unpack_wgrad(lambda a: out["sums"][a], prog.wgrads["w23"], CFG.gradients.wgrad_tile)
    assert not got.any()


@pytest.mark.parametrize("case", [CASES[1], CASES[5]], ids=["stt-extra", "htt-pool"])
def test_overlaid_tensors_give_the_same_results(case):
    """The driver's layout shares words between tensors whose lifetimes do not overlap (fewer
    words, larger tiles); the outputs the host reads are the golden model's all the same."""
    mode, r, cin, cout, T, H, W, pool, auto, extra = case
    q, x, trace, e, g_extra, gold = backward_case(case)
    full = list(q.full_timesteps(T))
    prog = plan_backward_tile(q, T, H, W, P, WB, gold.shifts, full, use_extra=extra, spikes_per_word=S)
    own = plan_backward_tile(q, T, H, W, P, WB, gold.shifts, full, use_extra=extra, overlay=False,
                             spikes_per_word=S)
    assert prog.buffer_words < own.buffer_words
    assert [n for n, _ in prog.stages] == [n for n, _ in own.stages]
    stale = [int("5a" * (P * GB // 8), 16)] * prog.buffer_words   # stale words: nothing may read them
    out = _run_tile(prog, q, x, trace, e, g_extra, stale)
    for name, want in (("e_in", gold.e_in), ("g_cur", gold.g_current)):
        s = prog.tensors[name]
        got = unpack_tensor(out["buffer"][s.base:s.base + s.words(T)], (T, s.channels, s.rows, s.cols), P, GB)
        np.testing.assert_array_equal(got, want[:, 0].numpy(), err_msg=name)
    got = {n: unpack_wgrad(lambda a: out["sums"][a], spec, CFG.gradients.wgrad_tile) for n, spec in prog.wgrads.items()}
    np.testing.assert_array_equal(got["w1"][..., 0], gold.dw["w1"][0].numpy(), err_msg="dW1")
    np.testing.assert_array_equal(got["w4"][..., 0], gold.dw["w4"][0].numpy(), err_msg="dW4")


#: The tensors each stage reads (or writes) in the same cycle, by the datapath's ports
#: (gen/backward/datapath.py: the LIF stage reads ``e`` and ``g_extra`` and writes ``g_a4`` and
#: ``g_cur``; an outer product reads its activation and its gradient), listed by hand.
_SAME_CYCLE = {"stt": [("q23", "g_a4"), ("q2", "g_q23"), ("q1", "g_q2"), ("x", "g_q1")],
               "ptt": [("q23", "g_a4"), ("q1", "g_q23"), ("x", "g_q1")],
               "htt": [("q23", "g_a4"), ("q1", "g_q23"), ("x", "g_q1")]}


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_tensors_a_stage_uses_at_once_live_in_different_banks(case):
    """The gradient buffer is two banks of one read and one write port (gen/memories.py): the
    driver keeps each tensor inside one bank and separates the tensors a stage uses at once."""
    mode, r, cin, cout, T, H, W, pool, auto, extra = case
    q, x, trace, e, g_extra, gold = backward_case(case)
    region = CFG.backward_regions["gbuf"]
    half = region.bank_depth
    prog = plan_backward_tile(q, T, H, W, P, WB, gold.shifts, list(q.full_timesteps(T)), use_extra=extra,
                              bank_depth=half, spikes_per_word=S)
    bank = {}
    for name, s in prog.tensors.items():
        first, last = s.base, s.base + s.words(T) - 1
        assert first // half == last // half < 2, name
        bank[name] = first // half
    pairs = _SAME_CYCLE[mode] + [("g_a4", "g_cur")] + ([("e", "g_extra")] if extra else [])
    for a, b in pairs:
        assert bank[a] != bank[b], (a, b)
    for b in (0, 1):
        used = [s.words(T) + s.base - b * half for n, s in prog.tensors.items() if bank[n] == b]
        assert max(used, default=0) == prog.bank_words[b] <= half


def test_what_stays_and_what_streams_through_a_small_memory():
    """``_keep_or_stream`` on MS-ResNet18's 512-channel layers (rank 32, 32 lanes): sums of
    w4 512 entries (16 groups of 32 outputs x 32 inputs), w23 192 (6 taps x 32), w1 512 (1 group
    x 512 inputs), 1,216 against 1,024. Keeping w4 or w1 (512) leaves a 512-entry slot for the
    other two, 704 entries read per program; keeping w23 streams 1,024; keeping two does not fit."""
    from ttsnn.gen.backward.tile_program import _keep_or_stream

    sizes = {"w4": 512, "w23": 192, "w1": 512}
    keep, stream = _keep_or_stream(sizes, 1024)
    assert len(keep) == 1 and keep[0] in ("w4", "w1") and sum(sizes[n] for n in stream) == 704
    assert _keep_or_stream(sizes, 1216) == (["w4", "w23", "w1"], [])          # everything fits
    assert _keep_or_stream(sizes, None) == (["w4", "w23", "w1"], [])
    assert _keep_or_stream(sizes, 511) == ([], ["w4", "w23", "w1"])           # the largest alone does not


WIDE_CASES = [  # ranks above P (5-7 of the small configuration's 4 lanes): the last group straddled or packed
    ("stt", 7, 4, 8, 1, 2, 4, False, True, False),       # R = 3: straddled
    ("ptt", 6, 6, 4, 1, 2, 3, False, True, True),        # R = 2 = P/2 straddled (odd columns); G1^T's 6 too
    ("stt", 5, 4, 4, 2, 2, 4, False, True, False),       # R = 1: packed
    ("htt", 5, 4, 4, 3, 2, 4, False, True, False),       # a packed remainder, then a copied timestep
    ("htt", 7, 4, 4, 3, 2, 3, False, True, False),       # a straddled remainder, then a copied timestep
    ("ptt", 5, 4, 6, 1, 4, 2, True, False, True),        # pooling, saturating shifts; dW4's 6 straddled
]


def _packs_remainder_by_hand(f) -> bool:
    """Whether the engine can pack a stage's last group: ``O > P`` lane channels whose last
    group's ``R <= P/2``, an even number of columns, at least three steps per pixel and group."""
    O, taps = f["out_channels"], {0: 1, 1: 3, 2: 3, 3: 6}[f["taps"]]
    R = O - (-(-O // P) - 1) * P
    return (f["kind"] in (0, 1) and O > P and 2 * R <= P and f["cols"] % 2 == 0
            and taps * f["in_channels"] >= 3)


@pytest.mark.parametrize("case", WIDE_CASES, ids=lambda c: f"{c[0]}-r{c[1]}-T{c[4]}-{c[5]}x{c[6]}"
                         + ("-pool" if c[7] else "") + ("" if c[8] else "-sat"))
def test_wide_stages_match_golden(case, monkeypatch):
    """Stages of ``O > P`` lane channels (a *wide* stage): per block row the ``ceil(O/P) - 1``
    full groups of every pixel one pixel a pass, then the last group's ``R`` channels of the
    row straddled (``straddle``, ``P/2 <= R < P``) or two pixels per pass (``pack``,
    ``R <= P/2``, even columns). Every stage that can does so here (the driver's choice by
    the cycle model alone would test less on 4 lanes). The tensors and sums are the golden
    model's; each wide stage's cycles are counted here by hand (the full groups' ``I`` steps
    per pixel, group and tap; the remainder as a straddled stage of ``R`` channels, or
    ``I + ceil(I / P)`` steps per pixel pair and tap packed; HTT's reduced timesteps one step
    per output word; a mat-vec stage's drain of eight cycles plus one per pixel of its last
    pass after the first (packed: its pair's second word), and as many idle cycles before a
    copied timestep; one for the control) and equal the cycle model's, as every stage's do."""
    from ttsnn.gen.backward.cyclemodel import stage_cycles

    from ttsnn.gen.backward import tile_program

    monkeypatch.setattr(tile_program, "straddles", lambda f, lanes, spw: tile_program.can_straddle(f, lanes))
    monkeypatch.setattr(tile_program, "packs_remainder", lambda f, lanes, spw: _packs_remainder_by_hand(f))
    mode, r, T = case[0], case[1], case[4]
    prog, out = _check_tile_against_golden_with(case, pack_lanes=True, straddle_lanes=True)
    wide = {n: f for n, f in prog.stages if f["kind"] in (0, 1) and f["out_channels"] > P}
    taps_of = lambda f: {0: 1, 1: 3, 2: 3, 3: 6}[f["taps"]]        # noqa: E731
    for name, f in wide.items():
        strad = _straddles_by_hand(f["out_channels"], taps_of(f), f["in_channels"], f["kind"])
        assert (f["straddle"], f["pack"]) == (int(strad), int(not strad and _packs_remainder_by_hand(f))), name
    # the case is what it says: rank stages (q1, g_q1, dW1 ...) wide, straddled or packed as named
    assert {"q1", "g_q23", "g_q1", "dw1"} <= {n for n, f in wide.items() if f["straddle"] or f["pack"]}
    assert all(wide[n]["pack" if r == 5 else "straddle"] for n in ("q1", "g_q1", "dw1"))
    for name, f in prog.stages:
        assert out[f"cycles_{name}"] == stage_cycles(name, f, P, S).cycles, name
        if name not in wide or not (f["straddle"] or f["pack"]):
            continue
        G = -(-f["out_channels"] // P)
        R, cols, rows, taps, inner = f["out_channels"] - (G - 1) * P, f["cols"], f["rows"], taps_of(f), f["in_channels"]
        words = -(-inner // (S if f["in_spikes"] else P))
        full = [not f["use_schedule"] or (f["schedule"] >> t) & 1 for t in range(f["timesteps"])]
        if f["straddle"]:
            computed = _straddled_steps_by_hand(f)         # (its full groups counted there too)
            k0 = ((cols * R - 1) // P) * P                 # the last pass's first pair
            after_first = ((k0 % R) + cols * R - k0 - 1) // R
        else:
            computed = rows * (cols * (G - 1) * taps * inner + cols // 2 * taps * (inner + words))
            after_first = 1
        if f["kind"] == 1:
            steps = 0
            for t, c in enumerate(full):
                zeros = f["acc_clear"] and t == 0
                steps += computed if c else (taps * inner * G if zeros else 1)
            # the drain: the last step's update in stages a and o; a last timestep skipped
            # (no update), the step before it still in o if that one computed
            drain = 2 if full[-1] else int(len(full) > 1 and bool(full[-2]))
            assert out[f"cycles_{name}"] == steps + drain + 1, name
        else:
            gaps = after_first * sum(full[t] and not full[t + 1] for t in range(len(full) - 1))
            steps = sum(computed if c else rows * cols * G for c in full)
            assert out[f"cycles_{name}"] == steps + gaps + 8 + (after_first if full[-1] else 0) + 1, name
    if mode == "htt":           # reduced timesteps in wide stages
        assert any((f["straddle"] or f["pack"]) and f["use_schedule"] for f in wide.values())
        assert not all(backward_case(case)[0].full_timesteps(T))
