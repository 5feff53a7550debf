"""Re-quantisation of the backward pass's transposed-core sums to gradients."""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import GRAD_ROUNDING_MODES, grad_round, lane, saturate
from ..units import SHIFT_BITS, _check, _reject

__all__ = ["GradientRequantiser"]


class GradientRequantiser(wiring.Component):
    """``o = sat_G(round_s(i))`` on ``lanes`` values (docs/numerics.md, backward steps 5-7:
    G4^T, G3^T, G2^T (+ G3^T) and G1^T sums to ``Gb``-bit gradients). Combinational.

    ``rounding`` is the configuration's ``gradients.rounding`` (fixed when the hardware is
    built). Ports: ``i`` (lanes x in_width, signed), ``shift`` (``s >= 0``); with
    ``rounding = "stochastic"`` also ``dither`` (lanes x 32: each element's hashed bits);
    ``o`` (lanes x out_width), ``saturated`` (one bit per lane: ``sat_G`` changed the value;
    the engine counts the active lanes' bits); ``rounded`` (lanes x :attr:`rounded_width`:
    ``round_s(i)`` before the saturation, for an engine that registers it and saturates in the
    next pipeline stage).
    """

    def __init__(self, lanes: int, in_width: int, out_width: int, rounding: str):
        self.lanes = _check(self, "lanes", lanes)
        self.in_width = _check(self, "in_width", in_width, 2)
        self.out_width = _check(self, "out_width", out_width, 2)
        if rounding not in GRAD_ROUNDING_MODES:
            _reject(self, f"rounding must be one of {GRAD_ROUNDING_MODES}, got {rounding!r}")
        self.rounding = rounding
        #: bits of each ``rounded`` lane: the stochastic rounding's add may carry one bit out
        self.rounded_width = in_width + (1 if rounding == "stochastic" else 0)
        ports = {"i": In(lanes * in_width), "shift": In(SHIFT_BITS),
                 "o": Out(lanes * out_width), "saturated": Out(lanes),
                 "rounded": Out(lanes * self.rounded_width)}
        if rounding == "stochastic":
            ports["dither"] = In(lanes * 32)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        outs, flags, pre = [], [], []
        for l in range(self.lanes):
            dither = self.dither[l * 32:(l + 1) * 32] if self.rounding == "stochastic" else None
            rounded = grad_round(lane(self.i, l, self.in_width), self.shift, self.rounding, dither)
            pre.append(rounded.as_signed()[:self.rounded_width])
            q = saturate(rounded, self.out_width)
            outs.append(q[:self.out_width])
            flags.append(q != rounded)
        m.d.comb += [self.o.eq(Cat(*outs)), self.saturated.eq(Cat(*flags)),
                     self.rounded.eq(Cat(*pre))]
        return m
