"""The compiled BatchNorm of BatchNormTB (sw/batchnorm.py): the BatchNorm equations written out
by hand (forward, gradients, running statistics), gradcheck in float64, the input of every
BatchNorm of a network on real data (float32, against the float64 equations and torch's
BatchNorm), and the fallbacks."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F

from ttsnn.sw import batchnorm, lif_native
from ttsnn.sw.layers import BatchNormTB

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.fixture
def native(monkeypatch):
    """The compiled passes on, and a counter of the autograd function's calls."""
    calls = {"n": 0}
    apply = batchnorm._BatchNormTBFunction.apply

    def counted(*args):
        calls["n"] += 1
        return apply(*args)

    monkeypatch.setattr(batchnorm, "ENABLED", True)
    monkeypatch.setattr(batchnorm._BatchNormTBFunction, "apply", counted)
    assert lif_native.built()
    return calls


def _frames(shape, fmt, dtype=torch.float32, seed=0):
    """``[T, B, C, H, W]`` whose folded frames are dense in ``fmt``; channel means far from 0
    (so that a variance computed without shifting would cancel)."""
    t, b, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t * b, c, h, w, generator=g, dtype=dtype) * 0.7
    x += torch.arange(c, dtype=dtype).view(1, c, 1, 1) * 3.0 + 40.0
    return x.contiguous(memory_format=fmt).view(t, b, c, h, w)


def _bn(channels, dtype=torch.float32, seed=1):
    bn = BatchNormTB(channels).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g, dtype=dtype) + 0.5)
        bn.bias.copy_(torch.rand(channels, generator=g, dtype=dtype) - 0.5)
    return bn


def _by_hand(x, weight, bias, eps):
    """The equations over dims (T, B, H, W) in float64 with plain autograd."""
    dims = (0, 1, 3, 4)
    shape = (1, 1, -1, 1, 1)
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight.view(shape) + bias.view(shape)


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_training_forward_backward_and_running_stats_match_the_equations(native, fmt):
    x = _frames((3, 4, 5, 6, 7), fmt)
    bn = _bn(5)
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    xa = x.clone(memory_format=torch.preserve_format).requires_grad_()
    y = bn(xa)
    assert native["n"] == 1
    # the output keeps the input's memory layout (the LIF and TT convs work on it as it is)
    assert y.reshape(12, 5, 6, 7).is_contiguous(memory_format=fmt)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    gx, gw, gb = torch.autograd.grad(y, (xa, bn.weight, bn.bias), cot)

    x64 = x.double().requires_grad_()
    w64, b64 = bn.weight.detach().double().requires_grad_(), bn.bias.detach().double().requires_grad_()
    ref = _by_hand(x64, w64, b64, bn.eps)
    rgx, rgw, rgb = torch.autograd.grad(ref, (x64, w64, b64), cot.double())
    torch.testing.assert_close(y.double(), ref.detach(), rtol=0, atol=2e-5)
    torch.testing.assert_close(gx.double(), rgx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gw.double(), rgw, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb.double(), rgb, rtol=1e-5, atol=1e-4)
    # r <- 0.9 r + 0.1 * stat, with the unbiased variance (n = 3 * 4 * 6 * 7 per channel)
    n = 3 * 4 * 6 * 7
    mean = x.double().mean((0, 1, 3, 4))
    var_unbiased = x.double().var((0, 1, 3, 4), correction=1)
    assert n / (n - 1) != 1.0
    torch.testing.assert_close(bn.running_mean.double(), 0.9 * rm0.double() + 0.1 * mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), 0.9 * rv0.double() + 0.1 * var_unbiased,
                               rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 1


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_eval_uses_the_running_statistics(native, fmt):
    bn = _bn(4)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        bn.running_var.copy_(torch.tensor([1.5, 0.25, 4.0, 1.0]))
    bn.eval()
    x = _frames((2, 3, 4, 5, 5), fmt).requires_grad_()
    y = bn(x)
    shape = (1, 1, -1, 1, 1)
    invstd = 1 / torch.sqrt(bn.running_var + bn.eps)
    expected = (x.detach() - bn.running_mean.view(shape)) * (invstd * bn.weight.detach()).view(shape) \
        + bn.bias.detach().view(shape)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    cot = torch.randn(y.shape)
    (gx,) = torch.autograd.grad(y, x, cot)
    torch.testing.assert_close(gx, cot * (invstd * bn.weight.detach()).view(shape), rtol=1e-6, atol=1e-6)
    assert int(bn.num_batches_tracked) == 0 and native["n"] == 1


@pytest.mark.parametrize("fmt", LAYOUTS)
@pytest.mark.parametrize("training", [True, False])
def test_float64_gradcheck(native, fmt, training):
    bn = _bn(3, torch.float64).train(training)
    x = _frames((2, 2, 3, 3, 4), fmt, torch.float64, seed=3).requires_grad_()

    def fn(x, w, b):
        return batchnorm._BatchNormTBFunction.apply(x, w, b, bn.running_mean, bn.running_var,
                                                    training, None, bn.eps)

    assert torch.autograd.gradcheck(fn, (x, bn.weight, bn.bias), eps=1e-6, atol=1e-6)
    assert native["n"] > 0


