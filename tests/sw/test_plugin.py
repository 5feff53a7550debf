"""TT-SNN as a plug-in (sw.plugin.convert): real spikingjelly and snnTorch models converted to
STT/PTT/HTT. References are written out here: dense convs by F.conv2d with the original weights,
TT cores by their defining chain (G1 1x1, G2 3x1, G3 1x3, G4 1x1), counts by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ttsnn.sw.evbmf import conv_rank
from ttsnn.sw.plugin import PluginScheduledConv, PluginTTConv, convert, count_macs, merge, tt_layers_of
from ttsnn.sw.plugin.examples import snntorch_net, spikingjelly_net, spikingjelly_seq_net

sj = pytest.importorskip("spikingjelly.activation_based")
pytest.importorskip("snntorch")
from spikingjelly.activation_based import functional, layer  # noqa: E402

T, B = 4, 3


def _spikes(shape, p=0.3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


def _hand_tt(x, tt, full=True):
    """The TT chain of one timestep batch [N, C, H, W], written out: G1, then STT G3(G2(.)), PTT
    (G2(.) + G3(.)) / 2 (reduced HTT timesteps: nothing), then G4; 'stride' downsampling puts the
    stride on G2/G3 (STT: rows on G2, columns on G3; PTT: both on both)."""
    s = tt.stride
    o1 = F.conv2d(x, tt.g1.weight)
    if not full:  # HTT reduced timestep: G4(G1(x)), G1 on the subsampled input
        return F.conv2d(F.conv2d(x[..., ::s, ::s], tt.g1.weight), tt.g4.weight)
    if tt.mode == "stt":
        inner = F.conv2d(F.conv2d(o1, tt.g2.weight, stride=(s, 1), padding=(1, 0)), tt.g3.weight,
                         stride=(1, s), padding=(0, 1))
    else:
        inner = (F.conv2d(o1, tt.g2.weight, stride=s, padding=(1, 0))
                 + F.conv2d(o1, tt.g3.weight, stride=s, padding=(0, 1))) / 2
    return F.conv2d(inner, tt.g4.weight)


def _convs(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}


# ----- spikingjelly ------------------------------------------------------------------------------
def test_spikingjelly_full_rank_stt_equals_the_dense_network():
    torch.manual_seed(0)
    net = spikingjelly_net().double().eval()
    x = _spikes((T, B, 2, 8, 8))
    ref = net(x)
    functional.reset_net(net)
    tt, rows = convert(net, "stt", "full")
    assert [r.name for r in rows] == ["0", "3", "6"] and all(r.layout == "step-mode" for r in rows)
    # each converted layer against F.conv2d with the dense layer's own weights (stride, bias)
    for name, conv in _convs(net).items():
        new = tt.get_submodule(name)
        assert isinstance(new, PluginTTConv) and new.step_mode == "m"
        xin = torch.randn(T, B, conv.in_channels, 8, 8, dtype=torch.float64)
        want = F.conv2d(xin.flatten(0, 1), conv.weight, conv.bias, conv.stride, 1).unflatten(0, (T, B))
        assert torch.allclose(new(xin), want, atol=1e-10)
    functional.reset_net(tt)
    assert torch.allclose(tt(x), ref, atol=1e-10)
    assert net[0].__class__ is layer.Conv2d  # the input model is untouched


def test_spikingjelly_step_modes_and_reset_net():
    torch.manual_seed(1)
    net = spikingjelly_net(step_mode="m").double().eval()
    tt, _ = convert(net, "ptt", 4, init="random")
    x = _spikes((T, B, 2, 8, 8), seed=1)
    multi = tt(x)
    functional.reset_net(tt)
    functional.set_step_mode(tt, "s")  # the converted convs are StepModules: they switch too
    assert all(m.step_mode == "s" for _, m in tt_layers_of(tt))
    single = torch.stack([tt(x[t]) for t in range(T)])
    assert torch.allclose(single, multi, atol=1e-10)


def test_spikingjelly_single_step_htt_counts_timesteps():
    torch.manual_seed(2)
    net = spikingjelly_net(step_mode="s").double().eval()
    tt, rows = convert(net, "htt", 4, timesteps=T, init="random")
    conv = tt.get_submodule("3")
    xs = torch.randn(T, B, 8, 8, 8, dtype=torch.float64)
    for _ in range(2):  # a second sequence after reset starts again at timestep 0
        functional.reset_net(tt)
        for t in range(T):
            full = t < T // 2  # default schedule: first half full
            assert torch.allclose(conv(xs[t]), _hand_tt(xs[t], conv.tt, full), atol=1e-10)
    merged = merge(tt)
    m3 = merged.get_submodule("3")
    assert isinstance(m3, PluginScheduledConv)
    functional.reset_net(merged)
    assert torch.allclose(torch.stack([m3(xs[t]) for t in range(T)]),
                          torch.stack([_hand_tt(xs[t], conv.tt, t < 2) for t in range(T)]), atol=1e-10)


def test_seq_to_ann_container_ptt_and_folded_htt():
    torch.manual_seed(3)
    net = spikingjelly_seq_net().double().eval()
    x = _spikes((T, B, 2, 8, 8), seed=3)
    ptt, rows = convert(net, "ptt", 3, init="random")
    assert [r.name for r in rows] == ["0.0", "2.0"] and all(r.layout == "auto" for r in rows)
    conv = ptt.get_submodule("2.0")
    xin = torch.randn(T * B, 8, 8, 8, dtype=torch.float64)
    assert torch.allclose(conv(xin), _hand_tt(xin, conv.tt), atol=1e-10)
    functional.reset_net(ptt)
    y = ptt(x)
    functional.reset_net(ptt)
    merged = merge(ptt)
    assert type(merged.get_submodule("2.0")) is nn.Conv2d
    assert torch.allclose(merged(x), y, atol=1e-10)
    htt, _ = convert(net, "htt", 3, layout="folded", timesteps=T, init="random")
    conv = htt.get_submodule("2.0")
    out = conv(xin).unflatten(0, (T, B))
    for t in range(T):
        assert torch.allclose(out[t], _hand_tt(xin.unflatten(0, (T, B))[t], conv.tt, t < 2), atol=1e-10)


def test_merge_back_keeps_the_spikingjelly_class_and_outputs():
    torch.manual_seed(4)
    net = spikingjelly_net().double().eval()
    ptt, _ = convert(net, "ptt", 5, init="random")
    x = _spikes((T, B, 2, 8, 8), seed=4)
    y = ptt(x)
    functional.reset_net(ptt)
    merged = merge(ptt)
    for name in ("0", "3", "6"):
        m = merged.get_submodule(name)
        assert type(m) is layer.Conv2d and m.step_mode == "m"
        assert m.stride == _convs(net)[name].stride and (m.bias is None) == (name != "6")
    assert torch.allclose(merged(x), y, atol=1e-10)
    # the merged network's state dict loads into the original architecture
    fresh = spikingjelly_net().double()
    fresh.load_state_dict(merged.state_dict())


# ----- snnTorch ----------------------------------------------------------------------------------
def test_snntorch_loop_full_rank_merge_and_per_step_htt():
    torch.manual_seed(5)
    net = snntorch_net().eval()
    x = _spikes((T, B, 2, 8, 8), p=0.6, seed=5, dtype=torch.float32) * 3
    ref = net(x)
    stt, rows = convert(net, "stt", "full")
    assert [r.name for r in rows] == ["conv1", "conv2"] and [r.rank for r in rows] == [8, 24]
    assert torch.allclose(stt(x), ref, atol=1e-4)
    ptt, _ = convert(net, "ptt", 4)
    assert torch.allclose(merge(ptt)(x), ptt(x), atol=1e-5)
    htt, _ = convert(net, "htt", 4, layout="per-step", timesteps=T)
    seen = []
    conv2 = htt.conv2
    conv2.register_forward_hook(lambda m, i, o: seen.append(torch.allclose(
        o, _hand_tt(i[0], m.tt, full=len(seen) % T < 2) + m.bias.view(-1, 1, 1), atol=1e-5)))
    y = htt(x)
    assert seen == [True] * T
    assert torch.allclose(merge(htt)(x), y, atol=1e-5)


def test_gradients_flow_and_training_changes_the_cores():
    torch.manual_seed(6)
    for net, x in ((snntorch_net(), _spikes((T, B, 2, 8, 8), p=0.6, seed=6, dtype=torch.float32) * 3),
                   (spikingjelly_net(), _spikes((T, B, 2, 8, 8), seed=6, dtype=torch.float32))):
        model, _ = convert(net, "ptt", 4, init="random")
        model.train()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = F.cross_entropy(model(x).mean(0), torch.arange(B))
        loss.backward()
        for name, layer_ in tt_layers_of(model):
            for core in ("g1", "g2", "g3", "g4"):
                grad = getattr(layer_.tt, core).weight.grad
                assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (name, core)
        opt.step()
        changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        assert any(".tt.g2." in n for n in changed)


# ----- counts ------------------------------------------------------------------------------------
def test_parameter_counts_by_hand():
    net = spikingjelly_net()  # convs 2->8, 8->16 (s2), 16->16 (+bias); BN 8/16/16; Linear 16->10
    # dense: 9*2*8 + 9*8*16 + 9*16*16 + 16 (bias) + 2*(8+16+16) (BN) + 16*10+10 = 3866
    assert sum(p.numel() for p in net.parameters()) == 3866
    ptt, rows = convert(net, "ptt", 4, init="random")
    # TT rank 4: r(Cin+Cout) + 6r^2 = 4*10+96, 4*24+96, 4*32+96; bias, BN, Linear unchanged
    assert [r.tt_params for r in rows] == [136, 192, 224 + 16]
    assert [r.dense_params for r in rows] == [144, 1152, 2304 + 16]
    assert sum(p.numel() for p in ptt.parameters()) == 136 + 192 + 224 + 16 + 80 + 170


def test_mac_counts_by_hand():
    net = spikingjelly_net().double()
    x = _spikes((T, B, 2, 8, 8))
    n = T * B
    dense = count_macs(net, lambda: net(x))
    functional.reset_net(net)
    # 3x3 conv: 9 Cin Cout Ho Wo per image; Linear: in*out per image (per timestep)
    assert dense == {"0": 9 * 2 * 8 * 64 * n, "3": 9 * 8 * 16 * 16 * n, "6": 9 * 16 * 16 * 16 * n,
                     "11": 16 * 10 * n}
    ptt, _ = convert(net, "ptt", 4, init="random")
    macs = count_macs(ptt, lambda: ptt(x))
    # G1 Cin r HW_in, G2 = G3 = 3 r^2 HW_out, G4 r Cout HW_out ('stride' downsampling)
    assert macs["0"] == (2 * 4 * 64 + 2 * 3 * 16 * 64 + 4 * 8 * 64) * n
    assert macs["3"] == (8 * 4 * 64 + 2 * 3 * 16 * 16 + 4 * 16 * 16) * n
    assert macs["6"] == (16 * 4 * 16 + 2 * 3 * 16 * 16 + 4 * 16 * 16) * n
    htt, _ = convert(snntorch_net(), "htt", 4, layout="per-step", timesteps=T, init="random")
    macs = count_macs(htt, lambda: htt(x.float()))
    full, reduced = 2 * 4 * 64 + 2 * 3 * 16 * 64 + 4 * 8 * 64, 2 * 4 * 64 + 4 * 8 * 64
    assert macs["conv1"] == 2 * B * full + 2 * B * reduced  # schedule 1100


def test_evbmf_ranks_come_from_the_trained_weights():
    torch.manual_seed(7)
    net = spikingjelly_net(channels=16)
    conv = net[3]  # 16 -> 32: plant a rank-3 mode-0 unfolding plus small noise
    with torch.no_grad():
        low = torch.randn(32, 3) @ torch.randn(3, 16 * 9)
        conv.weight.copy_(low.view(32, 16, 3, 3) + 0.01 * torch.randn(32, 16, 3, 3))
    _, rows = convert(net, "ptt", "evbmf", include=["3"])
    r, r0, r1 = conv_rank(conv.weight.detach().double().numpy())
    assert (rows[0].rank, rows[0].evbmf_ranks) == (r, (r0, r1)) and r0 == 3


# ----- selection and refusals --------------------------------------------------------------------
def test_include_exclude_patterns():
    net = snntorch_net()
    _, rows = convert(net, "ptt", 2, exclude=["conv1"], init="random")
    assert [r.name for r in rows] == ["conv2"]
    _, rows = convert(net, "ptt", {"conv1": 3, "conv*": 5}, init="random")
    assert [(r.name, r.rank) for r in rows] == [("conv1", 3), ("conv2", 5)]
    with pytest.raises(ValueError, match="pattern 'convX' matches no 3x3 conv; the model's 3x3 convs are: conv1, conv2"):
        convert(net, "ptt", 2, include=["convX"])
    single = nn.Conv2d(4, 6, 3, padding="same").double()  # a bare conv is a model too
    tt, rows = convert(single, "stt", "full")
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    assert isinstance(tt, PluginTTConv) and [r.name for r in rows] == [""]
    assert torch.allclose(tt(x), F.conv2d(x, single.weight, single.bias, padding=1), atol=1e-10)
    assert type(merge(tt)) is nn.Conv2d


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=2), "groups=2"), (dict(dilation=2, padding=2), "dilation"),
    (dict(padding=0), r"padding \(0, 0\)"), (dict(stride=3, padding=1), "stride"),
    (dict(padding=1, padding_mode="reflect"), "padding_mode"),
])
def test_unsupported_geometry_is_refused_in_one_line(kwargs, message):
    net = nn.Sequential(nn.Conv2d(4, 4, 3, **{"padding": 1, **kwargs}), nn.Conv2d(4, 4, 3, padding=1))
    with pytest.raises(ValueError, match=f"layer '0' cannot be converted: .*{message}") as err:
        convert(net, "ptt", 2)
    assert "\n" not in str(err.value)
    model, rows = convert(net, "ptt", 2, on_unsupported="skip", init="random")
    assert type(model[0]) is nn.Conv2d and isinstance(model[1], PluginTTConv)
    assert rows[-1].mode == "dense" and rows[-1].note.startswith("left dense")


def test_bad_options_are_clear_errors():
    net = snntorch_net()
    with pytest.raises(ValueError, match="must know which timestep"):
        convert(net, "htt", 2)
    with pytest.raises(ValueError, match="rank 99 for layer conv1 .* out of range: allowed 1..8"):
        convert(net, "ptt", 99)
    with pytest.raises(ValueError, match="mode must be one of stt, ptt, htt"):
        convert(net, "tt", 2)
    ptt, _ = convert(net, "ptt", 2, init="random")
    with pytest.raises(ValueError, match="expected \\[N, C, H, W\\] with C=2"):
        ptt.conv1(torch.zeros(3, 5, 8, 8))
    with pytest.raises(ValueError, match="no converted TT layer"):
        merge(net)
