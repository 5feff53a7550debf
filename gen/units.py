"""Datapath units of the accelerator, one ``wiring.Component`` each.

Vectors of ``lanes`` values are flat signals, lane 0 in the low bits (``gen.arith.lane``).
The arithmetic is docs/numerics.md's; each unit's docstring says which step it implements
and its timing. The control (loop counters, line-buffer addresses) is in the engines
(:mod:`gen.engines`), the host interface and memories in :mod:`gen.top`.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import lane, rshift, rshift_partial, rshift_round, saturate, wrap

__all__ = ["Requantiser", "SpikeTree", "MacCluster", "MacPEArray", "AdderArray", "MaxPoolLanes",
           "AffineLanes", "LIFLanes", "SHIFT_BITS"]

#: Width of every shift field of the descriptor.
SHIFT_BITS = 6


def _reject(owner, rule: str) -> None:
    """Refuse to build ``owner``: raise ValueError naming its class. A rejected component is
    never "unused", so Amaranth's UnusedElaboratable warning is silenced for it."""
    owner._MustUse__silence = True
    raise ValueError(f"{type(owner).__name__}: {rule}")


def _check(owner, name: str, value: int, minimum: int = 1) -> int:
    """Validate a parameter before the component is built."""
    if not isinstance(value, int) or value < minimum:
        _reject(owner, f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class Requantiser(wiring.Component):
    """Re-quantisation of ``lanes`` values: ``sat_out(rshift(v, shift, rnd))`` (numerics
    steps 1, 4). Combinational.

    Ports: ``i`` (lanes x in_width, signed), ``shift``, ``rnd``; ``o`` (lanes x out_width).
    """

    def __init__(self, lanes: int, in_width: int, out_width: int):
        self.lanes = _check(self, "lanes", lanes)
        self.in_width = _check(self, "in_width", in_width, 2)
        self.out_width = _check(self, "out_width", out_width, 2)
        super().__init__({
            "i": In(lanes * in_width), "shift": In(SHIFT_BITS), "rnd": In(1),
            "o": Out(lanes * out_width),
        })

    def elaborate(self, platform):
        m = Module()
        outs = [saturate(rshift(lane(self.i, l, self.in_width), self.shift, self.rnd), self.out_width)
                [:self.out_width] for l in range(self.lanes)]
        m.d.comb += self.o.eq(Cat(*outs))
        return m


class SpikeTree(wiring.Component):
    """Cluster 1: ``lanes`` spike PEs and an adder tree (numerics step 1).

    Lane ``l`` is one input channel: its PE passes its weight when its spike is 1 (no
    multiplier); the tree sums the lanes into the one output value the cluster accumulates
    (output-stationary). Each cycle with ``valid``:
    ``acc = wrap_Ab((0 if first else acc) + sum_l (w[l] if spike[l] else 0))``; ``acc`` is
    registered (the sum shows one cycle after the last input).
    Ports: ``valid``, ``first``, ``spikes`` (lanes bits), ``weights`` (lanes x Wb); ``acc`` (Ab).
    """

    def __init__(self, lanes: int, weight_width: int, acc_width: int):
        self.lanes = _check(self, "lanes", lanes)
        self.weight_width = _check(self, "weight_width", weight_width, 2)
        self.acc_width = _check(self, "acc_width", acc_width, 2)
        if acc_width < weight_width:
            _reject(self, f"acc_width ({acc_width}) must be >= weight_width ({weight_width})")
        super().__init__({
            "valid": In(1), "first": In(1), "spikes": In(lanes), "weights": In(lanes * weight_width),
            "acc": Out(acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        wb, ab = self.weight_width, self.acc_width
        terms = [Mux(self.spikes[l], lane(self.weights, l, wb), 0) for l in range(self.lanes)]
        while len(terms) > 1:   # a balanced tree: exact sums, one bit wider per level
            pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
            terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
        total = terms[0]
        base = Mux(self.first, 0, self.acc.as_signed())
        with m.If(self.valid):
            m.d.sync += self.acc.eq(wrap(base + total, ab))
        return m


class MacCluster(wiring.Component):
    """Cluster 2 or 3: ``lanes`` multiplier PEs packed as ``Px`` output columns x ``Pk`` rank
    lanes (``pack = log2 Pk``, ``Px = lanes / Pk``), with per-PE scratchpads when
    weight-stationary (numerics steps 2, 3).

    PE ``l`` computes column slice ``s = l >> pack`` of a block of ``Px`` output columns and
    output channel lane ``c = l & (Pk - 1)``. Timing, by cycle of one step:

    * issue: ``w_rd`` reads scratchpad weight entry ``w_addr``, ``p_rd`` partial-sum entry
      ``p_addr`` (their data is used in the next cycle);
    * execute (the next cycle), with ``valid``: PE ``l`` multiplies the operand of column
      ``s + d`` (``d`` = -1, 0, +1 for ``shift`` = 1, 0, 2: the 1x3 taps), lane ``jl``, taken
      from ``centre`` (a line-buffer word: ``Px`` columns x ``Pk`` channels) or, past the
      block's edge, from ``neighbour`` (the adjacent block), by its weight: lane
      ``(wsel << pack) | c`` of ``weights`` (a weight-buffer word holds ``Px`` steps of ``Pk``
      weights) or, with ``use_spad``, the scratchpad entry read at issue. ``w_wr`` stores this
      cycle's routed weights in entry ``w_wr_addr``.
      ``acc[l] = wrap_Ab((first ? (from_psum ? psum[l] : 0) : acc[l]) + w * op)``;
    * the cycle after: ``acc`` holds the result; ``p_wr`` stores ``acc`` in partial-sum entry
      ``p_wr_addr``.

    ``spad_weights``/``spad_psums``: entries per PE (0: no scratchpads, output-stationary).
    Reads are transparent to writes of the same cycle.

    ``pipelined = True`` (:attr:`latency` 3 instead of 1): the execute cycle above is cut in
    three, so that no path holds more than one of the block-RAM operand read with the lane
    routing, the multiply, and the accumulate: the routed operands and weights are registered
    (stage 1), their products registered (stage 2), the accumulate follows (stage 3);
    ``valid``, ``first`` and ``from_psum`` travel beside them, and the partial-sum read
    (``p_rd``, ``p_addr``) is delayed by ``latency - 1`` cycles inside the cluster, so that its
    data meets the accumulate as before. ``acc`` holds a step's result :attr:`latency` cycles
    after its execute cycle (``p_wr`` then, as above). Steps may come on consecutive cycles;
    a partial sum written by ``p_wr`` is seen by a read issued (``p_rd``) in the same cycle or
    later, as unpipelined. The sums are bit-identical, only later. Weight-scratchpad reads and
    writes keep the execute cycle's timing.
    """

    #: :attr:`latency` of a pipelined cluster
    PIPELINED_LATENCY = 3

    def __init__(self, lanes: int, weight_width: int, operand_width: int, acc_width: int,
                 spad_weights: int = 0, spad_psums: int = 0, pipelined: bool = False):
        self.lanes = _check(self, "lanes", lanes)
        if not isinstance(pipelined, bool):
            _reject(self, f"pipelined must be a bool, got {pipelined!r}")
        self.pipelined = pipelined
        #: cycles from a step's execute cycle to its result on ``acc``
        self.latency = self.PIPELINED_LATENCY if pipelined else 1
        if lanes & (lanes - 1):
            _reject(self, f"lanes must be a power of two, got {lanes}")
        self.weight_width = _check(self, "weight_width", weight_width, 2)
        self.operand_width = _check(self, "operand_width", operand_width, 2)
        self.acc_width = _check(self, "acc_width", acc_width, 2)
        _check(self, "spad_weights", spad_weights, 0)
        _check(self, "spad_psums", spad_psums, 0)
        if (spad_weights == 0) != (spad_psums == 0):
            _reject(self, "spad_weights and spad_psums are both 0 (no scratchpads) or both >= 1")
        self.spad_weights, self.spad_psums = spad_weights, spad_psums
        lp = max(lanes.bit_length() - 1, 1)
        ab = lambda n: max((n - 1).bit_length(), 1)  # noqa: E731
        super().__init__({
            "pack": In(4), "valid": In(1), "first": In(1), "from_psum": In(1),
            "jl": In(lp), "shift": In(2), "centre": In(lanes * operand_width),
            "neighbour": In(lanes * operand_width),
            "wsel": In(lp), "weights": In(lanes * weight_width), "use_spad": In(1),
            "w_rd": In(1), "w_addr": In(ab(max(spad_weights, 1))),
            "w_wr": In(1), "w_wr_addr": In(ab(max(spad_weights, 1))),
            "p_rd": In(1), "p_addr": In(ab(max(spad_psums, 1))),
            "p_wr": In(1), "p_wr_addr": In(ab(max(spad_psums, 1))),
            "acc": Out(lanes * acc_width),
        })

    def elaborate(self, platform):
        m = Module()
        P, wb, qb, ab = self.lanes, self.weight_width, self.operand_width, self.acc_width
        lp = P.bit_length() - 1
        ops = [[] for _ in range(P)]      # ops[l][v*3 + shift]: operand of PE l at pack v
        wts = [[] for _ in range(P)]
        for v in range(lp + 1):
            pk, px = 1 << v, P >> v
            jl = self.jl[:v] if v else 0
            ws = self.wsel[:lp - v] if lp - v else 0
            for l in range(P):
                s, c = l >> v, l & (pk - 1)
                for d in (0, -1, 1):
                    col = s + d
                    src = self.centre if 0 <= col < px else self.neighbour
                    base = (col % px) << v
                    lanes_ = src[base * qb:(base + pk) * qb]
                    ops[l].append(lanes_.word_select(jl, qb) if v else lanes_)
                cand = Cat(*[self.weights[((k << v) | c) * wb:(((k << v) | c) + 1) * wb]
                             for k in range(px)])
                wts[l].append(cand.word_select(ws, wb) if lp - v else cand)
        routed_w = Signal(P * wb)
        operand = Signal(P * qb)
        for l in range(P):
            by_pack_op = [Array(ops[l][3 * v:3 * v + 3])[self.shift] for v in range(lp + 1)]
            m.d.comb += [operand[l * qb:(l + 1) * qb].eq(Array(by_pack_op)[self.pack]),
                         routed_w[l * wb:(l + 1) * wb].eq(Array(wts[l])[self.pack])]
        weights = routed_w
        psum = Const(0, P * ab)
        p_rd, p_addr = self._delayed(m, "p_rd", self.p_rd), self._delayed(m, "p_addr", self.p_addr)
        if self.spad_weights:
            m.submodules.spad_w = spad_w = Memory(shape=unsigned(P * wb), depth=self.spad_weights, init=[])
            m.submodules.spad_p = spad_p = Memory(shape=unsigned(P * ab), depth=self.spad_psums, init=[])
            ww = spad_w.write_port()
            wr = spad_w.read_port(transparent_for=(ww,))
            pw = spad_p.write_port()
            pr = spad_p.read_port(transparent_for=(pw,))
            m.d.comb += [wr.en.eq(self.w_rd), wr.addr.eq(self.w_addr),
                         ww.en.eq(self.w_wr), ww.addr.eq(self.w_wr_addr), ww.data.eq(routed_w),
                         pr.en.eq(p_rd), pr.addr.eq(p_addr),
                         pw.en.eq(self.p_wr), pw.addr.eq(self.p_wr_addr), pw.data.eq(self.acc)]
            weights = Mux(self.use_spad, wr.data, routed_w)
            psum = pr.data
        valid, first, from_psum = (self._delayed(m, k, getattr(self, k))
                                   for k in ("valid", "first", "from_psum"))
        if self.pipelined:    # stage 1: the routed operands and weights
            op_r, w_r = Signal(P * qb, name="operand_r"), Signal(P * wb, name="weights_r")
            m.d.sync += [op_r.eq(operand), w_r.eq(weights)]
            operand, weights = op_r, w_r
        for l in range(P):
            acc = self.acc[l * ab:(l + 1) * ab]
            product = Signal(signed(wb + qb), name=f"product{l}")
            prod = lane(weights, l, wb) * lane(operand, l, qb)
            if self.pipelined:    # stage 2: the product
                m.d.sync += product.eq(prod)
            else:
                m.d.comb += product.eq(prod)
            base = Mux(first, Mux(from_psum, lane(psum, l, ab), 0), acc.as_signed())
            with m.If(valid):
                m.d.sync += acc.eq(wrap(base + product, ab))
        return m

    def _delayed(self, m, name, value):
        """``value`` ``latency - 1`` cycles later (itself unpipelined): a control meeting the
        accumulate stage."""
        for k in range(self.latency - 1):
            reg = Signal.like(value, name=f"{name}_d{k + 1}")
            m.d.sync += reg.eq(value)
            value = reg
        return value


class MacPEArray(wiring.Component):
    """Cluster 4: ``lanes`` multiplier PEs, one output channel each, sharing one broadcast
    operand (numerics step 5), output-stationary; or (``per_lane``) an operand per lane (the
    backward core-stage engine's packed and straddled passes, several pixels in one pass).

    Each cycle with ``valid``: ``acc[l] = wrap_Ab((0 if first else acc[l]) + w[l] * operand)``;
    ``acc`` registered as in :class:`SpikeTree`. Ports: ``valid``, ``first``, ``operand``
    (Qb, signed), ``weights`` (lanes x Wb); ``acc`` (lanes x Ab).

    Timing: ``acc`` holds the sum of the step presented :attr:`latency` cycles before (steps
    may come on consecutive cycles). ``pipelined = False``: latency 1, the multiply and the
    ``Ab``-bit accumulate in one cycle. ``pipelined = True``: latency 3, the product
    registered (stage 1), the sum's lower :attr:`lo_bits` bits added with their carry
    registered (stage 2), the upper bits added with the carry a cycle later (stage 3), so
    that no path holds more than the multiply or a half-width add; ``acc`` is the upper
    half beside the lower half delayed one cycle (the same step's). The sums are
    bit-identical, only later.
    """

    def __init__(self, lanes: int, weight_width: int, operand_width: int, acc_width: int,
                 pipelined: bool = False, per_lane: bool = False):
        self.lanes = _check(self, "lanes", lanes)
        self.weight_width = _check(self, "weight_width", weight_width, 2)
        self.operand_width = _check(self, "operand_width", operand_width, 2)
        self.acc_width = _check(self, "acc_width", acc_width, 2)
        if not isinstance(pipelined, bool):
            _reject(self, f"pipelined must be a bool, got {pipelined!r}")
        self.pipelined = pipelined
        if not isinstance(per_lane, bool):
            _reject(self, f"per_lane must be a bool, got {per_lane!r}")
        #: ``operand`` holds one operand per lane (``lanes x operand_width``) instead of one
        #: broadcast to every lane
        self.per_lane = per_lane
        #: cycles from a step's inputs to its sum on ``acc``
        self.latency = 3 if pipelined else 1
        #: bits of the lower half of a pipelined accumulate
        self.lo_bits = (acc_width + 1) // 2
        super().__init__({
            "valid": In(1), "first": In(1), "operand": In(operand_width * (lanes if per_lane else 1)),
            "weights": In(lanes * weight_width), "acc": Out(lanes * acc_width),
        })

    def _operand(self, l: int):
        """Lane ``l``'s operand (signed): its own (``per_lane``) or the broadcast one."""
        if self.per_lane:
            return lane(self.operand, l, self.operand_width).as_signed()
        return self.operand.as_signed()

    def elaborate(self, platform):
        m = Module()
        ab, wb = self.acc_width, self.weight_width
        if self.pipelined:
            return self._pipelined(m)
        for l in range(self.lanes):
            acc = self.acc[l * ab:(l + 1) * ab]
            product = Signal(signed(wb + self.operand_width), name=f"product{l}")
            m.d.comb += product.eq(lane(self.weights, l, wb) * self._operand(l))
            base = Mux(self.first, 0, acc.as_signed())
            with m.If(self.valid):
                m.d.sync += acc.eq(wrap(base + product, ab))
        return m

    def _pipelined(self, m):
        ab, wb, lo = self.acc_width, self.weight_width, self.lo_bits
        hi = ab - lo
        v1, first1, v2, first2 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(self.valid), first1.eq(self.first), v2.eq(v1), first2.eq(first1)]
        for l in range(self.lanes):
            # stage 1: the product, sign-extended to the sum's width
            product = Signal(signed(ab), name=f"product{l}")
            with m.If(self.valid):
                m.d.sync += product.eq(lane(self.weights, l, wb) * self._operand(l))
            # stage 2: the lower half and its carry; the product's upper bits wait beside it
            sum_lo, carry = Signal(lo, name=f"sum_lo{l}"), Signal(name=f"carry{l}")
            prod_hi = Signal(hi, name=f"prod_hi{l}")
            with m.If(v1):
                m.d.sync += [Cat(sum_lo, carry).eq(Mux(first1, 0, sum_lo) + product[:lo]),
                             prod_hi.eq(product[lo:])]
            # stage 3: the upper half; the lower half of the same step delayed beside it
            sum_hi, lo_out = Signal(hi, name=f"sum_hi{l}"), Signal(lo, name=f"lo_out{l}")
            with m.If(v2):
                m.d.sync += [sum_hi.eq(Mux(first2, 0, sum_hi) + prod_hi + carry), lo_out.eq(sum_lo)]
            m.d.comb += self.acc[l * ab:(l + 1) * ab].eq(Cat(lo_out, sum_hi))
        return m


class AdderArray(wiring.Component):
    """Adder array merging clusters 2 and 3 for PTT (numerics step 4): ``m = a2 + a3`` in
    ``acc_width + 1`` bits, so it never wraps. Combinational.
    Ports: ``a``, ``b`` (lanes x Ab); ``o`` (lanes x (Ab+1))."""

    def __init__(self, lanes: int, acc_width: int):
        self.lanes = _check(self, "lanes", lanes)
        self.acc_width = _check(self, "acc_width", acc_width, 2)
        super().__init__({"a": In(lanes * acc_width), "b": In(lanes * acc_width),
                          "o": Out(lanes * (acc_width + 1))})

    def elaborate(self, platform):
        m = Module()
        ab = self.acc_width
        m.d.comb += self.o.eq(Cat(*[(lane(self.a, l, ab) + lane(self.b, l, ab))[:ab + 1]
                                    for l in range(self.lanes)]))
        return m


class MaxPoolLanes(wiring.Component):
    """2x2 max-pool over successive inputs (numerics step 6) and the arg-max the backward
    pass keeps (numerics, "What the forward pass keeps").

    ``o`` (combinational) is ``i`` when ``first``, else ``max(i, held)``, where ``held`` is
    ``o`` registered on every ``valid`` cycle. Feed the four pixels of a block with ``first``
    on the first; ``o`` is the block's maximum while the fourth is presented. ``arg``
    (combinational, 2 bits per lane) is ``position`` where ``o`` took ``i`` and the held
    arg-max otherwise: fed the block's pixels in raster order with ``position`` 0..3, it is
    the position of the block's first maximum (a later pixel wins only when strictly
    greater, as ``torch.argmax``).
    Ports: ``valid``, ``first``, ``i`` (lanes x Ab), ``position`` (2); ``o`` (lanes x Ab),
    ``arg`` (lanes x 2).
    """

    def __init__(self, lanes: int, width: int):
        self.lanes = _check(self, "lanes", lanes)
        self.width = _check(self, "width", width, 2)
        super().__init__({"valid": In(1), "first": In(1), "i": In(lanes * width),
                          "position": In(2), "o": Out(lanes * width), "arg": Out(lanes * 2)})

    def elaborate(self, platform):
        m = Module()
        b = self.width
        held = Signal(self.lanes * b)
        held_arg = Signal(self.lanes * 2)
        outs, args = [], []
        for l in range(self.lanes):
            x, h = lane(self.i, l, b), lane(held, l, b)
            take = self.first | (x > h)
            outs.append(Mux(take, x, h)[:b])
            args.append(Mux(take, self.position, held_arg[2 * l:2 * l + 2]))
        m.d.comb += [self.o.eq(Cat(*outs)), self.arg.eq(Cat(*args))]
        with m.If(self.valid):
            m.d.sync += [held.eq(self.o), held_arg.eq(self.arg)]
        return m


class AffineLanes(wiring.Component):
    """Folded BatchNorm and residual (numerics steps 7, 8), pipelined:
    ``cur = sat_Mb(rshift(p * scale, shift, rnd) + bias)``, then, if ``use_residual``,
    ``cur = sat_Mb(cur + residual)``.

    Ports: ``p`` (lanes x Ab), ``scale`` (lanes x Sb), ``bias``, ``residual`` (lanes x Mb),
    ``shift``, ``rnd``, ``use_residual``; ``o`` (lanes x Mb).

    Timing: a new set of inputs every cycle; ``o`` is registered and shows the result of the
    inputs of :attr:`LATENCY` cycles before. Stages (one register each): the product
    ``p * scale``; the barrel shift (:func:`gen.arith.rshift_partial`); rounding, bias and
    saturation; residual and saturation. ``shift``, ``rnd`` and ``use_residual`` are read in
    the stage that uses them: they are settings, held while values are in flight (the
    descriptor's fields, constant over a tile). Registers load every cycle (no enable): the
    owner keeps the valid bits.
    """

    #: cycles from the inputs to ``o``
    LATENCY = 4

    def __init__(self, lanes: int, acc_width: int, scale_width: int, membrane_width: int):
        self.lanes = _check(self, "lanes", lanes)
        self.acc_width, self.scale_width, self.membrane_width = acc_width, scale_width, membrane_width
        super().__init__({
            "p": In(lanes * acc_width), "scale": In(lanes * scale_width),
            "bias": In(lanes * membrane_width), "residual": In(lanes * membrane_width),
            "shift": In(SHIFT_BITS), "rnd": In(1), "use_residual": In(1),
            "o": Out(lanes * membrane_width),
        })

    def elaborate(self, platform):
        m = Module()
        ab, sb, mb = self.acc_width, self.scale_width, self.membrane_width
        outs = []
        for l in range(self.lanes):
            prod = Signal(signed(ab + sb), name=f"prod{l}")          # exact
            partial = Signal(signed(ab + sb), name=f"partial{l}")
            cur = Signal(signed(mb), name=f"cur{l}")
            o = Signal(signed(mb), name=f"o{l}")
            bias1, bias2 = (Signal(signed(mb), name=f"bias{l}_{k}") for k in (1, 2))
            res1, res2, res3 = (Signal(signed(mb), name=f"res{l}_{k}") for k in (1, 2, 3))
            m.d.sync += [prod.eq(lane(self.p, l, ab) * lane(self.scale, l, sb)),
                         bias1.eq(lane(self.bias, l, mb)), res1.eq(lane(self.residual, l, mb)),
                         partial.eq(rshift_partial(prod, self.shift)), bias2.eq(bias1), res2.eq(res1),
                         cur.eq(saturate(self._round_add(partial, bias2), mb)),
                         res3.eq(res2),
                         o.eq(Mux(self.use_residual, saturate(cur + res3, mb), cur))]
            outs.append(o)
        m.d.comb += self.o.eq(Cat(*outs))
        return m

    def _round_add(self, partial, bias):
        """``rshift_round(partial, shift, rnd) + bias``, before the saturation to ``Mb`` bits,
        as one narrow add. ``(v + rnd) >> 1`` is ``(v >> 1) + (rnd & v[0])``, so the
        rounding's increment rides as the carry-in of the add with the bias (``Cat(c, a) +
        Cat(c, b)``, bit 0 dropped); and the shifted product is first clamped to ``Mb + 2``
        bits: past them the sum with an ``Mb``-bit bias is out of the ``Mb``-bit range on the
        same side whether clamped or not, so the saturated result is the same. Two serial
        adds as wide as the product were one path with the saturation (64 generic levels,
        docs/synthesis.md)."""
        mb = self.membrane_width
        no_shift = self.shift == 0
        half = Mux(no_shift, partial, partial >> 1).as_signed()
        carry = ~no_shift & self.rnd & partial[0]
        hb = mb + 2
        if len(half) > hb:
            top = half[hb - 1:]
            fits = (top == 0) | (top == (1 << len(top)) - 1)
            half = Mux(fits, half[:hb].as_signed(), Mux(half[-1], Const(-(1 << (hb - 1)), signed(hb)),
                                            Const((1 << (hb - 1)) - 1, signed(hb)))).as_signed()
        w = max(len(half), len(bias)) + 1
        a = Cat(carry, half, *([half[-1]] * (w - len(half))))
        b = Cat(carry, bias.as_signed(), *([bias[-1]] * (w - len(bias))))
        return (a + b)[1:w + 1].as_signed()


class LIFLanes(wiring.Component):
    """LIF array (numerics step 9), pipelined: ``kept = 0 if spiked_prev else u_prev``,
    ``u = sat_Mb(rshift(kept * leak_mul, leak_shift, rnd) + cur)``, ``s = u > threshold``.

    ``spiked_prev`` is recomputed as ``u_prev > threshold`` (the threshold is constant over a
    tile, so this equals the stored spike); pass ``u_prev = 0`` at timestep 0. Beside the
    spike, the surrogate-window bit the backward pass keeps (numerics, "What the forward pass
    keeps"): ``m = window_lo < u < window_hi`` (strict, signed, on the saturated ``u``).
    Ports: ``cur``, ``u_prev`` (lanes x Mb), ``threshold`` (Mb, signed), ``window_lo``,
    ``window_hi`` (Mb + 1 bits, signed: a bound just outside the membrane's range, e.g.
    ``hi = 2^(Mb-1)``, is exact), ``leak_mul`` (Lb, unsigned), ``leak_shift``, ``rnd``; ``u``
    (lanes x Mb), ``s``, ``m`` (lanes).

    Timing: a neuron's ``u_prev`` in cycle 0, its ``cur`` in cycle :attr:`CUR_OFFSET` (the
    leak takes that long: ``kept`` (the threshold compare), product, barrel shift, rounding,
    one register each); the add of ``cur`` and its saturation registered (``u`` one cycle
    on), then the threshold's compare and the window's two compares beside it: ``u``, ``s``
    and ``m`` are registered and show the neuron in cycle :attr:`LATENCY`. A new neuron every
    cycle. ``threshold``, ``window_lo``, ``window_hi``, ``leak_mul``,
    ``leak_shift`` and ``rnd`` are settings, held while values are in flight; registers load
    every cycle (no enable).
    """

    #: cycles from ``u_prev`` to ``u``/``s``: :attr:`CUR_OFFSET`, the add and saturation with
    #: ``cur``, the compares (the add, the saturation and the compares were one 62-64-level
    #: path, docs/synthesis.md)
    LATENCY = 6
    #: cycles from ``u_prev`` to ``cur``
    CUR_OFFSET = 4

    def __init__(self, lanes: int, membrane_width: int, leak_width: int):
        self.lanes = _check(self, "lanes", lanes)
        self.membrane_width, self.leak_width = membrane_width, leak_width
        super().__init__({
            "cur": In(lanes * membrane_width), "u_prev": In(lanes * membrane_width),
            "threshold": In(membrane_width), "window_lo": In(membrane_width + 1),
            "window_hi": In(membrane_width + 1), "leak_mul": In(leak_width),
            "leak_shift": In(SHIFT_BITS), "rnd": In(1),
            "u": Out(lanes * membrane_width), "s": Out(lanes), "m": Out(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        mb, lb = self.membrane_width, self.leak_width
        thr = self.threshold.as_signed()
        lo, hi = self.window_lo.as_signed(), self.window_hi.as_signed()
        us, ss, ms = [], [], []
        for l in range(self.lanes):
            u_prev = lane(self.u_prev, l, mb)
            # registered: the compare with the threshold (a descriptor field) was on one path
            # with the leak's multiply (70 generic levels, docs/synthesis.md)
            kept = Signal(signed(mb), name=f"kept{l}")
            prod = Signal(signed(mb + lb + 1), name=f"leak_prod{l}")
            partial = Signal(signed(mb + lb + 1), name=f"leak_partial{l}")
            leaked = Signal(signed(mb + lb + 1), name=f"leaked{l}")
            new_u = Signal(signed(mb), name=f"new_u{l}")
            u = Signal(signed(mb), name=f"u{l}")
            s = Signal(name=f"s{l}")
            win = Signal(name=f"m{l}")
            m.d.sync += [kept.eq(Mux(u_prev > thr, 0, u_prev)), prod.eq(kept * self.leak_mul),
                         partial.eq(rshift_partial(prod, self.leak_shift)),
                         leaked.eq(rshift_round(partial, self.leak_shift, self.rnd)),
                         new_u.eq(saturate(leaked + lane(self.cur, l, mb), mb)),
                         u.eq(new_u), s.eq(new_u > thr), win.eq((new_u > lo) & (new_u < hi))]
            us.append(u)
            ss.append(s)
            ms.append(win)
        m.d.comb += [self.u.eq(Cat(*us)), self.s.eq(Cat(*ss)), self.m.eq(Cat(*ms))]
        return m
