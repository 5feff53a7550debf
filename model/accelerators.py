"""The two accelerators, built from one hardware configuration.

- :class:`Proposed`: the paper's pipelined 4-cluster design as the generator builds it (gen/):
  G1 on cluster 1's spike PEs, G2/G3 on clusters 2/3 (packed ``Pk`` rank lanes x ``Px``
  columns, weight-stationary chunks in the PE scratchpads; in lock step for PTT, STT's cluster 3
  on cluster 2's q2 rows), the adder merge, G4 on cluster 4, the LIF array; inter-stage data
  stays in line buffers, input and output rows stream through rings. Layers are planned by the
  generator's own driver (:func:`gen.driver.plan_layer`: whole layers as one tile where
  possible); the forward counters of a tile are :func:`model.tile.tile_forward`, the RTL's
  counters (gen.cyclemodel) plus the data-dependent ones. :class:`Proposed` is the RTL in
  the paper's arrangement (zero-skipping cluster 1, STT's sequential chain), :class:`ProposedRTL`
  the RTL in the generator's own arrangement (gen.config.Arrangement).
- :class:`SataLike`: one PE array with the same PE count and the same buffer budget, running
  the sub-convolutions one after another, layer by layer (:mod:`model.array`), with the data
  movement that implies: maps that do not fit the activation buffers go to DRAM, PTT's branch
  output waits for the merge and is the first to be pushed out.

Both read every size from the :class:`gen.config.HardwareConfig`; layers that are not TT
convs (stem, shortcuts, classifier, dense 3x3) run on a single array in both (the proposed
design uses all its PEs as one array for them).

Backward pass (gradient to the input) and weight update: on the single array they follow the
BPTT dataflow of SATA (per layer, timesteps in reverse); on the proposed design (both
arrangements) a TT layer's come from the backward datapath's counters (:mod:`model.rtl_backward`).
docs/energy_model.md lists every assumption.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ttsnn.gen.config import CLUSTER1_KINDS, STT_CHAINS, Arrangement, HardwareConfig

from .array import ArrayMachine, Step, array_shape, core_backward, core_forward, core_weight_update, spill_schedule
from .counts import (Counts, LayerResult, PassResult, Sparsity, full_timesteps,
                     has_residual, layer_cores)
from . import rtl_backward
from .energy_table import EnergyTable, Memory
from .tile import TileForward, _glb, config_key, counters_to_counts, tile_forward
from ttsnn.sw.cli_util import UserError

__all__ = ["Accelerator", "Proposed", "ProposedRTL", "SataLike", "make_accelerator", "ACCELERATORS"]

GRAD_BITS = 16     # stored gradients: accumulator width (docs/energy_model.md)


class Accelerator:
    """Common part: memories, leakage, the single-array path and per-layer extras."""
    name = "base"
    #: a TT layer's backward pass comes from the RTL's backward counters (LIF gradient included)
    backward_from_counters = False

    def __init__(self, cfg: HardwareConfig):
        if not isinstance(cfg, HardwareConfig):
            raise UserError(f"expected a gen.config.HardwareConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        w = cfg.widths
        self.memories = {n: Memory(n, b.bytes, b.width_bits) for n, b in cfg.buffers.items()}
        self.state_bits = w.membrane + 1
        rows, cols = array_shape(cfg.total_pes)
        self.array = ArrayMachine(
            pes=cfg.total_pes, rows=rows, cols=cols, weight_bits=w.weight, act_bits=w.activation,
            acc_bits=w.accumulator, grad_bits=GRAD_BITS, memories=self.memories,
            weight="weight", act_in="spike_in", act_out="state_out",
            act_capacity_bytes=sum(cfg.buffers[n].bytes for n in
                                   ("spike_in", "interstage", "residual", "state_out")))

    # ---- leakage ----------------------------------------------------------------------------
    def leakage_mw(self, table: EnergyTable) -> float:
        """Leakage power of the global buffers (same physical buffers in both designs)."""
        return sum(table.sram_leakage_mw(b.bytes) for b in self.cfg.buffers.values())

    # ---- shared per-layer traffic -----------------------------------------------------------
    def _layer_extras(self, spec, T: int, sp: Sparsity, res: dict[str, PassResult]) -> None:
        """LIF, BatchNorm, residual and pooling ops and the layer's DRAM traffic that every
        mapping shares (inputs, outputs, states, gradients, weights, optimizer)."""
        w = self.cfg.widths
        co = spec.out_channels
        ho, wo = spec.out_hw
        hi, wi = spec.in_hw
        neurons = co * ho * wo * T
        fwd, bwd, wu = res["forward"].counts, res["backward"].counts, res["weight_update"].counts
        lif = spec.kind in ("conv1", "conv3x3")
        params = spec.params()
        if spec.kind != "fc":
            if not (spec.is_tt):  # the TT path counts its own affine/LIF (tile counters)
                fwd.add("affine", "mac", 16, neurons)
                if lif:
                    fwd.add("lif", "update", 16, neurons)
                if has_residual(spec):
                    fwd.add("adder", "add", 16, neurons)
        if lif and not (spec.is_tt and self.backward_from_counters):
            bwd.add("lif", "potential_gradient", 16, neurons)
        if spec.is_tt and spec.downsample:
            fwd.add("lif", "compare", 16, 3 * neurons)
        # DRAM: inputs and outputs of the layer
        if not spec.is_tt:
            in_bits = {"conv1": w.activation, "fc": GRAD_BITS}.get(spec.kind, 1)
            steps_in = 1 if spec.kind == "conv1" else T  # the image is read once (direct coding)
            fwd.add("dram", "read", 1, spec.in_channels * hi * wi * steps_in * in_bits)
            fwd.add("dram", "read", 1, params * w.weight)
            if has_residual(spec):
                fwd.add("dram", "read", 1, neurons * w.membrane)
            if lif:
                fwd.add("dram", "write", 1, neurons * self.state_bits)
            elif spec.kind == "shortcut":
                fwd.add("dram", "write", 1, neurons * w.membrane)
            else:
                fwd.add("dram", "write", 1, co * T * GRAD_BITS)
            # backward: gradient of the outputs (+ states) in, gradient of the inputs out
            bwd.add("dram", "read", 1, neurons * GRAD_BITS + (neurons * self.state_bits if lif else 0))
            bwd.add("dram", "read", 1, params * w.weight)
            if spec.kind != "conv1":
                bwd.add("dram", "write", 1, spec.in_channels * hi * wi * T * GRAD_BITS)
            wu.add("dram", "read", 1, spec.in_channels * hi * wi * steps_in * in_bits)
        # weight update: gradient out, SGD with momentum (read w, v; write w, v)
        wu.add("dram", "write", 1, params * GRAD_BITS)
        wu.add("dram", "read", 1, params * (w.weight + GRAD_BITS))
        wu.add("dram", "write", 1, params * (w.weight + GRAD_BITS))
        wu.add("optimizer", "update", 16, params)

    def _dense_layer(self, spec, T: int, sp: Sparsity) -> dict[str, PassResult]:
        """A non-TT layer on the single array (both designs)."""
        m = self.array
        res = {p: PassResult() for p in ("forward", "backward", "weight_update")}
        (core,) = layer_cores(spec, T)
        dens = sp.input_density(spec.name) if core.operand == "spike" else 1.0
        in_bits = 1 if core.operand == "spike" else m.act_bits
        gd = sp.grad_density if spec.kind != "fc" else 1.0
        res["forward"].cycles = core_forward(m, core, dens, res["forward"].counts, in_bits, m.acc_bits)
        if spec.kind != "conv1":
            res["backward"].cycles = core_backward(m, core, gd, res["backward"].counts)
        wdens = dens if core.operand == "spike" else gd
        res["weight_update"].cycles = core_weight_update(m, core, wdens, res["weight_update"].counts, in_bits)
        co, (ho, wo) = spec.out_channels, spec.out_hw
        lanes = self.cfg.clusters.lif_lanes * 4 if spec.kind != "fc" else 1
        res["forward"].cycles += math.ceil(co * ho * wo * T / lanes) if spec.kind != "fc" else 0
        return res

    def run_layer(self, spec, T: int, sp: Sparsity) -> LayerResult:
        if spec.is_tt:
            res, info = self._tt_layer(spec, T, sp)
        else:
            res, info = self._dense_layer(spec, T, sp), {"mapping": "single array"}
        self._layer_extras(spec, T, sp, res)
        return LayerResult(spec.name, spec.kind, spec.mode, res, info)

    def _tt_layer(self, spec, T, sp):  # pragma: no cover - abstract
        raise NotImplementedError


class SataLike(Accelerator):
    """One array of ``cfg.total_pes`` PEs, sub-convolutions one after another."""
    name = "sata"

    def _tt_layer(self, spec, T: int, sp: Sparsity):
        m, w = self.array, self.cfg.widths
        g1, g2, g3, g4 = layer_cores(spec, T)
        r, cin = spec.rank, spec.in_channels
        area = g1.positions
        nf = full_timesteps(spec, T)
        nr = T - nf
        mode = spec.mode
        dens, gd = sp.input_density(spec.name), sp.grad_density
        fwd, bwd, wu = (PassResult() for _ in range(3))
        A, ACC, G = w.activation, w.accumulator, GRAD_BITS
        # ---- forward: the sub-convolutions and the maps between them ----
        fwd.cycles += core_forward(m, g1, dens, fwd.counts, 1, A)
        if mode == "stt":
            fwd.cycles += core_forward(m, g2, 1.0, fwd.counts, A, A)
            fwd.cycles += core_forward(m, g3, 1.0, fwd.counts, A, A)
            steps = [Step("G1", ("x",), ("q1",)), Step("G2", ("q1",), ("q2",)),
                     Step("G3", ("q2",), ("q3",)), Step("G4", ("q3",), ())]
            sizes = {"x": cin * area * T, "q1": r * area * T * A, "q2": r * area * T * A,
                     "q3": r * area * T * A}
            consumers = {"q1": 1, "q2": 1, "q3": 1}
            saved = {"q2": sizes["q2"], "q3": sizes["q3"]}      # inputs of G3 and G4 (BPTT)
        else:
            # PTT (and HTT's full timesteps): both branches at accumulator width, then merged
            fwd.cycles += core_forward(m, g2, 1.0, fwd.counts, A, ACC)
            fwd.cycles += core_forward(m, g3, 1.0, fwd.counts, A, ACC)
            merge = r * area * nf
            fwd.counts.add("mult_pe", "accumulate", 16, merge)      # a2 + a3 on the array
            fwd.counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in), 2 * merge * ACC / m.width(m.act_in))
            fwd.counts.add(f"glb.{m.act_out}", "write", m.width(m.act_out), merge * A / m.width(m.act_out))
            fwd.cycles += math.ceil(merge / m.pes)
            steps = [Step("G1", ("x",), ("q1",)), Step("G2", ("q1",), ("a2",)),
                     Step("G3", ("q1",), ("a3",)), Step("merge", ("a2", "a3"), ("m",)),
                     Step("G4", ("m", "q1"), ())]
            sizes = {"x": cin * area * T, "q1": r * area * T * A, "a2": r * area * nf * ACC,
                     "a3": r * area * nf * ACC, "m": r * area * nf * A}
            consumers = {"q1": 2 + (1 if nr else 0), "a2": 1, "a3": 1, "m": 1}
            saved = {"m": sizes["m"]}                              # G4's input on full steps
        fwd.cycles += core_forward(m, g4, 1.0, fwd.counts, A, ACC)
        cap = m.act_capacity_bytes * 8
        spill = spill_schedule(steps, sizes, cap, in_dram=("x",))
        for k, n in consumers.items():
            fwd.counts.add("dram", "write", 1, spill[k])
            fwd.counts.add("dram", "read", 1, spill[k] * n)
        # BPTT keeps the inputs of G3 (STT) and G4; what was not spilled is written now
        for k, bits in saved.items():
            fwd.counts.add("dram", "write", 1, bits - spill[k])
        self._tt_common_forward(spec, T, fwd.counts)
        co, (ho, wo) = spec.out_channels, spec.out_hw
        fwd.cycles += math.ceil(co * ho * wo * T / m.pes)           # LIF/affine on the array
        # ---- backward: transposed sub-convolutions, gradients between them ----
        bwd.cycles += core_backward(m, g4, gd, bwd.counts)
        if mode == "stt":
            bwd.cycles += core_backward(m, g3, 1.0, bwd.counts)
            bwd.cycles += core_backward(m, g2, 1.0, bwd.counts)
            bsteps = [Step("G4T", ("gI",), ("g3",)), Step("G3T", ("g3",), ("g2",)),
                      Step("G2T", ("g2",), ("g1",)), Step("G1T", ("g1",), ())]
            bsizes = {"gI": spec.out_channels * area * T * G, "g3": r * area * T * G,
                      "g2": r * area * T * G, "g1": r * area * T * G}
            bcons = {"g3": 1, "g2": 1, "g1": 1}
        else:
            bwd.cycles += core_backward(m, g2, 1.0, bwd.counts)
            bwd.cycles += core_backward(m, g3, 1.0, bwd.counts)
            merge = r * area * nf
            bwd.counts.add("mult_pe", "accumulate", 16, merge)
            bwd.cycles += math.ceil(merge / m.pes)
            bsteps = [Step("G4T", ("gI",), ("gm",)), Step("G2T", ("gm",), ("b2",)),
                      Step("G3T", ("gm",), ("b3",)), Step("merge", ("b2", "b3"), ("g1",)),
                      Step("G1T", ("g1", "gm"), ())]
            bsizes = {"gI": spec.out_channels * area * T * G, "gm": r * area * T * G,
                      "b2": r * area * nf * G, "b3": r * area * nf * G, "g1": r * area * nf * G}
            bcons = {"gm": 2 + (1 if nr else 0), "b2": 1, "b3": 1, "g1": 1}
        bwd.cycles += core_backward(m, g1, 1.0, bwd.counts)
        bspill = spill_schedule(bsteps, bsizes, cap, in_dram=("gI",))
        for k, n in bcons.items():
            bwd.counts.add("dram", "write", 1, bspill[k])
            bwd.counts.add("dram", "read", 1, bspill[k] * n)
        self._tt_common_backward(spec, T, bwd.counts)
        bwd.cycles += math.ceil(spec.out_channels * ho * wo * T / m.pes)
        # ---- weight update: each core's gradient, inputs from the saved maps ----
        wu.cycles += core_forward(m, g1, dens, wu.counts, 1, A)     # recompute q1 from spikes
        wu.cycles += core_weight_update(m, g1, dens, wu.counts, 1)
        wu.cycles += core_weight_update(m, g2, 1.0, wu.counts, A)
        wu.cycles += core_weight_update(m, g3, 1.0, wu.counts, A)
        wu.cycles += core_weight_update(m, g4, gd, wu.counts, A)
        wu.counts.add("dram", "read", 1, sum(saved.values()))
        wu.counts.add("dram", "read", 1, cin * area * T)            # input spikes again
        return {"forward": fwd, "backward": bwd, "weight_update": wu}, {
            "mapping": "single array, sub-convolutions in sequence",
            "saved_bits": sum(saved.values()),   # kept in DRAM for the weight update (BPTT)
            "spilled_bits_forward": {k: v for k, v in spill.items() if k != "x"},
            "spilled_bits_backward": {k: v for k, v in bspill.items() if k != "gI"}}

    def _tt_common_forward(self, spec, T, counts: Counts) -> None:
        w = self.cfg.widths
        co, (ho, wo) = spec.out_channels, spec.out_hw
        hi, wi = spec.in_hw
        neurons = co * ho * wo * T
        counts.add("affine", "mac", 16, neurons)
        counts.add("lif", "update", 16, neurons)
        if has_residual(spec):
            counts.add("adder", "add", 16, neurons)
            counts.add("dram", "read", 1, neurons * w.membrane)
        counts.add("dram", "read", 1, spec.in_channels * hi * wi * T)   # input spikes
        counts.add("dram", "read", 1, spec.params() * w.weight)
        counts.add("dram", "write", 1, neurons * self.state_bits)

    def _tt_common_backward(self, spec, T, counts: Counts) -> None:
        w = self.cfg.widths
        co, (ho, wo) = spec.out_channels, spec.out_hw
        hi, wi = spec.in_hw
        neurons = co * ho * wo * T
        counts.add("dram", "read", 1, neurons * (GRAD_BITS + self.state_bits))
        counts.add("dram", "read", 1, spec.params() * w.weight)
        counts.add("dram", "write", 1, spec.in_channels * hi * wi * T * GRAD_BITS)
        if has_residual(spec):
            counts.add("dram", "write", 1, neurons * GRAD_BITS)


#: Plans of TT layers, shared by every accelerator instance (planning is the slow part):
#: key -> (plan, configuration the plan and counters use, weights streamed).
_PLANS: dict[tuple, tuple] = {}
#: Forward tiles by (configuration, shape, density, weights loaded, variant).
_TILES: dict[tuple, TileForward] = {}


def plan_tt_layer(cfg: HardwareConfig, spec, T: int):
    """The tile plan of a TT layer (:func:`gen.driver.plan_layer`, for its mode and HTT
    schedule), the configuration it is planned and counted on, and whether its cores are
    streamed. A layer whose cores exceed the weight buffer even when streamed (``plan_layer``
    raises: a core whose chunk is larger than its region, or a rank beyond the streamed
    limit; MS-ResNet34's 512-channel stage streams on the paper configurations) is planned on a copy of ``cfg`` whose weight regions are large enough
    (:func:`gen.driver.plan_layer_any_weights`: only the weight buffer and the rank/pointwise
    limits grow, the datapath and every other region stay); the cores larger than their
    regions are charged as streamed from DRAM once per output row and timestep
    (:func:`streamed_core_refetch`, docs/energy_model.md, section 2)."""
    from ttsnn.gen.driver import plan_layer_any_weights
    hi, wi = spec.in_hw
    sched = tuple(spec.schedule) if spec.mode == "htt" else (True,) * T
    key = (config_key(cfg), T, spec.in_channels, hi, wi, spec.rank, spec.out_channels,
           bool(spec.downsample), has_residual(spec), spec.mode, sched)
    if key not in _PLANS:
        args = ((T, spec.in_channels, hi, wi), spec.rank, spec.out_channels)
        kw = dict(pool=bool(spec.downsample), residual=has_residual(spec), mode=spec.mode,
                  schedule=sched)
        plan, planned_on, fits = plan_layer_any_weights(cfg, *args, **kw)
        _PLANS[key] = (plan, planned_on, not fits)
    return _PLANS[key]


def streamed_core_refetch(cfg: HardwareConfig, spec, sched):
    """The forward traffic of a layer whose cores exceed ``cfg``'s weight regions even when
    streamed (the generated rings of docs/architecture.md, "Weight streaming: G1, G2, G3 and
    G4, built", cannot run it, so it is counted on a copy with larger regions), beyond loading
    them once per tile: this estimate fetches each core larger than its region
    (:func:`gen.driver.streamed_cores`) once per output row and timestep it serves (G2/G3:
    full timesteps only), through the weight buffer. Returns ``charge(tf, rows, counts,
    memories)``, which adds a tile's re-fetches (every fetch but the tile's load, already in
    its host words) as DRAM reads and weight-buffer writes and returns their bits."""
    from ttsnn.gen.driver import streamed_cores
    streamed_core_regions = streamed_cores(cfg, spec.rank, spec.in_channels, spec.out_channels)
    T, full = len(sched), (sum(1 for f in sched if f) if spec.mode == "htt" else len(sched))

    def charge(tf: TileForward, rows: int, counts, memories) -> float:
        bits = 0.0
        for name in streamed_core_regions:
            words = tf.regions[name][0]
            fetches = rows * (full if name in ("w2", "w3") else T) - 1
            width = cfg.regions[name].width_bits
            _glb(counts, memories, cfg.regions[name].buffer, "write", width, words * fetches)
            bits += words * fetches * width
        counts.add("dram", "read", 1, bits)
        return bits

    return charge


class Proposed(Accelerator):
    """The pipelined 4-cluster design as generated (gen/), in the paper's arrangement, tiled by
    the generator's driver.

    ``cluster1``, ``stt_chain``: the generator's ``arrangement`` (gen.config.Arrangement); the
    defaults are the paper's: the zero-skipping cluster 1 (one step per 1-spike of a pixel,
    gen/engines/cluster1_zero_skip.py) and STT's sequential chaining (no G2 -> G3 path).
    :class:`ProposedRTL` is the generator's own arrangement (dense cluster 1, pipelined STT).
    Both are RTL: the forward counters of every tile are :func:`model.tile.tile_forward`, the
    RTL's counters (:mod:`gen.cyclemodel`) with the data-dependent ones from the layer's
    measured input spike density (the zero-skipping cluster 1's cycles as expected row lengths,
    spikes independent); a TT layer's backward pass and weight update run on the backward
    datapath (gen/backward/, the same in both arrangements), priced from its counters
    (:mod:`model.rtl_backward`); the forward pass stores the trace for it (its trace words
    are host words of the forward's tiles).
    """
    name = "proposed"
    backward_from_counters = True

    def __init__(self, cfg: HardwareConfig, cluster1: str = "zero_skip", stt_chain: str = "sequential"):
        if not isinstance(cfg, HardwareConfig):
            raise UserError(f"expected a gen.config.HardwareConfig, got {type(cfg).__name__}")
        arr = Arrangement(stt_chain=stt_chain, cluster1=cluster1)
        if stt_chain not in STT_CHAINS or cluster1 not in CLUSTER1_KINDS:
            raise UserError(f"arrangement: stt_chain one of {STT_CHAINS}, cluster1 one of "
                            f"{CLUSTER1_KINDS}; got {stt_chain!r}, {cluster1!r}")
        super().__init__(replace(cfg, arrangement=arr))
        self.memories = {**self.memories, **rtl_backward.backward_memories(self.cfg)}

    def leakage_mw(self, table: EnergyTable) -> float:
        """The global buffers and the backward datapath's memories."""
        return super().leakage_mw(table) + sum(table.sram_leakage_mw(m.bytes)
                                               for m in rtl_backward.backward_memories(self.cfg).values())

    def plan(self, spec, T: int):
        """``(plan, configuration, weights_streamed)`` of a TT layer (:func:`plan_tt_layer`)."""
        return plan_tt_layer(self.cfg, spec, T)

    def _tile(self, tcfg, tile, spec, T, sched, dens, load) -> TileForward:
        key = (config_key(tcfg), tile.height, tile.width, tile.in_channels, tile.rank,
               tile.out_channels, tile.pool, tuple(tile.zero_halo), tile.pack, tile.order,
               spec.mode, tuple(sched), has_residual(spec), dens, load)
        if key not in _TILES:
            _TILES[key] = tile_forward(tcfg, tile, spec.mode, sched, density=dens,
                                       residual=has_residual(spec), load_weights=load)
        return _TILES[key]

    def _tt_layer(self, spec, T: int, sp: Sparsity):
        res, info = self._tt_forward(spec, T, sp)
        lb = rtl_backward.layer_backward(self.cfg, spec, T)
        res["backward"], res["weight_update"] = rtl_backward.backward_counts(self.cfg, lb, self.memories)
        # the trace reaches DRAM in the forward's own host words: the driver reads each output
        # word's trace word (spike, window bit, arg-max per lane) from region trace
        # (model.tile.host_regions), so nothing is added for it here
        info.update(backward_tiles=lb.tiles, backward_tile_hw=list(lb.tile), backward_chunk=lb.chunk,
                    backward_host_words=lb.host_words_in + lb.host_words_out,
                    backward_counters={**{f"backward.{k}": v for k, v in lb.backward.items()},
                                       **{f"weight_update.{k}": v for k, v in lb.weight_update.items()}})
        if lb.grown:
            g = lb.config.gradients
            info["backward_note"] = (
                f"no backward tile of this layer fits the [gradients] memories of {self.cfg.name!r}: "
                f"counted on a copy with larger ones (buffer {g.buffer_bytes} B, stage weights "
                f"{g.stage_weight_bytes} B, trace {g.trace_bytes} B, {g.wgrad_entries} weight-gradient "
                f"entries), priced at the configured memories' access energies")
        return res, info

    def _tt_forward(self, spec, T: int, sp: Sparsity):
        """The forward pass of a TT layer from its tiles' RTL counters."""
        cfg = self.cfg
        plan, tcfg, streamed = self.plan(spec, T)
        sched = tuple(spec.schedule) if spec.mode == "htt" else (True,) * T
        dens = sp.input_density(spec.name)
        res = {p: PassResult() for p in ("forward", "backward", "weight_update")}
        fwd = res["forward"]
        busy_f = {"c1": 0.0, "c2": 0.0, "c3": 0.0, "c4": 0.0, "lif": 0.0}
        counters_total: dict[str, float] = {}
        refetch = streamed_core_refetch(cfg, spec, sched) if streamed else None
        refetch_bits = 0.0
        for tile in plan:
            load = tile.weights_change or streamed
            tf = self._tile(tcfg, tile, spec, T, sched, dens, load)
            c = tf.counters
            for k, v in c.items():
                counters_total[k] = counters_total.get(k, 0.0) + v
            counters_to_counts(cfg, tf, fwd.counts, self.memories)
            if refetch is not None:
                refetch_bits += refetch(tf, tile.height, fwd.counts, self.memories)
            fwd.cycles += c["cycles"]
            for k in busy_f:
                busy_f[k] += c[f"{k}_busy"]
        fwd.busy = busy_f
        info = {"mapping": "4-cluster pipeline", "tiles": len(plan),
                "tile_hw": [plan.tile_height, plan.tile_width],
                "tile_out_channels": plan.tile_out_channels, "pack": plan.pack,
                "order": "timestep outer" if plan.order else "row outer",
                "weights_streamed": streamed, "counters": counters_total, "saved_bits": 0.0}
        if streamed:
            info["stream_refetch_bits"] = refetch_bits
            info["note"] = (f"the cores exceed the weight buffer of configuration {cfg.name!r}: planned "
                            f"and counted on a copy with weight regions large enough (same datapath, "
                            f"{tcfg.buffers['weight'].bytes} B weight buffer); the cores larger than "
                            f"their regions are streamed from DRAM once per output row and timestep "
                            f"({refetch_bits / 8:.0f} B more than once per tile, {len(plan)} tiles)")
        return res, info


class ProposedRTL(Proposed):
    """The proposed design in the generator's own arrangement (gen/; configs/small.toml and
    configs/paper_dense.toml build it, configs/paper.toml the paper's): cluster 1 steps
    through every input channel (P PEs over input channels and an adder tree), STT's
    G2 -> G3 is a row pipeline."""
    name = "proposed-rtl"

    def __init__(self, cfg: HardwareConfig):
        super().__init__(cfg, cluster1="dense", stt_chain="pipelined")


ACCELERATORS = {"proposed": Proposed, "proposed-rtl": ProposedRTL, "sata": SataLike}


def make_accelerator(name: str, cfg: HardwareConfig) -> Accelerator:
    if name not in ACCELERATORS:
        raise UserError(f"unknown accelerator {name!r}; choose one of {', '.join(ACCELERATORS)}")
    return ACCELERATORS[name](cfg)
