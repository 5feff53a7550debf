"""Data sets for training: the embedded digits (default), CIFAR-10/100, N-Caltech101 and
DVS128 Gesture, all from local files (nothing is ever downloaded).

:func:`load_dataset` returns ``(train, test, info)``; a sample is ``(x, label)`` with ``x``
an image ``[C, H, W]`` (the model direct-codes it) or event frames ``[T, C, H, W]``
(a batch is transposed to ``[T, B, C, H, W]`` before the model).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from ttsnn.sw.data.events import SPLIT_MODES, events_to_frames, read_aedat31, read_atis_bin
from ttsnn.sw.data.images import augment_crop_flip
from ttsnn.sw.cli_util import UserError

__all__ = ["DATASETS", "DataInfo", "load_dataset", "augment_crop_flip", "events_to_frames",
           "read_atis_bin", "read_aedat31"]

DATASETS = {
    "digits": "scikit-learn's real 8x8 handwritten digits (1,797), resized (default 16x16), direct-coded; embedded",
    "digits-events": "the same digits as 2-channel spike frames (rate + latency code); embedded",
    "cifar10": "CIFAR-10 python-pickle batches (path = directory holding cifar-10-batches-py/)",
    "cifar100": "CIFAR-100 python-pickle files (path = directory holding cifar-100-python/)",
    "ncaltech101": "N-Caltech101 .bin event files (path = directory of class sub-directories)",
    "dvsgesture": "DVS128 Gesture AEDAT 3.1 files + labels csv (path = DvsGesture directory)",
}


@dataclass(frozen=True)
class DataInfo:
    """What the model needs to know about a data set."""

    name: str
    in_channels: int
    input_size: int
    num_classes: int
    events: bool  # True: samples are [T, C, H, W] frames; False: images [C, H, W]
    augment: bool  # True: random crop + flip during training


def load_dataset(name: str, path: str | None = None, *, timesteps: int = 4, size: int | None = None,
                 split_by: str | None = None, cache_dir: str | None = None,
                 augment: bool | None = None) -> tuple[Dataset, Dataset, DataInfo]:
    """Load the train and test split of a data set by name (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    if split_by is not None and split_by not in SPLIT_MODES:
        raise UserError(f"split_by must be one of {SPLIT_MODES}, got {split_by!r}")
    if size is not None and size < 1:
        raise UserError(f"size must be >= 1, got {size}")
    if name in ("digits", "digits-events"):
        from ttsnn.sw.data.images import digits_event_frames, load_digits_images

        s = size or 16
        if name == "digits":
            tr, te = load_digits_images(True, s), load_digits_images(False, s)
            return tr, te, DataInfo(name, 1, s, 10, False, bool(augment))
        tr, te = digits_event_frames(True, timesteps, s), digits_event_frames(False, timesteps, s)
        return tr, te, DataInfo(name, 2, s, 10, True, bool(augment))
    if path is None:
        raise UserError(f"data set {name!r} needs a path to its local files (--data-path); nothing is downloaded")
    if name in ("cifar10", "cifar100"):
        from ttsnn.sw.data.images import CIFAR_LAYOUT, load_cifar

        if size not in (None, 32):
            raise UserError(f"{name} images are 32x32; size {size} is not supported")
        tr, te = load_cifar(name, path, True), load_cifar(name, path, False)
        return tr, te, DataInfo(name, 3, 32, CIFAR_LAYOUT[name][4], False, True if augment is None else augment)
    from ttsnn.sw.data import neuromorphic

    if name == "ncaltech101":
        s = size or 48
        kw = dict(timesteps=timesteps, size=(s, s), split_by=split_by or "time", cache_dir=cache_dir)
        tr, te = neuromorphic.ncaltech101(path, True, **kw), neuromorphic.ncaltech101(path, False, **kw)
        return tr, te, DataInfo(name, 2, s, len(tr.classes), True, bool(augment))
    s = size or 64
    kw = dict(timesteps=timesteps, size=(s, s), split_by=split_by or "number", cache_dir=cache_dir)
    tr, te = neuromorphic.dvsgesture(path, True, **kw), neuromorphic.dvsgesture(path, False, **kw)
    return tr, te, DataInfo(name, 2, s, 11, True, bool(augment))
