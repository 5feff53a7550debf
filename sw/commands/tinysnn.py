"""``python -m sw tinysnn train|eval|explore|select``: the tinySNN STDP networks.

- ``train``: train the baseline (Diehl & Cook) or tinySNN network with STDP (FP32, or ITQ with
  ``--itq --weight-bits B [--neuron-bits B]``), label, evaluate; writes ``model.pt``,
  ``receptive_fields.png``, ``confusion.png`` and ``result.json`` under ``--out``.
- ``eval``: evaluate a saved model, optionally post-training quantised (``--weight-bits``...).
- ``explore``: train each variant in FP32 and evaluate every candidate of the precision x
  rounding x PTQ/ITQ grid (accuracy, memory, training / inference energy); writes
  ``candidates.json`` / ``.csv``, the selection for the default mus and ``pareto.png``.
- ``select``: reward-based selection from an explore's ``candidates.json`` for given mus.
- ``bench-peer``: the speed benchmark: the Diehl & Cook baseline here and in Brian2 (a
  benchmark-only environment, ``make brian2-venv``) on the same images; time per training image
  and accuracy.

The same search for a TT-SNN on the accelerator's integer formats is ``python -m model
hw-explore`` (model/ prices the accelerator's energy, which sw/ may not import).

Every table has a ``--json`` form (one object on stdout).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from ttsnn.sw.fileio import atomic_write_json, atomic_write_text
from ttsnn.sw.cli_util import MissingFileError, UserError

DEFAULT_MUS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def _add_data(p: argparse.ArgumentParser) -> None:
    from ttsnn.sw.tinysnn.data import DATASETS

    p.add_argument("--dataset", default="digits", choices=tuple(DATASETS), help="default: the embedded digits")
    p.add_argument("--data-path", default=None, help="directory of the IDX files (mnist, fashion-mnist)")
    p.add_argument("--max-train", type=int, default=None, help="train (and label) on the first N images")
    p.add_argument("--max-test", type=int, default=None, help="test on the first N images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def _add_net(p: argparse.ArgumentParser, variant: bool = True) -> None:
    if variant:
        p.add_argument("--variant", default="tinysnn", choices=("baseline", "tinysnn"),
                           help="baseline (the reference STDP network) | tinysnn (default)")
    p.add_argument("--neurons", type=int, default=None, help="excitatory neurons (default 100)")
    p.add_argument("--t-present", type=float, default=None, help="presentation time in ms (default 350)")
    p.add_argument("--epochs", type=int, default=1, help="STDP epochs, >= 1 (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other SNNConfig constant (repeatable), e.g. --set nu_post=0.005")


def _add_quant(p: argparse.ArgumentParser) -> None:
    from ttsnn.sw.tinysnn.fixedpoint import ROUNDING_MODES

    p.add_argument("--weight-bits", type=int, default=32, help="weight precision (32: FP32)")
    p.add_argument("--neuron-bits", type=int, default=32, help="membrane / threshold precision (32: FP32)")
    p.add_argument("--rounding", default="nearest", choices=ROUNDING_MODES,
                   help=f"rounding of the quantised network: {' | '.join(ROUNDING_MODES)} (default nearest)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the tensors are small)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    tr = sub.add_parser("train", help="train with STDP, label, evaluate")
    _add_data(tr)
    _add_net(tr)
    _add_quant(tr)
    tr.add_argument("--itq", action="store_true", help="quantise during training (in-training quantisation)")
    tr.add_argument("--out", default="build/tinysnn/train", help="output folder (default build/tinysnn/train)")
    ev = sub.add_parser("eval", help="evaluate a saved model (optionally post-training quantised)")
    ev.add_argument("--model", required=True, help="a model written by `tinysnn train` (its --out folder's file)")
    _add_data(ev)
    _add_quant(ev)
    ev.add_argument("--out", default=None, help="also write result.json and plots here")
    ex = sub.add_parser("explore", help="the quantisation search: every candidate's accuracy, memory, energy")
    _add_data(ex)
    _add_net(ex, variant=False)
    ex.add_argument("--variants", default="baseline,tinysnn", help="comma list out of baseline, tinysnn (default both)")
    ex.add_argument("--precisions", default="32,16,8,6,4", help="PTQ precisions (32 = the FP32 model)")
    ex.add_argument("--roundings", default="truncate,nearest,stochastic",
                    help="comma list out of truncate, nearest, stochastic (default all three)")
    ex.add_argument("--itq-precisions", default="8", help="ITQ precisions ('' for none)")
    ex.add_argument("--itq-variants", default="baseline,tinysnn", help="variants that get ITQ candidates")
    ex.add_argument("--out", default="build/tinysnn/explore", help="output folder (default build/tinysnn/explore)")
    se = sub.add_parser("select", help="reward-based model selection from candidates.json")
    se.add_argument("--candidates", required=True, help="candidates.json written by explore")
    se.add_argument("--mu", default=",".join(f"{m:g}" for m in DEFAULT_MUS), help="comma-separated mu values")
    se.add_argument("--out", default=None, help="write selection.json and pareto.png here")
    se.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    be = sub.add_parser("bench-peer", help="speed benchmark: the baseline here and in Brian2, same images")
    _add_data(be)
    _add_net(be, variant=False)
    be.add_argument("--peer-python", default=None, help="Python of the peer's environment "
                    "(default build/brian2-venv/bin/python, made by `make brian2-venv`)")
    be.add_argument("--peer-target", default="numpy", choices=("numpy", "cython"),
                    help="Brian2's runtime code generation (default numpy)")
    be.add_argument("--out", default="build/tinysnn/bench_peer", help="writes bench_peer.json here")


# ---- helpers ---------------------------------------------------------------------------------

def _config(args: argparse.Namespace, n_inputs: int, variant: str = "tinysnn"):
    from dataclasses import fields

    from ttsnn.sw.tinysnn.config import SNNConfig

    kw: dict[str, Any] = {"variant": getattr(args, "variant", variant), "n_inputs": n_inputs, "seed": args.seed}
    if args.neurons is not None:
        kw["n_neurons"] = args.neurons
    if args.t_present is not None:
        kw["t_present"] = args.t_present
    types = {f.name: f.type for f in fields(SNNConfig)}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise UserError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
        kind = str(types[key]).replace("'", "")
        conv = int if kind == "int" else str if kind == "str" else float
        if kind.endswith("| None") and value.lower() == "none":
            kw[key] = None
            continue
        try:
            kw[key] = conv(value)
        except ValueError:
            raise UserError(f"--set {key}: {value!r} is not a valid {conv.__name__}") from None
    return SNNConfig(**kw).validate()


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, and never with --json or --no-progress."""
    return not (args.json or args.no_progress) and sys.stderr.isatty()


