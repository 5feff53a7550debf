"""The LIF-gradient array: backward steps 1-3 (LIF over time, current, folded BatchNorm)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import GRAD_ROUNDING_MODES, grad_round, lane, saturate
from ..units import SHIFT_BITS, _check, _reject

__all__ = ["LIFGradientLanes"]

#: The stochastic-rounding stages of this unit, in port order.
DITHER_STAGES = ("height", "leak", "affine")


class LIFGradientLanes(wiring.Component):
    """One timestep of the LIF gradient for ``lanes`` neurons, then the current and the frozen
    folded BatchNorm (docs/numerics.md, backward steps 1-3). Combinational; the engine runs
    ``t = T-1 .. 0`` and feeds ``d`` back as ``d_next`` (``d[T] = 0``).

    * step 1: ``d = sat_G((window ? round_hs(e * height_mul) : 0)
      + (spike ? 0 : round_ls(d_next * leak_mul)))``;
    * step 2: ``g_cur = sat_G(d + g_extra)`` (``g_extra``: the shortcut consumers' gradient; 0
      for a block's first conv, which cannot saturate);
    * step 3: ``g_p = sat_G(round_sa(g_cur * scale))``, the product exact (``Gb + Sb`` bits).

    Ports: ``e``, ``d_next``, ``g_extra`` (lanes x Gb, signed), ``spike``, ``window`` (one bit
    per lane: the forward's spike and surrogate-window bits of this timestep), ``scale`` (lanes
    x Sb: the timestep class's folded-BN scale), ``height_mul``, ``leak_mul`` (Lb, unsigned),
    ``height_shift``, ``leak_shift``, ``affine_shift``; with ``rounding = "stochastic"``,
    ``dither_height``, ``dither_leak``, ``dither_affine`` (lanes x 32). Out: ``d`` (the LIF
    state to feed back), ``g_cur`` (also the residual input's gradient), ``g_p`` (lanes x Gb);
    ``sat_lif``, ``sat_current``, ``sat_affine`` (one bit per lane: that step saturated).
    """

    def __init__(self, lanes: int, grad_width: int, leak_width: int, scale_width: int,
                 rounding: str):
        self.lanes = _check(self, "lanes", lanes)
        self.grad_width = _check(self, "grad_width", grad_width, 2)
        self.leak_width = _check(self, "leak_width", leak_width, 1)
        self.scale_width = _check(self, "scale_width", scale_width, 2)
        if rounding not in GRAD_ROUNDING_MODES:
            _reject(self, f"rounding must be one of {GRAD_ROUNDING_MODES}, got {rounding!r}")
        self.rounding = rounding
        gb = grad_width
        ports = {
            "e": In(lanes * gb), "d_next": In(lanes * gb), "g_extra": In(lanes * gb),
            "spike": In(lanes), "window": In(lanes), "scale": In(lanes * scale_width),
            "height_mul": In(leak_width), "leak_mul": In(leak_width),
            "height_shift": In(SHIFT_BITS), "leak_shift": In(SHIFT_BITS), "affine_shift": In(SHIFT_BITS),
            "d": Out(lanes * gb), "g_cur": Out(lanes * gb), "g_p": Out(lanes * gb),
            "sat_lif": Out(lanes), "sat_current": Out(lanes), "sat_affine": Out(lanes),
        }
        if rounding == "stochastic":
            ports.update({f"dither_{s}": In(lanes * 32) for s in DITHER_STAGES})
        super().__init__(ports)

    def _dither(self, stage: str, l: int):
        if self.rounding != "stochastic":
            return None
        return getattr(self, f"dither_{stage}")[l * 32:(l + 1) * 32]

    def elaborate(self, platform):
        m = Module()
        gb, sb = self.grad_width, self.scale_width
        ds, curs, gps, f_lif, f_cur, f_aff = [], [], [], [], [], []
        for l in range(self.lanes):
            e, d_next = lane(self.e, l, gb), lane(self.d_next, l, gb)
            direct = grad_round(e * self.height_mul, self.height_shift, self.rounding, self._dither("height", l))
            through = grad_round(d_next * self.leak_mul, self.leak_shift, self.rounding, self._dither("leak", l))
            v = Signal(signed(gb + self.leak_width + 3), name=f"v{l}")
            m.d.comb += v.eq(Mux(self.window[l], direct, 0) + Mux(self.spike[l], 0, through))
            d = Signal(signed(gb), name=f"d{l}")
            m.d.comb += d.eq(saturate(v, gb))
            total = d + lane(self.g_extra, l, gb)
            cur = Signal(signed(gb), name=f"g_cur{l}")
            m.d.comb += cur.eq(saturate(total, gb))
            rounded = grad_round(cur * lane(self.scale, l, sb), self.affine_shift, self.rounding,
                                 self._dither("affine", l))
            g_p = saturate(rounded, gb)
            ds.append(d)
            curs.append(cur)
            gps.append(g_p[:gb])
            f_lif.append(d != v)
            f_cur.append(cur != total)
            f_aff.append(g_p != rounded)
        m.d.comb += [self.d.eq(Cat(*ds)), self.g_cur.eq(Cat(*curs)), self.g_p.eq(Cat(*gps)),
                     self.sat_lif.eq(Cat(*f_lif)), self.sat_current.eq(Cat(*f_cur)),
                     self.sat_affine.eq(Cat(*f_aff))]
        return m
