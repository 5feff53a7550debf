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
    update of the previous cycle. Host side: ``rd_en``/``rd_addr`` read an entry
    (``rd_data`` one cycle later) on the same port, only while no update is presented.

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
            kept = saturate(total, ab) if self.saturating else wrap(total, ab)
            sums.append(kept[:ab])
            flags.append(v1 & (kept != total) if self.saturating else 0)
        m.d.comb += [wr.en.eq(v1), wr.addr.eq(addr1), wr.data.eq(Cat(*sums)),
                     self.saturated.eq(Cat(*flags))]
        return m