def _data(args: argparse.Namespace):
    from ttsnn.sw.tinysnn.data import load_images

    train = load_images(args.dataset, True, args.data_path).head(args.max_train)
    test = load_images(args.dataset, False, args.data_path).head(args.max_test)
    return train, test


def _energy_table():
    from ttsnn.model.energy_table import load_energy_table
    return load_energy_table()


def _report(model, result: dict, spec, table=None) -> dict[str, Any]:
    from ttsnn.sw.tinysnn import cost

    costs = cost.operation_costs_pj(model.cfg, spec, table if table is not None else _energy_table())
    return {"variant": model.cfg.variant, "scheme": "ITQ" if spec.in_training else ("FP32" if spec.is_fp32 else "PTQ"),
            "formats": {"weight": spec.weight.describe(), "membrane": spec.membrane.describe(),
                        "threshold": spec.threshold.describe()}, "rounding": spec.rounding,
            "accuracy": result["accuracy"], "memory_bits": result["memory_bits"],
            "fp32_memory_bits": result["fp32_memory_bits"],
            "memory": [{"name": n, "count": c, "bits": b} for n, c, b in cost.memory_entries(model.cfg, spec)],
            "train_energy_uj_per_image": cost.energy_pj(model.train_ops, costs)["total"] / 1e6,
            "infer_energy_uj_per_image": cost.energy_pj(result["infer_ops"], costs)["total"] / 1e6,
            "train_ops_per_image": model.train_ops.per_image(),
            "infer_ops_per_image": result["infer_ops"].per_image(),
            "confusion": result["confusion"].tolist(), "config": model.cfg.to_dict()}


