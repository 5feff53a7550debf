"""The two accelerators, built from one hardware configuration.

- :class:`Proposed`: the paper's pipelined 4-cluster design as the generator builds it (gen/):
  G1 on cluster 1's spike PEs, G2/G3 on clusters 2/3 (in parallel for PTT; one after the other
  for STT, whose G3 waits for G2's row), the adder merge, G4 on cluster 4, the LIF array;
  inter-stage data stays in line buffers. Layers are split into tiles by the generator's own
  driver (:func:`gen.driver.plan_layer`); the forward counts of a tile are
  :func:`model.tile.tile_forward_counters`, the same counters the RTL reports.
- :class:`SataLike`: one PE array with the same PE count and the same buffer budget, running
  the sub-convolutions one after another, layer by layer (:mod:`model.array`), with the data
  movement that implies: maps that do not fit the activation buffers go to DRAM, PTT's branch
  output waits for the merge and is the first to be pushed out.

Both read every size from the :class:`gen.config.HardwareConfig`; layers that are not TT
convs (stem, shortcuts, classifier, dense 3x3) run on a single array in both (the proposed
design uses all its PEs as one array for them).

Backward pass (gradient to the input) and weight update follow the BPTT dataflow of SATA
(per layer, timesteps in reverse, each core's transposed conv and weight gradient on the unit
that runs the core forward). docs/energy_model.md lists every assumption.
"""

from __future__ import annotations

import math

from gen.config import HardwareConfig

from .array import ArrayMachine, Step, core_backward, core_forward, core_weight_update, spill_schedule
from .counts import (Counts, LayerResult, PassResult, Sparsity, full_timesteps,
                     has_residual, layer_cores)
from .energy_table import EnergyTable, Memory
from .tile import TileShape, counters_to_counts, tile_forward_counters

__all__ = ["Accelerator", "Proposed", "ProposedRTL", "SataLike", "make_accelerator", "ACCELERATORS"]

GRAD_BITS = 16     # stored gradients: accumulator width (docs/energy_model.md)


