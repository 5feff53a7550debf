"""The descriptor is one StructLayout: the register map and docs/host_interface.md follow it."""

from __future__ import annotations

import re
from pathlib import Path

from amaranth.hdl import Shape

from ttsnn.gen.config import load_config
from ttsnn.gen.descriptor import DESCRIPTOR, DESCRIPTOR_LAYOUT, Pass
from ttsnn.gen.hostmap import DESCRIPTOR_BASE, host_map

DOC = Path(__file__).resolve().parents[2] / "docs" / "host_interface.md"


def test_register_map_follows_the_layout():
    m = host_map(load_config("small"))
    names = [n for n, _ in DESCRIPTOR_LAYOUT]
    assert names == [f.name for f in DESCRIPTOR]
    for i, (name, field) in enumerate(DESCRIPTOR_LAYOUT):
        reg = m.register(name)
        assert reg.address == DESCRIPTOR_BASE + i
        assert reg.bits == Shape.cast(field.shape).width
        assert reg.access == "rw"
    # the descriptor registers sit between the streaming registers and the counters
    assert DESCRIPTOR_BASE + len(names) <= m.counters[0].address


def test_pass_field_holds_every_pass():
    bits = Shape.cast(DESCRIPTOR_LAYOUT["pass"].shape).width
    assert max(Pass) < (1 << bits)
    assert [p.name for p in Pass] == ["FORWARD", "BACKWARD"]


def test_doc_table_lists_the_layout_fields_in_order():
    text = DOC.read_text().split("### Descriptor", 1)[1].split("\n#", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    names = [n for row in rows for n in re.findall(r"`(\w+)`", row.split("|")[1])]
    assert names == [f.name for f in DESCRIPTOR]
