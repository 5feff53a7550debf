"""The demo's RTL step: generate the accelerator's Verilog for the demo's configuration.

Listed in ``python -m sw demo``'s steps (sw/commands/demo.py, which imports this module only
when the step runs). Uses the small configuration unless ``TTSNN_DEMO_COSIM_CONFIG`` names
another.
"""

from __future__ import annotations

__all__ = ["step_rtl"]


def step_rtl(ctx) -> None:
    """Generate the accelerator's Verilog and manifest for the demo's hardware configuration."""
    import os

    from ttsnn.gen.config import load_config
    from ttsnn.gen.emit import write_outputs

    cfg = load_config(os.environ.get("TTSNN_DEMO_COSIM_CONFIG", "small"))
    paths = write_outputs(cfg, ctx.path("rtl") / cfg.name)
    verilog = next(p for p in paths if p.suffix == ".v")
    lines = verilog.read_text().count("\n")
    ctx.log(f"generated {verilog} ({lines:,} lines of Verilog) for configuration '{cfg.name}': "
            f"{cfg.total_pes} PEs, {cfg.total_buffer_bytes:,} bytes of global buffers")
    ctx.results["rtl"] = {"config": cfg.name, "verilog": str(verilog), "lines": lines}
