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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import HardwareConfig, log2
from .descriptor import DESCRIPTOR_LAYOUT
from .geometry import TAP_ORDER
from .hostmap import (COUNTER_BASE, COUNTER_BITS, COUNTER_NAMES, DESCRIPTOR_BASE, DESCRIPTOR_FIELDS, ID_VALUE,
                      REG_CTRL, REG_ID, REG_STATUS, STREAM_BITS, STREAM_REGISTERS, host_map)
from .engines import ClusterFourEngine, ClusterOneEngine, ClusterTwoThreeEngine
from .tilegeo import ROW_BITS, TileGeometryUnit

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
        self.config = config
        self.map = host_map(config)
        super().__init__(accelerator_signature(config))

    def elaborate(self, platform):  # noqa: C901 - one flat description of the top level
        m = Module()
        cfg, hmap = self.config, self.map
        wd = cfg.widths
        hb = wd.host_data
        RB = ROW_BITS

        busy, done = Signal(), Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        # ---- descriptor and the tile geometry derived from it (registered) -----------------
        desc = Signal(DESCRIPTOR_LAYOUT, name="desc")
        d = {name: desc[name] for name, _, _ in DESCRIPTOR_FIELDS}

        m.submodules.geometry = geometry = TileGeometryUnit(cfg)
        m.d.comb += geometry.desc.eq(desc)
        g = geometry.geo

        # ---- memories ----------------------------------------------------------------------
        mems = {}
        for reg in cfg.regions.values():
            mems[reg.name] = m.submodules[f"mem_{reg.name}"] = Memory(
                shape=unsigned(reg.width_bits), depth=reg.depth, init=[])

        def rp(name, **kw):
            return mems[name].read_port(domain="sync", **kw)

        # ---- counters ----------------------------------------------------------------------
        counters = {n: Signal(COUNTER_BITS, name=f"cnt_{n}") for n in COUNTER_NAMES}
        incs: dict[str, list] = {n: [] for n in COUNTER_NAMES}

        def count(name, amount):
            incs[name].append(amount)

        # ---- host interface: decode -------------------------------------------------------
        addr = self.host_addr
        start = Signal()
        clear = Signal()
        m.d.comb += [start.eq(self.host_write & (addr == REG_CTRL) & self.host_wdata[0] & ~busy),
                     clear.eq(self.host_write & (addr == REG_CTRL) & self.host_wdata[1])]
        stream_in = {name: Signal(STREAM_BITS, name=f"host_{name}")
                     for name, _, access, _ in STREAM_REGISTERS if access == "rw"}
        with m.If(self.host_write):
            for name, a, access, _ in STREAM_REGISTERS:
                if access == "rw":
                    with m.If(addr == a):
                        m.d.sync += stream_in[name].eq(self.host_wdata[:STREAM_BITS])

        # regions the host may access while a tile runs: it fills the input rings and drains
        # the output ring; everything else only while idle
        stream_write = {"spike_in", "residual"}
        stream_read = {"membrane", "spikes"}
        max_sub = max(r.subwords for r in hmap.regions)
        staging = Signal(max((max_sub - 1) * hb, 1))
        host_ports = {}   # region -> (word, k, hit, RegionMap, allowed)
        for reg in hmap.regions:
            off = (addr - reg.base)[:self.map.addr_bits]
            hit = (addr >= reg.base) & (addr < reg.base + reg.span)
            word = off >> log2(reg.stride)
            k = off[:log2(reg.stride)] if reg.stride > 1 else Const(0, 1)
            allowed = Const(1) if reg.name in stream_write else ~busy
            read_ok = Const(1) if reg.name in stream_read else ~busy
            host_ports[reg.name] = (word, k, hit, reg, allowed)
            count("host_words_in", self.host_write & hit & allowed & (k < reg.subwords))
            count("host_words_out", self.host_read & hit & read_ok & (k < reg.subwords))
        with m.If(self.host_write):
            for name, (word, k, hit, reg, allowed) in host_ports.items():
                if reg.subwords > 1:
                    with m.If(hit & allowed & (k < reg.subwords - 1)):
                        m.d.sync += staging.word_select(k[:max(log2(max_sub) + 1, 1)], hb).eq(self.host_wdata)
            with m.If(~busy):
                for name, bits, _ in DESCRIPTOR_FIELDS:
                    with m.If(addr == hmap.register(name).address):
                        m.d.sync += d[name].eq(self.host_wdata[:bits])

        def host_commit(name):
            """(en, addr, data) of a host write committing a whole word of region ``name``."""
            word, k, hit, reg, allowed = host_ports[name]
            en = self.host_write & allowed & hit & (k == reg.subwords - 1)
            data = Cat(staging[:(reg.subwords - 1) * hb], self.host_wdata)[:reg.width_bits] \
                if reg.subwords > 1 else self.host_wdata[:reg.width_bits]
            return en, word, data

        def host_only_write(name):
            port = mems[name].write_port()
            h_en, h_addr, h_data = host_commit(name)
            m.d.comb += [port.en.eq(h_en), port.addr.eq(h_addr), port.data.eq(h_data)]

        host_read_ports = {}

        def shared_read(name, dp_en, dp_addr, dp_data=None):
            """A read port shared by the datapath (while busy) and the host (while idle)."""
            port = rp(name)
            word, _, hit, _, _ = host_ports[name]
            m.d.comb += [port.en.eq(Mux(busy, dp_en, self.host_read & hit)),
                         port.addr.eq(Mux(busy, dp_addr, word))]
            if dp_data is not None:
                m.d.comb += dp_data.eq(port.data)
            host_read_ports[name] = port
            return port

        def host_only_read(name):
            port = rp(name)
            word, _, hit, _, _ = host_ports[name]
            m.d.comb += [port.en.eq(self.host_read & hit), port.addr.eq(word)]
            host_read_ports[name] = port

        # ---- progress counters between engines and with the host ---------------------------
        e1_done = Signal(RB)        # E1 rows written to line1 (E1 order)
        e2_rel = Signal(RB)         # E2 rows released (q*T + t order)
        e4_rel = Signal(RB)         # E4 rows issued (q23 rows released)
        in_seq = Signal(STREAM_BITS)      # input rows E1 has finished with
        res_seq = Signal(STREAM_BITS)     # residual rows E4 has finished with
        out_seq = Signal(STREAM_BITS)     # output rows complete

        # ==== E1: cluster 1 (gen/engines/cluster1.py) =========================================
        # timestep outer: line1 is one ring of 3T rows in E1's order; rel1 counts the rows of
        # that order E2 has released (a prefix: E2 releases them in the same order)
        rel1 = Signal(RB)
        m.submodules.e1 = e1 = ClusterOneEngine(cfg)
        m.d.comb += [e1.desc.eq(desc), e1.geo.eq(g), e1.in_rows.eq(stream_in["in_rows"]),
                     e1.released.eq(e2_rel), e1.released_e1_order.eq(rel1)]
        m.d.comb += [e1_done.eq(e1.rows_done), in_seq.eq(e1.in_consumed)]
        shared_read("spike_in", e1.spike_in.en, e1.spike_in.addr, e1.spike_in.data)
        shared_read("w1", e1.w1.en, e1.w1.addr, e1.w1.data)
        line1_w = mems["line1"].write_port(granularity=cfg.widths.activation)
        m.d.comb += [line1_w.en.eq(e1.line1.en), line1_w.addr.eq(e1.line1.addr),
                     line1_w.data.eq(e1.line1.data)]
        for name, _ in e1.counts.shape():
            count(name, e1.counts[name])

        # ==== E2 / E3: clusters 2 and 3 (gen/engines/cluster23.py) ===========================
        m.submodules.e23 = e23 = ClusterTwoThreeEngine(cfg)
        m.d.comb += [e23.desc.eq(desc), e23.geo.eq(g), e23.e1_rows.eq(e1_done), e23.e4_released.eq(e4_rel),
                     e2_rel.eq(e23.released), rel1.eq(e23.released_e1_order)]
        for region, names in (("line1", ("line1_a", "line1_b", "line1_c")), ("row2", ("row2_b", "row2_c"))):
            for name in names:
                port, rd = getattr(e23, name), rp(region)
                m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
        shared_read("w2", e23.w2.en, e23.w2.addr, e23.w2.data)
        shared_read("w3", e23.w3.en, e23.w3.addr, e23.w3.data)
        for region, port in (("row2", e23.row2), ("line4", e23.line4)):
            wr = mems[region].write_port()
            m.d.comb += [wr.en.eq(port.en), wr.addr.eq(port.addr), wr.data.eq(port.data)]
        for name, _ in e23.counts.shape():
            count(name, e23.counts[name])

        # ==== E4: cluster 4 to the LIF array (gen/engines/cluster4.py) ======================
        m.submodules.e4 = e4 = ClusterFourEngine(cfg)
        m.d.comb += [e4.desc.eq(desc), e4.geo.eq(g), e4.rows_written.eq(e23.q23_rows),
                     e4.res_rows.eq(stream_in["res_rows"]), e4.out_taken.eq(stream_in["out_taken"]),
                     e4_rel.eq(e4.rows_released), res_seq.eq(e4.res_consumed), out_seq.eq(e4.out_rows)]
        for name in ("line4", "residual"):
            port, rd = getattr(e4, name), rp(name)
            m.d.comb += [rd.en.eq(port.en), rd.addr.eq(port.addr), port.data.eq(rd.data)]
        state_rd = rp("membrane")     # u(t-1), the datapath's own port of the output ring
        m.d.comb += [state_rd.en.eq(e4.membrane_in.en), state_rd.addr.eq(e4.membrane_in.addr),
                     e4.membrane_in.data.eq(state_rd.data)]
        shared_read("w4", e4.w4.en, e4.w4.addr, e4.w4.data)
        shared_read("affine", e4.affine.en, e4.affine.addr, e4.affine.data)
        for region, port in (("membrane", e4.membrane_out), ("spikes", e4.spikes)):
            wr = mems[region].write_port()
            m.d.comb += [wr.en.eq(port.en), wr.addr.eq(port.addr), wr.data.eq(port.data)]
        for name, _ in e4.counts.shape():
            count(name, e4.counts[name])

        # host-only ports
        for name in ("w1", "w2", "w3", "w4", "affine", "spike_in", "residual"):
            host_only_write(name)
        host_only_read("membrane")
        host_only_read("spikes")

        # ---- start / done / event ----------------------------------------------------------
        # the tile geometry is registered from the descriptor (its unit's latency): a start
        # that follows the last descriptor write sooner waits for it
        settle = Signal(range(geometry.latency + 1))
        desc_write = self.host_write & (addr >= DESCRIPTOR_BASE) & (addr < DESCRIPTOR_BASE + len(d))
        m.d.sync += settle.eq(Mux(desc_write, geometry.latency, Mux(settle == 0, 0, settle - 1)))
        settled = (settle == 0) & ~desc_write
        pending = Signal()
        pipeline_busy = pending | e1.busy | e23.busy | e4.busy
        go = (start | pending) & settled                         # the engines' start
        m.d.comb += [e1.start.eq(go), e23.start.eq(go), e4.start.eq(go)]
        with m.If(start & ~settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(1)]
        with m.Elif((start | pending) & settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(0)]
        with m.Elif(busy & ~pipeline_busy):
            m.d.sync += [busy.eq(0), done.eq(1)]
        # the datapath's run: a start within geometry.latency cycles of a descriptor write waits for
        # the geometry registers first (pending), which is not counted
        count("cycles", busy & ~pending)
        # event: raised when the host has something to do (an input slot freed, an output row
        # complete, the tile done); lowered when the host reads ``status``
        attention = Signal()
        prev = Signal(3 * STREAM_BITS + 1)
        now = Cat(in_seq, res_seq, out_seq, done)
        m.d.sync += prev.eq(now)
        with m.If(now != prev):
            m.d.sync += attention.eq(1)
        with m.Elif(self.host_read & (addr == REG_STATUS)):
            m.d.sync += attention.eq(0)
        m.d.comb += self.event.eq(attention)

        for name, sig in counters.items():
            amounts = incs[name]
            total = sum(amounts[1:], amounts[0]) if amounts else 0
            with m.If(clear):
                m.d.sync += sig.eq(0)
            with m.Else():
                m.d.sync += sig.eq(sig + total)

        # ---- host reads --------------------------------------------------------------------
        rd_sel = Signal(range(len(hmap.regions) + 1))   # 0: register value, i+1: region i
        rd_k = Signal(range(max(r.stride for r in hmap.regions)))
        rd_reg = Signal(hb)
        rd_valid1 = Signal()
        reg_value = Signal(hb)
        stream_out = {"in_consumed": in_seq, "res_consumed": res_seq, "out_rows": out_seq}
        with m.Switch(addr):
            with m.Case(REG_ID):
                m.d.comb += reg_value.eq(ID_VALUE)
            with m.Case(REG_STATUS):
                m.d.comb += reg_value.eq(Cat(busy, done))
            for name, a, access, _ in STREAM_REGISTERS:
                with m.Case(a):
                    m.d.comb += reg_value.eq(stream_in[name] if access == "rw" else stream_out[name])
            for name, bits, _ in DESCRIPTOR_FIELDS:
                with m.Case(hmap.register(name).address):
                    m.d.comb += reg_value.eq(d[name])
            for i, name in enumerate(COUNTER_NAMES):
                with m.Case(COUNTER_BASE + 2 * i):
                    m.d.comb += reg_value.eq(counters[name][:hb])
                with m.Case(COUNTER_BASE + 2 * i + 1):
                    m.d.comb += reg_value.eq(counters[name][hb:])
        sel_now = Signal.like(rd_sel)
        k_now = Signal.like(rd_k)
        for i, reg in enumerate(hmap.regions):
            word, k, hit, _, _ = host_ports[reg.name]
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
                    if reg.name not in host_read_ports:
                        continue
                    data = host_read_ports[reg.name].data
                    padded = Cat(data, Const(0, reg.stride * hb - len(data)))
                    value = padded.word_select(rd_k[:max(log2(reg.stride), 1)]
                                               if reg.stride > 1 else 0, hb)
                    if reg.name in stream_read:
                        m.d.comb += out_value.eq(value)
                    else:
                        m.d.comb += out_value.eq(Mux(busy, 0, value))
        m.d.sync += [self.host_rvalid.eq(rd_valid1), self.host_rdata.eq(out_value)]
        return m
