"""The tile-geometry unit: the per-tile sizes the engines count with, registered from the
descriptor, and the latency after which they are valid.

Each geometry value is one register computed from descriptor fields and earlier geometry
values (:data:`GEOMETRY`: name, width, the values it reads, its expression). The unit states
its own latency (:attr:`TileGeometryUnit.latency`): the longest chain of registers, which the
top level waits for after the last descriptor write before it starts a tile. The chains are
taken from the table, and each expression can only read what its entry declares, so the
latency cannot be understated (tests/gen/test_tilegeo.py checks it in simulation as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from amaranth.hdl import Const, Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import HardwareConfig, log2
from .descriptor import DESCRIPTOR_LAYOUT

__all__ = ["GeoValue", "GEOMETRY", "TileGeometryUnit", "geometry_layout", "ROW_BITS", "MEMBRANE_READ_GAP"]

#: Width of row, word and block counts.
ROW_BITS = 16


@dataclass(frozen=True)
class GeoValue:
    """One registered geometry value: ``expr(desc, deps, params)`` from the descriptor view
    and the geometry values named in ``deps`` (nothing else of the geometry is visible)."""
    name: str
    width: str            # "row" (ROW_BITS), "lanes" (log2 P + 1) or a number of bits
    deps: tuple[str, ...]
    expr: Callable
    meaning: str


#: Cycles from a cluster-4 step's issue until the same neuron's u(t) may be read back as
#: u(t+1): its write comes ``ClusterFourEngine.WRITE_LATENCY`` (9) cycles after the issue and
#: the read port is not transparent (the engine checks that the two agree).
MEMBRANE_READ_GAP = 10


def _sat_gap(v):
    """``min(v, MEMBRANE_READ_GAP)``: the products below are only compared with it."""
    bits = MEMBRANE_READ_GAP.bit_length()
    return Mux(v >= MEMBRANE_READ_GAP, MEMBRANE_READ_GAP, v)[:bits]


def _w_aligned(d, g):
    return (d.width & (g["px"] - 1)) == 0


def _is_stt(d):
    return d.mode == 0


def _geo(name, width, deps, expr, meaning):
    return GeoValue(name, width, tuple(deps.split()) if deps else (), expr, meaning)


#: The geometry, each value after the ones it reads. ``p``: parameters of the configuration
#: (``lp`` = log2 lanes, ``lsw`` = log2 spike-word bits, ``blk``/``chk`` = cluster 2/3's blocks
#: per weight chunk and steps per chunk, ``lB``/``lC`` their log2).
GEOMETRY: tuple[GeoValue, ...] = (
    _geo("pack", 4, "", lambda d, g, p: d.pack, "log2 Pk"),
    _geo("pxl", 4, "", lambda d, g, p: (p.lp - d.pack)[:4], "log2 Px"),
    _geo("pk", "lanes", "", lambda d, g, p: Const(1, p.lp + 1) << d.pack, "Pk: rank channels per word"),
    _geo("px", "lanes", "", lambda d, g, p: Const(1, p.lp + 1) << (p.lp - d.pack)[:4], "Px: columns per word"),
    _geo("ng", "row", "", lambda d, g, p: (d.rank + (1 << d.pack) - 1) >> d.pack, "rank groups"),
    _geo("last_lanes", "lanes", "ng pack", lambda d, g, p: d.rank - ((g["ng"] - 1) << g["pack"]),
         "rank channels of the last group"),
    _geo("nb", "row", "px pxl", lambda d, g, p: (d.width + g["px"] - 1) >> g["pxl"], "column blocks"),
    _geo("rw1", "row", "nb ng", lambda d, g, p: (g["nb"] + 2) * g["ng"], "words of a line1 / row2 row"),
    _geo("rw4", "row", "nb ng", lambda d, g, p: g["nb"] * g["ng"], "words of a line4 row"),
    _geo("ncc", "row", "", lambda d, g, p: (d.in_channels + p.lanes - 1) >> p.lp, "P-channel chunks of Cin"),
    _geo("cw", "row", "", lambda d, g, p: (d.in_channels + p.sw - 1) >> p.lsw, "spike words per pixel"),
    _geo("r3", "row", "", lambda d, g, p: d.rank + (d.rank << 1), "3 r: reduction steps"),
    _geo("ns", "row", "r3 px pxl", lambda d, g, p: (g["r3"] + g["px"] - 1) >> g["pxl"],
         "weight words per output group (w2/w3)"),
    _geo("nch", "row", "r3", lambda d, g, p: (g["r3"] + p.chk - 1) >> p.lC, "weight chunks"),
    _geo("last_chunk", "row", "r3 nch", lambda d, g, p: g["r3"] - ((g["nch"] - 1) << p.lC),
         "steps of the last chunk"),
    _geo("ho", "row", "", lambda d, g, p: Mux(d.pool, d.height >> 1, d.height), "output rows"),
    _geo("wo", "row", "", lambda d, g, p: Mux(d.pool, d.width >> 1, d.width), "output columns"),
    _geo("go", "row", "", lambda d, g, p: (d.out_channels + p.lanes - 1) >> p.lp, "output groups"),
    _geo("in_row_words", "row", "cw",
         lambda d, g, p: (d.width + 2 - d.zero_halo[2] - d.zero_halo[3]) * g["cw"], "words of an input row"),
    _geo("out_row_words", "row", "wo go", lambda d, g, p: g["wo"] * g["go"], "words of an output row"),
    _geo("dist", "row", "ho", lambda d, g, p: Mux(d.order, g["ho"], 1),
         "output-ring rows between u(t-1) and u(t) of a neuron"),
    _geo("prev_init", "row", "dist out_row_words",
         lambda d, g, p: (d.out_ring_rows - g["dist"]) * g["out_row_words"], "word base of u(t-1) at start"),
    _geo("long_rows", 1, "dist out_row_words",
         lambda d, g, p: _sat_gap(_sat_gap(g["dist"]) * _sat_gap(g["out_row_words"]))
         * _sat_gap(Mux(d.pool, 4, 1) * _sat_gap(d.rank)) >= MEMBRANE_READ_GAP,
         "dist rows take >= MEMBRANE_READ_GAP cycles: u(t-1) has landed before it is read"),
    _geo("e_lo2", 2, "", lambda d, g, p: Mux(_is_stt(d) & ~d.zero_halo[2], 0, 1),
         "cluster 2's first block (+1 indexed)"),
    _geo("nbe2", "row", "nb px",
         lambda d, g, p: g["nb"] + Mux(_is_stt(d) & ~d.zero_halo[2], 1, 0)
         + Mux(_is_stt(d) & ~d.zero_halo[3] & _w_aligned(d, g), 1, 0), "cluster 2's blocks per row"),
    _geo("nbg2", "row", "nbe2", lambda d, g, p: (g["nbe2"] + p.blk - 1) >> p.lB, "cluster 2's block groups"),
    _geo("lastg2", "row", "nbe2 nbg2", lambda d, g, p: g["nbe2"] - ((g["nbg2"] - 1) << p.lB),
         "blocks of cluster 2's last group"),
    _geo("nbg3", "row", "nb", lambda d, g, p: (g["nb"] + p.blk - 1) >> p.lB, "cluster 3's block groups"),
    _geo("lastg3", "row", "nb nbg3", lambda d, g, p: g["nb"] - ((g["nbg3"] - 1) << p.lB),
         "blocks of cluster 3's last group"),
    _geo("last_cols", "lanes", "nb pxl", lambda d, g, p: d.width - ((g["nb"] - 1) << g["pxl"]),
         "valid columns of the last block"),
    _geo("tr1", "row", "rw1", lambda d, g, p: d.timesteps * g["rw1"], "a line1 slot group (T rows)"),
    _geo("tr4", "row", "rw4", lambda d, g, p: d.timesteps * g["rw4"], "a line4 slot group (T rows)"),
    _geo("t3r1", "row", "tr1", lambda d, g, p: (g["tr1"] << 1) + g["tr1"], "the whole line1 ring"),
    _geo("ew_ng", "row", "rw4 ng px", lambda d, g, p: g["rw4"] + Mux(_w_aligned(d, g), g["ng"], 0),
         "word offset of column W's block"),
    _geo("e_lo2_ng", "row", "e_lo2 ng", lambda d, g, p: Mux(g["e_lo2"] == 1, g["ng"], 0),
         "word offset of cluster 2's first block"),
    _geo("t3", 8, "", lambda d, g, p: (d.timesteps << 1) + d.timesteps, "3 T"),
    _geo("halos1", 2, "", lambda d, g, p: 2 - d.zero_halo[2] - d.zero_halo[3],
         "halo pixels cluster 1 computes per row"),
    _geo("first_eoff1", "row", "ew_ng ng",
         lambda d, g, p: Mux(~d.zero_halo[2], 0, Mux(~d.zero_halo[3], g["ew_ng"], g["ng"])),
         "word offset of cluster 1's first pixel in a row"),
    # the last values of clusters 2/3's loop counters (``gen.engines.macloop``), registered here
    # so that a counter's end test is one compare with a register: the subtractions and the
    # choices between them were on one path with the compares into the loop's step and run
    # (54-59 generic levels, docs/synthesis.md). Each reads no deeper value than the table's
    # longest chain already does (the latency stays 5).
    _geo("pk_last", "lanes", "", lambda d, g, p: (Const(1, p.lp + 1) << d.pack) - 1, "Pk - 1"),
    _geo("ng_last", "row", "ng", lambda d, g, p: g["ng"] - 1, "ng - 1: the last rank group"),
    _geo("last_lanes_last", "lanes", "ng pack", lambda d, g, p: d.rank - ((g["ng"] - 1) << g["pack"]) - 1,
         "last_lanes - 1"),
    _geo("nb_last", "row", "nb", lambda d, g, p: g["nb"] - 1, "nb - 1: the last column block"),
    _geo("r3_last", "row", "r3", lambda d, g, p: g["r3"] - 1, "3 r - 1"),
    _geo("nch_last", "row", "nch", lambda d, g, p: g["nch"] - 1, "the last weight chunk"),
    _geo("last_chunk_last", "row", "r3 nch", lambda d, g, p: g["r3"] - ((g["nch"] - 1) << p.lC) - 1,
         "last_chunk - 1"),
    _geo("nbg2_last", "row", "nbg2", lambda d, g, p: g["nbg2"] - 1, "cluster 2's last block group"),
    _geo("lastg2_last", "row", "nbe2 nbg2", lambda d, g, p: g["nbe2"] - ((g["nbg2"] - 1) << p.lB) - 1,
         "lastg2 - 1"),
    _geo("nbg3_last", "row", "nbg3", lambda d, g, p: g["nbg3"] - 1, "cluster 3's last block group"),
    _geo("lastg3_last", "row", "nb nbg3", lambda d, g, p: g["nb"] - ((g["nbg3"] - 1) << p.lB) - 1,
         "lastg3 - 1"),
    _geo("h_last", "row", "", lambda d, g, p: d.height - 1, "H - 1: the last row"),
    _geo("t_last", 8, "", lambda d, g, p: d.timesteps - 1, "T - 1: the last timestep"),
    _geo("inner_last", "row", "", lambda d, g, p: Mux(d.order, d.height, d.timesteps) - 1,
         "the last value of the inner (row or timestep) loop"),
    _geo("ring_last", "row", "", lambda d, g, p: d.w23_ring - 1, "the last slot of the G2/G3 ring"),
)


@dataclass(frozen=True)
class _Params:
    lanes: int
    lp: int
    sw: int
    lsw: int
    blk: int
    chk: int
    lB: int
    lC: int


def _params(cfg: HardwareConfig) -> _Params:
    ws = cfg.is_weight_stationary("cluster2")
    blk = cfg.spad_psum_entries if ws else 1
    chk = cfg.spad_weight_entries if ws else 1
    return _Params(cfg.lanes, log2(cfg.lanes), cfg.spike_word_bits, log2(cfg.spike_word_bits),
                   blk, chk, log2(blk), log2(chk))


def _width(v: GeoValue, lp: int) -> int:
    return ROW_BITS if v.width == "row" else lp + 1 if v.width == "lanes" else v.width


def geometry_layout(cfg: HardwareConfig) -> data.StructLayout:
    """The geometry values of ``cfg``'s accelerator as one layout (field per value)."""
    lp = log2(cfg.lanes)
    return data.StructLayout({v.name: _width(v, lp) for v in GEOMETRY})


