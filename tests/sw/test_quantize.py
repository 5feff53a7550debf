"""Post-training quantisation: formats, calibration (no wrap, no saturation on the calibration
data), agreement with the float layer, rounding modes and errors."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ttsnn.gen.config import load_config
from ttsnn.sw import golden
from ttsnn.sw.quantize import (compare_layer, float_layer_forward, fold_batchnorm, layer_context,
                         leak_fixed_point, quantize_model_layer, quantize_residual,
                         quantize_tt_layer, round_values, tt_layer_names)
from ttsnn.sw.tt import TTConv2d
from tests.checkpoints import tiny_checkpoint

WIDTHS = load_config("small").widths


def calibrated_layer(mode: str, cin=16, r=8, cout=16, stride=1, seed=0, rate=0.3, hw=8, t=4, b=6):
    """A TT conv with BN statistics taken from its own output, like a trained layer's."""
    torch.manual_seed(seed)
    conv = TTConv2d(cin, cout, r, mode, stride=stride)
    bn = torch.nn.BatchNorm2d(cout).eval()
    x = (torch.rand(t, b, cin, hw, hw) < rate).double()
    with torch.no_grad():
        y = conv.double()(x)
        bn.running_mean.copy_(y.mean((0, 1, 3, 4)).float())
        bn.running_var.copy_(y.var((0, 1, 3, 4)).float())
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.4)
    conv.float()
    return conv, bn, x.float()


def test_leak_fixed_point():
    assert leak_fixed_point(0.25, 8) == (1, 2)
    assert leak_fixed_point(0.5, 8) == (1, 1)
    assert leak_fixed_point(1.0, 8) == (1, 0)
    assert leak_fixed_point(0.0, 8) == (0, 0)
    m, s = leak_fixed_point(0.3, 8)
    assert m < 256 and abs(m / 2 ** s - 0.3) < 2 ** -9
    with pytest.raises(ValueError, match="tau"):
        leak_fixed_point(1.5, 8)


def test_rounding_modes():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1.2, -1.7], dtype=torch.float64)
    assert round_values(x, "nearest").tolist() == [-3, -2, -1, 1, 2, 3, 1, -2]
    assert round_values(x, "truncate").tolist() == [-2, -1, 0, 0, 1, 2, 1, -1]
    g = torch.Generator().manual_seed(0)
    v = torch.full((20000,), 0.3, dtype=torch.float64)
    r = round_values(v, "stochastic", g)
    assert set(r.unique().tolist()) == {0.0, 1.0}
    assert abs(float(r.mean()) - 0.3) < 0.02  # unbiased
    with pytest.raises(ValueError, match="rounding"):
        round_values(x, "banker")


def test_fold_batchnorm_equals_eval_bn():
    bn = torch.nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(3, 5, 4, 4)
    a, b = fold_batchnorm(bn, 5)
    ref = bn(x).double()
    assert torch.allclose(x.double() * a[:, None, None] + b[:, None, None], ref, atol=1e-5)


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_8bit_quantisation_agrees_with_float_layer(mode):
    conv, bn, x = calibrated_layer(mode)
    q = quantize_tt_layer(conv, bn, tau=0.25, v_threshold=0.5, calib_spikes=x,
                          calib_residual=None, widths=WIDTHS)
    q.check_fits(WIDTHS)
    assert q.leak_mul == 1 and q.leak_shift == 2
    assert q.threshold == round(0.5 * 2 ** q.frac_bits)
    torch.manual_seed(99)
    held_out = (torch.rand_like(x) < 0.3).float()
    rep = compare_layer(q, conv, bn, tau=0.25, v_threshold=0.5, spikes=held_out, residual=None,
                        widths=WIDTHS)
    assert rep["spike_agreement"] > 0.97, rep
    assert rep["membrane_mae"] < 0.1, rep


def test_calibration_data_neither_wraps_nor_saturates():
    """On the calibration data, the configured widths give the same result as unbounded ones."""
    for mode in ("stt", "ptt", "htt"):
        conv, bn, x = calibrated_layer(mode, seed=3)
        q = quantize_tt_layer(conv, bn, tau=0.25, v_threshold=0.5, calib_spikes=x,
                              calib_residual=None, widths=WIDTHS)
        wide = dataclasses.replace(WIDTHS, accumulator=48, membrane=40)
        unsat_act = dataclasses.replace(wide, activation=40)
        for b in range(x.shape[1]):
            xi = x[:, b].to(torch.int64)
            real = golden.golden_layer(q, xi, None, WIDTHS, intermediates=True)
            big = golden.golden_layer(q, xi, None, unsat_act, intermediates=True)
            assert torch.equal(real.q1, big.q1) and torch.equal(real.q23, big.q23), mode
            assert torch.equal(real.a4, big.a4), mode
            assert torch.equal(real.membrane, big.membrane), mode


def test_fewer_weight_bits_lose_accuracy():
    conv, bn, x = calibrated_layer("ptt", seed=5)
    errs = {}
    for bits in (8, 3):
        q = quantize_tt_layer(conv, bn, tau=0.25, v_threshold=0.5, calib_spikes=x,
                              calib_residual=None, widths=WIDTHS, weight_bits=bits)
        assert int(np.abs(q.w2).max()) <= 2 ** (bits - 1) - 1
        errs[bits] = compare_layer(q, conv, bn, tau=0.25, v_threshold=0.5, spikes=x,
                                   residual=None, widths=WIDTHS)["membrane_mae"]
    assert errs[3] > 2 * errs[8]


