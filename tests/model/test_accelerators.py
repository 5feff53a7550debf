"""Both accelerators: non-negative counts, conservation, the data movement each implies."""

import math

import pytest

from ttsnn.gen.config import load_config
from ttsnn.model.accelerators import Proposed, SataLike, make_accelerator
from ttsnn.model.array import Step, spill_schedule
from ttsnn.model.counts import CATEGORIES, PASSES, Sparsity, layer_cores
from ttsnn.model.energy_table import load_energy_table
from ttsnn.model.evaluate import Workload, evaluate_network
from ttsnn.sw.arch import network_specs

TINY = Workload("tiny", 2, (8, 8), 10, 4, 4)


@pytest.fixture(scope="module")
def table():
    return load_energy_table()


@pytest.mark.parametrize("config", ["small", "paper"])
@pytest.mark.parametrize("accel", ["proposed", "sata"])
@pytest.mark.parametrize("mode", ["dense", "stt", "ptt", "htt"])
def test_counts_non_negative_and_totals_equal_breakdowns(config, accel, mode, table):
    cfg = load_config(config)
    r = evaluate_network(TINY, mode, accel, cfg, table)
    for layer in r.layers:
        for p in PASSES:
            pr = layer.result.passes[p]
            assert pr.cycles >= 0
            for _, n in pr.counts.items():
                assert n >= 0 and math.isfinite(n)
            for c in CATEGORIES:
                assert layer.energy[p][c] >= 0
    total = r.total_pj
    assert total > 0
    assert sum(r.by_pass().values()) == pytest.approx(total)
    assert sum(r.by_category().values()) == pytest.approx(total)
    assert sum(sum(v.values()) for v in r.by_pass_category().values()) == pytest.approx(total)
    assert sum(l.total_pj for l in r.layers) == pytest.approx(total)
    assert r.cycles()["total"] == pytest.approx(sum(r.cycles()[p] for p in PASSES))


def test_sata_dense_forward_ops_equal_macs_per_timestep_times_T():
    cfg = load_config("paper")
    acc = SataLike(cfg)
    T = 4
    specs = network_specs("resnet18", 3, 32, 10, "dense", None, T)
    total = 0.0
    for s in specs:
        c = acc.run_layer(s, T, Sparsity()).passes["forward"].counts
        total += c.get("mult_pe", "mac", 8) + c.get("mult_pe", "accumulate", 16) + c.get("mult_pe", "slot", 16)
    assert total == pytest.approx(2_221_690_880)


def _one_layer_per_shape(specs):
    """The TT layers of ``specs``, one per (kind, channels, stride, size, downsample): the
    layers of a stage differ only in rank, which does not change how tiles add halo work."""
    seen = {}
    for s in specs:
        if s.is_tt:
            seen.setdefault((s.kind, s.in_channels, s.out_channels, s.stride, s.in_hw, s.downsample), s)
    return list(seen.values())


@pytest.mark.parametrize("every_layer", [
    False, pytest.param(True, marks=pytest.mark.slow, id="every-layer")], ids=lambda v: "one-per-shape" if v is False else None)
def test_proposed_forward_macs_cover_the_layer_plus_halos(every_layer):
    """Cluster 2-4 MACs are at least the layer's G2..G4 MACs (tiles add halo work)."""
    cfg = load_config("paper")
    acc = make_accelerator("proposed-rtl", cfg)
    T = 6
    for mode in ("stt", "ptt"):
        specs = network_specs("resnet34", 2, 48, 101, mode, "paper-ncaltech101", T)
        specs = [s for s in specs if s.is_tt] if every_layer else _one_layer_per_shape(specs)
        assert len(specs) == (32 if every_layer else 7)
        for s in specs:
            res = acc.run_layer(s, T, Sparsity())
            g1, g2, g3, g4 = layer_cores(s, T)
            macs = res.passes["forward"].counts.get("mult_pe", "mac", 8)
            assert macs >= g2.macs + g3.macs + g4.macs
            assert macs <= 3.5 * (g2.macs + g3.macs + g4.macs)
            if mode == "ptt":  # PTT computes G3 and G4 exactly on the tile's pixels
                cnt = res.info["counters"]
                assert cnt["c3_macs"] == g3.macs * math.ceil(s.out_channels / res.info["tile_out_channels"])


