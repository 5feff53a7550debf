"""``python -m cosim <command>``: co-simulation of the generated Verilog against the golden model.

Commands:

* ``check``  -- find and check the toolchain (Verilator >= 5.036, cocotb >= 2.0).
* ``run``    -- the coverage batch of random layers on a configuration; mismatch report.
* ``replay`` -- one TT layer of a trained checkpoint on the RTL (docs/cosim.md).
* ``replay-network`` -- every TT layer of a trained network on the RTL, chained, image by
  image; bit-exact per layer, predictions against the golden and float models, cycles, energy.
* ``train-step`` -- forward, backward and weight gradients of one TT layer of a trained
  checkpoint on the RTL, bit-exact against the golden models, gradients against float autograd.
* ``finetune-check`` -- the integer fine-tuning loop, a sample of its steps' backward also on
  the RTL, bit-exact.
* ``speed``  -- simulation speed (simulated cycles per wall-clock second, streamed host traffic
  included) on a paper-sized layer.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
from typing import Sequence

from ttsnn.sw.arch import WORKLOADS
from ttsnn.sw.cli_util import MissingFileError, UserError, prog_name, run_cli


def _add_common(p: argparse.ArgumentParser, default_config: str) -> None:
    p.add_argument("--config", default=default_config,
                   help=f"hardware configuration: shipped name or TOML path (default {default_config})")
    p.add_argument("--rtl", default=None, help="directory with the generated Verilog + manifest "
                   "(default: rtl/<config>/ when it matches the configuration, else generated)")
    p.add_argument("--waves", choices=("fail", "always", "never"), default=None,
                   help="waveforms: re-run failing cases traced (fail, default), always, never")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog_name("python -m cosim"), description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("check", help="check the simulator toolchain")

    r = sub.add_parser("run", help="co-simulate the coverage batch of random layers")
    _add_common(r, "small")
    r.add_argument("--seed", type=int, default=0, help="seed of the random layers")

    rp = sub.add_parser("replay", help="replay a trained TT layer on the RTL")
    rp.add_argument("--checkpoint", required=True, help="TT checkpoint (e.g. build/demo/ptt.pt)")
    rp.add_argument("--layer", required=True, help="TT layer name, e.g. layers.0.0.conv1")
    _add_common(rp, "configs/paper.toml")
    rp.add_argument("--sample", type=int, default=0, help="index of the test image to replay")
    rp.add_argument("--calib-samples", type=int, default=16,
                    help="training images used to calibrate the quantiser")
    rp.add_argument("--weight-bits", type=int, default=None, help="weight precision (default: config)")
    rp.add_argument("--rounding", choices=("nearest", "truncate", "stochastic"), default="nearest",
                    help="re-quantisation rounding: nearest (default) | truncate | stochastic")

    rn = sub.add_parser("replay-network", help="replay a whole trained network on the RTL, image by image")
    src = rn.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="TT checkpoint (e.g. build/demo/ptt.pt)")
    src.add_argument("--random", metavar="WORKLOAD", choices=sorted(WORKLOADS),
                     help="no checkpoint: a network of this workload with random weights on random "
                          f"images ({', '.join(sorted(WORKLOADS))})")
    rn.add_argument("--mode", choices=("stt", "ptt", "htt"), default="ptt",
                    help="TT mode of the --random network (default ptt)")
    rn.add_argument("--seed", type=int, default=0, help="seed of the --random network (default 0)")
    _add_common(rn, "configs/paper.toml")
    rn.add_argument("--images", type=int, default=1, help="test images to replay (default 1)")
    rn.add_argument("--start", type=int, default=0, help="index of the first test image (default 0)")
    rn.add_argument("--calib-samples", type=int, default=16,
                    help="training images used to calibrate the quantiser")
    rn.add_argument("--weight-bits", type=int, default=None, help="weight precision (default: config)")
    rn.add_argument("--rounding", choices=("nearest", "truncate", "stochastic"), default="nearest",
                    help="re-quantisation rounding: nearest (default) | truncate | stochastic")
    rn.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="where the image jobs run: local process pool (default) or Ray")
    rn.add_argument("--workers", type=int, default=None,
                    help="parallel image jobs (default: every core / the Ray cluster's CPUs)")
    rn.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: a local one)")
    rn.add_argument("--process-per-layer", action="store_true",
                    help="one simulator process per layer (default: one for all layers of a chunk of images)")

    ts = sub.add_parser("train-step", help="one training step of a trained TT layer on the RTL")
    ts.add_argument("--checkpoint", required=True, help="TT checkpoint (e.g. build/demo/ptt.pt)")
    ts.add_argument("--layer", required=True, help="TT layer name, e.g. layers.0.0.conv1")
    _add_common(ts, "configs/paper.toml")
    ts.add_argument("--sample", type=int, default=0, help="index of the labelled test image (default 0)")

    fc = sub.add_parser("finetune-check", help="fine-tuning with the integer arithmetic, a sample of "
                        "its steps' backward checked on the RTL")
    fc.add_argument("--checkpoint", required=True, help="TT checkpoint (e.g. build/demo/ptt.pt)")
    fc.add_argument("--layer", required=True, help="TT layer whose backward is checked on the RTL")
    _add_common(fc, "configs/paper.toml")
    fc.add_argument("--steps", type=int, default=4, help="fine-tuning steps (default 4)")
    fc.add_argument("--rtl-steps", type=int, default=2, help="of them, checked on the RTL (default 2)")
    fc.add_argument("--batch-size", type=int, default=8, help="samples per step (default 8)")
    fc.add_argument("--lr", type=float, default=0.002, help="SGD learning rate (default 0.002)")

    paper = WORKLOADS["resnet18-cifar10"]  # the workload of cosim.cases.paper_layer_case
    sp = sub.add_parser("speed", help="simulation speed on the paper-sized layer")
    _add_common(sp, "paper")
    sp.add_argument("--rank", type=int, default=paper.uniform_rank,
                    help=f"TT rank of the layer (default {paper.uniform_rank})")
    sp.add_argument("--timesteps", type=int, default=paper.timesteps,
                    help=f"timesteps T (default {paper.timesteps})")
    sp.add_argument("--mode", choices=("stt", "ptt", "htt"), default="ptt", help="stt | ptt (default) | htt")
    sp.add_argument("--cxx-opt", choices=("Os", "O2", "O3"), default=None,
                    help="C++ optimisation of the simulator build (default O3; another level "
                         "builds into build/cosim/<config>-<level>/, to compare)")
    sp.add_argument("--player", choices=("default", "on", "off", "both"), default="default",
                    help="host words played inside the simulator (cosim/player.py) or driven "
                         "from Python; 'both' alternates the two (same tile, same moment) to "
                         "compare them (default: $COSIM_PLAYER, on unless 0)")
    sp.add_argument("--design", choices=("default", "forward", "full", "both"), default="default",
                    help="simulate the design without its backward datapath (forward, "
                         "cosim/forward_only.py) or the full one; 'both' alternates the two "
                         "(default: $COSIM_FORWARD_ONLY, forward unless 0)")
    sp.add_argument("--repeat", type=int, default=1,
                    help="runs of each variant, alternating (default 1); the load average is "
                         "printed with every run")
    return parser


def _check(args) -> int:
    from ttsnn.cosim.toolchain import setup_toolchain, wave_format
    tc = setup_toolchain()
    print(f"ok: {tc.describe()}; VERILATOR_ROOT={tc.verilator_root}; waveforms: {wave_format()}")
    return 0


def _run(args) -> int:
    from ttsnn.cosim.cases import coverage_cases
    from ttsnn.cosim.layer import RtlTarget, run_cases

    target = RtlTarget.for_config(args.config, args.rtl)
    results = run_cases(target, coverage_cases(target.config, args.seed), waves=args.waves)
    ok = all(r.match for r in results)
    if args.json:
        print(json.dumps({"match": ok, "config": target.config.name,
                          "cases": [dict(r.report.to_dict(), cycles=r.cycles, tiles=r.tiles,
                                         waves=str(r.waves) if r.waves else None)
                                    for r in results]}))
    else:
        for r in results:
            print(r.report.format() + (f"\n  waveform: {r.waves}" if r.waves else ""))
        print(f"{sum(r.match for r in results)} of {len(results)} cases bit-exact")
    return 0 if ok else 1


def _replay(args) -> int:
    from ttsnn.cosim.replay import format_report, replay_layer
    from ttsnn.gen.config import load_config
    from ttsnn.sw.progress import say

    load_config(args.config)  # a mistake in either is one line before the long work starts
    if not Path(args.checkpoint).is_file():  # sw.checkpoint's words
        raise MissingFileError(f"checkpoint not found: {args.checkpoint}")
    say(f"replaying {args.layer} of {args.checkpoint} on the RTL of {args.config}: quantising, then "
        "building the Verilator model (25-50 s the first time; cached under build/cosim/) and simulating")
    rep = replay_layer(args.checkpoint, args.layer, args.config, sample=args.sample,
                       calib_samples=args.calib_samples, weight_bits=args.weight_bits,
                       rounding=args.rounding, rtl_dir=args.rtl, waves=args.waves,
                       progress=not args.json)
    print(json.dumps(rep) if args.json else format_report(rep))
    return 0 if rep["match"] else 1


def _replay_network(args) -> int:
    from ttsnn.cosim.replay_network import format_network_report, random_network, replay_network

    data = None
    if args.random:
        data = random_network(args.random, args.mode, images=args.images,
                              calib_samples=args.calib_samples, seed=args.seed)
    rep = replay_network(args.checkpoint, args.config, model_and_data=data, images=args.images, start=args.start,
                         calib_samples=args.calib_samples, weight_bits=args.weight_bits,
                         rounding=args.rounding, rtl_dir=args.rtl, waves=args.waves,
                         backend=args.backend, workers=args.workers, address=args.ray_address,
                         progress=not args.json, one_process=not args.process_per_layer)
    print(json.dumps(rep) if args.json else format_network_report(rep))
    return 0 if rep["layers_bit_exact"] and rep["golden_agreement"] == 1.0 else 1


def _train_step(args) -> int:
    from ttsnn.cosim.train_step import format_train_step, train_step

    rep = train_step(args.checkpoint, args.layer, args.config, sample=args.sample, rtl_dir=args.rtl,
                     progress=not args.json)
    print(json.dumps(rep) if args.json else format_train_step(rep))
    return 0 if rep["match"] else 1


def _finetune_check(args) -> int:
    from ttsnn.cosim.finetune_check import finetune_check

    rep = finetune_check(args.checkpoint, args.layer, args.config, steps=args.steps,
                         rtl_steps=args.rtl_steps, batch_size=args.batch_size, lr=args.lr,
                         rtl_dir=args.rtl, progress=not args.json)
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"fine-tuning {rep['checkpoint']} ({rep['steps']} steps, batch {rep['batch_size']}, "
              f"lr {rep['lr']}): loss " + " ".join(f"{v:.4f}" for v in rep["step_loss"]))
        for step, c in zip(rep["checked_steps"], rep["checks"]):
            print(f"  step {step + 1}: {rep['layer']} backward on the {rep['config']} RTL "
                  f"{'bit-exact' if c['match'] else 'MISMATCH ' + str(c['mismatches'])}, "
                  f"{c['cycles']} cycles ({c['tiles']} tiles)")
        print(f"  match: {rep['match']}")
    return 0 if rep["match"] else 1


def _speed_once(args, target_args, player: str | None, design: str | None = None) -> dict:
    """One run of the paper-sized layer; ``player`` 'on'/'off' sets ``COSIM_PLAYER`` for it
    (None: the environment's); ``design`` 'forward'/'full' picks the simulated design (None:
    :func:`cosim.runner.forward_only_default`)."""
    import time

    from ttsnn.cosim.cases import paper_layer_case
    from ttsnn.cosim.layer import RtlTarget, run_cases
    from ttsnn.cosim.runner import DEFAULT_CXX_OPT, default_build_dir, forward_only_default

    fwd = forward_only_default() if design is None else design == "forward"
    saved = os.environ.get("COSIM_PLAYER")
    if player is not None:
        os.environ["COSIM_PLAYER"] = "1" if player == "on" else "0"
    try:
        target = RtlTarget.for_config(*target_args)
        case = paper_layer_case(target.config, rank=args.rank, timesteps=args.timesteps, mode=args.mode)
        opt = f"-{args.cxx_opt}" if args.cxx_opt else DEFAULT_CXX_OPT
        bdir = default_build_dir(target.config.name, False, fwd)
        if opt != DEFAULT_CXX_OPT:
            bdir = bdir.with_name(bdir.name + opt)
        t0 = time.monotonic()
        res = run_cases(target, [case], waves=args.waves or "never", build_dir=bdir, cxx_opt=opt,
                        forward_only=fwd)[0]
        total = time.monotonic() - t0
        played = target.player is not None
    finally:
        if saved is None:
            os.environ.pop("COSIM_PLAYER", None)
        else:
            os.environ["COSIM_PLAYER"] = saved
    return {"config": target.config.name, "layer": case.name, "match": res.match, "cxx_opt": opt,
            "player": played, "design": "forward" if fwd else "full", "host_data_bits": target.config.widths.host_data,
            "tiles": res.tiles, "accelerator_cycles": res.cycles,
            "simulated_cycles": res.span_cycles, "tiles_wall_s": res.wall_s,
            "event_wait_cycles": res.wait_cycles, "event_wait_wall_s": res.wait_wall_s,
            "total_wall_s": total, "load_average_1min": os.getloadavg()[0],
            "tiles_cpu_s": res.cpu_s, "cycles_per_second": res.cycles_per_second,
            "cycles_per_cpu_second": res.cycles_per_cpu_second,
            "cycles_per_second_event_waits": res.wait_cycles_per_second}


def _speed(args) -> int:
    if args.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {args.repeat}")
    players = {"default": [None], "on": ["on"], "off": ["off"], "both": ["off", "on"]}[args.player]
    designs = {"default": [None], "forward": ["forward"], "full": ["full"],
               "both": ["full", "forward"]}[args.design]
    variants = [(p, d) for d in designs for p in players]
    runs = []
    for _ in range(args.repeat):
        for p, d in variants:
            out = _speed_once(args, (args.config, args.rtl), p, d)
            runs.append(out)
            if not args.json:
                waits = out["cycles_per_second_event_waits"]
                print(f"{out['layer']} on {out['config']}: {out['tiles']} tiles, "
                      f"{out['accelerator_cycles']} accelerator cycles ({out['simulated_cycles']} "
                      f"simulated cycles with set-up and read-out) in {out['tiles_wall_s']:.2f} s -> "
                      f"{out['cycles_per_second']:.0f} cycles/s with the streamed host traffic "
                      f"({'played in the simulator' if out['player'] else 'word by word from Python'}, "
                      f"{out['host_data_bits']}-bit port)"
                      + (f" ({waits:.0f} cycles/s while waiting for event, {out['event_wait_cycles']} "
                         f"cycles)" if waits else "")
                      + f"; {out['cycles_per_cpu_second'] or 0:.0f} cycles per CPU-second of the "
                      f"simulator; {out['total_wall_s']:.1f} s in all incl. build check and golden model; "
                      f"C++ {out['cxx_opt']}; {out['design']} design; load average {out['load_average_1min']:.1f}; "
                      f"{'bit-exact' if out['match'] else 'MISMATCH'}", flush=True)
    if args.json:
        print(json.dumps(runs[0] if len(runs) == 1 else {"runs": runs}))
    elif len(variants) > 1:
        for k in range(len(variants)):
            mine = runs[k::len(variants)]
            rates = sorted(r["cycles_per_second"] for r in mine)
            cpu = sorted(r["cycles_per_cpu_second"] or 0 for r in mine)
            label = f"player {'on' if mine[0]['player'] else 'off'}, {mine[0]['design']} design"
            print(f"{label}: median {rates[len(rates) // 2]:.0f} cycles/s, "
                  f"{cpu[len(cpu) // 2]:.0f} cycles per CPU-second over {len(rates)} runs")
    return 0 if all(r["match"] for r in runs) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"check": _check, "run": _run, "replay": _replay,
            "replay-network": _replay_network, "train-step": _train_step,
            "finetune-check": _finetune_check, "speed": _speed}[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="cosim"))
