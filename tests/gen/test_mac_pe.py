"""Multiplier PE arrays (clusters 2, 3, 4): broadcast operand, per-lane weights, wrap."""

import numpy as np
import pytest
import torch

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import MacPEArray
from ttsnn.sw.golden import wrap

LANES, WB, QB, AB = 4, 8, 8, 16


def _sequences():
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
    return seqs


def test_mac_pe_random_extremes_and_wrap():
    seqs = _sequences()
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


@pytest.mark.parametrize("acc_width", [AB, 17, 37])
@pytest.mark.parametrize("gap", [0, 1, 3])
def test_pipelined_mac_pe_matches_golden(acc_width, gap):
    """``pipelined``: the product registered, the sum in two halves with a registered carry
    (``lo_bits`` and the rest: even and odd widths, an upper half wider than the product).
    The sequences follow each other with no gap (a sequence's first step in the cycle after
    the last one of the one before: the first step's cleared lower half meets the upper half
    still adding the previous sequence's last carry) or ``gap`` idle cycles between steps;
    each sum is read ``latency`` cycles after its last step, while the next sequence runs."""
    seqs = _sequences()
    dut = MacPEArray(LANES, WB, QB, acc_width, pipelined=True)
    assert dut.latency == 3
    steps = [(int(i == 0), int(o), w, i == len(ops) - 1) for ops, weights in seqs
             for i, (o, w) in enumerate(zip(ops, weights))]
    got = []

    async def bench(ctx):
        ends = []           # cycle numbers at which a finished sum is on ``acc``
        cycle = 0
        for first, o, w, last in steps:
            ctx.set(dut.valid, 1)
            ctx.set(dut.first, first)
            ctx.set(dut.operand, o & 0xFF)
            ctx.set(dut.weights, pack_lanes(w, WB))
            if last:
                ends.append(cycle + dut.latency)
            for _ in range(1 + gap):
                if ends and ends[0] == cycle:
                    got.append(unpack_lanes(ctx.get(dut.acc), LANES, acc_width))
                    ends.pop(0)
                await ctx.tick()
                cycle += 1
                ctx.set(dut.valid, 0)
        while ends:
            if ends[0] == cycle:
                got.append(unpack_lanes(ctx.get(dut.acc), LANES, acc_width))
                ends.pop(0)
            await ctx.tick()
            cycle += 1

    run_testbench(dut, bench)
    assert len(got) == len(seqs)
    for (ops, weights), g in zip(seqs, got):
        expect = wrap(torch.tensor(np.asarray(ops, dtype=np.int64) @ np.asarray(weights, dtype=np.int64)),
                      acc_width).tolist()
        assert g == expect


def test_mac_pe_rejects_a_non_bool_pipelined():
    with pytest.raises(ValueError, match="MacPEArray: pipelined must be a bool"):
        MacPEArray(LANES, WB, QB, AB, pipelined=1)