def test_spill_schedule_pushes_the_waiting_branch_out_first():
    steps = [Step("G1", ("x",), ("q1",)), Step("G2", ("q1",), ("a2",)), Step("G3", ("q1",), ("a3",)),
             Step("merge", ("a2", "a3"), ("m",)), Step("G4", ("m",), ())]
    sizes = {"x": 10, "q1": 10, "a2": 20, "a3": 20, "m": 10}
    none = spill_schedule(steps, sizes, capacity=1000, in_dram=("x",))
    assert none == {"x": 10, "q1": 0, "a2": 0, "a3": 0, "m": 0}
    some = spill_schedule(steps, sizes, capacity=40, in_dram=("x",))
    # at G3: q1 + a3 + waiting a2 = 50 > 40; a2 (held) goes first
    assert some["a2"] == 10 and some["a3"] == 0 and some["q1"] == 0
    with pytest.raises(ValueError):
        spill_schedule(steps, dict(sizes, m=-1), 40)


def test_sata_ptt_moves_more_dram_data_than_stt_where_its_branch_spills():
    cfg = load_config("paper")
    acc = SataLike(cfg)
    T = 6
    spilled = 0
    for s_stt, s_ptt in zip(network_specs("resnet34", 2, 48, 101, "stt", "paper-ncaltech101", T),
                            network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", T)):
        if not s_stt.is_tt:
            continue
        r_stt, r_ptt = (acc.run_layer(s, T, Sparsity()) for s in (s_stt, s_ptt))
        if r_ptt.info["spilled_bits_forward"]["a2"] > 0:
            spilled += 1
            d = [r.passes["forward"].counts.bits("dram") for r in (r_stt, r_ptt)]
            assert d[1] > d[0], s_stt.name
    assert spilled >= 10  # the large early layers do not fit the 167.5 KB of activation buffers


def test_proposed_stt_clusters_2_and_3_take_turns_on_the_papers_design():
    """The paper's design has no G2 -> G3 path: STT's clusters 2 and 3 never overlap, so its
    forward pass takes at least their summed busy cycles; PTT runs them in lock step. The
    generated RTL pipelines them (cluster 3 on cluster 2's q2 rows)."""
    cfg = load_config("paper")
    T = 6
    s_stt = network_specs("resnet34", 2, 48, 101, "stt", "paper-ncaltech101", T)[1]
    s_ptt = network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", T)[1]
    paper, rtl = Proposed(cfg), make_accelerator("proposed-rtl", cfg)
    stt, ptt = (paper.run_layer(s, T, Sparsity()).passes["forward"] for s in (s_stt, s_ptt))
    assert stt.cycles >= stt.busy["c2"] + stt.busy["c3"]
    assert ptt.cycles < 0.6 * stt.cycles
    assert ptt.busy["c2"] == ptt.busy["c3"]
    stt_rtl = rtl.run_layer(s_stt, T, Sparsity()).passes["forward"]
    assert stt_rtl.cycles < 0.6 * stt.cycles
    assert stt_rtl.cycles == rtl.run_layer(s_stt, T, Sparsity()).info["counters"]["cycles"]


def test_layers_beyond_the_weight_buffer_are_costed_with_streamed_weights():
    """MS-ResNet34's 512-channel stage: five layers' cores exceed the paper configuration's
    weight buffer with a G1 beyond region w1. Both the generator's own arrangement
    (``proposed-rtl``, dense cluster 1) and the paper's (zero-skipping cluster 1) stream G1,
    G2, G3 and G4 and plan them on the real configuration, costed from the streamed traffic
    (no large-buffer copy): every tile's cores come from DRAM at least once. The sixth,
    layers.3.0.conv1 (G1 fits), streams G2, G3 and G4 only."""
    from ttsnn.gen.driver import plan_layer
    from ttsnn.gen.geometry import TileGeometry
    from ttsnn.gen.host_program import whole_rings
    cfg = load_config("paper")
    T = 6
    specs = [s for s in network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", T)
             if s.is_tt and s.in_channels >= 256 and s.out_channels == 512]
    assert len(specs) == 6
    acc = make_accelerator("proposed-rtl", cfg)
    assert acc.cfg.arrangement.cluster1 == "dense"
    for s in specs:
        args = ((T, s.in_channels, *s.in_hw), s.rank, s.out_channels)
        res = acc.run_layer(s, T, Sparsity())
        info = res.info
        assert not info["weights_streamed"] and "stream_refetch_bits" not in info
        g1 = s.name != "layers.3.0.conv1"
        for c in (acc.cfg, cfg):
            plan = plan_layer(c, *args, pool=s.downsample, mode="ptt")
            # G1 streamed: a ring smaller than the core (an early start's ring may hold it whole)
            streams_g1 = [bool(t.w1_ring) and not whole_rings(c, TileGeometry.of_shape(c, t), t)["w1"]
                          for t in plan]
            assert all(g == g1 for g in streams_g1), (c.name, s.name)
            assert all(t.w23_ring and t.w4_ring for t in plan), (c.name, s.name)
        wbits = res.passes["forward"].counts.get("dram", "read", 1)
        # every tile streams the cores: at least the layer's weights once per tile
        assert wbits >= info["tiles"] * s.params() * cfg.widths.weight
    fits = [s for s in network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", T)
            if s.is_tt and s.rank <= 64]
    assert not acc.run_layer(fits[0], T, Sparsity()).info["weights_streamed"]


def test_unknown_accelerator_and_mode_are_errors(table):
    with pytest.raises(ValueError, match="unknown accelerator"):
        make_accelerator("tpu", load_config("small"))
    with pytest.raises(ValueError, match="unknown mode"):
        evaluate_network(TINY, "qtt", "sata", load_config("small"), table)


def test_streamed_cores_are_charged_their_real_chunks():
    """The energy model charges a layer whose cores the RTL streams the chunks the driver
    sends, in both arrangements (no large-buffer copy). Hand-worked bounds on MS-ResNet34's
    layers (paper configuration, T = 6): layers.3.1.conv1 (512 -> 512, r = 173, 6x6) streams
    all four cores, at least the whole G1 (173 x 512 B) per window row inside the layer and
    timestep (6 x 6) and G4 (173 x 512 B) per output row and timestep; layers.3.0.conv1
    (256 -> 512, r = 121, 12x12) keeps G1 (30,976 B <= 32 KB) and the RTL streams G2, G3 and
    G4."""
    cfg = load_config("paper")
    T = 6
    specs = {s.name: s for s in network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", T)}
    g1 = g4 = 173 * 512
    for arrangement in ("proposed-rtl", "proposed"):
        res = make_accelerator(arrangement, cfg).run_layer(specs["layers.3.1.conv1"], T, Sparsity())
        info = res.info
        assert "stream_refetch_bits" not in info and not info["weights_streamed"], arrangement
        assert res.passes["forward"].counts.get("dram", "read", 1) >= info["tiles"] * 8 * 36 * (g1 + g4)
    # layers.3.0.conv1 is streamed by the RTL (G2, G3, G4; one 12x12 tile since the interstage
    # buffer's rows grew to 42 words, Pk = 32): charged its real chunks, G4 once per output row
    # and timestep of the tile (6 x 6) and G2/G3 once per MAC row and timestep (12 x 6), 121
    # ranks padded to 128 lanes
    acc = make_accelerator("proposed-rtl", cfg)
    res = acc.run_layer(specs["layers.3.0.conv1"], T, Sparsity())
    info = res.info
    assert "stream_refetch_bits" not in info and info["tiles"] == 1 and info["tile_hw"] == [12, 12]
    g2_padded, g4 = 3 * 121 * 128, 121 * 512
    chunks_bits = info["tiles"] * 8 * (6 * T * g4 + 2 * 12 * T * g2_padded)
    assert res.passes["forward"].counts.get("dram", "read", 1) >= chunks_bits
    # a layer that fits streams nothing
    assert "stream_refetch_bits" not in acc.run_layer(specs["layers.1.0.conv2"], T, Sparsity()).info
