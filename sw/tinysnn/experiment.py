"""Drivers behind ``python -m sw tinysnn``: train, quantise, evaluate, explore, and the files.

A trained model is :class:`SNNModel` (configuration, weights, stored thresholds, the ranges
observed while training in FP32). :func:`evaluate` quantises it (PTQ; an ITQ model is already
on its grid), labels the neurons on the labelled training images and scores the test images.
:func:`explore` trains each variant in FP32, then builds every candidate of the precision x
rounding x (PTQ, ITQ) grid and returns one row per candidate: accuracy, memory, energy.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ttsnn.sw.fileio import atomic_write
from ttsnn.sw.tinysnn import cost, labels, network
from ttsnn.sw.tinysnn.config import SNNConfig
from ttsnn.sw.tinysnn.data import ImageSet
from ttsnn.sw.tinysnn.fixedpoint import FP32, FixedPoint, QuantSpec
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["SNNModel", "train_model", "quant_spec", "evaluate", "explore", "save_model", "load_model",
           "MODEL_FORMAT"]

MODEL_FORMAT = "tinysnn-model-1"


@dataclass
class SNNModel:
    cfg: SNNConfig
    weights: Tensor          # [n_inputs, n_neurons]
    thresholds: Tensor       # [n_neurons], stored relative to rest: v_thresh - v_rest + theta
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    spec: QuantSpec = field(default_factory=QuantSpec)  # the formats it was trained in (ITQ) or FP32
    train_ops: network.OpCounts = field(default_factory=network.OpCounts)
    train_seconds: float = 0.0      # wall clock
    train_cpu_seconds: float = 0.0  # this process's CPU time (single-threaded: the fair figure on a shared machine)


def quant_spec(ranges: dict[str, tuple[float, float]], weight_bits: int, neuron_bits: int | None,
               rounding: str = "nearest", in_training: bool = False, seed: int = 0) -> QuantSpec:
    """Formats for ``weight_bits`` weights and ``neuron_bits`` neuron parameters (None or 32:
    FP32), the integer parts from the observed ``ranges``."""
    def fmt(name: str, bits: int | None) -> FixedPoint:
        if bits is None or bits == 32:
            return FP32
        if name not in ranges:
            raise UserError(f"no observed range of {name!r} to size its fixed-point format; train in FP32 first")
        lo, hi = ranges[name]
        return FixedPoint.for_range(bits, lo, hi)

    return QuantSpec(weight=fmt("weight", weight_bits), membrane=fmt("membrane", neuron_bits),
                     threshold=fmt("threshold", neuron_bits),
                     inh_membrane=fmt("inh_membrane", neuron_bits) if "inh_membrane" in ranges else FP32,
                     rounding=rounding, in_training=in_training, seed=seed)


def train_model(cfg: SNNConfig, data: ImageSet, *, epochs: int = 1, spec: QuantSpec | None = None,
                ranges_from: dict[str, tuple[float, float]] | None = None, progress: bool = True,
                desc: str = "train") -> SNNModel:
    """Train with STDP on ``data`` (labels unused). With an ITQ ``spec`` the weights are
    re-quantised at every update and the neuron state at every step."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    cfg.validate()
    if data.pixels.shape[1] != cfg.n_inputs:
        raise UserError(f"{data.name} images have {data.pixels.shape[1]} pixels but the network has "
                        f"{cfg.n_inputs} inputs")
    if epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    spec = spec or QuantSpec()
    gen = torch.Generator().manual_seed(cfg.seed)
    w = network.initial_weights(cfg, gen)
    if spec.in_training:
        w = spec.weight.quantize(w, spec.rounding, gen)
    thr = torch.full((cfg.n_neurons,), cfg.thresh_rel)
    ops, rec = network.OpCounts(), (network.RangeRecorder() if spec.is_fp32 else None)
    order_gen = torch.Generator().manual_seed(cfg.seed + 1)
    t0, c0 = time.perf_counter(), time.process_time()
    with tqdm(total=epochs * len(data), desc=desc, disable=not progress, file=sys.stderr, leave=False) as bar:
        for _ in range(epochs):
            for i in torch.randperm(len(data), generator=order_gen).tolist():
                w, thr, _ = network.train_image(cfg, w, thr, data.pixels[i], gen, spec, ops, rec)
                bar.update()
    ranges = dict(ranges_from or {})
    if rec is not None:
        ranges.update(rec.as_dict())
        ranges["weight"] = (float(w.min()), float(w.max()))
    return SNNModel(cfg, w, thr, ranges, spec, ops, time.perf_counter() - t0, time.process_time() - c0)


