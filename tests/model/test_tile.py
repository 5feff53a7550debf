"""What model/tile.py adds to gen.cyclemodel (which the RTL tests check counter by counter):
host words from the documented layouts, the data-dependent counters, the paper's idealised
variants, and the energy-model actions of a tile's counters."""

import math
from dataclasses import replace

import numpy as np
import pytest

from ttsnn.gen import cyclemodel as cm
from ttsnn.gen.config import Arrangement, load_config
from ttsnn.gen.driver import Driver, plan_layer
from ttsnn.gen.geometry import TileGeometry
from ttsnn.model.counts import Counts
from ttsnn.model.energy_table import Memory, load_energy_table
from ttsnn.model.tile import (STALL_COUNTERS, computed_pixels, counters_to_counts,
                        tile_forward, tile_forward_counters, tile_shape)

SMALL = load_config("small")
#: the paper's chip in the generator's own arrangement (dense cluster 1, pipelined STT);
#: configs/paper.toml builds the paper's (zero-skipping cluster 1, sequential STT)
PAPER = load_config("paper_dense")
ZS_PAPER = replace(PAPER, arrangement=Arrangement(cluster1="zero_skip"))


def _qlayer(rng, mode, cin, r, co, pool=False, residual=False, T=2):
    from ttsnn.sw.qlayer import QuantTTLayer
    return QuantTTLayer(
        mode=mode, w1=rng.integers(-3, 4, (r, cin)), w2=rng.integers(-3, 4, (r, r, 3)),
        w3=rng.integers(-3, 4, (r, r, 3)), w4=rng.integers(-3, 4, (co, r)), shift1=1, shift2=1,
        shift3=1, scale=rng.integers(1, 4, (2, co)), affine_shift=1, bias=rng.integers(-2, 3, co),
        threshold=4, pool=pool, residual=residual,
        schedule=tuple(bool(t % 2 == 0) for t in range(T)) if mode == "htt" else ())


LAYERS = [  # config, mode, Cin, r, Cout, T, H, W, pool, residual, tile_hw, pack, order
    ("small", "ptt", 8, 4, 8, 2, 4, 4, False, False, None, None, None),
    ("small", "stt", 5, 6, 9, 3, 5, 7, False, True, (3, 2), 2, 0),      # strips, output groups
    ("small", "htt", 9, 3, 6, 4, 6, 6, True, True, (4, 4), 1, 1),       # pooling, HTT, halos
    ("small", "stt", 32, 8, 5, 1, 2, 3, False, False, None, 0, None),   # rank and Cin at the limits
    ("paper_dense", "ptt", 64, 24, 64, 6, 12, 12, False, True, None, None, None),
    ("paper_dense", "stt", 128, 48, 256, 6, 8, 8, True, False, None, None, None),  # 2 spike words
    ("paper", "ptt", 64, 24, 64, 6, 12, 12, False, True, None, None, None),   # transposed G1
    ("paper", "stt", 128, 48, 256, 6, 8, 8, True, False, None, None, None),
]


@pytest.mark.parametrize("layer", LAYERS, ids=[f"{l[0]}-{l[1]}-{l[2]}x{l[3]}x{l[4]}" for l in LAYERS])
def test_host_words_equal_the_drivers_tile_programs(layer):
    cfgname, mode, cin, r, co, T, h, w, pool, residual, tile_hw, pack, order = layer
    cfg = load_config(cfgname)
    rng = np.random.default_rng(cin + r)
    q = _qlayer(rng, mode, cin, r, co, pool, residual, T)
    spikes = rng.integers(0, 2, (T, cin, h, w))
    drv = Driver(cfg)
    plan = drv.plan(q, spikes.shape, tile_hw=tile_hw, pack=pack, order=order)
    for tile in plan.tiles[:6]:
        ho, wo = tile.out_shape
        res = rng.integers(-8, 8, (T, tile.out_channels, ho, wo)) if residual else None
        for load in (True, False):
            prog = drv.program(q, tile, drv.window(spikes, tile), res, load_weights=load,
                               read_counters=False)
            # the zero-skipping cluster 1 (configs/paper.toml) needs spikes or a density for
            # its cycles; the host words do not depend on them
            c = tile_forward_counters(cfg, tile, mode, q.full_timesteps(T), residual=residual,
                                      load_weights=load, density=0.5)
            assert (c["host_words_in"], c["host_words_out"]) == (prog.words_in, prog.words_out), tile


