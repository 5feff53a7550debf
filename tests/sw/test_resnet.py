"""MS-ResNet backbones: structure, input handling, membrane shortcut, merge-back equivalence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttsnn.sw.neurons import MultiStepLIF, lif_multistep
from ttsnn.sw.resnet import BatchNormTB, ConvBNShortcut, MSResNet, merge_to_dense, ms_resnet
from ttsnn.sw.stats import torch_param_count
from ttsnn.sw.tt import DenseConv3x3, ScheduledConv3x3, TTConv2d


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Random eval-mode BN statistics that amplify the (small) untrained conv outputs, so that
    every LIF layer fires and every conv is exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.02 - 0.01)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.04 + 0.01)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.6 - 0.2)


def _spike_rates(model: nn.Module, x: torch.Tensor) -> list[float]:
    lifs = [m for m in model.modules() if isinstance(m, MultiStepLIF)]
    for lif in lifs:
        lif.record = True
    with torch.no_grad():
        model(x)
    for lif in lifs:
        lif.record = False
    return [lif.last_spikes.mean().item() for lif in lifs]


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
@pytest.mark.parametrize("downsample", ["maxpool", "stride"])
def test_merge_to_dense_same_outputs(mode, downsample):
    torch.manual_seed(0)
    model = ms_resnet("tiny", mode, ranks=[5, 6, 7, 8], in_channels=2, num_classes=5,
                      timesteps=4, input_size=12, downsample=downsample,
                      schedule=(True, False, True, False) if mode == "htt" else None)
    _randomise_bn(model)
    model.eval()
    merged = merge_to_dense(model)
    assert not any(isinstance(m, TTConv2d) for m in merged.modules())
    kind = ScheduledConv3x3 if mode == "htt" else DenseConv3x3
    assert isinstance(merged.layers[1][0].conv1, kind)
    x = torch.rand(4, 3, 2, 12, 11) * 2
    rates = _spike_rates(model, x)
    assert all(0.02 < r < 0.98 for r in rates), rates   # every conv sees spikes
    with torch.no_grad():
        # membranes reach tens here: float32 rounding of different summation orders is relative
        torch.testing.assert_close(merged.features(x), model.features(x), rtol=1e-5, atol=1e-5)
        logits, merged_logits = model(x), merged(x)
    assert (logits - merged_logits).abs().max().item() <= 1e-5
    assert logits.abs().sum() > 0
    # the original keeps its TT convs
    assert isinstance(model.layers[0][0].conv1, TTConv2d)


@pytest.mark.parametrize("mode", ["dense", "stt", "ptt", "htt"])
def test_spec_names_and_params_match_torch_model(mode):
    model = ms_resnet("tiny", mode, ranks=None if mode == "dense" else 4, in_channels=3,
                      num_classes=7, timesteps=2, input_size=8)
    modules = dict(model.named_modules())
    for spec in model.spec:
        layer = modules[spec.name]
        own = sum(p.numel() for p in layer.parameters())
        assert own == spec.params(), spec.name
        if spec.kind == "conv3x3":
            assert isinstance(layer, TTConv2d if mode != "dense" else DenseConv3x3)
            if mode != "dense":
                assert layer.rank == spec.rank and layer.stride == spec.stride
    assert torch_param_count(model) == sum(s.params() for s in model.spec)


def test_structure_for_hardware_replay():
    model = ms_resnet("resnet18", "ptt", ranks=8)
    assert [len(stage) for stage in model.layers] == [2, 2, 2, 2]
    block = model.layers[1][0]
    for attr in ("lif1", "conv1", "bn1", "lif2", "conv2", "bn2", "shortcut"):
        assert hasattr(block, attr)
    assert isinstance(block.shortcut, ConvBNShortcut) and block.shortcut.conv.stride == (2, 2)
    assert isinstance(model.layers[0][0].shortcut, nn.Identity)
    assert isinstance(model.bn1, BatchNormTB) and model.fc.out_features == 10
    assert torch_param_count(ms_resnet("resnet18")) == 11_164_362


def test_block_is_membrane_shortcut():
    torch.manual_seed(1)
    model = ms_resnet("tiny", "ptt", ranks=4, in_channels=2, num_classes=3, timesteps=3)
    _randomise_bn(model)
    model.eval()
    block = model.layers[1][0]
    x = torch.randn(3, 2, 16, 6, 6)
    with torch.no_grad():
        out = block(x)
        spikes = lif_multistep(x)
        h = block.bn1(block.conv1(spikes))
        h = block.bn2(block.conv2(lif_multistep(h)))
        sc = block.shortcut.bn(block.shortcut.conv(x.flatten(0, 1)).unflatten(0, (3, 2)))
    torch.testing.assert_close(out, h + sc)


def test_bn_statistics_shared_over_time():
    bn = BatchNormTB(3)
    x = torch.randn(4, 5, 3, 2, 2) * torch.arange(1, 5).view(4, 1, 1, 1, 1)  # scale differs per t
    y = bn(x)
    per_channel = y.transpose(1, 2).transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    assert not torch.allclose(y[0].std(), y[3].std(), rtol=0.2)   # not normalised per timestep


def test_direct_coding_and_event_frames():
    torch.manual_seed(2)
    model = ms_resnet("tiny", "htt", ranks=4, in_channels=3, num_classes=4, timesteps=3)
    model.eval()
    img = torch.rand(2, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(img), model(img.unsqueeze(0).repeat(3, 1, 1, 1, 1)))
    events = ms_resnet("tiny", "ptt", ranks=4, in_channels=2, num_classes=4, timesteps=5)
    assert events(torch.rand(5, 2, 2, 9, 9)).shape == (2, 4)


def test_hparams_rebuild_identical_model():
    model = ms_resnet("tiny", "htt", ranks="3,4,5,6", in_channels=2, num_classes=4, timesteps=4,
                      input_size=(12, 10), schedule=[1, 0, 1, 0], downsample="stride",
                      surrogate="atan", tau=0.5, v_threshold=0.4, alpha=3.0)
    assert isinstance(model, MSResNet)
    rebuilt = ms_resnet(**model.hparams)
    assert rebuilt.spec == model.spec
    rebuilt.load_state_dict(model.state_dict())
    lif = rebuilt.layers[0][0].lif1
    assert (lif.tau, lif.v_threshold, lif.surrogate_function, lif.alpha) == (0.5, 0.4, "atan", 3.0)
    x = torch.rand(4, 2, 2, 12, 10)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_training_step_reaches_every_core():
    model = ms_resnet("tiny", "stt", ranks=3, in_channels=2, num_classes=3, timesteps=2)
    # scaled input so that spikes reach the later layers of the untrained net
    loss = nn.functional.cross_entropy(model(torch.rand(2, 4, 2, 8, 8) * 3), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if ".g" in n}
    assert len(grads) == 16 and all(g is not None for g in grads.values())
    assert sum(bool(g.abs().sum() > 0) for g in grads.values()) >= 12


@pytest.mark.parametrize("x,match", [
    (torch.rand(2, 2, 8, 8), r"expected \[B, 3, H, W\] images.*2 channels"),
    (torch.rand(3, 2, 3, 8, 8), "got 3 timesteps in dim 0"),
    (torch.rand(4, 2, 2, 8, 8), "2 channels in dim 2"),
    (torch.rand(8, 8), "2-d tensor"),
    (torch.ones(2, 3, 8, 8, dtype=torch.long), "floating point"),
])
def test_bad_model_input(x, match):
    model = ms_resnet("tiny", in_channels=3, timesteps=4)
    with pytest.raises(ValueError, match=match):
        model(x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="ptt"), "needs ranks"),
    (dict(mode="ptt", ranks=100), "allowed 1..48"),
    (dict(mode="ptt", ranks=4, schedule=[1, 0, 1, 0]), "only used by mode 'htt'"),
    (dict(mode="htt", ranks=4, schedule=[1, 0, 1, 0, 1]), "5 entries but timesteps T=4"),
    (dict(surrogate="relu"), "unknown surrogate"),
    (dict(arch="resnet50"), "unknown arch"),
])
def test_bad_builder_arguments(kwargs, match):
    args = dict(arch="tiny", timesteps=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ms_resnet(**args)


def test_merge_rejects_other_models():
    with pytest.raises(ValueError, match="expects an MSResNet"):
        merge_to_dense(nn.Linear(2, 2))


def test_batchnorm_tb_gradient_in_any_layout_matches_batchnorm2d():
    # the incoming gradient is handed to BatchNorm's backward in its input's layout (speed);
    # the gradients equal plain BatchNorm2d on the folded frames whatever the layouts
    from ttsnn.sw.layers import BatchNormTB

    torch.manual_seed(7)
    for in_cl, grad_cl in ((False, True), (True, False), (True, True), (False, False)):
        x = torch.randn(3, 2, 4, 5, 6) * 2 + 1
        g = torch.randn(3, 2, 4, 5, 6)
        as_cl = lambda t: t.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (3, 2))
        x = as_cl(x) if in_cl else x
        g = as_cl(g) if grad_cl else g
        bn, ref = BatchNormTB(4), torch.nn.BatchNorm2d(4)
        with torch.no_grad():
            for m in (bn, ref):
                m.weight.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
                m.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        xa = x.clone(memory_format=torch.preserve_format).requires_grad_()
        xb = x.detach().flatten(0, 1).clone().requires_grad_()
        ya, yb = bn(xa), ref(xb)
        torch.testing.assert_close(ya.flatten(0, 1), yb)
        ya.backward(g)
        yb.backward(g.flatten(0, 1))
        torch.testing.assert_close(xa.grad.flatten(0, 1), xb.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)
