"""The memory-saving TT conv autograd function against plain autograd."""

from __future__ import annotations

import pytest
import torch

from ttsnn.sw.bench import saved_tensor_bytes
from ttsnn.sw.tt import TTConv2d
from ttsnn.sw.tt_autograd import is_binary, tt_conv

# (mode, stride, downsample, schedule) covering every branch of the function
CONFIGS = [
    ("stt", 1, "maxpool", None), ("stt", 2, "maxpool", None), ("stt", 2, "stride", None),
    ("ptt", 1, "maxpool", None), ("ptt", 2, "maxpool", None), ("ptt", 2, "stride", None),
    ("htt", 1, "maxpool", None), ("htt", 2, "maxpool", None), ("htt", 2, "stride", None),
    ("htt", 1, "maxpool", "0101"), ("htt", 2, "maxpool", "1011"), ("htt", 2, "stride", "0110"),
    ("htt", 1, "maxpool", "1111"), ("htt", 2, "maxpool", "0000"), ("htt", 2, "stride", "0000"),
    ("htt", 2, "stride", "1111"),
]


def _module(mode, stride, downsample, schedule, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    m = TTConv2d(2, 3, 2, mode, stride=stride, downsample=downsample, schedule=schedule)
    return m.to(dtype)


def _weights(m):
    return m.g1.weight, m.g2.weight, m.g3.weight, m.g4.weight


@pytest.mark.parametrize("keep_rank", [False, True], ids=["recompute", "keep-rank"])
@pytest.mark.parametrize("mode,stride,downsample,schedule", CONFIGS)
def test_gradcheck_float64(mode, stride, downsample, schedule, keep_rank):
    """The hand-written backward (input kept as is) against finite differences."""
    m = _module(mode, stride, downsample, schedule)
    x = torch.randn(4, 1, 2, 5, 4, dtype=torch.float64, requires_grad=True)  # odd H: ceil pool
    geo = m.geometry(4)
    fn = lambda x_, *w: tt_conv(x_, *w, geo, binary_input=False, keep_rank=keep_rank)
    assert torch.autograd.gradcheck(fn, (x, *_weights(m)), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("keep_rank", [False, True], ids=["recompute", "keep-rank"])
@pytest.mark.parametrize("mode,stride,downsample,schedule", CONFIGS[:9])
def test_gradcheck_binary_storage(mode, stride, downsample, schedule, keep_rank):
    """Weights' gradients with the input kept as bool, against finite differences."""
    m = _module(mode, stride, downsample, schedule)
    x = (torch.rand(4, 1, 2, 5, 4, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    geo = m.geometry(4)
    fn = lambda *w: tt_conv(x, *w, geo, binary_input=True, keep_rank=keep_rank)
    assert torch.autograd.gradcheck(fn, _weights(m), eps=1e-6, atol=1e-6)


def _grads(m, x, memory_saving, keep_rank=True):
    m.memory_saving, m.keep_rank_intermediates = memory_saving, keep_rank
    m.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = m(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
    (y * g).sum().backward()
    return y.detach(), x.grad, [None if w.grad is None else w.grad.clone() for w in _weights(m)], y.grad_fn


def _digit_spikes(timesteps=4, batch=3):
    from ttsnn.sw.data.images import digits_event_frames

    frames = digits_event_frames(True, timesteps)
    x = torch.stack([frames[i][0] for i in range(batch)], dim=1)  # [T, B, 2, 16, 16]
    return x


@pytest.mark.parametrize("mode,stride,downsample,schedule", CONFIGS)
def test_float32_same_forward_and_gradients_on_digit_spikes(mode, stride, downsample, schedule):
    m = _module(mode, stride, downsample, schedule, dtype=torch.float32).train()
    x = _digit_spikes()
    assert is_binary(x) and x.sum() > 0
    y_ref, gx_ref, gw_ref, fn_ref = _grads(m, x, memory_saving=False)
    y, gx, gw, fn = _grads(m, x, memory_saving=True)
    assert "TTConvFunction" in type(fn).__name__ and "TTConvFunction" not in type(fn_ref).__name__
    assert torch.equal(y, y_ref)  # bit-identical forward
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(gw, gw_ref):  # g2/g3 get no gradient when no timestep is full
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # recomputing the rank intermediates gives the kept ones bit for bit: same gradients
    y_rc, gx_rc, gw_rc, _ = _grads(m, x, memory_saving=True, keep_rank=False)
    assert torch.equal(y_rc, y) and torch.equal(gx_rc, gx)
    for a, b in zip(gw_rc, gw):
        assert (a is None and b is None) or torch.equal(a, b)


def test_float_input_and_eval_fall_back_to_plain_autograd():
    m = _module("ptt", 2, "maxpool", None, dtype=torch.float32).train()
    x = torch.rand(2, 1, 2, 6, 6, requires_grad=True)  # not spikes
    assert "TTConvFunction" not in type(m(x).grad_fn).__name__
    spikes = (x.detach() > 0.5).float().requires_grad_(True)
    assert "TTConvFunction" in type(m(spikes).grad_fn).__name__
    m.eval()
    assert "TTConvFunction" not in type(m(spikes).grad_fn).__name__
    assert not is_binary(torch.tensor([0.0, 1.0, 0.5])) and is_binary(torch.tensor([0.0, 1.0]))


def test_saves_only_bool_input_and_weights():
    """Saved-for-backward bytes: the input as bool (1 byte per element) plus the weights;
    with the rank intermediates kept, plus STT's three of them (g1 out, g2 out, g4 in)."""
    m = _module("stt", 2, "maxpool", None, dtype=torch.float32).train()
    m.keep_rank_intermediates = False
    x = (torch.rand(4, 2, 2, 8, 8) < 0.3).float().requires_grad_(True)
    _, saved = saved_tensor_bytes(lambda: m(x))
    weight_bytes = sum(w.numel() * 4 for w in _weights(m))
    assert saved == x.numel() * 1 + weight_bytes
    m.keep_rank_intermediates = True
    _, saved_keep = saved_tensor_bytes(lambda: m(x))
    rank_map = 4 * 2 * m.rank * 8 * 8  # [T*B, r, H, W]: the chain runs at stride 1 before the pool
    assert saved_keep == saved + 3 * rank_map * 4
    m.memory_saving = False
    _, saved_plain = saved_tensor_bytes(lambda: m(x))
    assert saved_plain > 4 * x.numel()  # at least the float input


def test_lif_spikes_skip_the_value_check_but_its_membrane_does_not():
    from ttsnn.sw.neurons import lif_multistep
    from ttsnn.sw.tt_autograd import _lif_spikes

    u = torch.randn(3, 2, 2, 5, 5, requires_grad=True)
    spikes, membrane = lif_multistep(u, return_membrane=True)
    assert _lif_spikes(spikes) and is_binary(spikes)
    assert not _lif_spikes(membrane) and not is_binary(membrane)
    assert not _lif_spikes(spikes * 0.5) and not is_binary(spikes * 0.5 + 0.25)
    m = _module("htt", 1, "maxpool", None, dtype=torch.float32).train()
    assert "TTConvFunction" in type(m(spikes).grad_fn).__name__
