"""Sparsity measured with the sw/ model on a tiny network."""

import torch

from ttsnn.model.counts import Sparsity
from ttsnn.model.sparsity import measure_sparsity
from ttsnn.sw.resnet import ms_resnet


def test_measure_sparsity_of_a_tiny_model(tmp_path):
    torch.manual_seed(0)
    model = ms_resnet("tiny", "ptt", ranks=4, in_channels=2, num_classes=10, timesteps=2, input_size=8)
    x = torch.rand(4, 2, 8, 8) * 3
    y = torch.randint(0, 10, (4,))
    res = measure_sparsity(model, [(x, y)])
    names = {s.name for s in model.spec} - {"conv1", "fc"}
    assert set(res["per_layer"]) == names
    assert all(0.0 <= v <= 1.0 for v in res["per_layer"].values())
    assert 0.0 <= res["grad"] <= 1.0
    # spikes are binary: a spiking layer's input cannot be all non-zero at these scales
    assert max(res["per_layer"].values()) > 0.0
    p = tmp_path / "s.json"
    import json
    p.write_text(json.dumps(res))
    sp = Sparsity.from_json(p)
    assert sp.per_layer == res["per_layer"]


def test_sparsity_command_on_a_checkpoint(tmp_path, capsys):
    import json

    from ttsnn.model.__main__ import main
    from ttsnn.sw.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = ms_resnet("tiny", "ptt", ranks=4, in_channels=2, num_classes=10, timesteps=2, input_size=16)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model)
    out = tmp_path / "s.json"
    assert main(["sparsity", "--checkpoint", str(ckpt), "--data", "digits-events", "--batches", "1",
                 "--batch-size", "4", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["per_layer"]) == {s.name for s in model.spec} - {"conv1", "fc"}
    sp = Sparsity.from_json(out)   # what `energy --sparsity` reads
    assert 0.0 <= sp.spike <= 1.0
    assert main(["energy", "--arch", "tiny", "--input", "2x16x16", "--classes", "10", "--timesteps", "2",
                 "--ranks", "4", "--config", "small", "--sparsity", str(out), "--json"]) == 0
    assert "measured" in capsys.readouterr().out
