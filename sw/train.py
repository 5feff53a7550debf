"""Training and evaluation of MS-ResNets (dense or TT) on the data sets of :mod:`sw.data`.

One :class:`TrainConfig` holds everything a run depends on; it is read from a TOML or YAML
file (flat keys, or grouped in the tables ``[model]``, ``[data]``, ``[optim]``, ``[run]``)
and overridden by command-line flags. :func:`train` runs it:

* deterministic on CPU for a given seed: the model is initialised from ``seed``; each epoch's
  shuffle and augmentation use a generator seeded from ``(seed, epoch)``, so a resumed run
  draws exactly what an uninterrupted run draws;
* after every epoch, ``<out>/last.pt`` (model, optimiser, scheduler, epoch, RNG states,
  metrics) and ``<out>/metrics.jsonl`` are rewritten atomically;
* ``resume=True`` continues from ``<out>/last.pt`` and reaches the same weights as a run that
  was never interrupted, at the thread count and library versions the checkpoint records
  (it adopts the recorded thread count unless ``threads`` says otherwise; a difference is
  warned about); a damaged or foreign checkpoint is an error, never a fresh start;
* ``resume=True`` with more ``epochs`` than a finished run had extends it (a 'constant'
  schedule continues exactly as a longer run would; a 'cosine' one restarts its annealing
  from ``lr`` over the added epochs, as in SGDR);
* an ``out`` that holds a run is never overwritten without ``resume`` or ``force``;
* ``init_from`` starts from the model of another checkpoint (e.g. the TT model written by
  ``python -m sw decompose``) with a fresh optimiser: fine-tuning;
* ``device`` is ``cpu`` or ``cuda``; under ``torchrun --nproc_per_node N`` the run is data
  parallel (:mod:`sw.ddp`: DistributedDataParallel, gloo on CPU, NCCL on GPU): ``batch_size``
  is the global batch, split over the ranks, BatchNorm statistics are those of the global
  batch, and only rank 0 writes files, so N processes train what one process with the same
  batch size trains (to float rounding; docs/training.md, "Several processes").
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ttsnn.sw import ddp
from ttsnn.sw.cli_util import MissingFileError, UserError, out_of_memory_is_a_clear_error
from ttsnn.sw.checkpoint import load_checkpoint, load_model, run_environment, save_checkpoint, set_rng_state
from ttsnn.sw.data import DataInfo, augment_crop_flip, load_dataset
from ttsnn.sw.fileio import atomic_write_json, atomic_write_text, os_error, remove_stale_temps
from ttsnn.sw.plugin.methods import nda_augment, tet_loss

__all__ = ["TrainConfig", "load_config", "config_from_dict", "train", "evaluate", "build_from_config",
           "SCHEDULERS"]

SCHEDULERS = ("cosine", "constant")
_SECTIONS = ("model", "data", "optim", "run")


@dataclass
class TrainConfig:
    """A training run. Model: arch, mode, ranks, timesteps, schedule (HTT), downsample.
    Data: dataset, data_path, size (frame/image side; data set default if None), split_by
    (events: 'time' or 'number'), cache_dir (frame cache for event data), augment (None: the
    data set's default - on for CIFAR). Optimiser: SGD with lr, momentum, weight_decay;
    scheduler 'cosine' (annealed to 0 over ``epochs``) or 'constant'. Run: epochs, batch_size,
    eval_batch_size, seed, out (directory), threads (torch intra-op threads; None = torch's
    default), workers (DataLoader processes), init_from (checkpoint to fine-tune from),
    max_train_samples / max_test_samples (use a prefix of the data; for smoke runs), device
    ('cpu' or 'cuda'; not part of what a resumed run must share).
    reversible: reversible shape-keeping blocks that recompute their inputs in the backward
    pass instead of storing activations (:mod:`sw.reversible`, streamlined backward).
    Training methods of the paper's Table III (:mod:`sw.plugin.methods`): norm 'bn' (BatchNorm
    shared over time), 'tdbn' or 'tebn'; loss 'ce' (cross-entropy of the time-averaged logits)
    or 'tet' (TET over the per-timestep logits, weight ``tet_lambda`` of its pull towards 1);
    nda: neuromorphic data augmentation of event frames (event data sets only)."""

    arch: str = "tiny"
    mode: str = "ptt"
    ranks: Any = "uniform:8"
    timesteps: int = 4
    schedule: Any = None
    downsample: str = "maxpool"
    reversible: bool = False
    norm: str = "bn"
    dataset: str = "digits"
    data_path: str | None = None
    size: int | None = None
    split_by: str | None = None
    cache_dir: str | None = None
    augment: bool | None = None
    nda: bool = False
    loss: str = "ce"
    tet_lambda: float = 1e-3
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    seed: int = 0
    out: str = "build/train"
    threads: int | None = None
    workers: int = 0
    init_from: str | None = None
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    device: str = "cpu"

    def validate(self) -> "TrainConfig":
        for name in ("epochs", "batch_size", "eval_batch_size", "timesteps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"config: {name} must be a positive integer, got {v!r}")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"config: scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
                raise UserError(f"config: {name} must be a non-negative number, got {v!r}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"config: threads must be >= 1, got {self.threads}")
        if not isinstance(self.reversible, bool):
            raise UserError(f"config: reversible must be true or false, got {self.reversible!r}")
        self._validate_methods()
        if self.workers < 0:
            raise UserError(f"config: workers must be >= 0, got {self.workers}")
        if self.device not in ("cpu", "cuda"):
            raise UserError(f"config: device must be cpu or cuda, got {self.device!r}")
        return self

    def _validate_methods(self) -> None:
        from ttsnn.sw.plugin.methods import LOSSES, NORMS

        if self.norm not in NORMS:
            raise UserError(f"config: norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.loss not in LOSSES:
            raise UserError(f"config: loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        lam = self.tet_lambda
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0 <= lam <= 1:
            raise UserError(f"config: tet_lambda must be a number in [0, 1], got {lam!r}")
        if not isinstance(self.nda, bool):
            raise UserError(f"config: nda must be true or false, got {self.nda!r}")
        if self.nda and self.augment:
            raise UserError("config: nda and augment both flip frames; choose one (nda for event data)")
        if self.norm != "bn" and self.reversible:
            raise UserError(f"config: norm {self.norm!r} is not available with reversible blocks; "
                            "use norm 'bn' or reversible false")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_dict(data: dict, source: str = "config") -> TrainConfig:
    """Flatten the optional ``[model]/[data]/[optim]/[run]`` tables and build a validated config."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                flat[k] = v
        else:
            flat[key] = value
    unknown = sorted(set(flat) - _FIELDS)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(_FIELDS)}")
    return TrainConfig(**flat).validate()


