"""``python -m gen.perf``: cycles per TT layer of MS-ResNet18 / MS-ResNet34 versus the ideal bound.

Paper-sized layers cannot be simulated in amaranth.sim, so the cycles come from the exact
cycle model :mod:`gen.cyclemodel` (equal to the RTL's ``cycles`` counter on every tile the
tests simulate), summed over the driver's tiles (:func:`gen.driver.plan_layer`). The bound
is issue 4's: the busiest cluster's operations divided by its PEs, all timesteps, no halo.

Where the remaining cycles go, per layer (columns of the table):
  lane_pad   the busiest engine's issue cycles lost to ranks/channels that do not fill the
             P lanes (ceil(r/P)*P instead of r) -- the dominant loss for r < P;
  halo       cycles spent on window pixels (cluster 1 computes (H+2)(W+2) per tile; STT's
             cluster 2 computes H(W+2) and cluster 3 trails it by 3 columns per row);
  pipeline   fill/drain of the row pipeline and stalls: cycles minus the bottleneck engine's
             busy cycles.
Host-interface transfers are not in the cycle counter (the counter counts busy cycles).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from sw.arch import WORKLOADS, WorkloadSpec
from sw.cli_util import run_cli

from .config import HardwareConfig, ceil_div, config_from_dict, load_config
from .cyclemodel import TileShape, ideal_cycles, tile_timing
from .driver import plan_layer

#: the networks ``--network`` chooses from: the paper's workloads, defined in sw.arch
NETWORKS: Mapping[str, WorkloadSpec] = WORKLOADS


def _streaming_config(cfg: HardwareConfig, rank: int) -> HardwareConfig:
    """``cfg`` with room for ``rank`` in the weight buffer: used only to time layers whose
    cores exceed the real buffer (they would need weight streaming, not implemented)."""
    d = cfg.to_dict()
    d["limits"]["max_rank"] = max(rank, d["limits"]["max_rank"])
    d["buffers"]["weight"]["bytes"] = 1 << 24
    d["buffers"]["interstage"]["bytes"] = 1 << 22
    return config_from_dict(d, source=f"{cfg.name}+streaming")


def layer_report(cfg: HardwareConfig, spec, mode: str, timesteps: int,
                 schedule: tuple[bool, ...]) -> dict[str, Any]:
    """Cycles, bound and loss breakdown of one TT layer (``sw.arch.ConvSpec``)."""
    rank, cin, cout = spec.rank, spec.in_channels, spec.out_channels
    h, w = spec.in_hw
    pool = bool(spec.downsample)
    fits = rank <= cfg.limits.max_rank
    tcfg = cfg if fits else _streaming_config(cfg, rank)
    sched = schedule if mode == "htt" else (True,) * timesteps
    plan = plan_layer(tcfg, (timesteps, cin, h, w), rank, cout, pool=pool, mode=mode, schedule=sched)
    totals: dict[str, int] = {}
    cache: dict[TileShape, dict[str, int]] = {}
    for t in plan:
        shape = TileShape(cin, rank, t.out_channels, t.height, t.width, timesteps, mode, sched, pool,
                          False, t.zero_halo)
        if shape not in cache:
            cache[shape] = tile_timing(tcfg, shape)
        for k, v in cache[shape].items():
            totals[k] = totals.get(k, 0) + v
    ideal = ideal_cycles(cfg, cin, rank, cout, h, w, sched, mode)
    p = cfg.lanes
    engines = {"cluster1": totals["c1_busy"], "cluster2/3": totals["c23_busy"], "cluster4": totals["c4_busy"]}
    bottleneck = max(engines, key=engines.get)
    busy = engines[bottleneck]
    # the bottleneck engine's cycles with no lane padding (r/P instead of ceil(r/P))
    padded_rank, padded_cout = ceil_div(rank, p) * p, ceil_div(cout, p) * p
    pad_free = {"cluster1": busy * rank / padded_rank,
                "cluster2/3": busy * rank / padded_rank,
                "cluster4": busy * cout / padded_cout if not pool else
                busy * min(1.0, cout / padded_cout)}[bottleneck]
    cycles = totals["cycles"]
    return {
        "layer": spec.name, "in_channels": cin, "rank": rank, "out_channels": cout,
        "height": h, "width": w, "pool": pool, "timesteps": timesteps, "mode": mode,
        "tiles": len(plan), "tile": f"{plan.tile_height}x{plan.tile_width}",
        "fits_weight_buffer": fits,
        "cycles": cycles, "bound": ideal["bound"], "ratio": cycles / ideal["bound"],
        "busiest_cluster": ideal["busiest"], "bottleneck_engine": bottleneck,
        "lane_pad": busy - pad_free, "halo": max(pad_free - ideal["bound"], 0.0),
        "pipeline": cycles - busy,
        "utilisation": {k.replace("_ops", ""): v / (p * cycles) for k, v in ideal.items() if k.endswith("_ops")},
        **{f"{k}_cycles": v for k, v in totals.items() if k != "cycles"},
    }


def network_report(cfg: HardwareConfig, network: str, mode: str, ranks: str | None = None) -> list[dict]:
    from sw.arch import default_schedule, network_specs, tt_layers
    n = NETWORKS[network]
    specs = network_specs(n.arch, n.in_channels, n.input_size, n.num_classes, mode=mode,
                          ranks=ranks or n.ranks, timesteps=n.timesteps)
    sched = tuple(default_schedule(n.timesteps))
    return [layer_report(cfg, s, mode, n.timesteps, sched) for s in tt_layers(specs)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gen.perf", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="paper", help="hardware configuration (default: paper)")
    ap.add_argument("--network", choices=sorted(NETWORKS), action="append",
                    help="network (repeatable; default: both)")
    ap.add_argument("--modes", default="stt,ptt,htt", help="comma list of stt, ptt, htt")
    ap.add_argument("--ranks", default=None, help="override the network's ranks (sw.ranks syntax)")
    ap.add_argument("--json", dest="json_out", default=None, help="write all rows to this JSON file")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("stt", "ptt", "htt"):
            raise ValueError(f"--modes: unknown mode {m!r}; use stt, ptt, htt")
    rows: list[dict] = []
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = lambda x, **k: x  # noqa: E731
    jobs = [(n, m) for n in (args.network or sorted(NETWORKS)) for m in modes]
    for net, mode in tqdm(jobs, desc="layers", file=sys.stderr):
        for r in network_report(cfg, net, mode, args.ranks):
            rows.append({"network": net, **r})
    hdr = (f"{'network':<21} {'mode':<4} {'layer':<18} {'Cin':>4} {'r':>4} {'Cout':>4} {'HxW':>6} "
           f"{'tiles':>5} {'cycles':>10} {'bound':>10} {'ratio':>6} {'busiest':>9} "
           f"{'lane_pad':>9} {'halo':>9} {'pipeline':>9} {'fits':>4}")
    print(hdr)
    for r in rows:
        print(f"{r['network']:<21} {r['mode']:<4} {r['layer']:<18} {r['in_channels']:>4} {r['rank']:>4} "
              f"{r['out_channels']:>4} {str(r['height']) + 'x' + str(r['width']):>6} {r['tiles']:>5} "
              f"{r['cycles']:>10} {r['bound']:>10.0f} {r['ratio']:>6.2f} {r['busiest_cluster']:>9} "
              f"{r['lane_pad']:>9.0f} {r['halo']:>9.0f} {r['pipeline']:>9.0f} {'yes' if r['fits_weight_buffer'] else 'NO':>4}")
    print()
    for net, mode in jobs:
        sel = [r for r in rows if r["network"] == net and r["mode"] == mode]
        cyc, bnd = sum(r["cycles"] for r in sel), sum(r["bound"] for r in sel)
        within = sum(1 for r in sel if r["ratio"] <= 1.15)
        print(f"{net} {mode}: total cycles {cyc}, bound {bnd:.0f}, ratio {cyc / bnd:.2f}; "
              f"{within}/{len(sel)} layers within 1.15x; "
              f"{sum(1 for r in sel if not r['fits_weight_buffer'])} layers need weight streaming")
    if args.json_out:
        from .emit import atomic_write
        atomic_write(Path(args.json_out), json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="gen"))
