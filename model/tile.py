"""Per-tile forward counters of the proposed accelerator, and the energy-model actions they imply.

The RTL's counters of a tile have one definition: :mod:`gen.cyclemodel`
(:func:`gen.cyclemodel.tile_counters`, :func:`gen.cyclemodel.tile_timing`), which
tests/gen/test_top.py checks against the RTL counter by counter. This module builds on it and
adds only what the cycle model leaves to its caller:

* the tile's :class:`gen.cyclemodel.TileShape` from a :class:`gen.driver.Tile` (or anything
  with the same fields), the mode, the HTT schedule and the residual flag (:func:`tile_shape`);
* the data-dependent counters: ``c1_adds`` from the tile's input window (or its expected value
  from a spike density), ``spikes_out`` from the output spikes, and ``host_words_in/out``
  computed from the region layouts of docs/host_interface.md (:func:`host_regions`; equal to
  ``gen.driver.Driver.program(...).words_in/words_out``, tests/model/test_tile.py);
* the zero-skipping cluster 1's row lengths (the configuration's ``arrangement.cluster1 =
  "zero_skip"``, the paper's arrangement): exact from the tile's input window
  (:func:`gen.zero_skip.zero_skip_row_lens`), or their expected values from a spike density
  with independent spikes (:func:`gen.zero_skip.expected_row_lens`, re-exported here).

:func:`counters_to_counts` turns one tile's counters into the energy model's actions (compute,
PE registers and scratchpads, global-buffer accesses at their widths, DRAM bits). The module
is importable without Amaranth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from ttsnn.gen import cyclemodel as cm
from ttsnn.gen.config import HardwareConfig
from ttsnn.gen.cyclemodel import TileShape
from ttsnn.gen.driver import input_row_order
from ttsnn.gen.host_program import whole_rings
from ttsnn.gen.geometry import TileGeometry, window_pixels
from ttsnn.gen.hostmap import COUNTER_NAMES, host_map
from ttsnn.gen.zero_skip import expected_event_steps, expected_row_lens, w1_depth, zero_skip_row_lens
from ttsnn.sw.cli_util import UserError

__all__ = ["TileShape", "TileForward", "tile_shape", "tile_forward", "tile_forward_counters",
           "host_regions", "computed_pixels", "counters_to_counts", "STALL_COUNTERS",
           "expected_event_steps", "expected_row_lens", "config_key", "add_scratchpad_counts",
           "WEIGHT_REGIONS", "INPUT_REGIONS", "OUTPUT_REGIONS"]

#: Counters of cycles an engine waited.
STALL_COUNTERS = ("c1_stall", "c1_in_wait", "c2_stall", "c3_stall", "c4_stall", "adder_stall",
                  "lif_stall")
#: Regions the host writes when a tile (re)loads its cores, the ones it streams in, and the
#: output regions it reads (docs/host_interface.md, "Regions").
WEIGHT_REGIONS = ("w1", "w2", "w3", "w4", "affine")
INPUT_REGIONS = ("spike_in", "residual")
OUTPUT_REGIONS = ("membrane", "trace")


def _schedule(mode: str, schedule: Sequence[bool] | None, timesteps: int) -> tuple[bool, ...]:
    if mode not in ("stt", "ptt", "htt"):
        raise UserError(f"mode must be 'stt', 'ptt' or 'htt', got {mode!r}")
    if mode != "htt":
        return (True,) * timesteps
    from ttsnn.sw.arch import validate_schedule
    return tuple(bool(f) for f in validate_schedule(schedule, timesteps))


def tile_shape(tile, mode: str, schedule: Sequence[bool] | None = None,
               residual: bool = False) -> TileShape:
    """The cycle model's :class:`~gen.cyclemodel.TileShape` of ``tile`` (a
    :class:`gen.driver.Tile`, a ``TileShape`` or any object with the fields ``height, width,
    in_channels, rank, out_channels, timesteps, pool`` and optionally ``zero_halo, pack,
    order, w4_ring, w23_ring, w1_ring``; missing ones default to no zero halo, ``pack = 0``, ``order = 0``, a
    resident G4)."""
    if isinstance(tile, TileShape):
        if tile.mode != mode:
            raise UserError(f"tile shape has mode {tile.mode!r}, asked for {mode!r}")
        return tile
    t = int(tile.timesteps)
    vals = {k: int(getattr(tile, k)) for k in ("height", "width", "in_channels", "rank",
                                                 "out_channels", "timesteps")}
    for k, v in vals.items():
        if v < 1:
            raise UserError(f"tile {k} must be >= 1, got {v}")
    pool = bool(tile.pool)
    if pool and (vals["height"] % 2 or vals["width"] % 2):
        raise UserError(f"a pooling tile needs an even height and width, got "
                        f"{vals['height']}x{vals['width']}")
    zh = tuple(bool(z) for z in getattr(tile, "zero_halo", (False,) * 4))
    if len(zh) != 4:
        raise UserError(f"zero_halo: expected 4 flags (top, bottom, left, right), got {zh!r}")
    return TileShape(vals["in_channels"], vals["rank"], vals["out_channels"], vals["height"],
                     vals["width"], t, mode, _schedule(mode, schedule, t), pool, bool(residual), zh,
                     int(getattr(tile, "pack", 0)), int(getattr(tile, "order", 0)),
                     int(getattr(tile, "w4_ring", 0)), int(getattr(tile, "w23_ring", 0)),
                     int(getattr(tile, "w1_ring", 0)), bool(getattr(tile, "early_start", False)))


def computed_pixels(s: TileShape) -> tuple[int, int]:
    """``(N1, Z1)`` of docs/host_interface.md: window pixels cluster 1 computes per timestep, and
    the zero-halo pixels it skips."""
    return window_pixels(s.height, s.width, s.zero_halo)


#: per-configuration caches (a HardwareConfig is not hashable: keyed by its content)
_CFG_CACHE: dict[int, tuple[HardwareConfig, str]] = {}
_SUBWORDS: dict[str, dict[str, int]] = {}


def config_key(cfg: HardwareConfig) -> str:
    """A hashable key of a configuration's content (cached per object)."""
    hit = _CFG_CACHE.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = (cfg, repr(sorted(cfg.to_dict().items())))
        _CFG_CACHE[id(cfg)] = hit
    return hit[1]


