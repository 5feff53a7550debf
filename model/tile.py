"""Per-tile forward counters of the proposed accelerator, computed from the tile's shape.

:func:`tile_forward_counters` predicts every performance counter of the RTL
(``gen.hostmap.COUNTER_NAMES``) for one tile of a TT layer, from the tile shape, the mode and
HTT schedule, and (for the data-dependent counters) the tile's input window and output
spikes. It is written from the counters' documented meaning (docs/host_interface.md,
section Counters) and the datapath's schedule (docs/numerics.md), not from the RTL's code:
the test in tests/model/test_rtl_agreement.py compares it with counters measured in
simulation. The network-level energy model (:mod:`model.proposed`) sums these same counters
over a layer's tile plan (:func:`gen.driver.plan_layer`), so forward energy and RTL counters
share one definition.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from gen.config import HardwareConfig

__all__ = ["tile_forward_counters", "TileShape", "expected_window_ones"]


class TileShape:
    """The shape of one tile (a ``gen.driver.Tile`` or anything with the same fields)."""

    def __init__(self, height: int, width: int, in_channels: int, rank: int, out_channels: int,
                 timesteps: int, pool: bool, zero_halo: Sequence[bool] = (False,) * 4):
        self.height, self.width = int(height), int(width)
        self.in_channels, self.rank, self.out_channels = int(in_channels), int(rank), int(out_channels)
        self.timesteps, self.pool = int(timesteps), bool(pool)
        for what, v in vars(self).items():
            if what != "pool" and v < 1:
                raise ValueError(f"tile {what} must be >= 1, got {v}")
        zh = tuple(bool(z) for z in zero_halo)
        if len(zh) != 4:
            raise ValueError(f"zero_halo: expected 4 flags (top, bottom, left, right), got {zero_halo!r}")
        #: window edges outside the layer (known zero): cluster 1 skips their pixels
        self.zero_halo = zh
        if self.pool and (self.height % 2 or self.width % 2):
            raise ValueError(f"a pooling tile needs even height and width, got "
                             f"{self.height}x{self.width}")

    @classmethod
    def of(cls, tile) -> "TileShape":
        return cls(tile.height, tile.width, tile.in_channels, tile.rank, tile.out_channels,
                   tile.timesteps, tile.pool, getattr(tile, "zero_halo", (False,) * 4))

    def row_pixels(self) -> list[tuple[int, int]]:
        """Per window row: (pixels cluster 1 computes, known-zero halo pixels it skips)."""
        top, bottom, left, right = self.zero_halo
        ww = self.width + 2
        inner = ww - int(left) - int(right)
        out = []
        for j in range(self.height + 2):
            if (j == 0 and top) or (j == self.height + 1 and bottom):
                out.append((0, ww))
            else:
                out.append((inner, ww - inner))
        return out


def _schedule(mode: str, schedule: Sequence[bool] | None, timesteps: int) -> list[bool]:
    if mode not in ("stt", "ptt", "htt"):
        raise ValueError(f"mode must be 'stt', 'ptt' or 'htt', got {mode!r}")
    if mode != "htt":
        return [True] * timesteps
    from sw.arch import validate_schedule
    return list(validate_schedule(schedule, timesteps))


def expected_window_ones(shape: TileShape, density: float, full: bool) -> float:
    """Expected number of 1-spikes cluster 1 reads in one timestep (all channels)."""
    return density * _g1_positions(shape, full) * shape.in_channels


def _g1_positions(shape: TileShape, full: bool = True) -> int:
    """Window pixels where cluster 1 computes G1, at every timestep (HTT's reduced timesteps
    included: the bypass reads the centre of the same line buffer); halo pixels outside the
    layer (``zero_halo``) are skipped."""
    return sum(c for c, _ in shape.row_pixels())


def _skipped_positions(shape: TileShape) -> int:
    return sum(z for _, z in shape.row_pixels())


def _line_rows(cfg: HardwareConfig, name: str, width: int) -> int:
    """Rows a line buffer region holds (from the region's depth in the configuration)."""
    return max(1, cfg.regions[name].depth // (width * cfg.max_rank_groups))


#: Handshake latencies of the pipeline (docs/architecture.md, "Pipeline and stalls"): a
#: producer's row is visible to its consumer 3 cycles after the row's last issue; a consumer's
#: release is visible the cycle after its last issue; after cluster 4's last issue the result
#: still passes memory read, PE, affine/LIF and the state write before ``done``.
ROW_VISIBLE = 3
RELEASE_VISIBLE = 1
PIPE_TAIL = 5


def pipeline_timing(cfg: HardwareConfig, shape: TileShape, mode: str, sched: Sequence[bool],
                    c1_density: float | None = None,
                    stt_chain: str = "pipelined") -> dict[str, float]:
    """Cycles and stalls of one tile from a row-level model of the pipeline.

    Three engines issue one step per cycle and check their inputs only at a row start
    (docs/architecture.md): E1 (cluster 1) writes window rows of q1 (``Cin*ng`` steps per
    computed pixel, ``ng`` per skipped zero-halo pixel; with ``c1_density`` only the 1-spikes
    take steps: the paper's event-driven variant) into the ``line1`` ring, and needs the row four back released by E23; E23
    (clusters 2/3 and the adder) writes an output row (PTT/HTT full: ``W*3r*ng``; HTT reduced:
    a ``W*ng`` copy; STT: ``(W+3)*3r*ng``, G3 trailing G2 by one column) once window rows
    ``y..y+2`` are visible and ``line4`` has a free row; E4 (cluster 4, then affine and LIF)
    consumes one row (two with pooling, ``Wo*GO*sub*r`` steps). Timesteps follow each other
    through the same buffers. The line-buffer depths come from the configuration's regions.

    ``stt_chain='sequential'`` models the paper's cluster arrangement, which has no G2 -> G3
    path: STT's G3 rows of a timestep start when G2 has finished all rows of the tile (its
    output waits in the interstage buffer), and G2 of the next timestep waits for G3.
    """
    if stt_chain not in ("pipelined", "sequential"):
        raise ValueError(f"stt_chain must be 'pipelined' or 'sequential', got {stt_chain!r}")
    p = cfg.lanes
    h, w, cin, r, co = shape.height, shape.width, shape.in_channels, shape.rank, shape.out_channels
    ng, go = math.ceil(r / p), math.ceil(co / p)
    dens1 = 1.0 if c1_density is None else c1_density
    row_len1 = [(comp * cin * dens1 + skip) * ng for comp, skip in shape.row_pixels()]
    sub, step4 = (4, 2) if shape.pool else (1, 1)
    wo = w // 2 if shape.pool else w
    e4_len = wo * go * sub * r
    n1 = _line_rows(cfg, "line1", cfg.max_window_width)
    n4 = _line_rows(cfg, "line4", cfg.limits.max_tile_width)
    T = len(sched)
    # E23 work items, in issue order: (timestep, output row, length, kind)
    items: list[tuple[int, int, float, str]] = []
    for t, full in enumerate(sched):
        if mode == "stt" and stt_chain == "sequential":
            items += [(t, y, (w + 2) * 3 * r * ng, "g2") for y in range(h)]
            items += [(t, y, w * 3 * r * ng, "g3") for y in range(h)]
        elif mode == "stt":
            items += [(t, y, (w + 3) * 3 * r * ng, "row") for y in range(h)]
        else:
            items += [(t, y, (w * 3 * r * ng) if full else w * ng, "row") for y in range(h)]
    n_rows1 = T * (h + 2)
    e1_end: list[float] = []
    release1: dict[int, float] = {}    # window row index -> time its slot is free again
    e23_end: dict[tuple[int, int], float] = {}   # (t, y) -> end of the row that writes line4
    line4_row: dict[tuple[int, int], int] = {}   # (t, y) -> line4 write order
    write_order: list[tuple[int, int]] = []
    e4_end: list[float] = []
    e4_consumed: dict[int, float] = {}           # line4 write order -> release time
    c1_stall = c23_stall = c4_stall = 0.0
    t1 = t23 = t4 = 0.0
    busy23: list[tuple[float, float]] = []
    k1 = 0          # next window row E1 produces
    i23 = 0         # next E23 item
    n_writes = 0    # rows written to line4 so far
    i4 = 0          # next E4 row (in line4 write order, step4 rows at a time)
    n4_rows = T * h

    def run_e1_until(k: int) -> None:
        nonlocal k1, t1, c1_stall
        while k1 <= k:
            start = t1
            if k1 >= n1:
                if (k1 - n1) not in release1:
                    return
                start = max(start, release1[k1 - n1])
            c1_stall += start - t1
            t1 = start + row_len1[k1 % (h + 2)]
            e1_end.append(t1)
            k1 += 1

    progress = True
    while progress:
        progress = False
        # E1 runs as far as line1 allows
        before = k1
        run_e1_until(n_rows1 - 1)
        progress |= k1 != before
        # E23: next item if its inputs are visible and it has space
        while i23 < len(items):
            t, y, length, kind = items[i23]
            base = t * (h + 2)
            need_rows = [] if kind == "g3" else [base + y, base + y + 1, base + y + 2]
            if any(k >= len(e1_end) for k in need_rows):
                break
            ready = max([e1_end[k] - 1 + ROW_VISIBLE for k in need_rows], default=0.0)
            if kind == "g3":
                ready = max(ready, e23_end.get(("g2", t, h - 1), 0.0))
            writes = kind != "g2"
            space = 0.0
            if writes and n_writes >= n4:
                if (n_writes - n4) not in e4_consumed:
                    break
                space = e4_consumed[n_writes - n4]
            start = max(t23, ready, space)
            if kind == "g2" and y == 0 and t > 0 and mode == "stt" and stt_chain == "sequential":
                start = max(start, e23_end.get((t - 1, h - 1), 0.0))
            c23_stall += start - t23
            t23 = start + length
            busy23.append((start, t23))
            if kind == "g2":
                e23_end[("g2", t, y)] = t23
                release_y = y
            else:
                e23_end[(t, y)] = t23
                line4_row[(t, y)] = n_writes
                write_order.append((t, y))
                n_writes += 1
                release_y = y if kind == "row" else None
            if release_y is not None:
                # window row y is no longer needed; the last output row releases three
                rel = t23 - 1 + RELEASE_VISIBLE
                js = [release_y] if release_y < h - 1 else [h - 1, h, h + 1]
                for j in js:
                    release1[base + j] = rel
            i23 += 1
            progress = True
        # E4: consumes step4 rows of line4
        while i4 < n4_rows and i4 + step4 <= n_writes:
            rows = write_order[i4:i4 + step4]
            ready = max(e23_end[rw] - 1 + ROW_VISIBLE for rw in rows)
            start = max(t4, ready)
            c4_stall += start - t4
            t4 = start + e4_len
            e4_end.append(t4)
            for j in range(i4, i4 + step4):
                e4_consumed[j] = t4 - 1 + RELEASE_VISIBLE
            i4 += step4
            progress = True
    if i4 < n4_rows or k1 < n_rows1:
        raise AssertionError("pipeline model deadlocked")  # pragma: no cover
    busy = sum(e - s for s, e in busy23)
    return {"cycles": t4 - 1 + PIPE_TAIL, "c1_stall": c1_stall, "c23_stall": c23_stall,
            "c4_stall": c4_stall, "c23_busy": busy}


def tile_forward_counters(cfg: HardwareConfig, tile, mode: str,
                          schedule: Sequence[bool] | None = None, *,
                          window: np.ndarray | None = None, density: float | None = None,
                          out_spikes: float | np.ndarray | None = None,
                          residual: bool = False, load_weights: bool = True,
                          event_driven: bool = False,
                          stt_chain: str = "pipelined") -> dict[str, float]:
    """Every RTL counter of one forward tile.

    ``tile``: a :class:`gen.driver.Tile` (or :class:`TileShape`). Data-dependent counters
    (``c1_adds``, ``spikes_out``) come from ``window`` (the tile's input spikes
    ``[T, Cin, H+2, W+2]``) and ``out_spikes`` (an array of output spikes or their count), or
    as expected values from ``density`` (fraction of input spikes that are 1); without either
    they are omitted. ``load_weights``: the tile (re)loads its weights through the host.
    """
    s = tile if isinstance(tile, TileShape) else TileShape.of(tile)
    sched = _schedule(mode, schedule, s.timesteps)
    p = cfg.lanes
    h, w, cin, r, co, t_steps = s.height, s.width, s.in_channels, s.rank, s.out_channels, s.timesteps
    ng, go = math.ceil(r / p), math.ceil(co / p)
    ho, wo = (h // 2, w // 2) if s.pool else (h, w)
    sw = cfg.spike_word_bits
    cw = math.ceil(cin / sw)
    hb = cfg.widths.host_data
    if window is not None:
        window = np.asarray(window)
        if window.shape != (t_steps, cin, h + 2, w + 2):
            raise ValueError(f"window: expected shape {(t_steps, cin, h + 2, w + 2)}, got {window.shape}")

    c = {k: 0.0 for k in ("c1_busy", "c1_slots", "c1_adds", "c23_busy", "c2_macs", "c3_macs",
                          "c4_busy", "c4_macs", "adder_busy", "adds", "lif_busy", "lif_updates",
                          "w1_reads", "w2_reads", "w3_reads", "w4_reads", "affine_reads",
                          "spike_in_reads", "line1_reads", "line1_writes", "row2_reads",
                          "row2_writes", "line4_reads", "line4_writes", "residual_reads",
                          "membrane_reads", "membrane_writes", "spikes_writes")}
    skipped = _skipped_positions(s)
    for t, full in enumerate(sched):
        pos1 = _g1_positions(s, full)
        c1_steps = pos1 * cin * ng * (density if event_driven else 1.0)
        # a skipped (known-zero) halo pixel costs one step per rank group: its zero q1 word
        c["c1_busy"] += c1_steps + skipped * ng
        c["c1_slots"] += c1_steps * r / ng
        c["w1_reads"] += c1_steps
        c["spike_in_reads"] += pos1 * cw * ng
        c["line1_writes"] += (pos1 + skipped) * ng
        if window is not None:
            c["c1_adds"] += float(window[t].sum()) * r
        elif density is not None:
            c["c1_adds"] += expected_window_ones(s, density, full) * r
        if full:
            cols2 = w + 2 if mode == "stt" else w
            c["c2_macs"] += h * cols2 * 3 * r * r
            c["c3_macs"] += h * w * 3 * r * r
            c["w2_reads"] += h * cols2 * 3 * r * ng
            c["w3_reads"] += h * w * 3 * r * ng
            if mode == "stt":
                # G2 over the halo columns, G3 from row2; the paper's arrangement runs them
                # one after the other, the RTL as one engine with G3 a column behind G2
                row2, row3 = cols2 * 3 * r * ng, w * 3 * r * ng
                if stt_chain == "sequential":
                    busy23 = h * (row2 + row3)
                else:  # one engine, G3 trailing G2 by a column: (W+3)*3r*ng per row
                    busy23 = h * (w + 3) * 3 * r * ng
                c["line1_reads"] += h * cols2 * 3 * r * ng
                c["row2_writes"] += h * cols2 * ng
                c["row2_reads"] += h * w * 3 * r * ng
            else:
                busy23 = h * w * 3 * r * ng
                c["line1_reads"] += h * w * 3 * r * ng * 2
                c["adds"] += h * w * r
                c["adder_busy"] += h * w * ng
        else:
            busy23 = h * w * ng  # HTT bypass: one copy step per position and rank group
            c["line1_reads"] += h * w * ng
        c["c23_busy"] += busy23
        c["line4_writes"] += h * w * ng
        c["c4_busy"] += h * w * r * go
        c["c4_macs"] += h * w * r * co
        c["w4_reads"] += h * w * r * go
        c["line4_reads"] += h * w * r * go
        c["lif_busy"] += ho * wo * go
        c["lif_updates"] += ho * wo * co
        c["affine_reads"] += ho * wo * go
        c["membrane_writes"] += ho * wo * go
        if t > 0:  # the LIF reads u[t-1] back from the membrane region
            c["membrane_reads"] += ho * wo * go
        c["spikes_writes"] += ho * wo * go
        if residual:
            c["residual_reads"] += ho * wo * go
    # host traffic (driver.TileProgram.words_in / words_out): sub-words of host_data bits
    def sub(bits: int) -> int:
        return math.ceil(bits / hb)
    wword = sub(p * cfg.widths.weight)
    words_in = t_steps * (h + 2) * (w + 2) * cw * sub(sw)
    if load_weights:
        words_in += (cin * ng + 2 * 3 * r * ng + r * go) * wword
        words_in += go * sub(p * (2 * cfg.widths.affine_scale + cfg.widths.membrane))
    if residual:
        words_in += t_steps * ho * wo * go * sub(p * cfg.widths.membrane)
    n_out = t_steps * ho * wo * go
    words_out = n_out * (sub(p * cfg.widths.membrane) + sub(p))
    c["host_words_in"] = float(words_in)
    c["host_words_out"] = float(words_out)
    if out_spikes is not None:
        c["spikes_out"] = float(np.asarray(out_spikes).sum()) if np.ndim(out_spikes) else float(out_spikes)
    elif window is None and density is None:
        c.pop("c1_adds")
    timing = pipeline_timing(cfg, s, mode, sched, density if event_driven else None, stt_chain)
    c["cycles"] = timing["cycles"]
    c["c1_stall"] = timing["c1_stall"]
    c["c23_stall"] = timing["c23_stall"]
    c["c4_stall"] = timing["c4_stall"]
    if window is None and density is None:
        c.pop("spikes_out", None)
    return c


def counters_to_counts(cfg: HardwareConfig, c: Mapping[str, float], counts, memories) -> None:
    """Add the energy-model actions of one tile's counters to ``counts`` (a Counts)."""
    wb, ab = cfg.widths.weight, cfg.widths.accumulator
    bw = lambda name: memories[name].width_bits  # noqa: E731
    adds = c.get("c1_adds", 0.0)
    counts.add("spike_pe", "accumulate", 16, adds)
    counts.add("spike_pe", "slot", 16, max(0.0, c["c1_slots"] - adds))
    macs = c["c2_macs"] + c["c3_macs"] + c["c4_macs"]
    counts.add("mult_pe", "mac", wb, macs)
    counts.add("scratchpad", "read", ab, macs + adds)
    counts.add("scratchpad", "write", ab, macs + adds)
    counts.add("adder", "add", 16, c["adds"])
    counts.add("lif", "update", 16, c["lif_updates"])
    for k in ("w1_reads", "w2_reads", "w3_reads", "w4_reads", "affine_reads"):
        counts.add("glb.weight", "read", bw("weight"), c[k])
    counts.add("glb.spike_in", "read", bw("spike_in"), c["spike_in_reads"])
    lr = c["line1_reads"] + c["row2_reads"] + c["line4_reads"]
    lw = c["line1_writes"] + c["row2_writes"] + c["line4_writes"]
    counts.add("glb.interstage", "read", bw("interstage"), lr)
    counts.add("glb.interstage", "write", bw("interstage"), lw)
    counts.add("glb.residual", "read", bw("residual"), c["residual_reads"])
    # state_out words are P x (Mb + 1) bits; the buffer port is narrower: count port accesses
    lane_bits = cfg.lanes * (cfg.widths.membrane + 1)
    counts.add("glb.state_out", "write", bw("state_out"),
               c["membrane_writes"] * lane_bits / bw("state_out"))
    counts.add("glb.state_out", "read", bw("state_out"),
               c["membrane_writes"] * lane_bits / bw("state_out"))
    hb = cfg.widths.host_data
    counts.add("dram", "read", 1, c["host_words_in"] * hb)
    counts.add("dram", "write", 1, c["host_words_out"] * hb)
