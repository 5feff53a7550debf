"""Decomposition of a dense model: weights really loaded, EVBMF ranks, CLI report."""

import json

import pytest
import torch

from ttsnn.sw.__main__ import main
from ttsnn.sw.arch import max_tt_rank, tt_layers
from ttsnn.sw.checkpoint import load_model, save_checkpoint
from ttsnn.sw.cli_util import run_cli
from ttsnn.sw.decompose import decompose_model, select_ranks
from ttsnn.sw.resnet import ms_resnet


def _dense(downsample="stride", seed=0):
    torch.manual_seed(seed)
    model = ms_resnet("tiny", mode="dense", in_channels=1, num_classes=10, timesteps=2, input_size=8,
                      downsample=downsample)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters, to see that they are copied
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def test_full_rank_stt_decomposition_reproduces_the_dense_network():
    # With the strided downsampling, an STT conv of full rank is exactly a 3x3 stride-s conv, so
    # the decomposed network must compute what the dense one computes - only if every weight,
    # BN statistic and core was really loaded.
    dense = _dense()
    full = [max_tt_rank(s.in_channels, s.out_channels) for s in tt_layers(dense.spec)]
    tt, rows = decompose_model(dense, "stt", full)
    assert [r.rank for r in rows] == full
    assert all(r.tt_svd_error < 1e-5 and r.merged_error < 1e-5 for r in rows)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(tt.features(x), dense.features(x), atol=1e-4)
        assert torch.allclose(tt(x), dense(x), atol=1e-5)
    # and it is not the freshly initialised model
    fresh = ms_resnet(**tt.hparams).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), dense(x), atol=1e-3)


def test_low_rank_ptt_reports_errors_and_copies_the_rest():
    dense = _dense(downsample="maxpool")
    tt, rows = decompose_model(dense, "ptt", "uniform:2")
    assert all(r.rank == 2 and 0 < r.tt_svd_error < 1 for r in rows)
    assert all(r.merged_error > 0 for r in rows)  # PTT merges to a cross-shaped kernel, not the dense one
    sd_t, sd_d = tt.state_dict(), dense.state_dict()
    for key in ("conv1.conv.weight", "bn1.running_mean", "fc.weight", "layers.1.0.shortcut.conv.weight"):
        if key in sd_d:
            assert torch.equal(sd_t[key], sd_d[key]), key
    layer = tt.get_submodule(rows[0].name)
    assert rows[0].tt_svd_error == pytest.approx(layer.reconstruction_error)


def test_evbmf_finds_a_planted_rank_and_flags_untrained_layers():
    dense = _dense()
    name = tt_layers(dense.spec)[-1].name  # 32 -> 32
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(32, 3, generator=g) @ torch.randn(3, 32 * 9, generator=g)).view(32, 32, 3, 3)
    with torch.no_grad():
        dense.get_submodule(name).weight.copy_(w + 0.001 * torch.randn(w.shape, generator=g))
    ranks, rows = select_ranks(dense, "evbmf")
    by_name = {r.name: r for r in rows}
    assert by_name[name].rank == 3 and by_name[name].mode0_rank == 3
    untrained = [r for r in rows if r.name != name]
    assert all(r.rank == 1 and "no signal" in r.note for r in untrained)  # random init: EVBMF gives 0


def test_decompose_refuses_tt_input_and_bad_mode():
    tt = ms_resnet("tiny", mode="ptt", ranks=2, in_channels=1, num_classes=10, timesteps=2, input_size=8)
    with pytest.raises(ValueError, match="dense"):
        decompose_model(tt, "ptt", 2)
    with pytest.raises(ValueError, match="mode"):
        decompose_model(_dense(), "cp", 2)
    with pytest.raises(ValueError, match="rank"):
        decompose_model(_dense(), "ptt", "uniform:10000")


