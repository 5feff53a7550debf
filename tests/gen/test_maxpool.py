"""Max-pool lanes: signed maximum over the four pixels of a 2x2 block."""

import numpy as np

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import MaxPoolLanes

LANES, AB = 4, 16


def test_maxpool_blocks():
    rng = np.random.default_rng(4)
    lo, hi = -(1 << (AB - 1)), (1 << (AB - 1)) - 1
    blocks = [np.full((4, LANES), lo), np.full((4, LANES), -1), np.array([[lo, hi, 0, -5]] * 4)]
    blocks += [rng.integers(lo, hi + 1, (4, LANES)) for _ in range(20)]
    dut = MaxPoolLanes(LANES, AB)
    got = []

    async def bench(ctx):
        for blk in blocks:
            for i in range(4):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(i == 0))
                ctx.set(dut.i, pack_lanes(blk[i], AB))
                if i == 3:
                    got.append(unpack_lanes(ctx.get(dut.o), LANES, AB))
                await ctx.tick()

    run_testbench(dut, bench)
    for blk, g in zip(blocks, got):
        assert g == np.max(blk, axis=0).tolist()
