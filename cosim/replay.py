"""Replay one TT layer of a trained checkpoint on the generated RTL.

The model runs on a real input of its embedded data set; hooks capture the layer's input
spikes and (for a block's second conv) the membrane-shortcut input; the layer is quantised
(calibrated on training images), tiled by the shared driver, run under Verilator and compared
with the golden model bit for bit. The report adds how close the integer layer is to the float
one (spike agreement), cycles, utilisation and every counter.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from ttsnn.cosim.runner import forward_only_default
from ttsnn.sw.cli_util import UserError

__all__ = ["replay_layer", "utilisation"]


def utilisation(counters: dict[str, int], cfg) -> dict[str, float]:
    """Busy fraction of each unit and PE utilisation of each cluster (operations / (PEs x
    cycles)) from the RTL counters."""
    cyc = max(1, int(counters.get("cycles", 0)))
    cl = cfg.clusters
    out = {}
    for name, value in counters.items():       # c1_busy, c2_busy, ..., adder_busy, lif_busy
        if name.endswith("_busy"):
            out[name] = value / cyc
    pes = {"c1_slots": cl.spike_pes, "c2_macs": cl.g2_pes, "c3_macs": cl.g3_pes, "c4_macs": cl.g4_pes}
    for name, n in pes.items():
        if name in counters:
            out[f"{name.split('_')[0]}_pe_utilisation"] = counters[name] / (n * cyc)
    return out


def replay_layer(checkpoint: str, layer: str, config: Any = "paper", *, sample: int = 0,
                 calib_samples: int = 16, weight_bits: int | None = None,
                 rounding: str = "nearest", rtl_dir: str | None = None, waves: str | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Run the replay and return its report (see module docstring). ``config``: a
    ``HardwareConfig`` or a shipped name / TOML path (loaded once here)."""
    from rich.console import Console

    from ttsnn.cosim.layer import LayerCase, RtlTarget, run_cases
    from ttsnn.cosim.toolchain import setup_toolchain
    from ttsnn.gen.config import HardwareConfig, load_config
    from ttsnn.gen.driver import Driver
    from ttsnn.sw.checkpoint import load_model
    from ttsnn.sw.commands.quantize import model_inputs
    from ttsnn.sw.quantize import layer_context, quantize_model_layer, quantize_residual

    if sample < 0:
        raise UserError(f"--sample must be >= 0, got {sample}")
    console = Console(stderr=True, quiet=not progress)
    tc = setup_toolchain()                       # fail early if the simulator is missing/old
    hw = config if isinstance(config, HardwareConfig) else load_config(config)  # loaded once
    # a given RTL directory must be the requested configuration's: check before any work
    target = RtlTarget.for_config(hw, rtl_dir) if rtl_dir is not None else None
    model, meta = load_model(checkpoint)
    layer_context(model, layer)                  # lists the TT layers when the name is wrong
    with console.status("running the model and quantising the layer"):
        calib = model_inputs(meta, "train", calib_samples)
        x = model_inputs(meta, "test", 1, start=sample)
        q, qrep, cap = quantize_model_layer(model, layer, calib, hw.widths, x,
                                            weight_bits=weight_bits, rounding=rounding)
    q.check_fits(hw.widths)                      # values outside the formats: clear error
    spikes = cap["spikes"][:, 0].round().to(dtype=torch.int64).numpy()
    residual = None
    if q.residual:
        residual = quantize_residual(cap["residual"], q, hw.widths)[:, 0].numpy()
    driver = Driver(hw)
    plan = driver.plan(q, spikes.shape)          # too big even tiled: clear error
    if target is None:
        with console.status(f"RTL for {hw.name}: generating / building (cached)"):
            target = RtlTarget.for_config(hw)
    t0 = time.monotonic()
    with console.status(f"simulating {len(plan)} tiles under Verilator"):
        res = run_cases(target, [LayerCase(layer, q, spikes, residual)], waves=waves)[0]
    wall = time.monotonic() - t0
    counters = {k: int(v) for k, v in res.counters.items()}
    cycles = counters.get("cycles", res.cycles)
    report = {
        "checkpoint": str(checkpoint), "layer": layer, "config": hw.name,
        "match": bool(res.match), "mismatches": int(res.report.mismatches),
        "compared": int(res.report.compared),
        "spike_agreement": float(qrep["spike_agreement"]),
        "membrane_mae": float(qrep["membrane_mae"]),
        "cycles": int(cycles), "tiles": int(res.tiles),
        "utilisation": utilisation(counters, target.config),
        "counters": counters,
        "layer_shape": {"timesteps": int(spikes.shape[0]), "in_channels": q.in_channels,
                        "rank": q.rank, "out_channels": q.out_channels,
                        "height": int(spikes.shape[2]), "width": int(spikes.shape[3]),
                        "mode": q.mode, "pool": q.pool, "residual": q.residual},
        "quantisation": {"shifts": [q.shift1, q.shift2, q.shift3], "affine_shift": q.affine_shift,
                         "frac_bits": q.frac_bits, "threshold": q.threshold,
                         "weight_bits": int(q.float_scales.get("weight_bits", hw.widths.weight)),
                         "rounding": rounding},
        "sample": sample, "rtl_spike_rate": float(res.spikes.mean()),
        "simulation": {"wall_s": wall, "tiles_wall_s": res.wall_s,
                       "event_wait_wall_s": res.wait_wall_s,
                       "simulated_cycles": res.span_cycles,
                       "cycles_per_second": res.cycles_per_second,
                       "design": "forward-only" if forward_only_default() else "full",
                       "toolchain": tc.describe()},
        "first_mismatches": [m.to_dict() for m in res.report.first],
        "waves": str(res.waves) if res.waves else None,
    }
    if not res.match:
        report["mismatch_report"] = res.report.format()
    return report


