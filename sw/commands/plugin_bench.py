"""``python -m sw plugin-bench``: the paper's Table III on the embedded data: for each training
method (tdBN, TEBN, TET loss, NDA), a small SNN trained dense and with its block convs converted
to PTT by the plug-in; test accuracy, median training-step time and parameters side by side.
See :mod:`sw.plugin.bench` for the network and what is timed, docs/plugin.md for a recorded table.

    python -m sw plugin-bench                      # digits + digits-events, 6 epochs, 1 thread
    python -m sw plugin-bench --methods tet,nda --datasets digits-events --json
"""

from __future__ import annotations

import argparse
import json
import sys

from ttsnn.sw.fileio import add_force_argument, check_outputs
from ttsnn.sw.cli_util import UserError


def _list(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise UserError(f"{flag}: unknown {bad}; choose from {', '.join(allowed)} (comma-separated)")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", default="digits,digits-events", help="comma list: digits, digits-events")
    parser.add_argument("--methods", default="tdbn,tebn,tet,nda", help="comma list: tdbn, tebn, tet, nda "
                                                                       "(nda runs on event data only)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs per run, >= 1 (default 6)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size, >= 1 (default 64)")
    parser.add_argument("--timesteps", "-T", type=int, default=4, help="timesteps T, >= 1 (default 4)")
    parser.add_argument("--rank", type=int, default=8, help="uniform PTT rank of the converted convs (default 8)")
    parser.add_argument("--channels", type=int, default=8, help="width of the first stage (default 8)")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate, > 0 (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier timings "
                                                               "on a shared machine)")
    parser.add_argument("--max-train-samples", type=int, help="train on a prefix (smoke runs)")
    parser.add_argument("--max-test-samples", type=int, help="test on a prefix (smoke runs)")
    parser.add_argument("--plot", help="write a bar chart (PNG) of step time and accuracy here")
    add_force_argument(parser, "an existing --plot file")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    from ttsnn.sw.plugin.bench import BENCH_DATASETS, RECIPES, format_table, plot_rows, rows_as_dicts, run_benchmark

    for name in ("epochs", "batch_size", "timesteps", "rank", "channels", "threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    datasets = _list(args.datasets, BENCH_DATASETS, "--datasets")
    methods = _list(args.methods, tuple(RECIPES), "--methods")
    check_outputs([("--plot", args.plot)], force=args.force)  # before the minutes of training
    torch.set_num_threads(args.threads)
    rows = run_benchmark(datasets, methods, args.epochs, args.batch_size, args.timesteps, args.rank,
                         args.channels, args.seed, args.lr, args.max_train_samples, args.max_test_samples,
                         progress=not args.json and sys.stderr.isatty())
    if args.plot:
        plot_rows(rows, args.plot)
    if args.json:
        print(json.dumps({"settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
                          "rows": rows_as_dicts(rows)}))
        return 0
    print(format_table(rows))
    print(f"(test accuracy after {args.epochs} epochs; step = median wall time of forward+backward+SGD step, "
          f"batch {args.batch_size}, T={args.timesteps}, {args.threads} thread(s); PTT rank {args.rank} on the "
          "three block convs, stem dense; time = PTT vs baseline step time)")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0