def test_cli_writes_a_tt_checkpoint_that_train_can_fine_tune(tmp_path, capsys):
    dense = _dense(downsample="maxpool")
    cfg = dict(arch="tiny", mode="dense", timesteps=2, dataset="digits", size=8, max_train_samples=64,
               max_test_samples=40, threads=1)
    save_checkpoint(tmp_path / "dense.pt", dense, epoch=5, config=cfg)
    rc = run_cli(main, ["decompose", "--checkpoint", str(tmp_path / "dense.pt"), "--mode", "htt", "--ranks",
                        "uniform:3", "--out", str(tmp_path / "tt.pt"), "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ranks"] == [3, 3, 3, 3] and rep["samples"] == 40 and "accuracy_kept" in rep
    assert rep["compression"] > 1 and json.loads((tmp_path / "tt.pt.json").read_text())["ranks"] == [3, 3, 3, 3]
    tt, meta = load_model(tmp_path / "tt.pt")
    assert meta["model"]["hparams"]["mode"] == "htt"
    # fine-tuning continues with the training CLI
    rc = run_cli(main, ["train", "--init-from", str(tmp_path / "tt.pt"), "--dataset", "digits", "--size", "8",
                        "-T", "2", "--epochs", "1", "--max-train-samples", "64", "--max-test-samples", "40",
                        "--threads", "1", "--out", str(tmp_path / "ft"), "--no-progress"])
    assert rc == 0
    ft, meta = load_model(tmp_path / "ft" / "last.pt")
    assert meta["model"]["hparams"]["mode"] == "htt" and meta["config"]["init_from"] == str(tmp_path / "tt.pt")
    changed = [k for k, v in ft.state_dict().items() if not torch.equal(v, tt.state_dict()[k])]
    assert changed  # it trained from the decomposed weights
    capsys.readouterr()
    # the human-readable report
    assert run_cli(main, ["decompose", "--checkpoint", str(tmp_path / "dense.pt"), "--mode", "ptt", "--ranks",
                          "2", "--out", str(tmp_path / "p.pt"), "--no-eval"]) == 0
    assert "layers.0.0.conv1" in capsys.readouterr().out


def test_evbmf_rule_variants_scale_and_take_the_larger_unfolding():
    from ttsnn.sw.decompose import parse_evbmf_rule

    dense = _dense()
    name = tt_layers(dense.spec)[-1].name  # 32 -> 32, planted rank 3 (as above)
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(32, 3, generator=g) @ torch.randn(3, 32 * 9, generator=g)).view(32, 32, 3, 3)
    with torch.no_grad():
        dense.get_submodule(name).weight.copy_(w + 0.001 * torch.randn(w.shape, generator=g))
    base = {r.name: r for r in select_ranks(dense, "evbmf")[1]}[name]
    by_rule = {rule: {r.name: r.rank for r in select_ranks(dense, rule)[1]}[name]
               for rule in ("evbmf*2", "evbmf*1.5", "evbmf-max", "evbmf-max*2", "evbmf*100")}
    assert base.rank == 3
    assert by_rule["evbmf*2"] == 6 and by_rule["evbmf*1.5"] == 5           # ceil(3 * 1.5) = 5
    assert by_rule["evbmf-max"] == max(base.mode0_rank, base.mode1_rank)
    assert by_rule["evbmf-max*2"] == 2 * by_rule["evbmf-max"]
    assert by_rule["evbmf*100"] == max_tt_rank(32, 32)                    # clamped to the bound
    capped = {r.name: r for r in select_ranks(dense, "evbmf*2<=4")[1]}[name]
    assert capped.rank == 4 and "capped at 4" in capped.note           # 6 capped
    with pytest.raises(ValueError, match="positive integer"):
        select_ranks(dense, "evbmf<=x")
    assert parse_evbmf_rule("uniform:4") is None and parse_evbmf_rule("EVBMF") == (False, 1.0)
    for bad in ("evbmf*", "evbmf*0", "evbmf-min", "evbmf*x"):
        with pytest.raises(ValueError, match="evbmf\\*S"):
            parse_evbmf_rule(bad)
