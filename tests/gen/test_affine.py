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