def evaluate(model: SNNModel, label_data: ImageSet, test_data: ImageSet, spec: QuantSpec | None = None,
             *, seed: int = 1) -> dict[str, Any]:
    """Quantise (PTQ with ``spec``; default: the model's own formats), label, predict.

    Returns accuracy, confusion matrix, assignments, the spec's memory and the inference
    operation counts per test image."""
    cfg = model.cfg
    spec = spec or model.spec
    gen = torch.Generator().manual_seed(seed)
    w = spec.weight.quantize(model.weights, spec.rounding, gen)
    thr = spec.threshold.quantize(model.thresholds, spec.rounding, gen)
    label_counts = network.infer(cfg, w, thr, label_data.pixels, gen, spec)
    assignments = labels.assign_labels(label_counts, label_data.labels, label_data.num_classes)
    ops = network.OpCounts()
    test_counts = network.infer(cfg, w, thr, test_data.pixels, gen, spec, ops)
    pred = labels.predict(test_counts, assignments, test_data.num_classes)
    return {"accuracy": labels.accuracy(pred, test_data.labels),
            "confusion": labels.confusion_matrix(pred, test_data.labels, test_data.num_classes),
            "assignments": assignments, "weights": w, "infer_ops": ops,
            "memory_bits": cost.memory_bits(cfg, spec), "fp32_memory_bits": cost.memory_bits(cfg, QuantSpec())}


def candidate_row(name: str, model: SNNModel, spec: QuantSpec, result: dict[str, Any],
                  train_ops: network.OpCounts, table: Any) -> dict[str, Any]:
    """One candidate: formats, accuracy, memory, energy per image. Training is priced in the
    formats it ran in (the model's: FP32 for PTQ candidates), inference in ``spec``'s."""
    costs = cost.operation_costs_pj(model.cfg, spec, table)
    train_costs = cost.operation_costs_pj(model.cfg, model.spec, table)
    return {"name": name, "variant": model.cfg.variant, "scheme": "ITQ" if spec.in_training else
            ("FP32" if spec.is_fp32 else "PTQ"),
            "weight_bits": spec.weight.bits, "neuron_bits": spec.membrane.bits, "rounding": spec.rounding,
            "weight_format": spec.weight.describe(), "membrane_format": spec.membrane.describe(),
            "threshold_format": spec.threshold.describe(),
            "accuracy": result["accuracy"], "memory_bits": result["memory_bits"],
            "fp32_memory_bits": result["fp32_memory_bits"],
            "memory_saving": result["fp32_memory_bits"] / result["memory_bits"],
            "train_energy_uj_per_image": cost.energy_pj(train_ops, train_costs)["total"] / 1e6,
            "infer_energy_uj_per_image": cost.energy_pj(result["infer_ops"], costs)["total"] / 1e6,
            "train_ops_per_image": train_ops.per_image(), "infer_ops_per_image": result["infer_ops"].per_image()}


