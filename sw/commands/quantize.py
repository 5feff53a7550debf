"""``python -m sw quantize --checkpoint CKPT [--layer NAME] [--json]``: quantise the TT layers
of a trained model to the accelerator's formats and report, per layer, the spike agreement
and membrane error of the integer layer (the golden model) against the float layer.

Calibration uses the first ``--calib-samples`` images of the training split; agreement is
measured on the first ``--eval-samples`` images of the test split (held out).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ttsnn.sw.fileio import add_force_argument, atomic_write, check_outputs
from ttsnn.sw.quantize import ROUNDING_MODES
from ttsnn.sw.cli_util import UserError

FIELDS = ("layer", "mode", "in_channels", "rank", "out_channels", "input_hw", "pool", "residual",
          "weight_bits", "shifts", "affine_shift", "frac_bits", "spike_agreement",
          "membrane_mae", "membrane_rel_rmse", "float_spike_rate", "int_spike_rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a TT checkpoint (python -m sw train/demo)")
    parser.add_argument("--layer", action="append", help="TT layer name (repeatable; default: all)")
    parser.add_argument("--config", default="paper", help="hardware configuration (name or TOML path) "
                        "whose widths define the formats (default: paper)")
    parser.add_argument("--weight-bits", type=int, default=None,
                        help="weight precision (default: the configuration's weight width)")
    parser.add_argument("--rounding", choices=ROUNDING_MODES, default="nearest",
                        help="rounding of weights and parameters")
    parser.add_argument("--calib-samples", type=int, default=32, help="training images to calibrate on")
    parser.add_argument("--eval-samples", type=int, default=32, help="test images to measure agreement on")
    parser.add_argument("--seed", type=int, default=0, help="seed of stochastic rounding")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", default=None, help="also write a per-layer bar chart (PNG) here")
    add_force_argument(parser, "an existing --plot file")


def model_inputs(meta: dict, split: str, count: int, start: int = 0) -> torch.Tensor:
    """``count`` real inputs of the checkpoint's data set (``split`` 'train' or 'test'),
    batched as the model takes them."""
    from ttsnn.sw.commands.eval import eval_config, load_eval_data
    from ttsnn.sw.train import _to_model_input

    if count < 1:
        raise UserError(f"need at least one sample, got {count}")
    cfg = eval_config(meta)
    ds, info = load_eval_data(cfg, train_split=(split == "train"), max_samples=start + count)
    if len(ds) <= start:
        raise UserError(f"the {split} split of {info.name} has only {len(ds)} samples")
    xs = torch.stack([ds[i][0] for i in range(start, min(start + count, len(ds)))])
    return _to_model_input(xs, info)


def quantize_report(checkpoint: str, layers: list[str] | None, config: str, *,
                    weight_bits: int | None = None, rounding: str = "nearest",
                    calib_samples: int = 32, eval_samples: int = 32, seed: int = 0,
                    progress: bool = True) -> dict:
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    from ttsnn.gen.config import load_config
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.quantize import quantize_model_layer, tt_layer_names

    hw = load_config(config)
    model, meta = load_model(checkpoint)
    names = tt_layer_names(model)
    if not names:
        raise UserError(f"{checkpoint}: the model has no TT layers (mode "
                        f"{model.hparams.get('mode')!r}); quantise a STT/PTT/HTT checkpoint")
    for n in layers or []:
        if n not in names:
            raise UserError(f"layer {n!r} is not a TT layer of {checkpoint}; available TT layers: "
                            f"{', '.join(names)}")
    calib = model_inputs(meta, "train", calib_samples)
    evaluation = model_inputs(meta, "test", eval_samples)
    rows = []
    for name in tqdm(layers or names, desc="quantise", disable=not progress, file=sys.stderr):
        _, rep, _ = quantize_model_layer(model, name, calib, hw.widths, evaluation,
                                         weight_bits=weight_bits, rounding=rounding, seed=seed)
        rows.append({k: rep[k] for k in FIELDS})
    return {"checkpoint": str(checkpoint), "config": hw.name, "rounding": rounding,
            "calib_samples": int(calib.shape[-4] if calib.dim() == 5 else calib.shape[0]),
            "eval_samples": int(evaluation.shape[-4] if evaluation.dim() == 5 else evaluation.shape[0]),
            "layers": rows,
            "mean_spike_agreement": sum(r["spike_agreement"] for r in rows) / len(rows)}


def plot_report(result: dict, path: str) -> None:
    """Bar chart of spike agreement and relative membrane RMSE per layer (PNG, atomic)."""
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["layers"]
    names = [r["layer"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.bar(names, [r["spike_agreement"] for r in rows], color="tab:blue")
    a1.set_ylim(min(0.9, min(r["spike_agreement"] for r in rows) - 0.01), 1.0)
    a1.set_title("spike agreement (integer vs float)")
    a2.bar(names, [r["membrane_rel_rmse"] for r in rows], color="tab:orange")
    a2.set_title("membrane error (relative RMSE)")
    for ax in (a1, a2):
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{Path(result['checkpoint']).name}: {result['config']} formats, "
                 f"{rows[0]['weight_bits']}-bit weights, {result['rounding']} rounding")
    fig.tight_layout()
    # the temporary name ends in .tmp, so the format is given rather than taken from it
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    check_outputs([("--plot", args.plot)], inputs=[args.checkpoint], force=args.force)
    result = quantize_report(args.checkpoint, args.layer, args.config, weight_bits=args.weight_bits,
                             rounding=args.rounding, calib_samples=args.calib_samples,
                             eval_samples=args.eval_samples, seed=args.seed, progress=not args.json)
    if args.plot:
        plot_report(result, args.plot)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['checkpoint']}: {result['config']} formats, {result['rounding']} rounding, "
          f"calibrated on {result['calib_samples']} training images, measured on "
          f"{result['eval_samples']} test images")
    head = f"{'layer':<20} {'mode':<4} {'Cin':>4} {'r':>3} {'Cout':>4} {'HxW':>7} {'wbits':>5} " \
           f"{'shifts':>9} {'frac':>4} {'spike agr.':>10} {'mem MAE':>8} {'mem rRMSE':>9}"
    print(head)
    print("-" * len(head))
    for r in result["layers"]:
        hw = "x".join(str(v) for v in r["input_hw"])
        sh = ",".join(str(v) for v in r["shifts"])
        print(f"{r['layer']:<20} {r['mode']:<4} {r['in_channels']:>4} {r['rank']:>3} "
              f"{r['out_channels']:>4} {hw:>7} {r['weight_bits']:>5} {sh:>9} {r['frac_bits']:>4} "
              f"{r['spike_agreement']:>10.4f} {r['membrane_mae']:>8.4f} {r['membrane_rel_rmse']:>9.4f}")
    print(f"mean spike agreement: {result['mean_spike_agreement']:.4f}")
    return 0
