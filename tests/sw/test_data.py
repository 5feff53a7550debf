"""Data: native event formats (files written byte by byte here), frames, CIFAR pickles, digits."""

import pickle
import struct

import numpy as np
import pytest
import torch

from ttsnn.sw.data import DATASETS, augment_crop_flip, load_dataset
from ttsnn.sw.data.events import (Events, events_to_frames, read_aedat31, read_atis_bin, write_aedat31,
                            write_atis_bin)


# --- byte-level writers that follow the format documents, independent of sw.data -------------
def atis_record(x, y, p, t):
    """One 40-bit N-Caltech101 record: x[39:32] y[31:24] p[23] t[22:0], big-endian."""
    return ((x << 32) | (y << 24) | (p << 23) | t).to_bytes(5, "big")


def aedat_file(packets):
    """AEDAT 3.1: '#' header lines, '#!END-HEADER', then (28-byte header, events) packets.
    ``packets``: list of (event_type, ts_overflow, [(x, y, p, ts, valid)])."""
    out = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    for etype, overflow, events in packets:
        body = b"".join(struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, ts)
                        for x, y, p, ts, valid in events)
        out += struct.pack("<HHIIIIII", etype, 1, 8, 4, overflow, len(events), len(events), len(events)) + body
    return out


def test_atis_reader_decodes_fields_and_timestamp_overflow(tmp_path):
    path = tmp_path / "a.bin"
    data = (atis_record(3, 7, 1, 100) + atis_record(239, 179, 0, (1 << 23) - 1)
            + atis_record(0, 240, 0, 0)  # overflow marker: later times + 2^23
            + atis_record(10, 20, 1, 5))
    path.write_bytes(data)
    ev = read_atis_bin(path)
    assert ev.x.tolist() == [3, 239, 10]
    assert ev.y.tolist() == [7, 179, 20]
    assert ev.p.tolist() == [1, 0, 1]
    assert ev.t.tolist() == [100, (1 << 23) - 1, (1 << 23) + 5]


def test_atis_writer_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    x, y, p = rng.integers(0, 240, n), rng.integers(0, 180, n), rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 3 * (1 << 23), n))
    write_atis_bin(tmp_path / "r.bin", x, y, t, p)
    ev = read_atis_bin(tmp_path / "r.bin")
    for a, b in ((ev.x, x), (ev.y, y), (ev.t, t), (ev.p, p)):
        np.testing.assert_array_equal(a, b)


def test_atis_truncated_or_missing_file_is_a_clear_error(tmp_path):
    (tmp_path / "t.bin").write_bytes(atis_record(1, 1, 1, 1) + b"\x00\x01")
    with pytest.raises(ValueError, match="truncated"):
        read_atis_bin(tmp_path / "t.bin")
    with pytest.raises(FileNotFoundError):
        read_atis_bin(tmp_path / "none.bin")


def test_aedat31_reader_skips_invalid_and_other_packets_and_applies_overflow(tmp_path):
    raw = aedat_file([
        (1, 0, [(5, 6, 1, 10, 1), (7, 8, 0, 20, 0), (127, 0, 0, 30, 1)]),  # 2nd is invalid
        (0, 0, [(1, 1, 1, 15, 1)]),                                         # special event: skipped
        (1, 1, [(9, 10, 1, 4, 1)]),                                         # ts overflow 1 -> + 2^31
    ])
    (tmp_path / "g.aedat").write_bytes(raw)
    ev = read_aedat31(tmp_path / "g.aedat")
    assert ev.x.tolist() == [5, 127, 9]
    assert ev.y.tolist() == [6, 0, 10]
    assert ev.p.tolist() == [1, 0, 1]
    assert ev.t.tolist() == [10, 30, (1 << 31) + 4]


