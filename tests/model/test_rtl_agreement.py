"""The model's per-tile forward counters against the RTL's, measured in amaranth.sim.

The model (:func:`model.tile.tile_forward_counters`) computes the counters from the tile shape,
the mode and the spikes, from the counters' documented meaning; the RTL is gen.top.Accelerator
run by gen.sim.run_programs with the tile program of gen.driver. Operation, access and host
counters must agree exactly; the timing counters (cycles, stalls) come from a row-level
pipeline model without the RTL's handshake latencies and must agree within 10 %
(docs/energy_model.md, section "Agreement with the RTL").
"""

import numpy as np
import pytest

from gen.config import load_config
from model.tile import tile_forward_counters


def _layer(rng, mode, cin, r, co, pool, residual, T):
    from sw.qlayer import QuantTTLayer
    return QuantTTLayer(
        mode=mode, w1=rng.integers(-3, 4, (r, cin)), w2=rng.integers(-3, 4, (r, r, 3)),
        w3=rng.integers(-3, 4, (r, r, 3)), w4=rng.integers(-3, 4, (co, r)), shift1=1, shift2=1,
        shift3=1, scale=rng.integers(1, 4, (2, co)), affine_shift=1, bias=rng.integers(-2, 3, co),
        threshold=4, pool=pool, residual=residual)


CASES = [  # mode, Cin, r, Cout, H, W, T, pool, residual, spike density
    ("ptt", 8, 4, 8, 4, 4, 2, False, False, 0.3),
    ("stt", 8, 4, 8, 4, 4, 2, False, False, 0.3),
    ("htt", 8, 4, 8, 4, 4, 2, False, False, 0.3),
    ("ptt", 5, 6, 6, 4, 6, 2, True, True, 0.5),   # partial groups, pooling, residual
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}{'-pool' if c[7] else ''}" for c in CASES])
def test_tile_counters_equal_the_rtl(case):
    pytest.importorskip("amaranth")
    from gen.driver import Driver
    from gen.sim import run_programs
    from gen.top import Accelerator

    mode, cin, r, co, h, w, T, pool, residual, density = case
    rng = np.random.default_rng(sum(map(ord, mode)) + cin * 7 + r)
    cfg = load_config("small")
    q = _layer(rng, mode, cin, r, co, pool, residual, T)
    spikes = (rng.random((T, cin, h, w)) < density).astype(np.uint8)
    drv = Driver(cfg)
    plan = drv.plan(q, spikes.shape)
    tile = plan.tiles[0]
    ho, wo = tile.out_shape
    res_in = rng.integers(-8, 8, (T, tile.out_channels, ho, wo)) if residual else None
    window = drv.window(spikes, tile)
    prog = drv.program(q, tile, window, res_in)
    rtl = prog.decode(run_programs(Accelerator(cfg), [prog])[0])
    model = tile_forward_counters(cfg, tile, mode, q.full_timesteps(T), window=window,
                                  out_spikes=rtl.spikes, residual=residual,
                                  load_weights=tile.weights_change)
    assert rtl.counters, "the RTL reported no counters"
    mismatched = {k: (v, model.get(k)) for k, v in rtl.counters.items() if model.get(k) != v}
    assert not mismatched, f"counter: (rtl, model) {mismatched}"

