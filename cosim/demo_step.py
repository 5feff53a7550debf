"""The demo's co-simulation steps: replay one TT layer of the demo's PTT model on the RTL, one
training step of it (forward, backward, weight gradients) on the RTL, and the whole network,
every TT layer chained, on a few test images.

Listed in ``python -m sw demo``'s steps (sw/commands/demo.py imports it only when the step runs).
Uses the small configuration (its Verilator build takes under a minute; the paper one takes
minutes) unless ``TTSNN_DEMO_COSIM_CONFIG`` names another.
"""

from __future__ import annotations

import os

__all__ = ["step_replay", "step_train_step", "step_replay_network"]

DEMO_LAYER = "layers.0.0.conv1"
#: test images of the whole-network replay (about 95 s on the shared 2-core machine, small RTL)
DEMO_NETWORK_IMAGES = 4


def _checkpoint_and_config(ctx, step: str):
    """The demo's PTT checkpoint and the co-simulation configuration, or None (the failure
    recorded) when the training step did not run."""
    ckpt = ctx.path("ptt.pt")
    if not ckpt.is_file():
        ctx.failed.append(f"{step}: {ckpt} missing (the train_ptt step did not run)")
        return None
    return str(ckpt), os.environ.get("TTSNN_DEMO_COSIM_CONFIG", "small")


def step_replay(ctx) -> None:
    from cosim.replay import format_report, replay_layer

    found = _checkpoint_and_config(ctx, "replay")
    if found is None:
        return
    rep = replay_layer(found[0], DEMO_LAYER, found[1], progress=False)
    ctx.log(format_report(rep))
    ctx.results["replay"] = {k: rep[k] for k in ("layer", "config", "match", "mismatches",
                                                 "spike_agreement", "cycles", "tiles",
                                                 "utilisation", "counters")}
    if not rep["match"]:
        ctx.failed.append(f"replay: RTL differs from the golden model on {DEMO_LAYER} "
                          f"({rep['mismatches']} neuron-timesteps)")



def step_train_step(ctx) -> None:
    from cosim.train_step import format_train_step, train_step

    found = _checkpoint_and_config(ctx, "train_step")
    if found is None:
        return
    rep = train_step(found[0], DEMO_LAYER, found[1], progress=False)
    ctx.log(format_train_step(rep))
    ctx.results["train_step"] = {k: rep[k] for k in ("layer", "config", "match", "mismatches",
                                                     "grad_cosine", "cycles")}
    if not rep["match"]:
        ctx.failed.append(f"train_step: RTL differs from the golden models on {DEMO_LAYER} "
                          f"(forward match {rep['forward_match']}, backward {rep['mismatches']})")


def step_replay_network(ctx) -> None:
    from cosim.replay_network import format_network_report, replay_network

    found = _checkpoint_and_config(ctx, "replay_network")
    if found is None:
        return
    rep = replay_network(found[0], found[1], images=DEMO_NETWORK_IMAGES, progress=False)
    ctx.log(format_network_report(rep))
    ctx.results["replay_network"] = {k: rep[k] for k in (
        "config", "images", "layers_bit_exact", "golden_agreement", "float_agreement", "accuracy",
        "cycles_per_image", "inference_pj_per_image", "training_pj_per_image", "per_layer")}
    ctx.results["replay_network"]["wall_s"] = rep["simulation"]["wall_s"]
    if not (rep["layers_bit_exact"] and rep["golden_agreement"] == 1.0):
        ctx.failed.append(f"replay_network: layers bit-exact {rep['layers_bit_exact']}, golden "
                          f"agreement {rep['golden_agreement']:.3f} (must be true and 1.0)")
