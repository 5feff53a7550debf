"""Images for the STDP networks: the embedded digits, or MNIST / Fashion-MNIST IDX files.

Every loader returns :class:`ImageSet` with pixels flattened to ``[N, H*W]`` in ``[0, 1]``
(float32) and labels ``[N]`` (int64). Nothing is downloaded: MNIST and Fashion-MNIST are read
from a local directory holding the four standard IDX files, gzipped or not
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
``t10k-labels-idx1-ubyte[.gz]``). IDX parsing reads bytes only (no pickle, nothing executes).
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["ImageSet", "DATASETS", "read_idx", "load_images", "IDX_FILES"]

DATASETS = {
    "digits": "scikit-learn's 1,797 real 8x8 handwritten digits (embedded; the project's 80/20 split)",
    "mnist": "MNIST IDX files in --data-path (gzipped or not)",
    "fashion-mnist": "Fashion-MNIST IDX files in --data-path (gzipped or not)",
}

IDX_FILES = {
    (True, "images"): "train-images-idx3-ubyte",
    (True, "labels"): "train-labels-idx1-ubyte",
    (False, "images"): "t10k-images-idx3-ubyte",
    (False, "labels"): "t10k-labels-idx1-ubyte",
}

# IDX type codes: dtype (big-endian) per the format's definition
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclass(frozen=True)
class ImageSet:
    name: str
    pixels: Tensor   # [N, H*W] float32 in [0, 1]
    labels: Tensor   # [N] int64
    shape: tuple[int, int]
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> "ImageSet":
        if n is None:
            return self
        if n < 1:
            raise UserError(f"need at least one image, got {n}")
        return ImageSet(self.name, self.pixels[:n], self.labels[:n], self.shape, self.num_classes)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its declared type and shape.

    Raises ``ValueError`` naming the file for anything that is not a complete IDX file.
    """
    p = Path(path)
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise UserError(f"{p}: gzip data is truncated or corrupt ({exc}); download the file again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise UserError(f"{p}: not an IDX file (first bytes {raw[:4].hex() or 'none'}; an IDX file starts "
                        f"00 00 <type> <ndim>, e.g. 00000803 for MNIST images)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{p}: truncated IDX header ({len(raw)} bytes, {header} needed for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != need:
        kind = "truncated" if len(raw) < need else "longer than its header says"
        raise UserError(f"{p}: IDX file {kind}: {len(raw)} bytes, the header {dims} needs {need}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise MissingFileError(f"{root}: neither {stem} nor {stem}.gz found; put the four standard "
                           f"IDX files of the data set ({', '.join(IDX_FILES.values())}) in this directory")


def _load_idx_set(name: str, root: str | os.PathLike, train: bool) -> ImageSet:
    r = Path(root)
    if not r.is_dir():
        raise MissingFileError(f"{name}: data directory {str(r)!r} does not exist (nothing is downloaded; "
                               f"give --data-path DIR holding the IDX files)")
    ip, lp = _find(r, IDX_FILES[(train, "images")]), _find(r, IDX_FILES[(train, "labels")])
    img, lab = read_idx(ip), read_idx(lp)
    if img.ndim != 3 or img.dtype != np.uint8:
        raise UserError(f"{ip}: expected unsigned-byte images [N, H, W], got {img.dtype} {img.shape}")
    if lab.ndim != 1 or lab.dtype != np.uint8:
        raise UserError(f"{lp}: expected unsigned-byte labels [N], got {lab.dtype} {lab.shape}")
    if img.shape[0] != lab.shape[0]:
        raise UserError(f"{ip} has {img.shape[0]} images but {lp} has {lab.shape[0]} labels")
    if lab.size and lab.max() > 9:
        raise UserError(f"{lp}: labels must be 0..9, found {int(lab.max())}")
    pixels = torch.from_numpy(img.reshape(img.shape[0], -1).astype(np.float32) / 255.0)
    return ImageSet(name, pixels, torch.from_numpy(lab.astype(np.int64)), (img.shape[1], img.shape[2]), 10)


def _load_digits(train: bool) -> ImageSet:
    from ttsnn.sw.data.images import _digits  # the project's embedded digits and its fixed split

    img, y, tr, te = _digits(8)
    sel = torch.from_numpy(tr if train else te)
    return ImageSet("digits", img[sel].reshape(len(sel), -1).contiguous(), y[sel], (8, 8), 10)


def load_images(name: str, train: bool, path: str | None = None) -> ImageSet:
    """The train or test split of ``name`` (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits(train)
    if path is None:
        raise UserError(f"data set {name!r} needs --data-path DIR with its IDX files; nothing is downloaded")
    return _load_idx_set(name, path, train)