def _print_report(rep: dict[str, Any], head: str) -> None:
    print(head)
    f = rep["formats"]
    print(f"  formats   weight {f['weight']}, membrane {f['membrane']}, threshold {f['threshold']} "
          f"({rep['rounding']} rounding, {rep['scheme']})")
    print(f"  accuracy  {rep['accuracy']:.4f}")
    print(f"  memory    {rep['memory_bits'] / 8 / 1024:.2f} KiB ({rep['fp32_memory_bits'] / rep['memory_bits']:.2f}x "
          f"smaller than FP32)")
    for m in rep["memory"]:
        print(f"    {m['name']:<40} {m['count']:>8,} x {m['bits']:>2} bits")
    if rep["train_ops_per_image"].get("steps"):
        print(f"  energy    training {rep['train_energy_uj_per_image']:.3f} uJ/image, "
              f"inference {rep['infer_energy_uj_per_image']:.3f} uJ/image (model/ 28 nm table)")
    else:
        print(f"  energy    inference {rep['infer_energy_uj_per_image']:.3f} uJ/image (model/ 28 nm table)")


def _plots(out: Path, model, result: dict, image_shape) -> list[str]:
    from ttsnn.sw.tinysnn.plots import plot_confusion, plot_receptive_fields

    a = plot_receptive_fields(result["weights"], image_shape, out / "receptive_fields.png", result["assignments"],
                              title=f"{model.cfg.variant}: learned weights (neuron label in blue)")
    b = plot_confusion(result["confusion"], out / "confusion.png",
                       title=f"{model.cfg.variant}: accuracy {result['accuracy']:.3f}")
    return [str(a), str(b)]


# ---- actions ---------------------------------------------------------------------------------

