"""The sizes the datapath derives from a tile's descriptor, defined once.

:class:`TileGeometry` is what the tiling driver (:mod:`gen.driver`), the cycle and counter
model (:mod:`gen.cyclemodel`) and the energy model (:mod:`model.tile`) use; the RTL
(:mod:`gen.tilegeo`) computes the same quantities in its geometry registers (docs/host_interface.md,
"Regions" and "Counters", has the notation). Pure Python, no Amaranth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from .config import HardwareConfig, ceil_div

#: The order in which clusters 2/3 visit the three taps of a rank block: the centre tap first,
#: so that its line-buffer word (the centre row / centre block) is read once per block. The
#: RTL (gen.top), the driver's weight layout and the cycle model all follow it.
TAP_ORDER = (1, 0, 2)

__all__ = ["TileGeometry", "TAP_ORDER", "window_pixels", "e1_rows"]


def window_pixels(height: int, width: int, zero_halo: Sequence[bool]) -> tuple[int, int]:
    """``(N1, Z1)``: the window pixels cluster 1 computes per timestep, and the zero-halo
    pixels it skips (rows and columns of the window outside the layer)."""
    top, bottom, left, right = (bool(z) for z in zero_halo)
    n1 = (height + 2 - int(top) - int(bottom)) * (width + 2 - int(left) - int(right))
    return n1, (height + 2) * (width + 2) - n1


@dataclass(frozen=True)
class TileGeometry:
    """Derived sizes of one tile (names as in docs/host_interface.md)."""
    P: int                # lanes per cluster
    pk: int               # log2 Pk (descriptor ``pack``)
    ng: int               # rank groups of Pk channels
    nb: int               # column blocks of Px columns
    rw1: int              # words of a line1 / row2 row (nb + 2 blocks)
    rw4: int              # words of a line4 row
    ncc: int              # P-channel chunks of the input channels (NC)
    cw: int               # spike words per pixel (CW)
    ns: int               # weight words per output rank group (w2/w3, NS)
    go: int               # output groups of P channels (GO)
    ho: int
    wo: int
    sub: int              # pool sub-pixels per output (4 or 1)
    r3: int               # reduction steps of clusters 2/3 per output (3 r)
    n1: int               # window pixels cluster 1 computes per timestep (N1)
    z1: int               # window pixels it writes as zero (zero halo, Z1)
    in_row_words: int     # words of one input row (computed pixels of a row x CW)
    out_row_words: int    # words of one output/residual row
    nbe2: int             # blocks cluster 2 computes per row (STT: + the halo blocks it needs)
    cols2: int            # columns cluster 2 computes per row (STT: + non-zero halo columns)
    chunk_blocks: int     # blocks sharing one weight chunk (scratchpad partial sums; 1: none)
    chunk_steps: int      # reduction steps per weight chunk (scratchpad weights)

    @property
    def Pk(self) -> int:
        return 1 << self.pk

    @property
    def Px(self) -> int:
        return self.P >> self.pk

    def lif_read_back_rows(self, order: int) -> int:
        """How many output rows before the current one the LIF wrote the u(t-1) it reads back:
        one row in row order (0), a whole timestep's ``ho`` rows in timestep order (1). The
        output ring must hold these rows plus the one being written."""
        return self.ho if order else 1

    @classmethod
    def of(cls, cfg: HardwareConfig, in_channels: int, rank: int, out_channels: int, height: int,
           width: int, pool: bool, zero_halo: Sequence[bool], pack: int,
           mode: str = "ptt") -> "TileGeometry":
        ws = cfg.is_weight_stationary("cluster2")
        return _geometry(cfg.lanes, cfg.spike_word_bits, cfg.spad_psum_entries if ws else 1,
                         cfg.spad_weight_entries if ws else 1, int(in_channels), int(rank),
                         int(out_channels), int(height), int(width), bool(pool),
                         tuple(bool(z) for z in zero_halo), int(pack), mode)

    @classmethod
    def _of(cls, p: int, spike_word_bits: int, spad_psum: int, spad_weight: int, in_channels: int,
            rank: int, out_channels: int, height: int, width: int, pool: bool,
            zero_halo: tuple[bool, ...], pack: int, mode: str) -> "TileGeometry":
        pkk, px = 1 << pack, p >> pack
        ng, nb = ceil_div(rank, pkk), ceil_div(width, px)
        cw = ceil_div(in_channels, spike_word_bits)
        go = ceil_div(out_channels, p)
        ho, wo = (height // 2, width // 2) if pool else (height, width)
        left, right = bool(zero_halo[2]), bool(zero_halo[3])
        row_px = width + 2 - int(left) - int(right)          # computed pixels of a row
        n1, z1 = window_pixels(height, width, zero_halo)
        nbe2, cols2 = nb, width
        if mode == "stt":
            nbe2 += int(not left) + int(not right and width % px == 0)
            cols2 += int(not left) + int(not right)
        return cls(p, pack, ng, nb, (nb + 2) * ng, nb * ng, ceil_div(in_channels, p), cw,
                   ceil_div(3 * rank, px), go, ho, wo, 4 if pool else 1, 3 * rank, n1,
                   z1, row_px * cw, wo * go, nbe2, cols2,
                   spad_psum, spad_weight)

    @classmethod
    def of_shape(cls, cfg: HardwareConfig, shape) -> "TileGeometry":
        """From anything with a tile's fields (a ``gen.cyclemodel.TileShape``, a
        ``gen.driver.Tile`` with ``mode`` given by its layer: default PTT)."""
        return cls.of(cfg, shape.in_channels, shape.rank, shape.out_channels, shape.height,
                      shape.width, shape.pool, shape.zero_halo, shape.pack,
                      getattr(shape, "mode", "ptt"))


@lru_cache(maxsize=8192)
def _geometry(*args) -> TileGeometry:
    # cached: the planner derives the geometry of every candidate tiling several times
    return TileGeometry._of(*args)


def e1_rows(height: int, timesteps: int, order: int = 0) -> list[tuple[int, int]]:
    """Window rows ``(w, t)`` in cluster 1's order. Row outer: rows 0..2 of every timestep,
    then row ``q + 2`` of every timestep for each output row ``q >= 1``; timestep outer: the
    ``height + 2`` rows of timestep 0, then of timestep 1, ... (a fresh list each call)."""
    return list(_e1_rows(int(height), int(timesteps), int(bool(order))))


@lru_cache(maxsize=1024)
def _e1_rows(height: int, timesteps: int, order: int) -> tuple[tuple[int, int], ...]:
    # cached: the planner asks for the same few orders for every candidate tiling it times
    if order:
        return tuple((w, t) for t in range(timesteps) for w in range(height + 2))
    out = []
    for q in range(height):
        for t in range(timesteps):
            out += [(w, t) for w in ((0, 1, 2) if q == 0 else (q + 2,))]
    return tuple(out)
