"""Generation: manifest contents, byte-identical output, committed rtl/ up to date, lint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttsnn.gen.config import load_config
from ttsnn.gen.driver import Driver
from ttsnn.gen.emit import read_verilog, split_verilog, verilog_files, write_outputs
from ttsnn.gen.hostmap import host_map

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_whole():
    """The small design's one-file Verilog, generated once for this module (a generation takes
    a CPU-quarter-minute; test_generation_is_byte_identical runs a second, independent one)."""
    from ttsnn.gen.emit import verilog_text
    return verilog_text(load_config("small"))


def _write_small(out: Path, whole: str) -> None:
    """write_outputs of the small configuration, its Verilog text the module's generation."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ttsnn.gen.emit.verilog_text", lambda _cfg: whole)
        write_outputs(load_config("small"), out)


@pytest.fixture(scope="module")
def small_out(tmp_path_factory, small_whole):
    out = tmp_path_factory.mktemp("rtl_small")
    _write_small(out, small_whole)
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
    assert man["verilog_files"][0] == man["verilog"] == "ttsnn_accel.v"


def _names(pattern: str, text: str) -> list[str]:
    import re
    return re.findall(pattern, text, re.M)


def test_design_is_split_per_unit_and_loses_no_module(small_out, small_whole):
    """Every module of the one-file Verilog is in exactly one unit file, unchanged, and each
    file holds one unit's hierarchy."""
    whole = small_whole
    files = verilog_files(small_out)
    assert [f.name for f in files] == json.loads((small_out / "manifest.json").read_text())["verilog_files"]
    assert {f.name for f in files} >= {"ttsnn_accel.v", "ttsnn_accel.backward.v", "ttsnn_accel.e4.v",
                                       "ttsnn_accel.memories.v"}
    module = r"^module\s+\\?(\S+?)[\s(]"
    assert sorted(_names(module, read_verilog(files))) == sorted(_names(module, whole))
    for f in files:
        unit = f.name[len("ttsnn_accel."):-len(".v")]
        names = _names(module, f.read_text())
        assert names and all(n == "ttsnn_accel" if f.name == "ttsnn_accel.v"
                             else n == f"ttsnn_accel.{unit}" or n.startswith(f"ttsnn_accel.{unit}.")
                             for n in names), f.name
    body = lambda t: t.split("\n\n", 1)[1]   # noqa: E731  (without the header line)
    blocks = sorted(b for f in files for b in body(f.read_text()).rstrip("\n").split("\n\n(*"))
    assert len(blocks) == len(_names(module, whole))
    assert all(b.strip("(*") in whole for b in blocks)


def test_split_refuses_text_it_cannot_place():
    with pytest.raises(ValueError, match="header"):
        split_verilog("module ttsnn_accel(); endmodule\n", "ttsnn_accel")
    with pytest.raises(ValueError, match="not inside"):
        split_verilog("/* g */\n\n(* a *)\nmodule ttsnn_accel(); endmodule\n\n(* a *)\nmodule other(); endmodule\n",
                      "ttsnn_accel")


def test_generation_is_byte_identical(small_out, tmp_path):
    write_outputs(load_config("small"), tmp_path)
    names = [f.name for f in verilog_files(small_out)] + ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for name in names:
        assert (tmp_path / name).read_bytes() == (small_out / name).read_bytes()


def test_regeneration_removes_files_the_design_no_longer_has(small_whole, tmp_path):
    _write_small(tmp_path, small_whole)
    man = json.loads((tmp_path / "manifest.json").read_text())
    man["verilog_files"].append("ttsnn_accel.gone.v")       # as if an older design had a unit more
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    (tmp_path / "ttsnn_accel.gone.v").write_text("module x; endmodule\n")
    (tmp_path / "notes.v").write_text("someone's file\n")
    _write_small(tmp_path, small_whole)
    assert not (tmp_path / "ttsnn_accel.gone.v").exists() and (tmp_path / "notes.v").exists()


#: the largest file this repository tracks (a repository hygiene limit; rtl/ is committed)
MAX_TRACKED_BYTES = 5 * 1024 * 1024


@pytest.mark.parametrize("name", ["small", "paper", "paper_dense"])
def test_committed_rtl_files_stay_small_enough_to_track(name):
    files = verilog_files(ROOT / "rtl" / name)
    assert all(f.stat().st_size < MAX_TRACKED_BYTES for f in files), \
        {f.name: f.stat().st_size for f in files}


def _assert_committed_equal(name: str, fresh: Path) -> None:
    committed = ROOT / "rtl" / name
    assert (committed / "manifest.json").exists(), f"rtl/{name} missing: run `make rtl`"
    want = [f.name for f in verilog_files(fresh)] + ["manifest.json"]
    assert sorted(p.name for p in committed.iterdir()) == sorted(want), f"rtl/{name} is stale: run `make rtl`"
    for n in want:
        assert (committed / n).read_bytes() == (fresh / n).read_bytes(), f"rtl/{name}/{n} is stale: run `make rtl`"


def test_committed_rtl_small_is_up_to_date(small_out):
    _assert_committed_equal("small", small_out)


@pytest.mark.slow
def test_committed_rtl_paper_is_up_to_date(tmp_path):
    write_outputs(load_config("paper"), tmp_path)
    _assert_committed_equal("paper", tmp_path)


def test_verilator_lint_passes(small_out):
    from ttsnn.gen.lint import lint_file
    ok, out = lint_file(verilog_files(small_out))
    assert ok, out


def test_lint_reports_a_missing_design_file(small_out, tmp_path, capsys):
    import shutil
    from ttsnn.gen.lint import main
    from ttsnn.sw.cli_util import run_cli
    d = tmp_path / "rtl" / "small"
    shutil.copytree(small_out, d)
    (d / "ttsnn_accel.e4.v").unlink()
    assert run_cli(main, [str(tmp_path / "rtl")]) != 0
    err = capsys.readouterr().err
    assert "ttsnn_accel.e4.v" in err and "make rtl" in err and "Traceback" not in err


def test_cli_reports_bad_config(tmp_path, capsys):
    from ttsnn.gen.__main__ import main
    from ttsnn.sw.cli_util import run_cli
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "configs" / "small.toml").read_text().replace("g2_pes = 4", "g2_pes = 3"))
    assert run_cli(main, ["--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "clusters.g2_pes" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
