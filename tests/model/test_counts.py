"""Counts: non-negativity, and the operation counts against independent references."""


import pytest

from ttsnn.model.counts import Counts, Sparsity, layer_cores
from ttsnn.sw.arch import network_specs


def test_counts_reject_negative_nan_and_unknown_components():
    c = Counts()
    c.add("mult_pe", "mac", 8, 3)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=">= 0"):
            c.add("mult_pe", "mac", 8, bad)
    with pytest.raises(ValueError, match="unknown component"):
        c.add("gpu", "mac", 8, 1)
    with pytest.raises(ValueError):
        c.scaled(-1.0)
    assert c.get("mult_pe", "mac", 8) == 3


# FLOPs = MACs of every conv and the FC over T, published in shared/reference/ttsnn.md
@pytest.mark.parametrize("arch, cin, size, classes, T, flops", [
    ("resnet18", 3, 32, 10, 4, 2_221_690_880),
    ("resnet34", 2, 48, 101, 6, 15_644_212_224),
])
def test_dense_forward_macs_equal_the_published_flops(arch, cin, size, classes, T, flops):
    from ttsnn.sw.stats import network_stats
    specs = network_specs(arch, cin, size, classes, "dense", None, T)
    assert sum(c.macs for s in specs for c in layer_cores(s, T)) == flops
    # ... and sw.stats' convention (MACs per timestep x T), counted there from the same specs
    assert network_stats(arch, cin, size, classes, T)["flops"] == flops


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_tt_core_macs_follow_the_layer_shapes(mode):
    """G1..G4 MACs from the cores equal sw.arch's count (same convention, counted apart)."""
    T = 6
    specs = network_specs("resnet34", 2, 48, 101, mode, "paper-ncaltech101", T)
    for s in specs:
        cores = layer_cores(s, T)
        assert sum(c.macs for c in cores) == s.macs(T), s.name
        if s.is_tt:
            r = s.rank
            g1, g2, g3, g4 = cores
            assert g2.weights == g3.weights == 3 * r * r
            assert g1.weights + g4.weights + g2.weights + g3.weights == s.params()
            assert g2.steps == (3 if mode == "htt" else T)


def test_sparsity_validates_fractions(tmp_path):
    with pytest.raises(ValueError, match="fraction"):
        Sparsity(spike=1.5)
    with pytest.raises(FileNotFoundError):
        Sparsity.from_json(tmp_path / "none.json")
    p = tmp_path / "s.json"
    p.write_text('{"spike": 0.8, "grad": 0.6, "per_layer": {"layers.0.0.conv1": 0.95}}')
    sp = Sparsity.from_json(p)
    assert sp.input_density("layers.0.0.conv1") == pytest.approx(0.05)
    assert sp.input_density("other") == pytest.approx(0.2)
    p.write_text('{"spikes": 0.8}')
    with pytest.raises(ValueError, match="unknown keys"):
        Sparsity.from_json(p)
