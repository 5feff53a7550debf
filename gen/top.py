"""The top level: host interface, descriptor, memories, the four engines, counters
(docs/architecture.md, docs/host_interface.md).

Rows are processed in one of two orders (descriptor ``order``): row outer (row ``y`` of every
timestep, then row ``y + 1``: the LIF state is one output row, so tiles may be large) or
timestep outer (every row of timestep ``t``, then ``t + 1``: a short pipeline fill, for tiles
whose outputs of one timestep fit the output ring). Each engine is a nest of
loop counters issuing one step per cycle, followed by a fixed pipeline (issue: memory
addresses; a: memory data, PE update; b: result written; c: E4's affine/LIF and writes):

* E1, cluster 1 (spike PEs + adder tree): for each window row, each pixel (the halo columns
  first), each rank channel ``k``, each chunk of ``P`` input channels. One q1 value per
  (pixel, k), written into its lane of the packed ``line1`` word.
* E2, cluster 2 (and, for PTT/HTT's full timesteps, cluster 3 in lock step with the adder
  array): per output row, for each output rank group ``g`` of ``Pk`` channels, each group of
  up to ``B`` column blocks, each chunk of up to ``C`` reduction steps, each block of the
  group, each step of the chunk. Weights of a chunk are read from the weight buffer for the
  group's first block and replayed from the PE scratchpads for the others; partial sums of
  the blocks wait in the scratchpads between chunks. HTT's reduced timesteps copy q1 words.
* E3, cluster 3 for STT: the same loops on the q2 rows cluster 2 wrote into ``row2``.
* E4, cluster 4 + max-pool + affine + residual + LIF: per output row, pixel, output group,
  pool sub-pixel, rank channel; spikes and membranes into the output ring, from which the LIF
  reads each neuron's membrane of the previous timestep back.

Row-granular progress counters connect the engines (rows written / rows released) and the
host (rows in the input rings / rows taken from the output ring).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .backward.datapath import BackwardDatapath
from .backward.stage_layout import STAGE_LAYOUT
from .config import HardwareConfig, log2
from .descriptor import DESCRIPTOR_LAYOUT, Pass
from .geometry import TAP_ORDER
from .hostmap import (BACKWARD_COUNTER_BASE, BACKWARD_COUNTER_NAMES, COUNTER_BASE, COUNTER_BITS, COUNTER_NAMES,
                      DESCRIPTOR_BASE, DESCRIPTOR_FIELDS, ID_VALUE, REG_CTRL, REG_ID, REG_STATUS, STAGE_BASE,
                      STAGE_REGISTERS, STREAM_BITS, STREAM_REGISTERS, host_map)
from .engines import ClusterFourEngine, ClusterOneEngine, ClusterTwoThreeEngine
from .tilegeo import TileGeometryUnit

__all__ = ["Accelerator", "TOP_NAME", "accelerator_signature", "TAP_ORDER"]

TOP_NAME = "ttsnn_accel"


def accelerator_signature(config: HardwareConfig) -> wiring.Signature:
    """The top level's ports (also written to the manifest)."""
    hb = config.widths.host_data
    return wiring.Signature({
        "host_addr": In(host_map(config).addr_bits), "host_wdata": In(hb),
        "host_write": In(1), "host_read": In(1),
        "host_rdata": Out(hb), "host_rvalid": Out(1),
        "busy": Out(1), "done": Out(1), "event": Out(1),
    })


