"""The energy table: (component, action, bits) -> pJ per action, kept as data.

The shipped table is ``model/data/energy_28nm.yaml``; every entry names its unit, bit width,
node, source and whether it is published, scaled or calibrated. :class:`EnergyTable` loads
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

__all__ = ["EnergyTable", "UnknownActionError", "load_energy_table", "DEFAULT_TABLE",
           "Memory"]

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "energy_28nm.yaml"


class UnknownActionError(KeyError):
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
    """A validated energy table (build with :func:`load_energy_table`)."""
    name: str
    node_nm: int
    primitives: Mapping[tuple[str, int], float]
    actions: Mapping[tuple[str, str, int], float]
    sram_points: tuple[dict, ...]
    width_ratios: Mapping[int, tuple[float, float]]
    leakage_factor: float
    dram: Mapping[str, float]
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
        """pJ per access of a ``width_bits`` port of a ``size_bytes`` SRAM (CACTI interpolation)."""
        if action not in ("read", "write"):
            raise UnknownActionError(f"SRAM action must be 'read' or 'write', got {action!r}")
        if size_bytes <= 0 or width_bits <= 0:
            raise ValueError(f"SRAM size and width must be positive, got {size_bytes} B, {width_bits} b")
        idx = 0 if action == "read" else 1
        at256 = _loglog([(p["kbytes"] * 1024, p[action]) for p in self.sram_points], size_bytes)
        ratio = _loglog([(b, r[idx]) for b, r in self.width_ratios.items()], width_bits)
        return at256 * ratio

    def sram_leakage_mw(self, size_bytes: int) -> float:
        """Leakage of one SRAM buffer (mW), interpolated from the CACTI points up to 144 KB."""
        pts = [(p["kbytes"] * 1024, p["leakage_mw"]) for p in self.sram_points if p["kbytes"] <= 144]
        return _loglog(pts, size_bytes) * self.leakage_factor

    def with_overrides(self, *, dram_pj_per_bit: float | None = None,
                       leakage_factor: float | None = None, scale: Mapping[str, float] | None = None
                       ) -> "EnergyTable":
        """A copy with calibration knobs changed (used by the sensitivity analysis).

        ``scale``: multiply every action of a component (``{'mult_pe': 1.1}``) or, with the
        key ``'sram'``, every SRAM access energy.
        """
        t = self
        if dram_pj_per_bit is not None:
            t = replace(t, dram={"read": float(dram_pj_per_bit), "write": float(dram_pj_per_bit)})
        if leakage_factor is not None:
            t = replace(t, leakage_factor=float(leakage_factor))
        if scale:
            acts = dict(t.actions)
            pts = list(t.sram_points)
            for comp, f in scale.items():
                if f < 0:
                    raise ValueError(f"scale factor for {comp} must be >= 0, got {f}")
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
        raise ValueError(f"energy table {where}: expected a mapping with field {key!r}, got {d!r}")
    if key not in d:
        raise ValueError(f"energy table {where}: missing field {key!r}")
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
        raise ValueError(f"energy table {where}: field {key!r} must be {kind}, got {v!r}")
    return int(v) if integer else float(v)


def load_energy_table(path: str | Path | None = None) -> EnergyTable:
    """Load and validate an energy table YAML (default: the shipped 28 nm table)."""
    p = Path(path) if path is not None else DEFAULT_TABLE
    if not p.is_file():
        raise FileNotFoundError(f"energy table {str(p)!r} not found; give a YAML file like "
                                f"{DEFAULT_TABLE}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"energy table {p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"energy table {p}: expected a mapping at the top level")
    entries: list[dict] = []
    prims: dict[tuple[str, int], float] = {}
    for i, e in enumerate(_need(data, "primitives", str(p))):
        where = f"{p} primitives[{i}]"
        for f in ("op", "bits", "energy", "unit", "node_nm", "source", "treatment"):
            _need(e, f, where)
        if e["treatment"] not in ("published", "scaled", "calibrated"):
            raise ValueError(f"{where}: treatment must be published|scaled|calibrated")
        if e["treatment"] != "published" and "rule" not in e and "range" not in e:
            raise ValueError(f"{where}: a {e['treatment']} entry must give its rule or range")
        if _num(e, "energy", where) < 0:
            raise ValueError(f"{where}: energy must be >= 0, got {e['energy']}")
        prims[(e["op"], _num(e, "bits", where, integer=True))] = _num(e, "energy", where)
        entries.append(dict(e, kind="primitive"))
    acts: dict[tuple[str, str, int], float] = {}
    for i, e in enumerate(_need(data, "actions", str(p))):
        where = f"{p} actions[{i}]"
        for f in ("component", "action", "bits", "compose", "source"):
            _need(e, f, where)
        total = 0.0
        if not isinstance(e["compose"], Mapping):
            raise ValueError(f"energy table {where}: field 'compose' must map primitive/bits to a count")
        for term, n in e["compose"].items():
            op, _, b = str(term).partition("/")
            if b and not b.isdigit():
                raise ValueError(f"energy table {where}: compose term {term!r} must be 'primitive/bits'")
            prim = (op, int(b or 0))
            n = _num(e["compose"], term, f"{where} compose")
            if prim not in prims:
                raise ValueError(f"{where}: composes unknown primitive {term!r}")
            if n < 0:
                raise ValueError(f"{where}: negative multiplicity for {term!r}")
            total += n * prims[prim]
        key = (e["component"], e["action"], _num(e, "bits", where, integer=True))
        if key in acts:
            raise ValueError(f"{where}: duplicate action {key}")
        acts[key] = total
        entries.append(dict(e, kind="action", energy=total, unit="pJ/action"))
    sram = _need(data, "sram", str(p))
    pts = tuple(dict(x) for x in _need(sram, "size_points", f"{p} sram"))
    for x in pts:
        for f in ("kbytes", "bits", "read", "write", "leakage_mw", "source", "treatment"):
            _need(x, f, f"{p} sram.size_points")
        for f in ("kbytes", "bits", "read", "write", "leakage_mw"):
            _num(x, f, f"{p} sram.size_points[kbytes={x.get('kbytes')}]")
        if x["bits"] != 256:
            raise ValueError(f"{p}: sram.size_points are per 256-bit access")
        entries.append(dict(x, kind="sram"))
    ratios = {_num(x, "bits", f"{p} sram.width_ratios", integer=True):
              (_num(x, "read", f"{p} sram.width_ratios[bits={x.get('bits')}]"),
               _num(x, "write", f"{p} sram.width_ratios[bits={x.get('bits')}]"))
              for x in _need(sram, "width_ratios", f"{p} sram")}
    lf = _need(sram, "leakage_factor", f"{p} sram")
    dram_d = _need(data, "dram", str(p))
    dram = {}
    for a in ("read", "write"):
        d = _need(dram_d, a, f"{p} dram")
        if _num(d, "bits", f"{p} dram.{a}", integer=True) != 1:
            raise ValueError(f"{p}: dram energies are per bit (bits: 1)")
        dram[a] = _num(d, "energy", f"{p} dram.{a}")
        entries.append(dict(d, kind="dram", action=a))
    return EnergyTable(name=str(data.get("name", p.stem)), node_nm=_num(data, "node_nm", str(p), integer=True),
                       primitives=prims, actions=acts, sram_points=pts, width_ratios=ratios,
                       leakage_factor=_num(lf, "value", f"{p} sram.leakage_factor"), dram=dram, entries=tuple(entries),
                       source=str(p))
