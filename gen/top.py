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

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .backward.datapath import BackwardDatapath
from .backward.stepped_address import STAGE_LATENCY
from .config import HardwareConfig
from .descriptor import Pass
from .engines import ClusterFourEngine, ClusterOneEngine, ClusterOneZeroSkipEngine, ClusterTwoThreeEngine
from .geometry import TAP_ORDER
from .host import HostInterface
from .hostmap import host_map
from .memories import BufferMemories, DatapathPort
from .tilegeo import TileGeometryUnit

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
    """The TT-SNN accelerator (forward engines and backward datapath) for one
    :class:`HardwareConfig`: instantiates and connects the host interface
    (:class:`gen.host.HostInterface`), the memories (:class:`gen.memories.BufferMemories`), the
    tile geometry, the engines and the backward datapath; holds only start / done.

    Ports: ``host_addr``, ``host_wdata``, ``host_write`` (1-cycle strobe), ``host_read``
    (1-cycle strobe), ``host_rdata``/``host_rvalid`` (2 cycles after ``host_read``), ``busy``
    (high while a tile runs, and one draining cycle after the engines' last, for the counter
    bank's registered increments), ``done`` (rises at the end of a tile with every counter
    final, stays high until the next start), ``event`` (rises when an input ring slot is freed, an output row is complete
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

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        busy, done = Signal(), Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]
        m.submodules.geometry = geometry = TileGeometryUnit(cfg)
        zero_skip = cfg.arrangement.cluster1 == "zero_skip"
        m.submodules.e1 = e1 = (ClusterOneZeroSkipEngine if zero_skip else ClusterOneEngine)(cfg)
        m.submodules.e23 = e23 = ClusterTwoThreeEngine(cfg)
        m.submodules.e4 = e4 = ClusterFourEngine(cfg)
        m.submodules.backward = bw = BackwardDatapath(cfg)
        engines = (e1, e23, e4)
        count_widths = {"cycles": 1}
        for unit in engines + (bw,):
            count_widths.update({name: len(unit.counts[name]) for name, _ in unit.counts.shape()})
        m.submodules.host = host = HostInterface(cfg, count_widths)
        for port in ("host_addr", "host_wdata", "host_write", "host_read"):
            m.d.comb += getattr(host, port).eq(getattr(self, port))
        m.d.comb += [self.host_rdata.eq(host.host_rdata), self.host_rvalid.eq(host.host_rvalid),
                     self.event.eq(host.event), host.busy.eq(busy), host.done.eq(done),
                     geometry.desc.eq(host.desc), bw.stage.eq(host.stage)]
        for unit in engines:
            m.d.comb += [unit.desc.eq(host.desc), unit.geo.eq(geometry.geo)]
        for unit in engines + (bw,):
            for name, _ in unit.counts.shape():
                m.d.comb += host.counts[name].eq(unit.counts[name])
        self._handshakes(m, host, e1, e23, e4)
        self._memories(m, host, busy, e1, e23, e4, bw)
        self._control(m, host, busy, done, geometry, engines, bw)
        return m

    @staticmethod
    def _handshakes(m, host, e1, e23, e4):
        """Row progress: E1 -> E2 (rows written), E2 -> E1 (slots released: E2's order, and
        timestep outer line1 is one ring of 3T rows in E1's order), E2/E3 -> E4, E4 -> E2/E3;
        the host's streaming registers in and out."""
        si, so = host.stream_in, host.stream_out
        m.d.comb += [e1.in_rows.eq(si.in_rows),
                     e1.released.eq(e23.released), e1.released_e1_order.eq(e23.released_e1_order),
                     e23.e1_rows.eq(e1.rows_done), e23.e4_released.eq(e4.rows_released),
                     e4.rows_written.eq(e23.q23_rows), e4.res_rows.eq(si.res_rows),
                     e4.out_taken.eq(si.out_taken), e4.w4_chunks.eq(si.w4_chunks),
                     so.in_consumed.eq(e1.in_consumed), so.res_consumed.eq(e4.res_consumed),
                     so.out_rows.eq(e4.out_rows), so.out_groups.eq(e4.out_groups),
                     so.w4_consumed.eq(e4.w4_consumed),
                     e23.w2_chunks.eq(si.w2_chunks), e23.w3_chunks.eq(si.w3_chunks),
                     so.w2_consumed.eq(e23.w2_consumed), so.w3_consumed.eq(e23.w3_consumed),
                     e1.w1_chunks.eq(si.w1_chunks), so.w1_consumed.eq(e1.w1_consumed)]

    def _memories(self, m, host, busy, e1, e23, e4, bw):
        """The buffer memories and every datapath port of them: read ports the host shares
        while idle, the datapath's own read ports, its write ports; the host's reads of the
        weight-gradient sums (in their accumulator, while idle)."""
        def ports(unit, prefix, table, **kw):
            return [DatapathPort(f"{prefix}_{member}", region, getattr(unit, member).signature, **kw)
                    for member, region in table]

        # the trace region: one read and one write port. The backward's LIF-gradient engine
        # reads it only while a backward stage runs (the host reads the forward's trace words
        # out while a forward tile runs); E4 writes it while a forward tile runs, the host while
        # idle
        backward = busy & (host.desc["pass"] == Pass.BACKWARD)

        reads = (ports(e1, "e1", (("spike_in", "spike_in"), ("w1", "w1")), shared=True)
                 + ports(e23, "e23", (("w2", "w2"), ("w3", "w3")), shared=True)
                 + ports(e4, "e4", (("w4", "w4"), ("affine", "affine")), shared=True)
                 + ports(bw, "bw", (("grad_a", "gbuf"),), shared=True)
                 + ports(e23, "e23", (("line1_a", "line1"), ("line1_b", "line1"), ("line1_c", "line1"),
                                      ("row2_b", "row2"), ("row2_c", "row2")))
                 + ports(e4, "e4", (("line4", "line4"), ("residual", "residual"), ("membrane_in", "membrane")))
                 + ports(bw, "bw", (("trace", "trace"),), shared=True, datapath_owns=backward)
                 + ports(bw, "bw", (("grad_b", "gbuf"), ("weights", "gweights"), ("affine", "affine"))))
        writes = (ports(e1, "e1", (("line1", "line1"),), granularity=self.config.widths.activation)
                  + ports(e23, "e23", (("row2", "row2"), ("line4", "line4")))
                  + ports(e4, "e4", (("membrane_out", "membrane"), ("spikes", "spikes")))
                  + ports(e4, "e4", (("trace", "trace"),), shared=True)
                  + ports(bw, "bw", (("grad_w", "gbuf"),), granularity=self.config.gradients.width)
                  + ports(bw, "bw", (("grad_w2", "gbuf"),)))
        m.submodules.memories = mems = BufferMemories(self.config, reads, writes, host.READABLE, host.WRITABLE)
        units = {"e1": e1, "e23": e23, "e4": e4, "bw": bw}
        for p in reads + writes:
            prefix, member = p.name.split("_", 1)
            wiring.connect(m, getattr(units[prefix], member), getattr(mems, p.name))
        m.d.comb += mems.busy.eq(busy)
        for reg in mems.host_regions:
            wiring.connect(m, getattr(host.regions, reg.name), getattr(mems.host, reg.name))
        wgrad = host.regions.wgrad
        m.d.comb += [bw.wgrad_rd_en.eq(wgrad.rd_en & ~busy), bw.wgrad_rd_addr.eq(wgrad.addr),
                     wgrad.rd_data.eq(bw.wgrad_rd_data)]

    def _control(self, m, host, busy, done, geometry, engines, backward):
        """start / done. The tile geometry is registered from the descriptor (its unit's
        latency), the backward engines' strides from the stage registers
        (:data:`gen.backward.stepped_address.STAGE_LATENCY`): a start that follows the last
        descriptor or stage write sooner than the longer of the two waits for it (pending),
        which is not counted in ``cycles``."""
        latency = max(geometry.latency, STAGE_LATENCY)
        settle = Signal(range(latency + 1))
        desc_write = host.desc_write | host.stage_write
        m.d.sync += settle.eq(Mux(desc_write, latency, Mux(settle == 0, 0, settle - 1)))
        settled = (settle == 0) & ~desc_write
        pending = Signal()
        pipeline_busy = pending | backward.busy
        for e in engines:
            pipeline_busy = pipeline_busy | e.busy
        start = host.start
        go = (start | pending) & settled                         # the engines' start
        forward = host.desc["pass"] == Pass.FORWARD
        m.d.comb += [e.start.eq(go & forward) for e in engines]
        m.d.comb += backward.start.eq(go & (host.desc["pass"] == Pass.BACKWARD))
        # the counters take their increments one cycle late (gen.host.HostInterface): after the
        # engines' last cycle the tile stays busy one more cycle (draining, not counted in
        # ``cycles``) so that every counter holds its final value when ``done`` rises
        draining = Signal()
        with m.If(start & ~settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(1)]
        with m.Elif((start | pending) & settled):
            m.d.sync += [busy.eq(1), done.eq(0), pending.eq(0)]
        with m.Elif(busy & ~draining & ~pipeline_busy):
            m.d.sync += draining.eq(1)
        with m.Elif(draining):
            m.d.sync += [busy.eq(0), done.eq(1), draining.eq(0)]
        m.d.comb += host.counts.cycles.eq(busy & ~pending & ~draining)
