"""The two accelerators, built from one hardware configuration.

- :class:`Proposed`: the paper's pipelined 4-cluster design as the generator builds it (gen/):
  G1 on cluster 1's spike PEs, G2/G3 on clusters 2/3 (packed ``Pk`` rank lanes x ``Px``
  columns, weight-stationary chunks in the PE scratchpads; in lock step for PTT, STT's cluster 3
  on cluster 2's q2 rows), the adder merge, G4 on cluster 4, the LIF array; inter-stage data
  stays in line buffers, input and output rows stream through rings. Layers are planned by the
  generator's own driver (:func:`gen.driver.plan_layer`: whole layers as one tile where
  possible); the forward counters of a tile are :func:`model.tile.tile_forward`, the RTL's
  counters (gen.cyclemodel) plus the data-dependent ones. :class:`Proposed` itself is the
  paper's idealised variant (event-driven cluster 1, no G2 -> G3 path), :class:`ProposedRTL`
  the generated RTL.
- :class:`SataLike`: one PE array with the same PE count and the same buffer budget, running
  the sub-convolutions one after another, layer by layer (:mod:`model.array`), with the data
  movement that implies: maps that do not fit the activation buffers go to DRAM, PTT's branch
  output waits for the merge and is the first to be pushed out.

Both read every size from the :class:`gen.config.HardwareConfig`; layers that are not TT
convs (stem, shortcuts, classifier, dense 3x3) run on a single array in both (the proposed
design uses all its PEs as one array for them).

Backward pass (gradient to the input) and weight update follow the BPTT dataflow of SATA
(per layer, timesteps in reverse, each core's transposed conv and weight gradient on the unit
that runs the core forward, with that unit's forward lanes). docs/energy_model.md lists every
assumption.
"""

from __future__ import annotations

import math
from dataclasses import replace

from gen import cyclemodel as cm
from gen.config import HardwareConfig
from gen.geometry import TileGeometry

from .array import ArrayMachine, Step, array_shape, core_backward, core_forward, core_weight_update, spill_schedule
from .counts import (Counts, LayerResult, PassResult, Sparsity, full_timesteps,
                     has_residual, layer_cores)
from . import rtl_backward
from .energy_table import EnergyTable, Memory
from .tile import (TileForward, TileShape, _glb, add_scratchpad_counts, config_key,
                   counters_to_counts, tile_forward)
from sw.cli_util import UserError

__all__ = ["Accelerator", "Proposed", "ProposedRTL", "SataLike", "make_accelerator", "ACCELERATORS"]

GRAD_BITS = 16     # stored gradients: accumulator width (docs/energy_model.md)


class Accelerator:
    """Common part: memories, leakage, the single-array path and per-layer extras."""
    name = "base"
    #: a TT layer's backward pass comes from the RTL's backward counters (LIF gradient included)
    backward_from_counters = False

    def __init__(self, cfg: HardwareConfig):
        if not isinstance(cfg, HardwareConfig):
            raise ValueError(f"expected a gen.config.HardwareConfig, got {type(cfg).__name__}")
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
#: Per-timestep counters of a tile shape (T = 1, full or reduced timestep).
_STEP: dict[tuple, dict] = {}


def plan_tt_layer(cfg: HardwareConfig, spec, T: int):
    """The tile plan of a TT layer (:func:`gen.driver.plan_layer`, for its mode and HTT
    schedule), the configuration it is planned and counted on, and whether its cores are
    streamed. A layer whose cores exceed the weight buffer (``plan_layer`` raises: the rank
    above ``limits.max_rank`` or a core larger than its region; MS-ResNet34's 512-channel stage)
    is planned on a copy of ``cfg`` whose weight regions are large enough
    (:func:`gen.driver.plan_layer_any_weights`: only the weight buffer and the rank/pointwise
    limits grow, the datapath and every other region stay) and its cores are charged as
    streamed from DRAM for every tile (docs/energy_model.md, section 2)."""
    from gen.driver import plan_layer_any_weights
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


def _step_counters(cfg: HardwareConfig, s: TileShape, full: bool) -> dict:
    """The RTL's counters of one timestep of a tile (T = 1; HTT: a full or a reduced one)."""
    key = (config_key(cfg), s, full)
    if key not in _STEP:
        one = replace(s, timesteps=1, schedule=(bool(full),))
        _STEP[key] = cm.tile_counters(cfg, one)
    return _STEP[key]


