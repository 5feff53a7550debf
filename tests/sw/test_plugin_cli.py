"""``python -m sw convert`` (a model factory + state dict, or a project checkpoint, to a converted
file and back to plain convs) and a smoke run of ``python -m sw plugin-bench``."""

from __future__ import annotations

import json

import pytest
import torch

from ttsnn.sw.__main__ import main
from ttsnn.sw.cli_util import run_cli
from ttsnn.sw.plugin import PluginTTConv
from ttsnn.sw.plugin.files import load_converted

pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional  # noqa: E402

from ttsnn.sw.plugin.examples import spikingjelly_net  # noqa: E402

MODEL = "ttsnn.sw.plugin.examples:spikingjelly_net"


def _run(capsys, *argv):
    rc = run_cli(main, list(argv), prog="sw")
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_convert_a_spikingjelly_state_dict_and_merge_it_back(tmp_path, capsys):
    torch.manual_seed(0)
    dense = spikingjelly_net(channels=4)
    weights = tmp_path / "dense.pt"
    torch.save(dense.state_dict(), weights)
    out = tmp_path / "stt.pt"
    rc, text, err = _run(capsys, "convert", "--model", MODEL, "--model-kwargs", '{"channels": 4}',
                         "--weights", str(weights), "--mode", "stt", "--ranks", "full", "--out", str(out))
    assert rc == 0, err
    # dense 9*(2*4 + 4*8 + 8*8) + 8 (bias); full TT ranks 6, 12, 24: r(Cin+Cout) + 6r^2 (+ bias)
    assert "converted convs: 944 -> 5,108 parameters" in text and "wrote" in text
    model, meta = load_converted(out)
    assert sorted(meta["conversion"]["ranks"]) == ["0", "3", "6"]
    assert all(isinstance(model.get_submodule(n), PluginTTConv) for n in ("0", "3", "6"))
    x = (torch.rand(3, 2, 2, 8, 8) < 0.3).float()
    want = dense(x)
    functional.reset_net(dense)
    assert torch.allclose(model(x), want, atol=1e-4)  # full-rank STT = the dense network
    functional.reset_net(model)
    # PTT, then merged back: the merged state dict loads into the original architecture
    ptt = tmp_path / "ptt.pt"
    assert _run(capsys, "convert", "--model", MODEL, "--model-kwargs", '{"channels": 4}', "--weights",
                str(weights), "--ranks", "3", "--out", str(ptt), "--json")[0] == 0
    merged_path = tmp_path / "merged.pt"
    rc, text, err = _run(capsys, "convert", "--merge", str(ptt), "--out", str(merged_path))
    assert rc == 0, err
    ptt_model, _ = load_converted(ptt)
    y = ptt_model(x)
    fresh = spikingjelly_net(channels=4)
    fresh.load_state_dict(torch.load(merged_path, weights_only=True)["state_dict"])
    assert torch.allclose(fresh(x), y, atol=1e-5)
    # an existing --out needs --force
    rc, _, err = _run(capsys, "convert", "--merge", str(ptt), "--out", str(merged_path))
    assert rc == 2 and "already exists" in err


def test_convert_a_project_checkpoint(tmp_path, capsys):
    from ttsnn.sw.checkpoint import save_checkpoint
    from ttsnn.sw.resnet import ms_resnet

    torch.manual_seed(1)
    dense = ms_resnet("tiny", "dense", in_channels=2, num_classes=10, timesteps=2, input_size=8)
    ckpt = tmp_path / "dense.pt"
    save_checkpoint(ckpt, dense, with_rng=False)
    out = tmp_path / "tt.pt"
    rc, text, err = _run(capsys, "convert", "--checkpoint", str(ckpt), "--mode", "ptt", "--ranks", "4",
                         "--exclude", "conv1.conv", "--out", str(out), "--json")
    assert rc == 0, err
    rep = json.loads(text)
    # tiny: stage 16 (one block, 2 convs) and stage 32 (one block, 2 convs)
    assert [r["name"] for r in rep["layers"]] == [f"layers.{s}.0.conv{c}.conv" for s in (0, 1) for c in (1, 2)]
    model, _ = load_converted(out)
    x = torch.rand(2, 3, 2, 8, 8)
    assert model(x).shape == (3, 10)


@pytest.mark.parametrize("argv, message", [
    (["--model", "no_such_module:f", "--ranks", "2"], "cannot import 'no_such_module'"),
    (["--model", "ttsnn.sw.plugin.examples", "--ranks", "2"], "expected MODULE:FUNCTION"),
    (["--model", MODEL, "--model-kwargs", "{bad", "--ranks", "2"], "--model-kwargs is not valid JSON"),
    (["--model", MODEL], "--ranks evbmf reads trained weights"),
    (["--model", MODEL, "--ranks", "2", "--mode", "htt"], "needs timesteps"),
])
def test_convert_user_errors_are_one_line(tmp_path, capsys, argv, message):
    rc, _, err = _run(capsys, "convert", *argv, "--out", str(tmp_path / "o.pt"))
    assert rc == 2 and message in err and err.count("\n") == 1


def test_convert_refuses_a_weights_file_that_is_not_a_state_dict(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    rc, _, err = _run(capsys, "convert", "--model", MODEL, "--weights", str(bad), "--out", str(tmp_path / "o.pt"))
    assert rc == 2 and "cannot be read as a torch state dict" in err


def test_plugin_bench_smoke(capsys):
    rc, text, err = _run(capsys, "plugin-bench", "--datasets", "digits-events", "--methods", "nda,tet",
                         "--epochs", "1", "--max-train-samples", "64", "--max-test-samples", "32", "--json")
    assert rc == 0, err
    rows = json.loads(text)["rows"]
    assert [(r["method"], r["model"]) for r in rows] == [("nda", "dense"), ("nda", "ptt"),
                                                          ("tet", "dense"), ("tet", "ptt")]
    # channels 8: convs 2->8 (stem), 8->16, 16->16, 16->32; BN 2*(8+16+16+32); fc 32*10+10
    dense = 9 * (2 * 8 + 8 * 16 + 16 * 16 + 16 * 32) + 2 * 72 + 330
    # PTT rank 8 on the three block convs: r(Cin+Cout) + 6r^2
    ptt = 9 * 2 * 8 + (8 * 24 + 384) + (8 * 32 + 384) + (8 * 48 + 384) + 2 * 72 + 330
    assert [r["params"] for r in rows] == [dense, ptt, dense, ptt]
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["step_ms"] > 0 for r in rows)
