"""Co-simulation of whole layers: tile them with the shared driver, run every tile of a batch
of cases in one Verilator run (each with the streaming host protocol of
:func:`gen.driver.run_tile`, see :mod:`cosim.tb_host`), compare each tile with the golden model
bit for bit.

:class:`RtlTarget` is the generated Verilog of one hardware configuration (``rtl/<name>/`` when
committed, else generated into ``build/cosim/<name>/rtl``). :func:`run_cases` takes
:class:`LayerCase` objects (an integer layer, its input spikes and residual) and returns one
:class:`CaseResult` per case with the mismatch report, the RTL outputs, cycles and counters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ttsnn.cosim.jobs import TileJob, read_results, write_jobs
from ttsnn.cosim.report import MismatchReport
from ttsnn.cosim.runner import (REPO_ROOT, BuildResult, build_root, build_design, default_build_dir, locked,
                                forward_only_default,
                          run_testbench)
from ttsnn.sw.fileio import atomic_write_text
from ttsnn.sw.golden import golden_tile
from ttsnn.sw.qlayer import QuantTTLayer
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["RtlTarget", "LayerCase", "CaseResult", "run_cases", "SimSession", "WAVES_MODES"]

#: ``COSIM_WAVES``: 'fail' (default) re-runs failing cases with waveforms, 'always' traces
#: every run, 'never' none.
WAVES_MODES = ("fail", "always", "never")


@dataclass(frozen=True)
class RtlTarget:
    """The Verilog and manifest of one configuration, and that configuration (a
    ``HardwareConfig``, loaded once: the driver, the plan and the reports all use this object)."""
    rtl_dir: Path
    manifest: dict
    verilog: tuple[Path, ...]    # the design's files, top module's first (manifest ``verilog_files``)
    top: str
    config: Any

    @classmethod
    def from_dir(cls, rtl_dir: str | os.PathLike, config=None) -> "RtlTarget":
        """The RTL in ``rtl_dir``; its configuration is ``config`` (a ``HardwareConfig``, which
        must be the one the RTL was generated for) or, if None, the manifest's."""
        from ttsnn.gen.config import config_from_dict

        d = Path(rtl_dir)
        man_path = d / "manifest.json"
        if not man_path.is_file():
            raise MissingFileError(f"{man_path} not found; generate the RTL with "
                                   f"`python -m gen --config C --out {d}` (or `make rtl`)")
        man = json.loads(man_path.read_text())
        for key in ("top", "verilog", "config"):
            if key not in man:
                raise UserError(f"{man_path}: not a generator manifest (no {key!r} entry)")
        from ttsnn.gen.emit import verilog_files

        files = tuple(verilog_files(d, man))
        for v in files:
            if not v.is_file():
                raise MissingFileError(f"{v} (named by {man_path}) not found; regenerate the RTL")
        cfg = config if config is not None else config_from_dict(man["config"], source=str(man_path))
        target = cls(d, man, files, man["top"], cfg)
        if config is not None:
            target.check_config(config)
        if not target.map_is_current():
            raise UserError(f"{man_path}: its host address map differs from the one gen/hostmap.py "
                            f"computes now (the RTL is older than the generator); regenerate it "
                            f"with `python -m gen --config ... --out {d}` (or `make rtl`)")
        return target

    @property
    def player(self) -> tuple[int, int] | tuple[int, int, float] | None:
        """(host address bits, host data bits, clock period in ns) for :mod:`cosim.player`'s
        wrapper, which then drives the clock itself (without the period where half of it is
        not a whole number of picoseconds: cocotb's clock then); None with ``COSIM_PLAYER=0``
        in the environment (every host word from Python and the clock from cocotb, as before)."""
        if os.environ.get("COSIM_PLAYER", "1") == "0":
            return None
        bits = (int(self.manifest["host_addr_bits"]), int(self.manifest["host_data_bits"]))
        period = float(self.config.clock_period_ns)
        half_ps = period * 500
        return bits + (period,) if abs(half_ps - round(half_ps)) < 1e-6 else bits

    def map_is_current(self) -> bool:
        """True when the manifest's address map is the one the driver will use (the driver
        computes it from gen/hostmap.py, so stale RTL would be driven at wrong addresses)."""
        from ttsnn.gen.hostmap import host_map

        current = host_map(self.config).to_dict()
        return all(self.manifest.get(k) == v for k, v in current.items())

    def check_config(self, cfg) -> None:
        """Raise ValueError unless this RTL was generated for ``cfg`` (a ``HardwareConfig``):
        driving it with another configuration's plan and golden widths, or reporting it under
        another configuration's name, would be silently wrong."""
        built, wanted = self.manifest.get("config"), cfg.to_dict()
        if built == wanted:
            return
        built_name = built.get("name", "?") if isinstance(built, dict) else "?"
        differ = ""
        if built_name == cfg.name and isinstance(built, dict):
            keys = sorted(k for k in set(built) | set(wanted) if built.get(k) != wanted.get(k))
            differ = f" (same name, different {', '.join(keys)})"
        raise UserError(
            f"{self.rtl_dir} holds RTL generated for configuration {built_name!r}, but "
            f"configuration {cfg.name!r}{f' ({cfg.source})' if cfg.source else ''} was "
            f"requested{differ}; pass the configuration the RTL was generated for (--config), "
            f"or leave out --rtl to use the RTL of the requested configuration, or generate "
            f"RTL for it into a new directory with `python -m gen --config "
            f"{cfg.source or cfg.name} --out DIR` and pass --rtl DIR")

    @classmethod
    def for_config(cls, config, rtl_dir: str | os.PathLike | None = None,
                   regenerate: bool = False) -> "RtlTarget":
        """The RTL of a configuration (a ``HardwareConfig``, loaded once by the caller, or a
        shipped name or TOML path): ``rtl_dir`` if given, else
        the committed ``rtl/<name>/`` if its manifest matches the configuration, else freshly
        generated into ``build/cosim/<name>/rtl`` (reused while the configuration and gen/
        sources are unchanged). A given ``rtl_dir`` generated for another configuration is
        a ValueError (see :meth:`check_config`)."""
        from ttsnn.gen.config import HardwareConfig, load_config

        cfg = config if isinstance(config, HardwareConfig) else load_config(config)
        if rtl_dir is not None:
            return cls.from_dir(rtl_dir, cfg)
        committed = REPO_ROOT / "rtl" / cfg.name
        if not regenerate and (committed / "manifest.json").is_file():
            try:
                return cls.from_dir(committed, cfg)
            except ValueError:  # stale, or another configuration's: generate a current one below
                pass
        out = build_root() / "cosim" / cfg.name / "rtl"
        stamp = out / ".gen_key"
        key = _gen_key(cfg)
        with locked(out.parent.parent / f".{cfg.name}-rtl.lock"):  # pytest workers share it
            if regenerate or not stamp.is_file() or stamp.read_text() != key:
                src = Path(cfg.source) if cfg.source else None
                src = src if src is not None and src.suffix == ".toml" else cfg.name
                cmd = [sys.executable, "-m", "ttsnn.gen", "--config", str(src), "--out", str(out), "--force"]
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
                if r.returncode != 0:
                    raise RuntimeError(f"RTL generation failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
                atomic_write_text(stamp, key)
        return cls.from_dir(out, cfg)


def _gen_key(cfg) -> str:
    import hashlib
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    # every generator source, subpackages included (gen/engines, gen/backward): a change to
    # any of them must regenerate the cached Verilog
    for p in sorted((REPO_ROOT / "gen").rglob("*.py")):
        h.update(str(p.relative_to(REPO_ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@dataclass
class LayerCase:
    """One layer to co-simulate: ``spikes [T, Cin, H, W]`` (0/1), ``residual
    [T, Cout, Ho, Wo]`` (membrane format) when ``qlayer.residual``. ``tile_hw``, ``pack``
    and ``order`` force the tile size, the lane packing of clusters 2/3 and the row order
    (default: the planner's choice, ``Driver.plan``); ``ring_limit`` caps the rows of the
    streaming rings (``Driver.program``), so that the host has to wait for free slots.
    ``surrogate``: the bounds ``(lo, hi)`` of the trace's window bits (default
    :func:`gen.driver.reference_window`). ``early_start``: force or forbid the cores' early
    start (``gen.driver.Tile.early_start``; default the planner's choice)."""
    name: str
    qlayer: QuantTTLayer
    spikes: np.ndarray
    residual: np.ndarray | None = None
    tile_hw: tuple[int, int] | None = None
    pack: int | None = None
    order: int | None = None
    ring_limit: int | None = None
    surrogate: tuple[int, int] | None = None
    early_start: bool | None = None


@dataclass
class CaseResult:
    """One co-simulated case. Per tile, ``tile_cycles`` is the RTL's ``cycles`` counter (busy
    cycles from the start to ``done``, exact) and ``tb_cycles`` the same span measured on the
    testbench clock (start write to the rising edge of ``done``, within a cycle or two).
    The rows stream while a tile runs, so the wall times and ``span_cycles`` cover whole
    tiles: set-up, the host traffic interleaved with the run, the final reads."""
    case: LayerCase
    report: MismatchReport
    spikes: np.ndarray           # RTL, [T, Cout, Ho, Wo]
    membrane: np.ndarray
    counters: dict[str, int]     # summed over tiles
    tile_cycles: list[int]       # per tile: the RTL's cycles counter (start to done)
    tb_cycles: list[int]         # per tile: testbench clock, start write to rising edge of done
    tiles: int
    wall_s: float                # wall time of the whole tiles, host traffic included
    wait_wall_s: float           # part of wall_s spent waiting for event (no Python per cycle)
    span_cycles: int             # simulated cycles of the whole tiles (first write to last read)
    wait_cycles: int             # simulated cycles spent waiting for event
    rings: list[dict[str, int]]  # per tile: ring sizes in rows (in, res, out)
    rows: list[dict[str, int]]   # per tile: rows streamed (in, res, out)
    waves: Path | None = None
    plan: Any = None             # the driver's TilePlan (tiles with their packing and row order)
    tile_counters: list[dict[str, int]] = field(default_factory=list)  # per tile: every RTL counter
    cpu_s: float = 0.0           # CPU time of the simulator process over the whole tiles
    window: np.ndarray | None = None   # RTL trace words: window bits [T, Cout, Ho, Wo]
    argmax: np.ndarray | None = None   # RTL trace words: a pooling layer's arg-max (0..3)

    @property
    def cycles_per_cpu_second(self) -> float | None:
        """Simulated cycles per CPU-second of the simulator process over whole tiles: what
        one process achieves on a core of its own (a shared machine lowers wall-clock rates)."""
        return self.span_cycles / self.cpu_s if self.cpu_s > 0 else None

    @property
    def match(self) -> bool:
        return self.report.match

    @property
    def cycles(self) -> int:
        """Accelerator cycles of the case (the RTL's cycles counter summed over tiles)."""
        return int(sum(self.tile_cycles))

    @property
    def cycles_per_second(self) -> float | None:
        """Simulated cycles per wall-clock second over whole tiles, the host traffic driven
        from Python included (None when not timed)."""
        return self.span_cycles / self.wall_s if self.wall_s > 0 else None

    @property
    def wait_cycles_per_second(self) -> float | None:
        """Simulated cycles per wall-clock second while the testbench slept on ``event`` (the
        simulator alone, no Python per cycle; None when it never waited)."""
        return self.wait_cycles / self.wait_wall_s if self.wait_wall_s > 0 else None

    @property
    def rings_wrapped(self) -> dict[str, bool]:
        """Whether some tile streamed more rows through a ring than it holds (per ring)."""
        return {k: any(rw[k] > rg[k] for rw, rg in zip(self.rows, self.rings))
                for k in ("in", "res", "out")}


@dataclass
class _Prepared:
    case: LayerCase
    plan: Any
    programs: list
    expected: list                # per tile: (spikes, membrane) [T, C_tile, Ho, Wo]


def _cycle_limit(cfg, tile, prog) -> int:
    """A generous bound on the simulated cycles of one whole tile, host traffic included
    (hang detection only): 20x a rough count of the datapath's steps, 8 cycles per host
    access, 64 per streamed row (status polls), plus 100,000."""
    p = cfg.lanes
    rg = -(-tile.rank // p)
    og = -(-tile.out_channels // p)
    hw = (tile.height + 2) * (tile.width + 2)
    per_px = (tile.rank * -(-tile.in_channels // p) + rg * tile.in_channels
              + rg * 6 * tile.rank + og * tile.rank * 4 + 8)
    host = len(prog.setup) + prog.words_in + prog.words_out + len(prog.counter_reads)
    rows = len(prog.in_rows) + len(prog.res_rows) + len(prog.out_rows)
    return 20 * tile.timesteps * hw * per_px + 8 * host + 64 * rows + 100_000


def _prepare(driver, case: LayerCase) -> _Prepared:
    """The tile plan and every tile's host program (what the simulator needs); the golden
    outputs (``expected``) come later, from :func:`_add_expected`, while the simulator runs."""
    q = case.qlayer
    spikes = np.asarray(case.spikes)
    if spikes.ndim != 4:
        raise UserError(f"case {case.name}: spikes must be [T, Cin, H, W], got {spikes.shape}")
    plan = driver.plan(q, spikes.shape, case.tile_hw, pack=case.pack, order=case.order,
                       early_start=case.early_start)
    programs = []
    for tile in plan:
        window = driver.window(spikes, tile)
        res_tile = driver.residual_tile(case.residual, tile) if q.residual else None
        programs.append(driver.program(q, tile, window, res_tile, ring_limit=case.ring_limit,
                                       surrogate=case.surrogate))
    return _Prepared(case, plan, programs, [])


def _add_expected(driver, prep: _Prepared) -> None:
    """The golden model's outputs of every tile of ``prep`` (on the tile's window)."""
    q, case = prep.case.qlayer, prep.case
    spikes = np.asarray(case.spikes)
    golden_cache: dict[tuple[int, int], Any] = {}
    expected = []
    for tile in prep.plan:
        key = (tile.row0, tile.col0)
        if key not in golden_cache:
            window = driver.window(spikes, tile)
            res_all = None
            if q.residual:
                s = 2 if tile.pool else 1
                ho, wo = tile.out_shape
                r0, c0 = tile.row0 // s, tile.col0 // s
                res_all = torch.from_numpy(np.asarray(case.residual)[:, :, r0:r0 + ho, c0:c0 + wo].astype(np.int64))
            golden_cache[key] = golden_tile(q, torch.from_numpy(window.astype(np.int64)), res_all,
                                            driver.config.widths)
        g = golden_cache[key]
        co = slice(tile.out0, tile.out0 + tile.out_channels)
        expected.append((g.spikes[:, co].numpy(), g.membrane[:, co].numpy()))
    prep.expected = expected


def _jobs_of(driver, prep: _Prepared) -> list[TileJob]:
    """The testbench jobs of a prepared case: each tile's streaming traffic (everything
    :func:`gen.driver.run_tile` needs; the program's ``decode`` stays here)."""
    return [TileJob.of(prog, _cycle_limit(driver.config, tile, prog))
            for tile, prog in zip(prep.plan, prep.programs)]


class SimSession:
    """One simulator process that runs batch after batch of jobs (:mod:`cosim.tb_host` in
    session mode): a chain of layers, each needing the previous layer's outputs, pays the
    simulator's start-up (C++ model, cocotb, Python imports) once instead of once per layer.

    Use as a context manager; pass it to :func:`run_cases` (``session=``). Batches run in the
    order they are posted; the accelerator is not reset between them (tiles never depend on
    state left by an earlier tile; a batch of many cases already runs that way). Not for
    waveforms: failing cases are re-run alone on a traced build as usual. ``forward_only``
    (default: :func:`cosim.runner.forward_only_default`): simulate the design without its
    backward datapath (:mod:`cosim.forward_only`); the batches must then be forward tiles,
    and :func:`run_cases` must be given the same choice."""

    def __init__(self, target: "RtlTarget", *, seed: int = 1, build_dir: str | os.PathLike | None = None,
                 workdir: str | os.PathLike | None = None, forward_only: bool | None = None):
        import threading

        cfg = target.config
        ports = [p["name"] for p in target.manifest.get("ports", [])] or None
        self.forward_only = forward_only_default() if forward_only is None else forward_only
        bdir = Path(build_dir) if build_dir else default_build_dir(cfg.name, False, self.forward_only)
        self.build = build_design(target.verilog, target.top, bdir, waves=False, ports=ports,
                                  player=target.player, forward_only=self.forward_only)
        self.target = target
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cosim-session-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.batches = 0
        self.error: BaseException | None = None

        def serve():
            try:
                run_testbench(self.build, self.dir / "unused.npz", self.dir / "unused-res.npz",
                              self.dir / "run", seed=seed,
                              env={"COSIM_SESSION": str(self.dir), "COSIM_PARENT_PID": str(os.getpid())},
                              expect_results=False)
            except BaseException as exc:   # reported by the next run() / close()
                self.error = exc
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def run(self, jobs: list[TileJob], period_ns: float) -> list:
        """Run one batch in the session's simulator; its results (:func:`cosim.jobs.read_results`)."""
        return self.collect(self.submit(jobs, period_ns))

    def submit(self, jobs: list[TileJob], period_ns: float) -> tuple[int, int]:
        """Post one batch and return at once (the simulator starts on it while the caller
        does other work, e.g. the golden model); :meth:`collect` waits for its results."""
        from ttsnn.gen.hostmap import HOST_READ_LATENCY

        n = self.batches
        write_jobs(self.dir / f".req-{n}.tmp.npz", jobs, period_ns, HOST_READ_LATENCY)
        os.replace(self.dir / f".req-{n}.tmp.npz", self.dir / f"req-{n}.npz")   # whole files only
        self.batches += 1
        return n, len(jobs)

    def collect(self, batch: tuple[int, int]) -> list:
        """The results of a batch posted with :meth:`submit` (waits for them)."""
        import time

        n, n_jobs = batch
        res = self.dir / f"res-{n}.npz"
        while not res.is_file():
            if not self._thread.is_alive():
                raise self.error or RuntimeError(f"the simulator of session {self.dir} ended "
                                                 f"before batch {n}")
            time.sleep(0.002)
        return read_results(res, n_jobs)

    def close(self) -> None:
        (self.dir / "stop").touch()
        self._thread.join()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "SimSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _simulate(build: BuildResult, driver, jobs: list[TileJob], workdir: Path, seed: int,
              waves: bool) -> tuple[list, Path]:
    from ttsnn.gen.hostmap import HOST_READ_LATENCY

    workdir.mkdir(parents=True, exist_ok=True)
    write_jobs(workdir / "jobs.npz", jobs, driver.config.clock_period_ns, HOST_READ_LATENCY)
    wave = run_testbench(build, workdir / "jobs.npz", workdir / "results.npz", workdir / "run",
                         waves=waves, seed=seed)
    return read_results(workdir / "results.npz", len(jobs)), wave


def run_cases(target: RtlTarget, cases: Sequence[LayerCase], *, workdir: str | os.PathLike | None = None,
              waves: str | None = None, seed: int = 1, build_dir: str | os.PathLike | None = None,
              progress: bool = False, session: SimSession | None = None,
              cxx_opt: str | None = None, forward_only: bool | None = None) -> list[CaseResult]:
    """Co-simulate ``cases`` on ``target`` in one simulator run (or as the next batch of
    ``session``, a running :class:`SimSession`); compare with the golden model.

    ``waves`` ('fail', 'always', 'never'; default ``$COSIM_WAVES`` or 'fail'): with 'fail',
    cases that mismatch are run again, alone, on a traced build and ``CaseResult.waves`` names
    the waveform file. ``forward_only`` (default: :func:`cosim.runner.forward_only_default`,
    or the session's choice): simulate the design without its backward datapath
    (:mod:`cosim.forward_only`, faster; a forward tile's results are the same); pass False to
    run the full design, e.g. to share one build with backward tiles.
    """
    from ttsnn.gen.driver import Driver, LayerOutputs

    waves = waves or os.environ.get("COSIM_WAVES", "fail")
    if waves not in WAVES_MODES:
        raise UserError(f"waves must be one of {WAVES_MODES}, got {waves!r}")
    driver = Driver(target.config)
    cfg = driver.config
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique")
    preps = [_prepare(driver, c) for c in cases]
    if forward_only is None:
        forward_only = session.forward_only if session is not None else forward_only_default()
    if session is not None and session.forward_only != forward_only:
        raise ValueError("run_cases: forward_only differs from the session's build")
    bdir = Path(build_dir) if build_dir else default_build_dir(cfg.name, waves == "always", forward_only)
    ports = [p["name"] for p in target.manifest.get("ports", [])] or None
    opt = {} if cxx_opt is None else {"cxx_opt": cxx_opt}   # default: the runner's
    build = build_design(target.verilog, target.top, bdir, waves=waves == "always", ports=ports,
                         player=target.player, forward_only=forward_only, **opt)
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="cosim-")) if own_tmp else Path(workdir)
    jobs = [j for prep in preps for j in _jobs_of(driver, prep)]
    # the simulator runs the batch while this process computes the golden outputs (the two
    # were sequential; now they overlap where a second core is free)
    if session is not None:
        if waves == "always":
            raise ValueError("a simulator session runs without waveforms; use waves='fail' or 'never'")
        batch = session.submit(jobs, cfg.clock_period_ns)
        for prep in preps:
            _add_expected(driver, prep)
        results, wave = session.collect(batch), None
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            sim = pool.submit(_simulate, build, driver, jobs, work / "all", seed, waves == "always")
            try:
                for prep in preps:
                    _add_expected(driver, prep)
            finally:
                results, wave = sim.result()
    out: list[CaseResult] = []
    k = 0
    for prep in preps:
        rep = MismatchReport(prep.case.name)
        layer = LayerOutputs(prep.plan)
        cyc, tb_cyc, wall, wait_wall, span, wait_cyc, cpu = [], [], 0.0, 0.0, 0, 0, 0.0
        rings, rows, per_tile = [], [], []
        for tile, prog, (es, em) in zip(prep.plan, prep.programs, prep.expected):
            r = results[k]
            k += 1
            tr = prog.decode(r.values)
            layer.add(tile, tr)
            per_tile.append({k: int(v) for k, v in tr.counters.items()})
            s = 2 if tile.pool else 1
            rep.add_tile(tile.index, tile.out0, tile.row0 // s, tile.col0 // s, es, em,
                         tr.spikes, tr.membrane)
            cyc.append(int(tr.counters.get("cycles", r.cycles)))
            tb_cyc.append(r.cycles)
            wall += r.wall_s
            wait_wall += r.wait_wall_s
            span += r.span_cycles
            wait_cyc += r.wait_cycles
            cpu += r.cpu_s
            rings.append(dict(prog.rings))
            rows.append({"in": len(prog.in_rows), "res": len(prog.res_rows),
                         "out": len(prog.out_rows)})
        out.append(CaseResult(prep.case, rep, layer.spikes, layer.membrane, dict(layer.counters),
                              cyc, tb_cyc, len(prep.plan), wall, wait_wall, span, wait_cyc,
                              rings, rows, wave if waves == "always" else None, prep.plan,
                              per_tile, cpu, layer.window, layer.argmax))
    if waves == "fail" and any(not r.match for r in out):
        wbuild = build_design(target.verilog, target.top, default_build_dir(cfg.name, True, forward_only),
                              waves=True, ports=ports, player=target.player, forward_only=forward_only)
        for ci, res in enumerate(out):
            if res.match:
                continue
            _, wfile = _simulate(wbuild, driver, _jobs_of(driver, preps[ci]),
                                 work / f"waves-{ci}", seed, True)
            res.waves = wfile
    if own_tmp and all(r.match for r in out):
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return out