def test_aedat31_writer_round_trips_and_corrupt_files_fail(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 10**7, n))
    write_aedat31(tmp_path / "w.aedat", x, y, t, p, packet_events=64)
    ev = read_aedat31(tmp_path / "w.aedat")
    for a, b in ((ev.x, x), (ev.y, y), (ev.t, t), (ev.p, p)):
        np.testing.assert_array_equal(a, b)
    raw = (tmp_path / "w.aedat").read_bytes()
    (tmp_path / "cut.aedat").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_aedat31(tmp_path / "cut.aedat")
    (tmp_path / "foreign.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + raw[20:])
    with pytest.raises(ValueError, match="AEDAT 3"):
        read_aedat31(tmp_path / "foreign.aedat")


def test_frames_split_by_time_and_by_number():
    # 4 events at t = 0, 1, 2, 9: time split into T=2 halves [0, 5) [5, 10) -> 3 + 1 events;
    # number split -> 2 + 2 events.
    ev = Events(x=np.array([0, 1, 2, 3]), y=np.array([0, 0, 1, 1]), t=np.array([0, 1, 2, 9]),
                p=np.array([0, 1, 1, 0]))
    by_time = events_to_frames(ev, 2, (2, 4), split_by="time")
    assert by_time.shape == (2, 2, 2, 4)
    assert by_time[0].sum() == 3 and by_time[1].sum() == 1
    assert by_time[0, 0, 0, 0] == 1 and by_time[0, 1, 0, 1] == 1 and by_time[0, 1, 1, 2] == 1
    assert by_time[1, 0, 1, 3] == 1
    by_number = events_to_frames(ev, 2, (2, 4), split_by="number")
    assert by_number[0].sum() == 2 and by_number[1].sum() == 2
    # resizing by area keeps the mean count; events outside the sensor are dropped
    big = events_to_frames(ev, 1, (2, 4), out_hw=(1, 2))
    assert big.shape == (1, 2, 1, 2) and big.sum() * 4 == pytest.approx(4)
    out = Events(x=np.array([100]), y=np.array([0]), t=np.array([0]), p=np.array([0]))
    assert events_to_frames(out, 1, (2, 4)).sum() == 0
    with pytest.raises(ValueError, match="split_by"):
        events_to_frames(ev, 2, (2, 4), split_by="bogus")


def _write_ncaltech(root, classes=("airplanes", "cars"), per_class=4):
    rng = np.random.default_rng(2)
    for cls in classes:
        d = root / "Caltech101" / cls
        d.mkdir(parents=True)
        for k in range(per_class):
            n = 50
            ts = np.sort(rng.integers(0, 300_000, n))
            recs = b"".join(atis_record(int(rng.integers(0, 240)), int(rng.integers(0, 180)),
                                        int(rng.integers(0, 2)), int(t)) for t in ts)
            (d / f"image_{k + 1:04d}.bin").write_bytes(recs)


def test_ncaltech101_from_native_files(tmp_path):
    _write_ncaltech(tmp_path)
    tr, te, info = load_dataset("ncaltech101", str(tmp_path), timesteps=3, cache_dir=str(tmp_path / "cache"))
    assert (info.in_channels, info.input_size, info.num_classes, info.events) == (2, 48, 2, True)
    assert len(tr) + len(te) == 8 and len(te) == 2  # one test sample per class (10% rounded up to 1)
    x, y = tr[0]
    assert x.shape == (3, 2, 48, 48) and x.dtype == torch.float32 and y.item() == 0
    # the frames are the recording's events integrated over 3 time windows, then resized
    from ttsnn.sw.data.events import read_atis_bin as read
    events = read(tmp_path / "Caltech101" / "airplanes" / tr.samples[0][0].split("/")[-1])
    full = events_to_frames(events, 3, (180, 240))
    assert full.sum() == 50 and x.sum() > 0
    assert torch.allclose(x, torch.nn.functional.adaptive_avg_pool2d(full, (48, 48)))
    # the cached copy is what a second read returns
    assert torch.equal(tr[0][0], x) and any((tmp_path / "cache").iterdir())
    # split_by number: every frame gets a third of the events
    tr2, _, _ = load_dataset("ncaltech101", str(tmp_path), timesteps=2, size=24, split_by="number")
    x2 = tr2[0][0]
    assert x2.shape == (2, 2, 24, 24)
    assert x2[0].sum().item() == pytest.approx(x2[1].sum().item())


def test_ncaltech101_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="class"):
        load_dataset("ncaltech101", str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="image_0001.bin"):
        load_dataset("ncaltech101", str(tmp_path / "empty"))
    d = tmp_path / "bad" / "cls"
    d.mkdir(parents=True)
    (d / "image_0001.bin").write_bytes(b"\x01\x02\x03")
    (d / "image_0002.bin").write_bytes(b"\x01\x02\x03")
    tr, _, _ = load_dataset("ncaltech101", str(tmp_path / "bad"), timesteps=2)
    with pytest.raises(ValueError, match="40-bit"):
        tr[0]


def _write_gesture(root):
    d = root / "DvsGesture"
    d.mkdir()
    rng = np.random.default_rng(3)
    for name, labels in (("user01_led", [(1, 1000, 5000), (3, 6000, 9000)]), ("user24_led", [(11, 0, 4000)])):
        events = []
        for t in range(0, 10000, 50):
            events.append((int(rng.integers(0, 128)), int(rng.integers(0, 128)), int(rng.integers(0, 2)), t, 1))
        (d / f"{name}.aedat").write_bytes(aedat_file([(1, 0, events)]))
        rows = "".join(f"{c},{s},{e}\n" for c, s, e in labels)
        (d / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)
    (d / "trials_to_train.txt").write_text("user01_led.aedat\n")
    (d / "trials_to_test.txt").write_text("user24_led.aedat\n")


