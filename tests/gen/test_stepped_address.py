"""Addresses stepped by additions (gen/backward/stepped_address.py) against the sum of counters
times strides written out by hand, over a whole loop nest (with a level that does not move the
address, a negative stride, a one-step level) and across a restart."""

from __future__ import annotations

import itertools

import pytest
from amaranth.hdl import Module, Signal

from ttsnn.gen.backward.stepped_address import stepped_address
from ttsnn.gen.engines.common import loops
from ttsnn.gen.sim import run_testbench

COUNTS = (2, 3, 1, 4)                  # outer first; the third level has a single value
STRIDES = (100, None, 7, -3)           # the second level does not move the address
BASE, WIDTH = 5000, 16


class _Nest:
    def __init__(self):
        self.m = m = Module()
        self.start, self.run = Signal(), Signal()
        self.counters = [Signal(8, name=f"c{k}") for k in range(len(COUNTS))]
        ends = loops(m, list(zip(self.counters, COUNTS)), self.run)
        self.addr = stepped_address(m, ends, self.run, self.start, BASE,
                                    list(STRIDES), WIDTH, "a")
        with m.If(self.start):
            m.d.sync += [c.eq(0) for c in self.counters]


@pytest.mark.parametrize("restarts", [1, 2])
def test_stepped_address_is_the_sum_of_counters_times_strides(restarts):
    nest = _Nest()
    want = [(BASE + sum(c * s for c, s in zip(cs, STRIDES) if s is not None)) % (1 << WIDTH)
            for cs in itertools.product(*(range(n) for n in COUNTS))]
    got = []

    async def bench(ctx):
        for _ in range(restarts):
            ctx.set(nest.start, 1)
            await ctx.tick()
            ctx.set(nest.start, 0)
            ctx.set(nest.run, 1)
            run = []
            for _ in want:
                run.append(ctx.get(nest.addr))
                await ctx.tick()
            ctx.set(nest.run, 0)
            got.append(run)

    run_testbench(nest.m, bench)
    assert got == [want] * restarts


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_stepped_address_rejects_a_nest_it_cannot_step():
    m = Module()
    with pytest.raises(ValueError, match="no level moves"):
        stepped_address(m, [Signal()], Signal(), Signal(), 0, [None], 8, "a")
    with pytest.raises(ValueError, match="2 strides for 1"):
        stepped_address(m, [Signal()], Signal(), Signal(), 0, [1, 2], 8, "a")
