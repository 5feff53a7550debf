"""Reversible spiking blocks: equations against hand-written ones, exact inversion (values and
spikes), gradients of the naive and streamlined backward against plain autograd, BatchNorm
statistics updated once, saved memory independent of depth, training CLI and checkpoints."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from ttsnn.sw.arch import ConvSpec, network_specs, reversible_block_prefixes
from ttsnn.sw.bench import saved_tensor_bytes
from ttsnn.sw.neurons import lif_multistep_naive
from ttsnn.sw.resnet import BasicBlock, ms_resnet
from ttsnn.sw.reversible import (ReversibleBlock, ReversibleSequential, reconstruction_report,
                           round_to_grid, set_backward)

NEURON = dict(tau=0.25, v_threshold=0.5, surrogate_function="rectangle", alpha=None)


def _spec(name: str, c: int, mode: str = "dense", rank: int | None = None, steps: int = 3):
    sched = tuple(t < (steps + 1) // 2 for t in range(steps)) if mode == "htt" else None
    return ConvSpec(name, "conv3x3", c, c, 3, 1, (6, 6), (6, 6), mode=mode, rank=rank,
                    schedule=sched, reversible=True)


def _randomise_bn(model, seed=0):
    """BN affine weights that make every LIF fire sometimes (untrained convs are small)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.6 - 0.1)


