"""The LIF-gradient array: backward steps 1-3 (LIF over time, current, folded BatchNorm)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import GRAD_ROUNDING_MODES, grad_round, lane, saturate
from ..units import SHIFT_BITS, _check, _reject

__all__ = ["LIFGradientLanes", "delay_line"]

#: The stochastic-rounding stages of this unit, in port order.
DITHER_STAGES = ("height", "leak", "affine")


class LIFGradientLanes(wiring.Component):
    """One timestep of the LIF gradient for ``lanes`` neurons, then the current and the frozen
    folded BatchNorm (docs/numerics.md, backward steps 1-3), pipelined over :attr:`LATENCY`
    registered stages; the LIF state ``d`` of timestep ``t + 1`` is held inside (``d[T] = 0``).
    The engine feeds timesteps ``t = T-1 .. 0`` of a neuron group in order, ``restart`` with
    the first (``t = T-1``). Each timestep's ``d`` needs the one before it: that recurrence
    (leak product, rounding, add, saturation) is cut in two registered stages, so two
    timesteps of one group must enter at least :attr:`RECURRENCE_DISTANCE` cycles apart, the
    engine interleaving two groups (or leaving the cycle between idle); one register holds
    ``d``, each step reading the ``d`` of the step two cycles before it.
    A tile whose timesteps run in chunks carries ``d`` from one chunk to the next: a ``load``
    step sets the held ``d`` to its ``e`` (the carried word) and computes nothing else.

    * step 1: ``d = sat_G((window ? round_hs(e * height_mul) : 0)
      + (spike ? 0 : round_ls(d_next * leak_mul)))``;
    * step 2: ``g_cur = sat_G(d + g_extra)`` (``g_extra``: the shortcut consumers' gradient; 0
      for a block's first conv, which cannot saturate);
    * step 3: ``g_p = sat_G(round_sa(g_cur * scale))``, the product exact (``Gb + Sb`` bits).

    Stages (one register each; cycle 0 is the inputs' cycle): 1 the inputs; 2 the product ``e *
    height_mul``, exact; 3 its rounding, the direct term ``round_hs(e * height_mul)``, beside
    the leak product ``d_next * leak_mul``, exact; 4 its rounding, the add and the saturation:
    ``d`` (the held state); 5 ``g_cur``; 6 the product ``g_cur * scale``; 7 its rounding and
    saturation, every output.

    Ports: ``valid`` (a timestep enters: the held ``d`` advances only then), ``restart`` (it is
    ``t = T-1``: ``d_next = 0``), ``load`` (with ``valid``: this step only sets the held ``d``
    to ``e``; its outputs are meaningless), ``e``, ``g_extra`` (lanes x Gb, signed), ``spike``, ``window``
    (one bit per lane: the forward's spike and surrogate-window bits of this timestep),
    ``scale`` (lanes x Sb: the timestep class's folded-BN scale); with ``rounding =
    "stochastic"``, ``dither_height``, ``dither_leak``, ``dither_affine`` (lanes x 32), all in
    cycle 0. ``height_mul``, ``leak_mul`` (Lb, unsigned), ``height_shift``, ``leak_shift``,
    ``affine_shift``: held for the whole stage (descriptor fields). Out, registered, in cycle
    :attr:`LATENCY`: ``out_valid`` (``valid`` delayed), ``d``, ``g_cur`` (also the residual
    input's gradient), ``g_p`` (lanes x Gb); ``sat_lif``, ``sat_current``, ``sat_affine`` (one
    bit per lane: that step saturated).
    """

    #: Cycles from the inputs to the registered outputs.
    LATENCY = 7
    #: Fewest cycles between two timesteps of one neuron group (the recurrence's two stages).
    RECURRENCE_DISTANCE = 2

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
            "valid": In(1), "restart": In(1), "load": In(1),
            "e": In(lanes * gb), "g_extra": In(lanes * gb),
            "spike": In(lanes), "window": In(lanes), "scale": In(lanes * scale_width),
            "height_mul": In(leak_width), "leak_mul": In(leak_width),
            "height_shift": In(SHIFT_BITS), "leak_shift": In(SHIFT_BITS), "affine_shift": In(SHIFT_BITS),
            "out_valid": Out(1), "d": Out(lanes * gb), "g_cur": Out(lanes * gb), "g_p": Out(lanes * gb),
            "sat_lif": Out(lanes), "sat_current": Out(lanes), "sat_affine": Out(lanes),
        }
        if rounding == "stochastic":
            ports.update({f"dither_{s}": In(lanes * 32) for s in DITHER_STAGES})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        # control and the inputs later stages use, delayed along the pipeline
        valid = delay_line(m, self.valid, self.LATENCY, "valid")
        restart = delay_line(m, self.restart, 2, "restart")
        load = delay_line(m, self.load, 3, "load")
        m.d.comb += self.out_valid.eq(valid[self.LATENCY])
        # the leak's shift decoded once, registered (held for the stage, first used in stage 3)
        shift_m1, shift_zero = Signal(SHIFT_BITS, name="leak_shift_m1"), Signal(name="leak_shift_zero")
        m.d.sync += [shift_m1.eq(Mux(self.leak_shift == 0, 0, self.leak_shift - 1)),
                     shift_zero.eq(self.leak_shift == 0)]
        outs = {k: [] for k in ("d", "g_cur", "g_p", "sat_lif", "sat_current", "sat_affine")}
        for l in range(self.lanes):
            for k, v in self._lane(m, l, valid, restart, load, (shift_m1, shift_zero)).items():
                outs[k].append(v)
        m.d.comb += [getattr(self, k).eq(Cat(*v)) for k, v in outs.items()]
        return m

    def _lane(self, m, l: int, valid, restart, load, leak_shift) -> dict:
        """Lane ``l``'s seven stages; its registered outputs."""
        gb, sb, L = self.grad_width, self.scale_width, self.LATENCY
        dither = {s: (delay_line(m, getattr(self, f"dither_{s}")[l * 32:(l + 1) * 32], n, f"dither_{s}{l}")[n]
                      if self.rounding == "stochastic" else None)
                  for s, n in (("height", 2), ("leak", 3), ("affine", 6))}
        e_taps = delay_line(m, lane(self.e, l, gb), 3, f"e{l}")
        window = delay_line(m, self.window[l], 2, f"window{l}")[2]
        spike = delay_line(m, self.spike[l], 3, f"spike{l}")[3]
        g_extra = delay_line(m, lane(self.g_extra, l, gb), 4, f"g_extra{l}")[4]
        scale = delay_line(m, lane(self.scale, l, sb), 5, f"scale{l}")[5]
        # stages 2-3: the direct term (no recurrence through it): the product, then its rounding
        height_prod = Signal(signed(gb + self.leak_width + 1), name=f"height_prod{l}")
        m.d.sync += height_prod.eq(e_taps[1] * self.height_mul)
        direct_v = grad_round(height_prod, self.height_shift, self.rounding, dither["height"])
        direct = Signal.like(direct_v, name=f"direct{l}")
        m.d.sync += direct.eq(Mux(window, direct_v, 0))
        # stages 3-4: the recurrence; d_state holds the d of the step two cycles before (the
        # same group's timestep t + 1: the engine interleaves two groups)
        d_state = Signal(signed(gb), name=f"d{l}")
        leak_prod = Signal(signed(gb + self.leak_width + 1), name=f"leak_prod{l}")
        m.d.sync += leak_prod.eq(Mux(restart[2], 0, d_state) * self.leak_mul)
        v = Signal(signed(gb + self.leak_width + 3), name=f"v{l}")
        m.d.comb += v.eq(self._recurrence_sum(leak_prod, direct, spike, dither["leak"], leak_shift))
        d = saturate(v, gb)
        with m.If(valid[3]):
            m.d.sync += d_state.eq(Mux(load[3], e_taps[3], d))
        f_lif = Signal(name=f"sat_lif{l}")
        m.d.sync += f_lif.eq(d != v)
        # stage 5: the current
        total = d_state + g_extra
        cur = Signal(signed(gb), name=f"g_cur{l}")
        f_cur = Signal(name=f"sat_cur{l}")
        m.d.sync += [cur.eq(saturate(total, gb)), f_cur.eq(saturate(total, gb) != total)]
        # stage 6: the folded-BN product, exact
        prod = Signal(signed(gb + sb), name=f"g_prod{l}")
        m.d.sync += prod.eq(cur * scale)
        # stage 7: its rounding and saturation; every output registered here
        rounded = grad_round(prod, self.affine_shift, self.rounding, dither["affine"])
        g_p = Signal(signed(gb), name=f"g_p{l}")
        f_aff = Signal(name=f"sat_aff{l}")
        m.d.sync += [g_p.eq(saturate(rounded, gb)), f_aff.eq(saturate(rounded, gb) != rounded)]
        return {"d": delay_line(m, d_state, L - 4, f"d_out{l}")[L - 4],
                "g_cur": delay_line(m, cur, L - 5, f"g_cur_out{l}")[L - 5],
                "g_p": g_p,
                "sat_lif": delay_line(m, f_lif, L - 4, f"sat_lif_out{l}")[L - 4],
                "sat_current": delay_line(m, f_cur, L - 5, f"sat_cur_out{l}")[L - 5],
                "sat_affine": f_aff}

    def _recurrence_sum(self, leak_prod, direct, spike, dither, leak_shift):
        """``direct + (0 if spike else round_ls(leak_prod))``. With ``nearest`` or ``floor``
        rounding, ``round_ls`` is ``((p >> (s-1)) + rnd) >> 1`` (``p`` for ``s = 0``), i.e.
        ``(p >> s) + (bit s-1 of p) * rnd``: the rounding's increment rides as the carry-in of
        the one add with ``direct`` (two serial adds were the recurrence's 71-80 generic levels,
        docs/synthesis.md), ``leak_shift``: ``s - 1`` (0 for ``s = 0``) and ``s == 0``, registered
        (``s`` is held for the whole stage and first used three cycles after a step enters);
        ``stochastic`` keeps :func:`gen.arith.grad_round`."""
        if self.rounding == "stochastic":
            return direct + Mux(spike, 0, grad_round(leak_prod, self.leak_shift, self.rounding, dither))
        shift_m1, shift_zero = leak_shift
        partial = (leak_prod.as_signed() >> shift_m1).as_signed()      # p >> (s-1), or p
        rnd = 1 if self.rounding == "nearest" else 0
        addend = Mux(spike, 0, Mux(shift_zero, partial, partial >> 1))
        carry = ~spike & ~shift_zero & partial[0] & rnd
        w = max(len(direct), len(leak_prod)) + 2
        a = Cat(carry, direct.as_signed()[:w] if len(direct) >= w else _sext(direct, w))
        b = Cat(carry, _sext(addend, w))
        return ((a + b)[1:w + 1]).as_signed()


def _sext(v, w):
    """``v`` (signed) sign-extended to ``w`` bits."""
    v = v.as_signed()
    return Cat(v, *([v[-1]] * (w - len(v))))


def delay_line(m: Module, value, n: int, name: str) -> list:
    """``[value, value 1 cycle ago, ..., value n cycles ago]``: ``n`` registers."""
    taps = [value]
    for i in range(1, n + 1):
        r = Signal(Value.cast(value).shape(), name=f"{name}_z{i}")
        m.d.sync += r.eq(taps[-1])
        taps.append(r)
    return taps