class Accelerator(wiring.Component):
    """The TT-SNN forward accelerator for one :class:`HardwareConfig`.

    Ports: ``host_addr``, ``host_wdata``, ``host_write`` (1-cycle strobe), ``host_read``
    (1-cycle strobe), ``host_rdata``/``host_rvalid`` (2 cycles after ``host_read``), ``busy``
    (high while a tile runs), ``done`` (rises at the end of a tile, stays high until the
    next start), ``event`` (rises when an input ring slot is freed, an output row is complete
    or the tile ends; falls when the host reads ``status``: a host may sleep until it).
    Address map:
    :func:`gen.hostmap.host_map`.
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        if config.gradients.rounding not in ("nearest", "floor"):
            raise ValueError(f"gradients.rounding = {config.gradients.rounding!r}: the backward datapath "
                             f"builds 'nearest' and 'floor' rounding only (the per-element dither hash of "
                             f"stochastic rounding is not in RTL yet); generate with one of those")
        self.config = config
        self.map = host_map(config)
        super().__init__(accelerator_signature(config))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        busy, done = Signal(), Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]
        desc = Signal(DESCRIPTOR_LAYOUT, name="desc")
        stage = Signal(STAGE_LAYOUT, name="stage")
        m.submodules.geometry = geometry = TileGeometryUnit(cfg)
        m.d.comb += geometry.desc.eq(desc)
        mems = {reg.name: Memory(shape=unsigned(reg.width_bits), depth=reg.depth, init=[])
                for reg in list(cfg.regions.values()) + list(cfg.backward_regions.values())
                if reg.name != "wgrad"}         # the weight-gradient sums live in their accumulator
        for name, mem in mems.items():
            m.submodules[f"mem_{name}"] = mem
        host = _HostSide(self, m, busy, desc, mems, stage)
        engines = self._engines(m, host, desc, geometry.geo, mems)
        backward = self._backward(m, host, stage, mems)
        self._control(m, host, busy, done, geometry, engines, backward)
        host.counter_bank()
        host.read_mux(done)
        return m

    def _engines(self, m, host, desc, g, mems):
        """The three engines (E1; E2 and E3; E4), their memory ports and progress handshakes."""
        cfg = self.config
        rp = host.datapath_read
        m.submodules.e1 = e1 = ClusterOneEngine(cfg)
        m.submodules.e23 = e23 = ClusterTwoThreeEngine(cfg)
        m.submodules.e4 = e4 = ClusterFourEngine(cfg)
        for e in (e1, e23, e4):
            m.d.comb += [e.desc.eq(desc), e.geo.eq(g)]
            for name, _ in e.counts.shape():
                host.count(name, e.counts[name])
        # row progress: E1 -> E2 (rows written), E2 -> E1 (slots released: E2's order, and
        # timestep outer line1 is one ring of 3T rows in E1's order), E2/E3 -> E4, E4 -> E2/E3
        m.d.comb += [e1.in_rows.eq(host.stream_in["in_rows"]),
                     e1.released.eq(e23.released), e1.released_e1_order.eq(e23.released_e1_order),
                     e23.e1_rows.eq(e1.rows_done), e23.e4_released.eq(e4.rows_released),
                     e4.rows_written.eq(e23.q23_rows), e4.res_rows.eq(host.stream_in["res_rows"]),
                     e4.out_taken.eq(host.stream_in["out_taken"])]
        # memory ports: read ports the host shares while idle, the datapath's own ports, writes
        for region, port in (("spike_in", e1.spike_in), ("w1", e1.w1), ("w2", e23.w2), ("w3", e23.w3),
                             ("w4", e4.w4), ("affine", e4.affine)):
            host.shared_read(region, port)
        for region, port in (("line1", e23.line1_a), ("line1", e23.line1_b), ("line1", e23.line1_c),
                             ("row2", e23.row2_b), ("row2", e23.row2_c), ("line4", e4.line4),
                             ("residual", e4.residual), ("membrane", e4.membrane_in)):
            rp(region, port)
        for region, port, granularity in (("line1", e1.line1, cfg.widths.activation), ("row2", e23.row2, None),
                                          ("line4", e23.line4, None), ("membrane", e4.membrane_out, None),
                                          ("spikes", e4.spikes, None)):
            wr = mems[region].write_port(**({"granularity": granularity} if granularity else {}))
            m.d.comb += [wr.en.eq(port.en), wr.addr.eq(port.addr), wr.data.eq(port.data)]
        for name in ("w1", "w2", "w3", "w4", "affine", "spike_in", "residual"):
            host.host_only_write(name)
        host.host_only_read("membrane")
        host.host_only_read("spikes")
        host.stream_out = {"in_consumed": e1.in_consumed, "res_consumed": e4.res_consumed,
                           "out_rows": e4.out_rows}
        return (e1, e23, e4)

    def _backward(self, m, host, stage, mems):
        """The backward datapath (gen/backward/): its gradient-buffer, stage-weight, trace and
        affine ports, and the host's reads of the weight-gradient sums (while idle)."""
        m.submodules.backward = bw = BackwardDatapath(self.config)
        m.d.comb += bw.stage.eq(stage)
        for name, _ in bw.counts.shape():
            host.count(name, bw.counts[name])
        host.shared_read("gbuf", bw.grad_a)
        for region, port in (("gbuf", bw.grad_b), ("gweights", bw.weights), ("trace", bw.trace),
                             ("affine", bw.affine)):
            host.datapath_read(region, port)
        for port in (bw.grad_w, bw.grad_w2):
            wr = mems["gbuf"].write_port()
            m.d.comb += [wr.en.eq(port.en), wr.addr.eq(port.addr), wr.data.eq(port.data)]
        for name in ("gbuf", "gweights", "trace"):
            host.host_only_write(name)
        word, _, hit, _, _ = host.ports["wgrad"]
        m.d.comb += [bw.wgrad_rd_en.eq(self.host_read & hit & ~host.busy), bw.wgrad_rd_addr.eq(word)]
        host.read_ports["wgrad"] = SimpleNamespace(data=bw.wgrad_rd_data)
        return bw

    def _control(self, m, host, busy, done, geometry, engines, backward):
        """start / done / event. The tile geometry is registered from the descriptor (its unit's
        latency): a start that follows the last descriptor write sooner waits for it (pending),
        which is not counted in ``cycles``."""
        addr = self.host_addr
        settle = Signal(range(geometry.latency + 1))
        desc_write = self.host_write & (addr >= DESCRIPTOR_BASE) & (addr < DESCRIPTOR_BASE + len(DESCRIPTOR_FIELDS))
        m.d.sync += settle.eq(Mux(desc_write, geometry.latency, Mux(settle == 0, 0, settle - 1)))
        settled = (settle == 0) & ~desc_write
        pending = Signal()
        pipeline_busy = pending | backward.busy
        for e in engines:
            pipeline_busy = pipeline_busy | e.busy
        start = host.start
        go = (start | pending) & settled                         # the engines' start
        forward = host.desc["pass"] == Pass.FORWARD
        m.d.comb += [e.start.eq(go & forward) for e in engines]
        m.d.comb += backward.start.eq(go & (host.desc["pass"] == Pass.BACKWARD))
        # the counters take their increments one cycle late (counter_bank): after the engines'
        # last cycle the tile stays busy one more cycle (draining, not counted in ``cycles``)
        # so that every counter holds its final value when ``done`` rises
        draining = Signal()
        with m.If(start & ~settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(1)]
        with m.Elif((start | pending) & settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(0)]
        with m.Elif(busy & ~draining & ~pipeline_busy):
            m.d.sync += draining.eq(1)
        with m.Elif(draining):
            m.d.sync += [busy.eq(0), done.eq(1), draining.eq(0)]
        host.count("cycles", busy & ~pending & ~draining)
        # event: raised when the host has something to do (an input slot freed, an output row
        # complete, the tile done); lowered when the host reads ``status``
        attention = Signal()
        prev = Signal(3 * STREAM_BITS + 1)
        so = host.stream_out
        now = Cat(so["in_consumed"], so["res_consumed"], so["out_rows"], done)
        m.d.sync += prev.eq(now)
        with m.If(now != prev):
            m.d.sync += attention.eq(1)
        with m.Elif(self.host_read & (addr == REG_STATUS)):
            m.d.sync += attention.eq(0)
        m.d.comb += self.event.eq(attention)


