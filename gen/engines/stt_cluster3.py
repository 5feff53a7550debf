"""STT's cluster-3 engine: G3 (1x3) on the q2 rows cluster 2 wrote into ``row2``, into the q23
rows of ``line4``. It borrows cluster 3's PEs, the ``w3`` read port, the shift3 requantiser and
the ``line4`` write port of the clusters-2/3 engine (which runs them itself for PTT and HTT)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig, log2
from ..descriptor import DESCRIPTOR_LAYOUT
from ..hostmap import STREAM_BITS
from ..tilegeo import geometry_layout
from .common import ROW_BITS, counts_layout, read_port, times3, write_port
from .macloop import STEP_LAYOUT, MacRowLoop, spad_bits

__all__ = ["SttClusterThreeEngine", "cluster_controls_layout", "line4_free", "tap_shift"]

RB = ROW_BITS


def cluster_controls_layout(config: HardwareConfig) -> data.StructLayout:
    """Every input of a :class:`gen.units.MacCluster` but ``pack``: what an engine drives into
    the cluster it borrows (widths as the cluster takes them)."""
    P, wd = config.lanes, config.widths
    lp = max(log2(P), 1)
    w_bits, p_bits = spad_bits(config)
    return data.StructLayout({
        "valid": 1, "first": 1, "from_psum": 1, "jl": lp, "shift": 2,
        "centre": P * wd.activation, "neighbour": P * wd.activation, "wsel": lp,
        "weights": P * wd.weight, "use_spad": 1,
        "w_rd": 1, "w_addr": w_bits, "w_wr": 1, "w_wr_addr": w_bits,
        "p_rd": 1, "p_addr": p_bits, "p_wr": 1, "p_wr_addr": p_bits,
    })


def line4_free(step, desc, e4_released):
    """``line4`` slot of q23 row (``step.q``, ``step.t``) free: row (q - 3, t) consumed by
    cluster 4, i.e. E4 has issued output row ((q - 3) >> pool, t) (its index in the row order:
    row outer ((q-3) >> pool) * T + t, timestep outer t * Ho + ((q-3) >> pool))."""
    q, pool = step["q"], desc.pool
    need = Mux(desc.order, step["tho"] + ((q - 3) >> pool), step["l4b"] + step["t"]) + 1
    return (q < 3) | (e4_released >= need)


def tap_shift(ti):
    """The cluster's ``shift`` for tap index ``ti`` (tap 0: column -1, tap 2: column +1)."""
    return Mux(ti == 0, 0, Mux(ti == 1, 1, 2))


