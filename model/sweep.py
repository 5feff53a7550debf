"""Design-space sweeps: the cycle and energy model over hardware configurations x networks x
accelerators x modes (``python -m model sweep --grid GRID.toml``).

The grid is a TOML file (read with :mod:`tomllib`; nothing in it is executed)::

    [sweep]
    base = "paper"                      # configuration every point starts from (name or path)
    accelerators = ["proposed-rtl"]     # model variants (model.accelerators.ACCELERATORS)
    modes = ["stt", "ptt", "htt"]       # training modes (sw.arch.MODES)
    energy_table = "..."                # optional: energy table YAML (default: the 28 nm table)
    sparsity = {spike = 0.9, grad = 0.7}  # optional (default: SATA's figures)

    [hardware]                          # dotted field -> values; every combination is a point
    "clusters.pes" = [16, 32, 64]       # alias: the six per-unit lane counts together
    "buffers.weight.bytes" = [53504, 107008]
    "dataflow.clusters23" = ["weight-stationary", "output-stationary"]   # alias: cluster2 + cluster3

    [networks.resnet18]                 # one table per network
    workload = "resnet18-cifar10"       # a sw.arch.WORKLOADS name, or arch/input/classes/timesteps/ranks

    [area]
    synth_reports = ["build/synth/paper/synth_report.json"]   # optional (python -m gen.synth)

Every hardware combination is validated (:func:`gen.config.config_from_dict`) before anything
runs; an invalid one gives one ``invalid`` row per point with the configuration error. Points
run as independent jobs on a :mod:`sw.backends` backend and are appended to ``sweep.csv`` as
they finish (flushed and synced), so an interrupted sweep continues where it stopped when run
again with the same ``--out``; at the end the file is rewritten in point order, the Pareto
fronts (energy vs cycles, per network) go to ``pareto.csv`` and ``pareto.png``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ttsnn.gen.config import ConfigError, config_from_dict, load_config
from ttsnn.sw.arch import MODES, WORKLOADS
from ttsnn.sw.backends import Backend
from ttsnn.sw.fileio import atomic_write_json, atomic_write_text
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["Grid", "load_grid", "parse_grid", "run_sweep", "evaluate_point", "pareto_front",
           "ALIASES", "CSV_COLUMNS"]

#: Grid keys that set several configuration fields at once (the generated datapath needs
#: equal lane counts in every unit, and clusters 2 and 3 in the same dataflow).
ALIASES: Mapping[str, tuple[str, ...]] = {
    "clusters.pes": tuple(f"clusters.{f}" for f in ("spike_pes", "g2_pes", "g3_pes", "g4_pes",
                                                     "adder_lanes", "lif_lanes")),
    "dataflow.clusters23": ("dataflow.cluster2", "dataflow.cluster3"),
}
_SECTIONS = {"sweep": {"base", "accelerators", "modes", "energy_table", "sparsity"},
             "hardware": None, "networks": None, "area": {"synth_reports"}}
_NETWORK_KEYS = {"workload", "arch", "input", "classes", "timesteps", "ranks", "schedule"}

#: Result columns of ``sweep.csv`` after the point's own (point, status, error, the swept fields,
#: network, accelerator, mode). Energies in pJ, cycles at the configuration's clock.
CSV_COLUMNS = ("config", "total_pes", "buffer_bytes", "memory_bits", "area_gates",
               "energy_pj", "forward_pj", "backward_pj", "weight_update_pj",
               "cycles", "forward_cycles", "backward_cycles", "weight_update_cycles", "time_s")


@dataclass(frozen=True)
class Grid:
    """A parsed, checked grid: what the points are made of."""
    source: str
    base: dict
    hardware: dict[str, list]
    networks: dict[str, dict]
    accelerators: list[str]
    modes: list[str]
    energy_table: str | None = None
    sparsity: dict | None = None
    synth_reports: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """What decides the points and their results (not where the grid file lies)."""
        d = {k: getattr(self, k) for k in ("base", "hardware", "networks", "accelerators", "modes",
                                            "energy_table", "sparsity", "synth_reports")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def hardware_points(self) -> list[dict[str, Any]]:
        """Every combination of the swept values, in grid order (first key slowest)."""
        keys = list(self.hardware)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(self.hardware[k] for k in keys))]

    def points(self) -> list[dict[str, Any]]:
        """Every point: hardware combination x network x accelerator x mode, numbered."""
        out = []
        for h, hw in enumerate(self.hardware_points()):
            for net, acc, mode in itertools.product(self.networks, self.accelerators, self.modes):
                out.append({"point": len(out), "hw_index": h, "hw": hw, "network": net,
                            "accelerator": acc, "mode": mode})
        return out


def load_grid(path: str | os.PathLike) -> Grid:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"--grid {p}: no such file; see configs/sweep/example.toml")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--grid {p}: not valid TOML: {exc}") from None
    return parse_grid(data, str(p))


def parse_grid(data: Mapping[str, Any], source: str = "grid") -> Grid:
    """Check a grid mapping (as :mod:`tomllib` gives it) and build a :class:`Grid`."""
    from .accelerators import ACCELERATORS

    def bad(msg: str) -> UserError:
        return UserError(f"{source}: {msg}")

    for sec, value in data.items():
        if sec not in _SECTIONS:
            raise bad(f"unknown section [{sec}]; allowed: {', '.join(_SECTIONS)}")
        if not isinstance(value, Mapping):
            raise bad(f"[{sec}] must be a table")
        allowed = _SECTIONS[sec]
        if allowed is not None and set(value) - allowed:
            raise bad(f"[{sec}] unknown key {sorted(set(value) - allowed)[0]!r}; allowed: {sorted(allowed)}")
    sweep = data.get("sweep", {})
    base_cfg = load_config(sweep.get("base", "paper"))
    base = base_cfg.to_dict()
    accelerators = _str_list(sweep.get("accelerators", ["proposed-rtl"]), "sweep.accelerators", bad)
    for a in accelerators:
        if a not in ACCELERATORS:
            raise bad(f"sweep.accelerators: unknown accelerator {a!r}; choose from {', '.join(ACCELERATORS)}")
    modes = _str_list(sweep.get("modes", ["stt", "ptt", "htt"]), "sweep.modes", bad)
    for m in modes:
        if m not in MODES:
            raise bad(f"sweep.modes: unknown mode {m!r}; choose from {', '.join(MODES)}")
    sparsity = sweep.get("sparsity")
    if sparsity is not None:
        if not isinstance(sparsity, Mapping) or set(sparsity) - {"spike", "grad"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 for v in sparsity.values()):
            raise bad("sweep.sparsity must be a table {spike = S, grad = G} of numbers in [0, 1)")
        sparsity = dict(sparsity)
    hardware = {}
    for key, values in data.get("hardware", {}).items():
        if not isinstance(values, list) or not values:
            raise bad(f"hardware.{key!r} must be a non-empty list of values, got {values!r}")
        for target in ALIASES.get(key, (key,)):
            _field_of(base, target, bad)   # the field must exist (typos fail here, not per point)
        hardware[key] = list(values)
    networks = {}
    nets = data.get("networks") or {"resnet18": {"workload": "resnet18-cifar10"}}
    for name, spec in nets.items():
        if not isinstance(spec, Mapping) or not spec or set(spec) - _NETWORK_KEYS:
            raise bad(f"networks.{name} must be a table with 'workload' or the keys "
                      f"{sorted(_NETWORK_KEYS - {'workload'})}")
        networks[name] = dict(spec)
        _workload(networks[name])             # checks the network now, before any point runs
    reports = _str_list(data.get("area", {}).get("synth_reports", []), "area.synth_reports", bad)
    return Grid(source, base, hardware, networks, accelerators, modes, sweep.get("energy_table"),
                sparsity, reports)


def _str_list(value: Any, name: str, bad: Callable[[str], ValueError]) -> list[str]:
    if not isinstance(value, list) or not value and name != "area.synth_reports" or \
            not all(isinstance(v, str) for v in value):
        raise bad(f"{name} must be a non-empty list of strings, got {value!r}")
    return list(value)


def _field_of(cfg: dict, dotted: str, bad: Callable[[str], ValueError]) -> tuple[dict, str]:
    """The dict holding ``dotted`` in a configuration dict, and the last key."""
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise bad(f"hardware: {dotted!r} is not a configuration field (aliases: {', '.join(ALIASES)}; "
                      "fields as in configs/paper.toml, e.g. 'buffers.weight.bytes')")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node or isinstance(node[parts[-1]], dict):
        raise bad(f"hardware: {dotted!r} is not a configuration field (aliases: {', '.join(ALIASES)}; "
                  "fields as in configs/paper.toml, e.g. 'buffers.weight.bytes')")
    return node, parts[-1]


def hardware_dict(base: dict, hw: Mapping[str, Any], index: int) -> dict:
    """The configuration dict of one hardware combination (``base`` with ``hw`` applied)."""
    d = json.loads(json.dumps(base))
    d["name"] = f"{base['name']}_sweep{index}"
    for key, value in hw.items():
        for target in ALIASES.get(key, (key,)):
            node, last = _field_of(d, target, ValueError)
            node[last] = value
    return d


def _workload(spec: Mapping[str, Any]):
    from ttsnn.sw.stats import parse_input_shape
    from .evaluate import Workload
    if "workload" in spec:
        if len(spec) != 1:
            raise UserError("a network is either 'workload = NAME' or arch/input/classes/timesteps/ranks")
        if spec["workload"] not in WORKLOADS:
            raise UserError(f"unknown workload {spec['workload']!r}; choose from {', '.join(WORKLOADS)}")
        w = WORKLOADS[spec["workload"]]
        ranks = w.uniform_rank if w.uniform_rank is not None else w.ranks
        return Workload(w.arch, w.in_channels, w.input_hw, w.num_classes, w.timesteps, ranks)
    missing = {"arch", "input", "classes", "timesteps", "ranks"} - set(spec)
    if missing:
        raise UserError(f"network needs {sorted(missing)} (or 'workload = NAME')")
    c, h, w = parse_input_shape(spec["input"])
    wl = Workload(spec["arch"], c, (h, w), spec["classes"], spec["timesteps"], spec["ranks"],
                  spec.get("schedule"))
    wl.specs("ptt")   # unknown arch, ranks out of range: one clear error now
    return wl


@functools.lru_cache(maxsize=4)
def _energy_table(path: str | None):
    from .energy_table import load_energy_table
    return load_energy_table(path)


def evaluate_point(job: dict) -> dict[str, Any]:
    """One point (a job of the backend): the network in one mode on one accelerator of one
    configuration. Returns the CSV row; a point the model cannot cost (``ValueError``, e.g. a
    layer that no tile of the configuration holds) is an ``invalid`` row with the message."""
    from .counts import Sparsity
    from .evaluate import evaluate_network
    row = _row_head(job)
    try:
        cfg = config_from_dict(job["config"], source="sweep")
        sp = Sparsity(**job["sparsity"]) if job.get("sparsity") else Sparsity()
        r = evaluate_network(_workload(job["network_spec"]), job["mode"], job["accelerator"], cfg,
                             _energy_table(job.get("energy_table")), sp)
    except ValueError as exc:
        return {**row, "status": "invalid", "error": str(exc)}
    bp, cyc = r.by_pass(), r.cycles()
    return {**row, "status": "ok", "error": "", "energy_pj": r.total_pj, "forward_pj": bp["forward"],
            "backward_pj": bp["backward"], "weight_update_pj": bp["weight_update"],
            "cycles": cyc["total"], "forward_cycles": cyc["forward"], "backward_cycles": cyc["backward"],
            "weight_update_cycles": cyc["weight_update"], "time_s": cyc["total"] / (cfg.clock_mhz * 1e6)}


def _row_head(job: dict) -> dict[str, Any]:
    return {"point": job["point"], **{k: job["hw"][k] for k in job["hw"]}, "network": job["network"],
            "accelerator": job["accelerator"], "mode": job["mode"], "config": job["config"]["name"],
            **job["sizes"]}


def _columns(grid: Grid) -> list[str]:
    return ["point", "status", "error", *grid.hardware, "network", "accelerator", "mode", *CSV_COLUMNS]


def _sizes(cfg, area: Mapping[str, int]) -> dict[str, Any]:
    key = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "name"}, sort_keys=True)
    return {"total_pes": cfg.total_pes, "buffer_bytes": cfg.total_buffer_bytes,
            "memory_bits": sum(r.bits for r in cfg.regions.values()), "area_gates": area.get(key, "")}


def _area_index(reports: Sequence[str], warn: Callable[[str], None]) -> dict[str, int]:
    """Configuration (as canonical JSON, without its name) -> generic gates + gate flip-flops of
    its synthesis report. Only exactly the configuration that was synthesised gets an area."""
    out = {}
    for path in reports:
        p = Path(path)
        if not p.is_file():
            warn(f"area: {p} not found (python -m gen.synth writes it; `make synth` for the paper "
                 "configuration); points of that configuration get no area")
            continue
        try:
            rep = json.loads(p.read_text())
            cfg = load_config(rep["config"])
            gates = sum(m["generic_gates"] + m["gate_flipflops"] for m in rep["modules"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"area: {p} is not a synthesis report of python -m gen.synth ({exc})") from None
        out[json.dumps({k: v for k, v in cfg.to_dict().items() if k != "name"}, sort_keys=True)] = gates
    return out


def plan(grid: Grid, warn: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """Validate every hardware combination; returns (jobs to run, invalid rows)."""
    area = _area_index(grid.synth_reports, warn)
    hw_points = grid.hardware_points()
    configs: list[Any] = []
    for h, hw in enumerate(hw_points):
        d = hardware_dict(grid.base, hw, h)
        try:
            configs.append(config_from_dict(d, source=f"configuration {d['name']} {hw}"))
        except ConfigError as exc:
            configs.append(exc)
    jobs, invalid = [], []
    for pt in grid.points():
        cfg = configs[pt["hw_index"]]
        if isinstance(cfg, ConfigError):
            invalid.append({"point": pt["point"], "status": "invalid", "error": str(cfg), **pt["hw"],
                            "network": pt["network"], "accelerator": pt["accelerator"], "mode": pt["mode"]})
            continue
        jobs.append({**pt, "config": cfg.to_dict(), "network_spec": grid.networks[pt["network"]],
                     "energy_table": grid.energy_table, "sparsity": grid.sparsity,
                     "sizes": _sizes(cfg, area)})
    return jobs, invalid


# ---- the journal: sweep.csv, appended as points finish ----------------------------------------
def _fmt(v: Any) -> str:
    # repr of a float round-trips exactly: the CSV holds the results bit for bit
    return repr(v) if isinstance(v, float) else str(v)


def _read_journal(path: Path, columns: list[str]) -> dict[int, dict[str, str]]:
    """Rows already written; a last line cut off by a kill is dropped (and cut from the file)."""
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        with open(path, "r+") as f:
            f.truncate(len(text.encode()))
    rows = list(csv.DictReader(io.StringIO(text)))
    if text and next(csv.reader(io.StringIO(text))) != columns:
        raise UserError(f"{path} has other columns than this grid's; use --force to start the sweep anew")
    return {int(r["point"]): r for r in rows}


def _append(f, columns: list[str], row: Mapping[str, Any]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_fmt(row.get(c, "")) for c in columns])
    f.write(buf.getvalue())
    f.flush()
    os.fsync(f.fileno())


def run_sweep(grid: Grid, out: str | os.PathLike, backend: Backend, *, force: bool = False,
              progress: bool | None = None, log: Callable[[str], None] = print,
              warn: Callable[[str], None] | None = None,
              on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the sweep of ``grid`` into ``out``; returns a summary. ``on_row`` is
    called after each row is journaled (progress hooks; the tests interrupt the sweep there)."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log
    warn = warn or (lambda m: log(f"warning: {m}"))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    meta_path, csv_path = out / "sweep.json", out / "sweep.csv"
    columns = _columns(grid)
    fp = grid.fingerprint()
    done: dict[int, dict] = {}
    if meta_path.exists() and not force:
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            raise UserError(f"{meta_path} is damaged; use --force to start the sweep anew") from None
        if meta.get("fingerprint") != fp:
            raise UserError(f"--out {out} holds a sweep of another grid ({meta.get('grid')}); "
                            "use --force to replace it, or choose another --out")
        if csv_path.exists():
            done = _read_journal(csv_path, columns)
    else:
        for f in (csv_path, meta_path, out / "pareto.csv", out / "pareto.png"):
            f.unlink(missing_ok=True)
    jobs, invalid = plan(grid, warn)
    total = len(jobs) + len(invalid)
    atomic_write_json(meta_path, {"grid": grid.source, "fingerprint": fp, "points": total,
                                  "columns": columns})
    todo = [j for j in jobs if j["point"] not in done]
    if done:
        log(f"resuming: {len(done)} of {total} points already in {csv_path}")
    log(f"{total} points ({len(invalid)} on invalid configurations), {len(todo)} to evaluate on "
        f"{backend.describe()}")
    new = 0
    fresh = not csv_path.exists() or csv_path.stat().st_size == 0
    with open(csv_path, "a", newline="") as f:
        if fresh:
            _append(f, columns, {c: c for c in columns})
        for row in invalid:
            if row["point"] not in done:
                _append(f, columns, row)
                done[row["point"]] = row
        bar = tqdm(total=len(todo), desc="sweep", leave=False, disable=None if progress is None else not progress)
        try:
            for _, row in backend.map_unordered(evaluate_point, todo):
                _append(f, columns, row)
                done[row["point"]] = row
                new += 1
                bar.update()
                if on_row:
                    on_row(row)
        finally:
            bar.close()
    return _finish(grid, out, columns, csv_path, new, log)


def _finish(grid: Grid, out: Path, columns: list[str], csv_path: Path, new: int,
            log: Callable[[str], None]) -> dict[str, Any]:
    """Rewrite the journal in point order; Pareto fronts as CSV and plot."""
    rows = sorted(_read_journal(csv_path, columns).values(), key=lambda r: int(r["point"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    ok = [r for r in rows if r["status"] == "ok"]
    fronts = {net: pareto_front([r for r in ok if r["network"] == net]) for net in grid.networks}
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writeheader()
    w.writerows(r for net in grid.networks for r in fronts[net])
    atomic_write_text(out / "pareto.csv", buf.getvalue())
    if ok:
        plot_pareto(ok, fronts, grid, out / "pareto.png")
    bad = [r for r in rows if r["status"] != "ok"]
    # one line per distinct error (an invalid configuration makes every point of it invalid)
    by_error: dict[str, list[str]] = {}
    for r in bad:
        by_error.setdefault(r["error"], []).append(r["point"])
    for err, pts in by_error.items():
        log(f"invalid: {len(pts)} point(s) ({', '.join(pts[:6])}{', ...' if len(pts) > 6 else ''}): {err}")
    log(f"wrote {csv_path} ({len(rows)} points: {len(ok)} ok, {len(bad)} invalid; {new} evaluated now), "
        f"{out / 'pareto.csv'}" + (f", {out / 'pareto.png'}" if ok else ""))
    return {"points": len(rows), "ok": len(ok), "invalid": len(bad), "evaluated": new,
            "pareto": {n: [int(r["point"]) for r in f] for n, f in fronts.items()}}


def pareto_front(rows: Sequence[Mapping[str, Any]], x: str = "cycles", y: str = "energy_pj") -> list:
    """The rows no other row beats in both ``x`` and ``y`` (lower is better), by ascending ``x``;
    of rows with equal (x, y) the first is kept."""
    pts = sorted(rows, key=lambda r: (float(r[x]), float(r[y]), int(r["point"])))
    front, best_y = [], math.inf
    for r in pts:
        if float(r[y]) < best_y:
            front.append(r)
            best_y = float(r[y])
    return front


def plot_pareto(ok: Sequence[Mapping[str, Any]], fronts: Mapping[str, list], grid: Grid, path: Path) -> None:
    """Energy vs cycles per network; colour: global buffer size; the Pareto front as a line;
    points with a synthesis area are labelled with it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nets = [n for n in grid.networks if fronts.get(n)]
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 4.8), squeeze=False)
    markers = dict(zip(grid.modes, "os^Dvx<>"))
    kb = [int(r["buffer_bytes"]) / 1024 for r in ok]
    norm = matplotlib.colors.Normalize(min(kb), max(kb) if max(kb) > min(kb) else min(kb) + 1)
    for ax, net in zip(axes[0], nets):
        for mode in grid.modes:
            rs = [r for r in ok if r["network"] == net and r["mode"] == mode]
            if rs:
                sc = ax.scatter([float(r["cycles"]) / 1e6 for r in rs], [float(r["energy_pj"]) * 1e-6 for r in rs],
                                c=[int(r["buffer_bytes"]) / 1024 for r in rs], cmap="viridis", norm=norm,
                                marker=markers[mode], label=mode, edgecolors="k", linewidths=0.3)
        f = fronts[net]
        ax.step([float(r["cycles"]) / 1e6 for r in f], [float(r["energy_pj"]) * 1e-6 for r in f],
                where="post", color="crimson", lw=1, label="Pareto front")
        for r in ok:
            if r["network"] == net and r.get("area_gates") not in ("", None):
                ax.annotate(f"{int(r['area_gates']) / 1e3:.0f}k gates", (float(r["cycles"]) / 1e6,
                            float(r["energy_pj"]) * 1e-6), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("cycles per training step (M)")
        ax.set_ylabel("energy per training step (uJ)")
        ax.set_title(net)
        ax.legend(fontsize=8)
    fig.colorbar(sc, ax=axes[0].tolist(), label="global buffers (KB)")
    fig.suptitle(f"design-space sweep {Path(grid.source).name}: one BPTT step of one sample", fontsize=10)
    from ttsnn.sw.fileio import atomic_write
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
