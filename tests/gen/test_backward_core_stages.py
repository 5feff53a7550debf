"""The core-stage engine (gen/backward/core_stage_engine.py) running a whole backward tile's
core stages in amaranth.sim, as the driver plans them (gen/backward/tile_program.py): the
recomputed q1/q2/q23, G4^T, G3^T/G2^T, G1^T and the weight-gradient outer products, chained
through one gradient buffer. The LIF-gradient stage's output ``g_a4`` is written by the test
from the golden stages; everything after it is compared with sw.golden_backward.backward_tile
(input gradient ``e_in`` and every weight gradient) and the intermediate tensors with the
golden stage functions, for STT, PTT and HTT, with and without pooling and saturation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.memory import Memory

from gen.backward.core_stage_engine import CoreStageEngine
from gen.backward.tile_program import pack_tensor, plan_core_stages, unpack_tensor, unpack_wgrad
from gen.config import load_config
from gen.sim import run_testbench
from sw import golden
from sw.golden import sat
from sw.golden_backward import (BackwardParams, ForwardTrace, GradRounding, affine_product, backward_tile,
                                forward_trace, lif_grad, maxpool2x2_grad)
from tests.gen.test_top import make_layer

CFG = load_config("small")
P, GB, WB = CFG.lanes, CFG.gradients.width, CFG.widths.weight


class Harness(Elaboratable):
    """The engine, the gradient buffer (two read ports, one write port) and the weight words."""

    def __init__(self, buffer: list[int], weights: list[int], entries: int):
        self.engine = CoreStageEngine(CFG, entries)
        self.buffer = Memory(shape=P * GB, depth=len(buffer), init=buffer)
        self.weights = Memory(shape=P * WB, depth=max(len(weights), 2), init=weights)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine, m.submodules.buffer, m.submodules.weights = self.engine, self.buffer, self.weights
        eng = self.engine
        for port, mem in ((eng.inp, self.buffer), (eng.grad, self.buffer), (eng.weights, self.weights)):
            rd = mem.read_port()
            m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
        wr = self.buffer.write_port()
        m.d.comb += [wr.en.eq(eng.out.en), wr.addr.eq(eng.out.addr), wr.data.eq(eng.out.data)]
        return m


def _golden_g_a4(q, trace, e, params, rnd):
    """Backward steps 1-4 (what the LIF-gradient engine produces), as backward_tile does them."""
    full = torch.tensor(q.full_timesteps(e.shape[0]))
    d, _ = lif_grad(e, trace.spikes, trace.window, height_mul=params.height_mul,
                    height_shift=params.height_shift, leak_mul=q.leak_mul, leak_shift=q.leak_shift,
                    bits=GB, rnd=rnd)
    prod = affine_product(d, torch.from_numpy(np.array(q.scale)), full)
    g_p = sat(rnd.shift(prod, params.shifts["affine"], "affine", None), GB)
    if not q.pool:
        return g_p
    h, w = trace.x.shape[-2] - 2, trace.x.shape[-1] - 2
    return maxpool2x2_grad(g_p, trace.argmax)[..., 1:h + 3, 1:w + 3]


def _run(prog, buffer, entries):
    dut = Harness(buffer, prog.weight_words, max(entries, 2))
    eng = dut.engine
    result = {}

    async def bench(ctx):
        for name, fields in prog.stages:
            for f, v in fields.items():
                ctx.set(eng.stage[f], v)
            ctx.set(eng.start, 1)
            await ctx.tick()
            ctx.set(eng.start, 0)
            cycles = 1
            while ctx.get(eng.busy):
                await ctx.tick()
                cycles += 1
            result[f"cycles_{name}"] = cycles
        result["buffer"] = [ctx.get(dut.buffer.data[a]) for a in range(len(buffer))]
        sums = {}
        for a in range(entries):
            ctx.set(eng.acc_rd_en, 1)
            ctx.set(eng.acc_rd_addr, a)
            await ctx.tick()
            sums[a] = ctx.get(eng.acc_rd_data)
        ctx.set(eng.acc_rd_en, 0)
        result["sums"] = sums

    run_testbench(dut, bench)
    return result


CASES = [  # mode, r, cin, cout, T, H, W, pool, auto shifts (False: shifts that saturate)
    ("ptt", 4, 8, 8, 2, 2, 4, False, True),
    ("stt", 4, 4, 8, 2, 2, 2, False, True),
    ("htt", 4, 4, 4, 3, 2, 2, False, True),
    ("ptt", 3, 4, 6, 1, 4, 2, True, True),        # partial lane groups, pooling
    ("stt", 4, 8, 4, 1, 2, 2, False, False),      # saturating shifts
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-r{c[1]}-T{c[4]}-{c[5]}x{c[6]}"
                         + ("-pool" if c[7] else "") + ("" if c[8] else "-sat"))
def test_core_stages_match_golden_backward(case):
    mode, r, cin, cout, T, H, W, pool, auto = case
    rng = np.random.default_rng(hash(case) % 2**32)
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
    stages = ("affine", "g4t", "g3t", "g23t", "g1t") if mode == "stt" else ("affine", "g4t", "g23t", "g1t")
    shifts = {s: "auto" for s in stages} if auto else {s: 2 for s in stages}
    params = BackwardParams(window_lo=lo, window_hi=hi, shifts=shifts)
    rnd = GradRounding(CFG.gradients.rounding)
    gold = backward_tile(q, trace, e, CFG, CFG.gradients, params, rounding=rnd)
    params = BackwardParams(window_lo=lo, window_hi=hi, shifts=gold.shifts)
    full = q.full_timesteps(T)
    prog = plan_core_stages(q, T, H, W, P, WB, gold.shifts, list(full))
    buffer = [0] * prog.buffer_words
    g_a4 = _golden_g_a4(q, trace, e, params, rnd)
    for name, values in (("x", x[:, 0]), ("g_a4", g_a4[:, 0])):
        spec = prog.tensors[name]
        buffer[spec.base:spec.base + spec.words(T)] = pack_tensor(values.numpy(), P, GB)
    out = _run(prog, buffer, prog.acc_entries)

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
