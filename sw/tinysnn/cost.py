"""Memory footprint and energy of a network, from its formats and its operation counts.

Memory (tinySNN's definition): ``#weights x weight bits + sum over neuron parameters of
#params x bits``; the neuron parameters are the stored membrane potential and threshold of
every excitatory neuron (and, in the baseline, the inhibitory neurons' membrane potentials).
Connection weights that are one constant (excitatory -> inhibitory, inhibitory -> excitatory,
tinySNN's lateral inhibition) are one stored value each, at 32 bits.

Energy = operation counts (:class:`sw.tinysnn.network.OpCounts`) x energies per operation from
model/'s energy table (:mod:`model.energy_table`, the 28 nm table; read-only use):

- weight memory accesses: :meth:`EnergyTable.sram_access` for an SRAM of the weight memory's
  size with a port as wide as one weight (CACTI interpolation of the table);
- arithmetic: the table's primitives; at a width the table lacks, the nearest entry scaled
  linearly in bits (adders, comparators, registers, shifters) or quadratically (multipliers).
  FP32 is priced as 32-bit fixed point, a lower bound for floating-point arithmetic;
- a neuron update: the table's ``lif.update`` action (add + cmp + 2 mux + 3 reg + shift) at 16
  bits, scaled linearly to the membrane width.
"""

from __future__ import annotations

from typing import Any

from ttsnn.sw.tinysnn.config import SNNConfig
from ttsnn.sw.tinysnn.fixedpoint import QuantSpec
from ttsnn.sw.tinysnn.network import OpCounts

__all__ = ["memory_entries", "memory_bits", "op_energy_pj", "operation_costs_pj", "energy_pj"]

_QUADRATIC = {"mul"}


def memory_entries(cfg: SNNConfig, spec: QuantSpec) -> list[tuple[str, int, int]]:
    """``(name, count, bits)`` of every stored quantity."""
    n = cfg.n_neurons
    rows = [("weights", cfg.n_inputs * n, spec.weight.bits),
            ("exc membrane", n, spec.membrane.bits),
            ("exc threshold", n, spec.threshold.bits)]
    if cfg.variant == "baseline":
        rows += [("inh membrane", n, spec.inh_membrane.bits),
                 ("exc->inh, inh->exc weights (constants)", 2, 32)]
    else:
        rows += [("lateral inhibition weight (constant)", 1, 32)]
    return rows


def memory_bits(cfg: SNNConfig, spec: QuantSpec) -> int:
    return sum(count * bits for _, count, bits in memory_entries(cfg, spec))


def op_energy_pj(table: Any, op: str, bits: int) -> float:
    """pJ of one primitive ``op`` (``add``, ``mul``, ``cmp``, ``reg``, ``shift``...) at ``bits``."""
    known = sorted(b for (o, b) in table.primitives if o == op)
    if not known:
        raise KeyError(f"energy table {table.name!r} has no primitive {op!r}")
    if bits in known:
        return table.primitives[(op, bits)]
    below = [b for b in known if b <= bits]
    ref = below[-1] if below else known[0]
    ratio = bits / ref
    return table.primitives[(op, ref)] * (ratio ** 2 if op in _QUADRATIC else ratio)


def operation_costs_pj(cfg: SNNConfig, spec: QuantSpec, table: Any) -> dict[str, float]:
    """pJ per counted operation (the keys of :class:`OpCounts`), priced with ``table``: a
    ``model.energy_table`` table, which the caller loads (sw/ sits below model/ in the package
    graph, so only front ends such as ``python -m sw tinysnn`` import it)."""
    wb, nb = spec.weight.bits, spec.membrane.bits
    size_bytes = max(1, cfg.n_inputs * cfg.n_neurons * wb // 8)
    w_read = table.sram_access(size_bytes, wb, "read")
    w_write = table.sram_access(size_bytes, wb, "write")
    add_n, add_w = op_energy_pj(table, "add", nb), op_energy_pj(table, "add", wb)
    lif16 = table.energy("lif", "update", 16)
    return {
        "syn_events": w_read + add_n,                 # read the weight, accumulate into the membrane
        "exc_updates": lif16 * nb / 16,
        "inh_updates": lif16 * spec.inh_membrane.bits / 16,
        "inh_events": add_n,
        "trace_updates": op_energy_pj(table, "shift", wb) + add_w,  # decay by a shift-and-add
        "stdp_updates": w_read + w_write + op_energy_pj(table, "mul", wb) + add_w,
        "norm_updates": w_read + w_write + op_energy_pj(table, "mul", wb),
        "threshold_updates": op_energy_pj(table, "add", spec.threshold.bits),
    }


def energy_pj(ops: OpCounts, costs: dict[str, float]) -> dict[str, float]:
    """pJ per image, per operation kind and in total."""
    per = ops.per_image()
    out = {k: per.get(k, 0.0) * c for k, c in costs.items()}
    out["total"] = sum(out.values())
    return out
