"""Requantiser (numerics steps 1 and 4) against the golden model's helper operations."""

import numpy as np
import pytest
import torch

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import Requantiser
from ttsnn.sw.golden import rshift, sat

LANES, IN_W, OUT_W = 4, 17, 8


def reference(values, shift, rnd):
    return sat(rshift(torch.tensor(values, dtype=torch.int64), shift, rnd), OUT_W).tolist()


def test_requantiser_random_and_edges():
    rng = np.random.default_rng(0)
    lo, hi = -(1 << (IN_W - 1)), (1 << (IN_W - 1)) - 1
    cases = [([lo, hi, 0, -1], s, rnd) for s in (0, 1, 2, 8, 16, 17, 20) for rnd in (0, 1)]
    # ties round up (towards +inf), saturation at both ends
    cases += [([-3, -2, 2, 3], 1, 1), ([-3, -2, 2, 3], 1, 0), ([255, -257, 128, -129], 0, 1)]
    cases += [(rng.integers(lo, hi + 1, LANES).tolist(), int(rng.integers(0, 18)), int(rng.integers(0, 2)))
              for _ in range(60)]
    dut = Requantiser(LANES, IN_W, OUT_W)
    got = []

    async def bench(ctx):
        for values, shift, rnd in cases:
            ctx.set(dut.i, pack_lanes(values, IN_W))
            ctx.set(dut.shift, shift)
            ctx.set(dut.rnd, rnd)
            got.append(unpack_lanes(ctx.get(dut.o), LANES, OUT_W))

    run_testbench(dut, bench, clock=False)
    for (values, shift, rnd), g in zip(cases, got):
        assert g == reference(values, shift, rnd), (values, shift, rnd)


def test_requantiser_rejects_bad_parameters():
    with pytest.raises(ValueError, match="lanes"):
        Requantiser(0, 16, 8)
