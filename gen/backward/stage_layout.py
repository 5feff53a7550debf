"""The descriptor of one core stage of a backward tile (:class:`CoreStageEngine`).

A backward tile runs as a sequence of core stages (docs/architecture.md, "Backward
datapath"): the recomputation of ``q1``, ``q2``, ``q23`` from the input spikes, the transposed
cores G4^T, G3^T/G2^T and G1^T, and the weight-gradient outer products. Every stage iterates
the pixels ``p = (t, y, x)`` of a ``timesteps x rows x cols`` block and reads its input tensor
at ``p`` plus the offset of each tap. Tensors live in the gradient buffer as words of ``P``
lanes of ``Gb`` bits: word ``((t * tensor_rows + y) * tensor_cols + x) * groups + c // P``,
lane ``c % P`` (``groups = ceil(channels / P)``), a mat-vec stage's output tensor likewise
(``out_rows x out_cols``, the block at ``out_base``); the input spikes ``x`` one bit per channel
(``in_spikes``: ``S`` channels per word, ``S = HardwareConfig.gbuf_spikes_per_word``).
"""

from __future__ import annotations

import enum

from amaranth.hdl import unsigned
from amaranth.lib import data

from ..units import SHIFT_BITS

__all__ = ["StageKind", "Taps", "Requant", "STAGE_FIELDS", "STAGE_LAYOUT", "STAGE_ADDR_BITS"]

#: Width of every address field (words of the gradient buffer, entries of the accumulator).
STAGE_ADDR_BITS = 20


class StageKind(enum.IntEnum):
    """``kind``: what a stage computes."""
    #: ``out[p, o] = requant(sum_tap sum_i w[tap, i, o] * in[p + off(tap), i])``
    MATVEC = 0
    #: ``acc[tap, o // P, i][o % P] += g[p + (gy, gx), o] * in[p + off(tap), i]``
    OUTER = 1
    #: backward steps 1-4 (:class:`gen.backward.LIFGradientEngine`): ``e`` and the forward
    #: trace over the output pixels and their ring -> ``g_a4`` (pre-pool) and ``g_cur``
    LIF = 2


class Taps(enum.IntEnum):
    """``taps``: the input offsets ``(dy, dx)`` a stage reads."""
    POINT = 0           # (fy, fx)
    ROWS = 1            # (0, fx), (1, fx), (2, fx): a 3x1 core
    COLS = 2            # (fy, 0), (fy, 1), (fy, 2): a 1x3 core
    ROWS_COLS = 3       # the three row taps, then the three column taps (PTT's two branches)


class Requant(enum.IntEnum):
    """``requant``: the re-quantisation of a MATVEC stage's sums."""
    #: forward (recomputation): ``sat_Qb(rshift(wrap(acc), shift, round))``, wraps at Ab
    #: (ROWS_COLS: each branch at Ab, their sum exact in Ab + 1 bits)
    FORWARD = 0
    #: backward: ``sat_Gb(round_s(wrap(acc)))`` with the configuration's gradient rounding,
    #: wraps at GA (ROWS_COLS: GA + 1)
    GRADIENT = 1


