"""``python -m model hw-explore``: tinySNN's quantisation search and reward-based selection for a
trained TT-SNN on the accelerator (issue 19, section 3).

For every candidate (the accelerator's weight, activation and membrane widths x rounding, PTQ or
ITQ; :mod:`sw.tinysnn.accelerator`): the test accuracy with every TT layer computed by the
integer golden model, the memory (tinySNN's definition, or the weights alone), and the energy
of one training step (forward + backward + weight update) and of inference (the forward pass)
of one sample on the accelerator generated from a configuration with those widths
(:func:`derive_config`), from model/'s accelerator model and energy table. Selection is
tinySNN's reward, ``sw.tinysnn.select`` (one implementation); every configuration chosen for a
mu is written as a TOML file that ``python -m gen --config`` accepts.

Arithmetic the energy table lacks at a width (an 8-bit multiplier at 6 bits, say) is the
table's composition at its own width with the primitives of that width rescaled by
``sw.tinysnn.cost.op_energy_pj`` (the rule of the tinySNN costs: linear in bits, quadratic for
multipliers); buffer accesses are CACTI interpolations at any width already.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from ttsnn.gen.config import HardwareConfig, buffer_need_bytes, config_from_dict, load_config
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["derive_config", "config_toml", "widen_table", "candidate_energy", "parse_widths",
           "hw_explore", "add_arguments", "run"]

DEFAULT_MUS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
ROUNDING_COLOURS = {"nearest": "tab:blue", "truncate": "tab:orange", "stochastic": "tab:green",
                    "float": "tab:red"}


# ---- the hardware configuration of a candidate -----------------------------------------------

def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def derive_config(base: HardwareConfig, weight: int, activation: int, membrane: int,
                  name: str | None = None) -> HardwareConfig:
    """``base`` with the given widths, validated: the accumulator grows to ``weight +
    activation`` when narrower (and the backward accumulators with a wider weight or
    activation); the weight buffer is sized to exactly what its regions need at
    the new widths (as configs/paper.toml is), rounded up to whole words per bank; a buffer of
    activation or membrane words grows in proportion when those widen (it keeps its size when
    they narrow: more rows then fit), and the backward's trace region then grows to hold the
    output ring's trace words."""
    d = base.to_dict()
    bw = base.widths
    d["name"] = name or f"{base.name}_w{weight}a{activation}m{membrane}"
    d["widths"].update(weight=weight, activation=activation, membrane=membrane,
                       accumulator=max(bw.accumulator, weight + activation))
    # the backward sums grow with the operand widths (gen.config's rules): keep their headroom
    g = d["gradients"]
    g["accumulator"] += max(0, weight - bw.weight)
    g["wgrad_tile"] += max(0, activation - bw.activation)
    g["wgrad_batch"] = max(g["wgrad_batch"], g["wgrad_tile"])
    for buf, ratio in (("interstage", activation / bw.activation), ("residual", membrane / bw.membrane),
                       ("state_out", membrane / bw.membrane)):
        b = d["buffers"][buf]
        if ratio > 1:
            b["bytes"] = _round_up(int(b["bytes"] * ratio + 0.999), b["width_bits"] * b["banks"] // 8)
    # the forward writes a trace word per output ring word into the backward's trace region,
    # which must hold the ring (gen.config): a narrower membrane deepens the ring
    p, sb = base.lanes, d["buffers"]["state_out"]
    ring = sb["bytes"] * 8 // (p * membrane + p)
    g["trace_bytes"] = max(g["trace_bytes"], -(-ring * 4 * p // 8))
    # size the weight buffer from its regions (gen.config's own probe of what they need)
    wbuf = d["buffers"]["weight"]
    wbuf["bytes"] = _round_up(buffer_need_bytes(d, "weight"), wbuf["width_bits"] * wbuf["banks"] // 8)
    return config_from_dict(d, source=f"{d['name']} (derived from {base.name})")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)            # a JSON string is a valid TOML basic string
    raise TypeError(f"no TOML form for {type(v).__name__}")


def config_toml(cfg: HardwareConfig, header: Sequence[str] = ()) -> str:
    """The configuration as a TOML file ``gen.config.load_config`` reads back to an equal
    configuration (its ``to_dict``: scalars, tables, and the ``buffers.<name>`` tables)."""
    d = cfg.to_dict()
    lines = [f"# {h}" for h in header]
    lines += [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for sect, body in d.items():
        if not isinstance(body, dict):
            continue
        if sect == "buffers":
            for bname, b in body.items():
                lines += ["", f"[buffers.{bname}]"] + [f"{k} = {_toml_value(v)}" for k, v in b.items()]
            continue
        lines += ["", f"[{sect}]"] + [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


# ---- energy ----------------------------------------------------------------------------------

def widen_table(table: Any, keys: Iterable[tuple[str, str, int]]) -> Any:
    """``table`` with an action for every ``(component, action, bits)`` of ``keys`` it lacks:
    the same action's composition at the nearest tabled width ``b0``, its primitives of width
    ``b0`` taken at ``bits`` instead (``sw.tinysnn.cost.op_energy_pj``), the others unchanged
    (an 8-bit MAC ``mul/8 + add/16`` at 6 bits is ``mul/6 + add/16``)."""
    from ttsnn.sw.tinysnn.cost import op_energy_pj

    new = {}
    for comp, action, bits in set(keys):
        if comp == "dram" or comp.startswith("glb.") or (comp, action, bits) in table.actions:
            continue
        tabled = [b for (c, a, b) in table.compositions if (c, a) == (comp, action)]
        if not tabled:
            raise KeyError(f"energy table {table.name!r} has no action {comp}.{action} at any width")
        b0 = min(tabled, key=lambda b: (abs(b - bits), -b))
        comp_b0 = table.compositions[(comp, action, b0)]
        new[(comp, action, bits)] = sum(n * op_energy_pj(table, op, bits if ob == b0 else ob)
                                        for (op, ob), n in comp_b0.items())
    return dataclasses.replace(table, actions={**table.actions, **new}) if new else table


def candidate_energy(workload: Any, cfg: HardwareConfig, table: Any, sparsity: Any, accel: str,
                     mode: str) -> dict[str, float]:
    """pJ of one training step (``train``: forward + backward + weight update) and of inference
    (``infer``: the forward pass) of one sample of ``workload`` on ``accel`` built from ``cfg``."""
    from .accelerators import make_accelerator
    from .evaluate import evaluate_layer

    acc = make_accelerator(accel, cfg)
    results = [acc.run_layer(s, workload.timesteps, sparsity) for s in workload.specs(mode)]
    keys = [k for r in results for p in r.passes.values() for k, _ in p.counts.items()]
    t = widen_table(table, keys)
    layers = [evaluate_layer(r, acc, t) for r in results]
    fwd = sum(sum(l.energy["forward"].values()) for l in layers)
    return {"train": sum(l.total_pj for l in layers), "infer": fwd}


# ---- the search ------------------------------------------------------------------------------

def parse_widths(text: str) -> list[tuple[int, int, int]]:
    """``'8/8/16,4/4/8'`` -> ``[(8, 8, 16), (4, 4, 8)]`` (weight/activation/membrane)."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split("/")
        try:
            w, a, m = (int(p) for p in parts)
        except ValueError:
            raise UserError(f"widths {item!r}: expected WEIGHT/ACTIVATION/MEMBRANE, e.g. 8/8/16") from None
        out.append((w, a, m))
    return out


def _grid(weights: Sequence[int], activations: Sequence[int], membranes: Sequence[int]) -> list[tuple[int, int, int]]:
    return [(w, a, m) for w in weights for a in activations for m in membranes if m >= a]


def _load(checkpoint: str, calib_samples: int, max_test: int | None):
    import torch
    from torch.utils.data import DataLoader

    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.commands.hw_finetune import load_data
    from ttsnn.sw.train import _to_model_input

    model, meta = load_model(checkpoint)
    train_set, test_set, info = load_data(checkpoint, None, max_test)

    def batches(ds, batch_size: int, steps: int | None = None, seed: int | None = None):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        loader = DataLoader(ds, batch_size=batch_size, shuffle=seed is not None, generator=gen)
        for i, (x, y) in enumerate(loader):
            if steps is not None and i >= steps:
                break
            yield _to_model_input(x, info), y

    calib = next(batches(train_set, calib_samples))[0]
    return model, meta, train_set, test_set, info, batches, calib


def _workload(meta: dict):
    from .evaluate import Workload

    hp = meta["model"]["hparams"]
    size = hp["input_size"]
    return Workload(hp["arch"], hp["in_channels"], (size, size) if isinstance(size, int) else tuple(size),
                    hp["num_classes"], hp["timesteps"], hp.get("ranks"), hp.get("schedule"))


def _progress(enabled: bool, total: int):
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log
    return tqdm(total=total, desc="hw-explore", disable=not enabled, file=sys.stderr)


def hw_explore(checkpoint: str, base: HardwareConfig, table: Any, *, grid: list[tuple[int, int, int]],
               roundings: Sequence[str], itq: list[tuple[int, int, int]], itq_roundings: Sequence[str],
               itq_steps: int = 20, itq_lr: float = 0.01, batch_size: int = 32, calib_samples: int = 64,
               max_test: int | None = None, accel: str = "proposed-rtl", memory: str = "all",
               sparsity_batches: int = 4, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Every candidate's accuracy, memory and energy; returns the rows and the float reference."""
    from ttsnn.sw.tinysnn import accelerator as A

    from .counts import Sparsity
    from .sparsity import measure_sparsity

    if memory not in ("all", "weights"):
        raise UserError(f"memory must be 'all' (tinySNN's definition) or 'weights', got {memory!r}")
    model, meta, train_set, test_set, info, batches, calib = _load(checkpoint, calib_samples, max_test)
    shapes = A.layer_shapes(model)
    hp = meta["model"]["hparams"]
    mode = hp["mode"]
    measured = measure_sparsity(model, batches(test_set, batch_size, sparsity_batches),
                                source=f"measured: {checkpoint}, float model")
    sp = Sparsity(spike=measured["spike"], grad=measured["grad"], per_layer=measured.get("per_layer", {}),
                  source=measured["source"])
    workload = _workload(meta)
    fp32_bits = A.fp32_memory_bits(shapes)
    fp32_weight_bits = A.fp32_memory_bits(shapes) - sum(s["neurons"] for s in shapes) * 32
    cands = [A.Candidate(w, a, m, r, "PTQ") for (w, a, m) in grid for r in roundings]
    cands += [A.Candidate(w, a, m, r, "ITQ") for (w, a, m) in itq for r in itq_roundings]
    energies: dict[tuple[int, int, int], dict[str, Any]] = {}
    rows = []
    bar = _progress(progress, len(cands))
    for c in cands:
        key = (c.weight, c.activation, c.membrane)
        if key not in energies:
            cfg = derive_config(base, *key)
            energies[key] = {"cfg": cfg, **candidate_energy(workload, cfg, table, sp, accel, mode)}
        e = energies[key]
        wd = c.widths(e["cfg"].widths)
        net = model
        losses: list[float] = []
        if c.scheme == "ITQ":
            net = copy.deepcopy(model)
            losses = A.finetune_on_accelerator(net, batches(train_set, batch_size, itq_steps, seed), wd,
                                               base.gradients, c.rounding, lr=itq_lr, seed=seed)
        q = A.quantize_network(net, calib, wd, c.rounding, seed)
        acc = A.accuracy(net, batches(test_set, 128), q, wd)
        entries = A.memory_entries(shapes, wd)
        weight_bits = sum(n * b for name, n, b in entries if name != "membrane potentials")
        total = A.memory_bits(shapes, wd)
        mem, ref = (total, fp32_bits) if memory == "all" else (weight_bits, fp32_weight_bits)
        rows.append({"name": c.name, "scheme": c.scheme, "variant": c.rounding, "rounding": c.rounding,
                     "weight_bits": c.weight, "activation_bits": c.activation, "membrane_bits": c.membrane,
                     "accumulator_bits": wd.accumulator, "accuracy": acc, "memory_bits": mem,
                     "fp32_memory_bits": ref, "memory_saving": ref / mem, "weight_memory_bits": weight_bits,
                     "all_memory_bits": total, "weight_buffer_bytes": e["cfg"].buffers["weight"].bytes,
                     "train_energy_uj_per_sample": e["train"] / 1e6,
                     "infer_energy_uj_per_sample": e["infer"] / 1e6, "config": e["cfg"].name,
                     "itq_steps": itq_steps if c.scheme == "ITQ" else 0, "itq_loss": losses})
        bar.update(1)
    bar.close()
    float_acc = A.accuracy(model, batches(test_set, 128))
    reference = {"name": "FP32 (float model)", "scheme": "FP32", "variant": "float", "accuracy": float_acc,
                 "memory_bits": fp32_bits if memory == "all" else fp32_weight_bits,
                 "fp32_memory_bits": fp32_bits if memory == "all" else fp32_weight_bits}
    return {"rows": rows, "reference": reference, "configs": {k: v["cfg"] for k, v in energies.items()},
            "shapes": shapes, "sparsity": {"spike": sp.spike, "grad": sp.grad, "source": sp.source},
            "mode": mode, "test_samples": len(test_set), "train_samples": len(train_set)}


# ---- CLI -------------------------------------------------------------------------------------

def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated integers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="build/demo/ptt.pt", help="a trained TT checkpoint (default: the demo's)")
    p.add_argument("--config", default="paper", help="base hardware configuration (name or TOML path)")
    p.add_argument("--weights", default="8,6,4", help="weight widths to sweep")
    p.add_argument("--activations", default="8,6,4", help="activation widths to sweep")
    p.add_argument("--membranes", default="16,12,8", help="membrane widths to sweep (>= the activation width)")
    p.add_argument("--roundings", default="nearest,truncate,stochastic", help="PTQ roundings")
    p.add_argument("--itq", default="6/6/12,4/4/8",
                   help="ITQ candidates as WEIGHT/ACTIVATION/MEMBRANE, comma-separated ('' for none)")
    p.add_argument("--itq-roundings", default="nearest,stochastic",
                   help="roundings of the ITQ candidates, comma list out of nearest, truncate, stochastic")
    p.add_argument("--itq-steps", type=int, default=20, help="fine-tuning steps per ITQ candidate")
    p.add_argument("--itq-lr", type=float, default=0.01, help="ITQ fine-tuning learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=32, help="ITQ fine-tuning batch size (default 32)")
    p.add_argument("--calib-samples", type=int, default=64, help="training images that calibrate the formats")
    p.add_argument("--max-test", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument("--accel", default="proposed-rtl", help="proposed-rtl (the generated design) | proposed")
    p.add_argument("--memory", default="all", choices=("all", "weights"),
                   help="memory of the reward: weights and neuron parameters (tinySNN's) or weights only")
    p.add_argument("--mu", default=",".join(f"{m:g}" for m in DEFAULT_MUS), help="comma-separated mu values")
    p.add_argument("--energy-table", default=None, help="energy table YAML (default: the 28 nm table)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="build/hw_explore", help="output directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def _print(obj: dict[str, Any]) -> None:
    head = (f"{'candidate':<30} {'acc':>6} {'memory KiB':>10} {'saving':>7} {'weights KiB':>11} "
            f"{'train uJ':>9} {'infer uJ':>9}")
    print(head)
    print("-" * len(head))
    ref = obj["reference"]
    print(f"{ref['name']:<30} {ref['accuracy']:>6.3f} {ref['memory_bits'] / 8192:>10.2f} {1:>6.2f}x")
    for r in obj["candidates"]:
        print(f"{r['name']:<30} {r['accuracy']:>6.3f} {r['memory_bits'] / 8192:>10.2f} {r['memory_saving']:>6.2f}x "
              f"{r['weight_memory_bits'] / 8192:>11.2f} {r['train_energy_uj_per_sample']:>9.3f} "
              f"{r['infer_energy_uj_per_sample']:>9.3f}")
    print(f"\nPareto front: {', '.join(obj['pareto_front'])}\n")
    print(f"{'mu':>6}  {'chosen':<30} {'acc':>6} {'mem/FP32':>8} {'reward':>7}  configuration")
    for s in obj["selection"]:
        print(f"{s['mu']:>6g}  {s['name']:<30} {s['accuracy']:>6.3f} {s['memory_ratio']:>8.3f} "
              f"{s['reward']:>7.3f}  {s['config_toml']}")


def run(args: argparse.Namespace) -> int:
    import torch

    from ttsnn.sw.fileio import atomic_write_json, atomic_write_text
    from ttsnn.sw.quantize import ROUNDING_MODES
    from ttsnn.sw.tinysnn.plots import plot_pareto
    from ttsnn.sw.tinysnn.select import pareto_front, select

    from .energy_table import load_energy_table

    if not Path(args.checkpoint).is_file():
        raise MissingFileError(f"checkpoint {args.checkpoint!r} not found; `make demo` writes build/demo/ptt.pt, "
                               f"`python -m sw train` writes others")
    roundings = [r.strip() for r in args.roundings.split(",") if r.strip()]
    itq_roundings = [r.strip() for r in args.itq_roundings.split(",") if r.strip()]
    for r in roundings + itq_roundings:
        if r not in ROUNDING_MODES:
            raise UserError(f"unknown rounding {r!r}; choose from {', '.join(ROUNDING_MODES)}")
    grid = _grid(_ints(args.weights, "--weights"), _ints(args.activations, "--activations"),
                 _ints(args.membranes, "--membranes"))
    itq = parse_widths(args.itq)
    if not grid and not itq:
        raise UserError("no candidates: every membrane width is below every activation width")
    mus = [float(m) for m in args.mu.split(",") if m.strip()]
    if args.itq_steps < 1 or args.batch_size < 1 or args.calib_samples < 1:
        raise UserError("--itq-steps, --batch-size and --calib-samples must be >= 1")
    torch.set_num_threads(1)   # small tensors; the machine is shared
    base = load_config(args.config)
    res = hw_explore(args.checkpoint, base, load_energy_table(args.energy_table), grid=grid, roundings=roundings,
                     itq=itq, itq_roundings=itq_roundings, itq_steps=args.itq_steps, itq_lr=args.itq_lr,
                     batch_size=args.batch_size, calib_samples=args.calib_samples, max_test=args.max_test,
                     accel=args.accel, memory=args.memory, seed=args.seed,
                     progress=not (args.json or args.no_progress) and sys.stderr.isatty())
    rows = res["rows"]
    out = Path(args.out)
    sel = select(rows, mus)
    front = pareto_front(rows)
    by_name = {r["name"]: r for r in rows}
    for s in sel:   # the configuration to generate for each mu
        cfg = res["configs"][tuple(by_name[s["name"]][k] for k in ("weight_bits", "activation_bits", "membrane_bits"))]
        path = out / "configs" / f"{cfg.name}.toml"
        atomic_write_text(path, config_toml(cfg, [
            f"Derived by `python -m model hw-explore` from configuration {base.name!r} for {args.checkpoint}:",
            f"widths chosen by tinySNN's reward (candidate {s['name']}). Generate with",
            f"  python -m gen --config {path} --out rtl/{cfg.name}"]))
        s["config"], s["config_toml"] = cfg.name, str(path)
    plot = plot_pareto(rows + [res["reference"]], front, out / "pareto.png", sel,
                       title=f"{Path(args.checkpoint).name} on the accelerator: accuracy vs memory",
                       colours=ROUNDING_COLOURS)
    obj = {"checkpoint": str(args.checkpoint), "base_config": base.name, "accel": args.accel, "mode": res["mode"],
           "memory": args.memory, "test_samples": res["test_samples"], "sparsity": res["sparsity"],
           "layers": res["shapes"], "reference": res["reference"], "candidates": rows,
           "pareto_front": [rows[i]["name"] for i in front], "selection": sel, "plot": str(plot)}
    atomic_write_json(out / "candidates.json", obj)
    if args.json:
        print(json.dumps(obj))
        return 0
    print(f"{args.checkpoint} ({res['mode']}) on '{args.accel}' from configuration '{base.name}': "
          f"{len(rows)} candidates, {res['test_samples']} test samples; energies per sample "
          f"(training step and inference), sparsity {res['sparsity']['source']}")
    _print(obj)
    print(f"wrote {out / 'candidates.json'}, {plot}, {out / 'configs'}/")
    return 0
