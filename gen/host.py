"""The host interface of the accelerator: address decode, control and streaming registers,
the descriptor and backward-stage registers, the host's ports of the buffer regions, the
performance-counter bank, the registered read mux and the ``event`` line
(docs/host_interface.md; the address map is :func:`gen.hostmap.host_map`)."""

from __future__ import annotations

from typing import Mapping

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .backward.stage_layout import STAGE_FIELDS, STAGE_LAYOUT
from .config import HardwareConfig, log2
from .descriptor import DESCRIPTOR_LAYOUT
from .hostmap import (BACKWARD_COUNTER_BASE, BACKWARD_COUNTER_NAMES, COUNTER_BASE, COUNTER_BITS, COUNTER_NAMES,
                      DESCRIPTOR_BASE, DESCRIPTOR_FIELDS, DESCRIPTOR_WORDS_BASE, ID_VALUE, REG_CTRL, REG_ID,
                      REG_STATUS, STAGE_BASE, STAGE_REGISTERS, STREAM_BITS, STREAM_REGISTERS, descriptor_words,
                      host_map)

__all__ = ["HostInterface", "host_region_port", "HOST_COUNTED"]

#: Counters the host interface increments itself (buffer-region words over the bus).
HOST_COUNTED = ("host_words_in", "host_words_out")


def host_region_port(addr_bits: int, width: int) -> wiring.Signature:
    """The host's port of one buffer region (as the host interface drives it): ``addr`` (the
    word), ``rd_en`` (a host read strobe hits the region; data in ``rd_data`` one cycle later),
    ``wr_en``/``wr_data`` (a whole word committed: its last sub-word written, the earlier ones
    from the staging register)."""
    return wiring.Signature({"addr": Out(addr_bits), "rd_en": Out(1), "wr_en": Out(1),
                             "wr_data": Out(width), "rd_data": In(width)})


