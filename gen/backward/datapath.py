"""The backward datapath: the LIF-gradient engine and the core-stage engine sharing the
gradient buffer's ports (they never run at the same time: one stage per ``start``)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..engines.common import counts_layout
from .core_stage_engine import CoreStageEngine, stage_read_port, stage_write_port
from .lif_gradient_engine import TRACE_BITS_PER_LANE, LIFGradientEngine
from .stage_layout import STAGE_ADDR_BITS, STAGE_LAYOUT, StageKind

__all__ = ["BackwardDatapath"]


class BackwardDatapath(wiring.Component):
    """Runs one backward stage (:data:`gen.backward.stage_layout.STAGE_LAYOUT`) per ``start``:
    ``kind = LIF`` on the :class:`LIFGradientEngine`, mat-vec and outer-product stages on the
    :class:`CoreStageEngine`.

    Ports: ``start``, ``stage`` (in); the gradient buffer's two read ports ``grad_a`` and
    ``grad_b`` and two write ports ``grad_w`` (``en``: one bit per ``Gb``-bit lane) and ``grad_w2``; ``weights`` (stage weight
    words), ``trace``, ``affine`` (read ports); ``wgrad_rd_en``/``wgrad_rd_addr``/
    ``wgrad_rd_data`` (the host reads the weight-gradient sums while idle); ``busy``;
    ``counts`` (both engines' counter increments)."""

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        P, gr = config.lanes, config.gradients
        self.core = CoreStageEngine(config, config.backward_regions["wgrad"].depth)
        self.lif = LIFGradientEngine(config)
        counts = {}
        for eng in (self.core, self.lif):
            counts.update({name: len(sig) for name, sig in
                           ((n, eng.counts[n]) for n, _ in eng.counts.shape())})
        super().__init__({
            "start": In(1), "stage": In(STAGE_LAYOUT),
            "grad_a": Out(stage_read_port(P * gr.width)), "grad_b": Out(stage_read_port(P * gr.width)),
            "grad_w": Out(stage_write_port(P * gr.width, P)), "grad_w2": Out(stage_write_port(P * gr.width)),
            "weights": Out(stage_read_port(P * config.widths.weight)),
            "trace": Out(stage_read_port(P * TRACE_BITS_PER_LANE)),
            "affine": Out(stage_read_port(config.regions["affine"].width_bits)),
            "wgrad_rd_en": In(1), "wgrad_rd_addr": In(STAGE_ADDR_BITS), "wgrad_rd_data": Out(P * gr.wgrad_tile),
            "busy": Out(1),
            "counts": Out(counts_layout(counts)),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.config.lanes
        m.submodules.core, m.submodules.lif = core, lif = self.core, self.lif
        is_lif = self.stage.kind == StageKind.LIF
        m.d.comb += [core.stage.eq(self.stage), lif.stage.eq(self.stage),
                     core.start.eq(self.start & ~is_lif), lif.start.eq(self.start & is_lif),
                     self.busy.eq(core.busy | lif.busy)]
        # shared ports: the running engine's request (the other one's en is low)
        for port, a, b in ((self.grad_a, core.inp, lif.e), (self.grad_b, core.grad, lif.extra)):
            m.d.comb += [port.en.eq(a.en | b.en), port.addr.eq(Mux(b.en, b.addr, a.addr)),
                         a.data.eq(port.data), b.data.eq(port.data)]
        m.d.comb += [self.grad_w.en.eq(core.out.en | Cat(*[lif.g_a4.en] * P)),       # the LIF writes every lane
                     self.grad_w.addr.eq(Mux(lif.g_a4.en, lif.g_a4.addr, core.out.addr)),
                     self.grad_w.data.eq(Mux(lif.g_a4.en, lif.g_a4.data, core.out.data))]
        wiring.connect(m, wiring.flipped(self.grad_w2), lif.g_cur)
        wiring.connect(m, wiring.flipped(self.weights), core.weights)
        wiring.connect(m, wiring.flipped(self.trace), lif.trace)
        wiring.connect(m, wiring.flipped(self.affine), lif.affine)
        m.d.comb += [core.acc_rd_en.eq(self.wgrad_rd_en), core.acc_rd_addr.eq(self.wgrad_rd_addr),
                     self.wgrad_rd_data.eq(core.acc_rd_data)]
        for eng in (core, lif):
            for name, _ in eng.counts.shape():
                m.d.comb += self.counts[name].eq(eng.counts[name])
        return m
