"""Running tiles on the accelerator in amaranth.sim (Python simulation).

Used by the whole-tile tests and by the validation of the cycle model (``gen.perf``);
slow (Python), so keep tiles small.
"""

from __future__ import annotations

from amaranth.sim import Simulator

from .config import HardwareConfig
from .driver import TileProgram, run_tile

__all__ = ["run_programs", "run_accelerator", "run_testbench", "pack_lanes", "unpack_lanes", "SimBus"]


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


class _ResetSession:
    """One compiled simulation of an accelerator, run again from reset for each job.

    Building a ``Simulator`` of the whole accelerator compiles it to Python (about 2.5
    CPU-seconds for the small configuration: a third of a small tile's test); the design is a
    function of its configuration alone, so one compiled simulation per configuration serves
    every run. ``Simulator.reset`` returns every signal and memory to its initial value and
    restarts the clock and the testbench, as a new ``Simulator`` starts."""

    def __init__(self, config: HardwareConfig):
        from .top import Accelerator
        self.dut, self.job, self.fresh = Accelerator(config), None, True
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._bench)

    async def _bench(self, ctx):
        if self.job is not None:
            await self.job(ctx, self.dut)

    def run(self, job) -> None:
        self.job = job
        try:
            if not self.fresh:        # (a new simulation's testbench has not started yet)
                self.sim.reset()
            self.fresh = False
            self.sim.run()
        finally:
            self.job = None


#: compiled simulations by configuration (a few: each holds a whole design)
_SESSIONS: dict[str, _ResetSession] = {}
_MAX_SESSIONS = 2


def _session(key: str, config: HardwareConfig) -> _ResetSession:
    if key not in _SESSIONS:
        while len(_SESSIONS) >= _MAX_SESSIONS:
            _SESSIONS.pop(next(iter(_SESSIONS)))
        _SESSIONS[key] = _ResetSession(config)
    return _SESSIONS[key]


def run_accelerator(config: HardwareConfig, bench, vcd: str | None = None, reuse: bool = True) -> None:
    """Run ``bench(ctx, dut)`` (async) on the accelerator of ``config`` from reset, with a
    clock. ``reuse``: on the compiled simulation of ``config`` kept from an earlier run (not
    with a ``vcd``); ``dut`` is that simulation's accelerator. A run that raises drops it:
    one cut short may leave it mid-cycle."""
    if reuse and not vcd:
        key = repr(sorted(config.to_dict().items()))
        try:
            _session(key, config).run(bench)
        except BaseException:
            _SESSIONS.pop(key, None)
            raise
        return
    from .top import Accelerator
    dut = Accelerator(config)

    async def testbench(ctx):
        await bench(ctx, dut)

    run_testbench(dut, testbench, vcd=vcd)


def run_programs(config: HardwareConfig, programs: list[TileProgram], max_cycles: int = 2_000_000,
                 vcd: str | None = None, reuse: bool = True) -> list[list[int]]:
    """Run each tile program on one simulated accelerator of ``config``
    (:func:`run_accelerator`) with the streaming host protocol (:func:`gen.driver.run_tile`)
    and return the values read for each."""
    results: list[list[int]] = []

    async def bench(ctx, sim_dut):
        bus = SimBus(ctx, sim_dut, max_cycles)
        for prog in programs:
            results.append(await run_tile(bus, prog))

    run_accelerator(config, bench, vcd, reuse)
    return results


def run_testbench(dut, bench, clock: bool = True, vcd: str | None = None) -> None:
    """Simulate ``dut`` with one async testbench (``async def bench(ctx)``), its waveforms
    into ``vcd`` if given."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
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
