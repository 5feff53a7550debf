"""Replay a whole trained MS-ResNet on the RTL, image by image (a "stitched" simulation).

Every TT layer runs on the generated RTL under Verilator, chained: each layer's RTL output
spikes are the next layer's input. The layers the accelerator does not run stay on the host,
exactly as :func:`sw.hwlayer.hardware_forward` runs them: the stem (dense conv + BN) and the
first block's input LIF, the shortcuts (identity, or 1x1 conv + BN) whose output is quantised
to the consuming layer's membrane format, and the head (mean over pixels and timesteps, the
classifier). The next block's shortcut reads a TT layer's LIF input current, which the RTL does
not read out: it is the golden model's current on the RTL layer's own inputs (equal to the
RTL's whenever the layer is bit-exact, which is checked).

Three chains run on the same images:

* the RTL chain (above); every layer is also computed by the golden model on the *same* input
  spikes and residual as the RTL got and compared bit for bit (spikes and membranes, the whole
  layer untiled, :func:`sw.golden.golden_layer`; plus the tile-by-tile comparison of
  :func:`cosim.layer.run_cases`);
* the integer golden chain: the same network with every TT layer computed by the golden model
  from the image on (its predictions must equal the RTL chain's on every image);
* the float model (``model(x)``): the agreement rate of the predictions.

Cycles are the RTL's ``cycles`` counter per layer; energies come from the energy model of
model/ applied to the RTL's counters of every tile (inference: the forward pass measured;
training: that forward plus the energy model's backward and weight-update passes of the layer
at the image's measured input-spike density). Only the TT layers are costed: the rest runs on
the host here.

Images are independent jobs: they are split into one chunk per worker of a
:mod:`sw.backends` backend (local process pool or Ray); each chunk runs its chain in one simulator
process (:class:`cosim.layer.SimSession`: every layer a batch, every image of the chunk in it). The Verilator build is done once
before the jobs start (and is reused while the Verilog is unchanged).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from ttsnn.cosim.runner import forward_only_default
from ttsnn.sw.cli_util import UserError

__all__ = ["replay_network", "format_network_report", "quantise_network", "run_chain",
           "random_network", "golden_runner", "OutputHook"]

#: ``hook(layer_name, image_index, rtl_spikes [T, Cout, Ho, Wo]) -> spikes``: applied to each
#: layer's RTL output before it is checked and passed on (tests corrupt a spike with it).
OutputHook = Callable[[str, int, np.ndarray], np.ndarray]


# ---- the network, quantised -----------------------------------------------------------------

def _blocks(model) -> list[tuple[str, Any]]:
    """``(name, block)`` of every residual block in forward order."""
    return [(f"layers.{si}.{bi}", block) for si, stage in enumerate(model.layers)
            for bi, block in enumerate(stage)]


def check_network(model) -> list[str]:
    """The TT layer names of a replayable model, in forward order; ValueError otherwise."""
    from ttsnn.sw.quantize import tt_layer_names

    if model.hparams.get("reversible"):
        raise UserError("replay-network runs standard MS-ResNet blocks; this checkpoint has "
                        "reversible blocks (replay single layers with `python -m cosim replay`)")
    names = tt_layer_names(model)
    want = [f"{b}.{c}" for b, _ in _blocks(model) for c in ("conv1", "conv2")]
    if names != want:
        raise UserError(f"replay-network needs every 3x3 block conv to be a TT layer (mode stt, "
                        f"ptt or htt); this model's TT layers are {names or 'none (dense model)'}")
    return names


def _capture_all(model, names: list[str], x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """One float forward pass capturing every TT layer's input spikes and (conv2) the shortcut
    output it adds: the quantiser's calibration data."""
    from ttsnn.sw.quantize import layer_context

    got: dict[str, dict[str, torch.Tensor]] = {n: {} for n in names}
    hooks = []
    for n in names:
        ctx = layer_context(model, n)
        hooks.append(ctx.conv.register_forward_pre_hook(
            lambda m, a, n=n: got[n].setdefault("spikes", a[0].detach())))
        if ctx.residual:
            hooks.append(ctx.block.shortcut.register_forward_hook(
                lambda m, a, out, n=n: got[n].setdefault("residual", out.detach())))
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return got


