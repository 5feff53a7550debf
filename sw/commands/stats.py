"""``python -m sw stats``: per-layer parameter and FLOP table of an MS-ResNet next to its dense
model (counting convention: sw/stats.py, docs/counting.md)."""

from __future__ import annotations

import argparse
import json

from ttsnn.sw.arch import ARCHS, DOWNSAMPLE_CHOICES, MODES, WORKLOADS
from ttsnn.sw.arch import describe_rank_syntax
from ttsnn.sw.cli_util import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    wl = WORKLOADS["resnet18-cifar10"]  # the defaults
    parser.add_argument("--arch", default=wl.arch, help=f"one of {', '.join(ARCHS)}")
    parser.add_argument("--input", default=f"{wl.in_channels}x{wl.input_size}x{wl.input_size}",
                        help="input shape CxHxW, e.g. 3x32x32 (CIFAR) or 2x48x48 (event frames)")
    parser.add_argument("--classes", type=int, default=wl.num_classes, help="number of classes")
    parser.add_argument("--timesteps", "-T", type=int, default=wl.timesteps, help="timesteps T")
    parser.add_argument("--mode", default="dense", help=f"one of {', '.join(MODES)}")
    parser.add_argument("--ranks", default=None, help=f"TT ranks: {describe_rank_syntax()}")
    parser.add_argument("--schedule", default=None,
                        help="HTT full timesteps as 0/1 string, e.g. 110000 (default first half)")
    parser.add_argument("--downsample", default="maxpool",
                        help=f"stride-2 TT convs: {' or '.join(DOWNSAMPLE_CHOICES)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def _fmt_m(n: int) -> str:
    return f"{n / 1e6:,.3f}"


def run(args: argparse.Namespace) -> int:
    from ttsnn.sw.stats import network_stats, parse_input_shape

    channels, height, width = parse_input_shape(args.input)
    if args.mode not in MODES:
        raise UserError(f"unknown --mode {args.mode!r}; choose one of {', '.join(MODES)}")
    if args.mode == "dense" and args.ranks is not None:
        raise UserError("--ranks given with --mode dense; pick a TT mode (stt, ptt, htt)")
    if args.mode != "htt" and args.schedule is not None:
        raise UserError("--schedule is only used with --mode htt")
    stats = network_stats(args.arch, channels, (height, width), args.classes, args.timesteps,
                          args.mode, args.ranks, args.schedule, args.downsample)
    if args.json:
        print(json.dumps(stats))
        return 0

    from rich import box
    from rich.console import Console
    from rich.table import Table

    title = (f"MS-{args.arch} {channels}x{height}x{width}, {args.classes} classes, "
             f"T={args.timesteps}, mode {args.mode}"
             + (f", downsample {args.downsample}" if args.mode != "dense" else ""))
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("layer", "mode", "rank", "Cin->Cout", "stride", "out HxW",
                "params", "dense params", "MFLOPs", "dense MFLOPs"):
        table.add_column(col, justify="left" if col in ("layer", "mode") else "right",
                         no_wrap=True)
    for row in stats["layers"]:
        table.add_row(row["name"], row["mode"],
                      "" if row["rank"] is None else str(row["rank"]),
                      f"{row['in_channels']}->{row['out_channels']}", str(row["stride"]),
                      "x".join(map(str, row["out_hw"])), f"{row['params']:,}",
                      f"{row['dense_params']:,}", _fmt_m(row["flops"]),
                      _fmt_m(row["dense_flops"]))
    table.add_section()
    table.add_row("total", args.mode, "", "", "", "", f"{stats['params']:,}",
                  f"{stats['dense_params']:,}", _fmt_m(stats["flops"]),
                  _fmt_m(stats["dense_flops"]))
    console = Console()
    if not console.is_terminal:  # piped/logged: do not squeeze the table into 80 columns
        console = Console(width=132)
    console.print(table)
    console.print(
        f"{args.mode}: {stats['params'] / 1e6:.3f} M params, {stats['flops'] / 1e9:.4f} GFLOPs | "
        f"dense: {stats['dense_params'] / 1e6:.3f} M params, {stats['dense_flops'] / 1e9:.4f} "
        f"GFLOPs | ratio {stats['param_ratio']:.3f} params, {stats['flop_ratio']:.3f} FLOPs "
        f"(FLOPs = MACs of convs + FC over T; BN excluded)")
    return 0
