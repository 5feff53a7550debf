"""The core-stage engine: every TT-core stage of a backward tile on one MAC PE array.

Mat-vec stages (the recomputed forward cores G1, G2, G3 and the transposed cores G4^T,
G3^T/G2^T, G1^T) run on a :class:`gen.units.MacPEArray` of ``P`` PEs, one output channel each,
with the input broadcast one element per cycle, as cluster 4 runs G4; the driver lays the
weights out per stage (transposed, taps flipped), so one array serves all of them. Outer
product stages (the weight gradients) multiply a held gradient word by the broadcast
activation and add the products into a :class:`WeightGradientAccumulator`. A stage with at
most ``P/2`` lane channels may run two pixels per pass (``pack``): the array's upper half
computes pixel ``x + 1`` (:class:`CoreStageEngine`). A stage with ``O < P`` lane
channels may straddle pixels (``straddle``): a block row's (pixel, channel) pairs in passes of
``P``, down to ``P/3`` channels (a pass touching up to four pixels, an outer product's
accumulator lane adding up to three pixels' products).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arith import lane, rshift, saturate, wrap
from ..config import HardwareConfig, log2
from ..engines.common import counts_layout, delay, loops
from ..units import MacPEArray
from .dither_hash import DitherHash
from .grad_requantiser import GradientRequantiser
from .stepped_address import registered, registered_product, stepped_address
from .stage_layout import STAGE_ADDR_BITS, STAGE_LAYOUT, Requant, StageKind, Taps
from .wgrad_accumulator import WeightGradientAccumulator

__all__ = ["CoreStageEngine", "stage_read_port", "stage_write_port"]

AB = STAGE_ADDR_BITS


def stage_read_port(width: int) -> wiring.Signature:
    """A read port of the gradient buffer as the engine sees it (data one cycle after en)."""
    return wiring.Signature({"en": Out(1), "addr": Out(AB), "data": In(width)})


def stage_write_port(width: int, lanes: int = 1) -> wiring.Signature:
    """A write port of the gradient buffer as the engine sees it (written at the end of the
    cycle): ``en`` one bit per lane of ``width // lanes`` bits."""
    return wiring.Signature({"en": Out(lanes), "addr": Out(AB), "data": Out(width)})


