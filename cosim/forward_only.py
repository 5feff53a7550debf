"""The accelerator's Verilog with the backward datapath emptied, for forward-only simulation.

About half of the generated design (on the paper configuration 65k of 127k lines of Verilog)
is the backward datapath (``ttsnn_accel.backward`` and its submodules: the transposed core
stage, the weight-gradient unit, the LIF-gradient lanes). A forward tile never starts it, yet
the Verilated model evaluates its registers and next-state logic on every clock. The forward
replays (``cosim run``/``replay``/``replay-network``) therefore simulate a copy of the design in
which that module keeps its ports but drives every output with 0 and has no logic, the same
cut as ``python -m gen.fpga --without backward`` makes in Yosys. The forward datapath, the
memories, the host interface and the counters are untouched, so a forward tile's outputs and
counters are those of the full design (the coverage and replay batches check them bit for bit
against the golden and cycle models); backward tiles and training steps keep the full design.
"""

from __future__ import annotations

import re

__all__ = ["BACKWARD_MODULE", "forward_only_verilog"]

#: The generated backward datapath's module (component ``backward`` of gen/top.py).
BACKWARD_MODULE = "\\ttsnn_accel.backward"

_MODULE_START = re.compile(r"^module\s+(\\?\S+)\s*\(", re.M)
_PORT_DECL = re.compile(r"^\s*(input|output)\b[^;]*;\s*$", re.M)


def _port_name(decl: str) -> str:
    """The port a declaration such as ``output [19:0] \\port$36557$0 ;`` names."""
    body = decl.strip().rstrip(";").split()
    name = body[-1]
    return name + " " if name.startswith("\\") else name     # escaped names end at a space


def forward_only_verilog(text: str) -> str:
    """``text`` (the Verilog of :func:`gen.emit.verilog_text`) with :data:`BACKWARD_MODULE`'s
    body replaced by its port declarations and ``assign <output> = 0;`` for every output, and
    its submodules (``\\ttsnn_accel.backward.*``) dropped. Raises ``ValueError`` when the
    module is not there (Verilog from another generator)."""
    starts = [(m.start(), m.group(1)) for m in _MODULE_START.finditer(text)]
    names = [name for _, name in starts]
    if BACKWARD_MODULE not in names:
        raise ValueError(f"no module {BACKWARD_MODULE!r} in the Verilog: cannot build a forward-only design")
    out = [text[:starts[0][0]]]
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        module = text[pos:end]
        if name.startswith(BACKWARD_MODULE + "."):
            continue
        if name == BACKWARD_MODULE:
            module = _emptied(module)
        out.append(module)
    return "".join(out)


def _emptied(module: str) -> str:
    header_end = module.index(");") + 2
    decls = [m.group(0).strip() for m in _PORT_DECL.finditer(module)]
    outputs = [_port_name(d) for d in decls if d.startswith("output")]
    lines = [module[:header_end], "  // forward-only simulation (cosim/forward_only.py): the backward datapath emptied"]
    lines += [f"  {d}" for d in decls]
    lines += [f"  assign {name} = 0;" for name in outputs]
    tail = module[module.rindex("endmodule"):]
    return "\n".join(lines) + "\n" + tail
