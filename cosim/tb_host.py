"""cocotb testbench: replays host-interface traffic prepared in Python on the top level.

It knows nothing about layers: the job file (``COSIM_JOBS``, an ``.npz`` written by
:mod:`cosim.jobs`) lists, per tile, the host writes, the start write and the addresses to
read back; this module drives them through the bus of docs/host_interface.md, waits for
``done`` without waking Python every cycle, and writes what it read to ``COSIM_RESULTS``.
Decoding and comparing with the golden model happen in the calling process.

Ports used: ``clk``, ``rst``, ``host_addr``, ``host_wdata``, ``host_write``, ``host_read``,
``host_rdata``, ``host_rvalid``, ``done``.
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout
from cocotb.utils import get_sim_time

from cosim.jobs import atomic_write_npz


async def _write(dut, edge, addrs, datas) -> None:
    addr_sig, data_sig, wr = dut.host_addr, dut.host_wdata, dut.host_write
    wr.value = 1
    for a, d in zip(addrs.tolist(), datas.tolist()):
        addr_sig.value = a
        data_sig.value = d
        await edge
    wr.value = 0


async def _read(dut, edge, addrs, latency: int) -> list[int]:
    """Issue one read per cycle; collect ``host_rdata`` on every cycle ``host_rvalid`` is
    high (one sample per cycle, so each valid cycle is seen exactly once)."""
    addr_sig, rd, rvalid, rdata = dut.host_addr, dut.host_read, dut.host_rvalid, dut.host_rdata
    out: list[int] = []
    n = len(addrs)
    issued = 0
    idle = 0
    rd.value = 1 if n else 0
    addr_list = addrs.tolist()
    while len(out) < n:
        if issued < n:
            addr_sig.value = addr_list[issued]
            issued += 1
        await edge
        if issued == n:
            rd.value = 0
        if rvalid.value == 1:
            out.append(rdata.value.to_unsigned())
            idle = 0
        elif issued == n:
            idle += 1
            if idle > 4 * latency + 8:
                raise RuntimeError(f"host_rvalid stayed low: {len(out)} of {n} reads answered")
    return out


@cocotb.test()
async def replay_jobs(dut):
    jobs = np.load(os.environ["COSIM_JOBS"])
    period = float(jobs["period_ns"])
    latency = int(jobs["latency"])
    n_tiles = int(jobs["n_tiles"])
    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    edge = FallingEdge(dut.clk)  # drive inputs half a cycle before the sampling edge
    dut.host_write.value = 0
    dut.host_read.value = 0
    dut.host_addr.value = 0
    dut.host_wdata.value = 0
    dut.rst.value = 1
    for _ in range(4):
        await edge
    dut.rst.value = 0
    await edge
    results: dict[str, np.ndarray] = {}
    done_rise = RisingEdge(dut.done)
    for k in range(n_tiles):
        t_io = time.perf_counter()
        await _write(dut, edge, jobs[f"wa_{k}"], jobs[f"wd_{k}"])
        start = jobs[f"start_{k}"]
        await _write(dut, edge, start[:1], start[1:])
        t0_sim = get_sim_time("ns")
        t0 = time.perf_counter()
        limit = int(jobs[f"limit_{k}"])
        await with_timeout(done_rise, limit * period, "ns")
        wall = time.perf_counter() - t0
        cycles = round((get_sim_time("ns") - t0_sim) / period)
        await edge
        vals = await _read(dut, edge, jobs[f"ra_{k}"], latency)
        results[f"rv_{k}"] = np.array(vals, dtype=np.uint64)
        results[f"cycles_{k}"] = np.array(cycles)
        results[f"wall_{k}"] = np.array(wall)
        results[f"wall_io_{k}"] = np.array(time.perf_counter() - t_io - wall)
    atomic_write_npz(os.environ["COSIM_RESULTS"], results)
