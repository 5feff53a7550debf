"""``python -m cosim train-step`` on a small PTT checkpoint (small configuration's RTL under
Verilator): forward and backward bit-exact against the golden models, gradients close to float
autograd, one clear line for a wrong layer name."""

from __future__ import annotations

import json

import pytest
import torch

from tests.checkpoints import tiny_checkpoint

pytestmark = pytest.mark.cosim


def test_train_step_command_is_bit_exact(tmp_path, capsys):
    from ttsnn.cosim.__main__ import main

    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, "ptt", seed=0)
    assert main(["train-step", "--checkpoint", str(ckpt), "--layer", "layers.0.0.conv2",
                 "--config", "small", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["match"] and rep["forward_match"] and not any(rep["mismatches"].values())
    assert set(rep["grad_cosine"]) == {"input", "current", "w1", "w2", "w3", "w4"}
    assert min(rep["grad_cosine"].values()) > 0.9
    assert rep["trace_source"].startswith("spikes and window bits: RTL forward")
    c = rep["counters"]["backward"]
    assert c["cycles"] == rep["cycles"]["backward"] > c["stage_busy"] > 0
    with pytest.raises(ValueError, match="not a TT layer"):
        main(["train-step", "--checkpoint", str(ckpt), "--layer", "fc", "--config", "small"])


def test_finetune_check_runs_sampled_steps_on_the_rtl(tmp_path, capsys):
    from ttsnn.cosim.__main__ import main

    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, "htt", seed=1)
    assert main(["finetune-check", "--checkpoint", str(ckpt), "--layer", "layers.1.0.conv1",
                 "--config", "small", "--steps", "3", "--rtl-steps", "2", "--batch-size", "3",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["match"] and len(rep["checks"]) == 2 and rep["checked_steps"] == [0, 2]
    assert all(c["match"] and c["cycles"] > 0 for c in rep["checks"])
    assert len(rep["step_loss"]) == 3


def test_the_backward_reads_the_rtl_forwards_spikes_and_window_bits():
    """The trace comes from the RTL's outputs: a membrane the RTL wrote inside the window
    gives a window bit, one outside does not; the arg-max stays the golden forward's."""
    from types import SimpleNamespace

    from ttsnn.cosim.train_step import rtl_trace
    from ttsnn.sw.golden_backward import ForwardTrace

    gold = ForwardTrace(x=torch.zeros(1, 1, 1, 4, 4), spikes=torch.zeros(1, 1, 1, 1, 2, dtype=torch.uint8),
                        window=torch.zeros(1, 1, 1, 1, 2, dtype=torch.uint8), argmax=torch.tensor([[[[[1, 3]]]]]))
    fwd = SimpleNamespace(spikes=[[[[1, 0]]]], membrane=[[[[5, 40]]]])     # [T, C, Ho, Wo]
    tr = rtl_trace(gold, fwd, window_lo=0, window_hi=16)
    assert tr.spikes.tolist() == [[[[[1, 0]]]]] and tr.window.tolist() == [[[[[1, 0]]]]]
    assert tr.argmax is gold.argmax and tr.x is gold.x
