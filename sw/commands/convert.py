"""``python -m sw convert``: TT-SNN as a plug-in: replace the 3x3 convs of any PyTorch model by
STT/PTT/HTT (TT-SVD initialised; ranks given, uniform, full or EVBMF), or merge a converted model
back into plain convs (paper Eq. 6). See docs/plugin.md and :mod:`sw.plugin.convert`.

    python -m sw convert --model ttsnn.sw.plugin.examples:spikingjelly_net --weights dense.pt \\
        --mode ptt --ranks evbmf --out tt.pt
    python -m sw convert --checkpoint build/train/last.pt --mode ptt --ranks uniform:8 --out tt.pt
    python -m sw convert --merge tt.pt --out dense.pt      # STT/PTT: loads into the original model
"""

from __future__ import annotations

import argparse
import json
import sys

from ttsnn.sw.arch import TT_MODES
from ttsnn.sw.fileio import check_output_path
from ttsnn.sw.cli_util import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="MODULE:FUNCTION that builds the host model (e.g. "
                                     "ttsnn.sw.plugin.examples:spikingjelly_net)")
    src.add_argument("--checkpoint", help="a checkpoint of `python -m sw train` (dense MS-ResNet)")
    src.add_argument("--merge", metavar="CONVERTED",
                     help="a file written by this command: merge its TT layers back into 3x3 convs")
    parser.add_argument("--model-kwargs", default="{}", help="JSON object of keyword arguments for --model")
    parser.add_argument("--weights", help="state dict for --model (torch.save of model.state_dict())")
    parser.add_argument("--mode", default="ptt", choices=TT_MODES, help=f"TT mode of the converted convs: {' | '.join(TT_MODES)} (default ptt)")
    parser.add_argument("--ranks", default="evbmf",
                        help="'evbmf' (default; needs trained weights), 'full', an int, 'uniform:R', or a comma "
                             "list with one rank per converted conv")
    parser.add_argument("--include", action="append", help="glob of conv names to convert (repeatable; "
                                                           "default all 3x3 convs)")
    parser.add_argument("--exclude", action="append", help="glob of conv names to leave dense (repeatable)")
    parser.add_argument("--layout", default="auto", choices=("auto", "tb", "folded", "per-step"),
                        help="what plain convs are fed (HTT only): [T,B,...], folded [T*B,...], one step per call")
    parser.add_argument("--timesteps", type=int, help="timesteps T (HTT with folded/per-step/spikingjelly layers)")
    parser.add_argument("--schedule", help="HTT full-timestep flags, e.g. 1100 (default: first half)")
    parser.add_argument("--init", default="tt-svd", choices=("tt-svd", "random"),
                        help="cores from TT-SVD of the weights (default) or their own random init")
    parser.add_argument("--skip-unsupported", action="store_true",
                        help="leave 3x3 convs the TT form cannot take (groups, dilation, ...) dense")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _recipe(args: argparse.Namespace) -> tuple[dict, object]:
    """The host model's recipe and the model with its weights loaded."""
    from ttsnn.sw.plugin.files import build_host, load_state_dict_file

    if args.checkpoint:
        from ttsnn.sw.checkpoint import load_model

        model, meta = load_model(args.checkpoint)
        return {"checkpoint_hparams": meta["model"]["hparams"], "source": str(args.checkpoint)}, model
    try:
        kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as exc:
        raise UserError(f"--model-kwargs is not valid JSON ({exc.msg}); e.g. '{{\"channels\": 8}}'") from None
    recipe = {"model": args.model, "model_kwargs": kwargs}
    model = build_host(recipe)
    if args.weights:
        try:
            model.load_state_dict(load_state_dict_file(args.weights))
        except RuntimeError as exc:
            raise UserError(f"--weights {args.weights} do not fit {args.model}: {str(exc).splitlines()[0]}") from None
        recipe["source"] = str(args.weights)
    elif args.ranks == "evbmf" and args.init == "tt-svd":
        raise UserError("--ranks evbmf reads trained weights: give --weights (or --ranks N / full)")
    return recipe, model


