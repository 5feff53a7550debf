"""The weight-gradient accumulator (gen/backward/wgrad_accumulator.py) in amaranth.sim against
sums computed here in Python: random streams of updates with back-to-back updates of the same
entry (the read-modify-write hazard), ``clear`` starting new sums, host reads after the stream;
the batch form (saturating) against sw.golden_backward.accumulate_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttsnn.gen.backward import WeightGradientAccumulator
from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.sw.golden import wrap
from ttsnn.sw.golden_backward import accumulate_batch

LANES, PW, ENTRIES = 4, 24, 6


def _run(dut, updates, lanes, acc_bits):
    """Present ``updates`` (addr, clear, products) one per cycle, then read every entry."""
    reads, flags = [], []

    async def bench(ctx):
        for addr, clear, prod in updates:
            ctx.set(dut.valid, 1)
            ctx.set(dut.addr, addr)
            ctx.set(dut.clear, clear)
            ctx.set(dut.product, pack_lanes(prod, dut.product_width))
            await ctx.tick()
            flags.append(ctx.get(dut.saturated))
        ctx.set(dut.valid, 0)
        await ctx.tick()
        flags.append(ctx.get(dut.saturated))
        for e in range(dut.entries):
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_addr, e)
            await ctx.tick()
            ctx.set(dut.rd_en, 0)
            reads.append(unpack_lanes(ctx.get(dut.rd_data), lanes, acc_bits))

    run_testbench(dut, bench)
    return reads, sum(bin(f).count("1") for f in flags)


@pytest.mark.parametrize("acc, pw", [(30, PW), (40, PW), (41, 12)])
def test_tile_sums_with_back_to_back_updates(acc, pw):
    """The tile's sums are kept in two halves with a registered carry (the upper half a
    cycle later): products wider and narrower than the lower half, sums of odd width."""
    rng = np.random.default_rng(21)
    dut = WeightGradientAccumulator(LANES, pw, acc, ENTRIES)
    updates, want = [], {}
    for e in range(ENTRIES):                    # every entry starts with a clear
        p = rng.integers(-(1 << (pw - 1)), 1 << (pw - 1), LANES)
        updates.append((e, 1, p))
        want[e] = p.astype(object)
    for _ in range(200):
        e = int(rng.integers(0, 2)) if rng.random() < 0.5 else int(rng.integers(0, ENTRIES))
        clear = int(rng.random() < 0.05)
        p = rng.integers(-(1 << (pw - 1)), 1 << (pw - 1), LANES)
        updates.append((e, clear, p))
        want[e] = p.astype(object) if clear else want[e] + p
    reads, _ = _run(dut, updates, LANES, acc)
    for e in range(ENTRIES):
        expect = wrap(torch.tensor([int(v) for v in want[e]], dtype=torch.int64), acc).tolist()
        assert reads[e] == expect, e


def test_batch_accumulator_saturates_like_the_golden_model():
    rng = np.random.default_rng(22)
    acc, pw = 20, 19
    dut = WeightGradientAccumulator(LANES, pw, acc, 2, saturating=True)
    per_sample = torch.tensor(rng.integers(-(1 << (pw - 1)), 1 << (pw - 1), (12, LANES)), dtype=torch.int64)
    updates = [(0, int(b == 0), per_sample[b].tolist()) for b in range(len(per_sample))]
    updates += [(1, 1, [3, -3, 0, 1])]
    reads, n_sat = _run(dut, updates, LANES, acc)
    want, want_sat = accumulate_batch(per_sample.view(12, LANES), acc)
    assert reads[0] == want.tolist()
    assert reads[1] == [3, -3, 0, 1]
    assert n_sat == want_sat and n_sat > 0
