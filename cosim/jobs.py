"""The job and result files exchanged with the cocotb testbench (:mod:`cosim.tb_host`).

A job is one tile's host traffic: writes ``(address, word)``, the start write, the addresses
to read after ``done`` and a cycle limit for the wait. Many jobs go into one file so that one
simulator process runs a whole batch of cases (the C++ model starts once).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sw.fileio import atomic_write

__all__ = ["TileJob", "JobResult", "atomic_write_npz", "write_jobs", "read_results"]


@dataclass(frozen=True)
class TileJob:
    writes: Sequence[tuple[int, int]]
    start: tuple[int, int]
    reads: Sequence[int]
    cycle_limit: int


@dataclass(frozen=True)
class JobResult:
    values: list[int]        # words read, in the order of ``TileJob.reads``
    cycles: int              # clock cycles from the start write to the rising edge of done
    wall_s: float            # wall time of that wait (pure simulation, no Python per cycle)
    wall_io_s: float         # wall time of the host traffic of the tile


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` through a file handle (a path argument would get ``.npz`` appended)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, write)


def write_jobs(path: str | os.PathLike, jobs: Sequence[TileJob], period_ns: float,
               read_latency: int) -> None:
    arrays: dict[str, np.ndarray] = {"period_ns": np.array(float(period_ns)),
                                     "latency": np.array(int(read_latency)),
                                     "n_tiles": np.array(len(jobs))}
    for k, job in enumerate(jobs):
        w = np.array(job.writes, dtype=np.int64).reshape(-1, 2)
        arrays[f"wa_{k}"] = w[:, 0]
        arrays[f"wd_{k}"] = w[:, 1]
        arrays[f"start_{k}"] = np.array(job.start, dtype=np.int64)
        arrays[f"ra_{k}"] = np.array(job.reads, dtype=np.int64)
        arrays[f"limit_{k}"] = np.array(int(job.cycle_limit))
    atomic_write_npz(path, arrays)


def read_results(path: str | os.PathLike, n_jobs: int) -> list[JobResult]:
    data = np.load(path)
    out = []
    for k in range(n_jobs):
        if f"rv_{k}" not in data:
            raise ValueError(f"{path}: no result for tile job {k} (the testbench stopped early)")
        out.append(JobResult([int(v) for v in data[f"rv_{k}"]], int(data[f"cycles_{k}"]),
                             float(data[f"wall_{k}"]), float(data[f"wall_io_{k}"])))
    return out
