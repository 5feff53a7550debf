"""The demo's co-simulation steps: replay one TT layer of the demo's PTT model on the RTL, and
one training step of it (forward, backward, weight gradients) on the RTL.

Listed in ``python -m sw demo``'s steps (sw/commands/demo.py imports it only when the step runs).
Uses the small configuration (its Verilator build takes under a minute; the paper one takes
minutes) unless ``TTSNN_DEMO_COSIM_CONFIG`` names another.
"""

from __future__ import annotations

import os

__all__ = ["step_replay", "step_train_step"]

DEMO_LAYER = "layers.0.0.conv1"


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
