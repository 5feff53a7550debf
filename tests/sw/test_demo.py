"""The demo's training half: the pipeline beside the PTT model from scratch (short runs)."""

import filecmp
import json

from ttsnn.sw.__main__ import main
from ttsnn.sw.checkpoint import load_model
from ttsnn.sw.cli_util import run_cli


def test_demo_reports_dense_scratch_and_pipeline_side_by_side(tmp_path):
    out = tmp_path / "demo"
    rc = run_cli(main, ["demo", "--out", str(out), "--epochs", "1", "--finetune-epochs", "1",
                        "--max-train-samples", "64", "--max-test-samples", "40", "--threads", "1",
                        "--min-acc-factor", "0", "--no-progress", "--steps", "pipeline,train_ptt,stats,plot,report"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())["results"]
    # ptt.pt (what the export and hardware steps read) is the pipeline's fine-tuned model
    assert rep["ptt_model"] == "pipeline"
    assert filecmp.cmp(out / "ptt.pt", out / "runs/pipeline/tt/last.pt", shallow=False)
    assert filecmp.cmp(out / "dense.pt", out / "runs/pipeline/dense/last.pt", shallow=False)
    # the model from scratch has the pipeline's (EVBMF) ranks: the two differ only in training
    _, scratch = load_model(out / "ptt_scratch.pt")
    _, pipe = load_model(out / "ptt.pt")
    assert scratch["model"]["hparams"]["ranks"] == pipe["model"]["hparams"]["ranks"] == rep["pipeline"]["ranks"]
    md = (out / "report.md").read_text()
    for row in ("| dense |", "| PTT from scratch |", "| PTT by the pipeline |"):
        assert row in md
    assert rep["stats"]["params"] == rep["stats_scratch"]["params"] < rep["stats"]["dense_params"]
    assert (out / "accuracy.png").stat().st_size > 0


def test_demo_without_the_pipeline_uses_the_model_from_scratch(tmp_path):
    out = tmp_path / "demo"
    rc = run_cli(main, ["demo", "--out", str(out), "--epochs", "1", "--skip-dense", "--ranks", "uniform:3",
                        "--max-train-samples", "32", "--max-test-samples", "20", "--threads", "1",
                        "--min-acc-factor", "0", "--no-progress", "--steps", "pipeline,train_ptt,report"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())["results"]
    assert rep["ptt_model"] == "scratch" and "pipeline" not in rep
    assert filecmp.cmp(out / "ptt.pt", out / "ptt_scratch.pt", shallow=False)
    _, meta = load_model(out / "ptt.pt")
    assert meta["model"]["hparams"]["ranks"] == [3, 3, 3, 3]
    assert run_cli(main, ["demo", "--out", str(out), "--finetune-epochs", "0"]) == 2


def test_the_demos_rank_cap_is_its_accelerators_limit():
    """The pipeline's ranks must fit the configuration the demo replays the network on."""
    from ttsnn.gen.config import load_config
    from ttsnn.sw.commands.demo import RANK_RULE

    assert RANK_RULE.endswith(f"<={load_config('small').limits.max_rank}")
