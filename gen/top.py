"""The top level: host interface, descriptor, memories, the three pipelined engines,
counters (docs/architecture.md, docs/host_interface.md).

Engines (each a nest of loop counters issuing one step per cycle, followed by a fixed
two-stage pipeline: memory read -> PE update -> result write):

* E1, cluster 1: for t, window row, window column, rank group, input channel.
* E23, clusters 2/3 + adder array: for t, output row, step, rank group, (j, tap).
  PTT (and HTT full): clusters 2 and 3 on the same pixel, merged by the adder array;
  STT: cluster 2 on column ``s`` while cluster 3 runs column ``s-3`` of the same row;
  HTT reduced timesteps: one copy step per (pixel, group), clusters 2/3 bypassed.
* E4, cluster 4 + max-pool + affine + residual + LIF: for t, output row, output column,
  output group, pool sub-pixel, rank channel.

E1 -> E23 through a 4-row circular line buffer of q1 (``line1``), E23 -> E4 through a 4-row
line buffer of q23 (``line4``); row-granular progress counters (rows written, rows released)
make each engine wait only when its input rows are missing or the output slots are full.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import lane
from .config import LINE1_ROWS, LINE4_ROWS, HardwareConfig
from .hostmap import (COUNTER_BASE, COUNTER_BITS, COUNTER_NAMES, DESCRIPTOR_FIELDS, ID_VALUE,
                      REG_CTRL, REG_ID, REG_STATUS, host_map)
from .units import (AdderArray, AffineLanes, LIFLanes, MacPEArray, MaxPoolLanes, Requantiser,
                    SpikePEArray)

__all__ = ["Accelerator", "TOP_NAME", "accelerator_signature"]

TOP_NAME = "ttsnn_accel"
ROW_BITS = 16


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _loops(m: Module, levels, enable):
    """Advance a nest of counters (outer first: ``(signal, count)``) by one step when
    ``enable``. Returns ``ends``: ``ends[i]`` is true when level ``i`` and all inner
    levels are at their last value (the step that finishes level ``i``)."""
    ends = [None] * len(levels)
    all_last = Const(1)
    for idx in range(len(levels) - 1, -1, -1):
        sig, count = levels[idx]
        is_last = sig == (count - 1)
        with m.If(enable & all_last):
            m.d.sync += sig.eq(Mux(is_last, 0, sig + 1))
        all_last = all_last & is_last
        ends[idx] = all_last
    return ends


def accelerator_signature(config: HardwareConfig) -> wiring.Signature:
    """The top level's ports (also written to the manifest)."""
    hb = config.widths.host_data
    return wiring.Signature({
        "host_addr": In(host_map(config).addr_bits), "host_wdata": In(hb),
        "host_write": In(1), "host_read": In(1),
        "host_rdata": Out(hb), "host_rvalid": Out(1),
        "busy": Out(1), "done": Out(1),
    })


