"""``python -m sw export --checkpoint tt.pt --out dense.pt``: merge a TT model back into a plain
dense model (paper Eq. 6) for inference, and check that both give the same outputs."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from sw.checkpoint import load_model, save_checkpoint
from sw.commands.eval import eval_config, load_eval_data
from sw.cli_util import out_of_memory_is_a_clear_error
from sw.fileio import check_output_path


def export_merged(checkpoint: str, out: str, max_samples: int | None = None, batch_size: int = 256,
                  progress: bool = True, force: bool = True) -> dict:
    """Write the merged model of ``checkpoint`` to ``out``; compare both on the test set.

    ``out`` may never be ``checkpoint`` (its TT cores would be lost); an existing ``out`` is
    replaced only with ``force`` (the command line's ``--force``). Both are checked, with
    the writability of ``out``, before any work.

    Returns ``{'max_abs_logit_diff', 'same_prediction_fraction', 'tt_acc', 'merged_acc', 'agree', ...}``;
    ``agree`` means equal accuracy (rare threshold-borderline spikes may flip; see the logit diff).
    """
    from sw.resnet import merge_to_dense
    from sw.train import evaluate, _to_model_input

    check_output_path(out, inputs=[checkpoint], force=force)
    model, meta = load_model(checkpoint)
    hp = meta["model"]["hparams"]
    if hp.get("mode") == "dense" or "merged_from" in hp:
        raise ValueError(f"{checkpoint}: the model is already dense ({hp.get('mode')}); nothing to merge")
    merged = merge_to_dense(model).eval()
    cfg = eval_config(meta)
    ds, info = load_eval_data(cfg, max_samples=max_samples)
    tt_res = evaluate(model, ds, info, batch_size, progress, desc="TT")
    merged_res = evaluate(merged, ds, info, batch_size, progress, desc="merged")
    diff = 0.0
    same_pred = 0
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size)
    with torch.no_grad():
        for x, _ in loader:
            xin = _to_model_input(x, info)
            a, b = model(xin), merged(xin)
            diff = max(diff, (a - b).abs().max().item())
            same_pred += int((a.argmax(1) == b.argmax(1)).sum())
    report = {"checkpoint": str(checkpoint), "out": str(out), "mode": hp.get("mode"), "samples": tt_res["samples"],
              "tt_acc": tt_res["acc"], "merged_acc": merged_res["acc"], "max_abs_logit_diff": diff,
              "same_prediction_fraction": same_pred / tt_res["samples"],
              "tt_params": sum(p.numel() for p in model.parameters()),
              "merged_params": sum(p.numel() for p in merged.parameters())}
    # Merging changes the float rounding of each conv (~1e-7 relative); a membrane potential that
    # lands within that of the threshold can flip one spike, which moves a logit by a visible
    # step. So "agree" is judged on what the export is for: the same accuracy.
    report["agree"] = report["tt_acc"] == report["merged_acc"]
    save_checkpoint(out, merged, epoch=meta.get("epoch", 0), config=meta.get("config"),
                    metrics=meta.get("metrics"), extra={"export": report}, with_rng=False)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="TT checkpoint (stt/ptt/htt)")
    parser.add_argument("--out", required=True, help="where to write the merged dense checkpoint")
    parser.add_argument("--max-samples", type=int, default=None, help="compare on a prefix of the test set")
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    with out_of_memory_is_a_clear_error(f"exporting {args.checkpoint}",
                                        f"lower --batch-size (now {args.batch_size}) or use --max-samples; "
                                        "--out is written only at the end, complete or not at all"):
        rep = export_merged(args.checkpoint, args.out, args.max_samples, args.batch_size,
                            progress=not args.json and sys.stderr.isatty(), force=args.force)
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"merged {rep['mode']} model -> {rep['out']}: test accuracy TT {rep['tt_acc']:.4f} vs merged "
              f"{rep['merged_acc']:.4f}, max |logit difference| {rep['max_abs_logit_diff']:.2e}, same "
              f"prediction on {rep['same_prediction_fraction'] * 100:.2f}% of {rep['samples']} samples "
              f"-> {'AGREE' if rep['agree'] else 'DIFFER'}")
    return 0 if rep["agree"] else 1
