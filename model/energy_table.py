"""The energy table: (component, action, bits) -> pJ per action, kept as data.

The shipped table is ``model/data/energy_28nm.yaml``; every entry names its unit, bit width,
node, source and whether it is published or scaled (by a stated rule), with its published range
(``low`` / central / ``high``). Nothing is fitted to a result. :class:`EnergyTable` loads
and validates it; :meth:`EnergyTable.energy` is the only lookup and raises
:class:`UnknownActionError` for anything the table does not define (an unknown action is an
error, never a silent zero). Global-buffer energies depend on the buffer's size and port width:
they are interpolated from the CACTI points of the table (:meth:`EnergyTable.sram_access`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["EnergyTable", "UnknownActionError", "load_energy_table", "DEFAULT_TABLE",
           "Memory", "LEVELS", "GROUPS"]

#: The three points of every published range.
LEVELS = ("low", "central", "high")
#: The constants the sensitivity study and the bands sweep, each over its published range:
#: DRAM energy per bit (of the chosen memory type), SRAM leakage, SRAM access energy, logic
#: (every primitive operation that has a range).
GROUPS = ("dram", "sram_leakage", "sram_access", "logic")

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "energy_28nm.yaml"


class UnknownActionError(UserError, KeyError):
    """A (component, action, bits) the energy table does not define."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown action"


@dataclass(frozen=True)
class Memory:
    """A global buffer as the energy model sees it: capacity and port width."""
    name: str
    bytes: int
    width_bits: int


