"""Cluster 1's spike PE array: accumulate-only, wrap at the accumulator width."""

import numpy as np
import torch

from gen.sim import pack_lanes, run_testbench, unpack_lanes
from gen.units import SpikePEArray
from sw.golden import wrap

LANES, WB, AB = 4, 8, 10   # a narrow accumulator so that wrap-around happens


def run(sequences):
    """sequences: list of (spikes[n], weights[n][LANES]); returns the final accumulators."""
    dut = SpikePEArray(LANES, WB, AB)
    out = []

    async def bench(ctx):
        for spikes, weights in sequences:
            for i, (s, w) in enumerate(zip(spikes, weights)):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(i == 0))
                ctx.set(dut.spike, int(s))
                ctx.set(dut.weights, pack_lanes(w, WB))
                await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick()          # a bubble must not change the result
            out.append(unpack_lanes(ctx.get(dut.acc), LANES, AB))

    run_testbench(dut, bench)
    return out


def test_spike_pe_random_zero_all_and_wrap():
    rng = np.random.default_rng(1)
    seqs = []
    n = 13
    w_full = np.full((40, LANES), 127)
    seqs.append((np.zeros(n, int), rng.integers(-128, 128, (n, LANES))))      # no spikes
    seqs.append((np.ones(n, int), rng.integers(-128, 128, (n, LANES))))       # all spikes
    seqs.append((np.ones(40, int), w_full))                                    # wraps 10 bits
    seqs.append((np.ones(1, int), np.array([[-128, 127, 0, 1]])))              # single input
    for _ in range(5):
        k = int(rng.integers(1, 30))
        seqs.append((rng.integers(0, 2, k), rng.integers(-128, 128, (k, LANES))))
    got = run(seqs)
    for (spikes, weights), g in zip(seqs, got):
        expect = wrap(torch.tensor(np.asarray(spikes, dtype=np.int64) @ np.asarray(weights, dtype=np.int64)), AB).tolist()
        assert g == expect
