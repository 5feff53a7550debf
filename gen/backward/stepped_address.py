"""Addresses of a loop nest stepped by additions (no multiplier between a counter and an address).

A backward engine walks a nest of counters ``c_0 .. c_{n-1}`` (outer first, one step per cycle,
:func:`gen.engines.common.loops`) and addresses a tensor at ``base + sum_k c_k * stride_k``.
Computing that sum from the counters puts a chain of multipliers between a counter register and
a memory's address (the whole design's critical path on the ECP5, docs/synthesis.md). Instead
one register per level holds the address with the inner counters at zero ("mark" ``M_k``, the
address of ``c_0 .. c_k, 0 .. 0``): a step in which level ``j`` advances (the inner levels
wrap) sets ``M_j`` and every inner mark to ``M_j + stride_j``; the address is the innermost mark.
The strides are products of descriptor fields only (constant while the engine runs), computed
into registers the cycle after the descriptor is written (:func:`registered`).
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Module, Signal, Value

__all__ = ["stepped_address", "registered"]


def registered(m: Module, value, width: int, name: str) -> Signal:
    """``value`` (a function of descriptor fields only) in a register, updated every cycle.

    The engines' descriptor is written while they are idle and ``start`` comes at the earliest
    in the cycle of the last write (the engine's own testbenches) or after it (the host's
    control write): the register holds the new value from the cycle after ``start``, the first
    step's."""
    reg = Signal(width, name=name)
    m.d.sync += reg.eq(value)
    return reg


def stepped_address(m: Module, ends: Sequence[Value], step: Value, start: Value, base,
                    strides: Sequence, width: int, name: str) -> Signal:
    """``base + sum_k c_k * strides[k]`` (modulo ``2^width``) of the loop nest whose
    :func:`gen.engines.common.loops` returned ``ends`` (``step``: the nest advances this cycle;
    ``start``: the counters are reset to zero). ``strides[k]`` is ``None`` where level ``k``
    does not move the address; ``base`` and the strides must not change while the nest runs.
    Returns the address of the current counters (a register)."""
    n = len(strides)
    if len(ends) != n:
        raise ValueError(f"stepped_address: {n} strides for {len(ends)} loop levels")
    last = max((k for k, s in enumerate(strides) if s is not None), default=-1)
    if last < 0:
        raise ValueError("stepped_address: no level moves the address")
    marks: list[Signal] = []
    for k in range(last + 1):
        if strides[k] is None and k > 0:
            marks.append(marks[k - 1])         # a level that does not move the address
        else:
            marks.append(Signal(width, name=f"{name}_m{k}"))
    # level j advances (its inner levels wrap) when they are all at their last value but it is
    # not; the nest's last step (ends[0]) resets the counters, and the marks at the next start
    advances = [(ends[j + 1] if j + 1 < n else 1) & ~ends[j] for j in range(n)]
    moved = [marks[j] + strides[j] if strides[j] is not None else marks[j] for j in range(last + 1)]
    written = set()
    for k in range(last + 1):
        mk = marks[k]
        if id(mk) in written:
            continue
        written.add(id(mk))
        with m.If(start):
            m.d.sync += mk.eq(base)
        with m.Elif(step):
            for j in range(k + 1):
                with m.If(advances[j]):
                    m.d.sync += mk.eq(moved[j])
    return marks[last]
