"""Running tiles on the accelerator in amaranth.sim (Python simulation).

Used by the whole-tile tests and by the validation of the cycle model (``gen.perf``);
slow (Python), so keep tiles small.
"""

from __future__ import annotations

from amaranth.sim import Simulator

from .driver import TileProgram
from .top import Accelerator

__all__ = ["run_programs", "run_testbench", "pack_lanes", "unpack_lanes"]


def run_programs(dut: Accelerator, programs: list[TileProgram], max_cycles: int = 2_000_000,
                 vcd: str | None = None) -> list[list[int]]:
    """Execute each program (writes, start, wait for done, reads) in order on one simulated
    accelerator and return the values read for each."""
    results: list[list[int]] = []

    async def bench(ctx):
        for prog in programs:
            for a, w in prog.writes + [prog.start]:
                ctx.set(dut.host_addr, a)
                ctx.set(dut.host_wdata, w)
                ctx.set(dut.host_write, 1)
                await ctx.tick()
            ctx.set(dut.host_write, 0)
            waited = 0
            while True:
                await ctx.tick()
                waited += 1
                if ctx.get(dut.done):
                    break
                if waited > max_cycles:
                    raise TimeoutError(f"tile {prog.tile.index} not done after {max_cycles} cycles")
            values: list[int] = []
            for a in prog.reads:
                ctx.set(dut.host_addr, a)
                ctx.set(dut.host_read, 1)
                await ctx.tick()
                if ctx.get(dut.host_rvalid):
                    values.append(ctx.get(dut.host_rdata))
            ctx.set(dut.host_read, 0)
            while len(values) < len(prog.reads):
                await ctx.tick()
                if ctx.get(dut.host_rvalid):
                    values.append(ctx.get(dut.host_rdata))
            results.append(values)

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
