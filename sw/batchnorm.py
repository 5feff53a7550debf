"""BatchNorm over ``[T, B, C, H, W]`` (statistics over time, batch and pixels) as compiled passes
over memory (``sw/lif_kernel.c``): what :class:`sw.layers.BatchNormTB` runs on float32/float64
CPU tensors when the kernels can be built.

Why: torch 2.13's CPU BatchNorm took 9-10x the LIF's time on the same activations here
(``[48, 64, 48, 48]`` channels-last, 2 threads: 92 ms forward against the LIF's 9.7 ms; its
statistics alone, ``torch.var_mean``, as long), and BatchNorm was the largest element-wise cost
of a TT training step (docs/training.md, "Where a TT step's time goes"). Here the forward is
two passes (per-channel sums, then ``y = x * scale + bias``) and the backward two (per-channel
sums of ``g`` and ``g * (x - mean)``, then the input gradient), each vectorised over the
channels (channels-last) or the pixels (NCHW), split over torch's thread count.

The equations are ``nn.BatchNorm2d``'s: in training ``y = (x - mean) / sqrt(var + eps) * w + b``
with the batch mean and biased variance, running statistics
``r <- (1 - m) r + m * stat`` with the unbiased variance (``m = 1 / num_batches_tracked`` when
momentum is None); in eval the running statistics. Backward (training)::

    dx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)),   xhat = (x - mean) * invstd
    dw = sum(g * xhat),   db = sum(g)

(eval: ``dx = w * invstd * g``). Sums are accumulated in double of values shifted by one
element of their channel, so that the one-pass variance does not cancel. Results equal
torch's BatchNorm up to float rounding (not bit for bit: other summation order), tested with
gradcheck in float64 and against ``nn.BatchNorm2d`` in float32 (``tests/sw/test_batchnorm.py``).
Saved for backward: the input (as torch's BatchNorm saves it) and two per-channel vectors.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ttsnn.sw import lif_native

__all__ = ["batchnorm_tb", "supported", "ENABLED"]

#: whether :class:`sw.layers.BatchNormTB` may use the compiled passes (``SW_NATIVE_BN=0`` in the
#: environment turns them off, e.g. to measure torch's BatchNorm)
ENABLED = os.environ.get("SW_NATIVE_BN", "1") != "0"

#: rows of at least this many elements each per thread (below it one thread does all)
_MIN_ELEMENTS_PER_THREAD = 65536


def _layout(frames: Tensor) -> tuple[Tensor, int, int, int, torch.memory_format]:
    """``(frames, R, C, I, format)``: ``frames`` ``[N, C, H, W]`` dense in ``format`` (copied to
    NCHW if in neither), seen as ``[R, C, I]`` memory (module docstring of lif_kernel.c's BN)."""
    n, c, h, w = frames.shape
    if not frames.is_contiguous():
        if frames.is_contiguous(memory_format=torch.channels_last):
            return frames, n * h * w, c, 1, torch.channels_last
        frames = frames.contiguous()
    return frames, n, c, h * w, torch.contiguous_format


def supported(x: Tensor) -> bool:
    """Whether :func:`batchnorm_tb` runs on ``x`` (5-d, float32/float64, CPU, kernels built)."""
    return (ENABLED and x.dim() == 5 and x.dtype in (torch.float32, torch.float64) and x.device.type == "cpu"
            and lif_native.built())


def _threaded_sums(name: str, tensors: tuple[Tensor, ...], rows: int, channels: int, inner: int,
                   centre: Tensor) -> tuple[Tensor, Tensor]:
    """Two per-channel double sums of kernel ``name`` over all rows, one accumulator pair per
    thread, summed here."""
    fn = lif_native.kernel(name, tensors[0].dtype)
    threads = lif_native.split_threads(rows * channels * inner,
                                       _MIN_ELEMENTS_PER_THREAD) if rows > 1 else 1
    threads = min(threads, rows)
    acc = torch.zeros(threads, 2, channels, dtype=torch.float64)
    ptrs = [t.data_ptr() for t in tensors]
    centre = centre.contiguous()

    def call(k, r0, r1):
        fn(*ptrs, channels, inner, r0, r1, centre.data_ptr(), acc[k, 0].data_ptr(),
           acc[k, 1].data_ptr())

    lif_native.run_split(rows, threads, call)
    total = acc.sum(0)
    return total[0], total[1]


def _per_channel_map(name: str, inputs: tuple[Tensor, ...], out: Tensor, rows: int, channels: int,
                     inner: int, coefficients: tuple[Tensor, ...]) -> None:
    fn = lif_native.kernel(name, out.dtype)
    coefficients = tuple(c.to(out.dtype).contiguous() for c in coefficients)
    threads = min(rows, lif_native.split_threads(rows * channels * inner, _MIN_ELEMENTS_PER_THREAD))
    ptrs = [t.data_ptr() for t in inputs] + [out.data_ptr()]
    cptrs = [c.data_ptr() for c in coefficients]
    lif_native.run_split(rows, threads, lambda k, r0, r1: fn(*ptrs, channels, inner, r0, r1, *cptrs))


def _batch_statistics(frames: Tensor, rows: int, channels: int, inner: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance (float64) of ``frames`` seen as ``[R, C, I]``."""
    count = frames.numel() // channels
    shift = frames[0, :, 0, 0].to(torch.float64)   # one element of each channel
    s, q = _threaded_sums("bn_sums", (frames,), rows, channels, inner, shift)
    mean_shifted = s / count
    var = (q / count - mean_shifted * mean_shifted).clamp_(min=0.0)
    return shift + mean_shifted, var


class _BatchNormTBFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor | None,
                running_var: Tensor | None, use_batch_stats: bool, momentum: float | None,
                eps: float):
        """``momentum`` None: leave the running statistics alone (else update them)."""
        steps, batch = x.shape[:2]
        frames, rows, channels, inner, fmt = _layout(x.reshape(steps * batch, *x.shape[2:]))
        if use_batch_stats:
            mean, var = _batch_statistics(frames, rows, channels, inner)
            if momentum is not None:
                count = frames.numel() // channels
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
                running_var.mul_(1 - momentum).add_((var * (count / (count - 1))).to(running_var.dtype),
                                                    alpha=momentum)
        else:
            mean, var = running_mean.to(torch.float64), running_var.to(torch.float64)
        invstd = (var + eps).rsqrt()
        scale = weight.detach().to(torch.float64) * invstd
        shift = bias.detach().to(torch.float64) - mean * scale
        y = torch.empty_like(frames)
        _per_channel_map("bn_apply", (frames,), y, rows, channels, inner, (scale, shift))
        ctx.save_for_backward(frames, weight, mean, invstd)
        ctx.layout, ctx.batch_stats, ctx.fmt = (rows, channels, inner), use_batch_stats, fmt
        return y.reshape(steps, batch, *y.shape[1:])

    @staticmethod
    def backward(ctx, grad: Tensor):
        frames, weight, mean, invstd = ctx.saved_tensors
        rows, channels, inner = ctx.layout
        g = grad.reshape(frames.shape).contiguous(memory_format=ctx.fmt)
        sum_g, sum_gx = _threaded_sums("bn_grad_sums", (g, frames), rows, channels, inner, mean)
        grad_w = grad_b = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_w = (sum_gx * invstd).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = sum_g.to(weight.dtype)
        if ctx.needs_input_grad[0]:
            count = frames.numel() // channels
            a = weight.detach().to(torch.float64) * invstd
            if ctx.batch_stats:   # dx = a * (g - mean(g) - (x - mean) * invstd^2 * mean(g (x - mean)))
                b, k = sum_g / count, invstd * invstd * sum_gx / count
            else:                 # the running statistics are constants: dx = a * g
                b = k = torch.zeros_like(a)
            grad_x = torch.empty_like(frames)
            _per_channel_map("bn_grad_input", (g, frames), grad_x, rows, channels, inner,
                             (a, b, mean, k))
            grad_x = grad_x.reshape(grad.shape)
        return grad_x, grad_w, grad_b, None, None, None, None, None


def batchnorm_tb(x: Tensor, bn: torch.nn.BatchNorm2d) -> Tensor:
    """``bn`` (affine) applied to ``x`` ``[T, B, C, H, W]`` with statistics over T, B, H and W, as
    ``bn`` on the folded ``[T*B, C, H, W]`` frames computes them (running statistics and
    ``num_batches_tracked`` updated alike); needs :func:`supported` and ``bn.affine``."""
    use_batch_stats = bn.training or bn.running_mean is None
    momentum = None
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        bn.num_batches_tracked.add_(1)
        momentum = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                    else float(bn.momentum))
    return _BatchNormTBFunction.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                      use_batch_stats, momentum, bn.eps)
