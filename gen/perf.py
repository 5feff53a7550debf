"""``python -m gen.perf``: cycles per TT layer of MS-ResNet18 / MS-ResNet34 versus the ideal bound.

Paper-sized layers are too large for amaranth.sim, so the cycles come from the exact cycle
model :mod:`gen.cyclemodel` (equal to the RTL's ``cycles`` counter on every tile the tests
simulate), summed over the driver's tiles (:func:`gen.driver.plan_layer`). Two figures per
layer: ``cycles`` with a host that keeps the streaming rings full (the datapath alone), and
``host cycles`` with the host of :func:`gen.driver.run_tile` on the configured host port
(``widths.host_data`` bits per cycle, one beat per cycle; :mod:`gen.hosttiming`, equal to the
RTL's counters on every tile the tests simulate): the tiles' ``cycles`` with their host
stalls (``c1_in_wait``, ``lif_stall``) plus the host's bus cycles outside them (set-up,
cores, the output rows and counter reads after ``done``). The goal is met on host cycles.
The bound is issue 4's: the busiest cluster's operations divided by its PEs, all timesteps,
no halo (:func:`ideal_bound`). Clusters 2-4 count their MACs. Cluster 1 counts what it must
do: the dense cluster 1 (``arrangement.cluster1 = "dense"``) every spike x G1-weight slot,
``T * H * W * Cin * r``; the zero-skipping one (``"zero_skip"``, the paper's arrangement) only
the accumulates of 1-spikes, ``density * T * H * W * Cin * r``: its steps on all-zero spike
words and its lanes left idle (one input channel of ``Pk`` rank channels per step, out of
``P`` lanes) are losses, not part of the bound.

The zero-skipping cluster 1's cycles depend on the spikes. The table takes them from a
stated input spike density (``--spike-density``, default 0.1: the energy model's default,
SATA's spike sparsity 0.9; :func:`network_report` also takes a density per layer, e.g. the
energy model's ``Sparsity.input_density``): every spike is 1 with that probability,
independently, and the cycle model schedules each cluster-1 row's expected length
(:func:`gen.zero_skip.expected_row_lens`, as the energy model does). The figures are then expected values (the schedule of expected
lengths, not the mean of schedules; tests/gen/test_perf.py compares it with random spikes);
with known spikes (co-simulated tiles) the same models are exact (``c1_lens`` of
:func:`gen.zero_skip.zero_skip_row_lens`, tests/gen/test_host_timing.py, tests/cosim).

Where the cycles above the bound go, per layer (columns of the table; they add up exactly,
``bound + halo + padding + pipeline = cycles``), measured on the busiest cluster ``B``:
  halo       B's work on halo pixels (columns of a strip inside the layer; STT's cluster 2
             computes q2 on the halo columns it needs);
  padding    B's busy cycles with idle lanes: rank channels or columns that do not fill the
             Pk x Px lanes, HTT's bypass copies, zero writes of halo pixels;
  pipeline   cycles B does not issue: the pipeline fill and drain, waits for other engines.
With the zero-skipping cluster 1 as ``B``, its work is its accumulates (``c1_adds``), and its
padding includes the steps of all-zero spike words and the lanes a step leaves idle.
Layers whose cores exceed their regions run with those cores streamed through rings
(``fits = S4``, ``S234``, ``S1234``: the streamed cores; their chunk waits are the ``w_wait``
column, ``c1_w_wait + c2_w_wait + c3_w_wait + c4_w_wait`` with the host; G1 streams with
either cluster 1). Layers with a core that exceeds its region even as a ring of one chunk
(``fits = NO``) are timed on the same datapath with a weight buffer large enough, to show
what weight streaming would have to achieve; they are left out of the totals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ttsnn.sw.arch import WORKLOADS, WorkloadSpec
from ttsnn.sw.cli_util import UserError, prog_name, run_cli
from ttsnn.sw.fileio import add_force_argument, check_outputs

from ttsnn.gen.config import HardwareConfig, load_config
from ttsnn.gen.cyclemodel import TileShape, ideal_cycles, tile_counters
from ttsnn.gen.driver import plan_layer_any_weights, streamed_cores
from ttsnn.gen.geometry import window_pixels
from ttsnn.gen.hosttiming import host_tile_timing, shape_traffic
from ttsnn.gen.zero_skip import DEFAULT_SPIKE_DENSITY, expected_row_lens

#: the networks ``--network`` chooses from: the paper's workloads, defined in sw.arch
NETWORKS: Mapping[str, WorkloadSpec] = WORKLOADS
#: the ratio the issue asks for
GOAL = 1.15

_CLUSTER_COUNTERS = {"cluster1": ("c1_busy", "c1_slots"), "cluster2": ("c2_busy", "c2_macs"),
                     "cluster3": ("c3_busy", "c3_macs"), "cluster4": ("c4_busy", "c4_macs")}


def zero_skip(cfg: HardwareConfig) -> bool:
    """Whether ``cfg`` builds the zero-skipping cluster 1 (data-dependent cycles)."""
    return cfg.arrangement.cluster1 == "zero_skip"


def ideal_bound(cfg: HardwareConfig, in_channels: int, rank: int, out_channels: int, height: int,
                width: int, schedule: Sequence[bool], mode: str,
                density: float | None = None) -> dict[str, Any]:
    """The ideal bound of a whole layer: each cluster's operations divided by its PEs, the
    busiest cluster's (:func:`gen.cyclemodel.ideal_cycles`). With the zero-skipping cluster 1
    its operations are the accumulates of 1-spikes, ``density`` times the dense count (the
    skipped zeros cost nothing in the bound; ``density`` required)."""
    ideal = ideal_cycles(cfg, in_channels, rank, out_channels, height, width, schedule, mode)
    if not zero_skip(cfg):
        return ideal
    if density is None:
        raise ValueError("the zero-skipping cluster 1's bound needs the input spike density")
    ops = {k[:-4]: v for k, v in ideal.items() if k.endswith("_ops")}
    ops["cluster1"] *= density
    busiest = max(ops, key=ops.get)
    return {"bound": ops[busiest] / cfg.lanes, "busiest": busiest, **{f"{k}_ops": v for k, v in ops.items()}}


def chain_bound(cfg: HardwareConfig, mode: str, ideal: Mapping[str, Any]) -> float:
    """The bound of the arrangement's STT chain: with ``stt_chain = "sequential"`` (the paper's)
    STT's clusters 2 and 3 take turns, so a layer needs at least their MACs together over one
    cluster's PEs, ``max(c1, c2 + c3, c4) / P``; otherwise (and in PTT / HTT, whose clusters 2
    and 3 run in lock step) it is the bound itself."""
    if mode != "stt" or cfg.arrangement.stt_chain != "sequential":
        return ideal["bound"]
    return max(ideal["cluster1_ops"], ideal["cluster2_ops"] + ideal["cluster3_ops"],
               ideal["cluster4_ops"]) / cfg.lanes


def layer_report(cfg: HardwareConfig, spec, mode: str, timesteps: int,
                 schedule: tuple[bool, ...], density: float | None = None) -> dict[str, Any]:
    """Cycles, bound and loss breakdown of one TT layer (``sw.arch.ConvSpec``). ``density``:
    the input spike density the zero-skipping cluster 1's cycles and bound assume (required
    with ``arrangement.cluster1 = "zero_skip"``, unused otherwise)."""
    skipping = zero_skip(cfg)
    if skipping and density is None:
        raise ValueError("the zero-skipping cluster 1's cycles need an input spike density")
    rank, cin, cout = spec.rank, spec.in_channels, spec.out_channels
    h, w = spec.in_hw
    pool = bool(spec.downsample)
    sched = schedule if mode == "htt" else (True,) * timesteps
    residual = bool(getattr(spec, "membrane_shortcut", False))
    # the zero-skipping cluster 1's tiling is chosen for the same density its cycles assume
    plan, tcfg, fits = plan_layer_any_weights(cfg, (timesteps, cin, h, w), rank, cout, pool=pool,
                                              residual=residual, mode=mode, schedule=sched,
                                              spike_density=density if skipping else None)
    totals: dict[str, int] = {}
    host = dict.fromkeys(("cycles", "c1_in_wait", "lif_stall", "c4_w_wait", "c2_w_wait", "c3_w_wait",
                          "c1_w_wait", "host_span"), 0)
    cache: dict[TileShape, dict[str, int]] = {}
    host_cache: dict[tuple[TileShape, bool], dict[str, int]] = {}
    for t in plan:
        shape = TileShape(cin, rank, t.out_channels, t.height, t.width, timesteps, mode, sched, pool,
                          residual, t.zero_halo, t.pack, t.order, t.w4_ring, t.w23_ring, t.w1_ring,
                          t.early_start)
        # the zero-skipping cluster 1's rows: expected lengths at ``density`` (floats)
        lens = expected_row_lens(tcfg, shape, density) if skipping else None
        if shape not in cache:
            ones = density * timesteps * window_pixels(shape.height, shape.width, shape.zero_halo)[0] * cin \
                if skipping else None
            cache[shape] = tile_counters(tcfg, shape, window_ones=ones, c1_lens=lens)
        for k, v in cache[shape].items():
            totals[k] = totals.get(k, 0) + v
        key = (shape, t.weights_change)
        if key not in host_cache:
            host_cache[key] = host_tile_timing(tcfg, shape, shape_traffic(tcfg, shape, t.weights_change),
                                               c1_lens=lens)
        for k in host:
            host[k] += host_cache[key][k]
    ideal = ideal_bound(cfg, cin, rank, cout, h, w, sched, mode, density)
    chain = chain_bound(cfg, mode, ideal)
    p = cfg.lanes
    busiest = ideal["busiest"]
    busy_c, work_c = _CLUSTER_COUNTERS[busiest]
    if skipping and busiest == "cluster1":
        work_c = "c1_adds"            # its accumulates of 1-spikes, r per 1-spike
    busy, active = totals[busy_c], totals[work_c] / p
    cycles = totals["cycles"]
    engines = {"cluster1": totals["c1_busy"], "cluster2": totals["c2_busy"],
               "cluster3": totals["c3_busy"], "cluster4": totals["c4_busy"]}
    return {
        "layer": spec.name, "in_channels": cin, "rank": rank, "out_channels": cout,
        "cluster1": cfg.arrangement.cluster1, "stt_chain": cfg.arrangement.stt_chain,
        "spike_density": density if skipping else None,
        "height": h, "width": w, "pool": pool, "timesteps": timesteps, "mode": mode,
        "tiles": len(plan), "tile": f"{plan.tile_height}x{plan.tile_width}",
        "pack": plan.pack, "order": "timestep" if plan.order else "row",
        "fits_weight_buffer": fits,
        "cycles": cycles, "bound": ideal["bound"], "ratio": cycles / ideal["bound"],
        "chain_bound": chain, "chain_ratio": cycles / chain, "host_chain_ratio": host["host_span"] / chain,
        "busiest_cluster": busiest, "bottleneck_engine": max(engines, key=engines.get),
        "halo": active - ideal["bound"], "padding": busy - active, "pipeline": cycles - busy,
        "host_bits": cfg.widths.host_data, "host_cycles": host["host_span"],
        "host_ratio": host["host_span"] / ideal["bound"],
        "host_stall": host["cycles"] - cycles, "host_outside": host["host_span"] - host["cycles"],
        "host_c1_in_wait": host["c1_in_wait"], "host_lif_stall": host["lif_stall"],
        "host_c4_w_wait": host["c4_w_wait"],
        "host_w_wait": host["c4_w_wait"] + host["c2_w_wait"] + host["c3_w_wait"] + host["c1_w_wait"],
        "streamed": _streamed(tcfg, plan),
        "early_start": any(t.early_start for t in plan),
        "utilisation": {k.replace("_ops", ""): v / (p * cycles) for k, v in ideal.items() if k.endswith("_ops")},
        **streaming_need(cfg, rank, cin, cout, h, sched, mode, totals),
        **{k: v for k, v in totals.items() if k != "cycles"},
    }


def _streamed(cfg: HardwareConfig, plan) -> tuple[str, ...]:
    """The cores a plan streams (rings smaller than the core; an early-start tile's rings that
    hold the whole core do not count: :func:`gen.host_program.whole_rings`)."""
    from ttsnn.gen.geometry import TileGeometry
    from ttsnn.gen.host_program import whole_rings
    found: set[str] = set()
    for t in plan:
        whole = whole_rings(cfg, TileGeometry.of_shape(cfg, t), t)     # (go, ng: any mode's)
        for core, ring in (("w1", t.w1_ring), ("w23", t.w23_ring), ("w4", t.w4_ring)):
            if ring and not whole[core]:
                found.add(core)
    return (("w1",) * ("w1" in found) + ("w2", "w3") * ("w23" in found) + ("w4",) * ("w4" in found))


def streaming_need(cfg: HardwareConfig, rank: int, cin: int, cout: int, height: int,
                   schedule: Sequence[bool], mode: str, counters: Mapping[str, int]) -> dict[str, Any]:
    """What streaming a layer's cores over the host port would take (docs/architecture.md,
    "Weight streaming: the analysis"). The cores streamed are those larger than their
    regions of ``cfg`` (``stream_cores``, :func:`gen.driver.streamed_cores`). Two rates in bytes per cycle of the layer's
    ``cycles`` (``counters``, from the datapath with a weight buffer large enough):
    ``stream_today_bpc``, every weight-region read of those cores fetched from DRAM, i.e.
    the weight regions turned into streams under today's loop orders (cluster 1 and 4 read
    their whole core for every pixel); ``stream_row_bpc``, each of those cores fetched once
    per output row and timestep it serves (the most a scheme that reuses a fetched weight
    across the pixels of a row, and no further, must move). ``stream_port_bpc`` is the
    port's bytes per cycle. Nothing is streamed when the cores fit: all three rates 0."""
    word = cfg.lanes * cfg.widths.weight // 8             # bytes of one weight-region word
    full = sum(1 for f in schedule if f) if mode == "htt" else len(schedule)
    T = len(schedule)
    cores = {  # region: (weights of the whole core, output rows x timesteps that read it, read counter)
        "w1": (rank * cin, height * T, "w1_reads"),
        "w2": (3 * rank * rank, height * full, "w2_reads"),
        "w3": (3 * rank * rank, height * full, "w3_reads"),
        "w4": (rank * cout, height * T, "w4_reads"),
    }
    streamed = streamed_cores(cfg, rank, cin, cout)
    cycles = counters["cycles"]
    core_bytes = sum(cores[n][0] * cfg.widths.weight // 8 for n in streamed)
    today = sum(counters[cores[n][2]] * word for n in streamed)
    per_row = sum(cores[n][0] * cfg.widths.weight // 8 * cores[n][1] for n in streamed)
    return {"stream_cores": streamed, "stream_core_bytes": core_bytes,
            "stream_today_bpc": today / cycles, "stream_row_bpc": per_row / cycles,
            "stream_port_bpc": cfg.widths.host_data / 8}


def network_report(cfg: HardwareConfig, network: str, mode: str, ranks: str | None = None,
                   density: float | Callable[[str], float] = DEFAULT_SPIKE_DENSITY) -> list[dict]:
    """:func:`layer_report` of every TT layer of ``network``. ``density``: the input spike
    density of every layer, or a function of the layer's name (``model.counts.Sparsity
    .input_density``); used by the zero-skipping cluster 1 only."""
    from ttsnn.sw.arch import default_schedule, network_specs, tt_layers
    n = NETWORKS[network]
    specs = network_specs(n.arch, n.in_channels, n.input_size, n.num_classes, mode=mode,
                          ranks=ranks or n.ranks, timesteps=n.timesteps)
    sched = tuple(default_schedule(n.timesteps))
    of = density if callable(density) else (lambda _name: density)
    return [layer_report(cfg, s, mode, n.timesteps, sched, of(s.name)) for s in tt_layers(specs)]


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals of one network and mode over the layers that fit the weight buffer."""
    fit = [r for r in rows if r["fits_weight_buffer"]]
    cyc, bnd = sum(r["cycles"] for r in fit), sum(r["bound"] for r in fit)
    hcyc = sum(r["host_cycles"] for r in fit)
    return {"layers": len(rows), "fitting": len(fit), "cycles": cyc, "bound": bnd,
            "ratio": cyc / bnd if bnd else float("nan"),
            "host_cycles": hcyc, "host_ratio": hcyc / bnd if bnd else float("nan"),
            "within_goal_host": sum(1 for r in fit if r["host_ratio"] <= GOAL),
            "worst_host": max(fit, key=lambda r: r["host_ratio"])["layer"] if fit else None,
            "worst_host_ratio": max((r["host_ratio"] for r in fit), default=float("nan")),
            "within_goal": sum(1 for r in fit if r["ratio"] <= GOAL),
            "worst": max(fit, key=lambda r: r["ratio"])["layer"] if fit else None,
            "worst_ratio": max((r["ratio"] for r in fit), default=float("nan")),
            **_chain_summary(fit, cyc, hcyc)}


def _chain_summary(fit: Sequence[Mapping[str, Any]], cycles: float, host_cycles: float) -> dict[str, Any]:
    """The totals against :func:`chain_bound` (differs from the bound in sequential STT only)."""
    cb = sum(r["chain_bound"] for r in fit)
    return {"chain_bound": cb, "chain_ratio": cycles / cb if cb else float("nan"),
            "host_chain_ratio": host_cycles / cb if cb else float("nan"),
            "within_goal_chain_host": sum(1 for r in fit if r["host_chain_ratio"] <= GOAL),
            "worst_host_chain_ratio": max((r["host_chain_ratio"] for r in fit), default=float("nan"))}


_LOSS_COLOURS = {"halo": "tab:orange", "padding": "tab:green", "pipeline": "tab:red"}
_MODE_HATCH = {"stt": "", "ptt": "//", "htt": ".."}


def plot_report(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """One panel per network: for every TT layer and mode a bar of cycles / bound, split into
    the bound (1.0) and the halo, padding and pipeline losses; the goal as a dashed line.
    Layers that do not fit the weight buffer are drawn faded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ttsnn.sw.fileio import atomic_write
    nets = list(dict.fromkeys(r["network"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    fig, axes = plt.subplots(len(nets), 1, figsize=(14, 3.6 * len(nets)), squeeze=False)
    width = 0.8 / len(modes)
    for ax, net in zip(axes[:, 0], nets):
        layers = list(dict.fromkeys(r["layer"] for r in rows if r["network"] == net))
        for mi, mode in enumerate(modes):
            by_layer = {r["layer"]: r for r in rows if r["network"] == net and r["mode"] == mode}
            for li, name in enumerate(layers):
                r = by_layer.get(name)
                if r is None:
                    continue
                x = li + (mi - (len(modes) - 1) / 2) * width
                alpha = 1.0 if r["fits_weight_buffer"] else 0.35
                ax.bar(x, 1.0, width, color="tab:blue", alpha=alpha, hatch=_MODE_HATCH.get(mode, ""),
                       edgecolor="white", linewidth=0)
                bottom = 1.0
                for loss, colour in _LOSS_COLOURS.items():
                    h = r[loss] / r["bound"]
                    ax.bar(x, h, width, bottom=bottom, color=colour, alpha=alpha,
                           hatch=_MODE_HATCH.get(mode, ""), edgecolor="white", linewidth=0)
                    bottom += h
        ax.axhline(GOAL, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels([n.replace("layers.", "") for n in layers], rotation=60, fontsize=7)
        ax.set_ylim(0.9, max(1.3, max(r["ratio"] for r in rows if r["network"] == net) + 0.03))
        ax.set_ylabel("cycles / ideal bound")
        names = {"": "plain", "//": "hatched", "..": "dotted"}
        ax.set_title(f"{net}, python -m gen.perf: bars per layer "
                     + ", ".join(f"{m.upper()} ({names[_MODE_HATCH[m]]})" for m in modes)
                     + "; faded: cores larger than the weight buffer", fontsize=10)
    from matplotlib.patches import Patch
    handles = [Patch(color="tab:blue", label="bound")] + [
        Patch(color=c, label=k) for k, c in _LOSS_COLOURS.items()] + [
        plt.Line2D([], [], color="black", linestyle="--", label=f"goal {GOAL}x")]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="upper left", ncol=5)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _fits_text(row: Mapping[str, Any]) -> str:
    """The ``fits`` column: ``yes`` (every core resident), ``S`` and the streamed cores'
    numbers (it fits with those cores streamed through their rings: ``S4`` G4, ``S234``
    G2, G3 and G4, ``S1234`` all four; ``w1_ring``, ``w23_ring``, ``w4_ring``), ``E`` (every
    core fits and is loaded once, after the start, through rings that hold it whole:
    ``Tile.early_start``), ``NO`` (timed on a copy with a weight buffer large enough)."""
    if not row["fits_weight_buffer"]:
        return "NO"
    streamed = sorted({n[1] for n in row.get("streamed", ())})
    if streamed:
        return "S" + "".join(streamed)
    return "E" if row.get("early_start") else "yes"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog_name("python -m gen.perf"), description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="paper", help="hardware configuration (default: paper)")
    ap.add_argument("--network", choices=sorted(NETWORKS), action="append",
                    help="network (repeatable; default: both)")
    ap.add_argument("--modes", default="stt,ptt,htt", help="comma list of stt, ptt, htt")
    ap.add_argument("--ranks", default=None, help="override the network's ranks (sw.arch.resolve_ranks syntax)")
    ap.add_argument("--json", dest="json_out", default=None, help="write all rows to this JSON file")
    ap.add_argument("--plot", default=None, help="draw cycles / bound per layer (PNG) to this file")
    ap.add_argument("--spike-density", type=float, default=None,
                    help=f"input spike density of every layer for the zero-skipping cluster 1's cycles "
                         f"(default {DEFAULT_SPIKE_DENSITY}: the energy model's default, spike sparsity 0.9)")
    ap.add_argument("--backward", action="store_true",
                    help="the backward pass and weight gradients instead (gen/backward/perf.py)")
    add_force_argument(ap, "existing --json/--plot files")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("stt", "ptt", "htt"):
            raise UserError(f"--modes: unknown mode {m!r}; use stt, ptt, htt")
    density, density_text = _spike_density(args)
    # fail before the minute of work, not after it
    check_outputs((("--json", args.json_out), ("--plot", args.plot)), force=args.force)
    cfg = load_config(args.config)
    if args.backward:
        return _backward_main(cfg, args, modes)
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log
    rows: list[dict] = []
    jobs = [(n, m) for n in (args.network or sorted(NETWORKS)) for m in modes]
    for net, mode in tqdm(jobs, desc="networks x modes", file=sys.stderr):
        for r in network_report(cfg, net, mode, args.ranks, density):
            rows.append({"network": net, **r})
    hdr = (f"{'network':<21} {'mode':<4} {'layer':<17} {'Cin':>4} {'r':>4} {'Cout':>4} {'HxW':>6} "
           f"{'tiles':>5} {'Pk':>3} {'order':>8} {'cycles':>9} {'bound':>9} {'ratio':>6} {'busiest':>9} "
           f"{'halo':>7} {'padding':>8} {'pipeline':>8} {'fits':>4} {'host cyc':>9} {'h.ratio':>7} "
           f"{'in_wait':>8} {'lif_stl':>8} {'w_wait':>8} {'outside':>8}")
    print(f"host port: widths.host_data = {cfg.widths.host_data} bits per cycle at {cfg.clock_mhz:g} MHz "
          f"({cfg.widths.host_data // 8 * cfg.clock_mhz / 1000:.1f} GB/s), configuration {cfg.name!r}; "
          f"'cycles' with a host that keeps up, 'host cyc' with the host on that port")
    print(arrangement_header(cfg, density_text))
    print(hdr)
    for r in rows:
        print(f"{r['network']:<21} {r['mode']:<4} {r['layer']:<17} {r['in_channels']:>4} {r['rank']:>4} "
              f"{r['out_channels']:>4} {str(r['height']) + 'x' + str(r['width']):>6} {r['tiles']:>5} "
              f"{1 << r['pack']:>3} {r['order']:>8} {r['cycles']:>9.0f} {r['bound']:>9.0f} {r['ratio']:>6.3f} "
              f"{r['busiest_cluster']:>9} {r['halo']:>7.0f} {r['padding']:>8.0f} {r['pipeline']:>8.0f} "
              f"{_fits_text(r):>4} {r['host_cycles']:>9.0f} {r['host_ratio']:>7.3f} "
              f"{r['host_c1_in_wait']:>8.0f} {r['host_lif_stall']:>8.0f} {r['host_w_wait']:>8.0f} "
              f"{r['host_outside']:>8.0f}")
    print()
    refused = [r for r in rows if not r["fits_weight_buffer"]]
    if refused:
        print(f"cores larger than the weight regions (fits = NO): cycles above are on a copy with a weight "
              f"buffer large enough; streaming them over the {cfg.widths.host_data}-bit port "
              f"({refused[0]['stream_port_bpc']:g} B/cycle) would need, in bytes per cycle of those cycles "
              f"(docs/architecture.md, 'Weight streaming: the analysis'):")
        print(f"{'network':<21} {'mode':<4} {'layer':<17} {'streamed':<12} {'core B':>8} "
              f"{'today B/c':>9} {'per-row B/c':>11}")
        for r in refused:
            print(f"{r['network']:<21} {r['mode']:<4} {r['layer']:<17} {','.join(r['stream_cores']):<12} "
                  f"{r['stream_core_bytes']:>8} {r['stream_today_bpc']:>9.1f} {r['stream_row_bpc']:>11.1f}")
        print()
    for net, mode in jobs:
        s = summary([r for r in rows if r["network"] == net and r["mode"] == mode])
        print(f"{net} {mode}: {s['fitting']}/{s['layers']} layers fit the weight buffer; over them "
              f"cycles {s['cycles']:.0f}, bound {s['bound']:.0f}, ratio {s['ratio']:.3f}; "
              f"{s['within_goal']}/{s['fitting']} layers within {GOAL}x (worst {s['worst']} "
              f"{s['worst_ratio']:.3f}); with the {cfg.widths.host_data}-bit host: cycles {s['host_cycles']:.0f}, "
              f"ratio {s['host_ratio']:.3f}, {s['within_goal_host']}/{s['fitting']} within {GOAL}x "
              f"(worst {s['worst_host']} {s['worst_host_ratio']:.3f})")
        if s["chain_bound"] != s["bound"]:
            print(f"  {net} {mode} against the sequential chain's bound (clusters 2 and 3 take turns: "
                  f"{s['chain_bound']:.0f}): ratio {s['chain_ratio']:.3f}, with the host {s['host_chain_ratio']:.3f}, "
                  f"{s['within_goal_chain_host']}/{s['fitting']} within {GOAL}x (worst {s['worst_host_chain_ratio']:.3f})")
    if args.json_out:
        from ttsnn.gen.emit import atomic_write
        atomic_write(Path(args.json_out), json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.json_out}")
    if args.plot:
        plot_report(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _spike_density(args) -> tuple[float, str]:
    """The input spike density the table assumes (``--spike-density``) and how the header
    states it."""
    d = DEFAULT_SPIKE_DENSITY if args.spike_density is None else args.spike_density
    if not 0.0 <= d <= 1.0:
        raise UserError(f"--spike-density must be a fraction in [0, 1], got {d:g}")
    why = " (the energy model's default: spike sparsity 0.9)" if args.spike_density is None else ""
    return d, f"{d:g} for every layer{why}"


def arrangement_header(cfg: HardwareConfig, density_text: str) -> str:
    """The table's line on the datapath's arrangement, the spikes assumed and what the bound
    counts."""
    a = cfg.arrangement
    text = f"arrangement: cluster1 = {a.cluster1!r}, stt_chain = {a.stt_chain!r}; "
    if zero_skip(cfg):
        text += (f"input spike density {density_text}, spikes independent: cluster 1's cycles are the "
                 f"schedule of its expected row lengths; bound = busiest cluster's operations / PEs "
                 f"(cluster 1: accumulates of 1-spikes only, density*T*H*W*Cin*r; clusters 2-4: MACs)")
    else:
        text += ("bound = busiest cluster's operations / PEs (cluster 1: every spike x G1 weight, "
                 "T*H*W*Cin*r; clusters 2-4: MACs)")
    if a.stt_chain == "sequential":
        text += ("; STT's clusters 2 and 3 take turns (sequential chain): the summary also states STT "
                 "against its chain's bound, max(cluster 1, G2 + G3 MACs, cluster 4) / PEs")
    return text


def _backward_main(cfg: HardwareConfig, args, modes: Sequence[str]) -> int:
    """``--backward``: the backward table (gen/backward/perf.py's rows) and its totals."""
    from ttsnn.sw.arch import default_schedule, network_specs, tt_layers

    from ttsnn.gen.backward.perf import BACKWARD_GOAL, layer_backward_report
    rows = []
    for net in args.network or sorted(NETWORKS):
        n = NETWORKS[net]
        sched = tuple(default_schedule(n.timesteps))
        for mode in modes:
            specs = network_specs(n.arch, n.in_channels, n.input_size, n.num_classes, mode=mode,
                                  ranks=args.ranks or n.ranks, timesteps=n.timesteps)
            rows += [{"network": net, **layer_backward_report(cfg, sp, mode, n.timesteps, sched)}
                     for sp in tt_layers(specs)]
    print(f"{'network':<21} {'mode':<4} {'layer':<17} {'Cin':>4} {'r':>4} {'Cout':>4} {'HxW':>6} {'tile':>6} "
          f"{'chunk':>5} {'tiles':>5} {'cycles':>10} {'bound':>10} {'ratio':>6} {'/lanes':>6} {'strMV':>6} {'strAll':>6} {'strRow':>6} {'ring+pad':>9} {'pipeline':>8} {'stream':>7} {'fits':>4}")
    for r in rows:
        print(f"{r['network']:<21} {r['mode']:<4} {r['layer']:<17} {r['in_channels']:>4} {r['rank']:>4} "
              f"{r['out_channels']:>4} {str(r['height']) + 'x' + str(r['width']):>6} {r['tile']:>6} "
              f"{r['chunk']:>5} {r['tiles']:>5} {r['cycles']:>10} {r['bound']:>10} {r['ratio']:>6.3f} "
              f"{r['lane_ratio']:>6.3f} {r['straddled_matvec_ratio']:>6.3f} {r['straddled_all_ratio']:>6.3f} "
              f"{r['straddled_all_rows_ratio']:>6.3f} "
              f"{r['ring_and_padding']:>9} {r['pipeline']:>8} {r['streamed_words']:>7} "
              f"{'yes' if r['fits_backward_memories'] else 'NO':>4}")
    print()
    for net in args.network or sorted(NETWORKS):
        for mode in modes:
            sel = [r for r in rows if r["network"] == net and r["mode"] == mode and r["fits_backward_memories"]]
            n_all = sum(1 for r in rows if r["network"] == net and r["mode"] == mode)
            cyc, bnd = sum(r["cycles"] for r in sel), sum(r["bound"] for r in sel)
            lane_bnd = sum(r["lane_bound"] for r in sel)
            ok = sum(1 for r in sel if r["ratio"] <= BACKWARD_GOAL)
            print(f"{net} {mode} backward: {len(sel)}/{n_all} layers fit the backward memories; over them "
                  f"cycles {cyc}, bound {bnd}, ratio {cyc / bnd if bnd else float('nan'):.3f}; "
                  f"{ok}/{len(sel)} within {BACKWARD_GOAL}x; against the bound with idle lanes "
                  f"({lane_bnd}) {cyc / lane_bnd if lane_bnd else float('nan'):.3f}")
            for kind, what in (("matvec", "the mat-vec stages"), ("all", "the mat-vec stages and outer products"),
                               ("all_rows", "both, over a block's rows too,"),
                               ("all_rows_below_p", "that, only stages of fewer than P lane channels,")):
                proj = sum(r[f"straddled_{kind}_cycles"] for r in sel)
                n_ok = sum(1 for r in sel if r[f"straddled_{kind}_ratio"] <= BACKWARD_GOAL)
                print(f"  projection (gen/backward/straddle.py; built only for mat-vec and outer-product "
                      f"stages of P/3 <= O < P and the last group of O > P, "
                      f"already in the figures above): {what} straddling pixels: cycles "
                      f"{proj}, ratio {proj / bnd if bnd else float('nan'):.3f}; {n_ok}/{len(sel)} within "
                      f"{BACKWARD_GOAL}x")
    if args.json_out:
        from ttsnn.gen.emit import atomic_write
        atomic_write(Path(args.json_out), json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="gen"))
