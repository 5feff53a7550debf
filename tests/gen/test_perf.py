"""gen.perf: the cycle model never beats the ideal bound, and the CLI reports every TT layer."""

from __future__ import annotations

from gen.config import load_config
from gen.cyclemodel import TileShape, tile_timing
from gen.perf import main, network_report


def test_cycles_never_below_the_bound_and_counts_add_up():
    cfg = load_config("paper")
    rows = network_report(cfg, "resnet18-cifar10", "ptt")
    assert len(rows) == 16
    for r in rows:
        assert r["cycles"] >= r["bound"]
        assert abs(r["lane_pad"] + r["halo"] + r["pipeline"] + r["bound"] - r["cycles"]) < 1e-6 * r["cycles"] + 1


def test_stalls_appear_when_a_consumer_is_slower():
    cfg = load_config("small")
    # G4 with Cout = 32 is far slower than G1 with Cin = 1: E1 must wait for line1 slots
    t = tile_timing(cfg, TileShape(1, 4, 32, 4, 4, 2, "ptt", (True, True)))
    assert t["c1_stall"] > 0 and t["cycles"] >= t["c4_busy"]


def test_cli_prints_table(capsys, tmp_path):
    assert main(["--network", "resnet18-cifar10", "--modes", "htt", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "layers.3.1.conv2" in out and "within 1.15x" in out
    assert (tmp_path / "p.json").exists()