class HostInterface(wiring.Component):
    """The host side of an :class:`gen.top.Accelerator`.

    Ports:

    * ``host_addr``, ``host_wdata``, ``host_write``, ``host_read`` (in), ``host_rdata``,
      ``host_rvalid`` (out): the host bus (read data :data:`gen.hostmap.HOST_READ_LATENCY` =
      2 cycles after the strobe: the register value or the region's read data is selected,
      then registered).
    * ``busy``, ``done`` (in): the tile's state (``status``; while ``busy`` the host may
      only write the input rings and read the output ring).
    * ``start``, ``clear`` (out): ``ctrl`` bit 0 (only while idle) and bit 1, strobes
      (``clear`` zeroes the counters and the host's streaming counts).
    * ``desc`` (out, :data:`gen.descriptor.DESCRIPTOR_LAYOUT`), ``stage`` (out,
      :data:`gen.backward.stage_layout.STAGE_LAYOUT`): registers written while idle;
      ``desc_write`` (out): a descriptor register (a field, or ``desc_word<k>``: the
      descriptor's bits a host word at a time) is written this cycle.
      ``stage_write`` (out): a backward-stage register is written this cycle.
    * ``stream_in`` (out): the host's streaming registers (``in_rows``, ``res_rows``,
      ``out_taken``); ``stream_out`` (in): the datapath's (``in_consumed``,
      ``res_consumed``, ``out_rows``), readable.
    * ``regions`` (out): one :func:`host_region_port` per host-visible region.
    * ``counts`` (in): this cycle's increment of every counter the datapath drives.
    * ``event`` (out): high once an input slot is freed, an output row is complete or the
      tile is done; low after the host reads ``status``.

    Counter timing: a cycle's increments are registered, then added to the 48-bit counters
    one cycle later (the clear strobe is delayed alike): a counter holds at cycle ``t + 1``
    what a counter adding at once would hold at ``t``. The top level keeps ``busy`` high one
    cycle after the engines' last so that ``done`` rises with every counter final.
    """

    #: regions the host may access while a tile runs: it fills the input rings (and the core
    #: rings of a tile that streams cores; an early-start tile's affine words travel with its
    #: G4 chunks, read only after the chunk's wait) and drains the output ring; everything
    #: else only while idle
    STREAM_WRITE = frozenset({"spike_in", "residual", "w1", "w4", "w2", "w3", "affine"})
    STREAM_READ = frozenset({"membrane", "spikes", "trace"})
    #: regions the host reads (while idle, or streaming): the others are write-only
    READABLE = frozenset({"spike_in", "w1", "w2", "w3", "w4", "affine", "gbuf", "membrane", "spikes", "trace",
                          "wgrad"})
    #: regions the host writes (the others are the datapath's alone)
    WRITABLE = frozenset({"w1", "w2", "w3", "w4", "affine", "spike_in", "residual", "gbuf", "gweights", "trace"})

    def __init__(self, config: HardwareConfig, count_widths: Mapping[str, int]):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        self.map = hmap = host_map(config)
        hb = config.widths.host_data
        unknown = set(count_widths) - set(COUNTER_NAMES + BACKWARD_COUNTER_NAMES) | set(count_widths) & set(HOST_COUNTED)
        if unknown:
            raise ValueError(f"count_widths names no datapath counter: {sorted(unknown)}")
        self.count_widths = dict(count_widths)
        super().__init__({
            "host_addr": In(hmap.addr_bits), "host_wdata": In(hb),
            "host_write": In(1), "host_read": In(1),
            "host_rdata": Out(hb), "host_rvalid": Out(1),
            "busy": In(1), "done": In(1),
            "start": Out(1), "clear": Out(1), "desc_write": Out(1), "stage_write": Out(1),
            "desc": Out(DESCRIPTOR_LAYOUT), "stage": Out(STAGE_LAYOUT),
            "stream_in": Out(data.StructLayout({n: STREAM_BITS for n, _, a, _ in STREAM_REGISTERS if a == "rw"})),
            "stream_out": In(data.StructLayout({n: STREAM_BITS for n, _, a, _ in STREAM_REGISTERS if a == "r"})),
            "regions": Out(wiring.Signature({r.name: Out(host_region_port(hmap.addr_bits, r.width_bits))
                                             for r in hmap.regions})),
            "counts": In(data.StructLayout(self.count_widths)),
            "event": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hits = self._decode(m)
        counters = self._counter_bank(m, hits)
        self._read_mux(m, hits, counters)
        self._event(m)
        return m

    def _decode(self, m):
        """Control strobes, streaming and descriptor registers, region addressing (word,
        sub-word, staged sub-words, whole-word writes). Returns region -> (k, hit)."""
        hmap, busy = self.map, self.busy
        hb = self.config.widths.host_data
        addr, wdata, write = self.host_addr, self.host_wdata, self.host_write
        m.d.comb += [self.start.eq(write & (addr == REG_CTRL) & wdata[0] & ~busy),
                     self.clear.eq(write & (addr == REG_CTRL) & wdata[1]),
                     self.desc_write.eq(write & (((addr >= DESCRIPTOR_BASE)
                                                  & (addr < DESCRIPTOR_BASE + len(DESCRIPTOR_FIELDS)))
                                                 | ((addr >= DESCRIPTOR_WORDS_BASE)
                                                    & (addr < DESCRIPTOR_WORDS_BASE + descriptor_words(hb))))),
                     self.stage_write.eq(write & (addr >= STAGE_BASE) & (addr < STAGE_BASE + len(STAGE_FIELDS)))]
        with m.If(write):
            for name, a, access, _ in STREAM_REGISTERS:
                if access == "rw":
                    with m.If(addr == a):
                        m.d.sync += self.stream_in[name].eq(wdata[:STREAM_BITS])
        # the counter clear also zeroes the host's streaming counts (a tile's set-up starts with
        # it: no write per count)
        with m.If(self.clear):
            m.d.sync += [self.stream_in[name].eq(0) for name, _, access, _ in STREAM_REGISTERS
                         if access == "rw"]
        max_sub = max(r.subwords for r in hmap.regions)
        staging = Signal(max((max_sub - 1) * hb, 1), name="staging")
        hits = {}
        words_in, words_out = [], []
        for reg in hmap.regions:
            off = (addr - reg.base)[:hmap.addr_bits]
            hit = (addr >= reg.base) & (addr < reg.base + reg.span)
            k = off[:log2(reg.stride)] if reg.stride > 1 else Const(0, 1)
            allowed = Const(1) if reg.name in self.STREAM_WRITE else ~busy
            read_ok = Const(1) if reg.name in self.STREAM_READ else ~busy
            hits[reg.name] = (k, hit)
            words_in.append(write & hit & allowed & (k < reg.subwords))
            words_out.append(self.host_read & hit & read_ok & (k < reg.subwords))
            port = getattr(self.regions, reg.name)
            wr_data = Cat(staging[:(reg.subwords - 1) * hb], wdata)[:reg.width_bits] \
                if reg.subwords > 1 else wdata[:reg.width_bits]
            m.d.comb += [port.addr.eq(off >> log2(reg.stride)), port.rd_en.eq(self.host_read & hit),
                         port.wr_en.eq(write & allowed & hit & (k == reg.subwords - 1)),
                         port.wr_data.eq(wr_data)]
        self._host_counts = {"host_words_in": words_in, "host_words_out": words_out}
        with m.If(write):
            for reg in hmap.regions:
                k, hit = hits[reg.name]
                if reg.subwords > 1:
                    allowed = Const(1) if reg.name in self.STREAM_WRITE else ~busy
                    with m.If(hit & allowed & (k < reg.subwords - 1)):
                        m.d.sync += staging.word_select(k[:max(log2(max_sub) + 1, 1)], hb).eq(wdata)
            with m.If(~busy):
                for name, bits, _ in DESCRIPTOR_FIELDS:
                    with m.If(addr == hmap.register(name).address):
                        m.d.sync += self.desc[name].eq(wdata[:bits])
                packed = self.desc.as_value()
                for k in range(descriptor_words(hb)):      # the descriptor a host word at a time
                    with m.If(addr == DESCRIPTOR_WORDS_BASE + k):
                        part = packed[k * hb:(k + 1) * hb]
                        m.d.sync += part.eq(wdata[:len(part)])
                for i, (_, field, bits, _) in enumerate(STAGE_REGISTERS):
                    with m.If(addr == STAGE_BASE + i):
                        m.d.sync += self.stage[field].eq(wdata[:bits])
        return hits

    def _counter_bank(self, m, hits):
        """The counters: each adds its increments of every cycle (registered first, see the
        class docstring); ``ctrl`` bit 1 clears them all."""
        counters = {n: Signal(COUNTER_BITS, name=f"cnt_{n}") for n in COUNTER_NAMES + BACKWARD_COUNTER_NAMES}
        clear_d = Signal(name="cnt_clear_d")
        m.d.sync += clear_d.eq(self.clear)
        for name, sig in counters.items():
            amounts = list(self._host_counts.get(name, []))
            if name in self.count_widths:
                amounts.insert(0, self.counts[name])
            if not amounts:
                m.d.sync += sig.eq(Mux(clear_d, 0, sig))
                continue
            total = sum(amounts[1:], amounts[0])
            inc = Signal(len(Value.cast(total)), name=f"inc_{name}")
            m.d.sync += [inc.eq(total), sig.eq(Mux(clear_d, 0, sig + inc))]
        return counters

    def _register_value(self, m, counters):
        """The value of the register at ``host_addr`` (combinational)."""
        hmap, hb = self.map, self.config.widths.host_data
        reg_value = Signal(hb)
        with m.Switch(self.host_addr):
            with m.Case(REG_ID):
                m.d.comb += reg_value.eq(ID_VALUE)
            with m.Case(REG_STATUS):
                m.d.comb += reg_value.eq(Cat(self.busy, self.done))
            for name, a, access, _ in STREAM_REGISTERS:
                with m.Case(a):
                    m.d.comb += reg_value.eq(self.stream_in[name] if access == "rw" else self.stream_out[name])
            for name, bits, _ in DESCRIPTOR_FIELDS:
                with m.Case(hmap.register(name).address):
                    m.d.comb += reg_value.eq(self.desc[name])
            for k in range(descriptor_words(hb)):
                with m.Case(DESCRIPTOR_WORDS_BASE + k):
                    m.d.comb += reg_value.eq(self.desc.as_value()[k * hb:(k + 1) * hb])
            for i, (_, field, _, _) in enumerate(STAGE_REGISTERS):
                with m.Case(STAGE_BASE + i):
                    m.d.comb += reg_value.eq(self.stage[field])
            for base, names in ((COUNTER_BASE, COUNTER_NAMES), (BACKWARD_COUNTER_BASE, BACKWARD_COUNTER_NAMES)):
                for i, name in enumerate(names):
                    with m.Case(base + 2 * i):
                        m.d.comb += reg_value.eq(counters[name][:hb])
                    with m.Case(base + 2 * i + 1):
                        m.d.comb += reg_value.eq(counters[name][hb:])
        return reg_value

    def _read_mux(self, m, hits, counters):
        """Host reads: the register value or the region word's sub-word, registered twice."""
        hmap, busy = self.map, self.busy
        hb = self.config.widths.host_data
        rd_sel = Signal(range(len(hmap.regions) + 1))   # 0: register value, i+1: region i
        rd_k = Signal(range(max(r.stride for r in hmap.regions)))
        rd_reg = Signal(hb)
        rd_valid1 = Signal()
        reg_value = self._register_value(m, counters)
        sel_now = Signal.like(rd_sel)
        k_now = Signal.like(rd_k)
        for i, reg in enumerate(hmap.regions):
            k, hit = hits[reg.name]
            with m.If(hit):
                m.d.comb += [sel_now.eq(i + 1), k_now.eq(k)]
        m.d.sync += [rd_valid1.eq(self.host_read), rd_sel.eq(sel_now), rd_k.eq(k_now),
                     rd_reg.eq(reg_value)]
        out_value = Signal(hb)
        with m.Switch(rd_sel):
            with m.Case(0):
                m.d.comb += out_value.eq(rd_reg)
            for i, reg in enumerate(hmap.regions):
                with m.Case(i + 1):
                    if reg.name not in self.READABLE:
                        continue
                    data_ = getattr(self.regions, reg.name).rd_data
                    padded = Cat(data_, Const(0, reg.stride * hb - len(data_)))
                    value = padded.word_select(rd_k[:max(log2(reg.stride), 1)]
                                               if reg.stride > 1 else 0, hb)
                    if reg.name in self.STREAM_READ:
                        m.d.comb += out_value.eq(value)
                    else:
                        m.d.comb += out_value.eq(Mux(busy, 0, value))
        m.d.sync += [self.host_rvalid.eq(rd_valid1), self.host_rdata.eq(out_value)]

    def _event(self, m):
        """``event``: raised when the host has something to do (an input slot or a G4 chunk
        slot freed, an output row complete, the tile done); lowered when the host reads ``status``."""
        attention = Signal()
        so = self.stream_out
        now = Cat(so.in_consumed, so.res_consumed, so.out_rows, so.w4_consumed, so.w2_consumed,
                  so.w3_consumed, so.w1_consumed, self.done)
        prev = Signal(len(now))
        m.d.sync += prev.eq(now)
        with m.If(now != prev):
            m.d.sync += attention.eq(1)
        with m.Elif(self.host_read & (self.host_addr == REG_STATUS)):
            m.d.sync += attention.eq(0)
        m.d.comb += self.event.eq(attention)
