"""Native event-file readers and event-to-frame integration (pure numpy).

Readers (each returns an :class:`Events` of equal-length arrays, time in microseconds):

* :func:`read_atis_bin`: the ATIS ``.bin`` format of N-MNIST / N-Caltech101 (Orchard et
  al. 2015): 40-bit big-endian records, ``x[39:32] y[31:24] p[23] t[22:0]``; records with
  ``y == 240`` are timestamp-overflow markers that add 2^23 us to every later event (the
  23-bit time field wraps every 8.4 s).
* :func:`read_aedat31`: AEDAT 3.1 (jAER/cAER, used by DVS128 Gesture): ASCII header lines
  starting with ``#`` up to ``#!END-HEADER``, then packets of a 28-byte little-endian header
  (eventType u16, eventSource u16, eventSize u32, eventTSOffset u32, eventTSOverflow u32,
  eventCapacity u32, eventNumber u32, eventValid u32) followed by ``eventNumber`` events of
  ``eventSize`` bytes. Polarity events (type 1, 8 bytes) are ``data u32, ts i32`` with
  ``data = x[31:17] y[16:2] p[1] valid[0]``; full time = ``eventTSOverflow << 31 | ts``.
  Other packet types (special, frame, IMU) are skipped; invalid events are dropped.

tonic (the usual library for these formats) requires numpy < 2 and pulls librosa and h5py,
so it cannot live in this environment; these readers follow the format documents and are
tested on files the tests write byte by byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ttsnn.sw.fileio import atomic_write_bytes
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["Events", "read_atis_bin", "read_aedat31", "write_atis_bin", "write_aedat31",
           "events_to_frames", "SPLIT_MODES"]

SPLIT_MODES = ("time", "number")
_ATIS_OVERFLOW_Y = 240
_ATIS_TIME_WRAP = 1 << 23


@dataclass
class Events:
    """Address events: x, y (pixel column/row), t (microseconds, non-decreasing), p (0/1)."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def select(self, mask: np.ndarray) -> "Events":
        return Events(self.x[mask], self.y[mask], self.t[mask], self.p[mask])


def _check_file(path: str | os.PathLike, what: str) -> None:
    if not os.path.isfile(path):
        raise MissingFileError(f"{what} file not found: {path}")


def read_atis_bin(path: str | os.PathLike) -> Events:
    """Read an N-MNIST / N-Caltech101 ``.bin`` file (40-bit ATIS records)."""
    _check_file(path, "ATIS .bin event")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % 5 != 0:
        raise UserError(
            f"{path}: not an ATIS .bin event file (size {raw.size} bytes is "
            f"{'empty' if raw.size == 0 else 'not a multiple of 5'}; each event is a 40-bit record); "
            "the file is truncated or of another format")
    rec = raw.reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = (rec[:, 2] >> 7) & 1
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == _ATIS_OVERFLOW_Y
    t = t + np.cumsum(overflow) * _ATIS_TIME_WRAP
    keep = ~overflow
    return Events(x[keep], y[keep], t[keep], p[keep])


