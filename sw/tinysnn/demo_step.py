"""The demo's tinySNN step (``make demo``): a short tinySNN run on the embedded digits.

A few hundred training images at a shortened presentation (100 ms) and 50 neurons, so the step
stays within seconds; the full-size figures are docs/tinysnn.md's (``python -m sw tinysnn explore``).
"""

from __future__ import annotations

import sys
import time

DEMO_TRAIN_IMAGES = 300
DEMO_NEURONS = 50
DEMO_PRESENT_MS = 100.0


def step_tinysnn(ctx) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the per-step tensors are small: more threads only add synchronisation
    try:
        _run(ctx)
    finally:
        torch.set_num_threads(threads)


def _run(ctx) -> None:
    from ttsnn.sw.tinysnn.config import SNNConfig
    from ttsnn.sw.tinysnn.data import load_images
    from ttsnn.sw.tinysnn.experiment import evaluate, quant_spec, save_model, train_model

    t0 = time.perf_counter()
    train = load_images("digits", True).head(DEMO_TRAIN_IMAGES)
    test = load_images("digits", False)
    cfg = SNNConfig(n_inputs=train.pixels.shape[1], n_neurons=DEMO_NEURONS, t_present=DEMO_PRESENT_MS,
                    seed=ctx.args.seed).validate()
    ctx.log(f"--- tinySNN: STDP on {len(train)} embedded digits ({cfg.n_neurons} neurons, {cfg.steps} steps/image)")
    model = train_model(cfg, train, progress=not ctx.args.no_progress and sys.stderr.isatty())
    fp32 = evaluate(model, train, test)
    spec8 = quant_spec(model.ranges, 8, 8, "nearest")
    q8 = evaluate(model, train, test, spec8)
    save_model(model, ctx.path("tinysnn.pt"))
    res = {"train_images": len(train), "test_images": len(test), "neurons": cfg.n_neurons,
           "fp32_accuracy": fp32["accuracy"], "ptq8_accuracy": q8["accuracy"],
           "memory_saving_8bit": fp32["memory_bits"] / q8["memory_bits"], "seconds": time.perf_counter() - t0,
           "model": str(ctx.path("tinysnn.pt"))}
    ctx.results["tinysnn"] = res
    ctx.log(f"tinySNN test accuracy {res['fp32_accuracy']:.3f} (FP32), {res['ptq8_accuracy']:.3f} (8-bit weights "
            f"and neuron parameters, {res['memory_saving_8bit']:.2f}x less memory); {res['seconds']:.1f} s")
    if res["fp32_accuracy"] < 2 * 0.1:
        ctx.failed.append(f"tinySNN accuracy {res['fp32_accuracy']:.3f} is not above twice chance (0.1)")