def load_config(path: str | os.PathLike) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) training configuration as a dict."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"training config not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            raise UserError(f"{path}: config must be .toml, .yaml or .yml")
    except (ValueError, ImportError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise UserError(f"{path}: cannot parse config: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise UserError(f"{path}: cannot parse config: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: config must be a table/mapping at the top level")
    return data


def _subset(ds: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, range(limit))


def build_from_config(cfg: TrainConfig) -> tuple[torch.nn.Module, Dataset, Dataset, DataInfo, dict | None]:
    """Data sets and model of a config (model initialised from ``cfg.seed``, or taken from
    ``cfg.init_from``). Returns ``(model, train_set, test_set, info, init_checkpoint_meta)``."""
    train_set, test_set, info = load_dataset(cfg.dataset, cfg.data_path, timesteps=cfg.timesteps, size=cfg.size,
                                             split_by=cfg.split_by, cache_dir=cfg.cache_dir, augment=cfg.augment)
    if cfg.nda and not info.events:
        raise UserError(f"nda augments event frames; data set {info.name} is not event data "
                        "(use an event data set such as digits-events, or drop --nda)")
    train_set, test_set = _subset(train_set, cfg.max_train_samples), _subset(test_set, cfg.max_test_samples)
    torch.manual_seed(cfg.seed)
    init_meta = None
    if cfg.init_from:
        model, meta = load_model(cfg.init_from)
        model.train()  # load_model leaves it in eval mode
        init_meta = {"path": str(cfg.init_from), "hparams": meta["model"]["hparams"]}
        init_norm = init_meta["hparams"].get("norm", "bn")
        if init_norm != cfg.norm:
            raise UserError(f"--init-from {cfg.init_from} was trained with norm {init_norm!r}, the config "
                            f"asks for {cfg.norm!r}; set --norm {init_norm}")
    else:
        from ttsnn.sw.resnet import ms_resnet

        model = ms_resnet(cfg.arch, mode=cfg.mode, ranks=None if cfg.mode == "dense" else cfg.ranks,
                          in_channels=info.in_channels, num_classes=info.num_classes, timesteps=cfg.timesteps,
                          input_size=info.input_size, schedule=cfg.schedule,
                          downsample=cfg.downsample, reversible=cfg.reversible, norm=cfg.norm)
    hp = model.hparams
    if hp.get("in_channels") not in (None, info.in_channels) or hp.get("num_classes") not in (None, info.num_classes):
        raise UserError(f"model expects {hp.get('in_channels')} input channels / {hp.get('num_classes')} classes, "
                        f"data set {info.name} has {info.in_channels} / {info.num_classes}")
    if hp.get("timesteps") not in (None, cfg.timesteps) and info.events:
        raise UserError(f"model was built for T={hp.get('timesteps')}, the config asks for "
                        f"T={cfg.timesteps} frames; set timesteps to match")
    return model, train_set, test_set, info, init_meta


def _to_model_input(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """Batches of frames come as [B, T, C, H, W]; the model wants [T, B, C, H, W]."""
    return x.transpose(0, 1).contiguous() if info.events else x


def evaluate(model: torch.nn.Module, dataset: Dataset, info: DataInfo, batch_size: int = 256,
             progress: bool = False, desc: str = "eval", over_ranks: bool = False) -> dict[str, float]:
    """Mean cross-entropy loss and top-1 accuracy of ``model`` (put in eval mode) on ``dataset``
    (on the device of the model). ``over_ranks``: every rank of a data-parallel run holds a
    part of the data set; the figures are those of the union (every rank must call this)."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total_loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress, file=sys.stderr):
            x, y = x.to(device), y.to(device)
            out = model(_to_model_input(x, info))
            total_loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += int((out.argmax(1) == y).sum())
            n += int(y.shape[0])
    if over_ranks:
        total_loss, correct, n = ddp.all_reduce_sum([total_loss, correct, n], device)
        correct, n = int(correct), int(n)
    if n == 0:
        raise UserError("evaluation set is empty")
    return {"loss": total_loss / n, "acc": correct / n, "samples": n}


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


# what a resumed run must share with its checkpoint (epochs may grow: an extension)
_RESUME_KEYS = ("arch", "mode", "ranks", "timesteps", "schedule", "downsample", "reversible", "norm",
                "nda", "loss", "tet_lambda", "dataset", "data_path", "size",
                "split_by", "augment", "lr", "momentum", "weight_decay", "scheduler", "batch_size",
                "seed", "init_from", "max_train_samples", "max_test_samples")
# the files a run writes into its directory; any of them means the directory holds a run
# keys added after checkpoints were first written: their value in older checkpoints
_RESUME_DEFAULTS = {"reversible": False, "norm": "bn", "nda": False, "loss": "ce", "tet_lambda": 1e-3}
_RUN_FILES = ("last.pt", "metrics.jsonl", "summary.json")
_OUT_FILES = _RUN_FILES + ("config.json",)


def _stderr_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _check_out_dir(cfg: "TrainConfig", out: Path, resume: bool, force: bool) -> None:
    """Refuse to write onto an existing run unless asked (``resume`` or ``force``)."""
    if resume and force:
        raise UserError("--resume continues the run in --out, --force replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise os_error(NotADirectoryError, errno.ENOTDIR,
                       f"--out {out} is a file; the run directory must be a directory (choose another --out)")
    if cfg.init_from and (out / "last.pt").resolve() == Path(cfg.init_from).resolve():
        raise UserError(f"--init-from {cfg.init_from} is the checkpoint this run would overwrite; "
                        "use --resume to continue that run, or choose another --out")
    present = [name for name in _RUN_FILES if (out / name).exists()]
    if present and not resume and not force:
        raise os_error(FileExistsError, errno.EEXIST,
                       f"--out {out} already holds a training run ({', '.join(present)}); pass --resume to "
                       "continue it (with a larger --epochs to extend it), --force to replace it, "
                       "or choose another --out")


def _check_environment(saved: dict | None, threads_given: bool, warn: Callable[[str], None]) -> None:
    """Warn when the resumed run cannot repeat the uninterrupted one bit for bit."""
    if not saved:
        warn("the checkpoint records no thread count or library versions (written by an older "
             "version); the resumed run may differ slightly from an uninterrupted one")
        return
    now = run_environment()
    diffs = [f"{k} {saved.get(k)} -> {now[k]}" for k in ("threads", "torch", "numpy", "python", "machine")
             if saved.get(k) != now[k]]
    if diffs:
        hint = (f"; use --threads {saved.get('threads')} for an exact resume"
                if saved.get("threads") != now["threads"] and threads_given else "")
        warn(f"resuming with other settings than the checkpoint was written with ({', '.join(diffs)}): "
             f"the result will not be bit-identical to an uninterrupted run{hint}")


def _resume_epochs(cfg: "TrainConfig", saved_epochs: int, done: int) -> bool:
    """Check ``cfg.epochs`` against the checkpoint's plan; True when it extends a finished run."""
    if cfg.epochs < done:
        raise UserError(f"--resume: the run already completed {done} epochs; --epochs {cfg.epochs} is fewer "
                        f"(use --epochs {done} or more)")
    if cfg.epochs == saved_epochs:
        return False
    if done < saved_epochs and cfg.scheduler == "cosine":
        raise UserError(f"--resume: the run stopped after epoch {done} of {saved_epochs} with a cosine schedule "
                        f"over {saved_epochs} epochs; finish it first (--epochs {saved_epochs}), then "
                        f"extend it with --resume --epochs {cfg.epochs}")
    return cfg.epochs > saved_epochs and done == saved_epochs


def _out_of_memory_is_a_clear_error(cfg: "TrainConfig", where: Callable[[], str]):
    """An allocator failure as one line saying what to change; nothing written so far is touched."""
    return out_of_memory_is_a_clear_error(
        where, f"lower --batch-size (now {cfg.batch_size}) or --eval-batch-size (now {cfg.eval_batch_size}), "
               "or use fewer --timesteps or a smaller model; checkpoints already written are intact "
               "(continue with --resume)")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, force: bool = False,
          warn: Callable[[str], None] = _stderr_warning) -> dict[str, Any]:
    """Run (or resume, or extend) the training of ``cfg``; returns the final summary (also
    written to ``<out>/summary.json``). ``force`` replaces a run already in ``cfg.out``.
    Under torchrun every rank calls this; rank 0 alone logs and writes (``cfg.out`` must be
    visible to every rank: one node, or a shared file system)."""
    cfg.validate()
    ctx = ddp.setup(cfg.device)
    finished = False
    try:
        if not ctx.is_main:
            log, warn, progress = _quiet, _quiet, False
        summary = _train(cfg, ctx, resume, progress, log, force, warn)
        finished = True
        return summary
    finally:
        ctx.close(finished)


def _quiet(_msg: str) -> None:
    pass


def _train(cfg: TrainConfig, ctx: "ddp.DistContext", resume: bool, progress: bool,
           log: Callable[[str], None], force: bool, warn: Callable[[str], None]) -> dict[str, Any]:
    if ctx.distributed and cfg.batch_size < ctx.world:
        raise UserError(f"--batch-size {cfg.batch_size} is the global batch; it must be at least the "
                        f"number of processes ({ctx.world})")
    if ctx.distributed and cfg.reversible:
        raise UserError("--reversible is not supported under torchrun yet (its recompute would run "
                        "BatchNorm's collective in the backward pass); train it in one process")
    methods = {k: getattr(cfg, k) for k, plain in (("norm", "bn"), ("loss", "ce"), ("nda", False))
               if getattr(cfg, k) != plain}
    if ctx.distributed and methods:
        raise UserError(f"{methods} are not supported under torchrun yet (global-batch tdBN/TEBN, "
                        "sharded NDA draws); train them in one process")
    out = Path(cfg.out)
    ckpt_path = out / "last.pt"
    _check_out_dir(cfg, out, resume, force)
    for name in _OUT_FILES:  # temporaries of writes interrupted by a kill
        remove_stale_temps(out / name)
    resumed, extending = None, False
    threads_given = cfg.threads is not None
    if resume:
        if not ckpt_path.is_file():
            raise MissingFileError(f"--resume: no checkpoint at {ckpt_path}; run without --resume to start, "
                                   "or point --out at the run directory to continue")
        resumed = load_checkpoint(ckpt_path)
        saved = resumed.get("config", {})
        diff = {k: (saved.get(k, _RESUME_DEFAULTS.get(k)), getattr(cfg, k)) for k in _RESUME_KEYS
                if saved.get(k, _RESUME_DEFAULTS.get(k)) != getattr(cfg, k)}
        if diff:
            raise UserError(f"--resume: the configuration differs from the checkpoint's in {diff} "
                            "(saved, now); resume with the same settings or start a new --out directory")
        extending = _resume_epochs(cfg, int(saved.get("epochs", cfg.epochs)), int(resumed["epoch"]))
        env = resumed.get("env")
        if not threads_given and env and env.get("threads"):
            cfg = dataclasses.replace(cfg, threads=int(env["threads"]))  # the thread count of the run
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if resumed is not None:
        _check_environment(resumed.get("env"), threads_given, warn)
    with _out_of_memory_is_a_clear_error(cfg, lambda: "while building the model and data"):
        model, train_set, test_set, info, init_meta = build_from_config(cfg)
    model.to(ctx.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = _make_scheduler(cfg, optimizer, cfg.epochs)
    metrics: list[dict] = []
    start_epoch = 0
    history = {"extended_at": []}
    if resumed is not None:
        model.load_state_dict(resumed["model"]["state_dict"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        start_epoch = int(resumed["epoch"])
        metrics = list(resumed["metrics"])
        history["extended_at"] = list((resumed.get("extra") or {}).get("extended_at") or [])
        if resumed.get("rng"):
            set_rng_state(resumed["rng"])
        if extending:
            history["extended_at"].append(start_epoch)
            if cfg.scheduler == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"]
                scheduler = _make_scheduler(cfg, optimizer, cfg.epochs - start_epoch)
                log(f"extending the finished {start_epoch}-epoch run to {cfg.epochs} epochs: the cosine schedule "
                    f"restarts at lr {cfg.lr} over the {cfg.epochs - start_epoch} added epochs")
            else:
                log(f"extending the finished {start_epoch}-epoch run to {cfg.epochs} epochs")
        log(f"resuming {ckpt_path} after epoch {start_epoch}/{cfg.epochs}")
    elif force and ctx.is_main:
        for name in _RUN_FILES:  # asked to replace: no file of the old run may mix with the new one
            (out / name).unlink(missing_ok=True)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
    step_model = _data_parallel(model, ctx, log)
    if cfg.loss == "tet":
        step_model = PerTimestepLogits(step_model)

    n_params = sum(p.numel() for p in model.parameters())
    if init_meta:
        log(f"model and weights from {init_meta['path']} ({init_meta['hparams'].get('mode')}, ranks "
            f"{init_meta['hparams'].get('ranks')}); the config's arch/mode/ranks are not used")
    log(f"{model.hparams.get('arch', cfg.arch)} {model.hparams.get('mode', cfg.mode)} on {info.name}: {len(train_set)} train / "
        f"{len(test_set)} test samples, T={cfg.timesteps}, {n_params:,} parameters (incl. BN), out={out}")
    t_run = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        with _out_of_memory_is_a_clear_error(cfg, lambda: f"in epoch {epoch + 1}"):
            row = _train_epoch(cfg, step_model, optimizer, scheduler, train_set, test_set, info, epoch,
                               progress, ctx)
        metrics.append(row)
        if ctx.is_main:
            save_checkpoint(ckpt_path, model, optimizer=optimizer, scheduler=scheduler, epoch=epoch + 1,
                            config=cfg.to_dict(), metrics=metrics,
                            extra={"data": dataclasses.asdict(info), "init_from": init_meta, **history})
            atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
        log(f"epoch {epoch + 1}/{cfg.epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
            f"{row['time_per_batch_s'] * 1e3:.1f} ms/batch")
    final = metrics[-1] if metrics else {}
    summary = {"checkpoint": str(ckpt_path), "arch": model.hparams.get("arch", cfg.arch),
               "mode": model.hparams.get("mode", cfg.mode), "dataset": info.name, "epochs": cfg.epochs,
               "final_test_acc": final.get("test_acc"), "final_train_acc": final.get("train_acc"),
               "best_test_acc": max((m["test_acc"] for m in metrics), default=None),
               "chance_acc": 1.0 / info.num_classes, "parameters": n_params,
               "wall_time_s": time.perf_counter() - t_run, "resumed_from_epoch": start_epoch if resumed else None,
               "extended_at_epochs": history["extended_at"], "processes": ctx.world,
               "device": str(ctx.device.type)}
    if ctx.is_main:
        atomic_write_json(out / "summary.json", summary)
    log(f"done: test acc {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f}, "
        f"chance {summary['chance_acc']:.3f}); checkpoint {ckpt_path}")
    return summary


def _data_parallel(model: torch.nn.Module, ctx: "ddp.DistContext", log: Callable[[str], None]):
    """The module the training steps run: ``model`` itself in one process; under torchrun,
    ``model`` with global-batch BatchNorm (:class:`sw.ddp.SyncBatchNormTB`) wrapped in DDP
    (which starts every rank from rank 0's weights). Checkpoints save ``model``."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    n_bn = ddp.convert_sync_batchnorm(model)
    log(f"data parallel over {ctx.world} processes ({'NCCL' if ctx.device.type == 'cuda' else 'gloo'}): "
        f"global batch split over the ranks, {n_bn} BatchNorms with global-batch statistics")
    # the TT cores are channels-last (sw.tt): their gradients do not match DDP's flat buckets,
    # which DDP reports at every step; it copies them, the result is the same
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


class PerTimestepLogits(torch.nn.Module):
    """The logits of every timestep, ``[T, B, K]``, of an MS-ResNet (for the TET loss). The
    model's own forward is their mean over T (``fc`` is linear), so this changes no weight."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.model.head_lif(self.model.features(x))
        return self.model.fc(spikes.mean(dim=(3, 4)))


def _make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, span: int):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=span)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def _train_epoch(cfg: TrainConfig, model, optimizer, scheduler, train_set, test_set, info: DataInfo,
                 epoch: int, progress: bool, ctx: "ddp.DistContext | None" = None) -> dict[str, Any]:
    """One epoch of training and the test evaluation after it; returns the metrics row."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    ctx = ctx or ddp.DistContext()
    gen = _epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(train_set), generator=gen).tolist()
    if ctx.distributed:
        # every rank draws the same permutation and loads its part of each global batch
        loader = DataLoader(train_set, batch_sampler=ddp.shard_batches(order, cfg.batch_size, ctx.rank, ctx.world),
                            num_workers=cfg.workers)
    else:
        loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=order, num_workers=cfg.workers)
    lr = optimizer.param_groups[0]["lr"]
    model.train()
    total_loss, correct, n, batch_time = 0.0, 0, 0, 0.0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress,
               file=sys.stderr)
    for k, (x, y) in enumerate(bar):
        t0 = time.perf_counter()
        if info.augment:
            # under DDP: the draws of the whole global batch k, this rank's part of them
            whole = min(cfg.batch_size, len(order) - k * cfg.batch_size)
            x = augment_crop_flip(x, gen, batch=whole, offset=ddp.part_bounds(whole, ctx.rank, ctx.world)[0])
        if cfg.nda:
            x = nda_augment(x, gen)
        x, y = x.to(ctx.device), y.to(ctx.device)
        outp = model(_to_model_input(x, info))
        if cfg.loss == "tet":
            loss = tet_loss(outp, y, lam=cfg.tet_lambda)
            outp = outp.mean(0)  # what the model's forward gives: fc is linear
            batch_loss = loss.item()
        elif ctx.distributed:
            # N/B x this rank's sum: DDP's average over the ranks is the mean over the global batch
            local_sum = F.cross_entropy(outp, y, reduction="sum")
            batch_loss, global_b = ddp.all_reduce_sum([local_sum.item(), y.shape[0]], ctx.device)
            loss = local_sum * (ctx.world / global_b)
            batch_loss /= global_b
        else:
            loss = F.cross_entropy(outp, y)
            batch_loss = loss.item()
        if not math.isfinite(batch_loss):
            raise UserError(f"loss became {batch_loss} in epoch {epoch + 1}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch_time += time.perf_counter() - t0
        total_loss += loss.item() * y.shape[0] if not ctx.distributed else local_sum.item()
        correct += int((outp.argmax(1) == y).sum())
        n += int(y.shape[0])
        bar.set_postfix(loss=f"{total_loss / n:.3f}", acc=f"{correct / n:.3f}")
    scheduler.step()
    if ctx.distributed:
        total_loss, correct, n = ddp.all_reduce_sum([total_loss, correct, n], ctx.device)
        n = int(n)
        # each rank evaluates every world-th test sample; the figures are summed over the ranks
        part = torch.utils.data.Subset(test_set, range(ctx.rank, len(test_set), ctx.world))
        test = evaluate(model.module, part, info, cfg.eval_batch_size, progress, desc="test", over_ranks=True)
    else:
        plain = model.model if isinstance(model, PerTimestepLogits) else model
        test = evaluate(plain, test_set, info, cfg.eval_batch_size, progress, desc="test")
    return {"epoch": epoch + 1, "lr": lr, "train_loss": total_loss / n, "train_acc": correct / n,
            "test_loss": test["loss"], "test_acc": test["acc"],
            "time_per_batch_s": batch_time / max(len(loader), 1), "epoch_time_s": batch_time}
