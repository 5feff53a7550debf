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
    assert rep["trace_source"].startswith("RTL forward trace words")
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


def test_the_backward_reads_the_rtl_forwards_trace_words():
    """The trace comes from the RTL's trace words alone (spikes, window bits, arg-max), not
    from its membranes or the golden forward; ``trace_matches`` compares every part."""
    from types import SimpleNamespace

    from ttsnn.cosim.train_step import rtl_trace, trace_matches
    from ttsnn.sw.golden_backward import ForwardTrace

    u8 = lambda v: torch.tensor(v, dtype=torch.uint8)  # noqa: E731
    gold = ForwardTrace(x=torch.zeros(1, 1, 1, 4, 4), spikes=u8([[[[[1, 0]]]]]),
                        window=u8([[[[[0, 1]]]]]), argmax=torch.tensor([[[[[1, 3]]]]]))
    # the membranes say nothing: the window bits are the trace words'
    fwd = SimpleNamespace(spikes=[[[[1, 0]]]], membrane=[[[[5000, 5000]]]], window=[[[[0, 1]]]],
                          argmax=[[[[1, 3]]]])                  # [T, C, Ho, Wo]
    tr = rtl_trace(gold.x, fwd)
    assert tr.spikes.tolist() == [[[[[1, 0]]]]] and tr.window.tolist() == [[[[[0, 1]]]]]
    assert tr.argmax.tolist() == [[[[[1, 3]]]]] and tr.x is gold.x
    assert trace_matches(gold, fwd)
    for bad in (dict(window=[[[[1, 1]]]]), dict(argmax=[[[[1, 2]]]]), dict(argmax=None), dict(spikes=[[[[0, 0]]]])):
        assert not trace_matches(gold, SimpleNamespace(**{**vars(fwd), **bad}))
