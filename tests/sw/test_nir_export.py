"""NIR export read back by an independent consumer (snnTorch's ``import_from_nir`` over nirtorch)
and compared with the kit's own model on the embedded digits test images.

The mapping of the kit's LIF to NIR's (sw/nir_export.py) is checked twice: on a hand-computed
sequence through a one-neuron graph, and on a trained network, where the graph read back must
give the same predictions as the kit's model with its BatchNorm folded into the convs (what the
graph describes) and logits equal up to the head's float summation order. Against the unfolded
model the folding's float rounding may flip a borderline spike; the test reports that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
snn_nir = pytest.importorskip("snntorch.import_nir")

from ttsnn.sw.cli_util import UserError, run_cli  # noqa: E402
from ttsnn.sw.nir_export import DT, check_exportable, export_nir, fold_batchnorm  # noqa: E402

TIMESTEPS = 4


def _run_consumer(net, x: torch.Tensor, steps: int) -> torch.Tensor:
    """snnTorch's network read from NIR, one timestep a call; the outputs stacked over time."""
    import snntorch.utils

    snntorch.utils.reset(net)
    outs = []
    with torch.no_grad():
        for t in range(steps):
            o = net(x[t])
            outs.append((o[0] if isinstance(o, tuple) else o).flatten(1))
    return torch.stack(outs)


def test_one_lif_neuron_reads_back_with_the_kits_semantics(tmp_path):
    # hand-computed: tau 0.25, threshold 0.5, inputs 0.3, 0.3, 0.6, 0.1, 0.7
    # u = 0.3 (no spike); 0.075 + 0.3 = 0.375 (no); 0.09375 + 0.6 = 0.69375 (spike, reset);
    # 0 + 0.1 = 0.1 (no); 0.025 + 0.7 = 0.725 (spike)
    tau, v_th, tau_m = 0.25, 0.5, DT / (1 - 0.25)
    one = np.ones(1)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}),
                                "lif": nir.LIF(tau=tau_m * one, r=tau_m / DT * one, v_leak=0 * one,
                                               v_threshold=v_th * one, v_reset=0 * one),
                                "output": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("input", "lif"), ("lif", "output")])
    nir.write(tmp_path / "lif.nir", graph)
    net = snn_nir.import_from_nir(nir.read(tmp_path / "lif.nir"))
    x = torch.tensor([0.3, 0.3, 0.6, 0.1, 0.7]).reshape(5, 1, 1)
    spikes = _run_consumer(net, x, 5).flatten()
    assert spikes.tolist() == [0, 0, 1, 0, 1]
    from ttsnn.sw.neurons import lif_multistep
    assert lif_multistep(x, tau=tau, v_threshold=v_th).flatten().tolist() == [0, 0, 1, 0, 1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny PTT network with strided downsampling, trained one short epoch on the embedded digits."""
    from ttsnn.sw.train import TrainConfig, train

    out = tmp_path_factory.mktemp("nir") / "run"
    cfg = TrainConfig(arch="tiny", mode="ptt", ranks="uniform:4", timesteps=TIMESTEPS, dataset="digits", size=16,
                      epochs=1, batch_size=32, seed=0, out=str(out), threads=2, max_train_samples=480,
                      max_test_samples=200, downsample="stride", scheduler="constant").validate()
    train(cfg, progress=False, log=lambda s: None)
    return out / "last.pt"


def test_export_reads_back_in_snntorch_and_matches_the_kits_model(trained, tmp_path, capsys):
    from ttsnn.sw.__main__ import main
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.data import load_dataset
    from ttsnn.sw.resnet import merge_to_dense

    path = tmp_path / "net.nir"
    assert run_cli(main, ["export", "--checkpoint", str(trained), "--out", str(path), "--format", "nir"]) == 0
    assert "NIR graph of the merged ptt network" in capsys.readouterr().out
    net = snn_nir.import_from_nir(nir.read(path))

    model, _ = load_model(trained)
    model.eval()
    folded = fold_batchnorm(merge_to_dense(model))
    _, test, _ = load_dataset("digits", None, timesteps=TIMESTEPS, size=16)
    x = torch.stack([test[i][0] for i in range(200)])
    with torch.no_grad():
        kit, kit_folded = model(x), folded(x)
        spikes = folded.head_lif(folded.features(x))
    consumer = _run_consumer(net, x.unsqueeze(0).expand(TIMESTEPS, *x.shape), TIMESTEPS).mean(0)
    # the network spikes, neither silent nor saturated, and its logits depend on the image (one
    # epoch on 480 images: the BatchNorm statistics are real, the accuracy is near chance)
    assert 0.01 < spikes.mean().item() < 0.9
    assert kit.std(dim=0).max().item() > 1e-2
    # the graph read back is the folded network: same predictions, logits equal but for the head's
    # summation order (time mean before vs after the fc; float32, logits of order 1)
    assert torch.equal(consumer.argmax(1), kit_folded.argmax(1))
    assert (consumer - kit_folded).abs().max().item() < 1e-5
    # against the kit's own (unfolded TT) model: folding may flip a spike within ~1e-7 of the
    # threshold; on these 200 images at most one prediction may change
    agree = (consumer.argmax(1) == kit.argmax(1)).float().mean().item()
    print(f"NIR read back by snnTorch vs the kit's PTT model: {agree * 100:.1f}% same predictions, "
          f"max |logit diff| {(consumer - kit).abs().max().item():.2e}")
    assert agree >= 199 / 200


def test_what_nir_cannot_express_is_refused_with_one_line(tmp_path, capsys):
    from ttsnn.sw.__main__ import main
    from ttsnn.sw.resnet import ms_resnet
    from tests.checkpoints import tiny_checkpoint

    with pytest.raises(UserError, match="max-pool"):
        check_exportable(ms_resnet("tiny", "ptt", ranks=4, in_channels=1, input_size=16))
    with pytest.raises(UserError, match="HTT"):
        export_nir(ms_resnet("tiny", "htt", ranks=4, in_channels=1, input_size=16, timesteps=2,
                             downsample="stride", schedule=[True, False]))
    ckpt = tiny_checkpoint(tmp_path / "maxpool.pt", "ptt")
    capsys.readouterr()
    rc = run_cli(main, ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.nir"), "--format", "nir"],
                 prog="sw")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--downsample stride" in err[0]
