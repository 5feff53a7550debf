"""Co-simulation of backward tiles: the host program of gen/backward/host.py run on the
Verilator model of the accelerator (the same cocotb testbench as the forward tiles, one
:class:`cosim.jobs.BackwardJob` per tile), compared bit for bit with the golden backward
(:func:`sw.golden_backward.backward_tile`).

:func:`backward_tile_case` builds an interior tile of a layer (its forward trace over the halo
ring from the golden forward of a larger block); :func:`backward_coverage_cases` is the batch of
the default test run; :func:`run_backward_cases` runs a batch in one simulator process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ttsnn.cosim.jobs import BackwardJob, read_results, write_jobs
from ttsnn.cosim.runner import build_design, default_build_dir, run_testbench
from ttsnn.sw.golden_backward import (BackwardParams, BackwardResult, ForwardTrace, GradRounding, backward_tile,
                                forward_trace)
from ttsnn.sw.qlayer import QuantTTLayer

__all__ = ["BackwardCase", "BackwardCaseResult", "backward_tile_case", "backward_coverage_cases",
           "run_backward_cases", "describe", "simulate_backward", "compare_backward"]


@dataclass
class BackwardCase:
    """One backward tile: ``trace`` (``[T, 1, ...]``: the forward window ``x`` and the trace
    over the output pixels plus the ring), ``e``/``g_extra`` ``[T, 1, Cout, Ho + 2, Wo + 2]``,
    ``params`` (window, surrogate height, shifts; ``"auto"`` shifts are chosen by the golden
    model before the run)."""
    name: str
    qlayer: QuantTTLayer
    trace: ForwardTrace
    e: torch.Tensor
    g_extra: torch.Tensor | None
    params: BackwardParams


@dataclass
class BackwardCaseResult:
    case: BackwardCase
    golden: BackwardResult
    e_in: np.ndarray
    g_current: np.ndarray
    dw: dict[str, np.ndarray]
    counters: dict[str, int]
    mismatches: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    span_cycles: int = 0
    #: the tile's stage descriptors as the host wrote them (for the cycle model)
    stages: list = field(default_factory=list)

    @property
    def match(self) -> bool:
        return not any(self.mismatches.values())

    @property
    def cycles(self) -> int:
        return int(self.counters.get("cycles", 0))


def backward_tile_case(config, name: str, mode: str, r: int, cin: int, cout: int, T: int, H: int, W: int, *,
                       pool: bool = False, extra: bool = False, saturate: bool = False,
                       e_kind: str = "random", x_kind: str = "random", seed: int = 0) -> BackwardCase:
    """An interior tile of a random layer: the golden forward of a block one output ring larger
    gives the trace over the tile's halo ring; the surrogate window covers the middle 60 % of
    the membranes; ``saturate`` uses shift 2 everywhere (the stages saturate), else the
    golden model chooses the smallest shifts that saturate nothing. ``e_kind``: random, zero or
    full (every gradient at the format's extreme); ``x_kind``: random, zero or one spikes."""
    from ttsnn.cosim.cases import random_layer

    rng = np.random.default_rng(zlib.crc32(f"{name}/{seed}".encode()))
    schedule = tuple(bool(b) for b in rng.integers(0, 2, T)) if mode == "htt" else ()
    q = random_layer(rng, config.widths, mode, cin, r, cout, pool=pool, schedule=schedule)
    m = 2 if pool else 1
    shape = (T, 1, cin, H + 2 * m + 2, W + 2 * m + 2)
    big = {"random": lambda: rng.integers(0, 2, shape), "zero": lambda: np.zeros(shape, np.int64),
           "one": lambda: np.ones(shape, np.int64)}[x_kind]()
    big = torch.tensor(big)
    _, membrane, _ = forward_trace(q, big, None, config, 0, 1)
    lo, hi = (int(v) for v in np.quantile(membrane.numpy(), [0.2, 0.8]))
    big_trace, _, _ = forward_trace(q, big, None, config, lo - 1, hi + 1)
    x = big[..., m:m + H + 2, m:m + W + 2]
    trace = ForwardTrace(x=x, spikes=big_trace.spikes, window=big_trace.window, argmax=big_trace.argmax)
    ho, wo = (H // 2, W // 2) if pool else (H, W)
    gmax = (1 << (config.gradients.width - 1)) - 1
    eshape = (T, 1, cout, ho + 2, wo + 2)
    e = {"random": lambda: rng.integers(-2000, 2000, eshape), "zero": lambda: np.zeros(eshape, np.int64),
         "full": lambda: rng.choice([-gmax - 1, gmax], size=eshape)}[e_kind]()
    g_extra = torch.tensor(rng.integers(-3000, 3000, eshape)) if extra else None
    stages = ("affine", "g4t", "g3t", "g23t", "g1t") if mode == "stt" else ("affine", "g4t", "g23t", "g1t")
    shifts = {s: 2 if saturate else "auto" for s in stages}
    return BackwardCase(name, q, trace, torch.tensor(e), g_extra,
                        BackwardParams(window_lo=lo - 1, window_hi=hi + 1, shifts=shifts))


def backward_coverage_cases(config, seed: int = 0) -> list[BackwardCase]:
    """The default batch: STT/PTT/HTT (random schedules), T in {1, 2, 4, 6}, channel counts
    that leave lanes idle, pooling, the shortcut's share, saturating shifts, all-zero
    gradients and all-zero / all-one spikes; sizes within the configuration's limits."""
    lim, P = config.limits, config.lanes
    r = min(lim.max_rank, P + 1)            # one full and one partial lane group
    c = min(lim.max_in_channels, 2 * P)
    cases = []

    def add(name, *args, **kw):
        cases.append(backward_tile_case(config, name, *args, seed=seed, **kw))

    add("ptt-t1", "ptt", P, c, c, 1, 2, 4)
    add("stt-t2-extra", "stt", P, P, c, 2, 2, 2, extra=True)
    add("htt-t4", "htt", P, P, P, 4, 2, 2)
    add("ptt-t6-pool-partial", "ptt", P - 1, P, c - 2, 6, 4, 2, pool=True, extra=True)
    add("stt-pool-partial-sat", "stt", r, c - 2, P + 1, 1, 4, 4, pool=True, saturate=True)
    add("htt-t6-sat-extra", "htt", P - 1, P, P, 6, 2, 2, saturate=True, extra=True)
    add("ptt-zero-e", "ptt", P, P, P, 2, 2, 2, e_kind="zero")
    add("stt-one-spikes-full-e", "stt", P, P, P, 2, 2, 2, x_kind="one", e_kind="full")
    add("htt-zero-spikes-pool", "htt", P, P, P, 2, 2, 2, pool=True, x_kind="zero")
    return cases


def _cycle_limit(prog) -> int:
    """A generous bound on a backward tile's simulated cycles (hang detection only)."""
    steps = sum(f["timesteps"] * f["rows"] * f["cols"] * max(f["in_channels"], 1) * 6
                * max(f["out_channels"], 1) for _, f in prog.plan.stages)
    return (4 * steps + 16 * (len(prog.setup) + len(prog.all_reads) + sum(map(len, prog.stages)))
            + 64 * len(prog.stages) + 100_000)


def simulate_backward(target, programs, workdir: Path, *, seed: int = 1, build_dir=None,
                      cycle_limit=None) -> list:
    """Run backward host programs (``gen.backward.host.BackwardHostProgram``) on ``target``'s
    Verilator build in one simulator process (files under ``workdir``); returns the
    testbench's :class:`cosim.jobs.JobResult` of each."""
    from ttsnn.gen.hostmap import HOST_READ_LATENCY

    cfg = target.config
    ports = [p["name"] for p in target.manifest.get("ports", [])] or None
    build = build_design(target.verilog, target.top, Path(build_dir) if build_dir else default_build_dir(cfg.name),
                         ports=ports, player=target.player)
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [BackwardJob.of(p, (cycle_limit or _cycle_limit)(p), i) for i, p in enumerate(programs)]
    write_jobs(workdir / "jobs.npz", jobs, cfg.clock_period_ns, HOST_READ_LATENCY)
    run_testbench(build, workdir / "jobs.npz", workdir / "results.npz", workdir / "run", seed=seed)
    return read_results(workdir / "results.npz", len(jobs))


def compare_backward(gold: BackwardResult, got, sample: int = 0) -> dict[str, int]:
    """Mismatching elements per output between the golden backward (sample ``sample`` of its
    batch) and one sample's RTL result (``gen.backward.host.BackwardTileResult``)."""
    expect = {"e_in": gold.e_in[:, sample].numpy(), "g_current": gold.g_current[:, sample].numpy(),
              **{f"d{n}": v[sample].numpy() for n, v in gold.dw.items()}}
    actual = {"e_in": got.e_in, "g_current": got.g_current, **{f"d{n}": v for n, v in got.dw.items()}}
    return {k: int((np.asarray(actual[k]) != np.asarray(v)).sum()) for k, v in expect.items()}


def run_backward_cases(target, cases: Sequence[BackwardCase], *, workdir: str | os.PathLike | None = None,
                       seed: int = 1, build_dir: str | os.PathLike | None = None) -> list[BackwardCaseResult]:
    """Run ``cases`` on ``target`` (a :class:`cosim.layer.RtlTarget`) in one simulator process
    and compare every output with the golden backward."""
    from ttsnn.gen.backward.host import backward_program
    from ttsnn.gen.hostmap import host_map

    cfg = target.config
    hmap = host_map(cfg)
    golds, progs = [], []
    for c in cases:
        rnd = GradRounding(cfg.gradients.rounding)
        gold = backward_tile(c.qlayer, c.trace, c.e, cfg, cfg.gradients, c.params, c.g_extra, rounding=rnd)
        arg = None if c.trace.argmax is None else c.trace.argmax[:, 0].numpy()
        progs.append(backward_program(cfg, c.qlayer, c.trace.x[:, 0].numpy(), c.e[:, 0].numpy(),
                                      c.trace.spikes[:, 0].numpy(), c.trace.window[:, 0].numpy(), arg,
                                      gold.shifts, None if c.g_extra is None else c.g_extra[:, 0].numpy(),
                                      c.params.height_mul, c.params.height_shift, hmap))
        golds.append(gold)
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="cosim-bw-")) if own else Path(workdir)
    results = simulate_backward(target, progs, work, seed=seed, build_dir=build_dir)
    out = []
    for c, gold, prog, res in zip(cases, golds, progs, results):
        got = prog.decode(res.values)
        mism = compare_backward(gold, got)
        out.append(BackwardCaseResult(c, gold, got.e_in, got.g_current, got.dw, got.counters, mism,
                                      res.wall_s, res.span_cycles, stages=list(prog.plan.stages)))
    if own and all(r.match for r in out):
        shutil.rmtree(work, ignore_errors=True)
    return out


def describe(result: BackwardCaseResult) -> str:
    """One line per case: match, mismatching elements per output, cycles."""
    status = "match" if result.match else "MISMATCH " + ", ".join(f"{k}: {v}" for k, v in result.mismatches.items() if v)
    return f"{result.case.name}: {status}; {result.cycles} cycles"
