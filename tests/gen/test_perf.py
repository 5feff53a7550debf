"""gen.perf: the cycle model never beats the ideal bound, the loss columns add up, the paper
workloads stay within the issue's 1.15x goal (a deterministic model, not a timing run), and
the CLI reports every TT layer."""

from __future__ import annotations

import pytest

from ttsnn.gen.config import load_config
from ttsnn.gen.cyclemodel import TileShape, tile_timing
from ttsnn.gen.perf import GOAL, main, network_report, summary

PAPER = load_config("paper")


NETS = ("resnet18-cifar10", "resnet34-ncaltech101")


@pytest.fixture(scope="module")
def ptt_rows():
    return {net: network_report(PAPER, net, "ptt") for net in NETS}


def test_cycles_never_below_the_bound_and_losses_add_up(ptt_rows):
    rows = ptt_rows["resnet18-cifar10"]
    assert len(rows) == 16
    for r in rows:
        assert r["cycles"] >= r["bound"]
        assert r["halo"] >= 0 and r["padding"] >= 0 and r["pipeline"] >= 0
        assert abs(r["bound"] + r["halo"] + r["padding"] + r["pipeline"] - r["cycles"]) < 1e-6 * r["cycles"]


def test_paper_workloads_meet_the_goal(ptt_rows):
    """Every PTT layer that fits the weight buffer is within 1.15x of the bound; MS-ResNet34's
    512-channel stage (6 layers, cores of 181-357 KB) does not fit the 272 KB chip."""
    for net, rows in ptt_rows.items():
        s = summary(rows)
        assert s["within_goal"] == s["fitting"], (net, s)
        assert s["ratio"] <= GOAL
    r34 = ptt_rows["resnet34-ncaltech101"]
    assert [r["layer"] for r in r34 if not r["fits_weight_buffer"]] == [
        f"layers.3.{b}.conv{c}" for b in range(3) for c in (1, 2)]


@pytest.mark.parametrize("mode", ["stt", "htt"])
def test_paper_workloads_meet_the_goal_in_stt_and_htt(mode):
    """The README's claim for the other two modes: every fitting layer within 1.15x."""
    for net in NETS:
        s = summary(network_report(PAPER, net, mode))
        assert s["within_goal"] == s["fitting"], (net, mode, s)


def test_stalls_appear_when_a_consumer_is_slower():
    cfg = load_config("small")
    # G4 with Cout = 32 is far slower than G1 with Cin = 1: E1 must wait for line1 slots
    t = tile_timing(cfg, TileShape(1, 4, 32, 6, 4, 2, "ptt", (True, True)))
    assert t["c1_stall"] > 0 and t["cycles"] >= t["c4_busy"]


