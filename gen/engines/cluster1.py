"""Cluster 1's engine: the G1 convolution of the input spikes into the ``line1`` buffer."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig, log2
from ..descriptor import DESCRIPTOR_LAYOUT
from ..hostmap import STREAM_BITS
from ..tilegeo import geometry_layout
from ..units import Requantiser, SpikeTree
from .common import ROW_BITS, active_lanes, counts_layout, inc3, loops, read_port, times3, write_port

__all__ = ["ClusterOneEngine", "cluster1_members"]


def cluster1_members(config: HardwareConfig) -> dict:
    """The ports of a cluster-1 engine (:class:`ClusterOneEngine` and the zero-skipping
    :class:`gen.engines.cluster1_zero_skip.ClusterOneZeroSkipEngine` are interchangeable)."""
    P, wd = config.lanes, config.widths
    cnt_lanes = log2(P) + 2
    return {
        "start": In(1),
        "desc": In(DESCRIPTOR_LAYOUT),
        "geo": In(geometry_layout(config)),
        "in_rows": In(STREAM_BITS),
        "w1_chunks": In(STREAM_BITS),
        "released": In(RB),
        "released_e1_order": In(RB),
        "spike_in": Out(read_port(config.spike_word_bits)),
        "w1": Out(read_port(P * wd.weight)),
        "line1": Out(write_port(P * wd.activation, P)),
        "run": Out(1),
        "busy": Out(1),
        "rows_done": Out(RB),
        "in_consumed": Out(STREAM_BITS),
        "w1_consumed": Out(STREAM_BITS),
        "counts": Out(counts_layout({
            "c1_busy": 1, "c1_stall": 1, "c1_in_wait": 1, "c1_w_wait": 1, "spike_in_reads": 1, "w1_reads": 1,
            "c1_slots": cnt_lanes, "c1_adds": cnt_lanes, "line1_writes": 1})),
    }

RB = ROW_BITS


class ClusterOneEngine(wiring.Component):
    """Cluster 1 (spike PEs + adder tree, :class:`gen.units.SpikeTree`) and its loop nest.

    For each window row (row outer: output row ``q``'s new window rows, then the timestep;
    timestep outer: timestep, then window row), each pixel (the halo columns first), each rank
    channel ``k``, each chunk of ``P`` input channels: one accumulate step per cycle. One q1
    value per (pixel, k), re-quantised by ``shift1`` and written into its lane of the packed
    ``line1`` word. Window rows outside the layer (``zero_halo``) take one step and write
    nothing; zero halo columns are skipped.

    Ports:

    * ``start`` (in): reset the loop counters and progress registers and run a tile (the
      descriptor and ``geo`` are valid and held from this cycle to the end of the tile).
    * ``desc``, ``geo`` (in): :data:`gen.descriptor.DESCRIPTOR_LAYOUT`,
      :func:`gen.tilegeo.geometry_layout`.
    * ``in_rows`` (in): input rows the host has written into the ``spike_in`` ring.
    * ``w1_chunks`` (in): G1 chunks the host has written into the ``w1`` ring (streamed G1:
      ``desc.w1_ring > 0``; ignored when G1 is resident).
    * ``released`` (in): rows cluster 2 has released (row outer, its ``q*T + t`` order);
      ``released_e1_order`` (in): line1 rows released in this engine's order (timestep outer).
    * ``spike_in``, ``w1`` (read ports: data one cycle after ``en``), ``line1`` (write port,
      one enable per lane).
    * ``run`` (out): rows left to issue; ``busy`` (out): ``run`` or a step in the pipeline.
    * ``rows_done`` (out): window rows written to ``line1`` (this engine's order);
      ``in_consumed`` (out): input rows finished with (their ring slots are free);
      ``w1_consumed`` (out): G1 chunks finished with, their ring slots free (0 whenever G1
      is resident).
    * ``counts`` (out): this cycle's increments of the counters named by its fields.

    Streamed G1 (``desc.w1_ring = n > 0``): within a window row the rank channel is the outer
    level (rank ``k``, pixel, input-channel chunk), every pixel's spike words read from
    ``spike_in`` again for each ``k``, so that a rank's ``ceil(Cin/P)`` G1 words serve every
    pixel of the row before the next rank's are needed. Region ``w1`` is then a ring of ``n``
    such chunks, one per (window row inside the layer, rank) in this order: a rank's steps
    issue only when its chunk is in the ring (``w1_chunks``) and its last step frees the slot
    (``w1_consumed``, as ``in_consumed`` counts at its row's last step). Resident G1
    (``w1_ring = 0``): pixel outer, rank ``k`` at words ``k * ceil(Cin/P) ..``.

    Timing: issue (memory addresses) -> stage a (spike word and weights arrive, PE
    accumulate) -> stage b (re-quantise, ``line1`` write). A step issues when its input row is
    in the ring (``in_rows``), its ``line1`` slot is free (``released``) and, streamed, its G1
    chunk is in the ring. A cycle without a step while rows are left counts as ``c1_stall``
    (no free ``line1`` slot), else as ``c1_in_wait`` (no input row), else as ``c1_w_wait`` (no
    G1 chunk).
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        super().__init__(cluster1_members(config))

    def elaborate(self, platform):  # noqa: C901 - the loop nest and its two pipeline stages
        m = Module()
        cfg = self.config
        P = cfg.lanes
        lspc = log2(cfg.spike_word_bits // P)       # log2 of the P-channel chunks per spike word
        d, g = self.desc, self.geo
        T, H, W, R = d.timesteps, d.height, d.width, d.rank
        zt, zb, zl, zr = (d.zero_halo[i] for i in range(4))
        order = d.order
        Px, ng = g.px, g.ng
        w_aligned = (W & (Px - 1)) == 0
        cnt = self.counts

        # rows: row outer: output row q (its new window rows: 0..2 for q = 0, q + 2 after),
        # timestep, new row; timestep outer: timestep, window row
        run1 = self.run
        o1, i1, sb1 = Signal(RB), Signal(RB), Signal(2)
        # the two loop levels above the chunk inside a window row: resident G1 pixel outer,
        # rank inner; streamed G1 (desc.w1_ring > 0) rank outer, so that a rank's G1 chunk
        # serves every pixel of the row before the next rank's is needed
        stream = d.w1_ring != 0
        ua1, ub1, cc1 = Signal(RB), Signal(RB), Signal(RB)
        px1, k1 = Signal(RB), Signal(RB)
        m.d.comb += [px1.eq(Mux(stream, ub1, ua1)), k1.eq(Mux(stream, ua1, ub1))]
        w1seq, w1slot, w1base = self.w1_consumed, Signal(16), Signal(RB)   # streamed: chunk, slot
        qm3_1 = Signal(2)                         # (o1 + 2) mod 3 for o1 >= 1 (row outer)
        waddr1, pix1 = Signal(RB), Signal(RB)
        in_base, in_slot = Signal(RB), Signal(RB)
        in_seq, e1_done = self.in_consumed, self.rows_done
        # timestep outer: line1 is one ring of 3T rows in E1's order; ``released_e1_order``
        # counts the rows of that order E2 has released (a prefix: E2 releases them in order)
        ring1, n1 = Signal(8), Signal(RB)
        ring1_base = Signal(RB)                   # ring1 * rw1
        trw1 = Signal(RB)                         # t * rw1 (row outer: t is i1)
        need1 = Signal(RB)                        # row outer: E2 rows released before row >= 3
        eoff1 = Signal(RB)                        # word offset (block * ng) of the current pixel
        T3 = g.t3
        wr1, t1 = Signal(RB), Signal(8)
        m.d.comb += [wr1.eq(Mux(order, i1, Mux(o1 == 0, sb1, o1 + 2))), t1.eq(Mux(order, o1, i1))]
        # window rows and halo columns outside the layer (zero_halo) are never computed nor
        # written: a zero row takes one step (it still occupies its line1 slot, whose reads
        # cluster 2 masks to zero), zero halo columns are skipped (readers mask the halo
        # block; an unaligned right edge gets its zero lane with column W-1's write)
        zero_row1 = Signal()
        m.d.comb += zero_row1.eq(((wr1 == 0) & zt) | ((wr1 == H + 1) & zb))
        halos1 = g.halos1                         # halo pixels cluster 1 computes per row

        def pixel_of(idx):
            """Window pixel (0: left halo, 1: right halo, 2 + x: column x) of the ``idx``-th
            pixel cluster 1 computes in a row."""
            return Mux(idx >= halos1, idx + zl + zr, Mux(halos1 == 2, idx, zl))

        pi1 = Signal(RB)
        m.d.comb += pi1.eq(pixel_of(px1))
        nxt_pi1 = pixel_of(px1 + 1)
        zlane1 = Signal()                         # column W-1 with a zero, unaligned right edge
        m.d.comb += zlane1.eq(zr & ~w_aligned & (pi1 == W + 1))
        xe1 = Signal(RB)                          # column + Px (the left halo is column -1)
        m.d.comb += xe1.eq(Mux(pi1 == 0, Px - 1, Mux(pi1 == 1, W + Px, pi1 - 2 + Px)))
        in_ok1 = zero_row1 | (self.in_rows > in_seq)
        slot_ok1 = Mux(order, (n1 < T3) | (self.released_e1_order >= n1 - T3 + 1),
                       (wr1 < 3) | (self.released >= need1))
        w_ok1 = ~stream | zero_row1 | (self.w1_chunks > w1seq)
        issue1 = Signal()
        m.d.comb += issue1.eq(run1 & in_ok1 & slot_ok1 & w_ok1)
        m.d.comb += [cnt.c1_busy.eq(issue1), cnt.c1_stall.eq(run1 & ~slot_ok1),
                     cnt.c1_in_wait.eq(run1 & slot_ok1 & ~in_ok1),
                     cnt.c1_w_wait.eq(run1 & slot_ok1 & in_ok1 & ~w_ok1)]
        npx1 = W + halos1
        e1 = loops(m, [(o1, Mux(order, T, H)), (i1, Mux(order, H + 2, T)),
                       (sb1, Mux(order | (o1 != 0), 1, 3)),
                       (ua1, Mux(zero_row1, 1, Mux(stream, R, npx1))),
                       (ub1, Mux(zero_row1, 1, Mux(stream, npx1, R))), (cc1, Mux(zero_row1, 1, g.ncc))], issue1)
        unit_end1, ub_end1, row_end1, all_end1 = e1[5], e1[4], e1[3], e1[0]
        # a pixel's last step (resident: of its last rank; streamed: of every unit) and the
        # last pixel of a pass over the row (resident: the row's; streamed: the rank's)
        px_step1 = Mux(stream, unit_end1, ub_end1)
        px_wrap1 = Mux(stream, ub_end1, row_end1)

        base1 = Signal(RB)                        # line1 slot of the current window row
        m.d.comb += base1.eq(Mux(order, ring1_base, times3(Mux(o1 == 0, sb1, qm3_1), g.tr1) + trw1))
        with m.If(issue1):
            with m.If(stream):
                # G1 words: the chunk's ncc words for every pixel, then the next ring slot's
                last_slot = w1slot == d.w1_ring - 1
                nxt_base = Mux(last_slot, 0, w1base + g.ncc)
                chunk_end = ub_end1 & ~zero_row1
                m.d.sync += waddr1.eq(Mux(unit_end1, Mux(chunk_end, nxt_base, w1base), waddr1 + 1))
                with m.If(chunk_end):             # the rank's chunk done: its slot is free
                    m.d.sync += [w1seq.eq(w1seq + 1), w1slot.eq(Mux(last_slot, 0, w1slot + 1)),
                                 w1base.eq(nxt_base)]
            with m.Else():
                m.d.sync += waddr1.eq(Mux(ub_end1, 0, waddr1 + 1))
            with m.If(px_step1):
                m.d.sync += pix1.eq(Mux(px_wrap1, 0, pix1 + g.cw))
                # the next pixel's block: column W's, block 1 (column 0), then one more block
                # every Px columns; a new pass over the row starts with its first pixel's block
                nxt_col = nxt_pi1 - 2             # column of the next pixel (for nxt_pi1 >= 2)
                m.d.sync += eoff1.eq(Mux(px_wrap1, g.first_eoff1, Mux(nxt_pi1 == 1, g.ew_ng, Mux(
                    nxt_pi1 == 2, ng, eoff1 + Mux((nxt_col & (Px - 1)) == 0, ng, 0)))))
            with m.If(row_end1):
                m.d.sync += [n1.eq(n1 + 1),
                             ring1.eq(Mux(ring1 == T3 - 1, 0, ring1 + 1)),
                             ring1_base.eq(Mux(ring1 == T3 - 1, 0, ring1_base + g.rw1)),
                             need1.eq(need1 + (wr1 >= 3))]
                with m.If(~zero_row1):
                    last_slot = in_slot == d.in_ring_rows - 1
                    m.d.sync += [in_seq.eq(in_seq + 1),
                                 in_slot.eq(Mux(last_slot, 0, in_slot + 1)),
                                 in_base.eq(Mux(last_slot, 0, in_base + g.in_row_words))]
            with m.If(e1[2]):        # i1 advances (t, row outer)
                m.d.sync += trw1.eq(Mux(e1[1], 0, trw1 + g.rw1))
            with m.If(e1[1]):        # o1 advances
                m.d.sync += qm3_1.eq(Mux(o1 == 0, 0, inc3(qm3_1)))
            with m.If(all_end1):
                m.d.sync += run1.eq(0)
        spike_rd, w1_rd = self.spike_in, self.w1
        from_ring = stream | (k1 == 0)             # streamed: every rank re-reads the row
        m.d.comb += [spike_rd.en.eq(issue1 & ~zero_row1 & from_ring & (cc1[:lspc] == 0 if lspc else 1)),
                     spike_rd.addr.eq(in_base + pix1 + (cc1 >> lspc)),
                     w1_rd.en.eq(issue1 & ~zero_row1), w1_rd.addr.eq(waddr1)]
        m.d.comb += [cnt.spike_in_reads.eq(spike_rd.en), cnt.w1_reads.eq(issue1 & ~zero_row1)]

        v1a, v1b = self._stage_a(m, dict(issue=issue1, zero=zero_row1, cc=cc1, unit_end=unit_end1,
                                         from_ring=from_ring, row_end=row_end1, k=k1, eoff=eoff1,
                                         xe=xe1, base=base1, zlane=zlane1))
        m.d.comb += self.busy.eq(run1 | v1a | v1b)

        # ---- start: a new tile (last, so that it wins over the updates above) ---------------
        with m.If(self.start):
            m.d.sync += [run1.eq(1), o1.eq(0), i1.eq(0), sb1.eq(0), ua1.eq(0), ub1.eq(0), cc1.eq(0),
                         w1seq.eq(0), w1slot.eq(0), w1base.eq(0),
                         qm3_1.eq(0), waddr1.eq(0), pix1.eq(0), in_base.eq(0), in_slot.eq(0),
                         e1_done.eq(0), ring1.eq(0), n1.eq(0), in_seq.eq(0), ring1_base.eq(0),
                         trw1.eq(0), need1.eq(1), eoff1.eq(g.first_eoff1)]
        return m

    def _stage_a(self, m, i):
        """Stage a: the spike word and the G1 word arrive, the spike tree accumulates; ``i``:
        the issuing step's values (registered here). Returns the valids of stages a and b."""
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        SW = cfg.spike_word_bits
        lspc = log2(SW // P)
        CWMAX = -(-cfg.limits.max_in_channels // SW)
        ab, wb = cfg.widths.accumulator, cfg.widths.weight
        CIN, Px, cnt = self.desc.in_channels, self.geo.px, self.counts
        spike_rd, w1_rd = self.spike_in, self.w1
        issue1, zero_row1, cc1, unit_end1 = i["issue"], i["zero"], i["cc"], i["unit_end"]
        from_ring, row_end1, k1, eoff1 = i["from_ring"], i["row_end"], i["k"], i["eoff"]
        xe1, base1, zlane1 = i["xe"], i["base"], i["zlane"]
        v1a, zero1a, first1a, last1a, k0_1a, rowend1a = (Signal(name=f"e1a_{n}") for n in
                                                          ("v", "zero", "first", "last", "k0", "rowend"))
        cc1a, k1a, e1a, sl1a = Signal(RB), Signal(RB), Signal(RB), Signal(lp + 1)   # e1a: word offset
        base1a = Signal(RB)
        act1a = Signal(range(P + 1))
        zlane1a = Signal()
        m.d.sync += zlane1a.eq(zlane1)
        m.d.sync += [v1a.eq(issue1), zero1a.eq(zero_row1), first1a.eq(cc1 == 0), last1a.eq(unit_end1),
                     k0_1a.eq(from_ring), rowend1a.eq(row_end1), cc1a.eq(cc1), k1a.eq(k1),
                     e1a.eq(eoff1), sl1a.eq(xe1 & (Px - 1)), base1a.eq(base1),
                     act1a.eq(active_lanes(CIN, cc1, lp))]
        spike_reg = Signal(CWMAX * SW)
        word1 = Mux(k0_1a, spike_rd.data, spike_reg.word_select((cc1a >> lspc)[:max(log2(CWMAX), 1)], SW)
                    if CWMAX > 1 else spike_reg)
        with m.If(v1a & k0_1a & ~zero1a):
            if CWMAX > 1:
                m.d.sync += spike_reg.word_select((cc1a >> lspc)[:max(log2(CWMAX), 1)], SW).eq(spike_rd.data)
            else:
                m.d.sync += spike_reg.eq(spike_rd.data)
        chunk1 = Signal(P)
        m.d.comb += chunk1.eq(word1.word_select(cc1a[:lspc], P) if lspc else word1)
        m.submodules.cluster1 = pe1 = SpikeTree(P, wb, ab)
        m.d.comb += [pe1.valid.eq(v1a & ~zero1a), pe1.first.eq(first1a), pe1.spikes.eq(chunk1),
                     pe1.weights.eq(w1_rd.data)]
        m.d.comb += [cnt.c1_slots.eq(Mux(v1a & ~zero1a, act1a, 0)),
                     cnt.c1_adds.eq(Mux(v1a & ~zero1a, sum(chunk1[l] for l in range(P)), 0))]

        v1b = self._stage_b(m, pe1.acc, dict(v=v1a, zero=zero1a, last=last1a, rowend=rowend1a, k=k1a,
                                              e=e1a, sl=sl1a, base=base1a, zlane=zlane1a))
        return v1a, v1b

    def _stage_b(self, m, acc, a):
        """Stage b: re-quantise the accumulated q1 value (``acc``) and write it into its lane
        of the ``line1`` word (with column W's zero lane at an unaligned zero right edge);
        ``a``: the stage-a values (registered here). Returns the stage's valid."""
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        ab, qb = cfg.widths.accumulator, cfg.widths.activation
        d, g, cnt, e1_done = self.desc, self.geo, self.counts, self.rows_done
        pk, Pk = g.pack, g.pk
        zlane1b = Signal()
        v1b, zero1b, last1b, rowend1b = Signal(), Signal(), Signal(), Signal()
        k1b, e1b, sl1b, base1b = Signal(RB), Signal(RB), Signal(lp + 1), Signal(RB)
        m.d.sync += [v1b.eq(a["v"]), zero1b.eq(a["zero"]), last1b.eq(a["last"]),
                     rowend1b.eq(a["rowend"]), k1b.eq(a["k"]), e1b.eq(a["e"]), sl1b.eq(a["sl"]),
                     base1b.eq(a["base"]), zlane1b.eq(a["zlane"])]
        m.submodules.requant1 = rq1 = Requantiser(1, ab, qb)
        m.d.comb += [rq1.i.eq(acc), rq1.shift.eq(d.shift1), rq1.rnd.eq(d["round"])]
        line1_w = self.line1
        lane1 = Signal(lp + 1)
        m.d.comb += lane1.eq((sl1b << pk) | (k1b & (Pk - 1)))
        zero_lane1 = lane1 + Pk                   # column W's lane, next to column W-1's
        m.d.comb += [line1_w.addr.eq(base1b + e1b + (k1b >> pk)),
                     line1_w.data.eq(Cat(*(Mux(zlane1b & (zero_lane1 == l), 0, rq1.o)
                                           for l in range(P))))]
        with m.If(v1b & last1b & ~zero1b):
            m.d.comb += line1_w.en.eq((Const(1, P) << lane1) | Mux(zlane1b, Const(1, P) << zero_lane1, 0))
        m.d.comb += cnt.line1_writes.eq(v1b & last1b & ~zero1b)
        with m.If(v1b & last1b & rowend1b):
            m.d.sync += e1_done.eq(e1_done + 1)
        return v1b
