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


def test_descriptor_words_set_every_field_and_read_back():
    """``desc_word<k>``: the descriptor a host word at a time, fields packed in register order
    (each field's value at its layout offset, written as a per-field register would keep it);
    a read of a field register then returns that field, while busy the words are ignored."""
    from ttsnn.gen.hostmap import DESCRIPTOR_FIELDS, descriptor_word_values
    fields = {name: ((0x9E3779B97F4A7C15 * (i + 3)) % (1 << 64)) >> (64 - bits)
              for i, (name, bits, _) in enumerate(DESCRIPTOR_FIELDS)}   # arbitrary bits, every field
    words = descriptor_word_values(fields, HB)
    addrs = [HMAP.register(f"desc_word{k}").address for k in range(len(words))]
    assert len(words) == -(-sum(b for _, b, _ in DESCRIPTOR_FIELDS) // HB) < len(DESCRIPTOR_FIELDS)
    seen, strobes = {}, []

    async def bench(ctx, dut):
        for a, w in zip(addrs, words):
            ctx.set(dut.host_addr, a)
            ctx.set(dut.host_wdata, w)
            ctx.set(dut.host_write, 1)
            strobes.append(ctx.get(dut.desc_write))
            await ctx.tick()
        ctx.set(dut.host_write, 0)
        for name, _, _ in DESCRIPTOR_FIELDS:
            seen[name] = await _read(ctx, dut, HMAP.register(name).address)
        seen["words"] = [await _read(ctx, dut, a) for a in addrs]
        ctx.set(dut.busy, 1)
        await _write(ctx, dut, addrs[0], 0)
        seen["rank_busy"] = ctx.get(dut.desc.rank)

    _run(bench)
    assert {n: seen[n] for n in fields} == fields
    assert seen["words"] == words and strobes == [1] * len(words)
    assert seen["rank_busy"] == fields["rank"]


def test_counter_clear_zeroes_the_streaming_counts():
    """``ctrl`` bit 1 zeroes the host's streaming counts with the counters (a tile's set-up
    writes no zeros to them)."""
    from ttsnn.gen.hostmap import STREAM_REGISTERS
    names = [n for n, _, access, _ in STREAM_REGISTERS if access == "rw"]
    seen = {}

    async def bench(ctx, dut):
        for i, n in enumerate(names):
            await _write(ctx, dut, HMAP.register(n).address, 5 + i)
        seen["before"] = [ctx.get(dut.stream_in[n]) for n in names]
        await _write(ctx, dut, REG_CTRL, 2)
        seen["after"] = [await _read(ctx, dut, HMAP.register(n).address) for n in names]

    _run(bench)
    assert seen["before"] == [5 + i for i in range(len(names))] and seen["after"] == [0] * len(names)
