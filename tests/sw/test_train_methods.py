"""The Table III training methods as options of ``python -m sw train`` (issue 20): norm tdbn/tebn,
loss tet, nda. Each option must change the model, the loss or the data as its definition says;
the losses are checked against the TET equation written out here."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ttsnn.sw.__main__ import main
from ttsnn.sw.checkpoint import load_model
from ttsnn.sw.cli_util import run_cli
from ttsnn.sw.layers import BatchNormTB
from ttsnn.sw.plugin.methods import TemporalEffectiveBN, ThresholdDependentBN
from ttsnn.sw.train import PerTimestepLogits, TrainConfig, build_from_config, train


def _cfg(tmp_path, **kw):
    base = dict(arch="tiny", mode="ptt", ranks="uniform:4", timesteps=2, dataset="digits", size=8, epochs=1,
                batch_size=16, seed=5, out=str(tmp_path / "run"), threads=1, max_train_samples=32,
                max_test_samples=16)
    base.update(kw)
    return TrainConfig(**base).validate()


def _quiet(_msg):
    pass


def _norms(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


@pytest.mark.parametrize("norm,cls", [("tdbn", ThresholdDependentBN), ("tebn", TemporalEffectiveBN)])
def test_norm_option_builds_trains_and_reloads_with_that_norm(tmp_path, norm, cls):
    plain = _norms(build_from_config(_cfg(tmp_path))[0])
    assert plain and all(type(m) is BatchNormTB for m in plain.values())
    cfg = _cfg(tmp_path, norm=norm)
    model = build_from_config(cfg)[0]
    norms = _norms(model)
    # every BatchNorm of the plain model, and only those, is now the method's norm
    assert sorted(norms) == sorted(plain) and all(type(m) is cls for m in norms.values())
    if norm == "tdbn":
        for name, m in norms.items():
            summed = name.endswith(".bn2") or name.endswith("shortcut.bn")
            assert m.alpha == pytest.approx(1 / math.sqrt(2) if summed else 1.0), name
            assert m.v_threshold == 0.5  # the LIF threshold of the model
    else:
        assert all(m.timesteps == 2 and m.p.shape == (2,) for m in norms.values())
    s = train(cfg, progress=False, log=_quiet)
    assert s["epochs"] == 1 and 0 <= s["final_test_acc"] <= 1
    reloaded, meta = load_model(tmp_path / "run" / "last.pt")
    assert meta["model"]["hparams"]["norm"] == norm
    assert all(type(m) is cls for m in _norms(reloaded).values())
    if norm == "tebn":  # the per-timestep scales are trained (they start at 1)
        p = torch.stack([m.p.detach() for m in _norms(reloaded).values()])
        assert not torch.equal(p, torch.ones_like(p))


def _tet_by_hand(outputs, y, lam, phi=1.0):
    """(1 - lam) * (1/T) sum_t (1/B) sum_b CE(O[t, b], y_b) + lam * mean((O - phi)^2), term by term."""
    steps, batch, _ = outputs.shape
    ce = 0.0
    for t in range(steps):
        for b in range(batch):
            row = outputs[t, b].double()
            ce += float(torch.logsumexp(row, 0) - row[y[b]])
    ce /= steps * batch
    mse = float(((outputs.double() - phi) ** 2).mean())
    return (1 - lam) * ce + lam * mse


def _first_batch(cfg):
    model, train_set, _, _, _ = build_from_config(cfg)
    xs, ys = zip(*[train_set[i] for i in range(len(train_set))])
    return model, torch.stack(xs), torch.tensor(ys)


def test_tet_loss_option_trains_on_the_tet_equation(tmp_path):
    # lr 0: the reported training loss is the loss of the initial model on the one batch
    kw = dict(lr=0.0, momentum=0.0, weight_decay=0.0, batch_size=32, tet_lambda=0.25)
    cfg = _cfg(tmp_path, loss="tet", out=str(tmp_path / "tet"), **kw)
    model, x, y = _first_batch(cfg)
    model.train()
    per_step = PerTimestepLogits(model)(x)
    assert per_step.shape == (2, 32, 10)
    # the model's forward is the mean of the per-timestep logits (fc is linear)
    assert torch.allclose(per_step.mean(0), model(x), atol=1e-5)
    want = _tet_by_hand(per_step.detach(), y, lam=0.25)
    want_ce = float(F.cross_entropy(per_step.detach().mean(0), y))
    assert abs(want - want_ce) > 1e-3  # the two losses differ on this case
    train(cfg, progress=False, log=_quiet)
    row = json.loads((tmp_path / "tet" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_loss"] == pytest.approx(want, rel=1e-5)
    train(_cfg(tmp_path, out=str(tmp_path / "ce"), **kw), progress=False, log=_quiet)
    row = json.loads((tmp_path / "ce" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_loss"] == pytest.approx(want_ce, rel=1e-5)


def test_nda_option_augments_every_event_batch(tmp_path, monkeypatch):
    import ttsnn.sw.train as train_mod

    seen = []
    real = train_mod.nda_augment

    def spy(x, gen):
        seen.append(tuple(x.shape))
        out = real(x, gen)
        assert set(out.unique().tolist()) <= {0.0, 1.0}  # events stay spikes
        return out

    monkeypatch.setattr(train_mod, "nda_augment", spy)
    kw = dict(dataset="digits-events", mode="dense", ranks=None)
    train(_cfg(tmp_path, nda=True, out=str(tmp_path / "nda"), **kw), progress=False, log=_quiet)
    assert seen == [(16, 2, 2, 8, 8)] * 2  # two batches of [B, T, C, H, W] frames
    train(_cfg(tmp_path, out=str(tmp_path / "plain"), **kw), progress=False, log=_quiet)
    assert len(seen) == 2
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True)["model"]["state_dict"] for d in ("nda", "plain"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # augmented data trained another model


def test_method_options_are_validated_with_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="norm must be one of bn, tdbn, tebn"):
        _cfg(tmp_path, norm="groupnorm")
    with pytest.raises(ValueError, match="loss must be one of ce, tet"):
        _cfg(tmp_path, loss="mse")
    with pytest.raises(ValueError, match="tet_lambda"):
        _cfg(tmp_path, tet_lambda=2)
    with pytest.raises(ValueError, match="choose one"):
        _cfg(tmp_path, nda=True, augment=True)
    with pytest.raises(ValueError, match="reversible"):
        _cfg(tmp_path, norm="tdbn", reversible=True)
    with pytest.raises(ValueError, match="not event data"):
        build_from_config(_cfg(tmp_path, nda=True))
    out = str(tmp_path / "cli")
    assert run_cli(main, ["train", "--set", "norm=bn2", "--out", out, "--no-progress"]) == 2
    assert "norm must be one of bn, tdbn, tebn" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse lists the choices
        main(["train", "--loss", "hinge", "--out", out])
    assert "choose from 'ce', 'tet'" in capsys.readouterr().err
    assert run_cli(main, ["train", "--nda", "--out", out, "--no-progress"]) == 2
    assert "not event data" in capsys.readouterr().err


def test_resume_keeps_the_methods_and_hardware_refuses_tdbn(tmp_path):
    cfg = _cfg(tmp_path, norm="tdbn", loss="tet")
    train(cfg, progress=False, log=_quiet)
    with pytest.raises(ValueError, match="norm"):
        train(_cfg(tmp_path, epochs=2, loss="tet"), resume=True, progress=False, log=_quiet)
    s = train(_cfg(tmp_path, epochs=2, norm="tdbn", loss="tet"), resume=True, progress=False, log=_quiet)
    assert s["resumed_from_epoch"] == 1
    from ttsnn.sw.quantize import fold_batchnorm

    model, _ = load_model(tmp_path / "run" / "last.pt")
    with pytest.raises(ValueError, match="cannot fold|not a plain BatchNorm"):
        fold_batchnorm(model.bn1, model.bn1.num_features)
