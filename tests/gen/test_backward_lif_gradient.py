"""The LIF-gradient array (gen/backward/lif_gradient.py) in amaranth.sim against the golden
backward stages 1-3 (sw.golden_backward: lif_grad over every timestep in reverse, the current's
saturating add, affine_grad), for every rounding mode, with saturating edges and the
reference surrogate (height 1, no multiplier)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttsnn.gen.backward import LIFGradientLanes
from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.sw.golden import sat
from ttsnn.sw.golden_backward import GradRounding, affine_grad, lif_grad

LANES, GB, LB, SB = 4, 16, 8, 16
STAGES = ("height", "leak", "affine")


def _case(rng, T, extreme=False):
    lim = 1 << (GB - 1)
    e = rng.integers(-lim, lim, (T, LANES)) if extreme else rng.integers(-3000, 3000, (T, LANES))
    return dict(
        e=e, spikes=rng.integers(0, 2, (T, LANES)), window=rng.integers(0, 2, (T, LANES)),
        g_extra=rng.integers(-lim, lim, (T, LANES)) if extreme else rng.integers(-500, 500, (T, LANES)),
        scale=rng.integers(-(1 << (SB - 1)), 1 << (SB - 1), LANES),
        height_mul=int(rng.integers(1, 1 << LB)), height_shift=int(rng.integers(0, 9)),
        leak_mul=int(rng.integers(0, 1 << LB)), leak_shift=int(rng.integers(0, 9)),
        affine_shift=int(rng.integers(0, 20)))


def _golden(c, rnd: GradRounding, dither):
    t64 = lambda a: torch.tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
    index = (lambda: dither["index"]) if dither else None
    d, n_lif = lif_grad(t64(c["e"]), t64(c["spikes"]), t64(c["window"]), height_mul=c["height_mul"],
                        height_shift=c["height_shift"], leak_mul=c["leak_mul"],
                        leak_shift=c["leak_shift"], bits=GB, rnd=rnd, index=index)
    total = d + t64(c["g_extra"])
    g_cur = sat(total, GB)
    # affine_grad takes [T, B, C, h, w] and a [2, C] scale table: one class, B = h = w = 1
    as5 = lambda a: a.view(a.shape[0], 1, LANES, 1, 1)   # noqa: E731
    scale = t64(c["scale"]).view(1, LANES).repeat(2, 1)
    aff_index = (lambda: dither["index"].view(-1, 1, LANES, 1, 1)) if dither else None
    g_p, n_aff = affine_grad(as5(g_cur), scale, torch.ones(len(g_cur), dtype=torch.bool),
                             c["affine_shift"], GB, rnd, aff_index)
    return d, g_cur, g_p.view(-1, LANES), n_lif, int((g_cur != total).sum()), n_aff


def _simulate(groups, rounding, dithers, gap=0):
    """Clock the timesteps ``T-1 .. 0`` of one or more neuron groups (cases sharing their
    descriptor fields and scale) into the pipelined lanes, the groups taking turns within a
    timestep as the engine's column pairs do, ``gap`` idle cycles after each turn (the engine's
    pooling positions), ``valid`` low with garbage inputs in the gaps; read each step's outputs
    when ``out_valid`` shows them. Returns per group ``(d, g_cur, g_p, saturation counts)``."""
    dut = LIFGradientLanes(LANES, GB, LB, SB, rounding)
    c0 = groups[0]
    T = len(c0["e"])
    order = [(t, g) for t in reversed(range(T)) for g in range(len(groups))]
    out = []

    async def bench(ctx):
        for name in ("height_mul", "height_shift", "leak_mul", "leak_shift", "affine_shift"):
            ctx.set(getattr(dut, name), c0[name])
        ctx.set(dut.scale, pack_lanes(c0["scale"], SB))
        feed = [s for s in order for s in [s] + [None] * gap] + [None] * (LIFGradientLanes.LATENCY + 1)
        for cycle, step in enumerate(feed):
            ctx.set(dut.valid, step is not None)
            t, g = step if step is not None else (cycle % T, cycle % len(groups))  # idle: other data
            c, dither = groups[g], dithers[g]
            ctx.set(dut.restart, step is not None and t == T - 1)
            ctx.set(dut.e, pack_lanes(c["e"][t], GB))
            ctx.set(dut.g_extra, pack_lanes(c["g_extra"][t], GB))
            ctx.set(dut.spike, pack_lanes(c["spikes"][t], 1))
            ctx.set(dut.window, pack_lanes(c["window"][t], 1))
            if dither:
                for s in STAGES:
                    ctx.set(getattr(dut, f"dither_{s}"), pack_lanes(dither[s][t].tolist(), 32))
            if ctx.get(dut.out_valid):
                flags = [sum((ctx.get(getattr(dut, f)) >> l) & 1 for l in range(LANES))
                         for f in ("sat_lif", "sat_current", "sat_affine")]
                out.append((order[len(out)], unpack_lanes(ctx.get(dut.d), LANES, GB),
                            unpack_lanes(ctx.get(dut.g_cur), LANES, GB),
                            unpack_lanes(ctx.get(dut.g_p), LANES, GB), flags))
            await ctx.tick()

    run_testbench(dut, bench)
    assert len(out) == len(order), "every step comes out once, LATENCY cycles after it went in"
    results = []
    for g in range(len(groups)):
        mine = sorted((o for o in out if o[0][1] == g), key=lambda o: o[0][0])
        results.append(([o[1] for o in mine], [o[2] for o in mine], [o[3] for o in mine],
                        [sum(o[4][i] for o in mine) for i in range(3)]))
    return results


def _dither(rounding, rnd, c, i):
    if rounding != "stochastic":
        return None
    T = len(c["e"])
    index = torch.arange(T * LANES, dtype=torch.int64).view(T, LANES) + 1000 * i
    return {"index": index, **{s: rnd.dither(s, lambda: index) for s in STAGES}}


def _partner(rng, c, extreme=False):
    """A second neuron group for ``c``: its own tensors, ``c``'s descriptor fields and scale."""
    other = _case(rng, len(c["e"]), extreme)
    other.update({k: c[k] for k in ("scale", "height_mul", "height_shift", "leak_mul", "leak_shift",
                                    "affine_shift")})
    return other


