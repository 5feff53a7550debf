"""Multi-step leaky integrate-and-fire neurons (the reference TT-SNN / MS-ResNet LIF).

Semantics, for inputs ``x[t]`` shaped ``[T, B, ...]``::

    u[t] = tau * u[t-1] * (1 - s[t-1]) + x[t]        u[-1] = 0, s[-1] = 0
    s[t] = 1 if u[t] > v_threshold else 0            (strict '>')

The reset mask ``(1 - s)`` is detached from the graph (hard reset to 0). The Heaviside step
gets a surrogate derivative ``ds/du = h(u - v_threshold)``:

- ``'rectangle'`` (reference): ``h(x) = 1`` where ``|x| < alpha / 2`` else 0; ``alpha`` is the
  window width (default 1.0, the reference's ``|u - V_th| < 0.5``).
- ``'atan'`` (spikingjelly's ATan): ``h(x) = (alpha / 2) / (1 + (pi/2 * alpha * x)^2)``,
  default ``alpha = 2``.
- ``'sigmoid'`` (spikingjelly's Sigmoid): ``h(x) = alpha * sig(alpha x) * (1 - sig(alpha x))``,
  default ``alpha = 4``.

:func:`lif_multistep` is the pure function; :class:`MultiStepLIF` a thin module around it. The
custom autograd function loops over T only (forward and backward). Saved for backward: the
no-spike mask as ``bool`` and, for the rectangle, only the surrogate window as ``bool`` (2 bytes
per neuron and timestep, no float membrane at all); smooth surrogates keep the membrane in the
input dtype instead of the window. The forward pass reproduces the plain equations bit for bit
on CPU; gradients equal plain autograd of the same equations up to summation order
(``tests/sw/test_neurons.py``). Benchmark against spikingjelly: ``python -m sw bench --lif``.

With the rectangle surrogate (the reference's), float32/float64 CPU input and no membrane
output, both loops run compiled instead (:mod:`sw.lif_native`, one C pass over memory instead
of 8 kernels per timestep forward and 4 backward; bit-identical results, tested in
``tests/sw/test_lif_native.py``); ``SW_NATIVE_LIF=0`` in the environment keeps the eager loops.

The layer works on the input's memory as a flat ``[T, N]`` array whatever its layout (e.g.
channels-last images from the TT convs) and returns outputs in the same layout, so no copies
are made.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ttsnn.sw import lif_native
from ttsnn.sw.cli_util import UserError

__all__ = ["SURROGATES", "DEFAULT_ALPHA", "lif_multistep", "lif_multistep_naive",
           "surrogate_grad", "MultiStepLIF"]

SURROGATES = ("rectangle", "atan", "sigmoid")
DEFAULT_ALPHA = {"rectangle": 1.0, "atan": 2.0, "sigmoid": 4.0}


def _check_options(surrogate: str, alpha: float | None, tau: float, v_threshold: float) -> float:
    if surrogate not in SURROGATES:
        raise UserError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
    alpha = DEFAULT_ALPHA[surrogate] if alpha is None else float(alpha)
    if not (alpha > 0 and math.isfinite(alpha)):
        raise UserError(f"surrogate alpha (width/slope) must be a positive number, got {alpha!r}")
    if not (0.0 <= float(tau) <= 1.0):
        raise UserError(f"tau (leak factor) must lie in [0, 1], got {tau!r}")
    if not math.isfinite(float(v_threshold)):
        raise UserError(f"v_threshold must be finite, got {v_threshold!r}")
    return alpha


def surrogate_grad(x: Tensor, surrogate: str = "rectangle", alpha: float | None = None,
                   inplace: bool = False) -> Tensor:
    """``h(x)``: the surrogate derivative at ``x = u - v_threshold``.

    ``inplace=True`` overwrites ``x`` with the result (the backward pass uses it on a scratch
    buffer); both forms evaluate the same operations in the same order.
    """
    alpha = _check_options(surrogate, alpha, 0.0, 0.0)
    if surrogate == "rectangle":
        inside = x.abs() < alpha / 2
        return x.copy_(inside) if inplace else inside.to(x.dtype)
    y = x if inplace else x.clone()
    if surrogate == "atan":
        return y.mul_(math.pi / 2 * alpha).square_().add_(1.0).reciprocal_().mul_(alpha / 2)
    y.mul_(alpha).sigmoid_()
    return y.mul_(1.0 - y).mul_(alpha)   # alpha * sig * (1 - sig)


def _surrogate_primitive(x: Tensor, surrogate: str, alpha: float) -> Tensor:
    """A function whose derivative is ``h`` (used by the naive reference implementation)."""
    if surrogate == "rectangle":
        return torch.nn.functional.hardtanh(x, -alpha / 2, alpha / 2)  # slope 1 strictly inside
    if surrogate == "atan":
        return torch.atan(math.pi / 2 * alpha * x) / math.pi
    return torch.sigmoid(alpha * x)


def lif_multistep_naive(x: Tensor, tau: float = 0.25, v_threshold: float = 0.5,
                        surrogate: str = "rectangle", alpha: float | None = None,
                        return_membrane: bool = False):
    """The equations written out with plain autograd: the reference the fast path is tested
    against (slow, memory-hungry; do not use for training)."""
    alpha = _check_options(surrogate, alpha, tau, v_threshold)
    u = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        u = tau * u * (1 - s.detach()) + x[t]
        v = u - v_threshold
        prim = _surrogate_primitive(v, surrogate, alpha)
        s = (v > 0).to(x.dtype) + (prim - prim.detach())
        spikes.append(s)
        membranes.append(u)
    out = torch.stack(spikes)
    return (out, torch.stack(membranes)) if return_membrane else out


def _forward_loop(x: Tensor, tau: float, v_threshold: float, keep_membrane: bool = True,
                  for_backward: bool = False, window_width: float | None = None):
    """Run the LIF over T; returns ``(spikes, membrane, no_spike, window)``.

    ``spikes`` in x's dtype; ``membrane`` ``[T, ...]`` (None unless ``keep_membrane``);
    with ``for_backward`` the bool masks ``no_spike = (u <= V_th)`` and, when ``window_width``
    is given, ``window = |u - V_th| < width/2`` (else None).

    ``addcmul(x, u, keep, value=tau)`` is ``x + tau * u * keep``: the plain equation with the
    same rounding (a 0/1 factor is exact), in one pass. Masks are computed as float and stored
    as bool one timestep at a time: torch's CPU kernels are several times slower on bool
    operands, and per-timestep slices stay in cache.
    """
    steps = x.shape[0]
    spikes = torch.empty_like(x)
    membrane = torch.empty_like(x) if keep_membrane else None
    rolling = [torch.empty_like(x[0]), torch.empty_like(x[0])] if not keep_membrane else None
    keep = [torch.empty_like(x[0]), torch.empty_like(x[0])]   # 1 - s[t], alternating
    no_spike = window = None
    if for_backward:
        no_spike = torch.empty(x.shape, dtype=torch.bool, device=x.device)
        if window_width is not None:
            window = torch.empty(x.shape, dtype=torch.bool, device=x.device)
            scratch = torch.empty_like(x[0])
    for t in range(steps):
        u = membrane[t] if membrane is not None else rolling[t % 2]
        if t == 0:
            u.copy_(x[0])
        else:
            u_prev = membrane[t - 1] if membrane is not None else rolling[(t - 1) % 2]
            torch.addcmul(x[t], u_prev, keep[(t - 1) % 2], value=tau, out=u)
        k = keep[t % 2]
        torch.le(u, v_threshold, out=k)
        torch.gt(u, v_threshold, out=spikes[t])
        if no_spike is not None:
            no_spike[t].copy_(k)
        if window is not None:
            torch.sub(u, v_threshold, out=scratch)
            scratch.abs_()
            torch.lt(scratch, window_width / 2, out=scratch)
            window[t].copy_(scratch)
    return spikes, membrane, no_spike, window


def _storage_perm(x: Tensor) -> list[int] | None:
    """A permutation (time first) under which ``x`` is contiguous, so that the element-wise LIF
    can run on its memory as a flat ``[T, N]`` view (channels-last activations need no copy);
    None when there is none."""
    if x.is_contiguous():
        return list(range(x.dim()))
    perm = [0] + sorted(range(1, x.dim()), key=lambda d: -x.stride(d))
    return perm if x.permute(perm).is_contiguous() else None


def _flatten(x: Tensor, perm: list[int]) -> Tensor:
    return x.permute(perm).reshape(x.shape[0], -1)


def _unflatten(flat: Tensor, shape: torch.Size, perm: list[int]) -> Tensor:
    """Inverse of :func:`_flatten`: a view with ``shape`` in the original memory layout."""
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return flat.view([shape[p] for p in perm]).permute(inverse)


class _LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, tau: float, v_threshold: float, surrogate: str, alpha: float,
                return_membrane: bool):
        rectangle = surrogate == "rectangle"
        perm = _storage_perm(x)
        if perm is None:
            x = x.contiguous()
            perm = list(range(x.dim()))
        x2d = _flatten(x, perm)
        ctx.tau, ctx.surrogate, ctx.alpha, ctx.v_threshold = tau, surrogate, alpha, v_threshold
        ctx.perm, ctx.shape = perm, x.shape
        if rectangle and not return_membrane and lif_native.available(x2d):
            spikes, no_spike, window = lif_native.lif_forward(x2d, tau, v_threshold, alpha / 2)
            membrane = None
        else:
            spikes, membrane, no_spike, window = _forward_loop(
                x2d, tau, v_threshold, keep_membrane=return_membrane or not rectangle,
                for_backward=True, window_width=alpha if rectangle else None)
        # rectangle: only the window |u - V_th| < alpha/2 matters, kept as bool (no floats)
        ctx.save_for_backward(no_spike, window if rectangle else membrane)
        spikes = _unflatten(spikes, x.shape, perm)
        if return_membrane:
            return spikes, _unflatten(membrane, x.shape, perm)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: Tensor, grad_membrane: Tensor | None = None):
        grad_s = _flatten(grad_spikes, ctx.perm).contiguous()
        grad_m = None if grad_membrane is None else _flatten(grad_membrane, ctx.perm).contiguous()
        rectangle = ctx.surrogate == "rectangle"
        no_spike, aux = ctx.saved_tensors
        if rectangle and grad_m is None and lif_native.available(grad_s):
            grad_u = lif_native.lif_backward(grad_s, no_spike, aux, ctx.tau)
            return _unflatten(grad_u, ctx.shape, ctx.perm), None, None, None, None, None
        grad_u = _backward_loop(grad_s, grad_m, no_spike, aux, ctx.tau, ctx.surrogate,
                                ctx.v_threshold, ctx.alpha)
        return _unflatten(grad_u, ctx.shape, ctx.perm), None, None, None, None, None


def _backward_loop(grad_spikes: Tensor, grad_membrane: Tensor | None, no_spike: Tensor,
                   aux: Tensor, tau: float, surrogate: str, v_threshold: float,
                   alpha: float) -> Tensor:
    """Eager backward over ``[T, N]``: ``aux`` is the bool window (rectangle) or the membrane."""
    steps = grad_spikes.shape[0]
    rectangle = surrogate == "rectangle"
    grad_u = torch.empty_like(grad_spikes)
    mask = torch.empty_like(grad_spikes[0])   # one timestep of a mask / h(u), as float
    no_spike_u8 = no_spike.view(torch.uint8)
    window = aux.view(torch.uint8) if rectangle else None
    for t in range(steps - 1, -1, -1):
        # one timestep at a time: the slices stay in cache and temporaries stay small
        if rectangle:
            mask.copy_(window[t])
            torch.mul(grad_spikes[t], mask, out=grad_u[t])
        else:
            torch.sub(aux[t], v_threshold, out=mask)
            surrogate_grad(mask, surrogate, alpha, inplace=True)
            torch.mul(grad_spikes[t], mask, out=grad_u[t])
        if grad_membrane is not None:
            grad_u[t].add_(grad_membrane[t])
        if t < steps - 1:
            # dL/du[t] += tau * dL/du[t+1] * (1 - s[t])   (the reset mask is detached)
            mask.copy_(no_spike_u8[t])
            grad_u[t].addcmul_(grad_u[t + 1], mask, value=tau)
    return grad_u


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise UserError(f"LIF input must be a torch.Tensor shaped [T, B, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise UserError(f"LIF input must be shaped [T, B, ...] (at least 2 dims), got shape "
                        f"{tuple(x.shape)}")
    if x.shape[0] < 1:
        raise UserError("LIF input has T = 0 timesteps")
    if not x.is_floating_point():
        raise UserError(f"LIF input must be a floating-point tensor, got {x.dtype}")


def lif_multistep(x: Tensor, tau: float = 0.25, v_threshold: float = 0.5,
                  surrogate: str = "rectangle", alpha: float | None = None,
                  return_membrane: bool = False):
    """Run LIF neurons over all timesteps of ``x`` ``[T, B, ...]``.

    Returns the spikes (0./1. in ``x``'s dtype, same shape), and with ``return_membrane`` also
    the membrane potentials ``u[t]`` after integration and before reset. Differentiable with
    the chosen surrogate gradient.
    """
    _check_input(x)
    alpha = _check_options(surrogate, alpha, tau, v_threshold)
    tau, v_threshold = float(tau), float(v_threshold)
    if torch.is_grad_enabled() and x.requires_grad:
        return _LIFFunction.apply(x, tau, v_threshold, surrogate, alpha, return_membrane)
    perm = _storage_perm(x)
    if perm is None:
        x = x.contiguous()
        perm = list(range(x.dim()))
    x2d = _flatten(x, perm)
    if not return_membrane and lif_native.available(x2d):
        # the spikes do not depend on the surrogate; the compiled pass also writes the masks
        # (dropped here), still far fewer passes over memory than the eager loop
        spikes = lif_native.lif_forward(x2d, tau, v_threshold, 0.5)[0]
        return _unflatten(spikes, x.shape, perm)
    spikes, membrane, _, _ = _forward_loop(x2d, tau, v_threshold,
                                          keep_membrane=return_membrane, for_backward=False,
                                          window_width=None)
    spikes = _unflatten(spikes, x.shape, perm)
    return (spikes, _unflatten(membrane, x.shape, perm)) if return_membrane else spikes


class MultiStepLIF(nn.Module):
    """LIF layer over ``[T, B, ...]`` inputs; see :func:`lif_multistep`.

    ``surrogate_function`` (spikingjelly's spelling; ``surrogate`` is accepted too) picks the
    surrogate, ``alpha`` its width/slope. With ``record=True`` the last forward's spikes and
    membrane potentials are kept (detached) in ``.last_spikes`` / ``.last_membrane`` for
    inspection (e.g. the hardware replay).
    """

    def __init__(self, tau: float = 0.25, v_threshold: float = 0.5,
                 surrogate_function: str = "rectangle", alpha: float | None = None,
                 surrogate: str | None = None, record: bool = False):
        super().__init__()
        if surrogate is not None:
            surrogate_function = surrogate
        self.alpha = _check_options(surrogate_function, alpha, tau, v_threshold)
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.surrogate_function = surrogate_function
        self.record = record
        self.last_spikes: Tensor | None = None
        self.last_membrane: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.record:
            spikes, membrane = lif_multistep(x, self.tau, self.v_threshold,
                                             self.surrogate_function, self.alpha,
                                             return_membrane=True)
            self.last_spikes, self.last_membrane = spikes.detach(), membrane.detach()
            return spikes
        return lif_multistep(x, self.tau, self.v_threshold, self.surrogate_function, self.alpha)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, "
                f"surrogate_function={self.surrogate_function!r}, alpha={self.alpha}")
