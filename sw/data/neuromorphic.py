"""N-Caltech101 and DVS128 Gesture from their native event files, as T frames of 2 polarities.

Samples are converted lazily (parse, integrate, resize) and, with ``cache_dir``, kept as
``.pt`` files written atomically, so that the second epoch reads frames instead of events.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ttsnn.sw.data.events import Events, events_to_frames, read_aedat31, read_atis_bin
from ttsnn.sw.fileio import atomic_write
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["EventFrameDataset", "ncaltech101", "dvsgesture", "NCALTECH_SENSOR", "DVSGESTURE_SENSOR"]

# N-Caltech101 recordings fit in 240 x 180 (the ATIS is 304 x 240; the saccades stay inside
# the Caltech images' extent); frames are built at this size, then resized.
NCALTECH_SENSOR = (180, 240)
DVSGESTURE_SENSOR = (128, 128)

NCALTECH_LAYOUT = ("N-Caltech101: a directory holding one sub-directory per class (e.g. "
                   "{root}/Caltech101/airplanes/image_0001.bin, or {root}/airplanes/image_0001.bin), "
                   "each with the .bin event files of the official archive")
DVSGESTURE_LAYOUT = ("DVS128 Gesture: the extracted 'DvsGesture' directory ({root}/DvsGesture/ or {root}/) "
                     "holding trials_to_train.txt, trials_to_test.txt, userXX_<lighting>.aedat and "
                     "userXX_<lighting>_labels.csv (columns class,startTime_usec,endTime_usec)")


class EventFrameDataset(Dataset):
    """A list of (sample key, label) and a loader turning a key into events.

    ``__getitem__`` returns ``([T, 2, H, W] float32 frames, label)``.
    """

    def __init__(self, samples: list[tuple[object, int]], load_events: Callable[[object], Events],
                 sensor_hw: tuple[int, int], timesteps: int, size: tuple[int, int], split_by: str,
                 classes: list[str], cache_dir: str | os.PathLike | None = None, tag: str = ""):
        if not samples:
            raise UserError("event data set is empty")
        self.samples = samples
        self.load_events = load_events
        self.sensor_hw = sensor_hw
        self.timesteps = timesteps
        self.size = tuple(size)
        self.split_by = split_by
        self.classes = classes
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.tag = f"{tag}-T{timesteps}-{size[0]}x{size[1]}-{split_by}"
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.samples)

    def frames(self, i: int) -> torch.Tensor:
        key, _ = self.samples[i]
        cached = None
        if self.cache_dir:
            digest = hashlib.sha1(f"{self.tag}|{key}".encode()).hexdigest()[:20]
            cached = self.cache_dir / f"{digest}.pt"
            if cached.is_file():
                try:
                    return torch.load(cached, weights_only=True)
                except Exception:  # a damaged cache entry is rebuilt from the events
                    pass
        frames = events_to_frames(self.load_events(key), self.timesteps, self.sensor_hw, self.size, self.split_by)
        if cached is not None:
            atomic_write(cached, lambda tmp: torch.save(frames, tmp))
        return frames

    def __getitem__(self, i: int):
        return self.frames(i), torch.tensor(self.samples[i][1], dtype=torch.long)


def _split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    if n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def ncaltech101(root: str | os.PathLike, train: bool, timesteps: int, size=(48, 48), split_by: str = "time",
                test_fraction: float = 0.1, split_seed: int = 0, cache_dir=None) -> EventFrameDataset:
    """N-Caltech101 from its ``.bin`` files; per class a fixed random ``test_fraction`` is held out
    (the data set has no official split)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"N-Caltech101 directory not found: {root}. Expected " + NCALTECH_LAYOUT.format(root=root))
    base = root / "Caltech101" if (root / "Caltech101").is_dir() else root
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and any(d.glob("*.bin")))
    if not classes:
        raise MissingFileError(f"no class directories with .bin files under {base}. Expected "
                               + NCALTECH_LAYOUT.format(root=root))
    samples = []
    for label, cls in enumerate(classes):
        files = sorted((base / cls).glob("*.bin"))
        tr, te = _split_indices(len(files), test_fraction, split_seed + label)
        samples += [(str(files[i]), label) for i in (tr if train else te)]
    if not samples:
        raise UserError(f"N-Caltech101 under {base}: the {'train' if train else 'test'} split is empty "
                        "(a class needs at least 2 recordings to give one to each split)")
    return EventFrameDataset(samples, read_atis_bin, NCALTECH_SENSOR, timesteps, size, split_by, classes,
                             cache_dir, tag="ncaltech101")


def _gesture_dir(root: Path) -> Path:
    for cand in (root / "DvsGesture", root):
        if (cand / "trials_to_train.txt").is_file() and (cand / "trials_to_test.txt").is_file():
            return cand
    raise MissingFileError(f"DVS128 Gesture files not found under {root}. Expected "
                           + DVSGESTURE_LAYOUT.format(root=root))


def _read_gesture_labels(path: Path) -> list[tuple[int, int, int]]:
    if not path.is_file():
        raise MissingFileError(f"missing label file {path} (every .aedat needs its _labels.csv). Expected "
                               + DVSGESTURE_LAYOUT.format(root=path.parent))
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["class", "startTime_usec", "endTime_usec"]:
            raise UserError(f"{path}: expected header 'class,startTime_usec,endTime_usec', got {header}")
        for line in reader:
            if not line or not "".join(line).strip():
                continue
            try:
                cls, start, end = (int(v) for v in line[:3])
            except ValueError:
                raise UserError(f"{path}: bad row {line} (expected three integers)") from None
            if not 1 <= cls <= 11 or end <= start:
                raise UserError(f"{path}: bad row {line} (class must be 1..11 and end > start)")
            rows.append((cls - 1, start, end))
    return rows


class _SegmentLoader:
    """Loads one labelled time segment of a recording; keeps the last parsed file in memory
    (the segments of one file are consecutive in the sample list)."""

    def __init__(self):
        self._path: str | None = None
        self._events: Events | None = None

    def __call__(self, key) -> Events:
        path, start, end = key.rsplit("|", 2)
        if path != self._path:
            self._events, self._path = read_aedat31(path), path
        ev = self._events
        lo, hi = np.searchsorted(ev.t, int(start)), np.searchsorted(ev.t, int(end))
        return Events(ev.x[lo:hi], ev.y[lo:hi], ev.t[lo:hi], ev.p[lo:hi])


def dvsgesture(root: str | os.PathLike, train: bool, timesteps: int, size=(64, 64), split_by: str = "number",
               cache_dir=None) -> EventFrameDataset:
    """DVS128 Gesture (11 classes) with its official user split; one sample per labelled segment."""
    base = _gesture_dir(Path(root))
    listing = base / ("trials_to_train.txt" if train else "trials_to_test.txt")
    names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    if not names:
        raise UserError(f"{listing} lists no recordings")
    samples = []
    for name in names:
        aedat = base / name
        if not aedat.is_file():
            raise MissingFileError(f"{listing} names {name}, which is missing. Expected "
                                   + DVSGESTURE_LAYOUT.format(root=root))
        for cls, start, end in _read_gesture_labels(base / (aedat.stem + "_labels.csv")):
            samples.append((f"{aedat}|{start}|{end}", cls))
    classes = [f"gesture_{i + 1}" for i in range(11)]
    return EventFrameDataset(samples, _SegmentLoader(), DVSGESTURE_SENSOR, timesteps, size, split_by, classes,
                             cache_dir, tag="dvsgesture")
