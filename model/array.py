"""A single output-stationary PE array running one sub-convolution at a time (SATA-like).

This is the baseline accelerator of the paper's Fig. 4(a) (an existing SNN training
accelerator, SATA, with one PE array) and also how the proposed accelerator runs the layers its
4-cluster pipeline does not (stem conv, 1x1 shortcuts, classifier, dense 3x3 convs), with all
its PEs as one array.

Mapping: an output-stationary systolic array of ``rows x cols`` PEs, as SCALE-Sim's ``os``
dataflow and SATA's 8 x 16 array: the rows hold ``rows`` output pixels, the columns ``cols``
output channels (filters); a fold computes that block of outputs over the reduction
``Cin * kh * kw``, one step per reduction element, reading ``rows`` input elements (one per
pixel, shifted along the rows) and ``cols`` weights (shifted down the columns) per step; it
takes ``reduction + rows + cols - 2`` cycles (the skew of filling and draining the array,
SCALE-Sim's count). Folds per timestep: ``ceil(pixels / rows) * ceil(Cout / cols)``. Zero
spikes are gated (an AND, no accumulate) but not skipped in time. Partial sums stay in the PE
(one read and one write of the accumulator per accumulate). The transposed convolution maps
input-gradient pixels x input channels the same way, the weight gradient weights (``Cin * kh *
kw`` rows x ``Cout`` columns) over a reduction of pixels x timesteps.

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
           "core_weight_update", "array_shape", "os_fold_cycles"]


def array_shape(pes: int) -> tuple[int, int]:
    """``rows x cols`` of a ``pes``-PE array: rows the largest power of two <= sqrt(pes)
    (128 PEs -> 8 x 16, SATA's array); a PE count that does not split so is one row."""
    rows = 1 << int(math.isqrt(max(1, pes))).bit_length() - 1
    while rows > 1 and pes % rows:
        rows //= 2
    return rows, pes // rows


def os_fold_cycles(rows: int, cols: int, outputs_r: int, outputs_c: int, reduction: int) -> tuple[int, int]:
    """(folds, cycles) of an output-stationary ``rows x cols`` array computing an
    ``outputs_r x outputs_c`` output block over ``reduction`` steps: SCALE-Sim's count,
    ``folds * (reduction + rows + cols - 2)``."""
    folds = math.ceil(outputs_r / rows) * math.ceil(outputs_c / cols)
    return folds, folds * (reduction + rows + cols - 2)


@dataclass(frozen=True)
class ArrayMachine:
    """A PE array and the buffers it reads: ``weight``, ``act_in`` (input maps), ``act_out``
    (output maps) name entries of ``memories``; ``act_capacity_bytes`` is what the activation
    buffers can hold of the maps between sub-convolutions."""
    pes: int
    rows: int
    cols: int
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


def _os_steps(m: ArrayMachine, pixels: int, channels: int, reduction: int, timesteps: int
              ) -> tuple[float, float]:
    """(reduction steps, cycles) of one sub-convolution over all its timesteps."""
    folds, cycles = os_fold_cycles(m.rows, m.cols, pixels, channels, reduction)
    return float(folds * reduction * timesteps), float(cycles * timesteps)


def core_forward(m: ArrayMachine, core: Core, density: float, counts: Counts,
                 in_bits: int, out_bits: int) -> float:
    """Counts of one sub-convolution's forward pass; returns its cycles.

    ``density``: fraction of non-zero input elements (spikes) for spike operands.
    ``in_bits``/``out_bits``: bits per input/output element in the buffers.
    """
    steps, cycles = _os_steps(m, core.positions, core.cout, core.cin * core.kh * core.kw, core.steps)
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
    counts.add(f"glb.{m.weight}", "read", m.width(m.weight), steps * _wreads(m, min(m.cols, core.cout)))
    counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in),
               steps * min(m.rows, core.positions) * in_bits / m.width(m.act_in))
    outs = core.positions * core.steps * core.cout
    counts.add(f"glb.{m.act_out}", "write", m.width(m.act_out), outs * out_bits / m.width(m.act_out))
    return cycles


def core_backward(m: ArrayMachine, core: Core, grad_density: float, counts: Counts) -> float:
    """The transposed sub-convolution (gradient to the input); returns cycles.

    ``grad_density``: fraction of non-zero incoming gradients (membrane-gradient sparsity
    for the core that feeds a LIF, 1 elsewhere). Gradients are multiplied at the weight
    width and stored at ``grad_bits``.
    """
    steps, cycles = _os_steps(m, core.positions, core.cin, core.cout * core.kh * core.kw, core.steps)
    macs = core.macs * grad_density
    counts.add("mult_pe", "mac", m.weight_bits, macs)
    counts.add("scratchpad", "read", m.acc_bits, macs)
    counts.add("scratchpad", "write", m.acc_bits, macs)
    counts.add(f"glb.{m.weight}", "read", m.width(m.weight), steps * _wreads(m, min(m.cols, core.cin)))
    counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in),
               steps * min(m.rows, core.positions) * m.grad_bits / m.width(m.act_in))
    outs = core.positions * core.steps * core.cin
    counts.add(f"glb.{m.act_out}", "write", m.width(m.act_out), outs * m.grad_bits / m.width(m.act_out))
    return cycles


def core_weight_update(m: ArrayMachine, core: Core, density: float, counts: Counts,
                       in_bits: int) -> float:
    """The weight gradient of a sub-convolution (output-stationary over the weights: ``Cin *
    kh * kw`` rows x ``Cout`` columns, reduced over pixels and timesteps): ``macs * density``
    (multiply-)accumulates, reading ``rows`` inputs and ``cols`` gradients per step; the
    gradients are written once. Returns cycles."""
    red = core.positions * core.steps
    folds, cycles = os_fold_cycles(m.rows, m.cols, core.cin * core.kh * core.kw, core.cout, red)
    steps = float(folds * red)
    rows, cols = min(m.rows, core.cin * core.kh * core.kw), min(m.cols, core.cout)
    macs = core.macs * density
    if core.operand == "spike":
        counts.add("mult_pe", "accumulate", 16, macs)
        counts.add("mult_pe", "slot", 16, core.macs - macs)
    else:
        counts.add("mult_pe", "mac", m.weight_bits, macs)
    counts.add("scratchpad", "read", m.acc_bits, macs)
    counts.add("scratchpad", "write", m.acc_bits, macs)
    counts.add(f"glb.{m.act_in}", "read", m.width(m.act_in),
               steps * (rows * in_bits + cols * m.grad_bits) / m.width(m.act_in))
    counts.add(f"glb.{m.weight}", "write", m.width(m.weight),
               core.weights * m.grad_bits / m.width(m.weight))
    return float(cycles)


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
