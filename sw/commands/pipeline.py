"""``python -m sw pipeline --config CONFIG``: dense training, EVBMF ranks, TT-SVD
initialisation and TT training in one resumable run (:mod:`sw.pipeline`).

Examples::

    python -m sw pipeline --config configs/pipeline/digits_ptt.toml
    python -m sw pipeline --config configs/pipeline/digits_ptt.toml   # again: finishes / skips done stages
    python -m sw pipeline --config configs/pipeline/digits_ptt.toml --epochs 1 --finetune-epochs 1 --out build/p
"""

from __future__ import annotations

import argparse
import json

from sw.commands.train import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--tt-mode", help="override [pipeline] tt_mode (stt, ptt, htt)")
    parser.add_argument("--rank-rule", help="override [pipeline] ranks (evbmf, uniform:R, ...)")
    parser.add_argument("--finetune-epochs", type=int, help="override [pipeline] finetune_epochs")
    parser.add_argument("--finetune-lr", type=float, help="override [pipeline] finetune_lr")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from sw.pipeline import format_report, pipeline_config_from_dict, run_pipeline
    from sw.train import load_config

    data = load_config(args.config) if args.config else {}
    table = data.pop("pipeline", None) or {}
    if not isinstance(table, dict):
        raise ValueError(f"{args.config}: [pipeline] must be a table")
    for key, value in (("tt_mode", args.tt_mode), ("ranks", args.rank_rule),
                       ("finetune_epochs", args.finetune_epochs), ("finetune_lr", args.finetune_lr)):
        if value is not None:
            table[key] = value
    # the training part goes through train's own flag handling (--epochs, --set, ...)
    train_cfg = config_from_args(args, data)
    cfg = pipeline_config_from_dict({**train_cfg.to_dict(), "pipeline": table}, source="pipeline config")
    report = run_pipeline(cfg, progress=not args.no_progress and not args.json,
                          log=(lambda _msg: None) if args.json else print)
    print(json.dumps(report) if args.json else format_report(report))
    return 0
