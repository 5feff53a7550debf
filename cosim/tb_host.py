"""cocotb testbench: runs tiles prepared in Python on the top level with the streaming host
protocol.

It knows nothing about layers: the job file (``COSIM_JOBS``, an ``.npz`` written by
:mod:`cosim.jobs`) lists, per tile, the set-up writes, the start write, the input/residual
rows to stream in, the output rows to read, the counter reads, the ring sizes and the
streaming registers. The protocol itself is :func:`gen.driver.run_tile` (the one the
amaranth.sim tests use too), run here on :class:`CocotbBus`: inputs are driven on the falling
edge, reads are pipelined, and while the accelerator has nothing for the host the testbench
sleeps on the rising edge of ``event`` (no Python per cycle). What was read, with cycles and
wall times, goes to ``COSIM_RESULTS``. Decoding and comparing with the golden model happen in
the calling process.

Ports used: ``clk``, ``rst``, ``host_addr``, ``host_wdata``, ``host_write``, ``host_read``,
``host_rdata``, ``host_rvalid``, ``done``, ``event``.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from cosim.jobs import BackwardJob, TileJob, atomic_write_npz, read_jobs, words_to_limbs
from gen.backward.host import run_backward_tile
from gen.driver import run_tile


class TileHang(RuntimeError):
    """A tile went past its cycle limit waiting for ``event``."""


class CocotbBus:
    """:class:`gen.driver.HostBus` over the top level's host ports under cocotb.

    Every input is driven just after a falling edge and sampled by the next rising edge; a
    write or a read address takes one cycle. :meth:`begin` starts a tile: it sets the cycle
    limit (from that moment) and watches for the start write so that the cycles from the
    start write to the rising edge of ``done`` are measured on the testbench clock.
    """

    def __init__(self, dut, period_ns: float, latency: int):
        self.dut, self.period, self.latency = dut, period_ns, latency
        self.edge = FallingEdge(dut.clk)
        self.job: TileJob | None = None
        self.t_begin = 0.0
        self.t_start: float | None = None
        self.t_done: float | None = None
        self.wait_wall = 0.0
        self.wait_cycles = 0
        self.waits = 0

    def now_cycles(self, since: float) -> int:
        return round((get_sim_time("ns") - since) / self.period)

    def begin(self, job: TileJob) -> None:
        self.job = job
        self.t_begin = get_sim_time("ns")
        self.t_start = self.t_done = None
        self.wait_wall, self.wait_cycles, self.waits = 0.0, 0, 0

    async def _watch_done(self) -> None:
        await RisingEdge(self.dut.done)
        self.t_done = get_sim_time("ns")

    async def write(self, addr: int, data: int) -> None:
        dut = self.dut
        dut.host_addr.value = addr
        dut.host_wdata.value = data
        dut.host_write.value = 1
        await self.edge
        dut.host_write.value = 0
        if (isinstance(self.job, TileJob) and self.t_start is None and (addr, data) == self.job.start):
            # done fell at the edge that took the start; the next rising edge ends the tile
            self.t_start = get_sim_time("ns")
            cocotb.start_soon(self._watch_done())

    async def read(self, addrs) -> list[int]:
        """Issue one read per cycle; collect ``host_rdata`` on every cycle ``host_rvalid`` is
        high (one sample per cycle, so each valid cycle is seen exactly once)."""
        dut = self.dut
        addr_sig, rd, rvalid, rdata = dut.host_addr, dut.host_read, dut.host_rvalid, dut.host_rdata
        out: list[int] = []
        n = len(addrs)
        issued = idle = 0
        rd.value = 1 if n else 0
        while len(out) < n:
            if issued < n:
                addr_sig.value = addrs[issued]
                issued += 1
            await self.edge
            if issued == n:
                rd.value = 0
            if rvalid.value == 1:
                out.append(rdata.value.to_unsigned())
                idle = 0
            elif issued == n:
                idle += 1
                if idle > 4 * self.latency + 8:
                    raise RuntimeError(f"host_rvalid stayed low: {len(out)} of {n} reads answered")
        return out

    async def wait_event(self) -> None:
        """Return when ``event`` is high: at once if it is, else after its rising edge (then
        at the next falling edge, where the host drives again). Past the tile's cycle limit
        this raises :class:`TileHang` instead of waiting for ever."""
        dut = self.dut
        if dut.event.value == 1:
            return
        job = self.job
        limit = job.cycle_limit if job is not None else 1 << 40
        used = self.now_cycles(self.t_begin)
        left = limit - used
        where = f"tile job {job.index}" if job is not None else "tile"
        if left <= 0:
            raise TileHang(f"{where}: still running after {used} cycles, past its cycle limit of "
                           f"{limit} (counted from its first set-up write; done={dut.done.value}, "
                           f"busy={dut.busy.value})")
        self.waits += 1
        t0, s0 = time.perf_counter(), get_sim_time("ns")
        try:
            await with_timeout(RisingEdge(dut.event), left * self.period, "ns")
        except SimTimeoutError:
            raise TileHang(f"{where}: no event for {left} cycles, which reached its cycle limit "
                           f"of {limit} (counted from its first set-up write; done="
                           f"{dut.done.value}, busy={dut.busy.value})") from None
        await self.edge
        self.wait_cycles += round((get_sim_time("ns") - s0) / self.period)
        self.wait_wall += time.perf_counter() - t0


async def _run_jobs(bus: CocotbBus, jobs, period: float) -> dict[str, np.ndarray]:
    """Run one batch of jobs (tiles) and return the result arrays of :mod:`cosim.jobs`."""
    results: dict[str, np.ndarray] = {}
    for k, job in enumerate(jobs):
        bus.begin(job)
        t0 = time.perf_counter()
        backward = isinstance(job, BackwardJob)
        values = await (run_backward_tile(bus, job) if backward else run_tile(bus, job))
        wall = time.perf_counter() - t0
        span = bus.now_cycles(bus.t_begin)
        if backward:               # many starts: the RTL's cycles counter tells the busy cycles
            bus.t_start, bus.t_done = bus.t_begin, bus.t_begin
        if bus.t_start is None or bus.t_done is None:
            raise RuntimeError(f"tile job {job.index}: the start write or the rising edge of done "
                               f"was not seen")
        results[f"rv_{k}"] = words_to_limbs(values)
        results[f"cycles_{k}"] = np.array(round((bus.t_done - bus.t_start) / period))
        results[f"span_cycles_{k}"] = np.array(span)
        results[f"wall_{k}"] = np.array(wall)
        results[f"wait_wall_{k}"] = np.array(bus.wait_wall)
        results[f"wait_cycles_{k}"] = np.array(bus.wait_cycles)
        results[f"waits_{k}"] = np.array(bus.waits)
    return results


def _next_request(session: str, n: int) -> str | None:
    """Session mode: block (the simulator with it: no simulated time passes) until the calling
    process posts batch ``n`` (``req-<n>.npz``) or ``stop``; None on stop, or when the calling
    process has gone (so that an orphaned simulator ends)."""
    req, stop = os.path.join(session, f"req-{n}.npz"), os.path.join(session, "stop")
    parent = int(os.environ.get("COSIM_PARENT_PID", "0"))
    while True:
        if os.path.exists(req):
            return req
        if os.path.exists(stop):
            return None
        if parent:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                return None
        time.sleep(0.002)


@cocotb.test()
async def replay_jobs(dut):
    """One batch (``COSIM_JOBS`` -> ``COSIM_RESULTS``) or, with ``COSIM_SESSION`` (a
    directory), a session: batches ``req-<n>.npz`` -> ``res-<n>.npz`` one after another in
    this one simulator process until ``stop`` (:class:`cosim.layer.SimSession`)."""
    session = os.environ.get("COSIM_SESSION")
    first = _next_request(session, 0) if session else os.environ["COSIM_JOBS"]
    if first is None:
        return
    jobs, period, latency = read_jobs(first)
    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    bus = CocotbBus(dut, period, latency)
    edge = bus.edge  # drive inputs half a cycle before the sampling edge
    dut.host_write.value = 0
    dut.host_read.value = 0
    dut.host_addr.value = 0
    dut.host_wdata.value = 0
    dut.rst.value = 1
    for _ in range(4):
        await edge
    dut.rst.value = 0
    await edge
    if not session:
        atomic_write_npz(os.environ["COSIM_RESULTS"], await _run_jobs(bus, jobs, period))
        return
    n = 0
    while True:
        atomic_write_npz(os.path.join(session, f"res-{n}.npz"), await _run_jobs(bus, jobs, period))
        n += 1
        req = _next_request(session, n)
        if req is None:
            return
        jobs, _, _ = read_jobs(req)
