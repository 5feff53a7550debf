"""The clusters-2/3 engine: cluster 2 (G2, 3x1), cluster 3 (G3, 1x3) and the adder array, from
the q1 rows of ``line1`` to the q23 rows of ``line4``; it holds STT's cluster-3 engine
(:class:`gen.engines.stt_cluster3.SttClusterThreeEngine`, on the q2 rows of ``row2``) and lends
it cluster 3, the ``w3`` read port, the shift3 requantiser and the ``line4`` write port."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import lane
from ..config import HardwareConfig, log2
from ..descriptor import DESCRIPTOR_LAYOUT
from ..hostmap import STREAM_BITS
from ..tilegeo import geometry_layout
from ..units import AdderArray, MacCluster, Requantiser
from .common import ROW_BITS, counts_layout, read_port, times3, write_port
from .macloop import MAC_LATENCY, STEP_LAYOUT, MacRowLoop
from .stt_cluster3 import SttClusterThreeEngine, line4_free, tap_shift

__all__ = ["ClusterTwoThreeEngine"]

RB = ROW_BITS


class ClusterTwoThreeEngine(wiring.Component):
    """Clusters 2 and 3 (:class:`gen.units.MacCluster`), the adder array, their loop nest
    (:class:`gen.engines.macloop.MacRowLoop`, ``cluster23``) and, for STT, STT's cluster-3
    engine (:class:`gen.engines.stt_cluster3.SttClusterThreeEngine`), which drives cluster 3
    through this engine's ports.

    Per q23 row (``q``, ``t``): for each output rank group of ``Pk`` channels, each group of up
    to ``B`` column blocks, each chunk of up to ``C`` reduction steps, each block of the group,
    each step of the chunk: one MAC step per cycle. PTT (and HTT's full timesteps): cluster 3
    runs in lock step with cluster 2 on the same q1 rows and the adder array merges them into
    ``line4``. STT: cluster 2 writes q2 rows into ``row2`` (double buffer) and STT's cluster-3
    engine runs cluster 3 on them one row behind, into ``line4``, starting a row once cluster 2
    has written its first rank group (``q2_groups``; with the paper's sequential
    chaining, ``arrangement.stt_chain``, cluster 2 starts row ``j`` only when cluster 3 has
    issued row ``j - 1``: the two alternate row by row). HTT's reduced
    timesteps copy q1 words into ``line4``, one per cycle.

    Ports:

    * ``start`` (in): reset the loops and progress registers and run a tile.
    * ``desc``, ``geo`` (in): :data:`gen.descriptor.DESCRIPTOR_LAYOUT`,
      :func:`gen.tilegeo.geometry_layout`.
    * ``e1_rows`` (in): window rows cluster 1 has written into ``line1`` (its order);
      ``e4_released`` (in): output rows cluster 4 has issued (their q23 rows are free).
    * ``line1_a`` (rows q and q+2), ``line1_b`` (centre row), ``line1_c`` (cluster 3's
      neighbouring block), ``row2_b``, ``row2_c`` (STT), ``w2``, ``w3``: read ports (data one
      cycle after ``en``); ``row2``, ``line4``: write ports.
    * ``released`` (out): q23 rows done reading their q1 rows (``q*T + t`` order, row outer);
      ``released_e1_order`` (out): the same in cluster 1's row order (timestep outer);
      ``q23_rows`` (out): q23 rows written into ``line4``.
    * ``w2_chunks``, ``w3_chunks`` (in): the host's G2/G3 chunks written into the ``w2``/``w3``
      rings (streamed G2/G3, ``desc.w23_ring > 0``); ``w2_consumed``, ``w3_consumed`` (out):
      chunks finished with (slots free; G3's from STT's cluster-3 engine in STT; 0 unless
      streamed).
    * ``busy`` (out): a loop runs or a step is in the pipeline.
    * ``counts`` (out): the increments of the counters named by its fields, each one cycle
      after the cycle it counts (registered).

    Timing: issue (addresses, scratchpad reads) -> a (operands arrive, into the pipelined
    clusters, :class:`gen.units.MacCluster` ``pipelined=True``) -> b,
    :data:`gen.engines.macloop.MAC_LATENCY` cycles later (the sums on ``acc``: partial sums
    into the scratchpads, STT's q2 results re-quantised and written into ``row2``, the
    adder array's sums registered) -> c (the q23 sums re-quantised by shift3 and written
    into ``line4``: :data:`gen.cyclemodel.LINE4_ROW_VISIBLE`). A row issues when
    its three q1 rows are written and its output slot (``row2`` or ``line4``) is free; a rank
    group of a MAC row with streamed G2/G3 when its chunks are written (else ``c2_w_wait``).
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        P, wd = config.lanes, config.widths
        lp = log2(P)
        q_word, w_word = P * wd.activation, P * wd.weight
        super().__init__({
            "start": In(1), "desc": In(DESCRIPTOR_LAYOUT), "geo": In(geometry_layout(config)),
            "e1_rows": In(RB), "e4_released": In(RB),
            "line1_a": Out(read_port(q_word)), "line1_b": Out(read_port(q_word)),
            "line1_c": Out(read_port(q_word)), "row2_b": Out(read_port(q_word)),
            "row2_c": Out(read_port(q_word)), "w2": Out(read_port(w_word)), "w3": Out(read_port(w_word)),
            "row2": Out(write_port(q_word)), "line4": Out(write_port(q_word)),
            "released": Out(RB), "released_e1_order": Out(RB), "q23_rows": Out(RB),
            "w2_chunks": In(STREAM_BITS), "w3_chunks": In(STREAM_BITS),
            "w2_consumed": Out(STREAM_BITS), "w3_consumed": Out(STREAM_BITS),
            "busy": Out(1),
            "counts": Out(counts_layout({
                "c2_busy": 1, "c2_stall": 1, "adder_stall": 1, "c3_busy": 1, "c3_stall": 1,
                "c2_w_wait": 1, "c3_w_wait": 1,
                "line1_reads": 2, "w2_reads": 1, "row2_reads": 2, "w3_reads": 1,
                "c2_macs": 2 * lp + 2, "c3_macs": 2 * lp + 2, "c2_spad_reads": 2, "c2_spad_writes": 2,
                "c3_spad_reads": 2, "c3_spad_writes": 2, "row2_writes": 1, "line4_writes": 1,
                "adder_busy": 1, "adds": 2 * lp + 2})),
        })

    def elaborate(self, platform):  # noqa: C901 - two loops, two clusters and the adder
        m = Module()
        cfg = self.config
        wd = cfg.widths
        P = cfg.lanes
        ws = cfg.is_weight_stationary("cluster2")
        BLK = cfg.spad_psum_entries if ws else 1    # blocks sharing one weight chunk
        CHK = cfg.spad_weight_entries if ws else 1  # reduction steps per chunk
        ab, qb, wb = wd.accumulator, wd.activation, wd.weight
        d_ = {name: self.desc[name] for name, _ in self.desc.shape()}
        g = self.geo
        W = d_["width"]
        pool, zr = d_["pool"], d_["zero_halo"][3]
        is_stt = d_["mode"] == 0
        pk, Pk, Px = g.pack, g.pk, g.px
        ng, last_lanes, nb = g.ng, g.last_lanes, g.nb
        w_aligned = (W & (Px - 1)) == 0
        last_cols = g.last_cols
        e1_done, e4_rel = self.e1_rows, self.e4_released
        e2_rel, rel1 = self.released, self.released_e1_order
        e2_done, e3_done, e3_rel = Signal(RB), Signal(RB), Signal(RB)   # E3's: from STT's engine
        amounts: dict[str, list] = {name: [] for name, _ in self.counts.shape()}

        def count(name, amount):
            # each increment registered where it arises (they came from the issue logic through
            # the sums here and the host's into its increment registers, 54 generic levels,
            # docs/synthesis.md): every counter gets its amounts one cycle later, final long
            # before ``done`` (cluster 4 runs after the last row)
            amount = Value.cast(amount)
            reg = Signal(amount.shape(), name=f"count_{name}{len(amounts[name])}")
            m.d.sync += reg.eq(amount)
            amounts[name].append(reg)

        line1_a, line1_b, line1_c = self.line1_a, self.line1_b, self.line1_c
        row2_b, row2_c = self.row2_b, self.row2_c
        spads = (CHK, BLK) if ws else (0, 0)
        m.submodules.cluster2 = pe2 = MacCluster(P, wb, qb, ab, *spads, pipelined=True)
        m.submodules.cluster3 = pe3 = MacCluster(P, wb, qb, ab, *spads, pipelined=True)
        assert pe2.latency == MAC_LATENCY
        for pe in (pe2, pe3):
            m.d.comb += pe.pack.eq(pk)

        # the loop nest of E2 (cluster 2, cluster 3 in lock step); E3 (STT's cluster 3) is its
        # own engine, one row behind on the q2 rows
        loop = m.submodules.e2_loop = MacRowLoop(cfg, "cluster23")
        m.d.comb += [loop.desc.eq(self.desc), loop.geo.eq(g), loop.start.eq(self.start)]
        E2 = {k: loop.step[k] for k, _ in STEP_LAYOUT}
        E2.update(issue=loop.issue, run=loop.run, loop=loop,
                  f={k: loop.step[k] for k in ("row_end", "spad_rd", "from_psum")})
        A2, B2 = {k: loop.a[k] for k, _ in loop.a.shape()}, {k: loop.b[k] for k, _ in loop.b.shape()}
        m.submodules.stt_cluster3 = e3 = SttClusterThreeEngine(cfg)
        # the q2 row cluster 2 is writing: its rank groups written into row2 (0 again when
        # the row completes and counts in e2_done), so that STT's pipelined cluster 3 may
        # start a row on its first group
        q2_groups = Signal(RB, name="q2_groups")
        m.d.comb += [e3.start.eq(self.start), e3.desc.eq(self.desc), e3.geo.eq(g),
                     e3.q2_rows.eq(e2_done), e3.q2_groups.eq(q2_groups), e3.e4_released.eq(e4_rel),
                     e3_done.eq(e3.q23_rows), e3_rel.eq(e3.released)]
        for port in ("row2_b", "row2_c"):
            wiring.connect(m, wiring.flipped(getattr(self, port)), getattr(e3, port))
        for name, _ in e3.counts.shape():
            count(name, e3.counts[name])
        ptt_row2 = ~is_stt & ~E2["copy"]        # a merging row (PTT or HTT full timestep)

        need2, ok2 = self._gate_loop(m, E2, e3, count, is_stt, ptt_row2, (e1_done, e4_rel, e2_rel, rel1, e3_rel))

        # cluster 3 in lock step (PTT, HTT's full timesteps); STT's engine counts its own
        count("c3_busy", E2["issue"] & ptt_row2)
        count("c3_stall", E2["run"] & ~ok2 & ptt_row2)

        w2_rd, w3_rd = self._reads(m, E2, e3, count)
        line1_b = self.line1_b

        def active_cols(e_blk, stt_halo):
            """Output columns of block ``e_blk`` (+1 indexed) a MAC step counts: columns
            0..W-1, and for cluster 2 in STT the halo columns it computes."""
            b_last = e_blk == nb
            cols = Mux(b_last, last_cols, Px)
            if stt_halo:
                cols = Mux(e_blk == 0, 1, Mux(e_blk == nb + 1, 1,
                           cols + (b_last & ~w_aligned & ~zr)))
            return cols

        lanes2 = Mux((A2["g"] == ng - 1), last_lanes, Pk)
        cols2 = active_cols(A2["e"], True)
        cols2_ptt = active_cols(A2["e"], False)

        # spad addresses at issue, the step's controls at stage a, partial-sum writes at b
        def drive_cluster(pe, E, A, centre, neighbour, shift, weights, valid):
            m.d.comb += [pe.w_rd.eq(E["issue"] & E["f"]["spad_rd"]), pe.w_addr.eq(E["s"]),
                         pe.p_rd.eq(E["issue"] & E["f"]["from_psum"]), pe.p_addr.eq(E["b"]),
                         pe.valid.eq(valid), pe.first.eq(A["first"]), pe.from_psum.eq(A["from_psum"]),
                         pe.jl.eq(A["jl"]), pe.shift.eq(shift), pe.centre.eq(centre),
                         pe.neighbour.eq(neighbour), pe.wsel.eq(A["wsel"]), pe.weights.eq(weights),
                         pe.use_spad.eq(A["use_spad"]), pe.w_wr.eq(valid & A["w_wr"]),
                         pe.w_wr_addr.eq(A["s"])]

        v2mac = A2["v"] & ~A2["copy"]
        drive_cluster(pe2, E2, A2, Mux(A2["ti"] == 0, line1_b.data, Mux(A2["row_zero"], 0, line1_a.data)), 0, 0,
                      w2_rd.data, v2mac)
        # cluster 3: STT's engine on q2 rows, or E2's step on q1 rows in lock step (PTT/HTT)
        with m.If(is_stt):
            m.d.comb += [getattr(pe3, k).eq(e3.cluster[k]) for k, _ in e3.cluster.shape()]
        with m.Else():
            pe3_nbr = Mux(A2["nb_zero"], 0, line1_c.data)
            drive_cluster(pe3, E2, A2, line1_b.data, pe3_nbr, tap_shift(A2["ti"]), w3_rd.data, v2mac)
        count("c2_macs", Mux(v2mac, lanes2 * Mux(is_stt, cols2, cols2_ptt), 0))
        count("c3_macs", Mux(v2mac & ~is_stt, lanes2 * cols2_ptt, 0))
        # scratchpad accesses: a weight read or write, a partial-sum read or write (each one
        # access of every PE's scratchpad, in lock step); STT's cluster 3: its engine counts
        count("c2_spad_reads", pe2.w_rd)
        count("c2_spad_reads", pe2.p_rd)
        count("c2_spad_writes", pe2.w_wr)
        count("c3_spad_reads", Mux(is_stt, 0, pe3.w_rd + pe3.p_rd))
        count("c3_spad_writes", Mux(is_stt, 0, pe3.w_wr))
        # HTT's copied word: read at issue, written at stage c (the MAC steps' pipeline, then
        # the line4 write's register)
        copy_word = line1_b.data
        for k in range(MAC_LATENCY + 1):
            reg = Signal(P * qb, name=f"copy_word{k + 1}")
            m.d.sync += reg.eq(copy_word)
            copy_word = reg

        self._psum_writes(m, pe2, pe3, B2, is_stt, count)
        write_c = self._results(m, pe2, pe3, B2, e3, copy_word, e2_done, count)
        with m.If(is_stt & B2["v"] & B2["group_end"]):
            m.d.sync += q2_groups.eq(Mux(B2["row_end"], 0, q2_groups + 1))

        m.d.comb += self.q23_rows.eq(Mux(is_stt, e3_done, e2_done))
        m.d.comb += self.busy.eq(E2["run"] | loop.inflight | write_c | e3.busy)
        for name, parts in amounts.items():
            m.d.comb += self.counts[name].eq(sum(parts[1:], parts[0]))

        # ---- start: a new tile (last, so that it wins over the updates above) ---------------
        with m.If(self.start):
            m.d.sync += [e2_done.eq(0), e2_rel.eq(0), rel1.eq(0), need2.eq(3), q2_groups.eq(0)]
        return m

    def _gate_loop(self, m, E2, e3, count, is_stt, ptt_row2, progress):
        """When the E2 loop may issue: its three q1 rows written by cluster 1, its output slot
        (row2 or line4) free, its streamed G2/G3 chunk arrived; counts its waits and stalls and
        the rows it releases. Returns ``need2`` (reset by the tile's start) and ``ok2``."""
        e1_done, e4_rel, e2_rel, rel1, e3_rel = progress
        cfg, g = self.config, self.geo
        d_ = {name: self.desc[name] for name, _ in self.desc.shape()}
        order, f2 = d_["order"], E2["f"]
        # E2 readiness: its three q1 rows written; its output slot (row2 or line4) free
        # E1 rows the current E2 row needs (E1's index of window row (q + 2, t), + 1)
        need2 = Signal(RB)
        with m.If(E2["issue"] & f2["row_end"]):
            i_last2 = E2["i"] == g.inner_last
            m.d.sync += need2.eq(need2 + Mux(order, Mux(i_last2, 3, 1),
                                             Mux((E2["q"] == 0) & ~i_last2, 3, 1)))
        # STT: row j's row2 half is free once cluster 3 has read row j - 2 (pipelined); the
        # paper's sequential chaining also waits for cluster 3 to finish row j - 1, so that
        # clusters 2 and 3 never run at once (gen.config.Arrangement)
        sequential = cfg.arrangement.stt_chain == "sequential"
        stt_ok2 = e3_rel >= E2["seq"] if sequential else e3_rel + 1 >= E2["seq"]
        out_ok2 = Mux(is_stt, stt_ok2, line4_free(E2, self.desc, e4_rel))
        ok2 = (e1_done >= need2) & out_ok2
        # streamed G2/G3 (desc.w23_ring): a MAC row's group waits for its chunk of G2 (and of G3
        # when cluster 3 runs in lock step), after the row's own conditions (c2_w_wait)
        stream = d_["w23_ring"] != 0
        chunk2 = E2["chunk"]
        w_ok2 = ~stream | E2["copy"] | ((self.w2_chunks > chunk2) & (is_stt | (self.w3_chunks > chunk2)))
        m.d.comb += E2["loop"].ok.eq(ok2 & w_ok2)
        m.d.comb += [self.w2_consumed.eq(Mux(stream, chunk2, 0)),
                     self.w3_consumed.eq(Mux(stream, Mux(is_stt, e3.w3_consumed, chunk2), 0)),
                     e3.w3_chunks.eq(self.w3_chunks)]
        count("c2_w_wait", E2["run"] & ok2 & ~w_ok2)
        count("c2_busy", E2["issue"])
        count("c2_stall", E2["run"] & ~ok2)
        count("adder_stall", E2["run"] & ~ok2 & ptt_row2)
        with m.If(E2["issue"] & f2["row_end"]):
            m.d.sync += [e2_rel.eq(e2_rel + 1), rel1.eq(rel1 + Mux(E2["q"] == g.h_last, 3, 1))]
        return need2, ok2

    @staticmethod
    def _psum_writes(m, pe2, pe3, B2, is_stt, count):
        """Stage b's partial-sum writes into the scratchpads (cluster 3: STT's engine drives
        them for STT, cluster 2's step in lock step otherwise), counted (STT's cluster 3 by
        its engine)."""
        m.d.comb += [pe2.p_wr.eq(B2["v"] & ~B2["copy"] & B2["psum_out"]), pe2.p_wr_addr.eq(B2["b"])]
        with m.If(~is_stt):
            m.d.comb += [pe3.p_wr.eq(B2["v"] & ~B2["copy"] & B2["psum_out"]), pe3.p_wr_addr.eq(B2["b"])]
        count("c2_spad_writes", pe2.p_wr)
        count("c3_spad_writes", Mux(is_stt, 0, pe3.p_wr))

    def _reads(self, m, E2, e3, count):
        """The issue stage's memory reads: line1 (E2: tap rows, centre row, cluster 3's
        neighbour block), w2; w3 for whichever drives cluster 3 (E2, or STT's engine ``e3``)."""
        d_, g = self.desc, self.geo
        is_stt, order = d_.mode == 0, d_.order
        zt, zb = d_.zero_halo[0], d_.zero_halo[1]
        pxl, ng, TR1 = g.pxl, g.ng, g.tr1
        line1_a, line1_b, line1_c = self.line1_a, self.line1_b, self.line1_c

        def slot_base(E, i):
            """Word base of the line1 slot of window row (q + i) at timestep t: slot
            ((q + i) mod 3) * T + t (row outer), the ring slot of row q + i modulo 3T
            (timestep outer); times rw1."""
            s = (E["qm3"] + i)
            s = Mux(s >= 3, s - 3, s)
            r = E[("r1base", "r1base1", "r1base2")[i]]      # (r1base + i * rw1) mod T3R1, kept by the loop
            return Mux(order, r, times3(s, TR1) + E["trw"])

        mac2 = E2["issue"] & ~E2["copy"]

        def tap_row_outside(E):
            """The step's tap row (0: window row q, 2: q + 2) lies outside the layer (zero halo)."""
            return Mux(E["tap"] == 0, (E["q"] == 0) & zt, (E["q"] == g.h_last) & zb)

        def neighbour_offset(E):
            """Word offset in the row of cluster 3's operand block for E's step (tap 0: the
            block on the left, tap 2: the one on the right)."""
            return Mux(E["tap"] == 0, E["eoff"] - ng, E["eoff"] + ng)

        base2_b = slot_base(E2, 1)
        base2_a = Mux(E2["tap"] == 0, slot_base(E2, 0), slot_base(E2, 2))
        nboff2 = neighbour_offset(E2)
        # a tap row outside the layer is not read (its operand is masked to zero at stage a)
        m.d.comb += [line1_a.en.eq(mac2 & (E2["ti"] != 0) & E2["new_op"] & ~tap_row_outside(E2)),
                     line1_a.addr.eq(base2_a + E2["eoff"] + E2["jb"]),
                     line1_b.en.eq(E2["issue"] & (E2["copy"] | E2["new_centre"])),
                     line1_b.addr.eq(base2_b + E2["eoff"] + Mux(E2["copy"], E2["g"], E2["jb"])),
                     line1_c.en.eq(mac2 & ~is_stt & (E2["ti"] != 0) & E2["new_op"]),
                     line1_c.addr.eq(base2_b + nboff2 + E2["jb"])]
        for port in (line1_a, line1_b, line1_c):        # (each enable registered, summed after)
            count("line1_reads", port.en)
        w2_rd = self.w2
        m.d.comb += [w2_rd.en.eq(mac2 & E2["glb_rd"]), w2_rd.addr.eq(E2["gbase"] + (E2["sl"] >> pxl))]
        count("w2_reads", mac2 & E2["glb_rd"])
        # w3: STT's cluster-3 engine's reads (counted there), or E2's in lock step
        w3_en = mac2 & E2["glb_rd"] & ~is_stt
        w3_rd = self.w3
        m.d.comb += [w3_rd.en.eq(Mux(is_stt, e3.w3.en, w3_en)),
                     w3_rd.addr.eq(Mux(is_stt, e3.w3.addr, E2["gbase"] + (E2["sl"] >> pxl))),
                     e3.w3.data.eq(w3_rd.data)]
        count("w3_reads", w3_en)

        return w2_rd, w3_rd

    def _results(self, m, pe2, pe3, B2, e3, copy_word, e2_done, count):
        """The results: at stage b STT's q2 rows -> row2; at stage c (a cycle later) PTT's
        merged sums / HTT's copies -> line4, or STT's cluster-3 engine's line4 writes (its
        stage c; re-quantised here by shift3 from the registered sums); the rows written.
        Returns whether E2 writes line4 this cycle (stage c holds a step)."""
        d_, g = self.desc, self.geo
        rnd, is_stt = d_["round"], d_.mode == 0
        P, qb, ab = self.config.lanes, self.config.widths.activation, self.config.widths.accumulator
        Pk, Px, ng, nb, rw1 = g.pk, g.px, g.ng, g.nb, g.rw1
        TR4, last_lanes, last_cols = g.tr4, g.last_lanes, g.last_cols
        d = self.desc
        m.submodules.requant2 = rq2 = Requantiser(P, ab, qb)
        m.d.comb += [rq2.i.eq(pe2.acc), rq2.shift.eq(d.shift2), rq2.rnd.eq(rnd)]
        row2_w = self.row2
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
        # stage c: the line4 write one cycle after stage b. The merged sums (STT: cluster 3's
        # own) and the requantiser's shift are registered, so that the adder array and the
        # re-quantisation (shift, rounding, saturation) are not one path into the write
        sum_c = Signal(P * (ab + 1), name="sum_c")
        m.submodules.requant3 = rq3 = Requantiser(P, ab + 1, qb)
        shift3_c = Signal.like(rq3.shift, name="shift3_c")
        m.d.sync += [sum_c.eq(Mux(is_stt, Cat(*lanes3_ext), adder.o)),
                     shift3_c.eq(Mux(is_stt, d.shift3, d.shift3 + 1))]
        m.d.comb += [rq3.i.eq(sum_c), rq3.shift.eq(shift3_c), rq3.rnd.eq(rnd)]
        line4_w = self.line4

        def base4(qm3, trw4):
            """Word base of line4 slot (q mod 3) * T + t: ``trw4`` = t * rw4."""
            return times3(qm3, TR4) + trw4

        w4_copy = B2["v"] & B2["copy"]
        merge_c, copy_c, row_end_c = Signal(name="merge_c"), Signal(name="w4_copy_c"), Signal(name="e2_row_end_c")
        addr_c = Signal.like(line4_w.addr, name="line4_addr_c")
        m.d.sync += [merge_c.eq(merge), copy_c.eq(w4_copy), row_end_c.eq(B2["v"] & B2["row_end"]),
                     addr_c.eq(base4(B2["qm3"], B2["tr4"]) + B2["eoff"] - ng + B2["g"])]
        m.d.comb += e3.result.eq(rq3.o)
        m.d.comb += [line4_w.en.eq(e3.line4.en | merge_c | copy_c),
                     line4_w.addr.eq(Mux(is_stt, e3.line4.addr, addr_c)),
                     line4_w.data.eq(Mux(copy_c, copy_word, Mux(is_stt, e3.line4.data, rq3.o)))]
        count("line4_writes", merge_c | copy_c)
        count("adder_busy", merge)
        count("adds", Mux(merge, Mux(B2["g"] == ng - 1, last_lanes, Pk)
                          * Mux(B2["e"] == nb, last_cols, Px), 0))
        # the rows written: STT's q2 rows into row2 at stage b, the q23 rows into line4 at c
        with m.If(Mux(is_stt, B2["v"] & B2["row_end"], row_end_c)):
            m.d.sync += e2_done.eq(e2_done + 1)
        return merge_c | copy_c