def quantise_network(model, calib_x: torch.Tensor, widths: Any, *, weight_bits: int | None = None,
                     rounding: str = "nearest") -> dict[str, Any]:
    """Every TT layer as a ``QuantTTLayer``, calibrated on the float network's own activations
    of ``calib_x`` (as ``python -m cosim replay`` does for one layer)."""
    from ttsnn.sw.quantize import layer_context, quantize_tt_layer

    names = check_network(model)
    cal = _capture_all(model, names, calib_x)
    out = {}
    for n in names:
        ctx = layer_context(model, n)
        q = quantize_tt_layer(ctx.conv, ctx.bn, tau=float(ctx.lif.tau),
                              v_threshold=float(ctx.lif.v_threshold),
                              calib_spikes=cal[n]["spikes"], calib_residual=cal[n].get("residual"),
                              widths=widths, weight_bits=weight_bits, rounding=rounding)
        q.check_fits(widths)
        out[n] = q
    return out


# ---- one chain through the network ----------------------------------------------------------

#: ``run_tt(name, spikes [T, B, Cin, H, W], residual [T, B, Cout, Ho, Wo] | None)`` ->
#: ``(spikes, current)``, int64 tensors ``[T, B, Cout, Ho, Wo]``.
TTRunner = Callable[[str, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]


def _per_sample(fn: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to each sample of ``t [T, B, ...]`` alone: a host float op then gives the
    same bits whichever batch (chunk of images, process) the sample is in."""
    return torch.cat([fn(t[:, b:b + 1]) for b in range(t.shape[1])], dim=1)


def run_chain(model, qlayers: dict[str, Any], widths: Any, x: torch.Tensor, run_tt: TTRunner) -> torch.Tensor:
    """Logits ``[B, classes]`` of the network on ``x`` with every TT layer computed by
    ``run_tt`` and the rest on the host (module docstring; :func:`sw.hwlayer.hardware_forward`
    with fixed, pre-calibrated layers). The host's float ops run per sample, in the model's
    dtype (:func:`host_model` makes a float64 copy, so that an image's chain does not depend on
    which images share its batch)."""
    from ttsnn.sw.quantize import quantize_residual

    x = model.check_input(x.to(next(model.parameters()).dtype))
    with torch.no_grad():
        cur = _per_sample(lambda t: model.bn1(model.conv1(t)), x)
        blocks = _blocks(model)
        spikes = _per_sample(blocks[0][1].lif1, cur).round().to(torch.int64)
        for name, block in blocks:
            mid, _ = run_tt(f"{name}.conv1", spikes, None)
            q2 = qlayers[f"{name}.conv2"]
            res = quantize_residual(_per_sample(block.shortcut, cur), q2, widths)
            spikes, current = run_tt(f"{name}.conv2", mid, res)
            cur = (current.double() * 2.0 ** -q2.frac_bits).to(x.dtype)
        pooled = spikes.to(x.dtype).mean(dim=(3, 4)).mean(dim=0)
        return torch.cat([model.fc(pooled[b:b + 1]) for b in range(pooled.shape[0])])


def host_model(model):
    """A float64 copy of ``model`` in eval mode: the host's part of the chains."""
    import copy

    return copy.deepcopy(model).double().eval()


def _golden_batch(q, spikes: torch.Tensor, residual: torch.Tensor | None, widths: Any):
    from ttsnn.sw.golden import golden_layer

    outs = [golden_layer(q, spikes[:, b], None if residual is None else residual[:, b], widths,
                         intermediates=True) for b in range(spikes.shape[1])]
    return [o.spikes.to(torch.int64) for o in outs], [o.membrane for o in outs], [o.current for o in outs]


def golden_runner(qlayers: dict[str, Any], widths: Any) -> TTRunner:
    """The integer golden model as a ``run_tt`` of :func:`run_chain`."""
    def run_tt(name, spikes, residual):
        s, _, c = _golden_batch(qlayers[name], spikes, residual, widths)
        return torch.stack(s, dim=1), torch.stack(c, dim=1)
    return run_tt


# ---- the RTL chain (one job: a chunk of images) -------------------------------------------------

@dataclass
class _ChunkJob:
    """Everything a worker needs to replay a chunk of images (picklable)."""
    model: Any
    qlayers: dict[str, Any]
    rtl_dir: str                 # the RTL (a HardwareConfig does not pickle: sent as a dict)
    config: dict
    images: torch.Tensor         # [B, ...] or [T, B, ...] as the model takes them
    indices: list[int]           # test-set indices of the images
    waves: str
    hook: OutputHook | None = None
    progress: bool = False
    one_process: bool = True       # False: one simulator process per layer (the old way)
    forward_only: bool = True      # the design without its backward datapath (cosim/forward_only.py)


def _energy_context(cfg):
    """The energy model's accelerator in the arrangement the RTL was built in (the paper
    configuration's: the zero-skipping cluster 1), and the shipped energy table."""
    from ttsnn.model.accelerators import Proposed
    from ttsnn.model.energy_table import load_energy_table

    a = cfg.arrangement
    return Proposed(cfg, cluster1=a.cluster1, stt_chain=a.stt_chain), load_energy_table()


def _layer_energy(accel, table, q, spec, plan, tile_counters: list[dict[str, int]],
                  input_density: float) -> dict[str, float]:
    """Inference (forward pass from the RTL's counters of every tile) and training (that plus
    the energy model's backward and weight-update passes) energy of one layer, in pJ."""
    from ttsnn.model.counts import Counts, Sparsity, category
    from ttsnn.model.evaluate import evaluate_layer
    from ttsnn.model.tile import counters_to_counts, tile_forward

    cfg = accel.cfg
    T = plan.timesteps
    sched = q.full_timesteps(T)
    counts, cycles = Counts(), 0
    for tile, rtl in zip(plan, tile_counters):
        # the tile's shape and host regions from the model, every counter the RTL's own (the
        # density only lets the zero-skipping cluster 1's model counters be formed)
        tf = tile_forward(cfg, tile, q.mode, sched, residual=q.residual, density=input_density,
                          load_weights=tile.weights_change)
        tf.counters = dict(tf.counters, **{k: float(v) for k, v in rtl.items()})
        counters_to_counts(cfg, tf, counts, accel.memories)
        cycles += rtl["cycles"]
    by_cat: dict[str, float] = {}
    for (c, a, b), n in counts.items():
        by_cat[category(c)] = by_cat.get(category(c), 0.0) + n * table.energy(c, a, b, accel.memories)
    by_cat["leakage"] = accel.leakage_mw(table) * cycles * cfg.clock_period_ns   # mW x ns = pJ
    inference = sum(by_cat.values())
    sp = Sparsity(per_layer={spec.name: 1.0 - input_density})
    modelled = evaluate_layer(accel.run_layer(spec, T, sp), accel, table)
    rest = sum(sum(modelled.energy[p].values()) for p in ("backward", "weight_update"))
    return {"inference_pj": inference, "training_pj": inference + rest,
            "backward_weight_update_pj": rest, "inference_by_category_pj": by_cat}


def _replay_chunk(job: _ChunkJob) -> dict[str, Any]:
    """The RTL chain over one chunk of images: per image and layer, the check against the
    golden model on the same inputs, cycles, counters and energy; and the logits."""
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    from ttsnn.cosim.layer import LayerCase, RtlTarget, SimSession, run_cases
    from ttsnn.gen.config import config_from_dict

    target = RtlTarget.from_dir(job.rtl_dir, config_from_dict(job.config))
    cfg = target.config
    wd = cfg.widths
    accel, table = _energy_context(cfg)
    specs = {s.name: s for s in job.model.spec}
    records: dict[int, list[dict]] = {i: [] for i in job.indices}
    names = list(job.qlayers)
    bar = tqdm(total=len(names), desc=f"images {job.indices[0]}..{job.indices[-1]}", unit="layer",
               disable=not (job.progress and sys.stderr.isatty()), file=sys.stderr)

    def run_tt(name, spikes, residual):
        q = job.qlayers[name]
        bar.set_postfix_str(name)
        cases = [LayerCase(f"{name}@image{i}", q, spikes[:, b].numpy(),
                           None if residual is None else residual[:, b].numpy())
                 for b, i in enumerate(job.indices)]
        # the untiled golden layer in a thread (torch releases the GIL) while run_cases waits
        # for the simulator: the two overlap where a second core is free
        golden = golden_pool.submit(_golden_batch, q, spikes, residual, wd)
        try:
            results = run_cases(target, cases, waves=job.waves, session=session,
                                forward_only=job.forward_only)
        finally:
            g_s, g_m, g_c = golden.result()
        out = []
        for b, (i, res) in enumerate(zip(job.indices, results)):
            rtl_s = res.spikes
            if job.hook is not None:
                rtl_s = np.asarray(job.hook(name, i, rtl_s.copy()))
            s_diff = int((torch.from_numpy(rtl_s.astype(np.int64)) != g_s[b]).sum())
            m_diff = int((torch.from_numpy(res.membrane) != g_m[b]).sum())
            density = float(spikes[:, b].double().mean())
            energy = _layer_energy(accel, table, q, specs[name], res.plan, res.tile_counters, density)
            records[i].append({
                "layer": name, "bit_exact": bool(res.match and s_diff == 0 and m_diff == 0),
                "tiles_match": bool(res.match), "tile_mismatches": int(res.report.mismatches),
                "spike_mismatches": s_diff, "membrane_mismatches": m_diff,
                "cycles": int(res.cycles), "tiles": int(res.tiles),
                "input_spike_density": density, "output_spike_rate": float(rtl_s.mean()),
                "counters": {k: int(v) for k, v in res.counters.items()},
                "simulated_cycles": int(res.span_cycles), "tiles_wall_s": float(res.wall_s),
                "tiles_cpu_s": float(res.cpu_s), **energy})
            out.append(torch.from_numpy(rtl_s.astype(np.int64)))
        bar.update(1)
        return torch.stack(out, dim=1), torch.stack(g_c, dim=1)

    t0 = time.monotonic()
    # one simulator process for every layer of the chunk (its start-up paid once)
    session = SimSession(target, forward_only=job.forward_only) if job.one_process else None
    golden_pool = ThreadPoolExecutor(1)
    try:
        logits = run_chain(job.model, job.qlayers, wd, job.images, run_tt)
    finally:
        golden_pool.shutdown()
        bar.close()
        if session is not None:
            session.close()
    return {"indices": job.indices, "logits": logits, "layers": records,
            "wall_s": time.monotonic() - t0}


def random_network(workload: str, mode: str = "ptt", *, images: int = 1, calib_samples: int = 16,
                   seed: int = 0) -> tuple:
    """A network of ``workload`` (:data:`sw.arch.WORKLOADS`, e.g. ``resnet18-cifar10``) with
    random weights, for when no trained checkpoint is at hand: ``(model, x, labels, calib_x,
    source)`` for :func:`replay_network`'s ``model_and_data``. The images are random too
    (uniform pixels; binary frames for event workloads; no data set is read), the labels -1
    (no accuracy). BatchNorm statistics are those of the calibration images (one pass, exact
    averages), so that activations keep their scale through the depth and neurons fire."""
    from ttsnn.sw.arch import MODES, WORKLOADS
    from ttsnn.sw.resnet import ms_resnet

    if workload not in WORKLOADS:
        raise UserError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")
    if mode not in MODES or mode == "dense":
        raise UserError(f"--mode must be a TT mode (stt, ptt, htt), got {mode!r}")
    if images < 1:
        raise UserError(f"--images must be >= 1, got {images}")
    w = WORKLOADS[workload]
    torch.manual_seed(seed)
    model = ms_resnet(w.arch, mode, ranks=w.ranks, in_channels=w.in_channels,
                      num_classes=w.num_classes, timesteps=w.timesteps, input_size=w.input_size)

    def draw(n):
        if w.events:
            return (torch.rand(w.timesteps, n, w.in_channels, *w.input_hw) < 0.2).float()
        return torch.rand(n, w.in_channels, *w.input_hw)
    calib, x = draw(calib_samples), draw(images)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None                 # cumulative average: one pass gives the batch's
    model.train()
    with torch.no_grad():
        model(calib)
    model.eval()
    source = (f"{w.name} ({w.arch}, {mode.upper()}, ranks {w.ranks}) with RANDOM weights and "
              f"random images (seed {seed}; no trained checkpoint)")
    return model, x, torch.full((images,), -1), calib, source


# ---- the command ------------------------------------------------------------------------------

def _labelled_test_images(meta: dict, count: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ttsnn.sw.commands.eval import eval_config, load_eval_data
    from ttsnn.sw.train import _to_model_input

    if count < 1:
        raise UserError(f"--images must be >= 1, got {count}")
    if start < 0:
        raise UserError(f"--start must be >= 0, got {start}")
    ds, info = load_eval_data(eval_config(meta), train_split=False, max_samples=start + count)
    if len(ds) < start + count:
        raise UserError(f"the test split of {info.name} has only {len(ds)} images; "
                        f"asked for {count} from index {start}")
    xs = torch.stack([ds[i][0] for i in range(start, start + count)])
    ys = torch.tensor([int(ds[i][1]) for i in range(start, start + count)])
    return _to_model_input(xs, info), ys


def _split(n: int, parts: int) -> list[list[int]]:
    parts = max(1, min(parts, n))
    return [list(range(n))[p::parts] for p in range(parts)]


def replay_network(checkpoint: str | None, config: Any = "paper", *, images: int = 1, start: int = 0,
                   calib_samples: int = 16, weight_bits: int | None = None,
                   rounding: str = "nearest", rtl_dir: str | None = None, waves: str | None = None,
                   backend: Any = "local", workers: int | None = None, address: str | None = None,
                   hook: OutputHook | None = None, progress: bool = True,
                   model_and_data: tuple | None = None, one_process: bool = True) -> dict[str, Any]:
    """Replay the network of ``checkpoint`` on ``images`` test images (from ``start``) on the
    RTL of ``config`` and return the report (module docstring). ``backend``: 'local', 'ray' or a
    :class:`sw.backends.Backend`. ``model_and_data``: ``(model, x, labels, calib_x, source)``
    instead of a checkpoint (the paper-sized target's random-weight network). ``one_process``:
    every layer of a chunk in one simulator process (default) or one process per layer."""
    from rich.console import Console

    from ttsnn.cosim.layer import RtlTarget
    from ttsnn.cosim.toolchain import setup_toolchain
    from ttsnn.gen.config import HardwareConfig, load_config

    console = Console(stderr=True, quiet=not progress)
    t_start = time.monotonic()
    tc = setup_toolchain()
    hw = config if isinstance(config, HardwareConfig) else load_config(config)
    target = RtlTarget.for_config(hw, rtl_dir) if rtl_dir is not None else None
    if model_and_data is None:
        from ttsnn.sw.checkpoint import load_model
        from ttsnn.sw.commands.quantize import model_inputs

        model, meta = load_model(checkpoint)
        check_network(model)
        x, labels = _labelled_test_images(meta, images, start)
        calib = model_inputs(meta, "train", calib_samples)
        source = str(checkpoint)
    else:
        model, x, labels, calib, source = model_and_data
        check_network(model)
    model.eval()
    with console.status("quantising every TT layer (calibrated on training images)"):
        qlayers = quantise_network(model, calib, hw.widths, weight_bits=weight_bits, rounding=rounding)
    with console.status("the float model"):
        with torch.no_grad():
            float_logits = model(x)
        host = host_model(model)
    # the integer golden chain in a thread (torch releases the GIL), on its own copy of the host
    # part, while the RTL chain runs: it needs nothing of the RTL chain's
    golden_pool = ThreadPoolExecutor(1)
    golden_chain = golden_pool.submit(run_chain, host_model(model), qlayers, hw.widths, x,
                                      golden_runner(qlayers, hw.widths))
    try:
        results, be_name, rtl_wall = _rtl_chain(hw, target, host, qlayers, x, labels, start, waves,
                                                hook, progress, one_process, backend, workers,
                                                address, console)
        golden_logits = golden_chain.result()
    finally:
        golden_pool.shutdown(wait=False, cancel_futures=True)
    return _report(source, hw, x, labels, list(range(start, start + len(labels))), results,
                   float_logits, golden_logits, be_name, rtl_wall, time.monotonic() - t_start,
                   tc.describe())


def _rtl_chain(hw, target, host, qlayers, x, labels, start, waves, hook, progress, one_process,
               backend, workers, address, console):
    """Build (cached) and run the RTL chain of every image on the backend: (chunk results,
    the backend's description, wall time of the RTL part)."""
    from ttsnn.cosim.layer import RtlTarget
    from ttsnn.cosim.runner import build_design, default_build_dir
    from ttsnn.sw.backends import Backend, make_backend

    if target is None:
        with console.status(f"RTL for {hw.name}: generating / building (cached)"):
            target = RtlTarget.for_config(hw)
    waves = waves or "fail"
    ports = [p["name"] for p in target.manifest.get("ports", [])] or None
    with console.status("Verilator build (once; cached)"):   # before the jobs: built once
        fwd = forward_only_default()    # the chain's tiles are forward tiles
        build_design(target.verilog, target.top, default_build_dir(hw.name, waves == "always", fwd),
                     waves=waves == "always", ports=ports, player=target.player, forward_only=fwd)
    own = not isinstance(backend, Backend)
    be = make_backend(backend, workers=workers, address=address) if own else backend
    idx = list(range(start, start + len(labels)))
    chunks = _split(len(idx), be.workers)
    bdim = 1 if x.dim() == 5 else 0
    jobs = [_ChunkJob(host, qlayers, str(target.rtl_dir), hw.to_dict(), x.index_select(bdim, torch.tensor(c)),
                      [idx[i] for i in c], waves, hook, progress and be.workers == 1, one_process,
                      fwd)
                    for c in chunks]
    t0 = time.monotonic()
    try:
        from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log
        results = []
        with tqdm(total=len(idx), desc="images replayed", unit="image", file=sys.stderr,
                  disable=not (progress and sys.stderr.isatty()) or len(jobs) == 1) as bar:
            for _, r in be.map_unordered(_replay_chunk, jobs):
                results.append(r)
                bar.update(len(r["indices"]))
    finally:
        if own:
            be.close()
    return results, be.describe(), time.monotonic() - t0


def _accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float | None:
    return None if bool((labels < 0).any()) else float((pred == labels).double().mean())


def _report(source, hw, x, labels, idx, results, float_logits, golden_logits, backend,
            rtl_wall, total_wall, toolchain) -> dict[str, Any]:
    pos = {i: k for k, i in enumerate(idx)}
    rtl_logits = torch.zeros_like(golden_logits)
    layers: dict[int, list[dict]] = {}
    for r in results:
        for b, i in enumerate(r["indices"]):
            rtl_logits[pos[i]] = r["logits"][b]
            layers[i] = r["layers"][i]
    pred = rtl_logits.argmax(1)
    gpred, fpred = golden_logits.argmax(1), float_logits.argmax(1)
    per_image = []
    for k, i in enumerate(idx):
        ls = layers[i]
        per_image.append({
            "index": i, "label": int(labels[k]), "prediction": int(pred[k]),
            "golden_prediction": int(gpred[k]), "float_prediction": int(fpred[k]),
            "logits_equal_golden": bool(torch.equal(rtl_logits[k], golden_logits[k])),
            "layers_bit_exact": all(l["bit_exact"] for l in ls),
            "cycles": sum(l["cycles"] for l in ls),
            "inference_pj": sum(l["inference_pj"] for l in ls),
            "training_pj": sum(l["training_pj"] for l in ls),
            "layers": ls})
    n = len(idx)
    names = [l["layer"] for l in per_image[0]["layers"]]
    per_layer = [{"layer": nm,
                  "bit_exact": all(im["layers"][j]["bit_exact"] for im in per_image),
                  "cycles_mean": sum(im["layers"][j]["cycles"] for im in per_image) / n,
                  "inference_pj_mean": sum(im["layers"][j]["inference_pj"] for im in per_image) / n,
                  "training_pj_mean": sum(im["layers"][j]["training_pj"] for im in per_image) / n,
                  "tiles": per_image[0]["layers"][j]["tiles"]}
                 for j, nm in enumerate(names)]
    sim_cycles = sum(l["simulated_cycles"] for im in per_image for l in im["layers"])
    tiles_wall = sum(l["tiles_wall_s"] for im in per_image for l in im["layers"])
    tiles_cpu = sum(l.get("tiles_cpu_s", 0.0) for im in per_image for l in im["layers"])
    return {
        "checkpoint": source, "config": hw.name, "images": n, "indices": idx,
        "layers_bit_exact": all(im["layers_bit_exact"] for im in per_image),
        "golden_agreement": float((pred == gpred).double().mean()),
        "float_agreement": float((pred == fpred).double().mean()),
        # random images have no labels (-1): no accuracy
        "accuracy": _accuracy(pred, labels), "golden_accuracy": _accuracy(gpred, labels),
        "float_accuracy": _accuracy(fpred, labels),
        "cycles": sum(im["cycles"] for im in per_image),
        "cycles_per_image": sum(im["cycles"] for im in per_image) / n,
        "inference_pj_per_image": sum(im["inference_pj"] for im in per_image) / n,
        "training_pj_per_image": sum(im["training_pj"] for im in per_image) / n,
        "tt_layers": names, "per_layer": per_layer, "per_image": per_image,
        "host_layers": "stem conv + BN and the first LIF, shortcuts, mean pooling and the "
                       "classifier run on the host (float, as sw.hwlayer.hardware_forward); "
                       "cycles and energy cover the TT layers the RTL runs",
        "energy_source": "inference: the energy model (model/, the proposed accelerator's actions "
                         "in the RTL's arrangement, shipped "
                         "28 nm table) on the RTL's counters of every tile, leakage over the "
                         "RTL's cycles; training: plus the model's backward and weight-update "
                         "passes at the image's measured input-spike density (gradient "
                         "sparsity: the model's default 0.7)",
        "simulation": {"wall_s": total_wall, "rtl_wall_s": rtl_wall, "backend": backend,
                       "simulated_cycles": sim_cycles,
                       "simulated_cycles_per_second": sim_cycles / rtl_wall if rtl_wall > 0 else None,
                       # inside the tiles only (no start-up, job preparation or golden checks):
                       # summed over the pool's processes, so per process
                       "tiles_wall_s": tiles_wall, "tiles_cpu_s": tiles_cpu,
                       "tile_cycles_per_second_per_process":
                           sim_cycles / tiles_wall if tiles_wall > 0 else None,
                       "tile_cycles_per_cpu_second": sim_cycles / tiles_cpu if tiles_cpu > 0 else None,
                       "load_average_1min": os.getloadavg()[0],
                       "design": "forward-only" if forward_only_default() else "full",
                       "toolchain": toolchain},
    }


def format_network_report(rep: dict[str, Any]) -> str:
    """The human-readable report: per layer, per image, totals."""
    ok = "bit-exact" if rep["layers_bit_exact"] else "MISMATCH"
    lines = [f"whole-network replay of {rep['checkpoint']} on the {rep['config']} RTL, "
             f"{rep['images']} test image(s) {rep['indices'][0]}..{rep['indices'][-1]}",
             f"  every TT layer vs golden model (same inputs): {ok}",
             f"  predictions: golden agreement {rep['golden_agreement']:.3f}, float agreement "
             f"{rep['float_agreement']:.3f}; "
             + ("no accuracy (no labels)" if rep["accuracy"] is None else
                f"accuracy RTL {rep['accuracy']:.3f} (golden {rep['golden_accuracy']:.3f}, "
                f"float {rep['float_accuracy']:.3f})"),
             f"  per image: {rep['cycles_per_image']:,.0f} cycles, inference "
             f"{rep['inference_pj_per_image'] / 1e6:.3f} uJ, training "
             f"{rep['training_pj_per_image'] / 1e6:.3f} uJ (TT layers)",
             "  layer                 tiles  bit-exact     cycles   infer uJ   train uJ  (mean per image)"]
    for l in rep["per_layer"]:
        lines.append(f"  {l['layer']:<20} {l['tiles']:>6}  {str(l['bit_exact']):>9} "
                     f"{l['cycles_mean']:>10,.0f} {l['inference_pj_mean'] / 1e6:>10.4f} "
                     f"{l['training_pj_mean'] / 1e6:>10.4f}")
    for im in rep["per_image"]:
        bad = [l["layer"] for l in im["layers"] if not l["bit_exact"]]
        lines.append(f"  image {im['index']}: label {im['label']}, RTL {im['prediction']}, golden "
                     f"{im['golden_prediction']}, float {im['float_prediction']}; "
                     f"{im['cycles']:,} cycles; "
                     + ("all layers bit-exact" if not bad else "MISMATCH in " + ", ".join(bad)))
    sim = rep["simulation"]
    cps = sim["simulated_cycles_per_second"]
    lines.append(f"  simulation: {sim['wall_s']:.1f} s in all ({sim['rtl_wall_s']:.1f} s on the "
                 f"RTL, {sim['backend']}; {cps:,.0f} simulated cycles/s over the pool"
                 + (f", {sim['tile_cycles_per_second_per_process']:,.0f} per process inside the "
                    f"tiles" if sim.get("tile_cycles_per_second_per_process") else "")
                 + (f"; load average {sim['load_average_1min']:.1f}" if "load_average_1min" in sim else "")
                 + f"); {sim['toolchain']}")
    lines.append(f"  note: {rep['host_layers']}")
    return "\n".join(lines)
