"""Layers over ``[T, B, ...]`` that the MS-ResNet blocks (:mod:`sw.resnet`) and the reversible
blocks (:mod:`sw.reversible`) are built from; a module of its own so that neither of those
imports the other."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ttsnn.sw import batchnorm
from ttsnn.sw.arch import ConvSpec
from ttsnn.sw.tt import DenseConv3x3, TTConv2d

__all__ = ["BatchNormTB", "make_conv"]


def _memory_format(x: Tensor) -> torch.memory_format | None:
    if x.is_contiguous():
        return torch.contiguous_format
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return None


class _GradLikeInput(torch.autograd.Function):
    """Identity whose backward hands on the gradient in the memory format of the forward's
    tensor: torch's BatchNorm backward is 2-3x slower when its input and the incoming gradient
    differ in layout (e.g. a dense stem's NCHW output whose gradient comes back channels-last
    from TT convs), and one copy is cheaper."""

    @staticmethod
    def forward(ctx, x: Tensor, fmt: torch.memory_format) -> Tensor:
        ctx.fmt = fmt
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if not grad.is_contiguous(memory_format=ctx.fmt):
            grad = grad.contiguous(memory_format=ctx.fmt)
        return grad, None


class BatchNormTB(nn.BatchNorm2d):
    """BatchNorm2d over ``[T, B, C, H, W]`` with statistics shared over time (and batch).

    On float32/float64 CPU input it runs the compiled passes of :mod:`sw.batchnorm` (the same
    equations, several times faster than torch's CPU BatchNorm here); subclasses (tdBN, TEBN,
    the DDP one), ``affine=False``, a single value per channel in training, or
    ``SW_NATIVE_BN=0`` in the environment take torch's ``nn.BatchNorm2d``.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if (type(self) is BatchNormTB and self.affine and batchnorm.supported(x)
                and not (self.training and x.numel() // max(1, x.shape[2]) <= 1)):
            return batchnorm.batchnorm_tb(x, self)
        steps, batch = x.shape[:2]
        frames = x.reshape(steps * batch, *x.shape[2:])
        y = super().forward(frames)
        fmt = _memory_format(frames)
        if fmt is not None and y.requires_grad and torch.is_grad_enabled():
            y = _GradLikeInput.apply(y, fmt)
        return y.reshape(steps, batch, *y.shape[1:])


def make_conv(spec: ConvSpec, downsample: str) -> nn.Module:
    """The 3x3 conv of ``spec``: dense, or TT (STT/PTT/HTT) with ``downsample`` for stride 2."""
    if spec.mode == "dense":
        return DenseConv3x3(spec.in_channels, spec.out_channels, spec.stride)
    return TTConv2d(spec.in_channels, spec.out_channels, spec.rank, spec.mode, spec.stride,
                    downsample, spec.schedule)
