"""``python -m sw demo`` (``make demo``): train a small PTT MS-ResNet (and a dense one) on the
embedded digits, check that the merged dense export scores the same, print the parameter/FLOP
comparison, and write everything under ``--out`` (default ``build/demo``).

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

from sw.fileio import add_force_argument, atomic_write, atomic_write_json, atomic_write_text, check_output_dir


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


def _train_cfg(ctx: DemoContext, mode: str, epochs: int):
    from sw.train import TrainConfig

    a = ctx.args
    return TrainConfig(arch="tiny", mode=mode, ranks=a.ranks, timesteps=a.timesteps, dataset=a.dataset, size=16,
                       epochs=epochs, batch_size=32, lr=0.1, seed=a.seed, out=str(ctx.path(f"runs/{mode}")),
                       threads=a.threads, max_train_samples=a.max_train_samples,
                       max_test_samples=a.max_test_samples).validate()


def _train(ctx: DemoContext, mode: str, epochs: int) -> dict:
    from sw.train import train

    cfg = _train_cfg(ctx, mode, epochs)
    ctx.log(f"--- training a {mode.upper()} tiny MS-ResNet on {cfg.dataset} ({epochs} epochs)")
    # the demo's run directories are its own scratch space: each demo replaces them
    summary = train(cfg, progress=not ctx.args.no_progress, log=ctx.log, force=True)
    final = ctx.path(f"{mode}.pt")
    atomic_write(final, lambda tmp: shutil.copyfile(summary["checkpoint"], tmp))
    summary["checkpoint"] = str(final)
    summary["metrics"] = str(Path(cfg.out) / "metrics.jsonl")
    if summary["final_test_acc"] < ctx.args.min_acc_factor * summary["chance_acc"]:
        ctx.failed.append(f"{mode} test accuracy {summary['final_test_acc']:.3f} is not well above chance "
                          f"({summary['chance_acc']:.3f})")
    return summary


def step_train_ptt(ctx: DemoContext) -> None:
    ctx.results["train_ptt"] = _train(ctx, "ptt", ctx.args.epochs)


def step_train_dense(ctx: DemoContext) -> None:
    if ctx.args.skip_dense:
        ctx.log("--- dense model skipped (--skip-dense)")
        return
    ctx.results["train_dense"] = _train(ctx, "dense", ctx.args.dense_epochs or ctx.args.epochs)


def step_export(ctx: DemoContext) -> None:
    from sw.commands.export import export_merged

    ctx.log("--- merging the PTT model into a dense one (paper Eq. 6) and comparing them")
    rep = export_merged(str(ctx.path("ptt.pt")), str(ctx.path("ptt_merged.pt")), progress=False)
    ctx.log(f"PTT test accuracy {rep['tt_acc']:.4f}, merged dense {rep['merged_acc']:.4f}, "
            f"max |logit difference| {rep['max_abs_logit_diff']:.2e}: {'same' if rep['agree'] else 'DIFFERENT'}")
    if not rep["agree"]:
        ctx.failed.append("the merged dense export does not score the same as the PTT model")
    ctx.results["export"] = rep


def step_stats(ctx: DemoContext) -> None:
    from sw.checkpoint import load_model
    from sw.stats import network_stats

    _, meta = load_model(ctx.path("ptt.pt"))
    hp = meta["model"]["hparams"]
    st = network_stats(hp["arch"], hp["in_channels"], hp["input_size"], hp["num_classes"], hp["timesteps"],
                       hp["mode"], hp["ranks"])
    ctx.results["stats"] = {k: st[k] for k in ("params", "flops", "dense_params", "dense_flops", "param_ratio",
                                                "flop_ratio", "ranks")}
    ctx.log(f"--- counts (no BN; FLOPs = MACs x T, sw.stats): PTT {st['params']:,} params, {st['flops']:,} FLOPs; "
            f"dense {st['dense_params']:,} params, {st['dense_flops']:,} FLOPs "
            f"({1 / st['param_ratio']:.2f}x fewer params, {1 / st['flop_ratio']:.2f}x fewer FLOPs)")


def step_plot(ctx: DemoContext) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in (("train_ptt", "PTT"), ("train_dense", "dense")):
        if key not in ctx.results:
            continue
        rows = [json.loads(line) for line in Path(ctx.results[key]["metrics"]).read_text().splitlines()]
        ax.plot([r["epoch"] for r in rows], [r["test_acc"] for r in rows], marker="o", label=f"{label} test")
        ax.plot([r["epoch"] for r in rows], [r["train_acc"] for r in rows], ls="--", label=f"{label} train")
    ax.axhline(0.1, color="grey", lw=0.8, label="chance")
    ax.set_xlabel("epoch")
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
    for key, label in (("train_ptt", "PTT"), ("train_dense", "dense")):
        if key in r:
            s = r[key]
            lines.append(f"- {label}: test accuracy {s['final_test_acc']:.4f} (chance {s['chance_acc']:.2f}), "
                         f"{s['epochs']} epochs, checkpoint `{s['checkpoint']}`")
    if "export" in r:
        e = r["export"]
        lines.append(f"- merged dense export of the PTT model: accuracy {e['merged_acc']:.4f} vs PTT "
                     f"{e['tt_acc']:.4f}, max |logit difference| {e['max_abs_logit_diff']:.2e}")
    if "stats" in r:
        s = r["stats"]
        lines.append(f"- parameters {s['params']:,} (PTT) vs {s['dense_params']:,} (dense); FLOPs {s['flops']:,} vs "
                     f"{s['dense_flops']:,}")
    if "rtl" in r:
        lines.append(f"- RTL: `{r['rtl']['verilog']}` ({r['rtl']['lines']:,} lines, configuration "
                     f"'{r['rtl']['config']}')")
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


def step_hw_finetune(ctx: DemoContext) -> None:
    """A short fine-tuning of the PTT model with the accelerator's integer forward, backward and
    weight gradients in the loop, beside float (``python -m sw hw-finetune`` at full length)."""
    from gen.config import load_config
    from sw.commands.hw_finetune import load_data
    from sw.hwtrain import finetune, summary_lines

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
    ("train_ptt", step_train_ptt),
    ("train_dense", step_train_dense),
    ("export", step_export),
    ("stats", step_stats),
    ("plot", step_plot),
    ("hw_finetune", step_hw_finetune),
    ("tinysnn", lambda ctx: _hardware_step("sw.tinysnn.demo_step", "step_tinysnn", ctx)),
    # the hardware half: generate the RTL, replay a trained TT layer on it, training energy.
    # This module is the orchestrator at the top of the package graph: it imports the steps of
    # gen/, cosim/ and model/ (when run), and nothing imports it.
    ("rtl", lambda ctx: _hardware_step("gen.demo_step", "step_rtl", ctx)),
    ("replay", lambda ctx: _hardware_step("cosim.demo_step", "step_replay", ctx)),
    ("train_step", lambda ctx: _hardware_step("cosim.demo_step", "step_train_step", ctx)),
    ("replay_network", lambda ctx: _hardware_step("cosim.demo_step", "step_replay_network", ctx)),
    ("energy", lambda ctx: _hardware_step("model.demo_step", "step_energy", ctx)),
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
        raise ValueError(f"demo step {name!r} exists already")
    STEPS.insert(names.index(before), (name, fn))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="build/demo", help="output directory (default build/demo)")
    parser.add_argument("--epochs", type=int, default=12, help="PTT training epochs (default 12)")
    parser.add_argument("--dense-epochs", type=int, default=None, help="dense training epochs (default: --epochs)")
    parser.add_argument("--skip-dense", action="store_true", help="do not train the dense comparison model")
    parser.add_argument("--ranks", default="uniform:8", help="PTT ranks (default uniform:8)")
    parser.add_argument("--timesteps", "-T", type=int, default=4)
    parser.add_argument("--dataset", default="digits", choices=("digits", "digits-events"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="train on a prefix (smoke runs)")
    parser.add_argument("--max-test-samples", type=int, default=None, help="test on a prefix (smoke runs)")
    parser.add_argument("--min-acc-factor", type=float, default=3.0,
                        help="a model counts as learning if its test accuracy is at least this times chance")
    parser.add_argument("--steps", help="comma-separated subset of steps to run: " + ", ".join(n for n, _ in STEPS))
    parser.add_argument("--no-progress", action="store_true")
    add_force_argument(parser, "a demo already in --out (its checkpoints and report)")


# the files that mark a demo in --out; a new demo (or --steps) over them needs --force
_DEMO_FILES = ("report.json", "report.md", "ptt.pt", "dense.pt")


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1 or (args.dense_epochs is not None and args.dense_epochs < 1):
        raise ValueError("--epochs/--dense-epochs must be >= 1")
    check_output_dir(args.out, _DEMO_FILES, force=args.force)
    ctx = DemoContext(Path(args.out), args)
    ctx.out.mkdir(parents=True, exist_ok=True)
    wanted = None
    if args.steps:
        wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {n for n, _ in STEPS})
        if unknown:
            raise ValueError(f"--steps: unknown {unknown}; steps are {', '.join(n for n, _ in STEPS)}")
    t0 = time.perf_counter()
    for name, fn in STEPS:
        if wanted is not None and name not in wanted:
            continue
        fn(ctx)
    ctx.log(f"demo took {time.perf_counter() - t0:.0f} s")
    return 1 if ctx.failed else 0
