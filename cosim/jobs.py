"""The job and result files exchanged with the cocotb testbench (:mod:`cosim.tb_host`).

A job is one tile's host traffic in the streaming protocol of docs/host_interface.md: the
set-up writes, the start write, the writes of every input row and residual row, the read
addresses of every output row, the counter reads, the ring sizes and the addresses of the
streaming registers (everything :func:`gen.driver.run_tile` needs, which the testbench calls
with a :class:`TileJob` in place of a :class:`gen.driver.TileProgram`), plus a cycle limit
for hang detection. The tile's ``decode`` stays in the calling process. Many jobs go into one
``.npz`` file so that one simulator process runs a whole batch of cases (the C++ model
starts once); the files hold integer arrays only (no pickling).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ttsnn.sw.fileio import atomic_write

__all__ = ["TileJob", "BackwardJob", "JobTile", "JobResult", "REGISTER_NAMES", "RING_NAMES", "atomic_write_npz",
           "write_jobs", "read_jobs", "read_results"]

#: The streaming registers :func:`gen.driver.run_tile` uses (``TileProgram.registers``), in
#: the order of the ``regs_<k>`` array of a job file.
REGISTER_NAMES = ("status", "in_rows", "res_rows", "out_taken", "in_consumed", "res_consumed",
                  "out_rows", "w4_chunks", "w4_consumed", "w2_chunks", "w2_consumed", "w3_chunks",
                  "w3_consumed", "w1_chunks", "w1_consumed", "out_groups")
#: The rings (``TileProgram.rings``), in the order of the ``rings_<k>`` array.
RING_NAMES = ("in", "res", "out", "w4", "w23", "w1")


@dataclass(frozen=True)
class JobTile:
    """The part of a ``gen.driver.Tile`` that :func:`gen.driver.run_tile` uses (its messages
    name the tile)."""
    index: int


@dataclass(frozen=True)
class TileJob:
    """One tile's host traffic (the fields of ``gen.driver.TileProgram`` that
    :func:`gen.driver.run_tile` reads, without ``decode``) and ``cycle_limit``: the simulated
    cycles the whole tile may take, host traffic included, counted from its first set-up
    write; a wait for ``event`` beyond it fails the run (hang detection only)."""
    setup: Sequence[tuple[int, int]]
    start: tuple[int, int]
    in_rows: Sequence[Sequence[tuple[int, int]]]
    res_rows: Sequence[Sequence[tuple[int, int]]]
    out_rows: Sequence[Sequence[int]]
    counter_reads: Sequence[int]
    rings: Mapping[str, int]
    registers: Mapping[str, int]
    cycle_limit: int
    index: int = 0
    #: a streamed G4's chunks (``TileProgram.w4_chunks``; ring ``rings["w4"]``)
    w4_chunks: Sequence[Sequence[tuple[int, int]]] = ()
    #: streamed G2/G3's chunks (``TileProgram.w2_chunks``/``w3_chunks``; ring ``rings["w23"]``)
    w2_chunks: Sequence[Sequence[tuple[int, int]]] = ()
    w3_chunks: Sequence[Sequence[tuple[int, int]]] = ()
    #: a streamed G1's chunks (``TileProgram.w1_chunks``; ring ``rings["w1"]``)
    w1_chunks: Sequence[Sequence[tuple[int, int]]] = ()
    #: ``TileProgram.early_start`` (the rings hold whole cores; empty chunks: loaded slots)
    early_start: bool = False
    #: ``TileProgram.last_row_groups`` (positions in the last output row's reads, per group)
    last_row_groups: Sequence[Sequence[int]] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", tuple(int(v) for v in self.start))
        for name in ("w4_chunks", "w2_chunks", "w3_chunks", "w1_chunks", "last_row_groups"):  # one form, however made
            object.__setattr__(self, name, [list(c) for c in getattr(self, name)])

    @property
    def tile(self) -> JobTile:
        return JobTile(self.index)

    @property
    def reads(self) -> list[int]:
        """Every address read, in the order of the values :func:`gen.driver.run_tile` returns
        (= ``TileProgram.reads``)."""
        return [a for row in self.out_rows for a in row] + list(self.counter_reads)

    @classmethod
    def of(cls, prog, cycle_limit: int) -> "TileJob":
        """The job of a ``gen.driver.TileProgram``."""
        return cls(prog.setup, prog.start, prog.in_rows, prog.res_rows, prog.out_rows,
                   prog.counter_reads, dict(prog.rings), dict(prog.registers), int(cycle_limit),
                   prog.tile.index, list(prog.w4_chunks), list(prog.w2_chunks), list(prog.w3_chunks),
                   list(prog.w1_chunks), bool(getattr(prog, "early_start", False)),
                   [list(g) for g in getattr(prog, "last_row_groups", ())])


@dataclass(frozen=True)
class BackwardJob:
    """One backward tile's host traffic (the fields of
    ``gen.backward.host.BackwardHostProgram`` that :func:`gen.backward.host.run_backward_tile`
    reads): set-up writes, per stage its register writes, the start write, the status
    register, the reads; ``cycle_limit`` as for :class:`TileJob`."""
    setup: Sequence[tuple[int, int]]
    stages: Sequence[Sequence[tuple[int, int]]]
    start: tuple[int, int]
    status: int
    reads: Sequence[int]
    cycle_limit: int
    index: int = 0
    #: per stage, the addresses read once it is done (streamed weight-gradient sums)
    stage_reads: Sequence[Sequence[int]] = ()

    @classmethod
    def of(cls, prog, cycle_limit: int, index: int = 0) -> "BackwardJob":
        return cls(prog.setup, prog.stages, tuple(int(v) for v in prog.start), int(prog.status),
                   list(prog.reads), int(cycle_limit), index, [list(r) for r in prog.stage_reads])


@dataclass(frozen=True)
class JobResult:
    """What the testbench recorded for one tile."""
    values: list[int]        # words read, in the order of ``TileJob.reads`` (run_tile's result)
    cycles: int              # testbench clock: cycles from the start write to the rising edge of done
    span_cycles: int         # simulated cycles of the whole tile: first set-up write to last counter read
    wall_s: float            # wall time of the whole tile: set-up, start, the host traffic
                             # interleaved with the run (Python per host word), the final reads
    wait_wall_s: float       # part of wall_s spent waiting for ``event`` (no Python per cycle)
    wait_cycles: int         # simulated cycles of those waits
    waits: int               # number of waits for ``event``
    cpu_s: float = 0.0       # CPU time of the simulator process over the tile (C++ model, cocotb
                             # and Python together; on a shared machine steadier than wall_s)


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` through a file handle (a path argument would get ``.npz`` appended)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, write)


def words_to_limbs(values: Sequence[int]) -> np.ndarray:
    """Unsigned words (up to ``widths.host_data`` = 512 bits) as ``[n, L]`` uint64 limbs, low
    limb first (``L = 1`` while every word fits 64 bits): a job file holds no pickled objects."""
    values = list(values)
    top = max(values, default=0)
    if top < (1 << 64):
        return np.array(values, dtype=np.uint64).reshape(-1, 1)
    n_limbs = (top.bit_length() + 63) // 64
    mask = (1 << 64) - 1
    return np.array([[(v >> (64 * j)) & mask for j in range(n_limbs)] for v in values],
                    dtype=np.uint64).reshape(-1, n_limbs)


def limbs_to_words(limbs: np.ndarray) -> list[int]:
    """Inverse of :func:`words_to_limbs`."""
    limbs = np.asarray(limbs, dtype=np.uint64).reshape(len(limbs), -1)
    if limbs.shape[1] == 1:
        return limbs[:, 0].tolist()
    cols = [limbs[:, j].tolist() for j in range(limbs.shape[1])]
    return [sum(c[i] << (64 * j) for j, c in enumerate(cols)) for i in range(len(limbs))]


def _pair_array(pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """``(addr, data)`` pairs as ``[n, 1 + L]`` uint64: the address, then the data's limbs."""
    addrs = np.array([a for a, _ in pairs], dtype=np.uint64).reshape(-1, 1)
    return np.concatenate([addrs, words_to_limbs([d for _, d in pairs])], axis=1)