def explore(cfg: SNNConfig, train: ImageSet, test: ImageSet, *, variants: Sequence[str] = ("baseline", "tinysnn"),
            precisions: Sequence[int] = (32, 16, 8, 6, 4), roundings: Sequence[str] = ("truncate", "nearest", "stochastic"),
            itq_precisions: Sequence[int] = (8,), neuron_params: Sequence[bool] = (False, True), epochs: int = 1,
            itq_variants: Sequence[str] | None = None,
            progress: bool = True, table: Any = None) -> dict[str, Any]:
    """Every candidate of the grid, for each variant. PTQ candidates reuse the FP32 training;
    each ITQ candidate (``itq_precisions`` x ``roundings``, weights and neuron parameters; for the
    ``itq_variants``, default all) trains anew in its formats with the FP32 run's ranges.
    ``table``: the ``model.energy_table`` table to price operations with (required)."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    if table is None:
        raise UserError("explore: pass the energy table (model.energy_table.load_energy_table())")
    rows: list[dict[str, Any]] = []
    models: dict[str, SNNModel] = {}
    jobs = []
    for variant in variants:
        jobs.append((variant, None))
        for bits in precisions:
            if bits == 32:
                continue
            for rnd in roundings:
                for neu in neuron_params:
                    jobs.append((variant, ("PTQ", bits, rnd, neu)))
        for bits in itq_precisions if itq_variants is None or variant in itq_variants else ():
            for rnd in roundings:
                jobs.append((variant, ("ITQ", bits, rnd, True)))
    for variant, job in tqdm(jobs, desc="explore", disable=not progress, file=sys.stderr):
        vcfg = cfg.with_(variant=variant)
        if job is None:
            model = train_model(vcfg, train, epochs=epochs, progress=progress, desc=f"{variant} fp32")
            models[variant] = model
            spec, train_ops = QuantSpec(), model.train_ops
            name = f"{variant} fp32"
        else:
            scheme, bits, rnd, neu = job
            base = models[variant]
            spec = quant_spec(base.ranges, bits, bits if neu else None, rnd, scheme == "ITQ", seed=cfg.seed)
            name = f"{variant} {scheme} w{bits}{f' n{bits}' if neu else ''} {rnd}"
            if scheme == "ITQ":
                model = train_model(vcfg, train, epochs=epochs, spec=spec, ranges_from=base.ranges,
                                    progress=progress, desc=name)
                train_ops = model.train_ops
            else:
                model, train_ops = base, base.train_ops
        result = evaluate(model, train, test, spec)
        row = candidate_row(name, model, spec, result, train_ops, table)
        if job is None:
            row["train_seconds_per_image"] = model.train_seconds / max(model.train_ops.images, 1)
            row["train_cpu_seconds_per_image"] = model.train_cpu_seconds / max(model.train_ops.images, 1)
        rows.append(row)
    return {"candidates": rows, "models": models, "summary": paper_summary(rows)}


def _find(rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def paper_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the paper reports, from the candidates that exist: accuracies at FP32 / 8 bits
    (best rounding), memory savings at 8 bits, energy savings versus the FP32 baseline."""
    out: dict[str, Any] = {}
    base = _find(rows, variant="baseline", scheme="FP32")
    tiny = _find(rows, variant="tinysnn", scheme="FP32")
    for variant in ("baseline", "tinysnn"):
        fp = _find(rows, variant=variant, scheme="FP32")
        if fp:
            out[f"{variant}_fp32_accuracy"] = fp["accuracy"]
        for scheme in ("PTQ", "ITQ"):
            eight = [r for r in rows if r["variant"] == variant and r["scheme"] == scheme and r["weight_bits"] == 8]
            if eight:
                best = max(eight, key=lambda r: r["accuracy"])
                out[f"{variant}_{scheme.lower()}8_best"] = {"name": best["name"], "accuracy": best["accuracy"]}
    w8 = _find(rows, variant="tinysnn", scheme="PTQ", weight_bits=8, neuron_bits=32)
    wn8 = _find(rows, variant="tinysnn", scheme="PTQ", weight_bits=8, neuron_bits=8)
    if w8:
        out["memory_saving_8bit_weights"] = w8["memory_saving"]
    if wn8:
        out["memory_saving_8bit_weights_and_neurons"] = wn8["memory_saving"]
    # 8-bit energy: inference of the PTQ model, training of the ITQ model (trained in 8 bits)
    eight = {"infer": [r for r in rows if r["variant"] == "tinysnn" and r["scheme"] == "PTQ"
                       and r["weight_bits"] == 8 and r["neuron_bits"] == 8],
             "train": [r for r in rows if r["variant"] == "tinysnn" and r["scheme"] == "ITQ" and r["weight_bits"] == 8]}
    if base and tiny:
        for phase in ("train", "infer"):
            k = f"{phase}_energy_uj_per_image"
            out[f"{phase}_energy_saving_tinysnn_fp32"] = base[k] / tiny[k]
            if eight[phase]:
                best = max(eight[phase], key=lambda r: r["accuracy"])
                out[f"{phase}_energy_saving_tinysnn_8bit"] = {"name": best["name"], "saving": base[k] / best[k]}
        out["train_cpu_seconds_per_image"] = {"baseline": base.get("train_cpu_seconds_per_image"),
                                              "tinysnn": tiny.get("train_cpu_seconds_per_image")}
    return out


# ---- files -----------------------------------------------------------------------------------

def _spec_dict(spec: QuantSpec) -> dict[str, Any]:
    def f(x: FixedPoint) -> list:
        return [x.bits, x.int_bits, x.signed, x.fp32]
    return {"weight": f(spec.weight), "membrane": f(spec.membrane), "threshold": f(spec.threshold),
            "inh_membrane": f(spec.inh_membrane), "rounding": spec.rounding, "in_training": spec.in_training,
            "seed": spec.seed}


def _spec_from(d: dict[str, Any]) -> QuantSpec:
    def f(x: list) -> FixedPoint:
        return FixedPoint(int(x[0]), int(x[1]), bool(x[2]), bool(x[3]))
    return QuantSpec(f(d["weight"]), f(d["membrane"]), f(d["threshold"]), f(d["inh_membrane"]),
                     str(d["rounding"]), bool(d["in_training"]), int(d["seed"]))


def save_model(model: SNNModel, path: str | Path) -> Path:
    obj = {"format": MODEL_FORMAT, "config": model.cfg.to_dict(), "weights": model.weights,
           "thresholds": model.thresholds, "ranges": {k: list(v) for k, v in model.ranges.items()},
           "spec": _spec_dict(model.spec), "train_ops": vars(model.train_ops)}
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_model(path: str | Path) -> SNNModel:
    """Load a model written by :func:`save_model` (tensors and plain data only: nothing executes)."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"model file {str(p)!r} not found; write one with `python -m sw tinysnn train`")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file: say so in one line
        raise UserError(f"{p}: not a tinySNN model file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise UserError(f"{p}: not a tinySNN model file (expected format {MODEL_FORMAT!r})")
    cfg = SNNConfig.from_dict(obj["config"])
    w, thr = obj["weights"], obj["thresholds"]
    if tuple(w.shape) != (cfg.n_inputs, cfg.n_neurons) or tuple(thr.shape) != (cfg.n_neurons,):
        raise UserError(f"{p}: weights {tuple(w.shape)} / thresholds {tuple(thr.shape)} do not match the "
                        f"configuration ({cfg.n_inputs} inputs, {cfg.n_neurons} neurons)")
    return SNNModel(cfg, w, thr, {k: (float(v[0]), float(v[1])) for k, v in obj["ranges"].items()},
                    _spec_from(obj["spec"]), network.OpCounts(**obj["train_ops"]))
