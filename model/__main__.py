"""``python -m model <command>``: the training performance/energy model.

Commands:
  energy       one network on one accelerator, every mode (table, --json, --plot)
  report       the Fig. 4-style report for MS-ResNet18 and MS-ResNet34 (what `make energy` runs)
  calibration  the calibration targets and whether the model meets them
  calibrate    search the calibration knobs (DRAM energy, SRAM leakage) by the documented rule
  sensitivity  how the calibration figures move with each major parameter
  sparsity     measure spike/gradient sparsity of a checkpoint with the sw/ model
  tile         the forward counters the model predicts for one tile of the proposed design
  table        the energy table (every entry, its source and treatment) as markdown
  sweep        design-space sweep over a grid of configurations x networks x modes (CSV, Pareto plot)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from sw.arch import WORKLOADS
from sw.cli_util import run_cli

COMMANDS = ("energy", "report", "calibration", "calibrate", "sensitivity", "sparsity", "tile", "table", "sweep")


def _common(p: argparse.ArgumentParser, network: bool = True) -> None:
    if network:
        # defaults: the calibration workload, MS-ResNet34 on N-Caltech101 (sw.arch.WORKLOADS)
        wl = WORKLOADS["resnet34-ncaltech101"]
        p.add_argument("--arch", default=wl.arch, help="resnet18 | resnet34 | tiny")
        p.add_argument("--input", default=f"{wl.in_channels}x{wl.input_size}x{wl.input_size}",
                       help="C x H x W of the input (e.g. 3x32x32)")
        p.add_argument("--classes", type=int, default=wl.num_classes)
        p.add_argument("--timesteps", type=int, default=wl.timesteps)
        p.add_argument("--ranks", default=wl.ranks,
                       help="TT ranks: an int, 'uniform:R', a comma list or a preset")
        p.add_argument("--schedule", default=None, help="HTT full timesteps, e.g. 111000")
    p.add_argument("--config", default="configs/paper.toml", help="hardware configuration (TOML or name)")
    p.add_argument("--energy-table", default=None, help="energy table YAML (default: the 28 nm table)")
    p.add_argument("--sparsity", default=None,
                   help="JSON of measured sparsity (python -m model sparsity); default: SATA's s=0.9, du=0.7")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("energy", help="energy of one network on one accelerator, every mode")
    _common(p)
    p.add_argument("--accel", default="proposed",
                   help="proposed (the paper's design) | proposed-rtl (as generated in gen/) | sata")
    p.add_argument("--modes", default="dense,stt,ptt,htt")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--layers", action="store_true", help="with --json: include per-layer counts")
    p.add_argument("--plot", default=None, help="write a PNG of the breakdown per mode")
    p.add_argument("--csv", default=None, help="write per-layer, per-pass energies as CSV")
    p.add_argument("--reversible", nargs="?", const="streamlined", default=None, choices=("streamlined", "naive"),
                   help="cost the reversible network (sw --reversible) with stored BPTT vs recompute, "
                        "per network and per layer (backward: streamlined, the default, or naive)")
    p = sub.add_parser("report", help="Fig. 4-style report for both networks")
    _common(p, network=False)
    p.add_argument("--out", required=True, help="output directory")
    p = sub.add_parser("calibration", help="check the calibration targets")
    _common(p, network=False)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("calibrate", help="search the calibration knobs by the documented rule")
    _common(p, network=False)
    p.add_argument("--points", type=int, default=25, help="DRAM grid points (log-spaced over the published range)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("sensitivity", help="sensitivity table of the calibration figures")
    _common(p, network=False)
    p.add_argument("--step", type=float, default=0.25, help="relative change of each energy parameter")
    p.add_argument("--sparsity-step", type=float, default=0.05, help="absolute change of each sparsity")
    p.add_argument("--out", default=None, help="directory for sensitivity.{json,md}")
    p = sub.add_parser("sparsity", help="measure spike/gradient sparsity of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="digits-events", help="data set name (sw.data.DATASETS)")
    p.add_argument("--data-path", default=None)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="JSON file to write")
    p = sub.add_parser("tile", help="forward counters of one tile (proposed accelerator)")
    p.add_argument("--config", default="configs/small.toml")
    p.add_argument("--mode", default="ptt", help="stt | ptt | htt")
    p.add_argument("--shape", default="4x4",
                   help="tile H x W (before pooling); the tile is a whole layer of that size")
    p.add_argument("--in-channels", type=int, default=8)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--out-channels", type=int, default=8)
    p.add_argument("--timesteps", type=int, default=2)
    p.add_argument("--schedule", default=None, help="HTT full timesteps, e.g. 10")
    p.add_argument("--pool", action="store_true")
    p.add_argument("--residual", action="store_true")
    p.add_argument("--pack", type=int, default=None,
                   help="log2 Pk of clusters 2/3 (default: the driver's choice)")
    p.add_argument("--order", type=int, choices=(0, 1), default=None,
                   help="0 row outer, 1 timestep outer (default: the driver's choice)")
    p.add_argument("--density", type=float, default=0.1, help="input spike density (1 - sparsity)")
    p.add_argument("--accel", default="proposed-rtl",
                   help="proposed-rtl (the RTL's counters) | proposed (the paper's idealised design)")
    p = sub.add_parser("table", help="the energy table as markdown, with the buffers of a configuration")
    p.add_argument("--config", default="configs/paper.toml")
    p.add_argument("--energy-table", default=None)
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
    return parser


def cmd_sweep(args) -> int:
    from sw.backends import make_backend
    from .sweep import load_grid, run_sweep
    grid = load_grid(args.grid)
    out = Path(args.out) if args.out else Path("build/sweep") / Path(args.grid).stem
    with make_backend(args.backend, workers=args.workers, address=args.ray_address) as backend:
        run_sweep(grid, out, backend, force=args.force, progress=False if args.no_progress else None)
    return 0


def cmd_table(args) -> int:
    from gen.config import load_config
    from .accelerators import Proposed
    from .energy_table import load_energy_table
    cfg = load_config(args.config)
    t = load_energy_table(args.energy_table)
    print(f"Energy table `{t.source}` ({t.node_nm} nm), pJ per action.\n")
    print("| entry | bits | energy (pJ) | treatment | source / rule |")
    print("|---|---|---|---|---|")
    for e in t.entries:
        if e["kind"] == "primitive":
            name, val = e["op"], f"{e['energy']:.4g}"
        elif e["kind"] == "action":
            name = f"{e['component']}.{e['action']} = " + " + ".join(
                f"{n} {k}" if n != 1 else k for k, n in e["compose"].items())
            val = f"{e['energy']:.4g}"
        elif e["kind"] == "sram":
            name, val = f"SRAM {e['kbytes']} KB", f"r {e['read']} / w {e['write']}, leak {e['leakage_mw']} mW"
        else:
            name, val = f"DRAM {e['action']}", f"{e['energy']} /bit"
        rule = e.get("rule") or ""
        rng = f" range {e['range']}" if "range" in e else ""
        print(f"| {name} | {e.get('bits', '')} | {val} | {e.get('treatment', 'derived')} | "
              f"{e['source']}{'; ' + rule if rule else ''}{rng} |")
    acc = Proposed(cfg)
    print(f"\nGlobal buffers of `{cfg.name}` (interpolated, pJ per access):\n")
    print("| buffer | bytes | port bits | read | write | leakage mW |")
    print("|---|---|---|---|---|---|")
    for n, m in acc.memories.items():
        print(f"| {n} | {m.bytes} | {m.width_bits} | {t.sram_access(m.bytes, m.width_bits, 'read'):.3f} | "
              f"{t.sram_access(m.bytes, m.width_bits, 'write'):.3f} | {t.sram_leakage_mw(m.bytes):.2f} |")
    print(f"\nTotal leakage {acc.leakage_mw(t):.1f} mW at {cfg.clock_mhz} MHz = "
          f"{acc.leakage_mw(t) * cfg.clock_period_ns:.1f} pJ per cycle.")
    return 0


def _load(args):
    from gen.config import load_config
    from .counts import Sparsity
    from .energy_table import load_energy_table
    cfg = load_config(args.config)
    table = load_energy_table(args.energy_table)
    sp = Sparsity.from_json(args.sparsity) if args.sparsity else Sparsity()
    return cfg, table, sp


def _workload(args):
    from sw.stats import parse_input_shape
    from .evaluate import Workload
    c, h, w = parse_input_shape(args.input)
    ranks = args.ranks
    if isinstance(ranks, str) and ranks.strip().isdigit():
        ranks = int(ranks)
    return Workload(args.arch, c, (h, w), args.classes, args.timesteps, ranks, args.schedule)


def cmd_energy(args) -> int:
    from sw.arch import MODES
    from . import report
    from .evaluate import evaluate_network
    from .accelerators import make_accelerator
    cfg, table, sp = _load(args)
    wl = _workload(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    acc = make_accelerator(args.accel, cfg)
    if args.reversible:
        return _energy_reversible(args, wl, modes, acc, table, sp)
    results = {m: evaluate_network(wl, m, acc, cfg, table, sp) for m in modes}
    if args.plot:
        report.plot_modes(results, args.plot, f"{args.arch} on {args.accel} ({cfg.name})")
    if args.csv:
        from sw.fileio import atomic_write_text
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
    from .reversible import evaluate_reversible, print_reversible
    for flag in ("plot", "csv"):
        if getattr(args, flag):
            raise ValueError(f"--{flag} is not available with --reversible; use --json")
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
    from sw.fileio import atomic_write_text
    from tqdm import tqdm
    from . import report
    from .evaluate import evaluate_network
    from .accelerators import make_accelerator
    from .networks import FIG4_NETWORKS, PAPER_REDUCTIONS, CALIBRATION_NETWORK, calibration_check
    cfg, table, sp = _load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    accs = {a: make_accelerator(a, cfg) for a in ("proposed", "proposed-rtl", "sata")}
    results: dict[str, dict[str, dict]] = {a: {} for a in accs}
    jobs = [(a, n, m) for a in accs for n in FIG4_NETWORKS for m in ("dense", "stt", "ptt", "htt")]
    for a, n, m in tqdm(jobs, desc="report", leave=False):
        results[a].setdefault(n, {})[m] = evaluate_network(FIG4_NETWORKS[n], m, accs[a], cfg, table, sp)
    cal = calibration_check(cfg, table, sp, {a: results[a][CALIBRATION_NETWORK] for a in ("proposed", "sata")})
    data = {"config": cfg.name, "energy_table": table.source,
            "sparsity": {"spike": sp.spike, "grad": sp.grad, "source": sp.source},
            "leakage_mw": accs["proposed"].leakage_mw(table), "unit": "pJ",
            "networks": {n: FIG4_NETWORKS[n].describe() for n in FIG4_NETWORKS},
            "results": {a: {n: report.modes_summary(r) for n, r in rs.items()} for a, rs in results.items()},
            "calibration": cal}
    report.write_json(out / "energy_report.json", data)
    rows = [(n, a, r) for a, rs in results.items() for n, byn in rs.items() for r in byn.values()]
    atomic_write_text(out / "energy_layers.csv", report.layers_csv(rows))
    report.plot_fig4a(results["sata"], out / "fig4a_sata.png")
    report.plot_fig4b(results["proposed"], out / "fig4b_proposed.png",
                      {CALIBRATION_NETWORK: dict(PAPER_REDUCTIONS)})
    report.plot_fig4b(results["proposed-rtl"], out / "fig4b_proposed_rtl.png",
                      {CALIBRATION_NETWORK: dict(PAPER_REDUCTIONS)})
    lines = ["# Training energy report (python -m model report)", "",
             f"Configuration `{cfg.name}`, energy table `{Path(table.source).name}`, sparsity: "
             f"{sp.source}. One BPTT training step (forward, backward, weight update) of one "
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
    lines += ["## Calibration", "",
              f"Proposed, {CALIBRATION_NETWORK}: PTT {100 * cal['proposed_vs_stt']['ptt']:+.1f}% "
              f"(paper {100 * PAPER_REDUCTIONS['ptt']:+.1f}%), HTT {100 * cal['proposed_vs_stt']['htt']:+.1f}% "
              f"(paper {100 * PAPER_REDUCTIONS['htt']:+.1f}%). SATA-like versus STT: dense "
              f"{100 * cal['sata_vs_stt']['dense']:+.1f}%, PTT {100 * cal['sata_vs_stt']['ptt']:+.1f}%, "
              f"HTT {100 * cal['sata_vs_stt']['htt']:+.1f}%.", "",
              "| check | result |", "|---|---|"]
    lines += [f"| {k} | {'pass' if v else 'FAIL'} |" for k, v in cal["checks"].items()]
    streamed = sorted({f"{n}: {l.name}" for a in ("proposed", "proposed-rtl") for n, byn in results[a].items()
                       for r in byn.values() for l in r.layers if l.result.info.get("weights_streamed")})
    lines += ["", "Accelerators: `proposed` is the paper's design (event-driven cluster 1: P rank lanes "
              "stepping only on 1-spikes; no G2 -> G3 path: STT's clusters 2 and 3 never run at the "
              "same time); `proposed-rtl` is the design as generated in gen/ (cluster 1: P PEs over "
              "input channels and an adder tree, r * ceil(Cin/P) steps per pixel; STT's cluster 3 "
              "runs on cluster 2's q2 rows as its own engine), whose forward counters are the RTL's; "
              "`sata` is the SATA-like single array (docs/energy_model.md).", ""]
    if streamed:
        lines += ["Layers whose TT cores exceed the weight buffer of `" + cfg.name + "` (planned on a "
                  "copy of the configuration with weight regions large enough, same datapath; their "
                  "cores are charged as streamed from DRAM for every tile, which the RTL does not "
                  "implement yet): " + ", ".join(streamed) + ".", ""]
    lines += [
              "Figures: `fig4a_sata.png` (dense/STT/PTT/HTT on the SATA-like accelerator, "
              "normalised to dense), `fig4b_proposed.png` and `fig4b_proposed_rtl.png` (STT/PTT/HTT "
              "on the proposed accelerator, normalised to STT; dashed: the paper's reductions). Per-layer figures: "
              "`energy_layers.csv`; everything: `energy_report.json`.", ""]
    atomic_write_text(out / "summary.md", "\n".join(lines))
    Console().print(f"wrote {out}/energy_report.json, energy_layers.csv, fig4a_sata.png, "
                    f"fig4b_proposed.png, fig4b_proposed_rtl.png, summary.md; calibration "
                    f"{'passes' if cal['all_pass'] else 'FAILS: ' + ', '.join(k for k, v in cal['checks'].items() if not v)}")
    return 0


def cmd_calibration(args) -> int:
    from .networks import calibration_check
    cfg, table, sp = _load(args)
    cal = calibration_check(cfg, table, sp)
    if args.json:
        print(json.dumps(cal, indent=2))
    else:
        print(f"{cal['network']}: proposed PTT {100 * cal['proposed_vs_stt']['ptt']:+.1f}% "
              f"(paper {100 * cal['paper_proposed_vs_stt']['ptt']:+.1f}%), HTT "
              f"{100 * cal['proposed_vs_stt']['htt']:+.1f}% (paper {100 * cal['paper_proposed_vs_stt']['htt']:+.1f}%), "
              f"tolerance {cal['tolerance_pp']} pp")
        print("SATA-like vs STT: " + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in cal["sata_vs_stt"].items()))
        for k, v in cal["checks"].items():
            print(f"  {k}: {'pass' if v else 'FAIL'}")
    return 0 if cal["all_pass"] else 1


def cmd_calibrate(args) -> int:
    from .sensitivity import calibration_search
    if args.points < 2:
        raise ValueError("--points must be >= 2")
    cfg, table, sp = _load(args)
    res = calibration_search(cfg, table, sp, args.points)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print("| DRAM pJ/bit | leakage factor | proposed PTT | proposed HTT | SATA dense | SATA PTT | SATA HTT | max dev (pp) |")
    print("|---|---|---|---|---|---|---|---|")
    for p in sorted(res["points"], key=lambda p: p["max_deviation_pp"])[:10]:
        print(f"| {p['dram_pj_per_bit']:.3g} | {p['leakage_factor']} | {100 * p['proposed']['ptt']:+.1f}% | "
              f"{100 * p['proposed']['htt']:+.1f}% | {100 * p['sata']['dense']:+.1f}% | "
              f"{100 * p['sata']['ptt']:+.1f}% | {100 * p['sata']['htt']:+.1f}% | {p['max_deviation_pp']:.1f} |")
    b = res["best"]
    print(f"\nbest: DRAM {b['dram_pj_per_bit']:.3g} pJ/bit, leakage factor {b['leakage_factor']} "
          f"(max deviation {b['max_deviation_pp']:.1f} pp; shipped table: DRAM {table.dram['read']} pJ/bit, "
          f"leakage factor {table.leakage_factor})")
    return 0


def cmd_sensitivity(args) -> int:
    from sw.fileio import atomic_write_text
    from .report import write_json
    from .sensitivity import sensitivity_markdown, sensitivity_table
    cfg, table, sp = _load(args)
    res = sensitivity_table(cfg, table, sp, args.step, args.sparsity_step)
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
    from sw.checkpoint import load_model
    from sw.data import load_dataset
    from .report import write_json
    from .sparsity import measure_sparsity
    if args.batches < 1 or args.batch_size < 1:
        raise ValueError("--batches and --batch-size must be >= 1")
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
    from gen.config import load_config
    from gen.driver import plan_layer
    from sw.arch import validate_schedule
    from .tile import tile_forward_counters
    cfg = load_config(args.config)
    try:
        h, w = (int(v) for v in args.shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shape must be HxW, got {args.shape!r}") from None
    variants = {"proposed-rtl": (False, "pipelined"), "proposed": (True, "sequential")}
    if args.accel not in variants:
        raise ValueError(f"--accel must be one of {', '.join(variants)}, got {args.accel!r}")
    if args.mode not in ("stt", "ptt", "htt"):
        raise ValueError(f"--mode must be stt, ptt or htt, got {args.mode!r}")
    T = args.timesteps
    sched = validate_schedule(args.schedule, T) if args.mode == "htt" else (True,) * T
    # one tile holding the whole H x W layer (halos outside the layer), as the driver plans it
    plan = plan_layer(cfg, (T, args.in_channels, h, w), args.rank, args.out_channels,
                      pool=args.pool, residual=args.residual, tile_hw=(h, w), mode=args.mode,
                      schedule=sched, pack=args.pack, order=args.order)
    if len(plan) != 1:
        raise ValueError(f"a {h}x{w} layer with {args.out_channels} output channels does not fit one "
                         f"tile of {cfg.name!r} ({len(plan)} output-channel groups)")
    event_driven, chain = variants[args.accel]
    c = tile_forward_counters(cfg, plan.tiles[0], args.mode, sched, density=args.density,
                              residual=args.residual, event_driven=event_driven, stt_chain=chain)
    print(json.dumps(c, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"energy": cmd_energy, "report": cmd_report, "calibration": cmd_calibration,
            "calibrate": cmd_calibrate,
            "sensitivity": cmd_sensitivity, "sparsity": cmd_sparsity, "tile": cmd_tile,
            "table": cmd_table, "sweep": cmd_sweep}[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="model"))
