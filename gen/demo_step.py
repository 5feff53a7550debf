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
    files = [p for p in paths if p.suffix == ".v"]          # the top module's file first
    lines = sum(p.read_text().count("\n") for p in files)
    ctx.log(f"generated {files[0].parent} ({len(files)} Verilog files, {lines:,} lines) for "
            f"configuration '{cfg.name}': {cfg.total_pes} PEs, {cfg.total_buffer_bytes:,} bytes "
            f"of global buffers")
    ctx.results["rtl"] = {"config": cfg.name, "verilog": str(files[0]), "files": len(files),
                          "lines": lines}
