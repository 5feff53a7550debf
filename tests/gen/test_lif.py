"""LIF lanes over several timesteps against the golden model's lif (hard reset, leak, strict >),
with the pipeline's timing: u_prev, then cur CUR_OFFSET cycles later, u/s LATENCY cycles later."""

import numpy as np
import torch

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import LIFLanes
from ttsnn.sw.golden import lif

LANES, MB, LB = 4, 16, 8
GARBAGE = 0x7FFF_8000_1234_ABCD


def test_lif_over_time():
    rng = np.random.default_rng(6)
    cases = []
    for _ in range(12):
        T = int(rng.integers(1, 7))
        cur = rng.integers(-(1 << 15), 1 << 15, (T, LANES))
        cases.append((cur, int(rng.integers(-200, 2000)), int(rng.integers(0, 256)),
                      int(rng.integers(0, 9)), int(rng.integers(0, 2))))
    # saturation of u (leak_mul large), negative threshold, all-zero input
    cases.append((np.full((5, LANES), 30000), 40000 - 65536, 255, 0, 1))
    cases.append((np.zeros((4, LANES), int), -1, 1, 2, 1))
    cases.append((np.full((6, LANES), -32768), 100, 200, 1, 0))
    dut = LIFLanes(LANES, MB, LB)
    got = []

    async def bench(ctx):
        # one neuron step at a time through the pipeline: u_prev in cycle 0, cur in cycle
        # CUR_OFFSET, u/s read in cycle LATENCY; garbage on the inputs in the other cycles
        for cur, thr, lm, ls, rnd in cases:
            ctx.set(dut.threshold, thr & 0xFFFF)
            ctx.set(dut.leak_mul, lm)
            ctx.set(dut.leak_shift, ls)
            ctx.set(dut.rnd, rnd)
            u_prev = [0] * LANES
            us, ss = [], []
            for t in range(cur.shape[0]):
                for cycle in range(dut.LATENCY + 1):
                    ctx.set(dut.u_prev, pack_lanes(u_prev, MB) if cycle == 0 else GARBAGE)
                    ctx.set(dut.cur, pack_lanes(cur[t], MB) if cycle == dut.CUR_OFFSET else GARBAGE)
                    if cycle == dut.LATENCY:
                        u_prev = unpack_lanes(ctx.get(dut.u), LANES, MB)
                        us.append(u_prev)
                        ss.append([(ctx.get(dut.s) >> l) & 1 for l in range(LANES)])
                    else:
                        await ctx.tick()
            got.append((us, ss))

    run_testbench(dut, bench)
    for (cur, thr, lm, ls, rnd), (us, ss) in zip(cases, got):
        spikes, membrane = lif(torch.tensor(cur, dtype=torch.int64), thr, lm, ls, rnd, MB)
        assert us == membrane.tolist()
        assert ss == spikes.tolist()
