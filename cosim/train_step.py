"""One training step of one TT layer of a trained network on the generated RTL
(``python -m cosim train-step``): forward, backward and weight gradients under Verilator on
real data, each compared bit for bit with the golden models, and the RTL's gradients against
float autograd.

The network runs forward and backward in float on a real labelled image; hooks capture the
layer's input spikes, shortcut input and incoming gradients (sw/gradcheck.py). The layer is
quantised (sw/hwlayer.py). On the RTL: the forward tiles (the shared driver), then the
backward as tiles with their halo rings (gen/backward/host.py). The trace the backward
reads comes from the RTL's forward alone: the trace words its LIF array writes (per output
neuron and timestep the spike, the surrogate-window bit ``lo < u < hi`` with the bounds of the
layer's surrogate in the descriptor, and a pooling layer's arg-max; docs/host_interface.md,
region ``trace``), which the host reads with the membranes; no window bit is derived from a
membrane and no arg-max comes from the golden model. The golden backward reads the golden
forward's trace (``sw.golden_backward.forward_trace``), so a trace mismatch shows in the
backward comparison too, and ``forward_match`` compares the trace words themselves.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from ttsnn.sw.cli_util import UserError

__all__ = ["train_step", "format_train_step", "backward_on_rtl", "rtl_trace", "trace_matches"]


def _labelled_sample(meta: dict, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ttsnn.sw.commands.eval import eval_config, load_eval_data
    from ttsnn.sw.train import _to_model_input

    if sample < 0:
        raise UserError(f"--sample must be >= 0, got {sample}")
    ds, info = load_eval_data(eval_config(meta), train_split=False, max_samples=sample + 1)
    if len(ds) <= sample:
        raise UserError(f"the test split of {info.name} has only {len(ds)} samples")
    x, y = ds[sample]
    return _to_model_input(x.unsqueeze(0), info), torch.tensor([int(y)])


def backward_on_rtl(target, hw, q, trace, e_int, g_extra_int, shifts, params, console=None):
    """One sample's integer backward of layer ``q`` on the RTL: ``trace`` (``[T, 1, ...]``,
    :class:`sw.golden_backward.ForwardTrace` of the whole layer), ``e_int``/``g_extra_int``
    ``[T, 1, C, Ho, Wo]``, the shifts the golden model used. Runs the layer as tiles with
    their halo rings, each tile's timesteps in chunks where the driver chose them, in one
    simulator process; returns ``(result, programs, wall_s)`` (``programs``: the
    :class:`gen.backward.host.BackwardTile` list, one per tile and chunk)."""
    import contextlib
    import tempfile
    from pathlib import Path

    from ttsnn.cosim.backward import simulate_backward
    from ttsnn.gen.backward.host import backward_layer_programs, combine_tiles

    first = lambda t: None if t is None else t[:, 0].numpy()  # noqa: E731
    tiles = backward_layer_programs(hw, q, trace.x[:, 0, :, 1:-1, 1:-1].numpy(), first(e_int),
                                    first(trace.spikes), first(trace.window), first(trace.argmax),
                                    shifts, first(g_extra_int), params.height_mul, params.height_shift)
    status = (console.status(f"backward: {len(tiles)} programs (tiles x chunks of timesteps) under Verilator")
              if console else contextlib.nullcontext())
    with status:
        results = simulate_backward(target, [t.program for t in tiles],
                                    Path(tempfile.mkdtemp(prefix="cosim-backward-")),
                                    cycle_limit=lambda _: 50_000_000)
    got = combine_tiles(tiles, [t.program.decode(r.values) for t, r in zip(tiles, results)],
                        hw.gradients.wgrad_tile, q.pool)
    return got, tiles, sum(r.wall_s for r in results)


def rtl_trace(x, fwd):
    """The trace the backward reads, from the RTL forward ``fwd`` (:class:`cosim.layer.CaseResult`):
    the spikes, window bits and (pooling) arg-max of its trace words; ``x`` the layer's input
    window ``[T, 1, Cin, H + 2, W + 2]`` (the previous layer's spikes, the host's anyway)."""
    from ttsnn.sw import golden_backward as GB

    as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64)).unsqueeze(1)  # noqa: E731
    return GB.ForwardTrace(x=x, spikes=as_t(fwd.spikes).to(torch.uint8),
                           window=as_t(fwd.window).to(torch.uint8),
                           argmax=None if fwd.argmax is None else as_t(fwd.argmax))


def trace_matches(golden_trace, fwd) -> bool:
    """Whether the RTL forward's trace words (spikes, window bits, arg-max) equal the golden
    forward's trace bit for bit."""
    same = lambda a, b: np.array_equal(np.asarray(a), b[:, 0].numpy())  # noqa: E731
    if not (same(fwd.spikes, golden_trace.spikes) and same(fwd.window, golden_trace.window)):
        return False
    if golden_trace.argmax is None:
        return fwd.argmax is None
    return fwd.argmax is not None and same(fwd.argmax, golden_trace.argmax)


