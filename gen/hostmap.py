"""The host interface's address map: registers, counters and buffer regions.

Plain data (the descriptor's fields come from its Amaranth layout, gen/descriptor.py): the generator builds the hardware from it, :mod:`gen.driver`,
the co-simulation and the energy model read it (through the manifest written by
``python -m gen``). docs/host_interface.md describes every entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import HardwareConfig, ceil_div
from .backward.stage_layout import STAGE_FIELDS
from .descriptor import DESCRIPTOR, descriptor_bits, descriptor_offset, descriptor_total_bits

__all__ = ["Register", "Counter", "RegionMap", "HostMap", "host_map", "ID_VALUE",
           "HOST_READ_LATENCY", "COUNTER_BITS", "DESCRIPTOR_FIELDS", "COUNTER_NAMES",
           "STREAM_REGISTERS", "STAGE_REGISTERS", "BACKWARD_COUNTERS", "BACKWARD_COUNTER_NAMES",
           "STAGE_BASE", "BACKWARD_COUNTER_BASE", "region_writes", "region_reads",
           "DESCRIPTOR_WORDS_BASE", "descriptor_words", "descriptor_word_values"]

#: Value of the read-only ID register ("TTSN" v3: streaming rows, packed lanes, backward datapath).
ID_VALUE = 0x7454_0003
#: Cycles from a ``host_read`` strobe to ``host_rvalid`` (and valid ``host_rdata``).
HOST_READ_LATENCY = 2
#: Width of every performance counter (read as two host words, low word first).
COUNTER_BITS = 48

REG_ID, REG_CTRL, REG_STATUS = 0, 1, 2
#: Width of the streaming row counters.
STREAM_BITS = 24
#: Streaming registers (docs/host_interface.md, "Streaming"): the host's progress (written,
#: also while busy) and the datapath's progress (read-only, reset by start).
STREAM_REGISTERS: tuple[tuple[str, int, str, str], ...] = (
    ("in_rows", 0x03, "rw", "input spike rows the host has written into the spike_in ring"),
    ("res_rows", 0x04, "rw", "residual rows the host has written into the residual ring"),
    ("out_taken", 0x05, "rw", "output rows the host has read out of the output ring"),
    ("in_consumed", 0x06, "r", "input spike rows cluster 1 has finished with (slot free)"),
    ("res_consumed", 0x07, "r", "residual rows the LIF array has finished with (slot free)"),
    ("out_rows", 0x08, "r", "output rows complete in the output ring"),
    ("w4_chunks", 0x09, "rw", "G4 chunks the host has written into the w4 ring (streamed G4: "
                              "descriptor w4_ring > 0)"),
    ("w4_consumed", 0x0A, "r", "G4 chunks cluster 4 has finished with (slot free)"),
    ("w2_chunks", 0x0B, "rw", "G2 chunks the host has written into the w2 ring (streamed G2/G3: "
                              "descriptor w23_ring > 0)"),
    ("w2_consumed", 0x0C, "r", "G2 chunks cluster 2 has finished with (slot free)"),
    ("w3_chunks", 0x0D, "rw", "G3 chunks the host has written into the w3 ring"),
    ("w3_consumed", 0x0E, "r", "G3 chunks cluster 3 has finished with (slot free)"),
    ("w1_chunks", 0x0F, "rw", "G1 chunks the host has written into the w1 ring (streamed G1: "
                              "descriptor w1_ring > 0)"),
    # (0x10-0x2E: the descriptor; its last address holds the last streaming register)
    ("w1_consumed", 0x2F, "r", "G1 chunks cluster 1 has finished with (slot free)"),
    # (0x30-: the backward stage registers)
    ("out_groups", 0x7F, "r", "output groups of row out_rows complete in the output ring (0 again "
                              "when the row completes; the host reads a tile's last row by groups)"),
)
DESCRIPTOR_BASE = 0x10
#: The descriptor as whole host words (``desc_word<k>``: bits ``k * host_data ..`` of
#: :data:`gen.descriptor.DESCRIPTOR_LAYOUT`), so that a tile's set-up writes it in
#: ``ceil(bits / host_data)`` beats (2 on a 256-bit port) instead of one per field.
DESCRIPTOR_WORDS_BASE = 0x70
#: The backward stage registers (``bw_<field>`` for every field of
#: :data:`gen.backward.stage_layout.STAGE_LAYOUT`), read by a tile whose ``pass`` is BACKWARD.
STAGE_BASE = 0x30
COUNTER_BASE = 0x80
BACKWARD_COUNTER_BASE = 0x100
#: (register name, stage field, bits, meaning), in register order.
STAGE_REGISTERS: tuple[tuple[str, str, int, str], ...] = tuple(
    (f"bw_{name}", name, bits, meaning) for name, bits, meaning in STAGE_FIELDS)

#: Descriptor fields: (name, bits, meaning), in register order, derived from the one layout
#: :data:`gen.descriptor.DESCRIPTOR_LAYOUT` (the hardware holds the descriptor as that layout).
DESCRIPTOR_FIELDS: tuple[tuple[str, int, str], ...] = tuple(
    (f.name, descriptor_bits(f.name), f.meaning) for f in DESCRIPTOR)
if DESCRIPTOR_BASE + len(DESCRIPTOR_FIELDS) > 0x2F:  # pragma: no cover - a design-time check
    raise AssertionError("the descriptor overlaps the streaming register w1_consumed (0x2F)")
if STAGE_BASE + len(STAGE_REGISTERS) > DESCRIPTOR_WORDS_BASE:  # pragma: no cover - a design-time check
    raise AssertionError("the stage registers overlap the descriptor words (0x70)")


def descriptor_words(host_data: int) -> int:
    """Registers ``desc_word<k>`` of a ``host_data``-bit port: the descriptor's bits in words."""
    return ceil_div(descriptor_total_bits(), host_data)


