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
bypass copy) and ``pipeline`` (each stage's drain and control cycles).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from ..config import HardwareConfig
from .cyclemodel import backward_cycles
from .stage_layout import StageKind
from .tile_program import gbuf_need, plan_backward_tile
from .tiling import TileRun, border_rows, chunk_sizes, layer_runs, run_stages

__all__ = ["layer_backward_report", "ideal_backward_ops", "lane_bound_cycles", "backward_tile_shape",
           "BACKWARD_GOAL"]

#: the ratio the backward issue asks for
BACKWARD_GOAL = 1.25
#: shifts for planning only: they do not change a stage's cycles (g23t > shift3 + 1 keeps HTT's
#: bypass a right shift)
_SHIFTS = {"affine": 0, "g4t": 0, "g3t": 0, "g23t": 8, "g1t": 0}


def _layer(spec, mode: str, schedule: tuple[bool, ...]):
    r, cin, cout = spec.rank, spec.in_channels, spec.out_channels
    z = lambda *s: np.zeros(s, np.int64)  # noqa: E731  (the cycles do not depend on the values)
    full = tuple(schedule) if mode == "htt" else None
    return SimpleNamespace(mode=mode, in_channels=cin, rank=r, out_channels=cout, w1=z(r, cin),
                           w2=z(r, r, 3), w3=z(r, r, 3), w4=z(cout, r), pool=bool(spec.downsample),
                           shift1=0, shift2=0, shift3=0, round=1, leak_mul=1, leak_shift=0,
                           full_timesteps=lambda T: full if full is not None else (True,) * T)


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
                      full: tuple[bool, ...], pool: bool, lanes: int) -> int:
    """The bound of an array that puts one output channel on each lane (this datapath, and the
    issue's bound with the lanes a channel count leaves idle counted): every operation of
    :func:`ideal_backward_ops`, each stage's lane channels rounded up to ``lanes`` (the rank of
    the stages with ``r`` outputs: the recomputed G1/G2/G3, G4^T, G2^T/G3^T and the outer
    products of ``dW1``/``dW2``/``dW3``), still no halo, no ring and no pipeline."""
    up = lambda c: -(-c // lanes) * lanes          # noqa: E731
    hw, nf = h * w, sum(full)
    pointwise = (2 * cin * up(r) + up(cin) * r + cout * up(r) + up(cout) * r) * hw * T
    taps = 18 * up(r) * r * hw * (T if mode == "stt" else nf)
    lif = up(cout) * (hw // 4 if pool else hw) * T
    return -(-(pointwise + taps + lif) // lanes)


def _balanced(n: int, size: int, step: int) -> int:
    """The smallest multiple of ``step`` that covers ``n`` in as many tiles as ``size`` does."""
    k = -(-n // size)
    return -(-(-(-n // k)) // step) * step


class _Planner:
    """Plans of a layer's tiles for the cycle model (weights left zero), one per tile shape,
    chunk length and first timestep (HTT's chunks differ in their schedules)."""

    def __init__(self, cfg: HardwareConfig, q, full, use_extra: bool):
        self.cfg, self.q, self.full, self.use_extra = cfg, q, list(full), use_extra
        self.plans: dict[tuple, Any] = {}
        self.cycles: dict[tuple, list] = {}

    def plan(self, h: int, w: int, k: int, t0: int = 0):
        key = (h, w, k, t0 if self.q.mode == "htt" else 0)
        if key not in self.plans:
            cfg, T = self.cfg, len(self.full)
            self.plans[key] = plan_backward_tile(self.q, k, h, w, cfg.lanes, cfg.widths.weight, _SHIFTS,
                                                 self.full[key[3]:key[3] + k], use_extra=self.use_extra,
                                                 pack_weights=False, carry=k < T,
                                                 spikes_per_word=cfg.gbuf_spikes_per_word,
                                                 weight_depth=cfg.backward_regions["gweights"].depth,
                                                 acc_depth=cfg.backward_regions["wgrad"].depth)
        return self.plans[key]

    def run_cycles(self, run: TileRun, layer_rows: int | None = None) -> list:
        """The exact cycle model's stages of one run (of a layer of ``layer_rows`` rows)."""
        key = (run.height, run.width, run.timesteps, run.t0 if self.q.mode == "htt" else 0, run.first,
               run.carry_in, run.carry_out, border_rows(run, layer_rows))
        if key not in self.cycles:
            plan = self.plan(run.height, run.width, run.timesteps, run.t0)
            self.cycles[key] = backward_cycles(run_stages(plan, run, layer_rows), self.cfg.lanes,
                                               self.cfg.gbuf_spikes_per_word)
        return self.cycles[key]

    def fits_data(self, h: int, w: int, k: int) -> bool:
        regions, s = self.cfg.backward_regions, 2 if self.q.pool else 1
        trace = k * (h // s + 2) * (w // s + 2) * -(-self.q.out_channels // self.cfg.lanes)
        need, have = gbuf_need(self.plan(h, w, k), regions["gbuf"])
        return need <= have and trace <= regions["trace"].depth

    def layer_cycles(self, H: int, W: int, h: int, w: int, k: int) -> int:
        T = len(self.full)
        return sum(c.cycles for run in layer_runs(H, W, T, h, w, k) for c in self.run_cycles(run, H))


def backward_tile_shape(cfg: HardwareConfig, q, T: int, H: int, W: int, full,
                        use_extra: bool = False, planner: _Planner | None = None) -> tuple[int, int, int, bool]:
    """The ``h x w`` tile (pre-pool pixels) and chunk of ``k`` timesteps
    (:mod:`gen.backward.tiling`) whose tensors and trace fit the backward memories and that
    take the layer's backward pass the fewest cycles, and whether the stage weights and
    weight-gradient sums fit too. Candidates: for every chunk length and tile height, the
    widest tile that fits, both dimensions then balanced over the same number of tiles (no
    thin edge tiles, whose halo rings cost as much as a full tile's); the cycles are the exact
    cycle model's. Ties go to the longer chunk, then the larger tile."""
    regions, s = cfg.backward_regions, 2 if q.pool else 1
    planner = planner or _Planner(cfg, q, full, use_extra)
    candidates = set()
    for k in chunk_sizes(T):
        for h in range(s, H + 1, s):          # the memory use grows with h and w: stop at the first misfit
            widest = 0
            for w in range(s, W + 1, s):
                if not planner.fits_data(h, w, k):
                    break
                widest = w
            if not widest:
                break
            candidates.add((_balanced(H, h, s), _balanced(W, widest, s), k))
    if not candidates:
        return s, s, 1, False
    h, w, k = min(candidates, key=lambda c: (planner.layer_cycles(H, W, *c), -c[2], -c[0] * c[1]))
    plan = planner.plan(h, w, k)
    fits = plan.weight_span <= regions["gweights"].depth and plan.acc_entries <= regions["wgrad"].depth
    return h, w, k, fits


def layer_backward_report(cfg: HardwareConfig, spec, mode: str, timesteps: int,
                          schedule: tuple[bool, ...]) -> dict[str, Any]:
    """Backward cycles, bound and losses of one TT layer (``sw.arch.ConvSpec``)."""
    q = _layer(spec, mode, schedule)
    T, (H, W), P = timesteps, spec.in_hw, cfg.lanes
    full = q.full_timesteps(T)
    extra = spec.membrane_shortcut        # the next block's shortcut: the current's gradient has a share
    planner = _Planner(cfg, q, full, extra)
    h, w, k, fits = backward_tile_shape(cfg, q, T, H, W, full, extra, planner)
    cycles = steps = tiles = streamed = 0
    stage_totals: dict[str, int] = {}
    for run in layer_runs(H, W, T, h, w, k):
        tiles += run.t0 == 0
        plan = planner.plan(run.height, run.width, k, run.t0)
        streamed += (sum(len(words) for _, words in plan.streamed_weights.values())
                     + sum(plan.wgrads[n].entries for n in plan.streamed_sums.values()))
        for sc in planner.run_cycles(run, H):
            cycles += sc.cycles
            steps += sc.steps
            stage_totals[sc.name] = stage_totals.get(sc.name, 0) + sc.cycles
    ops = ideal_backward_ops(q.in_channels, q.rank, q.out_channels, H, W, T, mode, full, q.pool)
    bound = -(-ops // P)
    lane_bound = lane_bound_cycles(q.in_channels, q.rank, q.out_channels, H, W, T, mode, full, q.pool, P)
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
            "streamed_words": streamed}
