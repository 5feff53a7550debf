"""tinySNN's search on the accelerator's formats, the sw/ side (sw/tinysnn/accelerator.py): memory
by hand, the integer network against the golden model layer by layer, ITQ fine-tuning."""

from __future__ import annotations

import pytest
import torch

from ttsnn.sw import golden
from ttsnn.sw.quantize import capture_layer_io, layer_context, tt_layer_names
from ttsnn.sw.resnet import ms_resnet
from ttsnn.sw.tinysnn import accelerator as A

WIDTHS = {"weight": 8, "activation": 8, "accumulator": 16, "membrane": 16, "affine_scale": 16,
          "leak_mul": 8, "host_data": 32}


def _model(mode: str = "ptt"):
    torch.manual_seed(0)
    return ms_resnet("tiny", mode, ranks=4, in_channels=1, num_classes=10, timesteps=2, input_size=8,
                     v_threshold=0.1).eval()


def test_memory_of_one_layer_by_hand():
    # Cin 4, rank 2, Cout 3: G1 4x2, G2 and G3 3x2x2 each, G4 2x3 = 8 + 12 + 12 + 6 = 38 weights;
    # 3 channels (2 scales + 1 bias each), 1 threshold, 1 leak multiplier, 12 neurons (3 x 2 x 2)
    shapes = [{"name": "l", "in_channels": 4, "rank": 2, "out_channels": 3, "weights": 38, "neurons": 12}]
    wd = dict(WIDTHS)
    assert A.memory_bits(shapes, wd) == 38 * 8 + 6 * 16 + 3 * 16 + 16 + 8 + 12 * 16 == 664
    assert A.memory_bits(shapes, dict(wd, weight=4)) == 664 - 38 * 4
    assert A.memory_bits(shapes, dict(wd, membrane=8)) == 664 - (3 + 1 + 12) * 8
    assert A.fp32_memory_bits(shapes) == (38 + 6 + 3 + 1 + 1 + 12) * 32


def test_layer_shapes_count_the_cores_and_the_output_neurons():
    model = _model()
    shapes = A.layer_shapes(model)
    assert [s["name"] for s in shapes] == tt_layer_names(model)
    for s in shapes:
        conv = layer_context(model, s["name"]).conv
        cores = sum(getattr(conv, g).weight.numel() for g in ("g1", "g2", "g3", "g4"))
        assert s["weights"] == cores
    # tiny at 8x8: stage 0 keeps 8x8 (16 channels), stage 1 pools to 4x4 (32 channels)
    assert [s["neurons"] for s in shapes] == [16 * 64, 16 * 64, 32 * 16, 32 * 16]


def test_candidate_checks_and_accumulator_growth():
    c = A.Candidate(12, 8, 16)
    assert c.widths(WIDTHS).accumulator == 20          # one 12 x 8-bit product must fit
    assert A.Candidate(4, 4, 8).widths(WIDTHS).accumulator == 16
    assert A.Candidate(6, 6, 12, "truncate", "ITQ").name == "ITQ w6 a6 m12 truncate"
    with pytest.raises(ValueError, match="membrane width"):
        A.Candidate(8, 8, 6)
    with pytest.raises(ValueError, match="rounding"):
        A.Candidate(8, 8, 16, "up")
    with pytest.raises(ValueError, match="2..32"):
        A.Candidate(1, 8, 16)


@pytest.mark.parametrize("mode", ["ptt", "stt"])
def test_integer_network_layers_equal_the_golden_model_per_sample(mode):
    """Each TT layer of the batched integer forward gives, sample by sample, what
    sw.golden.golden_layer gives (the co-simulation's reference) on the same input."""
    model = _model(mode)
    x = torch.rand(6, 1, 8, 8)
    wd = A.Candidate(6, 6, 12, "nearest").widths(WIDTHS)
    q = A.quantize_network(model, x[:4], wd, "nearest")
    name = tt_layer_names(model)[1]                    # conv2: has the residual input
    ctx = layer_context(model, name)
    io = capture_layer_io(model, ctx, x)
    layer = A._FrozenIntegerLayer(ctx.conv, q[name], wd)
    spikes, current, _ = layer.forward(io["spikes"], io["residual"])
    from ttsnn.sw.quantize import quantize_residual
    res_q = quantize_residual(io["residual"], q[name], wd)
    for b in range(x.shape[0]):
        ref = golden.golden_layer(q[name], io["spikes"][:, b].to(torch.int64), res_q[:, b], wd)
        assert torch.equal(spikes[:, b].to(torch.uint8), ref.spikes)
    logits = A.integer_forward(model, x, q, wd)
    assert logits.shape == (6, 10) and torch.isfinite(logits).all()


def test_eight_bit_formats_keep_the_float_predictions_close():
    model = _model()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    wd = A.Candidate(8, 8, 16).widths(WIDTHS)
    q = A.quantize_network(model, x, wd)
    agree = (A.integer_forward(model, x, q, wd).argmax(1) == model(x).argmax(1)).double().mean()
    assert agree >= 0.75
    assert 0.0 <= A.accuracy(model, [(x, y)], q, wd) <= 1.0
    with pytest.raises(ValueError, match="no evaluation samples"):
        A.accuracy(model, [])


def test_itq_fine_tuning_changes_the_weights_and_reports_finite_losses():
    from ttsnn.gen.config import GradientFormats

    model = _model()
    before = layer_context(model, "layers.0.0.conv1").conv.g4.weight.detach().clone()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    losses = A.finetune_on_accelerator(model, [(x, y), (x, y)], A.Candidate(6, 6, 12).widths(WIDTHS),
                                       GradientFormats(), "stochastic", lr=0.05)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(before, layer_context(model, "layers.0.0.conv1").conv.g4.weight)
    assert A.GRADIENT_ROUNDING["truncate"] == "floor"
