"""The gradient requantiser (gen/backward/grad_requantiser.py) against the golden model's
``requantize`` (sw.golden_backward) for every rounding mode, on random sums and at the edges
(the extreme accumulator values, shift 0, shift 32 with all-ones dither)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttsnn.gen.backward import GradientRequantiser
from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.sw.golden_backward import GradRounding, requantize

LANES, AB, GB = 4, 36, 16


@pytest.mark.parametrize("rounding", ["nearest", "floor", "stochastic"])
def test_requantiser_matches_golden(rounding):
    rng = np.random.default_rng(11)
    lo, hi = -(1 << (AB - 1)), (1 << (AB - 1)) - 1
    cases = [(rng.integers(lo, hi, LANES, endpoint=True), int(rng.integers(0, 33))) for _ in range(40)]
    cases += [(np.array([lo, hi, 0, -1]), s) for s in (0, 1, 19, 20, 21, 32)]
    cases += [(rng.integers(-(1 << 20), 1 << 20, LANES), s) for s in (0, 4, 5, 6)]
    dut = GradientRequantiser(LANES, AB, GB, rounding)
    got = []
    rnd = GradRounding(rounding, seed=5)
    dithers = []
    for i, (values, shift) in enumerate(cases):
        index = torch.arange(LANES, dtype=torch.int64) + LANES * i
        dithers.append((index, rnd.dither("g4t", lambda: index) if rounding == "stochastic" else None))

    async def bench(ctx):
        for (values, shift), (_, bits) in zip(cases, dithers):
            ctx.set(dut.i, pack_lanes(values, AB))
            ctx.set(dut.shift, shift)
            if bits is not None:
                ctx.set(dut.dither, pack_lanes(bits.tolist(), 32))
            flags = ctx.get(dut.saturated)
            got.append((unpack_lanes(ctx.get(dut.o), LANES, GB), sum((flags >> l) & 1 for l in range(LANES)),
                        unpack_lanes(ctx.get(dut.rounded), LANES, dut.rounded_width)))

    run_testbench(dut, bench, clock=False)
    n_saturated = 0
    for (values, shift), (index, bits), (out, n_sat, rounded) in zip(cases, dithers, got):
        # ``rounded``: round_s before the saturation, written out by hand on Python integers
        for lane_, (v, r) in enumerate(zip(values.tolist(), rounded)):
            if rounding == "stochastic":
                want_r = (v + (int(bits[lane_]) & ((1 << shift) - 1))) >> shift
            elif shift == 0:
                want_r = v
            else:
                want_r = (v + (1 << (shift - 1) if rounding == "nearest" else 0)) >> shift
            assert r == want_r, (rounding, v, shift)
        want, want_sat = requantize(torch.tensor(values, dtype=torch.int64), shift, GB, rnd, "g4t",
                                    lambda: index)
        assert out == want.tolist(), (values, shift)
        assert n_sat == want_sat
        n_saturated += n_sat
    assert n_saturated > 0
