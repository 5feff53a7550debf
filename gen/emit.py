"""Verilog and manifest generation (``python -m gen``), deterministic and atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ttsnn.sw import fileio

from .config import HardwareConfig
from .hostmap import host_map

__all__ = ["verilog_text", "manifest", "write_outputs", "atomic_write", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``sw.fileio``), with LF line ends and mode 0644
    so that generated files read like ones written directly (a temporary file is 0600)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
    fileio.atomic_write(path, write)


def verilog_text(cfg: HardwareConfig) -> str:
    """The Verilog of ``cfg``'s accelerator (top module ``ttsnn_accel``), without source
    locations so that it does not depend on where the repository lives."""
    from amaranth.back import verilog
    from .top import TOP_NAME, Accelerator
    dut = Accelerator(cfg)
    return verilog.convert(dut, name=TOP_NAME, emit_src=False)


def manifest(cfg: HardwareConfig) -> dict[str, Any]:
    """Everything a testbench or model needs to talk to the generated Verilog."""
    from amaranth.hdl import Shape
    from .top import TOP_NAME, accelerator_signature
    ports = []
    for name, member in accelerator_signature(cfg).members.items():
        ports.append({"name": name, "direction": "in" if member.flow.name == "In" else "out",
                      "width": Shape.cast(member.shape).width})
    ports = [{"name": "clk", "direction": "in", "width": 1},
             {"name": "rst", "direction": "in", "width": 1}] + ports
    hm = host_map(cfg).to_dict()
    return {
        "manifest_version": MANIFEST_VERSION,
        "top": TOP_NAME,
        "verilog": f"{TOP_NAME}.v",
        "config": cfg.to_dict(),
        "lanes": cfg.lanes,
        "ports": ports,
        **hm,
        "done_semantics": "done rises when a tile ends and stays high until the next start",
    }


def write_outputs(cfg: HardwareConfig, out: Path) -> list[Path]:
    """Write ``<out>/ttsnn_accel.v`` and ``<out>/manifest.json``; return their paths."""
    out = Path(out)
    man = manifest(cfg)
    v_path, m_path = out / man["verilog"], out / "manifest.json"
    atomic_write(v_path, verilog_text(cfg))
    atomic_write(m_path, json.dumps(man, indent=2, sort_keys=False) + "\n")
    return [v_path, m_path]