class _HostSide:
    """The host interface of an :class:`Accelerator`: address decode, streaming registers,
    descriptor writes, region ports (staged sub-words, read ports shared with the datapath
    while idle), the counter bank and the registered read mux (``HOST_READ_LATENCY``)."""

    #: regions the host may access while a tile runs: it fills the input rings and drains the
    #: output ring; everything else only while idle
    STREAM_WRITE = {"spike_in", "residual"}
    STREAM_READ = {"membrane", "spikes"}

    def __init__(self, top: "Accelerator", m: Module, busy, desc, mems, stage):
        self.top, self.m, self.busy, self.desc, self.mems, self.stage = top, m, busy, desc, mems, stage
        self.incs: dict[str, list] = {n: [] for n in COUNTER_NAMES + BACKWARD_COUNTER_NAMES}
        self.read_ports = {}
        self.stream_out = {}
        self._decode()

    def count(self, name, amount):
        """Add ``amount`` to counter ``name`` this cycle."""
        self.incs[name].append(amount)

    def _decode(self):
        top, m, busy, hmap = self.top, self.m, self.busy, self.top.map
        hb = top.config.widths.host_data
        addr = top.host_addr
        self.start, self.clear = Signal(), Signal()
        m.d.comb += [self.start.eq(top.host_write & (addr == REG_CTRL) & top.host_wdata[0] & ~busy),
                     self.clear.eq(top.host_write & (addr == REG_CTRL) & top.host_wdata[1])]
        self.stream_in = {name: Signal(STREAM_BITS, name=f"host_{name}")
                          for name, _, access, _ in STREAM_REGISTERS if access == "rw"}
        with m.If(top.host_write):
            for name, a, access, _ in STREAM_REGISTERS:
                if access == "rw":
                    with m.If(addr == a):
                        m.d.sync += self.stream_in[name].eq(top.host_wdata[:STREAM_BITS])
        max_sub = max(r.subwords for r in hmap.regions)
        self.staging = staging = Signal(max((max_sub - 1) * hb, 1))
        self.ports = {}   # region -> (word, k, hit, RegionMap, allowed)
        for reg in hmap.regions:
            off = (addr - reg.base)[:hmap.addr_bits]
            hit = (addr >= reg.base) & (addr < reg.base + reg.span)
            word = off >> log2(reg.stride)
            k = off[:log2(reg.stride)] if reg.stride > 1 else Const(0, 1)
            allowed = Const(1) if reg.name in self.STREAM_WRITE else ~busy
            read_ok = Const(1) if reg.name in self.STREAM_READ else ~busy
            self.ports[reg.name] = (word, k, hit, reg, allowed)
            self.count("host_words_in", top.host_write & hit & allowed & (k < reg.subwords))
            self.count("host_words_out", top.host_read & hit & read_ok & (k < reg.subwords))
        with m.If(top.host_write):
            for name, (word, k, hit, reg, allowed) in self.ports.items():
                if reg.subwords > 1:
                    with m.If(hit & allowed & (k < reg.subwords - 1)):
                        m.d.sync += staging.word_select(k[:max(log2(max_sub) + 1, 1)], hb).eq(top.host_wdata)
            with m.If(~busy):
                for name, bits, _ in DESCRIPTOR_FIELDS:
                    with m.If(addr == hmap.register(name).address):
                        m.d.sync += self.desc[name].eq(top.host_wdata[:bits])
                for i, (_, field, bits, _) in enumerate(STAGE_REGISTERS):
                    with m.If(addr == STAGE_BASE + i):
                        m.d.sync += self.stage[field].eq(top.host_wdata[:bits])

    def host_only_write(self, name):
        """The write port of region ``name``: a host write committing a whole word."""
        top, hb = self.top, self.top.config.widths.host_data
        word, k, hit, reg, allowed = self.ports[name]
        port = self.mems[name].write_port()
        en = top.host_write & allowed & hit & (k == reg.subwords - 1)
        data = Cat(self.staging[:(reg.subwords - 1) * hb], top.host_wdata)[:reg.width_bits] \
            if reg.subwords > 1 else top.host_wdata[:reg.width_bits]
        self.m.d.comb += [port.en.eq(en), port.addr.eq(word), port.data.eq(data)]

    def datapath_read(self, name, dp):
        """A read port of region ``name`` for the datapath alone (engine port ``dp``)."""
        port = self.mems[name].read_port(domain="sync")
        self.m.d.comb += [port.en.eq(dp.en), port.addr.eq(dp.addr), dp.data.eq(port.data)]

    def shared_read(self, name, dp):
        """A read port shared by the datapath (engine port ``dp``, while busy) and the host
        (while idle)."""
        port = self.mems[name].read_port(domain="sync")
        word, _, hit, _, _ = self.ports[name]
        self.m.d.comb += [port.en.eq(Mux(self.busy, dp.en, self.top.host_read & hit)),
                          port.addr.eq(Mux(self.busy, dp.addr, word)), dp.data.eq(port.data)]
        self.read_ports[name] = port

    def host_only_read(self, name):
        port = self.mems[name].read_port(domain="sync")
        word, _, hit, _, _ = self.ports[name]
        self.m.d.comb += [port.en.eq(self.top.host_read & hit), port.addr.eq(word)]
        self.read_ports[name] = port

    def counter_bank(self):
        """The counters: each adds its increments of every cycle; ``ctrl`` bit 1 clears them all.

        Timing: a cycle's increments (the engines' combinational ``counts``) are registered
        first and added to the 48-bit counter one cycle later; the clear strobe is delayed
        alike, so a counter holds at cycle ``t + 1`` exactly what it held at ``t`` before this
        stage was added (the same values, one cycle later). The top level keeps ``busy`` one
        cycle longer so that ``done`` rises only when that last cycle's increments are in."""
        m = self.m
        self.counters = {n: Signal(COUNTER_BITS, name=f"cnt_{n}") for n in COUNTER_NAMES + BACKWARD_COUNTER_NAMES}
        clear_d = Signal(name="cnt_clear_d")
        m.d.sync += clear_d.eq(self.clear)
        for name, sig in self.counters.items():
            amounts = self.incs[name]
            if not amounts:
                m.d.sync += sig.eq(Mux(clear_d, 0, sig))
                continue
            total = sum(amounts[1:], amounts[0])
            inc = Signal(len(Value.cast(total)), name=f"inc_{name}")
            m.d.sync += [inc.eq(total), sig.eq(Mux(clear_d, 0, sig + inc))]

    def read_mux(self, done):
        """Host reads: the register value or the region word's sub-word, registered twice."""
        top, m, hmap, busy = self.top, self.m, self.top.map, self.busy
        hb = top.config.widths.host_data
        addr = top.host_addr
        rd_sel = Signal(range(len(hmap.regions) + 1))   # 0: register value, i+1: region i
        rd_k = Signal(range(max(r.stride for r in hmap.regions)))
        rd_reg = Signal(hb)
        rd_valid1 = Signal()
        reg_value = Signal(hb)
        with m.Switch(addr):
            with m.Case(REG_ID):
                m.d.comb += reg_value.eq(ID_VALUE)
            with m.Case(REG_STATUS):
                m.d.comb += reg_value.eq(Cat(busy, done))
            for name, a, access, _ in STREAM_REGISTERS:
                with m.Case(a):
                    m.d.comb += reg_value.eq(self.stream_in[name] if access == "rw" else self.stream_out[name])
            for name, bits, _ in DESCRIPTOR_FIELDS:
                with m.Case(hmap.register(name).address):
                    m.d.comb += reg_value.eq(self.desc[name])
            for i, (_, field, _, _) in enumerate(STAGE_REGISTERS):
                with m.Case(STAGE_BASE + i):
                    m.d.comb += reg_value.eq(self.stage[field])
            for base, names in ((COUNTER_BASE, COUNTER_NAMES), (BACKWARD_COUNTER_BASE, BACKWARD_COUNTER_NAMES)):
                for i, name in enumerate(names):
                    with m.Case(base + 2 * i):
                        m.d.comb += reg_value.eq(self.counters[name][:hb])
                    with m.Case(base + 2 * i + 1):
                        m.d.comb += reg_value.eq(self.counters[name][hb:])
        sel_now = Signal.like(rd_sel)
        k_now = Signal.like(rd_k)
        for i, reg in enumerate(hmap.regions):
            word, k, hit, _, _ = self.ports[reg.name]
            with m.If(hit):
                m.d.comb += [sel_now.eq(i + 1), k_now.eq(k)]
        m.d.sync += [rd_valid1.eq(top.host_read), rd_sel.eq(sel_now), rd_k.eq(k_now),
                     rd_reg.eq(reg_value)]
        out_value = Signal(hb)
        with m.Switch(rd_sel):
            with m.Case(0):
                m.d.comb += out_value.eq(rd_reg)
            for i, reg in enumerate(hmap.regions):
                with m.Case(i + 1):
                    if reg.name not in self.read_ports:
                        continue
                    data = self.read_ports[reg.name].data
                    padded = Cat(data, Const(0, reg.stride * hb - len(data)))
                    value = padded.word_select(rd_k[:max(log2(reg.stride), 1)]
                                               if reg.stride > 1 else 0, hb)
                    if reg.name in self.STREAM_READ:
                        m.d.comb += out_value.eq(value)
                    else:
                        m.d.comb += out_value.eq(Mux(busy, 0, value))
        m.d.sync += [top.host_rvalid.eq(rd_valid1), top.host_rdata.eq(out_value)]
