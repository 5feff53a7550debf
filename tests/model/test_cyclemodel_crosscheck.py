"""The model's tile counters against the generator's own cycle model (gen.cyclemodel), on
paper-sized tiles too large to simulate: two implementations of the documented counters
(docs/host_interface.md) written apart; the RTL checks both on small tiles."""

import pytest

from gen.config import load_config
from model.counts import has_residual
from model.tile import TileShape, tile_forward_counters
from sw.arch import network_specs

cm = pytest.importorskip("gen.cyclemodel")


def _tiles():
    from gen.driver import plan_layer
    cfg = load_config("paper")
    out = []
    T = 6
    for mode in ("stt", "ptt", "htt"):
        specs = [s for s in network_specs("resnet34", 2, 48, 101, mode, "paper-ncaltech101", T)
                 if s.is_tt and s.rank <= cfg.limits.max_rank]
        for s in specs[::5]:
            plan = plan_layer(cfg, (T, s.in_channels, *s.in_hw), s.rank, s.out_channels,
                              pool=s.downsample, residual=has_residual(s))
            for tile in (plan.tiles[0], plan.tiles[len(plan.tiles) // 2]):
                out.append((mode, s, tile))
    return cfg, out


CFG, TILES = _tiles()


@pytest.mark.parametrize("mode, spec, tile", TILES,
                         ids=[f"{m}-{s.name}-t{t.index}" for m, s, t in TILES])
def test_counters_equal_gen_cyclemodel(mode, spec, tile):
    T = tile.timesteps
    sched = tuple(spec.schedule) if mode == "htt" else (True,) * T
    zh = tuple(getattr(tile, "zero_halo", (False,) * 4))
    theirs = cm.tile_counters(CFG, cm.TileShape(tile.in_channels, tile.rank, tile.out_channels,
                                                tile.height, tile.width, T, mode, sched, tile.pool,
                                                has_residual(spec), zh))
    ours = tile_forward_counters(CFG, TileShape.of(tile), mode, sched, residual=has_residual(spec),
                                 load_weights=tile.weights_change)
    common = [k for k in theirs if k in ours and theirs[k] is not None
              and k not in ("host_words_in", "host_words_out")]
    assert len(common) >= 25
    diff = {k: (theirs[k], ours[k]) for k in common if theirs[k] != ours[k]}
    assert not diff, f"(gen.cyclemodel, model) {diff}"
