"""Evaluation as in Diehl & Cook: label neurons, then vote.

Each neuron is labelled with the class for which its mean spike count over the labelled
training images is highest (a neuron that never fired keeps label -1 and never votes); an
image is predicted as the class whose labelled neurons have the highest mean spike count
(classes without neurons score 0; ties go to the lowest class index).
"""

from __future__ import annotations

import torch
from torch import Tensor
from ttsnn.sw.cli_util import UserError

__all__ = ["assign_labels", "predict", "accuracy", "confusion_matrix"]


def _check(counts: Tensor, labels: Tensor | None = None) -> None:
    if counts.dim() != 2:
        raise UserError(f"spike counts must be [images, neurons], got shape {tuple(counts.shape)}")
    if labels is not None and (labels.dim() != 1 or labels.shape[0] != counts.shape[0]):
        raise UserError(f"labels must be [images] = [{counts.shape[0]}], got shape {tuple(labels.shape)}")


def assign_labels(counts: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[neurons]`` class of each neuron (``-1``: never fired on these images)."""
    _check(counts, labels)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise UserError(f"labels must lie in 0..{num_classes - 1}")
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(counts.dtype)  # [B, C]
    per_class = onehot.t() @ counts                                                  # [C, N]
    n_per_class = onehot.sum(0).clamp_min(1).unsqueeze(1)
    mean = per_class / n_per_class
    assigned = mean.argmax(0)
    return torch.where(counts.sum(0) > 0, assigned, torch.full_like(assigned, -1))


def predict(counts: Tensor, assignments: Tensor, num_classes: int) -> Tensor:
    """``[images]`` predicted class: the class whose neurons fire most on average."""
    _check(counts)
    if assignments.shape != (counts.shape[1],):
        raise UserError(f"assignments must be [neurons] = [{counts.shape[1]}], got {tuple(assignments.shape)}")
    member = torch.stack([(assignments == c) for c in range(num_classes)], 1).to(counts.dtype)  # [N, C]
    score = (counts @ member) / member.sum(0).clamp_min(1)
    return score.argmax(1)


def accuracy(pred: Tensor, labels: Tensor) -> float:
    if pred.shape != labels.shape:
        raise UserError(f"predictions {tuple(pred.shape)} and labels {tuple(labels.shape)} differ in shape")
    return float((pred == labels).float().mean()) if labels.numel() else 0.0


def confusion_matrix(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[true, predicted]`` counts (int64)."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)
