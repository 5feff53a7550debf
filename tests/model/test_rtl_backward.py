"""The energy model's backward pass of the generated design (``proposed-rtl``) against the RTL.

A whole TT layer's backward pass, split into several tiles by the small configuration's
gradient buffer, runs on the generated Verilog (Verilator, one simulator process) through the
host driver's own tiling (gen.backward.host.backward_layer_programs); the counters the RTL
reports, summed over the tiles, and the host words the driver moved must equal what model/
charges (model.rtl_backward.layer_backward, used by ``proposed-rtl``). Then the pricing: the
model's actions are the counters by the mapping docs/energy_model.md states, counted here."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.gen.backward.cyclemodel import DATA_DEPENDENT
from ttsnn.gen.backward.host import backward_layer_programs
from ttsnn.gen.config import load_config
from ttsnn.model.accelerators import make_accelerator
from ttsnn.model.counts import Sparsity
from ttsnn.model.rtl_backward import layer_backward, trace_bits
from ttsnn.sw.arch import ConvSpec
from ttsnn.sw.qlayer import QuantTTLayer


def _qlayer(rng, mode, cin, r, co, pool, T):
    return QuantTTLayer(
        mode=mode, w1=rng.integers(-3, 4, (r, cin)), w2=rng.integers(-3, 4, (r, r, 3)),
        w3=rng.integers(-3, 4, (r, r, 3)), w4=rng.integers(-3, 4, (co, r)), shift1=1, shift2=1,
        shift3=1, scale=rng.integers(1, 4, (2, co)), affine_shift=1, bias=rng.integers(-2, 3, co),
        threshold=4, pool=pool, residual=False, schedule=(True, False)[:T] if mode == "htt" else ())


CASES = [  # name (conv2: the shortcut's share), mode, Cin, r, Cout, H, W, T, pool
    ("layers.0.0.conv2", "ptt", 8, 8, 8, 20, 20, 2, False),
    ("layers.1.0.conv1", "htt", 8, 8, 8, 20, 20, 2, True),
]


@pytest.mark.cosim
def test_model_backward_counters_equal_the_rtl_over_tiled_layers(tmp_path):
    from ttsnn.cosim.backward import simulate_backward
    from ttsnn.cosim.layer import RtlTarget

    target = RtlTarget.for_config("small")
    cfg = target.config
    rng = np.random.default_rng(7)
    layers, programs = [], []
    for name, mode, cin, r, co, H, W, T, pool in CASES:
        q = _qlayer(rng, mode, cin, r, co, pool, T)
        ho, wo = (H // 2, W // 2) if pool else (H, W)
        spec = ConvSpec(name, "conv3x3", cin, co, 3, 2 if pool else 1, (H, W), (ho, wo), mode=mode, rank=r,
                        downsample=pool, schedule=(True, False)[:T] if mode == "htt" else None)
        out = (T, co, ho, wo)
        e = rng.integers(-500, 500, out)
        spikes, window = rng.integers(0, 2, out), rng.integers(0, 2, out)
        argmax = rng.integers(0, 4, out) if pool else None
        extra = rng.integers(-500, 500, out) if spec.membrane_shortcut else None
        shifts = {"affine": 2, "g4t": 2, "g3t": 2, "g23t": 2, "g1t": 2}
        tiles = backward_layer_programs(cfg, q, rng.integers(0, 2, (T, cin, H, W)), e, spikes, window, argmax,
                                        shifts, extra)
        assert len(tiles) >= 2, name                  # the case is what it says: a tiled layer
        layers.append((spec, T, tiles))
        programs += [t.program for t in tiles]
    results = iter(simulate_backward(target, programs, tmp_path))
    for spec, T, tiles in layers:
        rtl: dict[str, int] = {}
        for t in tiles:
            for k, v in t.program.decode(next(results).values).counters.items():
                rtl[k] = rtl.get(k, 0) + v
        lb = layer_backward(cfg, spec, T)
        assert lb.tiles == len({(t.row0, t.col0) for t in tiles}) and not lb.grown
        model = {k: lb.backward.get(k, 0) + lb.weight_update.get(k, 0)
                 for k in set(lb.backward) | set(lb.weight_update)}
        assert {k: v for k, v in rtl.items() if k not in DATA_DEPENDENT} == model, spec.name
        assert lb.host_words_in == sum(t.program.words_in for t in tiles)
        assert lb.host_words_out == sum(t.program.words_out for t in tiles)


def test_proposed_rtl_prices_its_backward_counters():
    """The backward and weight-update actions of ``proposed-rtl`` are the counters by the
    documented mapping (a multiply-accumulate per core-stage MAC and per outer-product
    accumulate, a potential-gradient update per LIF-gradient update, every gradient-buffer
    access, DRAM = host words plus the optimizer's traffic), and the forward stores the trace."""
    cfg = load_config("paper")
    acc = make_accelerator("proposed-rtl", cfg)
    T, H, W, co = 4, 32, 32, 128
    spec = ConvSpec("layers.1.0.conv1", "conv3x3", 64, co, 3, 2, (H, W), (H // 2, W // 2), mode="ptt",
                    rank=32, downsample=True)
    res = acc.run_layer(spec, T, Sparsity())
    lb = layer_backward(cfg, spec, T)
    bwd, wu = res.passes["backward"], res.passes["weight_update"]
    assert bwd.cycles == lb.backward["cycles"] and wu.cycles == lb.weight_update["cycles"]
    assert bwd.counts.get("mult_pe", "mac", 8) == lb.backward["stage_macs"]
    assert wu.counts.get("mult_pe", "mac", 8) == lb.weight_update["wgrad_updates"]
    # the LIF gradient of every output neuron of every tile and its halo ring, once
    th, tw = lb.tile
    ring = sum((min(th, H - r0) // 2 + 2) * (min(tw, W - c0) // 2 + 2)
               for r0 in range(0, H, th) for c0 in range(0, W, tw))
    assert bwd.counts.get("lif", "potential_gradient", 16) == lb.backward["lifg_updates"] == T * co * ring
    gword = cfg.lanes * cfg.gradients.width
    gbuf_reads = (lb.backward["in_reads"] + lb.backward["lifg_grad_reads"] + lb.weight_update["in_reads"]
                  + lb.weight_update["grad_reads"] + lb.region_words["gbuf"][1])
    assert bwd.counts.get("glb.gbuf", "read", gword) + wu.counts.get("glb.gbuf", "read", gword) == gbuf_reads
    # DRAM moves each region word's bits (not the host port's: a wide beat carries one word)
    width = {**{n: r.width_bits for n, r in cfg.regions.items()},
             **{n: r.width_bits for n, r in cfg.backward_regions.items()}}
    assert width["wgrad"] == cfg.lanes * cfg.gradients.wgrad_tile and width["gbuf"] == gword
    wgrad_bits = lb.region_words["wgrad"][1] * width["wgrad"]
    params = spec.params()
    assert bwd.counts.get("dram", "read", 1) == sum(wr * width[n] for n, (wr, _) in lb.region_words.items())
    assert bwd.counts.get("dram", "write", 1) == sum(rd * width[n] for n, (_, rd) in lb.region_words.items()) - wgrad_bits
    # weight update: the sums read out, then SGD with momentum (gradient out, w and v in and out)
    assert wu.counts.get("dram", "write", 1) == wgrad_bits + params * 16 + params * (cfg.widths.weight + 16)
    # the forward writes the trace: window bit and 2-bit arg-max per output neuron and timestep;
    # the RTL moves them in trace words of 4 bits per lane (spike included), one per output
    # word, as the forward's host words (model.tile.host_regions)
    assert trace_bits(spec, T) == co * (H // 2) * (W // 2) * T * 3
    fwd_words = res.info["counters"]["trace_writes"]
    assert fwd_words == res.info["counters"]["membrane_writes"] > 0
    assert 4 * cfg.lanes * fwd_words >= co * (H // 2) * (W // 2) * T * 4
    plain = make_accelerator("proposed", cfg).run_layer(spec, T, Sparsity()).passes["forward"]
    assert res.info["saved_bits"] == 0 and plain.counts.get("dram", "write", 1) > 0
