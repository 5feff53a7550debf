"""``python -m sw hw-finetune --checkpoint CKPT --out DIR``: fine-tune a trained TT network with
every TT layer's forward pass, backward pass and weight gradients computed by the accelerator's
integer arithmetic (the golden models), beside the same fine-tuning in float (sw/hwtrain.py).
Writes ``finetune.json`` and the loss curves ``finetune.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from ttsnn.sw.cli_util import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ttsnn.sw.hwtrain import VARIANTS

    parser.add_argument("--checkpoint", required=True, help="a trained TT checkpoint")
    parser.add_argument("--out", required=True, help="output directory (finetune.json, finetune.png)")
    parser.add_argument("--config", default="paper", help="hardware configuration whose formats apply "
                        "(name or TOML path; default paper)")
    parser.add_argument("--variants", default="float,nearest,stochastic",
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default float,nearest,stochastic)")
    parser.add_argument("--bits", type=int, default=None,
                        help="gradient width (default: the configuration's gradients.width)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (momentum 0.9; default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="data order and stochastic-rounding seed")
    parser.add_argument("--max-train-samples", type=int, default=None, help="train on a prefix")
    parser.add_argument("--max-test-samples", type=int, default=None, help="test on a prefix")
    parser.add_argument("--force", action="store_true",
                        help="replace finetune.json / finetune.png already in --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_data(checkpoint: str, max_train_samples: int | None = None,
              max_test_samples: int | None = None):
    """``(train_set, test_set, info)`` of the data set the checkpoint was trained on."""
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.commands.eval import eval_config, load_eval_data

    _, meta = load_model(checkpoint)
    cfg = eval_config(meta)
    train_set, info = load_eval_data(cfg, train_split=True, max_samples=max_train_samples)
    test_set, _ = load_eval_data(cfg, train_split=False, max_samples=max_test_samples)
    return train_set, test_set, info


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ttsnn.gen.config import load_config
    from ttsnn.sw.hwtrain import finetune, summary_lines

    from pathlib import Path

    from ttsnn.sw.fileio import check_output_path

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for finetune.json and finetune.png")
    for name in ("finetune.json", "finetune.png"):      # before any work: nothing is lost
        check_output_path(out / name, inputs=[args.checkpoint], force=args.force)
    hw = load_config(args.config)
    if args.bits is not None:
        hw = dataclasses.replace(hw, gradients=dataclasses.replace(hw.gradients, width=args.bits))
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    data = load_data(args.checkpoint, args.max_train_samples, args.max_test_samples)
    res = finetune(args.checkpoint, args.out, hw, data, variants, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
                   log=(lambda s: None) if args.json else print)
    if args.json:
        print(json.dumps(res))
        return 0
    print("\n".join(summary_lines(res)))
    print(f"wrote {args.out}/finetune.json and {args.out}/finetune.png")
    return 0
