"""Derived sizes of the datapath in gen/config.py: regions fit their buffers, bad shapes are named."""

from __future__ import annotations

import copy

import pytest

from gen.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("name", ["paper", "small"])
def test_regions_fit_their_buffers(name):
    cfg = load_config(name)
    used = {}
    for r in cfg.regions.values():
        used[r.buffer] = used.get(r.buffer, 0) + r.bits
    for b, bits in used.items():
        assert bits <= cfg.buffers[b].bits
    # the weight regions hold the largest cores of the limits
    lim = cfg.limits
    assert cfg.regions["w1"].depth * cfg.lanes >= lim.max_pointwise_weights
    assert cfg.regions["w4"].depth * cfg.lanes >= lim.max_pointwise_weights
    assert cfg.regions["w2"].depth * cfg.lanes >= 3 * lim.max_rank ** 2
    # the line buffers hold 3 q1 and 3 q23 rows per timestep, the widest tile fits at T = 1
    assert cfg.regions["line1"].depth >= 3 * (lim.max_tile_width + 2)


def test_paper_runs_the_paper_workload_shapes():
    """MS-ResNet34's widest layer (48 columns, r = 24, T = 6) fits one full-width strip."""
    from gen.driver import tile_fit
    cfg = load_config("paper")
    assert tile_fit(cfg, 6, 64, 24, 64, 48, 48, False, (True,) * 4, pack=3) is None


def test_paper_keeps_272_kb():
    assert load_config("paper").total_buffer_bytes == 272 * 1024


def _small():
    return copy.deepcopy(load_config("small").to_dict())


def test_unequal_clusters_are_rejected():
    d = _small()
    d["clusters"]["g4_pes"] = 8
    with pytest.raises(ConfigError, match="clusters.g4_pes"):
        config_from_dict(d)


def test_non_power_of_two_lanes_are_rejected():
    d = _small()
    for k in ("spike_pes", "g2_pes", "g3_pes", "g4_pes", "adder_lanes", "lif_lanes"):
        d["clusters"][k] = 6
    with pytest.raises(ConfigError, match="power of two"):
        config_from_dict(d)


def test_interstage_too_small_for_the_tile_limits():
    d = _small()
    d["limits"]["max_tile_width"] = 200
    with pytest.raises(ConfigError, match="buffers.interstage.bytes"):
        config_from_dict(d)
