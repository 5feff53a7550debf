"""Atomic writes keep the previous file when writing fails."""

from __future__ import annotations

import json

import pytest

from ttsnn.sw.fileio import atomic_write, atomic_write_json, atomic_write_text


def test_write_creates_parents_and_replaces(tmp_path) -> None:
    p = tmp_path / "a" / "b.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    atomic_write_json(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path) -> None:
    p = tmp_path / "keep.txt"
    p.write_text("precious")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(p, broken)
    assert p.read_text() == "precious"
    assert [q.name for q in tmp_path.iterdir()] == ["keep.txt"]


def test_written_files_get_the_usual_mode(tmp_path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o644
