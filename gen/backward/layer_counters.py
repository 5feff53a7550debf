"""A TT layer's backward pass as the RTL's counters would read, summed over its tiles (what
the energy model's ``proposed-rtl`` charges, model/rtl_backward.py): the driver's tiles
(:func:`gen.backward.planner.backward_tile_shape`), each tile's counters from the exact cycle
model, its host traffic from :func:`gen.backward.host.backward_traffic`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import HardwareConfig
from ..hostmap import host_map
from .cyclemodel import tile_counters
from .host import BackwardDoesNotFit, backward_traffic, check_fits
from .planner import TilePlanner, backward_tile_shape, planning_layer
from .stage_layout import StageKind
from .tiling import layer_runs, ring_sides, run_stages, skipped_ring_words
from ttsnn.sw.cli_util import UserError

__all__ = ["LayerBackwardCounters", "layer_backward_counters"]


@dataclass(frozen=True)
class LayerBackwardCounters:
    """A layer's backward pass as the RTL's counters would read, summed over its tiles.

    ``backward``: the LIF-gradient and mat-vec stages (the recomputed G1/G2/G3 and the
    transposed cores); ``weight_update``: the outer-product stages (the four weight
    gradients); both hold ``cycles`` and every backward counter but the saturations
    (:func:`gen.backward.cyclemodel.tile_counters`). ``host_words_in``/``host_words_out``: the
    host words of the tiles' programs (:func:`gen.backward.host.backward_program`: tensors,
    stage weights, trace and folded-BN words in; input and current gradients and the
    weight-gradient sums out). ``config``: the configuration the tiles were planned on, a copy
    with larger ``[gradients]`` memories when ``grown`` (the layer's smallest tile does not fit
    the configured ones)."""
    tiles: int
    tile: tuple[int, int]
    chunk: int
    config: HardwareConfig
    grown: bool
    backward: dict[str, int]
    weight_update: dict[str, int]
    host_words_in: int
    host_words_out: int
    region_words: dict[str, tuple[int, int]]


#: ``[gradients]`` field sizing each backward memory, and its size unit in region words
_GROWS = {"gbuf": "buffer_bytes", "gweights": "stage_weight_bytes", "trace": "trace_bytes",
          "wgrad": "wgrad_entries"}


def _grown(cfg: HardwareConfig, region: str, need: int) -> HardwareConfig:
    """``cfg`` with the backward memory ``region`` doubled until it holds ``need`` words."""
    g, field = cfg.gradients, _GROWS[region]
    size = getattr(g, field)
    while True:
        size *= 2
        grown = replace(cfg, gradients=replace(g, **{field: size}))
        if grown.backward_regions[region].depth >= need:
            return grown


def _pass_counters(stages, lanes: int, spikes_per_word: int) -> dict[str, dict[str, int]]:
    """A tile's counters split into the backward (LIF, mat-vec) and weight-update (outer
    product) stages."""
    split = {"backward": [], "weight_update": []}
    for name, f in stages:
        split["weight_update" if f["kind"] == StageKind.OUTER else "backward"].append((name, f))
    return {k: tile_counters(v, lanes, spikes_per_word) for k, v in split.items()}


def layer_backward_counters(cfg: HardwareConfig, spec, mode: str, timesteps: int,
                            schedule: tuple[bool, ...], max_growth: int = 12) -> LayerBackwardCounters:
    """The counters of a TT layer's (``sw.arch.ConvSpec``) backward pass on ``cfg``: the
    largest tiles that fit (:func:`backward_tile_shape`, as the host driver picks them), each
    tile's counters from the exact cycle model. Where even the smallest tile does not fit,
    ``[gradients]`` is doubled until it does (``grown``; at most ``max_growth`` times)."""
    q = planning_layer(spec, mode, schedule)
    T, (H, W), P = timesteps, spec.in_hw, cfg.lanes
    full = q.full_timesteps(T)
    extra = bool(spec.membrane_shortcut)
    planned, hmap = cfg, host_map(cfg)
    for _ in range(max_growth + 1):
        planner = TilePlanner(planned, q, full, extra)
        h, w, k, _ = backward_tile_shape(planned, q, T, H, W, full, extra, planner)
        runs = layer_runs(H, W, T, h, w, k)
        try:
            for run in runs:
                plan = planner.plan(run.height, run.width, k, run.t0)
                check_fits(planned, plan, plan.tensors["e"].words(k))
            break
        except BackwardDoesNotFit as e:      # grow only the memory that is too small
            planned = _grown(planned, e.region, e.need)
    else:
        raise UserError(f"{spec.name}: no backward tile fits the [gradients] memories of {cfg.name!r} "
                        f"even after growing them {max_growth} times")
    passes = {"backward": {}, "weight_update": {}}
    words_in = words_out = 0
    regions: dict[str, tuple[int, int]] = {}
    by_pass_of: dict[tuple, dict] = {}
    for run in runs:
        plan = planner.plan(run.height, run.width, k, run.t0)
        key = (run.height, run.width, run.t0 if mode == "htt" else 0, run.first, run.carry_in, run.carry_out,
               ring_sides(run, (H, W)))
        if key not in by_pass_of:
            by_pass_of[key] = _pass_counters(run_stages(plan, run, (H, W)), P, cfg.gbuf_spikes_per_word)
        # the first program writes the stage weights, the last reads the layer's sums
        zeros = sum(n for runs in skipped_ring_words(plan, run, (H, W)).values() for _, n in runs)
        traffic, w_in, w_out = backward_traffic(planned, plan, k, hmap, run.first, run.last, zeros)
        words_in, words_out = words_in + w_in, words_out + w_out
        for name, (wr, rd) in traffic.items():
            old = regions.get(name, (0, 0))
            regions[name] = (old[0] + wr, old[1] + rd)
        for key2, counters in by_pass_of[key].items():
            for name, v in counters.items():
                passes[key2][name] = passes[key2].get(name, 0) + v
    tiles = sum(run.t0 == 0 for run in runs)
    return LayerBackwardCounters(tiles, (h, w), k, planned, planned is not cfg, passes["backward"],
                                 passes["weight_update"], words_in, words_out, regions)