def descriptor_word_values(fields: dict[str, int], host_data: int) -> list[int]:
    """The ``desc_word<k>`` values holding descriptor ``fields`` (name -> register value; each
    field's low bits at its offset in the layout, as the per-field register keeps them)."""
    packed = 0
    for name, bits, _ in DESCRIPTOR_FIELDS:
        packed |= (int(fields[name]) & ((1 << bits) - 1)) << descriptor_offset(name)
    mask = (1 << host_data) - 1
    return [(packed >> (k * host_data)) & mask for k in range(descriptor_words(host_data))]


if DESCRIPTOR_WORDS_BASE + descriptor_words(32) > 0x7F:  # pragma: no cover - a design-time check
    raise AssertionError("the descriptor words overlap the streaming register out_groups (0x7F)")

#: Counters: name -> exact meaning (docs/host_interface.md, section Counters, has the formulas).
COUNTERS: tuple[tuple[str, str], ...] = (
    ("cycles", "cycles from start to done (busy high)"),
    ("c1_busy", "cycles cluster 1 issued a step (an accumulate of P channels, or one step per zero-halo row)"),
    ("c1_stall", "cycles cluster 1 had rows left but waited for a free line1 slot"),
    ("c1_in_wait", "cycles cluster 1 waited for the host's next input spike row"),
    ("c2_busy", "cycles cluster 2 issued a step (MAC, zero write or HTT bypass copy)"),
    ("c2_stall", "cycles cluster 2 had rows left but waited (input rows or output slot)"),
    ("c3_busy", "cycles cluster 3 issued a MAC step"),
    ("c3_stall", "cycles cluster 3 had rows left but waited (STT: q2 rows or line4 slot; "
                 "PTT/HTT: as cluster 2, in lock step)"),
    ("c4_busy", "cycles cluster 4 issued a MAC step"),
    ("c4_stall", "cycles cluster 4 had rows left but waited for q23 rows"),
    ("adder_busy", "cycles the adder array merged a PTT/HTT-full result word"),
    ("adder_stall", "cycles clusters 2/3 waited while their next row is a merging one"),
    ("lif_busy", "cycles the LIF array updated a group of neurons"),
    ("lif_stall", "cycles the LIF array waited for the host (output ring full or residual row "
                  "missing)"),
    ("c4_w_wait", "cycles cluster 4 waited for the host's next G4 chunk (streamed G4)"),
    ("c2_w_wait", "cycles clusters 2/3 (cluster 2, and cluster 3 in lock step) waited for the "
                  "host's next G2 (and G3) chunk (streamed G2/G3)"),
    ("c3_w_wait", "cycles STT's cluster-3 engine waited for the host's next G3 chunk"),
    ("c1_w_wait", "cycles cluster 1 waited for the host's next G1 chunk (streamed G1)"),
    ("c1_slots", "cluster-1 accumulate slots: input channels x output values stepped"),
    ("c1_adds", "cluster-1 accumulates performed (slots whose spike is 1)"),
    ("c2_macs", "cluster-2 multiply-accumulates (active PEs x steps)"),
    ("c3_macs", "cluster-3 multiply-accumulates"),
    ("c4_macs", "cluster-4 multiply-accumulates"),
    ("adds", "adder-array additions (one per lane and merged value)"),
    ("lif_updates", "LIF neuron updates"),
    ("spikes_out", "spikes emitted"),
    ("w1_reads", ""), ("w2_reads", ""), ("w3_reads", ""), ("w4_reads", ""), ("affine_reads", ""),
    ("spike_in_reads", ""), ("line1_reads", ""), ("line1_writes", ""),
    ("row2_reads", ""), ("row2_writes", ""), ("line4_reads", ""), ("line4_writes", ""),
    ("c2_spad_reads", "cluster-2 scratchpad reads (one per PE-array cycle: weight or partial sum)"),
    ("c2_spad_writes", "cluster-2 scratchpad writes"),
    ("c3_spad_reads", "cluster-3 scratchpad reads"),
    ("c3_spad_writes", "cluster-3 scratchpad writes"),
    ("residual_reads", ""),
    ("membrane_reads", "membranes of the previous timestep the LIF array read back from the "
                       "output ring"),
    ("membrane_writes", ""), ("spikes_writes", ""),
    ("trace_writes", "trace words the LIF array wrote (spike, window bit, arg-max per lane) into "
                     "region trace, at the output ring's addresses"),
    ("host_words_in", "host writes to buffer regions (host_data-bit words; DRAM -> accelerator)"),
    ("host_words_out", "host reads of buffer regions (DRAM <- accelerator)"),
)
COUNTERS = tuple(
    (n, d or (f"words the datapath {'read from' if n.endswith('_reads') else 'wrote to'} region "
              f"{n.rsplit('_', 1)[0]!r} (host accesses excluded)"))
    for n, d in COUNTERS)
