"""The host interface's address map: registers, counters and buffer regions.

Pure Python (no Amaranth): the generator builds the hardware from it, :mod:`gen.driver`,
the co-simulation and the energy model read it (through the manifest written by
``python -m gen``). docs/host_interface.md describes every entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import HardwareConfig, ceil_div

__all__ = ["Register", "Counter", "RegionMap", "HostMap", "host_map", "ID_VALUE",
           "HOST_READ_LATENCY", "COUNTER_BITS", "DESCRIPTOR_FIELDS", "COUNTER_NAMES"]

#: Value of the read-only ID register ("TTSN" v1).
ID_VALUE = 0x7454_0001
#: Cycles from a ``host_read`` strobe to ``host_rvalid`` (and valid ``host_rdata``).
HOST_READ_LATENCY = 2
#: Width of every performance counter (read as two host words, low word first).
COUNTER_BITS = 48

REG_ID, REG_CTRL, REG_STATUS = 0, 1, 2
DESCRIPTOR_BASE = 0x10
COUNTER_BASE = 0x80

#: Descriptor fields: (name, bits, meaning). Written before ``start``; constant during a tile.
DESCRIPTOR_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("in_channels", 16, "Cin of the layer"),
    ("rank", 16, "TT rank r"),
    ("out_channels", 16, "Cout of this tile (an output-channel group of the layer)"),
    ("height", 16, "H: output rows of the tile before pooling (window has H+2 rows)"),
    ("width", 16, "W: output columns before pooling (window has W+2 columns)"),
    ("timesteps", 8, "T"),
    ("mode", 2, "0 STT, 1 PTT, 2 HTT (sw.qlayer.MODE_CODES)"),
    ("schedule", 32, "HTT: bit t set = timestep t is full (ignored for STT/PTT)"),
    ("shift1", 6, "re-quantisation shift after cluster 1"),
    ("shift2", 6, "re-quantisation shift after cluster 2 (STT)"),
    ("shift3", 6, "re-quantisation shift after cluster 3 / the adder array"),
    ("affine_shift", 6, "shift of the folded-BatchNorm product"),
    ("leak_mul", 16, "LIF leak multiplier (unsigned, widths.leak_mul bits used)"),
    ("leak_shift", 6, "LIF leak shift"),
    ("threshold", 32, "LIF threshold (signed, widths.membrane bits used)"),
    ("round", 1, "1: round half up in every shift, 0: floor"),
    ("pool", 1, "1: 2x2 max-pool after cluster 4"),
    ("residual", 1, "1: add the residual region before the LIF"),
    ("zero_halo", 4, "window edges outside the layer (bit 0 top row, 1 bottom row, 2 left "
                     "column, 3 right column): their q1 is 0 without computing"),
    ("spike_base", 16, "word offset of the tile's spikes in spike_in"),
    ("residual_base", 16, "word offset of the tile's residual in residual"),
    ("state_base", 16, "word offset of the tile's outputs in membrane and spikes"),
)

#: Counters: name -> exact meaning (docs/host_interface.md, section Counters, has the formulas).
COUNTERS: tuple[tuple[str, str], ...] = (
    ("cycles", "cycles from start to done (busy high)"),
    ("c1_busy", "cycles cluster 1 issued an accumulate step"),
    ("c1_stall", "cycles cluster 1 had work left but waited for line-buffer space"),
    ("c23_busy", "cycles clusters 2/3 issued a step (MAC or HTT bypass copy)"),
    ("c23_stall", "cycles clusters 2/3 had work left but waited (input rows or output space)"),
    ("c4_busy", "cycles cluster 4 issued a MAC step"),
    ("c4_stall", "cycles cluster 4 had work left but waited for input rows"),
    ("adder_busy", "cycles the adder array merged a PTT/HTT-full result group"),
    ("lif_busy", "cycles the LIF array updated a group of neurons"),
    ("c1_slots", "cluster-1 accumulate slots: active PEs x busy cycles"),
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
    ("residual_reads", ""), ("membrane_reads", ""), ("membrane_writes", ""),
    ("spikes_writes", ""),
    ("host_words_in", "host writes to buffer regions (32-bit words; DRAM -> accelerator)"),
    ("host_words_out", "host reads of buffer regions (DRAM <- accelerator)"),
)
COUNTERS = tuple(
    (n, d or (f"words the datapath {'read from' if n.endswith('_reads') else 'wrote to'} region "
              f"{n.rsplit('_', 1)[0]!r} (host accesses excluded)"))
    for n, d in COUNTERS)
COUNTER_NAMES = tuple(n for n, _ in COUNTERS)


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

    def register(self, name: str) -> Register:
        return _by_name(self.registers, "register", name)

    def region(self, name: str) -> RegionMap:
        return _by_name(self.regions, "region", name)

    def counter(self, name: str) -> Counter:
        return _by_name(self.counters, "counter", name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_data_bits": self.config.widths.host_data,
            "host_addr_bits": self.addr_bits,
            "host_read_latency": HOST_READ_LATENCY,
            "id_value": ID_VALUE,
            "counter_bits": COUNTER_BITS,
            "registers": [vars(r) for r in self.registers],
            "counters": [vars(c) for c in self.counters],
            "regions": [dict(vars(r), span=r.span) for r in self.regions],
        }


def host_map(cfg: HardwareConfig) -> HostMap:
    """The address map of ``cfg``'s accelerator (deterministic: same config, same map)."""
    hb = cfg.widths.host_data
    regs = [Register("id", REG_ID, 32, "r", "constant ID_VALUE"),
            Register("ctrl", REG_CTRL, 2, "w", "bit 0: start the tile; bit 1: clear all counters"),
            Register("status", REG_STATUS, 2, "r", "bit 0: busy; bit 1: done (high from the end "
                                                     "of a tile until the next start)")]
    for i, (name, bits, desc) in enumerate(DESCRIPTOR_FIELDS):
        regs.append(Register(name, DESCRIPTOR_BASE + i, bits, "rw", desc))
    counters = [Counter(n, COUNTER_BASE + 2 * i, d) for i, (n, d) in enumerate(COUNTERS)]
    top = COUNTER_BASE + 2 * len(counters)
    regions = []
    base = 1 << max(top - 1, 1).bit_length()
    for r in cfg.regions.values():
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
    return HostMap(cfg, tuple(regs), tuple(counters), tuple(regions), addr_bits)
