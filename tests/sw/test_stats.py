"""Parameter/FLOP counters against the paper's figures, the torch models, and the stats CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ttsnn.sw.__main__ import main
from ttsnn.sw.arch import network_specs
from ttsnn.sw.cli_util import run_cli
from ttsnn.sw.stats import layer_table, network_stats, parse_input_shape, torch_param_count


def test_resnet18_cifar10_dense_matches_paper():
    stats = network_stats("resnet18", 3, 32, 10, timesteps=4)
    assert stats["params"] == 11_164_362            # paper: 11.16 M (Table II: 11.20 M)
    assert stats["flops"] == 2_221_690_880          # paper: 2.221 G
    assert stats["params"] == stats["dense_params"] and stats["flops"] == stats["dense_flops"]
    assert network_stats("resnet18", 3, 32, 100)["params"] == 11_210_532   # CIFAR100: 11.21 M


def test_resnet34_ncaltech101_matches_paper():
    dense = network_stats("resnet34", 2, 48, 101, timesteps=6)
    assert dense["params"] == 21_311_205 and dense["flops"] == 15_644_212_224
    ptt = network_stats("resnet34", 2, 48, 101, timesteps=6, mode="ptt", ranks="paper-ncaltech101")
    assert round(ptt["params"] / 1e6, 2) == 2.67
    assert ptt["dense_params"] == 21_311_205 and ptt["dense_flops"] == 15_644_212_224
    # documented TT FLOP convention: chain at the input resolution for downsampling convs
    assert round(ptt["flops"] / 1e9, 2) == 1.97
    strided = network_stats("resnet34", 2, 48, 101, 6, "ptt", "paper-ncaltech101",
                            downsample="stride")
    assert round(strided["flops"] / 1e9, 2) == 1.74 and strided["params"] == ptt["params"]
    stt = network_stats("resnet34", 2, 48, 101, 6, "stt", "paper-ncaltech101")
    htt = network_stats("resnet34", 2, 48, 101, 6, "htt", "paper-ncaltech101")
    assert stt["flops"] == ptt["flops"] and htt["flops"] < ptt["flops"]


def test_htt_flops_follow_schedule():
    base = dict(arch="tiny", in_channels=2, input_size=8, num_classes=3, timesteps=4, ranks=4)
    ptt = network_stats(mode="ptt", **base)["flops"]
    all_full = network_stats(mode="htt", schedule=[1, 1, 1, 1], **base)["flops"]
    half = network_stats(mode="htt", **base)["flops"]
    none = network_stats(mode="htt", schedule=[0, 0, 0, 0], **base)["flops"]
    assert all_full == ptt > half > none
    assert half - none == all_full - half       # linear in the number of full timesteps


def test_tt_layer_counts_by_formula():
    rows = layer_table(network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", 6), 6)
    first = rows[1]
    assert first["name"] == "layers.0.0.conv1" and first["rank"] == 24
    assert first["params"] == 24 * (64 + 64) + 6 * 24 * 24
    assert first["flops"] == 6 * 48 * 48 * (64 * 24 + 6 * 24 * 24 + 24 * 64)
    assert first["dense_flops"] == 6 * 48 * 48 * 9 * 64 * 64


@pytest.mark.parametrize("mode,ranks", [("dense", None), ("ptt", "paper-ncaltech101")])
def test_counts_match_torch_model(mode, ranks):
    from ttsnn.sw.resnet import ms_resnet

    model = ms_resnet("resnet34", mode, ranks, in_channels=2, num_classes=101, timesteps=6,
                      input_size=48)
    expected = network_stats("resnet34", 2, 48, 101, 6, mode, ranks)["params"]
    assert torch_param_count(model) == expected


def test_cli_json(capsys):
    code = run_cli(main, ["stats", "--arch", "resnet34", "--input", "2x48x48", "--classes", "101",
                          "--timesteps", "6", "--mode", "ptt", "--ranks", "paper-ncaltech101",
                          "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dense_params"] == 21_311_205 and out["dense_flops"] == 15_644_212_224
    assert 2_665_000 < out["params"] < 2_675_000 and out["flops"] < out["dense_flops"]
    assert len(out["layers"]) == 1 + 32 + 3 + 1
    assert sum(row["params"] for row in out["layers"]) == out["params"]


def test_cli_table(capsys):
    assert run_cli(main, ["stats", "--arch", "tiny", "--input", "2x16x16", "--mode", "htt",
                          "--ranks", "4", "--schedule", "1010"]) == 0
    out = capsys.readouterr().out
    assert "layers.1.0.shortcut.conv" in out and "total" in out and "dense" in out


@pytest.mark.parametrize("argv,match", [
    (["--mode", "foo"], "unknown --mode 'foo'"),
    (["--arch", "vgg"], "unknown arch 'vgg'"),
    (["--input", "2x48y48"], "--input '2x48y48'"),
    (["--mode", "ptt", "--ranks", "0"], "rank 0 for layer layers.0.0.conv1"),
    (["--mode", "ptt", "--ranks", "paper-cifar"], "unknown rank preset"),
    (["--mode", "ptt", "--ranks", "paper-ncaltech101"], "is for resnet34"),
    (["--mode", "htt", "--ranks", "4", "--schedule", "11111"], "5 entries but timesteps T=4"),
    (["--mode", "dense", "--ranks", "4"], "--ranks given with --mode dense"),
    (["--timesteps", "0"], "timesteps"),
])
def test_cli_bad_input(capsys, argv, match):
    assert run_cli(main, ["stats", *argv], prog="sw") == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_exit_code():
    proc = subprocess.run([sys.executable, "-m", "ttsnn.sw", "stats", "--mode", "ptt", "--ranks", "x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown rank preset 'x'" in proc.stderr


def test_parse_input_shape():
    assert parse_input_shape("2x48x48") == (2, 48, 48)
    assert parse_input_shape("3x32") == (3, 32, 32)
    for bad in ("48", "0x4x4", "axbxc", "1x2x3x4"):
        with pytest.raises(ValueError, match="CxHxW"):
            parse_input_shape(bad)