def _subwords(cfg: HardwareConfig) -> dict[str, int]:
    key = config_key(cfg)
    if key not in _SUBWORDS:
        _SUBWORDS[key] = {r.name: r.subwords for r in host_map(cfg).regions}
    return _SUBWORDS[key]


def host_regions(cfg: HardwareConfig, s: TileShape, load_weights: bool = True
                 ) -> dict[str, tuple[int, int]]:
    """Region words the host moves for one tile, as ``{region: (words, subwords per word)}``
    (host words = words x subwords), from the layouts of docs/host_interface.md: the cores
    when the tile loads them (``w1``: ``r*NC``, ``w2``/``w3``: ``ng*NS``, ``w4``: ``GO*r``,
    ``affine``: ``GO``), the input rows it streams (one per window row inside the layer and
    timestep, ``N1``-pixel rows of ``CW`` words), the residual rows (``T*Ho`` rows of
    ``Wo*GO`` words) and the output rows it reads (membranes and spikes, ``T*Ho`` rows each).
    A streamed G4 (``s.w4_ring``) moves ``GO*r`` words per output row, streamed G2/G3
    (``s.w23_ring``) ``ng*NS`` words each per MAC row, a streamed G1 (``s.w1_ring``) its whole
    core (transposed for the zero-skipping cluster 1, dense for the dense one) per window row
    sent, whether or not the tile loads its other cores. An early-start tile (``s.early_start``)
    moves the cores whose rings hold them whole once, like resident ones, when it loads them
    (:func:`gen.host_program.whole_rings`)."""
    g = TileGeometry.of_shape(cfg, s)
    sub = _subwords(cfg)
    out: dict[str, tuple[int, int]] = {}
    if load_weights:
        out["w1"] = (w1_depth(cfg, s.rank, s.in_channels, s.pack), sub["w1"])
        out["w2"] = (g.ng * g.ns, sub["w2"])
        out["w3"] = (g.ng * g.ns, sub["w3"])
        out["w4"] = (g.go * s.rank, sub["w4"])
        out["affine"] = (g.go, sub["affine"])
    whole = whole_rings(cfg, g, s)     # early start: rings that hold the whole core, moved once
    if whole["w23"] and not any(s.full(t) for t in range(s.timesteps)):
        out.pop("w2", None)            # no MAC row: G2/G3 never sent (no chunk needs them)
        out.pop("w3", None)
    if s.w4_ring and not whole["w4"]:
        out["w4"] = (s.timesteps * g.ho * g.go * s.rank, sub["w4"])
    if s.w23_ring and not whole["w23"]:       # streamed G2/G3: each MAC row's ng chunks of NS words
        mac_rows = s.height * sum(1 for t in range(s.timesteps) if s.full(t))
        out["w2"] = (mac_rows * g.ng * g.ns, sub["w2"])
        out["w3"] = (mac_rows * g.ng * g.ns, sub["w3"])
    rows_in = len(input_row_order(s.height, s.timesteps, s.zero_halo, s.order))
    if s.w1_ring and not whole["w1"]:  # streamed G1: its whole core per window row sent
        # (chunks of a rank group or a rank)
        out["w1"] = (rows_in * w1_depth(cfg, s.rank, s.in_channels, s.pack), sub["w1"])
    return _host_io(cfg, s, g, sub, out)