class SttClusterThreeEngine(wiring.Component):
    """STT's cluster 3 and its loop nest (:class:`gen.engines.macloop.MacRowLoop`,
    ``stt_cluster3``): per q23 row (``q``, ``t``), for each output rank group of ``Pk``
    channels, each group of up to ``B`` column blocks, each chunk of up to ``C`` reduction
    steps, each block of the group, each step of the chunk: one MAC step per cycle, reading the
    q2 row (the ``row2`` half of the row's parity) and writing the row's q23 words into its
    ``line4`` slot. Runs only for STT (its ``start`` leaves it idle otherwise, every output 0).

    Ports:

    * ``start`` (in): reset the loop and progress registers and run a tile (STT).
    * ``desc``, ``geo`` (in): :data:`gen.descriptor.DESCRIPTOR_LAYOUT`,
      :func:`gen.tilegeo.geometry_layout`.
    * ``q2_rows`` (in): q2 rows cluster 2 has written into ``row2``; ``q2_groups`` (in): the
      rank groups of the next q2 row (row ``q2_rows``) written so far (the pipelined chain
      reads a step's input block ``jb`` once group ``jb`` is written; the sequential chain,
      ``arrangement.stt_chain``, waits for whole rows); ``e4_released`` (in):
      output rows cluster 4 has issued (their q23 rows' ``line4`` slots are free).
    * ``row2_b`` (centre block), ``row2_c`` (neighbouring block), ``w3``: read ports (data
      one cycle after ``en``); ``line4``: write port (data: ``result``), at stage c.
    * ``cluster`` (out, :func:`cluster_controls_layout`): cluster 3's controls, operands and
      weights (a :class:`gen.units.MacCluster` built with ``pipelined=True``); ``result``
      (in): cluster 3's accumulators of stage b re-quantised by ``shift3`` a cycle later
      (stage c: the clusters-2/3 engine registers ``acc``, then re-quantises).
    * ``released`` (out): q2 rows read to the end (their ``row2`` half is free);
      ``q23_rows`` (out): q23 rows written into ``line4``.
    * ``w3_chunks`` (in): the host's G3 chunks in the ``w3`` ring (streamed G2/G3); its group
      waits for its chunk (``c3_w_wait``); ``w3_consumed`` (out): the chunks finished with.
    * ``run`` (out): rows left to issue; ``busy`` (out): ``run`` or a step in the pipeline.
    * ``counts`` (out): this cycle's increments of the counters named by its fields.

    Timing: issue (``row2``/``w3`` addresses, scratchpad reads) -> a (operands arrive, into
    the pipelined cluster) -> b, :data:`gen.engines.macloop.MAC_LATENCY` cycles later (the
    sums on ``acc``: partial sums into the scratchpads) -> c (``result`` written to
    ``line4``; ``q23_rows`` counts the row from the cycle after its last write). A row
    issues when its q2 row is written (``q2_rows``; the pipelined chain: its first rank group,
    then each step once the group of its input block is, seen ``MAC_ROW_VISIBLE`` cycles after
    cluster 2's last issue of that group) and its ``line4`` slot is free.
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        P, wd = config.lanes, config.widths
        lp = log2(P)
        q_word = P * wd.activation
        super().__init__({
            "start": In(1), "desc": In(DESCRIPTOR_LAYOUT), "geo": In(geometry_layout(config)),
            "q2_rows": In(RB), "q2_groups": In(RB), "e4_released": In(RB),
            "row2_b": Out(read_port(q_word)), "row2_c": Out(read_port(q_word)),
            "w3": Out(read_port(P * wd.weight)), "line4": Out(write_port(q_word)),
            "cluster": Out(cluster_controls_layout(config)), "result": In(q_word),
            "released": Out(RB), "q23_rows": Out(RB), "run": Out(1), "busy": Out(1),
            "w3_chunks": In(STREAM_BITS), "w3_consumed": Out(STREAM_BITS),
            "counts": Out(counts_layout({
                "c3_busy": 1, "c3_stall": 1, "c3_w_wait": 1, "row2_reads": 2, "w3_reads": 1, "c3_macs": 2 * lp + 2,
                "c3_spad_reads": 2, "c3_spad_writes": 2, "line4_writes": 1})),
        })

    def elaborate(self, platform):
        m = Module()
        d, g, cnt, pe = self.desc, self.geo, self.counts, self.cluster
        pxl, ng, nb, rw1, Pk, Px = g.pxl, g.ng, g.nb, g.rw1, g.pk, g.px
        m.submodules.loop = loop = MacRowLoop(self.config, "stt_cluster3")
        m.d.comb += [loop.desc.eq(d), loop.geo.eq(g), loop.start.eq(self.start)]
        E, A, B = loop.step, loop.a, loop.b
        done, rel = self.q23_rows, self.released

        # the q2 row written; or (pipelined chain) cluster 2 still on it but done with the
        # rank group this step reads (input block jb): a row starts on cluster 2's first group
        # and its first output group waits at each later block for cluster 2's next group
        q2_ok = self.q2_rows >= E.seq + 1
        if self.config.arrangement.stt_chain == "pipelined":
            q2_ok = q2_ok | ((self.q2_rows == E.seq) & (self.q2_groups > E.jb))
        ok = q2_ok & line4_free(E, d, self.e4_released)
        # streamed G3 (desc.w23_ring): a group waits for its chunk after the row's conditions
        stream = d.w23_ring != 0
        w_ok = ~stream | (self.w3_chunks > E.chunk)
        m.d.comb += [loop.ok.eq(ok & w_ok), self.run.eq(loop.run), self.w3_consumed.eq(E.chunk)]
        m.d.comb += [cnt.c3_busy.eq(loop.issue), cnt.c3_stall.eq(loop.run & ~ok),
                     cnt.c3_w_wait.eq(loop.run & ok & ~w_ok)]
        with m.If(loop.issue & E.row_end):
            m.d.sync += rel.eq(rel + 1)

        # issue: row2 (the q2 row's half), w3, the scratchpad reads
        base = Mux(E.seq[0], rw1, 0)
        nboff = Mux(E.tap == 0, E.eoff - ng, E.eoff + ng)    # the neighbouring block's offset
        row2_b, row2_c, w3 = self.row2_b, self.row2_c, self.w3
        m.d.comb += [row2_b.en.eq(loop.issue & E.new_centre), row2_b.addr.eq(base + E.eoff + E.jb),
                     row2_c.en.eq(loop.issue & (E.ti != 0) & E.new_op),
                     row2_c.addr.eq(base + nboff + E.jb),
                     w3.en.eq(loop.issue & E.glb_rd), w3.addr.eq(E.gbase + (E.sl >> pxl))]
        m.d.comb += [cnt.row2_reads.eq(row2_b.en + row2_c.en), cnt.w3_reads.eq(w3.en)]
        m.d.comb += [pe.w_rd.eq(loop.issue & E.spad_rd), pe.w_addr.eq(E.s),
                     pe.p_rd.eq(loop.issue & E.from_psum), pe.p_addr.eq(E.b)]

        # stage a: operands and weights arrive, the PEs update
        m.d.comb += [pe.valid.eq(A.v), pe.first.eq(A.first), pe.from_psum.eq(A.from_psum),
                     pe.jl.eq(A.jl), pe.shift.eq(tap_shift(A.ti)), pe.centre.eq(row2_b.data),
                     pe.neighbour.eq(Mux(A.nb_zero, 0, row2_c.data)), pe.wsel.eq(A.wsel),
                     pe.weights.eq(w3.data), pe.use_spad.eq(A.use_spad),
                     pe.w_wr.eq(A.v & A.w_wr), pe.w_wr_addr.eq(A.s)]
        lanes = Mux(A.g == ng - 1, g.last_lanes, Pk)
        cols = Mux(A.e == nb, g.last_cols, Px)
        m.d.comb += cnt.c3_macs.eq(Mux(A.v, lanes * cols, 0))

        # stage b: partial sums into the scratchpads, the row's q23 words into line4
        m.d.comb += [pe.p_wr.eq(B.v & B.psum_out), pe.p_wr_addr.eq(B.b)]
        m.d.comb += [cnt.c3_spad_reads.eq(pe.w_rd + pe.p_rd), cnt.c3_spad_writes.eq(pe.w_wr + pe.p_wr)]
        # stage c, a cycle after b: the row's q23 words into line4 (the clusters-2/3 engine
        # registers cluster 3's sums at b and re-quantises them into ``result`` at c)
        line4 = self.line4
        en_c, row_end_c = Signal(name="line4_en_c"), Signal(name="row_end_c")
        addr_c = Signal.like(line4.addr, name="line4_addr_c")
        m.d.sync += [en_c.eq(B.v & B.final), row_end_c.eq(B.v & B.row_end),
                     addr_c.eq(times3(B.qm3, g.tr4) + B.tr4 + B.eoff - ng + B.g)]
        m.d.comb += [line4.en.eq(en_c), line4.addr.eq(addr_c),
                     line4.data.eq(self.result), cnt.line4_writes.eq(line4.en)]
        with m.If(row_end_c):
            m.d.sync += done.eq(done + 1)
        m.d.comb += self.busy.eq(loop.run | loop.inflight | en_c)

        # ---- start: a new tile (last, so that it wins over the updates above) ---------------
        with m.If(self.start):
            m.d.sync += [done.eq(0), rel.eq(0)]
        return m
