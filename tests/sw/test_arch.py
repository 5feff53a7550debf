"""Layer lists (sw.arch) and rank resolution (sw.arch.resolve_ranks): shapes, schedules, rank bounds."""

from __future__ import annotations

import numpy as np
import pytest

from ttsnn.sw.arch import (ConvSpec, default_schedule, max_tt_rank, network_specs, parse_input_size,
                     tt_layers, validate_schedule)
from ttsnn.sw.arch import PAPER_NCALTECH101_RESNET34, resolve_ranks


def test_resnet34_layer_list_shapes():
    specs = network_specs("resnet34", 2, 48, 101)
    tt = tt_layers(specs)
    assert len(tt) == 32
    assert [s.name for s in specs[:3]] == ["conv1", "layers.0.0.conv1", "layers.0.0.conv2"]
    shortcuts = [s for s in specs if s.kind == "shortcut"]
    assert [s.name for s in shortcuts] == ["layers.1.0.shortcut.conv", "layers.2.0.shortcut.conv",
                                           "layers.3.0.shortcut.conv"]
    # stage resolutions 48, 24, 12, 6 and the classifier on 512 features
    assert {s.out_hw for s in tt} == {(48, 48), (24, 24), (12, 12), (6, 6)}
    assert specs[-1] == ConvSpec("fc", "fc", 512, 101, 1, 1, (1, 1), (1, 1))


def test_tiny_odd_input_size():
    specs = network_specs("tiny", 3, (9, 14), 4)
    by = {s.name: s for s in specs}
    assert by["layers.1.0.conv1"].out_hw == (5, 7) == by["layers.1.0.shortcut.conv"].out_hw
    assert by["fc"].in_channels == 32


def test_tt_specs_carry_rank_mode_downsample_and_schedule():
    specs = network_specs("tiny", 3, 16, 10, mode="htt", ranks=[3, 4, 5, 6], timesteps=6)
    tt = tt_layers(specs)
    assert [s.rank for s in tt] == [3, 4, 5, 6]
    assert [s.downsample for s in tt] == [False, False, True, False]
    assert all(s.schedule == (True, True, True, False, False, False) for s in tt)
    assert specs[0].mode == "dense" and specs[-1].mode == "dense"
    strided = tt_layers(network_specs("tiny", 3, 16, 10, mode="ptt", ranks=3,
                                      downsample="stride"))
    assert [s.downsample for s in strided] == [False] * 4 and strided[2].stride == 2


def test_tt_macs_by_hand():
    s = ConvSpec("x", "conv3x3", 4, 8, 3, 2, (6, 6), (3, 3), "ptt", 2, True)
    # chain at 6x6 (input resolution), then max-pool
    assert s.macs_per_timestep() == (4 * 2 + 3 * 4 * 2 + 2 * 8) * 36
    assert s.params() == 2 * 12 + 6 * 4
    strided = ConvSpec("x", "conv3x3", 4, 8, 3, 2, (6, 6), (3, 3), "stt", 2, False)
    assert strided.macs_per_timestep() == 4 * 2 * 36 + 3 * 4 * 3 * 6 + 3 * 4 * 9 + 2 * 8 * 9
    htt = ConvSpec("x", "conv3x3", 4, 8, 3, 1, (5, 5), (5, 5), "htt", 2, False, (True, False, False))
    assert htt.macs(3) == (4 * 2 + 24 + 16) * 25 + 2 * (4 * 2 + 16) * 25


def test_default_schedule_any_t():
    assert default_schedule(4) == (True, True, False, False)
    assert default_schedule(1) == (True,)
    assert default_schedule(5) == (True, True, True, False, False)
    assert validate_schedule("0101", 4) == (False, True, False, True)
    assert validate_schedule([1, 0], 2) == (True, False)


@pytest.mark.parametrize("schedule,match", [
    ((True,) * 5, "5 entries but timesteps T=4"),
    ((True,) * 3, "3 entries"),
    ((True, 2, False, False), "booleans"),
    ("11x0", "0/1"),
])
def test_bad_schedule(schedule, match):
    with pytest.raises(ValueError, match=match):
        validate_schedule(schedule, 4)


