"""A single output-stationary PE array running one sub-convolution at a time (SATA-like).

This is the baseline accelerator of the paper's Fig. 4(a) (an existing SNN training
accelerator, SATA, with one PE array) and also how the proposed accelerator runs the layers its
4-cluster pipeline does not (stem conv, 1x1 shortcuts, classifier, dense 3x3 convs), with all
its PEs as one array.

Mapping (first order, like SCALE-Sim's output-stationary mode): the ``P`` PEs hold ``P`` output
channels of one output position; per step every PE does one (multiply-)accumulate with the
broadcast input element and its own weight, so one step reads ``P`` weights (``P * Wb`` bits)
and one input element. Steps per position and timestep: ``Cin * kh * kw * ceil(Cout / P)``;
zero spikes are gated (an AND, no accumulate) but not skipped in time. Partial sums stay in the
PE's scratchpad (one read and one write of the accumulator per accumulate).

A whole sub-convolution (all positions, all T timesteps) runs before the next: maps between
sub-convolutions live in the activation buffers while they fit; what does not fit goes to
DRAM and comes back (:func:`spill_schedule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from .counts import Core, Counts
from .energy_table import Memory

__all__ = ["ArrayMachine", "Step", "spill_schedule", "core_forward", "core_backward",
           "core_weight_update"]


@dataclass(frozen=True)
class ArrayMachine:
    """A PE array and the buffers it reads: ``weight``, ``act_in`` (input maps), ``act_out``
    (output maps) name entries of ``memories``; ``act_capacity_bytes`` is what the activation
    buffers can hold of the maps between sub-convolutions."""
    pes: int
    weight_bits: int
    act_bits: int
    acc_bits: int
    grad_bits: int
    memories: Mapping[str, Memory]
    weight: str
    act_in: str
    act_out: str
    act_capacity_bytes: int

    def width(self, name: str) -> int:
        return self.memories[name].width_bits


def _wreads(m: ArrayMachine, lanes: int) -> int:
    """Weight-buffer accesses per step: ``lanes`` weights side by side."""
    return math.ceil(lanes * m.weight_bits / m.width(m.weight))


def core_forward(m: ArrayMachine, core: Core, density: float, counts: Counts,
                 in_bits: int, out_bits: int) -> float:
    """Counts of one sub-convolution's forward pass; returns its cycles.

    ``density``: fraction of non-zero input elements (spikes) for spike operands.
    ``in_bits``/``out_bits``: bits per input/output element in the buffers.
    """
    groups = math.ceil(core.cout / m.pes)
    lanes = min(m.pes, core.cout)
    steps = core.positions * core.steps * core.cin * core.kh * core.kw * groups
    if core.operand == "spike":
        acc = core.macs * density
        counts.add("mult_pe", "accumulate", 16, acc)
        counts.add("mult_pe", "slot", 16, core.macs - acc)
        nonzero = acc
    else:
        counts.add("mult_pe", "mac", m.weight_bits, core.macs)
        nonzero = core.macs
    counts.add("scratchpad", "read", m.acc_bits, nonzero)
    counts.add("scratchpad", "write", m.acc_bits, nonzero)
    counts.add(f"glb.{m.weight}", "read", m.width(m.weight), steps * _wreads(m, lanes) / max(1, 1))
    counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in), steps * in_bits / m.width(m.act_in))
    outs = core.positions * core.steps * core.cout
    counts.add(f"glb.{m.act_out}", "write", m.width(m.act_out), outs * out_bits / m.width(m.act_out))
    return float(steps)


def core_backward(m: ArrayMachine, core: Core, grad_density: float, counts: Counts) -> float:
    """The transposed sub-convolution (gradient to the input); returns cycles.

    ``grad_density``: fraction of non-zero incoming gradients (membrane-gradient sparsity
    for the core that feeds a LIF, 1 elsewhere). Gradients are multiplied at the weight
    width and stored at ``grad_bits``.
    """
    groups = math.ceil(core.cin / m.pes)
    lanes = min(m.pes, core.cin)
    steps = core.positions * core.steps * core.cout * core.kh * core.kw * groups
    macs = core.macs * grad_density
    counts.add("mult_pe", "mac", m.weight_bits, macs)
    counts.add("scratchpad", "read", m.acc_bits, macs)
    counts.add("scratchpad", "write", m.acc_bits, macs)
    counts.add(f"glb.{m.weight}", "read", m.width(m.weight), steps * _wreads(m, lanes))
    counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in), steps * m.grad_bits / m.width(m.act_in))
    outs = core.positions * core.steps * core.cin
    counts.add(f"glb.{m.act_out}", "write", m.width(m.act_out), outs * m.grad_bits / m.width(m.act_out))
    return float(steps)


def core_weight_update(m: ArrayMachine, core: Core, density: float, counts: Counts,
                       in_bits: int) -> float:
    """The weight gradient of a sub-convolution (one weight per PE, output-stationary over
    the weights): ``macs * density`` (multiply-)accumulates, reading one input and one
    gradient element per step; the gradients are written once. Returns cycles."""
    steps = core.positions * core.steps * math.ceil(core.weights / m.pes)
    macs = core.macs * density
    if core.operand == "spike":
        counts.add("mult_pe", "accumulate", 16, macs)
        counts.add("mult_pe", "slot", 16, core.macs - macs)
    else:
        counts.add("mult_pe", "mac", m.weight_bits, macs)
    counts.add("scratchpad", "read", m.acc_bits, macs)
    counts.add("scratchpad", "write", m.acc_bits, macs)
    counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in),
               steps * (in_bits + m.grad_bits) / m.width(m.act_in))
    counts.add(f"glb.{m.weight}", "write", m.width(m.weight),
               core.weights * m.grad_bits / m.width(m.weight))
    return float(steps)


@dataclass(frozen=True)
class Step:
    """One sub-convolution in a layer-by-layer schedule: the maps it reads and writes."""
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]


def spill_schedule(steps: Sequence[Step], sizes: Mapping[str, float], capacity: float,
                   in_dram: Sequence[str] = ()) -> dict[str, float]:
    """Bits of each map that must live in DRAM, given on-chip ``capacity`` bits.

    At every step the live maps (read, written, or produced earlier and read later) must fit
    ``capacity``; the excess is pushed to DRAM from the held maps first (largest first: a
    branch output waiting for its merge), then from this step's outputs, then its inputs. A
    map's DRAM share is the largest excess assigned to it at any step. Maps in ``in_dram``
    (the layer's own input) are entirely in DRAM already.
    """
    for k, v in sizes.items():
        if v < 0:
            raise ValueError(f"map {k!r} has negative size {v}")
    produced: dict[str, int] = {}
    last_use: dict[str, int] = {}
    for i, st in enumerate(steps):
        for w in st.writes:
            produced.setdefault(w, i)
        for r in st.reads:
            last_use[r] = i
    spill = {k: (float(sizes[k]) if k in in_dram else 0.0) for k in sizes}
    for i, st in enumerate(steps):
        active = set(st.reads) | set(st.writes)
        held = [k for k in sizes if k not in active and produced.get(k, -1) < i
                and last_use.get(k, -1) > i and k not in in_dram]
        live = sum(sizes[k] for k in active | set(held) if k not in in_dram)
        excess = live - capacity
        if excess <= 0:
            continue
        order = (sorted(held, key=lambda k: -sizes[k]) + sorted(st.writes, key=lambda k: -sizes[k])
                 + sorted(st.reads, key=lambda k: -sizes[k]))
        for k in order:
            if excess <= 0:
                break
            if k in in_dram:
                continue
            take = min(sizes[k], excess)
            spill[k] = max(spill[k], take)
            excess -= take
    return spill
