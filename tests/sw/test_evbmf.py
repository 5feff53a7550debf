"""EVBMF on synthetic low-rank-plus-noise matrices with a known rank."""

import numpy as np
import pytest
import torch

from ttsnn.sw.evbmf import conv_rank, conv_unfoldings, evbmf, tau_lower


def _low_rank_plus_noise(rng, L, M, rank, sigma, scale=1.0):
    signal = rng.standard_normal((L, rank)) @ rng.standard_normal((rank, M)) * scale
    return signal + sigma * rng.standard_normal((L, M))


def test_tau_lower_solves_its_equation_and_matches_the_papers_constant():
    # Phi(t) + Phi(t/alpha) = 0 with Phi(x) = ln(1+x)/x - 1/2; the paper quotes 2.5129 at alpha = 1.
    assert tau_lower(1.0) == pytest.approx(2.5129, abs=1e-4)
    for alpha in (0.05, 0.3, 0.7):
        t = tau_lower(alpha)
        phi = lambda x: np.log1p(x) / x - 0.5
        assert abs(phi(t) + phi(t / alpha)) < 1e-10
        assert t == pytest.approx(2.5129 * np.sqrt(alpha), rel=0.1)  # the paper's approximation


@pytest.mark.parametrize("L,M,rank,sigma", [(60, 200, 5, 0.1), (64, 576, 12, 0.05), (100, 100, 20, 1.0),
                                            (300, 40, 7, 0.5)])
def test_recovers_the_true_rank_and_noise_variance(L, M, rank, sigma):
    rng = np.random.default_rng(L + M + rank)
    result = evbmf(_low_rank_plus_noise(rng, L, M, rank, sigma))
    assert result.rank == rank
    assert result.sigma2 == pytest.approx(sigma**2, rel=0.15)
    assert result.estimates.shape == (rank,)
    # the EVB estimator shrinks: estimates lie strictly below the observed singular values
    assert np.all(result.estimates < result.singular_values[:rank])


def test_pure_noise_has_rank_zero():
    rng = np.random.default_rng(1)
    assert evbmf(rng.standard_normal((50, 400))).rank == 0


def test_weak_components_below_the_threshold_are_dropped():
    rng = np.random.default_rng(2)
    L, M, sigma = 80, 320, 1.0
    u, _ = np.linalg.qr(rng.standard_normal((L, 4)))
    v, _ = np.linalg.qr(rng.standard_normal((M, 4)))
    # detection limit is about sigma * sqrt(M) * (1 + sqrt(L/M)) ~ 27; two strong, two far below
    strengths = np.array([200.0, 120.0, 3.0, 2.0])
    x = (u * strengths) @ v.T + sigma * rng.standard_normal((L, M))
    assert evbmf(x).rank == 2


def test_known_noise_variance_threshold():
    rng = np.random.default_rng(3)
    x = _low_rank_plus_noise(rng, 40, 120, 3, 0.2)
    res = evbmf(x, sigma2=0.04)
    assert res.sigma2 == 0.04 and res.rank == 3
    assert np.sum(res.singular_values > res.threshold) == 3


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        evbmf(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        evbmf(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="sigma2"):
        evbmf(np.ones((3, 4)), sigma2=-1.0)
    with pytest.raises(ValueError, match="Cout, Cin"):
        conv_rank(np.zeros((3, 3)))


def test_conv_rule_uses_mode0_then_mode1():
    rng = np.random.default_rng(4)
    cout, cin = 32, 48
    # low-rank mode-0 unfolding (Cout x 9Cin of rank 4) plus noise
    w0 = (rng.standard_normal((cout, 4)) @ rng.standard_normal((4, cin * 9))).reshape(cout, cin, 3, 3)
    w0 += 0.01 * rng.standard_normal(w0.shape)
    r, r0, r1 = conv_rank(w0)
    assert (r, r0) == (4, 4)
    m0, m1 = conv_unfoldings(w0)
    assert m0.shape == (cout, 9 * cin) and m1.shape == (cin, 9 * cout)
    # an untrained (Kaiming-initialised) weight: EVBMF finds nothing in either unfolding
    w = torch.nn.Conv2d(64, 64, 3).weight.detach().numpy()
    assert conv_rank(w) == (0, 0, 0)


def test_conv_rule_falls_back_to_mode1_when_mode0_finds_nothing():
    # W[o, i, k] = a[i] * B[o, k]: a rank-1 mode-1 unfolding (Cin x 9Cout) of singular value
    # |a||B| = 25 sigma, above its detection limit (~ sigma (sqrt(72) + sqrt(64)) = 16.5 sigma);
    # in the mode-0 unfolding (Cout x 9Cin) the same energy is spread over 8 equal singular values
    # of 25/sqrt(8) = 8.8 sigma, below that unfolding's limit (~ 26.8 sigma).
    rng = np.random.default_rng(5)
    cout, cin, sigma = 8, 64, 0.01
    a = rng.standard_normal(cin)
    a /= np.linalg.norm(a)
    q, _ = np.linalg.qr(rng.standard_normal((9, 8)))
    b = q.T / np.sqrt(8)  # 8 x 9, orthogonal rows, Frobenius norm 1
    w = 25 * sigma * np.einsum("i,ok->oik", a, b).reshape(cout, cin, 3, 3)
    w += sigma * rng.standard_normal(w.shape)
    r, r0, r1 = conv_rank(w)
    assert (r0, r1) == (0, 1) and r == 1
