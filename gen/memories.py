"""The buffer memories of the accelerator and their port arbitration."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import HardwareConfig
from .hostmap import host_map
from .host import host_region_port

__all__ = ["BufferMemories", "DatapathPort"]


class DatapathPort(NamedTuple):
    """A datapath port of a region: ``name`` (the member of :class:`BufferMemories`),
    ``region``, ``signature`` (the engine's port, as the engine drives it: ``read_port`` or
    ``write_port`` of :mod:`gen.engines.common`, or the backward datapath's), and for a read
    port ``shared`` (the host uses it while idle) or for a write port ``granularity``."""
    name: str
    region: str
    signature: wiring.Signature
    shared: bool = False
    granularity: int | None = None


class BufferMemories(wiring.Component):
    """Every region of ``HardwareConfig.regions`` and ``backward_regions`` (but ``wgrad``,
    whose sums live in their accumulator) as one :class:`amaranth.lib.memory.Memory`.

    Ports:

    * ``busy`` (in): a tile runs (the datapath owns the shared read ports).
    * ``host`` (in): the host's port of every host-visible memory region
      (:func:`gen.host.host_region_port`, driven by :class:`gen.host.HostInterface`): its
      reads go through the region's shared read port while idle (or its own read port for a
      region only the host reads), its writes through their own write port for the regions
      in ``host_writes``.
    * one member per :class:`DatapathPort` of ``reads`` (read ports: data one cycle after
      ``en``, not transparent) and ``writes`` (written at the end of the cycle).

    Timing: every read port is synchronous (data one cycle after ``en``); a shared read port
    takes the datapath's address while ``busy``, the host's otherwise.
    """

    def __init__(self, config: HardwareConfig, reads: Sequence[DatapathPort], writes: Sequence[DatapathPort],
                 host_reads: frozenset, host_writes: frozenset):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        self.regions = {reg.name: reg for reg in list(config.regions.values()) + list(config.backward_regions.values())
                        if reg.name != "wgrad"}
        hmap = host_map(config)
        self.host_regions = [r for r in hmap.regions if r.name in self.regions]
        for p in list(reads) + list(writes):
            if p.region not in self.regions:
                raise ValueError(f"datapath port {p.name!r}: no memory region {p.region!r}")
        self.reads, self.writes = tuple(reads), tuple(writes)
        self.host_reads, self.host_writes = host_reads, host_writes
        members = {"busy": In(1),
                   "host": In(wiring.Signature({r.name: Out(host_region_port(hmap.addr_bits, r.width_bits))
                                                for r in self.host_regions}))}
        for p in self.reads + self.writes:
            members[p.name] = In(p.signature)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        mems = {name: Memory(shape=unsigned(reg.width_bits), depth=reg.depth, init=[])
                for name, reg in self.regions.items()}
        for name, mem in mems.items():
            m.submodules[f"mem_{name}"] = mem
        busy = self.busy
        host_read_by = {}
        for p in self.reads:
            port = mems[p.region].read_port(domain="sync")
            dp = getattr(self, p.name)
            if p.shared:
                h = getattr(self.host, p.region)
                m.d.comb += [port.en.eq(Mux(busy, dp.en, h.rd_en)), port.addr.eq(Mux(busy, dp.addr, h.addr))]
                host_read_by[p.region] = port
            else:
                m.d.comb += [port.en.eq(dp.en), port.addr.eq(dp.addr)]
            m.d.comb += dp.data.eq(port.data)
        for p in self.writes:
            wr = mems[p.region].write_port(**({"granularity": p.granularity} if p.granularity else {}))
            dp = getattr(self, p.name)
            m.d.comb += [wr.en.eq(dp.en), wr.addr.eq(dp.addr), wr.data.eq(dp.data)]
        for reg in self.host_regions:
            h = getattr(self.host, reg.name)
            if reg.name in self.host_writes:
                wr = mems[reg.name].write_port()
                m.d.comb += [wr.en.eq(h.wr_en), wr.addr.eq(h.addr), wr.data.eq(h.wr_data)]
            if reg.name in self.host_reads:
                port = host_read_by.get(reg.name)
                if port is None:                 # a region only the host reads
                    port = mems[reg.name].read_port(domain="sync")
                    m.d.comb += [port.en.eq(h.rd_en), port.addr.eq(h.addr)]
                m.d.comb += h.rd_data.eq(port.data)
        return m

