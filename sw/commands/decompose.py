"""``python -m sw decompose --checkpoint dense.pt --mode ptt [--ranks evbmf|uniform:R|LIST] --out tt.pt``

Selects per-layer TT ranks from a *trained* dense model (EVBMF by default), initialises a TT
model by TT-SVD of the dense weights (loaded for real; everything else copied), reports per
layer the ranks, compression and reconstruction error, evaluates dense and TT models on the
test set (accuracy before fine-tuning) and writes the TT checkpoint. Fine-tune it with
``python -m sw train --config ... --init-from tt.pt --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ttsnn.sw.arch import TT_MODES
from ttsnn.sw.checkpoint import load_model, save_checkpoint
from ttsnn.sw.cli_util import out_of_memory_is_a_clear_error
from ttsnn.sw.fileio import atomic_write_json, check_output_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained dense checkpoint")
    parser.add_argument("--mode", required=True, choices=TT_MODES, help=f"TT mode of the decomposed model: {' | '.join(TT_MODES)}")
    parser.add_argument("--ranks", default="evbmf",
                        help="'evbmf' (default; variants evbmf-max, evbmf*S), 'uniform:R', an int, or a comma list "
                             "(one per 3x3 block conv)")
    parser.add_argument("--out", required=True, help="where to write the TT checkpoint (+ .json report)")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate on a prefix of the test set")
    parser.add_argument("--no-eval", action="store_true", help="skip the accuracy check")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="accuracy counts as kept if it drops by at most this (default 0.01)")
    parser.add_argument("--force", action="store_true", help="replace --out (and its .json report) if they exist")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def decompose_checkpoint(checkpoint: str, mode: str, ranks="evbmf", out: str | None = None,
                         max_samples: int | None = None, evaluate_models: bool = True,
                         tolerance: float = 0.01, progress: bool = True, force: bool = True) -> dict:
    """Decompose a dense checkpoint; write ``out`` (and ``out.json``) when given; return the report.

    ``out`` (or ``out.json``) may never be ``checkpoint``; existing outputs are replaced only
    with ``force``; both, and that ``out`` can be written, are checked before any work."""
    from ttsnn.sw.decompose import decompose_model
    from ttsnn.sw.commands.eval import eval_config, load_eval_data
    from ttsnn.sw.train import evaluate

    if out:
        for path in (out, str(out) + ".json"):
            check_output_path(path, inputs=[checkpoint], force=force)
    dense, meta = load_model(checkpoint)
    if isinstance(ranks, str) and ranks.strip().isdigit():
        ranks = int(ranks)
    tt_model, rows = decompose_model(dense, mode, ranks, progress=progress)
    dense_params = sum(r.dense_params for r in rows)
    tt_params = sum(r.tt_params for r in rows)
    report = {"checkpoint": str(checkpoint), "mode": mode, "rank_rule": str(ranks),
              "ranks": [r.rank for r in rows], "layers": [r.as_dict() for r in rows],
              "block_conv_params_dense": dense_params, "block_conv_params_tt": tt_params,
              "compression": dense_params / tt_params,
              "model_params_dense": sum(p.numel() for p in dense.parameters()),
              "model_params_tt": sum(p.numel() for p in tt_model.parameters())}
    if evaluate_models:
        cfg = eval_config(meta)
        ds, info = load_eval_data(cfg, max_samples=max_samples)
        d = evaluate(dense, ds, info, progress=progress, desc="dense")
        t = evaluate(tt_model, ds, info, progress=progress, desc=mode)
        report.update(samples=d["samples"], dense_acc=d["acc"], tt_acc_before_finetune=t["acc"],
                      accuracy_drop=d["acc"] - t["acc"], accuracy_kept=d["acc"] - t["acc"] <= tolerance,
                      tolerance=tolerance)
    if out:
        cfg = dict(meta.get("config") or {})
        cfg.update(mode=mode, ranks=[r.rank for r in rows])
        save_checkpoint(out, tt_model, epoch=0, config=cfg, extra={"decompose": report}, with_rng=False)
        atomic_write_json(Path(str(out) + ".json"), report)
        report["out"] = str(out)
    return report


def format_report(rep: dict) -> str:
    lines = [f"{'layer':<22} {'Cin':>4} {'Cout':>4} {'EVBMF m0/m1':>11} {'rank':>5} {'dense':>9} {'TT':>8} "
             f"{'ratio':>6} {'TT-SVD err':>10} {rep['mode'] + ' err':>9}"]
    for r in rep["layers"]:
        ev = f"{r['mode0_rank']}/{r['mode1_rank']}" if r["mode0_rank"] is not None else "-"
        lines.append(f"{r['name']:<22} {r['in_channels']:>4} {r['out_channels']:>4} {ev:>11} {r['rank']:>5} "
                     f"{r['dense_params']:>9,} {r['tt_params']:>8,} {r['dense_params'] / r['tt_params']:>6.1f} "
                     f"{r['tt_svd_error']:>10.4f} {r['merged_error']:>9.4f}" + (f"  ({r['note']})" if r["note"] else ""))
    lines.append(f"3x3 block convs: {rep['block_conv_params_dense']:,} -> {rep['block_conv_params_tt']:,} parameters "
                 f"({rep['compression']:.2f}x); whole model {rep['model_params_dense']:,} -> {rep['model_params_tt']:,}")
    lines.append("(TT-SVD err: relative error of the TT reconstruction of each dense kernel = the STT merged kernel; "
                 f"{rep['mode']} err: that of the {rep['mode'].upper()} merged kernel built from the same cores)")
    if "dense_acc" in rep:
        lines.append(f"accuracy before fine-tuning on {rep['samples']} test samples: dense {rep['dense_acc']:.4f}, "
                     f"{rep['mode']} {rep['tt_acc_before_finetune']:.4f} -> "
                     f"{'kept' if rep['accuracy_kept'] else 'NOT kept'} (tolerance {rep['tolerance']}); "
                     "fine-tune with: python -m sw train --config ... --init-from " + rep.get("out", "TT.pt"))
    if "out" in rep:
        lines.append(f"wrote {rep['out']} and {rep['out']}.json")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with out_of_memory_is_a_clear_error(f"decomposing {args.checkpoint}",
                                        "use --max-samples or --no-eval (the evaluation holds both models), or a "
                                        "machine with more memory; --out is written only at the end, complete "
                                        "or not at all"):
        rep = decompose_checkpoint(args.checkpoint, args.mode, args.ranks, args.out, args.max_samples,
                                   not args.no_eval, args.tolerance, progress=not args.json and sys.stderr.isatty(),
                                   force=args.force)
    print(json.dumps(rep) if args.json else format_report(rep))
    return 0
