"""``sw pipeline``: dense -> EVBMF/TT-SVD -> TT training in one resumable run (embedded digits)."""

from __future__ import annotations

import json

import pytest
import torch

from ttsnn.sw.__main__ import main
from ttsnn.sw.checkpoint import load_model
from ttsnn.sw.commands.pipeline import pipeline_config_from_dict, run_pipeline
from ttsnn.sw.tt import TTConv2d


def _config(out, **pipeline):
    return {"model": {"arch": "tiny", "timesteps": 2}, "data": {"dataset": "digits", "size": 16},
            "optim": {"lr": 0.1, "scheduler": "constant"},
            "run": {"epochs": 2, "batch_size": 32, "seed": 0, "out": str(out), "threads": 1,
                    "max_train_samples": 32, "max_test_samples": 32},
            "pipeline": {"tt_mode": "ptt", "ranks": "evbmf", "finetune_epochs": 1, "finetune_lr": 0.02,
                         **pipeline}}


class _Interrupt(Exception):
    pass


def test_pipeline_runs_stages_resumes_and_skips(tmp_path):
    out = tmp_path / "p"
    cfg = pipeline_config_from_dict(_config(out))

    def stop_after_first_dense_epoch(msg):
        if msg.startswith("epoch 1/2"):
            raise _Interrupt
    with pytest.raises(_Interrupt):
        run_pipeline(cfg, progress=False, log=stop_after_first_dense_epoch)
    assert (out / "dense" / "last.pt").is_file() and not (out / "tt_init.pt").exists()

    logs: list[str] = []
    rep = run_pipeline(cfg, progress=False, log=logs.append)
    dense_summary = json.loads((out / "dense" / "summary.json").read_text())
    assert dense_summary["resumed_from_epoch"] == 1  # continued, not restarted
    assert len((out / "dense" / "metrics.jsonl").read_text().splitlines()) == 2

    # the TT stage started from the TT-SVD of the trained dense weights, with the EVBMF ranks
    decomposition = json.loads((out / "tt_init.pt.json").read_text())
    init, _ = load_model(str(out / "tt_init.pt"))
    dense, _ = load_model(str(out / "dense" / "last.pt"))
    tt_convs = [m for m in init.modules() if isinstance(m, TTConv2d)]
    assert [m.rank for m in tt_convs] == decomposition["ranks"] == rep["ranks"]
    assert all(m.mode == "ptt" for m in tt_convs)
    for row in decomposition["layers"]:  # TT-SVD of the *trained* dense kernel, layer by layer
        w = dense.get_submodule(row["name"]).weight
        tt = init.get_submodule(row["name"])
        err = torch.linalg.vector_norm(_stt_kernel(tt) - w) / torch.linalg.vector_norm(w)
        assert err.item() == pytest.approx(row["tt_svd_error"], abs=1e-4)
    tt_summary = json.loads((out / "tt" / "summary.json").read_text())
    assert tt_summary["mode"] == "ptt" and tt_summary["epochs"] == 1
    saved = json.loads((out / "pipeline.json").read_text())
    assert saved["tt"]["final_test_acc"] == tt_summary["final_test_acc"]
    assert saved["dense"]["final_test_acc"] == dense_summary["final_test_acc"]
    assert saved["accuracy_gap"] == pytest.approx(dense_summary["final_test_acc"] - tt_summary["final_test_acc"])

    # a rerun of the finished pipeline trains nothing: every checkpoint stays as it was
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert main(["pipeline", "--config", str(_write_toml(tmp_path, _config(out))), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps


def _stt_kernel(m: TTConv2d) -> torch.Tensor:
    from ttsnn.sw.tt import merge_cores

    return merge_cores(m.g1.weight, m.g2.weight, m.g3.weight, m.g4.weight, "stt")


def _write_toml(tmp_path, cfg: dict):
    lines = []
    for section, table in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path = tmp_path / "pipeline.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pipeline_config_errors_are_clear():
    with pytest.raises(ValueError, match="tt_mode"):
        pipeline_config_from_dict(_config("x", tt_mode="dense"))
    with pytest.raises(ValueError, match=r"unknown \[pipeline\] key"):
        pipeline_config_from_dict(_config("x", epochs=3))
    with pytest.raises(ValueError, match="finetune_epochs"):
        pipeline_config_from_dict(_config("x", finetune_epochs=0))
    # a malformed EVBMF rule fails at configuration time, before the dense stage trains
    with pytest.raises(ValueError, match="evbmf\\*S"):
        pipeline_config_from_dict(_config("x", ranks="evbmf*"))
    assert pipeline_config_from_dict(_config("x", ranks="evbmf-max*1.5")).ranks == "evbmf-max*1.5"
