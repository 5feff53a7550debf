"""Table III training methods (sw.plugin.methods) against their defining equations, written out
here element by element: tdBN (Zheng et al. 2021), TEBN (Duan et al. 2022), the TET loss (Deng
et al. 2022) and NDA's geometric transforms (Li et al. 2022)."""

from __future__ import annotations

import math

import pytest
import torch

from ttsnn.sw.plugin.methods import (TemporalEffectiveBN, ThresholdDependentBN, affine_frames, cutout_frames,
                               nda_augment, roll_frames, tet_loss)

T, B, C, H, W = 3, 4, 5, 6, 7


def _x(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, C, H, W, generator=g, dtype=torch.float64) * 2 + 0.5


def _stats(x):
    """Per-channel mean and biased variance over (T, B, H, W), by explicit sums."""
    n = x.shape[0] * x.shape[1] * x.shape[3] * x.shape[4]
    mean = x.sum(dim=(0, 1, 3, 4)) / n
    var = ((x - mean.view(1, 1, -1, 1, 1)) ** 2).sum(dim=(0, 1, 3, 4)) / n
    return mean, var, n


def test_tdbn_is_alpha_vth_scaled_normalisation():
    x = _x()
    bn = ThresholdDependentBN(C, v_threshold=0.4, alpha=1.5, momentum=0.1).double()
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2, C))
        bn.bias.copy_(torch.linspace(-1, 1, C))
    y = bn(x)
    mean, var, n = _stats(x)
    v = lambda t: t.view(1, 1, -1, 1, 1)  # noqa: E731
    want = v(bn.weight) * (1.5 * 0.4 * (x - v(mean)) / torch.sqrt(v(var) + bn.eps)) + v(bn.bias)
    assert torch.allclose(y, want, atol=1e-10)
    # running statistics as BatchNorm's: unbiased variance, momentum 0.1
    assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-12)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), atol=1e-12)
    bn.eval()
    want_eval = v(bn.weight) * (0.6 * (x - v(bn.running_mean)) / torch.sqrt(v(bn.running_var) + bn.eps)) + v(bn.bias)
    assert torch.allclose(bn(x), want_eval, atol=1e-10)


def test_tebn_scales_each_timestep_after_shared_statistics():
    x = _x(1)
    bn = TemporalEffectiveBN(C, T).double()
    with torch.no_grad():
        bn.p.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.weight.copy_(torch.linspace(0.5, 2, C))
        bn.bias.copy_(torch.linspace(-1, 1, C))
    y = bn(x)
    mean, var, _ = _stats(x)  # one mean/variance over all timesteps, not per timestep
    for t, p in enumerate((0.5, 1.0, 2.0)):
        xhat = (x[t] - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps)
        want = p * (bn.weight.view(1, -1, 1, 1) * xhat + bn.bias.view(1, -1, 1, 1))
        assert torch.allclose(y[t], want, atol=1e-10)
    with pytest.raises(ValueError, match="built for T=3 timesteps, got 2"):
        bn(x[:2])


def test_tet_loss_is_the_per_timestep_cross_entropy_plus_mse():
    g = torch.Generator().manual_seed(2)
    out = torch.randn(T, B, 10, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 7, 3, 0])
    lam, phi = 0.05, 1.0
    ce = 0.0
    for t in range(T):
        for b in range(B):
            logits = out[t, b]
            ce += -(logits[y[b]].item() - math.log(sum(math.exp(v) for v in logits.tolist())))
    ce /= T * B  # mean over t of each timestep's batch mean
    mse = ((out - phi) ** 2).sum().item() / out.numel()
    want = (1 - lam) * ce + lam * mse
    assert tet_loss(out, y, lam=lam, phi=phi).item() == pytest.approx(want, rel=1e-12)
    assert tet_loss(out, y, lam=0).item() == pytest.approx(ce, rel=1e-12)
    with pytest.raises(ValueError, match="per-timestep logits"):
        tet_loss(out.mean(0), y)


def _frames(seed=3, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, 2, size, size, generator=g, dtype=torch.float64)


def test_nda_roll_and_cutout_by_index():
    x = _frames()
    n = x.shape[-1]
    y = roll_frames(x, 2, -3)
    for i in range(n):
        for j in range(n):
            assert torch.equal(y[..., i, j], x[..., (i - 2) % n, (j + 3) % n])
    z = cutout_frames(x, 5, -1, 4)  # rows 5..7, columns 0..2 (clipped at the edges)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(5, 8):
        for j in range(0, 3):
            mask[i, j] = True
    assert torch.equal(z[..., mask], torch.zeros_like(z[..., mask]))
    assert torch.equal(z[..., ~mask], x[..., ~mask])


def test_nda_rotation_and_shear_by_index():
    x = _frames()
    n = x.shape[-1]
    y = affine_frames(x, angle_deg=90)  # counter-clockwise: out[i, j] = in[j, n-1-i]
    for i in range(n):
        for j in range(n):
            assert torch.equal(y[..., i, j], x[..., j, n - 1 - i])
    assert torch.equal(affine_frames(x, 0.0, 0.0), x)
    s, c = 0.3, (n - 1) / 2  # x' = x + s y about the centre: out[i, j] = in[i, round(j - s (i - c))]
    y = affine_frames(x, shear=s)
    for i in range(n):
        for j in range(n):
            src = round(j - s * (i - c))
            want = x[..., i, src] if 0 <= src < n else torch.zeros_like(x[..., 0, 0])
            assert torch.equal(y[..., i, j], want), (i, j)


def test_nda_transforms_all_timesteps_alike_and_keeps_events_binary():
    g = torch.Generator().manual_seed(4)
    frame = (torch.rand(16, 2, 16, 16, generator=g) < 0.4).float()
    x = frame.unsqueeze(1).expand(16, T, 2, 16, 16).contiguous()  # identical timesteps per sample
    y = nda_augment(x, torch.Generator().manual_seed(5))
    assert all(torch.equal(y[:, t], y[:, 0]) for t in range(T))
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(y, x)
    assert torch.equal(y, nda_augment(x, torch.Generator().manual_seed(5)))  # seeded
    with pytest.raises(ValueError, match="event frames"):
        nda_augment(x[0], g)
