"""Addresses of a loop nest stepped by additions (no multiplier between a counter and an address).

A backward engine walks a nest of counters ``c_0 .. c_{n-1}`` (outer first, one step per cycle,
:func:`gen.engines.common.loops`) and addresses a tensor at ``base + sum_k c_k * stride_k``.
Computing that sum from the counters puts a chain of multipliers between a counter register and
a memory's address (the whole design's critical path on the ECP5, docs/synthesis.md). Instead
one register per level holds the address with the inner counters at zero ("mark" ``M_k``, the
address of ``c_0 .. c_k, 0 .. 0``): a step in which level ``j`` advances (the inner levels
wrap) sets ``M_j`` and every inner mark to ``M_j + stride_j``; the address is the innermost mark.
The strides are products of descriptor fields only (constant while the engine runs), computed
into registers with one multiply per register (:func:`registered_product`): they hold the new
fields :data:`STAGE_LATENCY` cycles after the last stage-field write, and the accelerator's
``start`` waits that long after it (gen/top.py, ``settle``; not counted in ``cycles``).
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Module, Signal, Value

__all__ = ["stepped_address", "registered", "registered_product", "STAGE_LATENCY"]

#: Cycles after the last write of a stage field until every stride and first address of the
#: backward engines holds its new value: the deepest chain is the factors registered, two
#: levels of products (four factors) and an added offset (:func:`registered_product`). A
#: ``start`` must come no sooner (gen/top.py waits for the longer of this and the geometry's
#: latency; the engines' testbenches wait this many cycles).
STAGE_LATENCY = 4


def registered(m: Module, value, width: int, name: str) -> Signal:
    """``value`` (a function of stage fields or of registers of them, no multiply of two
    fields: one per register, :func:`registered_product`) in a register, updated every cycle:
    one cycle of :data:`STAGE_LATENCY`."""
    reg = Signal(width, name=name)
    m.d.sync += reg.eq(value)
    return reg


def registered_product(m: Module, factors: Sequence, width: int, name: str) -> Signal:
    """The product of ``factors`` (functions of stage fields, no multiply among them) modulo
    ``2^width``, one multiply per register: the factors registered, then pairwise products
    (a balanced tree), each registered. Latency ``1 + ceil(log2(len(factors)))`` cycles (3 for
    four factors); the modulo of every partial product does not change the product's."""
    level = [registered(m, f, width, f"{name}_f{i}") for i, f in enumerate(factors)]
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = [registered(m, level[i] * level[i + 1], width, f"{name}_p{depth}_{i // 2}")
               for i in range(0, len(level) - 1, 2)]
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    return level[0]


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
