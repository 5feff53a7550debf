"""Static image data sets: CIFAR-10/100 from the python-pickle batches, and the embedded digits.

The CIFAR batches are pickles; they are read by :class:`_CifarUnpickler`, which resolves only
the few names a CIFAR batch (or the same dict re-pickled by numpy/Python 3) refers to, each
through a checking stand-in: no name of the file can call anything else, so a crafted
``data_batch_1`` cannot run code.

Images are returned as float32 ``[C, H, W]`` (normalised); the model direct-codes them
(repeats them over T). :func:`augment_crop_flip` is the standard CIFAR augmentation,
applied per batch with an explicit generator so that training stays reproducible.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["TensorImageDataset", "load_cifar", "read_cifar_batch", "load_digits_images", "digits_event_frames",
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
            raise UserError(f"{images.shape[0]} images but {labels.shape[0]} labels")
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
    raise MissingFileError(
        f"{name}: python-pickle batches not found under {root}. Expected {root}/{folder}/ "
        f"(or {root}/) holding {', '.join(train + test)} - the contents of the official "
        f"'{folder}' archive (this tool never downloads).")


class _NdarrayToken:
    """What ``numpy.ndarray`` resolves to: accepted only as the class argument of
    ``_reconstruct``, not callable itself."""


def _safe_dtype(spec, align=False, copy=False):
    dt = np.dtype(spec)
    if dt.hasobject:
        raise pickle.UnpicklingError("an array of Python objects")
    return dt


def _safe_reconstruct(subtype, shape, dtype_code):
    # numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'): an empty array whose
    # __setstate__ (BUILD) then fills in dtype, shape and the raw bytes, checking their length
    if subtype is not _NdarrayToken:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return np.empty(0, dtype=np.int8)


def _safe_frombuffer(buf, dtype, shape, order):
    # numpy's protocol-5 form: numpy.core.numeric._frombuffer(bytes, dtype, shape, order)
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("_frombuffer of something other than raw bytes")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order="F" if order == "F" else "C")


def _safe_encode(text, encoding="utf-8"):
    # Python 3 pickles bytes for protocol 2 as _codecs.encode(str, 'latin1')
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


_CIFAR_NAMES = {
    ("numpy", "ndarray"): _NdarrayToken, ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers, numbers, bytes and numeric numpy arrays; refuses any other
    name the file refers to (the only way a pickle can run code)."""

    def find_class(self, module: str, name: str):
        try:
            return _CIFAR_NAMES[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never holds "
                                         "(refused, not run)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds persistent references, which a CIFAR batch never holds")


def read_cifar_batch(path: str | os.PathLike, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(data [N, 3072] uint8, labels [N] int64)`` of one CIFAR python batch, without running
    anything from the file; anything else is a ``ValueError`` naming the file and the problem."""
    path = Path(path)
    advice = "re-extract the official archive"
    try:
        raw = path.read_bytes()
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError,
            KeyError, RecursionError) as exc:
        raise UserError(f"{path}: not a valid CIFAR python-pickle batch ({type(exc).__name__}: {exc}); "
                        f"{advice}") from None
    if not isinstance(batch, dict):
        raise UserError(f"{path}: not a CIFAR batch (holds a {type(batch).__name__}, not a dict); {advice}")
    key_names = {k.decode("latin1") if isinstance(k, bytes) else k: k for k in batch}
    for key in ("data", label_key.decode()):
        if key not in key_names:
            raise UserError(f"{path}: not a CIFAR batch (no {key!r} entry; has {sorted(map(str, key_names))}); "
                            f"{advice}")
    data, labels = batch[key_names["data"]], batch[key_names[label_key.decode()]]
    try:
        x = np.asarray(data)
        y = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: CIFAR data/labels are not arrays ({exc}); {advice}") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise UserError(f"{path}: expected data [N, 3072] uint8, got {x.shape} {x.dtype}; {advice}")
    if y.ndim != 1 or y.shape[0] != x.shape[0] or (y.size and y.dtype.kind not in "iu"):
        raise UserError(f"{path}: expected {x.shape[0]} integer labels, got {y.shape} {y.dtype}; {advice}")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise UserError(f"{path}: label {int(y[bad[0]])} at index {int(bad[0])} is outside 0..{num_classes - 1} "
                        f"({bad.size} such labels); the file is damaged or of another data set; {advice}")
    return x, y


def load_cifar(name: str, root: str | os.PathLike, train: bool) -> TensorImageDataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official python-pickle batches, normalised."""
    if name not in CIFAR_LAYOUT:
        raise UserError(f"unknown CIFAR variant {name!r}; choose from {sorted(CIFAR_LAYOUT)}")
    folder = _cifar_dir(name, root)
    _, train_files, test_files, label_key, num_classes = CIFAR_LAYOUT[name]
    data, labels = [], []
    for fname in train_files if train else test_files:
        x, y = read_cifar_batch(folder / fname, label_key, num_classes)
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
        raise UserError(f"timesteps must be >= 1, got {timesteps}")
    img, y, tr, te = _digits(size)
    sel = tr if train else te
    img = img[sel]
    g = torch.Generator().manual_seed(seed + (0 if train else 1))
    rate = (torch.rand((timesteps,) + img.shape, generator=g) < img.unsqueeze(0)).float()
    step = torch.clamp(((1 - img) * timesteps).floor().long(), max=timesteps - 1)
    latency = (torch.arange(timesteps).view(-1, 1, 1, 1, 1) == step.unsqueeze(0)) & (img.unsqueeze(0) > 0.1)
    frames = torch.cat([rate, latency.float()], dim=2)  # [T, N, 2, H, W]
    return TensorImageDataset(frames.transpose(0, 1).contiguous(), y[sel])


def augment_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4, *,
                      batch: int | None = None, offset: int = 0) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, on a batch.

    Works on images ``[B, C, H, W]`` and frames ``[B, T, C, H, W]`` (the same crop for all steps).
    ``x`` may be the part ``offset .. offset + B`` of a batch of ``batch`` samples (one rank's
    part under data-parallel training): the draws are those of the whole batch, so the parts
    are augmented as the whole batch would be.
    """
    if x.dim() not in (4, 5):
        raise UserError(f"augment expects [B, C, H, W] or [B, T, C, H, W], got {tuple(x.shape)}")
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    total = b if batch is None else batch
    if offset < 0 or offset + b > total:
        raise UserError(f"augment: part {offset}..{offset + b} is outside a batch of {total}")
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (total,), generator=generator)[offset:offset + b]
    dx = torch.randint(0, 2 * padding + 1, (total,), generator=generator)[offset:offset + b]
    flip = (torch.rand(total, generator=generator) < 0.5)[offset:offset + b]
    out = torch.empty_like(x)
    for i in range(b):
        crop = padded[i, ..., dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out