COUNTER_NAMES = tuple(n for n, _ in COUNTERS)

#: Counters of the backward datapath (gen/backward/), a bank of their own read the same way.
BACKWARD_COUNTERS: tuple[tuple[str, str], ...] = (
    ("lifg_busy", "cycles the LIF-gradient engine issued a step (a neuron group and timestep, "
                  "or a pooled position)"),
    ("lifg_updates", "LIF-gradient neuron updates (active lanes x timesteps x ring pixels)"),
    ("lifg_saturations", "LIF-gradient elements saturated (steps 1, 2 and 3 counted separately)"),
    ("trace_reads", "trace words read"),
    ("lifg_grad_reads", "gradient-buffer words the LIF-gradient engine read (e, g_extra)"),
    ("lifg_grad_writes", "gradient-buffer words it wrote (g_a4, g_cur)"),
    ("stage_busy", "cycles the core-stage engine issued a step"),
    ("stage_macs", "core-stage multiply-accumulates on the PE array (active lanes x steps)"),
    ("wgrad_updates", "weight-gradient accumulates (active lanes x outer-product steps)"),
    ("wgrad_words", "weight-gradient accumulator read-modify-writes (words)"),
    ("in_reads", "gradient-buffer input words the core-stage engine read"),
    ("grad_reads", "gradient-buffer gradient words the core-stage engine read (outer products)"),
    ("weight_reads", "stage-weight words read"),
    ("grad_writes", "gradient-buffer words the core-stage engine wrote"),
    ("grad_saturations", "gradients saturated when re-quantised (G4^T, G3^T, G2^T/G3^T, G1^T "
                         "outputs, active lanes; the recomputed q1, q2, q23 are not counted)"),
)
BACKWARD_COUNTER_NAMES = tuple(n for n, _ in BACKWARD_COUNTERS)


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    bits: int
    access: str
    description: str


@dataclass(frozen=True)
class Counter:
    name: str
    address: int  # low word; high word at address + 1
    description: str


@dataclass(frozen=True)
class RegionMap:
    """A buffer region as the host sees it: word ``i``, sub-word ``k`` (host_data bits, low
    bits first, ``k < subwords``) lives at host address ``base + i * stride + k``; ``stride``
    is ``subwords`` rounded up to a power of two. Writing sub-word ``subwords - 1`` commits
    the whole word (earlier sub-words are staged), so write sub-words in increasing order."""
    name: str
    buffer: str
    base: int
    depth: int
    width_bits: int
    subwords: int
    stride: int
    host_visible: bool
    layout: str

    @property
    def span(self) -> int:
        return self.depth * self.stride

    def address(self, word: int, sub: int = 0) -> int:
        return self.base + word * self.stride + sub


def _by_name(entries, kind: str, name: str):
    for e in entries:
        if e.name == name:
            return e
    raise KeyError(f"no {kind} {name!r}; known: {[e.name for e in entries]}")


