"""Addresses stepped by additions (gen/backward/stepped_address.py) against the sum of counters
times strides written out by hand, over a whole loop nest (with a level that does not move the
address, a negative stride, a one-step level) and across a restart; the strides' products
registered one multiply per register, against the product modulo 2^width by hand."""

from __future__ import annotations

import itertools
import math

import pytest
from amaranth.hdl import Module, Signal

from ttsnn.gen.backward.stepped_address import STAGE_LATENCY, registered_product, stepped_address
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


def test_stepped_address_rejects_a_nest_it_cannot_step():
    m = Module()
    m._MustUse__silence = True       # never elaborated: only the rejections are checked
    with pytest.raises(ValueError, match="no level moves"):
        stepped_address(m, [Signal()], Signal(), Signal(), 0, [None], 8, "a")
    with pytest.raises(ValueError, match="2 strides for 1"):
        stepped_address(m, [Signal()], Signal(), Signal(), 0, [1, 2], 8, "a")


@pytest.mark.parametrize("factors", [(37,), (300, 5), (7, 11, 13), (255, 254, 3, 9), (2, 3, 5, 7, 11)])
def test_registered_product_is_the_product_after_its_latency(factors):
    """Every factor changes at once; ``1 + ceil(log2(n))`` cycles later (not before: the
    value in between is a mix of old and new partial products) the output is the new
    product modulo 2^12 (255*254*3*9 wraps) and stays it."""
    width = 12
    m = Module()
    ins = [Signal(9, name=f"f{i}") for i in range(len(factors))]
    out = registered_product(m, ins, width, "p")
    latency = 1 + math.ceil(math.log2(len(factors)))
    old, new = [1] * len(factors), list(factors)
    want_old, want_new = 1, math.prod(new) % (1 << width)
    seen = []

    async def bench(ctx):
        for i, v in zip(ins, old):
            ctx.set(i, v)
        for _ in range(latency + 1):
            await ctx.tick()
        for i, v in zip(ins, new):
            ctx.set(i, v)
        for _ in range(latency + 3):
            seen.append(ctx.get(out))
            await ctx.tick()

    run_testbench(m, bench)
    assert seen[0] == want_old and seen[latency - 1] != want_new
    assert seen[latency:] == [want_new] * 3
    # four factors and an offset added in a register of its own fit the start's wait
    assert 1 + math.ceil(math.log2(4)) + 1 <= STAGE_LATENCY
