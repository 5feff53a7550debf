"""Backward-pass cycles per TT layer against the ideal bound (``python -m gen.perf --backward``).

A layer's backward pass runs as the largest tiles that fit the backward memories
(:func:`gen.backward.host.backward_layer_programs` picks the same tiles), each tile the
sequence of stages of :func:`gen.backward.tile_program.plan_backward_tile`, timed by the exact
cycle model :mod:`gen.backward.cyclemodel` (equal to the RTL's counters on every simulated
tile). The bound: all backward operations of the layer (the recomputed G1/G2/G3, G4^T,
G3^T/G2^T, G1^T, the four weight-gradient outer products and the LIF gradient; no halo, no
ring, no idle lane, HTT's bypass free) divided by the ``P`` PEs of the one array that runs
them. Above the bound, per layer: ``ring`` (the halo ring's LIF and G4^T work and the strips'
halo rows), ``padding`` (idle lanes when a channel count is not a multiple of ``P``, HTT's
bypass copy) and ``pipeline`` (each stage's drain and control cycles). The exact cycles
include the built part of lanes straddling pixels (the stage field ``straddle``: mat-vec
and outer-product stages of ``P/3 <= O < P`` lane channels; of ``O > P``, the last group's
``R`` channels straddled where ``P/2 <= R``, or packed two pixels a pass where ``R <= P/2``
with ``pack``; each where the driver finds it faster), and a packed or straddled block of
whole tensor rows run as one row (:func:`gen.backward.tiling.flat_rows`: passes across the
block's rows). Besides, projections of the rest (:mod:`gen.backward.straddle`: ``O > P`` with
passes over all ``O`` channels, passes across the rows of any block): the ``straddled_*``
cycles and ratios, which no RTL checks beyond the built part.
"""

from __future__ import annotations

from typing import Any

from ..config import HardwareConfig
from .planner import TilePlanner, backward_tile_shape, planning_layer
from .straddle import STRADDLE_PROJECTIONS, straddled_cycles
from .tiling import layer_runs, run_stages

__all__ = ["layer_backward_report", "ideal_backward_ops", "lane_bound_cycles", "backward_tile_shape",
           "BACKWARD_GOAL"]

#: the ratio the backward issue asks for
BACKWARD_GOAL = 1.25