def run_train(args: argparse.Namespace) -> int:
    import torch

    from ttsnn.sw.tinysnn.experiment import evaluate, quant_spec, save_model, train_model
    from ttsnn.sw.tinysnn.fixedpoint import QuantSpec

    train, test = _data(args)
    cfg = _config(args, train.pixels.shape[1])
    progress = _progress(args)
    quantised = args.weight_bits != 32 or args.neuron_bits != 32
    if args.itq and not quantised:
        raise UserError("--itq needs --weight-bits and/or --neuron-bits below 32")
    model = train_model(cfg, train, epochs=args.epochs, progress=progress, desc=f"{cfg.variant} fp32")
    spec = QuantSpec()
    if quantised:
        spec = quant_spec(model.ranges, args.weight_bits, args.neuron_bits, args.rounding, args.itq, args.seed)
        if args.itq:  # train again in the formats sized from the FP32 run's ranges
            model = train_model(cfg, train, epochs=args.epochs, spec=spec, ranges_from=model.ranges,
                                progress=progress, desc=f"{cfg.variant} ITQ")
    result = evaluate(model, train, test, spec)
    out = Path(args.out)
    save_model(model, out / "model.pt")
    rep = _report(model, result, spec)
    rep.update(dataset=train.name, train_images=len(train), test_images=len(test), epochs=args.epochs,
               train_seconds_per_image=model.train_seconds / max(model.train_ops.images, 1),
               train_cpu_seconds_per_image=model.train_cpu_seconds / max(model.train_ops.images, 1),
               model=str(out / "model.pt"), plots=_plots(out, model, result, train.shape))
    atomic_write_json(out / "result.json", rep)
    if args.json:
        print(json.dumps(rep))
        return 0
    _print_report(rep, f"{cfg.variant} on {train.name}: {len(train)} training images x {args.epochs} epoch(s), "
                       f"{len(test)} test images, {cfg.n_neurons} neurons, {cfg.steps} steps/image")
    print(f"  speed     {rep['train_cpu_seconds_per_image'] * 1e3:.1f} ms CPU ({rep['train_seconds_per_image'] * 1e3:.1f} ms "
          f"wall) per training image, {torch.get_num_threads()} thread(s), this machine")
    print(f"  wrote     {rep['model']}, {', '.join(rep['plots'])}, {out / 'result.json'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ttsnn.sw.tinysnn.experiment import evaluate, load_model, quant_spec

    model = load_model(args.model)
    train, test = _data(args)
    if train.pixels.shape[1] != model.cfg.n_inputs:
        raise UserError(f"{args.model} has {model.cfg.n_inputs} inputs but {train.name} images have "
                        f"{train.pixels.shape[1]} pixels")
    spec = model.spec
    if args.weight_bits != 32 or args.neuron_bits != 32:
        if not model.spec.is_fp32:
            raise UserError(f"{args.model} was trained quantised (ITQ); evaluate it without --weight-bits/--neuron-bits")
        spec = quant_spec(model.ranges, args.weight_bits, args.neuron_bits, args.rounding)
    result = evaluate(model, train, test, spec)
    rep = _report(model, result, spec)
    rep.update(model=str(args.model), dataset=train.name, test_images=len(test))
    if args.out:
        out = Path(args.out)
        rep["plots"] = _plots(out, model, result, train.shape)
        atomic_write_json(out / "result.json", rep)
    if args.json:
        print(json.dumps(rep))
        return 0
    _print_report(rep, f"{args.model} ({model.cfg.variant}) on {len(test)} {train.name} test images")
    return 0


def _csv(rows: list[dict[str, Any]]) -> str:
    """The scalar fields of the candidates (operation counts stay in the JSON)."""
    keys = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _print_candidates(rows: list[dict[str, Any]]) -> None:
    head = (f"{'candidate':<34} {'w fmt':>7} {'v fmt':>7} {'accuracy':>8} {'memory KiB':>10} {'saving':>6} "
            f"{'train uJ':>9} {'infer uJ':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['name']:<34} {r['weight_format']:>7} {r['membrane_format']:>7} {r['accuracy']:>8.4f} "
              f"{r['memory_bits'] / 8 / 1024:>10.2f} {r['memory_saving']:>5.2f}x "
              f"{r['train_energy_uj_per_image']:>9.3f} {r['infer_energy_uj_per_image']:>9.3f}")


def _print_selection(sel: list[dict[str, Any]]) -> None:
    print(f"{'mu':>6}  {'chosen':<34} {'accuracy':>8} {'memory/FP32':>11} {'reward':>8}")
    for s in sel:
        print(f"{s['mu']:>6g}  {s['name']:<34} {s['accuracy']:>8.4f} {s['memory_ratio']:>11.3f} {s['reward']:>8.4f}")


def run_explore(args: argparse.Namespace) -> int:
    from ttsnn.sw.tinysnn.experiment import explore, save_model
    from ttsnn.sw.tinysnn.plots import plot_pareto
    from ttsnn.sw.tinysnn.select import pareto_front, select

    train, test = _data(args)
    cfg = _config(args, train.pixels.shape[1])
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in ("baseline", "tinysnn"):
            raise UserError(f"--variants: unknown {v!r}; choose baseline and/or tinysnn")
    roundings = [r.strip() for r in args.roundings.split(",") if r.strip()]
    from ttsnn.sw.tinysnn.fixedpoint import ROUNDING_MODES
    for r in roundings:
        if r not in ROUNDING_MODES:
            raise UserError(f"--roundings: unknown {r!r}; choose from {', '.join(ROUNDING_MODES)}")
    precisions, itq = _ints(args.precisions), _ints(args.itq_precisions)
    for b in precisions + itq:
        if not 2 <= b <= 32:
            raise UserError(f"precisions must be 2..32 bits, got {b}")
    res = explore(cfg, train, test, table=_energy_table(), variants=variants, precisions=precisions, roundings=roundings,
                  itq_precisions=itq, itq_variants=[v.strip() for v in args.itq_variants.split(",")],
                  epochs=args.epochs, progress=_progress(args))
    rows = res["candidates"]
    out = Path(args.out)
    for v, m in res["models"].items():
        save_model(m, out / f"{v}_fp32.pt")
    sel = select(rows, DEFAULT_MUS)
    front = pareto_front(rows)
    plot = plot_pareto(rows, front, out / "pareto.png", sel)
    obj = {"dataset": train.name, "train_images": len(train), "test_images": len(test), "epochs": args.epochs,
           "config": cfg.to_dict(), "candidates": rows, "pareto_front": [rows[i]["name"] for i in front],
           "selection": sel, "summary": res["summary"], "plot": str(plot)}
    atomic_write_json(out / "candidates.json", obj)
    atomic_write_text(out / "candidates.csv", _csv(rows))
    if args.json:
        print(json.dumps(obj))
        return 0
    print(f"explore on {train.name}: {len(train)} training images x {args.epochs} epoch(s), {len(test)} test "
          f"images, {cfg.n_neurons} neurons, {cfg.steps} steps/image")
    _print_candidates(rows)
    print(f"\nPareto front: {', '.join(obj['pareto_front'])}\n")
    _print_selection(sel)
    print("\nsummary (paper's quantities, measured here):")
    for k, v in res["summary"].items():
        print(f"  {k}: {v if not isinstance(v, float) else f'{v:.4f}'}")
    print(f"wrote {out / 'candidates.json'}, {out / 'candidates.csv'}, {plot}")
    return 0


def run_select(args: argparse.Namespace) -> int:
    from ttsnn.sw.tinysnn.plots import plot_pareto
    from ttsnn.sw.tinysnn.select import pareto_front, select

    p = Path(args.candidates)
    if not p.is_file():
        raise MissingFileError(f"candidates file {str(p)!r} not found; write one with `python -m sw tinysnn explore`")
    try:
        obj = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}: not valid JSON ({exc})") from None
    rows = obj.get("candidates") if isinstance(obj, dict) else obj
    if not isinstance(rows, list):
        raise UserError(f"{p}: expected an object with a 'candidates' list (from explore) or a list of candidates")
    mus = _floats(args.mu)
    if not mus:
        raise UserError("--mu: give at least one value")
    sel = select(rows, mus)
    front = pareto_front(rows)
    res = {"candidates": str(p), "selection": sel, "pareto_front": [rows[i]["name"] for i in front]}
    if args.out:
        res["plot"] = str(plot_pareto(rows, front, Path(args.out) / "pareto.png", sel))
        atomic_write_json(Path(args.out) / "selection.json", res)
    if args.json:
        print(json.dumps(res))
        return 0
    _print_selection(sel)
    print(f"Pareto front: {', '.join(res['pareto_front'])}")
    return 0