@dataclass(frozen=True)
class HostMap:
    config: HardwareConfig
    registers: tuple[Register, ...]
    counters: tuple[Counter, ...]
    regions: tuple[RegionMap, ...]
    addr_bits: int
    backward_counters: tuple[Counter, ...] = ()

    def register(self, name: str) -> Register:
        return _by_name(self.registers, "register", name)

    def region(self, name: str) -> RegionMap:
        return _by_name(self.regions, "region", name)

    def counter(self, name: str) -> Counter:
        return _by_name(self.counters + self.backward_counters, "counter", name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_data_bits": self.config.widths.host_data,
            "host_addr_bits": self.addr_bits,
            "host_read_latency": HOST_READ_LATENCY,
            "id_value": ID_VALUE,
            "counter_bits": COUNTER_BITS,
            "registers": [vars(r) for r in self.registers],
            "counters": [vars(c) for c in self.counters],
            "backward_counters": [vars(c) for c in self.backward_counters],
            "regions": [dict(vars(r), span=r.span) for r in self.regions],
        }


def host_map(cfg: HardwareConfig) -> HostMap:
    """The address map of ``cfg``'s accelerator (deterministic: same config, same map)."""
    hb = cfg.widths.host_data
    regs = [Register("id", REG_ID, 32, "r", "constant ID_VALUE"),
            Register("ctrl", REG_CTRL, 2, "w", "bit 0: start the tile; bit 1: clear all counters and the "
                                                "host's streaming counts (in_rows, res_rows, out_taken, "
                                                "w*_chunks)"),
            Register("status", REG_STATUS, 2, "r", "bit 0: busy; bit 1: done (high from the end "
                                                     "of a tile until the next start)")]
    for name, addr, access, desc in STREAM_REGISTERS:
        regs.append(Register(name, addr, STREAM_BITS, access, desc))
    for i, (name, bits, desc) in enumerate(DESCRIPTOR_FIELDS):
        regs.append(Register(name, DESCRIPTOR_BASE + i, bits, "rw", desc))
    for i, (name, _, bits, desc) in enumerate(STAGE_REGISTERS):
        regs.append(Register(name, STAGE_BASE + i, bits, "rw", desc))
    total = descriptor_total_bits()
    for k in range(descriptor_words(hb)):
        regs.append(Register(f"desc_word{k}", DESCRIPTOR_WORDS_BASE + k, min(hb, total - k * hb), "rw",
                             f"descriptor bits {k * hb}..{min(total, (k + 1) * hb) - 1} (the fields "
                             f"packed in register order, gen.descriptor.DESCRIPTOR_LAYOUT)"))
    counters = [Counter(n, COUNTER_BASE + 2 * i, d) for i, (n, d) in enumerate(COUNTERS)]
    backward = [Counter(n, BACKWARD_COUNTER_BASE + 2 * i, d) for i, (n, d) in enumerate(BACKWARD_COUNTERS)]
    top = BACKWARD_COUNTER_BASE + 2 * len(backward)
    regions = []
    base = 1 << max(top - 1, 1).bit_length()
    for r in list(cfg.regions.values()) + list(cfg.backward_regions.values()):
        if not r.host_visible:
            continue
        sub = ceil_div(r.width_bits, hb)
        stride = 1 << (sub - 1).bit_length()
        span = r.depth * stride
        align = 1 << max(span - 1, 1).bit_length()
        base = ceil_div(base, align) * align
        regions.append(RegionMap(r.name, r.buffer, base, r.depth, r.width_bits, sub, stride, True,
                                 r.description))
        base += align
    addr_bits = max(base - 1, 1).bit_length()
    return HostMap(cfg, tuple(regs), tuple(counters), tuple(regions), addr_bits, tuple(backward))


def region_writes(hmap: HostMap, name: str, words, offset: int = 0) -> list[tuple[int, int]]:
    """Host writes ``(address, value)`` putting ``words`` into region ``name`` from word
    ``offset`` (each word as its ``host_data``-bit sub-words, low first)."""
    reg = hmap.region(name)
    hb = hmap.config.widths.host_data
    if offset + len(words) > reg.depth:
        raise ValueError(f"{len(words)} words at offset {offset} overflow region {name!r} "
                         f"({reg.depth} words)")
    mask = (1 << hb) - 1
    return [(reg.address(offset + i, k), (int(word) >> (k * hb)) & mask)
            for i, word in enumerate(words) for k in range(reg.subwords)]


def region_reads(hmap: HostMap, name: str, count: int, offset: int = 0) -> list[int]:
    """Host addresses reading ``count`` words of region ``name`` from word ``offset``."""
    reg = hmap.region(name)
    if offset + count > reg.depth:
        raise ValueError(f"{count} words at offset {offset} overflow region {name!r}")
    return [reg.address(offset + i, k) for i in range(count) for k in range(reg.subwords)]
