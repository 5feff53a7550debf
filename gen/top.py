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

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import lane
from .config import HardwareConfig, log2
from .descriptor import DESCRIPTOR_LAYOUT
from .geometry import TAP_ORDER
from .hostmap import (COUNTER_BASE, COUNTER_BITS, COUNTER_NAMES, DESCRIPTOR_BASE, DESCRIPTOR_FIELDS, ID_VALUE,
                      REG_CTRL, REG_ID, REG_STATUS, STREAM_BITS, STREAM_REGISTERS, host_map)
from .engines import ClusterFourEngine, ClusterOneEngine
from .engines.common import inc3, times3
from .tilegeo import ROW_BITS, TileGeometryUnit
from .units import AdderArray, MacCluster, Requantiser

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
        P, lp = cfg.lanes, log2(cfg.lanes)
        ws = cfg.is_weight_stationary("cluster2")
        BLK = cfg.spad_psum_entries if ws else 1    # blocks sharing one weight chunk
        CHK = cfg.spad_weight_entries if ws else 1  # reduction steps per chunk
        lB = log2(BLK)
        ab, qb, wb = wd.accumulator, wd.activation, wd.weight
        hb = wd.host_data
        RB = ROW_BITS

        busy, done = Signal(), Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        # ---- descriptor and the tile geometry derived from it (registered) -----------------
        desc = Signal(DESCRIPTOR_LAYOUT, name="desc")
        d = {name: desc[name] for name, _, _ in DESCRIPTOR_FIELDS}
        T, H, W = d["timesteps"], d["height"], d["width"]
        rnd, pool = d["round"], d["pool"]
        zt, zb, zl, zr = (d["zero_halo"][i] for i in range(4))
        is_stt = d["mode"] == 0
        is_htt = d["mode"] == 2
        order = d["order"]                           # 1: timestep outer

        m.submodules.geometry = geometry = TileGeometryUnit(cfg)
        m.d.comb += geometry.desc.eq(desc)
        g = geometry.geo
        pk, pxl, Pk, Px = g.pack, g.pxl, g.pk, g.px   # log2 Pk, log2 Px, Pk, Px
        ng, last_lanes, nb, rw1, rw4 = g.ng, g.last_lanes, g.nb, g.rw1, g.rw4
        r3, ns, nch, last_chunk = g.r3, g.ns, g.nch, g.last_chunk
        Ho = g.ho

        def t_times_next(v, unit, i_last):
            """``v = t * unit`` at the end of a row: t is the inner loop counter in row
            order (wraps after the last timestep) and the outer one in timestep order."""
            return Mux(order, Mux(i_last, v + unit, v), Mux(i_last, 0, v + unit))

        w_aligned = (W & (Px - 1)) == 0
        # cluster 2's blocks (+1: index in the row, the left halo block is 0): STT computes the
        # halo columns it needs (edges that are not zero halo)
        e_lo2, nbg2, lastg2, nbg3, lastg3 = g.e_lo2, g.nbg2, g.lastg2, g.nbg3, g.lastg3
        last_cols = g.last_cols                        # valid columns of the last block
        # per-tile products, so that the address and handshake logic below only adds
        TR1, TR4, T3R1 = g.tr1, g.tr4, g.t3r1          # line1 / line4 slot groups, the line1 ring
        e_lo2_ng = g.e_lo2_ng

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
        e2_done, e2_rel = Signal(RB), Signal(RB)   # E2 rows written / released (q*T + t order)
        e3_done, e3_rel = Signal(RB), Signal(RB)
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
        line1_w = mems["line1"].write_port(granularity=qb)
        m.d.comb += [line1_w.en.eq(e1.line1.en), line1_w.addr.eq(e1.line1.addr),
                     line1_w.data.eq(e1.line1.data)]
        for name, _ in e1.counts.shape():
            count(name, e1.counts[name])

        # ==== E2 / E3: clusters 2 and 3 ===================================================
        line1_a = rp("line1")     # cluster 2: rows q and q+2 (taps 0, 2)
        line1_b = rp("line1")     # centre row q+1 (cluster 2 tap 1, cluster 3, HTT copy)
        line1_c = rp("line1")     # cluster 3 (PTT): the neighbouring block
        row2_b, row2_c = rp("row2"), rp("row2")
        m.submodules.cluster2 = pe2 = MacCluster(P, wb, qb, ab, CHK if ws else 0, BLK if ws else 0)
        m.submodules.cluster3 = pe3 = MacCluster(P, wb, qb, ab, CHK if ws else 0, BLK if ws else 0)
        for pe in (pe2, pe3):
            m.d.comb += pe.pack.eq(pk)

        def mac_engine(name, e_lo, e_lo_ng, nbg, lastg, copy_allowed):
            """Loop counters and step flags of one MAC engine (E2 or E3) at the issue stage."""
            e = {k: Signal(RB, name=f"{name}_{k}") for k in
                 ("o", "i", "g", "bg", "ck", "b", "s", "jb", "jl", "sl", "jbs", "jls", "sls", "gbase",
                  "seq", "bc")}
            e["q"] = Signal(RB, name=f"{name}_q")
            e["t"] = Signal(8, name=f"{name}_t")
            m.d.comb += [e["q"].eq(Mux(order, e["i"], e["o"])), e["t"].eq(Mux(order, e["o"], e["i"]))]
            e["ti"], e["tis"] = Signal(2, name=f"{name}_ti"), Signal(2, name=f"{name}_tis")
            e["qm3"] = Signal(2, name=f"{name}_qm3")
            # word offsets and bases kept by adding (no multiplier in the address path)
            for k in ("goff", "boff", "coff", "r1base", "trw", "tr4", "tho", "l4b"):
                e[k] = Signal(RB, name=f"{name}_{k}")
            e["e_lo_ng"] = e_lo_ng
            e["run"] = Signal(name=f"{name}_run")
            e["issue"] = Signal(name=f"{name}_issue")
            e["copy"] = Signal(name=f"{name}_copy")
            m.d.comb += e["copy"].eq(Const(copy_allowed) & is_htt & ~d["schedule"].bit_select(e["t"], 1))
            nbi = Mux(e["bg"] == nbg - 1, lastg, BLK)
            single = Signal(name=f"{name}_single")
            m.d.comb += single.eq(nbi == 1)
            chunk_len = Mux(single, r3, Mux(e["ck"] == nch - 1, last_chunk, CHK))
            jl_max = Mux(e["jb"] == ng - 1, last_lanes, Pk)
            f = {k: Signal(name=f"{name}_{k}") for k in
                 ("s_first", "s_last", "final", "from_psum", "psum_out", "glb_w", "spad_wr",
                  "spad_rd", "row_end", "all_end")}
            m.d.comb += [f["s_first"].eq(e["s"] == 0), f["s_last"].eq(e["s"] == chunk_len - 1),
                         f["final"].eq(f["s_last"] & (single | (e["ck"] == nch - 1))),
                         f["from_psum"].eq(f["s_first"] & ~single & (e["ck"] != 0)),
                         f["psum_out"].eq(f["s_last"] & ~f["final"]),
                         f["glb_w"].eq(single | (e["b"] == 0)),
                         f["spad_wr"].eq(~single & (e["b"] == 0)),
                         f["spad_rd"].eq(~single & (e["b"] != 0))]
            blk_last = e["b"] == nbi - 1
            copy_end = (e["bc"] == nb - 1) & (e["g"] == ng - 1)
            mac_end = f["final"] & blk_last & (e["bg"] == nbg - 1) & (e["g"] == ng - 1)
            m.d.comb += f["row_end"].eq(Mux(e["copy"], copy_end, mac_end))
            m.d.comb += f["all_end"].eq(f["row_end"] & (e["q"] == H - 1) & (e["t"] == T - 1))
            i_last = e["i"] == Mux(order, H, T) - 1
            # next step of the reduction: (jb, tap index, jl) with jl innermost
            jl_wrap = e["jl"] == jl_max - 1
            ti_wrap = e["ti"] == 2
            nxt = {"jl": Mux(jl_wrap, 0, e["jl"] + 1),
                   "ti": Mux(jl_wrap, Mux(ti_wrap, 0, e["ti"] + 1), e["ti"]),
                   "jb": Mux(jl_wrap & ti_wrap, e["jb"] + 1, e["jb"]),
                   "sl": e["sl"] + 1}
            steps = ("jb", "ti", "jl", "sl")
            saved = {"jb": e["jbs"], "ti": e["tis"], "jl": e["jls"], "sl": e["sls"]}
            with m.If(e["issue"]):
                with m.If(e["copy"]):
                    m.d.sync += e["g"].eq(Mux(e["g"] == ng - 1, 0, e["g"] + 1))
                    with m.If(e["g"] == ng - 1):
                        m.d.sync += [e["bc"].eq(Mux(e["bc"] == nb - 1, 0, e["bc"] + 1)),
                                     e["coff"].eq(Mux(e["bc"] == nb - 1, ng, e["coff"] + ng))]
                with m.Elif(f["s_last"]):
                    m.d.sync += e["s"].eq(0)
                    with m.If(~blk_last):
                        m.d.sync += [e["b"].eq(e["b"] + 1), e["boff"].eq(e["boff"] + ng)]
                        m.d.sync += [e[k].eq(saved[k]) for k in steps]
                    with m.Else():
                        m.d.sync += [e["b"].eq(0), e["boff"].eq(0)]
                        with m.If(~f["final"]):
                            m.d.sync += e["ck"].eq(e["ck"] + 1)
                            m.d.sync += [e[k].eq(nxt[k]) for k in steps]
                            m.d.sync += [saved[k].eq(nxt[k]) for k in steps]
                        with m.Else():
                            m.d.sync += e["ck"].eq(0)
                            m.d.sync += [e[k].eq(0) for k in steps] + [saved[k].eq(0) for k in steps]
                            with m.If(e["bg"] != nbg - 1):
                                m.d.sync += [e["bg"].eq(e["bg"] + 1), e["goff"].eq(e["goff"] + (ng << lB))]
                            with m.Else():
                                m.d.sync += [e["bg"].eq(0), e["goff"].eq(e_lo_ng)]
                                with m.If(e["g"] != ng - 1):
                                    m.d.sync += [e["g"].eq(e["g"] + 1), e["gbase"].eq(e["gbase"] + ns)]
                                with m.Else():
                                    m.d.sync += [e["g"].eq(0), e["gbase"].eq(0)]
                with m.Else():
                    m.d.sync += e["s"].eq(e["s"] + 1)
                    m.d.sync += [e[k].eq(nxt[k]) for k in steps]
                with m.If(f["row_end"]):
                    m.d.sync += e["seq"].eq(e["seq"] + 1)
                    with m.If(i_last):
                        m.d.sync += [e["i"].eq(0), e["o"].eq(e["o"] + 1)]
                    with m.Else():
                        m.d.sync += e["i"].eq(e["i"] + 1)
                    # q mod 3: q is the outer counter (row outer) or the inner one
                    m.d.sync += e["qm3"].eq(Mux(order, Mux(i_last, 0, inc3(e["qm3"])),
                                                Mux(i_last, inc3(e["qm3"]), e["qm3"])))
                    step_b = e["r1base"] + Mux(i_last, (rw1 << 1) + rw1, rw1)
                    m.d.sync += e["r1base"].eq(Mux(step_b >= T3R1, step_b - T3R1, step_b))
                    m.d.sync += [e["trw"].eq(t_times_next(e["trw"], rw1, i_last)),
                                 e["tr4"].eq(t_times_next(e["tr4"], rw4, i_last)),
                                 e["tho"].eq(t_times_next(e["tho"], Ho, i_last)), e["coff"].eq(ng)]
                    # ((q - 3) >> pool) * T, row outer: grows when q moves to a new q23 row pair
                    with m.If(~order & i_last & (e["q"] >= 3) & (~pool | ~e["q"][0])):
                        m.d.sync += e["l4b"].eq(e["l4b"] + T)
                    with m.If(f["all_end"]):
                        m.d.sync += e["run"].eq(0)
            # derived per step
            e["e"] = Signal(RB, name=f"{name}_e")   # block index in the row (+1)
            m.d.comb += e["e"].eq(Mux(e["copy"], e["bc"] + 1, e_lo + (e["bg"] << lB) + e["b"]))
            e["eoff"] = Signal(RB, name=f"{name}_eoff")   # e * ng
            m.d.comb += e["eoff"].eq(Mux(e["copy"], e["coff"], e["goff"] + e["boff"]))
            e["tap"] = Signal(2, name=f"{name}_tap")
            m.d.comb += e["tap"].eq(Array([Const(t, 2) for t in TAP_ORDER])[e["ti"]])
            e["new_op"] = f["s_first"] | (e["jl"] == 0)
            e["new_centre"] = f["s_first"] | ((e["jl"] == 0) & (e["ti"] == 0))
            e["glb_rd"] = f["glb_w"] & (f["s_first"] | ((e["sl"] & (Px - 1)) == 0))
            e["f"] = f
            return e

        E2 = mac_engine("e2", e_lo2, e_lo2_ng, nbg2, lastg2, True)
        E3 = mac_engine("e3", Const(1, 2), ng, nbg3, lastg3, False)
        f2, f3 = E2["f"], E3["f"]
        ptt_row2 = ~is_stt & ~E2["copy"]        # a merging row (PTT or HTT full timestep)

        # E2 readiness: its three q1 rows written; its output slot (row2 or line4) free
        def line4_free(E):
            """line4 slot of q23 row (q, t) free: row (q - 3, t) consumed by cluster 4, i.e.
            E4 has issued output row ((q - 3) >> pool, t) (its index in the row order: row
            outer ((q-3) >> pool) * T + t, timestep outer t * Ho + ((q-3) >> pool))."""
            q = E["q"]
            need = Mux(order, E["tho"] + ((q - 3) >> pool), E["l4b"] + E["t"]) + 1
            return (q < 3) | (e4_rel >= need)

        # E1 rows the current E2 row needs (E1's index of window row (q + 2, t), + 1)
        need2 = Signal(RB)
        with m.If(E2["issue"] & f2["row_end"]):
            i_last2 = E2["i"] == Mux(order, H, T) - 1
            m.d.sync += need2.eq(need2 + Mux(order, Mux(i_last2, 3, 1),
                                             Mux((E2["q"] == 0) & ~i_last2, 3, 1)))
        out_ok2 = Mux(is_stt, e3_rel + 1 >= E2["seq"], line4_free(E2))
        ok2 = (e1_done >= need2) & out_ok2
        m.d.comb += [E2["issue"].eq(E2["run"] & ok2)]
        count("c2_busy", E2["issue"])
        count("c2_stall", E2["run"] & ~ok2)
        count("adder_stall", E2["run"] & ~ok2 & ptt_row2)
        with m.If(E2["issue"] & f2["row_end"]):
            m.d.sync += [e2_rel.eq(e2_rel + 1), rel1.eq(rel1 + Mux(E2["q"] == H - 1, 3, 1))]

        ok3 = (e2_done >= E3["seq"] + 1) & line4_free(E3)
        m.d.comb += E3["issue"].eq(E3["run"] & ok3)
        count("c3_busy", Mux(is_stt, E3["issue"], E2["issue"] & ~E2["copy"]))
        count("c3_stall", Mux(is_stt, E3["run"] & ~ok3, E2["run"] & ~ok2 & ptt_row2))
        with m.If(E3["issue"] & f3["row_end"]):
            m.d.sync += e3_rel.eq(e3_rel + 1)

        # E2's memory reads
        def slot_base(E, i):
            """Word base of the line1 slot of window row (q + i) at timestep t: slot
            ((q + i) mod 3) * T + t (row outer), the ring slot of row q + i modulo 3T
            (timestep outer); times rw1."""
            s = (E["qm3"] + i)
            s = Mux(s >= 3, s - 3, s)
            r = E["r1base"] + (rw1 if i == 1 else (rw1 << 1) if i == 2 else 0)
            r = Mux(r >= T3R1, r - T3R1, r)
            return Mux(order, r, times3(s, TR1) + E["trw"])

        mac2 = E2["issue"] & ~E2["copy"]

        def tap_row_outside(E):
            """The step's tap row (0: window row q, 2: q + 2) lies outside the layer (zero halo)."""
            return Mux(E["tap"] == 0, (E["q"] == 0) & zt, (E["q"] == H - 1) & zb)

        def neighbour_block(E):
            """Cluster 3's operand block for E's step (tap 0: the block on the left, tap 2:
            the one on the right): its index (+1 indexed) and word offset in the row."""
            left = E["tap"] == 0
            return Mux(left, E["e"] - 1, E["e"] + 1), Mux(left, E["eoff"] - ng, E["eoff"] + ng)
        base2_b = slot_base(E2, 1)
        base2_a = Mux(E2["tap"] == 0, slot_base(E2, 0), slot_base(E2, 2))
        nb_e2, nboff2 = neighbour_block(E2)
        # a tap row outside the layer is not read (its operand is masked to zero at stage a)
        m.d.comb += [line1_a.en.eq(mac2 & (E2["ti"] != 0) & E2["new_op"] & ~tap_row_outside(E2)),
                     line1_a.addr.eq(base2_a + E2["eoff"] + E2["jb"]),
                     line1_b.en.eq(E2["issue"] & (E2["copy"] | E2["new_centre"])),
                     line1_b.addr.eq(base2_b + E2["eoff"] + Mux(E2["copy"], E2["g"], E2["jb"])),
                     line1_c.en.eq(mac2 & ~is_stt & (E2["ti"] != 0) & E2["new_op"]),
                     line1_c.addr.eq(base2_b + nboff2 + E2["jb"])]
        count("line1_reads", line1_a.en + line1_b.en + line1_c.en)
        w2_rd = shared_read("w2", mac2 & E2["glb_rd"], E2["gbase"] + (E2["sl"] >> pxl))
        count("w2_reads", mac2 & E2["glb_rd"])
        # E3's memory reads (STT)
        mac3 = E3["issue"]
        base3 = Mux(E3["seq"][0], rw1, 0)
        nb_e3, nboff3 = neighbour_block(E3)
        m.d.comb += [row2_b.en.eq(mac3 & E3["new_centre"]),
                     row2_b.addr.eq(base3 + E3["eoff"] + E3["jb"]),
                     row2_c.en.eq(mac3 & (E3["ti"] != 0) & E3["new_op"]),
                     row2_c.addr.eq(base3 + nboff3 + E3["jb"])]
        count("row2_reads", row2_b.en + row2_c.en)
        w3_en = Mux(is_stt, mac3 & E3["glb_rd"], mac2 & E2["glb_rd"])
        w3_rd = shared_read("w3", w3_en, Mux(is_stt, E3["gbase"] + (E3["sl"] >> pxl),
                                             E2["gbase"] + (E2["sl"] >> pxl)))
        count("w3_reads", w3_en)

        def active_cols(e_blk, stt_halo):
            """Output columns of block ``e_blk`` (+1 indexed) a MAC step counts: columns
            0..W-1, and for cluster 2 in STT the halo columns it computes."""
            b_last = e_blk == nb
            cols = Mux(b_last, last_cols, Px)
            if stt_halo:
                cols = Mux(e_blk == 0, 1, Mux(e_blk == nb + 1, 1,
                           cols + (b_last & ~w_aligned & ~zr)))
            return cols

        def stage_a(name, E, nbr_e):
            """Registers carrying E's issue-stage step into stage a."""
            f = E["f"]
            a = {k: Signal(name=f"{name}a_{k}") for k in
                 ("v", "copy", "first", "from_psum", "use_spad", "w_wr", "final", "psum_out",
                  "row_end", "nb_zero", "row_zero")}
            for k, w_ in (("s", RB), ("b", RB), ("jl", RB), ("wsel", lp + 1), ("e", RB),
                          ("eoff", RB), ("tr4", RB), ("g", RB)):
                a[k] = Signal(w_, name=f"{name}a_{k}")
            a["ti"] = Signal(2, name=f"{name}a_ti")
            a["seq"] = Signal(RB, name=f"{name}a_seq")
            a["qm3"] = Signal(2, name=f"{name}a_qm3")
            nb_zero = ((nbr_e == 0) & zl) | ((nbr_e == nb + 1) & zr)
            m.d.sync += [a["v"].eq(E["issue"]), a["copy"].eq(E["copy"]), a["first"].eq(f["s_first"]),
                         a["from_psum"].eq(f["from_psum"]), a["use_spad"].eq(f["spad_rd"]),
                         a["w_wr"].eq(f["spad_wr"]), a["final"].eq(f["final"]),
                         a["psum_out"].eq(f["psum_out"]), a["row_end"].eq(f["row_end"]),
                         a["nb_zero"].eq(nb_zero & (E["ti"] != 0)),
                         # cluster 2's tap row outside the layer (never written by cluster 1)
                         a["row_zero"].eq((E["ti"] != 0) & tap_row_outside(E)),
                         a["s"].eq(E["s"]), a["b"].eq(E["b"]), a["jl"].eq(E["jl"]),
                         a["wsel"].eq(E["sl"] & (Px - 1)), a["e"].eq(E["e"]), a["g"].eq(E["g"]),
                         a["eoff"].eq(E["eoff"]), a["tr4"].eq(E["tr4"]),
                         a["ti"].eq(E["ti"]), a["seq"].eq(E["seq"]), a["qm3"].eq(E["qm3"])]
            return a

        A2 = stage_a("e2", E2, nb_e2)
        A3 = stage_a("e3", E3, nb_e3)
        lanes2 = Mux((A2["g"] == ng - 1), last_lanes, Pk)
        lanes3 = Mux((A3["g"] == ng - 1), last_lanes, Pk)
        cols2 = active_cols(A2["e"], True)
        cols2_ptt = active_cols(A2["e"], False)
        cols3 = active_cols(A3["e"], False)

        # spad addresses at issue, the step's controls at stage a, partial-sum writes at b
        def drive_cluster(pe, E, A, centre, neighbour, shift, weights, valid):
            m.d.comb += [pe.w_rd.eq(E["issue"] & E["f"]["spad_rd"]), pe.w_addr.eq(E["s"]),
                         pe.p_rd.eq(E["issue"] & E["f"]["from_psum"]), pe.p_addr.eq(E["b"]),
                         pe.valid.eq(valid), pe.first.eq(A["first"]), pe.from_psum.eq(A["from_psum"]),
                         pe.jl.eq(A["jl"]), pe.shift.eq(shift), pe.centre.eq(centre),
                         pe.neighbour.eq(neighbour), pe.wsel.eq(A["wsel"]), pe.weights.eq(weights),
                         pe.use_spad.eq(A["use_spad"]), pe.w_wr.eq(valid & A["w_wr"]),
                         pe.w_wr_addr.eq(A["s"])]

        shift_of = lambda ti: Mux(ti == 0, 0, Mux(ti == 1, 1, 2))  # noqa: E731 (tap 0: -1, tap 2: +1)
        v2mac = A2["v"] & ~A2["copy"]
        drive_cluster(pe2, E2, A2, Mux(A2["ti"] == 0, line1_b.data, Mux(A2["row_zero"], 0, line1_a.data)), 0, 0,
                      w2_rd.data, v2mac)
        # cluster 3: E3 on q2 rows (STT) or E2's step on q1 rows in lock step (PTT/HTT)
        pe3_centre = Mux(is_stt, row2_b.data, line1_b.data)
        pe3_nbr = Mux(Mux(is_stt, A3["nb_zero"], A2["nb_zero"]), 0,
                      Mux(is_stt, row2_c.data, line1_c.data))
        with m.If(is_stt):
            drive_cluster(pe3, E3, A3, pe3_centre, pe3_nbr, shift_of(A3["ti"]), w3_rd.data, A3["v"])
        with m.Else():
            drive_cluster(pe3, E2, A2, pe3_centre, pe3_nbr, shift_of(A2["ti"]), w3_rd.data,
                          v2mac & ~is_stt)
        count("c2_macs", Mux(v2mac, lanes2 * Mux(is_stt, cols2, cols2_ptt), 0))
        count("c3_macs", Mux(is_stt, Mux(A3["v"], lanes3 * cols3, 0),
                             Mux(v2mac, lanes2 * cols2_ptt, 0)))
        # scratchpad accesses: a weight read or write, a partial-sum read or write (each one
        # access of every PE's scratchpad, in lock step)
        for pe, name in ((pe2, "c2"), (pe3, "c3")):
            count(f"{name}_spad_reads", pe.w_rd)
            count(f"{name}_spad_reads", pe.p_rd)
            count(f"{name}_spad_writes", pe.w_wr)
        copy_word = Signal(P * qb)
        m.d.sync += copy_word.eq(line1_b.data)

        def stage_b(name, A):
            b = {k: Signal(name=f"{name}b_{k}") for k in ("v", "copy", "final", "psum_out", "row_end")}
            for k in ("b", "e", "eoff", "tr4", "g", "seq"):
                b[k] = Signal(RB, name=f"{name}b_{k}")
            b["qm3"] = Signal(2, name=f"{name}b_qm3")
            m.d.sync += [b[k].eq(A[k]) for k in b]
            return b

        B2 = stage_b("e2", A2)
        B3 = stage_b("e3", A3)
        m.d.comb += [pe2.p_wr.eq(B2["v"] & ~B2["copy"] & B2["psum_out"]), pe2.p_wr_addr.eq(B2["b"])]
        with m.If(is_stt):
            m.d.comb += [pe3.p_wr.eq(B3["v"] & B3["psum_out"]), pe3.p_wr_addr.eq(B3["b"])]
        with m.Else():
            m.d.comb += [pe3.p_wr.eq(B2["v"] & ~B2["copy"] & B2["psum_out"]), pe3.p_wr_addr.eq(B2["b"])]
        for pe, name in ((pe2, "c2"), (pe3, "c3")):
            count(f"{name}_spad_writes", pe.p_wr)

        # results: STT q2 -> row2; PTT merge / STT cluster 3 / HTT copy -> line4
        m.submodules.requant2 = rq2 = Requantiser(P, ab, qb)
        m.d.comb += [rq2.i.eq(pe2.acc), rq2.shift.eq(d["shift2"]), rq2.rnd.eq(rnd)]
        row2_w = mems["row2"].write_port()
        m.d.comb += [row2_w.en.eq(B2["v"] & B2["final"] & is_stt),
                     row2_w.addr.eq(Mux(B2["seq"][0], rw1, 0) + B2["eoff"] + B2["g"]),
                     row2_w.data.eq(rq2.o)]
        count("row2_writes", row2_w.en)
        m.submodules.adder = adder = AdderArray(P, ab)
        m.d.comb += [adder.a.eq(pe2.acc), adder.b.eq(pe3.acc)]
        lanes3_ext = []
        for l in range(P):
            ext = Signal(signed(ab + 1), name=f"acc3_ext{l}")
            m.d.comb += ext.eq(lane(pe3.acc, l, ab))
            lanes3_ext.append(ext)
        merge = B2["v"] & B2["final"] & ~B2["copy"] & ~is_stt
        m.submodules.requant3 = rq3 = Requantiser(P, ab + 1, qb)
        m.d.comb += [rq3.i.eq(Mux(is_stt, Cat(*lanes3_ext), adder.o)),
                     rq3.shift.eq(Mux(is_stt, d["shift3"], d["shift3"] + 1)), rq3.rnd.eq(rnd)]
        line4_w = mems["line4"].write_port()

        def base4(qm3, trw4):
            """Word base of line4 slot (q mod 3) * T + t: ``trw4`` = t * rw4."""
            return times3(qm3, TR4) + trw4

        w4_stt = B3["v"] & B3["final"] & is_stt
        w4_copy = B2["v"] & B2["copy"]
        m.d.comb += [line4_w.en.eq(w4_stt | merge | w4_copy),
                     line4_w.addr.eq(Mux(is_stt, base4(B3["qm3"], B3["tr4"]) + B3["eoff"] - ng + B3["g"],
                                         base4(B2["qm3"], B2["tr4"]) + B2["eoff"] - ng + B2["g"])),
                     line4_w.data.eq(Mux(w4_copy, copy_word, rq3.o))]
        count("line4_writes", line4_w.en)
        count("adder_busy", merge)
        count("adds", Mux(merge, Mux(B2["g"] == ng - 1, last_lanes, Pk)
                          * Mux(B2["e"] == nb, last_cols, Px), 0))
        with m.If(B2["v"] & B2["row_end"]):
            m.d.sync += e2_done.eq(e2_done + 1)
        with m.If(B3["v"] & B3["row_end"]):
            m.d.sync += e3_done.eq(e3_done + 1)

        # ==== E4: cluster 4 to the LIF array (gen/engines/cluster4.py) ======================
        m.submodules.e4 = e4 = ClusterFourEngine(cfg)
        m.d.comb += [e4.desc.eq(desc), e4.geo.eq(g), e4.rows_written.eq(Mux(is_stt, e3_done, e2_done)),
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
        pipeline_busy = (pending | e1.busy | E2["run"] | E3["run"] | e4.busy | A2["v"]
                         | B2["v"] | A3["v"] | B3["v"])
        go = (start | pending) & settled                         # the engines' start
        m.d.comb += [e1.start.eq(go), e4.start.eq(go)]
        with m.If(start & ~settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(1)]
        with m.Elif((start | pending) & settled):
            resets = [busy.eq(1), done.eq(0), pending.eq(0), E2["run"].eq(1),
                      E3["run"].eq(is_stt),
                      e2_done.eq(0), e2_rel.eq(0), e3_done.eq(0), e3_rel.eq(0), rel1.eq(0),
                      need2.eq(3)]
            for E in (E2, E3):
                for k in ("o", "i", "g", "bg", "ck", "b", "s", "jb", "jl", "sl", "jbs", "jls", "sls",
                          "gbase", "seq", "bc", "ti", "tis", "qm3", "boff", "r1base", "trw",
                          "tr4", "tho", "l4b"):
                    resets.append(E[k].eq(0))
                resets += [E["goff"].eq(E["e_lo_ng"]), E["coff"].eq(ng)]
            m.d.sync += resets
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
