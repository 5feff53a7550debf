"""The loop nest of a MAC engine of clusters 2/3: its row, group, block-group, chunk, block
and step counters, the step's flags, and the registers carrying a step into stages a and b.

Two instances: the clusters-2/3 engine's (``cluster23``: cluster 2, and cluster 3 in lock step
for PTT/HTT, HTT's copies) and STT's cluster-3 engine's (``stt_cluster3``, on the q2 rows).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig, log2
from ..descriptor import DESCRIPTOR_LAYOUT
from ..geometry import TAP_ORDER
from ..hostmap import STREAM_BITS
from ..tilegeo import geometry_layout
from ..units import MacCluster
from .common import ROW_BITS, inc3

__all__ = ["MacRowLoop", "VARIANTS", "STEP_LAYOUT", "stage_a_layout", "stage_b_layout", "spad_bits",
           "MAC_LATENCY"]

RB = ROW_BITS
VARIANTS = ("cluster23", "stt_cluster3")
#: Cycles from stage a (a step's operands at its pipelined cluster) to stage b (its sums on the
#: cluster's ``acc``): :attr:`gen.units.MacCluster.latency` of the clusters the engines build.
MAC_LATENCY = MacCluster.PIPELINED_LATENCY

#: The issue-stage step the rest of the engine reads (addresses, handshakes, PE controls).
STEP_LAYOUT = data.StructLayout({
    "q": RB, "t": 8, "i": RB, "seq": RB, "qm3": 2, "r1base": RB, "r1base1": RB, "r1base2": RB,
    "trw": RB, "tr4": RB, "tho": RB,
    "l4b": RB, "tap": 2, "ti": 2, "e": RB, "eoff": RB, "jb": RB, "g": RB, "gbase": RB, "sl": RB,
    "s": RB, "b": RB, "copy": 1, "new_op": 1, "new_centre": 1, "glb_rd": 1, "spad_rd": 1,
    "from_psum": 1, "row_end": 1, "chunk": STREAM_BITS,
})
def spad_bits(config: HardwareConfig) -> tuple[int, int]:
    """Address bits of a PE's weight and partial-sum scratchpad entries (as
    :class:`gen.units.MacCluster` takes them; 1 without scratchpads)."""
    ws = config.is_weight_stationary("cluster2")
    bits = lambda n: max((n - 1).bit_length(), 1)  # noqa: E731
    return (bits(config.spad_weight_entries if ws else 1), bits(config.spad_psum_entries if ws else 1))


def stage_a_layout(config: HardwareConfig) -> data.StructLayout:
    """The step at stage a (operands arrive, PE update). Fields that only address a PE port
    keep the bits the port takes (``s``: weight entry, ``b``: partial-sum entry, ``jl``,
    ``wsel``: lane selects); ``seq`` keeps its parity (the ``row2`` half)."""
    lp = max(log2(config.lanes), 1)
    w_bits, p_bits = spad_bits(config)
    return data.StructLayout({
        "v": 1, "copy": 1, "first": 1, "from_psum": 1, "use_spad": 1, "w_wr": 1, "final": 1,
        "psum_out": 1, "row_end": 1, "group_end": 1, "nb_zero": 1, "row_zero": 1,
        "s": w_bits, "b": p_bits, "jl": lp, "wsel": lp, "e": RB, "eoff": RB, "tr4": RB,
        "g": RB, "ti": 2, "seq": 1, "qm3": 2,
    })


def stage_b_layout(config: HardwareConfig) -> data.StructLayout:
    """The step at stage b (partial-sum write, result write: :data:`MAC_LATENCY` cycles after
    stage a); widths as in stage a."""
    return data.StructLayout({
        "v": 1, "copy": 1, "final": 1, "psum_out": 1, "row_end": 1, "group_end": 1,
        "b": spad_bits(config)[1], "e": RB, "eoff": RB, "tr4": RB, "g": RB, "seq": 1, "qm3": 2,
    })


class MacRowLoop(wiring.Component):
    """Loop counters and step flags of one MAC engine, and its stage registers.

    Per row (``q``, ``t`` in the tile's row order): for each output rank group ``g`` of ``Pk``
    channels, each group of up to ``B`` column blocks, each chunk of up to ``C`` reduction
    steps, each block of the group, each step of the chunk (the step's input channel ``jb``
    block, tap, lane ``jl``). Weights of a chunk come from the weight buffer for the group's
    first block and from the PE scratchpads for the others. A group's ``NS`` weight-buffer
    words (``gbase ..``) are its chunk: resident at ``g * NS``, or with ``desc.w23_ring = n >
    0`` (streamed G2/G3) in slot ``chunk % n`` of a ring, ``chunk`` (``step.chunk``) counting
    the groups of MAC rows the loop has begun. ``cluster23``'s HTT reduced
    timesteps copy the ``ng`` q1 words of each block instead.

    Ports: ``start`` (in: reset the counters and run a tile; ``stt_cluster3`` runs only for
    STT), ``desc``, ``geo`` (in), ``ok`` (in: the engine's inputs and output slot are ready; a
    step issues when ``run & ok``), ``run``, ``issue`` (out), ``step`` (out,
    :data:`STEP_LAYOUT`: the issuing step), ``a`` (out, :func:`stage_a_layout`) and ``b`` (out,
    :func:`stage_b_layout`): the step one and ``1 +`` :data:`MAC_LATENCY` cycles after it
    issued (the registers between carry ``b``'s fields); ``inflight`` (out): a step is in
    stage a, b or between them.
    """

    def __init__(self, config: HardwareConfig, variant: str):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        if variant not in VARIANTS:
            raise ValueError(f"MacRowLoop: variant must be one of {VARIANTS}, got {variant!r}")
        self.config, self.variant = config, variant
        super().__init__({
            "start": In(1), "desc": In(DESCRIPTOR_LAYOUT), "geo": In(geometry_layout(config)),
            "ok": In(1), "run": Out(1), "issue": Out(1), "inflight": Out(1),
            "step": Out(STEP_LAYOUT), "a": Out(stage_a_layout(config)), "b": Out(stage_b_layout(config)),
        })

    def elaborate(self, platform):  # noqa: C901 - one loop nest
        m = Module()
        cfg = self.config
        ws = cfg.is_weight_stationary("cluster2")
        BLK = cfg.spad_psum_entries if ws else 1    # blocks sharing one weight chunk
        CHK = cfg.spad_weight_entries if ws else 1  # reduction steps per chunk
        lB = log2(BLK)
        d, g = self.desc, self.geo
        order = d.order
        is_htt = d.mode == 2
        Px, ng = g.px, g.ng
        name = "e2" if self.variant == "cluster23" else "e3"
        if self.variant == "cluster23":
            e_lo, e_lo_ng, nbg_last, lastg_last, copy_allowed = g.e_lo2, g.e_lo2_ng, g.nbg2_last, g.lastg2_last, True
        else:
            e_lo, e_lo_ng, nbg_last, lastg_last, copy_allowed = Const(1, 2), ng, g.nbg3_last, g.lastg3_last, False

        e = {k: Signal(RB, name=f"{name}_{k}") for k in
             ("o", "i", "g", "bg", "ck", "b", "s", "jb", "jl", "sl", "jbs", "jls", "sls", "gbase",
              "seq", "bc")}
        e["q"] = Signal(RB, name=f"{name}_q")
        e["cseq"], e["cslot"] = Signal(STREAM_BITS, name=f"{name}_cseq"), Signal(16, name=f"{name}_cslot")
        e["t"] = Signal(8, name=f"{name}_t")
        m.d.comb += [e["q"].eq(Mux(order, e["i"], e["o"])), e["t"].eq(Mux(order, e["o"], e["i"]))]
        e["ti"], e["tis"] = Signal(2, name=f"{name}_ti"), Signal(2, name=f"{name}_tis")
        e["qm3"] = Signal(2, name=f"{name}_qm3")
        # word offsets and bases kept by adding (no multiplier in the address path)
        for k in ("goff", "boff", "coff", "r1base", "r1base1", "r1base2", "trw", "tr4", "tho", "l4b"):
            e[k] = Signal(RB, name=f"{name}_{k}")
        e["e_lo_ng"] = e_lo_ng
        e["run"], e["issue"] = self.run, self.issue
        m.d.comb += self.issue.eq(self.run & self.ok)
        e["copy"] = Signal(name=f"{name}_copy")
        m.d.comb += e["copy"].eq(Const(copy_allowed) & is_htt & ~d.schedule.bit_select(e["t"], 1))
        # each counter's last value from the geometry's registered ``*_last`` values (the
        # block group's blocks ``nbi``, its chunk's steps, the lanes of group ``jb``), so that
        # no subtraction sits in front of the end tests
        bg_last, ck_last, g_last = e["bg"] == nbg_last, e["ck"] == g.nch_last, e["g"] == g.ng_last
        single = Signal(name=f"{name}_single")                 # the block group has one block
        m.d.comb += single.eq(Mux(bg_last, lastg_last == 0, int(BLK == 1)))
        chunk_last = Mux(single, g.r3_last, Mux(ck_last, g.last_chunk_last, CHK - 1))
        jl_last = Mux(e["jb"] == g.ng_last, g.last_lanes_last, g.pk_last)
        f = {k: Signal(name=f"{name}_{k}") for k in
             ("s_first", "s_last", "final", "from_psum", "psum_out", "glb_w", "spad_wr",
              "spad_rd", "row_end", "group_end", "all_end")}
        m.d.comb += [f["s_first"].eq(e["s"] == 0), f["s_last"].eq(e["s"] == chunk_last),
                     f["final"].eq(f["s_last"] & (single | ck_last)),
                     f["from_psum"].eq(f["s_first"] & ~single & (e["ck"] != 0)),
                     f["psum_out"].eq(f["s_last"] & ~f["final"]),
                     f["glb_w"].eq(single | (e["b"] == 0)),
                     f["spad_wr"].eq(~single & (e["b"] == 0)),
                     f["spad_rd"].eq(~single & (e["b"] != 0))]
        blk_last = e["b"] == Mux(bg_last, lastg_last, BLK - 1)
        copy_end = (e["bc"] == g.nb_last) & g_last
        mac_end = f["final"] & blk_last & bg_last & g_last
        m.d.comb += f["row_end"].eq(Mux(e["copy"], copy_end, mac_end))
        # the last step of an output rank group's last block (its words all written at b)
        m.d.comb += f["group_end"].eq(~e["copy"] & f["final"] & blk_last & bg_last)
        m.d.comb += f["all_end"].eq(f["row_end"] & (e["q"] == g.h_last) & (e["t"] == g.t_last))
        # next step of the reduction: (jb, tap index, jl) with jl innermost
        jl_wrap = e["jl"] == jl_last
        ti_wrap = e["ti"] == 2
        nxt = {"jl": Mux(jl_wrap, 0, e["jl"] + 1),
               "ti": Mux(jl_wrap, Mux(ti_wrap, 0, e["ti"] + 1), e["ti"]),
               "jb": Mux(jl_wrap & ti_wrap, e["jb"] + 1, e["jb"]),
               "sl": e["sl"] + 1}
        steps = ("jb", "ti", "jl", "sl")
        saved = {"jb": e["jbs"], "ti": e["tis"], "jl": e["jls"], "sl": e["sls"]}
        with m.If(e["issue"]):
            with m.If(e["copy"]):
                m.d.sync += e["g"].eq(Mux(g_last, 0, e["g"] + 1))
                with m.If(g_last):
                    m.d.sync += [e["bc"].eq(Mux(e["bc"] == g.nb_last, 0, e["bc"] + 1)),
                                 e["coff"].eq(Mux(e["bc"] == g.nb_last, ng, e["coff"] + ng))]
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
                        self._next_block_group(m, e, bg_last, g_last, e_lo_ng, lB)
            with m.Else():
                m.d.sync += e["s"].eq(e["s"] + 1)
                m.d.sync += [e[k].eq(nxt[k]) for k in steps]
            with m.If(f["row_end"]):
                self._next_row(m, e, f)
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


        self._outputs(m, e, f, name)

        # ---- start: a new tile (last, so that it wins over the updates above) ---------------
        with m.If(self.start):
            m.d.sync += [e[k].eq(0) for k in ("o", "i", "g", "bg", "ck", "b", "s", "jb", "jl", "sl", "jbs",
                                              "jls", "sls", "gbase", "seq", "bc", "ti", "tis", "qm3",
                                              "cseq", "cslot",
                                              "boff", "r1base", "trw", "tr4", "tho", "l4b")]
            m.d.sync += [e["goff"].eq(e_lo_ng), e["coff"].eq(ng),
                         e["r1base1"].eq(self._ring_add(0, g.rw1)), e["r1base2"].eq(self._ring_add(0, g.rw1 << 1)),
                         self.run.eq(1 if self.variant == "cluster23" else d.mode == 0)]
        return m

    def _next_block_group(self, m, e, bg_last, g_last, e_lo_ng, lB):
        """The last step of a block group's last chunk: the next block group, or at the
        row's last one the next output group and its weight chunk (the streamed ring's
        handshake: ``cseq`` chunks begun, ``cslot`` the ring slot)."""
        d, ng, ns = self.desc, self.geo.ng, self.geo.ns
        stream = d.w23_ring != 0
        with m.If(~bg_last):
            m.d.sync += [e["bg"].eq(e["bg"] + 1), e["goff"].eq(e["goff"] + (ng << lB))]
        with m.Else():
            m.d.sync += [e["bg"].eq(0), e["goff"].eq(e_lo_ng)]
            # the group's chunk is used up: the next group's (resident: the
            # next NS words; streamed: the next ring slot)
            last_slot = e["cslot"] == self.geo.ring_last      # (not streamed: never before the 16-bit wrap)
            m.d.sync += [e["cseq"].eq(e["cseq"] + 1),
                         e["cslot"].eq(Mux(last_slot, 0, e["cslot"] + 1))]
            wrap = Mux(stream, last_slot, g_last)
            m.d.sync += e["gbase"].eq(Mux(wrap, 0, e["gbase"] + ns))
            with m.If(~g_last):
                m.d.sync += e["g"].eq(e["g"] + 1)
            with m.Else():
                m.d.sync += e["g"].eq(0)

    def _ring_add(self, base, step):
        """``(base + step) mod T3R1`` for ``base < T3R1`` and ``step <= T3R1``: one compare
        and subtraction (a line1 ring slot's word base stepped)."""
        t3r1 = self.geo.t3r1
        v = base + step
        return Mux(v >= t3r1, v - t3r1, v)

    def _next_row(self, m, e, f):
        """The row's last step: the next row's counters, ``q mod 3`` and the row bases kept
        by adding; the end of the tile."""
        d, g = self.desc, self.geo
        T, order, pool = d.timesteps, d.order, d.pool
        rw1, rw4, Ho, ng = g.rw1, g.rw4, g.ho, g.ng

        def t_times_next(v, unit, i_last):
            """``v = t * unit`` at the end of a row (t: inner loop counter in row order)."""
            return Mux(order, Mux(i_last, v + unit, v), Mux(i_last, 0, v + unit))

        i_last = e["i"] == g.inner_last
        m.d.sync += e["seq"].eq(e["seq"] + 1)
        with m.If(i_last):
            m.d.sync += [e["i"].eq(0), e["o"].eq(e["o"] + 1)]
        with m.Else():
            m.d.sync += e["i"].eq(e["i"] + 1)
        # q mod 3: q is the outer counter (row outer) or the inner one
        m.d.sync += e["qm3"].eq(Mux(order, Mux(i_last, 0, inc3(e["qm3"])),
                                    Mux(i_last, inc3(e["qm3"]), e["qm3"])))
        # (the ring slots of window rows q + 1 and q + 2 kept beside it: the readers' line1
        # addresses took them as sums and compares with T3R1, docs/synthesis.md)
        row_step = Mux(i_last, (rw1 << 1) + rw1, rw1)
        m.d.sync += [e[k].eq(self._ring_add(e[k], row_step)) for k in ("r1base", "r1base1", "r1base2")]
        m.d.sync += [e["trw"].eq(t_times_next(e["trw"], rw1, i_last)),
                     e["tr4"].eq(t_times_next(e["tr4"], rw4, i_last)),
                     e["tho"].eq(t_times_next(e["tho"], Ho, i_last)), e["coff"].eq(ng)]
        # ((q - 3) >> pool) * T, row outer: grows when q moves to a new q23 row pair
        with m.If(~order & i_last & (e["q"] >= 3) & (~pool | ~e["q"][0])):
            m.d.sync += e["l4b"].eq(e["l4b"] + T)
        with m.If(f["all_end"]):
            m.d.sync += e["run"].eq(0)

    def _outputs(self, m, e, f, name):
        """The issuing step (``e``: counters and derived values, ``f``: its flags) on ``step``,
        and registered into stages ``a`` and ``b``."""
        d, g = self.desc, self.geo
        zt, zb, zl, zr = d.zero_halo[0], d.zero_halo[1], d.zero_halo[2], d.zero_halo[3]
        Px, nb = g.px, g.nb
        tap_outside = Mux(e["tap"] == 0, (e["q"] == 0) & zt, (e["q"] == g.h_last) & zb)
        st = self.step
        m.d.comb += [st[k].eq(e[k]) for k in ("q", "t", "i", "seq", "qm3", "r1base", "r1base1", "r1base2", "trw",
                                              "tr4", "tho", "l4b", "tap", "ti", "e", "eoff", "jb", "g", "gbase",
                                              "sl", "s", "b", "copy", "new_op", "new_centre", "glb_rd")]
        m.d.comb += st.chunk.eq(e["cseq"])
        m.d.comb += [st.spad_rd.eq(f["spad_rd"]), st.from_psum.eq(f["from_psum"]),
                     st.row_end.eq(f["row_end"])]

        # stage a: the step one cycle on
        a = self.a
        nbr_e = Mux(e["tap"] == 0, e["e"] - 1, e["e"] + 1)   # cluster 3's neighbour block (+1)
        nb_zero = ((nbr_e == 0) & zl) | ((nbr_e == nb + 1) & zr)
        m.d.sync += [a.v.eq(e["issue"]), a.copy.eq(e["copy"]), a.first.eq(f["s_first"]),
                     a.from_psum.eq(f["from_psum"]), a.use_spad.eq(f["spad_rd"]),
                     a.w_wr.eq(f["spad_wr"]), a.final.eq(f["final"]),
                     a.psum_out.eq(f["psum_out"]), a.row_end.eq(f["row_end"]),
                     a.group_end.eq(f["group_end"]),
                     a.nb_zero.eq(nb_zero & (e["ti"] != 0)),
                     # cluster 2's tap row outside the layer (never written by cluster 1)
                     a.row_zero.eq((e["ti"] != 0) & tap_outside),
                     a.s.eq(e["s"]), a.b.eq(e["b"]), a.jl.eq(e["jl"]),
                     a.wsel.eq(e["sl"] & (Px - 1)), a.e.eq(e["e"]), a.g.eq(e["g"]),
                     a.eoff.eq(e["eoff"]), a.tr4.eq(e["tr4"]),
                     a.ti.eq(e["ti"]), a.seq.eq(e["seq"]), a.qm3.eq(e["qm3"])]
        # stage b: MAC_LATENCY cycles after a (the cluster's pipeline), b's fields carried along
        prev, valids = a, [a.v]
        for k in range(MAC_LATENCY - 1):
            mid = Signal(stage_b_layout(self.config), name=f"{name}_mid{k + 1}")
            m.d.sync += [mid[f].eq(prev[f]) for f, _ in self.b.shape()]
            prev = mid
            valids.append(mid.v)
        m.d.sync += [self.b[f].eq(prev[f]) for f, _ in self.b.shape()]
        m.d.comb += self.inflight.eq(Cat(*valids, self.b.v).any())

