"""Verilog and manifest generation (``python -m gen``), deterministic and atomic.

The design is written as one Verilog file per top-level unit: ``ttsnn_accel.v`` holds the top
module, ``ttsnn_accel.<unit>.v`` every module of that unit's hierarchy (``ttsnn_accel.e4.v``:
cluster 4's engine, affine stage and LIF lanes; ``ttsnn_accel.backward.v``: the backward
datapath). A reader of the generated code opens the unit it wants; the paper configuration's
design in one file was 5.8 MB. The manifest's ``verilog_files`` lists them, top first: give
all of them to a tool (``verilator ... $(cat files)``), or read them with
:func:`read_verilog`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ttsnn.sw import fileio

from .config import HardwareConfig
from .hostmap import host_map

__all__ = ["verilog_text", "split_verilog", "manifest", "write_outputs", "verilog_files",
           "read_verilog", "atomic_write", "MANIFEST_VERSION"]

#: 2: the Verilog split per unit (``verilog_files``); 1 had one file, ``verilog``.
MANIFEST_VERSION = 2


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


def split_verilog(text: str, top: str) -> dict[str, str]:
    """``{file name: text}`` of Amaranth's one-file Verilog ``text`` split per top-level unit
    (module docstring), top module's file first, units in their order in ``text``; each file
    keeps the generator's header line. Every module lands in exactly one file."""
    header, sep, body = text.partition("\n\n")
    if not sep or not header.startswith("/*"):
        raise ValueError("not Amaranth's Verilog: no header comment before the first module")
    # a module block: its column-0 attribute lines, `module`, ..., `endmodule`; blocks are
    # separated by one blank line and nothing inside a module starts at column 0 with "(*"
    files: dict[str, list[str]] = {}
    for block in re.split(r"\n\n(?=\(\*)", body.rstrip("\n")):
        m = re.search(r"^module\s+\\?([^\s(]+)", block, re.M)
        if m is None:
            raise ValueError(f"Verilog block without a module: {block[:80]!r}")
        name = m.group(1)
        if name == top:
            unit = None
        elif name.startswith(top + "."):
            unit = name[len(top) + 1:].split(".")[0]
        else:
            raise ValueError(f"module {name!r} is not inside the top module {top!r}'s hierarchy")
        files.setdefault(f"{top}.v" if unit is None else f"{top}.{unit}.v", []).append(block)
    if f"{top}.v" not in files:
        raise ValueError(f"top module {top!r} not found in the Verilog")
    order = [f"{top}.v"] + [n for n in files if n != f"{top}.v"]
    return {n: header + "\n\n" + "\n\n".join(files[n]) + "\n" for n in order}


def manifest(cfg: HardwareConfig, files: list[str] | None = None) -> dict[str, Any]:
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
        "verilog": f"{TOP_NAME}.v",                    # the top module's file
        "verilog_files": files if files is not None else [f"{TOP_NAME}.v"],
        "config": cfg.to_dict(),
        "lanes": cfg.lanes,
        "ports": ports,
        **hm,
        "done_semantics": "done rises when a tile ends and stays high until the next start",
    }


def write_outputs(cfg: HardwareConfig, out: Path) -> list[Path]:
    """Write the Verilog files (``<out>/ttsnn_accel*.v``) and ``<out>/manifest.json``; return
    their paths. Verilog files of an earlier generation into ``out`` that this one does not
    write (a unit since renamed) are removed, so ``out`` holds one design."""
    from .top import TOP_NAME
    out = Path(out)
    parts = split_verilog(verilog_text(cfg), TOP_NAME)
    man = manifest(cfg, list(parts))
    m_path = out / "manifest.json"
    old = _listed_files(out) - set(parts)
    paths = []
    for name, text in parts.items():
        atomic_write(out / name, text)
        paths.append(out / name)
    atomic_write(m_path, json.dumps(man, indent=2, sort_keys=False) + "\n")
    for name in old:
        (out / name).unlink(missing_ok=True)
    return paths + [m_path]


def _listed_files(out: Path) -> set[str]:
    """The Verilog files an existing manifest in ``out`` names (none if there is none or it
    cannot be read: nothing is removed then)."""
    try:
        man = json.loads((out / "manifest.json").read_text())
        names = man.get("verilog_files", [man["verilog"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and "/" not in n and n.endswith(".v")}


def verilog_files(rtl_dir: str | os.PathLike, man: dict[str, Any] | None = None) -> list[Path]:
    """The Verilog files of the design generated into ``rtl_dir``, top module's first (from
    its manifest, read unless given as ``man``; a version-1 manifest names one file)."""
    d = Path(rtl_dir)
    if man is None:
        man = json.loads((d / "manifest.json").read_text())
    names = man.get("verilog_files", [man["verilog"]])
    return [d / n for n in names]


def read_verilog(paths: list[Path] | Path) -> str:
    """The whole design's text from its files (:func:`verilog_files`), in order."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    return "".join(Path(p).read_text() for p in paths)
