"""The SNN training methods the paper combines TT-SNN with (its Table III), over ``[T, B, ...]``:

- tdBN, threshold-dependent BatchNorm (Zheng et al., AAAI 2021): statistics per channel over
  time, batch and space; ``y = lambda * alpha * V_th * (x - mu) / sqrt(var + eps) + beta``
  (:class:`ThresholdDependentBN`).
- TEBN, temporal effective BatchNorm (Duan et al., NeurIPS 2022): the same statistics over all
  timesteps, then a learnable scale per timestep, ``y_t = p_t * (gamma * xhat_t + beta)``
  (:class:`TemporalEffectiveBN`).
- TET, temporal efficient training loss (Deng et al., ICLR 2022): the cross-entropy of every
  timestep's output instead of the mean output's, plus a small pull of the outputs towards
  ``phi``: ``L = (1 - lam) * mean_t CE(O_t, y) + lam * mean((O - phi)^2)``, with the reference
  code's defaults ``phi = 1``, ``lam = 1e-3`` (:func:`tet_loss`).
- NDA, neuromorphic data augmentation (Li et al., ECCV 2022): geometric augmentation of event
  frames with one transform per sample, the same for all its timesteps: horizontal flip, then
  one of roll (translation with wrap-around), rotation, horizontal shear, cutout
  (:func:`nda_augment`). The magnitudes are scaled to this kit's 16x16 frames, not the paper's.

Each is a pure function with a thin module where it has parameters (the norse style of
:mod:`sw.neurons`); the tests check each against its equation written out by hand.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from ttsnn.sw.cli_util import UserError

__all__ = ["ThresholdDependentBN", "TemporalEffectiveBN", "tet_loss", "nda_augment", "NDA_OPS",
           "roll_frames", "cutout_frames", "affine_frames", "METHODS", "NORMS", "LOSSES",
           "replace_tb_batchnorms"]

#: the Table III methods this module provides (norm layer, loss, augmentation)
METHODS = ("tdbn", "tebn", "tet", "nda")
#: the norm layers ``python -m sw train`` offers ('bn': the kit's BatchNorm shared over time)
NORMS = ("bn", "tdbn", "tebn")
#: the losses ``python -m sw train`` offers ('ce': cross-entropy of the time-averaged logits)
LOSSES = ("ce", "tet")


def _check_tb(x: Tensor, channels: int, where: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[2] != channels:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"{where}: expected [T, B, C={channels}, H, W], got {got}")


class ThresholdDependentBN(nn.BatchNorm2d):
    """tdBN over ``[T, B, C, H, W]``: batch statistics per channel over (T, B, H, W), the
    normalised input scaled by ``alpha * v_threshold`` before the affine ``weight``/``bias``
    (Zheng et al. 2021, Eq. 8). Running statistics as ``nn.BatchNorm2d``'s."""

    def __init__(self, channels: int, v_threshold: float = 0.5, alpha: float = 1.0, **kwargs):
        super().__init__(channels, **kwargs)
        self.v_threshold, self.alpha = float(v_threshold), float(alpha)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        _check_tb(x, self.num_features, "tdBN")
        steps = x.shape[0]
        use_batch = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        xhat = F.batch_norm(x.flatten(0, 1), self.running_mean, self.running_var, None, None,
                            use_batch, self.momentum if self.momentum is not None else 0.1, self.eps)
        scale = self.alpha * self.v_threshold * self.weight
        y = xhat * scale.view(-1, 1, 1) + self.bias.view(-1, 1, 1)
        return y.unflatten(0, (steps, -1))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", v_threshold={self.v_threshold}, alpha={self.alpha}"


class TemporalEffectiveBN(nn.BatchNorm2d):
    """TEBN over ``[T, B, C, H, W]``: BatchNorm with statistics shared over all timesteps (and
    batch, space), then ``y_t = p_t * BN(x)_t`` with one learnable ``p_t`` per timestep
    (initialised to 1; ``timesteps`` fixed at construction)."""

    def __init__(self, channels: int, timesteps: int, **kwargs):
        super().__init__(channels, **kwargs)
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise UserError(f"TEBN: timesteps must be a positive integer, got {timesteps!r}")
        self.timesteps = timesteps
        self.p = nn.Parameter(torch.ones(timesteps))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        _check_tb(x, self.num_features, "TEBN")
        if x.shape[0] != self.timesteps:
            raise UserError(f"TEBN: built for T={self.timesteps} timesteps, got {x.shape[0]} "
                            f"(shape {tuple(x.shape)})")
        y = super().forward(x.flatten(0, 1)).unflatten(0, (x.shape[0], -1))
        return y * self.p.view(-1, 1, 1, 1, 1)