#: (name, bits, meaning), in register order.
STAGE_FIELDS = (
    ("kind", 2, "0 mat-vec (transposed or recomputed core), 1 outer product (weight gradient), "
                "2 LIF gradient (gen.backward.StageKind)"),
    ("timesteps", 8, "T: timesteps of the block"),
    ("rows", 16, "rows of the block of pixels the stage iterates"),
    ("cols", 16, "columns of that block"),
    ("in_channels", 16, "I: reduction channels (mat-vec) or accumulator entries per tap (outer)"),
    ("out_channels", 16, "O: output channels (mat-vec) or gradient channels (outer)"),
    ("in_base", STAGE_ADDR_BITS, "first word of the input tensor (LIF: e, over rows x cols)"),
    ("in_rows", 16, "rows of the stored input tensor"),
    ("in_cols", 16, "columns of the stored input tensor"),
    ("in_spikes", 1, "1: the input tensor is spikes, one bit per channel: word ((t * in_rows + y) * "
                     "in_cols + x) * ceil(I/S) + i // S, bit i % S (S = HardwareConfig."
                     "gbuf_spikes_per_word)"),
    ("taps", 2, "0 point, 1 rows (3x1), 2 columns (1x3), 3 rows then columns (gen.backward.Taps)"),
    ("fy", 2, "row offset of POINT and COLS taps"),
    ("fx", 2, "column offset of POINT and ROWS taps"),
    ("w_base", STAGE_ADDR_BITS, "mat-vec: first weight word (word (tap * I + i) * ceil(O/P) + o // P)"),
    ("out_base", STAGE_ADDR_BITS, "mat-vec: first word of the output tensor (rows x cols); LIF: g_a4"),
    ("requant", 1, "mat-vec: 0 forward, 1 gradient (gen.backward.Requant)"),
    ("shift", SHIFT_BITS, "mat-vec: re-quantisation shift; LIF: the affine gradient's shift"),
    ("round", 1, "mat-vec, forward re-quantisation: 1 round half up, 0 floor"),
    ("schedule", 32, "HTT: bit t set = timestep t is full (LIF: selects the folded-BN scale)"),
    ("use_schedule", 1, "1: reduced timesteps (schedule bit 0) take the bypass: mat-vec copies the "
                        "input word at (1, 1) of the output's channels, re-quantised with alt_shift "
                        "(one step per output group); outer skips them in one step each (the first one "
                        "before the sums start, with acc_clear, writes zero sums over one pixel)"),
    ("alt_shift", SHIFT_BITS, "mat-vec, reduced timesteps: the shift's magnitude"),
    ("alt_left", 1, "mat-vec, reduced timesteps: 1 the shift is to the left (exact)"),
    ("g_base", STAGE_ADDR_BITS, "outer: first word of the gradient tensor"),
    ("g_rows", 16, "outer: rows of the stored gradient tensor"),
    ("g_cols", 16, "outer: columns of the stored gradient tensor"),
    ("gy", 2, "outer: row offset of the block in the gradient tensor"),
    ("gx", 2, "outer: column offset"),
    ("acc_base", STAGE_ADDR_BITS, "outer: first accumulator entry (entry (tap * ceil(O/P) + o // P) * I + i)"),
    ("acc_clear", 1, "outer: 1 the stage starts its sums (the first pixel's terms replace them)"),
    ("trace_base", STAGE_ADDR_BITS, "LIF: first trace word (word ((t * rows + y) * cols + x) * "
                                    "ceil(O/P) + o // P: spike, window and 2 arg-max bits per lane)"),
    ("cur_base", STAGE_ADDR_BITS, "LIF: first word of g_cur over the output pixels (rows - 2 x cols - 2)"),
    ("use_extra", 1, "LIF: 1 add g_extra (at g_base, the shape of e) to the LIF gradient"),
    ("pool", 1, "LIF: 1 the layer pools: g_a4 is 2 rows - 2 x 2 cols - 2, routed by the arg-max"),
    ("height_mul", 16, "LIF: surrogate height multiplier (widths.leak_mul bits used)"),
    ("height_shift", SHIFT_BITS, "LIF: surrogate height shift"),
    ("leak_mul", 16, "LIF: the forward's leak multiplier"),
    ("leak_shift", SHIFT_BITS, "LIF: the forward's leak shift"),
    ("carry_in", 1, "LIF: 1 the stage continues a later chunk of timesteps: each neuron group's LIF "
                    "gradient d starts from the word at carry_base (one extra step per group) instead of 0"),
    ("carry_out", 1, "LIF: 1 an earlier chunk of timesteps follows: each neuron group's d after its "
                     "last timestep is written to carry_base (one extra step per group)"),
    ("carry_base", STAGE_ADDR_BITS, "LIF: first word of the carried d over the output pixels and their "
                                    "ring (word (y * cols + x) * ceil(O/P) + o // P)"),
    # stochastic rounding only (docs/numerics.md): the block's elements in layer coordinates,
    # index = idx_base + t * idx_t + c * idx_c + y * idx_y + x (mod 2^32), and the dither keys
    ("idx_base", 32, "stochastic rounding: layer index of the output block's element (t, c, y, x) = 0"),
    ("idx_t", 32, "stochastic rounding: index step per timestep (C * H * W of the layer's tensor)"),
    ("idx_c", 32, "stochastic rounding: index step per channel (H * W)"),
    ("idx_y", 32, "stochastic rounding: index step per row (W; per column 1)"),
    ("key", 32, "stochastic rounding: the stage's dither key lowbias32(16 * seed + stage); LIF: the "
                "surrogate height's"),
    ("key_leak", 32, "stochastic rounding, LIF: the leak rounding's key"),
    ("key_affine", 32, "stochastic rounding, LIF: the folded-BN gradient's key"),
    # lane packing (docs/architecture.md, "Backward datapath"): kept last so that the earlier
    # fields keep their registers
    ("pack", 1, "mat-vec, outer: 1 two pixels per pass (out_channels <= P/2, cols even, no "
                "stochastic rounding): lanes 0..P/2-1 compute pixel x, lanes "
                "P/2..P-1 pixel x + 1; the two input words are read in one extra step per input "
                "word. Mat-vec: the driver repeats each weight word's lanes in both halves, the two "
                "output words are written one cycle apart; outer: both pixels' gradient words read "
                "in the pair's first two steps, pixel x + 1's terms summed in lanes P/2 + o (the "
                "host adds the halves); HTT's reduced timesteps copy (two steps per pixel pair) or "
                "skip as unpacked. out_channels > P (a wide stage): per block row the full groups "
                "unpacked, then the last group's R <= P/2 channels packed (the weight word's "
                "last group likewise, the host adds its halves)"),
    ("straddle", 1, "mat-vec, outer: 1 the lanes straddle pixels (P/2 <= out_channels < P, no pack, no "
                    "stochastic rounding; HTT's reduced timesteps copy as unstraddled): a block row's cols x O (pixel, channel) "
                    "pairs in passes of P, lane l of a pass on pair jP + l (pixel p0 + (s + l) div O, "
                    "channel (s + l) mod O); each input word read per pixel the pass touches (one "
                    "extra step per word and pixel after the first); the driver lays each weight "
                    "word's lane l as channel l mod O; each pixel's sums written rotated into its "
                    "word with its lanes enabled, one pixel per cycle. Outer (P/2 <= gradient channels < P; "
                    "HTT's reduced timesteps skipped as unstraddled): the same passes, each pixel's "
                    "gradient word read at the pass's first tap and input channel; accumulator lane c "
                    "adds the products of the (at most two) pixels of the pass whose pair has channel c, "
                    "one update per step, the entries as unstraddled. out_channels > P (a wide stage): per "
                    "block row the full groups unstraddled, then the last group's P/2 <= R < P "
                    "channels straddled as a stage of R channels"),
    # the stored output tensor (docs/architecture.md, "Ring pixels outside the layer"): a block
    # smaller than the tensor writes into it, so that a stage can skip the tile's ring pixels
    # that lie outside the layer
    ("out_rows", 16, "mat-vec: rows of the stored output tensor: the block's pixel (t, y, x) is written "
                     "at word out_base + ((t * out_rows + y) * out_cols + x) * ceil(O/P) + o // P"),
    ("out_cols", 16, "mat-vec: columns of the stored output tensor"),
)

#: The stage descriptor as the hardware holds it.
STAGE_LAYOUT = data.StructLayout({name: unsigned(bits) for name, bits, _ in STAGE_FIELDS})
