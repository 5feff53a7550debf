"""Benchmark structure on a tiny workload (no timing assertions)."""

import json

import torch

from ttsnn.sw.__main__ import main
from ttsnn.sw.bench import PRESETS, bench_lif, bench_modes, format_table, saved_tensor_bytes
from ttsnn.sw.cli_util import run_cli


def test_bench_modes_structure():
    wl = PRESETS["tiny"]
    res = bench_modes(wl, reps=2, warmup=1, threads=1, progress=False)
    assert list(res) == ["dense", "stt", "ptt", "htt"]
    for mode, r in res.items():
        assert len(r["times_s"]) == 2 and r["q1_s"] <= r["median_s"] <= r["q3_s"]
        assert r["iqr_s"] >= 0 and r["min_s"] > 0 and r["saved_bytes"] > 0
        assert r["peak_bytes"] is None or r["peak_bytes"] >= r["params"] * 4
    assert res["dense"]["speedup_vs_dense"] == 1.0
    assert res["ptt"]["params"] < res["dense"]["params"]
    table = format_table(res, wl, 1)
    assert table.count("\n| ") == 5 and "| ptt |" in table


def test_saved_tensor_bytes_counts_distinct_storages():
    a = torch.randn(1000, requires_grad=True)
    out, n = saved_tensor_bytes(lambda: (a * a).sum())  # mul saves a twice: one storage
    assert n == 4000
    out, n = saved_tensor_bytes(lambda: (a.exp() * 2).sum())  # exp saves its 4000-byte result
    assert n == 4000


def test_lif_bench_runs_with_or_without_spikingjelly():
    res = bench_lif((2, 2, 4, 4, 4), reps=1, warmup=0)
    assert res["ours"]["saved_bytes"] > 0
    if res["spikingjelly"] is None:
        assert "constraints/torch.txt" in res["spikingjelly_error"]
    else:
        assert res["spikes_equal"]  # same equations, same spikes


def test_bench_cli_json(capsys):
    rc = run_cli(main, ["bench", "--preset", "tiny", "--modes", "dense,ptt", "--reps", "1", "--warmup", "0",
                        "--threads", "1", "--no-memory", "--json"])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"preset", "workload", "threads", "tt_backward", "freed_memory_kept", "dense", "ptt"}
    assert obj["workload"]["arch"] == "tiny" and obj["tt_backward"] == "recompute"
    # modes take turns: the paired speed-up is the median of per-round ratios
    assert obj["ptt"]["speedup_paired"] == obj["dense"]["times_s"][0] / obj["ptt"]["times_s"][0]
    assert run_cli(main, ["bench", "--modes", "dense,cp"]) == 2
    assert "cp" in capsys.readouterr().err
    assert run_cli(main, ["bench", "--preset", "tiny,mnist"]) == 2
    assert "mnist" in capsys.readouterr().err


def test_bench_tt_backward_switch_saves_less_and_restores_default(capsys):
    from ttsnn.sw.tt import TTConv2d

    saved = {}
    for choice in ("plain", "recompute", "keep-rank"):
        rc = run_cli(main, ["bench", "--preset", "tiny", "--modes", "ptt", "--reps", "1", "--warmup", "0",
                            "--threads", "1", "--json", "--tt-backward", choice])
        assert rc == 0
        saved[choice] = json.loads(capsys.readouterr().out)["ptt"]["saved_bytes"]
        # the switch does not outlive the command
        assert TTConv2d.memory_saving is True and TTConv2d.keep_rank_intermediates is False
    assert saved["recompute"] < saved["keep-rank"] < saved["plain"]


def test_profile_breakdown_attributes_every_module_once():
    from ttsnn.sw.bench import format_breakdown, profile_breakdown
    from ttsnn.sw.resnet import ms_resnet

    wl = PRESETS["tiny"]
    torch.set_num_threads(1)
    for mode in ("dense", "ptt"):
        r = profile_breakdown(wl, mode, steps=1)
        model = ms_resnet("tiny", mode=mode, ranks=None if mode == "dense" else wl.ranks, in_channels=2,
                          num_classes=10, timesteps=wl.timesteps, input_size=wl.size)
        names = [type(m).__name__ for m in model.modules()]
        # counted independently: every LIF and BN module once; every conv once (a TT conv's core
        # convs belong to it, not counted on their own)
        assert r["lif"]["forward_calls"] == names.count("MultiStepLIF")
        assert r["batchnorm"]["forward_calls"] == names.count("BatchNormTB")
        n_tt = names.count("TTConv2d")
        n_plain = names.count("Conv2d") - 4 * n_tt - names.count("DenseConv3x3")   # cores / wrapped convs
        assert r["convolutions"]["forward_calls"] == n_tt + names.count("DenseConv3x3") + n_plain
        for cat in ("convolutions", "batchnorm", "lif"):
            assert r[cat]["forward_s"] > 0 and r[cat]["backward_s"] > 0
        parts = sum(r[c]["total_s"] for c in ("convolutions", "batchnorm", "lif", "optimizer"))
        assert parts <= r["step_s"] * 1.001
    assert "| ptt |" in format_breakdown([r], wl, 1)
