"""``python -m gen --config configs/paper.toml --out rtl/paper``: write the Verilog of the
accelerator (``<out>/ttsnn_accel.v``, the top module, and ``<out>/ttsnn_accel.<unit>.v``, one
file per top-level unit, all listed in the manifest's ``verilog_files``) and its manifest
(``<out>/manifest.json``).

Same configuration, byte-identical output (no source paths, no timestamps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ttsnn.sw.cli_util import prog_name, run_cli
from ttsnn.sw.fileio import add_force_argument, check_output_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog_name("python -m gen"), description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True,
                   help="hardware configuration: a TOML path or a shipped name (paper, small)")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    add_force_argument(p, "the Verilog files and manifest.json in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ttsnn.gen.config import load_config
    from ttsnn.gen.emit import write_outputs
    cfg = load_config(args.config)
    check_output_dir(args.out, ("ttsnn_accel.v", "manifest.json"), force=args.force)
    paths = write_outputs(cfg, Path(args.out))
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="gen"))
