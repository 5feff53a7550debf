"""The LIF-gradient engine: backward steps 1-4 of a tile (LIF over time in reverse, current,
frozen folded BatchNorm, max-pool routing) on the :class:`LIFGradientLanes` array."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig, log2
from ..engines.common import counts_layout, loops
from .core_stage_engine import stage_read_port, stage_write_port
from .dither_hash import DitherHash
from .lif_gradient import LIFGradientLanes, delay_line
from .stage_layout import STAGE_ADDR_BITS, STAGE_LAYOUT
from .stepped_address import registered, registered_product, stepped_address

__all__ = ["LIFGradientEngine", "TRACE_BITS_PER_LANE"]

AB = STAGE_ADDR_BITS
#: Trace bits per neuron and timestep in a trace word: spike, window bit, 2-bit arg-max.
TRACE_BITS_PER_LANE = 4


class LIFGradientEngine(wiring.Component):
    """Runs a ``kind = LIF`` stage (:data:`gen.backward.stage_layout.STAGE_LAYOUT`).

    Loop nest, one step per cycle: output row ``y`` and column ``x`` of the tile's output
    pixels plus their ring (``rows x cols``), group ``go`` of ``P`` channels, timestep
    ``t = T-1 .. 0``, and with ``pool`` the four pre-pool positions of the block. Without
    ``pool`` two columns take turns inside the timestep loop (``x = 2 xc + xi``: the lanes'
    recurrence takes two cycles, :attr:`LIFGradientLanes.RECURRENCE_DISTANCE`); with an odd
    ``cols`` the last pair's second column is an idle step (counted busy, nothing read or
    written); with ``pool`` the positions already put four cycles between two timesteps of a
    group. At the first
    position it reads ``e`` and ``g_extra`` (gradient buffer), the trace word and the folded-BN
    scales (``affine``: the word of group ``go``, scale of the timestep's class), runs the
    lanes with the LIF gradient of ``t + 1`` held in the lanes (0 at ``t = T-1``), writes
    ``g_cur`` of the output pixels (the ring excluded) and, per position, ``g_a4``: ``g_p``
    where the lane's arg-max is that position, else 0 (pre-pool positions outside the
    ``(2 rows - 2) x (2 cols - 2)`` ring are dropped). A tile whose timesteps run in chunks
    (later chunks first) carries the LIF gradient between them: with ``carry_in`` a group's
    steps begin with a load step (the word of ``carry_base`` through the ``e`` port into the
    lanes' held ``d``), with ``carry_out`` they end with a store step (the held ``d`` after
    ``t = 0`` through the ``g_cur`` port to ``carry_base``); each takes the cycles of a
    timestep (four with ``pool``) and nothing else happens in it.

    Ports: ``start``, ``stage`` (in); ``e``, ``extra`` (gradient-buffer read ports),
    ``trace``, ``affine`` (read ports); ``g_a4``, ``g_cur`` (gradient-buffer write ports);
    ``busy``; ``counts``. Timing: issue (addresses, stepped by additions from registered
    strides: ``stage`` must hold its value from
    :data:`gen.backward.stepped_address.STAGE_LATENCY` cycles before ``start`` on) -> a (data into the lanes) -> the lanes'
    :attr:`LIFGradientLanes.LATENCY` stages -> w (``g_p`` routed, the writes, the saturation
    count): ``1 + LATENCY`` cycles from an issue to its writes, every stage one clock. With
    ``gradients.rounding = "stochastic"``, three :class:`DitherHash` units hash the neurons'
    layer index (the stage's ``idx_*`` fields) with the height, leak and affine keys in stage a
    (the lanes register the dither with their inputs).
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        P, wd, gb = config.lanes, config.widths, config.gradients.width
        lanes_bits = log2(P) + 1
        super().__init__({
            "start": In(1), "stage": In(STAGE_LAYOUT),
            "e": Out(stage_read_port(P * gb)), "extra": Out(stage_read_port(P * gb)),
            "trace": Out(stage_read_port(P * TRACE_BITS_PER_LANE)),
            "affine": Out(stage_read_port(config.regions["affine"].width_bits)),
            "g_a4": Out(stage_write_port(P * gb)), "g_cur": Out(stage_write_port(P * gb)),
            "busy": Out(1),
            "counts": Out(counts_layout({"lifg_busy": 1, "lifg_updates": lanes_bits, "trace_reads": 1,
                                         "lifg_grad_reads": 2, "lifg_grad_writes": 2,
                                         "lifg_saturations": lanes_bits + 2})),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        P, lp = cfg.lanes, log2(cfg.lanes)
        st = self.stage
        run = Signal()
        y, xc, xi, go, tr, sub = (Signal(16, name=n) for n in ("y", "xc", "xi", "go", "tr", "sub"))
        t, x = Signal(16), Signal(16)
        pair = ~st.pool                                          # two columns take turns
        m.d.comb += x.eq(Mux(pair, Cat(xi[0], xc), xc))
        idle = pair & (x >= st.cols)                             # an odd cols' last pair
        load = st.carry_in & (tr == 0)
        store = st.carry_out & (tr == st.timesteps + st.carry_in)
        m.d.comb += t.eq(st.timesteps - 1 - (tr - st.carry_in))  # reverse time
        GO = Signal(16)
        m.d.comb += GO.eq((st.out_channels + P - 1) >> lp)
        steps_t = Signal(16)                                     # the timesteps and the carry steps
        m.d.comb += steps_t.eq(st.timesteps + st.carry_in + st.carry_out)
        XC = Signal(16)
        m.d.comb += XC.eq(Mux(pair, (st.cols + 1) >> 1, st.cols))
        ends = loops(m, [(y, st.rows), (xc, XC), (go, GO), (tr, steps_t), (xi, Mux(pair, 2, 1)),
                         (sub, Mux(st.pool, 4, 1))], run)
        with m.If(run & ends[0]):
            m.d.sync += run.eq(0)
        with m.If(self.start):
            m.d.sync += [run.eq(1)] + [s.eq(0) for s in (y, xc, xi, go, tr, sub)]
        live = run & ~idle
        first = live & (sub == 0)
        step = first & ~load & ~store                            # a timestep's first position
        word = self._word(m, ends, run, GO)
        carry_addr = self._carry_addr(m, ends, run, GO)
        inner_rows, inner_cols = st.rows - 2, st.cols - 2
        m.d.comb += [self.e.en.eq(first & ~store),
                     self.e.addr.eq(Mux(load, carry_addr, st.in_base + word)),
                     self.extra.en.eq(step & st.use_extra), self.extra.addr.eq(st.g_base + word),
                     self.trace.en.eq(step), self.trace.addr.eq(st.trace_base + word),
                     self.affine.en.eq(step), self.affine.addr.eq(go)]
        cnt = self.counts
        m.d.comb += [cnt.lifg_busy.eq(run), cnt.trace_reads.eq(step),
                     cnt.lifg_grad_reads.eq(Mux(step, 1 + st.use_extra, Mux(first & load, 1, 0)))]
        # pre-pool position of this step, and whether it lies in the g_a4 tensor
        out_rows = Mux(st.pool, (st.rows << 1) - 2, st.rows)
        out_cols = Mux(st.pool, (st.cols << 1) - 2, st.cols)
        py = Mux(st.pool, (y << 1) + sub[1] - 1, y)
        px = Mux(st.pool, (x << 1) + sub[0] - 1, x)
        inside = (py < out_rows) & (px < out_cols) & ~(st.pool & (((y == 0) & ~sub[1]) | ((x == 0) & ~sub[0])))
        interior = (y >= 1) & (y <= inner_rows) & (x >= 1) & (x <= inner_cols)
        a = dict(v=Signal(), first=Signal(), last_t=Signal(), inside=Signal(), interior=Signal(), sub=Signal(2),
                 full=Signal(), a4_addr=Signal(AB), cur_addr=Signal(AB), active=Signal(range(P + 1)),
                 load=Signal(), store=Signal(), carry_addr=Signal(AB))
        m.d.sync += [a["v"].eq(live), a["first"].eq(first), a["last_t"].eq((tr == 0) & ~st.carry_in),
                     a["load"].eq(load), a["store"].eq(store), a["carry_addr"].eq(carry_addr),
                     a["inside"].eq(inside),
                     a["interior"].eq(interior), a["sub"].eq(sub[:2]),
                     a["full"].eq(~st.use_schedule | st.schedule.bit_select(t[:5], 1)),
                     a["a4_addr"].eq(self._a4_addr(m, ends, run, GO, out_rows, out_cols, sub)),
                     a["cur_addr"].eq(self._cur_addr(m, ends, run, GO, inner_rows, inner_cols)),
                     a["active"].eq(Mux(st.out_channels - (go << lp) >= P, P, st.out_channels - (go << lp)))]
        if cfg.gradients.rounding == "stochastic":
            a["idx"] = Signal(32)
            # the layer index idx_base + t * idx_t + (go * P) * idx_c + y * idx_y + x, stepped
            idx_t_first = registered_product(m, [st.timesteps - 1 + st.carry_in, st.idx_t], 32, "idx_t_first")
            idx_first = registered(m, st.idx_base + idx_t_first, 32, "idx_first")
            xc_1 = registered(m, Mux(pair, 2, 1), 32, "idx_xc")
            m.d.sync += a["idx"].eq(self._stepped(m, ends, run, idx_first, [st.idx_y, xc_1, st.idx_c << lp,
                                                                             -st.idx_t, 1], 32, "dither_index"))
        in_flight = self._stage_a(m, a)
        # busy until the last step's writes (stage w)
        m.d.comb += self.busy.eq(run | in_flight)
        return m

    # Addresses of the loop nest y, xc, go, tr (t = T - 1 - (tr - carry_in)), xi, sub (x = 2 xc
    # + xi without pooling, xc with it), stepped by additions (gen.backward.stepped_address):
    # the marks start at 0 and step by registered strides (products of descriptor fields), the
    # tensor's word of (T - 1 + carry_in, 0, 0, 0) added to them (with a load step first, the
    # first timestep's counter is tr = 1).
    def _stepped(self, m, ends, run, first, strides, width, name):
        """``first + sum`` of the counters ``y, xc, go, tr, xi`` times ``strides`` (``tr``'s
        stride negative: time runs backwards); ``first`` a register."""
        return first + stepped_address(m, ends, run, self.start, 0, list(strides) + [None], width, name)

    def _column_strides(self, m, x_stride, name):
        """The strides of ``xc`` and ``xi`` for a tensor whose column stride is ``x_stride``."""
        return (registered(m, Mux(self.stage.pool, x_stride, x_stride << 1), AB, f"{name}_xc"), x_stride)

    def _word(self, m, ends, run, GO):
        """The word ``((t * rows + y) * cols + x) * ceil(O/P) + go`` of ``e``, ``g_extra`` and
        the trace (their bases added by the caller)."""
        st = self.stage
        R = lambda v, n: registered(m, v, AB, f"lifg_{n}")
        RP = lambda fs, n: registered_product(m, fs, AB, f"lifg_{n}")
        y_stride, go_ = RP([st.cols, GO], "y_stride"), R(GO, "go")
        t_stride = RP([st.rows, st.cols, GO], "t_stride")
        first = RP([st.timesteps - 1 + st.carry_in, st.rows, st.cols, GO], "word_first")
        xc_, xi_ = self._column_strides(m, go_, "lifg_word")
        return self._stepped(m, ends, run, first, [y_stride, xc_, 1, -t_stride, xi_], AB, "word")

    def _carry_addr(self, m, ends, run, GO):
        """``carry_base + (y * cols + x) * ceil(O/P) + go``: the carried ``d`` of a neuron
        group, the same word at every timestep."""
        st = self.stage
        R = lambda v, n: registered(m, v, AB, f"carry_{n}")
        xc_, xi_ = self._column_strides(m, R(GO, "go"), "carry")
        strides = [registered_product(m, [st.cols, GO], AB, "carry_y_stride"), xc_, 1, None, xi_]
        return self._stepped(m, ends, run, R(st.carry_base, "first"), strides, AB, "carry")

    def _a4_addr(self, m, ends, run, GO, out_rows, out_cols, sub):
        """``out_base + ((t * out_rows + py) * out_cols + px) * ceil(O/P) + go`` at the pre-pool
        position ``py = 2y + sub[1] - 1, px = 2x + sub[0] - 1`` (pooling; else ``y, x``)."""
        st = self.stage
        R = lambda v, n: registered(m, v, AB, f"a4_{n}")
        RP = lambda fs, n: registered_product(m, fs, AB, f"a4_{n}")
        row, go_ = RP([out_cols, GO], "row"), R(GO, "go")
        y_stride = R(Mux(st.pool, row << 1, row), "y_stride")
        x_stride = R(Mux(st.pool, GO << 1, GO), "x_stride")
        t_stride = RP([out_rows, out_cols, GO], "t_stride")
        word_first = RP([st.timesteps - 1 + st.carry_in, out_rows, out_cols, GO], "word_first")
        first = R(st.out_base + word_first - R(Mux(st.pool, row + go_, 0), "ring"), "first")
        xc_, xi_ = self._column_strides(m, x_stride, "a4")
        marks = self._stepped(m, ends, run, first, [y_stride, xc_, 1, -t_stride, xi_], AB, "a4")
        return marks + Mux(st.pool & sub[1], row, 0) + Mux(st.pool & sub[0], go_, 0)

    def _cur_addr(self, m, ends, run, GO, inner_rows, inner_cols):
        """``cur_base + ((t * (rows - 2) + y - 1) * (cols - 2) + x - 1) * ceil(O/P) + go``."""
        st = self.stage
        R = lambda v, n: registered(m, v, AB, f"cur_{n}")
        RP = lambda fs, n: registered_product(m, fs, AB, f"cur_{n}")
        y_stride, go_ = RP([inner_cols, GO], "y_stride"), R(GO, "go")
        t_stride = RP([inner_rows, inner_cols, GO], "t_stride")
        word_first = RP([st.timesteps - 1 + st.carry_in, inner_rows, inner_cols, GO], "word_first")
        first = R(st.cur_base + word_first - y_stride - go_, "first")
        xc_, xi_ = self._column_strides(m, go_, "cur")
        return self._stepped(m, ends, run, first, [y_stride, xc_, 1, -t_stride, xi_], AB, "cur")

    def _stage_a(self, m, a):
        """Data arrive (stage a): into the pipelined lanes at a block's first position; the
        step's control follows them :attr:`LIFGradientLanes.LATENCY` cycles to stage w, where
        the writes and the saturation count happen. Returns whether a step is in stage a, w or
        between."""
        cfg = self.config
        P, wd, gb = cfg.lanes, cfg.widths, cfg.gradients.width
        sb, mb = wd.affine_scale, wd.membrane
        st, cnt = self.stage, self.counts
        m.submodules.lanes = lanes = LIFGradientLanes(P, gb, wd.leak_mul, sb, cfg.gradients.rounding)
        if "idx" in a:
            for name, key in (("height", st.key), ("leak", st.key_leak), ("affine", st.key_affine)):
                m.submodules[f"dither_{name}"] = dh = DitherHash(P)
                m.d.comb += [dh.index.eq(a["idx"]), dh.lane_stride.eq(st.idx_c), dh.key.eq(key),
                             getattr(lanes, f"dither_{name}").eq(dh.dither)]
        tw = self.trace.data
        spikes = Cat(*[tw[l * 4] for l in range(P)])
        window = Cat(*[tw[l * 4 + 1] for l in range(P)])
        argmax = Cat(*[tw[l * 4 + 2:l * 4 + 4] for l in range(P)])
        lane_bits = 2 * sb + mb
        aff = self.affine.data
        scale0 = Cat(*[aff[l * lane_bits:l * lane_bits + sb] for l in range(P)])
        scale1 = Cat(*[aff[l * lane_bits + sb:l * lane_bits + 2 * sb] for l in range(P)])
        m.d.comb += [lanes.valid.eq(a["v"] & a["first"] & ~a["store"]), lanes.restart.eq(a["last_t"]),
                     lanes.load.eq(a["load"]),
                     lanes.e.eq(self.e.data),
                     lanes.g_extra.eq(Mux(st.use_extra, self.extra.data, 0)),
                     lanes.spike.eq(spikes), lanes.window.eq(window),
                     lanes.scale.eq(Mux(a["full"], scale0, scale1)),
                     lanes.height_mul.eq(st.height_mul), lanes.height_shift.eq(st.height_shift),
                     lanes.leak_mul.eq(st.leak_mul), lanes.leak_shift.eq(st.leak_shift),
                     lanes.affine_shift.eq(st.shift)]
        # stage w: stage a's control and arg-max, LATENCY cycles later, beside the lanes' outputs
        L = LIFGradientLanes.LATENCY
        v_taps = delay_line(m, a["v"], L, "w_v")
        w = {k: delay_line(m, a[k], L, f"w_{k}")[L]
             for k in ("first", "inside", "interior", "sub", "a4_addr", "cur_addr", "active", "load", "store",
                       "carry_addr")}
        w["v"] = v_taps[L]
        w_step = w["v"] & ~w["load"] & ~w["store"]            # a timestep (not a carry step) is in stage w
        w_arg = delay_line(m, argmax, L, "w_argmax")[L]
        gp_held, arg_held = Signal(P * gb), Signal(2 * P)
        at_first = w_step & w["first"]
        with m.If(at_first):
            m.d.sync += [gp_held.eq(lanes.g_p), arg_held.eq(w_arg)]
        g_p = Mux(w["first"], lanes.g_p, gp_held)
        arg = Mux(w["first"], w_arg, arg_held)
        routed = Cat(*[Mux(~st.pool | (arg[2 * l:2 * l + 2] == w["sub"]), g_p[l * gb:(l + 1) * gb], 0)
                       for l in range(P)])
        # the store step: the group's d after t = 0 is the lanes' d output of that timestep,
        # which reached stage w two cycles before the store (the other column of the pair, or a
        # pooling position, between them)
        store_now = w["v"] & w["first"] & w["store"]
        d_of_t0 = delay_line(m, lanes.d, 2, "w_d")[2]
        m.d.comb += [self.g_a4.en.eq(w_step & w["inside"]), self.g_a4.addr.eq(w["a4_addr"]),
                     self.g_a4.data.eq(routed),
                     self.g_cur.en.eq((at_first & w["interior"]) | store_now),
                     self.g_cur.addr.eq(Mux(store_now, w["carry_addr"], w["cur_addr"])),
                     self.g_cur.data.eq(Mux(store_now, d_of_t0, lanes.g_cur))]
        # the saturation flags come registered out of the lanes: only the count is left here
        active = Cat(*[w["active"] > l for l in range(P)])
        n_sat = sum((lanes.sat_lif & active)[l] + (lanes.sat_current & active)[l] + (lanes.sat_affine & active)[l]
                    for l in range(P))
        m.d.comb += [cnt.lifg_updates.eq(Mux(a["v"] & a["first"] & ~a["load"] & ~a["store"], a["active"], 0)),
                     cnt.lifg_grad_writes.eq(self.g_a4.en + self.g_cur.en),
                     cnt.lifg_saturations.eq(Mux(at_first, n_sat, 0))]
        return Cat(*v_taps).any()