class Accelerator(wiring.Component):
    """The TT-SNN forward accelerator for one :class:`HardwareConfig`.

    Ports: ``host_addr``, ``host_wdata``, ``host_write`` (1-cycle strobe), ``host_read``
    (1-cycle strobe), ``host_rdata``/``host_rvalid`` (2 cycles after ``host_read``), ``busy``
    (high while a tile runs), ``done`` (rises at the end of a tile, stays high until the
    next start). Address map: :func:`gen.hostmap.host_map`.
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
        wd, lim = cfg.widths, cfg.limits
        P, lp = cfg.lanes, _log2(cfg.lanes)
        NG = cfg.max_rank_groups
        SW, lsw = cfg.spike_word_bits, _log2(cfg.spike_word_bits)
        WWMAX, WMAX = cfg.max_window_width, lim.max_tile_width
        S1, S4 = WWMAX * NG, WMAX * NG        # slot strides of line1 and line4
        L1B = _log2(LINE1_ROWS)
        ab, qb, mb, sb, wb = wd.accumulator, wd.activation, wd.membrane, wd.affine_scale, wd.weight
        hb = wd.host_data

        busy, done = Signal(), Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        # ---- descriptor --------------------------------------------------------------------
        d = {name: Signal(bits, name=f"desc_{name}") for name, bits, _ in DESCRIPTOR_FIELDS}
        T, H, W = d["timesteps"], d["height"], d["width"]
        R, CIN, COUT = d["rank"], d["in_channels"], d["out_channels"]
        rnd, pool, use_res = d["round"], d["pool"], d["residual"]
        Hw, Ww = Signal(ROW_BITS), Signal(ROW_BITS)
        Ho, Wo = Signal(ROW_BITS), Signal(ROW_BITS)
        ng, ngo, cw = Signal(ROW_BITS), Signal(ROW_BITS), Signal(ROW_BITS)
        m.d.comb += [
            Hw.eq(H + 2), Ww.eq(W + 2),
            Ho.eq(Mux(pool, H >> 1, H)), Wo.eq(Mux(pool, W >> 1, W)),
            ng.eq((R + (P - 1)) >> lp), ngo.eq((COUT + (P - 1)) >> lp),
            cw.eq((CIN + (SW - 1)) >> lsw),
        ]
        is_stt = d["mode"] == 0
        is_htt = d["mode"] == 2

        def active_lanes(total, group):
            rest = (total - (group << lp))[:ROW_BITS]
            return Mux(rest >= P, P, rest)

        # ---- memories ----------------------------------------------------------------------
        mems = {}
        for reg in cfg.regions.values():
            mems[reg.name] = m.submodules[f"mem_{reg.name}"] = Memory(
                shape=unsigned(reg.width_bits), depth=reg.depth, init=[])
        rp = lambda name: mems[name].read_port(domain="sync")  # noqa: E731
        wp = lambda name: mems[name].write_port(domain="sync")  # noqa: E731

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

        max_sub = max(r.subwords for r in hmap.regions)
        staging = Signal(max((max_sub - 1) * hb, 1))
        host_ports = {}   # region -> (word, k, hit, RegionMap)
        for reg in hmap.regions:
            off = (addr - reg.base)[:self.map.addr_bits]
            hit = (addr >= reg.base) & (addr < reg.base + reg.span)
            word = off >> _log2(reg.stride)
            k = off[:_log2(reg.stride)] if reg.stride > 1 else Const(0, 1)
            host_ports[reg.name] = (word, k, hit, reg)
            count("host_words_in", self.host_write & hit & ~busy & (k < reg.subwords))
            count("host_words_out", self.host_read & hit & ~busy & (k < reg.subwords))
        with m.If(self.host_write & ~busy):
            for name, (word, k, hit, reg) in host_ports.items():
                if reg.subwords > 1:
                    with m.If(hit & (k < reg.subwords - 1)):
                        m.d.sync += staging.word_select(k[:max(_log2(max_sub) + 1, 1)], hb).eq(self.host_wdata)
            for name, bits, _ in DESCRIPTOR_FIELDS:
                with m.If(addr == hmap.register(name).address):
                    m.d.sync += d[name].eq(self.host_wdata[:bits])

        def host_commit(name):
            """(en, addr, data) of a host write committing a whole word of region ``name``."""
            word, k, hit, reg = host_ports[name]
            en = self.host_write & ~busy & hit & (k == reg.subwords - 1)
            data = Cat(staging[:(reg.subwords - 1) * hb], self.host_wdata)[:reg.width_bits] \
                if reg.subwords > 1 else self.host_wdata[:reg.width_bits]
            return en, word, data

        def shared_write(name, dp_en, dp_addr, dp_data):
            port = wp(name)
            h_en, h_addr, h_data = host_commit(name)
            m.d.comb += [port.en.eq(Mux(busy, dp_en, h_en)),
                         port.addr.eq(Mux(busy, dp_addr, h_addr)),
                         port.data.eq(Mux(busy, dp_data, h_data))]
            return port

        def host_only_write(name):
            port = wp(name)
            h_en, h_addr, h_data = host_commit(name)
            m.d.comb += [port.en.eq(h_en), port.addr.eq(h_addr), port.data.eq(h_data)]

        host_read_ports = {}

        def shared_read(name, dp_en, dp_addr):
            """A read port shared by the datapath (while busy) and the host (while idle)."""
            port = rp(name)
            word, _, hit, _ = host_ports[name]
            m.d.comb += [port.en.eq(Mux(busy, dp_en, self.host_read & hit)),
                         port.addr.eq(Mux(busy, dp_addr, word))]
            host_read_ports[name] = port
            return port

        # ---- engine E1: cluster 1 ----------------------------------------------------------
        t1, y1, x1 = Signal(8), Signal(ROW_BITS), Signal(ROW_BITS)
        g1, c1 = Signal(ROW_BITS), Signal(ROW_BITS)
        run1 = Signal()
        prow1, rel1, done_rows1 = Signal(ROW_BITS), Signal(ROW_BITS), Signal(ROW_BITS)
        waddr1, pixbase1 = Signal(ROW_BITS), Signal(ROW_BITS)
        ok1 = (prow1 - rel1)[:ROW_BITS] < LINE1_ROWS
        issue1 = Signal()
        m.d.comb += issue1.eq(run1 & ok1)
        # window pixels outside the layer hold zero spikes, so q1 there is exactly 0: E1 spends
        # one cycle per (pixel, group) writing the zero instead of Cin accumulate cycles
        hz = d["zero_halo"]
        zero_px = Signal()
        m.d.comb += zero_px.eq(((y1 == 0) & hz[0]) | ((y1 == Hw - 1) & hz[1])
                               | ((x1 == 0) & hz[2]) | ((x1 == Ww - 1) & hz[3]))
        e1 = _loops(m, [(t1, T), (y1, Hw), (x1, Ww), (g1, ng), (c1, Mux(zero_px, 1, CIN))], issue1)
        unit_end1, pix_end1, row_end1, all_end1 = e1[4], e1[3], e1[2], e1[0]
        with m.If(issue1):
            m.d.sync += [waddr1.eq(Mux(pix_end1, 0, waddr1 + 1)),
                         pixbase1.eq(Mux(pix_end1, pixbase1 + cw, pixbase1)),
                         prow1.eq(prow1 + row_end1)]
            with m.If(all_end1):
                m.d.sync += run1.eq(0)
        count("c1_busy", issue1)
        count("c1_stall", run1 & ~ok1)
        spike_rd = shared_read("spike_in", issue1 & ~zero_px & (c1[:lsw] == 0),
                               d["spike_base"] + pixbase1 + (c1 >> lsw))
        w1_rd = shared_read("w1", issue1 & ~zero_px, waddr1)
        count("spike_in_reads", spike_rd.en & busy)
        count("w1_reads", issue1 & ~zero_px)

        v1a, first1a, last1a, rowend1a, zero1a = Signal(), Signal(), Signal(), Signal(), Signal()
        sel1a, g1a, x1a, slot1a = Signal(lsw), Signal(ROW_BITS), Signal(ROW_BITS), Signal(L1B)
        act1a = Signal(range(P + 1))
        m.d.sync += [v1a.eq(issue1), first1a.eq(c1 == 0), last1a.eq(unit_end1), zero1a.eq(zero_px),
                     rowend1a.eq(row_end1), sel1a.eq(c1[:lsw]), g1a.eq(g1), x1a.eq(x1),
                     slot1a.eq(prow1[:L1B]), act1a.eq(active_lanes(R, g1))]
        m.submodules.cluster1 = pe1 = SpikePEArray(P, wb, ab)
        spike_bit = spike_rd.data.bit_select(sel1a, 1) & ~zero1a
        m.d.comb += [pe1.valid.eq(v1a), pe1.first.eq(first1a), pe1.spike.eq(spike_bit),
                     pe1.weights.eq(w1_rd.data)]
        count("c1_slots", Mux(v1a & ~zero1a, act1a, 0))
        count("c1_adds", Mux(v1a & spike_bit, act1a, 0))

        v1b, last1b, rowend1b = Signal(), Signal(), Signal()
        g1b, x1b, slot1b = Signal(ROW_BITS), Signal(ROW_BITS), Signal(L1B)
        m.d.sync += [v1b.eq(v1a), last1b.eq(last1a), rowend1b.eq(rowend1a), g1b.eq(g1a),
                     x1b.eq(x1a), slot1b.eq(slot1a)]
        m.submodules.requant1 = rq1 = Requantiser(P, ab, qb)
        m.d.comb += [rq1.i.eq(pe1.acc), rq1.shift.eq(d["shift1"]), rq1.rnd.eq(rnd)]
        line1_w = wp("line1")
        m.d.comb += [line1_w.en.eq(v1b & last1b),
                     line1_w.addr.eq(slot1b * S1 + x1b * NG + g1b),
                     line1_w.data.eq(rq1.o)]
        count("line1_writes", line1_w.en)
        with m.If(v1b & last1b & rowend1b):
            m.d.sync += done_rows1.eq(done_rows1 + 1)

        # ---- engine E23: clusters 2/3 and the adder array ----------------------------------
        t2, y2, s2 = Signal(8), Signal(ROW_BITS), Signal(ROW_BITS)
        g2, j2, i2 = Signal(ROW_BITS), Signal(ROW_BITS), Signal(2)
        run23 = Signal()
        need23, slot23 = Signal(ROW_BITS), Signal(L1B)
        prow4, rel4, done_rows4 = Signal(ROW_BITS), Signal(ROW_BITS), Signal(ROW_BITS)
        wa23 = Signal(ROW_BITS)
        full_t2 = d["schedule"].bit_select(t2, 1)
        copy = is_htt & ~full_t2
        stt = is_stt
        ptt = ~is_stt & ~copy
        jl = Mux(copy, 1, R)
        il = Mux(copy, 1, 3)
        steps = Mux(stt, W + 3, W)
        ok23 = (done_rows1 >= need23) & ((prow4 - rel4)[:ROW_BITS] < LINE4_ROWS)
        issue23 = Signal()
        m.d.comb += issue23.eq(run23 & ok23)
        e23 = _loops(m, [(t2, T), (y2, H), (s2, steps), (g2, ng), (j2, jl), (i2, il)], issue23)
        unit_end23, step_end23, row_end23, t_end23, all_end23 = e23[4], e23[3], e23[2], e23[1], e23[0]
        adv = Mux(t_end23, 3, 1)
        with m.If(issue23):
            m.d.sync += wa23.eq(Mux(step_end23, 0, wa23 + 1))
            with m.If(row_end23):
                m.d.sync += [need23.eq(need23 + adv), slot23.eq(slot23 + adv),
                             rel1.eq(rel1 + adv), prow4.eq(prow4 + 1)]
            with m.If(all_end23):
                m.d.sync += run23.eq(0)
        count("c23_busy", issue23)
        count("c23_stall", run23 & ~ok23)
        c2_on = ~copy & Mux(stt, s2 < Ww, 1)
        c3_on = ~copy & Mux(stt, s2 >= 3, 1)
        jg = j2 >> lp
        line1_a = rp("line1")
        line1_b = rp("line1")
        row_a = Mux(copy, slot23 + 1, slot23 + i2)[:L1B]
        col_a = Mux(stt, s2, s2 + 1)
        grp_a = Mux(copy, g2, jg)
        m.d.comb += [line1_a.en.eq(issue23 & (c2_on | copy)),
                     line1_a.addr.eq(row_a * S1 + col_a * NG + grp_a),
                     line1_b.en.eq(issue23 & ptt),
                     line1_b.addr.eq((slot23 + 1)[:L1B] * S1 + (s2 + i2) * NG + jg)]
        row2_r = rp("row2")
        m.d.comb += [row2_r.en.eq(issue23 & stt & (s2 >= 3)),
                     row2_r.addr.eq((s2 + i2 - 3) * NG + jg)]
        w2_rd = shared_read("w2", issue23 & c2_on, wa23)
        w3_rd = shared_read("w3", issue23 & c3_on, wa23)
        count("line1_reads", line1_a.en + line1_b.en)
        count("row2_reads", row2_r.en)
        count("w2_reads", issue23 & c2_on)
        count("w3_reads", issue23 & c3_on)

        v2a, first2a, last2a, rowend2a = Signal(), Signal(), Signal(), Signal()
        lane2a = Signal(max(lp, 1))
        g2a, s2a = Signal(ROW_BITS), Signal(ROW_BITS)
        stt2a, ptt2a, copy2a, c2a, c3a = Signal(), Signal(), Signal(), Signal(), Signal()
        slot4a = Signal(2)
        act2a = Signal(range(P + 1))
        m.d.sync += [v2a.eq(issue23), first2a.eq((j2 == 0) & (i2 == 0)), last2a.eq(unit_end23),
                     rowend2a.eq(row_end23), lane2a.eq(j2[:lp] if lp else 0), g2a.eq(g2),
                     s2a.eq(s2), stt2a.eq(stt), ptt2a.eq(ptt), copy2a.eq(copy),
                     c2a.eq(c2_on), c3a.eq(c3_on), slot4a.eq(prow4[:2]),
                     act2a.eq(active_lanes(R, g2))]
        m.submodules.cluster2 = pe2 = MacPEArray(P, wb, qb, ab)
        m.submodules.cluster3 = pe3 = MacPEArray(P, wb, qb, ab)
        op2 = line1_a.data.word_select(lane2a, qb)
        op3 = Mux(ptt2a, line1_b.data.word_select(lane2a, qb), row2_r.data.word_select(lane2a, qb))
        m.d.comb += [pe2.valid.eq(v2a & c2a), pe2.first.eq(first2a), pe2.operand.eq(op2),
                     pe2.weights.eq(w2_rd.data),
                     pe3.valid.eq(v2a & c3a), pe3.first.eq(first2a), pe3.operand.eq(op3),
                     pe3.weights.eq(w3_rd.data)]
        count("c2_macs", Mux(v2a & c2a, act2a, 0))
        count("c3_macs", Mux(v2a & c3a, act2a, 0))
        copy_word = Signal(P * qb)
        m.d.sync += copy_word.eq(line1_a.data)

        v2b, last2b, rowend2b = Signal(), Signal(), Signal()
        g2b, s2b = Signal(ROW_BITS), Signal(ROW_BITS)
        stt2b, ptt2b, copy2b, c2b, c3b = Signal(), Signal(), Signal(), Signal(), Signal()
        slot4b = Signal(2)
        act2b = Signal(range(P + 1))
        m.d.sync += [v2b.eq(v2a), last2b.eq(last2a), rowend2b.eq(rowend2a), g2b.eq(g2a),
                     s2b.eq(s2a), stt2b.eq(stt2a), ptt2b.eq(ptt2a), copy2b.eq(copy2a),
                     c2b.eq(c2a), c3b.eq(c3a), slot4b.eq(slot4a), act2b.eq(act2a)]
        m.submodules.requant2 = rq2 = Requantiser(P, ab, qb)
        m.d.comb += [rq2.i.eq(pe2.acc), rq2.shift.eq(d["shift2"]), rq2.rnd.eq(rnd)]
        row2_w = wp("row2")
        m.d.comb += [row2_w.en.eq(v2b & last2b & stt2b & c2b),
                     row2_w.addr.eq(s2b * NG + g2b), row2_w.data.eq(rq2.o)]
        count("row2_writes", row2_w.en)
        m.submodules.adder = adder = AdderArray(P, ab)
        m.d.comb += [adder.a.eq(pe2.acc), adder.b.eq(pe3.acc)]
        lanes3 = []
        for l in range(P):
            ext = Signal(signed(ab + 1), name=f"acc3_ext{l}")
            m.d.comb += ext.eq(lane(pe3.acc, l, ab))
            lanes3.append(ext)
        m.submodules.requant3 = rq3 = Requantiser(P, ab + 1, qb)
        m.d.comb += [rq3.i.eq(Mux(ptt2b, adder.o, Cat(*lanes3))),
                     rq3.shift.eq(Mux(ptt2b, d["shift3"] + 1, d["shift3"])), rq3.rnd.eq(rnd)]
        line4_w = wp("line4")
        merge = v2b & last2b & ptt2b
        m.d.comb += [line4_w.en.eq(v2b & last2b & (copy2b | ptt2b | (stt2b & c3b))),
                     line4_w.addr.eq(slot4b * S4 + Mux(stt2b, s2b - 3, s2b) * NG + g2b),
                     line4_w.data.eq(Mux(copy2b, copy_word, rq3.o))]
        count("line4_writes", line4_w.en)
        count("adder_busy", merge)
        count("adds", Mux(merge, act2b, 0))
        with m.If(v2b & last2b & rowend2b):
            m.d.sync += done_rows4.eq(done_rows4 + 1)

        # ---- engine E4: cluster 4, pool, affine, residual, LIF ------------------------------
        t4, yo4, xo4 = Signal(8), Signal(ROW_BITS), Signal(ROW_BITS)
        go4, sub4, k4 = Signal(ROW_BITS), Signal(2), Signal(ROW_BITS)
        run4 = Signal()
        need4, slot4r = Signal(ROW_BITS), Signal(2)
        gobase4, outidx, previdx = Signal(ROW_BITS), Signal(ROW_BITS), Signal(ROW_BITS)
        rows_step = Mux(pool, 2, 1)
        ok4 = done_rows4 >= need4
        issue4 = Signal()
        m.d.comb += issue4.eq(run4 & ok4)
        e4 = _loops(m, [(t4, T), (yo4, Ho), (xo4, Wo), (go4, ngo), (sub4, Mux(pool, 4, 1)),
                        (k4, R)], issue4)
        sub_end4, grp_end4, pix_end4, row_end4, all_end4 = e4[5], e4[4], e4[3], e4[2], e4[0]
        with m.If(issue4):
            with m.If(grp_end4):
                m.d.sync += [gobase4.eq(Mux(pix_end4, 0, gobase4 + R)), outidx.eq(outidx + 1),
                             previdx.eq(previdx + (t4 != 0))]
            with m.If(row_end4):
                m.d.sync += [need4.eq(need4 + rows_step), slot4r.eq(slot4r + rows_step),
                             rel4.eq(rel4 + rows_step)]
            with m.If(all_end4):
                m.d.sync += run4.eq(0)
        count("c4_busy", issue4)
        count("c4_stall", run4 & ~ok4)
        dy, dx = sub4[1], sub4[0]
        line4_r = rp("line4")
        m.d.comb += [line4_r.en.eq(issue4),
                     line4_r.addr.eq((slot4r + Mux(pool, dy, 0))[:2] * S4
                                     + Mux(pool, (xo4 << 1) + dx, xo4) * NG + (k4 >> lp))]
        w4_rd = shared_read("w4", issue4, gobase4 + k4)
        aff_rd = shared_read("affine", issue4 & grp_end4, go4)
        res_rd = shared_read("residual", issue4 & grp_end4 & use_res, d["residual_base"] + outidx)
        mem_rd = shared_read("membrane", issue4 & grp_end4 & (t4 != 0), d["state_base"] + previdx)
        count("line4_reads", issue4)
        count("w4_reads", issue4)
        count("affine_reads", issue4 & grp_end4)
        count("residual_reads", issue4 & grp_end4 & use_res)
        count("membrane_reads", issue4 & grp_end4 & (t4 != 0))

        v4a, first4a, last4a, subfirst4a, grp4a, t0_4a = (Signal() for _ in range(6))
        lane4a = Signal(max(lp, 1))
        t4a, outidx4a = Signal(8), Signal(ROW_BITS)
        act4a = Signal(range(P + 1))
        m.d.sync += [v4a.eq(issue4), first4a.eq(k4 == 0), last4a.eq(sub_end4),
                     subfirst4a.eq(sub4 == 0), grp4a.eq(grp_end4), t0_4a.eq(t4 == 0),
                     lane4a.eq(k4[:lp] if lp else 0), t4a.eq(t4), outidx4a.eq(outidx),
                     act4a.eq(active_lanes(COUT, go4))]
        m.submodules.cluster4 = pe4 = MacPEArray(P, wb, qb, ab)
        m.d.comb += [pe4.valid.eq(v4a), pe4.first.eq(first4a),
                     pe4.operand.eq(line4_r.data.word_select(lane4a, qb)),
                     pe4.weights.eq(w4_rd.data)]
        count("c4_macs", Mux(v4a, act4a, 0))
        v4b, last4b, subfirst4b, grp4b = Signal(), Signal(), Signal(), Signal()
        t4b, outidx4b = Signal(8), Signal(ROW_BITS)
        act4b = Signal(range(P + 1))
        aff4b = Signal(len(aff_rd.data))
        res4b, uprev4b = Signal(P * mb), Signal(P * mb)
        m.d.sync += [v4b.eq(v4a), last4b.eq(last4a), subfirst4b.eq(subfirst4a), grp4b.eq(grp4a),
                     t4b.eq(t4a), outidx4b.eq(outidx4a), act4b.eq(act4a)]
        with m.If(v4a & grp4a):
            m.d.sync += [aff4b.eq(aff_rd.data), res4b.eq(res_rd.data),
                         uprev4b.eq(Mux(t0_4a, 0, mem_rd.data))]
        m.submodules.maxpool = mp = MaxPoolLanes(P, ab)
        m.d.comb += [mp.valid.eq(v4b & last4b), mp.first.eq(subfirst4b), mp.i.eq(pe4.acc)]

        vc = Signal()
        pc = Signal(P * ab)
        affc, resc, uprevc = Signal(len(aff_rd.data)), Signal(P * mb), Signal(P * mb)
        tc, outidxc = Signal(8), Signal(ROW_BITS)
        actc = Signal(range(P + 1))
        m.d.sync += [vc.eq(v4b & grp4b), pc.eq(mp.o), affc.eq(aff4b), resc.eq(res4b),
                     uprevc.eq(uprev4b), tc.eq(t4b), outidxc.eq(outidx4b), actc.eq(act4b)]
        lane_bits = 2 * sb + mb
        cls = is_htt & ~d["schedule"].bit_select(tc, 1)
        scale0 = Cat(*[affc[l * lane_bits:l * lane_bits + sb] for l in range(P)])
        scale1 = Cat(*[affc[l * lane_bits + sb:l * lane_bits + 2 * sb] for l in range(P)])
        bias = Cat(*[affc[l * lane_bits + 2 * sb:(l + 1) * lane_bits] for l in range(P)])
        m.submodules.affine = aff = AffineLanes(P, ab, sb, mb)
        m.d.comb += [aff.p.eq(pc), aff.scale.eq(Mux(cls, scale1, scale0)), aff.bias.eq(bias),
                     aff.residual.eq(resc), aff.shift.eq(d["affine_shift"]), aff.rnd.eq(rnd),
                     aff.use_residual.eq(use_res)]
        m.submodules.lif = lif = LIFLanes(P, mb, wd.leak_mul)
        m.d.comb += [lif.cur.eq(aff.o), lif.u_prev.eq(uprevc), lif.threshold.eq(d["threshold"]),
                     lif.leak_mul.eq(d["leak_mul"]), lif.leak_shift.eq(d["leak_shift"]),
                     lif.rnd.eq(rnd)]
        mask = Signal(P)
        m.d.comb += mask.eq(Cat(*[actc > l for l in range(P)]))
        spikes_masked = Signal(P)
        m.d.comb += spikes_masked.eq(lif.s & mask)
        shared_write("membrane", vc, d["state_base"] + outidxc, lif.u)
        shared_write("spikes", vc, d["state_base"] + outidxc, spikes_masked)
        count("membrane_writes", vc)
        count("spikes_writes", vc)
        count("lif_busy", vc)
        count("lif_updates", Mux(vc, actc, 0))
        count("spikes_out", Mux(vc, sum(spikes_masked[l] for l in range(P)), 0))

        # host-only ports: weight and input regions are written by the host only
        for name in ("w1", "w2", "w3", "w4", "affine", "spike_in", "residual"):
            host_only_write(name)
        spikes_rd = rp("spikes")
        sw_, _, shit_, _ = host_ports["spikes"]
        m.d.comb += [spikes_rd.en.eq(self.host_read & shit_ & ~busy), spikes_rd.addr.eq(sw_)]
        host_read_ports["spikes"] = spikes_rd

        # ---- start / done ------------------------------------------------------------------
        pipeline_busy = run1 | run23 | run4 | v1a | v1b | v2a | v2b | v4a | v4b | vc
        with m.If(start):
            m.d.sync += [busy.eq(1), done.eq(0), run1.eq(1), run23.eq(1), run4.eq(1),
                         t1.eq(0), y1.eq(0), x1.eq(0), g1.eq(0), c1.eq(0),
                         prow1.eq(0), rel1.eq(0), done_rows1.eq(0), waddr1.eq(0), pixbase1.eq(0),
                         t2.eq(0), y2.eq(0), s2.eq(0), g2.eq(0), j2.eq(0), i2.eq(0),
                         need23.eq(3), slot23.eq(0), prow4.eq(0), rel4.eq(0), done_rows4.eq(0),
                         wa23.eq(0),
                         t4.eq(0), yo4.eq(0), xo4.eq(0), go4.eq(0), sub4.eq(0), k4.eq(0),
                         need4.eq(Mux(pool, 2, 1)), slot4r.eq(0), gobase4.eq(0), outidx.eq(0),
                         previdx.eq(0)]
        with m.Elif(busy & ~pipeline_busy):
            m.d.sync += [busy.eq(0), done.eq(1)]
        count("cycles", busy)

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
        with m.Switch(addr):
            with m.Case(REG_ID):
                m.d.comb += reg_value.eq(ID_VALUE)
            with m.Case(REG_STATUS):
                m.d.comb += reg_value.eq(Cat(busy, done))
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
            word, k, hit, _ = host_ports[reg.name]
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
                    data = host_read_ports[reg.name].data
                    padded = Cat(data, Const(0, reg.stride * hb - len(data)))
                    m.d.comb += out_value.eq(Mux(busy, 0, padded.word_select(rd_k[:max(_log2(reg.stride), 1)]
                                                                             if reg.stride > 1 else 0, hb)))
        m.d.sync += [self.host_rvalid.eq(rd_valid1), self.host_rdata.eq(out_value)]
        return m
