"""The Diehl & Cook baseline of ``sw.tinysnn`` in Brian2: the peer of the speed benchmark
(``python -m sw tinysnn bench-peer``).

Run by the benchmark-only virtual environment's Python (``make brian2-venv``: Brian2 2.9.0, the
newest release the package mirror serves, which needs numpy < 2), never imported by the
project: ``python peer_brian2.py IN.npz OUT.json``. It imports only Brian2 and numpy.

The network is the one of ``sw.tinysnn.network`` (``variant = 'baseline'``) with the same
constants (passed in ``IN.npz`` as the SNNConfig's fields), written the way Brian2 models are
written: potentials relative to rest, current-based instantaneous synapses, an exc -> inh
one-to-one and an inh -> exc all-but-self connection, pair-wise STDP with nearest-spike traces
held per synapse (Brian2's event-driven traces), weights clipped and each neuron's input weights
normalised after every image, the state reset between images, an image shown again brighter
while the layer fires fewer than ``min_spikes`` times. Differences of convention from ours
(Brian2 applies a synaptic effect in the step of the spike, and its own Poisson generator) leave
the model the same but not the random streams: accuracies are compared, not spikes.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def build(cfg: dict, n_inputs: int, w0: np.ndarray, target: str):
    import brian2 as b2

    b2.prefs.codegen.target = target
    b2.seed(int(cfg["seed"]))          # Brian2's own random streams (ours differ: see the module doc)
    b2.defaultclock.dt = cfg["dt"] * b2.ms
    n = int(cfg["n_neurons"])
    ms = b2.ms
    ns = {"tau_m": cfg["tau_mem"] * ms, "tau_i": cfg["inh_tau_mem"] * ms, "tau_theta": cfg["tau_theta"] * ms,
          "tau_pre": cfg["tau_pre"] * ms, "tau_post": cfg["tau_post"] * ms, "thr": cfg["v_thresh"] - cfg["v_rest"],
          "v_reset_rel": cfg["v_reset"] - cfg["v_rest"], "thr_i": cfg["inh_v_thresh"] - cfg["inh_v_rest"],
          "reset_i": cfg["inh_v_reset"] - cfg["inh_v_rest"], "theta_plus": cfg["theta_plus"],
          "nu_pre": cfg["nu_pre"], "nu_post": cfg["nu_post"], "wmax": cfg["w_max"],
          "w_ei": cfg["w_exc_inh"], "w_ie": cfg["w_inh_exc"]}
    inp = b2.PoissonGroup(n_inputs, rates=np.zeros(n_inputs) * b2.Hz)
    exc = b2.NeuronGroup(n, """dv/dt = -v / tau_m : 1
                               dtheta/dt = -theta / tau_theta : 1
                               plastic : 1 (shared)""",
                         threshold="v >= thr + theta", reset="v = v_reset_rel; theta += theta_plus * plastic",
                         refractory=cfg["refractory"] * ms, method="exact", namespace=ns)
    inh = b2.NeuronGroup(n, "dvi/dt = -vi / tau_i : 1", threshold="vi >= thr_i", reset="vi = reset_i",
                         refractory=cfg["inh_refractory"] * ms, method="exact", namespace=ns)
    syn = b2.Synapses(inp, exc, """w : 1
                                   dxpre/dt = -xpre / tau_pre : 1 (event-driven)
                                   dxpost/dt = -xpost / tau_post : 1 (event-driven)""",
                      on_pre="""v_post += w * int(not_refractory_post)
                                xpre = 1
                                w = clip(w - plastic_post * nu_pre * xpost, 0, wmax)""",
                      on_post="""xpost = 1
                                 w = clip(w + plastic_post * nu_post * xpre, 0, wmax)""",
                      method="exact", namespace=ns)
    syn.connect()
    # our weights are [n_inputs, n_neurons]; Brian2's all-to-all order is i-major
    syn.w[:] = w0[np.asarray(syn.i[:]), np.asarray(syn.j[:])]
    e2i = b2.Synapses(exc, inh, on_pre="vi_post += w_ei * int(not_refractory_post)", namespace=ns)
    e2i.connect(j="i")
    i2e = b2.Synapses(inh, exc, on_pre="v_post -= w_ie * int(not_refractory_post)", namespace=ns)
    i2e.connect(condition="i != j")
    mon = b2.SpikeMonitor(exc, record=False)
    net = b2.Network(inp, exc, inh, syn, e2i, i2e, mon)
    return b2, net, inp, exc, inh, syn, mon


def present(b2, net, inp, exc, inh, syn, mon, pixels: np.ndarray, cfg: dict, learn: bool) -> np.ndarray:
    """One image (re-shown brighter while the layer fires too little); the spike counts."""
    rate = cfg["input_rate"]
    exc.plastic = 1.0 if learn else 0.0
    for _ in range(int(cfg["max_retries"]) + 1):
        exc.v = 0.0
        inh.vi = 0.0
        syn.xpre = 0.0
        syn.xpost = 0.0
        before = np.array(mon.count[:])
        inp.rates = pixels * rate * b2.Hz
        net.run(cfg["t_present"] * b2.ms)
        counts = np.array(mon.count[:]) - before
        if counts.sum() >= cfg["min_spikes"]:
            break
        rate += cfg["rate_step"]
    if learn:
        w = np.asarray(syn.w[:])
        j = np.asarray(syn.j[:])
        col = np.bincount(j, weights=w, minlength=int(cfg["n_neurons"]))
        total = cfg["norm_fraction"] * pixels.shape[0]
        syn.w[:] = np.where(col[j] > 0, w * total / np.maximum(col[j], 1e-30), w)
    return counts


def main(argv: list[str]) -> int:
    src, dst = argv[1], argv[2]
    data = np.load(src)
    cfg = json.loads(str(data["config"]))
    target = str(data["target"])
    train, test = data["train_pixels"], data["test_pixels"]
    t0 = time.perf_counter()
    b2, net, inp, exc, inh, syn, mon = build(cfg, train.shape[1], data["w0"], target)
    build_s = time.perf_counter() - t0
    wall, cpu = [], []
    for x in train:
        w0, c0 = time.perf_counter(), time.process_time()
        present(b2, net, inp, exc, inh, syn, mon, x, cfg, learn=True)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    label_counts = np.stack([present(b2, net, inp, exc, inh, syn, mon, x, cfg, learn=False) for x in train])
    test_counts = np.stack([present(b2, net, inp, exc, inh, syn, mon, x, cfg, learn=False) for x in test])
    with open(dst, "w") as f:
        json.dump({"brian2": b2.__version__, "numpy": np.__version__, "target": target, "build_seconds": build_s,
                   "train_wall_seconds": wall, "train_cpu_seconds": cpu,
                   "label_counts": label_counts.tolist(), "test_counts": test_counts.tolist()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
