"""The compiled rectangle-LIF loops (sw/lif_native.py): the same spikes, masks and gradients
as the eager loops and as the plain-autograd equations, on random and real data; fallbacks."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from ttsnn.sw import lif_native
from ttsnn.sw.neurons import _backward_loop, _forward_loop, lif_multistep, lif_multistep_naive

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@pytest.fixture
def native(monkeypatch):
    """The compiled loops on, and a counter of their calls (to prove they ran)."""
    calls = {"forward": 0, "backward": 0}
    fwd, bwd = lif_native.lif_forward, lif_native.lif_backward

    def count_fwd(*a, **k):
        calls["forward"] += 1
        return fwd(*a, **k)

    def count_bwd(*a, **k):
        calls["backward"] += 1
        return bwd(*a, **k)

    monkeypatch.setattr(lif_native, "ENABLED", True)
    monkeypatch.setattr(lif_native, "lif_forward", count_fwd)
    monkeypatch.setattr(lif_native, "lif_backward", count_bwd)
    assert lif_native.available(torch.zeros(2, 3))
    return calls


def _run(x, cotangent, enabled, monkeypatch):
    monkeypatch.setattr(lif_native, "ENABLED", enabled)
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    s = lif_multistep(x)
    (g,) = torch.autograd.grad(s, x, cotangent)
    return s.detach(), g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_equal_eager_loops_bit_for_bit(dtype):
    torch.manual_seed(0)
    x = (torch.randn(7, 5003, dtype=dtype) * 0.6 + 0.3)
    x[:, :50] = 1.0    # exactly on the window's edge (|u - V_th| = 0.5: outside)
    x[:, 50:100] = 0.5  # exactly on the threshold (no spike at t = 0)
    spikes, _, no_spike, window = _forward_loop(x, 0.25, 0.5, keep_membrane=False,
                                                for_backward=True, window_width=1.0)
    s, n, w = lif_native.lif_forward(x, 0.25, 0.5, 0.5)
    assert s.dtype == dtype and n.dtype == w.dtype == torch.bool
    assert torch.equal(s, spikes) and torch.equal(n, no_spike) and torch.equal(w, window)
    assert 0 < s.sum() < s.numel() and 0 < w.sum() < w.numel()
    g = torch.randn_like(x)
    ref = _backward_loop(g, None, no_spike, window, 0.25, "rectangle", 0.5, 1.0)
    assert torch.equal(lif_native.lif_backward(g, n, w, 0.25), ref)


def test_thread_split_gives_the_same_result(monkeypatch):
    torch.manual_seed(1)
    x = torch.randn(4, 1237) * 0.6 + 0.3
    g = torch.randn_like(x)
    one = lif_native.lif_forward(x, 0.25, 0.5, 0.5)
    one_g = lif_native.lif_backward(g, one[1], one[2], 0.25)
    monkeypatch.setattr(lif_native, "_MIN_COLUMNS_PER_THREAD", 100)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        split = lif_native.lif_forward(x, 0.25, 0.5, 0.5)
        split_g = lif_native.lif_backward(g, split[1], split[2], 0.25)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, split)) and torch.equal(one_g, split_g)


def test_hand_computed_trace_and_window(native):
    # tau 0.25, V_th 0.5: u = 0.4, 0.5 (not > 0.5), 0.525 (spike), reset -> 0.4
    x = torch.tensor([0.4, 0.4, 0.4, 0.4]).view(4, 1).requires_grad_()
    s = lif_multistep(x)
    assert s.view(-1).tolist() == [0.0, 0.0, 1.0, 0.0]
    s.backward(torch.tensor([1.0, 0.0, 0.0, 0.0]).view(4, 1))
    # only t = 0 gets dL/ds = 1: dL/du[0] = h(u[0] - 0.5) = 1 (|-0.1| < 0.5); no later terms
    assert x.grad.view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]
    x.grad = None
    lif_multistep(x).backward(torch.tensor([0.0, 1.0, 0.0, 0.0]).view(4, 1))
    # dL/du[1] = h(0) = 1, dL/du[0] = tau * (1 - s[0]) * dL/du[1] = 0.25
    assert x.grad.view(-1).tolist() == [0.25, 1.0, 0.0, 0.0]
    assert native == {"forward": 2, "backward": 2}


def test_channels_last_frames_match_plain_autograd(native, monkeypatch):
    torch.manual_seed(2)
    x = (torch.randn(6, 3, 8, 5, 7) * 0.7 + 0.2).flatten(0, 1)
    x = x.contiguous(memory_format=torch.channels_last).unflatten(0, (6, 3))
    cot = torch.randn(6, 3, 8, 5, 7)
    s, g = _run(x, cot, True, monkeypatch)
    assert s.stride() == x.stride()
    ref = x.clone().requires_grad_()
    s_ref = lif_multistep_naive(ref)
    (g_ref,) = torch.autograd.grad(s_ref, ref, cot)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-6)
    assert native["forward"] == 1 and native["backward"] == 1


def test_float64_jacobian_matches_plain_autograd(native):
    # the spikes are a step function, so finite differences cannot check the surrogate
    # gradient; the full Jacobian of the plain-autograd equations in float64 can
    torch.manual_seed(3)
    x = torch.randn(5, 2, 3, dtype=torch.float64) * 0.5 + 0.3
    j = torch.autograd.functional.jacobian(lambda inp: lif_multistep(inp, 0.3, 0.4, alpha=1.5), x)
    j_ref = torch.autograd.functional.jacobian(
        lambda inp: lif_multistep_naive(inp, 0.3, 0.4, alpha=1.5), x)
    torch.testing.assert_close(j, j_ref, rtol=1e-12, atol=1e-12)
    assert j.abs().sum() > 0 and native["backward"] > 0


def test_network_step_on_digits_equals_eager(monkeypatch):
    """A training step of a tiny PTT MS-ResNet on the embedded digit events: the same loss,
    BatchNorm statistics and parameter gradients with the compiled loops as with the eager."""
    from ttsnn.sw.data.images import digits_event_frames
    from ttsnn.sw.resnet import ms_resnet

    frames = digits_event_frames(True, 4)
    x = torch.stack([frames[i][0] for i in range(4)], dim=1)   # [T, B, 2, 16, 16]
    y = torch.tensor([frames[i][1] for i in range(4)])
    results = []
    for enabled in (False, True):
        monkeypatch.setattr(lif_native, "ENABLED", enabled)
        torch.manual_seed(4)
        model = ms_resnet("tiny", mode="ptt", ranks="uniform:4", in_channels=2,
                          num_classes=10, timesteps=4, input_size=16).train()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()],
                        [b.clone() for b in model.buffers()]))
    (loss_e, grads_e, bufs_e), (loss_n, grads_n, bufs_n) = results
    assert torch.equal(loss_e, loss_n)
    assert all(torch.equal(a, b) for a, b in zip(bufs_e, bufs_n))
    for a, b in zip(grads_e, grads_n):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert sum(g.abs().sum() for g in grads_n) > 0


def test_disabled_or_unbuildable_falls_back_to_eager(monkeypatch):
    x = torch.randn(3, 4, 5)
    monkeypatch.setattr(lif_native, "ENABLED", False)
    assert not lif_native.available(x.view(3, -1))
    monkeypatch.setattr(lif_native, "ENABLED", True)
    assert not lif_native.available(x.view(3, -1).half())           # no kernel for float16
    assert not lif_native.available(x.view(3, -1)[:, ::2])          # not contiguous
    # no compiler: the first use finds none and the eager loops run, without an error
    monkeypatch.setattr(lif_native, "_tried", False)
    monkeypatch.setattr(lif_native, "_lib", None)
    monkeypatch.setattr(lif_native.shutil, "which", lambda name: None)
    assert not lif_native.available(x.view(3, -1))
    assert torch.equal(lif_multistep(x), lif_multistep_naive(x))
