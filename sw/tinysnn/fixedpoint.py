"""Fixed-point formats for weights and neuron parameters, tinySNN style.

A format has ``bits`` in total; the integer part is chosen from the observed value range
(enough integer bits for the largest magnitude, plus a sign bit when negatives occur) and
the fraction gets the rest. ``bits == 32`` with ``fp32=True`` (the default precision) means
"leave the float32 values alone". Rounding is the project's one implementation,
:func:`sw.quantize.round_values` (``nearest`` / ``truncate`` / ``stochastic``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ttsnn.sw.quantize import ROUNDING_MODES, round_values
from ttsnn.sw.cli_util import UserError

__all__ = ["FixedPoint", "QuantSpec", "FP32", "ROUNDING_MODES", "integer_bits_for"]


def integer_bits_for(max_abs: float) -> int:
    """Integer bits (no sign) that hold ``max_abs``: 0 for values below 1, 1 for [1, 2)..."""
    if not math.isfinite(max_abs) or max_abs < 0:
        raise UserError(f"max_abs must be finite and >= 0, got {max_abs}")
    if max_abs < 1.0:
        return 0
    return int(math.floor(math.log2(max_abs))) + 1


@dataclass(frozen=True)
class FixedPoint:
    """``bits`` = sign (if ``signed``) + ``int_bits`` + ``frac_bits``; ``fp32``: no quantisation."""

    bits: int
    int_bits: int = 0
    signed: bool = False
    fp32: bool = False

    def __post_init__(self) -> None:
        if self.fp32:
            if self.bits != 32:
                raise UserError("a float32 format has 32 bits")
            return
        if not 2 <= self.bits <= 32:
            raise UserError(f"fixed-point precision must be 2..32 bits, got {self.bits}")
        if self.int_bits < 0 or self.frac_bits < 0:
            raise UserError(f"{self.bits} bits cannot hold {self.int_bits} integer bits"
                            f"{' and a sign' if self.signed else ''}")

    @property
    def frac_bits(self) -> int:
        return self.bits - self.int_bits - int(self.signed)

    @property
    def step(self) -> float:
        return 2.0 ** -self.frac_bits

    @property
    def lo(self) -> float:
        return -(2 ** (self.bits - 1)) * self.step if self.signed else 0.0

    @property
    def hi(self) -> float:
        return ((2 ** (self.bits - 1) if self.signed else 2 ** self.bits) - 1) * self.step

    @classmethod
    def for_range(cls, bits: int, lo: float, hi: float, fp32: bool = False) -> "FixedPoint":
        """The format of ``bits`` for values in ``[lo, hi]``: integer bits for ``max(|lo|, |hi|)``,
        a sign bit if ``lo < 0``, the fraction from what is left (at least 0)."""
        if fp32:
            return cls(32, fp32=True)
        signed = lo < 0
        ib = integer_bits_for(max(abs(lo), abs(hi)))
        ib = min(ib, bits - int(signed))  # too narrow: saturate rather than refuse
        return cls(bits, ib, signed)

    def quantize(self, x: Tensor, rounding: str = "nearest",
                 generator: torch.Generator | None = None) -> Tensor:
        """``x`` on this format's grid (same dtype), saturating at ``[lo, hi]``."""
        if self.fp32:
            return x
        scale = float(2 ** self.frac_bits)
        q = round_values(x * scale, rounding, generator) / scale
        return q.clamp_(self.lo, self.hi)

    def describe(self) -> str:
        if self.fp32:
            return "fp32"
        return f"{'s' if self.signed else 'u'}Q{self.int_bits}.{self.frac_bits}"


FP32 = FixedPoint(32, fp32=True)


@dataclass(frozen=True)
class QuantSpec:
    """How one network is quantised: formats of weights, membrane potential and threshold,
    the rounding mode and whether weights are re-quantised at every update (ITQ) or once
    after training (PTQ). ``FP32`` formats leave that quantity in float32."""

    weight: FixedPoint = FP32
    membrane: FixedPoint = FP32
    threshold: FixedPoint = FP32
    inh_membrane: FixedPoint = FP32  # the baseline's inhibitory layer (same precision as membrane)
    rounding: str = "nearest"
    in_training: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounding not in ROUNDING_MODES:
            raise UserError(f"unknown rounding {self.rounding!r}; choose one of {', '.join(ROUNDING_MODES)}")

    @property
    def is_fp32(self) -> bool:
        return self.weight.fp32 and self.membrane.fp32 and self.threshold.fp32 and self.inh_membrane.fp32

    def label(self) -> str:
        if self.is_fp32:
            return "fp32"
        mode = "ITQ" if self.in_training else "PTQ"
        return (f"{mode} w{self.weight.bits} v{self.membrane.bits} th{self.threshold.bits} "
                f"{self.rounding}")
