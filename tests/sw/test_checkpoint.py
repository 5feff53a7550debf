"""Checkpoint I/O: round trip, atomic writes, truncated and foreign files."""

import os
import random

import numpy as np
import pytest
import torch

from ttsnn.sw.checkpoint import (FORMAT, load_checkpoint, load_model, payload_digest, rng_state, save_checkpoint,
                           set_rng_state)
from ttsnn.sw.resnet import merge_to_dense, ms_resnet


def _model(mode="ptt"):
    torch.manual_seed(0)
    return ms_resnet("tiny", mode=mode, ranks=None if mode == "dense" else "uniform:4", in_channels=1,
                     num_classes=10, timesteps=2, input_size=8)


@pytest.mark.parametrize("mode", ["dense", "stt", "ptt", "htt"])
def test_round_trip_rebuilds_the_same_model(tmp_path, mode):
    model = _model(mode).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=3, config={"seed": 1}, metrics=[{"epoch": 1}])
    loaded, meta = load_model(path)
    assert meta["epoch"] == 3 and meta["config"] == {"seed": 1} and meta["model"]["hparams"] == model.hparams
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x), loaded(x))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_merged_export_round_trips(tmp_path):
    model = _model("htt").eval()
    with torch.no_grad():  # make the BN statistics non-trivial
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    merged = merge_to_dense(model).eval()
    save_checkpoint(tmp_path / "merged.pt", merged)
    loaded, meta = load_model(tmp_path / "merged.pt")
    assert meta["model"]["hparams"]["merged_from"] == "htt"
    assert not any("g1" in k for k in loaded.state_dict())
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded(x), merged(x))


def test_truncated_file_is_a_clear_error_and_the_original_is_kept(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model())
    raw = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated") as err:
        load_checkpoint(tmp_path / "cut.pt")
    assert "weights_only" not in str(err.value)  # never torch's advice to unpickle unsafely
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_foreign_and_wrong_version_files_are_rejected(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a ttsnn-kit/checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    # arbitrary objects are refused without unpickling them, and without torch's advice to
    # load with weights_only=False
    import argparse
    torch.save({"format": "ttsnn-kit/checkpoint", "obj": argparse.Namespace(a=1)},
               tmp_path / "objects.pt")
    with pytest.raises(ValueError, match="not a ttsnn-kit checkpoint.*not unpickled") as err:
        load_checkpoint(tmp_path / "objects.pt")
    assert "weights_only" not in str(err.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="not a"):
        load_checkpoint(tmp_path / "tensor.pt")
    path = save_checkpoint(tmp_path / "m.pt", _model())
    ckpt = torch.load(path, weights_only=True)
    ckpt["version"] = 99
    torch.save(ckpt, tmp_path / "v99.pt")
    with pytest.raises(ValueError, match="version"):
        load_checkpoint(tmp_path / "v99.pt")
    ckpt["version"] = 1
    ckpt["model"]["state_dict"].pop(next(iter(ckpt["model"]["state_dict"])))
    ckpt["sha256"] = payload_digest(ckpt)  # a consistent file whose weights do not fit (not a damaged one)
    torch.save(ckpt, tmp_path / "bad_weights.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_model(tmp_path / "bad_weights.pt")


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    import errno

    import ttsnn.sw.fileio
    from ttsnn import sw

    path = save_checkpoint(tmp_path / "m.pt", _model(), epoch=1)
    before = path.read_bytes()

    def boom(tmp, data):
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sw.fileio, "_write_bytes", boom)
    with pytest.raises(OSError, match=f"cannot write {path}: No space left on device"):
        save_checkpoint(path, _model(), epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
    assert load_checkpoint(path)["format"] == FORMAT


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path / "m.pt", _model())  # with_rng: saves the state after the draws above
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
    ck = load_checkpoint(tmp_path / "m.pt")
    set_rng_state(ck["rng"])  # loads with weights_only=True and restores without error


def test_model_without_hparams_is_refused(tmp_path):
    with pytest.raises(ValueError, match="hparams"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    assert not os.listdir(tmp_path)