def test_max_tt_rank_makes_unfoldings_fit():
    assert max_tt_rank(64, 64) == 192
    assert max_tt_rank(3, 64) == 27
    assert max_tt_rank(64, 3) == 27
    for cin, cout in [(5, 7), (16, 32), (2, 40)]:
        w = np.random.default_rng(0).standard_normal((cin, 3, 3, cout))
        ranks = [np.linalg.matrix_rank(w.reshape(cin * 3 ** k, -1)) for k in (0, 1, 2)]
        assert max(ranks) == max_tt_rank(cin, cout)


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="vgg"), "unknown arch 'vgg'"),
    (dict(mode="tt"), "unknown mode 'tt'"),
    (dict(mode="ptt"), "needs ranks"),
    (dict(downsample="avg"), "unknown downsample"),
    (dict(in_channels=0), "in_channels"),
    (dict(timesteps=0), "timesteps"),
    (dict(input_size="3x"), "input size"),
])
def test_network_specs_bad_input(kwargs, match):
    args = dict(arch="tiny", in_channels=3, input_size=16, num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        network_specs(**args)


def test_parse_input_size():
    assert parse_input_size(32) == (32, 32)
    assert parse_input_size("48x64") == (48, 64)
    assert parse_input_size((7, 9)) == (7, 9)
    with pytest.raises(ValueError):
        parse_input_size((0, 4))


def test_resolve_ranks_forms():
    assert resolve_ranks(8, "tiny") == [8] * 4
    assert resolve_ranks("uniform:5", "tiny") == [5] * 4
    assert resolve_ranks("1, 2,3,4", "tiny") == [1, 2, 3, 4]
    assert resolve_ranks([4, 3, 2, 1], "tiny") == [4, 3, 2, 1]
    assert resolve_ranks(np.array([4, 3, 2, 1]), "tiny") == [4, 3, 2, 1]   # e.g. EVBMF output
    assert resolve_ranks(np.int64(2), "tiny") == [2] * 4
    assert resolve_ranks("7", "resnet18") == [7] * 16
    paper = resolve_ranks("paper-ncaltech101", "resnet34")
    assert paper == list(PAPER_NCALTECH101_RESNET34) and len(paper) == 32
    assert paper[:6] == [24, 23, 22, 17, 16, 12] and paper[-1] == 108
    # a layer list works as well (input size and classes do not matter)
    assert resolve_ranks("paper-ncaltech101", network_specs("resnet34", 2, 48, 101)) == paper


@pytest.mark.parametrize("ranks,arch,match", [
    ("paper-ncaltech101", "resnet18", "is for resnet34"),
    ("paper-cifar", "tiny", "unknown rank preset"),
    (0, "tiny", r"rank 0 for layer layers.0.0.conv1 \(16->16\).*allowed 1..48"),
    (49, "tiny", "allowed 1..48"),
    ([1, 2, 3], "tiny", "got 3 ranks but the network has 4"),
    ("uniform:x", "tiny", "not an integer"),
    ([1, 2, 3.5, 4], "tiny", "not an integer"),
    (True, "tiny", "bool"),
    (None, "tiny", "ranks missing"),
    (5, "resnet50", "unknown arch"),
])
def test_resolve_ranks_errors(ranks, arch, match):
    with pytest.raises(ValueError, match=match):
        resolve_ranks(ranks, arch)


def test_rank_bound_is_per_layer():
    # 96 is fine for a 32->32 conv (bound 96) but too big for 16->16 (bound 48)
    with pytest.raises(ValueError, match="layers.0.0.conv1"):
        resolve_ranks([96, 48, 48, 96], "tiny")
    assert resolve_ranks([48, 48, 48, 96], "tiny") == [48, 48, 48, 96]


def test_workloads_resolve_and_match_the_paper():
    from ttsnn.sw.arch import WORKLOADS

    r34 = WORKLOADS["resnet34-ncaltech101"]
    # the published ranks resolve on the network the record describes
    tt = tt_layers(network_specs(r34.arch, r34.in_channels, r34.input_hw, r34.num_classes, "ptt",
                                 r34.ranks, r34.timesteps))
    assert [s.rank for s in tt] == list(PAPER_NCALTECH101_RESNET34)
    assert r34.uniform_rank is None and r34.events
    r18 = WORKLOADS["resnet18-cifar10"]
    assert r18.uniform_rank == 32 and not r18.events
    specs = network_specs(r18.arch, r18.in_channels, r18.input_size, r18.num_classes, "stt",
                          r18.ranks, r18.timesteps)
    assert specs[-1].out_channels == 10 and {s.rank for s in tt_layers(specs)} == {32}
    with pytest.raises(TypeError):
        WORKLOADS["tiny"] = r18  # the mapping is read-only


def test_benchmark_presets_are_built_from_the_workloads():
    pytest.importorskip("torch")
    from ttsnn.sw.arch import WORKLOADS
    from ttsnn.sw.bench import PRESETS

    for preset, key in (("ncaltech101", "resnet34-ncaltech101"), ("cifar", "resnet18-cifar10")):
        wl, spec = PRESETS[preset], WORKLOADS[key]
        assert (wl.arch, wl.in_channels, wl.size, wl.num_classes, wl.timesteps, wl.ranks, wl.events) == (
            spec.arch, spec.in_channels, spec.input_size, spec.num_classes, spec.timesteps, spec.ranks,
            spec.events)
