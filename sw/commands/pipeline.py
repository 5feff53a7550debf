"""``python -m sw pipeline --config CONFIG``: dense training, EVBMF ranks, TT-SVD
initialisation and TT training in one resumable run.

Examples::

    python -m sw pipeline --config configs/pipeline/digits_ptt.toml
    python -m sw pipeline --config configs/pipeline/digits_ptt.toml   # again: finishes / skips done stages
    python -m sw pipeline --config configs/pipeline/digits_ptt.toml --epochs 1 --finetune-epochs 1 --out build/p

The paper's TT-SNN training pipeline (its Algorithm 1) as one resumable run: train the
dense network, choose TT ranks (EVBMF by default) and initialise the TT cores by TT-SVD of the
trained weights, then train the TT network from there.

Stages and what each keeps under ``out``:

1. ``dense/``: :func:`sw.train.train` of the config with ``mode='dense'`` (``last.pt``,
   ``metrics.jsonl``, ``summary.json``);
2. ``tt_init.pt`` (+ ``tt_init.pt.json``): :func:`sw.commands.decompose.decompose_checkpoint`
   of ``dense/last.pt`` (ranks, compression, TT-SVD errors, accuracy before fine-tuning);
3. ``tt/``: :func:`sw.train.train` with ``init_from=tt_init.pt`` and the fine-tuning epochs
   and learning rate;
4. ``pipeline.json``: the three stages' results side by side.

A stage whose outputs are complete is skipped; a training stage interrupted after some epochs
continues from its ``last.pt`` (``resume``), so rerunning the same command finishes the run.

The pipeline drives other commands (train, decompose), so it lives with them, above the
library modules of sw/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ttsnn.sw.arch import TT_MODES
from ttsnn.sw.fileio import atomic_write_json
from ttsnn.sw.commands.train import add_config_arguments, config_from_args
from ttsnn.sw.train import TrainConfig, config_from_dict, train
from ttsnn.sw.cli_util import UserError

__all__ = ["PipelineConfig", "pipeline_config_from_dict", "run_pipeline", "add_arguments", "run"]


@dataclass(frozen=True)
class PipelineConfig:
    """``train``: the dense stage's training config (its ``out`` is the pipeline's directory);
    ``tt_mode``, ``ranks`` (rank rule of :func:`sw.decompose.decompose_model`: 'evbmf',
    'uniform:R', an int or a list); ``finetune_epochs`` / ``finetune_lr``: the TT stage's
    schedule (the rest of its settings are the dense stage's)."""

    train: TrainConfig
    tt_mode: str = "ptt"
    ranks: Any = "evbmf"
    finetune_epochs: int = 12
    finetune_lr: float = 0.05

    def validate(self) -> "PipelineConfig":
        from ttsnn.sw.decompose import parse_evbmf_rule, split_rank_cap

        parse_evbmf_rule(split_rank_cap(self.ranks)[0])  # a malformed evbmf rule fails here, before any training
        if self.tt_mode not in TT_MODES:
            raise UserError(f"pipeline: tt_mode must be one of {', '.join(TT_MODES)}, got {self.tt_mode!r}")
        e = self.finetune_epochs
        if not isinstance(e, int) or isinstance(e, bool) or e < 1:
            raise UserError(f"pipeline: finetune_epochs must be a positive integer, got {e!r}")
        lr = self.finetune_lr
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
            raise UserError(f"pipeline: finetune_lr must be a positive number, got {lr!r}")
        return self

    @property
    def out(self) -> Path:
        return Path(self.train.out)

    def dense_config(self) -> TrainConfig:
        return dataclasses.replace(self.train, mode="dense", init_from=None,
                                   out=str(self.out / "dense"))

    def tt_config(self) -> TrainConfig:
        return dataclasses.replace(self.train, mode=self.tt_mode, init_from=str(self.out / "tt_init.pt"),
                                   epochs=self.finetune_epochs, lr=self.finetune_lr,
                                   out=str(self.out / "tt"))


_PIPELINE_KEYS = {"tt_mode", "ranks", "finetune_epochs", "finetune_lr"}


def pipeline_config_from_dict(data: dict, source: str = "config") -> PipelineConfig:
    """A training config (``[model]/[data]/[optim]/[run]``) plus a ``[pipeline]`` table."""
    data = dict(data)
    table = data.pop("pipeline", {}) or {}
    if not isinstance(table, dict):
        raise UserError(f"{source}: [pipeline] must be a table")
    unknown = sorted(set(table) - _PIPELINE_KEYS)
    if unknown:
        raise UserError(f"{source}: unknown [pipeline] key(s) {unknown}; allowed: {sorted(_PIPELINE_KEYS)}")
    ranks = table.get("ranks", "evbmf")
    if isinstance(ranks, str) and ranks.strip().isdigit():
        ranks = int(ranks)
    cfg = PipelineConfig(config_from_dict(data, source), table.get("tt_mode", "ptt"), ranks,
                         table.get("finetune_epochs", 12), table.get("finetune_lr", 0.05))
    return cfg.validate()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _train_stage(cfg: TrainConfig, progress: bool, log: Callable[[str], None]) -> dict:
    """Train ``cfg`` unless its run is complete; continue an interrupted one."""
    from ttsnn.sw.train import _RESUME_KEYS

    out = Path(cfg.out)
    summary = _read_json(out / "summary.json")
    saved = _read_json(out / "config.json") or {}
    if summary is not None and summary.get("epochs") == cfg.epochs and (out / "last.pt").is_file():
        now = cfg.to_dict()
        diff = [k for k in _RESUME_KEYS if k in saved and saved[k] != now[k]]
        if diff:
            raise UserError(f"pipeline: the finished run in {out} was trained with other settings ({diff}); "
                            "use another out directory, or delete that one to retrain it")
        log(f"stage {out.name}: complete ({cfg.epochs} epochs), skipped")
        return summary
    resume = (out / "last.pt").is_file()
    if resume:
        log(f"stage {out.name}: continuing the run in {out}")
    # without a checkpoint nothing of an earlier attempt is worth keeping
    return train(cfg, resume=resume, progress=progress, log=log, force=not resume)


def _decompose_stage(cfg: PipelineConfig, progress: bool, log: Callable[[str], None]) -> dict:
    from ttsnn.sw.commands.decompose import decompose_checkpoint

    out = cfg.out / "tt_init.pt"
    report = _read_json(Path(str(out) + ".json"))
    if report is not None and out.is_file():
        log(f"stage decompose: {out} exists, skipped")
        return report
    dense_ckpt = cfg.out / "dense" / "last.pt"
    report = decompose_checkpoint(str(dense_ckpt), cfg.tt_mode, cfg.ranks, str(out),
                                  max_samples=cfg.train.max_test_samples, progress=progress, force=True)
    log(f"stage decompose: ranks {report['ranks']}, block convs {report['compression']:.2f}x smaller, "
        f"accuracy before fine-tuning {report.get('tt_acc_before_finetune')}")
    return report


def run_pipeline(cfg: PipelineConfig, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or finish) the pipeline; returns, and writes to ``<out>/pipeline.json``, the report."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    dense = _train_stage(cfg.dense_config(), progress, log)
    decomposition = _decompose_stage(cfg, progress, log)
    tt = _train_stage(cfg.tt_config(), progress, log)
    report = {
        "out": str(cfg.out), "tt_mode": cfg.tt_mode, "rank_rule": str(cfg.ranks),
        "ranks": decomposition["ranks"],
        "dense": {"final_test_acc": dense["final_test_acc"], "best_test_acc": dense["best_test_acc"],
                  "parameters": dense["parameters"], "epochs": dense["epochs"],
                  "checkpoint": dense["checkpoint"]},
        "decompose": {k: decomposition.get(k) for k in
                      ("block_conv_params_dense", "block_conv_params_tt", "compression",
                       "tt_acc_before_finetune", "dense_acc", "samples")},
        "tt": {"final_test_acc": tt["final_test_acc"], "best_test_acc": tt["best_test_acc"],
               "parameters": tt["parameters"], "epochs": tt["epochs"], "checkpoint": tt["checkpoint"]},
    }
    report["accuracy_gap"] = dense["final_test_acc"] - tt["final_test_acc"]
    atomic_write_json(cfg.out / "pipeline.json", report)
    return report


def format_report(rep: dict) -> str:
    d, t, dc = rep["dense"], rep["tt"], rep["decompose"]
    before = dc.get("tt_acc_before_finetune")
    return "\n".join([
        f"{'stage':<26} {'test acc':>9} {'best':>7} {'params':>10}",
        f"{'dense':<26} {d['final_test_acc']:>9.4f} {d['best_test_acc']:>7.4f} {d['parameters']:>10,}",
        f"{rep['tt_mode'] + ' after TT-SVD init':<26} {'-' if before is None else f'{before:.4f}':>9}",
        f"{rep['tt_mode'] + ' fine-tuned':<26} {t['final_test_acc']:>9.4f} {t['best_test_acc']:>7.4f} "
        f"{t['parameters']:>10,}",
        f"ranks ({rep['rank_rule']}): {rep['ranks']}; block convs {dc['block_conv_params_dense']:,} -> "
        f"{dc['block_conv_params_tt']:,} parameters ({dc['compression']:.2f}x)",
        f"accuracy gap dense - {rep['tt_mode']}: {rep['accuracy_gap']:+.4f}; report {rep['out']}/pipeline.json",
    ])
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--tt-mode", help="override [pipeline] tt_mode (stt, ptt, htt)")
    parser.add_argument("--rank-rule", help="override [pipeline] ranks (evbmf, evbmf-max, evbmf*S, uniform:R, ...)")
    parser.add_argument("--finetune-epochs", type=int, help="override [pipeline] finetune_epochs")
    parser.add_argument("--finetune-lr", type=float, help="override [pipeline] finetune_lr")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ttsnn.sw.malloc_tuning import keep_freed_memory
    from ttsnn.sw.train import load_config

    keep_freed_memory()  # reuse freed step buffers instead of page-faulting them in again
    data = load_config(args.config) if args.config else {}
    table = data.pop("pipeline", None) or {}
    if not isinstance(table, dict):
        raise UserError(f"{args.config}: [pipeline] must be a table")
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
