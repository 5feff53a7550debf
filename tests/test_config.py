"""The hardware configuration: shipped files load, derived sizes follow, bad fields are named."""

from __future__ import annotations

import copy
import dataclasses
import tomllib

import pytest

from ttsnn.gen.config import (CONFIG_DIR, BUFFER_NAMES, ConfigError, HardwareConfig, config_from_dict,
                        load_config)

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _paper_dict() -> dict:
    return tomllib.loads((CONFIG_DIR / "paper.toml").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    cfg = load_config(name)
    assert isinstance(cfg, HardwareConfig)
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert set(cfg.buffers) == set(BUFFER_NAMES)


def test_paper_matches_the_published_accelerator() -> None:
    cfg = load_config(CONFIG_DIR / "paper.toml")
    c = cfg.clusters
    assert (c.spike_pes, c.g2_pes, c.g3_pes, c.g4_pes) == (32, 32, 32, 32)
    assert c.scratchpad_bytes == 32
    assert cfg.total_buffer_bytes == 272 * 1024
    assert cfg.widths.accumulator == 16 and cfg.widths.weight == 8
    assert cfg.technology_nm == 28 and cfg.clock_mhz == 400
    assert cfg.dataflow["cluster1"] == "output-stationary"
    assert cfg.dataflow["cluster2"] == "weight-stationary"


def test_paper_builds_the_papers_arrangement_and_paper_dense_ours() -> None:
    """configs/paper.toml is the paper's arrangement (zero-skipping cluster 1, sequential STT
    chain); configs/paper_dense.toml the same chip in the generator's own arrangement, equal
    to it in every other field."""
    paper, dense = load_config("paper"), load_config("paper_dense")
    assert (paper.arrangement.cluster1, paper.arrangement.stt_chain) == ("zero_skip", "sequential")
    assert (dense.arrangement.cluster1, dense.arrangement.stt_chain) == ("dense", "pipelined")
    a, b = paper.to_dict(), dense.to_dict()
    for d in (a, b):
        del d["name"], d["arrangement"]
    assert a == b


def test_config_is_immutable() -> None:
    cfg = load_config("small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.buffers["weight"] = None  # type: ignore[index]


def test_derived_sizes() -> None:
    cfg = load_config("paper")
    wb = cfg.buffers["weight"]
    assert wb.words == wb.bytes * 8 // wb.width_bits
    assert wb.words_per_bank * wb.banks == wb.words
    assert cfg.max_window_height == cfg.limits.max_tile_height + 2
    # the paper's 32-byte scratchpad: 16 weights + 8 partial sums of 16 bits
    assert (cfg.spad_weight_entries, cfg.spad_psum_entries) == (16, 8)
    assert cfg.spad_weight_entries * cfg.widths.weight + cfg.spad_psum_entries * cfg.widths.accumulator \
        == cfg.clusters.scratchpad_bytes * 8


@pytest.mark.parametrize("mutate, field, rule", [
    (lambda d: d["clusters"].__setitem__("g2_pes", 0), "clusters.g2_pes", ">= 1"),
    (lambda d: d["clusters"].__setitem__("spike_pes", 2.5), "clusters.spike_pes", "integer"),
    (lambda d: d["widths"].__setitem__("accumulator", 12), "widths.accumulator", "product fits"),
    (lambda d: d["dataflow"].__setitem__("cluster2", "row-stationary"), "dataflow.cluster2", "one of"),
    (lambda d: d["buffers"].pop("residual"), "buffers.residual", "missing"),
    (lambda d: d["buffers"]["weight"].__setitem__("width_bits", 48), "buffers.weight.width_bits",
     "power of two"),
    (lambda d: d["buffers"]["spike_in"].__setitem__("bytes", 64), "buffers.spike_in.bytes", "too small"),
    (lambda d: d["limits"].__setitem__("max_rank", 100000), "limits.max_rank", "<="),
    (lambda d: d["clusters"].__setitem__("warp_drive", 1), "clusters.warp_drive", "unknown field"),
    (lambda d: d["dataflow"].__setitem__("cluster3", "output-stationary"), "dataflow.cluster3",
     "lock step"),
    (lambda d: d["clusters"].__setitem__("scratchpad_bytes", 2), "clusters.scratchpad_bytes",
     "too small"),
    (lambda d: d["buffers"]["spike_in"].__setitem__("width_bits", 16), "buffers.spike_in.width_bits",
     ">= clusters.spike_pes"),
    (lambda d: d.pop("clock_mhz"), "clock_mhz", "missing"),
])
def test_invalid_configs_name_field_and_rule(mutate, field: str, rule: str) -> None:
    data = copy.deepcopy(_paper_dict())
    mutate(data)
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="test.toml")
    assert info.value.field_name == field
    assert rule in str(info.value)
    assert "test.toml" in str(info.value)


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="shipped names"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