def _chain(n_blocks: int, channels: int = 8, mode: str = "dense", rank=None, steps=3,
           frac_bits=12, backward="streamlined"):
    blocks = [ReversibleBlock(_spec(f"{i}.conv1", channels // 2, mode, rank, steps),
                              _spec(f"{i}.conv2", channels // 2, mode, rank, steps),
                              "maxpool", NEURON, frac_bits) for i in range(n_blocks)]
    chain = ReversibleSequential(*blocks, backward=backward)
    _randomise_bn(chain)
    return chain


def test_specs_make_shape_keeping_blocks_reversible_with_half_channels():
    std = network_specs("resnet18", 3, 32, 10)
    rev = network_specs("resnet18", 3, 32, 10, reversible=True)
    # stage 0 both blocks, stages 1-3 their second block (the first downsamples)
    assert reversible_block_prefixes(std) == ["layers.0.0", "layers.0.1", "layers.1.1",
                                              "layers.2.1", "layers.3.1"]
    by_name = {s.name: s for s in rev}
    assert [s.name for s in rev] == [s.name for s in std]
    assert (by_name["layers.1.1.conv2"].in_channels, by_name["layers.1.1.conv2"].out_channels) == (64, 64)
    assert by_name["layers.1.1.conv1"].reversible and not by_name["layers.1.0.conv1"].reversible
    assert by_name["layers.1.0.conv1"].in_channels == 64 and by_name["layers.1.0.conv1"].out_channels == 128
    # preset ranks are resolved on the standard network, then kept
    tt = network_specs("resnet34", 2, 48, 101, "ptt", "paper-ncaltech101", 6, reversible=True)
    assert tt[1].name == "layers.0.0.conv1" and tt[1].rank == 24 and tt[1].in_channels == 32
    model = ms_resnet("resnet18", reversible=True)
    for s in model.spec:
        if s.kind == "conv3x3":
            assert model.get_submodule(s.name).conv.in_channels == s.in_channels


def test_block_matches_the_coupling_written_by_hand():
    torch.manual_seed(0)
    block = _chain(1, channels=8, frac_bits=None)[0].double()
    x = torch.rand(3, 2, 8, 6, 6, dtype=torch.float64) * 2
    x1, x2 = x[:, :, :4], x[:, :, 4:]

    def half(inp, conv, bn):   # LIF (plain equations) -> 3x3 conv -> BN over (T*B, C, H, W)
        s = lif_multistep_naive(inp, 0.25, 0.5)
        z = F.conv2d(s.flatten(0, 1), conv.conv.weight, padding=1)
        z = F.batch_norm(z, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
        return z.reshape(inp.shape)

    y1 = x1 + half(x2, block.conv1, block.bn1)
    y2 = x2 + half(y1, block.conv2, block.bn2)
    got = block(x)
    torch.testing.assert_close(got, torch.cat((y1, y2), 2), rtol=0, atol=1e-12)
    assert 0.05 < lif_multistep_naive(x2).mean() < 0.95 and 0.05 < lif_multistep_naive(y1).mean() < 0.95


def test_round_to_grid_is_exact_and_straight_through():
    x = torch.tensor([0.1, -0.3, 1.000123, 2.0 ** -13, -(2.0 ** -13) * 3], requires_grad=True)
    y = round_to_grid(x, 12)
    expected = torch.tensor([round(v * 4096) / 4096 for v in x.tolist()])
    assert torch.equal(y.detach(), expected)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("mode,rank", [("dense", None), ("stt", 3), ("ptt", 3), ("htt", 3)])
def test_inversion_is_bit_exact_with_fixed_point_coupling(mode, rank):
    torch.manual_seed(1)
    chain = _chain(3, channels=8, mode=mode, rank=rank)
    x = torch.randn(3, 2, 8, 6, 6) * 1.5
    rep = reconstruction_report(chain, x)
    assert rep["max_abs_error"] == 0.0 and rep["flips"] == 0
    assert all(r["exact_fraction"] == 1.0 for r in rep["blocks"])
    # the blocks really spike (the check is not vacuous)
    with torch.no_grad():
        xq = round_to_grid(x, 12)
        assert 0.05 < lif_multistep_naive(xq[:, :, 4:]).mean() < 0.95
    # and an independent inversion of one block by the equations gives the input back
    b = chain[0]
    with torch.no_grad():
        y = b(xq)
        y1, y2 = y[:, :, :4], y[:, :, 4:]
        x2 = y2 - b.g(y1)
        assert torch.equal(torch.cat((y1 - b.f(x2), x2), 2), xq)


def test_float_coupling_reconstructs_to_rounding_error():
    torch.manual_seed(2)
    chain = _chain(4, channels=8, frac_bits=None)
    x = torch.randn(3, 2, 8, 6, 6) * 1.5
    rep = reconstruction_report(chain, x)
    assert rep["max_abs_error"] < 1e-5
    assert rep["spikes_checked"] == 4 * 2 * x[:, :, 4:].numel()


def _step(model, x, y):
    model.zero_grad(set_to_none=True)
    out = model(x)
    F.cross_entropy(out.mean(dim=(0, 3, 4)) if out.dim() == 5 else out, y).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode,rank", [("dense", None), ("ptt", 3), ("htt", 2)])
@pytest.mark.parametrize("backward", ["naive", "streamlined"])
def test_gradients_equal_plain_autograd_on_random_chains(mode, rank, backward):
    torch.manual_seed(3)
    chain = _chain(3, channels=8, mode=mode, rank=rank).double()
    x = (torch.randn(3, 2, 8, 6, 6, dtype=torch.float64) * 1.5).requires_grad_()
    y = torch.tensor([1, 5])
    set_backward(chain, "autograd")
    out_ref, grads_ref = _step(chain, x, y)
    dx_ref = x.grad.clone()
    x.grad = None
    set_backward(chain, backward)
    out, grads = _step(chain, x, y)
    assert torch.equal(out, out_ref)
    torch.testing.assert_close(x.grad, dx_ref, rtol=1e-12, atol=1e-14)
    assert grads.keys() == grads_ref.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-12, atol=1e-14, msg=name)
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "conv" in n)


def test_gradients_and_bn_statistics_equal_autograd_on_the_demo_data():
    from ttsnn.sw.data import load_dataset

    train_set, _, info = load_dataset("digits", timesteps=2, size=8)
    x = torch.stack([train_set[i][0] for i in range(16)])
    y = torch.tensor([train_set[i][1] for i in range(16)])
    results = {}
    for backward in ("autograd", "naive", "streamlined"):
        torch.manual_seed(4)
        model = ms_resnet("tiny", "ptt", ranks=4, in_channels=info.in_channels, timesteps=2,
                          num_classes=info.num_classes, input_size=8, reversible=True,
                          reversible_backward=backward)
        model.train()
        out, grads = _step(model, x, y)
        stats = {n: b.clone() for n, b in model.named_buffers()}
        results[backward] = (out, grads, stats)
    out_ref, grads_ref, stats_ref = results["autograd"]
    for backward in ("naive", "streamlined"):
        out, grads, stats = results[backward]
        assert torch.equal(out, out_ref)
        for name in grads_ref:   # float32: summation order may differ in the last bits
            torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-4, atol=1e-6, msg=name)
        for name in stats_ref:   # running statistics updated exactly once per step
            assert torch.equal(stats[name], stats_ref[name]), name
    assert int(stats_ref["layers.0.0.bn1.num_batches_tracked"]) == 1


def test_saved_memory_does_not_grow_with_depth():
    x = torch.randn(2, 2, 8, 6, 6, requires_grad=True)

    def saved(model):
        return saved_tensor_bytes(lambda: model(x))[1]

    rev = [saved(_chain(n, channels=8)) for n in (1, 4)]
    std_blocks = [[BasicBlock(_spec("a", 8).dense(), _spec("b", 8).dense(), "maxpool", NEURON)
                   for _ in range(n)] for n in (1, 4)]
    std = [saved(torch.nn.Sequential(*b)) for b in std_blocks]
    act = x.numel() * 4
    assert rev[0] == rev[1] <= 2 * act          # the chain's output (and its input on the grid)
    assert std[1] > 3.5 * std[0] > 3.5 * act    # standard blocks keep every layer's tensors


