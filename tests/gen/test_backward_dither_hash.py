"""The dither hash unit in amaranth.sim against the golden model's lowbias32 (sw/golden_backward.py)."""

from __future__ import annotations

import numpy as np
import torch
from amaranth.sim import Simulator

from ttsnn.gen.backward.dither_hash import DitherHash
from ttsnn.sw.golden_backward import lowbias32


def test_dither_is_the_golden_hash_of_each_lanes_index():
    lanes = 4
    dut = DitherHash(lanes)
    rng = np.random.default_rng(5)
    cases = [(0, 0, 0), (0xFFFFFFFF, 7, 0x12345678), (0xFFFFFFFE, 0x40000000, 1)] + [
        tuple(int(v) for v in rng.integers(0, 1 << 32, 3, dtype=np.uint64)) for _ in range(20)]
    got = []

    async def bench(ctx):
        for index, stride, key in cases:
            ctx.set(dut.index, index)
            ctx.set(dut.lane_stride, stride)
            ctx.set(dut.key, key)
            word = ctx.get(dut.dither)
            got.append([(word >> (32 * l)) & 0xFFFFFFFF for l in range(lanes)])

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (index, stride, key), lanes_got in zip(cases, got):
        idx = torch.tensor([(index + l * stride) & 0xFFFFFFFF for l in range(lanes)], dtype=torch.int64)
        want = lowbias32(idx ^ key).tolist()
        assert lanes_got == want, (index, stride, key)
    # a known value of the hash, by hand from its definition (C. Wellons' lowbias32)
    x = 1
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    assert got[0][0] == lowbias32(torch.tensor([0])).item() and int(lowbias32(torch.tensor([1])).item()) == x
