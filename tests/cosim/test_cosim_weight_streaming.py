"""Streamed cores (descriptors ``w4_ring``, ``w23_ring``, ``w1_ring``) in the generated Verilog
against the golden model, bit for bit (cocotb + Verilator): the small configuration with G1/G4
regions of 16 words, whose layers of 16 to 24 output channels need more than that for G4, so
the planner streams G4 through a ring of ``r``-word chunks the host refills while the tile
runs; one layer of 16 input channels per configuration streams G1 as well (the dense cluster
1's and the zero-skipping one's). Every counter
equals the model's (model/tile.py: the chunks are real host traffic), every tile's timing
counters (``c4_w_wait`` included) and bus cycles equal the host-rate cycle model's, also
where the chunks hold cluster 4 up."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.cosim.cases import _residual, _spikes, calibrate, random_layer
from ttsnn.cosim.layer import LayerCase, RtlTarget, run_cases
from ttsnn.gen.config import CONFIG_DIR, load_config
from ttsnn.gen.driver import w4_ring_chunks
from tests.cosim.test_cosim_layers import _check_all_model_counters, _check_host_timing, _check_results

SMALL_STREAM_G4 = "small_stream_g4"


def small_stream_g4(tmp_path, paper_arrangement: bool = False, g23: bool = False):
    """The small configuration with ``limits.max_pointwise_weights = 64`` (G1 and G4 regions
    of 16 words) and a 1 KB weight buffer, as a TOML file of its own name; ``g23``: also
    ``limits.max_rank = 4`` (G2/G3 regions of 12 words, a 512-byte weight buffer), so that
    ranks 5-8 stream G2/G3."""
    text = (CONFIG_DIR / "small.toml").read_text()
    old = ("max_pointwise_weights = 256", "[buffers.weight]\nbytes = 2048", 'name = "small"', "max_rank = 8")
    assert all(o in text for o in old)
    name = SMALL_STREAM_G4 + ("_g23" if g23 else "") + ("_paper" if paper_arrangement else "")
    text = (text.replace(old[0], "max_pointwise_weights = 64")
            .replace(old[1], f"[buffers.weight]\nbytes = {512 if g23 else 1024}")
            .replace(old[2], f'name = "{name}"'))
    if g23:
        text = text.replace(old[3], "max_rank = 4")
    if paper_arrangement:
        text = text.replace('stt_chain = "pipelined"', 'stt_chain = "sequential"\ncluster1 = "zero_skip"')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_config(path)


def streamed_cases(cfg, seed: int = 0, g23: bool = False, early_start: bool = False) -> list[LayerCase]:
    """Three layers per configuration and one more whose G1 (16 input channels: the dense
    ``r * ceil(16/P)`` = 20 words at r = 5, the transposed ``ceil(r/Pk) * ceil(16/Px)`` >= 20
    words at r = 5-6, whatever the packing) exceeds the 16-word ``w1`` and streams.
    ``early_start``: every plan with the cores' early start (else without)."""
    zero_skip = cfg.arrangement.cluster1 == "zero_skip"
    rng = np.random.default_rng(seed)
    wd = cfg.widths
    cases = []

    def add(name, mode, cin, r, cout, t, h, w, *, pool=False, residual=False, ring_limit=None,
            schedule=(), order=None):
        q = random_layer(rng, wd, mode, cin, r, cout, pool=pool, residual=residual, schedule=schedule)
        x = _spikes(rng, (t, cin, h, w), 0.4)
        res = _residual(rng, q, wd, t, h, w, False)
        q = calibrate(q, x, res, wd, rng)
        cases.append(LayerCase(name, q, x, res, None, None, order, ring_limit, early_start=early_start))

    if g23:      # ranks above max_rank 4: G2/G3 streamed (and G4 where it exceeds 16 words)
        add("ptt-T2-g234-pool-residual", "ptt", 8, 6, 12, 2, 4, 6, pool=True, residual=True)
        add("stt-T3-g23-tiles", "stt", 6, 5, 8, 3, 10, 5, order=0)
        add("htt-T4-g234-capped", "htt", 7, 7, 12, 4, 4, 4, residual=True, ring_limit=1, order=1,
            schedule=(True, False, True, False))
        if zero_skip:    # all four cores streamed
            add("ptt-T2-g1234-capped", "ptt", 16, 6, 12, 2, 4, 4, residual=True, ring_limit=1)
        return cases
    add("ptt-T2-g4-ring4-pool-residual", "ptt", 8, 4, 24, 2, 4, 6, pool=True, residual=True)
    add("stt-T3-g4-ring3-tiles", "stt", 6, 5, 20, 3, 10, 5, order=0)
    add("htt-T4-g4-ring2-capped", "htt", 7, 7, 16, 4, 4, 4, residual=True, ring_limit=1, order=1,
        schedule=(True, False, True, False))
    # G1 and G4 streamed (dense: chunks of one rank's 4 words, a ring of 4)
    add("stt-T2-g14-tiles", "stt", 16, 5, 16, 2, 6, 5, order=0)
    return cases