def replace_tb_batchnorms(model: nn.Module, norm: str, timesteps: int, v_threshold: float,
                          alpha_of: Callable[[str], float] = lambda name: 1.0) -> int:
    """Replace, in place, every BatchNorm of ``model`` whose type is exactly
    :class:`sw.layers.BatchNormTB` (over ``[T, B, C, H, W]``) by a tdBN (``norm='tdbn'``, with
    ``v_threshold`` and ``alpha_of(qualified name)``) or a TEBN (``'tebn'``, ``timesteps``) of the
    same width, eps and momentum; ``'bn'`` changes nothing. Returns how many were replaced."""
    from ttsnn.sw.layers import BatchNormTB

    if norm not in NORMS:
        raise UserError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if norm == "bn":
        return 0
    targets = [name for name, m in model.named_modules() if type(m) is BatchNormTB]
    for name in targets:
        old = model.get_submodule(name)
        kw = dict(eps=old.eps, momentum=old.momentum)
        new = (ThresholdDependentBN(old.num_features, v_threshold, alpha_of(name), **kw) if norm == "tdbn"
               else TemporalEffectiveBN(old.num_features, timesteps, **kw))
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    return len(targets)


def tet_loss(outputs: Tensor, targets: Tensor, lam: float = 1e-3, phi: float = 1.0) -> Tensor:
    """TET loss of per-timestep logits ``outputs [T, B, K]`` and class ``targets [B]``:
    ``(1 - lam) * (1/T) sum_t CE(outputs[t], targets) + lam * mean((outputs - phi)^2)``."""
    if not isinstance(outputs, Tensor) or outputs.dim() != 3:
        got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise UserError(f"tet_loss: expected per-timestep logits [T, B, K], got {got}")
    if not 0.0 <= lam <= 1.0:
        raise UserError(f"tet_loss: lam must be in [0, 1], got {lam}")
    steps, batch = outputs.shape[:2]
    # CE averaged over T*B samples = the mean over t of each timestep's batch-mean CE
    ce = F.cross_entropy(outputs.flatten(0, 1), targets.repeat(steps))
    if lam == 0:
        return ce
    return (1.0 - lam) * ce + lam * F.mse_loss(outputs, torch.full_like(outputs, phi))


# ----- NDA ---------------------------------------------------------------------------------------
NDA_OPS = ("roll", "rotate", "shear", "cutout")


def roll_frames(x: Tensor, dy: int, dx: int) -> Tensor:
    """One sample's frames ``[T, C, H, W]`` translated by ``(dy, dx)`` pixels with wrap-around."""
    return torch.roll(x, shifts=(int(dy), int(dx)), dims=(-2, -1))


def cutout_frames(x: Tensor, top: int, left: int, size: int) -> Tensor:
    """Frames with the ``size x size`` square at ``(top, left)`` (clipped to the frame) zeroed."""
    out = x.clone()
    out[..., max(top, 0):top + size, max(left, 0):left + size] = 0
    return out


def affine_frames(x: Tensor, angle_deg: float = 0.0, shear: float = 0.0) -> Tensor:
    """Frames rotated by ``angle_deg`` (counter-clockwise in the displayed image) about the centre,
    and sheared horizontally (``x' = x + shear * y``), nearest-neighbour, zeros outside."""
    a = math.radians(angle_deg)
    # affine_grid maps output coordinates to input coordinates: the inverse transform
    cos, sin = math.cos(a), math.sin(a)
    rot_inv = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    shear_inv = torch.tensor([[1.0, -shear], [0.0, 1.0]], dtype=torch.float64)
    theta = torch.zeros(1, 2, 3, dtype=torch.float64)
    theta[0, :, :2] = rot_inv @ shear_inv
    frames = x.reshape(1, -1, *x.shape[-2:])
    grid = F.affine_grid(theta.to(x.dtype), list(frames.shape), align_corners=False)
    out = F.grid_sample(frames, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.reshape(x.shape)


def nda_augment(x: Tensor, generator: torch.Generator, max_roll: int = 3, max_angle: float = 15.0,
                max_shear: float = 0.3, cutout: int = 4) -> Tensor:
    """NDA on a batch of event frames ``[B, T, C, H, W]``: per sample a horizontal flip with
    probability 1/2, then one of :data:`NDA_OPS` drawn uniformly with a uniform magnitude (roll
    up to ``max_roll`` px per axis, rotation up to ``max_angle`` degrees, shear up to
    ``max_shear``, a ``cutout`` px square anywhere), the same for all timesteps of the sample."""
    if not isinstance(x, Tensor) or x.dim() != 5:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"nda_augment: expected event frames [B, T, C, H, W], got {got}")
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        sample = x[i].flip(-1) if torch.rand(1, generator=generator).item() < 0.5 else x[i]
        op = NDA_OPS[int(torch.randint(len(NDA_OPS), (1,), generator=generator))]
        u = torch.rand(2, generator=generator) * 2 - 1  # two magnitudes in [-1, 1)
        if op == "roll":
            sample = roll_frames(sample, round(float(u[0]) * max_roll), round(float(u[1]) * max_roll))
        elif op == "rotate":
            sample = affine_frames(sample, angle_deg=float(u[0]) * max_angle)
        elif op == "shear":
            sample = affine_frames(sample, shear=float(u[0]) * max_shear)
        else:
            top = int((float(u[0]) + 1) / 2 * (h - 1)) - cutout // 2
            left = int((float(u[1]) + 1) / 2 * (w - 1)) - cutout // 2
            sample = cutout_frames(sample, top, left, cutout)
        out[i] = sample
    return out
