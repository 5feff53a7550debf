"""The host interface alone in amaranth.sim (gen/host.py): the counter bank's timing (a cycle's
increments land one cycle late, clear alike), the 2-cycle read latency, sub-words staged into
one whole-word region write, the busy rule of the region ports, the descriptor registers."""

from __future__ import annotations

from amaranth.sim import Simulator

from ttsnn.gen.config import load_config
from ttsnn.gen.host import HostInterface
from ttsnn.gen.hostmap import REG_CTRL, host_map

CFG = load_config("small")
HMAP = host_map(CFG)
HB = CFG.widths.host_data


def _run(bench):
    dut = HostInterface(CFG, {"cycles": 1, "c1_busy": 1, "c4_macs": 4})
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        await bench(ctx, dut)

    sim.add_testbench(testbench)
    sim.run()


async def _write(ctx, dut, addr, value):
    ctx.set(dut.host_addr, addr)
    ctx.set(dut.host_wdata, value)
    ctx.set(dut.host_write, 1)
    await ctx.tick()
    ctx.set(dut.host_write, 0)


async def _read(ctx, dut, addr):
    """One read strobe; the value 2 cycles later (``host_rvalid`` high then, not before)."""
    ctx.set(dut.host_addr, addr)
    ctx.set(dut.host_read, 1)
    await ctx.tick()
    ctx.set(dut.host_read, 0)
    assert not ctx.get(dut.host_rvalid)
    await ctx.tick()
    assert ctx.get(dut.host_rvalid)
    return ctx.get(dut.host_rdata)


def _counter(ctx_values):
    lo, hi = ctx_values
    return lo | (hi << HB)


def test_counters_add_each_cycles_increments_one_cycle_late_and_clear():
    seen = {}

    async def bench(ctx, dut):
        c4 = HMAP.counter("c4_macs").address
        ctx.set(dut.counts.c4_macs, 3)                 # cycles 0..4: c4_macs += 3
        for _ in range(5):
            await ctx.tick()
        ctx.set(dut.counts.c4_macs, 0)
        seen["cycle 5"] = await _read(ctx, dut, c4)    # cycle 4's increment not in yet
        seen["cycle 7"] = _counter([await _read(ctx, dut, c4), await _read(ctx, dut, c4 + 1)])
        ctx.set(dut.counts.c1_busy, 1)                 # counting in the clear's cycle and the next
        await _write(ctx, dut, REG_CTRL, 2)
        await ctx.tick()
        ctx.set(dut.counts.c1_busy, 0)
        seen["c4 after clear"] = await _read(ctx, dut, c4)
        seen["c1 after clear"] = await _read(ctx, dut, HMAP.counter("c1_busy").address)

    _run(bench)
    # a cycle's increments are readable two cycles later (one more than without the register)
    assert seen["cycle 5"] == 12 and seen["cycle 7"] == 15
    # the clear drops its own cycle's increment (as a counter adding at once would) and keeps
    # the next cycle's
    assert seen["c4 after clear"] == 0 and seen["c1 after clear"] == 1


def test_sub_words_are_staged_into_one_word_write_only_while_idle():
    # the widest region the host may write only while idle (the streamed regions, ``affine``
    # included since the cores' early start, are written while a tile runs)
    reg = max((r for r in HMAP.regions if r.name not in HostInterface.STREAM_WRITE),
              key=lambda r: r.subwords)
    assert reg.subwords > 1
    writes = []

    async def bench(ctx, dut):
        port = getattr(dut.regions, reg.name)
        for busy in (0, 1):
            ctx.set(dut.busy, busy)
            for k in range(reg.subwords):
                ctx.set(dut.host_addr, reg.address(3, k))
                ctx.set(dut.host_wdata, 0x11 * (k + 1))
                ctx.set(dut.host_write, 1)
                if ctx.get(port.wr_en):
                    writes.append((busy, k, ctx.get(port.addr), ctx.get(port.wr_data)))
                await ctx.tick()
            ctx.set(dut.host_write, 0)

    _run(bench)
    expect = sum((0x11 * (k + 1)) << (k * HB) for k in range(reg.subwords)) & ((1 << reg.width_bits) - 1)
    assert writes == [(0, reg.subwords - 1, 3, expect)]


def test_descriptor_registers_and_start_only_while_idle():
    seen = {}

    async def bench(ctx, dut):
        a = HMAP.register("rank").address
        await _write(ctx, dut, a, 7)
        seen["rank"] = ctx.get(dut.desc.rank)
        ctx.set(dut.busy, 1)
        await _write(ctx, dut, a, 9)
        seen["rank_busy"] = ctx.get(dut.desc.rank)
        ctx.set(dut.host_addr, REG_CTRL)
        ctx.set(dut.host_wdata, 1)
        ctx.set(dut.host_write, 1)
        seen["start_busy"] = ctx.get(dut.start)
        ctx.set(dut.busy, 0)
        seen["start_idle"] = ctx.get(dut.start)
        ctx.set(dut.host_write, 0)
        seen["read_back"] = await _read(ctx, dut, a)

    _run(bench)
    assert seen == {"rank": 7, "rank_busy": 7, "start_busy": 0, "start_idle": 1, "read_back": 7}
