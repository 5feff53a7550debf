"""Pieces every engine uses: memory-port signatures, loop nests, small address helpers."""

from __future__ import annotations

from typing import Mapping

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..tilegeo import ROW_BITS

__all__ = ["read_port", "write_port", "counts_layout", "loops", "delay", "inc3", "times3", "active_lanes",
           "ROW_BITS"]


def read_port(width: int) -> wiring.Signature:
    """An engine's read port of a memory (as the engine sees it): ``en`` and ``addr`` out,
    ``data`` (``width`` bits) in, one cycle after ``en``."""
    return wiring.Signature({"en": Out(1), "addr": Out(ROW_BITS), "data": In(width)})


def write_port(width: int, lanes: int = 1) -> wiring.Signature:
    """An engine's write port of a memory: ``en`` (one bit per lane of ``width // lanes``
    bits), ``addr``, ``data``, written at the end of the cycle."""
    return wiring.Signature({"en": Out(lanes), "addr": Out(ROW_BITS), "data": Out(width)})


def counts_layout(widths: Mapping[str, int]) -> data.StructLayout:
    """Per-cycle increments of the performance counters an engine drives (field: counter)."""
    return data.StructLayout(dict(widths))


def loops(m: Module, levels, enable):
    """Advance a nest of counters (outer first: ``(signal, count)``) by one step when
    ``enable``. Returns ``ends``: ``ends[i]`` is true when level ``i`` and all inner
    levels are at their last value (the step that finishes level ``i``)."""
    ends = [None] * len(levels)
    all_last = Const(1)
    for idx in range(len(levels) - 1, -1, -1):
        sig, count = levels[idx]
        is_last = sig == (count - 1)
        with m.If(enable & all_last):
            m.d.sync += sig.eq(Mux(is_last, 0, sig + 1))
        all_last = all_last & is_last
        ends[idx] = all_last
    return ends


def delay(m: Module, sig, n: int, name: str):
    """``sig`` delayed by ``n`` registers named ``{name}_1`` .. (``sig`` itself for ``n == 0``)."""
    for k in range(n):
        nxt = Signal.like(sig, name=f"{name}_{k + 1}")
        m.d.sync += nxt.eq(sig)
        sig = nxt
    return sig


def inc3(v):
    """``(v + 1) mod 3``."""
    return Mux(v == 2, 0, v + 1)


def times3(sel, unit):
    """``sel * unit`` for ``sel`` in 0..2, without a multiplier."""
    return Mux(sel == 0, 0, Mux(sel == 1, unit, unit << 1))


def active_lanes(total, group, shift):
    """Lanes of group ``group`` (of ``1 << shift``) that hold one of ``total`` values."""
    rest = (total - (group << shift))[:ROW_BITS]
    return Mux(rest >= (1 << shift), 1 << shift, rest)
