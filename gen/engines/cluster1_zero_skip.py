"""Cluster 1 as the paper's zero-skipping engine: only the 1-spikes of a pixel cost a cycle.

Built when ``arrangement.cluster1 = "zero_skip"`` (gen.config.Arrangement; docs/architecture.md,
"The paper's arrangement"). Same ports, handshakes and ``line1`` contents as
:class:`gen.engines.cluster1.ClusterOneEngine`; the G1 core is stored transposed
(:func:`gen.zero_skip.w1_words_zero_skip`) and the cycles depend on the spikes.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring

from ..config import HardwareConfig, log2
from ..hostmap import STREAM_BITS
from ..units import Requantiser
from .cluster1 import cluster1_members
from .common import ROW_BITS, inc3, loops, times3

__all__ = ["ClusterOneZeroSkipEngine"]

RB = ROW_BITS


class ClusterOneZeroSkipEngine(wiring.Component):
    """Cluster 1 with zero skipping: ``P`` accumulators over the rank channels of one lane
    group (``Pk`` of them, the ``line1`` packing), a priority encoder over the pixel's spike
    words, one step per 1-spike.

    Loop nest (issue stage) as :class:`gen.engines.cluster1.ClusterOneEngine`'s, with the two
    inner levels replaced: per window row, pixel, rank group ``kg`` (``ng``) and spike word
    (``cw`` per pixel) one issue; the spike word (read from ``spike_in`` for ``kg = 0``, from
    the engine's copy after) enters the expander, which takes one step per 1-spike of the word
    (lowest channel first) and one step for an all-zero word: it reads the transposed G1 word
    of that channel (:func:`gen.zero_skip.w1_words_zero_skip`) and adds its ``Pk`` rank weights into the
    accumulators. After the last word of a (pixel, ``kg``) the ``Pk`` values are re-quantised
    by ``shift1`` and written into their lanes of one ``line1`` word. Window rows outside the
    layer take one step and write nothing; zero halo columns are skipped.

    Streamed G1 (``desc.w1_ring = n > 0``): within a window row the rank group is the outer
    level (rank group, pixel, spike word), every group reading the row's spike words from
    ``spike_in`` again, so that a group's ``ceil(Cin/Px)`` G1 words serve every pixel of the
    row before the next group's are needed. Region ``w1`` is then a ring of ``n`` such
    chunks, one per (window row inside the layer, rank group) in this order: a group waits at
    its first issue for its chunk (``w1_chunks``, after the row's own conditions; else
    ``c1_w_wait``) and frees its slot at its last step (``w1_consumed``). Resident G1
    (``w1_ring = 0``): pixel outer, chunk ``kg`` at word ``kg * ceil(Cin/Px)``.

    Ports: as :class:`gen.engines.cluster1.ClusterOneEngine`'s (``start``, ``desc``, ``geo``,
    ``in_rows``, ``w1_chunks``, ``released``, ``released_e1_order``, ``spike_in``, ``w1``,
    ``line1``, ``run``, ``busy``, ``rows_done``, ``in_consumed``, ``w1_consumed``, ``counts``).

    Timing: issue (spike word address) -> expander (one step per cycle: priority encoder, G1
    word address) -> stage a (weights arrive, accumulate) -> stage b (re-quantise, ``line1``
    write). The next word issues in the cycle of the expander's last step of the current one,
    so the steps of a row follow each other without gaps; a row's checks (``in_rows``,
    ``released``) happen at its first issue, one cycle before its first step. Counters:
    ``c1_busy`` counts steps; a cycle without a step while rows are left counts as
    ``c1_in_wait`` when the issue of the cycle before waited for the host's input row, as
    ``c1_w_wait`` when it waited for a G1 chunk, as ``c1_stall`` otherwise (including the
    tile's first cycle, which fetches the first word). ``in_consumed`` counts at a row's last
    step.
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        super().__init__(cluster1_members(config))

    def elaborate(self, platform):
        m = Module()
        issue = self._issue(m)
        step = self._expander(m, issue)
        a = self._stage_a(m, step)
        vb = self._stage_b(m, a)
        m.d.comb += self.busy.eq(self.run | step["v"] | a["v"] | vb)
        return m

    def _issue(self, m):  # noqa: C901 - the row/pixel loop nest of the dense engine
        """The issue stage: the loop nest, the row checks and the spike-word read. Returns the
        values the expander registers."""
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        d, g = self.desc, self.geo
        T, H, W, R = d.timesteps, d.height, d.width, d.rank
        zt, zb, zl, zr = (d.zero_halo[i] for i in range(4))
        order = d.order
        Px, ng, pack = g.px, g.ng, g.pack
        w_aligned = (W & (Px - 1)) == 0
        run1 = self.run
        o1, i1, sb1 = Signal(RB), Signal(RB), Signal(2)
        # the two loop levels inside a window row: resident G1 pixel outer, rank group inner;
        # streamed G1 (desc.w1_ring > 0) rank group outer, so that a group's G1 chunk serves
        # every pixel of the row before the next group's is needed
        stream = d.w1_ring != 0
        ua1, ub1, wd1 = Signal(RB), Signal(RB), Signal(RB)
        px1, kg1 = Signal(RB), Signal(RB)
        m.d.comb += [px1.eq(Mux(stream, ub1, ua1)), kg1.eq(Mux(stream, ua1, ub1))]
        qm3_1 = Signal(2)
        pix1, in_base, in_slot, in_next = Signal(RB), Signal(RB), Signal(RB), Signal(STREAM_BITS)
        ring1, n1, ring1_base, trw1, need1, eoff1 = (Signal(8), Signal(RB), Signal(RB), Signal(RB),
                                                     Signal(RB), Signal(RB))
        # resident: kg * ceil(Cin / Px); streamed: the G1 ring slot's first word; and kg * Pk
        kgbase, kgoff = Signal(RB), Signal(RB)
        nw = (d.in_channels + Px - 1) >> (lp - pack)[:4]
        w1seq, w1slot = Signal(STREAM_BITS), Signal(16)     # streamed G1: chunk index, ring slot
        wr1, t1 = Signal(RB), Signal(8)
        m.d.comb += [wr1.eq(Mux(order, i1, Mux(o1 == 0, sb1, o1 + 2))), t1.eq(Mux(order, o1, i1))]
        zero_row1 = Signal()
        m.d.comb += zero_row1.eq(((wr1 == 0) & zt) | ((wr1 == H + 1) & zb))
        halos1 = g.halos1

        def pixel_of(idx):
            return Mux(idx >= halos1, idx + zl + zr, Mux(halos1 == 2, idx, zl))

        pi1 = Signal(RB)
        m.d.comb += pi1.eq(pixel_of(px1))
        nxt_pi1 = pixel_of(px1 + 1)
        zlane1 = Signal()
        m.d.comb += zlane1.eq(zr & ~w_aligned & (pi1 == W + 1))
        xe1 = Signal(RB)
        m.d.comb += xe1.eq(Mux(pi1 == 0, Px - 1, Mux(pi1 == 1, W + Px, pi1 - 2 + Px)))
        in_ok1 = zero_row1 | (self.in_rows > in_next)
        slot_ok1 = Mux(order, (n1 < g.t3) | (self.released_e1_order >= n1 - g.t3 + 1),
                       (wr1 < 3) | (self.released >= need1))
        w_ok1 = ~stream | zero_row1 | (self.w1_chunks > w1seq)
        free = Signal()                               # the expander takes a word next cycle
        issue1 = Signal()
        m.d.comb += issue1.eq(run1 & in_ok1 & slot_ok1 & w_ok1 & free)
        npx1 = W + halos1
        e1 = loops(m, [(o1, Mux(order, T, H)), (i1, Mux(order, H + 2, T)),
                       (sb1, Mux(order | (o1 != 0), 1, 3)),
                       (ua1, Mux(zero_row1, 1, Mux(stream, ng, npx1))),
                       (ub1, Mux(zero_row1, 1, Mux(stream, npx1, ng))), (wd1, Mux(zero_row1, 1, g.cw))], issue1)
        unit_end1, ub_end1, row_end1, all_end1 = e1[5], e1[4], e1[3], e1[0]
        # a pixel's last unit (resident: its last rank group; streamed: every unit) and the
        # last pixel of a pass over the row (resident: the row's; streamed: the group's)
        px_step1 = Mux(stream, unit_end1, ub_end1)
        px_wrap1 = Mux(stream, ub_end1, row_end1)
        base1 = Signal(RB)
        m.d.comb += base1.eq(Mux(order, ring1_base, times3(Mux(o1 == 0, sb1, qm3_1), g.tr1) + trw1))
        with m.If(issue1):
            with m.If(stream):
                with m.If(ub_end1 & ~zero_row1):      # the group's chunk done: the next ring slot
                    last_slot = w1slot == d.w1_ring - 1
                    m.d.sync += [kgoff.eq(Mux(row_end1, 0, kgoff + g.pk)), w1seq.eq(w1seq + 1),
                                 w1slot.eq(Mux(last_slot, 0, w1slot + 1)),
                                 kgbase.eq(Mux(last_slot, 0, kgbase + nw))]
            with m.Elif(unit_end1):
                m.d.sync += [kgbase.eq(Mux(ub_end1, 0, kgbase + nw)), kgoff.eq(Mux(ub_end1, 0, kgoff + g.pk))]
            with m.If(px_step1):
                m.d.sync += pix1.eq(Mux(px_wrap1, 0, pix1 + g.cw))
                nxt_col = nxt_pi1 - 2
                m.d.sync += eoff1.eq(Mux(px_wrap1, g.first_eoff1, Mux(nxt_pi1 == 1, g.ew_ng, Mux(
                    nxt_pi1 == 2, ng, eoff1 + Mux((nxt_col & (Px - 1)) == 0, ng, 0)))))
            with m.If(row_end1):
                m.d.sync += [n1.eq(n1 + 1), ring1.eq(Mux(ring1 == g.t3 - 1, 0, ring1 + 1)),
                             ring1_base.eq(Mux(ring1 == g.t3 - 1, 0, ring1_base + g.rw1)),
                             need1.eq(need1 + (wr1 >= 3))]
                with m.If(~zero_row1):
                    last_slot = in_slot == d.in_ring_rows - 1
                    m.d.sync += [in_next.eq(in_next + 1), in_slot.eq(Mux(last_slot, 0, in_slot + 1)),
                                 in_base.eq(Mux(last_slot, 0, in_base + g.in_row_words))]
            with m.If(e1[2]):
                m.d.sync += trw1.eq(Mux(e1[1], 0, trw1 + g.rw1))
            with m.If(e1[1]):
                m.d.sync += qm3_1.eq(Mux(o1 == 0, 0, inc3(qm3_1)))
            with m.If(all_end1):
                m.d.sync += run1.eq(0)
        spike_rd = self.spike_in
        from_ring = stream | (kg1 == 0)               # streamed: every group re-reads the ring
        m.d.comb += [spike_rd.en.eq(issue1 & ~zero_row1 & from_ring),
                     spike_rd.addr.eq(in_base + pix1 + wd1),
                     self.counts.spike_in_reads.eq(spike_rd.en)]
        # the reason a cycle without a step waits: the previous cycle's failed issue
        slot_wait, in_wait, w_wait = Signal(), Signal(), Signal()
        m.d.sync += [slot_wait.eq(run1 & ~slot_ok1), in_wait.eq(run1 & slot_ok1 & ~in_ok1),
                     w_wait.eq(run1 & slot_ok1 & in_ok1 & ~w_ok1)]
        with m.If(self.start):
            m.d.sync += [run1.eq(1), o1.eq(0), i1.eq(0), sb1.eq(0), ua1.eq(0), ub1.eq(0), wd1.eq(0),
                         w1seq.eq(0), w1slot.eq(0), w_wait.eq(0),
                         qm3_1.eq(0), pix1.eq(0), in_base.eq(0), in_slot.eq(0), in_next.eq(0),
                         ring1.eq(0), n1.eq(0), ring1_base.eq(0), trw1.eq(0), need1.eq(1),
                         eoff1.eq(g.first_eoff1), kgbase.eq(0), kgoff.eq(0), slot_wait.eq(0), in_wait.eq(0)]
        return dict(issue=issue1, free=free, zero=zero_row1, k0=from_ring, wd=wd1, first=wd1 == 0,
                    last=unit_end1, rowend=row_end1, chunkend=ub_end1 & stream, kgbase=kgbase, kgoff=kgoff,
                    e=eoff1, sl=xe1 & (Px - 1), base=base1, zlane=zlane1,
                    slot_wait=slot_wait, in_wait=in_wait, w_wait=w_wait)

    def _expander(self, m, iss):
        """The expander: one step per 1-spike of the issued word (an all-zero word: one step),
        the G1 word read of its channel. Returns the step's values for stage a."""
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        SW, lsw = cfg.spike_word_bits, log2(cfg.spike_word_bits)
        CWMAX = -(-cfg.limits.max_in_channels // SW)
        d, g, cnt = self.desc, self.geo, self.counts
        R = d.rank
        names = ("zero", "k0", "first", "last", "rowend", "chunkend", "zlane")
        xv, xnew = Signal(), Signal()
        x = {n: Signal(name=f"x_{n}") for n in names}
        wide = {"wd": RB, "kgbase": RB, "kgoff": RB, "e": RB, "sl": lp + 1, "base": RB}
        x.update({n: Signal(w, name=f"x_{n}") for n, w in wide.items()})
        rem = Signal(SW)
        spike_reg = Signal(CWMAX * SW)
        cached = (spike_reg.word_select(x["wd"][:max(log2(CWMAX), 1)], SW) if CWMAX > 1 else spike_reg)
        cur = Signal(SW)
        m.d.comb += cur.eq(Mux(x["zero"], 0, Mux(xnew, Mux(x["k0"], self.spike_in.data, cached), rem)))
        with m.If(xv & xnew & x["k0"] & ~x["zero"]):
            if CWMAX > 1:
                m.d.sync += spike_reg.word_select(x["wd"][:max(log2(CWMAX), 1)], SW).eq(self.spike_in.data)
            else:
                m.d.sync += spike_reg.eq(self.spike_in.data)
        low1, has = Signal(range(SW)), Signal()         # the lowest 1 of cur (priority encoder)
        for i in reversed(range(SW)):
            with m.If(cur[i]):
                m.d.comb += low1.eq(i)
        m.d.comb += has.eq(cur != 0)
        rest = cur & (cur - 1)                        # cur without its lowest 1
        word_done = rest == 0
        m.d.comb += iss["free"].eq(~xv | word_done)
        with m.If(xv):
            m.d.sync += [rem.eq(rest), xnew.eq(0)]
            with m.If(word_done):
                m.d.sync += xv.eq(0)
        with m.If(iss["issue"]):
            m.d.sync += [xv.eq(1), xnew.eq(1)] + [x[n].eq(iss[n]) for n in x]
        with m.If(self.start):
            m.d.sync += xv.eq(0)
        chan = Signal(RB)
        m.d.comb += chan.eq((x["wd"] << lsw) | low1)
        lpx = (lp - g.pack)[:4]
        w1_rd = self.w1
        m.d.comb += [w1_rd.en.eq(xv & has), w1_rd.addr.eq(x["kgbase"] + (chan >> lpx))]
        lanes = Signal(lp + 1)                        # rank lanes of this group: min(Pk, r - kg*Pk)
        m.d.comb += lanes.eq(Mux(R - x["kgoff"] >= g.pk, g.pk, (R - x["kgoff"])[:lp + 1]))
        run_or_step = self.run | xv
        m.d.comb += [cnt.c1_busy.eq(xv), cnt.w1_reads.eq(w1_rd.en),
                     cnt.c1_slots.eq(Mux(xv & ~x["zero"], lanes, 0)),
                     cnt.c1_adds.eq(Mux(xv & has, lanes, 0)),
                     cnt.c1_in_wait.eq(run_or_step & ~xv & iss["in_wait"]),
                     cnt.c1_w_wait.eq(run_or_step & ~xv & iss["w_wait"]),
                     cnt.c1_stall.eq(run_or_step & ~xv & ~iss["in_wait"] & ~iss["w_wait"])]
        # a row's input ring slot is free after its last step
        with m.If(xv & word_done & x["rowend"] & x["last"] & ~x["zero"]):
            m.d.sync += self.in_consumed.eq(self.in_consumed + 1)
        # a streamed G1 chunk's ring slot is free after its last step (its last G1 read)
        with m.If(xv & word_done & x["last"] & x["chunkend"] & ~x["zero"]):
            m.d.sync += self.w1_consumed.eq(self.w1_consumed + 1)
        with m.If(self.start):
            m.d.sync += [self.in_consumed.eq(0), self.w1_consumed.eq(0)]
        return dict(v=xv, zero=x["zero"], has=has, first=xnew & x["first"], last=word_done & x["last"],
                    rowend=x["rowend"], sub=chan & (g.px - 1), lanes=lanes, e=x["e"], sl=x["sl"],
                    base=x["base"], zlane=x["zlane"], kg=x["kgoff"] >> g.pack)

    def _stage_a(self, m, s):
        """Stage a: the G1 word arrives; its ``Pk`` weights of the step's channel are added into
        the accumulators (reset by the first step of a pixel and rank group)."""
        cfg = self.config
        P, lp, wb, ab = cfg.lanes, log2(cfg.lanes), cfg.widths.weight, cfg.widths.accumulator
        a = {n: Signal(name=f"a_{n}") for n in ("v", "zero", "has", "first", "last", "rowend", "zlane")}
        a.update({n: Signal(w, name=f"a_{n}") for n, w in
                  (("sub", lp + 1), ("lanes", lp + 1), ("e", RB), ("sl", lp + 1), ("base", RB), ("kg", RB))})
        m.d.sync += [a[n].eq(s[n]) for n in a]
        shifted, lane0 = Signal(P * wb), Signal(lp)     # lane0: the channel's first lane
        m.d.comb += [lane0.eq(a["sub"] << self.geo.pack), shifted.eq(self.w1.data >> (lane0 * wb))]
        acc = [Signal(signed(ab), name=f"acc{j}") for j in range(P)]
        with m.If(a["v"] & ~a["zero"]):
            for j in range(P):
                wj = shifted.word_select(j, wb).as_signed()
                m.d.sync += acc[j].eq(Mux(a["first"], 0, acc[j]) + Mux(a["has"], wj, 0))
        a["acc"] = Cat(*acc)
        return a

    def _stage_b(self, m, a):
        """Stage b: re-quantise the group's accumulators and write its ``Pk`` lanes of one
        ``line1`` word (column W's lanes zero at an unaligned zero right edge). Returns the
        stage's valid."""
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        ab, qb = cfg.widths.accumulator, cfg.widths.activation
        d, g, cnt = self.desc, self.geo, self.counts
        b = {n: Signal(name=f"b_{n}") for n in ("v", "zero", "last", "rowend", "zlane")}
        b.update({n: Signal(w, name=f"b_{n}") for n, w in
                  (("lanes", lp + 1), ("e", RB), ("sl", lp + 1), ("base", RB), ("kg", RB))})
        m.d.sync += [b[n].eq(a[n]) for n in b]
        m.submodules.requant1 = rq = Requantiser(P, ab, qb)
        m.d.comb += [rq.i.eq(a["acc"]), rq.shift.eq(d.shift1), rq.rnd.eq(d["round"])]
        valid_lanes = Signal(P)                       # lanes j < min(Pk, r - kg*Pk)
        m.d.comb += valid_lanes.eq(Cat(*(j < b["lanes"] for j in range(P))))
        vals = Signal(P * qb)
        m.d.comb += vals.eq(Cat(*(Mux(valid_lanes[j], rq.o.word_select(j, qb), 0) for j in range(P))))
        off = Signal(lp + 1)                          # the pixel's first lane in the word
        m.d.comb += off.eq(b["sl"] << g.pack)
        line1_w = self.line1
        m.d.comb += [line1_w.addr.eq(b["base"] + b["e"] + b["kg"]),
                     line1_w.data.eq((vals << (off * qb))[:P * qb])]
        write = b["v"] & b["last"] & ~b["zero"]
        with m.If(write):
            zoff = Signal(lp + 1)                     # column W's first lane
            m.d.comb += zoff.eq(off + g.pk)
            m.d.comb += line1_w.en.eq(((valid_lanes << off) | Mux(b["zlane"], valid_lanes << zoff, 0))[:P])
        m.d.comb += cnt.line1_writes.eq(write)
        with m.If(b["v"] & b["last"] & b["rowend"]):
            m.d.sync += self.rows_done.eq(self.rows_done + 1)
        with m.If(self.start):
            m.d.sync += self.rows_done.eq(0)
        return b["v"]
