"""``python -m sw tinysnn``: the four actions end to end on a few embedded digits, and errors."""

import json

import pytest

from ttsnn.sw.__main__ import main
from ttsnn.sw.cli_util import run_cli

SMALL = ["--max-train", "30", "--max-test", "20", "--t-present", "40", "--neurons", "8", "--no-progress"]


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_train_eval_explore_select(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tinysnn", "train", *SMALL, "--out", str(out), "--json"]) == 0
    rep = _json(capsys)
    assert rep["scheme"] == "FP32" and 0.0 <= rep["accuracy"] <= 1.0
    assert rep["memory_bits"] == 64 * 8 * 32 + 8 * 32 * 2 + 32
    assert rep["train_ops_per_image"]["steps"] >= 40
    for name in ("model.pt", "receptive_fields.png", "confusion.png", "result.json"):
        assert (out / name).is_file()
    # PTQ of the saved model: 8-bit weights take a quarter of the weight memory
    assert main(["tinysnn", "eval", "--model", str(out / "model.pt"), "--max-train", "30", "--max-test", "20",
                 "--weight-bits", "8", "--json"]) == 0
    ev = _json(capsys)
    assert ev["scheme"] == "PTQ" and ev["memory_bits"] == 64 * 8 * 8 + 8 * 32 * 2 + 32
    ex = tmp_path / "x"
    assert main(["tinysnn", "explore", *SMALL, "--precisions", "32,8", "--roundings", "nearest,stochastic",
                 "--itq-precisions", "8", "--out", str(ex), "--json"]) == 0
    obj = _json(capsys)
    names = [c["name"] for c in obj["candidates"]]
    # per variant: fp32, PTQ (2 roundings x weights / weights+neurons), ITQ (2 roundings)
    assert len(names) == 2 * (1 + 4 + 2) and "tinysnn fp32" in names and "baseline ITQ w8 n8 stochastic" in names
    assert {"memory_saving_8bit_weights", "train_energy_saving_tinysnn_fp32"} <= set(obj["summary"])
    assert (ex / "pareto.png").is_file() and (ex / "candidates.csv").is_file()
    assert main(["tinysnn", "select", "--candidates", str(ex / "candidates.json"), "--mu", "0,100",
                 "--out", str(ex), "--json"]) == 0
    sel = _json(capsys)["selection"]
    best_acc = max(c["accuracy"] for c in obj["candidates"])
    assert sel[0]["accuracy"] == best_acc
    # a huge mu picks the smallest memory ratio
    assert sel[1]["memory_ratio"] == min(c["memory_bits"] / c["fp32_memory_bits"] for c in obj["candidates"])


def test_table_output(tmp_path, capsys):
    assert main(["tinysnn", "train", *SMALL, "--variant", "baseline", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "baseline on digits" in text and "inh membrane" in text and "uJ/image" in text


@pytest.mark.parametrize("argv,msg", [
    (["tinysnn", "eval", "--model", "/nonexistent/model.pt"], "not found"),
    (["tinysnn", "select", "--candidates", "/nonexistent.json"], "not found"),
    (["tinysnn", "train", "--set", "bogus=1", "--max-train", "2"], "FIELD=VALUE"),
    (["tinysnn", "train", "--set", "tau_mem=-1", "--max-train", "2"], "tau_mem must be > 0"),
    (["tinysnn", "train", "--dataset", "mnist"], "needs --data-path"),
    (["tinysnn", "train", "--itq", "--max-train", "2"], "--itq needs"),
    (["tinysnn", "explore", "--roundings", "up", "--max-train", "2"], "unknown 'up'"),
])
def test_user_errors_are_one_line(argv, msg, capsys):
    assert run_cli(main, argv, prog="sw") == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and err.count("\n") == 1


def test_foreign_model_file_is_refused(tmp_path, capsys):
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"not a model at all")
    assert run_cli(main, ["tinysnn", "eval", "--model", str(bad)], prog="sw") == 2
    assert "not a tinySNN model file" in capsys.readouterr().err
