"""Generation: manifest contents, byte-identical output, committed rtl/ up to date, lint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttsnn.gen.config import load_config
from ttsnn.gen.driver import Driver
from ttsnn.gen.emit import write_outputs
from ttsnn.gen.hostmap import host_map

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtl_small")
    write_outputs(load_config("small"), out)
    return out


def test_manifest_describes_ports_registers_counters_regions(small_out):
    man = json.loads((small_out / "manifest.json").read_text())
    names = {p["name"] for p in man["ports"]}
    assert {"clk", "rst", "host_addr", "host_wdata", "host_write", "host_read", "host_rdata",
            "host_rvalid", "busy", "done", "event"} <= names
    assert man["host_read_latency"] == 2
    assert {c["name"] for c in man["counters"]} >= {"cycles", "c1_busy", "c4_macs", "host_words_in"}
    regions = {r["name"]: r for r in man["regions"]}
    assert set(regions) == {"w1", "w2", "w3", "w4", "affine", "spike_in", "residual", "membrane", "spikes",
                            "gbuf", "gweights", "trace", "wgrad"}          # forward, then backward
    assert {c["name"] for c in man["backward_counters"]} >= {"stage_busy", "lifg_updates", "wgrad_updates"}
    spans = sorted((r["base"], r["base"] + r["span"]) for r in man["regions"])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))      # no overlap
    # the driver reads its map from the manifest's configuration and gets the same map
    assert Driver(small_out).map.to_dict() == host_map(load_config("small")).to_dict()
    text = (small_out / "ttsnn_accel.v").read_text()
    assert "module ttsnn_accel(" in text and "/work" not in text


def test_generation_is_byte_identical(small_out, tmp_path):
    write_outputs(load_config("small"), tmp_path)
    for name in ("ttsnn_accel.v", "manifest.json"):
        assert (tmp_path / name).read_bytes() == (small_out / name).read_bytes()


def test_committed_rtl_small_is_up_to_date(small_out):
    for name in ("ttsnn_accel.v", "manifest.json"):
        committed = ROOT / "rtl" / "small" / name
        assert committed.exists(), "rtl/small missing: run `make rtl`"
        assert committed.read_bytes() == (small_out / name).read_bytes(), \
            f"rtl/small/{name} is stale: run `make rtl`"


@pytest.mark.slow
def test_committed_rtl_paper_is_up_to_date(tmp_path):
    write_outputs(load_config("paper"), tmp_path)
    for name in ("ttsnn_accel.v", "manifest.json"):
        assert (ROOT / "rtl" / "paper" / name).read_bytes() == (tmp_path / name).read_bytes()


def test_verilator_lint_passes(small_out):
    from ttsnn.gen.lint import lint_file
    ok, out = lint_file(small_out / "ttsnn_accel.v")
    assert ok, out


def test_cli_reports_bad_config(tmp_path, capsys):
    from ttsnn.gen.__main__ import main
    from ttsnn.sw.cli_util import run_cli
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "configs" / "small.toml").read_text().replace("g2_pes = 4", "g2_pes = 3"))
    assert run_cli(main, ["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "clusters.g2_pes" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