def test_shape_counters_are_gen_cyclemodels_and_data_counters_come_from_the_window():
    rng = np.random.default_rng(3)
    T, cin, r = 2, 6, 4
    plan = plan_layer(SMALL, (T, cin, 5, 5), r, 5, mode="stt", tile_hw=(3, 2), pack=1, order=0)
    tile = plan.tiles[3]
    assert not all(tile.zero_halo)
    window = rng.integers(0, 2, (T, cin, tile.height + 2, tile.width + 2))
    c = tile_forward_counters(SMALL, tile, "stt", window=window, out_spikes=np.ones(7))
    ref = cm.tile_counters(SMALL, tile_shape(tile, "stt"))
    assert all(c[k] == v for k, v in ref.items())
    top, bottom, left, right = tile.zero_halo
    inside = window[:, :, top:tile.height + 2 - bottom, left:tile.width + 2 - right]
    assert c["c1_adds"] == r * inside.sum()          # zero-halo pixels are not sent
    assert c["spikes_out"] == 7
    # expected values from a density; none of the data counters without data
    n1, _ = computed_pixels(tile_shape(tile, "stt"))
    d = tile_forward_counters(SMALL, tile, "stt", density=0.25)
    assert d["c1_adds"] == pytest.approx(0.25 * T * n1 * cin * r)
    bare = tile_forward_counters(SMALL, tile, "stt")
    assert "c1_adds" not in bare and "spikes_out" not in bare
    with pytest.raises(ValueError, match="window"):
        tile_forward_counters(SMALL, tile, "stt", window=window[:, :, 1:])


def _paper_tile(mode, cin=64, r=24, co=64, hw=(24, 24)):
    plan = plan_layer(PAPER, (6, cin, *hw), r, co, mode=mode)
    return plan.tiles[0]


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_zero_skip_cluster1_steps_only_on_spikes(mode):
    """The paper's arrangement (zero-skipping cluster 1): from a density, the expected steps
    per computed pixel and rank group are 64 * d + (1 - d)^64 (one 64-bit spike word, an
    all-zero word one step), a zero-halo row one step; from a window, max(1, ones) per word."""
    # resident cores (no early start: a G1 ring reorders the dense cluster 1's spike reads)
    tile = plan_layer(ZS_PAPER, (6, 64, 24, 24), 24, 64, mode=mode, early_start=False).tiles[0]
    dense = tile_forward(PAPER, tile, mode, density=0.1)
    zs = tile_forward(ZS_PAPER, tile, mode, density=0.1)
    s = zs.shape
    n1, _ = computed_pixels(s)
    ng = math.ceil(s.rank / 2 ** s.pack)
    zero_rows = s.timesteps * (int(s.zero_halo[0]) + int(s.zero_halo[1]))
    per_px = 64 * 0.1 + 0.9 ** 64
    assert zs.counters["c1_busy"] == pytest.approx(s.timesteps * n1 * ng * per_px + zero_rows)
    assert zs.counters["w1_reads"] == pytest.approx(0.1 * s.timesteps * n1 * 64 * ng)
    assert zs.counters["c1_adds"] == dense.counters["c1_adds"]
    assert zs.counters["c1_busy"] < dense.counters["c1_busy"]          # Pk-wide rank groups: ng steps per 1-spike
    same = set(dense.counters) - set(STALL_COUNTERS) - {"cycles", "c1_busy", "c1_slots", "w1_reads",
                                                         "line1_writes", "host_words_in"}
    assert all(zs.counters[k] == dense.counters[k] for k in same)
    # from a window (small configuration: 32-bit spike words): 40 channels in two words
    zs_small = replace(SMALL, arrangement=Arrangement(cluster1="zero_skip"),
                       limits=replace(SMALL.limits, max_in_channels=64))
    small = plan_layer(zs_small, (2, 40, 4, 4), 3, 8, mode=mode, pack=0, early_start=False).tiles[0]
    rng = np.random.default_rng(0)
    window = (rng.random((2, 40, 6, 6)) < 0.2).astype(np.uint8)
    c = tile_forward_counters(zs_small, small, mode, window=window)
    inner = window[:, :, 1:5, 1:5]
    steps = np.maximum(inner[:, :32].sum(axis=1), 1).sum() + np.maximum(inner[:, 32:].sum(axis=1), 1).sum()
    assert c["c1_busy"] == 3 * steps + 2 * 2                 # r = 3 at Pk = 1, two zero rows per timestep
    with pytest.raises(ValueError, match="density"):
        tile_forward_counters(zs_small, small, mode)


