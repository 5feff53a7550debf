"""The buffer memories alone in amaranth.sim (gen/memories.py): the gradient buffer built as two
banks of one read and one write port each. Reference: a Python list of words, written and read
by hand; the address of every access picks its bank (word ``a`` in bank ``a // bank_depth``)."""

from __future__ import annotations

import random

from ttsnn.gen.backward.core_stage_engine import stage_read_port, stage_write_port
from ttsnn.gen.config import load_config
from ttsnn.gen.memories import BufferMemories, DatapathPort
from ttsnn.gen.sim import run_testbench

CFG = load_config("small")
GBUF = CFG.backward_regions["gbuf"]
WIDTH, DEPTH, HALF = GBUF.width_bits, GBUF.depth, GBUF.bank_depth
P, GB = CFG.lanes, CFG.gradients.width
ALL = (1 << P) - 1


def _dut():
    reads = [DatapathPort("grad_a", "gbuf", stage_read_port(WIDTH), shared=True),
             DatapathPort("grad_b", "gbuf", stage_read_port(WIDTH))]
    writes = [DatapathPort("grad_w", "gbuf", stage_write_port(WIDTH, P), granularity=GB),
              DatapathPort("grad_w2", "gbuf", stage_write_port(WIDTH))]
    return BufferMemories(CFG, reads, writes, frozenset({"gbuf"}), frozenset({"gbuf"}))


def _run(bench):
    dut = _dut()

    async def testbench(ctx):
        await bench(ctx, dut)

    run_testbench(dut, testbench)


def test_the_gradient_buffer_has_two_banks_of_half_the_words():
    assert GBUF.banks == 2 and 2 * HALF == DEPTH
    assert CFG.backward_regions["gbuf"].bits == WIDTH * DEPTH


def test_two_reads_and_two_writes_per_cycle_in_different_banks_and_the_host_while_idle():
    rng = random.Random(5)
    model = [0] * DEPTH
    lo = rng.sample(range(HALF), 24)                   # words of bank 0
    hi = [HALF + a for a in rng.sample(range(HALF), 24)]   # words of bank 1
    seen = []

    async def bench(ctx, dut):
        host = dut.host.gbuf
        for a in lo[:12] + hi[:12]:                      # the host fills both banks while idle
            model[a] = rng.getrandbits(WIDTH)
            ctx.set(host.addr, a)
            ctx.set(host.wr_data, model[a])
            ctx.set(host.wr_en, 1)
            await ctx.tick()
        ctx.set(host.wr_en, 0)
        ctx.set(dut.busy, 1)
        for i in range(12):
            # read a word of each bank, on either port, and write one word into each bank
            ra, rb = (lo[i], hi[i]) if i % 2 else (hi[i], lo[i])
            wa, wb = (lo[12 + i], hi[12 + i]) if i % 3 else (hi[12 + i], lo[12 + i])
            va, vb = rng.getrandbits(WIDTH), rng.getrandbits(WIDTH)
            for port, addr in ((dut.grad_a, ra), (dut.grad_b, rb)):
                ctx.set(port.en, 1)
                ctx.set(port.addr, addr)
            for port, addr, value in ((dut.grad_w, wa, va), (dut.grad_w2, wb, vb)):
                ctx.set(port.en, ALL if port is dut.grad_w else 1)
                ctx.set(port.addr, addr)
                ctx.set(port.data, value)
            await ctx.tick()
            seen.append((ctx.get(dut.grad_a.data), ctx.get(dut.grad_b.data), model[ra], model[rb]))
            model[wa], model[wb] = va, vb
        for port in (dut.grad_a, dut.grad_b, dut.grad_w, dut.grad_w2):
            ctx.set(port.en, 0)
        await ctx.tick()
        # a read port keeps its data while the other port reads the other bank
        ctx.set(dut.grad_b.en, 1)
        ctx.set(dut.grad_b.addr, hi[0])
        held = ctx.get(dut.grad_a.data)
        await ctx.tick()
        ctx.set(dut.grad_b.en, 0)
        assert ctx.get(dut.grad_a.data) == held and ctx.get(dut.grad_b.data) == model[hi[0]]
        ctx.set(dut.busy, 0)
        for a in lo[12:] + hi[12:]:                      # the host reads the datapath's writes
            ctx.set(host.addr, a)
            ctx.set(host.rd_en, 1)
            await ctx.tick()
            seen.append((ctx.get(host.rd_data), None, model[a], None))
        ctx.set(host.rd_en, 0)

    _run(bench)
    assert len(seen) == 36
    for got_a, got_b, want_a, want_b in seen:
        assert got_a == want_a
        assert got_b == want_b or want_b is None


def test_a_host_write_while_busy_does_not_reach_the_banks():
    """While a tile runs the datapath owns both banks' ports (the host writes between stages)."""
    got = []

    async def bench(ctx, dut):
        host = dut.host.gbuf
        for a, v in ((3, 11), (HALF + 3, 22)):
            ctx.set(host.addr, a)
            ctx.set(host.wr_data, v)
            ctx.set(host.wr_en, 1)
            await ctx.tick()
        ctx.set(dut.busy, 1)
        ctx.set(host.addr, 3)
        ctx.set(host.wr_data, 99)
        await ctx.tick()
        ctx.set(host.wr_en, 0)
        ctx.set(dut.busy, 0)
        for a in (3, HALF + 3):
            ctx.set(host.addr, a)
            ctx.set(host.rd_en, 1)
            await ctx.tick()
            got.append(ctx.get(host.rd_data))
        ctx.set(host.rd_en, 0)

    _run(bench)
    assert got == [11, 22]


def test_lane_write_enables_write_only_their_lanes():
    """The backward datapath's write port ``grad_w`` enables ``Gb``-bit lanes one by one (a
    straddled stage writes a pixel's lanes of a pass); ``grad_w2`` and the host write every lane.
    Reference: a word of ``P`` lanes merged by hand."""
    rng = random.Random(7)
    lane_mask = lambda en: sum(((1 << GB) - 1) << (l * GB) for l in range(P) if (en >> l) & 1)  # noqa: E731
    cases = [(a, rng.getrandbits(WIDTH), rng.getrandbits(WIDTH), rng.randrange(1 << P))
             for a in (5, HALF + 9, 17, HALF + 1)]
    got = []

    async def bench(ctx, dut):
        host = dut.host.gbuf
        for a, old, _, _ in cases:                       # the host writes the old words
            ctx.set(host.addr, a)
            ctx.set(host.wr_data, old)
            ctx.set(host.wr_en, 1)
            await ctx.tick()
        ctx.set(host.wr_en, 0)
        ctx.set(dut.busy, 1)
        for a, _, new, en in cases:
            ctx.set(dut.grad_w.en, en)
            ctx.set(dut.grad_w.addr, a)
            ctx.set(dut.grad_w.data, new)
            await ctx.tick()
        ctx.set(dut.grad_w.en, 0)
        ctx.set(dut.busy, 0)
        for a, _, _, _ in cases:
            ctx.set(host.addr, a)
            ctx.set(host.rd_en, 1)
            await ctx.tick()
            got.append(ctx.get(host.rd_data))
        ctx.set(host.rd_en, 0)

    _run(bench)
    assert got == [(old & ~lane_mask(en)) | (new & lane_mask(en)) for _, old, new, en in cases]
    assert any(0 < en < ALL for _, _, _, en in cases)
