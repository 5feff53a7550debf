"""The weight-gradient accumulator: read-modify-write sums of ``lanes`` products per entry."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..arith import lane, saturate, wrap
from ..units import _check, _reject

__all__ = ["WeightGradientAccumulator"]


class WeightGradientAccumulator(wiring.Component):
    """``entries`` words of ``lanes`` weight-gradient sums, updated by read-modify-write, one
    update per cycle (docs/numerics.md, backward steps 5-7's ``dW +=`` terms and the batch
    accumulator).

    ``saturating = False``: a tile's sums, ``sum = wrap_Acc(stored + product)`` (the
    configuration sizes ``gradients.wgrad_tile`` so that a tile cannot wrap);
    ``saturating = True``: the batch accumulator, ``sum = sat_Acc(stored + product)`` with
    ``saturated`` raised per lane that clipped (counted by the engine).

    Timing: an update presented with ``valid`` (``addr``, ``product``, ``clear``) reads its
    entry in that cycle; the next cycle adds (``clear``: the stored value counts as 0, the
    first term of a new sum) and writes. The read is transparent to that write, so updates of
    the same entry may follow each other on consecutive cycles. ``saturated`` belongs to the
    update of the previous cycle. The tile's sums (``saturating = False``) are kept in two
    halves whose carry is registered: the lower half as above, the upper half read in the
    second cycle and added and written in the third (:meth:`_elaborate_split`). Host side:
    ``rd_en``/``rd_addr`` read an entry (``rd_data`` one cycle later) on the same ports, only
    while no update is presented nor was the cycle before (the upper half's read).

    Ports: ``valid``, ``clear``, ``addr``, ``product`` (lanes x product_width, signed);
    ``rd_en``, ``rd_addr``; out ``rd_data`` (lanes x acc_width), ``saturated`` (lanes).
    """

    def __init__(self, lanes: int, product_width: int, acc_width: int, entries: int,
                 saturating: bool = False):
        self.lanes = _check(self, "lanes", lanes)
        self.product_width = _check(self, "product_width", product_width, 2)
        self.acc_width = _check(self, "acc_width", acc_width, 2)
        self.entries = _check(self, "entries", entries, 1)
        if acc_width < product_width:
            _reject(self, f"acc_width ({acc_width}) must be >= product_width ({product_width})")
        self.saturating = bool(saturating)
        abits = max((entries - 1).bit_length(), 1)
        super().__init__({
            "valid": In(1), "clear": In(1), "addr": In(abits),
            "product": In(lanes * product_width),
            "rd_en": In(1), "rd_addr": In(abits),
            "rd_data": Out(lanes * acc_width), "saturated": Out(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        if not self.saturating:
            return self._elaborate_split(m)
        P, pw, ab = self.lanes, self.product_width, self.acc_width
        m.submodules.sums = mem = Memory(shape=unsigned(P * ab), depth=self.entries, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))
        m.d.comb += [rd.en.eq(self.valid | self.rd_en), rd.addr.eq(Mux(self.valid, self.addr, self.rd_addr)),
                     self.rd_data.eq(rd.data)]
        # the update's second cycle: add and write
        v1, clear1 = Signal(), Signal()
        addr1 = Signal.like(self.addr)
        prod1 = Signal(P * pw)
        m.d.sync += [v1.eq(self.valid), clear1.eq(self.clear), addr1.eq(self.addr), prod1.eq(self.product)]
        sums, flags = [], []
        for l in range(P):
            total = Signal(signed(ab + 1), name=f"total{l}")
            m.d.comb += total.eq(Mux(clear1, 0, lane(rd.data, l, ab)) + lane(prod1, l, pw))
            kept = saturate(total, ab)
            sums.append(kept[:ab])
            flags.append(v1 & (kept != total))
        m.d.comb += [wr.en.eq(v1), wr.addr.eq(addr1), wr.data.eq(Cat(*sums)),
                     self.saturated.eq(Cat(*flags))]
        return m

    def _elaborate_split(self, m):
        """The tile's wrapping sums with the carry chain cut in two: the lower ``acc_width -
        acc_width // 2`` bits of every lane in one memory, added and written in the update's
        second cycle (their carries registered), the upper bits in another, read in the second
        cycle and added with the carry and written in the third. Each half is its own
        read-modify-write loop (half the adder of the whole), and each is transparent: the
        upper half's read for an update is in the cycle of the previous update's upper write.
        ``wrap(stored + product)`` concatenated from the halves is the whole sum's exactly."""
        P, pw, ab = self.lanes, self.product_width, self.acc_width
        lo_w = ab - ab // 2
        hi_w = ab - lo_w
        m.submodules.sums_lo = mem_lo = Memory(shape=unsigned(P * lo_w), depth=self.entries, init=[])
        m.submodules.sums_hi = mem_hi = Memory(shape=unsigned(P * hi_w), depth=self.entries, init=[])
        wr_lo, wr_hi = mem_lo.write_port(), mem_hi.write_port()
        rd_lo, rd_hi = mem_lo.read_port(transparent_for=(wr_lo,)), mem_hi.read_port(transparent_for=(wr_hi,))
        v1, clear1, v2, clear2 = Signal(), Signal(), Signal(), Signal()
        addr1, addr2 = Signal.like(self.addr), Signal.like(self.addr)
        prod1 = Signal(P * pw)
        carry2, upper2 = Signal(P), Signal(P * hi_w)
        m.d.sync += [v1.eq(self.valid), clear1.eq(self.clear), addr1.eq(self.addr), prod1.eq(self.product),
                     v2.eq(v1), clear2.eq(clear1), addr2.eq(addr1)]
        m.d.comb += [rd_lo.en.eq(self.valid | self.rd_en), rd_lo.addr.eq(Mux(self.valid, self.addr, self.rd_addr)),
                     rd_hi.en.eq(v1 | self.rd_en), rd_hi.addr.eq(Mux(v1, addr1, self.rd_addr))]
        lows, highs, rd_lanes = [], [], []
        for l in range(P):
            wide = Signal(signed(ab), name=f"product{l}")          # sign-extended to the sum's width
            m.d.comb += wide.eq(lane(prod1, l, pw).as_signed())
            low = Signal(lo_w + 1, name=f"low{l}")
            m.d.comb += low.eq(Mux(clear1, 0, lane(rd_lo.data, l, lo_w).as_unsigned()) + wide[:lo_w])
            lows.append(low[:lo_w])
            # the product's upper bits and the lower half's carry, for the third cycle
            m.d.sync += [carry2[l].eq(low[lo_w]), upper2.word_select(l, hi_w).eq(wide[lo_w:])]
            high = Signal(hi_w, name=f"high{l}")
            m.d.comb += high.eq(Mux(clear2, 0, lane(rd_hi.data, l, hi_w).as_unsigned())
                                + upper2.word_select(l, hi_w) + carry2[l])
            highs.append(high)
            rd_lanes.append(Cat(lane(rd_lo.data, l, lo_w), lane(rd_hi.data, l, hi_w)))
        m.d.comb += [wr_lo.en.eq(v1), wr_lo.addr.eq(addr1), wr_lo.data.eq(Cat(*lows)),
                     wr_hi.en.eq(v2), wr_hi.addr.eq(addr2), wr_hi.data.eq(Cat(*highs)),
                     self.rd_data.eq(Cat(*rd_lanes)), self.saturated.eq(0)]
        return m
