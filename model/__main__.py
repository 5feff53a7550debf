"""``python -m model <command>``: the training performance/energy model.

Commands:
  energy       one network on one accelerator, every mode (table, --json, --plot)
  report       the Fig. 4-style report for MS-ResNet18 and MS-ResNet34 (what `make energy` runs)
  reproduce    the paper's Fig. 4 claims: the model at central values, its bands, and the
               conditions under which each claim would hold (also run by `make energy`)
  sensitivity  how the Fig. 4 figures move with each constant over its published range
  sparsity     measure spike/gradient sparsity of a checkpoint with the sw/ model
  tile         the forward counters the model predicts for one tile of the proposed design
  table        the energy table (every entry, its source and treatment) as markdown
  sweep        design-space sweep over a grid of configurations x networks x modes (CSV, Pareto plot)
  hw-explore   tinySNN's quantisation search for a TT checkpoint: the accelerator's widths to generate
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ttsnn.sw.arch import WORKLOADS
from ttsnn.sw.cli_util import UserError, prog_name, run_cli
from ttsnn.sw.fileio import add_force_argument, check_output_dir, check_outputs

# the files `report` writes into its --out
REPORT_FILES = ("energy_report.json", "energy_layers.csv", "fig4a_sata.png", "fig4b_proposed.png",
                "fig4b_proposed_rtl.png", "summary.md")

COMMANDS = ("energy", "report", "reproduce", "sensitivity", "sparsity", "tile", "table", "sweep", "hw-explore")


def _common(p: argparse.ArgumentParser, network: bool = True) -> None:
    if network:
        # defaults: the paper's Fig. 4(b) workload, MS-ResNet34 on N-Caltech101 (sw.arch.WORKLOADS)
        wl = WORKLOADS["resnet34-ncaltech101"]
        p.add_argument("--arch", default=wl.arch, help="resnet18 | resnet34 | tiny")
        p.add_argument("--input", default=f"{wl.in_channels}x{wl.input_size}x{wl.input_size}",
                       help="C x H x W of the input (e.g. 3x32x32)")
        p.add_argument("--classes", type=int, default=wl.num_classes,
                       help=f"classes of the classifier head, >= 1 (default {wl.num_classes})")
        p.add_argument("--timesteps", type=int, default=wl.timesteps,
                       help=f"timesteps T, >= 1 (default {wl.timesteps})")
        p.add_argument("--ranks", default=wl.ranks,
                       help="TT ranks: an int, 'uniform:R', a comma list or a preset")
        p.add_argument("--schedule", default=None, help="HTT full timesteps, e.g. 111000")
    p.add_argument("--config", default="configs/paper.toml", help="hardware configuration (TOML or name)")
    p.add_argument("--energy-table", default=None, help="energy table YAML (default: the 28 nm table)")
    p.add_argument("--dram", default=None,
                   help="DRAM type priced: hbm2 (default) | lpddr4 | ddr | sata-sim (the table's dram.memories)")
    p.add_argument("--sparsity", default=None,
                   help="JSON of measured sparsity (python -m model sparsity); default: SATA's s=0.9, du=0.7")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog_name("python -m model"), description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("energy", help="energy of one network on one accelerator, every mode")
    _common(p)
    p.add_argument("--accel", default="proposed",
                   help="proposed (the RTL in the paper's arrangement) | proposed-rtl (the RTL in the "
                        "generator's own arrangement) | sata")
    p.add_argument("--modes", default="dense,stt,ptt,htt",
                   help="comma list of convolution modes out of dense, stt, ptt, htt (default all four)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--layers", action="store_true", help="with --json: include per-layer counts")
    p.add_argument("--plot", default=None, help="write a PNG of the breakdown per mode")
    p.add_argument("--csv", default=None, help="write per-layer, per-pass energies as CSV")
    add_force_argument(p, "existing --plot/--csv files")
    p.add_argument("--reversible", nargs="?", const="streamlined", default=None, choices=("streamlined", "naive"),
                   help="cost the reversible network (sw --reversible) with stored BPTT vs recompute, "
                        "per network and per layer (backward: streamlined, the default, or naive)")
    p = sub.add_parser("report", help="Fig. 4-style report for both networks")
    _common(p, network=False)
    p.add_argument("--out", required=True, help="output directory")
    add_force_argument(p, "a report already in --out")
    p = sub.add_parser("reproduce", help="the paper's Fig. 4 claims against the model, bands and conditions")
    _common(p, network=False)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the markdown")
    p.add_argument("--out", default=None, help="directory for reproduce.{json,md,png}")
    add_force_argument(p, "reproduce.{json,md,png} in --out")
    p = sub.add_parser("sensitivity", help="sensitivity of the Fig. 4 figures to each constant's range")
    _common(p, network=False)
    p.add_argument("--sparsity-step", type=float, default=0.05, help="absolute change of each sparsity")
    p.add_argument("--out", default=None, help="directory for sensitivity.{json,md}")
    add_force_argument(p, "sensitivity.{json,md} in --out")
    p = sub.add_parser("sparsity", help="measure spike/gradient sparsity of a checkpoint")
    p.add_argument("--checkpoint", required=True,
                   help="trained checkpoint of `ttsnn train` (dense or TT), e.g. build/demo/ptt.pt")
    p.add_argument("--data", default="digits-events",
                   help="data set of the test images: digits | digits-events | cifar10 | cifar100 | "
                        "ncaltech101 | dvsgesture (default digits-events)")
    p.add_argument("--data-path", default=None,
                   help="folder of a data set read from local files (ncaltech101, dvsgesture, cifar*); "
                        "the embedded digits need none")
    p.add_argument("--batches", type=int, default=2, help="test batches measured, >= 1 (default 2)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch, >= 1 (default 16)")
    p.add_argument("--out", required=True, help="JSON file to write")
    add_force_argument(p, "an existing --out file")
    p = sub.add_parser("tile", help="forward counters of one tile (proposed accelerator)")
    p.add_argument("--config", default="configs/small.toml",
                   help="hardware configuration (TOML file or shipped name; default configs/small.toml)")
    p.add_argument("--mode", default="ptt", help="stt | ptt | htt")
    p.add_argument("--shape", default="4x4",
                   help="tile H x W (before pooling); the tile is a whole layer of that size")
    p.add_argument("--in-channels", type=int, default=8, help="input channels Cin (default 8)")
    p.add_argument("--rank", type=int, default=4, help="TT rank r (default 4)")
    p.add_argument("--out-channels", type=int, default=8, help="output channels Cout (default 8)")
    p.add_argument("--timesteps", type=int, default=2, help="timesteps T (default 2)")
    p.add_argument("--schedule", default=None, help="HTT full timesteps, e.g. 10")
    p.add_argument("--pool", action="store_true", help="2x2 max-pool after the layer")
    p.add_argument("--residual", action="store_true", help="the layer adds a residual input")
    p.add_argument("--pack", type=int, default=None,
                   help="log2 Pk of clusters 2/3 (default: the driver's choice)")
    p.add_argument("--order", type=int, choices=(0, 1), default=None,
                   help="0 row outer, 1 timestep outer (default: the driver's choice)")
    p.add_argument("--density", type=float, default=0.1, help="input spike density (1 - sparsity)")
    p.add_argument("--accel", default="proposed-rtl",
                   help="proposed-rtl (the generator's own arrangement) | proposed (the paper's "
                        "arrangement: zero-skipping cluster 1, sequential STT chain); both RTL counters")
    p = sub.add_parser("table", help="the energy table as markdown, with the buffers of a configuration")
    p.add_argument("--config", default="configs/paper.toml",
                   help="hardware configuration (TOML file or shipped name; default configs/paper.toml)")
    p.add_argument("--energy-table", default=None, help="energy table YAML (default: the 28 nm table)")
    p.add_argument("--dram", default=None, help="DRAM type (default: the table's)")
    p = sub.add_parser("sweep", help="design-space sweep: configurations x networks x modes")
    p.add_argument("--grid", required=True, help="grid TOML (see configs/sweep/example.toml)")
    p.add_argument("--out", default=None, help="output directory (default: build/sweep/<grid name>); "
                   "running again with the same --out continues an interrupted sweep")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: a process pool on this machine (default); ray: Ray tasks")
    p.add_argument("--workers", type=int, default=None,
                   help="local: pool processes (default: every core; 1 = in this process); "
                        "ray without --ray-address: CPUs of the private Ray")
    p.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster (e.g. ray://head:10001 or head:6379); "
                        "default: a private single-node Ray on this machine")
    p.add_argument("--force", action="store_true", help="discard a sweep already in --out and start anew")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from ttsnn.model.hw_explore import add_arguments as hw_explore_arguments
    hw_explore_arguments(sub.add_parser("hw-explore", help="quantisation search and selection of the "
                                        "accelerator's widths for a TT checkpoint (docs/tinysnn.md)"))
    return parser


def _entry_row(e: dict) -> tuple[str, str, str]:
    """(name, central value, range) of one energy-table entry for `python -m model table`."""
    k = e["kind"]
    if k == "primitive":
        rng = f"{e.get('low', e['energy'])} - {e.get('high', e['energy'])}"
        return e["op"], f"{e['energy']:.4g}", rng
    if k == "action":
        return (f"{e['component']}.{e['action']} = " + " + ".join(
            f"{n} {t}" if n != 1 else t for t, n in e["compose"].items()), f"{e['energy']:.4g}",
            "its primitives' ranges")
    if k == "sram":
        return (f"SRAM {e['kbytes']} KB ({e['device']})",
                f"r {e['read']} / w {e['write']}, leak {e['leakage_mw']} mW", "")
    if k == "sram_access_range":
        return "SRAM access energy", "x1 (CACTI)", f"x{e['low']} - x{e['high']}"
    if k == "sram_leakage":
        return (f"SRAM leakage ({e['device']}, {e['temperature']})", "the size points, interpolated",
                f"{e['low_mw_per_kb']} - {e['high_mw_per_kb']} mW/KB")
    if k == "logic_leakage":
        return "logic and clock leakage", "excluded", ""
    return f"DRAM {e['memory']}", f"{e['central']} pJ/bit", f"{e['low']} - {e['high']}"


def cmd_sweep(args) -> int:
    from ttsnn.sw.backends import make_backend
    from ttsnn.model.sweep import load_grid, run_sweep
    grid = load_grid(args.grid)
    out = Path(args.out) if args.out else Path("build/sweep") / Path(args.grid).stem
    with make_backend(args.backend, workers=args.workers, address=args.ray_address) as backend:
        run_sweep(grid, out, backend, force=args.force, progress=False if args.no_progress else None)
    return 0


def cmd_table(args) -> int:
    from ttsnn.gen.config import load_config
    from ttsnn.model.accelerators import Proposed
    from ttsnn.model.energy_table import load_energy_table
    cfg = load_config(args.config)
    t = load_energy_table(args.energy_table, args.dram)
    print(f"Energy table `{t.source}` ({t.node_nm} nm), pJ per action; every value central, "
          f"range = published low - high. DRAM priced as {t.dram_memory}.\n")
    print("| entry | bits | central | range | treatment | source / rule |")
    print("|---|---|---|---|---|---|")
    for e in t.entries:
        name, val, rng = _entry_row(e)
        rule = e.get("rule") or ""
        extra = "; " + e["range_source"] if "range_source" in e else ""
        print(f"| {name} | {e.get('bits', '')} | {val} | {rng} | {e.get('treatment', 'derived')} | "
              f"{e['source']}{extra}{'; ' + rule if rule else ''} |")
    acc = Proposed(cfg)
    print(f"\nGlobal buffers of `{cfg.name}` (interpolated, pJ per access; leakage low / central / high):\n")
    print("| buffer | bytes | port bits | read | write | leakage mW |")
    print("|---|---|---|---|---|---|")
    for n, m in acc.memories.items():
        lk = " / ".join(f"{t.sram_leakage_mw(m.bytes, lv):.2f}" for lv in ("low", "central", "high"))
        print(f"| {n} | {m.bytes} | {m.width_bits} | {t.sram_access(m.bytes, m.width_bits, 'read'):.3f} | "
              f"{t.sram_access(m.bytes, m.width_bits, 'write'):.3f} | {lk} |")
    print(f"\nTotal SRAM leakage {acc.leakage_mw(t):.1f} mW (range "
          f"{acc.leakage_mw(t.at_levels(sram_leakage='low')):.1f} - "
          f"{acc.leakage_mw(t.at_levels(sram_leakage='high')):.1f}) at {cfg.clock_mhz} MHz = "
          f"{acc.leakage_mw(t) * cfg.clock_period_ns:.1f} pJ per cycle; logic leakage excluded.")
    return 0


def _load(args):
    from ttsnn.gen.config import load_config
    from ttsnn.model.counts import Sparsity
    from ttsnn.model.energy_table import load_energy_table
    cfg = load_config(args.config)
    table = load_energy_table(args.energy_table, args.dram)
    sp = Sparsity.from_json(args.sparsity) if args.sparsity else Sparsity()
    return cfg, table, sp


def _workload(args):
    from ttsnn.sw.stats import parse_input_shape
    from ttsnn.model.evaluate import Workload
    c, h, w = parse_input_shape(args.input)
    ranks = args.ranks
    if isinstance(ranks, str) and ranks.strip().isdigit():
        ranks = int(ranks)
    return Workload(args.arch, c, (h, w), args.classes, args.timesteps, ranks, args.schedule)


def cmd_energy(args) -> int:
    from ttsnn.sw.arch import MODES
    from ttsnn.model import report
    from ttsnn.model.evaluate import evaluate_network
    from ttsnn.model.accelerators import make_accelerator
    check_outputs((("--plot", args.plot), ("--csv", args.csv)), force=args.force)
    cfg, table, sp = _load(args)
    wl = _workload(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UserError(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    acc = make_accelerator(args.accel, cfg)
    from ttsnn.sw.progress import say
    say(f"costing {args.arch} on a {args.input} input, T={args.timesteps}, modes {', '.join(modes)}, on "
        f"{args.accel}: counting every layer's operations and memory accesses (about a minute at 224x224)")
    if args.reversible:
        return _energy_reversible(args, wl, modes, acc, table, sp)
    results = {m: evaluate_network(wl, m, acc, cfg, table, sp) for m in modes}
    if args.plot:
        report.plot_modes(results, args.plot, f"{args.arch} on {args.accel} ({cfg.name})")
    if args.csv:
        from ttsnn.sw.fileio import atomic_write_text
        atomic_write_text(args.csv, report.layers_csv([(args.arch, args.accel, r) for r in results.values()]))
    if args.json:
        out = {"workload": wl.describe(), "accelerator": args.accel, "config": cfg.name,
               "energy_table": table.source, "sparsity": {"spike": sp.spike, "grad": sp.grad,
                                                          "source": sp.source},
               "unit": "pJ", "modes": report.modes_summary(results)}
        if args.layers:
            out["layers"] = {m: r.to_dict()["layers"] for m, r in results.items()}
        print(json.dumps(out, indent=2))
    else:
        report.print_modes_table(results, f"{args.arch} {args.input} T={args.timesteps} on "
                                          f"{args.accel} ({cfg.name}); energies in uJ")
    return 0


def _energy_reversible(args, wl, modes, acc, table, sp) -> int:
    from ttsnn.model.reversible import evaluate_reversible, print_reversible
    for flag in ("plot", "csv"):
        if getattr(args, flag):
            raise UserError(f"--{flag} is not available with --reversible; use --json")
    comps = [evaluate_reversible(wl, m, acc, table, sp, args.reversible) for m in modes]
    if args.json:
        print(json.dumps({"workload": wl.describe(), "accelerator": args.accel, "config": acc.cfg.name,
                          "unit": "pJ", "reversible": {c.mode: {**c.summary(), "layers": c.rows}
                                                       for c in comps}}, indent=2))
    else:
        print_reversible(comps, f"{args.arch} {args.input} T={args.timesteps} on {args.accel} ({acc.cfg.name})")
    return 0


def cmd_report(args) -> int:
    from rich.console import Console
    from ttsnn.sw.fileio import atomic_write_text
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log
    from ttsnn.model import report
    from ttsnn.model.evaluate import evaluate_network
    from ttsnn.model.accelerators import make_accelerator
    from ttsnn.model.networks import FIG4_NETWORKS, PAPER_REDUCTIONS, PAPER_NETWORK
    out = check_output_dir(args.out, REPORT_FILES, force=args.force)
    cfg, table, sp = _load(args)
    out.mkdir(parents=True, exist_ok=True)
    accs = {a: make_accelerator(a, cfg) for a in ("proposed", "proposed-rtl", "sata")}
    results: dict[str, dict[str, dict]] = {a: {} for a in accs}
    jobs = [(a, n, m) for a in accs for n in FIG4_NETWORKS for m in ("dense", "stt", "ptt", "htt")]
    for a, n, m in tqdm(jobs, desc="report", leave=False):
        results[a].setdefault(n, {})[m] = evaluate_network(FIG4_NETWORKS[n], m, accs[a], cfg, table, sp)
    data = {"config": cfg.name, "energy_table": table.source,
            "sparsity": {"spike": sp.spike, "grad": sp.grad, "source": sp.source},
            "dram_memory": table.dram_memory, "dram_pj_per_bit": table.dram["read"],
            "leakage_mw": accs["proposed"].leakage_mw(table), "unit": "pJ",
            "networks": {n: FIG4_NETWORKS[n].describe() for n in FIG4_NETWORKS},
            "results": {a: {n: report.modes_summary(r) for n, r in rs.items()} for a, rs in results.items()}}
    report.write_json(out / "energy_report.json", data)
    rows = [(n, a, r) for a, rs in results.items() for n, byn in rs.items() for r in byn.values()]
    atomic_write_text(out / "energy_layers.csv", report.layers_csv(rows))
    report.plot_fig4a(results["sata"], out / "fig4a_sata.png")
    report.plot_fig4b(results["proposed"], out / "fig4b_proposed.png",
                      {PAPER_NETWORK: dict(PAPER_REDUCTIONS)})
    report.plot_fig4b(results["proposed-rtl"], out / "fig4b_proposed_rtl.png",
                      {PAPER_NETWORK: dict(PAPER_REDUCTIONS)})
    lines = ["# Training energy report (python -m model report)", "",
             f"Configuration `{cfg.name}`, energy table `{Path(table.source).name}`, sparsity: "
             f"{sp.source}, DRAM {table.dram_memory} ({table.dram['read']:g} pJ/bit), SRAM leakage "
             f"{accs['proposed'].leakage_mw(table):.1f} mW (logic leakage excluded); every constant at its "
             f"central published value. One BPTT training step (forward, backward, weight update) of one "
             f"sample. Energies in uJ; 'vs STT' is the change of total energy versus STT.", ""]
    for a, rs in results.items():
        for n, byn in rs.items():
            lines += [f"## {n} on the {a} accelerator", "",
                      "| mode | total uJ | vs STT | forward | backward | weight update | compute | scratchpad | global buffers | DRAM | leakage | Mcycles |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for m, r in byn.items():
                bp, bc = r.by_pass(), r.by_category()
                lines.append(f"| {m} | {r.total_pj * 1e-6:,.1f} | {100 * report.reduction(byn, m):+.1f}% | "
                             + " | ".join(f"{bp[p] * 1e-6:,.1f}" for p in ("forward", "backward", "weight_update"))
                             + " | " + " | ".join(f"{bc[c] * 1e-6:,.1f}" for c in
                                                  ("compute", "scratchpad", "global_buffers", "dram", "leakage"))
                             + f" | {r.cycles()['total'] / 1e6:,.2f} |")
            lines.append("")
    lines += ["## Paper versus model", "",
              "Figures versus STT at central values; the bands over the published ranges and the "
              "conditions under which each of the paper's claims would hold: `python -m model "
              "reproduce` (also run by `make energy`, `build/energy/reproduce.md`).", "",
              "| network | accelerator | dense | PTT | HTT | paper (proposed, Fig. 4(b)) |", "|---|---|---|---|---|---|"]
    for a, rs in results.items():
        for n, byn in rs.items():
            paper = (f"PTT {100 * PAPER_REDUCTIONS['ptt']:+.1f}%, HTT {100 * PAPER_REDUCTIONS['htt']:+.1f}%"
                     if n == PAPER_NETWORK and a != "sata" else "")
            lines.append(f"| {n} | {a} | " + " | ".join(f"{100 * report.reduction(byn, m):+.1f}%"
                                                         for m in ("dense", "ptt", "htt")) + f" | {paper} |")
    streamed = sorted({f"{n}: {l.name} (`{a}`)" for a in ("proposed", "proposed-rtl")
                       for n, byn in results[a].items()
                       for r in byn.values() for l in r.layers if l.result.info.get("weights_streamed")})
    lines += ["", "Accelerators: both `proposed` and `proposed-rtl` are the generated RTL's counters, in "
              "two arrangements of the generator (gen.config.Arrangement). `proposed` is the paper's: "
              "the zero-skipping cluster 1 (one step per 1-spike of a pixel, rank-lane accumulators) "
              "and STT's sequential chaining (no G2 -> G3 path: clusters 2 and 3 alternate row by row); "
              "its data-dependent cluster-1 cycles use the layer's spike density (independent spikes). "
              "`proposed-rtl` is the generator's own: cluster 1 with P PEs over input channels and an "
              "adder tree (r * ceil(Cin/P) steps per pixel), STT's cluster 3 on cluster 2's q2 rows as "
              "its own engine. `sata` is the SATA-like single array (docs/energy_model.md).", ""]
    if streamed:
        lines += ["Layers that the RTL of an accelerator cannot run on `" + cfg.name + "` (a core "
                  "exceeds its region even as a ring of one chunk; the layers whose cores the RTL "
                  "streams are charged their real chunks instead) are "
                  "planned on a copy of the configuration with weight regions large enough, same "
                  "datapath; the cores larger than their regions are charged as streamed from DRAM "
                  "once per output row and timestep, the traffic of the streaming scheme of "
                  "docs/architecture.md: " + ", ".join(streamed) + ".", ""]
    lines += [
              "Figures: `fig4a_sata.png` (dense/STT/PTT/HTT on the SATA-like accelerator, "
              "normalised to dense), `fig4b_proposed.png` and `fig4b_proposed_rtl.png` (STT/PTT/HTT "
              "on the proposed accelerator, normalised to STT; dashed: the paper's reductions). Per-layer figures: "
              "`energy_layers.csv`; everything: `energy_report.json`.", ""]
    atomic_write_text(out / "summary.md", "\n".join(lines))
    Console().print(f"wrote {out}/energy_report.json, energy_layers.csv, fig4a_sata.png, "
                    f"fig4b_proposed.png, fig4b_proposed_rtl.png, summary.md")
    return 0


def cmd_reproduce(args) -> int:
    from ttsnn.sw.fileio import atomic_write_text
    from ttsnn.model.report import write_json
    from ttsnn.model.reproduce import plot_reproduction, reproduce, reproduce_markdown
    if args.out:
        check_output_dir(args.out, ("reproduce.json", "reproduce.md", "reproduce.png"), force=args.force)
    cfg, table, sp = _load(args)
    res = reproduce(cfg, table, sp)
    md = reproduce_markdown(res)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "reproduce.json", res)
        atomic_write_text(out / "reproduce.md", md)
        plot_reproduction(res, out / "reproduce.png")
    return 0


def cmd_sensitivity(args) -> int:
    from ttsnn.sw.fileio import atomic_write_text
    from ttsnn.model.report import write_json
    from ttsnn.model.sensitivity import sensitivity_markdown, sensitivity_table
    if args.out:
        check_output_dir(args.out, ("sensitivity.json", "sensitivity.md"), force=args.force)
    cfg, table, sp = _load(args)
    res = sensitivity_table(cfg, table, sp, args.sparsity_step)
    md = sensitivity_markdown(res)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "sensitivity.json", res)
        atomic_write_text(out / "sensitivity.md", md)
    return 0


def cmd_sparsity(args) -> int:
    import torch
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.data import load_dataset
    from ttsnn.model.report import write_json
    from ttsnn.model.sparsity import measure_sparsity
    if args.batches < 1 or args.batch_size < 1:
        raise UserError("--batches and --batch-size must be >= 1")
    check_outputs([("--out", args.out)], inputs=[args.checkpoint], force=args.force)
    model, meta = load_model(args.checkpoint)
    hp = meta["model"]["hparams"]
    _, test, info = load_dataset(args.data, args.data_path, timesteps=hp["timesteps"])
    loader = torch.utils.data.DataLoader(test, batch_size=args.batch_size, shuffle=False)

    def batches():
        for i, (x, y) in enumerate(loader):
            if i >= args.batches:
                break
            yield (x.transpose(0, 1).contiguous() if info.events else x), y
    res = measure_sparsity(model, batches(), source=f"measured: {args.checkpoint} on {args.data}")
    write_json(args.out, res)
    print(f"spike sparsity (mean over layers) {res['spike']:.3f}, gradient sparsity {res['grad']:.3f}; "
          f"wrote {args.out}")
    return 0


def cmd_tile(args) -> int:
    import dataclasses
    from ttsnn.gen.config import Arrangement, load_config
    from ttsnn.gen.driver import plan_layer
    from ttsnn.sw.arch import validate_schedule
    from ttsnn.model.tile import tile_forward_counters
    cfg = load_config(args.config)
    try:
        h, w = (int(v) for v in args.shape.lower().split("x"))
    except ValueError:
        raise UserError(f"--shape must be HxW, got {args.shape!r}") from None
    variants = {"proposed-rtl": Arrangement("pipelined", "dense"),
                "proposed": Arrangement("sequential", "zero_skip")}
    if args.accel not in variants:
        raise UserError(f"--accel must be one of {', '.join(variants)}, got {args.accel!r}")
    cfg = dataclasses.replace(cfg, arrangement=variants[args.accel])
    if args.mode not in ("stt", "ptt", "htt"):
        raise UserError(f"--mode must be stt, ptt or htt, got {args.mode!r}")
    T = args.timesteps
    sched = validate_schedule(args.schedule, T) if args.mode == "htt" else (True,) * T
    # one tile holding the whole H x W layer (halos outside the layer), as the driver plans it
    plan = plan_layer(cfg, (T, args.in_channels, h, w), args.rank, args.out_channels,
                      pool=args.pool, residual=args.residual, tile_hw=(h, w), mode=args.mode,
                      schedule=sched, pack=args.pack, order=args.order)
    if len(plan) != 1:
        raise UserError(f"a {h}x{w} layer with {args.out_channels} output channels does not fit one "
                        f"tile of {cfg.name!r} ({len(plan)} output-channel groups)")
    c = tile_forward_counters(cfg, plan.tiles[0], args.mode, sched, density=args.density,
                              residual=args.residual)
    print(json.dumps(c, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"energy": cmd_energy, "report": cmd_report, "reproduce": cmd_reproduce,
            "sensitivity": cmd_sensitivity, "sparsity": cmd_sparsity, "tile": cmd_tile,
            "table": cmd_table, "sweep": cmd_sweep, "hw-explore": _cmd_hw_explore}[args.command](args)


def _cmd_hw_explore(args) -> int:
    from ttsnn.model.hw_explore import run
    return run(args)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="model"))
