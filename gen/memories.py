"""The buffer memories of the accelerator and their port arbitration."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
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
    port ``shared`` (the host uses it while idle) or for a write port ``granularity``. A shared
    write port also carries the host's writes to its region while the host owns it (no write
    port of the host's own). ``datapath_owns``: when the datapath owns a shared port (default
    ``busy``), e.g. only while a backward stage runs, so that the host reads the region while a
    forward tile runs."""
    name: str
    region: str
    signature: wiring.Signature
    shared: bool = False
    granularity: int | None = None
    datapath_owns: Any = None


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

    A region of several banks (``Region.banks``: the gradient buffer) is built as that many
    memories, each with one read and one write port: every datapath port of the region
    reaches the bank its address falls in (word ``a`` in bank ``a // bank_depth``), the host
    reaches them while idle, and a read port's data comes from the bank of its last read. A
    write port of such a region with ``granularity`` drives one enable per lane of that many
    bits (the others, one enable for the whole word: every lane). The
    datapath never sends two reads or two writes to one bank in a cycle (the driver places the
    tensors a stage uses at once in different banks); were it to, the port listed first wins.
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
        for reg in self.regions.values():
            if reg.banks > 1:
                self._banked_region(m, reg)
        mems = {name: Memory(shape=unsigned(reg.width_bits), depth=reg.depth, init=[])
                for name, reg in self.regions.items() if reg.banks == 1}
        for name, mem in mems.items():
            m.submodules[f"mem_{name}"] = mem
        busy = self.busy
        host_read_by = {}
        for p in (p for p in self.reads if p.region in mems):
            port = mems[p.region].read_port(domain="sync")
            dp = getattr(self, p.name)
            if p.shared:
                h = getattr(self.host, p.region)
                owns = busy if p.datapath_owns is None else p.datapath_owns
                m.d.comb += [port.en.eq(Mux(owns, dp.en, h.rd_en)), port.addr.eq(Mux(owns, dp.addr, h.addr))]
                host_read_by[p.region] = port
            else:
                m.d.comb += [port.en.eq(dp.en), port.addr.eq(dp.addr)]
            m.d.comb += dp.data.eq(port.data)
        host_write_by = set()
        for p in (p for p in self.writes if p.region in mems):
            wr = mems[p.region].write_port(**({"granularity": p.granularity} if p.granularity else {}))
            dp = getattr(self, p.name)
            if p.shared:
                h = getattr(self.host, p.region)
                owns = busy if p.datapath_owns is None else p.datapath_owns
                m.d.comb += [wr.en.eq(Mux(owns, dp.en, h.wr_en)), wr.addr.eq(Mux(owns, dp.addr, h.addr)),
                             wr.data.eq(Mux(owns, dp.data, h.wr_data))]
                host_write_by.add(p.region)
            else:
                m.d.comb += [wr.en.eq(dp.en), wr.addr.eq(dp.addr), wr.data.eq(dp.data)]
        for reg in (r for r in self.host_regions if r.name in mems):
            h = getattr(self.host, reg.name)
            if reg.name in self.host_writes and reg.name not in host_write_by:
                wr = mems[reg.name].write_port()
                m.d.comb += [wr.en.eq(h.wr_en), wr.addr.eq(h.addr), wr.data.eq(h.wr_data)]
            if reg.name in self.host_reads:
                port = host_read_by.get(reg.name)
                if port is None:                 # a region only the host reads
                    port = mems[reg.name].read_port(domain="sync")
                    m.d.comb += [port.en.eq(h.rd_en), port.addr.eq(h.addr)]
                m.d.comb += h.rd_data.eq(port.data)
        return m


    def _banked_region(self, m, reg) -> None:
        """``reg.banks`` memories of ``reg.bank_depth`` words, one read and one write port each,
        shared by the region's datapath ports (while ``busy``) and the host (while idle)."""
        depth = reg.bank_depth
        host = getattr(self.host, reg.name) if any(r.name == reg.name for r in self.host_regions) else None

        def split(addr):                      # (bank, word in the bank)
            if depth & (depth - 1) == 0:
                shift = depth.bit_length() - 1
                return addr >> shift, addr & (depth - 1)
            bank = Signal(range(reg.banks), name=f"{reg.name}_bank")
            m.d.comb += bank.eq(0)
            for b in range(1, reg.banks):
                with m.If(addr >= b * depth):
                    m.d.comb += bank.eq(b)
            return bank, addr - bank * depth

        readers = [(getattr(self, p.name), self.busy) for p in self.reads if p.region == reg.name]
        writers = [(getattr(self, p.name), self.busy) for p in self.writes if p.region == reg.name]
        if host is not None and reg.name in self.host_reads:
            readers.append((host, ~self.busy))
        if host is not None and reg.name in self.host_writes:
            writers.append((host, ~self.busy))
        # lane write enables (a datapath write port with ``granularity``, e.g. the backward
        # datapath's straddled writes): every bank's write port takes one enable per lane of
        # that many bits, the ports without them (the host's) enable every lane
        grains = {p.granularity for p in self.writes if p.region == reg.name and p.granularity}
        if len(grains) > 1:
            raise ValueError(f"region {reg.name!r}: write ports of different granularities {sorted(grains)}")
        grain = grains.pop() if grains else None
        nlanes = reg.width_bits // grain if grain else 1
        banks = []
        for b in range(reg.banks):
            mem = Memory(shape=unsigned(reg.width_bits), depth=depth, init=[])
            m.submodules[f"mem_{reg.name}_bank{b}"] = mem
            banks.append((mem.read_port(domain="sync"),
                          mem.write_port(**({"granularity": grain} if grain else {}))))
        for port, owns in reversed(readers):        # the first listed is assigned last: it wins
            en = port.rd_en if port is host else port.en
            bank, word = split(port.addr)
            last = Signal(range(reg.banks), name=f"{reg.name}_rd_bank")     # the bank of the data
            with m.If(owns & en):
                m.d.sync += last.eq(bank)
            for b, (rd, _) in enumerate(banks):
                with m.If(owns & en & (bank == b)):
                    m.d.comb += [rd.en.eq(1), rd.addr.eq(word)]
            data = port.rd_data if port is host else port.data
            m.d.comb += data.eq(Array(rd.data for rd, _ in banks)[last])
        for port, owns in reversed(writers):        # the first listed is assigned last: it wins
            en = port.wr_en if port is host else port.en
            value = port.wr_data if port is host else port.data
            lanes_en = en if len(en) == nlanes else Cat(*[en] * nlanes) if len(en) == 1 else None
            if lanes_en is None:
                raise ValueError(f"region {reg.name!r}: a write port's enable of {len(en)} bits, the banks take "
                                 f"1 or {nlanes}")
            bank, word = split(port.addr)
            for b, (_, wr) in enumerate(banks):
                with m.If(owns & en.any() & (bank == b)):
                    m.d.comb += [wr.en.eq(lanes_en), wr.addr.eq(word), wr.data.eq(value)]
