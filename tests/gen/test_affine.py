"""Affine (folded BatchNorm) + residual lanes against the golden model's affine/add_residual,
streamed through the pipeline (one case per cycle, results LATENCY cycles later)."""

import numpy as np
import torch

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import AffineLanes
from ttsnn.sw.golden import add_residual, affine

LANES, AB, SB, MB = 4, 16, 16, 16


def _collect(ctx, dut, pending, cycle, got):
    """Read the results due in this cycle (the pipeline's output ``LATENCY`` cycles on)."""
    for due, i in pending:
        assert due >= cycle, "a result was skipped"
        if due == cycle:
            got.append((i, unpack_lanes(ctx.get(dut.o), LANES, MB)))
    return [(due, i) for due, i in pending if due > cycle]


def test_affine_and_residual():
    rng = np.random.default_rng(5)
    lim = lambda b: (-(1 << (b - 1)), (1 << (b - 1)))  # noqa: E731
    cases = []
    for k in range(60):
        if k % 6 == 0:                    # settings change every 6 cases: back-to-back runs
            sh, rnd, use = int(rng.integers(0, 32)), int(rng.integers(0, 2)), int(rng.integers(0, 2))
        cases.append((rng.integers(*lim(AB), LANES), rng.integers(*lim(SB), LANES),
                      rng.integers(*lim(MB), LANES), rng.integers(*lim(MB), LANES), sh, rnd, use))
    # the rounding's increment (the carry-in of the add with the bias): odd and even products
    # of both signs at shifts 0 (no rounding, rnd ignored), 1 and 2, with and without rnd
    odd = np.array([1, 3, -1, -3])
    for sh in (0, 1, 2):
        for rnd in (0, 1):
            cases.append((odd, np.array([1, 1, 1, 1]), rng.integers(*lim(MB), LANES),
                          rng.integers(*lim(MB), LANES), sh, rnd, 0))
            cases.append((odd + 1, np.array([1, -1, 1, -1]), np.array([0, 0, -1, 1]),
                          np.zeros(LANES, dtype=np.int64), sh, rnd, 0))
    # the clamp of the shifted product to Mb + 2 bits before the add with the bias: products
    # at +-2^17 (just past it and just inside), and products past Mb bits that the bias pulls
    # back into range
    m16, p16 = -(1 << 15), (1 << 15) - 1
    cases.append((np.array([-4, 4, -3, 3]), np.full(LANES, m16), np.array([m16, p16, m16, p16]),
                  np.zeros(LANES, dtype=np.int64), 0, 0, 0))
    cases.append((np.array([5, -5, 9, -9]), np.full(LANES, 8000), np.array([m16, p16, m16, p16]),
                  np.zeros(LANES, dtype=np.int64), 0, 1, 0))
    cases.append((np.array([5, -5, 9, -9]), np.full(LANES, 16000), np.array([m16, p16, m16, p16]),
                  np.zeros(LANES, dtype=np.int64), 1, 1, 0))
    big = np.array([-(1 << 15), (1 << 15) - 1, 0, 1])
    cases.append((big, big, big, big, 0, 1, 1))            # saturates both ways
    cases.append((big, big[::-1].copy(), big, big, 31, 0, 1))
    dut = AffineLanes(LANES, AB, SB, MB)
    lat = dut.LATENCY
    got = []

    async def bench(ctx):
        # the cases stream one per cycle; the settings (shift, rnd, use_residual) are held
        # while a case is in flight, so a case with new settings waits for the pipeline
        pending = []                      # (cycle its result shows, case index)
        cycle = 0
        settings = None
        for i, (p, sc, bi, res, sh, rnd, use) in enumerate(cases):
            if settings not in (None, (sh, rnd, use)):
                while pending:
                    await ctx.tick()
                    cycle += 1
                    pending = _collect(ctx, dut, pending, cycle, got)
            settings = (sh, rnd, use)
            ctx.set(dut.p, pack_lanes(p, AB))
            ctx.set(dut.scale, pack_lanes(sc, SB))
            ctx.set(dut.bias, pack_lanes(bi, MB))
            ctx.set(dut.residual, pack_lanes(res, MB))
            ctx.set(dut.shift, sh)
            ctx.set(dut.rnd, rnd)
            ctx.set(dut.use_residual, use)
            pending.append((cycle + lat, i))
            await ctx.tick()
            cycle += 1
            ctx.set(dut.p, 0x5A5A5A5A)    # garbage between cases must not matter
            pending = _collect(ctx, dut, pending, cycle, got)
        while pending:
            await ctx.tick()
            cycle += 1
            pending = _collect(ctx, dut, pending, cycle, got)

    run_testbench(dut, bench)
    assert sorted(i for i, _ in got) == list(range(len(cases)))
    got = [g for _, g in sorted(got)]
    for (p, sc, bi, res, sh, rnd, use), g in zip(cases, got):
        t = lambda a: torch.tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
        cur = affine(t(p)[:, None, None], t(sc), t(bi), sh, rnd, MB)[:, 0, 0]
        if use:
            cur = add_residual(cur, t(res), MB)
        assert g == cur.tolist()