def test_sequential_stt_chain_serialises_clusters_2_and_3_only_for_stt():
    seq_cfg = replace(PAPER, arrangement=Arrangement(stt_chain="sequential"))
    for mode in ("stt", "ptt"):
        tile = _paper_tile(mode)
        pipe = tile_forward_counters(PAPER, tile, mode, density=0.1)
        seq = tile_forward_counters(seq_cfg, tile, mode, density=0.1)
        if mode == "ptt":
            assert seq == pipe
            continue
        assert seq["cycles"] > 1.3 * pipe["cycles"]
        assert seq["c2_busy"] == pipe["c2_busy"] and seq["c3_busy"] == pipe["c3_busy"]


def test_counts_of_a_tile():
    table = load_energy_table()
    mems = {n: Memory(n, b.bytes, b.width_bits) for n, b in PAPER.buffers.items()}
    tile = _paper_tile("stt", hw=(12, 12))
    for cfg in (PAPER, ZS_PAPER):
        ev = cfg is ZS_PAPER
        tf = tile_forward(cfg, tile, "stt", density=0.1, residual=True)
        c = tf.counters
        counts = Counts()
        counters_to_counts(PAPER, tf, counts, mems)
        # DRAM: each region word's bits (a 256-bit beat carries one word, whatever its width)
        regions = {**PAPER.regions, **PAPER.backward_regions}
        bits = {n: words * regions[n].width_bits for n, (words, _) in tf.regions.items()}
        outputs = ("membrane", "trace")      # the output rows: membrane and trace words
        assert tf.regions["trace"][0] == tf.regions["membrane"][0] == c["trace_writes"]
        assert regions["trace"].width_bits == 4 * PAPER.lanes
        assert counts.get("dram", "read", 1) == sum(b for n, b in bits.items() if n not in outputs)
        assert counts.get("dram", "write", 1) == sum(b for n, b in bits.items() if n in outputs)
        assert c["host_words_in"] * PAPER.widths.host_data > counts.get("dram", "read", 1)
        assert counts.get("mult_pe", "mac", 8) == c["c2_macs"] + c["c3_macs"] + c["c4_macs"]
        assert counts.get("spike_pe", "accumulate", 16) == pytest.approx(c["c1_adds"])
        p = PAPER.lanes
        spad = counts.get("scratchpad", "read", 8) + counts.get("scratchpad", "read", 16)
        acc_reads = c["c2_macs"] + c["c3_macs"] + c["c4_macs"] + (c["c1_adds"] if ev else tf.c1_compute_steps)
        assert spad == pytest.approx(acc_reads + p * (c["c2_spad_reads"] + c["c3_spad_reads"]))
        lane_writes = counts.get("glb.interstage", "write", 8)
        n1, _ = computed_pixels(tf.shape)
        # both clusters 1 write one 8-bit lane per q1 value
        assert lane_writes == tf.shape.timesteps * n1 * tf.shape.rank
        for (comp, action, bits), n in counts.items():
            assert n >= 0 and table.energy(comp, action, bits, mems) >= 0


def test_scratchpad_split_uses_gen_cyclemodels_access_count():
    """The weight / partial-sum split of the c2/c3 scratchpad counters comes from
    gen.cyclemodel's access count per row: it must add up to the counters."""
    tile = _paper_tile("stt", r=48, co=128, hw=(24, 24))
    s = tile_shape(tile, "stt")
    g = TileGeometry.of_shape(PAPER, s)
    rows = s.height * s.timesteps
    c = cm.tile_counters(PAPER, s)
    for name, blocks in (("c2", g.nbe2), ("c3", g.nb)):
        a = cm.row_accesses(s.rank, g.Pk, g.Px, blocks, g.chunk_blocks, g.chunk_steps)
        assert c[f"{name}_spad_reads"] == (a["spad_w_rd"] + a["spad_p_rd"]) * g.ng * rows
        assert c[f"{name}_spad_writes"] == (a["spad_w_wr"] + a["spad_p_wr"]) * g.ng * rows
    assert c["c2_spad_reads"] > 0


def test_tile_shape_checks():
    tile = plan_layer(SMALL, (2, 4, 4, 4), 3, 4, mode="ptt").tiles[0]
    with pytest.raises(ValueError, match="mode"):
        tile_forward_counters(SMALL, tile, "qtt")
    with pytest.raises(ValueError, match="even"):
        tile_shape(replace(tile, height=3, pool=True), "ptt")
    with pytest.raises(ValueError, match="HTT schedule"):
        tile_forward_counters(SMALL, tile, "htt", (True,) * 3)
