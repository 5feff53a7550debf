"""Running tiles on the accelerator in amaranth.sim (Python simulation).

Used by the whole-tile tests and by the validation of the cycle model (``gen.perf``);
slow (Python), so keep tiles small.
"""

from __future__ import annotations

from amaranth.sim import Simulator

from .driver import TileProgram, run_tile

__all__ = ["run_programs", "run_testbench", "pack_lanes", "unpack_lanes", "SimBus"]


class SimBus:
    """:class:`gen.driver.HostBus` over an amaranth.sim testbench context."""

    def __init__(self, ctx, dut, max_wait: int):
        self.ctx, self.dut, self.max_wait = ctx, dut, max_wait

    async def write(self, addr: int, data: int) -> None:
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.host_addr, addr)
        ctx.set(dut.host_wdata, data)
        ctx.set(dut.host_write, 1)
        await ctx.tick()
        ctx.set(dut.host_write, 0)

    async def read(self, addrs) -> list[int]:
        ctx, dut = self.ctx, self.dut
        values: list[int] = []
        for a in addrs:
            ctx.set(dut.host_addr, a)
            ctx.set(dut.host_read, 1)
            await ctx.tick()
            if ctx.get(dut.host_rvalid):
                values.append(ctx.get(dut.host_rdata))
        ctx.set(dut.host_read, 0)
        while len(values) < len(addrs):
            await ctx.tick()
            if ctx.get(dut.host_rvalid):
                values.append(ctx.get(dut.host_rdata))
        return values

    async def wait_event(self) -> None:
        waited = 0
        while not self.ctx.get(self.dut.event):
            await self.ctx.tick()
            waited += 1
            if waited > self.max_wait:
                raise TimeoutError(f"the accelerator raised no event in {self.max_wait} cycles")


def run_programs(dut, programs: list[TileProgram], max_cycles: int = 2_000_000,
                 vcd: str | None = None) -> list[list[int]]:
    """Run each tile program on one simulated accelerator with the streaming host protocol
    (:func:`gen.driver.run_tile`) and return the values read for each."""
    results: list[list[int]] = []

    async def bench(ctx):
        bus = SimBus(ctx, dut, max_cycles)
        for prog in programs:
            results.append(await run_tile(bus, prog))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results


def run_testbench(dut, bench, clock: bool = True) -> None:
    """Simulate ``dut`` with one async testbench (``async def bench(ctx)``)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


async def start_engine(ctx, engine, desc, ready, settle: int) -> None:
    """Start a forward engine alone: its descriptor fields ``desc`` and its ready inputs
    ``ready`` (port name -> value) set, ``settle + 1`` cycles for the tile geometry (its
    ``latency``), then ``start`` for one cycle."""
    for name, value in desc.items():
        ctx.set(engine.desc[name], value)
    for name, value in ready.items():
        ctx.set(getattr(engine, name), value)
    await ctx.tick().repeat(settle + 1)
    ctx.set(engine.start, 1)
    await ctx.tick()
    ctx.set(engine.start, 0)


def pack_lanes(values, bits: int) -> int:
    """Flat vector of lanes (lane 0 in the low bits) from signed integers."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def unpack_lanes(word: int, lanes: int, bits: int) -> list[int]:
    """Signed lanes of a flat vector."""
    out = []
    for i in range(lanes):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out