def test_dvsgesture_from_native_files(tmp_path):
    _write_gesture(tmp_path)
    tr, te, info = load_dataset("dvsgesture", str(tmp_path), timesteps=4, size=32)
    assert (info.num_classes, info.in_channels, info.input_size) == (11, 2, 32)
    assert len(tr) == 2 and len(te) == 1
    labels = [tr[i][1].item() for i in range(2)]
    assert labels == [0, 2] and te[0][1].item() == 10
    x = tr[0][0]
    assert x.shape == (4, 2, 32, 32)
    # segment [1000, 5000) holds the events at t = 1000, 1050, ..., 4950: 80 events, 20 per frame
    counts = x.sum(dim=(1, 2, 3)) * (128 * 128) / (32 * 32)
    assert counts.tolist() == pytest.approx([20.0] * 4)


def test_dvsgesture_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="trials_to_train.txt"):
        load_dataset("dvsgesture", str(tmp_path))
    _write_gesture(tmp_path)
    (tmp_path / "DvsGesture" / "user01_led_labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="labels"):
        load_dataset("dvsgesture", str(tmp_path))


def _write_cifar(root, name):
    rng = np.random.default_rng(4)
    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        files, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels"
    else:
        d = root / "cifar-100-python"
        files, key = ["train", "test"], b"fine_labels"
    d.mkdir()
    for f in files:
        batch = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), key: [1, 2, 3]}
        with open(d / f, "wb") as fh:
            pickle.dump(batch, fh)
    return d


@pytest.mark.parametrize("name,classes,n_train", [("cifar10", 10, 15), ("cifar100", 100, 3)])
def test_cifar_pickles(tmp_path, name, classes, n_train):
    d = _write_cifar(tmp_path, name)
    tr, te, info = load_dataset(name, str(tmp_path))
    assert (info.num_classes, info.in_channels, info.input_size, info.augment) == (classes, 3, 32, True)
    assert len(tr) == n_train and len(te) == 3
    x, y = te[1]
    assert x.shape == (3, 32, 32) and y.item() == 2
    # pixel layout: the first 1024 bytes are the red plane, row-major
    with open(d / ("test_batch" if name == "cifar10" else "test"), "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")[b"data"][1]
    red = torch.from_numpy(raw[:1024].reshape(32, 32).astype(np.float32) / 255)
    corr = torch.corrcoef(torch.stack([red.flatten(), x[0].flatten()]))[0, 1]
    assert corr > 0.999


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", str(tmp_path))
    d = _write_cifar(tmp_path, "cifar10")
    (d / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="test_batch"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(ValueError, match="path"):
        load_dataset("cifar10", None)
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")


def test_embedded_digits_are_real_and_split():
    tr, te, info = load_dataset("digits")
    assert (len(tr), len(te), info.num_classes, info.input_size) == (1437, 360, 10, 16)
    assert sorted(set(te.labels.tolist())) == list(range(10))
    assert abs(tr.images.mean().item()) < 1e-4 and tr.images.std().item() == pytest.approx(1, rel=1e-3)
    # a nearest-centroid classifier on the real digits does far better than chance (10%)
    cent = torch.stack([tr.images[tr.labels == c].mean(0).flatten() for c in range(10)])
    pred = torch.cdist(te.images.flatten(1), cent).argmin(1)
    assert (pred == te.labels).float().mean() > 0.8
    etr, ete, einfo = load_dataset("digits-events", timesteps=5, size=8)
    assert einfo.events and etr[0][0].shape == (5, 2, 8, 8)
    assert set(torch.unique(etr.images).tolist()) <= {0.0, 1.0}
    # latency channel: at most one spike per pixel
    assert etr.images[:, :, 1].sum(1).max() <= 1
    assert set(DATASETS) >= {"digits", "digits-events", "cifar10", "cifar100", "ncaltech101", "dvsgesture"}


def test_augmentation_crops_and_flips_reproducibly():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    a = augment_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    b = augment_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(a, b) and a.shape == x.shape
    # every output is a (possibly flipped) shifted window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)
    seen = set()
    for s in range(30):
        y = augment_crop_flip(x[:1], torch.Generator().manual_seed(s), padding=2)
        seen.add(tuple(y.flatten().tolist()))
    assert len(seen) > 10
    frames = torch.randn(3, 4, 2, 8, 8)
    out = augment_crop_flip(frames, torch.Generator().manual_seed(1))
    assert out.shape == frames.shape
    with pytest.raises(ValueError):
        augment_crop_flip(torch.zeros(3, 3), torch.Generator())
