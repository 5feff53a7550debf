"""The SATA-like accelerator's BPTT operation counts against SATA's closed-form training model
(Yin et al., TCAD 2022), re-derived here by hand from its per-layer expressions
(shared/reference/bptt.md; SATA's own code has counting bugs, so its figures are not used):

    LIF ops = K E^2 T;   forward MACs = weight-update MACs = (1 - s) C R^2 K E^2 T;
    backward MACs = (1 - du) C R^2 K H^2 T

(C in-channels, K out-channels, R kernel, E output size, H input size, T timesteps, s spike
sparsity, du membrane-gradient sparsity). Differences are explained in docs/energy_model.md.
"""

import pytest

from ttsnn.gen.config import load_config
from ttsnn.model.accelerators import make_accelerator
from ttsnn.model.counts import Sparsity
from ttsnn.model.evaluate import Workload

T, S, DU = 4, 0.9, 0.7


@pytest.fixture(scope="module")
def layers():
    wl = Workload("resnet18", 3, (32, 32), 10, T, 32)
    acc = make_accelerator("sata", load_config("paper"))
    specs = {s.name: s for s in wl.specs("dense")}
    sp = Sparsity(spike=S, grad=DU)
    return {n: (specs[n], acc.run_layer(specs[n], T, sp)) for n in
            ("layers.0.0.conv2", "layers.1.0.conv1")}


def _closed_form(C, K, R, E, H):
    return {"lif": K * E * E * T,
            "fwd_macs": (1 - S) * C * R * R * K * E * E * T,
            "wu_macs": (1 - S) * C * R * R * K * E * E * T,
            "bwd_macs": (1 - DU) * C * R * R * K * H * H * T}


def _model(res):
    f, b, w = (res.passes[p].counts for p in ("forward", "backward", "weight_update"))
    return {"lif": f.get("lif", "update", 16),
            "lif_grad": b.get("lif", "potential_gradient", 16),
            "fwd_macs": f.get("mult_pe", "accumulate", 16),
            "fwd_slots": f.get("mult_pe", "slot", 16),
            "wu_macs": w.get("mult_pe", "accumulate", 16),
            "bwd_macs": b.get("mult_pe", "mac", 8)}


def test_stride_one_layer_equals_the_closed_form(layers):
    spec, res = layers["layers.0.0.conv2"]        # 3x3, 64 -> 64, 32x32 -> 32x32
    cf, m = _closed_form(64, 64, 3, 32, 32), _model(res)
    for k in ("lif", "fwd_macs", "wu_macs", "bwd_macs"):
        assert m[k] == pytest.approx(cf[k]), k
    assert m["lif_grad"] == pytest.approx(cf["lif"])  # one potential-gradient unit per LIF op
    # the model also counts the gated slots of zero spikes (SATA's AND gates, no accumulate)
    assert m["fwd_slots"] == pytest.approx(S * 64 * 9 * 64 * 32 * 32 * T)


def test_strided_layer_backward_differs_by_the_stride_squared(layers):
    """SATA's backward count runs the transposed conv over the input size H; the MACs of a
    transposed conv are the forward conv's (each weight x output-gradient pair once), E^2 not
    H^2: for stride 2 SATA's expression is 4x the model's. Forward and weight update agree."""
    spec, res = layers["layers.1.0.conv1"]        # 3x3 stride 2, 64 -> 128, 32x32 -> 16x16
    cf, m = _closed_form(64, 128, 3, 16, 32), _model(res)
    for k in ("lif", "fwd_macs", "wu_macs"):
        assert m[k] == pytest.approx(cf[k]), k
    assert m["bwd_macs"] == pytest.approx(cf["bwd_macs"] / 4)