class Proposed(Accelerator):
    """The pipelined 4-cluster design (gen/), tiled by the generator's driver.

    The forward counters of every tile are :func:`model.tile.tile_forward`, i.e. the RTL's
    counters (:mod:`gen.cyclemodel`) plus the data-dependent ones. ``event_driven``: cluster 1
    is output-stationary over P rank lanes and steps only on 1-spikes, and the backward G1^T
    skips the inputs whose surrogate gradient the previous layer zeroes (the sparsity-aware
    design of the paper and SATA); ``False`` is the generated RTL (P PEs over input channels
    and an adder tree, ``r * ceil(Cin/P)`` steps per pixel). ``stt_chain``: 'sequential' (the
    paper's clusters: no G2 -> G3 path, STT's clusters 2 and 3 never overlap) or 'pipelined'
    (the generated RTL: cluster 3 is its own engine on cluster 2's q2 rows).
    ``python -m model ... --accel proposed`` is the paper's design (event-driven, sequential);
    ``--accel proposed-rtl`` is the generated RTL, whose forward counters equal the RTL's
    (tests/model/test_rtl_agreement.py).
    """
    name = "proposed"

    #: the backward pass and weight update as an assumed mapping (:class:`_AssumedBackward`);
    #: :class:`ProposedRTL` takes them from the RTL's backward counters instead
    assumed_backward = True

    def __init__(self, cfg: HardwareConfig, event_driven: bool = True, stt_chain: str = "sequential"):
        super().__init__(cfg)
        if stt_chain not in ("pipelined", "sequential"):
            raise UserError(f"stt_chain must be 'pipelined' or 'sequential', got {stt_chain!r}")
        self.event_driven = bool(event_driven)
        self.stt_chain = stt_chain

    def plan(self, spec, T: int):
        """``(plan, configuration, weights_streamed)`` of a TT layer (:func:`plan_tt_layer`)."""
        return plan_tt_layer(self.cfg, spec, T)

    def _tile(self, tcfg, tile, spec, T, sched, dens, load) -> TileForward:
        key = (config_key(tcfg), tile.height, tile.width, tile.in_channels, tile.rank,
               tile.out_channels, tile.pool, tuple(tile.zero_halo), tile.pack, tile.order,
               spec.mode, tuple(sched), has_residual(spec), dens, load, self.event_driven,
               self.stt_chain)
        if key not in _TILES:
            _TILES[key] = tile_forward(tcfg, tile, spec.mode, sched, density=dens,
                                       residual=has_residual(spec), load_weights=load,
                                       event_driven=self.event_driven, stt_chain=self.stt_chain)
        return _TILES[key]

    def _tt_layer(self, spec, T: int, sp: Sparsity):
        cfg = self.cfg
        plan, tcfg, streamed = self.plan(spec, T)
        sched = tuple(spec.schedule) if spec.mode == "htt" else (True,) * T
        dens = sp.input_density(spec.name)
        res = {p: PassResult() for p in ("forward", "backward", "weight_update")}
        fwd = res["forward"]
        busy_f = {"c1": 0.0, "c2": 0.0, "c3": 0.0, "c4": 0.0, "lif": 0.0}
        counters_total: dict[str, float] = {}
        backward = _AssumedBackward(self, spec, T, sp, res, tcfg, sched) if self.assumed_backward else None
        for tile in plan:
            load = tile.weights_change or streamed
            tf = self._tile(tcfg, tile, spec, T, sched, dens, load)
            c = tf.counters
            for k, v in c.items():
                counters_total[k] = counters_total.get(k, 0.0) + v
            counters_to_counts(cfg, tf, fwd.counts, self.memories)
            fwd.cycles += c["cycles"]
            for k in busy_f:
                busy_f[k] += c[f"{k}_busy"]
            if backward is not None:
                backward.tile(tile, tf, load)
        if backward is not None:
            backward.finish()
        fwd.busy = busy_f
        info = {"mapping": "4-cluster pipeline", "tiles": len(plan),
                "tile_hw": [plan.tile_height, plan.tile_width],
                "tile_out_channels": plan.tile_out_channels, "pack": plan.pack,
                "order": "timestep outer" if plan.order else "row outer",
                "weights_streamed": streamed, "counters": counters_total,
                "saved_bits": backward.saved_bits if backward is not None else 0.0}
        if streamed:
            info["note"] = (f"the cores exceed the weight buffer of configuration {cfg.name!r}: planned "
                            f"and counted on a copy with weight regions large enough (same datapath, "
                            f"{tcfg.buffers['weight'].bytes} B weight buffer), cores streamed from "
                            f"DRAM for every tile ({len(plan)} tiles)")
        return res, info


