"""Static image data sets: CIFAR-10/100 from the python-pickle batches, and the embedded digits.

Images are returned as float32 ``[C, H, W]`` (normalised); the model direct-codes them
(repeats them over T). :func:`augment_crop_flip` is the standard CIFAR augmentation,
applied per batch with an explicit generator so that training stays reproducible.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["TensorImageDataset", "load_cifar", "load_digits_images", "digits_event_frames",
           "augment_crop_flip", "CIFAR_LAYOUT"]

CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}
_CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
_CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


class TensorImageDataset(Dataset):
    """Images [N, C, H, W] float32 and integer labels [N], held in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def _cifar_dir(name: str, root: str | os.PathLike) -> Path:
    folder, train, test, _, _ = CIFAR_LAYOUT[name]
    root = Path(root)
    for cand in (root / folder, root):
        if all((cand / f).is_file() for f in train + test):
            return cand
    raise FileNotFoundError(
        f"{name}: python-pickle batches not found under {root}. Expected {root}/{folder}/ "
        f"(or {root}/) holding {', '.join(train + test)} - the contents of the official "
        f"'{folder}' archive (this tool never downloads).")


def load_cifar(name: str, root: str | os.PathLike, train: bool) -> TensorImageDataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official python-pickle batches, normalised."""
    if name not in CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR variant {name!r}; choose from {sorted(CIFAR_LAYOUT)}")
    folder = _cifar_dir(name, root)
    _, train_files, test_files, label_key, _ = CIFAR_LAYOUT[name]
    data, labels = [], []
    for fname in train_files if train else test_files:
        path = folder / fname
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            x = np.asarray(batch[b"data"], dtype=np.uint8)
            y = np.asarray(batch[label_key], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid CIFAR python-pickle batch ({type(exc).__name__}: {exc}); "
                             "re-extract the official archive") from None
        if x.ndim != 2 or x.shape[1] != 3072 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{path}: expected data [N, 3072] uint8 and N labels, got {x.shape} and {y.shape}")
        data.append(x)
        labels.append(y)
    x = torch.from_numpy(np.concatenate(data)).reshape(-1, 3, 32, 32).float().div_(255)
    mean = torch.tensor(_CIFAR_MEAN[name]).view(1, 3, 1, 1)
    std = torch.tensor(_CIFAR_STD[name]).view(1, 3, 1, 1)
    return TensorImageDataset((x - mean) / std, torch.from_numpy(np.concatenate(labels)))


def _digits(size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8x8 digits in [0, 1], resized; a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    img = torch.from_numpy(x.astype(np.float32) / 16.0).view(-1, 1, 8, 8)
    if size != 8:
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=0, stratify=y)
    return img, torch.from_numpy(y.astype(np.int64)), np.sort(train_idx), np.sort(test_idx)


def load_digits_images(train: bool, size: int = 16) -> TensorImageDataset:
    """The embedded default: real handwritten digits (10 classes), 1 channel, normalised."""
    img, y, tr, te = _digits(size)
    mean, std = img[tr].mean(), img[tr].std()
    sel = tr if train else te
    return TensorImageDataset((img[sel] - mean) / std, y[sel])


def digits_event_frames(train: bool, timesteps: int, size: int = 16, seed: int = 0) -> TensorImageDataset:
    """Event version of the digits: [T, 2, H, W] binary spike frames.

    Channel 0 rate-codes the intensity (Bernoulli spikes with p = intensity at every step);
    channel 1 latency-codes it (one spike at step floor((1 - I) * T) for pixels with I > 0.1).
    The spikes are drawn once from ``seed`` so that every epoch sees the same events.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    img, y, tr, te = _digits(size)
    sel = tr if train else te
    img = img[sel]
    g = torch.Generator().manual_seed(seed + (0 if train else 1))
    rate = (torch.rand((timesteps,) + img.shape, generator=g) < img.unsqueeze(0)).float()
    step = torch.clamp(((1 - img) * timesteps).floor().long(), max=timesteps - 1)
    latency = (torch.arange(timesteps).view(-1, 1, 1, 1, 1) == step.unsqueeze(0)) & (img.unsqueeze(0) > 0.1)
    frames = torch.cat([rate, latency.float()], dim=2)  # [T, N, 2, H, W]
    return TensorImageDataset(frames.transpose(0, 1).contiguous(), y[sel])


def augment_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, on a batch.

    Works on images ``[B, C, H, W]`` and frames ``[B, T, C, H, W]`` (the same crop for all steps).
    """
    if x.dim() not in (4, 5):
        raise ValueError(f"augment expects [B, C, H, W] or [B, T, C, H, W], got {tuple(x.shape)}")
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(b):
        crop = padded[i, ..., dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out
