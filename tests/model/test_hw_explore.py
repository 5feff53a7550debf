"""``python -m model hw-explore``: derived configurations (by hand), the energy table at other
widths (by hand from the table's published numbers), selection by tinySNN's reward, end to end."""

from __future__ import annotations

import json

import pytest
import torch

from ttsnn.gen.config import ConfigError, load_config
from ttsnn.model.energy_table import load_energy_table
from ttsnn.model.hw_explore import config_toml, derive_config, parse_widths, widen_table
from tests.checkpoints import tiny_checkpoint


def test_paper_widths_give_back_the_paper_configuration():
    paper = load_config("paper")
    d = derive_config(paper, 8, 8, 16).to_dict()
    assert d.pop("name") == "paper_w8a8m16"
    assert d == {k: v for k, v in paper.to_dict().items() if k != "name"}


def test_weight_buffer_shrinks_by_the_region_formula():
    # paper: P = 32 lanes; G1 and G4 regions ceil(32768 / 32) = 1024 words each, G2 and G3
    # ceil(3 * 80^2 / 32) = 600 words each, all P x weight bits wide; affine 16 words of
    # 32 x (2 x 16 + membrane) bits. Rounded up to whole 256-bit words of 4 banks (128 bytes).
    for wb, mb in ((8, 16), (4, 16), (6, 12), (4, 8)):
        bits = (2 * 1024 + 2 * 600) * 32 * wb + 16 * 32 * (32 + mb)
        want = -(-bits // 8 // 128) * 128
        assert derive_config(load_config("paper"), wb, 8 if wb >= 8 else wb, mb).buffers["weight"].bytes == want
    assert derive_config(load_config("paper"), 8, 8, 16).buffers["weight"].bytes == 107008


def test_wider_formats_grow_the_accumulator_and_buffers_and_invalid_ones_are_refused():
    paper = load_config("paper")
    c = derive_config(paper, 12, 8, 24)
    assert c.widths.accumulator == 20
    assert c.buffers["state_out"].bytes >= paper.buffers["state_out"].bytes * 24 // 16
    with pytest.raises(ConfigError, match="membrane"):
        derive_config(paper, 8, 8, 6)


def test_written_toml_loads_back_to_the_same_configuration(tmp_path):
    cfg = derive_config(load_config("small"), 4, 4, 8)
    p = tmp_path / "c.toml"
    p.write_text(config_toml(cfg, ["a header line"]))
    assert p.read_text().startswith("# a header line\n")
    assert load_config(p).to_dict() == cfg.to_dict()


def test_energy_table_at_other_widths_by_hand():
    t = load_energy_table()
    w = widen_table(t, [("mult_pe", "mac", 4), ("scratchpad", "read", 4), ("mult_pe", "mac", 8), ("dram", "read", 1)])
    # the 8-bit MAC is mul8 (0.205) + add16 (0.092); at 4 bits the multiplier scales by (4/8)^2
    assert w.actions[("mult_pe", "mac", 4)] == pytest.approx(0.205 * 0.25 + 0.092)
    # an 8-bit scratchpad read is reg8 (0.031); a register scales linearly
    assert w.actions[("scratchpad", "read", 4)] == pytest.approx(0.031 / 2)
    assert w.actions[("mult_pe", "mac", 8)] == t.actions[("mult_pe", "mac", 8)]
    with pytest.raises(KeyError, match="no action"):
        widen_table(t, [("nothing", "mac", 4)])


def test_parse_widths():
    assert parse_widths("8/8/16, 4/4/8,") == [(8, 8, 16), (4, 4, 8)]
    with pytest.raises(ValueError, match="WEIGHT/ACTIVATION/MEMBRANE"):
        parse_widths("8/8")


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    from ttsnn.model.__main__ import main

    tmp = tmp_path_factory.mktemp("hwx")
    ckpt = tmp / "m.pt"
    tiny_checkpoint(ckpt, "ptt", seed=0)
    out = tmp / "out"
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["hw-explore", "--checkpoint", str(ckpt), "--config", "small", "--weights", "8,4",
                   "--activations", "8", "--membranes", "16,8", "--roundings", "nearest,truncate",
                   "--itq", "4/8/8", "--itq-roundings", "stochastic", "--itq-steps", "1", "--batch-size", "4",
                   "--calib-samples", "8", "--max-test", "24", "--mu", "0,0.5,5", "--out", str(out), "--json"])
    assert rc == 0
    return json.loads(buf.getvalue()), out


def test_explore_rows_memory_energy_and_selection(explored):
    obj, out = explored
    rows = obj["candidates"]
    assert len(rows) == 2 * 2 * 2 + 1 and rows[-1]["scheme"] == "ITQ"
    by = {r["name"]: r for r in rows}
    # narrower weights: less memory by exactly (weights x 4 bits), and less energy
    n_weights = sum(s["weights"] for s in obj["layers"])
    w8, w4 = by["PTQ w8 a8 m16 nearest"], by["PTQ w4 a8 m16 nearest"]
    assert w8["memory_bits"] - w4["memory_bits"] == n_weights * 4
    assert w4["train_energy_uj_per_sample"] < w8["train_energy_uj_per_sample"]
    assert w4["infer_energy_uj_per_sample"] < w8["infer_energy_uj_per_sample"]
    assert w4["weight_buffer_bytes"] < w8["weight_buffer_bytes"]
    # the selection maximises accuracy - mu x memory / FP32 memory (ties: less memory)
    for s in obj["selection"]:
        best = max(rows, key=lambda r: (r["accuracy"] - s["mu"] * r["memory_bits"] / r["fp32_memory_bits"],
                                        -r["memory_bits"]))
        assert s["reward"] == pytest.approx(best["accuracy"] - s["mu"] * best["memory_bits"] / best["fp32_memory_bits"])
        chosen = by[s["name"]]
        assert s["config"] == f"small_w{chosen['weight_bits']}a{chosen['activation_bits']}m{chosen['membrane_bits']}"
        cfg = load_config(s["config_toml"])         # what `python -m gen --config` validates
        assert (cfg.widths.weight, cfg.widths.membrane) == (chosen["weight_bits"], chosen["membrane_bits"])
    # at a large mu the smallest memory wins
    assert by[obj["selection"][-1]["name"]]["memory_bits"] == min(r["memory_bits"] for r in rows)
    assert (out / "pareto.png").stat().st_size > 0 and (out / "candidates.json").is_file()


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    from ttsnn.model.__main__ import main

    with pytest.raises(FileNotFoundError, match="make demo"):
        main(["hw-explore", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)])
