"""``python -m sw bench-reversible``: training memory and step time of standard, checkpointed and
reversible blocks over depth and T, and of whole MS-ResNet18/34 (see :mod:`sw.bench_reversible`).

    python -m sw bench-reversible                                  # stack sweep + both networks + plot
    python -m sw bench-reversible --depths 1,2 --timesteps 2 --networks none --no-memory   # quick
    python -m sw bench-reversible --json > build/reversible_bench.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ttsnn.sw.bench_reversible import (NETWORKS, VARIANTS, bench_network, bench_stack, float_flip_check,
                                 format_rows, plot_rows)
from ttsnn.sw.fileio import add_force_argument, check_outputs
from ttsnn.sw.cli_util import UserError


def _ints(flag: str):
    def parse(text: str) -> list[int]:
        try:
            vals = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected comma-separated integers, got {text!r}") from None
        if not vals or min(vals) < 1:
            raise argparse.ArgumentTypeError(f"{flag}: expected positive integers, got {text!r}")
        return vals
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depths", type=_ints("--depths"), default=[1, 2, 4, 8, 16],
                        help="blocks in the stack (default 1,2,4,8,16)")
    parser.add_argument("--timesteps", "-T", type=_ints("--timesteps"), default=[2, 4, 6],
                        help="timesteps of the stack sweep (default 2,4,6)")
    parser.add_argument("--channels", type=int, default=64, help="stack width C (default 64, even)")
    parser.add_argument("--size", type=int, default=16, help="stack feature map side (default 16)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--networks", default="resnet18,resnet34",
                        help=f"whole networks to measure: comma list of {', '.join(NETWORKS)}, or 'none'")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--reps", type=int, default=3, help="timed steps per row (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per row (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--plot", default="build/reversible_bench.png", help="plot file ('' for none)")
    add_force_argument(parser, "an existing --plot file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")


def run(args: argparse.Namespace) -> int:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UserError(f"--variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
    nets = [] if args.networks.strip() == "none" else [n.strip() for n in args.networks.split(",") if n.strip()]
    bad = [n for n in nets if n not in NETWORKS]
    if bad:
        raise UserError(f"--networks: unknown {bad}; choose from {', '.join(NETWORKS)} or 'none'")
    if args.channels < 2 or args.channels % 2 or args.size < 1 or args.batch < 1:
        raise UserError("--channels must be even and >= 2; --size and --batch positive")
    if args.reps < 1 or args.warmup < 0:
        raise UserError(f"--reps must be >= 1 and --warmup >= 0, got {args.reps}, {args.warmup}")
    check_outputs([("--plot", args.plot)], force=args.force)  # before the minutes of timing
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    total = len(args.depths) * len(args.timesteps) + len(nets)
    bar = tqdm(total=total, desc="bench-reversible", disable=args.json or not sys.stderr.isatty(),
               file=sys.stderr)

    def progress(text: str) -> None:
        bar.set_postfix_str(text)
        bar.update()

    common = dict(variants=variants, batch=args.batch, reps=args.reps, warmup=args.warmup,
                  memory=not args.no_memory, progress=progress)
    rows = bench_stack(args.depths, args.timesteps, channels=args.channels, hw=args.size, **common)
    for name in nets:
        rows += bench_network(name, **common)
    flips = float_flip_check(depth=max(args.depths), channels=args.channels, hw=args.size,
                             steps=max(args.timesteps), batch=args.batch)
    bar.close()
    if args.plot:
        plot_rows(rows, args.plot)
    threads = torch.get_num_threads()
    if args.json:
        print(json.dumps({"threads": threads, "rows": rows, "float_flip_check": flips}))
        return 0
    print(f"Reversible blocks, one training step (forward + backward + SGD) on CPU, {threads} thread(s), "
          f"batch {args.batch}; stack = shape-keeping blocks on [T, {args.batch}, {args.channels}, "
          f"{args.size}, {args.size}]\n")
    print(format_rows(rows))
    for label, r in flips.items():
        if label != "setup":
            print(f"\nreconstruction, {label} coupling ({flips['setup']['depth']} blocks, "
                  f"{flips['setup']['shape']}): {r['flips']} of {r['spikes_checked']:,} recomputed spikes "
                  f"flipped, max |x_rec - x| = {r['max_abs_error']:.3g}", end="")
    print()
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
