"""``python -m sw train``: train a dense or TT MS-ResNet from a config file plus flag overrides.

Examples::

    python -m sw train --config configs/train/digits_ptt.toml
    python -m sw train --config configs/train/cifar10_ptt.toml --data-path ~/data --epochs 1
    python -m sw train --config configs/train/digits_ptt.toml --resume          # continue <out>/last.pt
    python -m sw train --config configs/train/digits_ptt.toml --resume --epochs 20   # extend a finished run
    python -m sw train --config configs/train/digits_ptt.toml --force           # replace the run in <out>
    python -m sw train --config configs/train/digits_ptt.toml --norm tdbn --loss tet   # Table III methods
    python -m sw train --config configs/train/digits_ptt.toml --dataset digits-events --nda --norm tebn
    python -m sw train --config configs/train/digits_ptt.toml --init-from tt.pt --out build/ft  # fine-tune
    torchrun --nproc_per_node 2 -m sw train --config configs/train/digits_ptt.toml   # data parallel, CPU
    torchrun --nproc_per_node 8 -m sw train --config configs/train/cifar10_ptt.toml --device cuda
"""

from __future__ import annotations

import argparse
import json
import os

from ttsnn.sw.plugin.methods import LOSSES, NORMS
from ttsnn.sw.train import TrainConfig, config_from_dict, load_config, train
from ttsnn.sw.cli_util import UserError

# flag -> config key (flags left at None do not override the file)
_OVERRIDES = {
    "arch": str, "mode": str, "ranks": str, "timesteps": int, "schedule": str, "downsample": str,
    "dataset": str, "data_path": str, "size": int, "split_by": str, "cache_dir": str,
    "epochs": int, "batch_size": int, "eval_batch_size": int, "lr": float, "momentum": float,
    "weight_decay": float, "scheduler": str, "seed": int, "out": str, "threads": int, "workers": int,
    "init_from": str, "max_train_samples": int, "max_test_samples": int, "device": str,
    "norm": str, "loss": str, "tet_lambda": float,
}


def _override_help() -> dict[str, str]:
    """One help line per override, with its allowed values (read from the tables that validate
    them, so the help cannot drift from the checks)."""
    from ttsnn.sw.arch import ARCHS, DOWNSAMPLE_CHOICES, MODES, describe_rank_syntax
    from ttsnn.sw.data import DATASETS
    from ttsnn.sw.data.events import SPLIT_MODES
    from ttsnn.sw.train import SCHEDULERS
    return {
        "arch": f"network: {' | '.join(ARCHS)}",
        "mode": f"convolutions: {' | '.join(MODES)} (dense, or a TT decomposition)",
        "ranks": f"TT ranks: {describe_rank_syntax()}",
        "schedule": "HTT: which timesteps use the full kernel, a 0/1 string of length T, e.g. 1100",
        "downsample": f"how the stages downsample: {' | '.join(DOWNSAMPLE_CHOICES)} (maxpool: the "
                      "reference; stride: strided G2/G3)",
        "dataset": f"data set: {' | '.join(DATASETS)}",
        "data_path": "folder of a data set read from local files (N-Caltech101, DVS128 Gesture, CIFAR10)",
        "size": "input height/width in pixels (default: the data set's)",
        "split_by": f"event data: how events are split into T frames: {' | '.join(SPLIT_MODES)}",
        "cache_dir": "folder for the event frames computed once (default: none)",
        "epochs": "training epochs (>= 1)", "batch_size": "training batch size (>= 1)",
        "eval_batch_size": "evaluation batch size (>= 1)", "lr": "SGD learning rate (> 0)",
        "momentum": "SGD momentum, in [0, 1)", "weight_decay": "SGD weight decay (>= 0)",
        "scheduler": f"learning-rate schedule: {' | '.join(SCHEDULERS)}",
        "seed": "random seed (an int)", "out": "run folder (checkpoints, metrics)",
        "threads": "torch CPU threads (>= 1)", "workers": "data-loader worker processes (>= 0)",
        "init_from": "checkpoint to start from (e.g. a TT-SVD initialised model of `decompose`)",
        "max_train_samples": "train on a prefix of this many samples (smoke runs)",
        "max_test_samples": "test on a prefix of this many samples (smoke runs)",
    }


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    override_help = _override_help()
    parser.add_argument("--config", help="training config (.toml/.yaml); see configs/train/")
    for key, typ in _OVERRIDES.items():
        flag = "--" + key.replace("_", "-")
        extra = {"dest": key, "type": typ, "default": None}
        if key == "timesteps":
            parser.add_argument(flag, "-T", **extra, help="timesteps T")
        elif key == "device":
            parser.add_argument(flag, **extra, choices=("cpu", "cuda"),
                                help="cpu (default) or cuda; under torchrun each process takes the GPU of "
                                     "its LOCAL_RANK (docs/training.md, 'Several processes')")
        elif key == "norm":
            parser.add_argument(flag, **extra, choices=NORMS,
                                help="BatchNorm of the model: bn (default; statistics shared over time), "
                                     "tdbn (threshold-dependent) or tebn (temporal effective); docs/training.md")
        elif key == "loss":
            parser.add_argument(flag, **extra, choices=LOSSES,
                                help="ce (default; cross-entropy of the time-averaged logits) or tet "
                                     "(TET: cross-entropy of every timestep's logits + a pull towards 1)")
        elif key == "tet_lambda":
            parser.add_argument(flag, **extra, metavar="LAMBDA",
                                help="TET: weight of the pull of the logits towards 1, in [0, 1] (default 1e-3)")
        else:
            parser.add_argument(flag, **extra, help=f"{override_help[key]} (config key '{key}')")
    parser.add_argument("--augment", dest="augment", action=argparse.BooleanOptionalAction, default=None,
                        help="random crop (pad 4) + horizontal flip (default: on for CIFAR only)")
    parser.add_argument("--reversible", dest="reversible", action=argparse.BooleanOptionalAction, default=None,
                        help="reversible blocks: recompute activations in the backward pass (docs/reversible.md)")
    parser.add_argument("--nda", dest="nda", action=argparse.BooleanOptionalAction, default=None,
                        help="neuromorphic data augmentation of event frames (event data sets only; "
                             "not with --augment)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key (value parsed as JSON, else a string)")


def config_from_args(args: argparse.Namespace, data: dict | None = None) -> TrainConfig:
    """The config file's settings (or ``data``, a config already read) with the flags applied."""
    if data is None:
        data = load_config(args.config) if args.config else {}
    cfg = config_from_dict(data, source=args.config or "defaults").to_dict()
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            cfg[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key.strip()] = value
    for key in list(_OVERRIDES) + ["augment", "reversible", "nda"]:
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    ranks = cfg.get("ranks")
    if isinstance(ranks, str) and ranks.strip().isdigit():
        cfg["ranks"] = int(ranks)
    return config_from_dict(cfg, source="command line")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/last.pt (same settings); reaches the uninterrupted result. "
                             "With a larger --epochs: extend a finished run")
    parser.add_argument("--force", action="store_true",
                        help="replace a run already in --out (without it, an existing run is never overwritten)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ttsnn.sw.malloc_tuning import keep_freed_memory

    keep_freed_memory()  # reuse freed step buffers instead of page-faulting them in again
    cfg = config_from_args(args)
    summary = train(cfg, resume=args.resume, progress=not args.no_progress, force=args.force)
    if os.environ.get("RANK", "0") == "0":   # under torchrun: one summary, from rank 0
        print(json.dumps(summary, indent=2))
    return 0