@pytest.mark.parametrize("rounding", ["truncate", "stochastic"])
def test_other_roundings_work_and_differ(rounding):
    conv, bn, x = calibrated_layer("stt", seed=8)
    kw = dict(tau=0.25, v_threshold=0.5, calib_spikes=x, calib_residual=None, widths=WIDTHS)
    q0 = quantize_tt_layer(conv, bn, **kw)
    q1 = quantize_tt_layer(conv, bn, rounding=rounding, seed=1, **kw)
    assert not np.array_equal(q0.w1, q1.w1) or not np.array_equal(q0.w4, q1.w4)
    rep = compare_layer(q1, conv, bn, tau=0.25, v_threshold=0.5, spikes=x, residual=None,
                        widths=WIDTHS)
    assert rep["spike_agreement"] > 0.9


def test_pool_and_residual_layer():
    conv, bn, x = calibrated_layer("ptt", stride=2, seed=4)
    torch.manual_seed(4)
    res = torch.randn(4, 6, 16, 4, 4) * 0.5
    q = quantize_tt_layer(conv, bn, tau=0.25, v_threshold=0.5, calib_spikes=x,
                          calib_residual=res, widths=WIDTHS)
    assert q.pool and q.residual
    rq = quantize_residual(res, q, WIDTHS)
    assert rq.dtype == torch.int64 and rq.shape == res.shape
    assert torch.allclose(rq.double() * 2.0 ** -q.frac_bits, res.double(), atol=2.0 ** -q.frac_bits)
    rep = compare_layer(q, conv, bn, tau=0.25, v_threshold=0.5, spikes=x, residual=res,
                        widths=WIDTHS)
    assert rep["spike_agreement"] > 0.97, rep


def test_bad_inputs():
    conv, bn, x = calibrated_layer("ptt")
    kw = dict(tau=0.25, v_threshold=0.5, calib_residual=None, widths=WIDTHS)
    with pytest.raises(ValueError, match="spikes"):
        quantize_tt_layer(conv, bn, calib_spikes=x * 0.5, **kw)
    with pytest.raises(ValueError, match=r"\[T, B, 16"):
        quantize_tt_layer(conv, bn, calib_spikes=x[:, :, :3], **kw)
    with pytest.raises(ValueError, match="weight_bits"):
        quantize_tt_layer(conv, bn, calib_spikes=x, weight_bits=12, **kw)
    with pytest.raises(ValueError, match="rounding"):
        quantize_tt_layer(conv, bn, calib_spikes=x, rounding="up", **kw)
    with pytest.raises(ValueError, match="TT convs"):
        quantize_tt_layer(torch.nn.Conv2d(16, 16, 3), bn, calib_spikes=x, **kw)
    strided = TTConv2d(16, 16, 4, "ptt", stride=2, downsample="stride")
    with pytest.raises(ValueError, match="max-pool"):
        quantize_tt_layer(strided, bn, calib_spikes=x, **kw)


def test_model_layer_capture_and_context():
    from ttsnn.sw.resnet import ms_resnet

    torch.manual_seed(0)
    # a low threshold, so that the untrained layers spike and the agreement below means something
    model = ms_resnet("tiny", "ptt", ranks=4, in_channels=1, num_classes=10, timesteps=4,
                      input_size=8, v_threshold=0.1).eval()
    names = tt_layer_names(model)
    assert names == ["layers.0.0.conv1", "layers.0.0.conv2", "layers.1.0.conv1", "layers.1.0.conv2"]
    with pytest.raises(ValueError, match="available TT layers: layers.0.0.conv1"):
        layer_context(model, "layers.9.0.conv1")
    imgs = torch.rand(6, 1, 8, 8) * 4
    for name in ("layers.0.0.conv2", "layers.1.0.conv1"):
        q, rep, cap = quantize_model_layer(model, name, imgs, WIDTHS)
        assert rep["float_chain_error"] < 1e-4, rep
        assert q.residual == name.endswith("conv2")
        assert cap["spikes"].shape[:2] == (4, 6)
        # the integer layer spikes like the float one (measured >= 0.99 at rates 0.2 and 0.4;
        # a layer that never spiked would agree only 1 - float_spike_rate)
        assert rep["float_spike_rate"] > 0.1, rep
        assert rep["spike_agreement"] > 0.97, rep


def test_quantize_command(tmp_path, capsys):
    import json

    from ttsnn.sw.__main__ import main
    from ttsnn.sw.checkpoint import save_checkpoint
    from ttsnn.sw.resnet import ms_resnet

    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, "stt", seed=0)
    assert main(["quantize", "--checkpoint", str(ckpt), "--layer", "layers.1.0.conv1", "--json",
                 "--calib-samples", "2", "--eval-samples", "2", "--config", "small",
                 "--plot", str(tmp_path / "q.png")]) == 0
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
    out = json.loads(capsys.readouterr().out)
    (row,) = out["layers"]
    assert row["layer"] == "layers.1.0.conv1" and row["pool"] is True and row["mode"] == "stt"
    assert out["eval_samples"] == 2
    # calibrated on digits, the integer layer spikes like the float one (measured 0.995 at a
    # float spike rate of 0.16; the threshold is low so that the untrained layer spikes)
    assert row["float_spike_rate"] > 0.05, row
    assert row["spike_agreement"] > 0.97 and out["mean_spike_agreement"] > 0.97, row
    with pytest.raises(ValueError, match="available TT layers: layers.0.0.conv1"):
        main(["quantize", "--checkpoint", str(ckpt), "--layer", "fc"])
    dense = tmp_path / "d.pt"
    save_checkpoint(dense, ms_resnet("tiny", "dense", in_channels=1, num_classes=10, timesteps=2,
                                     input_size=16), config={"dataset": "digits", "timesteps": 2})
    with pytest.raises(ValueError, match="no TT layers"):
        main(["quantize", "--checkpoint", str(dense)])