@pytest.mark.cosim
@pytest.mark.parametrize("paper_arr,g23", [(False, False),
                                            # G4 alone on the paper's arrangement: in make test-slow
                                            # (paper-arrangement-g234 streams G4 there too)
                                            pytest.param(True, False, marks=pytest.mark.slow), (True, True)],
                         ids=["ours-g4", "paper-arrangement-g4", "paper-arrangement-g234"])
def test_streamed_cores_are_bit_exact(tmp_path, paper_arr, g23):
    cfg = small_stream_g4(tmp_path, paper_arr, g23)
    target = RtlTarget.for_config(cfg)
    assert target.config.regions["w4"].depth == 16
    cases = streamed_cases(target.config, g23=g23)
    results = run_cases(target, cases, workdir=tmp_path / "run")
    assert len(results) == len(cases)
    _check_results(results, target.config)
    for r in results:     # every tile streams its cores through rings of as many chunks as fit
        q = r.case.qlayer
        g4 = -(-q.out_channels // target.config.lanes) * q.rank > 16
        assert {t.w4_ring for t in r.plan} == {w4_ring_chunks(target.config, q.rank) if g4 else 0}
        assert all(bool(t.w23_ring) == g23 for t in r.plan)
        g1 = q.in_channels == 16              # streamed G1
        assert all(bool(t.w1_ring) == g1 for t in r.plan)
    assert any(bool(t.w1_ring) for r in results for t in r.plan) == (paper_arr or not g23)
    assert any(r.tiles > 1 for r in results)
    waits = ("c2_w_wait", "c3_w_wait") if g23 else ("c4_w_wait",)
    assert any(r.counters[w] > 0 for r in results for w in waits), "no case waited for a chunk"
    _check_host_timing(results, target.config, need_waits=False)
    _check_all_model_counters(results, target.config)


@pytest.mark.cosim
@pytest.mark.parametrize("config", ["small", "stream"])
def test_early_start_is_bit_exact(tmp_path, config):
    """The cores' early start (``Tile.early_start``: loaded after the start through rings, the
    rings that hold a whole core written once and their later passes declared; the affine
    words with G4's first chunks) in the generated Verilog: bit-exact with the golden model,
    every tile's timing counters and bus cycles equal to the host-rate model's, every counter
    to the model's; on the small configuration (every core resident otherwise, tiles that
    reuse the loaded cores) and on the one that streams G4 (and G1 for 16 channels)."""
    from ttsnn.gen.geometry import TileGeometry
    from ttsnn.gen.host_program import whole_rings
    cfg = load_config("small") if config == "small" else small_stream_g4(tmp_path)
    target = RtlTarget.for_config(cfg)
    cases = streamed_cases(target.config, seed=3, early_start=True)
    results = run_cases(target, cases, workdir=tmp_path / "run")
    _check_results(results, target.config)
    whole = [whole_rings(target.config, TileGeometry.of_shape(target.config, t), t)
             for r in results for t in r.plan]
    assert all(t.early_start for r in results for t in r.plan)
    if config == "small":        # every core fits: every ring holds its core whole
        assert all(all(w.values()) for w in whole)
    else:                        # G4 exceeds its region in every case: streamed, the rest whole
        assert not any(w["w4"] for w in whole) and all(w["w23"] for w in whole)
        assert any(w["w1"] for w in whole) and not all(w["w1"] for w in whole)
    assert any(not t.weights_change for r in results for t in r.plan)
    _check_host_timing(results, target.config, need_waits=False)
    _check_all_model_counters(results, target.config)


def paper_stream_case(config, seed: int = 0, mode: str = "ptt") -> LayerCase:
    """MS-ResNet34 / N-Caltech101 ``layers.3.0.conv1`` at its published rank (256 -> 512
    channels, r = 121, 12x12, 2x2 max-pool, T = 6; random weights calibrated like the
    coverage cases, input spikes at density 0.1): its G2/G3 (43,923 weights each, rank above
    ``limits.max_rank`` = 80) and G4 (61,952 weights) exceed their regions and stream."""
    rng = np.random.default_rng(seed)
    wd = config.widths
    t, cin, r, cout, h, w = 6, 256, 121, 512, 12, 12
    q = random_layer(rng, wd, mode, cin, r, cout, pool=True)
    x = _spikes(rng, (t, cin, h, w), 0.1)
    q = calibrate(q, x, None, wd, rng)
    return LayerCase(f"resnet34-layers.3.0.conv1-r{r}-{mode}-g234-streamed", q, x)


def _run_paper_case(case: LayerCase, config: str = "paper"):
    """Run ``case`` on the RTL of the paper configuration (``config``: or paper_dense) and
    check it: bit-exact, every tile's timing counters and bus cycles equal to the host-rate
    model's, every counter to the model's. Returns the case's result (its ``plan`` for the
    test's own checks)."""
    target = RtlTarget.for_config(config)
    results = run_cases(target, [case])
    _check_results(results, target.config)
    _check_host_timing(results, target.config, need_waits=False)
    _check_all_model_counters(results, target.config)
    (r,) = results
    return r


@pytest.mark.cosim_full
def test_paper_streamed_512_channel_layer():
    """The paper configuration (its arrangement, 256-bit host port) on one of MS-ResNet34's
    512-channel layers, G2, G3 and G4 streamed: bit-exact, every counter and every tile's
    timing counters (the ``*_w_wait`` ones included) and bus cycles equal to the models'."""
    r = _run_paper_case(paper_stream_case(load_config("paper")))
    assert _streams_g234_only(load_config("paper"), r.plan)


def _streams_g234_only(cfg, plan) -> bool:
    """Every tile streams G4 (rings of 8 chunks) and G2/G3; G1 fits its region, so it is
    resident or (the cores' early start) in a ring that holds it whole, loaded once."""
    from ttsnn.gen.host_program import whole_rings
    from ttsnn.gen.geometry import TileGeometry
    from ttsnn.gen.cyclemodel import TileShape
    ok = True
    for t in plan:
        shape = TileShape(t.in_channels, t.rank, t.out_channels, t.height, t.width, t.timesteps, "ptt",
                          (True,) * t.timesteps, True, False, t.zero_halo, t.pack, t.order, t.w4_ring,
                          t.w23_ring, t.w1_ring, t.early_start)
        whole = whole_rings(cfg, TileGeometry.of_shape(cfg, shape), t)
        ok &= t.w4_ring == 8 and t.w23_ring >= 1 and (not t.w1_ring or whole["w1"])
    return ok


def paper_512_channel_case(config, layer: str, r: int, seed: int, tag: str, mode: str = "ptt") -> LayerCase:
    """One of MS-ResNet34 / N-Caltech101's 512 -> 512 layers (6x6, membrane shortcut, T = 6) at
    its published rank ``r``; random weights calibrated like the coverage cases, input spikes at
    density 0.1. Its cores exceed all four regions: G1 streams through cluster 1's ring, G2/G3
    and G4 through theirs."""
    rng = np.random.default_rng(seed)
    wd = config.widths
    t, cin, cout, h, w = 6, 512, 512, 6, 6
    q = random_layer(rng, wd, mode, cin, r, cout, residual=True)
    x = _spikes(rng, (t, cin, h, w), 0.1)
    res = _residual(rng, q, wd, t, h, w, False)
    q = calibrate(q, x, res, wd, rng)
    return LayerCase(f"resnet34-{layer}-r{r}-{mode}-{tag}", q, x, res)


@pytest.mark.cosim_full
def test_paper_g1_streamed_512_channel_layer():
    """The paper configuration on MS-ResNet34's ``layers.3.2.conv2`` (r = 108; its transposed
    G1, 55,296 weights, exceeds ``w1``) with all four cores streamed (G1 through the
    zero-skipping cluster 1's ring): bit-exact, every counter and every tile's timing counters
    (``c1_w_wait`` included) and bus cycles equal to the models'."""
    case = paper_512_channel_case(load_config("paper"), "layers.3.2.conv2", 108, 1, "g1234-streamed")
    r = _run_paper_case(case)
    assert all(t.w1_ring and t.w23_ring and t.w4_ring for t in r.plan)


@pytest.mark.cosim_full
def test_paper_dense_g1_streamed_512_channel_layer():
    """paper_dense (the same chip in the generator's own arrangement: dense cluster 1,
    pipelined STT) on MS-ResNet34's ``layers.3.2.conv2`` (r = 108; its G1 of 108 x 16 words
    exceeds the 1,024-word ``w1``) with all four cores streamed (G1 through the dense cluster
    1's ring of 64 chunks, one rank's 16 words each): bit-exact, every counter and every tile's
    timing counters (``c1_w_wait`` included) and bus cycles equal to the models'."""
    case = paper_512_channel_case(load_config("paper_dense"), "layers.3.2.conv2", 108, 1, "dense-g1234-streamed")
    r = _run_paper_case(case, "paper_dense")
    assert all(t.w1_ring and t.w23_ring and t.w4_ring for t in r.plan)


@pytest.mark.cosim_full
def test_paper_two_chunk_g23_rings():
    """The paper configuration on MS-ResNet34's ``layers.3.0.conv2`` (r = 170): one 6x6 tile at
    ``Pk`` = 16, whose G2/G3 chunks (``NS`` = 255 words) make rings of two in ``w2``/``w3``
    (600 words: cluster 2 runs on one chunk pair while the host writes the next), G1 and G4
    streamed too: bit-exact, every counter and the tile's timing counters and bus cycles
    equal to the models'."""
    case = paper_512_channel_case(load_config("paper"), "layers.3.0.conv2", 170, 2, "g1234-ring2")
    r = _run_paper_case(case)
    assert [(t.height, t.width, t.pack, t.w23_ring) for t in r.plan] == [(6, 6, 4, 2)]
    assert all(t.w1_ring and t.w4_ring for t in r.plan)
