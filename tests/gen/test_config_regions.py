"""Derived sizes of the datapath in gen/config.py: regions fit their buffers, bad shapes are named."""

from __future__ import annotations

import copy

import pytest

from ttsnn.gen.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("name", ["paper", "small"])
def test_regions_fit_their_buffers(name):
    cfg = load_config(name)
    used = {}
    for r in cfg.regions.values():
        used[r.buffer] = used.get(r.buffer, 0) + r.bits
    for b, bits in used.items():
        assert bits <= cfg.buffers[b].bits
    # the weight regions hold the largest cores of the limits
    lim = cfg.limits
    assert cfg.regions["w1"].depth * cfg.lanes >= lim.max_pointwise_weights
    assert cfg.regions["w4"].depth * cfg.lanes >= lim.max_pointwise_weights
    assert cfg.regions["w2"].depth * cfg.lanes >= 3 * lim.max_rank ** 2
    # the line buffers hold 3 q1 and 3 q23 rows per timestep, the widest tile fits at T = 1
    assert cfg.regions["line1"].depth >= 3 * (lim.max_tile_width + 2)


def test_paper_runs_the_paper_workload_shapes():
    """MS-ResNet34's widest layer (48 columns, r = 24, T = 6) fits one full-width strip."""
    from ttsnn.gen.driver import tile_fit
    cfg = load_config("paper")
    assert tile_fit(cfg, 6, 64, 24, 64, 48, 48, False, (True,) * 4, pack=3) is None


def test_paper_keeps_272_kb():
    assert load_config("paper").total_buffer_bytes == 272 * 1024


def _small():
    return copy.deepcopy(load_config("small").to_dict())


def test_unequal_clusters_are_rejected():
    d = _small()
    d["clusters"]["g4_pes"] = 8
    with pytest.raises(ConfigError, match="clusters.g4_pes"):
        config_from_dict(d)


def test_non_power_of_two_lanes_are_rejected():
    d = _small()
    for k in ("spike_pes", "g2_pes", "g3_pes", "g4_pes", "adder_lanes", "lif_lanes"):
        d["clusters"][k] = 6
    with pytest.raises(ConfigError, match="power of two"):
        config_from_dict(d)


def test_interstage_too_small_for_the_tile_limits():
    d = _small()
    d["limits"]["max_tile_width"] = 200
    with pytest.raises(ConfigError, match="buffers.interstage.bytes"):
        config_from_dict(d)


# ---- facts written in docs/architecture.md and configs/*.toml, checked against the regions ----

def _doc_buffer_rows() -> dict[str, str]:
    """docs/architecture.md's buffer table: buffer name -> its regions column."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    rows = {}
    for line in text.split("## Buffers", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("weight", "spike_in", "interstage", "residual", "state_out"):
            rows[cells[0]] = cells[2]
    return rows


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def test_architecture_buffer_table_matches_the_paper_regions():
    import re

    from ttsnn.gen.config import LINE1_SLOTS_PER_T, LINE4_SLOTS_PER_T, ROW2_SLOTS
    cfg = load_config("paper")
    regions = cfg.regions
    rows = _doc_buffer_rows()
    assert set(rows) == {"weight", "spike_in", "interstage", "residual", "state_out"}
    seen = set()
    for buffer, text in rows.items():
        # "`w2`, `w3` 18.75 KB each" names two regions of one size
        for names, kb in re.findall(r"((?:`\w+`(?:, )?)+) ([\d.]+) KB", text):
            for name in re.findall(r"`(\w+)`", names):
                r = regions[name]
                assert r.buffer == buffer, (name, buffer)
                assert abs(_num(kb) * 1024 - r.bits / 8) <= 0.01 * r.bits / 8, (name, kb, r.bits / 8)
                seen.add(name)
    assert seen == {"w1", "w2", "w3", "w4", "affine", "line1", "line4", "row2"}
    inter = rows["interstage"]
    assert int(re.search(r"\((\d) q1 rows per timestep\)", inter)[1]) == LINE1_SLOTS_PER_T
    assert int(re.search(r"\((\d) q23 rows per timestep\)", inter)[1]) == LINE4_SLOTS_PER_T
    assert int(re.search(r"\((\d) q2 rows\)", inter)[1]) == ROW2_SLOTS
    words = {b: _num(re.search(r"\(([\d,]+) words", t)[1]) for b, t in rows.items() if "words" in t}
    assert words == {"spike_in": regions["spike_in"].depth, "residual": regions["residual"].depth,
                     "state_out": regions["membrane"].depth}
    assert regions["spikes"].depth == regions["membrane"].depth


@pytest.mark.parametrize("name", ["paper", "small"])
def test_config_comments_match_the_regions(name):
    """A config's comments that describe the interstage split state the region facts."""
    import re

    from ttsnn.gen.config import CONFIG_DIR, LINE1_SLOTS_PER_T, LINE4_SLOTS_PER_T, ROW2_SLOTS
    cfg = load_config(name)
    comments = " ".join(line.split("#", 1)[1] for line in (CONFIG_DIR / f"{name}.toml").read_text().splitlines()
                        if "#" in line)
    comments = re.sub(r"\s+", " ", comments)
    m = re.search(r"(\d) q1 rows and (\d) q23 rows of every timestep \((\d+) words of (\d+) bytes per row", comments)
    if m is None:
        assert "q23 rows" not in comments and "q1 rows" not in comments
        return
    assert (int(m[1]), int(m[2])) == (LINE1_SLOTS_PER_T, LINE4_SLOTS_PER_T)
    assert int(m[3]) == cfg.interstage_row_words
    assert int(m[4]) * 8 == cfg.lanes * cfg.widths.activation
    assert int(re.search(r"(\d) q2 rows", comments)[1]) == ROW2_SLOTS
    line1 = cfg.regions["line1"]
    assert line1.depth == LINE1_SLOTS_PER_T * cfg.limits.max_timesteps * cfg.interstage_row_words
    assert cfg.regions["line4"].depth == LINE4_SLOTS_PER_T * cfg.limits.max_timesteps * cfg.interstage_row_words
