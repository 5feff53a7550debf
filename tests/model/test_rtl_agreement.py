"""The model's per-tile forward counters against the RTL's, measured in amaranth.sim.

The model (:func:`model.tile.tile_forward_counters`, variant ``proposed-rtl``: not event-driven,
pipelined STT) computes every counter from the tile shape, the mode and schedule, the input
window and the output spikes (the shape-determined ones through gen.cyclemodel, the host words
from the documented region layouts); the RTL is gen.top.Accelerator run by
gen.sim.run_programs (the streaming host protocol) with the tile program of gen.driver. Every
counter must agree exactly, timing included (docs/energy_model.md, section 6).
"""

import numpy as np
import pytest

from ttsnn.gen.config import load_config
from ttsnn.model.tile import tile_forward_counters


def _layer(rng, mode, cin, r, co, pool, residual, T):
    from ttsnn.sw.qlayer import QuantTTLayer
    return QuantTTLayer(
        mode=mode, w1=rng.integers(-3, 4, (r, cin)), w2=rng.integers(-3, 4, (r, r, 3)),
        w3=rng.integers(-3, 4, (r, r, 3)), w4=rng.integers(-3, 4, (co, r)), shift1=1, shift2=1,
        shift3=1, scale=rng.integers(1, 4, (2, co)), affine_shift=1, bias=rng.integers(-2, 3, co),
        threshold=4, pool=pool, residual=residual,
        schedule=(True, False)[:T] if mode == "htt" else ())


CASES = [  # mode, Cin, r, Cout, layer HxW, T, pool, residual, density, tile_hw, pack, order, tile index
    # a whole layer as one tile, the driver's packing and order
    ("ptt", 8, 4, 8, (4, 4), 2, False, False, 0.3, None, None, None, 0),
    # a strip tile inside the layer (top halo, right halo computed), Pk = 4 x Px = 1:
    # 18 reduction steps > 16 scratchpad weights (chunks), STT's extra halo blocks, row outer
    ("stt", 5, 6, 4, (4, 6), 2, False, False, 0.4, (2, 3), 2, 0, 2),
    # HTT with a reduced timestep (bypass copies), a tile with the left halo inside the layer
    ("htt", 5, 6, 4, (4, 6), 2, False, False, 0.4, (4, 3), 0, 0, 1),
    # partial rank/channel groups, pooling and a residual, timestep outer
    ("ptt", 5, 6, 6, (4, 6), 2, True, True, 0.5, None, None, 1, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}{'-pool' if c[6] else ''}"
                                             f"{'-strip' if c[9] else ''}" for c in CASES])
def test_tile_counters_equal_the_rtl(case):
    pytest.importorskip("amaranth")
    from ttsnn.gen.driver import Driver
    from ttsnn.gen.hostmap import COUNTER_NAMES
    from ttsnn.gen.sim import run_programs

    mode, cin, r, co, (h, w), T, pool, residual, density, tile_hw, pack, order, idx = case
    rng = np.random.default_rng(sum(map(ord, mode)) + cin * 7 + r)
    cfg = load_config("small")
    q = _layer(rng, mode, cin, r, co, pool, residual, T)
    spikes = (rng.random((T, cin, h, w)) < density).astype(np.uint8)
    drv = Driver(cfg)
    plan = drv.plan(q, spikes.shape, tile_hw=tile_hw, pack=pack, order=order, early_start=False)  # keeps-up host
    tile = plan.tiles[idx]
    if tile_hw:  # the case is what it says: halo pixels inside the layer
        assert not all(tile.zero_halo)
    ho, wo = tile.out_shape
    res_in = rng.integers(-8, 8, (T, tile.out_channels, ho, wo)) if residual else None
    window = drv.window(spikes, tile)
    prog = drv.program(q, tile, window, res_in, load_weights=True)   # a fresh accelerator
    rtl = prog.decode(run_programs(cfg, [prog])[0])
    model = tile_forward_counters(cfg, tile, mode, q.full_timesteps(T), window=window,
                                  out_spikes=rtl.spikes, residual=residual, load_weights=True)
    assert set(rtl.counters) == set(COUNTER_NAMES) == set(model)
    mismatched = {k: (v, model[k]) for k, v in rtl.counters.items() if model[k] != v}
    assert not mismatched, f"counter: (rtl, model) {mismatched}"
    assert rtl.counters["c1_adds"] > 0 and rtl.counters["spikes_out"] > 0
