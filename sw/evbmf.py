"""Empirical variational Bayesian matrix factorisation (EVBMF) for rank selection.

Implements the global analytic solution of fully-observed VBMF with the prior variances
*and* the noise variance estimated from the data (Nakajima, Sugiyama, Babacan, Tomioka,
"Global analytic solution of fully-observed variational Bayesian matrix factorization",
JMLR 14, 2013): the EVB shrinkage estimator with its threshold, and the noise variance
estimated by minimising the free energy over the paper's admissible interval.

For a matrix ``V`` of shape ``L x M`` (``L <= M``, transposed otherwise) with singular
values ``gamma_h``, ``alpha = L / M``:

* ``tau_lower`` is the zero of ``Phi(tau) + Phi(tau / alpha)``, ``Phi(x) = ln(x+1)/x - 1/2``;
* ``x_lower = (1 + tau_lower) (1 + alpha / tau_lower)``;
* a component survives iff ``gamma_h > sqrt(M sigma^2 x_lower)`` and is then shrunk to
  ``gamma_h/2 (1 - (L+M) sigma^2/gamma_h^2 + sqrt((1 - (L+M) sigma^2/gamma_h^2)^2
  - 4 L M sigma^4 / gamma_h^4))``;
* ``sigma^2`` minimises ``sum_h psi(gamma_h^2 / (M sigma^2))`` with ``psi = psi0 + [x > x_lower] psi1``,
  ``psi0(x) = x - ln x`` and ``psi1(x) = ln(tau+1) + alpha ln(tau/alpha + 1) - tau``,
  ``tau = tau(x; alpha) = (x - (1+alpha) + sqrt((x - (1+alpha))^2 - 4 alpha)) / 2``.

The objective can have several local minima, so the minimisation scans a logarithmic grid
over the admissible interval (the paper's bounds) and refines the best cell with Brent's
method. The trained-weight rule of the TT-SNN reference is :func:`conv_rank`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from ttsnn.sw.cli_util import UserError

__all__ = ["EVBMFResult", "evbmf", "tau_lower", "conv_rank", "conv_unfoldings"]


@dataclass(frozen=True)
class EVBMFResult:
    """Outcome of :func:`evbmf` on one matrix.

    rank: number of retained components.
    sigma2: noise variance used (estimated unless given).
    threshold: singular values strictly above it are retained.
    singular_values: all singular values of the input, descending.
    estimates: the shrunk singular values of the retained components (length ``rank``).
    """

    rank: int
    sigma2: float
    threshold: float
    singular_values: np.ndarray
    estimates: np.ndarray


def tau_lower(alpha: float) -> float:
    """The zero of ``Phi(tau) + Phi(tau/alpha)``, ``Phi(x) = ln(1+x)/x - 1/2`` (decreasing)."""
    if not 0.0 < alpha <= 1.0:
        raise UserError(f"alpha = L/M must be in (0, 1], got {alpha}")

    def xi(t: float) -> float:
        return (math.log1p(t) / t - 0.5) + (math.log1p(t / alpha) / (t / alpha) - 0.5)

    # xi -> +1 for t -> 0 and -> -1 for t -> inf; the zero is near 2.5129 sqrt(alpha).
    lo, hi = 1e-6, 10.0
    while xi(hi) > 0:
        hi *= 2
    return float(brentq(xi, lo, hi, xtol=1e-14))


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    b = x - (1.0 + alpha)
    return 0.5 * (b + np.sqrt(np.maximum(b * b - 4.0 * alpha, 0.0)))


def _objective(sigma2: float, s2: np.ndarray, L: int, M: int, alpha: float, x_low: float) -> float:
    """Free energy (up to constants) as a function of sigma^2; s2 are all L squared singular values."""
    x = s2 / (M * sigma2)
    x = np.maximum(x, 1e-300)  # exact zeros (rank-deficient input) contribute x - ln x -> +inf otherwise
    value = np.sum(x - np.log(x))
    big = x > x_low
    if np.any(big):
        t = _tau(x[big], alpha)
        value += np.sum(np.log(t + 1.0) + alpha * np.log(t / alpha + 1.0) - t)
    return float(value)


def evbmf(matrix: np.ndarray, sigma2: float | None = None, grid: int = 200) -> EVBMFResult:
    """Run EVBMF on a real 2-D matrix; estimate the noise variance unless ``sigma2`` is given.

    Returns an :class:`EVBMFResult`; ``rank`` is the EVB estimate of the number of components.
    """
    V = np.asarray(matrix, dtype=np.float64)
    if V.ndim != 2 or V.size == 0:
        raise UserError(f"evbmf needs a non-empty 2-D matrix, got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        raise UserError("evbmf: the matrix contains NaN or infinite values")
    if V.shape[0] > V.shape[1]:
        V = V.T
    L, M = V.shape
    alpha = L / M
    s = np.linalg.svd(V, compute_uv=False)
    s2 = s * s
    t_low = tau_lower(alpha)
    x_low = (1.0 + t_low) * (1.0 + alpha / t_low)

    if sigma2 is None:
        total = float(np.sum(s2))
        if total == 0.0:
            return EVBMFResult(0, 0.0, 0.0, s, np.zeros(0))
        # Bounds of the paper (Section 4): at most H_bar = ceil(L/(1+alpha)) - 1 components
        # can be retained, so the noise variance is at least what the others carry.
        h_bar = max(min(math.ceil(L / (1.0 + alpha)) - 1, L - 1), 0)
        upper = total / (L * M)
        tail = s2[h_bar:]
        lower = max(float(s2[h_bar]) / (M * x_low), float(np.mean(tail)) / M)
        lower = min(max(lower, upper * 1e-12), upper)
        if lower >= upper:
            sigma2 = upper
        else:
            grid_pts = np.geomspace(lower, upper, grid)
            values = np.array([_objective(g, s2, L, M, alpha, x_low) for g in grid_pts])
            i = int(np.argmin(values))
            a = grid_pts[max(i - 1, 0)]
            b = grid_pts[min(i + 1, grid - 1)]
            res = minimize_scalar(_objective, bounds=(a, b), args=(s2, L, M, alpha, x_low),
                                  method="bounded", options={"xatol": a * 1e-10})
            sigma2 = float(res.x) if res.fun <= values[i] else float(grid_pts[i])
    elif sigma2 <= 0:
        raise UserError(f"sigma2 must be positive, got {sigma2}")

    threshold = math.sqrt(M * sigma2 * x_low)
    keep = s > threshold
    g = s[keep]
    r = (L + M) * sigma2 / g**2
    estimates = 0.5 * g * (1.0 - r + np.sqrt(np.maximum((1.0 - r) ** 2 - 4.0 * L * M * sigma2**2 / g**4, 0.0)))
    return EVBMFResult(int(keep.sum()), float(sigma2), threshold, s, estimates)


def conv_unfoldings(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mode-0 (Cout x 9Cin) and mode-1 (Cin x 9Cout) unfoldings of a [Cout, Cin, kh, kw] kernel."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 4:
        raise UserError(f"conv weight must be [Cout, Cin, kh, kw], got shape {w.shape}")
    cout, cin = w.shape[:2]
    return w.reshape(cout, -1), np.transpose(w, (1, 0, 2, 3)).reshape(cin, -1)


def conv_rank(weight: np.ndarray) -> tuple[int, int, int]:
    """Rank rule of the TT-SNN reference: EVBMF rank of the mode-0 unfolding, mode-1 if that is 0.

    Returns ``(rank, mode0_rank, mode1_rank)``; ``rank`` is 0 only if both are 0 (which is
    what an untrained, randomly initialised weight gives: rank selection needs a trained model).
    """
    m0, m1 = conv_unfoldings(weight)
    r0 = evbmf(m0).rank
    r1 = evbmf(m1).rank
    return (r0 if r0 > 0 else r1), r0, r1
