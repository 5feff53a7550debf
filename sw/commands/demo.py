"""``python -m sw demo`` (``make demo``): on the embedded digits, run the TT-SNN pipeline (dense
training, EVBMF ranks, TT-SVD initialisation, PTT fine-tuning: :mod:`sw.commands.pipeline`) and
train the same PTT network from scratch, report the three models side by side (accuracy,
parameters, FLOPs), check that the merged dense export scores the same, and write everything
under ``--out`` (default ``build/demo``).

Files: ``dense.pt`` (the pipeline's dense model), ``ptt.pt`` (the pipeline's PTT model, or the
one from scratch with ``--skip-dense``: the model the export and hardware steps use),
``ptt_scratch.pt``, ``runs/`` (the training runs), ``report.md`` / ``report.json``.

The demo is a list of steps (:data:`STEPS`), each a function of a :class:`DemoContext`;
the hardware steps (RTL generation in gen/demo_step.py, replay on the RTL in cosim/demo_step.py,
energy report in model/demo_step.py) are listed there too; :func:`add_step` inserts more. Each step records what it found in ``ctx.results[step_name]``; the last
step writes ``report.json`` and ``report.md``. A step that finds a real problem (a model that
did not learn, an export that disagrees) sets ``ctx.failed``; the command then exits with 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ttsnn.sw.fileio import add_force_argument, atomic_write, atomic_write_json, atomic_write_text, check_output_dir
from ttsnn.sw.cli_util import UserError


#: the pipeline's defaults in the demo (docs/training.md: the grid they come from); the ranks
#: are capped at what the demo's accelerator (configs/small.toml, limits.max_rank) takes, so
#: that the whole-network replay can run every TT layer on it
RANK_RULE = "evbmf<=8"
FINETUNE_EPOCHS = 12
FINETUNE_LR = 0.05


@dataclass
class DemoContext:
    """Shared state of the demo steps: options, output directory, results, failures."""

    out: Path
    args: argparse.Namespace
    results: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    log: Callable[[str], None] = print

    def path(self, name: str) -> Path:
        return self.out / name


def _train_cfg(ctx: DemoContext, mode: str, epochs: int, ranks, out: str):
    from ttsnn.sw.train import TrainConfig

    a = ctx.args
    return TrainConfig(arch="tiny", mode=mode, ranks=ranks, timesteps=a.timesteps, dataset=a.dataset, size=16,
                       epochs=epochs, batch_size=32, lr=0.1, seed=a.seed, out=out,
                       threads=a.threads, max_train_samples=a.max_train_samples,
                       max_test_samples=a.max_test_samples).validate()


def _check_learned(ctx: DemoContext, label: str, summary: dict) -> None:
    if summary["final_test_acc"] < ctx.args.min_acc_factor * summary["chance_acc"]:
        ctx.failed.append(f"{label} test accuracy {summary['final_test_acc']:.3f} is not well above chance "
                          f"({summary['chance_acc']:.3f})")


def _keep(ctx: DemoContext, checkpoint: str, name: str) -> str:
    """Copy a run's checkpoint to ``<out>/<name>`` (the demo's stable file names)."""
    final = ctx.path(name)
    atomic_write(final, lambda tmp: shutil.copyfile(checkpoint, tmp))
    return str(final)


def step_pipeline(ctx: DemoContext) -> None:
    """The paper's pipeline (sw pipeline): dense training, EVBMF ranks, TT-SVD initialisation,
    PTT fine-tuning. Writes ``dense.pt`` and ``ptt.pt`` (the pipeline's PTT model: the one the
    export and hardware steps use)."""
    from ttsnn.sw.commands.pipeline import PipelineConfig, format_report, run_pipeline

    a = ctx.args
    if a.skip_dense:
        ctx.log("--- dense model and pipeline skipped (--skip-dense); ptt.pt will be the PTT model from scratch")
        return
    out = ctx.path("runs/pipeline")
    # the demo's run directories are its own scratch space: each demo replaces them
    shutil.rmtree(out, ignore_errors=True)
    dense_cfg = _train_cfg(ctx, "dense", a.dense_epochs or a.epochs, None, str(out))
    cfg = PipelineConfig(dense_cfg, "ptt", a.rank_rule, a.finetune_epochs, a.finetune_lr).validate()
    ctx.log(f"--- the TT-SNN pipeline: dense tiny MS-ResNet ({dense_cfg.epochs} epochs), {a.rank_rule} ranks, "
            f"TT-SVD initialisation, PTT fine-tuning ({a.finetune_epochs} epochs, lr {a.finetune_lr})")
    rep = run_pipeline(cfg, progress=not a.no_progress, log=ctx.log)
    ctx.log(format_report(rep))
    dense = json.loads((out / "dense" / "summary.json").read_text())
    tt = json.loads((out / "tt" / "summary.json").read_text())
    for summary, metrics, name in ((dense, out / "dense" / "metrics.jsonl", "dense.pt"),
                                   (tt, out / "tt" / "metrics.jsonl", "ptt.pt")):
        summary["checkpoint"] = _keep(ctx, summary["checkpoint"], name)
        summary["metrics"] = str(metrics)
    _check_learned(ctx, "dense", dense)
    _check_learned(ctx, "pipeline PTT", tt)
    ctx.results["train_dense"] = dense
    ctx.results["pipeline"] = {**rep, "tt": tt}
    ctx.results["ptt_model"] = "pipeline"


def step_train_ptt(ctx: DemoContext) -> None:
    """PTT from scratch (random initialisation), with the pipeline's ranks when it ran (the same
    network, so the two differ only in how they were trained), else ``--ranks``."""
    from ttsnn.sw.train import train

    a = ctx.args
    ranks = ctx.results["pipeline"]["ranks"] if "pipeline" in ctx.results and a.ranks is None else \
        (a.ranks or "uniform:8")
    cfg = _train_cfg(ctx, "ptt", a.epochs, ranks, str(ctx.path("runs/ptt")))
    ctx.log(f"--- training a PTT tiny MS-ResNet from scratch on {cfg.dataset} ({cfg.epochs} epochs, ranks {ranks})")
    summary = train(cfg, progress=not a.no_progress, log=ctx.log, force=True)
    summary["metrics"] = str(Path(cfg.out) / "metrics.jsonl")
    summary["checkpoint"] = _keep(ctx, summary["checkpoint"], "ptt_scratch.pt")
    _check_learned(ctx, "PTT (from scratch)", summary)
    ctx.results["train_ptt"] = summary
    if "pipeline" not in ctx.results:
        summary["checkpoint"] = _keep(ctx, summary["checkpoint"], "ptt.pt")
        ctx.results["ptt_model"] = "scratch"


def step_export(ctx: DemoContext) -> None:
    from ttsnn.sw.commands.export import export_merged

    ctx.log("--- merging the PTT model into a dense one (paper Eq. 6) and comparing them")
    rep = export_merged(str(ctx.path("ptt.pt")), str(ctx.path("ptt_merged.pt")), progress=False)
    ctx.log(f"PTT test accuracy {rep['tt_acc']:.4f}, merged dense {rep['merged_acc']:.4f}, "
            f"max |logit difference| {rep['max_abs_logit_diff']:.2e}: {'same' if rep['agree'] else 'DIFFERENT'}")
    if not rep["agree"]:
        ctx.failed.append("the merged dense export does not score the same as the PTT model")
    ctx.results["export"] = rep


def _model_stats(path: Path) -> dict:
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.stats import network_stats

    _, meta = load_model(path)
    hp = meta["model"]["hparams"]
    st = network_stats(hp["arch"], hp["in_channels"], hp["input_size"], hp["num_classes"], hp["timesteps"],
                       hp["mode"], hp["ranks"])
    return {k: st[k] for k in ("params", "flops", "dense_params", "dense_flops", "param_ratio", "flop_ratio",
                               "ranks")}


def step_stats(ctx: DemoContext) -> None:
    st = _model_stats(ctx.path("ptt.pt"))
    ctx.results["stats"] = st
    if ctx.path("ptt_scratch.pt").is_file() and ctx.results.get("ptt_model") == "pipeline":
        ctx.results["stats_scratch"] = _model_stats(ctx.path("ptt_scratch.pt"))
    ctx.log(f"--- counts (no BN; FLOPs = MACs x T, sw.stats): PTT ({ctx.results.get('ptt_model', 'ptt.pt')}) "
            f"{st['params']:,} params, {st['flops']:,} FLOPs; dense {st['dense_params']:,} params, "
            f"{st['dense_flops']:,} FLOPs ({1 / st['param_ratio']:.2f}x fewer params, "
            f"{1 / st['flop_ratio']:.2f}x fewer FLOPs)")


def step_plot(ctx: DemoContext) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    runs = {"PTT from scratch": ctx.results.get("train_ptt"), "dense": ctx.results.get("train_dense"),
            "PTT by the pipeline (from dense)": ctx.results.get("pipeline", {}).get("tt")}
    for label, summary in runs.items():
        if summary is None:
            continue
        rows = [json.loads(line) for line in Path(summary["metrics"]).read_text().splitlines()]
        ax.plot([r["epoch"] for r in rows], [r["test_acc"] for r in rows], marker="o", label=f"{label} test")
        ax.plot([r["epoch"] for r in rows], [r["train_acc"] for r in rows], ls="--", label=f"{label} train")
    ax.axhline(0.1, color="grey", lw=0.8, label="chance")
    ax.set_xlabel("epoch (the pipeline's PTT: fine-tuning epochs after the dense run)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("tiny MS-ResNet on the embedded digits")
    fig.tight_layout()
    # the temporary name ends in .tmp, so the format is given rather than taken from it
    atomic_write(ctx.path("accuracy.png"), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    ctx.results["plot"] = str(ctx.path("accuracy.png"))


def step_report(ctx: DemoContext) -> None:
    r = ctx.results
    lines = ["# TT-SNN demo report", ""]
    lines += _model_table(ctx)
    if "pipeline" in r:
        p = r["pipeline"]
        before = p["decompose"].get("tt_acc_before_finetune")
        lines.append(f"- pipeline: {p['rank_rule']} ranks {p['ranks']} of the trained dense model, TT-SVD "
                     f"initialisation (accuracy before fine-tuning {'-' if before is None else f'{before:.4f}'}), "
                     f"{p['tt']['epochs']} PTT epochs; report `{p['out']}/pipeline.json`")
    ptt = r.get("ptt_model")
    if ptt:
        lines.append(f"- `ptt.pt` (used by the export and hardware steps below) is the PTT model "
                     f"{'by the pipeline' if ptt == 'pipeline' else 'from scratch'}")
    if "export" in r:
        e = r["export"]
        lines.append(f"- merged dense export of the PTT model: accuracy {e['merged_acc']:.4f} vs PTT "
                     f"{e['tt_acc']:.4f}, max |logit difference| {e['max_abs_logit_diff']:.2e}")
    if "rtl" in r:
        n = r['rtl'].get('files', 1)
        lines.append(f"- RTL: `{r['rtl']['verilog']}` and {n - 1} more unit files beside it "
                     f"({r['rtl']['lines']:,} lines, configuration '{r['rtl']['config']}')")
    if "replay" in r:
        p = r["replay"]
        lines.append(f"- replay of `{p['layer']}` on the RTL ({p['config']}): "
                     f"{'bit-exact' if p['match'] else 'MISMATCH'} ({p['mismatches']} mismatches), "
                     f"{p['cycles']:,} cycles over {p['tiles']} tile(s), spike agreement of the "
                     f"integer layer with the float layer {p['spike_agreement']:.4f}")
    if "train_step" in r:
        p = r["train_step"]
        lines.append(f"- one training step of `{p['layer']}` on the RTL ({p['config']}): forward, backward "
                     f"and weight gradients {'bit-exact' if p['match'] else 'MISMATCH'}; gradient cosine "
                     f"with float autograd " + ", ".join(f"{k} {v:.3f}" for k, v in p["grad_cosine"].items())
                     + f"; {p['cycles']['forward']:,} forward and {p['cycles']['backward']:,} backward cycles")
    if "replay_network" in r:
        p = r["replay_network"]
        lines.append(f"- whole network on the RTL ({p['config']}, {p['images']} test images, every TT layer "
                     f"chained): layers {'bit-exact' if p['layers_bit_exact'] else 'MISMATCH'}, "
                     f"predictions equal the integer golden model's on {p['golden_agreement']:.0%} of "
                     f"the images, the float model's on {p['float_agreement']:.0%}; accuracy "
                     f"{p['accuracy']:.2f}; {p['cycles_per_image']:,.0f} cycles per image; "
                     f"{p['wall_s']:.0f} s")
    if "hw_finetune" in r:
        lines.append("- fine-tuning with the accelerator's integer forward/backward in the loop "
                     f"(short; plot `{r['hw_finetune']['plot']}`):")
        lines.extend(f"  - {line}" for line in r["hw_finetune"]["summary"])
    if "tinysnn" in r:
        t = r["tinysnn"]
        lines.append(f"- tinySNN (STDP, {t['neurons']} neurons, {t['train_images']} training images): test "
                     f"accuracy {t['fp32_accuracy']:.3f} FP32, {t['ptq8_accuracy']:.3f} with 8-bit weights "
                     f"and neuron parameters ({t['memory_saving_8bit']:.2f}x less memory)")
    if "energy" in r:
        first, *per_mode = r["energy"]["summary"]
        lines.append(f"- {first}")
        lines.extend(f"  - {line.strip()}" for line in per_mode)
    lines += ["", f"Status: {'FAILED: ' + '; '.join(ctx.failed) if ctx.failed else 'OK'}", ""]
    report = {"results": r, "failed": ctx.failed, "ok": not ctx.failed}
    atomic_write_json(ctx.path("report.json"), report, default=str)
    atomic_write_text(ctx.path("report.md"), "\n".join(lines))
    ctx.log("\n".join(lines))
    ctx.log(f"wrote {ctx.path('report.md')}, {ctx.path('report.json')}, {ctx.path('ptt.pt')}")


def _model_table(ctx: DemoContext) -> list[str]:
    """Dense, PTT from scratch and PTT by the pipeline side by side (whichever ran)."""
    r = ctx.results
    stats = r.get("stats")
    scratch_stats = r.get("stats_scratch") or (stats if r.get("ptt_model") == "scratch" else None)
    pipeline_stats = stats if r.get("ptt_model") == "pipeline" else None
    rows = [("dense", r.get("train_dense"), (stats["dense_params"], stats["dense_flops"]) if stats else None),
            ("PTT from scratch", r.get("train_ptt"),
             (scratch_stats["params"], scratch_stats["flops"]) if scratch_stats else None),
            ("PTT by the pipeline", r.get("pipeline", {}).get("tt"),
             (pipeline_stats["params"], pipeline_stats["flops"]) if pipeline_stats else None)]
    rows = [row for row in rows if row[1] is not None]
    if not rows:
        return []
    chance = rows[0][1]["chance_acc"]
    out = [f"| model | test accuracy (chance {chance:.2f}) | epochs | parameters | FLOPs | checkpoint |",
           "|---|---|---|---|---|---|"]
    for label, s, counts in rows:
        params, flops = (f"{counts[0]:,}", f"{counts[1]:,}") if counts else ("-", "-")
        out.append(f"| {label} | {s['final_test_acc']:.4f} | {s['epochs']} | {params} | {flops} | "
                   f"`{s['checkpoint']}` |")
    return out + ["", "Parameters and FLOPs without BatchNorm (sw.stats; FLOPs = MACs x T).", ""]


def step_hw_finetune(ctx: DemoContext) -> None:
    """A short fine-tuning of the PTT model with the accelerator's integer forward, backward and
    weight gradients in the loop, beside float (``python -m sw hw-finetune`` at full length)."""
    from ttsnn.gen.config import load_config
    from ttsnn.sw.commands.hw_finetune import load_data
    from ttsnn.sw.hwtrain import finetune, summary_lines

    ctx.log("--- fine-tuning the PTT model with the accelerator's integer arithmetic in the loop "
            "(2 steps of 16 images per variant; python -m sw hw-finetune for a real run)")
    ckpt = str(ctx.path("ptt.pt"))
    res = finetune(ckpt, ctx.path("hw_finetune"), load_config("paper"), load_data(ckpt, 32, 100),
                   ("float", "nearest", "stochastic"), epochs=1, batch_size=16, lr=0.002,
                   seed=ctx.args.seed, progress=False, log=ctx.log)
    for line in summary_lines(res):
        ctx.log("  " + line)
    ctx.results["hw_finetune"] = {"summary": summary_lines(res), "plot": str(ctx.path("hw_finetune/finetune.png"))}


#: the demo, in order; (name, function). The report step stays last.
STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("pipeline", step_pipeline),
    ("train_ptt", step_train_ptt),
    ("export", step_export),
    ("stats", step_stats),
    ("plot", step_plot),
    ("hw_finetune", step_hw_finetune),
    ("tinysnn", lambda ctx: _hardware_step("ttsnn.sw.tinysnn.demo_step", "step_tinysnn", ctx)),
    # the hardware half: generate the RTL, replay a trained TT layer on it, training energy.
    # This module is the orchestrator at the top of the package graph: it imports the steps of
    # gen/, cosim/ and model/ (when run), and nothing imports it.
    ("rtl", lambda ctx: _hardware_step("ttsnn.gen.demo_step", "step_rtl", ctx)),
    ("replay", lambda ctx: _hardware_step("ttsnn.cosim.demo_step", "step_replay", ctx)),
    ("train_step", lambda ctx: _hardware_step("ttsnn.cosim.demo_step", "step_train_step", ctx)),
    ("replay_network", lambda ctx: _hardware_step("ttsnn.cosim.demo_step", "step_replay_network", ctx)),
    ("energy", lambda ctx: _hardware_step("ttsnn.model.demo_step", "step_energy", ctx)),
    ("report", step_report),
]


def _hardware_step(module: str, name: str, ctx: DemoContext) -> None:
    """Run step ``name`` of ``module`` (imported only when the step runs: training-only demos
    stay free of the generator, the simulator and the energy model)."""
    import importlib

    getattr(importlib.import_module(module), name)(ctx)


def add_step(name: str, fn: Callable[[DemoContext], None], before: str = "report") -> None:
    """Insert a demo step before the step named ``before`` (default: before the report)."""
    names = [n for n, _ in STEPS]
    if name in names:
        raise UserError(f"demo step {name!r} exists already")
    STEPS.insert(names.index(before), (name, fn))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="build/demo", help="output directory (default build/demo)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the PTT model from scratch (default 12)")
    parser.add_argument("--dense-epochs", type=int, default=None, help="dense training epochs (default: --epochs)")
    parser.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS,
                        help=f"the pipeline's PTT fine-tuning epochs (default {FINETUNE_EPOCHS})")
    parser.add_argument("--finetune-lr", type=float, default=FINETUNE_LR,
                        help=f"the pipeline's PTT fine-tuning learning rate (default {FINETUNE_LR})")
    parser.add_argument("--rank-rule", default=RANK_RULE, help=f"the pipeline's rank rule (default {RANK_RULE})")
    parser.add_argument("--skip-dense", action="store_true",
                        help="skip the dense model and the pipeline (ptt.pt is then the PTT model from scratch)")
    parser.add_argument("--ranks", default=None,
                        help="ranks of the PTT model from scratch (default: the pipeline's, uniform:8 without it)")
    parser.add_argument("--timesteps", "-T", type=int, default=4, help="timesteps T, >= 1 (default 4)")
    parser.add_argument("--dataset", default="digits", choices=("digits", "digits-events"),
                        help="embedded data set: digits (images, default) | digits-events (event frames)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="train on a prefix (smoke runs)")
    parser.add_argument("--max-test-samples", type=int, default=None, help="test on a prefix (smoke runs)")
    parser.add_argument("--min-acc-factor", type=float, default=3.0,
                        help="a model counts as learning if its test accuracy is at least this times chance")
    parser.add_argument("--steps", help="comma-separated subset of steps to run: " + ", ".join(n for n, _ in STEPS))
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    add_force_argument(parser, "a demo already in --out (its checkpoints and report)")


# the files that mark a demo in --out; a new demo (or --steps) over them needs --force
_DEMO_FILES = ("report.json", "report.md", "ptt.pt", "ptt_scratch.pt", "dense.pt")


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.finetune_epochs < 1 or (args.dense_epochs is not None and args.dense_epochs < 1):
        raise UserError("--epochs/--dense-epochs/--finetune-epochs must be >= 1")
    if not args.finetune_lr > 0:
        raise UserError(f"--finetune-lr must be positive, got {args.finetune_lr}")
    check_output_dir(args.out, _DEMO_FILES, force=args.force)
    ctx = DemoContext(Path(args.out), args)
    ctx.out.mkdir(parents=True, exist_ok=True)
    wanted = None
    if args.steps:
        wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {n for n, _ in STEPS})
        if unknown:
            raise UserError(f"--steps: unknown {unknown}; steps are {', '.join(n for n, _ in STEPS)}")
    t0 = time.perf_counter()
    for name, fn in STEPS:
        if wanted is not None and name not in wanted:
            continue
        fn(ctx)
    ctx.log(f"demo took {time.perf_counter() - t0:.0f} s")
    return 1 if ctx.failed else 0
