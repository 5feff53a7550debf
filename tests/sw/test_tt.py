"""TT conv modules: reference semantics, HTT schedules, downsampling, merge-back, TT-SVD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ttsnn.sw.arch import max_tt_rank
from ttsnn.sw.tt import DenseConv3x3, ScheduledConv3x3, TTConv2d, merge_cores, tt_svd_cores

torch.manual_seed(0)


def _reference_chain(m: TTConv2d, xt: torch.Tensor, full: bool) -> torch.Tensor:
    """The reference formulas written with F.conv2d, one timestep (no stride/maxpool logic)."""
    o1 = F.conv2d(xt, m.g1.weight)
    g2 = lambda z: F.conv2d(z, m.g2.weight, padding=(1, 0))
    g3 = lambda z: F.conv2d(z, m.g3.weight, padding=(0, 1))
    if m.mode == "stt":
        inner = g3(g2(o1))
    elif full:
        inner = (g2(o1) + g3(o1)) / 2
    else:
        inner = o1
    y = F.conv2d(inner, m.g4.weight)
    return F.max_pool2d(y, 2, ceil_mode=True) if m.stride == 2 else y


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
@pytest.mark.parametrize("stride", [1, 2])
def test_forward_matches_reference_formulas(mode, stride):
    m = TTConv2d(3, 5, 4, mode, stride=stride).double()
    x = torch.randn(4, 2, 3, 6, 6, dtype=torch.float64)
    y = m(x)
    sched = m.full_timesteps(4)
    assert sched == ((True, True, False, False) if mode == "htt" else (True,) * 4)
    for t in range(4):
        torch.testing.assert_close(y[t], _reference_chain(m, x[t], sched[t]))


def test_htt_any_schedule_and_t():
    m = TTConv2d(3, 5, 4, "htt", schedule=(False, True, False, True, True)).double()
    x = torch.randn(5, 2, 3, 5, 5, dtype=torch.float64)
    y = m(x)
    for t, full in enumerate((False, True, False, True, True)):
        torch.testing.assert_close(y[t], _reference_chain(m, x[t], full))
    assert TTConv2d(3, 5, 4, "htt", schedule="0101").schedule == (False, True, False, True)
    default = TTConv2d(3, 5, 4, "htt").double()
    y6 = default(torch.randn(6, 1, 3, 4, 4, dtype=torch.float64))
    assert y6.shape == (6, 1, 5, 4, 4) and default.full_timesteps(6) == (True,) * 3 + (False,) * 3


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_strided_alternative_equals_standard_strided_conv(mode):
    m = TTConv2d(4, 6, 5, mode, stride=2, downsample="stride").double()
    x = torch.randn(4, 2, 4, 7, 8, dtype=torch.float64)
    y = m(x)
    assert y.shape == (4, 2, 6, 4, 4)
    for t, full in enumerate(m.full_timesteps(4)):
        kernel = m.merged_kernel("full" if full else "reduced")
        torch.testing.assert_close(y[t], F.conv2d(x[t], kernel, stride=2, padding=1))


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
@pytest.mark.parametrize("stride,downsample", [(1, "maxpool"), (2, "maxpool"), (2, "stride")])
def test_to_dense_equals_tt_module(mode, stride, downsample):
    m = TTConv2d(5, 7, 6, mode, stride, downsample)
    x = torch.randn(4, 3, 5, 9, 9)
    dense = m.to_dense()
    assert isinstance(dense, ScheduledConv3x3 if mode == "htt" else DenseConv3x3)
    torch.testing.assert_close(dense(x), m(x), rtol=0, atol=1e-5)


def test_merged_kernel_shapes():
    ptt = TTConv2d(4, 6, 3, "ptt")
    k = ptt.merged_kernel()
    corners = k[:, :, [0, 0, 2, 2], [0, 2, 0, 2]]
    assert torch.all(corners == 0) and k[:, :, 1, :].abs().sum() > 0 and k[:, :, :, 1].abs().sum() > 0
    htt = TTConv2d(4, 6, 3, "htt")
    red = htt.merged_kernel("reduced")
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[1, 1] = True
    assert torch.all(red[:, :, ~mask] == 0) and red[:, :, 1, 1].abs().sum() > 0
    torch.testing.assert_close(htt.merged_kernel("full"), merge_cores(
        htt.g1.weight, htt.g2.weight, htt.g3.weight, htt.g4.weight, "ptt"))
    stt = TTConv2d(4, 6, 3, "stt")
    assert torch.all(stt.merged_kernel()[:, :, [0, 2], [0, 2]] != 0)   # general 3x3
    with pytest.raises(ValueError, match="only HTT has reduced"):
        stt.merged_kernel("reduced")


@pytest.mark.parametrize("cin,cout", [(4, 6), (6, 4), (3, 16), (8, 8)])
def test_tt_svd_full_rank_is_exact(cin, cout):
    w = torch.randn(cout, cin, 3, 3, dtype=torch.float64)
    r = max_tt_rank(cin, cout)
    m = TTConv2d.from_dense(w, r, "stt")
    assert m.reconstruction_error < 1e-12
    torch.testing.assert_close(m.merged_kernel(), w, rtol=1e-10, atol=1e-10)
    # the cores really are in the conv weights: the module computes the dense conv
    x = torch.randn(2, 1, cin, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x)[:, 0], torch.stack([F.conv2d(xt, w, padding=1) for xt in x[:, 0]]))


def test_tt_svd_low_rank_error_and_float32():
    w = torch.randn(16, 16, 3, 3)
    errors = [TTConv2d(16, 16, r, "stt").load_dense_weight(w) for r in (2, 8, 24, 48)]
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[0] > 0.3
    assert errors[3] < 1e-5                       # full rank in float32
    ptt = TTConv2d.from_dense(w, 48, "ptt")        # same cores, different (cross) function
    g = tt_svd_cores(w, 48)
    assert all(torch.equal(a, b) for a, b in zip(g, (ptt.g1.weight, ptt.g2.weight, ptt.g3.weight,
                                                     ptt.g4.weight)))


def test_dense_baseline_folds_time():
    m = DenseConv3x3(3, 4, stride=2)
    x = torch.randn(3, 2, 3, 8, 8)
    y = m(x)
    assert y.shape == (3, 2, 4, 4, 4)
    torch.testing.assert_close(y[1], F.conv2d(x[1], m.weight, stride=2, padding=1))


def test_gradients_reach_all_cores():
    m = TTConv2d(3, 4, 2, "htt")
    m(torch.randn(4, 2, 3, 5, 5)).square().sum().backward()
    assert all(g.weight.grad.abs().sum() > 0 for g in (m.g1, m.g2, m.g3, m.g4))


@pytest.mark.parametrize("call,match", [
    (lambda: TTConv2d(4, 4, 0), r"rank 0 .*allowed 1..12"),
    (lambda: TTConv2d(4, 4, 13), "allowed 1..12"),
    (lambda: TTConv2d(4, 4, 2, "tt"), "unknown TT mode"),
    (lambda: TTConv2d(4, 4, 2, stride=3), "stride must be 1 or 2"),
    (lambda: TTConv2d(4, 4, 2, stride=2, downsample="avg"), "unknown downsample"),
    (lambda: TTConv2d(4, 4, 2, "ptt", schedule=[True]), "only used by mode 'htt'"),
    (lambda: TTConv2d(4, 4, 2, "htt", schedule=[True, 3]), "booleans"),
    (lambda: TTConv2d(4, 4, 2, "htt", schedule=[True] * 5)(torch.randn(4, 1, 4, 3, 3)),
     "5 entries but timesteps T=4"),
    (lambda: TTConv2d(4, 4, 2)(torch.randn(1, 4, 3, 3)), "5-d input"),
    (lambda: TTConv2d(4, 4, 2)(torch.randn(2, 1, 3, 3, 3)), "expected 4 input channels"),
    (lambda: DenseConv3x3(4, 4)(torch.randn(2, 1, 5, 3, 3)), "expected 4 input channels"),
    (lambda: TTConv2d(4, 4, 2).load_dense_weight(torch.randn(4, 5, 3, 3)),
     r"expected a weight of shape \(4, 4, 3, 3\)"),
    (lambda: tt_svd_cores(torch.randn(4, 4, 1, 1), 2), r"\[Cout, Cin, 3, 3\]"),
    (lambda: tt_svd_cores(torch.randn(4, 4, 3, 3), 20), "allowed 1..12"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("mode,schedule", [("stt", None), ("ptt", None), ("htt", None),
                                           ("htt", (False, True, False, True)),
                                           ("htt", (True,) * 4), ("htt", (False,) * 4)])
@pytest.mark.parametrize("stride,downsample", [(1, "maxpool"), (2, "maxpool"), (2, "stride")])
def test_gradients_match_reference_formulas(mode, schedule, stride, downsample):
    # the fast paths (channels-last cores, g4 weight halved for PTT, HTT's shared g1/g4 calls)
    # must give the reference's outputs AND gradients (input and every core)
    torch.manual_seed(3)
    m = TTConv2d(3, 5, 4, mode, stride, downsample, schedule).double()
    x = torch.randn(4, 2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    sched = m.full_timesteps(4)
    y = m(x)
    if downsample == "stride":
        ref = torch.stack([F.conv2d(x[t], m.merged_kernel("full" if sched[t] else "reduced"),
                                    stride=2, padding=1) for t in range(4)])
    else:
        ref = torch.stack([_reference_chain(m, x[t], sched[t]) for t in range(4)])
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    cot = torch.randn_like(y)
    params = [x] + [g.weight for g in (m.g1, m.g2, m.g3, m.g4)]
    grads = torch.autograd.grad(y, params, cot, allow_unused=True)
    grads_ref = torch.autograd.grad(ref, params, cot, allow_unused=True)
    for g, r in zip(grads, grads_ref):
        if r is None:    # e.g. g2/g3 when no timestep is full
            assert g is None or torch.all(g == 0)
        else:
            torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_channels_last_in_and_out(mode):
    m = TTConv2d(4, 6, 3, mode)
    x = torch.randn(4, 2, 4, 5, 5)
    x_cl = x.reshape(8, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    x_cl = x_cl.reshape(4, 2, 4, 5, 5)
    y = m(x)
    # outputs stay channels-last (the next BN/LIF/TT conv take them as they are)
    assert y.reshape(8, 6, 5, 5).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(m(x_cl), y, rtol=0, atol=0)
