"""Cluster 1's spike PEs and adder tree: the sum of the weights whose spike is 1, accumulated
over steps, wrapped at the accumulator width (numpy reference)."""

import numpy as np

from ttsnn.gen.sim import pack_lanes, run_testbench
from ttsnn.gen.units import SpikeTree

LANES, WB, AB = 8, 8, 10   # a narrow accumulator so that wrap-around happens


def _wrap(v: int, bits: int) -> int:
    return ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))


def run(sequences, lanes=LANES, ab=AB):
    """sequences: list of (spikes[n][lanes], weights[n][lanes]); returns the accumulators."""
    dut = SpikeTree(lanes, WB, ab)
    out = []

    async def bench(ctx):
        for spikes, weights in sequences:
            for i, (s, w) in enumerate(zip(spikes, weights)):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(i == 0))
                ctx.set(dut.spikes, pack_lanes(s, 1))
                ctx.set(dut.weights, pack_lanes(w, WB))
                await ctx.tick()
                if i % 3 == 1:        # a bubble must not change the result
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick()
            v = ctx.get(dut.acc)
            out.append(v - (1 << ab) if v >> (ab - 1) else v)

    run_testbench(dut, bench)
    return out


def test_spike_tree_random_zero_all_and_wrap():
    rng = np.random.default_rng(1)
    seqs = [
        (np.zeros((5, LANES), int), rng.integers(-128, 128, (5, LANES))),     # no spikes
        (np.ones((5, LANES), int), rng.integers(-128, 128, (5, LANES))),      # all spikes
        (np.ones((3, LANES), int), np.full((3, LANES), 127)),                 # wraps 10 bits
        (np.ones((2, LANES), int), np.full((2, LANES), -128)),                # most negative
        (np.eye(LANES, dtype=int)[:1], np.arange(-4, 4)[None, :]),            # one input
    ]
    for _ in range(6):
        k = int(rng.integers(1, 9))
        seqs.append((rng.integers(0, 2, (k, LANES)), rng.integers(-128, 128, (k, LANES))))
    got = run(seqs)
    for (spikes, weights), g in zip(seqs, got):
        assert g == _wrap(int((np.asarray(spikes) * np.asarray(weights)).sum()), AB)


def test_spike_tree_odd_lane_count():
    """A tree over a lane count that is not a power of two still sums every lane."""
    rng = np.random.default_rng(7)
    seqs = [(rng.integers(0, 2, (4, 5)), rng.integers(-128, 128, (4, 5))) for _ in range(3)]
    got = run(seqs, lanes=5, ab=16)
    for (spikes, weights), g in zip(seqs, got):
        assert g == _wrap(int((spikes * weights).sum()), 16)
