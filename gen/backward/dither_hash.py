"""The stochastic rounding's dither: each element's hashed layer coordinates."""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import lowbias32
from ..units import _check

__all__ = ["DitherHash"]


class DitherHash(wiring.Component):
    """``dither[l] = lowbias32(((index + l * lane_stride) mod 2^32) XOR key)`` for ``lanes``
    elements (docs/numerics.md, "Helper operations of the backward pass": the element's index
    in layer coordinates, hashed with the stage's key). Combinational.

    Ports: ``index`` (32 bits: the index of lane 0's element), ``lane_stride`` (32 bits: the
    index step from one lane's channel to the next, ``H * W`` of the layer), ``key`` (32 bits:
    ``lowbias32(16 * seed + stage)``, written by the host); ``dither`` (lanes x 32 bits).
    Built only for ``gradients.rounding = "stochastic"``: two constant 32-bit multipliers and a
    ``lane x stride`` multiple per lane.
    """

    def __init__(self, lanes: int):
        self.lanes = _check(self, "lanes", lanes)
        super().__init__({"index": In(32), "lane_stride": In(32), "key": In(32), "dither": Out(lanes * 32)})

    def elaborate(self, platform):
        m = Module()
        out = [lowbias32((self.index + (self.lane_stride * l)[:32])[:32] ^ self.key) for l in range(self.lanes)]
        m.d.comb += self.dither.eq(Cat(*out))
        return m
