"""``python -m cosim replay`` end to end on the small configuration, and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ttsnn.cosim.__main__ import main
from ttsnn.cosim.layer import RtlTarget
from ttsnn.cosim.runner import REPO_ROOT
from ttsnn.gen.config import CONFIG_DIR


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from ttsnn.sw.checkpoint import save_checkpoint
    from ttsnn.sw.resnet import ms_resnet

    torch.manual_seed(0)
    model = ms_resnet("tiny", "htt", ranks=6, in_channels=1, num_classes=10, timesteps=4,
                      input_size=16, v_threshold=0.3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_htt.pt"
    save_checkpoint(path, model, config={"dataset": "digits", "timesteps": 4})
    return path


@pytest.mark.cosim
def test_replay_json_on_small_config(checkpoint, capsys):
    rc = main(["replay", "--checkpoint", str(checkpoint), "--layer", "layers.0.0.conv2",
               "--config", "small", "--json", "--calib-samples", "4"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    for key in ("match", "mismatches", "spike_agreement", "cycles", "counters"):
        assert key in out
    assert out["match"] is True and out["mismatches"] == 0
    assert out["layer_shape"]["residual"] is True and out["layer_shape"]["mode"] == "htt"
    assert out["tiles"] >= 4  # 16x16 on an 8x8-tile configuration
    assert out["cycles"] == out["counters"]["cycles"] > 0
    # the calibrated integer layer spikes like the float one (measured 0.9998 at a spike rate
    # of 0.32; a layer that never spiked would agree only about 0.68)
    assert out["rtl_spike_rate"] > 0.1, out
    assert out["spike_agreement"] > 0.97, out


def test_replay_bad_inputs(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="available TT layers: layers.0.0.conv1, layers.0.0.conv2"):
        main(["replay", "--checkpoint", str(checkpoint), "--layer", "conv1", "--config", "small"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(["replay", "--checkpoint", str(tmp_path / "none.pt"), "--layer", "x"])
    with pytest.raises(ValueError, match="weight_bits"):
        main(["replay", "--checkpoint", str(checkpoint), "--layer", "layers.0.0.conv1",
              "--config", "small", "--weight-bits", "12"])
    # a configuration whose spike buffer cannot hold even the smallest tile of the layer
    text = (CONFIG_DIR / "small.toml").read_text()
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(text.replace('name = "small"', 'name = "tinycfg"')
                    .replace("max_in_channels = 32", "max_in_channels = 8"))
    with pytest.raises(ValueError, match="input channels = 16 exceeds"):
        main(["replay", "--checkpoint", str(checkpoint), "--layer", "layers.0.0.conv1",
              "--config", str(tiny)])


def test_replay_rejects_rtl_of_another_config(checkpoint, tmp_path):
    """--rtl of one configuration with --config of another must not run (the plan, widths and
    the report's configuration name would all be the wrong one's); checked before any work."""
    small_rtl = REPO_ROOT / "rtl" / "small"
    with pytest.raises(ValueError, match=r"generated for configuration 'small', but "
                                         r"configuration 'paper' .*was requested"):
        main(["replay", "--checkpoint", str(checkpoint), "--layer", "layers.0.0.conv1",
              "--config", "paper", "--rtl", str(small_rtl)])
    with pytest.raises(ValueError, match="generated for configuration 'small'"):
        RtlTarget.for_config("paper", small_rtl)
    # same name, other parameters: still refused, naming what differs
    text = (CONFIG_DIR / "small.toml").read_text()
    other = tmp_path / "small_other.toml"
    other.write_text(text.replace("max_in_channels = 32", "max_in_channels = 16"))
    with pytest.raises(ValueError, match=r"same name, different limits"):
        RtlTarget.for_config(str(other), small_rtl)
    assert RtlTarget.for_config("small", small_rtl).rtl_dir == small_rtl
