"""Layers over ``[T, B, ...]`` that the MS-ResNet blocks (:mod:`sw.resnet`) and the reversible
blocks (:mod:`sw.reversible`) are built from; a module of its own so that neither of those
imports the other."""

from __future__ import annotations

from torch import Tensor, nn

from sw.arch import ConvSpec
from sw.tt import DenseConv3x3, TTConv2d

__all__ = ["BatchNormTB", "make_conv"]


class BatchNormTB(nn.BatchNorm2d):
    """BatchNorm2d over ``[T, B, C, H, W]`` with statistics shared over time (and batch)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        steps, batch = x.shape[:2]
        y = super().forward(x.reshape(steps * batch, *x.shape[2:]))
        return y.reshape(steps, batch, *y.shape[1:])


def make_conv(spec: ConvSpec, downsample: str) -> nn.Module:
    """The 3x3 conv of ``spec``: dense, or TT (STT/PTT/HTT) with ``downsample`` for stride 2."""
    if spec.mode == "dense":
        return DenseConv3x3(spec.in_channels, spec.out_channels, spec.stride)
    return TTConv2d(spec.in_channels, spec.out_channels, spec.rank, spec.mode, spec.stride,
                    downsample, spec.schedule)
