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
#: test images of the whole-network replay (9 s on the small RTL for the demo model, 2026-12-07)
DEMO_NETWORK_IMAGES = 4


def _cosim_step(ctx, step: str, run, fmt, keys, failure) -> dict | None:
    """One co-simulation step on the demo's PTT checkpoint: ``run(checkpoint, config)`` gives the
    report, ``fmt`` its text for the log, ``keys`` what goes into the demo's results, and
    ``failure(report)`` a failure line or None. Records a failure (and returns None) when the
    checkpoint is missing; returns the report otherwise."""
    ckpt = ctx.path("ptt.pt")
    if not ckpt.is_file():
        ctx.failed.append(f"{step}: {ckpt} missing (the step that trains the PTT model did not run)")
        return None
    rep = run(str(ckpt), os.environ.get("TTSNN_DEMO_COSIM_CONFIG", "small"))
    ctx.log(fmt(rep))
    ctx.results[step] = {k: rep[k] for k in keys}
    problem = failure(rep)
    if problem:
        ctx.failed.append(f"{step}: {problem}")
    return rep


def step_replay(ctx) -> None:
    from ttsnn.cosim.replay import format_report, replay_layer

    _cosim_step(ctx, "replay", lambda ckpt, cfg: replay_layer(ckpt, DEMO_LAYER, cfg, progress=False), format_report,
                ("layer", "config", "match", "mismatches", "spike_agreement", "cycles", "tiles", "utilisation",
                 "counters"),
                lambda rep: None if rep["match"] else
                f"RTL differs from the golden model on {DEMO_LAYER} ({rep['mismatches']} neuron-timesteps)")


def step_train_step(ctx) -> None:
    from ttsnn.cosim.train_step import format_train_step, train_step

    _cosim_step(ctx, "train_step", lambda ckpt, cfg: train_step(ckpt, DEMO_LAYER, cfg, progress=False),
                format_train_step, ("layer", "config", "match", "mismatches", "grad_cosine", "cycles"),
                lambda rep: None if rep["match"] else
                f"RTL differs from the golden models on {DEMO_LAYER} (forward match {rep['forward_match']}, "
                f"backward {rep['mismatches']})")


def step_replay_network(ctx) -> None:
    from ttsnn.cosim.replay_network import format_network_report, replay_network

    rep = _cosim_step(
        ctx, "replay_network",
        lambda ckpt, cfg: replay_network(ckpt, cfg, images=DEMO_NETWORK_IMAGES, progress=False),
        format_network_report,
        ("config", "images", "layers_bit_exact", "golden_agreement", "float_agreement", "accuracy",
         "cycles_per_image", "inference_pj_per_image", "training_pj_per_image", "per_layer"),
        lambda rep: None if rep["layers_bit_exact"] and rep["golden_agreement"] == 1.0 else
        f"layers bit-exact {rep['layers_bit_exact']}, golden agreement {rep['golden_agreement']:.3f} "
        f"(must be true and 1.0)")
    if rep is not None:
        ctx.results["replay_network"]["wall_s"] = rep["simulation"]["wall_s"]