def _host_io(cfg: HardwareConfig, s: TileShape, g: TileGeometry, sub, out: dict) -> dict[str, tuple[int, int]]:
    """:func:`host_regions`' input, residual and output rows, added to ``out``."""
    rows_in = len(input_row_order(s.height, s.timesteps, s.zero_halo, s.order))
    out["spike_in"] = (rows_in * g.in_row_words, sub["spike_in"])
    rows_out = s.timesteps * g.ho
    if s.residual:
        out["residual"] = (rows_out * g.out_row_words, sub["residual"])
    out["membrane"] = (rows_out * g.out_row_words, sub["membrane"])
    out["trace"] = (rows_out * g.out_row_words, sub["trace"])      # spike, window bit, arg-max
    return out


def _host_words(regions: Mapping[str, tuple[int, int]], names: Sequence[str]) -> int:
    return sum(w * k for n, (w, k) in regions.items() if n in names)


def _window_ones(s: TileShape, window: np.ndarray) -> np.ndarray:
    """1-spikes per computed window pixel and timestep, ``[T, rows, cols]`` (zero-halo rows and
    columns are not sent to the accelerator and not counted)."""
    top, bottom, left, right = s.zero_halo
    w = np.asarray(window)
    return w[:, :, top:s.height + 2 - bottom, left:s.width + 2 - right].sum(axis=1)


@dataclass
class TileForward:
    """One tile's forward pass: the shape, every counter, the host regions and the variant."""
    shape: TileShape
    counters: dict[str, float]
    regions: dict[str, tuple[int, int]]
    zero_skip: bool = False

    @property
    def c1_compute_steps(self) -> float:
        """Cluster-1 steps that read a word of G1 weights (dense: every step on a computed
        pixel; zero skipping: every step on a 1-spike)."""
        return self.counters["w1_reads"]


def tile_forward(cfg: HardwareConfig, tile, mode: str, schedule: Sequence[bool] | None = None, *,
                 window: np.ndarray | None = None, density: float | None = None,
                 out_spikes: float | np.ndarray | None = None, residual: bool = False,
                 load_weights: bool = True) -> TileForward:
    """:func:`tile_forward_counters` with the shape and host regions alongside."""
    s = tile_shape(tile, mode, schedule, residual)
    if residual and not s.residual:       # a TileShape given with residual=True
        s = replace(s, residual=True)
    T, cin = s.timesteps, s.in_channels
    n1, _ = computed_pixels(s)
    ones_px = None
    if window is not None:
        window = np.asarray(window)
        want = (T, cin, s.height + 2, s.width + 2)
        if window.shape != want:
            raise UserError(f"window: expected shape {want}, got {window.shape}")
        ones_px = _window_ones(s, window)
        ones = int(ones_px.sum())
    elif density is not None:
        if not 0.0 <= density <= 1.0:
            raise UserError(f"density must be a fraction in [0, 1], got {density}")
        ones = density * T * n1 * cin
    else:
        ones = None
    regions = host_regions(cfg, s, load_weights)
    words_in = _host_words(regions, WEIGHT_REGIONS + INPUT_REGIONS)
    words_out = _host_words(regions, OUTPUT_REGIONS)
    spikes = None
    if out_spikes is not None:
        spikes = int(np.asarray(out_spikes).sum()) if np.ndim(out_spikes) else out_spikes
    zero_skip = cfg.arrangement.cluster1 == "zero_skip"
    lens = None
    if zero_skip:
        if window is not None:
            lens = zero_skip_row_lens(cfg, s, window)
        elif density is not None:
            lens = expected_row_lens(cfg, s, density)
        else:
            raise UserError("the zero-skipping cluster 1's cycles need the input window or a spike density")
    c = dict(cm.tile_counters(cfg, s, window_ones=ones, spikes_out=spikes, words_in=words_in,
                              words_out=words_out, c1_lens=lens))
    order = [k for k in COUNTER_NAMES if k in c] + [k for k in c if k not in COUNTER_NAMES]
    return TileForward(s, {k: c[k] for k in order}, regions, zero_skip)