def layer_title(what: str, rep: dict[str, Any]) -> str:
    """``what`` of a layer report's layer, its shape, checkpoint, RTL and sample, on one line."""
    s = rep["layer_shape"]
    return (f"{what} of {rep['layer']} ({s['mode'].upper()}, Cin={s['in_channels']}, r={s['rank']}, "
            f"Cout={s['out_channels']}, {s['height']}x{s['width']}, T={s['timesteps']}"
            f"{', pool' if s['pool'] else ''}{', residual' if s['residual'] else ''}) "
            f"from {rep['checkpoint']} on the {rep['config']} RTL, test sample {rep['sample']}")


def format_report(rep: dict[str, Any]) -> str:
    lines = [
        layer_title("replay", rep),
        f"  RTL vs golden model : {'bit-exact MATCH' if rep['match'] else 'MISMATCH'} "
        f"({rep['mismatches']} of {rep['compared']} neuron-timesteps differ)",
        f"  integer vs float    : spike agreement {rep['spike_agreement']:.4f}, membrane MAE "
        f"{rep['membrane_mae']:.4f}",
        f"  cycles              : {rep['cycles']} over {rep['tiles']} tiles",
        "  utilisation         : " + ", ".join(f"{k} {v:.3f}" for k, v in rep["utilisation"].items()),
        "  counters:",
    ]
    for k, v in rep["counters"].items():
        lines.append(f"    {k:<18} {v}")
    sim = rep["simulation"]
    if sim.get("cycles_per_second"):
        lines.append(f"  simulation          : {sim['cycles_per_second']:.0f} cycles/s "
                     f"(whole tiles, streamed host traffic included), {sim['wall_s']:.1f} s in "
                     f"all; {sim['toolchain']}")
    if not rep["match"]:
        lines.append(rep["mismatch_report"])
        if rep.get("waves"):
            lines.append(f"  waveform: {rep['waves']}")
    return "\n".join(lines)
