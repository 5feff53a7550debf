"""The Brian2 peer of the speed benchmark (sw/tinysnn/bench_peer.py, peer_brian2.py): a missing
peer environment is one clear error; with the environment (``make brian2-venv``), a run of two
images gives counts of the right shape from the same network. Speeds are the benchmark
command's business (``python -m sw tinysnn bench-peer``), never asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttsnn.sw.tinysnn.bench_peer import DEFAULT_PEER_PYTHON, bench_peer
from ttsnn.sw.tinysnn.config import SNNConfig
from ttsnn.sw.tinysnn.data import load_images

ROOT = Path(__file__).resolve().parents[2]


def _data(n_train: int, n_test: int):
    return load_images("digits", True, None).head(n_train), load_images("digits", False, None).head(n_test)


def test_missing_peer_environment_says_how_to_build_it(tmp_path):
    train, test = _data(1, 1)
    cfg = SNNConfig(variant="baseline", n_inputs=64, n_neurons=4, t_present=5.0)
    with pytest.raises(FileNotFoundError, match="make brian2-venv"):
        bench_peer(cfg, train, test, peer_python=str(tmp_path / "python"))


@pytest.mark.skipif(not (ROOT / DEFAULT_PEER_PYTHON).is_file(), reason="no Brian2 environment (make brian2-venv)")
def test_peer_runs_the_same_network_on_the_same_images():
    train, test = _data(2, 2)
    cfg = SNNConfig(variant="tinysnn", n_inputs=64, n_neurons=10, t_present=50.0)
    res = bench_peer(cfg, train, test, peer_python=str(ROOT / DEFAULT_PEER_PYTHON))
    assert res["network"] == "Diehl & Cook baseline"      # the variant is forced to the baseline
    assert res["train_images"] == 2 and res["test_images"] == 2
    for side in ("ours", "peer"):
        assert 0.0 <= res[side]["accuracy"] <= 1.0
        assert res[side]["train_cpu_s_per_image"] > 0
    assert res["peer"]["simulator"].startswith("Brian2 2.")