def _depths() -> Mapping[str, int]:
    depth: dict[str, int] = {}
    for v in GEOMETRY:
        missing = [n for n in v.deps if n not in depth]
        if missing:
            raise ValueError(f"geometry value {v.name!r} reads {missing} before they are defined")
        depth[v.name] = 1 + max((depth[n] for n in v.deps), default=0)
    return depth


class TileGeometryUnit(wiring.Component):
    """Registers the tile geometry from the descriptor.

    Ports: ``desc`` (in, :data:`gen.descriptor.DESCRIPTOR_LAYOUT`: held constant while a tile
    runs), ``geo`` (out, :func:`geometry_layout`: one field per :data:`GEOMETRY` value).

    Timing: every value is a register; after ``desc`` changes, ``geo`` is valid
    :attr:`latency` cycles later (the longest chain of values reading values, 5 today).
    """

    def __init__(self, config: HardwareConfig):
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a gen.config.HardwareConfig, got {type(config).__name__}")
        self.config = config
        self.depths = _depths()
        super().__init__({"desc": In(DESCRIPTOR_LAYOUT), "geo": Out(geometry_layout(config))})

    @property
    def latency(self) -> int:
        """Cycles from a descriptor change to valid geometry (the longest register chain)."""
        return max(self.depths.values())

    def elaborate(self, platform):
        m = Module()
        p = _params(self.config)
        for v in GEOMETRY:
            deps = {n: self.geo[n] for n in v.deps}   # only what the entry declares
            m.d.sync += self.geo[v.name].eq(v.expr(self.desc, deps, p))
        return m
