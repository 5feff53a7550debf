"""Exact counter and cycle model of one tile (pure Python, no Amaranth).

:func:`tile_counters` returns every performance counter of docs/host_interface.md as a
function of the tile's shape, mode and schedule (and, for ``c1_adds`` and ``spikes_out``,
of the data). The tests check it against the RTL's own counters in amaranth.sim, so the
energy model (model/) and ``gen.perf`` can use it for layers far too large to simulate.

Timing: each engine issues one step per cycle; an engine starts a row only when its input
rows are written and its output slots free (docs/architecture.md, "Pipeline and stalls").
The model replays exactly that row-level handshake.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Sequence

from .config import LINE1_ROWS, LINE4_ROWS, HardwareConfig, ceil_div

__all__ = ["TileShape", "tile_counters", "tile_timing", "ideal_cycles", "PIPE_TAIL"]

#: Cycles from E4's last issue to ``done``: read, PE, pool/affine register, write, done.
PIPE_TAIL = 5
#: Cycles from a row's last issue until its rows-written count is visible to the consumer.
ROW_VISIBLE = 3


@dataclass(frozen=True)
class TileShape:
    """What the counters depend on: the tile's descriptor."""
    in_channels: int
    rank: int
    out_channels: int
    height: int
    width: int
    timesteps: int
    mode: str                      # "stt" | "ptt" | "htt"
    schedule: tuple[bool, ...]     # full timesteps (all True unless HTT)
    pool: bool = False
    residual: bool = False
    zero_halo: tuple[bool, bool, bool, bool] = (False, False, False, False)  # top, bottom, left, right

    @classmethod
    def of(cls, qlayer, tile) -> "TileShape":
        """From a ``sw.qlayer.QuantTTLayer`` and a ``gen.driver.Tile``."""
        return cls(tile.in_channels, tile.rank, tile.out_channels, tile.height, tile.width,
                   tile.timesteps, qlayer.mode, tuple(qlayer.full_timesteps(tile.timesteps)),
                   qlayer.pool, qlayer.residual, tuple(tile.zero_halo))

    def window_rows(self) -> list[tuple[int, int]]:
        """Per window row: (pixels computed by cluster 1, zero-halo pixels skipped)."""
        top, bottom, left, right = self.zero_halo
        ww = self.width + 2
        zcols = int(left) + int(right)
        rows = []
        for y in range(self.height + 2):
            if (y == 0 and top) or (y == self.height + 1 and bottom):
                rows.append((0, ww))
            else:
                rows.append((ww - zcols, zcols))
        return rows


def _row_len23(s: TileShape, p: int, t: int) -> int:
    ng = ceil_div(s.rank, p)
    if s.mode == "htt" and not s.schedule[t]:
        return s.width * ng                       # bypass copy: one step per (pixel, group)
    if s.mode == "stt":
        return (s.width + 3) * ng * 3 * s.rank    # cluster 3 trails cluster 2 by 3 columns
    return s.width * ng * 3 * s.rank