def tile_forward_counters(cfg: HardwareConfig, tile, mode: str,
                          schedule: Sequence[bool] | None = None, *,
                          window: np.ndarray | None = None, density: float | None = None,
                          out_spikes: float | np.ndarray | None = None,
                          residual: bool = False, load_weights: bool = True) -> dict[str, float]:
    """Every RTL counter of one forward tile (``gen.hostmap.COUNTER_NAMES``).

    ``tile``: a :class:`gen.driver.Tile` (or a ``TileShape``, see :func:`tile_shape`);
    ``schedule``: HTT's full timesteps. The shape-determined counters are
    :func:`gen.cyclemodel.tile_counters`; ``c1_adds`` comes from ``window`` (the tile's input
    spikes ``[T, Cin, H+2, W+2]``, as ``gen.driver.Driver.window`` cuts it) or, as an
    expected value, from ``density`` (fraction of input spikes that are 1); ``spikes_out``
    from ``out_spikes`` (an array of output spikes or their count); without them these are
    left out. ``host_words_in/out`` are the words the driver's tile program moves
    (``load_weights``: the tile loads its cores). The arrangement is the configuration's
    (``cfg.arrangement``): with the zero-skipping cluster 1 the cycles need ``window`` (exact)
    or ``density`` (expected row lengths, :func:`expected_row_lens`).
    """
    return tile_forward(cfg, tile, mode, schedule, window=window, density=density,
                        out_spikes=out_spikes, residual=residual, load_weights=load_weights).counters


def _spad_psum_fraction(cfg: HardwareConfig, s: TileShape) -> dict[str, float]:
    """Fraction of the scratchpad reads/writes of clusters 2 and 3 that are partial sums (the
    rest are weights), from the cycle model's own access count (:func:`gen.cyclemodel.row_accesses`); the
    counters themselves come from :func:`gen.cyclemodel.tile_counters`."""
    g = TileGeometry.of_shape(cfg, s)
    a2 = cm.row_accesses(s.rank, g.Pk, g.Px, g.nbe2, g.chunk_blocks, g.chunk_steps)
    a3 = cm.row_accesses(s.rank, g.Pk, g.Px, g.nb, g.chunk_blocks, g.chunk_steps) if s.mode == "stt" else a2

    def frac(a, op):
        w, p = a[f"spad_w_{op}"], a[f"spad_p_{op}"]
        return p / (w + p) if w + p else 0.0
    return {"c2_rd": frac(a2, "rd"), "c2_wr": frac(a2, "wr"), "c3_rd": frac(a3, "rd"),
            "c3_wr": frac(a3, "wr")}


def add_scratchpad_counts(cfg: HardwareConfig, s: TileShape, c: Mapping[str, float], counts) -> None:
    """The scratchpad accesses of clusters 2/3 (``c2/c3_spad_reads/writes`` of ``c``, counters
    of a tile of shape ``s`` or of one of its timesteps): each is an access of all P PEs at
    once, of one Wb-bit weight or one Ab-bit partial sum per PE."""
    p, wb, acc = cfg.lanes, cfg.widths.weight, cfg.widths.accumulator
    fr = _spad_psum_fraction(cfg, replace(s, timesteps=1, schedule=(True,)))
    for cl in ("c2", "c3"):
        for op, key in (("read", "rd"), ("write", "wr")):
            n = c[f"{cl}_spad_{op}s"]
            f = fr[f"{cl}_{key}"]
            counts.add("scratchpad", op, wb, p * n * (1 - f))
            counts.add("scratchpad", op, acc, p * n * f)


def _glb(counts, memories, buffer: str, action: str, word_bits: int, n: float) -> None:
    """``n`` accesses of ``word_bits``-bit words to a global buffer: port accesses for words at
    least as wide as the port (``n * word_bits / port``), lane-enabled accesses of
    ``word_bits`` bits for narrower words (docs/energy_model.md, section 3)."""
    if n <= 0:
        return
    port = memories[buffer].width_bits
    if word_bits >= port:
        counts.add(f"glb.{buffer}", action, port, n * word_bits / port)
    else:
        counts.add(f"glb.{buffer}", action, word_bits, n)