def test_no_state_carried_between_calls_and_eval_mode_inverts():
    torch.manual_seed(5)
    chain = _chain(2, channels=8)
    x = round_to_grid(torch.randn(3, 2, 8, 6, 6), 12)
    with torch.no_grad():
        first, second = chain(x), chain(x)
    assert torch.equal(first, second)   # the LIF restarts from u = 0 at every call
    chain.eval()
    assert reconstruction_report(chain, x)["max_abs_error"] == 0.0


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="reversible_backward"):
        ms_resnet("tiny", reversible=True, reversible_backward="fast")
    with pytest.raises(ValueError, match="frac_bits"):
        ms_resnet("tiny", reversible=True, reversible_frac_bits=40)
    with pytest.raises(ValueError, match="true or false"):
        ms_resnet("tiny", reversible="yes")
    with pytest.raises(ValueError, match="expected"):
        _chain(1, channels=8)[0](torch.zeros(3, 2, 6, 6, 6))
    with pytest.raises(ValueError, match="unknown reversible backward"):
        set_backward(_chain(1), "other")


def test_training_cli_config_key_and_checkpoint(tmp_path):
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.commands.train import add_arguments, config_from_args
    from ttsnn.sw.train import TrainConfig, train
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--reversible"])).reversible is True
    assert config_from_args(parser.parse_args([])).reversible is False
    with pytest.raises(ValueError, match="reversible"):
        TrainConfig(reversible="yes").validate()
    cfg = TrainConfig(arch="tiny", mode="ptt", ranks="uniform:4", timesteps=2, dataset="digits",
                      size=8, epochs=1, batch_size=32, seed=0, out=str(tmp_path / "run"), threads=1,
                      max_train_samples=64, max_test_samples=32, reversible=True).validate()
    summary = train(cfg, progress=False, log=lambda s: None)
    assert math.isfinite(summary["final_train_acc"])
    model, meta = load_model(summary["checkpoint"])
    assert meta["model"]["hparams"]["reversible"] is True
    assert isinstance(model.layers[0][0], ReversibleBlock)


def test_bench_command_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    from ttsnn.sw.__main__ import main

    png = tmp_path / "rev.png"
    argv = ["bench-reversible", "--depths", "1,2", "--timesteps", "2", "--channels", "8", "--size", "4",
            "--networks", "none", "--reps", "1", "--warmup", "0", "--threads", "1", "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| stack |")]
    assert len(rows) == 2 * 5
    assert "float coupling" in out and "fixed coupling (2 blocks" in out
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="--variants"):
        main(argv + ["--variants", "standard,fast"])
    with pytest.raises(ValueError, match="--networks"):
        main(argv[:-2] + ["--networks", "resnet50"])


def test_float_coupling_can_flip_a_spike_at_the_threshold_fixed_point_cannot():
    # x2 one float32 step above V_th = 0.5 spikes; y2 = x2 + 3.0 rounds the step away (float32
    # has 2**-22 steps in [2, 4)), so y2 - 3.0 = 0.5 exactly: the recomputed LIF does not spike
    block = _chain(1, channels=2, frac_bits=None)[0]
    block.f = lambda x2: torch.zeros_like(x2)
    block.g = lambda y1: torch.full_like(y1, 3.0)
    x = torch.zeros(1, 1, 2, 1, 1)
    x[0, 0, 1] = 0.5 + 2.0 ** -24
    with torch.no_grad():
        x_rec = block.inverse(block(x))
    assert x_rec[0, 0, 1].item() == 0.5 and x[0, 0, 1].item() > 0.5
    assert lif_multistep_naive(x[:, :, 1:]).item() == 1.0
    assert lif_multistep_naive(x_rec[:, :, 1:]).item() == 0.0      # the flip
    # on the 2**-12 grid every value and sum is exact: the input comes back bit for bit
    block.frac_bits = 12
    xq = round_to_grid(x + torch.tensor([0.0, 2.0 ** -12]).view(1, 1, 2, 1, 1), 12)
    with torch.no_grad():
        assert torch.equal(block.inverse(block(xq)), xq)
    assert lif_multistep_naive(xq[:, :, 1:]).item() == 1.0


def test_memory_tracker_runs_on_a_reversible_network():
    # PyTorch's MemTracker hooks every module call; the chain's no-grad forward must not hand
    # it graph-carrying tensors (it failed with "Expected gradient function to be set")
    from ttsnn.sw.bench import peak_step_memory

    model = ms_resnet("tiny", in_channels=2, timesteps=2, input_size=8, reversible=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(3, 2, 8, 8), torch.tensor([1, 2, 3])

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    mem = peak_step_memory(step, model, opt)
    assert mem is None or mem["peak_bytes"] > mem["activation_bytes"] > 0


def test_membranes_outside_the_exact_range_are_reported():
    chain = _chain(1, channels=8)
    x = torch.randn(2, 2, 8, 6, 6, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chain(x).sum().backward()                     # |x| ~ 1: inside 2**11, silent
    with pytest.warns(RuntimeWarning, match="fixed-point coupling is exact"):
        chain(x * 4096).sum().backward()
