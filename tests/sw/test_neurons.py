"""Multi-step LIF: reference semantics, surrogate gradients against plain autograd, gradcheck."""

from __future__ import annotations

import pytest
import torch

from ttsnn.sw.neurons import (SURROGATES, MultiStepLIF, _LIFFunction, lif_multistep,
                        lif_multistep_naive, surrogate_grad)


def test_hand_computed_trace():
    # one neuron, tau 0.25, threshold 0.5: u = 0.4, 0.1+0.4=0.5 (not > 0.5), 0.125+0.4=0.525 -> spike,
    # reset: 0 + 0.4 = 0.4
    x = torch.tensor([0.4, 0.4, 0.4, 0.4]).view(4, 1)
    s, u = lif_multistep(x, return_membrane=True)
    assert s.view(-1).tolist() == [0.0, 0.0, 1.0, 0.0]
    torch.testing.assert_close(u.view(-1), torch.tensor([0.4, 0.5, 0.525, 0.4]))


def test_constants_are_configurable():
    x = torch.full((3, 1), 0.3)
    s = lif_multistep(x, tau=1.0, v_threshold=0.55)
    assert s.view(-1).tolist() == [0.0, 1.0, 0.0]   # 0.3, 0.6 > 0.55 fires, reset -> 0.3
    module = MultiStepLIF(tau=0.5, v_threshold=0.1, surrogate_function="atan", alpha=3.0)
    assert (module.tau, module.v_threshold, module.surrogate_function, module.alpha) == \
        (0.5, 0.1, "atan", 3.0)
    assert MultiStepLIF(surrogate="sigmoid").surrogate_function == "sigmoid"


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("return_membrane", [False, True])
def test_forward_and_gradients_match_naive_autograd(surrogate, return_membrane):
    torch.manual_seed(1)
    x = (torch.randn(6, 3, 5, 4) * 0.6 + 0.3).requires_grad_()
    fast = lif_multistep(x, 0.25, 0.5, surrogate, return_membrane=return_membrane)
    naive = lif_multistep_naive(x, 0.25, 0.5, surrogate, return_membrane=return_membrane)
    if not return_membrane:
        fast, naive = (fast,), (naive,)
    for f, n in zip(fast, naive):
        assert torch.equal(f, n)
    assert fast[0].sum() > 0 and fast[0].sum() < fast[0].numel()   # some spikes, not all
    cotangents = [torch.randn_like(f) for f in fast]
    g_fast = torch.autograd.grad(fast, x, cotangents)[0]
    g_naive = torch.autograd.grad(naive, x, cotangents)[0]
    torch.testing.assert_close(g_fast, g_naive, rtol=1e-6, atol=1e-6)
    assert g_fast.abs().sum() > 0


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_full_jacobian_float64_matches_naive(surrogate):
    torch.manual_seed(2)
    x = (torch.randn(5, 2, 3, dtype=torch.float64) * 0.5 + 0.3)

    def fast(inp):
        s, u = lif_multistep(inp, 0.3, 0.4, surrogate, alpha=1.5, return_membrane=True)
        return torch.cat([s, u])

    def naive(inp):
        s, u = lif_multistep_naive(inp, 0.3, 0.4, surrogate, alpha=1.5, return_membrane=True)
        return torch.cat([s, u])

    j_fast = torch.autograd.functional.jacobian(fast, x)
    j_naive = torch.autograd.functional.jacobian(naive, x)
    torch.testing.assert_close(j_fast, j_naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surrogate", SURROGATES)
def test_gradcheck_membrane_path(surrogate):
    # The spike output is a step function (finite differences see 0), but the membrane output
    # is differentiable away from the threshold: gradcheck the custom backward on it.
    torch.manual_seed(3)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    x = torch.where((x - 0.5).abs() < 0.05, x + 0.2, x).requires_grad_()

    def membrane(inp):
        return _LIFFunction.apply(inp, 0.25, 0.5, surrogate, 1.0, True)[1]

    assert torch.autograd.gradcheck(membrane, (x,), eps=1e-6, atol=1e-8)


def test_surrogate_shapes():
    v = torch.tensor([-0.6, -0.49, 0.0, 0.49, 0.6])
    assert surrogate_grad(v, "rectangle").tolist() == [0, 1, 1, 1, 0]
    assert surrogate_grad(v, "rectangle", alpha=2.0).tolist() == [1, 1, 1, 1, 1]
    atan = surrogate_grad(v, "atan", alpha=2.0)
    assert atan[2] == pytest.approx(1.0) and atan[0] < atan[1] < atan[2]
    sig = surrogate_grad(v, "sigmoid", alpha=4.0)
    assert sig[2] == pytest.approx(1.0) and sig[4] < sig[3]


def test_rectangle_window_is_strict():
    # u = 1.0 and u = 0.0 lie exactly on |u - 0.5| = 0.5: outside the reference's strict window
    x = torch.tensor([[1.0, 0.0, 0.99, 0.01]], requires_grad=True)
    lif_multistep(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_backward_keeps_compact_tensors():
    x = torch.randn(3, 2, 4, requires_grad=True)
    s = lif_multistep(x, surrogate="rectangle")
    saved = s.grad_fn.saved_tensors
    assert [t.dtype for t in saved] == [torch.bool, torch.bool]
    s = lif_multistep(x, surrogate="atan")
    assert [t.dtype for t in s.grad_fn.saved_tensors] == [torch.bool, torch.float32]


def test_module_records_and_no_grad_path():
    lif = MultiStepLIF(record=True)
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        s = lif(x)
    s_ref, u_ref = lif_multistep_naive(x, return_membrane=True)
    assert torch.equal(s, s_ref) and torch.equal(lif.last_membrane, u_ref)


@pytest.mark.parametrize("call,match", [
    (lambda: lif_multistep(torch.randn(5)), r"\[T, B, \.\.\.\]"),
    (lambda: lif_multistep(torch.ones(2, 3, dtype=torch.long)), "floating-point"),
    (lambda: lif_multistep(torch.randn(2, 3), surrogate="triangle"), "unknown surrogate"),
    (lambda: lif_multistep(torch.randn(2, 3), surrogate="atan", alpha=0), "alpha"),
    (lambda: MultiStepLIF(tau=1.5), "tau"),
    (lambda: MultiStepLIF(surrogate_function="relu"), "unknown surrogate"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_lif_agrees_with_naive_on_many_neurons():
    torch.manual_seed(5)
    x = (torch.randn(6, 3, 4000) * 0.6 + 0.3).requires_grad_()
    s = lif_multistep(x)
    assert torch.equal(s, lif_multistep_naive(x))
    g = torch.autograd.grad(s, x, torch.ones_like(s))[0]
    g_ref = torch.autograd.grad(lif_multistep_naive(x), x, torch.ones_like(s))[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-6)


def test_channels_last_input_needs_no_copy():
    # [T, B, C, H, W] whose images are channels-last (as TT convs produce): the LIF runs on the
    # memory as it is, returns the same layout and the same values/gradients as contiguous input
    torch.manual_seed(6)
    dense = torch.randn(4, 2, 5, 6, 7) * 0.6 + 0.3
    cl = dense.reshape(8, 5, 6, 7).contiguous(memory_format=torch.channels_last)
    cl = cl.reshape(4, 2, 5, 6, 7)
    assert not cl.is_contiguous()
    results = []
    for inp in (dense, cl):
        inp = inp.clone(memory_format=torch.preserve_format).requires_grad_()
        s, u = lif_multistep(inp, surrogate="atan", return_membrane=True)
        assert s.stride() == inp.stride() and u.stride() == inp.stride()
        cot = torch.linspace(-1, 1, s.numel()).view(s.shape)
        (s * cot).sum().backward()
        results.append((s.detach(), u.detach(), inp.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    # a non-dense input (a strided view) is also handled
    view = dense[:, :, :, ::2]
    assert torch.equal(lif_multistep(view), lif_multistep(view.contiguous()))