def ideal_backward_ops(cin: int, r: int, cout: int, h: int, w: int, T: int, mode: str,
                       full: tuple[bool, ...], pool: bool) -> int:
    """Multiply-accumulates and LIF-gradient updates of a layer's backward pass (no halo)."""
    hw, nf = h * w, sum(full)
    pointwise = (3 * cin * r + 2 * cout * r) * hw * T          # G1 (recomputed), G1^T, dW1; G4^T, dW4
    # G2 and G3 recomputed, transposed and as weight gradients: 3 taps x 6 (STT: every timestep;
    # PTT/HTT: both branches on the full timesteps, HTT's reduced ones a free bypass)
    taps = 18 * r * r * hw * (T if mode == "stt" else nf)
    lif = cout * (hw // 4 if pool else hw) * T
    return pointwise + taps + lif


def lane_bound_cycles(cin: int, r: int, cout: int, h: int, w: int, T: int, mode: str,
                      full: tuple[bool, ...], pool: bool, lanes: int, packed: bool = False) -> int:
    """The bound of an array that puts one output channel on each lane (this datapath, and the
    issue's bound with the lanes a channel count leaves idle counted): every operation of
    :func:`ideal_backward_ops`, each stage's lane channels rounded up to ``lanes`` (the rank of
    the stages with ``r`` outputs: the recomputed G1/G2/G3, G4^T, G2^T/G3^T and the outer
    products of ``dW1``/``dW2``/``dW3``), still no halo, no ring and no pipeline. ``packed``:
    the stages with ``r <= lanes / 2`` lane channels run two pixels per pass (the stage field
    ``pack``), each pixel taking half the lanes."""
    up = lambda c: -(-c // lanes) * lanes          # noqa: E731
    two = lambda c: lanes // 2 if packed and 2 * c <= lanes else up(c)      # noqa: E731
    hw, nf = h * w, sum(full)
    pointwise = (2 * cin * two(r) + up(cin) * r + cout * two(r) + up(cout) * r) * hw * T
    taps = 18 * two(r) * r * hw * (T if mode == "stt" else nf)
    lif = up(cout) * (hw // 4 if pool else hw) * T
    return -(-(pointwise + taps + lif) // lanes)


def layer_backward_report(cfg: HardwareConfig, spec, mode: str, timesteps: int,
                          schedule: tuple[bool, ...]) -> dict[str, Any]:
    """Backward cycles, bound and losses of one TT layer (``sw.arch.ConvSpec``)."""
    q = planning_layer(spec, mode, schedule)
    T, (H, W), P = timesteps, spec.in_hw, cfg.lanes
    full = q.full_timesteps(T)
    extra = spec.membrane_shortcut        # the next block's shortcut: the current's gradient has a share
    planner = TilePlanner(cfg, q, full, extra)
    h, w, k, fits = backward_tile_shape(cfg, q, T, H, W, full, extra, planner)
    cycles = steps = tiles = streamed = 0
    stage_totals: dict[str, int] = {}
    straddled = dict.fromkeys(STRADDLE_PROJECTIONS, 0)
    straddles = cfg.gradients.rounding != "stochastic"
    for run in layer_runs(H, W, T, h, w, k):
        tiles += run.t0 == 0
        plan = planner.plan(run.height, run.width, k, run.t0)
        streamed += (sum(len(words) for _, words in plan.streamed_weights.values())
                     + sum(plan.wgrads[n].entries for n in plan.streamed_sums.values()))
        exact = planner.run_cycles(run, (H, W))
        for sc in exact:
            cycles += sc.cycles
            steps += sc.steps
            stage_totals[sc.name] = stage_totals.get(sc.name, 0) + sc.cycles
        for name, (kinds, across_rows, wide) in STRADDLE_PROJECTIONS.items():
            straddled[name] += (straddled_cycles(run_stages(plan, run, (H, W)), exact, P, cfg.gbuf_spikes_per_word,
                                                 kinds, across_rows, wide) if straddles
                                else sum(sc.cycles for sc in exact))
    ops = ideal_backward_ops(q.in_channels, q.rank, q.out_channels, H, W, T, mode, full, q.pool)
    bound = -(-ops // P)
    lane_bound = lane_bound_cycles(q.in_channels, q.rank, q.out_channels, H, W, T, mode, full, q.pool, P,
                                   packed=cfg.gradients.rounding != "stochastic")
    return {"layer": spec.name, "in_channels": q.in_channels, "rank": q.rank,
            "out_channels": q.out_channels, "height": H, "width": W, "pool": q.pool,
            "timesteps": T, "mode": mode, "tiles": tiles, "tile": f"{h}x{w}", "chunk": k,
            "fits_backward_memories": fits, "cycles": cycles, "bound": bound,
            "ratio": cycles / bound, "lane_bound": lane_bound,
            "lane_ratio": cycles / lane_bound, "issue_cycles": steps, "pipeline": cycles - steps,
            "ring_and_padding": steps - bound, "stages": stage_totals,
            # stage-weight words written and weight-gradient entries read around their stages
            # in every program (the cores that do not stay for the whole layer): host traffic,
            # not in ``cycles`` (the host's transfers are not overlapped with the stages yet)
            "streamed_words": streamed,
            # projections of an unbuilt design (gen/backward/straddle.py, STRADDLE_PROJECTIONS):
            # the cycles with the mat-vec stages' lanes straddling pixels, with the outer
            # products' too, both over a block's rows, and that for ranks below P only
            **{f"straddled_{n}_cycles": c for n, c in straddled.items()},
            **{f"straddled_{n}_ratio": c / bound for n, c in straddled.items()}}
