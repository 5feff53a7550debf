"""How a layer's backward pass is planned (docs/architecture.md, "Backward datapath"): the tile
and chunk of timesteps that take the fewest cycles while their tensors and trace fit the
backward memories, by the exact cycle model. One choice for the host driver
(:func:`gen.backward.host.backward_layer_programs`), the per-layer table
(:mod:`gen.backward.perf`) and the energy model's counters (:mod:`gen.backward.layer_counters`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from ..config import HardwareConfig
from .cyclemodel import backward_cycles
from .tile_program import gbuf_need, plan_backward_tile
from .tiling import TileRun, chunk_sizes, layer_runs, ring_sides, run_stages

__all__ = ["TilePlanner", "backward_tile_shape", "planning_layer"]

#: shifts for planning only: they do not change a stage's cycles (g23t > shift3 + 1 keeps HTT's
#: bypass a right shift)
_SHIFTS = {"affine": 0, "g4t": 0, "g3t": 0, "g23t": 8, "g1t": 0}


def planning_layer(spec, mode: str, schedule: tuple[bool, ...]):
    """A TT layer of ``spec`` (``sw.arch.ConvSpec``) with zero weights: what the planner and the
    cycle model need (the cycles do not depend on the values)."""
    r, cin, cout = spec.rank, spec.in_channels, spec.out_channels
    z = lambda *s: np.zeros(s, np.int64)  # noqa: E731  (the cycles do not depend on the values)
    full = tuple(schedule) if mode == "htt" else None
    return SimpleNamespace(mode=mode, in_channels=cin, rank=r, out_channels=cout, w1=z(r, cin),
                           w2=z(r, r, 3), w3=z(r, r, 3), w4=z(cout, r), pool=bool(spec.downsample),
                           shift1=0, shift2=0, shift3=0, round=1, leak_mul=1, leak_shift=0,
                           full_timesteps=lambda T: full if full is not None else (True,) * T)


def _balanced(n: int, size: int, step: int) -> int:
    """The smallest multiple of ``step`` that covers ``n`` in as many tiles as ``size`` does."""
    k = -(-n // size)
    return -(-(-(-n // k)) // step) * step


class TilePlanner:
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
                                                 acc_depth=cfg.backward_regions["wgrad"].depth,
                                                 pack_lanes=cfg.gradients.rounding != "stochastic",
                                                 straddle_lanes=cfg.gradients.rounding != "stochastic")
        return self.plans[key]

    def run_cycles(self, run: TileRun, layer: tuple[int, int] | None = None) -> list:
        """The exact cycle model's stages of one run (of a layer of ``layer`` pre-pool rows and
        columns)."""
        key = (run.height, run.width, run.timesteps, run.t0 if self.q.mode == "htt" else 0, run.first,
               run.carry_in, run.carry_out, ring_sides(run, layer))
        if key not in self.cycles:
            plan = self.plan(run.height, run.width, run.timesteps, run.t0)
            self.cycles[key] = backward_cycles(run_stages(plan, run, layer), self.cfg.lanes,
                                               self.cfg.gbuf_spikes_per_word)
        return self.cycles[key]

    def fits_data(self, h: int, w: int, k: int) -> bool:
        regions, s = self.cfg.backward_regions, 2 if self.q.pool else 1
        trace = k * (h // s + 2) * (w // s + 2) * -(-self.q.out_channels // self.cfg.lanes)
        need, have = gbuf_need(self.plan(h, w, k), regions["gbuf"])
        return need <= have and trace <= regions["trace"].depth

    def layer_cycles(self, H: int, W: int, h: int, w: int, k: int) -> int:
        T = len(self.full)
        return sum(c.cycles for run in layer_runs(H, W, T, h, w, k) for c in self.run_cycles(run, (H, W)))


def _widest_fitting(planner: TilePlanner, H: int, W: int, k: int, s: int):
    """``(h, widest w)`` for every tile height ``h`` at which some width fits. The memory use
    grows with ``h`` and with ``w``, so the widest fitting width never grows with the height:
    each height's search starts from the previous height's widest and walks down (a staircase,
    about ``(H + W) / s`` fit checks instead of one per fitting tile)."""
    widest = 0
    while widest + s <= W and planner.fits_data(s, widest + s, k):
        widest += s
    for h in range(s, H + 1, s):
        while widest and not planner.fits_data(h, widest, k):
            widest -= s
        if not widest:
            return
        yield h, widest


def backward_tile_shape(cfg: HardwareConfig, q, T: int, H: int, W: int, full,
                        use_extra: bool = False, planner: TilePlanner | None = None) -> tuple[int, int, int, bool]:
    """The ``h x w`` tile (pre-pool pixels) and chunk of ``k`` timesteps
    (:mod:`gen.backward.tiling`) whose tensors and trace fit the backward memories and that
    take the layer's backward pass the fewest cycles, and whether the stage weights and
    weight-gradient sums fit too. Candidates: for every chunk length and tile height, the
    widest tile that fits, both dimensions then balanced over the same number of tiles (no
    thin edge tiles, whose halo rings cost as much as a full tile's); the cycles are the exact
    cycle model's. Ties go to the longer chunk, then the larger tile."""
    regions, s = cfg.backward_regions, 2 if q.pool else 1
    planner = planner or TilePlanner(cfg, q, full, use_extra)
    candidates = set()
    for k in chunk_sizes(T):
        for h, widest in _widest_fitting(planner, H, W, k, s):
            candidates.add((_balanced(H, h, s), _balanced(W, widest, s), k))
    if not candidates:
        return s, s, 1, False
    h, w, k = min(candidates, key=lambda c: (planner.layer_cycles(H, W, *c), -c[2], -c[0] * c[1]))
    plan = planner.plan(h, w, k)
    fits = plan.weight_span <= regions["gweights"].depth and plan.acc_entries <= regions["wgrad"].depth
    return h, w, k, fits
