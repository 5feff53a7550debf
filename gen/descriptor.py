"""The tile descriptor: one ``data.StructLayout`` whose fields are the descriptor registers.

The host writes one register per field (address ``DESCRIPTOR_BASE + i`` for field ``i`` in the
layout's order, :func:`gen.hostmap.host_map`), or the whole layout a host word at a time
(``desc_word<k>``: :func:`gen.hostmap.descriptor_word_values`, what the driver does), before
``start``; the hardware holds them in one
``Signal(DESCRIPTOR_LAYOUT)`` and the engines read its fields by name. docs/host_interface.md's
descriptor table names the same fields in the same order (tests/gen/test_descriptor.py).

``pass`` selects what ``start`` runs: the forward tile (the four engines) or one stage of a
backward tile (the backward datapath, gen/backward/, on the ``bw_*`` stage registers: the
LIF gradient, a recomputed or transposed core, or a weight-gradient outer product).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from amaranth.hdl import Shape, unsigned
from amaranth.lib import data

__all__ = ["Pass", "DescriptorField", "DESCRIPTOR", "DESCRIPTOR_LAYOUT", "descriptor_bits", "descriptor_offset",
           "descriptor_total_bits"]


class Pass(enum.IntEnum):
    """Value of the descriptor's ``pass`` field."""
    FORWARD = 0
    #: one backward stage, described by the stage registers (gen.backward.stage_layout)
    BACKWARD = 1


@dataclass(frozen=True)
class DescriptorField:
    name: str
    bits: int
    meaning: str


#: The descriptor, in register order. Written before ``start``; constant during a tile.
DESCRIPTOR: tuple[DescriptorField, ...] = tuple(DescriptorField(*f) for f in (
    ("in_channels", 16, "Cin of the layer"),
    ("rank", 16, "TT rank r"),
    ("out_channels", 16, "Cout of this tile (an output-channel group of the layer)"),
    ("height", 16, "H: output rows of the tile before pooling (window has H+2 rows)"),
    ("width", 16, "W: output columns before pooling (window has W+2 columns)"),
    ("timesteps", 8, "T"),
    ("mode", 2, "0 STT, 1 PTT, 2 HTT (sw.qlayer.MODE_CODES)"),
    ("schedule", 32, "HTT: bit t set = timestep t is full (ignored for STT/PTT)"),
    ("pack", 4, "log2(Pk): clusters 2/3 lanes = Pk rank channels x Px = P/Pk output columns"),
    ("order", 1, "row order: 0 row outer (row y of every timestep, then row y+1), 1 timestep "
                 "outer (all rows of timestep t, then t+1)"),
    ("shift1", 6, "re-quantisation shift after cluster 1"),
    ("shift2", 6, "re-quantisation shift after cluster 2 (STT)"),
    ("shift3", 6, "re-quantisation shift after cluster 3 / the adder array"),
    ("affine_shift", 6, "shift of the folded-BatchNorm product"),
    ("leak_mul", 16, "LIF leak multiplier (unsigned, widths.leak_mul bits used)"),
    ("leak_shift", 6, "LIF leak shift"),
    ("threshold", 32, "LIF threshold (signed, widths.membrane bits used)"),
    ("round", 1, "1: round half up in every shift, 0: floor"),
    ("pool", 1, "1: 2x2 max-pool after cluster 4"),
    ("residual", 1, "1: add the residual rows before the LIF"),
    ("zero_halo", 4, "window edges outside the layer (bit 0 top row, 1 bottom row, 2 left "
                     "column, 3 right column): their q1 is 0 without computing, their spikes "
                     "are not in the input rows"),
    ("in_ring_rows", 16, "rows of the spike_in ring (slot = input row % in_ring_rows)"),
    ("res_ring_rows", 16, "rows of the residual ring"),
    ("out_ring_rows", 16, "rows of the output ring (membrane and spikes regions)"),
    ("pass", 2, "0 forward tile, 1 one backward stage (the bw_* stage registers; "
                "gen.descriptor.Pass)"),
    ("w4_ring", 16, "0: G4 resident in region w4 (loaded while idle); n > 0: G4 streamed, "
                    "w4 is a ring of n chunks of r words (one output group each) the host "
                    "refills while the tile runs (w4_chunks / w4_consumed)"),
    ("w23_ring", 16, "0: G2 and G3 resident in regions w2, w3; n > 0: streamed, w2 and w3 are "
                     "rings of n chunks of NS words (one output rank group of a MAC row each) "
                     "the host refills while the tile runs (w2_chunks / w3_chunks)"),
    ("w1_ring", 16, "0: G1 resident in region w1; n > 0: G1 streamed, w1 is a ring of n chunks "
                    "(zero-skipping cluster 1: ceil(Cin/Px) words, one rank group of a window row "
                    "each; dense: ceil(Cin/P) words, one rank of a window row each) the host "
                    "refills while the tile runs (w1_chunks / w1_consumed)"),
    ("window_lo", 32, "surrogate window's lower bound: the trace's window bit is lo < u < hi "
                      "(signed, widths.membrane + 1 bits used)"),
    ("window_hi", 32, "surrogate window's upper bound (signed, widths.membrane + 1 bits used)"),
))

#: The descriptor as the hardware holds it (field ``f`` is ``unsigned(f.bits)``).
DESCRIPTOR_LAYOUT = data.StructLayout({f.name: unsigned(f.bits) for f in DESCRIPTOR})


def descriptor_bits(name: str) -> int:
    """Width of descriptor field ``name``, read from the layout."""
    return Shape.cast(DESCRIPTOR_LAYOUT[name].shape).width


def descriptor_offset(name: str) -> int:
    """Bit offset of descriptor field ``name`` in the layout (the ``desc_word`` registers)."""
    return DESCRIPTOR_LAYOUT[name].offset


def descriptor_total_bits() -> int:
    """Bits of the whole descriptor."""
    return Shape.cast(DESCRIPTOR_LAYOUT).width
