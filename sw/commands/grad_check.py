"""``python -m sw grad-check --checkpoint CKPT --layer NAME [--json]``: the accelerator's integer
backward pass (docs/numerics.md, "Backward pass") against float autograd of the same quantised
layer, on real data (sw/gradcheck.py).

Reports ``grad_cosine`` for the input-spike gradient, the LIF-input (residual) gradient and each
core's weight gradient, the share of saturated gradients, and ``grad_cosine_same_forward``: the
same against a float backward that uses the integer forward's spikes and surrogate windows (what
remains there is the backward arithmetic's own error). ``--bits 8,10,12,16`` sweeps the gradient
width; ``--plot`` draws the cosines against it.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ttsnn.sw.fileio import atomic_write
from ttsnn.sw.cli_util import UserError


def _bits_list(text: str) -> list[int]:
    try:
        bits = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not bits or any(b < 4 or b > 32 for b in bits):
        raise argparse.ArgumentTypeError(f"gradient widths must lie in 4..32, got {text!r}")
    return bits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a TT checkpoint (python -m sw train/demo)")
    parser.add_argument("--layer", required=True, help="TT layer name, e.g. layers.0.0.conv1")
    parser.add_argument("--config", default="paper", help="hardware configuration (name or TOML "
                        "path) whose widths and [gradients] formats apply (default: paper)")
    parser.add_argument("--bits", type=_bits_list, default=None,
                        help="gradient widths to try, comma-separated, 4..32 (default: the "
                             "configuration's gradients.width)")
    parser.add_argument("--rounding", choices=("nearest", "floor", "stochastic"), default=None,
                        help="gradient rounding (default: the configuration's gradients.rounding)")
    parser.add_argument("--samples", type=int, default=16, help="test images to run (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images' order (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", default=None, help="write a PNG of cosine vs gradient width here")
    parser.add_argument("--force", action="store_true", help="replace an existing --plot file")


def _labelled_inputs(meta: dict, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ttsnn.sw.commands.eval import eval_config, load_eval_data
    from ttsnn.sw.train import _to_model_input

    if count < 1:
        raise UserError(f"--samples must be >= 1, got {count}")
    ds, info = load_eval_data(eval_config(meta), train_split=False, max_samples=count)
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    ys = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
    return _to_model_input(xs, info), ys


def grad_check(args: argparse.Namespace) -> dict:
    from ttsnn.gen.config import load_config
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.gradcheck import grad_check_layer
    from ttsnn.sw.quantize import tt_layer_names

    hw = load_config(args.config)
    model, meta = load_model(args.checkpoint)
    names = tt_layer_names(model)
    if args.layer not in names:
        raise UserError(f"layer {args.layer!r} is not a TT layer of {args.checkpoint}; available: "
                        f"{', '.join(names) if names else 'none (a dense model)'}")
    torch.manual_seed(args.seed)
    x, y = _labelled_inputs(meta, args.samples)
    res = grad_check_layer(model, args.layer, x, y, hw, widths=args.bits, rounding=args.rounding)
    res.update(checkpoint=str(args.checkpoint), config=hw.name)
    first = res["rows"][-1]
    res["grad_cosine"] = first["grad_cosine"]                # the widest width asked for
    res["saturated_share"] = first["saturated_share"]
    return res


def plot(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    bits = [r["gradient_bits"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, title in ((axes[0], "grad_cosine", "vs float autograd (same quantised layer)"),
                           (axes[1], "grad_cosine_same_forward", "vs float backward, same forward")):
        for name in rows[0][key]:
            ax.plot(bits, [r[key][name] for r in rows], marker="o", label=name)
        ax.axhline(0.99, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("gradient width (bits)")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("cosine similarity")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{res['layer']} ({res['mode'].upper()}): integer backward, {rows[0]['rounding']} rounding")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from ttsnn.sw.fileio import check_output_path

    if args.plot:       # refused before the work, not after it
        check_output_path(args.plot, inputs=[args.checkpoint], force=args.force, flag="--plot")
    res = grad_check(args)
    if args.plot:
        plot(res, args.plot)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['checkpoint']}: {res['layer']} ({res['mode']}), {res['samples']} test images, "
          f"T={res['timesteps']}, {res['config']} formats")
    names = list(res["rows"][0]["grad_cosine"])
    head = f"{'bits':>4} {'rounding':<10} " + " ".join(f"{n:>8}" for n in names) + \
        f" {'saturated':>9}  (cosine vs float autograd; same-forward in brackets)"
    print(head)
    for r in res["rows"]:
        cells = " ".join(f"{r['grad_cosine'][n]:>8.4f}" for n in names)
        same = ", ".join(f"{r['grad_cosine_same_forward'][n]:.4f}" for n in names)
        print(f"{r['gradient_bits']:>4} {r['rounding']:<10} {cells} {r['saturated_share']:>9.2e}  [{same}]")
    print(f"forward spike agreement (integer vs float): {res['rows'][0]['forward_spike_agreement']:.4f}",
          file=sys.stdout)
    return 0