def _pair_list(arr: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(arr[:, 0].tolist(), limbs_to_words(arr[:, 1:]))) if len(arr) else []


def _pairs(rows: Sequence[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    return _pair_array([p for r in rows for p in r]), lens


def write_jobs(path: str | os.PathLike, jobs: Sequence[TileJob | BackwardJob], period_ns: float,
               read_latency: int) -> None:
    arrays: dict[str, np.ndarray] = {"period_ns": np.array(float(period_ns)),
                                     "latency": np.array(int(read_latency)),
                                     "n_tiles": np.array(len(jobs))}
    for k, job in enumerate(jobs):
        arrays[f"kind_{k}"] = np.array(int(isinstance(job, BackwardJob)))
        if isinstance(job, BackwardJob):
            arrays[f"setup_{k}"] = _pair_array(job.setup)
            arrays[f"stages_{k}"], arrays[f"stages_len_{k}"] = _pairs(job.stages)
            arrays[f"start_{k}"] = np.array(job.start, dtype=np.int64)
            arrays[f"status_{k}"] = np.array(int(job.status))
            arrays[f"reads_{k}"] = np.array(job.reads, dtype=np.int64)
            stage_reads = list(job.stage_reads) or [[] for _ in job.stages]
            arrays[f"sreads_{k}"] = np.array([a for r in stage_reads for a in r], dtype=np.int64)
            arrays[f"sreads_len_{k}"] = np.array([len(r) for r in stage_reads], dtype=np.int64)
            arrays[f"limit_{k}"] = np.array(int(job.cycle_limit))
            arrays[f"index_{k}"] = np.array(int(job.index))
            continue
        arrays[f"setup_{k}"] = _pair_array(job.setup)
        arrays[f"start_{k}"] = np.array(job.start, dtype=np.int64)
        arrays[f"in_{k}"], arrays[f"in_len_{k}"] = _pairs(job.in_rows)
        arrays[f"res_{k}"], arrays[f"res_len_{k}"] = _pairs(job.res_rows)
        arrays[f"out_{k}"] = np.array([a for r in job.out_rows for a in r], dtype=np.int64)
        arrays[f"out_len_{k}"] = np.array([len(r) for r in job.out_rows], dtype=np.int64)
        arrays[f"cnt_{k}"] = np.array(job.counter_reads, dtype=np.int64)
        arrays[f"rings_{k}"] = np.array([job.rings.get(n, 0) for n in RING_NAMES], dtype=np.int64)
        arrays[f"w4_{k}"], arrays[f"w4_len_{k}"] = _pairs(job.w4_chunks)
        arrays[f"w2_{k}"], arrays[f"w2_len_{k}"] = _pairs(job.w2_chunks)
        arrays[f"w3_{k}"], arrays[f"w3_len_{k}"] = _pairs(job.w3_chunks)
        arrays[f"w1_{k}"], arrays[f"w1_len_{k}"] = _pairs(job.w1_chunks)
        arrays[f"regs_{k}"] = np.array([job.registers.get(n, -1) for n in REGISTER_NAMES], dtype=np.int64)
        arrays[f"early_{k}"] = np.array(int(job.early_start))
        arrays[f"lrg_{k}"] = np.array([i for g in job.last_row_groups for i in g], dtype=np.int64)
        arrays[f"lrg_len_{k}"] = np.array([len(g) for g in job.last_row_groups], dtype=np.int64)
        arrays[f"limit_{k}"] = np.array(int(job.cycle_limit))
        arrays[f"index_{k}"] = np.array(int(job.index))
    atomic_write_npz(path, arrays)


def _split(flat: list, lens: np.ndarray) -> list[list]:
    out, i = [], 0
    for n in lens.tolist():
        out.append(flat[i:i + n])
        i += n
    return out


def read_jobs(path: str | os.PathLike) -> tuple[list[TileJob | BackwardJob], float, int]:
    """The jobs of a job file (plain Python ints and lists, ready for
    :func:`gen.driver.run_tile`), the clock period in ns and the host read latency."""
    data = np.load(path)
    jobs: list = []
    for k in range(int(data["n_tiles"])):
        tup = _pair_list
        if f"kind_{k}" in data and int(data[f"kind_{k}"]) == 1:
            jobs.append(BackwardJob(
                setup=tup(data[f"setup_{k}"]),
                stages=_split(tup(data[f"stages_{k}"]), data[f"stages_len_{k}"]),
                start=tuple(data[f"start_{k}"].tolist()), status=int(data[f"status_{k}"]),
                reads=data[f"reads_{k}"].tolist(), cycle_limit=int(data[f"limit_{k}"]),
                index=int(data[f"index_{k}"]),
                stage_reads=_split(data[f"sreads_{k}"].tolist(), data[f"sreads_len_{k}"])))
            continue
        jobs.append(TileJob(
            setup=tup(data[f"setup_{k}"]),
            start=tuple(data[f"start_{k}"].tolist()),
            in_rows=_split(tup(data[f"in_{k}"]), data[f"in_len_{k}"]),
            res_rows=_split(tup(data[f"res_{k}"]), data[f"res_len_{k}"]),
            out_rows=_split(data[f"out_{k}"].tolist(), data[f"out_len_{k}"]),
            counter_reads=data[f"cnt_{k}"].tolist(),
            rings={n: v for n, v in zip(RING_NAMES, data[f"rings_{k}"].tolist()) if n not in ("w4", "w23", "w1") or v},
            registers={n: v for n, v in zip(REGISTER_NAMES, data[f"regs_{k}"].tolist()) if v >= 0},
            cycle_limit=int(data[f"limit_{k}"]), index=int(data[f"index_{k}"]),
            w4_chunks=_split(tup(data[f"w4_{k}"]), data[f"w4_len_{k}"]) if f"w4_{k}" in data else [],
            w2_chunks=_split(tup(data[f"w2_{k}"]), data[f"w2_len_{k}"]) if f"w2_{k}" in data else [],
            w3_chunks=_split(tup(data[f"w3_{k}"]), data[f"w3_len_{k}"]) if f"w3_{k}" in data else [],
            w1_chunks=_split(tup(data[f"w1_{k}"]), data[f"w1_len_{k}"]) if f"w1_{k}" in data else [],
            early_start=bool(int(data[f"early_{k}"])) if f"early_{k}" in data else False,
            last_row_groups=_split(data[f"lrg_{k}"].tolist(), data[f"lrg_len_{k}"]) if f"lrg_{k}" in data else []))
    return jobs, float(data["period_ns"]), int(data["latency"])


def read_results(path: str | os.PathLike, n_jobs: int) -> list[JobResult]:
    data = np.load(path)
    out = []
    for k in range(n_jobs):
        if f"rv_{k}" not in data:
            raise ValueError(f"{path}: no result for tile job {k} (the testbench stopped early)")
        out.append(JobResult(limbs_to_words(data[f"rv_{k}"]), int(data[f"cycles_{k}"]),
                             int(data[f"span_cycles_{k}"]), float(data[f"wall_{k}"]),
                             float(data[f"wait_wall_{k}"]), int(data[f"wait_cycles_{k}"]),
                             int(data[f"waits_{k}"]),
                             float(data[f"cpu_{k}"]) if f"cpu_{k}" in data else 0.0))
    return out