def tile_timing(cfg: HardwareConfig, s: TileShape) -> dict[str, int]:
    """Exact cycles of one tile: ``cycles`` (the counter), busy and stall cycles per engine."""
    p = cfg.lanes
    T, H, W = s.timesteps, s.height, s.width
    hw = H + 2
    ng, ngo = ceil_div(s.rank, p), ceil_div(s.out_channels, p)
    ho, wo = (H // 2, W // 2) if s.pool else (H, W)
    step = 2 if s.pool else 1
    row_l1 = [(nz * s.in_channels + z) * ng for nz, z in s.window_rows()]
    l4 = wo * ngo * (4 if s.pool else 1) * s.rank
    n1, n23, n4 = T * hw, T * H, T * ho

    def rel1_after(q: int) -> int:           # rows of line1 released once E23 row q issued
        t, y = divmod(q, H)
        return (t + 1) * hw if y == H - 1 else t * hw + y + 1

    sys.setrecursionlimit(max(10_000, 10 * (n1 + n23 + n4)))

    @functools.cache
    def s1(r: int) -> int:                   # first issue cycle of E1 row r
        start = 0 if r == 0 else s1(r - 1) + row_l1[(r - 1) % hw]
        if r >= LINE1_ROWS:
            q = next(q for q in range(n23) if rel1_after(q) >= r - LINE1_ROWS + 1)
            start = max(start, s23(q) + _row_len23(s, p, q // H))
        return start

    @functools.cache
    def s23(q: int) -> int:
        t, y = divmod(q, H)
        start = 0 if q == 0 else s23(q - 1) + _row_len23(s, p, (q - 1) // H)
        start = max(start, s1(t * hw + y + 2) + row_l1[y + 2] - 1 + ROW_VISIBLE)
        if q >= LINE4_ROWS:
            u = next(u for u in range(n4) if (u + 1) * step >= q - LINE4_ROWS + 1)
            start = max(start, s4(u) + l4)
        return start

    @functools.cache
    def s4(u: int) -> int:
        start = 0 if u == 0 else s4(u - 1) + l4
        q = (u + 1) * step - 1
        return max(start, s23(q) + _row_len23(s, p, q // H) - 1 + ROW_VISIBLE)

    # evaluate in dependency-friendly order to keep the recursion shallow
    for u in range(n4):
        s4(u)
    busy1 = T * sum(row_l1)
    busy23 = sum(_row_len23(s, p, q // H) for q in range(n23))
    busy4 = n4 * l4
    end1 = s1(n1 - 1) + row_l1[hw - 1]
    end23 = s23(n23 - 1) + _row_len23(s, p, T - 1)
    end4 = s4(n4 - 1) + l4
    return {"cycles": end4 - 1 + PIPE_TAIL,
            "c1_busy": busy1, "c1_stall": end1 - busy1,
            "c23_busy": busy23, "c23_stall": end23 - busy23,
            "c4_busy": busy4, "c4_stall": end4 - busy4}


def tile_counters(cfg: HardwareConfig, s: TileShape, window_ones: int | None = None,
                  spikes_out: int | None = None, words_in: int | None = None,
                  words_out: int | None = None) -> dict[str, int]:
    """Every counter of one tile. ``window_ones`` (number of 1s in the input window, all
    timesteps) gives ``c1_adds``; ``spikes_out``, ``words_in``/``words_out`` (from
    :class:`gen.driver.TileProgram`) are data-dependent and passed through. Missing
    data-dependent values are left out of the result."""
    p, sw = cfg.lanes, cfg.spike_word_bits
    T, H, W, r = s.timesteps, s.height, s.width, s.rank
    hw, ww = H + 2, W + 2
    ng, ngo, cw = ceil_div(r, p), ceil_div(s.out_channels, p), ceil_div(s.in_channels, sw)
    ho, wo = (H // 2, W // 2) if s.pool else (H, W)
    sub = 4 if s.pool else 1
    n_stt = T if s.mode == "stt" else 0
    n_copy = sum(1 for t in range(T) if s.mode == "htt" and not s.schedule[t])
    n_ptt = T - n_stt - n_copy
    taps = 3 * r
    computed = sum(nz for nz, _ in s.window_rows())      # window pixels cluster 1 computes
    c = {
        "c1_slots": T * computed * s.in_channels * r,
        "c2_macs": n_stt * H * ww * taps * r + n_ptt * H * W * taps * r,
        "c3_macs": (n_stt + n_ptt) * H * W * taps * r,
        "c4_macs": T * ho * wo * sub * s.out_channels * r,
        "adder_busy": n_ptt * H * W * ng,
        "adds": n_ptt * H * W * r,
        "lif_busy": T * ho * wo * ngo,
        "lif_updates": T * ho * wo * s.out_channels,
        "w1_reads": T * computed * ng * s.in_channels,
        "w2_reads": n_stt * H * ww * ng * taps + n_ptt * H * W * ng * taps,
        "w3_reads": (n_stt + n_ptt) * H * W * ng * taps,
        "w4_reads": T * ho * wo * ngo * sub * r,
        "affine_reads": T * ho * wo * ngo,
        "spike_in_reads": T * computed * ng * cw,
        "line1_reads": n_stt * H * ww * ng * taps + 2 * n_ptt * H * W * ng * taps + n_copy * H * W * ng,
        "line1_writes": T * hw * ww * ng,
        "row2_reads": n_stt * H * W * ng * taps,
        "row2_writes": n_stt * H * ww * ng,
        "line4_reads": T * ho * wo * ngo * sub * r,
        "line4_writes": T * H * W * ng,
        "residual_reads": T * ho * wo * ngo if s.residual else 0,
        "membrane_reads": (T - 1) * ho * wo * ngo,
        "membrane_writes": T * ho * wo * ngo,
        "spikes_writes": T * ho * wo * ngo,
    }
    c.update(tile_timing(cfg, s))
    if window_ones is not None:
        c["c1_adds"] = window_ones * r
    if spikes_out is not None:
        c["spikes_out"] = spikes_out
    if words_in is not None:
        c["host_words_in"] = words_in
    if words_out is not None:
        c["host_words_out"] = words_out
    return c


def ideal_cycles(cfg: HardwareConfig, in_channels: int, rank: int, out_channels: int,
                 height: int, width: int, schedule: Sequence[bool], mode: str) -> dict[str, float]:
    """The ideal bound of a whole layer (issue 4, section 5): each cluster's operations
    (no halo, no padding of PEs) divided by its PEs; the bound is the busiest cluster's.
    ``height, width`` at input resolution (before pooling)."""
    p = cfg.lanes
    hw_ = height * width
    full = sum(1 for f in schedule if f) if mode == "htt" else len(schedule)
    T = len(schedule)
    ops = {
        "cluster1": T * hw_ * in_channels * rank,
        "cluster2": full * hw_ * 3 * rank * rank,
        "cluster3": full * hw_ * 3 * rank * rank,
        "cluster4": T * hw_ * rank * out_channels,
    }
    per = {k: v / p for k, v in ops.items()}
    busiest = max(per, key=per.get)
    return {"bound": per[busiest], "busiest": busiest, **{f"{k}_ops": v for k, v in ops.items()}}