def test_thread_split_and_momentum_none_match_torch(native, monkeypatch):
    """Several threads (small chunks) give torch's result, and ``momentum=None`` averages."""
    monkeypatch.setattr(batchnorm, "_MIN_ELEMENTS_PER_THREAD", 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for fmt in LAYOUTS:
            bn = _bn(6)
            bn.momentum = None
            ref = copy.deepcopy(bn)
            for step in range(2):
                x = _frames((2, 5, 6, 4, 4), fmt, seed=10 + step)
                y = bn(x)
                monkeypatch.setattr(batchnorm, "ENABLED", False)
                y_ref = ref(x)
                monkeypatch.setattr(batchnorm, "ENABLED", True)
                torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=2e-5)
            torch.testing.assert_close(bn.running_mean, ref.running_mean)
            torch.testing.assert_close(bn.running_var, ref.running_var)
            assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 2
    finally:
        torch.set_num_threads(threads)


def test_every_batchnorm_of_a_network_on_digits_equals_torch(native, monkeypatch):
    """Real data: the input of every BatchNormTB of a tiny PTT MS-ResNet on the embedded digit
    events (one training forward with torch's BatchNorm), each layer's output and gradients
    (float32, a random cotangent) against torch's BatchNorm on the same input; and the whole
    step's loss. Outputs differ by float rounding, so a membrane within an ulp of the LIF
    threshold may flip a spike downstream: the whole step is compared loosely, the layers
    tightly."""
    from ttsnn.sw.data.images import digits_event_frames
    from ttsnn.sw.resnet import ms_resnet

    frames = digits_event_frames(True, 4)   # (train split, T = 4)
    x = torch.stack([frames[i][0] for i in range(8)], dim=1)   # [T, B, 2, 16, 16]
    y = torch.tensor([frames[i][1] for i in range(8)])
    torch.manual_seed(4)
    model = ms_resnet("tiny", mode="ptt", ranks="uniform:4", in_channels=2,
                      num_classes=10, timesteps=4, input_size=16).train()
    start = copy.deepcopy(model)
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda m, a: inputs.append((m, a[0].detach())))
             for m in model.modules() if isinstance(m, BatchNormTB)]
    monkeypatch.setattr(batchnorm, "ENABLED", False)
    loss_torch = F.cross_entropy(model(x), y)
    for h in hooks:
        h.remove()
    assert len(inputs) >= 5 and native["n"] == 0
    for module, inp in inputs:
        # the float64 equations by hand, then torch's and the compiled BatchNorm in float32
        x64 = inp.double().requires_grad_()
        w64 = module.weight.detach().double().requires_grad_()
        b64 = module.bias.detach().double().requires_grad_()
        ref = _by_hand(x64, w64, b64, module.eps)
        cot = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5))
        expected = (ref.detach(), *torch.autograd.grad(ref, (x64, w64, b64), cot.double()))
        for enabled in (False, True):
            monkeypatch.setattr(batchnorm, "ENABLED", enabled)
            bn = copy.deepcopy(module)
            xi = inp.clone(memory_format=torch.preserve_format).requires_grad_()
            out = bn(xi)
            got = (out.detach(), *torch.autograd.grad(out, (xi, bn.weight, bn.bias), cot))
            for g, e in zip(got, expected):
                # float32 accuracy. torch's float32 statistics are the less accurate here (its
                # outputs err by up to 1e-5 of their scale on these inputs); the compiled
                # passes sum in double
                tol = (2e-6 if enabled else 2e-5) * float(e.abs().max())
                torch.testing.assert_close(g.double(), e, rtol=0, atol=tol, msg=lambda m: f"{enabled} {e.shape} {m}")
    assert native["n"] == len(inputs)
    monkeypatch.setattr(batchnorm, "ENABLED", True)
    loss_native = F.cross_entropy(start(x), y)
    torch.testing.assert_close(loss_native, loss_torch, rtol=1e-3, atol=0)


def test_fallbacks_to_torch(native, monkeypatch):
    x = _frames((2, 2, 3, 4, 4), torch.contiguous_format)
    BatchNormTB(3)(x.half().float())                         # float32: compiled
    assert native["n"] == 1
    BatchNormTB(3, affine=False)(x)                          # no weight: torch
    monkeypatch.setattr(batchnorm, "ENABLED", False)
    BatchNormTB(3)(x)                                        # switched off: torch
    monkeypatch.setattr(batchnorm, "ENABLED", True)

    class Sub(BatchNormTB):
        pass

    Sub(3)(x)                                                # subclasses keep torch's
    assert native["n"] == 1
    # one value per channel in training: torch's own error, not a division by zero
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNormTB(3)(torch.randn(1, 1, 3, 1, 1))
    assert native["n"] == 1
