"""``python -m sw bench``: time one training step of dense, STT, PTT and HTT side by side
(``--lif``: our multi-step LIF against spikingjelly's). See :mod:`sw.bench` for what is measured.

    python -m sw bench                         # MS-ResNet34, 2x48x48, T=6, paper ranks, batch 8
    python -m sw bench --preset cifar --threads 2 --reps 20 --json
    python -m sw bench --preset ncaltech101,cifar --threads 2 --reps 5   # both presets in one run
    python -m sw bench --lif                   # LIF layer on [6, 8, 64, 48, 48]
    python -m sw bench --breakdown --threads 2 # step time split: convs, BatchNorm, LIF, optimiser, rest
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from ttsnn.sw.arch import MODES
from ttsnn.sw.bench import PRESETS, bench_lif, bench_modes, format_lif, format_table
from ttsnn.sw.cli_util import UserError


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"--modes: unknown {bad}; choose from {', '.join(MODES)} (comma-separated)")
    return modes


def _presets(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PRESETS]
    if bad or not names:
        raise UserError(f"--preset: unknown {bad or text!r}; choose from {', '.join(sorted(PRESETS))} "
                        "(comma-separated)")
    return names


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise UserError(f"--lif-shape {text!r}: expected comma-separated integers like 6,8,64,48,48") from None
    if len(shape) < 2 or min(shape) < 1:
        raise UserError(f"--lif-shape {text!r}: need [T, B, ...] with positive sizes")
    return shape


def _describe_preset(name: str, ranks: str) -> str:
    wl = PRESETS[name]
    return (f"{name} (MS-ResNet{wl.arch.removeprefix('resnet')} {wl.in_channels}x{wl.size}x{wl.size} "
            f"T={wl.timesteps} {ranks}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ncaltech101",
                        help=f"workload: {_describe_preset('ncaltech101', 'paper ranks, default')}), "
                             f"{_describe_preset('cifar', 'uniform rank')}), tiny (smoke test); several "
                             "comma-separated (e.g. ncaltech101,cifar) are run one after the other")
    parser.add_argument("--modes", default="dense,stt,ptt,htt", help="comma-separated modes to time")
    parser.add_argument("--batch", type=int, help="batch size (default: the preset's)")
    parser.add_argument("--timesteps", "-T", type=int, help="timesteps (default: the preset's)")
    parser.add_argument("--ranks", help="TT ranks (default: the preset's), e.g. uniform:32")
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (default 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--lif", action="store_true", help="benchmark the LIF layer against spikingjelly instead")
    parser.add_argument("--lif-shape", default="6,8,64,48,48", help="LIF input shape [T,B,C,H,W]")
    parser.add_argument("--profile", action="store_true",
                        help="print torch.profiler's per-operator table of one step per mode instead of timing")
    parser.add_argument("--breakdown", action="store_true",
                        help="profile steps per mode and split their time into convolutions, BatchNorm, LIF, "
                             "optimiser and the rest (forward + backward each) instead of timing")
    parser.add_argument("--json", action="store_true", help="print one JSON object (keyed by mode)")
    parser.add_argument("--tt-backward", choices=("keep-rank", "recompute", "plain"), default="recompute",
                        help="TT convs on spikes: 'recompute' (default; keep only the input spikes as bool "
                             "and recompute the rank intermediates in backward, sw/tt_autograd.py), "
                             "'keep-rank' (keep the rank-channel intermediates too) or 'plain' autograd "
                             "(keeps every intermediate in float); to compare them")


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.lif:
        res = bench_lif(_shape(args.lif_shape), reps=args.reps, warmup=args.warmup)
        res["threads"] = threads
        print(json.dumps(res) if args.json else format_lif(res, threads))
        return 0
    from ttsnn.sw.malloc_tuning import keep_freed_memory
    from ttsnn.sw.tt import TTConv2d

    keep_freed_memory()  # as train does (SW_MALLOC_TUNE=0 measures without)
    saving, keep = TTConv2d.memory_saving, TTConv2d.keep_rank_intermediates
    TTConv2d.memory_saving = args.tt_backward != "plain"
    TTConv2d.keep_rank_intermediates = args.tt_backward == "keep-rank"
    try:
        return _bench_steps(args, threads)
    finally:
        TTConv2d.memory_saving, TTConv2d.keep_rank_intermediates = saving, keep


def _bench_steps(args: argparse.Namespace, threads: int) -> int:
    presets = _presets(args.preset)
    outputs = [_bench_preset(args, name, threads) for name in presets]
    if args.json:
        print(json.dumps(outputs[0] if len(outputs) == 1 else dict(zip(presets, outputs))))
    return 0


def _bench_preset(args: argparse.Namespace, preset: str, threads: int) -> dict | None:
    """Run the chosen measurement on one preset; print its table (or return its JSON object)."""
    wl = PRESETS[preset]
    changes = {k: v for k, v in (("batch", args.batch), ("timesteps", args.timesteps), ("ranks", args.ranks))
               if v is not None}
    if any(isinstance(v, int) and v < 1 for v in changes.values()):
        raise UserError(f"--batch/--timesteps must be >= 1, got {changes}")
    wl = dataclasses.replace(wl, **changes)
    if args.profile:
        from ttsnn.sw.bench import profile_step

        for mode in _modes(args.modes):
            print(f"## {preset} {mode}\n" + profile_step(wl, mode))
        return None
    from ttsnn.sw.malloc_tuning import keep_freed_memory

    head = {"preset": preset, "workload": dataclasses.asdict(wl), "threads": threads,
            "tt_backward": args.tt_backward, "freed_memory_kept": keep_freed_memory()}
    settings = (f"TT backward: {args.tt_backward}; freed memory kept for reuse (sw/malloc_tuning.py): "
                f"{'yes' if head['freed_memory_kept'] else 'no'}")
    if args.breakdown:
        from ttsnn.sw.bench import format_breakdown, profile_breakdown

        rows = [profile_breakdown(wl, mode) for mode in _modes(args.modes)]
        if not args.json:
            print(format_breakdown(rows, wl, threads) + "\n" + settings + "\n", flush=True)
        return {**head, "breakdown": rows}
    res = bench_modes(wl, _modes(args.modes), reps=args.reps, warmup=args.warmup, memory=not args.no_memory,
                      progress=not args.json)
    if not args.json:
        print(format_table(res, wl, threads) + "\n" + settings + "\n", flush=True)
    return {**head, **res}
