"""A TT layer's backward pass as the RTL's counters would read, summed over its tiles (what
the energy model's ``proposed-rtl`` charges, model/rtl_backward.py): the driver's tiles
(:func:`gen.backward.perf.backward_tile_shape`), each tile's counters from the exact cycle
model, its host traffic from :func:`gen.backward.host.backward_traffic`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import HardwareConfig
from ..hostmap import host_map
from .cyclemodel import tile_counters
from .host import BackwardDoesNotFit, backward_traffic, check_fits
from .perf import _SHIFTS, _layer, backward_tile_shape
from .stage_layout import StageKind
from .tile_program import plan_backward_tile
from sw.cli_util import UserError

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
    q = _layer(spec, mode, schedule)
    T, (H, W), P = timesteps, spec.in_hw, cfg.lanes
    full = q.full_timesteps(T)
    extra = bool(spec.membrane_shortcut)
    planned, hmap = cfg, host_map(cfg)
    for _ in range(max_growth + 1):
        h, w, _ = backward_tile_shape(planned, q, T, H, W, full, extra)
        try:
            progs = {}
            for r0 in range(0, H, h):
                for c0 in range(0, W, w):
                    shape = (min(h, H - r0), min(w, W - c0))
                    if shape not in progs:
                        plan = plan_backward_tile(q, T, *shape, P, cfg.widths.weight, _SHIFTS, list(full),
                                                  use_extra=extra, pack_weights=False,
                                                  spikes_per_word=cfg.gbuf_spikes_per_word)
                        check_fits(planned, plan, plan.tensors["e"].words(T))
                        progs[shape] = plan
            break
        except BackwardDoesNotFit as e:      # grow only the memory that is too small
            planned = _grown(planned, e.region, e.need)
    else:
        raise UserError(f"{spec.name}: no backward tile fits the [gradients] memories of {cfg.name!r} "
                        f"even after growing them {max_growth} times")
    passes = {"backward": {}, "weight_update": {}}
    words_in = words_out = tiles = 0
    regions: dict[str, tuple[int, int]] = {}
    origins = [(r0, c0) for r0 in range(0, H, h) for c0 in range(0, W, w)]
    by_pass_of: dict[tuple, dict] = {}
    for index, (r0, c0) in enumerate(origins):
        shape = (min(h, H - r0), min(w, W - c0))
        plan = progs[shape]
        if (shape, index == 0) not in by_pass_of:   # later tiles add to the sums (acc_clear = 0)
            stages = plan.stages if index == 0 else [
                (n, {**f, "acc_clear": 0} if f["kind"] == StageKind.OUTER else f) for n, f in plan.stages]
            by_pass_of[(shape, index == 0)] = _pass_counters(stages, P, cfg.gbuf_spikes_per_word)
        by_pass = by_pass_of[(shape, index == 0)]
        # the first tile writes the stage weights, the last reads the layer's sums
        traffic, w_in, w_out = backward_traffic(planned, plan, T, hmap, index == 0, index == len(origins) - 1)
        tiles += 1
        words_in, words_out = words_in + w_in, words_out + w_out
        for name, (wr, rd) in traffic.items():
            old = regions.get(name, (0, 0))
            regions[name] = (old[0] + wr, old[1] + rd)
        for key, counters in by_pass.items():
            for name, v in counters.items():
                passes[key][name] = passes[key].get(name, 0) + v
    return LayerBackwardCounters(tiles, (h, w), planned, planned is not cfg, passes["backward"],
                                 passes["weight_update"], words_in, words_out, regions)