class _AssumedBackward:
    """The paper's design's backward pass and weight update, an assumed mapping (no RTL): one
    fused sweep per forward tile, the timesteps of an output row in reverse; every core's
    transpose and weight gradient on the cluster that runs it forward, with the forward pass's
    lanes; BPTT keeps G4's input (and STT's G3 input) in DRAM (docs/energy_model.md)."""

    def __init__(self, acc: "Proposed", spec, T: int, sp: Sparsity, res: dict, tcfg, sched):
        self.acc, self.spec, self.T, self.tcfg, self.sched = acc, spec, T, tcfg, sched
        self.fwd, self.bwd, self.wu = res["forward"], res["backward"], res["weight_update"]
        self.gd = sp.grad_density
        self.sweep_cycles = 0.0
        self.saved_bits = 0.0
        self.busy = {"backward": 0.0, "weight_update": 0.0}

    def _glb(self, counts, buf, action, bits, n):
        _glb(counts, self.acc.memories, buf, action, bits, n)

    def tile(self, tile, tf: TileForward, load: bool) -> None:
        acc, spec, T, tcfg, sched = self.acc, self.spec, self.T, self.tcfg, self.sched
        cfg, w = acc.cfg, acc.cfg.widths
        fwd, bwd, wu, gd, glb = self.fwd, self.bwd, self.wu, self.gd, self._glb
        mode, r, cin = spec.mode, spec.rank, spec.in_channels
        p = cfg.lanes
        A, G = w.activation, GRAD_BITS
        ncc = math.ceil(cin / p)
        seq = mode == "stt" and acc.stt_chain == "sequential"
        s, c = tf.shape, tf.counters
        h, wd, co = s.height, s.width, s.out_channels
        geo = TileGeometry.of_shape(tcfg, s)
        n1 = geo.n1
        neurons = co * tile.out_shape[0] * tile.out_shape[1] * T
        params = cin * r + 6 * r * r + r * co            # the tile's cores
        # BPTT keeps G4's input (q23) of every full timestep and, for STT, G3's input (q2,
        # the columns cluster 2 computes); q1 is recomputed from the spikes
        save = r * h * wd * sum(sched) * A
        if mode == "stt":
            save += r * h * geo.cols2 * T * A
        glb(fwd.counts, "interstage", "read", p * A, save / (p * A))
        fwd.counts.add("dram", "write", 1, save)
        self.saved_bits += save
        c1_rec = tf.c1_compute_steps / T                  # q1 recompute = forward cluster 1
        adds_t = c.get("c1_adds", 0.0) / T
        slots_t = c["c1_slots"] / T
        acc1_t = adds_t if acc.event_driven else c1_rec   # accumulator updates of cluster 1
        sweep = 0.0
        for full in sched:
            one = _step_counters(tcfg, s, full)
            pos1 = n1 if full else h * wd                  # pixels G1^T computes
            skip = gd if acc.event_driven else 1.0
            g1t = pos1 * r * ncc * skip                    # lanes over Cin, r sequential
            g1_macs = pos1 * r * cin * skip
            g4t = h * geo.nb * geo.ng * co                 # Pk rank x Px column lanes, Cout sequential
            g4_macs = gd * h * wd * co * r
            if full:
                m23 = one["c2_macs"] + one["c3_macs"]
                e23 = one["c2_busy"] + one["c3_busy"] if seq else max(one["c2_busy"], one["c3_busy"])
            else:
                m23, e23 = 0.0, one["c2_busy"]             # HTT reduced: the bypass, copied back
            # backward: G4^T, G3^T/G2^T (PTT: both, summed), G1^T
            bwd.counts.add("mult_pe", "mac", w.weight, g1_macs + g4_macs + m23)
            bwd.counts.add("scratchpad", "read", w.accumulator, g1_macs + g4_macs + m23)
            bwd.counts.add("scratchpad", "write", w.accumulator, g1_macs + g4_macs + m23)
            if full and mode != "stt":
                bwd.counts.add("adder", "add", 16, h * wd * r)
            glb(bwd.counts, "weight", "read", p * w.weight,
                g1t + g4t + (one["w2_reads"] + one["w3_reads"] if full else 0))
            rd = (pos1 * r + h * wd * co) * G          # gradient operands of G1^T, G4^T
            wr = (h * wd * r + pos1 * r) * G           # dq23, dq1
            if full:
                rd += (one["line1_reads"] + one["row2_reads"]) * p * G
                if mode == "stt":
                    wr += h * geo.cols2 * r * G           # dq2
            glb(bwd.counts, "interstage", "read", p * A, rd / (p * A))
            glb(bwd.counts, "interstage", "write", p * A, wr / (p * A))
            # weight update: q1 recomputed, dW1 (spike operand), dW2/dW3, dW4
            wu.counts.add("spike_pe", "accumulate", 16, 2 * adds_t)
            wu.counts.add("spike_pe", "slot", 16, 2 * max(0.0, slots_t - adds_t))
            wmacs = m23 + gd * h * wd * r * co
            wu.counts.add("mult_pe", "mac", w.weight, wmacs)
            wu.counts.add("scratchpad", "read", w.accumulator, wmacs + 2 * acc1_t)
            wu.counts.add("scratchpad", "write", w.accumulator, wmacs + 2 * acc1_t)
            glb(wu.counts, "spike_in", "read", cfg.spike_word_bits, 2 * one["spike_in_reads"])
            wrd = (h * wd * r * A + neurons / T * G)          # dW4 operands: q23 and du
            wwr = n1 * r * A                                  # recomputed q1
            if full:
                wrd += (one["line1_reads"] + one["row2_reads"]) * p * (A + G)
            glb(wu.counts, "interstage", "read", p * A, wrd / (p * A))
            glb(wu.counts, "interstage", "write", p * A, wwr / (p * A))
            if full:   # clusters 2/3 chunk (transposed) weights and partial sums as forward
                add_scratchpad_counts(tcfg, s, one, bwd.counts)
                add_scratchpad_counts(tcfg, s, one, wu.counts)
            c1 = g1t + 2 * c1_rec
            c23 = e23 * (2 if full else 1)
            c4 = g4t + one["c4_busy"]
            sweep += max(c1, c23, c4, one["lif_busy"])
            self.busy["backward"] += g1t + g4t + e23
            self.busy["weight_update"] += 2 * c1_rec + (e23 if full else 0) + one["c4_busy"]
        self.sweep_cycles += sweep + 2 * (wd + 2) * r * ncc            # fill: two rows of cluster 1
        # dW partial sums: read-modify-written in the weight buffer once per output row
        gbits = params * G * h
        glb(wu.counts, "weight", "read", p * w.weight, gbits / (p * w.weight))
        glb(wu.counts, "weight", "write", p * w.weight, gbits / (p * w.weight))
        # DRAM: output gradients and states in, input gradient out (inner-halo parts
        # added by the host), cores again for the backward pass
        sbits = acc.state_bits
        bwd.counts.add("dram", "read", 1, neurons * (G + sbits))
        glb(bwd.counts, "state_out", "write", p * w.membrane, neurons * (G + sbits) / (p * w.membrane))
        glb(bwd.counts, "state_out", "read", p * w.membrane, neurons * (G + sbits) / (p * w.membrane))
        bwd.counts.add("dram", "write", 1, cin * n1 * T * G)
        bwd.counts.add("dram", "read", 1, cin * (n1 - h * wd) * T * G)
        if has_residual(spec):
            bwd.counts.add("dram", "write", 1, neurons * G)
        if load:
            bwd.counts.add("dram", "read", 1, params * w.weight)
        words, sub = tf.regions["spike_in"]
        wu.counts.add("dram", "read", 1, save + words * cfg.regions["spike_in"].width_bits)

    def finish(self) -> None:
        """Attribute the fused sweeps' cycles to the two passes by their busy cycles."""
        tot = self.busy["backward"] + self.busy["weight_update"]
        self.bwd.cycles = self.sweep_cycles * self.busy["backward"] / tot if tot else 0.0
        self.wu.cycles = self.sweep_cycles - self.bwd.cycles


