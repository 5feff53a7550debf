"""Affine (folded BatchNorm) + residual lanes against the golden model's affine/add_residual."""

import numpy as np
import torch

from gen.sim import pack_lanes, run_testbench, unpack_lanes
from gen.units import AffineLanes
from sw.golden import add_residual, affine

LANES, AB, SB, MB = 4, 16, 16, 16


def test_affine_and_residual():
    rng = np.random.default_rng(5)
    lim = lambda b: (-(1 << (b - 1)), (1 << (b - 1)))  # noqa: E731
    cases = []
    for _ in range(50):
        cases.append((rng.integers(*lim(AB), LANES), rng.integers(*lim(SB), LANES),
                      rng.integers(*lim(MB), LANES), rng.integers(*lim(MB), LANES),
                      int(rng.integers(0, 32)), int(rng.integers(0, 2)), int(rng.integers(0, 2))))
    big = np.array([-(1 << 15), (1 << 15) - 1, 0, 1])
    cases.append((big, big, big, big, 0, 1, 1))            # saturates both ways
    cases.append((big, big[::-1].copy(), big, big, 31, 0, 1))
    dut = AffineLanes(LANES, AB, SB, MB)
    got = []

    async def bench(ctx):
        for p, sc, bi, res, sh, rnd, use in cases:
            ctx.set(dut.p, pack_lanes(p, AB))
            ctx.set(dut.scale, pack_lanes(sc, SB))
            ctx.set(dut.bias, pack_lanes(bi, MB))
            ctx.set(dut.residual, pack_lanes(res, MB))
            ctx.set(dut.shift, sh)
            ctx.set(dut.rnd, rnd)
            ctx.set(dut.use_residual, use)
            got.append(unpack_lanes(ctx.get(dut.o), LANES, MB))

    run_testbench(dut, bench, clock=False)
    for (p, sc, bi, res, sh, rnd, use), g in zip(cases, got):
        t = lambda a: torch.tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
        cur = affine(t(p)[:, None, None], t(sc), t(bi), sh, rnd, MB)[:, 0, 0]
        if use:
            cur = add_residual(cur, t(res), MB)
        assert g == cur.tolist()