def write_atis_bin(path: str | os.PathLike, x, y, t, p) -> None:
    """Write events in the ATIS ``.bin`` format (inserting overflow markers as needed)."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    records = []
    base = 0
    for xi, yi, ti, pi in zip(x, y, t, p):
        while ti - base >= _ATIS_TIME_WRAP:
            base += _ATIS_TIME_WRAP
            records.append((0, _ATIS_OVERFLOW_Y, 0, 0, 0))
        tt = ti - base
        records.append((xi, yi, (pi << 7) | (tt >> 16), (tt >> 8) & 0xFF, tt & 0xFF))
    atomic_write_bytes(path, np.asarray(records, dtype=np.uint8).tobytes())


_AEDAT_PACKET = np.dtype([("type", "<u2"), ("source", "<u2"), ("size", "<u4"), ("ts_offset", "<u4"),
                          ("ts_overflow", "<u4"), ("capacity", "<u4"), ("number", "<u4"), ("valid", "<u4")])
_POLARITY = np.dtype([("data", "<u4"), ("ts", "<i4")])
_POLARITY_EVENT = 1


def read_aedat31(path: str | os.PathLike) -> Events:
    """Read the polarity events of an AEDAT 3.1 file (DVS128 Gesture's ``.aedat``)."""
    _check_file(path, "AEDAT 3.1 event")
    with open(path, "rb") as f:
        blob = f.read()
    first = blob.split(b"\n", 1)[0].strip()
    if not first.startswith(b"#!AER-DAT3"):
        raise UserError(f"{path}: not an AEDAT 3.x file (first line {first[:40]!r}, expected '#!AER-DAT3.1')")
    end = blob.find(b"#!END-HEADER")
    if end < 0:
        raise UserError(f"{path}: AEDAT header has no '#!END-HEADER' line (truncated or corrupt file)")
    pos = blob.index(b"\n", end) + 1
    xs, ys, ts, ps = [], [], [], []
    n = len(blob)
    while pos < n:
        if pos + _AEDAT_PACKET.itemsize > n:
            raise UserError(f"{path}: truncated AEDAT packet header at byte {pos}")
        head = np.frombuffer(blob, _AEDAT_PACKET, 1, pos)[0]
        pos += _AEDAT_PACKET.itemsize
        size, number = int(head["size"]), int(head["number"])
        body = size * number
        if size == 0 or pos + body > n:
            raise UserError(f"{path}: truncated or corrupt AEDAT packet at byte {pos} "
                            f"(event size {size}, {number} events)")
        if int(head["type"]) == _POLARITY_EVENT:
            if size != _POLARITY.itemsize:
                raise UserError(f"{path}: polarity events of {size} bytes (expected 8)")
            ev = np.frombuffer(blob, _POLARITY, number, pos)
            data = ev["data"].astype(np.int64)
            valid = (data & 1) == 1
            data = data[valid]
            xs.append((data >> 17) & 0x7FFF)
            ys.append((data >> 2) & 0x7FFF)
            ps.append((data >> 1) & 1)
            ts.append((int(head["ts_overflow"]) << 31) + ev["ts"][valid].astype(np.int64))
        pos += body
    if not ts:
        empty = np.zeros(0, dtype=np.int64)
        return Events(empty, empty, empty, empty)
    ev = Events(np.concatenate(xs), np.concatenate(ys), np.concatenate(ts), np.concatenate(ps))
    order = np.argsort(ev.t, kind="stable")
    return Events(ev.x[order], ev.y[order], ev.t[order], ev.p[order])


def write_aedat31(path: str | os.PathLike, x, y, t, p, packet_events: int = 4096) -> None:
    """Write polarity events as an AEDAT 3.1 file (header, then packets of polarity events)."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    header = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
              b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")
    parts = [header]
    for start in range(0, len(t), packet_events):
        sl = slice(start, start + packet_events)
        overflow = t[sl] >> 31
        if np.any(overflow != overflow[0]):
            raise UserError("write_aedat31: a packet spans a timestamp overflow; use smaller packets")
        ev = np.zeros(len(t[sl]), dtype=_POLARITY)
        ev["data"] = (x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | 1
        ev["ts"] = t[sl] & 0x7FFFFFFF
        head = np.zeros(1, dtype=_AEDAT_PACKET)
        head["type"], head["size"], head["ts_offset"] = _POLARITY_EVENT, 8, 4
        head["ts_overflow"], head["capacity"] = int(overflow[0]), len(ev)
        head["number"] = head["valid"] = len(ev)
        parts += [head.tobytes(), ev.tobytes()]
    atomic_write_bytes(path, b"".join(parts))


def events_to_frames(events: Events, timesteps: int, sensor_hw: tuple[int, int],
                     out_hw: tuple[int, int] | None = None, split_by: str = "time") -> torch.Tensor:
    """Integrate events into ``[T, 2, H, W]`` float32 count frames (channel = polarity).

    ``split_by='time'``: T windows of equal duration over the recording's time span;
    ``'number'``: T windows of (as nearly as possible) equal event count. Events outside the
    sensor are dropped. The frames are then resized to ``out_hw`` (area averaging when
    shrinking, bilinear when enlarging).
    """
    if timesteps < 1:
        raise UserError(f"timesteps must be >= 1, got {timesteps}")
    if split_by not in SPLIT_MODES:
        raise UserError(f"split_by must be one of {SPLIT_MODES}, got {split_by!r}")
    h, w = sensor_hw
    inside = (events.x >= 0) & (events.x < w) & (events.y >= 0) & (events.y < h)
    ev = events.select(inside)
    n = len(ev)
    frames = np.zeros(timesteps * 2 * h * w, dtype=np.float32)
    if n:
        if split_by == "time":
            t0, t1 = int(ev.t.min()), int(ev.t.max())
            idx = ((ev.t - t0) * timesteps) // (t1 - t0 + 1)
        else:
            idx = (np.arange(n) * timesteps) // n
        flat = ((idx * 2 + ev.p) * h + ev.y) * w + ev.x
        frames = np.bincount(flat, minlength=frames.size).astype(np.float32)
    out = torch.from_numpy(frames.reshape(timesteps, 2, h, w))
    if out_hw is not None and tuple(out_hw) != (h, w):
        shrink = out_hw[0] <= h and out_hw[1] <= w
        out = F.interpolate(out, size=tuple(out_hw), mode="area" if shrink else "bilinear",
                            **({} if shrink else {"align_corners": False}))
    return out.contiguous()
