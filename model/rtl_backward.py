"""The generated design's backward pass and weight update, priced from the RTL's counters.

``proposed-rtl`` takes a TT layer's backward pass from the backward datapath that gen/backward/
builds, not from an assumed mapping: the layer runs as the largest backward tiles that fit the
``[gradients]`` memories (the host driver's choice), and every tile's counters come from
:func:`gen.backward.cyclemodel.tile_counters`, which equals the RTL's counters on every simulated
tile (tests/gen/test_top_backward.py, tests/cosim/test_backward_cosim.py,
tests/model/test_rtl_backward.py). :func:`backward_counts` turns them into the energy model's
actions (docs/energy_model.md, "Backward pass of the generated design"):

- ``backward``: the LIF-gradient stage and the mat-vec stages (the recomputed G1, G2, G3 and the
  transposed cores G4^T, G3^T/G2^T, G1^T) and the host's traffic of the tile's tensors, stage
  weights, trace, folded-BN words, input and current gradients;
- ``weight_update``: the outer-product stages (the four weight gradients) and the host's reads of
  the weight-gradient sums; the optimizer step and the weights' DRAM traffic stay in
  :meth:`model.accelerators.Accelerator._layer_extras`, as for every layer.

Prices: a core-stage multiply-accumulate (``Wb x Gb`` operands) and an outer-product accumulate
(``Gb x Qb``) are ``mult_pe.mac`` at the weight width, each with a read and a write of the PE's
accumulator register; a LIF-gradient update is ``lif.potential_gradient``; the four backward
memories are SRAMs of their configured sizes and port widths (``glb.gbuf``, ``glb.gweights``,
``glb.trace``, ``glb.wgrad``); DRAM is every host word.
"""

from __future__ import annotations

from typing import Mapping

from ttsnn.gen.backward.lif_gradient_engine import TRACE_BITS_PER_LANE
from ttsnn.gen.backward.layer_counters import LayerBackwardCounters, layer_backward_counters
from ttsnn.gen.config import HardwareConfig

from .counts import PassResult
from .energy_table import Memory
from .tile import _glb, config_key

__all__ = ["BACKWARD_MEMORIES", "backward_memories", "layer_backward", "backward_counts", "trace_bits"]

#: The backward datapath's memories (``HardwareConfig.backward_regions``).
BACKWARD_MEMORIES = ("gbuf", "gweights", "trace", "wgrad")
_LAYERS: dict[tuple, LayerBackwardCounters] = {}


def backward_memories(cfg: HardwareConfig) -> dict[str, Memory]:
    """The backward memories as the energy model sees them: size and port width."""
    regions = cfg.backward_regions
    return {n: Memory(n, regions[n].bits // 8, regions[n].width_bits) for n in BACKWARD_MEMORIES}


def layer_backward(cfg: HardwareConfig, spec, T: int) -> LayerBackwardCounters:
    """The backward counters of a TT layer (``sw.arch.ConvSpec``), cached per configuration and
    layer shape."""
    sched = tuple(spec.schedule) if spec.mode == "htt" else (True,) * T
    key = (config_key(cfg), spec.mode, T, sched, spec.in_channels, spec.rank, spec.out_channels,
           tuple(spec.in_hw), bool(spec.downsample), bool(spec.membrane_shortcut))
    if key not in _LAYERS:
        _LAYERS[key] = layer_backward_counters(cfg, spec, spec.mode, T, sched)
    return _LAYERS[key]


def trace_bits(spec, T: int) -> int:
    """Bits the forward pass stores for the backward pass besides its output spikes
    (docs/numerics.md, "What the forward keeps"): the window bit of every output neuron and
    timestep, and the 2-bit arg-max of a pooling layer's. What the arithmetic needs; the RTL
    moves more (a trace word of 4 bits per lane for every output word, arg-max bits 0 without
    pooling), and the energy model counts the RTL's host words, not this."""
    co, (ho, wo) = spec.out_channels, spec.out_hw
    return co * ho * wo * T * ((TRACE_BITS_PER_LANE - 1) if spec.downsample else 1)


def _stage_counts(cfg: HardwareConfig, c: Mapping[str, int], counts, memories) -> None:
    """Compute and on-chip memory actions of one pass's backward counters."""
    wd = cfg.widths
    macs = c.get("stage_macs", 0) + c.get("wgrad_updates", 0)
    counts.add("mult_pe", "mac", wd.weight, macs)
    counts.add("scratchpad", "read", wd.accumulator, macs)
    counts.add("scratchpad", "write", wd.accumulator, macs)
    counts.add("lif", "potential_gradient", 16, c.get("lifg_updates", 0))
    width = {n: m.width_bits for n, m in memories.items()}
    _glb(counts, memories, "gbuf", "read", width["gbuf"],
         c.get("in_reads", 0) + c.get("grad_reads", 0) + c.get("lifg_grad_reads", 0))
    _glb(counts, memories, "gbuf", "write", width["gbuf"], c.get("grad_writes", 0) + c.get("lifg_grad_writes", 0))
    _glb(counts, memories, "gweights", "read", width["gweights"], c.get("weight_reads", 0))
    _glb(counts, memories, "trace", "read", width["trace"], c.get("trace_reads", 0))
    _glb(counts, memories, "wgrad", "read", width["wgrad"], c.get("wgrad_words", 0))
    _glb(counts, memories, "wgrad", "write", width["wgrad"], c.get("wgrad_words", 0))
    affine = cfg.regions["affine"]        # the folded-BN scales, one word per LIF-gradient read
    _glb(counts, memories, affine.buffer, "read", affine.width_bits, c.get("trace_reads", 0))


def backward_counts(cfg: HardwareConfig, lb: LayerBackwardCounters, memories: Mapping[str, Memory]
                    ) -> tuple[PassResult, PassResult]:
    """The backward and weight-update passes of a layer from its counters (module docstring)."""
    bwd, wu = PassResult(), PassResult()
    bwd.cycles, wu.cycles = float(lb.backward["cycles"]), float(lb.weight_update["cycles"])
    _stage_counts(cfg, lb.backward, bwd.counts, memories)
    _stage_counts(cfg, lb.weight_update, wu.counts, memories)
    regions = {**{r.name: r for r in cfg.regions.values()}, **cfg.backward_regions}
    for name, (written, read) in lb.region_words.items():
        region = regions[name]
        buffer = name if name in memories else region.buffer
        pass_counts = wu.counts if name == "wgrad" else bwd.counts
        _glb(pass_counts, memories, buffer, "write", region.width_bits, written)
        _glb(pass_counts, memories, buffer, "read", region.width_bits, read)
    # DRAM moves the region words' bits (a host beat wider than a word carries that word alone)
    bits_in = sum(written * regions[name].width_bits for name, (written, _) in lb.region_words.items())
    bits_out = {name: read * regions[name].width_bits for name, (_, read) in lb.region_words.items()}
    wgrad_bits = bits_out.pop("wgrad", 0)
    bwd.counts.add("dram", "read", 1, bits_in)
    bwd.counts.add("dram", "write", 1, sum(bits_out.values()))
    wu.counts.add("dram", "write", 1, wgrad_bits)
    return bwd, wu