@pytest.mark.parametrize("rounding", ["nearest", "floor", "stochastic"])
def test_lif_gradient_matches_golden(rounding):
    rng = np.random.default_rng({"nearest": 1, "floor": 2, "stochastic": 3}[rounding])
    cases = [_case(rng, int(rng.integers(1, 7))) for _ in range(6)]
    cases += [_case(rng, 6, extreme=True) for _ in range(2)]            # saturation edges
    ref = _case(rng, 4)
    ref.update(height_mul=1, height_shift=0)                            # the reference surrogate
    cases.append(ref)
    quiet = _case(rng, 3)
    quiet.update(window=np.zeros((3, LANES), int))                     # no gradient gets through
    cases.append(quiet)
    unshifted = _case(rng, 5)
    unshifted.update(leak_shift=0)                                     # round_ls is the identity
    cases.append(unshifted)
    saturated_any = 0
    for i, c in enumerate(cases):
        rnd = GradRounding(rounding, seed=i)
        # odd cases: one group, three idle cycles between its timesteps (pooling); even cases:
        # two groups taking turns with no idle cycle (the column pairs), the distance the
        # recurrence's two stages need
        groups = [c] if i % 2 else [c, _partner(rng, c, extreme=i in (6, 7))]
        dithers = [_dither(rounding, rnd, g, 2 * i + k) for k, g in enumerate(groups)]
        for g, dither, got in zip(groups, dithers, _simulate(groups, rounding, dithers, gap=(0, 3)[i % 2])):
            d, g_cur, g_p, sats = got
            gd, gcur, gp, n_lif, n_cur, n_aff = _golden(g, rnd, dither)
            assert d == gd.tolist(), f"case {i}: d"
            assert g_cur == gcur.tolist(), f"case {i}: g_cur"
            assert g_p == gp.tolist(), f"case {i}: g_p"
            assert sats == [n_lif, n_cur, n_aff], f"case {i}: saturation flags"
            saturated_any += sum(sats)
    assert saturated_any > 0          # the extreme cases did reach the saturating edges


def test_stochastic_needs_no_dither_ports_otherwise():
    unit = LIFGradientLanes(2, GB, LB, SB, "nearest")
    unit._MustUse__silence = True
    assert not hasattr(unit, "dither_leak")
    with pytest.raises(ValueError, match="rounding must be one of"):
        LIFGradientLanes(2, GB, LB, SB, "even")
