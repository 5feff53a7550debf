"""The IDX reader and the data loaders, on small IDX files written here."""

import gzip
import struct

import numpy as np
import pytest
import torch

from ttsnn.sw.tinysnn.data import load_images, read_idx


def _idx(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file written from the format's definition: 00 00 type ndim, big-endian dims, data."""
    head = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_set(root, n_train=5, n_test=3, gz=False, h=4, w=3):
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr, dims in (("images", img, 3), ("labels", lab, 1)):
            name = f"{prefix}-{kind}-idx{dims}-ubyte" + (".gz" if gz else "")
            data = _idx(arr)
            (root / name).write_bytes(gzip.compress(data) if gz else data)
            files[(prefix, kind)] = (root / name, arr)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_style_directory_round_trips(tmp_path, gz):
    files = _write_set(tmp_path, gz=gz)
    tr = load_images("mnist", True, str(tmp_path))
    te = load_images("fashion-mnist", False, str(tmp_path))
    img, lab = files[("train", "images")][1], files[("train", "labels")][1]
    assert tr.shape == (4, 3) and len(tr) == 5 and len(te) == 3
    assert torch.allclose(tr.pixels, torch.from_numpy(img.reshape(5, 12) / 255.0).float())
    assert tr.labels.tolist() == lab.tolist()
    assert tr.pixels.dtype == torch.float32 and float(tr.pixels.max()) <= 1.0


def test_read_idx_other_types_and_shapes(tmp_path):
    a = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    (tmp_path / "x").write_bytes(_idx(a, 0x0C))
    assert read_idx(tmp_path / "x").tolist() == a.tolist()


def test_truncated_file_is_refused(tmp_path):
    data = _idx(np.zeros((4, 2, 2), np.uint8))
    (tmp_path / "t").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "t")
    (tmp_path / "h").write_bytes(data[:9])  # inside the header
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(tmp_path / "h")
    (tmp_path / "long").write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(tmp_path / "long")


def test_truncated_gzip_is_refused(tmp_path):
    gz = gzip.compress(_idx(np.zeros((50, 8, 8), np.uint8)))
    (tmp_path / "g.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="gzip data is truncated or corrupt"):
        read_idx(tmp_path / "g.gz")


@pytest.mark.parametrize("payload", [b"\x89PNG\r\n\x1a\n" + b"\0" * 20, b"", b"\x00\x00\x42\x01\0\0\0\1x",
                                     b"PK\x03\x04 zip file"])
def test_foreign_files_are_refused(tmp_path, payload):
    (tmp_path / "f").write_bytes(payload)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "f")


def test_missing_directory_and_files_and_mismatches(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images("mnist", True, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_images("mnist", True, str(tmp_path))
    with pytest.raises(ValueError, match="needs --data-path"):
        load_images("mnist", True, None)
    with pytest.raises(ValueError, match="unknown data set"):
        load_images("cifar", True, None)
    files = _write_set(tmp_path)
    path, _ = files[("train", "labels")]
    path.write_bytes(_idx(np.zeros(4, np.uint8)))  # 5 images, 4 labels
    with pytest.raises(ValueError, match="has 5 images but"):
        load_images("mnist", True, str(tmp_path))
    path.write_bytes(_idx(np.full(5, 12, np.uint8)))
    with pytest.raises(ValueError, match="labels must be 0..9"):
        load_images("mnist", True, str(tmp_path))
    path.write_bytes(_idx(np.zeros((5, 2), np.uint8)))
    with pytest.raises(ValueError, match="expected unsigned-byte labels"):
        load_images("mnist", True, str(tmp_path))


def test_embedded_digits():
    tr, te = load_images("digits", True), load_images("digits", False)
    assert tr.pixels.shape[1] == 64 and tr.shape == (8, 8)
    assert len(tr) + len(te) == 1797 and 0.0 <= float(tr.pixels.min()) and float(tr.pixels.max()) <= 1.0
    assert tr.head(10).pixels.shape == (10, 64)
