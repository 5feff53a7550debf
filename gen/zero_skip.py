"""The zero-skipping cluster 1's arithmetic without Amaranth (``arrangement.cluster1 =
"zero_skip"``, gen/engines/cluster1_zero_skip.py): the transposed G1 layout the driver writes
and the engine reads, and the data-dependent steps the cycle model counts."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import HardwareConfig, ceil_div
from .geometry import e1_rows

__all__ = ["w1_words_zero_skip", "w1_depth", "w1_depth_zero_skip", "w1_chunk_words", "w1_row_chunks",
           "zero_skip_row_lens",
           "expected_event_steps", "expected_row_lens", "DEFAULT_SPIKE_DENSITY"]

#: input spike density of every layer unless told otherwise: the energy model's default
#: (model.counts.Sparsity: SATA's spike sparsity 0.9). ``gen.perf`` times the zero-skipping
#: cluster 1 at it and ``gen.driver.plan_layer`` chooses its tiles and lane packings for it.
DEFAULT_SPIKE_DENSITY = 0.1


def w1_depth(cfg: HardwareConfig, rank: int, in_channels: int, pack: int) -> int:
    """Words of the G1 core in region ``w1``: dense ``r * ceil(Cin / P)``; transposed
    ``ceil(r / Pk) * ceil(Cin / Px)``."""
    if cfg.arrangement.cluster1 == "zero_skip":
        return w1_depth_zero_skip(rank, in_channels, pack, cfg.lanes)
    return rank * ceil_div(in_channels, cfg.lanes)


def w1_chunk_words(cfg: HardwareConfig, in_channels: int, pack: int) -> int:
    """Words of one streamed G1 chunk (descriptor ``w1_ring > 0``): the zero-skipping cluster
    1's rank group of ``ceil(Cin / Px)`` words of the transposed layout, the dense one's rank
    of ``ceil(Cin / P)`` words."""
    if cfg.arrangement.cluster1 == "zero_skip":
        return ceil_div(in_channels, cfg.lanes >> pack)
    return ceil_div(in_channels, cfg.lanes)


def w1_row_chunks(cfg: HardwareConfig, rank: int, pack: int) -> int:
    """Streamed G1 chunks per window row inside the layer: the zero-skipping cluster 1's
    ``ceil(r / Pk)`` rank groups, the dense one's ``r`` ranks (each chunk is read for every
    pixel of the row before the next one's)."""
    if cfg.arrangement.cluster1 == "zero_skip":
        return ceil_div(rank, 1 << pack)
    return rank


def w1_depth_zero_skip(rank: int, in_channels: int, pack: int, lanes: int) -> int:
    """Words of the transposed G1 core: ``ceil(r / Pk)`` rank groups of ``ceil(Cin / Px)`` words."""
    pk = 1 << pack
    return ceil_div(rank, pk) * ceil_div(in_channels, lanes // pk)


def w1_words_zero_skip(w1: np.ndarray, pack: int, lanes: int) -> list[list[int]]:
    """The transposed G1 core ``w1[k, c]`` (``r x Cin``) as lists of ``lanes`` weights per word:
    word ``kg * ceil(Cin/Px) + c // Px``, lane ``(c mod Px) * Pk + j`` holds ``w1[kg*Pk + j, c]``
    (zero past ``r`` and ``Cin``), so that one read gives the ``Pk`` rank weights of one input
    channel, and a word holds as many weights as the dense layout's."""
    r, cin = w1.shape
    pk = 1 << pack
    px = lanes // pk
    ng, nw = ceil_div(r, pk), ceil_div(cin, px)
    t = np.zeros((ng * pk, nw * px), np.int64)
    t[:r, :cin] = w1
    # [kg, j, cw, sub] -> [kg, cw, sub, j]
    words = t.reshape(ng, pk, nw, px).transpose(0, 2, 3, 1).reshape(ng * nw, lanes)
    return [list(map(int, w)) for w in words]


def zero_skip_row_lens(cfg: HardwareConfig, s, window: np.ndarray) -> list[int]:
    """Steps of each window row ``(w, t)`` in cluster 1's order (gen.geometry.e1_rows) for the tile shape
    ``s`` (gen.cyclemodel.TileShape) and its input window ``[T, Cin, H+2, W+2]`` of 0/1: a row
    outside the layer one step; else, over its computed pixels (zero halo columns skipped),
    ``ceil(r / Pk)`` times the pixel's :func:`zero_skip_steps`."""
    rows = e1_rows(s.height, s.timesteps, s.order)
    win = np.asarray(window) != 0
    T, cin = win.shape[0], win.shape[1]
    sw = cfg.spike_word_bits
    nwords = ceil_div(cin, sw)
    padded = np.zeros((T, nwords * sw) + win.shape[2:], bool)
    padded[:, :cin] = win
    ones = padded.reshape(T, nwords, sw, *win.shape[2:]).sum(axis=2)        # [T, words, H+2, W+2]
    per_px = np.maximum(ones, 1).sum(axis=1)                                  # [T, H+2, W+2]
    top, bottom, left, right = s.zero_halo
    ng = ceil_div(s.rank, 1 << s.pack)
    c0, c1 = int(bool(left)), s.width + 2 - int(bool(right))
    out = []
    for w, t in rows:
        if (w == 0 and top) or (w == s.height + 1 and bottom):
            out.append(1)
        else:
            out.append(ng * int(per_px[t, w, c0:c1].sum()))
    return out


def expected_event_steps(cin: int, density: float) -> float:
    """Expected ``max(ones, 1)`` over ``cin`` input spikes, each 1 with probability
    ``density`` (independent): the zero-skipping cluster 1's steps per spike word of ``cin``
    channels (an all-zero word still takes one step)."""
    return cin * density + (1.0 - density) ** cin


def expected_row_lens(cfg: HardwareConfig, s, density: float) -> list[float]:
    """Expected row lengths of the zero-skipping cluster 1 (in ``gen.geometry.e1_rows``
    order) of the tile shape ``s`` (gen.cyclemodel.TileShape) when every input spike is 1 with
    probability ``density``, independently: per
    computed pixel and rank group, :func:`expected_event_steps` of each spike word; a row
    outside the layer one step. The cycle model schedules these expected lengths (an
    approximation of the expected cycles: the schedule is not linear in them)."""
    return list(_expected_row_lens(cfg.spike_word_bits, s.in_channels, s.rank, s.pack, s.height,
                                   s.width, s.timesteps, s.order, tuple(bool(z) for z in s.zero_halo),
                                   float(density)))


@lru_cache(maxsize=4096)
def _expected_row_lens(sw: int, in_channels: int, rank: int, pack: int, height: int, width: int,
                       timesteps: int, order: int, zero_halo: tuple[bool, ...],
                       density: float) -> tuple[float, ...]:
    # cached: the planner's estimate asks for them once per candidate tiling
    words = [min(sw, in_channels - c0) for c0 in range(0, in_channels, sw)]
    per_px = sum(expected_event_steps(n, density) for n in words)
    top, bottom, left, right = zero_halo
    ng = ceil_div(rank, 1 << pack)
    row = (width + 2 - int(left) - int(right)) * ng * per_px
    return tuple(1 if (w == 0 and top) or (w == height + 1 and bottom) else row
                 for w, _ in e1_rows(height, timesteps, order))
