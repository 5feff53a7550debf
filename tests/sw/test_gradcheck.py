"""The accelerator's arithmetic in PyTorch training (sw/hwlayer.py) and the gradient check
(sw/gradcheck.py, ``python -m sw grad-check``) on small untrained networks and real digits."""

from __future__ import annotations

import json

import pytest
import torch

from ttsnn.gen.config import load_config
from ttsnn.sw.gradcheck import cosine, grad_check_layer
from ttsnn.sw.hwlayer import HardwareLayer, hardware_forward, quantize_gradient
from ttsnn.sw.resnet import ms_resnet
from tests.checkpoints import tiny_checkpoint


def small_model(mode: str, seed: int = 0):
    torch.manual_seed(seed)
    return ms_resnet("tiny", mode, ranks=4, in_channels=1, num_classes=10, timesteps=2,
                     input_size=8, v_threshold=0.1).eval()


def digits(n: int = 6):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target[:n])


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_layer_by_layer_forward_is_the_model(mode):
    model = small_model(mode)
    x, _ = digits()
    with torch.no_grad():
        assert torch.equal(hardware_forward(model, x, None), model(x))


def test_quantize_gradient_scale_and_headroom():
    # 8 bits with one bit of headroom: |q| <= 63; 63 / 0.75 = 84 -> 2^6: [48, -19.2 -> -19, 0]
    (q,), frac = quantize_gradient([torch.tensor([0.75, -0.3, 0.0])], 8, "nearest")
    assert frac == 6 and q.tolist() == [48, -19, 0]
    # two tensors share one format, set by the larger
    (a, b), frac = quantize_gradient([torch.tensor([0.1]), torch.tensor([-3.0])], 8, "nearest")
    assert frac == 4 and b.tolist() == [-48] and a.tolist() == [2]
    (z,), frac = quantize_gradient([torch.zeros(3)], 8, "nearest")
    assert z.abs().sum() == 0


@pytest.mark.parametrize("mode,layer", [("ptt", "layers.0.0.conv2"), ("stt", "layers.1.0.conv1"),
                                        ("htt", "layers.1.0.conv2")])
def test_integer_gradients_follow_float_autograd(mode, layer):
    """At 16-bit gradients the integer backward equals a float backward that sees the same
    forward (spikes, windows) to 1e-3, and float autograd of the same quantised layer closely."""
    model = small_model(mode, seed=1)
    x, y = digits(8)
    res = grad_check_layer(model, layer, x, y, load_config("small"), widths=[6, 16])
    narrow, wide = res["rows"]
    assert wide["saturations"] == 0
    assert min(wide["grad_cosine_same_forward"].values()) > 0.999, wide
    assert all(abs(r - 1) < 0.01 for r in wide["norm_ratio_same_forward"].values()), wide
    assert min(wide["grad_cosine"].values()) > 0.95, wide
    # 6-bit gradients lose precision: the check must see it
    assert min(narrow["grad_cosine_same_forward"].values()) < min(wide["grad_cosine_same_forward"].values())


def test_hardware_layers_train_every_core():
    model = small_model("ptt", seed=2)
    x, y = digits(8)
    hw = load_config("small")
    layers = {n: HardwareLayer(model, n, hw) for n in ("layers.0.0.conv1", "layers.1.0.conv2")}
    loss = torch.nn.functional.cross_entropy(hardware_forward(model, x, layers), y)
    loss.backward()
    hw_grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for name in ("layers.0.0.conv1", "layers.1.0.conv2"):
        for core in ("g1", "g2", "g3", "g4"):
            p = f"{name}.{core}.weight"
            assert hw_grads[p].abs().sum() > 0, p
            assert cosine(hw_grads[p], model.get_parameter(p).grad) > 0.8, p
    # BatchNorm is frozen on the chip: its parameters get no gradient through a hardware layer
    assert hw_grads["layers.0.0.bn1.weight"] is None or hw_grads["layers.0.0.bn1.weight"].abs().sum() == 0
    assert all(layer.stats.calls == 1 for layer in layers.values())


def test_grad_check_command(tmp_path, capsys):
    from ttsnn.sw.__main__ import main

    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, "ptt", seed=0)
    assert main(["grad-check", "--checkpoint", str(ckpt), "--layer", "layers.0.0.conv1",
                 "--config", "small", "--samples", "4", "--bits", "8,16", "--json",
                 "--plot", str(tmp_path / "g.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["gradient_bits"] for r in out["rows"]] == [8, 16]
    assert set(out["grad_cosine"]) == {"input", "current", "w1", "w2", "w3", "w4"}
    assert 0.0 <= out["saturated_share"] <= 1.0
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="not a TT layer"):
        main(["grad-check", "--checkpoint", str(ckpt), "--layer", "fc"])
    with pytest.raises(SystemExit):
        main(["grad-check", "--checkpoint", str(ckpt), "--layer", "layers.0.0.conv1", "--bits", "2"])
    with pytest.raises(FileExistsError, match="--plot"):
        main(["grad-check", "--checkpoint", str(ckpt), "--layer", "layers.0.0.conv1",
              "--plot", str(tmp_path / "g.png")])


def test_hw_finetune_command(tmp_path, capsys):
    """The fine-tuning loop runs each variant from the same checkpoint on the same data: the
    float variant repeats exactly, the integer variant stays close to it on the first step (same
    weights, same batch), and the outputs are written."""
    from ttsnn.sw.__main__ import main
    from ttsnn.sw.commands.hw_finetune import load_data
    from ttsnn.sw.hwtrain import finetune

    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, "ptt", seed=0)
    args = ["hw-finetune", "--checkpoint", str(ckpt), "--out", str(tmp_path / "ft"), "--config", "small",
            "--variants", "float,nearest", "--max-train-samples", "8", "--batch-size", "4",
            "--max-test-samples", "8", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    fl, hw = out["variants"]
    assert [fl["variant"], hw["variant"]] == ["float", "nearest"]
    assert len(fl["step_loss"]) == len(hw["step_loss"]) == 2
    assert abs(fl["step_loss"][0] - hw["step_loss"][0]) < 0.1 * fl["step_loss"][0]
    assert 0.0 <= hw["final_test_acc_integer_forward"] <= 1.0
    assert (tmp_path / "ft" / "finetune.png").read_bytes()[:4] == b"\x89PNG"
    # a finished run is not replaced without --force, and the refusal comes before any work
    before = (tmp_path / "ft" / "finetune.json").read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        main(args)
    assert (tmp_path / "ft" / "finetune.json").read_bytes() == before
    assert main(args + ["--force"]) == 0
    capsys.readouterr()
    data = load_data(str(ckpt), 8, 8)
    again = finetune(str(ckpt), tmp_path / "ft2", load_config("small"), data, ("float",), batch_size=4,
                     progress=False, log=lambda s: None)
    assert again["variants"][0]["step_loss"] == fl["step_loss"]
    with pytest.raises(ValueError, match="unknown variant"):
        finetune(str(ckpt), tmp_path / "ft3", load_config("small"), data, ("fp8",))
