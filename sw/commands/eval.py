"""``python -m sw eval --checkpoint X``: loss and accuracy of a checkpoint on its test set."""

from __future__ import annotations

import argparse
import json
import sys

from ttsnn.sw.checkpoint import load_model
from ttsnn.sw.cli_util import out_of_memory_is_a_clear_error
from ttsnn.sw.train import config_from_dict, evaluate, _subset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train/decompose/export")
    parser.add_argument("--dataset", help="data set (default: the one the checkpoint was trained on)")
    parser.add_argument("--data-path", help="local data directory (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch, >= 1 (default 256)")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate on a prefix only")
    parser.add_argument("--train-split", action="store_true", help="evaluate on the training split")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def eval_config(meta: dict, dataset: str | None = None, data_path: str | None = None):
    """The training config stored with a checkpoint (defaults if it has none), with overrides."""
    cfg = dict(meta.get("config") or {})
    hp = meta["model"]["hparams"]
    cfg.setdefault("timesteps", hp.get("timesteps", 4))
    cfg["init_from"] = None
    if dataset:
        cfg["dataset"] = dataset
    if data_path:
        cfg["data_path"] = data_path
    return config_from_dict(cfg, source="checkpoint config")


def load_eval_data(cfg, train_split: bool = False, max_samples: int | None = None):
    from ttsnn.sw.data import load_dataset

    tr, te, info = load_dataset(cfg.dataset, cfg.data_path, timesteps=cfg.timesteps, size=cfg.size,
                                split_by=cfg.split_by, cache_dir=cfg.cache_dir, augment=False)
    ds = tr if train_split else te
    return _subset(ds, max_samples if max_samples is not None else
                   (cfg.max_train_samples if train_split else cfg.max_test_samples)), info


def run(args: argparse.Namespace) -> int:
    with out_of_memory_is_a_clear_error(f"evaluating {args.checkpoint}",
                                        f"lower --batch-size (now {args.batch_size}); nothing was written"):
        model, meta = load_model(args.checkpoint)
        cfg = eval_config(meta, args.dataset, args.data_path)
        ds, info = load_eval_data(cfg, args.train_split, args.max_samples)
        result = evaluate(model, ds, info, args.batch_size, progress=not args.json and sys.stderr.isatty())
    result.update(checkpoint=str(args.checkpoint), dataset=info.name, split="train" if args.train_split else "test",
                  mode=meta["model"]["hparams"].get("mode")
                  + (" (merged to dense)" if "merged_from" in meta["model"]["hparams"] else ""), epoch=meta.get("epoch"))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.checkpoint}: {result['mode']} model, {info.name} {result['split']} split "
              f"({result['samples']} samples): loss {result['loss']:.4f}, accuracy {result['acc']:.4f}")
    return 0