def run_bench_peer(args: argparse.Namespace) -> int:
    from ttsnn.sw.tinysnn.bench_peer import DEFAULT_PEER_PYTHON, bench_peer

    train, test = _data(args)
    cfg = _config(args, train.pixels.shape[1], variant="baseline")
    res = bench_peer(cfg, train, test, peer_python=args.peer_python or DEFAULT_PEER_PYTHON,
                     target=args.peer_target, progress=_progress(args))
    atomic_write_json(Path(args.out) / "bench_peer.json", res)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['network']} on {res['dataset']}: {res['train_images']} training images (also labelled), "
          f"{res['test_images']} test images, {res['neurons']} neurons, {res['inputs']} inputs, "
          f"{res['t_present_ms']:g} ms presentations")
    print(f"{'simulator':<62} {'CPU s/img':>9} {'wall s/img':>10} {'accuracy':>8}")
    for side in ("ours", "peer"):
        r = res[side]
        print(f"{r['simulator']:<62} {r['train_cpu_s_per_image']:>9.4f} {r['train_wall_s_per_image']:>10.4f} "
              f"{r['accuracy']:>8.3f}")
    p = res["peer"]
    print(f"speed-up (peer / ours): {res['speedup_cpu']:.1f}x CPU time, {res['speedup_wall']:.1f}x wall time per "
          f"training image; the peer's first image took {p['first_image_cpu_s']:.2f} s CPU (code generation), "
          f"building its network {p['build_seconds']:.1f} s")
    print(f"wrote {Path(args.out) / 'bench_peer.json'}")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    actions = {"train": run_train, "eval": run_eval, "explore": run_explore, "select": run_select,
               "bench-peer": run_bench_peer}
    if getattr(args, "epochs", 1) < 1:
        raise UserError("--epochs must be >= 1")
    if args.threads < 1:
        raise UserError("--threads must be >= 1")
    # the per-step tensors are small: more intra-op threads only add synchronisation
    torch.set_num_threads(args.threads)
    return actions[args.action](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
