"""``python -m cosim replay-network`` on a small PTT checkpoint (small configuration's RTL under
Verilator): every TT layer bit-exact against the golden model on the same inputs, predictions
equal to the integer golden chain's; a corrupted spike between two layers is detected; bad
input gets one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ttsnn.sw.checkpoint import save_checkpoint
from ttsnn.sw.resnet import ms_resnet
from tests.checkpoints import tiny_checkpoint

pytestmark = pytest.mark.cosim

TT_LAYERS = ["layers.0.0.conv1", "layers.0.0.conv2", "layers.1.0.conv1", "layers.1.0.conv2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("replay_network") / "m.pt"
    tiny_checkpoint(ckpt, "ptt", seed=0)
    return str(ckpt)


def test_whole_network_is_bit_exact_and_agrees_with_the_golden_chain(checkpoint, capsys):
    from ttsnn.cosim.__main__ import main

    # two images on a pool of two processes: one job per image
    assert main(["replay-network", "--checkpoint", checkpoint, "--config", "small",
                 "--images", "2", "--workers", "2", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["layers_bit_exact"] is True and rep["golden_agreement"] == 1.0
    assert rep["tt_layers"] == TT_LAYERS and rep["images"] == 2
    for im in rep["per_image"]:
        assert im["prediction"] == im["golden_prediction"] and im["logits_equal_golden"]
        assert [l["layer"] for l in im["layers"]] == TT_LAYERS
        for l in im["layers"]:
            assert l["bit_exact"] and l["spike_mismatches"] == l["membrane_mismatches"] == 0
            # the RTL's own counters against what it produced and the cycles reported
            assert l["cycles"] == l["counters"]["cycles"] > 0
            assert l["counters"]["spikes_out"] == round(l["output_spike_rate"] * _neurons(l["layer"]))
            assert 0 < l["inference_pj"] < l["training_pj"]
        assert im["cycles"] == sum(l["cycles"] for l in im["layers"])
    assert rep["cycles"] == sum(im["cycles"] for im in rep["per_image"])
    preds = [(im["prediction"], im["float_prediction"], im["label"]) for im in rep["per_image"]]
    assert rep["float_agreement"] == sum(p == f for p, f, _ in preds) / 2
    assert rep["accuracy"] == sum(p == y for p, _, y in preds) / 2


def _neurons(layer: str) -> int:
    """Output neuron-timesteps of the tiny network's layers (T=2, 16x16 digits, 16/32 channels;
    layers.1.0.conv1 pools to 8x8)."""
    return {"layers.0.0.conv1": 2 * 16 * 16 * 16, "layers.0.0.conv2": 2 * 16 * 16 * 16,
            "layers.1.0.conv1": 2 * 32 * 8 * 8, "layers.1.0.conv2": 2 * 32 * 8 * 8}[layer]


def _flip_first_spike(layer, image, spikes):
    if layer == "layers.0.0.conv1":
        spikes.reshape(-1)[0] ^= 1
    return spikes


def test_a_corrupted_spike_between_layers_is_detected(checkpoint):
    from ttsnn.cosim.replay_network import replay_network

    # (one simulator process per layer here; the other test runs a session per chunk)
    rep = replay_network(checkpoint, "small", images=1, backend="local", workers=1,
                         hook=_flip_first_spike, progress=False, one_process=False)
    assert rep["layers_bit_exact"] is False
    (im,) = rep["per_image"]
    first = im["layers"][0]
    assert first["layer"] == "layers.0.0.conv1" and not first["bit_exact"]
    assert first["spike_mismatches"] == 1 and first["membrane_mismatches"] == 0
    assert first["tiles_match"]            # the simulator itself was right; the hook lied
    # the next layer got the corrupted spikes and is checked on those same inputs
    assert all(l["bit_exact"] for l in im["layers"][1:])


def test_bad_input_is_one_clear_line(checkpoint, tmp_path):
    from ttsnn.cosim.replay_network import replay_network

    with pytest.raises(ValueError, match="--images must be >= 1"):
        replay_network(checkpoint, "small", images=0, progress=False)
    dense = tmp_path / "dense.pt"
    save_checkpoint(dense, ms_resnet("tiny", "dense", in_channels=1, num_classes=10, timesteps=2,
                                     input_size=16), config={"dataset": "digits", "timesteps": 2})
    with pytest.raises(ValueError, match="needs every 3x3 block conv to be a TT layer"):
        replay_network(str(dense), "small", images=1, progress=False)


@pytest.mark.slow
def test_ray_gives_the_local_results_bit_for_bit(checkpoint):
    pytest.importorskip("ray")
    from ttsnn.cosim.replay_network import replay_network
    from ttsnn.sw.backends import RayBackend

    local = replay_network(checkpoint, "small", images=2, workers=1, progress=False)
    with RayBackend(workers=2) as ray_backend:
        ray = replay_network(checkpoint, "small", images=2, backend=ray_backend, progress=False)
    strip = lambda r: [[{k: v for k, v in l.items() if k not in ("tiles_wall_s", "tiles_cpu_s")}  # noqa: E731
                        for l in im["layers"]] for im in r["per_image"]]
    assert strip(ray) == strip(local)
    assert [im["prediction"] for im in ray["per_image"]] == [im["prediction"] for im in local["per_image"]]
    assert np.isclose(ray["training_pj_per_image"], local["training_pj_per_image"])
