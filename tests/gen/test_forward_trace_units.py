"""The forward trace's units in amaranth.sim against the golden model: the LIF lanes' window
bit (``sw.golden_backward.window_bits`` of ``sw.golden.lif``'s membranes) and the max-pool
lanes' arg-max (``sw.golden_backward.maxpool2x2_argmax``), with the edge cases of
docs/numerics.md "What the forward pass keeps": a membrane exactly at a bound (strict both
sides), saturated membranes with bounds just outside the membrane's range, ties in a block
(the first maximum), T in {1, 2, 4}."""

import numpy as np
import torch

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import LIFLanes, MaxPoolLanes
from ttsnn.sw.golden import lif
from ttsnn.sw.golden_backward import maxpool2x2_argmax, window_bits

LANES, MB, LB, AB = 4, 16, 8, 16
GARBAGE = 0x7FFF_8000_1234_ABCD
UMAX, UMIN = (1 << (MB - 1)) - 1, -(1 << (MB - 1))


def _lif_cases():
    """(cur [T, LANES], threshold, leak_mul, leak_shift, rnd, lo, hi)."""
    rng = np.random.default_rng(13)
    cases = []
    # no leak (leak_mul 0): u = cur, so the membranes sit exactly at, just inside and just
    # outside the bounds; T = 1, 2, 4
    lo, hi = 0, 256
    at_bounds = np.array([[lo, hi, lo + 1, hi - 1], [lo - 1, hi + 1, 128, -5],
                          [hi, lo, hi - 1, lo + 1], [0, 0, 255, 256]])
    for T in (1, 2, 4):
        cases.append((at_bounds[:T], 128, 0, 0, 1, lo, hi))
    # saturation: u pinned at the membrane's limits; bounds just outside the range (Mb + 1
    # bits) keep them inside, bounds at the limits leave them out
    up = np.full((4, LANES), UMAX)
    down = np.full((4, LANES), UMIN)
    for T in (1, 2, 4):
        cases.append((up[:T], UMAX, 1, 0, 1, 0, UMAX + 1))     # threshold max: never spikes
        cases.append((up[:T], UMAX, 1, 0, 1, 0, UMAX))         # u == hi: outside
        cases.append((down[:T], 0, 1, 0, 1, UMIN - 1, 0))
        cases.append((down[:T], 0, 1, 0, 1, UMIN, 0))          # u == lo: outside
    # the leak accumulating into saturation, then the reset
    cases.append((np.full((4, LANES), 30000), UMAX, 1, 0, 0, 100, UMAX + 1))
    # random membranes over T in {1, 2, 4}, windows around the threshold, negative bounds too
    for _ in range(9):
        T = int(rng.choice((1, 2, 4)))
        thr = int(rng.integers(-200, 2000))
        half = int(rng.integers(1, 3000))
        cases.append((rng.integers(-3000, 3000, (T, LANES)), thr, int(rng.integers(0, 256)),
                      int(rng.integers(0, 9)), int(rng.integers(0, 2)), thr - half, thr + half))
    return cases


def test_lif_window_bit_matches_the_golden_model():
    cases = _lif_cases()
    dut = LIFLanes(LANES, MB, LB)
    got = []
    wmask = (1 << (MB + 1)) - 1

    async def bench(ctx):
        # one neuron step at a time through the pipeline, as tests/gen/test_lif.py: u_prev in
        # cycle 0, cur in cycle CUR_OFFSET, u/s/m read in cycle LATENCY
        for cur, thr, lm, ls, rnd, lo, hi in cases:
            ctx.set(dut.threshold, thr & 0xFFFF)
            ctx.set(dut.leak_mul, lm)
            ctx.set(dut.leak_shift, ls)
            ctx.set(dut.rnd, rnd)
            ctx.set(dut.window_lo, lo & wmask)
            ctx.set(dut.window_hi, hi & wmask)
            u_prev = [0] * LANES
            us, ms = [], []
            for t in range(cur.shape[0]):
                for cycle in range(dut.LATENCY + 1):
                    ctx.set(dut.u_prev, pack_lanes(u_prev, MB) if cycle == 0 else GARBAGE)
                    ctx.set(dut.cur, pack_lanes(cur[t], MB) if cycle == dut.CUR_OFFSET else GARBAGE)
                    if cycle == dut.LATENCY:
                        u_prev = unpack_lanes(ctx.get(dut.u), LANES, MB)
                        us.append(u_prev)
                        ms.append([(ctx.get(dut.m) >> l) & 1 for l in range(LANES)])
                    else:
                        await ctx.tick()
            got.append((us, ms))

    run_testbench(dut, bench)
    for (cur, thr, lm, ls, rnd, lo, hi), (us, ms) in zip(cases, got):
        _, membrane = lif(torch.tensor(cur, dtype=torch.int64), thr, lm, ls, rnd, MB)
        assert us == membrane.tolist()
        assert ms == window_bits(membrane, lo, hi).tolist(), (lo, hi, membrane.tolist())
    # the edge cases were exercised: membranes exactly at a bound, and saturated ones
    flat = [(u, lo, hi) for (cur, thr, lm, ls, rnd, lo, hi), (us, _) in zip(cases, got)
            for row in us for u in row]
    assert any(u == lo for u, lo, _ in flat) and any(u == hi for u, _, hi in flat)
    assert any(u == UMAX for u, _, _ in flat) and any(u == UMIN for u, _, _ in flat)


def test_maxpool_arg_max_matches_the_golden_model():
    rng = np.random.default_rng(14)
    lo, hi = -(1 << (AB - 1)), (1 << (AB - 1)) - 1
    blocks = [np.full((4, LANES), 7),                                   # a four-way tie: 0
              np.array([[1, 5, 5, -3], [5, 5, 9, -3], [2, 5, 9, -3], [5, 4, 1, -3]]),  # ties
              np.array([[lo, lo, hi, -1], [lo, hi, hi, 0], [lo, hi, lo, 0], [lo, lo, hi, -1]]),
              np.array([[lo] * LANES, [lo] * LANES, [lo + 1] * LANES, [lo] * LANES])]
    blocks += [rng.integers(-4, 4, (4, LANES)) for _ in range(20)]      # many ties
    blocks += [rng.integers(lo, hi + 1, (4, LANES)) for _ in range(10)]
    dut = MaxPoolLanes(LANES, AB)
    got = []

    async def bench(ctx):
        for blk in blocks:
            for i in range(4):                  # raster order in the block: position i
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(i == 0))
                ctx.set(dut.position, i)
                ctx.set(dut.i, pack_lanes(blk[i], AB))
                if i == 3:
                    got.append(([(ctx.get(dut.arg) >> (2 * l)) & 3 for l in range(LANES)],
                                unpack_lanes(ctx.get(dut.o), LANES, AB)))
                await ctx.tick()

    run_testbench(dut, bench)
    for blk, (arg, o) in zip(blocks, got):
        # the block as a 2x2 map [LANES, 2, 2] in raster order
        a = torch.tensor(blk.T.reshape(LANES, 2, 2), dtype=torch.int64)
        assert arg == maxpool2x2_argmax(a).reshape(-1).tolist()
        assert o == np.max(blk, axis=0).tolist()
    assert got[0][0] == [0] * LANES and got[1][0] == [1, 0, 1, 0]