def format_report(rows: list[dict], mode: str) -> str:
    lines = [f"{'layer':<24} {'Cin':>4} {'Cout':>4} {'s':>2} {'EVBMF m0/m1':>11} {'rank':>5} {'dense':>8} "
             f"{'TT':>7} {'TT-SVD err':>10} {mode + ' err':>8}"]
    for r in rows:
        ev = "/".join(map(str, r["evbmf_ranks"])) if r["evbmf_ranks"] else "-"
        err = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
        lines.append(f"{r['name']:<24} {r['in_channels']:>4} {r['out_channels']:>4} {r['stride']:>2} {ev:>11} "
                     f"{r['rank']:>5} {r['dense_params']:>8,} {r['tt_params']:>7,} {err(r['tt_svd_error']):>10} "
                     f"{err(r['merged_error']):>8}" + (f"  ({r['note']})" if r["note"] else ""))
    dense = sum(r["dense_params"] for r in rows if r["mode"] != "dense")
    tt = sum(r["tt_params"] for r in rows if r["mode"] != "dense")
    lines.append(f"converted convs: {dense:,} -> {tt:,} parameters ({dense / max(tt, 1):.2f}x). TT-SVD err: relative "
                 f"error of the TT reconstruction (= STT kernel); {mode} err: that of the {mode.upper()} merged kernel "
                 "(PTT/HTT compute another function of the same cores: fine-tune after converting)")
    return "\n".join(lines)


def _merge(args: argparse.Namespace) -> dict:
    import io

    import torch

    from ttsnn.sw.fileio import atomic_write_bytes
    from ttsnn.sw.plugin import merge
    from ttsnn.sw.plugin.files import load_converted

    check_output_path(args.out, inputs=[args.merge], force=args.force)
    model, meta = load_converted(args.merge)
    if meta["conversion"]["mode"] == "htt":
        raise UserError("HTT merges into two kernels per layer (full and reduced timesteps), which the original "
                        "model cannot hold; use sw.plugin.merge(model) in Python for it")
    merged = merge(model, inplace=True)
    buffer = io.BytesIO()
    torch.save({"recipe": meta["recipe"], "state_dict": merged.state_dict()}, buffer)
    atomic_write_bytes(args.out, buffer.getbuffer())
    return {"merged": str(args.merge), "out": str(args.out), "mode": meta["conversion"]["mode"],
            "params": sum(p.numel() for p in merged.parameters())}


def run(args: argparse.Namespace) -> int:
    from ttsnn.sw.plugin import convert
    from ttsnn.sw.plugin.files import save_converted

    if args.merge:
        rep = _merge(args)
        print(json.dumps(rep) if args.json else
              f"wrote {rep['out']}: the {rep['mode'].upper()} layers of {rep['merged']} merged into plain 3x3 convs "
              f"({rep['params']:,} parameters); it loads into the original model (state_dict under 'state_dict')")
        return 0
    check_output_path(args.out, inputs=[args.checkpoint or args.weights], force=args.force)
    recipe, host = _recipe(args)
    ranks = int(args.ranks) if args.ranks.strip().isdigit() else args.ranks
    model, rows = convert(host, args.mode, ranks, include=args.include, exclude=args.exclude, layout=args.layout,
                          timesteps=args.timesteps, schedule=args.schedule, init=args.init,
                          on_unsupported="skip" if args.skip_unsupported else "error", inplace=True,
                          progress=not args.json and sys.stderr.isatty())
    report = [r.as_dict() for r in rows]
    converted = [r for r in rows if r.mode != "dense"]
    first = next(m for n, m in model.named_modules() if n == converted[0].name)
    conversion = {"mode": args.mode, "ranks": {r.name: r.rank for r in converted}, "layout": args.layout,
                  "timesteps": first.timesteps, "schedule": list(first.schedule) if first.schedule else None}
    save_converted(args.out, model, recipe, conversion, report)
    if args.json:
        print(json.dumps({"out": str(args.out), "conversion": conversion, "layers": report}))
    else:
        print(format_report(report, args.mode))
        print(f"wrote {args.out} (load it with sw.plugin.files.load_converted; merge back with "
              f"python -m sw convert --merge {args.out} --out DENSE.pt)")
    return 0
