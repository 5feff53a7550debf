"""The demo's co-simulation step: replay one TT layer of the demo's PTT model on the RTL.

Listed in ``python -m sw demo``'s steps (sw/commands/demo.py imports it only when the step runs).
Uses the small configuration (its Verilator build takes under a minute; the paper one takes
minutes) unless ``TTSNN_DEMO_COSIM_CONFIG`` names another.
"""

from __future__ import annotations

import os

__all__ = ["step_replay"]

DEMO_LAYER = "layers.0.0.conv1"


def step_replay(ctx) -> None:
    from cosim.replay import format_report, replay_layer

    ckpt = ctx.path("ptt.pt")
    if not ckpt.is_file():
        ctx.failed.append(f"replay: {ckpt} missing (the train_ptt step did not run)")
        return
    config = os.environ.get("TTSNN_DEMO_COSIM_CONFIG", "small")
    rep = replay_layer(str(ckpt), DEMO_LAYER, config, progress=False)
    ctx.log(format_report(rep))
    ctx.results["replay"] = {k: rep[k] for k in ("layer", "config", "match", "mismatches",
                                                 "spike_agreement", "cycles", "tiles",
                                                 "utilisation", "counters")}
    if not rep["match"]:
        ctx.failed.append(f"replay: RTL differs from the golden model on {DEMO_LAYER} "
                          f"({rep['mismatches']} neuron-timesteps)")