def test_cli_prints_table_and_draws_the_plot(capsys, tmp_path):
    assert main(["--network", "resnet18-cifar10", "--modes", "htt", "--json", str(tmp_path / "p.json"),
                 "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "layers.3.1.conv2" in out and "within 1.15x" in out
    assert (tmp_path / "p.json").exists()
    png = (tmp_path / "p.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_rejects_an_output_path_under_a_file_before_working(tmp_path):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(OSError, match="is a file, not a directory"):
        main(["--network", "resnet18-cifar10", "--modes", "htt", "--plot", str(tmp_path / "f" / "p.png")])
    assert (tmp_path / "f").read_text() == "keep"


def test_backward_bound_counts_every_backward_operation_once():
    """The backward table's ideal bound, against a count made here for a 1-pixel layer:
    PTT, Cin = 2, r = 1, Cout = 1, T = 1: G1 (recomputed), G1^T, dW1 = 3 x 2; G4^T, dW4 = 2;
    G2/G3 recomputed, transposed and as weight gradients = 18 taps; one LIF-gradient update."""
    from ttsnn.gen.backward.perf import ideal_backward_ops
    assert ideal_backward_ops(2, 1, 1, 1, 1, 1, "ptt", (True,), False) == 6 + 2 + 18 + 1
    # HTT's reduced timesteps: no G2/G3 work; pooling: a quarter of the LIF updates
    assert ideal_backward_ops(2, 1, 1, 2, 2, 2, "htt", (True, False), True) == (8 * 4 * 2 + 18 * 4 + 1 * 1 * 2)


def test_backward_bound_with_idle_lanes_counted_by_hand():
    """The bound with the lanes a channel count leaves idle: 4 lanes, the same 1-pixel layer.
    Steps per stage (lane channels rounded up to 4, times the other dimension): G1 recomputed
    4 x 2, dW1 4 x 2, G1^T 4 x 1, G4^T 4 x 1, dW4 4 x 1, 18 tap stages of 4 x 1, the LIF 4;
    over 4 lanes. With one lane it is the ideal bound."""
    from ttsnn.gen.backward.perf import ideal_backward_ops, lane_bound_cycles
    assert lane_bound_cycles(2, 1, 1, 1, 1, 1, "ptt", (True,), False, 4) == (8 + 8 + 4 + 4 + 4 + 72 + 4) // 4
    assert lane_bound_cycles(2, 1, 1, 2, 2, 2, "htt", (True, False), True, 1) == ideal_backward_ops(
        2, 1, 1, 2, 2, 2, "htt", (True, False), True)


def test_backward_table_is_at_or_above_its_bound():
    from ttsnn.gen.backward.perf import layer_backward_report
    from ttsnn.gen.config import load_config
    from ttsnn.sw.arch import WORKLOADS, default_schedule, network_specs, tt_layers
    n = WORKLOADS["resnet18-cifar10"]
    specs = tt_layers(network_specs(n.arch, n.in_channels, n.input_size, n.num_classes, mode="ptt",
                                    ranks=n.ranks, timesteps=n.timesteps))
    r = layer_backward_report(load_config("paper"), specs[1], "ptt", n.timesteps,
                              tuple(default_schedule(n.timesteps)))
    assert r["cycles"] >= r["bound"] and r["fits_backward_memories"]
    assert r["cycles"] == r["issue_cycles"] + r["pipeline"]
    h, w = (int(v) for v in r["tile"].split("x"))
    assert r["tiles"] == -(-32 // h) * -(-32 // w) > 1     # the tiles cover the 32 x 32 map


def test_streaming_need_by_hand():
    """streaming_need against figures worked by hand: r = 173, Cin = Cout = 512 on the paper
    configuration (regions w1/w4 32,768 B, w2/w3 19,200 B: every core exceeds its region),
    6 rows, T = 6, HTT with 4 full timesteps; made-up read counters."""
    from ttsnn.gen.perf import streaming_need
    counters = {"cycles": 100_000, "w1_reads": 1000, "w2_reads": 200, "w3_reads": 300, "w4_reads": 2000}
    need = streaming_need(PAPER, 173, 512, 512, 6, (True, False, True, False, True, True), "htt", counters)
    assert need["stream_cores"] == ["w1", "w2", "w3", "w4"]
    g1, g2 = 173 * 512, 3 * 173 * 173                        # 88,576 and 89,787 bytes
    assert need["stream_core_bytes"] == 2 * g1 + 2 * g2 == 356_726
    assert need["stream_today_bpc"] == pytest.approx(3500 * 32 / 100_000)   # 32-byte words
    assert need["stream_row_bpc"] == pytest.approx((2 * g1 * 36 + 2 * g2 * 24) / 100_000)
    assert need["stream_port_bpc"] == 32
    # r = 64 with 64 input and output channels fits every region: nothing streamed
    small = streaming_need(PAPER, 64, 64, 64, 8, (True,) * 4, "ptt", counters)
    assert small["stream_cores"] == [] and small["stream_today_bpc"] == small["stream_row_bpc"] == 0
    # only G2/G3 and G4 of MS-ResNet34's layers.3.0.conv1 (Cin 256, r 121): G1 = 30,976 B fits
    assert streaming_need(PAPER, 121, 256, 512, 12, (True,) * 6, "ptt", counters)["stream_cores"] == [
        "w2", "w3", "w4"]


def test_refused_layers_report_their_streaming_rates(ptt_rows):
    """The 512-channel layers' rows carry the streaming figures; today's loop orders (cluster
    1 and 4 read their whole core per pixel) would need more than the 256-bit port moves."""
    rows = {r["layer"]: r for r in ptt_rows["resnet34-ncaltech101"]}
    r = rows["layers.3.1.conv1"]
    assert not r["fits_weight_buffer"] and r["stream_core_bytes"] == 356_726
    assert r["stream_today_bpc"] > r["stream_port_bpc"] > r["stream_row_bpc"] > 0
    assert all(rows[n]["stream_cores"] == [] for n in rows if rows[n]["fits_weight_buffer"])