class Accelerator:
    """Common part: memories, leakage, the single-array path and per-layer extras."""
    name = "base"

    def __init__(self, cfg: HardwareConfig):
        if not isinstance(cfg, HardwareConfig):
            raise ValueError(f"expected a gen.config.HardwareConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        w = cfg.widths
        self.memories = {n: Memory(n, b.bytes, b.width_bits) for n, b in cfg.buffers.items()}
        self.state_bits = w.membrane + 1
        self.array = ArrayMachine(
            pes=cfg.total_pes, weight_bits=w.weight, act_bits=w.activation,
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
        if lif:
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


class Proposed(Accelerator):
    """The pipelined 4-cluster design (gen/), tiled by the generator's driver.

    ``event_driven``: cluster 1 steps only on 1-spikes and the backward pass skips the
    input gradients that the previous layer's surrogate zeroes (the sparsity-aware design of
    the paper and SATA). ``False`` models the generated RTL, which steps through every input
    channel; its forward counters then equal the RTL's (tests/model/test_rtl_agreement.py).
    ``stt_chain``: 'sequential' (the paper's clusters: no G2 -> G3 path, STT's G3 runs after G2
    has finished the tile) or 'pipelined' (the generated RTL's row2 buffer: a row pipeline).
    ``python -m model ... --accel proposed`` is the paper's design (event-driven, sequential);
    ``--accel proposed-rtl`` is the generated RTL (not event-driven, pipelined).
    """
    name = "proposed"

    def __init__(self, cfg: HardwareConfig, event_driven: bool = True, stt_chain: str = "sequential"):
        super().__init__(cfg)
        if stt_chain not in ("pipelined", "sequential"):
            raise ValueError(f"stt_chain must be 'pipelined' or 'sequential', got {stt_chain!r}")
        self.event_driven = bool(event_driven)
        self.stt_chain = stt_chain

    def plan(self, spec, T: int):
        """The layer's tiles (gen.driver.plan_layer). Ranks above ``limits.max_rank`` are
        planned as if at the limit (tile shapes do not depend on the rank) and modelled with
        their weights streamed from DRAM for every tile (docs/energy_model.md)."""
        from gen.driver import plan_layer
        lim = self.cfg.limits
        r = spec.rank
        hi, wi = spec.in_hw
        plan = plan_layer(self.cfg, (T, spec.in_channels, hi, wi), min(r, lim.max_rank),
                          spec.out_channels, pool=spec.downsample, residual=has_residual(spec))
        return plan, r > lim.max_rank

    def _tt_layer(self, spec, T: int, sp: Sparsity):
        cfg, w = self.cfg, self.cfg.widths
        plan, streamed = self.plan(spec, T)
        mode, r, cin = spec.mode, spec.rank, spec.in_channels
        sched = list(spec.schedule) if mode == "htt" else [True] * T
        dens, gd = sp.input_density(spec.name), sp.grad_density
        p = cfg.lanes
        ng = math.ceil(r / p)
        fwd, bwd, wu = (PassResult() for _ in range(3))
        busy_f = {"c1": 0.0, "c23": 0.0, "c4": 0.0, "lif": 0.0}
        counters_total: dict[str, float] = {}
        mem = self.memories
        bw = {n: m.width_bits for n, m in mem.items()}
        bsweep = 0.0
        bbusy = {"backward": 0.0, "weight_update": 0.0}
        for tile in plan:
            shape = TileShape(tile.height, tile.width, cin, r, tile.out_channels, T, tile.pool,
                              getattr(tile, "zero_halo", (False,) * 4))
            load = tile.weights_change or streamed
            c = tile_forward_counters(cfg, shape, mode, sched, density=dens,
                                      residual=has_residual(spec), load_weights=load,
                                      event_driven=self.event_driven, stt_chain=self.stt_chain)
            for k, v in c.items():
                counters_total[k] = counters_total.get(k, 0.0) + v
            counters_to_counts(cfg, c, fwd.counts, mem)
            fwd.cycles += c["cycles"]
            busy_f["c1"] += c["c1_busy"]; busy_f["c23"] += c["c23_busy"]
            busy_f["c4"] += c["c4_busy"]; busy_f["lif"] += c["lif_busy"]
            h, wd, co = tile.height, tile.width, tile.out_channels
            ho, wo = tile.out_shape
            go = math.ceil(co / p)
            win = (h + 2) * (wd + 2)
            neurons = co * ho * wo * T
            # host writes land in the buffers
            fwd.counts.add("glb.spike_in", "write", bw["spike_in"], T * win * math.ceil(cin / cfg.spike_word_bits))
            if load:
                wwords = cin * ng + 6 * r * ng + r * go + go
                fwd.counts.add("glb.weight", "write", bw["weight"], wwords * p * w.weight / bw["weight"])
            if has_residual(spec):
                fwd.counts.add("glb.residual", "write", bw["residual"], neurons * w.membrane / bw["residual"])
                fwd.counts.add("adder", "add", 16, neurons)
            fwd.counts.add("affine", "mac", 16, neurons)
            # BPTT keeps G4's input (q23) of every full timestep and, for STT, G3's input (q2);
            # q1 is recomputed from the spikes (cluster 1 is cheap)
            cols2 = wd + 2 if mode == "stt" else wd
            save = r * h * wd * sum(sched) * w.activation
            if mode == "stt":
                save += r * h * cols2 * T * w.activation
            fwd.counts.add("glb.interstage", "read", bw["interstage"], save / bw["interstage"])
            fwd.counts.add("dram", "write", 1, save)
            # ---- backward + weight update, one fused sweep per tile (timesteps reversed) ----
            sweep = 0.0
            for full in sched:
                pos1 = win if full else h * wd
                # backward
                g4t = h * wd * co * ng                     # cluster 4: G4^T, OS over rank lanes
                g1t = pos1 * r * math.ceil(cin / p)        # cluster 1: G1^T
                skip_s = dens if self.event_driven else 1.0
                if self.event_driven:
                    g1t *= gd   # only inputs whose surrogate gradient is non-zero
                bwd.counts.add("mult_pe", "mac", w.weight, gd * h * wd * co * r + pos1 * r * cin)
                if full:
                    m2, m3 = h * cols2 * 3 * r * r, h * wd * 3 * r * r
                    s2, s3 = h * cols2 * 3 * r * ng, h * wd * 3 * r * ng
                    bwd.counts.add("mult_pe", "mac", w.weight, m2 + m3)
                    if mode != "stt":
                        bwd.counts.add("adder", "add", 16, h * wd * r)
                else:
                    m2 = m3 = s2 = s3 = 0
                bmacs = gd * h * wd * co * r + pos1 * r * cin + m2 + m3
                bwd.counts.add("scratchpad", "read", w.accumulator, bmacs)
                bwd.counts.add("scratchpad", "write", w.accumulator, bmacs)
                bsteps = g4t + g1t + s2 + s3
                bwd.counts.add("glb.weight", "read", bw["weight"], bsteps)
                bwd.counts.add("glb.interstage", "read", bw["interstage"], bsteps)
                bwd.counts.add("glb.interstage", "write", bw["interstage"],
                               (h * wd + pos1 + (h * cols2 if mode == "stt" and full else 0)) * ng)
                # weight update: recompute q1, then dW1..dW4
                rec = pos1 * cin * ng * skip_s
                wu.counts.add("spike_pe", "accumulate", 16, 2 * dens * pos1 * cin * r)
                wu.counts.add("spike_pe", "slot", 16, 2 * (1 - dens) * pos1 * cin * r)
                wmacs = m2 + m3 + gd * h * wd * r * co
                wu.counts.add("mult_pe", "mac", w.weight, wmacs)
                wops = wmacs + 2 * dens * pos1 * cin * r
                wu.counts.add("scratchpad", "read", w.accumulator, wops)
                wu.counts.add("scratchpad", "write", w.accumulator, wops)
                wsteps = 2 * rec + s2 + s3 + h * wd * r * go
                wu.counts.add("glb.interstage", "read", bw["interstage"], wsteps)
                wu.counts.add("glb.spike_in", "read", bw["spike_in"], 2 * pos1 * math.ceil(cin / cfg.spike_word_bits) * ng)
                c1 = g1t + 2 * rec
                c4 = g4t + h * wd * r * go
                # clusters 2/3: transposed convs then weight gradients; STT's chain is a row
                # pipeline as in the forward pass (the second core adds one row)
                if mode != "stt":
                    c23 = 2 * max(s2, s3)
                elif self.stt_chain == "sequential":
                    c23 = 2 * (s2 + s3)
                else:
                    c23 = 2 * (max(s2, s3) + min(s2, s3) / h)
                sweep += max(c1, c23, c4, ho * wo * go)
                bbusy["backward"] += g4t + g1t + s2 + s3
                bbusy["weight_update"] += 2 * rec + s2 + s3 + h * wd * r * go
            bsweep += sweep + 2 * (wd + 2) * r * math.ceil(cin / p)
            # dW partial sums of the tile: read-modify-write of the gradient region once per tile
            gwords = (cin * ng + 6 * r * ng + r * go) * p * 16 / bw["weight"]
            wu.counts.add("glb.weight", "read", bw["weight"], gwords)
            wu.counts.add("glb.weight", "write", bw["weight"], gwords)
            # DRAM: gradients and states in, input gradient out (halo parts added by the host)
            bwd.counts.add("dram", "read", 1, neurons * (GRAD_BITS + self.state_bits))
            bwd.counts.add("glb.state_out", "write", bw["state_out"], neurons * (GRAD_BITS + self.state_bits) / bw["state_out"])
            bwd.counts.add("glb.state_out", "read", bw["state_out"], neurons * (GRAD_BITS + self.state_bits) / bw["state_out"])
            bwd.counts.add("dram", "write", 1, cin * win * T * GRAD_BITS)
            bwd.counts.add("dram", "read", 1, cin * (win - h * wd) * T * GRAD_BITS)
            if has_residual(spec):
                bwd.counts.add("dram", "write", 1, neurons * GRAD_BITS)
            if load:
                bwd.counts.add("dram", "read", 1, spec.params() * w.weight)
            wu.counts.add("dram", "read", 1, save + T * win * cin)
        # attribute the fused sweep's cycles to the two passes by their busy cycles
        tot = bbusy["backward"] + bbusy["weight_update"]
        bwd.cycles = bsweep * bbusy["backward"] / tot if tot else 0.0
        wu.cycles = bsweep - bwd.cycles
        fwd.busy = busy_f
        info = {"mapping": "4-cluster pipeline", "tiles": len(plan),
                "tile_hw": [plan.tile_height, plan.tile_width],
                "tile_out_channels": plan.tile_out_channels,
                "weights_streamed": streamed, "counters": counters_total}
        return {"forward": fwd, "backward": bwd, "weight_update": wu}, info


class ProposedRTL(Proposed):
    """The proposed design exactly as generated (gen/): cluster 1 steps through every input
    channel, STT's G2 -> G3 is a row pipeline."""
    name = "proposed-rtl"

    def __init__(self, cfg: HardwareConfig):
        super().__init__(cfg, event_driven=False, stt_chain="pipelined")


ACCELERATORS = {"proposed": Proposed, "proposed-rtl": ProposedRTL, "sata": SataLike}


def make_accelerator(name: str, cfg: HardwareConfig) -> Accelerator:
    if name not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {name!r}; choose one of {', '.join(ACCELERATORS)}")
    return ACCELERATORS[name](cfg)
