"""``python -m sw export --checkpoint tt.pt --out dense.pt``: merge a TT model back into a plain
dense model (paper Eq. 6) for inference, and check that both give the same outputs.

``--format nir`` writes the merged network as a NIR graph instead (``sw/nir_export.py``: BatchNorm
folded into the convs, the kit's LIF as NIR LIF), the format other SNN tools read."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ttsnn.sw.checkpoint import load_model, save_checkpoint
from ttsnn.sw.commands.eval import eval_config, load_eval_data
from ttsnn.sw.cli_util import UserError, out_of_memory_is_a_clear_error
from ttsnn.sw.fileio import check_output_path


def export_merged(checkpoint: str, out: str, max_samples: int | None = None, batch_size: int = 256,
                  progress: bool = True, force: bool = True) -> dict:
    """Write the merged model of ``checkpoint`` to ``out``; compare both on the test set.

    ``out`` may never be ``checkpoint`` (its TT cores would be lost); an existing ``out`` is
    replaced only with ``force`` (the command line's ``--force``). Both are checked, with
    the writability of ``out``, before any work.

    Returns ``{'max_abs_logit_diff', 'same_prediction_fraction', 'tt_acc', 'merged_acc', 'agree', ...}``;
    ``agree`` means equal accuracy (rare threshold-borderline spikes may flip; see the logit diff).
    """
    from ttsnn.sw.resnet import merge_to_dense
    from ttsnn.sw.train import evaluate, _to_model_input

    check_output_path(out, inputs=[checkpoint], force=force)
    model, meta = load_model(checkpoint)
    hp = meta["model"]["hparams"]
    if hp.get("mode") == "dense" or "merged_from" in hp:
        raise UserError(f"{checkpoint}: the model is already dense ({hp.get('mode')}); nothing to merge")
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


def export_nir_file(checkpoint: str, out: str, max_samples: int | None = None, batch_size: int = 256,
                    force: bool = True) -> dict:
    """Write the merged network of ``checkpoint`` (TT or dense) as a NIR graph (HDF5) to ``out``.

    Before writing, compares the network the graph describes (BatchNorm folded into the convs,
    run by the kit's own modules) with the checkpoint's model on the test set: folding changes
    the float rounding, so a borderline spike may flip (reported, not hidden)."""
    try:
        import nir
    except ImportError:
        raise UserError("--format nir needs the nir package (a dependency of the kit): "
                        "pip install 'nir==1.0.8', or run `make venv`") from None

    from ttsnn.sw.fileio import atomic_write
    from ttsnn.sw.nir_export import export_nir, fold_batchnorm
    from ttsnn.sw.resnet import merge_to_dense
    from ttsnn.sw.train import _to_model_input

    check_output_path(out, inputs=[checkpoint], force=force)
    model, meta = load_model(checkpoint)
    hp = meta["model"]["hparams"]
    merged = model.eval() if hp.get("mode") == "dense" else merge_to_dense(model).eval()
    graph = export_nir(merged, metadata={"checkpoint": str(checkpoint)})
    folded = fold_batchnorm(merged)
    ds, info = load_eval_data(eval_config(meta), max_samples=max_samples)
    diff, same, n = 0.0, 0, 0
    with torch.no_grad():
        for x, _ in torch.utils.data.DataLoader(ds, batch_size=batch_size):
            xin = _to_model_input(x, info)
            a, b = model(xin), folded(xin)
            diff = max(diff, (a - b).abs().max().item())
            same += int((a.argmax(1) == b.argmax(1)).sum())
            n += len(x)
    atomic_write(out, lambda tmp: nir.write(tmp, graph))
    return {"checkpoint": str(checkpoint), "out": str(out), "format": "nir", "mode": hp.get("mode"),
            "nodes": len(graph.nodes), "edges": len(graph.edges), "samples": n,
            "max_abs_logit_diff": diff, "same_prediction_fraction": same / max(n, 1)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="TT checkpoint (stt/ptt/htt); with --format nir also a dense one")
    parser.add_argument("--out", required=True, help="where to write the merged dense checkpoint (or the NIR file)")
    parser.add_argument("--format", choices=("pt", "nir"), default="pt",
                        help="pt: a merged dense PyTorch checkpoint (default); nir: a NIR graph (HDF5) "
                             "for other SNN tools (STT/PTT/dense, strided downsampling; sw/nir_export.py)")
    parser.add_argument("--max-samples", type=int, default=None, help="compare on a prefix of the test set")
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.format == "nir":
        rep = export_nir_file(args.checkpoint, args.out, args.max_samples, args.batch_size, force=args.force)
        if args.json:
            print(json.dumps(rep))
        else:
            print(f"wrote {rep['out']}: NIR graph of the merged {rep['mode']} network, {rep['nodes']} nodes, "
                  f"{rep['edges']} edges; BatchNorm folded: same prediction on "
                  f"{rep['same_prediction_fraction'] * 100:.2f}% of {rep['samples']} test samples, max |logit "
                  f"difference| {rep['max_abs_logit_diff']:.2e}")
        return 0
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
