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

__all__ = ["layer_backward_report", "ideal_backward_ops", "backward_tile_shape", "BACKWARD_GOAL"]

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


def _balanced(n: int, size: int, step: int) -> int:
    """The smallest multiple of ``step`` that covers ``n`` in as many tiles as ``size`` does."""
    k = -(-n // size)
    return -(-(-(-n // k)) // step) * step


def backward_tile_shape(cfg: HardwareConfig, q, T: int, H: int, W: int, full,
                        use_extra: bool = False) -> tuple[int, int, bool]:
    """The ``h x w`` tile (pre-pool pixels) whose tensors and trace fit the backward memories
    and that takes the layer's backward pass the fewest cycles, and whether the stage weights
    and weight-gradient sums fit too. Candidates: for every tile height, the widest tile that
    fits, both dimensions then balanced over the same number of tiles (no thin edge tiles,
    whose halo rings cost as much as a full tile's); the cycles are the exact cycle model's."""
    regions, P, S, s = cfg.backward_regions, cfg.lanes, cfg.gbuf_spikes_per_word, 2 if q.pool else 1
    plans: dict[tuple[int, int], Any] = {}

    def plan_of(h, w):
        if (h, w) not in plans:
            plans[(h, w)] = plan_backward_tile(q, T, h, w, P, cfg.widths.weight, _SHIFTS, list(full),
                                               use_extra=use_extra, pack_weights=False, spikes_per_word=S)
        return plans[(h, w)]

    def fits_data(h, w):
        plan = plan_of(h, w)
        trace = T * (h // s + 2) * (w // s + 2) * -(-q.out_channels // P)
        need, have = gbuf_need(plan, regions["gbuf"])
        return need <= have and trace <= regions["trace"].depth

    def layer_cycles(h, w):
        return sum(sum(c.cycles for c in backward_cycles(plan_of(min(h, H - r0), min(w, W - c0)).stages, P, S))
                   for r0 in range(0, H, h) for c0 in range(0, W, w))

    candidates = set()
    for h in range(s, H + 1, s):          # the memory use grows with h and w: stop at the first misfit
        widest = 0
        for w in range(s, W + 1, s):
            if not fits_data(h, w):
                break
            widest = w
        if not widest:
            break
        candidates.add((_balanced(H, h, s), _balanced(W, widest, s)))
    if not candidates:
        return s, s, False
    h, w = min(candidates, key=lambda c: (layer_cycles(*c), -c[0] * c[1]))
    plan = plan_of(h, w)
    fits = len(plan.weight_words) <= regions["gweights"].depth and plan.acc_entries <= regions["wgrad"].depth
    return h, w, fits


def layer_backward_report(cfg: HardwareConfig, spec, mode: str, timesteps: int,
                          schedule: tuple[bool, ...]) -> dict[str, Any]:
    """Backward cycles, bound and losses of one TT layer (``sw.arch.ConvSpec``)."""
    q = _layer(spec, mode, schedule)
    T, (H, W), P = timesteps, spec.in_hw, cfg.lanes
    full = q.full_timesteps(T)
    extra = spec.membrane_shortcut        # the next block's shortcut: the current's gradient has a share
    h, w, fits = backward_tile_shape(cfg, q, T, H, W, full, extra)
    cycles = steps = tiles = 0
    stage_totals: dict[str, int] = {}
    cache: dict[tuple[int, int], list] = {}
    for r0 in range(0, H, h):
        for c0 in range(0, W, w):
            shape = (min(h, H - r0), min(w, W - c0))
            if shape not in cache:
                plan = plan_backward_tile(q, T, shape[0], shape[1], P, cfg.widths.weight, _SHIFTS, list(full),
                                          use_extra=extra, pack_weights=False,
                                          spikes_per_word=cfg.gbuf_spikes_per_word)
                cache[shape] = backward_cycles(plan.stages, P, cfg.gbuf_spikes_per_word)
            tiles += 1
            for sc in cache[shape]:
                cycles += sc.cycles
                steps += sc.steps
                stage_totals[sc.name] = stage_totals.get(sc.name, 0) + sc.cycles
    ops = ideal_backward_ops(q.in_channels, q.rank, q.out_channels, H, W, T, mode, full, q.pool)
    bound = -(-ops // P)
    return {"layer": spec.name, "in_channels": q.in_channels, "rank": q.rank,
            "out_channels": q.out_channels, "height": H, "width": W, "pool": q.pool,
            "timesteps": T, "mode": mode, "tiles": tiles, "tile": f"{h}x{w}",
            "fits_backward_memories": fits, "cycles": cycles, "bound": bound,
            "ratio": cycles / bound, "issue_cycles": steps, "pipeline": cycles - steps,
            "ring_and_padding": steps - bound, "stages": stage_totals}
