"""The engine from cluster 4 to the LIF array: G4, 2x2 max-pool, folded BatchNorm, residual,
LIF, into the output ring; beside it the trace the backward pass keeps (spike, surrogate-window
bit, pooling arg-max per neuron) into the ``trace`` region."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig, log2
from ..descriptor import DESCRIPTOR_LAYOUT
from ..hostmap import STREAM_BITS
from ..tilegeo import MEMBRANE_READ_GAP, geometry_layout
from ..units import AffineLanes, LIFLanes, MacPEArray, MaxPoolLanes
from .common import ROW_BITS, active_lanes, counts_layout, delay, inc3, loops, read_port, times3, write_port

__all__ = ["ClusterFourEngine"]

RB = ROW_BITS


class ClusterFourEngine(wiring.Component):
    """Cluster 4 (:class:`gen.units.MacPEArray`), max-pool, affine, residual and LIF lanes,
    and their loop nest.

    Per output row (row outer: output row ``yo``, then the timestep; timestep outer: the
    timestep, then ``yo``), output group of ``P`` channels, output pixel, pool sub-pixel, rank
    channel ``k``: one multiply-accumulate step per cycle on the q23 values of ``line4``.
    At the end of a pixel the pooled sums of its group go through the affine (scale of the
    timestep's class, bias), the residual add and the LIF, whose membrane of the previous
    timestep is read back from the output ring; spikes and membranes are written into the
    output ring, and in the same cycle the group's **trace word** into region ``trace`` at the
    same address: 4 bits per lane, bit 0 the spike, bit 1 the surrogate-window bit
    ``desc.window_lo < u < desc.window_hi`` (:class:`gen.units.LIFLanes`), bits 2-3 the
    pooled neuron's arg-max (0..3, raster order in its 2x2 block, the first maximum on ties:
    :class:`gen.units.MaxPoolLanes`; 0 without pooling), the lane format of the backward's
    trace words (docs/numerics.md, "What the forward pass keeps"); lanes past ``Cout`` are 0.
    A group's ``r`` G4 words serve every pixel of the row before the next group's are needed:
    with ``desc.w4_ring = n > 0`` (streamed G4) region ``w4`` is a ring of ``n`` such chunks,
    one per (output row, group) in this order, that the host refills while the tile runs; a group waits at its first step for its chunk (``w4_chunks``), and frees
    its slot after its last (``w4_consumed``). With ``w4_ring = 0`` G4 is resident (chunk
    ``go`` at word ``go * r``).

    Ports:

    * ``start`` (in): reset the loop counters, ring positions and progress registers and run
      a tile (``desc`` and ``geo`` held from this cycle to the end of the tile).
    * ``desc``, ``geo`` (in): :data:`gen.descriptor.DESCRIPTOR_LAYOUT`,
      :func:`gen.tilegeo.geometry_layout`.
    * ``rows_written`` (in): q23 rows written into ``line4`` by clusters 2/3 (their order).
    * ``res_rows``, ``out_taken`` (in): the host's residual rows written / output rows read.
    * ``w4_chunks`` (in): the host's G4 chunks written into the ``w4`` ring (streamed G4).
    * ``line4``, ``w4``, ``affine``, ``residual``, ``membrane_in`` (read ports: data one cycle
      after ``en``), ``membrane_out``, ``spikes``, ``trace`` (write ports).
    * ``run`` (out): rows left to issue; ``busy`` (out): ``run`` or a step in the pipeline.
    * ``rows_released`` (out): output rows issued (their q23 rows' ``line4`` slots are free);
      ``res_consumed`` (out): residual rows finished with; ``out_rows`` (out): output rows
      complete in the output ring; ``out_groups`` (out): output groups of the row after them
      (row ``out_rows``) complete in the output ring, 0 again when that row completes (the host
      reads a tile's last row a group at a time while it is written); ``w4_consumed`` (out):
      G4 chunks finished with (their ring slots are free; 0 unless G4 is streamed).
    * ``counts`` (out): this cycle's increments of the counters named by its fields.

    Timing: issue (addresses) -> a (operands arrive, MAC) -> b (max-pool; affine, residual
    and u(t-1) words registered) -> c (pooled sums registered, into the affine and LIF
    pipelines: :class:`gen.units.AffineLanes`, :class:`gen.units.LIFLanes`) -> ... -> write
    (membrane and spike writes, :attr:`TAIL_STAGES` cycles after c,
    :attr:`WRITE_LATENCY` cycles after the issue). Every stage is one clock cycle: no path
    needs more than one. A row issues when its q23 rows are written, its u(t-1) has landed
    and the host has written its residual row and drained its output slot; a group of a
    streamed G4 when the host has written its chunk (else ``c4_w_wait``).
    """

    #: cycles from stage c to the membrane and spike writes (the affine and LIF pipelines)
    TAIL_STAGES = AffineLanes.LATENCY - LIFLanes.CUR_OFFSET + LIFLanes.LATENCY
    #: cycles from a step's issue to its membrane and spike writes (issue -> a -> b -> c -> write)
    WRITE_LATENCY = 3 + TAIL_STAGES

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        if MEMBRANE_READ_GAP != self.WRITE_LATENCY + 1:  # pragma: no cover - a design-time check
            raise AssertionError(f"gen.tilegeo.MEMBRANE_READ_GAP must be {self.WRITE_LATENCY + 1}")
        self.config = config
        P, wd = config.lanes, config.widths
        aff = config.regions["affine"].width_bits
        cnt_lanes = log2(P) + 2
        super().__init__({
            "start": In(1),
            "desc": In(DESCRIPTOR_LAYOUT),
            "geo": In(geometry_layout(config)),
            "rows_written": In(RB),
            "res_rows": In(STREAM_BITS),
            "out_taken": In(STREAM_BITS),
            "w4_chunks": In(STREAM_BITS),
            "line4": Out(read_port(P * wd.activation)),
            "w4": Out(read_port(P * wd.weight)),
            "affine": Out(read_port(aff)),
            "residual": Out(read_port(P * wd.membrane)),
            "membrane_in": Out(read_port(P * wd.membrane)),
            "membrane_out": Out(write_port(P * wd.membrane)),
            "spikes": Out(write_port(P)),
            "trace": Out(write_port(4 * P)),
            "run": Out(1),
            "busy": Out(1),
            "rows_released": Out(RB),
            "res_consumed": Out(STREAM_BITS),
            "out_rows": Out(STREAM_BITS),
            "out_groups": Out(STREAM_BITS),
            "w4_consumed": Out(STREAM_BITS),
            "counts": Out(counts_layout({
                "c4_busy": 1, "c4_stall": 1, "lif_stall": 1, "c4_w_wait": 1, "line4_reads": 1, "w4_reads": 1,
                "affine_reads": 1, "residual_reads": 1, "membrane_reads": 1,
                "c4_macs": cnt_lanes, "membrane_writes": 1, "spikes_writes": 1, "trace_writes": 1,
                "lif_busy": 1,
                "lif_updates": cnt_lanes, "spikes_out": cnt_lanes})),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        wd = cfg.widths
        P, lp = cfg.lanes, log2(cfg.lanes)
        ab, qb, mb, wb = wd.accumulator, wd.activation, wd.membrane, wd.weight
        d, g = self.desc, self.geo
        T, R, COUT = d.timesteps, d.rank, d.out_channels
        order, pool = d.order, d.pool
        Px, Pk, pk = g.px, g.pk, g.pack
        Ho, Wo, GO, dist = g.ho, g.wo, g.go, g.dist
        cnt = self.counts
        run4 = self.run
        e4_rel, res_seq, out_seq = self.rows_released, self.res_consumed, self.out_rows
        o4, i4, xo4 = Signal(RB), Signal(RB), Signal(RB)
        go4, sub4, k4 = Signal(RB), Signal(2), Signal(RB)
        yo4, t4 = Signal(RB), Signal(8)
        m.d.comb += [yo4.eq(Mux(order, i4, o4)), t4.eq(Mux(order, o4, i4))]
        ym3 = Signal(2)                           # (S * yo4) mod 3
        m4 = Signal(STREAM_BITS)                  # output row index in the row order
        gobase4, outidx = Signal(RB), Signal(RB)
        out_base, out_slot = Signal(RB), Signal(RB)
        prev_slot, prev_base = Signal(RB), Signal(RB)   # ring row ``dist`` rows back
        res_base, res_slot = Signal(RB), Signal(RB)
        # kept by adding: (S*yo + S - 1) * T (row outer), t * H (timestep outer), t * rw4, the
        # word offset of the current column's line4 block
        n4b, th4, trw4_4, xoff4 = Signal(RB), Signal(RB), Signal(RB), Signal(RB)
        w4seq, w4slot = Signal(STREAM_BITS), Signal(16)   # streamed G4: chunk index, ring slot
        s = SimpleNamespace(o4=o4, i4=i4, xo4=xo4, go4=go4, sub4=sub4, k4=k4, yo4=yo4, t4=t4,
                            ym3=ym3, m4=m4, gobase4=gobase4, outidx=outidx, out_base=out_base,
                            out_slot=out_slot, prev_slot=prev_slot, prev_base=prev_base,
                            res_base=res_base, res_slot=res_slot, n4b=n4b, th4=th4,
                            trw4_4=trw4_4, xoff4=xoff4, w4seq=w4seq, w4slot=w4slot)
        issue4 = self._issue(m, s)
        e4 = loops(m, [(o4, Mux(order, T, Ho)), (i4, Mux(order, Ho, T)), (go4, GO), (xo4, Wo),
                       (sub4, Mux(pool, 4, 1)), (k4, R)], issue4)
        # grp_end4: the last step of one output word (a pixel of a group); seg_end4: of a
        # group's pixels (the G4 chunk's last use)
        sub_end4, grp_end4, row_end4 = e4[5], e4[4], e4[2]
        with m.If(issue4):
            self._advance(m, s, e4)
        self._reads(m, s, issue4, grp_end4)
        line4_r, w4_rd, aff_rd = self.line4, self.w4, self.affine
        res_rd, state_rd = self.residual, self.membrane_in

        # ---- stage a: operands arrive, multiply-accumulate ---------------------------------
        v4a, first4a, last4a, subfirst4a, grp4a, t0_4a, rowend4a, segend4a = (
            Signal(name=f"e4a_{n}") for n in ("v", "first", "last", "subfirst", "grp", "t0", "rowend", "segend"))
        lane4a = Signal(lp + 1)
        outidx4a, obase4a = Signal(RB), Signal(RB)
        act4a = Signal(range(P + 1))
        pos4a, pos4b = Signal(2, name="e4a_pos"), Signal(2, name="e4b_pos")  # pool sub-pixel
        x4 = s.x4
        m.d.sync += [v4a.eq(issue4), first4a.eq(k4 == 0), last4a.eq(sub_end4),
                     subfirst4a.eq(sub4 == 0), grp4a.eq(grp_end4), t0_4a.eq(t4 == 0),
                     rowend4a.eq(row_end4), segend4a.eq(e4[3]),
                     lane4a.eq(((x4 & (Px - 1)) << pk) | (k4 & (Pk - 1))), outidx4a.eq(outidx),
                     obase4a.eq(out_base), act4a.eq(active_lanes(COUT, go4, lp)), pos4a.eq(sub4)]
        m.submodules.cluster4 = pe4 = MacPEArray(P, wb, qb, ab)
        m.d.comb += [pe4.valid.eq(v4a), pe4.first.eq(first4a),
                     pe4.operand.eq(line4_r.data.word_select(lane4a, qb)),
                     pe4.weights.eq(w4_rd.data)]
        m.d.comb += cnt.c4_macs.eq(Mux(v4a, act4a, 0))

        # ---- stage b: max-pool; the group's affine, residual and u(t-1) words ----------------
        v4b, last4b, subfirst4b, grp4b, t0_4b, rowend4b, segend4b = (
            Signal(name=f"e4b_{n}") for n in ("v", "last", "subfirst", "grp", "t0", "rowend", "segend"))
        outidx4b, obase4b = Signal(RB), Signal(RB)
        act4b = Signal(range(P + 1))
        aff4b = Signal(len(aff_rd.data))
        res4b, uprev4b = Signal(P * mb), Signal(P * mb)
        m.d.sync += [v4b.eq(v4a), last4b.eq(last4a), subfirst4b.eq(subfirst4a), grp4b.eq(grp4a),
                     t0_4b.eq(t0_4a), rowend4b.eq(rowend4a), segend4b.eq(segend4a), outidx4b.eq(outidx4a),
                     obase4b.eq(obase4a), act4b.eq(act4a), pos4b.eq(pos4a)]
        with m.If(v4a & grp4a):
            m.d.sync += [aff4b.eq(aff_rd.data), res4b.eq(res_rd.data),
                         uprev4b.eq(Mux(t0_4a, 0, state_rd.data))]
        m.submodules.maxpool = mp = MaxPoolLanes(P, ab)
        m.d.comb += [mp.valid.eq(v4b & last4b), mp.first.eq(subfirst4b), mp.i.eq(pe4.acc),
                     mp.position.eq(pos4b)]

        full4a, full4b = Signal(), Signal()      # HTT: the row's timestep is a full one
        m.d.sync += [full4a.eq(d.schedule.bit_select(t4, 1)), full4b.eq(full4a)]
        tail = self._stage_c(m, dict(v=v4b & grp4b, rowend=rowend4b, segend=segend4b, p=mp.o, arg=Mux(pool, mp.arg, 0),
                                     aff=aff4b, res=res4b,
                                     uprev=uprev4b, outidx=outidx4b, obase=obase4b, act=act4b,
                                     full=full4b))
        m.d.comb += self.busy.eq(run4 | v4a | v4b | Cat(*tail).any())

        # ---- start: a new tile (last, so that it wins over the updates above) ---------------
        with m.If(self.start):
            m.d.sync += [run4.eq(1), e4_rel.eq(0), res_seq.eq(0), out_seq.eq(0), self.out_groups.eq(0),
                         o4.eq(0), i4.eq(0), xo4.eq(0), go4.eq(0), sub4.eq(0), k4.eq(0), m4.eq(0),
                         ym3.eq(0), gobase4.eq(0), outidx.eq(0), w4seq.eq(0), w4slot.eq(0),
                         out_base.eq(0), out_slot.eq(0), res_base.eq(0), res_slot.eq(0),
                         prev_slot.eq(d.out_ring_rows - dist), prev_base.eq(g.prev_init),
                         n4b.eq(Mux(pool, T, 0)), th4.eq(0), trw4_4.eq(0), xoff4.eq(0)]
        return m

    def _issue(self, m, s):
        """The issue condition of the loop nest's step (returned) and the stall counters: the
        step's q23 rows written, its u(t-1) landed, the host's residual row written and output
        slot drained, and (streamed G4) its group's chunk written. ``s``: the loop state."""
        d, g, cnt = self.desc, self.geo, self.counts
        order, pool, use_res = d.order, d.pool, d.residual
        run4, out_seq = self.run, self.out_rows
        S = Mux(pool, 2, 1)                            # q23 rows per output row
        # the writer's index of q23 row (S*yo + S - 1, t), + 1
        in_ok4 = self.rows_written >= Mux(order, s.th4 + (s.yo4 << pool) + S, s.n4b + s.t4 + 1)
        # u(t-1) read back from the output ring: landed (only short rows can outrun it). A
        # neuron's membrane is written WRITE_LATENCY cycles after its last issue and the read
        # port is not transparent, so the same neuron's read must come at least
        # MEMBRANE_READ_GAP = WRITE_LATENCY + 1 cycles later (geometry's long_rows)
        back_ok4 = g.long_rows | (s.t4 == 0) | (out_seq + g.dist > s.m4)
        # the host: residual row written, output slot drained
        host_ok4 = (~use_res | (self.res_rows > s.m4)) & (self.out_taken + d.out_ring_rows > s.m4)
        # streamed G4: the group's chunk (the w4seq-th of the tile) written by the host
        stream = d.w4_ring != 0
        w_ok4 = ~stream | (self.w4_chunks > s.w4seq)
        issue4 = Signal()
        m.d.comb += issue4.eq(run4 & in_ok4 & back_ok4 & host_ok4 & w_ok4)
        m.d.comb += [cnt.c4_busy.eq(issue4), cnt.c4_stall.eq(run4 & ~(in_ok4 & back_ok4)),
                     cnt.lif_stall.eq(run4 & in_ok4 & back_ok4 & ~host_ok4),
                     cnt.c4_w_wait.eq(run4 & in_ok4 & back_ok4 & host_ok4 & ~w_ok4),
                     self.w4_consumed.eq(Mux(stream, s.w4seq, 0))]
        return issue4

    def _advance(self, m, s, e4):
        """An issued step's updates (inside ``m.If(issue)``): output word and line4 block at
        the end of a pixel, the G4 chunk (resident or ring slot) at the end of a group's
        pixels, ring rows and row bases at the end of a row. ``e4``: the nest's ends."""
        d, g = self.desc, self.geo
        T, H, R = d.timesteps, d.height, d.rank
        order, pool, use_res = d.order, d.pool, d.residual
        S = Mux(pool, 2, 1)                            # q23 rows per output row
        stream = d.w4_ring != 0
        grp_end4, seg_end4, row_end4, all_end4 = e4[4], e4[3], e4[2], e4[0]

        def t_times_next(v, unit, i_last):
            """``v = t * unit`` at the end of a row (t: inner loop counter in row order)."""
            return Mux(order, Mux(i_last, v + unit, v), Mux(i_last, 0, v + unit))

        with m.If(grp_end4):      # output word x * GO + go; the next column's line4 block
            x0 = s.xo4 << pool
            blocks = ((x0 + S) >> g.pxl) - (x0 >> g.pxl)          # 0, 1 or 2
            m.d.sync += [s.outidx.eq(Mux(seg_end4, Mux(row_end4, 0, s.go4 + 1), s.outidx + g.go)),
                         s.xoff4.eq(Mux(seg_end4, 0, s.xoff4 + times3(blocks[:2], g.ng)))]
        with m.If(seg_end4):      # the next chunk: resident at go * R, or the next ring slot
            last_slot = s.w4slot == d.w4_ring - 1
            m.d.sync += [s.w4seq.eq(s.w4seq + 1), s.w4slot.eq(Mux(last_slot, 0, s.w4slot + 1)),
                         s.gobase4.eq(Mux(Mux(stream, last_slot, row_end4), 0, s.gobase4 + R))]
        with m.If(row_end4):
            last_o = s.out_slot == d.out_ring_rows - 1
            last_p = s.prev_slot == d.out_ring_rows - 1
            last_r = s.res_slot == d.res_ring_rows - 1
            out_row_words = g.out_row_words
            m.d.sync += [s.m4.eq(s.m4 + 1), self.rows_released.eq(self.rows_released + 1),
                         s.out_slot.eq(Mux(last_o, 0, s.out_slot + 1)),
                         s.out_base.eq(Mux(last_o, 0, s.out_base + out_row_words)),
                         s.prev_slot.eq(Mux(last_p, 0, s.prev_slot + 1)),
                         s.prev_base.eq(Mux(last_p, 0, s.prev_base + out_row_words))]
            i_last4 = e4[1]
            m.d.sync += s.trw4_4.eq(t_times_next(s.trw4_4, g.rw4, i_last4))
            with m.If(Mux(order, i_last4, 1)):          # t advances
                m.d.sync += s.th4.eq(s.th4 + H)
            with m.If(~order & i_last4):          # yo advances (row outer)
                m.d.sync += s.n4b.eq(s.n4b + Mux(pool, T << 1, T))
            with m.If(use_res):
                res_seq = self.res_consumed
                m.d.sync += [res_seq.eq(res_seq + 1), s.res_slot.eq(Mux(last_r, 0, s.res_slot + 1)),
                             s.res_base.eq(Mux(last_r, 0, s.res_base + out_row_words))]
            # yo advances: with the outer counter (row outer) or the inner one
            adv_y = Mux(order, 1, e4[1])
            wrap_y = Mux(order, e4[1], e4[0])
            with m.If(adv_y):
                m.d.sync += s.ym3.eq(Mux(wrap_y, 0, Mux(pool, inc3(inc3(s.ym3)), inc3(s.ym3))))
        with m.If(all_end4):
            m.d.sync += self.run.eq(0)

    def _reads(self, m, s, issue4, grp_end4):
        """The issuing step's reads: its line4 and G4 words, and at the end of a pixel the
        group's affine, residual and u(t-1) words (u(t-1): the ring row ``dist`` rows back).
        Sets ``s.x4``, the step's input column."""
        d, g, cnt = self.desc, self.geo, self.counts
        pool, use_res = d.pool, d.residual
        Px, Pk, pk, ng = g.px, g.pk, g.pack, g.ng
        dy, dx = s.sub4[1], s.sub4[0]
        x4 = Signal(RB)
        m.d.comb += x4.eq(Mux(pool, (s.xo4 << 1) + dx, s.xo4))
        s.x4 = x4
        qm3_4 = Mux(pool & dy, inc3(s.ym3), s.ym3)
        line4_r, w4_rd, aff_rd = self.line4, self.w4, self.affine
        res_rd, state_rd = self.residual, self.membrane_in   # u(t-1): the row ``dist`` rows back
        k4 = s.k4
        m.d.comb += [line4_r.en.eq(issue4 & ((k4 & (Pk - 1)) == 0)),
                     line4_r.addr.eq(times3(qm3_4, g.tr4) + s.trw4_4 + s.xoff4     # line4 slot (q%3)*T + t
                                     + Mux(pool & dx & (Px == 1), ng, 0) + (k4 >> pk)),
                     w4_rd.en.eq(issue4), w4_rd.addr.eq(s.gobase4 + k4),
                     aff_rd.en.eq(issue4 & grp_end4), aff_rd.addr.eq(s.go4),
                     res_rd.en.eq(issue4 & grp_end4 & use_res), res_rd.addr.eq(s.res_base + s.outidx),
                     state_rd.en.eq(issue4 & grp_end4 & (s.t4 != 0)),
                     state_rd.addr.eq(s.prev_base + s.outidx)]
        m.d.comb += [cnt.line4_reads.eq(line4_r.en), cnt.w4_reads.eq(issue4),
                     cnt.affine_reads.eq(issue4 & grp_end4), cnt.residual_reads.eq(res_rd.en),
                     cnt.membrane_reads.eq(state_rd.en)]

    def _stage_c(self, m, b):
        """Stage c and the neuron pipeline after it: the pooled sums of a group through the
        affine (scale of the timestep's class), residual and LIF units (pipelined, see their
        timing); membrane, spike and trace writes :attr:`TAIL_STAGES` cycles after stage c.
        ``b``: the stage-b values (registered here). Returns the valid bits of every stage
        from c to the write."""
        cfg = self.config
        P, wd = cfg.lanes, cfg.widths
        ab, mb, sb = wd.accumulator, wd.membrane, wd.affine_scale
        d, cnt, out_seq = self.desc, self.counts, self.out_rows
        is_htt, use_res, rnd = d.mode == 2, d.residual, d["round"]
        vc, rowendc, segendc = Signal(name="e4c_v"), Signal(name="e4c_rowend"), Signal(name="e4c_segend")
        pc = Signal(P * ab, name="e4c_p")
        argc = Signal(P * 2, name="e4c_arg")      # the pooled neurons' arg-max
        scalec, biasc = Signal(P * sb, name="e4c_scale"), Signal(P * mb, name="e4c_bias")
        resc = Signal(P * mb, name="e4c_res")
        uprevc = Signal(P * mb, name="e4c_uprev")
        outidxc, obasec = Signal(RB, name="e4c_outidx"), Signal(RB, name="e4c_obase")
        actc = Signal(range(P + 1), name="e4c_act")
        # the scale of the timestep's class chosen here, before the register: the class (from
        # the descriptor's mode) and the choice were on the affine product's path (67 generic
        # levels, docs/synthesis.md)
        lane_bits, affb = 2 * sb + mb, b["aff"]
        scale0 = Cat(*[affb[l * lane_bits:l * lane_bits + sb] for l in range(P)])
        scale1 = Cat(*[affb[l * lane_bits + sb:l * lane_bits + 2 * sb] for l in range(P)])
        bias = Cat(*[affb[l * lane_bits + 2 * sb:(l + 1) * lane_bits] for l in range(P)])
        m.d.sync += [vc.eq(b["v"]), rowendc.eq(b["rowend"]), segendc.eq(b["segend"]), pc.eq(b["p"]), argc.eq(b["arg"]),
                     scalec.eq(Mux(is_htt & ~b["full"], scale1, scale0)), biasc.eq(bias),
                     resc.eq(b["res"]), uprevc.eq(b["uprev"]), outidxc.eq(b["outidx"]),
                     obasec.eq(b["obase"]), actc.eq(b["act"])]
        m.submodules.affine = aff = AffineLanes(P, ab, sb, mb)
        m.d.comb += [aff.p.eq(pc), aff.scale.eq(scalec), aff.bias.eq(biasc),
                     aff.residual.eq(resc), aff.shift.eq(d.affine_shift), aff.rnd.eq(rnd),
                     aff.use_residual.eq(use_res)]
        # the LIF takes u(t-1) CUR_OFFSET cycles before the affine's output (in stage c
        # itself: both take four cycles)
        m.submodules.lif = lif = LIFLanes(P, mb, wd.leak_mul)
        uprev_lif = delay(m, uprevc, AffineLanes.LATENCY - LIFLanes.CUR_OFFSET, "e4u_uprev")
        m.d.comb += [lif.cur.eq(aff.o), lif.u_prev.eq(uprev_lif), lif.threshold.eq(d.threshold),
                     lif.leak_mul.eq(d.leak_mul), lif.leak_shift.eq(d.leak_shift),
                     lif.rnd.eq(rnd), lif.window_lo.eq(d.window_lo[:mb + 1]),
                     lif.window_hi.eq(d.window_hi[:mb + 1])]
        # the write stage: lif.u and lif.s of the neuron that was in stage c TAIL_STAGES ago
        n = self.TAIL_STAGES
        valids = [vc]
        for k in range(1, n + 1):
            valids.append(delay(m, valids[-1], 1, f"e4w{k}_v"))
        vw = valids[-1]
        roww, outidxw = delay(m, rowendc, n, "e4w_rowend"), delay(m, outidxc, n, "e4w_outidx")
        segw = delay(m, segendc, n, "e4w_segend")
        obasew, actw = delay(m, obasec, n, "e4w_obase"), delay(m, actc, n, "e4w_act")
        argw = delay(m, argc, n, "e4w_arg")
        mask = Signal(P)
        m.d.comb += mask.eq(Cat(*[actw > l for l in range(P)]))
        spikes_masked = Signal(P)
        m.d.comb += spikes_masked.eq(lif.s & mask)
        # the trace word: per lane spike, window bit, arg-max (lanes past Cout 0)
        trace_word = Cat(*[Cat(spikes_masked[l], lif.m[l] & mask[l], Mux(mask[l], argw[2 * l:2 * l + 2], 0))
                           for l in range(P)])
        mem_w, spk_w, trc_w = self.membrane_out, self.spikes, self.trace
        m.d.comb += [mem_w.en.eq(vw), mem_w.addr.eq(obasew + outidxw), mem_w.data.eq(lif.u),
                     spk_w.en.eq(vw), spk_w.addr.eq(obasew + outidxw), spk_w.data.eq(spikes_masked),
                     trc_w.en.eq(vw), trc_w.addr.eq(obasew + outidxw), trc_w.data.eq(trace_word)]
        # a group's last word written: the row's groups complete (the row's last: the row)
        with m.If(vw & roww):
            m.d.sync += [out_seq.eq(out_seq + 1), self.out_groups.eq(0)]
        with m.Elif(vw & segw):
            m.d.sync += self.out_groups.eq(self.out_groups + 1)
        m.d.comb += [cnt.membrane_writes.eq(vw), cnt.spikes_writes.eq(vw), cnt.trace_writes.eq(vw),
                     cnt.lif_busy.eq(vw),
                     cnt.lif_updates.eq(Mux(vw, actw, 0)),
                     cnt.spikes_out.eq(Mux(vw, sum(spikes_masked[l] for l in range(P)), 0))]
        return valids