class CoreStageEngine(wiring.Component):
    """One core stage (:data:`gen.backward.stage_layout.STAGE_LAYOUT`) per ``start``.

    Loop nest, one step per cycle: timestep ``t``, row ``y``, column ``x`` of the block, output
    group ``go`` of ``P`` channels, tap, input channel ``i``. Mat-vec: PE ``l`` accumulates
    ``w[tap, i, go*P + l] * in[t, y + dy, x + dx, i]`` over the taps and ``i``; after the last
    the sums are re-quantised (:class:`gen.backward.stage_layout.Requant`) and written as one
    word of the output tensor (``out_rows x out_cols`` pixels from ``out_base``, which may be
    larger than the block: a stage skips the tile's ring pixels outside the layer). Outer: accumulator entry ``(tap, go, i)`` lane ``l`` adds
    ``g[t, y + gy, x + gx, go*P + l] * in[t, y + dy, x + dx, i]``.

    Ports: ``start`` (in: reset the loops and run the stage in ``stage``, held until ``busy``
    falls); ``inp``, ``weights``, ``grad`` (read ports: input tensor, weight words, gradient
    tensor); ``out`` (write port, mat-vec); ``acc_rd_en``/``acc_rd_addr``/``acc_rd_data``
    (the host reads the weight-gradient sums while idle); ``busy``; ``counts``.

    Timing: issue (addresses, stepped by additions) -> a (data; outer: each lane's operands
    chosen) -> o (outer: the operands registered, their products into the accumulator) -> m
    (mat-vec: the operand lanes and weight word registered, into the PE array's pipelined MAC;
    :attr:`ARRAY_EXTRA` cycles more) -> b
    (the sums wrapped, ROWS_COLS' branches added: the lower halves) -> h (the upper halves)
    -> c (round) -> d (saturate, write,
    saturations counted). The
    descriptor's strides are registered products of its fields, one multiply per register:
    ``stage`` must hold its value from :data:`gen.backward.stepped_address.STAGE_LATENCY`
    cycles before ``start`` on. With ``gradients.rounding = "stochastic"`` a
    :class:`DitherHash` hashes each written element's layer index (the stage's ``idx_*``
    fields) with ``key`` in stage h for the :class:`GradientRequantiser` in stage c. The input word is read once per ``P`` channels
    (``in_spikes``: once per ``S`` channels, the spike a bit of it), the gradient word
    once per ``(pixel, go)``; the weight word every mat-vec step.

    Two pixels per pass (``pack``, stages with at most ``P/2`` outputs or gradient channels):
    the x loop steps over pixel pairs and an innermost level ``f`` gives each input word two
    steps, the first reading pixel ``x``'s word (no MAC, no product), the second pixel
    ``x + 1``'s (and, at a pixel pair's first step, the gradient words alike). The array is two
    :class:`gen.units.MacPEArray` halves; the upper one takes pixel ``x + 1``'s operand (its
    weights repeat the lower half's, laid out by the driver) and the upper outer-product lanes
    multiply pixel ``x + 1``'s gradient lanes by its activation. A mat-vec pair's result is
    written as two words: pixel ``x``'s (the lower half) in stage d, pixel ``x + 1``'s (the
    upper half moved down) in stage e, one cycle later.
    """

    #: cycles the mat-vec's sums take beyond stage m: the PE array is pipelined
    #: (:class:`gen.units.MacPEArray` with ``pipelined``, latency 3), so stage b comes
    #: ``1 + ARRAY_EXTRA`` cycles after stage m (the cycle model's ``DRAIN[MATVEC]``)
    ARRAY_EXTRA = 2

    def __init__(self, config: HardwareConfig, acc_entries: int):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config, self.acc_entries = config, acc_entries
        P, wd, gr = config.lanes, config.widths, config.gradients
        lanes_bits = log2(P) + 1
        super().__init__({
            "start": In(1), "stage": In(STAGE_LAYOUT),
            "inp": Out(stage_read_port(P * gr.width)), "weights": Out(stage_read_port(P * wd.weight)),
            "grad": Out(stage_read_port(P * gr.width)), "out": Out(stage_write_port(P * gr.width, P)),
            "acc_rd_en": In(1), "acc_rd_addr": In(AB), "acc_rd_data": Out(P * gr.wgrad_tile),
            "busy": Out(1),
            "counts": Out(counts_layout({"stage_busy": 1, "stage_macs": lanes_bits, "wgrad_updates": lanes_bits,
                                         "in_reads": 1, "grad_reads": 1, "weight_reads": 1, "grad_writes": 1,
                                         "wgrad_words": 1, "grad_saturations": lanes_bits})),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        st = self.stage
        run = Signal()
        t, y, x, go, tap, i = (Signal(16, name=n) for n in ("t", "y", "x", "go", "tap", "i"))
        # a wide stage (``O > P`` with ``straddle`` or ``pack``): per block row phase 0 runs the
        # full groups of every pixel unstraddled, phase 1 the last group's R channels straddled
        # or packed, as a stage of R channels whose output group is the last
        ph = Signal(1, name="phase")
        f = Signal(2, name="f")           # packed, straddled stages: which pixel's input word a step reads
        GO = Signal(16)
        m.d.comb += GO.eq((st.out_channels + P - 1) >> lp)
        kinds = (st.kind == StageKind.MATVEC) | (st.kind == StageKind.OUTER)
        wide = registered(m, (st.straddle | st.pack) & (GO > 1) & kinds, 1, "wide")
        # the lane channels the straddle and pack logic sees: the last group's R in a wide stage
        o_lane = registered(m, Mux(GO > 1, st.out_channels - ((GO - 1) << lp), st.out_channels), 16, "o_lane")
        self._o = o_lane
        # timestep t's schedule bit, registered as t steps (a bit select by t was in front of
        # every address and step flag: the gradient buffer's addresses were 57 generic levels,
        # docs/synthesis.md); ``reduced_at`` the value for a timestep index
        reduced_at = lambda v: st.use_schedule & ~st.schedule.bit_select(v[:5], 1)   # noqa: E731
        reduced = Signal(name="reduced_t")
        # HTT's reduced timesteps: a mat-vec stage copies the centre input word to the output
        # word of the same channels (one step per output group), re-quantised by alt_shift; an
        # outer-product stage skips them: one step, or, while its sums have not started
        # (``acc_clear``), one pixel writing zero sums (a stage whose timesteps are all reduced
        # must leave zero sums, not an earlier tile's)
        copy = reduced & (st.kind == StageKind.MATVEC)
        skip_t = reduced & (st.kind == StageKind.OUTER)
        summed, zeroed = Signal(), Signal()
        summed_last = Signal(name="summed_last")     # a wide stage: its last group's sums started
        idle_t = skip_t & (~st.acc_clear | summed | zeroed)
        ntaps = Mux(copy | idle_t, 1, Mux(st.taps == Taps.POINT, 1, Mux(st.taps == Taps.ROWS_COLS, 6, 3)))
        issue = Signal()
        # a straddled timestep followed by a reduced one: no issue for a cycle per pixel of its
        # last pass after the first, so that the copy's first writes follow that pass's
        gap = Signal(2, name="gap")
        m.d.comb += issue.eq(run & (gap == 0))
        S, ls = cfg.gbuf_spikes_per_word, log2(cfg.gbuf_spikes_per_word)
        first_word = Mux(st.in_spikes, (i & (S - 1)) == 0, (i & (P - 1)) == 0)
        # two pixels per pass (``pack``): a step that needs a new input word reads pixel x's in
        # an extra step (``fetch``, no MAC, product or copy) before the one that reads pixel
        # x + 1's; HTT's copy too, not an outer product's skipped timestep
        # (a wide stage: its phase 1; its reduced timesteps run one phase, unpacked)
        rem_phase = wide & ph
        packed = Signal(name="packed_t")
        m.d.comb += packed.eq(st.pack & kinds & (~wide | rem_phase))
        # a straddled stage's computed timesteps (HTT's reduced ones copy one pixel per step)
        strad = Signal(name="straddled_t")
        m.d.comb += strad.eq(self._straddle_pass(m) & ~reduced & (~wide | rem_phase))
        sp = self._pass
        fetch = (packed & first_word & ~skip_t & (f == 0)) | (strad & first_word & (f != sp["pixels"] - 1))
        ends = loops(m, [(t, st.timesteps), (y, Mux(skip_t, 1, st.rows)), (ph, Mux(wide & ~reduced, 2, 1)),
                         (x, Mux(skip_t, 1, Mux(strad, sp["passes"], Mux(packed, st.cols >> 1, st.cols)))),
                         (go, Mux(idle_t, 1, Mux(wide & ~reduced, Mux(ph, 1, GO - 1), GO))), (tap, ntaps),
                         (i, Mux(copy | idle_t, 1, st.in_channels)),
                         (f, Mux(packed & first_word & ~skip_t, 2, Mux(strad & first_word, sp["pixels"], 1)))],
                     issue)
        self._step_pass(m, issue, ends, strad)
        next_reduced = reduced_at(t + 1)
        with m.If(issue & ends[1]):
            m.d.sync += reduced.eq(Mux(ends[0], reduced_at(Const(0, 5)), next_reduced))
        with m.If(self.start):
            m.d.sync += gap.eq(0)
        # (a wide stage's packed remainder likewise: its last pair's second word, one cycle)
        with m.Elif(issue & ends[1] & ~ends[0] & (strad | (packed & wide)) & next_reduced
                    & (st.kind == StageKind.MATVEC)):
            m.d.sync += gap.eq(Mux(strad, sp["pixels"] - 1, 1))
        with m.Elif(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        with m.If(issue & ends[0]):
            m.d.sync += run.eq(0)
        # the first pixel an outer-product stage does not skip starts its sums (HTT: timestep 0
        # may be a reduced one, whose updates are skipped)
        with m.If(issue & ends[4] & ~skip_t):
            m.d.sync += summed.eq(1)
        # (a wide stage's phase 0 covers the full groups' entries only: its last group's start
        # with the first item of phase 1, so that one clears them too)
        with m.If(issue & ends[4] & ~skip_t & ph):
            m.d.sync += summed_last.eq(1)
        with m.If(issue & ends[4] & skip_t & ~idle_t):
            m.d.sync += zeroed.eq(1)
        with m.If(self.start):
            m.d.sync += [run.eq(1), summed.eq(0), summed_last.eq(0), zeroed.eq(0), reduced.eq(reduced_at(Const(0, 5)))]
            m.d.sync += [s.eq(0) for s in (t, y, ph, x, go, tap, i, f)]
        addr = self._addresses(m, dict(tap=tap, i=i, f=f, go=go, GO=GO, reduced=reduced, copy=copy, packed=packed,
                                       strad=strad, rem=rem_phase), ends, issue)
        outer = st.kind == StageKind.OUTER
        step = dict(first_word=first_word, fetch=fetch, slot=f,
                    first_step=(tap == 0) & (i == 0),
                    branch=(st.taps == Taps.ROWS_COLS) & (tap == 3) & (i == 0) & ~reduced,
                    last=ends[5], skip=outer & reduced, reduced=reduced, copy=copy,
                    active=Mux(strad, sp["n"], Mux(packed, o_lane << 1,
                               Mux(st.out_channels - (go << lp) >= P, P, st.out_channels - (go << lp)))),
                    s=sp["s"], strad=strad, packed=packed,
                    clear=st.acc_clear & ~Mux(rem_phase, summed_last, summed), sel=Mux(st.in_spikes, i[:ls], i[:lp] if lp else 0))
        # a skipped pixel before the sums have started writes zeros (a stage whose timesteps
        # are all skipped leaves zero sums, not an earlier tile's)
        step["zero"] = step["skip"] & step["clear"]
        m.d.comb += [self.inp.en.eq(issue & step["first_word"] & ~step["skip"]), self.inp.addr.eq(addr["in"]),
                     self.weights.en.eq(issue & ~outer & ~copy & ~fetch), self.weights.addr.eq(addr["w"]),
                     self.grad.en.eq(issue & outer & step["first_step"] & ~step["skip"]),
                     self.grad.addr.eq(addr["g"])]
        cnt = self.counts
        m.d.comb += [cnt.stage_busy.eq(issue), cnt.weight_reads.eq(self.weights.en),
                     cnt.in_reads.eq(self.inp.en), cnt.grad_reads.eq(self.grad.en)]
        busy_a = self._stage_a(m, issue, step, addr)
        m.d.comb += self.busy.eq(run | busy_a)
        return m

    def _straddle_pass(self, m):
        """A straddled stage's pass registers (``straddle``): the pass's first pixel ``p0`` of
        the block row (and its input words' offset ``p0 * ceil(I / P)``), first channel ``s``
        and the pairs left in the row from it, ``rem``; from them the pass's pairs ``n`` and
        the pixels it touches (1-3 where ``O >= P/2``, 1-4 where ``3 O >= P``,
        :data:`gen.backward.cyclemodel.STRADDLE_SLOTS`), and the passes per row. Returns whether the
        stage straddles; the registers in ``self._pass`` (stepped by :meth:`_step_pass`)."""
        st, P, lp = self.stage, self.config.lanes, log2(self.config.lanes)
        strad = Signal(name="straddled")
        m.d.comb += strad.eq(st.straddle & ((st.kind == StageKind.MATVEC) | (st.kind == StageKind.OUTER)))
        row_pairs = registered_product(m, [st.cols, self._o], 16, "row_pairs")
        sp = {"s": Signal(range(P), name="pass_s"), "p0": Signal(16, name="pass_p0"),
              "p0_in": Signal(AB, name="pass_p0_in"), "rem": Signal(16, name="pass_rem"),
              "p0_out": Signal(AB, name="pass_p0_out"),
              "n": Signal(range(P + 1), name="pass_n"), "pixels": Signal(3, name="pass_pixels"),
              "passes": Signal(16, name="passes"), "row_pairs": row_pairs}
        O = self._o
        # 3 O for the passes of O < P/2 lane channels (a mat-vec stage), which touch up to four pixels
        self._o3 = O3 = registered(m, (O << 1) + O, 18, "o_lane3")
        last = sp["s"] + sp["n"] - 1                    # the pass's last channel, counted from p0's
        m.d.comb += [sp["n"].eq(Mux(sp["rem"] >= P, P, sp["rem"])),
                     sp["pixels"].eq(1 + (last >= O) + (last >= (O << 1)) + (last >= O3)),
                     sp["passes"].eq((row_pairs + P - 1) >> lp)]
        self._pass = sp
        return strad

    def _step_pass(self, m, issue, ends, strad):
        """The pass registers stepped by additions: at a pass's last step ``s + P`` less ``O``
        once, twice or three times (``3 O >= P``: ``s + P < 4 O``), ``p0`` up by as many
        pixels (``p0_in``,
        ``p0_out``: by as many pixels' input and output words); at a row's (or a wide stage's
        phase's) last step and at ``start`` back to the row's first pair. (``O``: a wide
        stage's last group's channels.)"""
        st, P, sp = self.stage, self.config.lanes, self._pass
        O = self._o
        gi = Signal(AB, name="pass_gi")                 # input words per pixel
        go = Signal(AB, name="pass_go")                 # output (gradient) words per pixel
        S, ls, lp = self.config.gbuf_spikes_per_word, log2(self.config.gbuf_spikes_per_word), log2(P)
        m.d.sync += [gi.eq(Mux(st.in_spikes, (st.in_channels + S - 1) >> ls, (st.in_channels + P - 1) >> lp)),
                     go.eq((st.out_channels + P - 1) >> lp)]
        sp["go"] = go
        gi3, go3 = registered(m, (gi << 1) + gi, AB, "pass_gi3"), registered(m, (go << 1) + go, AB, "pass_go3")
        q = sp["s"] + P
        two, three = q >= (O << 1), q >= self._o3
        restart = [sp["s"].eq(0), sp["p0"].eq(0), sp["p0_in"].eq(0), sp["p0_out"].eq(0),
                   sp["rem"].eq(sp["row_pairs"])]
        with m.If(self.start | (issue & ends[3])):
            m.d.sync += restart
        with m.Elif(issue & ends[4] & strad):
            m.d.sync += [sp["s"].eq(Mux(three, q - self._o3, Mux(two, q - (O << 1), q - O))),
                         sp["p0"].eq(sp["p0"] + 1 + two + three),
                         sp["p0_in"].eq(sp["p0_in"] + Mux(three, gi3, Mux(two, gi << 1, gi))),
                         sp["p0_out"].eq(sp["p0_out"] + Mux(three, go3, Mux(two, go << 1, go))),
                         sp["rem"].eq(sp["rem"] - P)]

    def _addresses(self, m, c, ends, issue):
        """Word addresses of this step's input, weight, gradient and output words, its
        accumulator entry and (stochastic rounding) its layer index: stepped by additions
        (:func:`gen.backward.stepped_address.stepped_address`) over the loop nest
        ``t, y, ph, x, go, tap, i, f``, the strides (products of descriptor fields) registered; the
        input's tap offset added from registered multiples of its row and column strides, and a
        packed stage's second pixel (``f``) one pixel's words on."""
        st, P, lp = self.stage, self.config.lanes, log2(self.config.lanes)
        S, ls = self.config.gbuf_spikes_per_word, log2(self.config.gbuf_spikes_per_word)
        GI = Mux(st.in_spikes, (st.in_channels + S - 1) >> ls, (st.in_channels + P - 1) >> lp)
        GO, I = c["GO"], st.in_channels
        R = lambda v, n: registered(m, v, AB, f"stride_{n}")
        RP = lambda fs, n: registered_product(m, fs, AB, f"stride_{n}")
        gi, go_ = R(GI, "gi"), R(GO, "go")
        packed, strad, sp = c["packed"], c["strad"], self._pass
        # (straddled: the x level steps over passes, the pixel from the pass registers)
        # (a wide stage packs only its phase 1: the strides of both registered, chosen per step)
        gi_x = Mux(strad, 0, Mux(packed, R(GI << 1, "gi_x"), gi))
        go2 = R(GO << 1, "go_x")
        go3 = R((GO << 1) + GO, "go_3")
        go_x = Mux(strad, 0, Mux(packed, go2, go_))
        # a wide stage's phase 1: its output group, weight word and accumulator entries the last
        rem = c["rem"]
        go_last = R(GO - 1, "go_last")
        entry_last = RP([GO - 1, I], "entry_last")
        in_y = RP([st.in_cols, GI], "in_y")
        in_t = RP([st.in_rows, st.in_cols, GI], "in_t")
        # the tap offsets dy, dx in 0..3: their multiples of the row and column strides
        in_y_by = [0, in_y, R(in_y << 1, "in_y2"), R((in_y << 1) + in_y, "in_y3")]
        gi_by = [0, gi, R(GI << 1, "gi2"), R((GI << 1) + GI, "gi3")]
        tap_i = RP([I, GO], "tap_i")
        g_y = RP([st.g_cols, GO], "g_y")
        g_t = RP([st.g_rows, st.g_cols, GO], "g_t")
        g_off = R(st.g_base + RP([st.gy, st.g_cols, GO], "g_off_y") + RP([st.gx, GO], "g_off_x"), "g_off")
        # the output tensor's strides (a block may be smaller: the ring pixels outside the layer)
        out_y = RP([st.out_cols, GO], "out_y")
        out_t = RP([st.out_rows, st.out_cols, GO], "out_t")
        # the input's tap offset dy * in_y + dx * gi of every tap value (and of a reduced
        # timestep's centre, dy = dx = 1), each registered from the stage's fields: the step
        # chooses one by its tap (the taps' compares, the choice of dy and dx and their
        # multiples were in front of the address's adds, 57 generic levels, docs/synthesis.md)

        def tap_offset(dy, dx):
            return (Mux(dy[1], Mux(dy[0], in_y_by[3], in_y_by[2]), Mux(dy[0], in_y_by[1], 0))
                    + Mux(dx[1], Mux(dx[0], gi_by[3], gi_by[2]), Mux(dx[0], gi_by[1], 0)))
        tap_offsets = []
        for k in range(6):
            is_rows = (st.taps == Taps.ROWS) | ((st.taps == Taps.ROWS_COLS) & (k < 3))
            is_cols = (st.taps == Taps.COLS) | ((st.taps == Taps.ROWS_COLS) & (k >= 3))
            dy = Mux(is_rows, k & 3, st.fy)[:2]
            dx = Mux(is_cols, (k - 3 if k >= 3 else k) & 3, st.fx)[:2]
            tap_offsets.append(R(tap_offset(dy, dx), f"tap_offset{k}"))
        centre_offset = R(in_y + gi, "tap_offset_reduced")
        tap_off = Mux(c["reduced"], centre_offset, Array(tap_offsets + [Const(0, AB)] * 2)[c["tap"][:3]])
        start = self.start
        # loop levels: t, y, ph (a wide stage's phase), x, go, tap, i, f
        pix_in = stepped_address(m, ends, issue, start, st.in_base, [in_t, in_y, None, gi_x, None, None, None, None],
                                 AB, "pix_in")
        out = {}
        for name in ("in", "w", "g", "out", "entry"):
            out[name] = Signal(AB, name=f"addr_{name}")
        out["out_pixel"] = go_                 # a packed stage's second output word: one pixel on
        m.d.comb += [
            out["in"].eq(pix_in + tap_off
                         + Mux(c["copy"], c["go"], Mux(st.in_spikes, c["i"] >> ls, c["i"] >> lp))
                         + Mux(c["f"][1], Mux(c["f"][0], gi_by[3], gi_by[2]), Mux(c["f"][0], gi, 0))
                         + Mux(strad, sp["p0_in"], 0)),
            out["w"].eq(stepped_address(m, ends, issue, start, st.w_base, [None, None, None, None, 1, tap_i, go_, None],
                                        AB, "w") + Mux(rem, go_last, 0)),
            out["g"].eq(g_off + stepped_address(m, ends, issue, start, 0, [g_t, g_y, None, go_x, 1, None, None, None],
                                                AB, "g")
                        + Mux(strad, sp["p0_out"] + Mux(c["f"][1], Mux(c["f"][0], go3, go2), Mux(c["f"][0], go_, 0)),
                              Mux(c["f"], go_, 0)) + Mux(rem, go_last, 0)),
            out["out"].eq(stepped_address(m, ends, issue, start, st.out_base,
                                          [out_t, out_y, None, go_x, 1, None, None, None], AB, "out")
                          + Mux(strad, sp["p0_out"], 0) + Mux(rem, go_last, 0)),
            out["entry"].eq(stepped_address(m, ends, issue, start, st.acc_base,
                                            [None, None, None, None, I, tap_i, 1, None], AB, "entry")
                            + Mux(rem, entry_last, 0)),
        ]
        if self.config.gradients.rounding == "stochastic":
            # the layer index idx_base + t * idx_t + (go * P) * idx_c + y * idx_y + x, stepped
            out["idx"] = stepped_address(m, ends, issue, start, st.idx_base,
                                         [st.idx_t, st.idx_y, None, 1, st.idx_c << lp, None, None, None], 32,
                                         "dither_index")
        return out

    def _stage_a(self, m, issue, step, addr):
        """Operands arrive: the product into the accumulator (outer), or the operands
        registered for the MAC in stage m (mat-vec); stages b-d re-quantise and write a finished mat-vec word (a packed stage: pixel x's
        half in d, pixel x + 1's in e). Returns the stages' busy."""
        cfg = self.config
        P, wd, gr = cfg.lanes, cfg.widths, cfg.gradients
        gb, wb = gr.width, wd.weight
        st, cnt = self.stage, self.counts
        outer = st.kind == StageKind.OUTER
        va = Signal()
        O = self._o
        a = {k: Signal(name=f"a_{k}") for k in ("first_word", "first_step", "branch", "last", "clear",
                                                "reduced", "zero", "copy", "fetch", "strad", "packed")}
        a["slot"], a["s"] = Signal(2, name="a_slot"), Signal(range(P), name="a_s")
        sel_a = Signal(max(log2(cfg.gbuf_spikes_per_word), 1))
        active_a = Signal(range(P + 1))
        out_a, entry_a = Signal(AB), Signal(AB)
        m.d.sync += [va.eq(issue & (~step["skip"] | step["zero"])), sel_a.eq(step["sel"]), active_a.eq(step["active"]),
                     out_a.eq(addr["out"]), entry_a.eq(addr["entry"])]
        m.d.sync += [a[k].eq(step[k]) for k in a]
        # the input words of pixel x (slot 0) and, packed, pixel x + 1 (slot 1): the word read
        # this step, or the one held since
        # (straddled: a third pixel's, slot 2, and with O < P/2 a fourth's, slot 3)
        held_in, held_in1, held_in2, held_in3, held_g, held_g1, held_g2, held_g3 = (Signal(P * gb, name=n) for n in (
            "held_in", "held_in1", "held_in2", "held_in3", "held_g", "held_g1", "held_g2", "held_g3"))
        word = Mux(a["first_word"] & (a["slot"] == 0), self.inp.data, held_in)
        word1 = Mux(a["first_word"] & (a["slot"] == 1), self.inp.data, held_in1)
        word2 = Mux(a["first_word"] & (a["slot"] == 2), self.inp.data, held_in2)
        word3 = Mux(a["first_word"] & (a["slot"] == 3), self.inp.data, held_in3)
        gword = Mux(a["first_step"] & (a["slot"] == 0), self.grad.data, held_g)
        gword1 = Mux(a["first_step"] & (a["slot"] == 1), self.grad.data, held_g1)
        gword2 = Mux(a["first_step"] & (a["slot"] == 2), self.grad.data, held_g2)
        gword3 = Mux(a["first_step"] & (a["slot"] == 3), self.grad.data, held_g3)
        with m.If(va):
            m.d.sync += [held_in.eq(word), held_in1.eq(word1), held_in2.eq(word2), held_in3.eq(word3),
                         held_g.eq(gword), held_g3.eq(gword3), held_g1.eq(gword1), held_g2.eq(gword2)]

        def operand_of(w):
            lanes_op = w.word_select(sel_a[:log2(P)], gb) if P > 1 else w
            return Mux(st.in_spikes, w.bit_select(sel_a, 1), lanes_op)     # a spike: 0 or +1
        operand, operand1, operand2, operand3 = (operand_of(w) for w in (word, word1, word2, word3))
        accw = gr.accumulator + 1
        half = P // 2 if P > 1 else P
        mac = va & ~outer & ~a["copy"] & ~a["fetch"]
        # stage m: the mat-vec's operands registered (the selected input lane of each half and
        # the weight word), so that the gradient buffer's read data, its bank multiplexer and
        # the lane selection are not on the same path as the multiply-accumulate (87 generic
        # levels, docs/synthesis.md); the controls and the copy's lanes follow one cycle on
        vm, mac_m, copy_m = Signal(), Signal(), Signal()
        m_ = {k: Signal(name=f"m_{k}") for k in ("first", "branch", "last", "reduced")}
        out_m, active_m, s_m, strad_m = Signal(AB), Signal(range(P + 1)), Signal(range(P)), Signal()
        weights_m = Signal(P * wb)
        # each lane's operand: its pixel's (packed: the upper half pixel x + 1's; straddled:
        # lane l's pixel slot from comparing l + s with O, 2 O and 3 O, s the pass's first channel)
        packed = a["packed"]            # (a wide stage packs its phase 1 only: the flag follows the step)
        ops = []
        for l in range(P):
            plain = operand1 if l >= half and half < P else operand
            k = l + a["s"]
            ops.append(Mux(a["strad"], Mux(k >= self._o3, operand3,
                                           Mux(k >= (O << 1), operand2, Mux(k >= O, operand1, operand))),
                           Mux(packed, plain, operand)))
        ops_m = Signal(P * gb)
        m.d.sync += [vm.eq(va & ~outer), mac_m.eq(mac), copy_m.eq(va & a["copy"] & ~a["fetch"]),
                     m_["first"].eq(a["first_step"] | a["branch"]), m_["branch"].eq(a["branch"]),
                     m_["last"].eq(a["last"]), m_["reduced"].eq(a["reduced"]),
                     out_m.eq(out_a), active_m.eq(active_a), s_m.eq(a["s"]), strad_m.eq(a["strad"]),
                     ops_m.eq(Cat(*[o[:gb] for o in ops])),
                     weights_m.eq(Mux(a["strad"], self._rotated(self.weights.data, a["s"]), self.weights.data))]
        # mat-vec on the PE array (:class:`gen.units.MacPEArray`, two halves: the upper one
        # takes pixel x + 1's operand in a packed stage): exact sums kept modulo 2^(GA + 1),
        # pipelined (the product registered, then the sum in two halves with a registered
        # carry: the multiply and the 37-bit accumulate were one 74-level path,
        # docs/synthesis.md), so the sums come ARRAY_EXTRA cycles after stage m
        m.submodules.array = pe = MacPEArray(P, wb, gb, accw, pipelined=True, per_lane=True)
        extra = pe.latency - 1
        assert extra == self.ARRAY_EXTRA
        m.d.comb += [pe.valid.eq(mac_m), pe.first.eq(m_["first"]), pe.operand.eq(ops_m), pe.weights.eq(weights_m)]
        sums_a = pe.acc
        part = Signal(P * accw)
        # the copy (HTT's reduced timesteps): the input word's lanes, sign-extended, are the sums,
        # registered in stage a, again in stage m and then beside the array's pipeline (a copy
        # step's sums wait beside the MAC's); kept as Gb-bit lanes, sign-extended when read
        copied_m, copied = Signal(P * gb), Signal(P * gb)
        # (packed: the upper half pixel x + 1's, from its word's lower lanes)
        lanes_raw = [lane(word, l, gb) for l in range(half)]
        lanes_raw += [Mux(packed, lane(word1, l - half, gb), lane(word, l, gb)) for l in range(half, P)]
        with m.If(va & a["copy"] & ~a["fetch"]):
            m.d.sync += copied_m.eq(Cat(*lanes_raw))
        with m.If(copy_m):
            m.d.sync += copied.eq(copied_m)
        copied_x = delay(m, copied, extra, "copied")
        lanes_ext = [Signal(signed(accw), name=f"copy{l}") for l in range(P)]
        m.d.comb += [v.eq(lane(copied_x, l, gb)) for l, v in enumerate(lanes_ext)]   # sign-extends
        # the row branch's sums (ROWS_COLS): the array's sums before the branch's first step,
        # ARRAY_EXTRA cycles after its stage m
        with m.If(delay(m, vm & m_["branch"], extra, "branch_x")):
            m.d.sync += part.eq(sums_a)
        update_o = self._outer_product(m, va & outer & ~a["fetch"], a, (gword, gword1, gword2, gword3),
                                       (operand, operand1, operand2, operand3), packed, entry_a, active_a)
        m.d.comb += self.counts.stage_macs.eq(Mux(mac, active_a, 0))
        # stage b: the finished sums
        vb, reduced_b = Signal(), Signal()
        out_b = Signal(AB)
        active_b = Signal(range(P + 1))
        s_b, s_c, s_d = (Signal(range(P), name=f"s_{k}") for k in "bcd")
        strad_b, strad_c, strad_d = (Signal(name=f"straddled_{k}") for k in "bcd")
        packed_m, packed_b, packed_c, packed_d = (Signal(name=f"packed_{k}") for k in "mbcd")
        # (stage c's values two cycles after stage b's: stage h in between)
        m.d.sync += [s_b.eq(delay(m, s_m, extra, "s_x")), s_c.eq(delay(m, s_b, 1, "s_h")), s_d.eq(s_c),
                     strad_b.eq(delay(m, strad_m, extra, "straddled_x")),
                     strad_c.eq(delay(m, strad_b, 1, "straddled_h")), strad_d.eq(strad_c),
                     packed_m.eq(packed), packed_b.eq(delay(m, packed_m, extra, "packed_x")),
                     packed_c.eq(delay(m, packed_b, 1, "packed_h")), packed_d.eq(packed_c)]
        # (stage m's values ARRAY_EXTRA cycles on, beside the array's pipeline)
        vx = [Signal(name=f"vx_{k + 1}") for k in range(extra)]
        m.d.sync += [v.eq(prev) for v, prev in zip(vx, [vm & m_["last"]] + vx)]
        m.d.sync += [vb.eq(vx[-1] if vx else vm & m_["last"]),
                     reduced_b.eq(delay(m, m_["reduced"], extra, "reduced_x")),
                     out_b.eq(delay(m, out_m, extra, "out_x")),
                     active_b.eq(delay(m, active_m, extra, "active_x"))]
        # stage h: the sums' lower halves (ROWS_COLS' branches added) and their carries
        # registered, the upper halves added in h (the whole add was one 61-level path,
        # docs/synthesis.md); stage c: the wrapped sums registered, rounded; their dither
        # (stochastic rounding) hashed in stage h from the element's index
        vh, reduced_h, out_h, active_h = Signal(), Signal(), Signal(AB), Signal(range(P + 1))
        m.d.sync += [vh.eq(vb), reduced_h.eq(reduced_b), out_h.eq(out_b), active_h.eq(active_b)]
        vc, reduced_c, out_c, active_c = Signal(), Signal(), Signal(AB), Signal(range(P + 1))
        sums = self._sums(m, Mux(reduced_b, Cat(*lanes_ext), sums_a), part, reduced_b)
        sums_c = Signal(len(sums))
        m.d.sync += [vc.eq(vh), reduced_c.eq(reduced_h), out_c.eq(out_h), active_c.eq(active_h), sums_c.eq(sums)]
        dither_c = None
        if "idx" in addr:
            idx_a, idx_m, idx_h = Signal(32), Signal(32), Signal(32)
            m.d.sync += [idx_a.eq(addr["idx"]), idx_m.eq(idx_a), idx_h.eq(delay(m, idx_m, extra + 1, "idx_x"))]
            m.submodules.dither = dh = DitherHash(P)
            dither_c = Signal(P * 32)
            m.d.comb += [dh.index.eq(idx_h), dh.lane_stride.eq(st.idx_c), dh.key.eq(st.key)]
            m.d.sync += dither_c.eq(dh.dither)
        rounded, sat_fwd = self._round(m, sums_c, reduced_c, dither_c)
        # stage d: the rounded lanes registered; saturated, written and the saturations counted
        # (sums, rounding, saturation, popcount and write were one 125-130-level path, then
        # sums and rounding 118-124 levels, docs/synthesis.md)
        vd, fwd_d = Signal(), Signal()
        out_d, rounded_d = Signal(AB), Signal(len(rounded))
        active_d = Signal(range(P + 1))
        m.d.sync += [vd.eq(vc), out_d.eq(out_c), rounded_d.eq(rounded), fwd_d.eq(sat_fwd), active_d.eq(active_c)]
        words, flags = self._saturate(m, rounded_d, fwd_d)
        # packed: pixel x's word is the lower half (the upper half zero), written in d; pixel
        # x + 1's the upper half moved down, written in e (a packed pixel pair takes at least
        # two steps, so d and e never write in the same cycle)
        lo_bits = half * gb
        ve, out_e, upper_e = Signal(), Signal(AB), Signal(P * gb - lo_bits)
        m.d.sync += [ve.eq(vd & packed_d), out_e.eq(out_d + addr["out_pixel"]), upper_e.eq(words[lo_bits:])]
        word_d = Mux(packed_d, Cat(words[:lo_bits], Const(0, P * gb - lo_bits)), words)
        counted = [Mux(packed_d, O > (l % half), active_d > l) for l in range(P)]
        slot_write, slot_en, slot_addr, slot_data, pending = self._straddled_writes(m, vd & strad_d, words, s_d,
                                                                                    active_d, out_d)
        m.d.comb += [self.out.en.eq(Mux(slot_write, slot_en, Cat(*[vd | ve] * P))),
                     self.out.addr.eq(Mux(slot_write, slot_addr, Mux(ve, out_e, out_d))),
                     self.out.data.eq(Mux(slot_write, slot_data, Mux(ve, Cat(upper_e, Const(0, lo_bits)), word_d))),
                     cnt.grad_writes.eq(vd | ve | pending),
                     cnt.grad_saturations.eq(Mux(vd & (st.requant == Requant.GRADIENT),
                                                 sum(flags[l] & counted[l] for l in range(P)), 0))]
        return va | update_o | vm | Cat(*vx).any() | vb | vh | vc | vd | ve | pending

    def _rotated(self, word, s):
        """A straddled pass's weight word: lane ``l`` takes lane ``s + l`` of the word beside
        the word shifted down by ``O`` lanes (the driver lays lane ``l`` out as channel
        ``l mod O``, so lane ``l`` gets channel ``(s + l) mod O``; ``O < P``)."""
        P, wb, O = self.config.lanes, self.config.widths.weight, self._o
        ext = Cat(word, word >> ((P - O).as_unsigned()[:log2(P) + 1] * wb))
        return (ext >> (s * wb))[:P * wb]

    def _straddled_writes(self, m, first, words, s, n, addr):
        """Stage d of a straddled pass (``first``: its sums ``words`` saturated, ``n`` lanes from
        its first channel ``s``, pixel ``p0``'s word at ``addr``): one write per pixel slot,
        slot 0 in this cycle, slots 1-3 in the next ones, each slot ``k``'s lanes rotated
        into its pixel's word (lane ``c`` <- sum ``c + k O - s``) with the lanes
        ``0 <= c + k O - s < n``, ``c < O`` enabled. A pass takes at least as many steps as it
        has slots, so a pass's slots are written before the next pass's stage d. Returns
        whether a slot is written this cycle, its lane enables, address and data, and whether
        a later slot is pending (the engine is busy)."""
        P, gb, O = self.config.lanes, self.config.gradients.width, self._o
        words_w, base_w = Signal(P * gb, name="slot_words"), Signal(AB, name="slot_addr")
        s_w, n_w = Signal(range(P), name="slot_s"), Signal(range(P + 1), name="slot_n")
        ko_w, left_w = Signal(17, name="slot_ko"), Signal(2, name="slot_left")
        step = self._pass["go"]           # a pixel's output words (a wide stage's: ceil(O / P))
        last = s + n - 1
        pixels = ((last >= O).as_unsigned() + (last >= (O << 1)).as_unsigned()
                  + (last >= self._o3).as_unsigned())                               # slots after the first
        with m.If(first):
            m.d.sync += [words_w.eq(words), base_w.eq(addr + step), s_w.eq(s), n_w.eq(n), ko_w.eq(O),
                         left_w.eq(pixels)]
        with m.Elif(left_w != 0):
            m.d.sync += [left_w.eq(left_w - 1), base_w.eq(base_w + step), ko_w.eq(ko_w + O)]
        pending = left_w != 0
        src, src_s, src_n = Mux(first, words, words_w), Mux(first, s, s_w), Mux(first, n, n_w)
        ko = Mux(first, 0, ko_w)
        ext = Cat(Const(0, P * gb), src)
        data = Signal(P * gb, name="slot_data")
        m.d.comb += data.eq((ext >> ((P + ko - src_s).as_unsigned() * gb))[:P * gb])
        en = Cat(*[(c + ko >= src_s) & (c + ko < src_s + src_n) & (c < O) for c in range(P)])
        return first | pending, en, Mux(first, addr, base_w), data, pending

    def _outer_product(self, m, update, a, gwords, operands, packed, entry, active):
        """Stages a and o of an outer product: the gradient lanes times the activation into the
        weight-gradient accumulator, each lane's operands chosen in a and registered, multiplied
        and added in o (returns o's valid, for the engine's ``busy``) (``update``: this step adds; ``a``: the step's stage-a
        flags; ``gwords``, ``operands``: the gradient words and activations of pixel slots 0-3:
        pixels x and x + 1 packed, the pass's pixels straddled).

        Straddled (``a["strad"]``, ``P/3 <= O < P``): the pass's pairs are ``s .. s + n - 1``
        counted from its first pixel's channel 0, so accumulator lane ``c < O`` has a term from
        slot ``k`` where ``s <= k O + c < s + n``: at most three slots, consecutive (``n <= P <=
        3 O``), the first slot 0 or 1 (``c < O``, ``s < O``). Each lane has three multipliers:
        the first takes the lane's first such slot (slot 0's, else slot 1's), the second and
        third the ones after it, zero where there is none (``P/2 <= O``: the third always
        zero); their sum is the lane's update (the entries as unstraddled: lane ``c`` is
        channel ``c``)."""
        cfg = self.config
        P, gr, cnt = cfg.lanes, cfg.gradients, self.counts
        gb, qb = gr.width, cfg.widths.activation
        half = P // 2 if P > 1 else P
        O, s, n = self._o, a["s"], active
        gws, ops = gwords, [o[:qb].as_signed() for o in operands]
        pw = gb + qb + 2                  # three products summed
        m.submodules.wgrad = acc = WeightGradientAccumulator(P, pw, gr.wgrad_tile, self.acc_entries)
        # packed: the upper half multiplies pixel x + 1's gradient (its word's lower lanes) by its
        # activation; the host adds each entry's two halves (``unpack_wgrad``)
        products = []
        for c in range(P):
            if c < half:
                g_plain, op_plain = lane(gws[0], c, gb), ops[0]
            else:
                g_plain = Mux(packed, lane(gws[1], c - half, gb), lane(gws[0], c, gb))
                op_plain = Mux(packed, ops[1], ops[0])
            v = [(c + k * O >= s) & (c + k * O < s + n) & (c < O) for k in range(4)]
            g = [Mux(v[k], lane(gws[k], c, gb), 0) for k in range(4)]
            first_g = Mux(a["strad"], Mux(v[0], g[0], g[1]), g_plain)
            first_op = Mux(a["strad"], Mux(v[0], ops[0], ops[1]), op_plain)
            second_g = Mux(a["strad"], Mux(v[0], g[1], g[2]), 0)
            second_op = Mux(v[0], ops[1], ops[2])
            third_g = Mux(a["strad"], Mux(v[0], g[2], g[3]), 0)
            third_op = Mux(v[0], ops[2], ops[3])
            # an unpacked, unstraddled group's lanes past its channels add zero, whatever the
            # gradient word holds there (a straddled write leaves those lanes as they were): the
            # host adds a last group's upper half whenever a packed stage could have used it
            # (``unpack_wgrad``), and a layer's tiles may pack it in one tile and not the next
            idle = ~a["strad"] & ~packed & (n <= c)
            # stage o: the lane's operands registered (a term that adds zero: its gradients
            # zero), the multiplies and their add in the next cycle (the operand selection
            # from the read data and the stage's fields, the multiplies and the add were one
            # 66-74-level path, docs/synthesis.md)
            kill = a["zero"] | idle
            fg_o, sg_o, tg_o = (Signal(signed(gb), name=f"wgrad_{k}_g{c}") for k in ("first", "second", "third"))
            fop_o, sop_o, top_o = (Signal(signed(qb), name=f"wgrad_{k}_op{c}") for k in ("first", "second", "third"))
            m.d.sync += [fg_o.eq(Mux(kill, 0, first_g)), sg_o.eq(Mux(kill, 0, second_g)),
                         tg_o.eq(Mux(kill, 0, third_g)), fop_o.eq(first_op), sop_o.eq(second_op), top_o.eq(third_op)]
            p = Signal(signed(pw), name=f"wgrad_term{c}")
            m.d.comb += p.eq(fg_o * fop_o + sg_o * sop_o + tg_o * top_o)
            products.append(p)
        update_o, clear_o, entry_o = Signal(name="wgrad_update_o"), Signal(name="wgrad_clear_o"), Signal.like(entry)
        m.d.sync += [update_o.eq(update), clear_o.eq(a["clear"]), entry_o.eq(entry)]
        m.d.comb += [acc.valid.eq(update_o), acc.clear.eq(clear_o), acc.addr.eq(entry_o),
                     acc.product.eq(Cat(*products)),
                     acc.rd_en.eq(self.acc_rd_en), acc.rd_addr.eq(self.acc_rd_addr),
                     self.acc_rd_data.eq(acc.rd_data)]
        m.d.comb += [cnt.wgrad_updates.eq(Mux(update & ~a["zero"], active, 0)), cnt.wgrad_words.eq(update)]
        return update_o

    def _sums(self, m, acc, part, reduced):
        """Stages b and h: the finished sums of every lane as the re-quantisation takes them
        (each ``GA + 1`` bits, signed; valid in stage h, one cycle after ``acc``, ``part`` and
        ``reduced`` of stage b): forward, wrapped at ``Ab`` (ROWS_COLS: each branch wrapped,
        their sum exact in ``Ab + 1`` bits); gradient, wrapped at ``GA`` (ROWS_COLS: the
        branches' sum wrapped at ``GA + 1``). Each is one sum ``x + y`` modulo ``2^(GA + 1)``
        of two operands chosen in b (sign-extended branch sums, or zero), added in two
        halves: the lower half and its carry registered in b, the upper half added in h."""
        cfg = self.config
        ab, ga = cfg.widths.accumulator, cfg.gradients.accumulator
        st, accw = self.stage, ga + 1
        lo = (accw + 1) // 2
        both = (st.taps == Taps.ROWS_COLS) & ~reduced
        fwd = st.requant == Requant.FORWARD
        outs = []
        for l in range(cfg.lanes):
            s, p = lane(acc, l, accw), lane(part, l, accw)
            x, y = Signal(signed(accw), name=f"sum_x{l}"), Signal(signed(accw), name=f"sum_y{l}")
            m.d.comb += [x.eq(Mux(both, Mux(fwd, wrap(p, ab), p), 0)),
                         y.eq(Mux(fwd, wrap(s, ab), Mux(both, s, wrap(s, ga))))]
            sum_lo, carry = Signal(lo, name=f"sum_lo{l}"), Signal(name=f"sum_carry{l}")
            x_hi, y_hi = Signal(accw - lo, name=f"sum_x_hi{l}"), Signal(accw - lo, name=f"sum_y_hi{l}")
            m.d.sync += [Cat(sum_lo, carry).eq(x[:lo] + y[:lo]), x_hi.eq(x[lo:]), y_hi.eq(y[lo:])]
            v = Signal(signed(accw), name=f"sum{l}")
            m.d.comb += v.eq(Cat(sum_lo, (x_hi + y_hi + carry)[:accw - lo]))
            outs.append(v)
        return Cat(*outs)

    def _round(self, m, sums, reduced, dither=None):
        """Stage c: the sums of every lane (:meth:`_sums`, registered) rounded (re-quantisation
        before its saturation, :meth:`_saturate` in stage d): the forward's ``rshift``, the
        :class:`GradientRequantiser`'s ``round_s`` or HTT's bypass with a negative shift (an exact
        left shift). Returns the lanes (each :meth:`_rounded_width` bits, signed) and whether
        they saturate to the forward's ``Qb`` bits (else ``Gb``)."""
        cfg = self.config
        gr, st = cfg.gradients, self.stage
        ga = gr.accumulator
        accw, rw = ga + 1, self._rounded_width()
        fwd = st.requant == Requant.FORWARD
        left = reduced & st.alt_left
        shift = Mux(reduced, st.alt_shift, st.shift)
        m.submodules.requant = rq = GradientRequantiser(cfg.lanes, accw, gr.width, gr.rounding)
        m.d.comb += [rq.shift.eq(shift), rq.i.eq(sums)]
        if dither is not None:
            m.d.comb += rq.dither.eq(dither)
        outs = []
        for l in range(cfg.lanes):
            v = lane(sums, l, accw).as_signed()
            r = Signal(signed(rw), name=f"rounded{l}")
            m.d.comb += r.eq(Mux(fwd, rshift(v, shift, st["round"]),
                                 Mux(left, v << shift[:4], lane(rq.rounded, l, rq.rounded_width))))
            outs.append(r)
        return Cat(*outs), fwd

    def _rounded_width(self) -> int:
        """Bits of a rounded lane: the widest of the forward's ``rshift`` (Ab + 1), the bypass's
        left shift (GA + 1 + 15) and ``round_s`` (GA + 1, + 1 stochastic)."""
        wd, gr = self.config.widths, self.config.gradients
        return max(wd.accumulator + 1, gr.accumulator + 1 + 15, gr.accumulator + 2)

    def _saturate(self, m, rounded, fwd):
        """Stage c: the rounded lanes saturated to ``Qb`` (forward) or ``Gb`` bits, stored as
        ``Gb``-bit lanes, and each lane's flag (the saturation changed it)."""
        cfg = self.config
        P, qb, gb, rw = cfg.lanes, cfg.widths.activation, cfg.gradients.width, self._rounded_width()
        outs, flags = [], []
        for l in range(P):
            r = lane(rounded, l, rw)
            q_fwd, q_bwd = saturate(r, qb), saturate(r, gb)
            q = Signal(signed(gb), name=f"q{l}")
            m.d.comb += q.eq(Mux(fwd, q_fwd, q_bwd))
            outs.append(q)
            flags.append(Mux(fwd, q_fwd != r, q_bwd != r))
        return Cat(*outs), flags