def _backward_on_rtl(target, hl, q, saved, cap, hw, fwd, console):
    """The integer backward of the layer on the RTL (tiles, the RTL forward's trace) and in the
    golden model (the golden forward's trace)."""
    from ttsnn.sw import golden_backward as GB
    from ttsnn.sw.hwlayer import quantize_gradient

    grads, params, trace = hw.gradients, saved["params"], saved["trace"]
    parts = [cap["e"]] + ([cap["g_extra"]] if cap.get("g_extra") is not None else [])
    ints, e_frac = quantize_gradient(parts, grads.width, grads.rounding, torch.Generator().manual_seed(0))
    g_extra = ints[1] if len(ints) > 1 else None
    stages = ("affine", "g4t", "g3t", "g23t", "g1t")
    auto = GB.BackwardParams(params.window_lo, params.window_hi, params.height_mul, params.height_shift,
                             {s: "auto" for s in stages})
    gold = GB.backward_layer(q, trace, ints[0], hw.widths, grads, auto, g_extra, GB.GradRounding(grads.rounding))
    got, programs, wall = backward_on_rtl(target, hw, q, rtl_trace(trace.x, fwd),
                                         ints[0], g_extra, gold.shifts, params, console)
    return gold, got, e_frac, programs, wall


def train_step(checkpoint: str, layer: str, config: Any = "paper", *, sample: int = 0,
               rtl_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the training step of ``layer`` on test image ``sample`` and return the report."""
    from rich.console import Console

    from ttsnn.cosim.layer import LayerCase, RtlTarget, run_cases
    from ttsnn.cosim.toolchain import setup_toolchain
    from ttsnn.gen.config import HardwareConfig, load_config
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.gradcheck import capture_layer_gradients, float_layer_gradients, gradient_cosines
    from ttsnn.sw.hwlayer import HardwareLayer
    from ttsnn.sw.quantize import layer_context, quantize_residual

    console = Console(stderr=True, quiet=not progress)
    setup_toolchain()
    hw = config if isinstance(config, HardwareConfig) else load_config(config)
    model, meta = load_model(checkpoint)
    ctx = layer_context(model, layer)                 # lists the TT layers when the name is wrong
    x, y = _labelled_sample(meta, sample)
    t0 = time.monotonic()
    with console.status("float forward and backward of the network; quantising the layer"):
        cap = capture_layer_gradients(model, ctx, x, y)
        hl = HardwareLayer(model, layer, hw, calib_samples=1)
        _, _, saved = hl.forward(cap["spikes"], cap.get("residual"))
    q, trace = saved["q"], saved["trace"]
    target = RtlTarget.for_config(hw, rtl_dir)
    spikes = cap["spikes"][:, 0].round().to(torch.int64).numpy()
    res_q = quantize_residual(cap["residual"], q, hw.widths)[:, 0].numpy() if q.residual else None
    with console.status("forward: tiles under Verilator"):
        # the full design: the backward tiles below need it, and one build serves both
        params = saved["params"]
        fwd = run_cases(target, [LayerCase(layer, q, spikes, res_q,
                                           surrogate=(params.window_lo, params.window_hi))],
                        waves="never", forward_only=False)[0]
    forward_match = bool(fwd.match and trace_matches(trace, fwd))
    gold, got, e_frac, programs, bw_wall = _backward_on_rtl(target, hl, q, saved, cap, hw, fwd, console)
    from ttsnn.cosim.backward import compare_backward
    mism = compare_backward(gold, got)
    # the RTL's integer gradients as float gradients, against float autograd of the same layer
    as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64)).unsqueeze(1)  # noqa: E731
    dw = {n: torch.from_numpy(np.asarray(v, dtype=np.int64)).unsqueeze(0) for n, v in got.dw.items()}
    g_rtl = hl.float_gradients(q, as_t(got.e_in), as_t(got.g_current), dw, gold.shifts, e_frac,
                               cap["e"].dtype)
    ref = float_layer_gradients(hl, q, cap["spikes"], cap.get("residual"), cap["e"], cap["g_extra"])
    bw_counters = {k: int(v) for k, v in got.counters.items()}
    return {
        "checkpoint": str(checkpoint), "layer": layer, "config": hw.name, "sample": sample,
        "match": forward_match and not any(mism.values()),
        "forward_match": forward_match, "forward_mismatches": int(fwd.report.mismatches),
        "mismatches": mism, "grad_cosine": gradient_cosines(g_rtl, ref),
        "shifts": dict(gold.shifts), "saturated_share": gold.saturated_share,
        "cycles": {"forward": int(fwd.cycles), "backward": bw_counters.get("cycles", 0),
                   "lif_gradient_busy": bw_counters.get("lifg_busy", 0),
                   "core_stages_busy": bw_counters.get("stage_busy", 0)},
        "backward_tiles": len({(t.row0, t.col0) for t in programs}), "backward_programs": len(programs),
        "backward_chunk": programs[0].timesteps,
        "layer_shape": {"timesteps": int(spikes.shape[0]), "in_channels": q.in_channels, "rank": q.rank,
                        "out_channels": q.out_channels, "height": int(spikes.shape[2]),
                        "width": int(spikes.shape[3]), "mode": q.mode, "pool": q.pool, "residual": q.residual},
        "counters": {"forward": {k: int(v) for k, v in fwd.counters.items()}, "backward": bw_counters},
        "trace_source": ("RTL forward trace words: spikes, window bits"
                         + (", arg-max" if q.pool else " (no pooling, no arg-max)")),
        "wall_s": time.monotonic() - t0, "backward_sim_wall_s": bw_wall,
    }


def format_train_step(rep: dict[str, Any]) -> str:
    from ttsnn.cosim.replay import layer_title

    lines = [
        layer_title("train step", rep),
        f"  forward  RTL vs golden : {'bit-exact' if rep['forward_match'] else 'MISMATCH'}",
        f"  backward RTL vs golden : " + ("bit-exact" if not any(rep["mismatches"].values()) else
                                         "MISMATCH " + ", ".join(f"{k}: {v}" for k, v in rep["mismatches"].items() if v)),
        "  gradient cosine vs float autograd: " + ", ".join(f"{k} {v:.4f}" for k, v in rep["grad_cosine"].items()),
        f"  saturated share        : {rep['saturated_share']:.4f}; shifts {rep['shifts']}",
        "  cycles                 : " + ", ".join(f"{k} {v}" for k, v in rep["cycles"].items())
        + f" ({rep['backward_tiles']} backward tiles, {rep['backward_chunk']} timestep(s) per program)",
        "  backward counters      : " + ", ".join(f"{k} {v}" for k, v in rep["counters"]["backward"].items()),
        f"  match                  : {rep['match']}",
    ]
    return "\n".join(lines)