def _loglog(points: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear interpolation in log-log space; linear extrapolation at both ends."""
    if x <= 0:
        raise ValueError(f"interpolation point must be positive, got {x}")
    pts = sorted((math.log(a), math.log(b)) for a, b in points)
    if len(pts) == 1:
        return math.exp(pts[0][1])
    lx = math.log(x)
    i = 0
    while i < len(pts) - 2 and lx > pts[i + 1][0]:
        i += 1
    (x0, y0), (x1, y1) = pts[i], pts[i + 1]
    return math.exp(y0 + (y1 - y0) * (lx - x0) / (x1 - x0))


@dataclass(frozen=True)
class EnergyTable:
    """A validated energy table (build with :func:`load_energy_table`).

    Every constant is at one point of its published range, ``levels[group]`` (``central``
    unless :meth:`at_levels` chose another); ``dram_memory`` names the DRAM type priced.
    """
    name: str
    node_nm: int
    primitives: Mapping[tuple[str, int], float]
    actions: Mapping[tuple[str, str, int], float]
    sram_points: tuple[dict, ...]
    width_ratios: Mapping[int, tuple[float, float]]
    dram: Mapping[str, float]
    primitive_range: Mapping[tuple[str, int], tuple[float, float, float]] = field(default_factory=dict)
    compositions: Mapping[tuple[str, str, int], Mapping[tuple[str, int], float]] = field(default_factory=dict)
    access_range: tuple[float, float, float] = (1.0, 1.0, 1.0)
    leakage_density: tuple[float, float] = (0.0, math.inf)   # low, high mW per KB
    dram_memories: Mapping[str, dict] = field(default_factory=dict)
    dram_memory: str = ""
    levels: Mapping[str, str] = field(default_factory=lambda: {g: "central" for g in GROUPS})
    access_scale: float = 1.0
    entries: tuple[dict, ...] = field(default=(), compare=False)
    source: str = ""

    # ---- lookups ------------------------------------------------------------------------
    def energy(self, component: str, action: str, bits: int,
               memories: Mapping[str, Memory] | None = None) -> float:
        """pJ of one ``action`` of ``component`` at ``bits``.

        ``component`` is an action-table component (``mult_pe``, ``lif``, ``scratchpad``...),
        ``dram`` (``bits`` must be 1: energies are per bit) or ``glb.<buffer>`` (a global
        buffer of ``memories``; ``bits`` is its port width, or fewer for a lane-enabled access
        of part of a word, e.g. one 8-bit lane: priced as an access of a port that wide,
        :meth:`sram_access`; never more than the port).
        """
        if component == "dram":
            if action not in self.dram or bits != 1:
                raise UnknownActionError(
                    f"energy table {self.name!r}: no DRAM action ({action!r}, {bits} bits); "
                    f"DRAM is counted per bit: ('dram', 'read'|'write', 1)")
            return self.dram[action]
        if component.startswith("glb."):
            name = component[4:]
            if memories is None or name not in memories:
                known = sorted(memories or {})
                raise UnknownActionError(f"energy table: unknown global buffer {name!r}; "
                                         f"this accelerator has {known}")
            mem = memories[name]
            if not 1 <= bits <= mem.width_bits:
                raise UnknownActionError(f"global buffer {name!r} is {mem.width_bits} bits wide; "
                                         f"got an access of {bits} bits (at most the port width)")
            return self.sram_access(mem.bytes, int(bits), action)
        key = (component, action, int(bits))
        if key not in self.actions:
            known = sorted(f"{c}.{a}/{b}" for c, a, b in self.actions)
            raise UnknownActionError(f"energy table {self.name!r} has no entry for "
                                     f"{component}.{action} at {bits} bits; known: {known}")
        return self.actions[key]

    def sram_access(self, size_bytes: int, width_bits: int, action: str) -> float:
        """pJ per access of a ``width_bits`` port of a ``size_bytes`` SRAM (CACTI interpolation,
        times the access-energy level's factor)."""
        if action not in ("read", "write"):
            raise UnknownActionError(f"SRAM action must be 'read' or 'write', got {action!r}")
        if size_bytes <= 0 or width_bits <= 0:
            raise ValueError(f"SRAM size and width must be positive, got {size_bytes} B, {width_bits} b")
        idx = 0 if action == "read" else 1
        at256 = _loglog([(p["kbytes"] * 1024, p[action]) for p in self.sram_points], size_bytes)
        ratio = _loglog([(b, r[idx]) for b, r in self.width_ratios.items()], width_bits)
        return at256 * ratio * self.access_scale

    def sram_leakage_mw(self, size_bytes: int, level: str | None = None) -> float:
        """Leakage of one SRAM buffer (mW) at ``level`` (default: the table's level):
        central = the CACTI points up to 144 KB interpolated log-log; low / high = the size
        times the published range's density (never above / below central)."""
        level = level or self.levels["sram_leakage"]
        pts = [(p["kbytes"] * 1024, p["leakage_mw"]) for p in self.sram_points if p["kbytes"] <= 144]
        central = _loglog(pts, size_bytes)
        if level == "central":
            return central
        if level == "low":
            return min(central, self.leakage_density[0] * size_bytes / 1024)
        if level == "high":
            return max(central, self.leakage_density[1] * size_bytes / 1024)
        raise UserError(f"level must be one of {LEVELS}, got {level!r}")

    # ---- other points of the ranges -----------------------------------------------------
    def with_dram(self, memory: str) -> "EnergyTable":
        """The table pricing DRAM as ``memory`` (a type of the table's ``dram.memories``)."""
        if memory not in self.dram_memories:
            raise UserError(f"unknown DRAM type {memory!r}; the energy table has "
                            f"{', '.join(self.dram_memories)}")
        return replace(self, dram_memory=memory).at_levels(**self.levels)

    def at_levels(self, **levels: str) -> "EnergyTable":
        """A copy with each named group of :data:`GROUPS` at ``low``, ``central`` or ``high``
        of its published range (the others as they are)."""
        for g, lv in levels.items():
            if g not in GROUPS:
                raise UserError(f"unknown constant group {g!r}; choose from {', '.join(GROUPS)}")
            if lv not in LEVELS:
                raise UserError(f"level of {g} must be one of {', '.join(LEVELS)}, got {lv!r}")
        lv = dict(self.levels, **levels)
        i = {n: LEVELS.index(lv[n]) for n in GROUPS}
        t = self
        if self.dram_memories:
            e = float(self.dram_memories[self.dram_memory][lv["dram"]])
            t = replace(t, dram={"read": e, "write": e})
        if self.primitive_range:
            prims = {k: r[i["logic"]] for k, r in self.primitive_range.items()}
            acts = {k: sum(n * prims[p] for p, n in comp.items())
                    for k, comp in self.compositions.items()}
            t = replace(t, primitives=prims, actions=acts)
        return replace(t, access_scale=self.access_range[i["sram_access"]], levels=lv)

    def with_overrides(self, *, dram_pj_per_bit: float | None = None,
                       scale: Mapping[str, float] | None = None) -> "EnergyTable":
        """A copy with the DRAM energy set or components scaled (sensitivity studies).

        ``scale``: multiply every action of a component (``{'mult_pe': 1.1}``) or, with the
        key ``'sram'``, every SRAM access energy.
        """
        t = self
        if dram_pj_per_bit is not None:
            if not math.isfinite(dram_pj_per_bit) or dram_pj_per_bit < 0:
                raise UserError(f"DRAM energy must be a finite number >= 0, got {dram_pj_per_bit}")
            t = replace(t, dram={"read": float(dram_pj_per_bit), "write": float(dram_pj_per_bit)})
        if scale:
            acts = dict(t.actions)
            pts = list(t.sram_points)
            for comp, f in scale.items():
                if f < 0:
                    raise UserError(f"scale factor for {comp} must be >= 0, got {f}")
                if comp == "sram":
                    pts = [dict(p, read=p["read"] * f, write=p["write"] * f) for p in pts]
                    continue
                hit = [k for k in acts if k[0] == comp]
                if not hit:
                    raise UnknownActionError(f"no component {comp!r} in the energy table")
                for k in hit:
                    acts[k] = acts[k] * f
            t = replace(t, actions=acts, sram_points=tuple(pts))
        return t


def _need(d: Mapping, key: str, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise UserError(f"energy table {where}: expected a mapping with field {key!r}, got {d!r}")
    if key not in d:
        raise UserError(f"energy table {where}: missing field {key!r}")
    return d[key]


def _num(d: Mapping, key: str, where: str, integer: bool = False, value: Any = None) -> float:
    """Field ``key`` of ``d`` (or ``value`` when given) as a finite number (int when
    ``integer``); anything else is a ValueError naming the file, entry and field."""
    v = _need(d, key, where) if value is None else value
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer and not float(v).is_integer():
        ok = False
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise UserError(f"energy table {where}: field {key!r} must be {kind}, got {v!r}")
    return int(v) if integer else float(v)


def _range(e: Mapping, where: str, central_key: str = "energy") -> tuple[float, float, float]:
    """(low, central, high) of an entry; ``low``/``high`` default to the central value and
    must bracket it."""
    c = _num(e, central_key, where)
    lo = _num(e, "low", where) if "low" in e else c
    hi = _num(e, "high", where) if "high" in e else c
    if not 0 <= lo <= c <= hi:
        raise UserError(f"energy table {where}: need 0 <= low <= {central_key} <= high, "
                        f"got {lo}, {c}, {hi}")
    return lo, c, hi


def _check_treatment(e: Mapping, where: str) -> None:
    if e["treatment"] not in ("published", "scaled"):
        raise UserError(f"{where}: treatment must be published or scaled (no constant is "
                        f"calibrated to a result), got {e['treatment']!r}")
    if e["treatment"] == "scaled" and "rule" not in e:
        raise UserError(f"{where}: a scaled entry must give its rule")


def load_energy_table(path: str | Path | None = None, dram: str | None = None) -> EnergyTable:
    """Load and validate an energy table YAML (default: the shipped 28 nm table), every
    constant at its central value; ``dram`` names the DRAM type (default: the table's)."""
    p = Path(path) if path is not None else DEFAULT_TABLE
    if not p.is_file():
        raise MissingFileError(f"energy table {str(p)!r} not found; give a YAML file like "
                               f"{DEFAULT_TABLE}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"energy table {p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"energy table {p}: expected a mapping at the top level")
    entries: list[dict] = []
    prims: dict[tuple[str, int], tuple[float, float, float]] = {}
    for i, e in enumerate(_need(data, "primitives", str(p))):
        where = f"{p} primitives[{i}]"
        for f in ("op", "bits", "energy", "unit", "node_nm", "source", "treatment"):
            _need(e, f, where)
        _check_treatment(e, where)
        prims[(e["op"], _num(e, "bits", where, integer=True))] = _range(e, where)
        entries.append(dict(e, kind="primitive"))
    comps: dict[tuple[str, str, int], dict[tuple[str, int], float]] = {}
    for i, e in enumerate(_need(data, "actions", str(p))):
        where = f"{p} actions[{i}]"
        for f in ("component", "action", "bits", "compose", "source"):
            _need(e, f, where)
        if not isinstance(e["compose"], Mapping):
            raise UserError(f"energy table {where}: field 'compose' must map primitive/bits to a count")
        comp: dict[tuple[str, int], float] = {}
        for term, n in e["compose"].items():
            op, _, b = str(term).partition("/")
            if b and not b.isdigit():
                raise UserError(f"energy table {where}: compose term {term!r} must be 'primitive/bits'")
            prim = (op, int(b or 0))
            n = _num(e["compose"], term, f"{where} compose")
            if prim not in prims:
                raise UserError(f"{where}: composes unknown primitive {term!r}")
            if n < 0:
                raise UserError(f"{where}: negative multiplicity for {term!r}")
            comp[prim] = comp.get(prim, 0.0) + n
        key = (e["component"], e["action"], _num(e, "bits", where, integer=True))
        if key in comps:
            raise UserError(f"{where}: duplicate action {key}")
        comps[key] = comp
        entries.append(dict(e, kind="action", energy=sum(n * prims[q][1] for q, n in comp.items()),
                            unit="pJ/action"))
    sram = _need(data, "sram", str(p))
    pts = tuple(dict(x) for x in _need(sram, "size_points", f"{p} sram"))
    for x in pts:
        for f in ("kbytes", "bits", "read", "write", "leakage_mw", "source", "treatment", "device"):
            _need(x, f, f"{p} sram.size_points")
        for f in ("kbytes", "bits", "read", "write", "leakage_mw"):
            _num(x, f, f"{p} sram.size_points[kbytes={x.get('kbytes')}]")
        if x["bits"] != 256:
            raise UserError(f"{p}: sram.size_points are per 256-bit access")
        entries.append(dict(x, kind="sram"))
    ratios = {_num(x, "bits", f"{p} sram.width_ratios", integer=True):
              (_num(x, "read", f"{p} sram.width_ratios[bits={x.get('bits')}]"),
               _num(x, "write", f"{p} sram.width_ratios[bits={x.get('bits')}]"))
              for x in _need(sram, "width_ratios", f"{p} sram")}
    ar = _need(sram, "access_range", f"{p} sram")
    for f in ("source", "treatment"):
        _need(ar, f, f"{p} sram.access_range")
    _check_treatment(ar, f"{p} sram.access_range")
    access = _range(dict(ar, central=1.0), f"{p} sram.access_range", "central")
    entries.append(dict(ar, kind="sram_access_range"))
    lk = _need(sram, "leakage", f"{p} sram")
    for f in ("device", "temperature", "source", "treatment"):
        _need(lk, f, f"{p} sram.leakage")
    _check_treatment(lk, f"{p} sram.leakage")
    density = (_num(lk, "low_mw_per_kb", f"{p} sram.leakage"), _num(lk, "high_mw_per_kb", f"{p} sram.leakage"))
    if not 0 <= density[0] <= density[1]:
        raise UserError(f"{p} sram.leakage: need 0 <= low_mw_per_kb <= high_mw_per_kb, got {density}")
    entries.append(dict(lk, kind="sram_leakage"))
    ll = _need(data, "logic_leakage", str(p))
    _need(ll, "included", f"{p} logic_leakage")
    if ll["included"] is not False:
        raise UserError(f"{p} logic_leakage: only 'included: false' is supported (no source)")
    entries.append(dict(ll, kind="logic_leakage", source=ll.get("reason", "")))
    dram_d = _need(data, "dram", str(p))
    mems = {}
    for name, d in _need(dram_d, "memories", f"{p} dram").items():
        where = f"{p} dram.memories.{name}"
        for f in ("unit", "source", "treatment"):
            _need(d, f, where)
        _check_treatment(d, where)
        lo, c, hi = _range(d, where, "central")
        mems[str(name)] = {"low": lo, "central": c, "high": hi, **{k: d[k] for k in ("source", "unit")}}
        entries.append(dict(d, kind="dram", memory=str(name)))
    default = str(_need(dram_d, "default", f"{p} dram"))
    if default not in mems:
        raise UserError(f"{p} dram.default: {default!r} is not one of {', '.join(mems)}")
    t = EnergyTable(name=str(data.get("name", p.stem)), node_nm=_num(data, "node_nm", str(p), integer=True),
                    primitives={}, actions={}, sram_points=pts, width_ratios=ratios, dram={},
                    primitive_range=prims, compositions=comps, access_range=access,
                    leakage_density=density, dram_memories=mems, dram_memory=default,
                    entries=tuple(entries), source=str(p))
    return t.with_dram(dram or default)
