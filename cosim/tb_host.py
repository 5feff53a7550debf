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
``host_rdata``, ``host_rvalid``, ``done``, ``event``; with the host-word player
(:mod:`cosim.player`) also its ``play_*``, ``*_seq`` and ``in_strobe``. Every input is driven
through :meth:`CocotbBus.drive`, which flips ``in_strobe`` so that the player's input
registers take the new values.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Edge, FallingEdge, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from ttsnn.cosim.jobs import BackwardJob, TileJob, atomic_write_npz, read_jobs, words_to_limbs
from ttsnn.gen.backward.host import run_backward_tile
from ttsnn.cosim.player import PLAYER_DEPTH, PLAYER_FILES
from ttsnn.gen.driver import run_tile


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
        # the player (cosim/player.py), when the design was built with it
        self.player = hasattr(dut, "play_seq")
        if self.player:
            self.done_change = getattr(dut.play_done, "value_change", None) or Edge(dut.play_done)
        self.w_blocks: dict[int, int] = {}     # id of a block of writes -> its first entry
        self.r_blocks: dict[int, int] = {}     # id of a block of reads -> its first entry
        self.captured = 0
        self.seq = {"play_seq": 0, "load_seq": 0, "dump_seq": 0}
        self.handles: dict[str, object] = {}
        # the player's input latch (cosim/player.py): flip in_strobe once in every simulation
        # step in which inputs are driven
        self.strobe = hasattr(dut, "in_strobe")
        self.strobe_level = int(dut.in_strobe.value) if self.strobe else 0
        self.strobe_step: int | None = None

    def drive(self, **values: int) -> None:
        """Drive top-level inputs (port name -> value). Every input goes through here: with
        the player the accelerator sees the inputs through registers that take them on an edge
        of ``in_strobe``, flipped here once per simulation step (the writes of one step reach
        the simulator together, before its next evaluation; the wrapper stops the simulation
        if a rising edge of ``clk`` ever finds the registers differing from the ports)."""
        handles = self.handles
        for name, value in values.items():
            h = handles.get(name)
            if h is None:
                h = handles[name] = getattr(self.dut, name)
            h.value = value
        if self.strobe:
            step = get_sim_time("step")
            if step != self.strobe_step:
                self.strobe_step = step
                self.strobe_level ^= 1
                self.dut.in_strobe.value = self.strobe_level

    def now_cycles(self, since: float) -> int:
        return round((get_sim_time("ns") - since) / self.period)

    def begin(self, job: TileJob) -> None:
        self.job = job
        self.t_begin = get_sim_time("ns")
        self.t_start = self.t_done = None
        self.wait_wall, self.wait_cycles, self.waits = 0.0, 0, 0

    def _bump(self, name: str) -> None:
        self.seq[name] = (self.seq[name] + 1) & 0xFFFF_FFFF
        self.drive(**{name: self.seq[name]})

    async def load(self, job) -> bool:
        """Hand a forward tile's words to the player (one cycle, before the tile's first
        write): every block of writes (set-up, each input and residual row) and of reads
        (each output row, the counter reads) by its position. False (the words go from Python
        one by one) without a player, for a backward job or one larger than its memories."""
        self.w_blocks, self.r_blocks, self.captured = {}, {}, 0
        if not self.player or not isinstance(job, TileJob):
            return False
        writes = [job.setup] + list(job.in_rows) + list(job.res_rows)
        reads = list(job.out_rows) + [job.counter_reads]
        if sum(map(len, writes)) > PLAYER_DEPTH or sum(map(len, reads)) > PLAYER_DEPTH:
            return False
        addrs, datas, raddrs = [], [], []
        for block in writes:
            self.w_blocks[id(block)] = len(addrs)
            addrs += [f"{a:x}" for a, _ in block]
            datas += [f"{w:x}" for _, w in block]
        for block in reads:
            self.r_blocks[id(block)] = len(raddrs)
            raddrs += [f"{a:x}" for a in block]
        for key, lines in (("w_addr", addrs), ("w_data", datas), ("r_addr", raddrs)):
            with open(PLAYER_FILES[key], "w") as f:
                f.write("\n".join(lines or ["0"]) + "\n")
        self._bump("load_seq")
        await self.edge
        return True

    async def _play(self, first: int, count: int, is_read: bool) -> None:
        self.drive(play_first=first, play_count=count, play_read=int(is_read))
        self._bump("play_seq")
        await self.done_change
        await self.edge

    async def write_block(self, pairs) -> None:
        """The writes of ``pairs``, one per cycle: played from the loaded words when the
        block is one of the job's, else one by one."""
        first = self.w_blocks.get(id(pairs))
        if first is None or not pairs:
            for a, w in pairs:
                await self.write(a, w)
            return
        await self._play(first, len(pairs), False)

    async def captured_values(self, values: list[int]) -> list[int]:
        """``run_tile``'s result with the player's captured reads in place of the
        placeholders (every value it appended came from a played block of reads, but for a
        last output row read a group at a time: read one by one, its values in place)."""
        if not self.captured:
            return values
        job = self.job
        last = job.out_rows[-1] if isinstance(job, TileJob) and job.out_rows else []
        if last and job.last_row_groups and len(values) - self.captured == len(last):
            # the row was read a group at a time; its values sit before the counter reads
            k = len(values) - len(job.counter_reads) - len(last)
            played = values[:k] + values[k + len(last):]
            merged = await self.captured_values_of(played)
            return merged[:k] + values[k:k + len(last)] + merged[k:]
        return await self.captured_values_of(values)

    async def captured_values_of(self, values: list[int]) -> list[int]:
        """The player's captured reads for ``values``, the values of its played blocks."""
        if len(values) != self.captured:
            raise RuntimeError(f"tile job {self.job.index}: {len(values)} values returned, "
                               f"{self.captured} captured by the player")
        await self.edge                 # the last value lands a cycle after play_done
        self._bump("dump_seq")
        await self.edge
        with open(PLAYER_FILES["capture"]) as f:
            lines = (ln.split("//")[0].strip() for ln in f)
            got = [int(ln, 16) for ln in lines if ln and not ln.startswith("@")]
        if len(got) != len(values):
            raise RuntimeError(f"tile job {self.job.index}: the player captured {len(got)} reads, "
                               f"expected {len(values)}")
        return got

    async def _watch_done(self) -> None:
        await RisingEdge(self.dut.done)
        self.t_done = get_sim_time("ns")

    async def write(self, addr: int, data: int) -> None:
        self.drive(host_addr=addr, host_wdata=data, host_write=1)
        await self.edge
        self.drive(host_write=0)
        if (isinstance(self.job, TileJob) and self.t_start is None and (addr, data) == self.job.start):
            # done fell at the edge that took the start; the next rising edge ends the tile
            self.t_start = get_sim_time("ns")
            cocotb.start_soon(self._watch_done())

    async def read(self, addrs) -> list[int]:
        """Issue one read per cycle; collect ``host_rdata`` on every cycle ``host_rvalid`` is
        high (one sample per cycle, so each valid cycle is seen exactly once)."""
        dut = self.dut
        n = len(addrs)
        first = self.r_blocks.get(id(addrs))
        if first is not None and n:
            await self._play(first, n, True)
            self.captured += n
            return [0] * n              # placeholders: see captured_values
        rvalid, rdata = dut.host_rvalid, dut.host_rdata
        out: list[int] = []
        issued = idle = 0
        self.drive(host_read=1 if n else 0)
        while len(out) < n:
            if issued < n:
                self.drive(host_addr=addrs[issued])
                issued += 1
            await self.edge
            if issued == n:
                self.drive(host_read=0)
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
        t0, c0 = time.perf_counter(), time.process_time()
        await bus.load(job)
        bus.begin(job)
        backward = isinstance(job, BackwardJob)
        values = await (run_backward_tile(bus, job) if backward else run_tile(bus, job))
        span = bus.now_cycles(bus.t_begin)
        values = await bus.captured_values(values)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if backward:               # many starts: the RTL's cycles counter tells the busy cycles
            bus.t_start, bus.t_done = bus.t_begin, bus.t_begin
        if bus.t_start is None or bus.t_done is None:
            raise RuntimeError(f"tile job {job.index}: the start write or the rising edge of done "
                               f"was not seen")
        results[f"rv_{k}"] = words_to_limbs(values)
        results[f"cycles_{k}"] = np.array(round((bus.t_done - bus.t_start) / period))
        results[f"span_cycles_{k}"] = np.array(span)
        results[f"wall_{k}"] = np.array(wall)
        results[f"cpu_{k}"] = np.array(cpu)
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
    own_clock = os.environ.get("COSIM_CLOCK_NS")
    if own_clock is None:
        cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    elif abs(float(own_clock) - period) > 1e-9:
        raise RuntimeError(f"the design was built with a {own_clock} ns clock, the jobs ask for {period} ns")
    bus = CocotbBus(dut, period, latency)
    edge = bus.edge  # drive inputs half a cycle before the sampling edge
    bus.drive(host_write=0, host_read=0, host_addr=0, host_wdata=0, rst=1)
    if bus.player:
        bus.drive(**dict.fromkeys(("play_seq", "play_first", "play_count", "play_read", "load_seq",
                                   "dump_seq"), 0))
    for _ in range(4):
        await edge
    bus.drive(rst=0)
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
