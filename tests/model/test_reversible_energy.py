"""``python -m model energy --reversible``: the recompute transform of a layer's counts checked
entry by entry against the rule written out by hand, and the command's report."""

import json

import pytest

from ttsnn.gen.config import load_config
from ttsnn.model.__main__ import main
from ttsnn.model.accelerators import make_accelerator
from ttsnn.model.counts import Sparsity
from ttsnn.model.energy_table import load_energy_table
from ttsnn.model.evaluate import Workload
from ttsnn.model.reversible import evaluate_reversible, recompute_layer
from ttsnn.sw.arch import network_specs

TINY = ["--arch", "tiny", "--input", "2x8x8", "--classes", "10", "--timesteps", "4", "--ranks", "4",
        "--config", "small"]


@pytest.mark.parametrize("accel,mode", [("proposed", "dense"), ("proposed", "ptt"), ("sata", "stt")])
@pytest.mark.parametrize("backward,reruns", [("streamlined", 1), ("naive", 2)])
def test_recompute_layer_follows_the_rule(accel, mode, backward, reruns):
    cfg = load_config("small")
    acc = make_accelerator(accel, cfg)
    T = 4
    specs = network_specs("tiny", 2, 8, 10, mode, 4 if mode != "dense" else None, T, reversible=True)
    spec = next(s for s in specs if s.reversible)
    assert (spec.in_channels, spec.out_channels) == (8, 8)
    res = acc.run_layer(spec, T, Sparsity())
    new = recompute_layer(res, spec, T, acc, backward)
    n = 8 * 8 * 8 * T                               # out neurons x timesteps
    saved = res.info.get("saved_bits", 0.0)
    # the single array's TT layers keep G4's (and STT G3's) input; the RTL keeps a trace instead
    assert (saved > 0) == (mode != "dense" and accel == "sata")
    f0, f1 = res.passes["forward"], new.passes["forward"]
    b0, b1 = res.passes["backward"], new.passes["backward"]
    w0, w1 = res.passes["weight_update"], new.passes["weight_update"]
    assert f1.counts.get("dram", "write", 1) == pytest.approx(f0.counts.get("dram", "write", 1) - saved)
    assert w1.counts.get("dram", "read", 1) == pytest.approx(w0.counts.get("dram", "read", 1) - saved)
    assert f1.cycles == f0.cycles and w1.cycles == w0.cycles
    assert b1.cycles == pytest.approx(b0.cycles + reruns * f0.cycles)
    m = cfg.widths.membrane
    assert acc.state_bits == m + 1
    assert b1.counts.get("dram", "read", 1) == pytest.approx(
        b0.counts.get("dram", "read", 1) - n * (m + 1) + n * m + reruns * f0.counts.get("dram", "read", 1))
    assert b1.counts.get("adder", "add", 16) == pytest.approx(
        b0.counts.get("adder", "add", 16) + n + reruns * f0.counts.get("adder", "add", 16))
    for key, v in f0.counts.items():   # every forward action is repeated, DRAM writes excepted
        if key[0] not in ("dram", "adder"):
            assert b1.counts.get(*key) == pytest.approx(b0.counts.get(*key) + reruns * v), key
    with pytest.raises(ValueError, match="not a reversible layer"):
        recompute_layer(res, specs[0], T, acc)


def test_network_comparison_keeps_other_layers_and_counts_the_footprint():
    cfg = load_config("small")
    acc = make_accelerator("proposed", cfg)
    wl = Workload("tiny", 2, (8, 8), 10, 4, 4)
    comp = evaluate_reversible(wl, "ptt", acc, load_energy_table())
    names = [l.name for l in comp.stored.layers]
    assert [r["name"] for r in comp.rows] == ["layers.0.0.conv1", "layers.0.0.conv2"]
    for s, r in zip(comp.stored.layers, comp.recompute.layers):
        if s.name not in ("layers.0.0.conv1", "layers.0.0.conv2"):
            assert s is r
    assert names[0] == "conv1" and "fc" in names
    n = 8 * 8 * 8 * 4
    # the chain's output (both 8-channel groups, membrane bits) stays; the two layers' states and
    # saved maps go
    saved = sum(acc.run_layer(s, 4, Sparsity()).info.get("saved_bits", 0.0)
                for s in network_specs("tiny", 2, 8, 10, "ptt", 4, 4, reversible=True) if s.reversible)
    expected = 2 * n * acc.state_bits + saved - 2 * n * cfg.widths.membrane
    assert comp.footprint_stored_bits - comp.footprint_recompute_bits == pytest.approx(expected)
    s = comp.summary()
    assert s["delta_pj"] == pytest.approx(sum(r["delta_pj"] for r in comp.rows))


def test_cli_reversible_json_and_table(capsys):
    assert main(["energy", *TINY, "--modes", "dense,htt", "--reversible", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["reversible"]
    assert set(out) == {"dense", "htt"}
    for v in out.values():
        assert v["backward"] == "streamlined" and v["reversible_layers"] == len(v["layers"]) == 2
        assert v["footprint_stored_bits"] > v["footprint_recompute_bits"] > 0
    assert main(["energy", *TINY, "--modes", "stt", "--reversible", "naive"]) == 0
    text = capsys.readouterr().out
    assert "layers.0.0.conv2" in text and "naive" in text
