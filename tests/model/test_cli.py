"""The command line: JSON shape, reports, and clean errors for bad input."""

import json

import pytest

from ttsnn.model.__main__ import main
from ttsnn.sw.cli_util import run_cli

TINY = ["--arch", "tiny", "--input", "2x8x8", "--classes", "10", "--timesteps", "4", "--ranks", "4",
        "--config", "small"]


def test_energy_json_has_every_mode_with_total_breakdown_and_cycles(capsys, tmp_path):
    png = tmp_path / "e.png"
    assert main(["energy", *TINY, "--accel", "proposed", "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["modes"]) == {"dense", "stt", "ptt", "htt"}
    for m, v in out["modes"].items():
        assert v["total_pj"] > 0
        assert sum(v["breakdown"]["by_component_pj"].values()) == pytest.approx(v["total_pj"])
        assert sum(v["breakdown"]["by_pass_pj"].values()) == pytest.approx(v["total_pj"])
        assert v["cycles"]["total"] > 0
    assert png.stat().st_size > 1000


def test_energy_table_output_and_csv(capsys, tmp_path):
    csv = tmp_path / "l.csv"
    assert main(["energy", *TINY, "--accel", "sata", "--modes", "stt,ptt", "--csv", str(csv)]) == 0
    assert "stt" in capsys.readouterr().out
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("network,accelerator,mode,layer")
    assert len(lines) > 1


@pytest.mark.parametrize("argv, msg", [
    (["energy", *TINY, "--accel", "gpu"], "unknown accelerator"),
    (["energy", *TINY, "--modes", "stt,xtt"], "unknown mode"),
    (["energy", "--arch", "resnet99"], "unknown arch"),
    (["energy", *TINY, "--ranks", "999"], "out of range"),
    (["energy", *TINY[:-2], "--config", "nonexistent.toml"], "not found"),
    (["energy", *TINY, "--sparsity", "missing.json"], "not found"),
    (["tile", "--shape", "3x3", "--pool"], "even"),
    (["tile", "--accel", "sata"], "--accel"),
    (["tile", "--shape", "4x4", "--pack", "7"], "pack"),
])
def test_bad_input_gives_one_clear_line(capsys, argv, msg):
    assert run_cli(main, argv, prog="model") == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_tile_prints_counters(capsys):
    from ttsnn.gen.hostmap import COUNTER_NAMES
    assert main(["tile", "--mode", "ptt", "--shape", "4x4"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["c3_macs"] == 2 * 4 * 4 * 3 * 4 * 4  # T x H x W x 3 x r x r
    assert set(c) == set(COUNTER_NAMES) - {"spikes_out"}   # spikes_out needs data
    # the paper's arrangement: STT's clusters 2 and 3 take turns (more cycles), cluster 1
    # steps only on 1-spikes (density 0.1 of 8 channels: fewer cluster-1 steps); RTL counters
    assert main(["tile", "--mode", "stt", "--pack", "0", "--order", "0"]) == 0
    rtl = json.loads(capsys.readouterr().out)
    assert main(["tile", "--mode", "stt", "--pack", "0", "--order", "0", "--accel", "proposed"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["cycles"] > rtl["cycles"] and set(paper) == set(rtl)
    assert paper["c1_busy"] < rtl["c1_busy"]


def test_report_writes_every_file(tmp_path, monkeypatch):
    """`make energy` runs this command; here on two tiny networks to stay fast."""
    import ttsnn.model.networks as nets
    from ttsnn.model.evaluate import Workload
    monkeypatch.setattr(nets, "FIG4_NETWORKS", {
        "tiny-a": Workload("tiny", 2, (8, 8), 10, 2, 4),
        "tiny-b": Workload("tiny", 2, (8, 8), 10, 4, "uniform:6")})
    monkeypatch.setattr(nets, "PAPER_NETWORK", "tiny-b")
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out), "--config", "small"]) == 0
    for name in ("energy_report.json", "energy_layers.csv", "fig4a_sata.png", "fig4b_proposed.png",
                 "fig4b_proposed_rtl.png", "summary.md"):
        assert (out / name).stat().st_size > 100, name
    data = json.loads((out / "energy_report.json").read_text())
    assert set(data["results"]) == {"proposed", "proposed-rtl", "sata"}
    for acc in data["results"].values():
        for net in acc.values():
            assert set(net) == {"dense", "stt", "ptt", "htt"}
    summary = (out / "summary.md").read_text()
    assert "## tiny-a on the sata accelerator" in summary and "## Paper versus model" in summary
    assert data["dram_memory"] == "hbm2" and "calibration" not in data


def test_reproduce_writes_markdown_and_json(tmp_path, monkeypatch, capsys):
    import ttsnn.model.networks as nets
    import ttsnn.model.reproduce as rep
    from ttsnn.model.evaluate import Workload
    monkeypatch.setitem(nets.FIG4_NETWORKS, "tiny-b", Workload("tiny", 2, (8, 8), 10, 2, 4))
    monkeypatch.setattr(rep, "PAPER_NETWORK", "tiny-b")
    out = tmp_path / "rep"
    assert main(["reproduce", "--config", "small", "--dram", "lpddr4", "--out", str(out)]) == 0
    md = capsys.readouterr().out
    assert "| 4-cluster design: HTT -43.5 % vs STT | proposed |" in md and "lpddr4, 13.5 pJ/bit" in md
    data = json.loads((out / "reproduce.json").read_text())
    assert data["dram_memory"] == "lpddr4" and len(data["claims"]) == 7
    assert (out / "reproduce.md").read_text().strip() == md.strip()
    assert (out / "reproduce.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, msg", [
    (["reproduce", "--config", "small", "--dram", "ddr9"], "unknown DRAM type"),
    (["table", "--dram", "sram"], "unknown DRAM type"),
])
def test_bad_dram_type_is_one_line(capsys, argv, msg):
    assert run_cli(main, argv, prog="model") == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_table_lists_ranges_and_leakage(capsys):
    assert main(["table"]) == 0
    out = capsys.readouterr().out
    assert "| DRAM hbm2 |" in out and "logic and clock leakage" in out and "itrs-lop" in out
    assert "calibrat" not in out