def counters_to_counts(cfg: HardwareConfig, tf: TileForward, counts, memories) -> None:
    """Add the energy-model actions of one tile's forward counters to ``counts`` (a Counts).

    Compute: cluster 1's accumulates (``c1_adds``) and gated slots (``c1_slots - c1_adds``);
    the MACs of clusters 2-4; the adder lanes; affine and LIF per neuron update (and the
    residual add). PE registers ('scratchpad', per PE): the accumulator is read and written
    once per MAC of clusters 2-4 and once per cluster-1 step (the adder tree's sum of P
    channels; the zero-skipping cluster 1: per accumulate in each rank lane); the weight-chunk /
    partial-sum scratchpads of clusters 2/3 (``c2/c3_spad_*``) are accesses of all P PEs at
    once, P x Wb-bit weights or P x Ab-bit partial sums. Global buffers: every datapath word
    (weights P x Wb, affine P x (2Sb+Mb), spike words, line-buffer words P x A, residual and
    membrane words P x Mb, spike words P x 1) and the host's region accesses; cluster 1 writes
    one A-bit lane per q1 value. DRAM: every host word.
    """
    c, s = tf.counters, tf.shape
    w, p = cfg.widths, cfg.lanes
    wb, acc, act, mb = w.weight, w.accumulator, w.activation, w.membrane
    adds = c.get("c1_adds", 0.0)
    counts.add("spike_pe", "accumulate", 16, adds)
    counts.add("spike_pe", "slot", 16, max(0.0, c["c1_slots"] - adds))
    macs = c["c2_macs"] + c["c3_macs"] + c["c4_macs"]
    counts.add("mult_pe", "mac", wb, macs)
    acc1 = adds if tf.zero_skip else tf.c1_compute_steps    # zero skipping: per rank lane
    counts.add("scratchpad", "read", acc, macs + acc1)
    counts.add("scratchpad", "write", acc, macs + acc1)
    add_scratchpad_counts(cfg, s, c, counts)
    counts.add("adder", "add", 16, c["adds"])
    counts.add("lif", "update", 16, c["lif_updates"])
    counts.add("affine", "mac", 16, c["lif_updates"])
    if c["residual_reads"]:
        counts.add("adder", "add", 16, c["lif_updates"])       # residual add before the LIF
    # datapath accesses of the global buffers
    wword, qword, mword = p * wb, p * act, p * mb
    _glb(counts, memories, "weight", "read", wword,
         c["w1_reads"] + c["w2_reads"] + c["w3_reads"] + c["w4_reads"])
    _glb(counts, memories, "weight", "read", p * (2 * w.affine_scale + mb), c["affine_reads"])
    _glb(counts, memories, "spike_in", "read", cfg.spike_word_bits, c["spike_in_reads"])
    # one lane per q1 value (zero halos are never written: masked on reads); the zero-skipping
    # cluster 1 writes a pixel's rank group in one access, of its lanes
    q1_values = s.timesteps * computed_pixels(s)[0] * s.rank
    _glb(counts, memories, "interstage", "write", act, q1_values)
    _glb(counts, memories, "interstage", "write", qword, c["row2_writes"] + c["line4_writes"])
    _glb(counts, memories, "interstage", "read", qword,
         c["line1_reads"] + c["row2_reads"] + c["line4_reads"])
    _glb(counts, memories, "residual", "read", mword, c["residual_reads"])
    _glb(counts, memories, "state_out", "read", mword, c["membrane_reads"])
    _glb(counts, memories, "state_out", "write", mword, c["membrane_writes"])
    _glb(counts, memories, "state_out", "write", p, c["spikes_writes"])
    # the trace words (spike, window bit, arg-max per lane) into region trace, a backward
    # memory: priced as it where the model has the backward memories, as state_out otherwise
    trace_buffer = "trace" if "trace" in memories else "state_out"
    _glb(counts, memories, trace_buffer, "write", 4 * p, c.get("trace_writes", 0))
    # the host's side of the region words (writes of cores and input rows, reads of outputs)
    # DRAM moves the region words' bits: a host beat wider than a word carries that word alone
    # (with a 256-bit port a 32-bit spike word is one beat, not 256 bits of DRAM traffic)
    dram = {"read": 0, "write": 0}
    for name, (words, _) in tf.regions.items():
        region = cfg.regions[name] if name in cfg.regions else cfg.backward_regions[name]
        action = "read" if name in OUTPUT_REGIONS else "write"
        buffer = region.buffer if region.buffer in memories else (name if name in memories else "state_out")
        _glb(counts, memories, buffer, action, region.width_bits, words)
        dram["write" if name in OUTPUT_REGIONS else "read"] += words * region.width_bits
    counts.add("dram", "read", 1, dram["read"])
    counts.add("dram", "write", 1, dram["write"])
