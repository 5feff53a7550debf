"""Adder array (PTT merge): Ab+1 bits, never wraps."""

import numpy as np

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import AdderArray

LANES, AB = 4, 16


def test_adder_array_full_range():
    rng = np.random.default_rng(3)
    lo, hi = -(1 << (AB - 1)), (1 << (AB - 1)) - 1
    cases = [([lo] * 4, [lo] * 4), ([hi] * 4, [hi] * 4), ([lo, hi, 0, -1], [hi, lo, -1, 0])]
    cases += [(rng.integers(lo, hi + 1, LANES).tolist(), rng.integers(lo, hi + 1, LANES).tolist())
              for _ in range(40)]
    dut = AdderArray(LANES, AB)
    got = []

    async def bench(ctx):
        for a, b in cases:
            ctx.set(dut.a, pack_lanes(a, AB))
            ctx.set(dut.b, pack_lanes(b, AB))
            got.append(unpack_lanes(ctx.get(dut.o), LANES, AB + 1))

    run_testbench(dut, bench, clock=False)
    for (a, b), g in zip(cases, got):
        assert g == [x + y for x, y in zip(a, b)]