class ProposedRTL(Proposed):
    """The proposed design exactly as generated (gen/): cluster 1 steps through every input
    channel, STT's G2 -> G3 is a row pipeline, and a TT layer's backward pass and weight update
    run on the backward datapath (gen/backward/), priced from its counters
    (:mod:`model.rtl_backward`); the forward pass stores the trace (window bits, arg-max) for
    it instead of intermediate maps."""
    name = "proposed-rtl"
    assumed_backward = False
    backward_from_counters = True

    def __init__(self, cfg: HardwareConfig):
        super().__init__(cfg, event_driven=False, stt_chain="pipelined")
        self.memories = {**self.memories, **rtl_backward.backward_memories(cfg)}

    def leakage_mw(self, table: EnergyTable) -> float:
        """The global buffers and the backward datapath's memories."""
        return super().leakage_mw(table) + sum(table.sram_leakage_mw(m.bytes)
                                               for m in rtl_backward.backward_memories(self.cfg).values())

    def _tt_layer(self, spec, T: int, sp: Sparsity):
        res, info = super()._tt_layer(spec, T, sp)
        lb = rtl_backward.layer_backward(self.cfg, spec, T)
        res["backward"], res["weight_update"] = rtl_backward.backward_counts(self.cfg, lb, self.memories)
        res["forward"].counts.add("dram", "write", 1, rtl_backward.trace_bits(spec, T))
        info.update(backward_tiles=lb.tiles, backward_tile_hw=list(lb.tile),
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


ACCELERATORS = {"proposed": Proposed, "proposed-rtl": ProposedRTL, "sata": SataLike}


def make_accelerator(name: str, cfg: HardwareConfig) -> Accelerator:
    if name not in ACCELERATORS:
        raise UserError(f"unknown accelerator {name!r}; choose one of {', '.join(ACCELERATORS)}")
    return ACCELERATORS[name](cfg)
