"""Multiplier PE arrays (clusters 2, 3, 4): broadcast operand, per-lane weights, wrap."""

import numpy as np
import torch

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import MacPEArray
from ttsnn.sw.golden import wrap

LANES, WB, QB, AB = 4, 8, 8, 16


def test_mac_pe_random_extremes_and_wrap():
    rng = np.random.default_rng(2)
    seqs = [
        (np.full(3, -128), np.full((3, LANES), -128)),                  # largest products
        (np.full(5, -128), np.full((5, LANES), -128)),                  # 5 * 16384 wraps 16 bits
        (np.zeros(4, int), rng.integers(-128, 128, (4, LANES))),        # zero operands
        (np.array([127]), np.array([[127, -128, 0, -1]])),
    ]
    for _ in range(6):
        k = int(rng.integers(1, 25))
        seqs.append((rng.integers(-128, 128, k), rng.integers(-128, 128, (k, LANES))))
    dut = MacPEArray(LANES, WB, QB, AB)
    got = []

    async def bench(ctx):
        for ops, weights in seqs:
            for i, (o, w) in enumerate(zip(ops, weights)):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(i == 0))
                ctx.set(dut.operand, int(o) & 0xFF)
                ctx.set(dut.weights, pack_lanes(w, WB))
                await ctx.tick()
                ctx.set(dut.valid, 0)
                await ctx.tick()      # bubbles between inputs (a stalled pipeline)
            got.append(unpack_lanes(ctx.get(dut.acc), LANES, AB))

    run_testbench(dut, bench)
    for (ops, weights), g in zip(seqs, got):
        expect = wrap(torch.tensor(np.asarray(ops, dtype=np.int64) @ np.asarray(weights, dtype=np.int64)), AB).tolist()
        assert g == expect
