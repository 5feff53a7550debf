"""Training-step benchmark of dense / STT / PTT / HTT MS-ResNets, and a LIF-layer benchmark.

Step benchmark (:func:`bench_modes`): for each mode, one training step = ``zero_grad``,
forward, cross-entropy, backward, SGD (momentum 0.9, weight decay 1e-4) step, on a fixed
random batch. After ``warmup`` untimed rounds, ``reps`` rounds are timed step by step
(``time.perf_counter``), each round one step of every mode in turn (so that a change of load on
a shared machine hits all modes alike); the report gives the median, the inter-quartile range
(IQR, q1..q3) and the minimum, and the speed-up over dense as the ratio of the medians and as
the median of the per-round ratios ("paired").

Memory, measured on one extra, untimed step per mode (tracking slows it down):

* ``peak_bytes``: peak of live torch CPU memory during the step, from PyTorch's own tracker
  (``torch.distributed._tools.mem_tracker.MemTracker``: every tensor storage allocated and
  freed is accounted; parameters, gradients, optimiser state, activations and temporaries),
  and ``activation_bytes`` (its activation share at that peak);
* ``saved_bytes``: bytes of the distinct tensors that autograd saves for backward during the
  forward pass (``torch.autograd.graph.saved_tensors_hooks``).

The process's RSS is not used: the allocator keeps freed memory, so RSS deltas after warm-up
are near zero and say nothing about the step.

LIF benchmark (:func:`bench_lif`): forward + backward of our multi-step LIF
(:func:`sw.neurons.lif_multistep`) against spikingjelly's multi-step ``LIFNode`` (torch
backend) on the same input (default ``[6, 8, 64, 48, 48]``), configured to the same equations
(leak 0.25 = ``1 - 1/tau`` with ``decay_input=False``, threshold 0.5, hard reset to 0 with a
detached reset, ATan surrogate with ``alpha = 2``); times and saved-for-backward bytes. The
spikes of both are compared as a check that they compute the same thing. spikingjelly is not
a dependency: install it with ``pip install -c constraints/torch.txt spikingjelly``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ttsnn.sw.arch import MODES, WORKLOADS, WorkloadSpec
from ttsnn.sw.cli_util import UserError

__all__ = ["PRESETS", "Workload", "bench_modes", "bench_lif", "profile_step", "profile_breakdown", "format_breakdown", "saved_tensor_bytes", "peak_step_memory",
           "format_table", "format_lif", "SPIKINGJELLY_HINT"]

SPIKINGJELLY_HINT = ("spikingjelly is not installed; for the comparison install it without letting pip touch "
                     "torch:  .venv/bin/pip install -c constraints/torch.txt spikingjelly")


@dataclass(frozen=True)
class Workload:
    """What one benchmark step trains."""

    arch: str
    in_channels: int
    size: int
    num_classes: int
    timesteps: int
    batch: int
    ranks: Any
    events: bool  # True: [T, B, C, H, W] frames; False: [B, C, H, W] images (direct-coded)

    @classmethod
    def from_spec(cls, spec: WorkloadSpec, batch: int) -> "Workload":
        """The benchmark step of one of the paper's workloads (:data:`sw.arch.WORKLOADS`)."""
        return cls(spec.arch, spec.in_channels, spec.input_size, spec.num_classes, spec.timesteps,
                   batch, spec.ranks, spec.events)


PRESETS: dict[str, Workload] = {
    # the paper's workloads (sw.arch.WORKLOADS documents them and their ranks)
    "ncaltech101": Workload.from_spec(WORKLOADS["resnet34-ncaltech101"], batch=8),
    "cifar": Workload.from_spec(WORKLOADS["resnet18-cifar10"], batch=8),
    # for tests and smoke runs
    "tiny": Workload("tiny", 2, 16, 10, 2, 2, "uniform:4", True),
}


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def saved_tensor_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` and return ``(its result, bytes of the distinct tensors saved for backward)``."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        try:
            st = t.untyped_storage()
            seen[(st.data_ptr(), st.nbytes())] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def peak_step_memory(step: Callable[[], Any], model: torch.nn.Module, optimizer) -> dict[str, int] | None:
    """Peak live torch memory of one call of ``step`` (None if PyTorch's tracker is unavailable)."""
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except Exception:  # pragma: no cover - depends on the torch build
        return None
    tracker = MemTracker()
    tracker.track_external(model, optimizer)
    with tracker:
        step()
    snap = tracker.get_tracker_snapshot("peak")
    cpu = next((v for k, v in snap.items() if getattr(k, "type", None) == "cpu"), None)
    if cpu is None:
        return None
    act = sum(v for k, v in cpu.items() if getattr(k, "value", None) in ("Activation", "Temp"))
    return {"peak_bytes": int(cpu["Total"]), "activation_bytes": int(act)}


def _build(workload: Workload, mode: str, seed: int):
    from ttsnn.sw.resnet import ms_resnet

    torch.manual_seed(seed)
    model = ms_resnet(workload.arch, mode=mode, ranks=None if mode == "dense" else workload.ranks,
                      in_channels=workload.in_channels, num_classes=workload.num_classes,
                      timesteps=workload.timesteps, input_size=workload.size)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed + 1)
    shape = ((workload.timesteps, workload.batch) if workload.events else (workload.batch,)) + (
        workload.in_channels, workload.size, workload.size)
    x = torch.rand(shape, generator=g)
    if workload.events:
        x = (x < 0.2).float()  # sparse binary event frames
    y = torch.randint(0, workload.num_classes, (workload.batch,), generator=g)
    return model, optimizer, x, y


def profile_step(workload: Workload, mode: str, seed: int = 0, row_limit: int = 20) -> str:
    """Where one training step's time goes: torch.profiler's per-operator table (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    model, optimizer, x, y = _build(workload, mode, seed)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


#: the breakdown's categories: forward modules (timed as profiler ranges) and the names of
#: their autograd nodes in the backward pass
_BREAKDOWN = (
    ("convolutions", ("TTConv2d", "DenseConv3x3", "Conv2d"), ("_TTConvFunctionBackward", "ConvolutionBackward")),
    ("batchnorm", ("BatchNormTB",), ("BatchNorm",)),
    ("lif", ("MultiStepLIF",), ("_LIFFunctionBackward",)),
)


def _label_forwards(model: torch.nn.Module) -> None:
    """Wrap the forward of every module of a breakdown category in a profiler range (the
    outermost only: a TT conv's core convs are counted with it)."""
    from torch.profiler import record_function

    wrapped: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(w + ".") for w in wrapped):
            continue
        label = next((cat for cat, types, _ in _BREAKDOWN if type(module).__name__ in types), None)
        if label is None:
            continue
        wrapped.append(name)

        def forward(*args, _orig=module.forward, _label=f"sw::{label}", **kwargs):
            with record_function(_label):
                return _orig(*args, **kwargs)

        module.forward = forward


def profile_breakdown(workload: Workload, mode: str, seed: int = 0, steps: int = 2) -> dict[str, Any]:
    """Where a training step's time goes, by category: ``{category: seconds per step}`` for
    convolutions (every conv: block, stem, shortcut), BatchNorm, LIF (each forward + backward),
    the optimiser step and the rest (loss, residual adds, pooling, autograd bookkeeping), and
    ``step_s`` (the profiled step). Profiler self-times are inflated by its overhead; compare
    the fractions, and steps within one run."""
    from torch.profiler import ProfilerActivity, profile, record_function

    model, optimizer, x, y = _build(workload, mode, seed)
    _label_forwards(model)

    def step():
        with record_function("sw::step"):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            with record_function("sw::optimizer"):
                optimizer.step()

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for evt in prof.key_averages():
        totals[evt.key] = totals.get(evt.key, 0.0) + evt.cpu_time_total / 1e6 / steps
        calls[evt.key] = calls.get(evt.key, 0) + evt.count // steps
    out: dict[str, Any] = {"mode": mode, "step_s": totals.get("sw::step", 0.0)}
    for cat, _, backward_names in _BREAKDOWN:
        fwd = totals.get(f"sw::{cat}", 0.0)
        # the node itself, not the engine's "autograd::engine::evaluate_function: <node>" around it
        bwd = sum(v for k, v in totals.items() if k.endswith(("Backward", "Backward0", "Backward1"))
                  and not k.startswith("autograd::") and any(n in k for n in backward_names))
        out[cat] = {"forward_s": fwd, "backward_s": bwd, "total_s": fwd + bwd,
                    "forward_calls": calls.get(f"sw::{cat}", 0)}
    out["optimizer"] = {"total_s": totals.get("sw::optimizer", 0.0)}
    out["other"] = {"total_s": out["step_s"] - sum(out[c]["total_s"] for c in ("convolutions", "batchnorm", "lif",
                                                                            "optimizer"))}
    return out


def format_breakdown(rows: list[dict[str, Any]], workload: Workload, threads: int) -> str:
    """Markdown table of :func:`profile_breakdown` results, one row per mode."""
    cats = ("convolutions", "batchnorm", "lif", "optimizer", "other")
    head = (f"Profiled training step by category ({workload.arch}, input {workload.in_channels}x{workload.size}x"
            f"{workload.size}, T={workload.timesteps}, batch {workload.batch}, ranks {workload.ranks}, "
            f"{threads} thread(s)); seconds per step (share of the step)\n\n")
    lines = ["| mode | step (s) | " + " | ".join(cats) + " | BN + LIF |", "|---|---|" + "---|" * (len(cats) + 1)]
    for r in rows:
        step = r["step_s"] or float("nan")
        cells = [f"{r[c]['total_s']:.3f} ({r[c]['total_s'] / step:.0%})" for c in cats]
        fixed = r["batchnorm"]["total_s"] + r["lif"]["total_s"]
        lines.append(f"| {r['mode']} | {r['step_s']:.3f} | " + " | ".join(cells) + f" | {fixed:.3f} ({fixed / step:.0%}) |")
    return head + "\n".join(lines)


def _step_fn(model, optimizer, x, y) -> Callable[[], Any]:
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


def bench_modes(workload: Workload, modes=MODES, reps: int = 10, warmup: int = 2,
                threads: int | None = None, seed: int = 0, memory: bool = True,
                progress: bool = True) -> dict[str, dict[str, Any]]:
    """Time one training step per mode; returns ``{mode: {median_s, q1_s, q3_s, iqr_s, min_s, ...}}``.

    The modes take turns (one step of each per round, ``reps`` rounds), so that a change of the
    machine's load during the run hits every mode alike; ``speedup_paired`` is the median over
    rounds of dense's step time over the mode's (the same round), ``speedup_vs_dense`` the ratio
    of the medians.
    """
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    if reps < 1 or warmup < 0:
        raise UserError(f"reps must be >= 1 and warmup >= 0, got reps={reps}, warmup={warmup}")
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    modes = list(modes)
    built = {mode: _build(workload, mode, seed) for mode in modes}
    steps = {mode: _step_fn(*built[mode]) for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    bar = tqdm(total=(warmup + reps) * len(modes), desc="bench", leave=False, disable=not progress)
    for i in range(warmup + reps):
        for mode in modes:
            t0 = time.perf_counter()
            steps[mode]()
            if i >= warmup:
                times[mode].append(time.perf_counter() - t0)
            bar.update()
    bar.close()
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        model, optimizer, x, y = built[mode]
        q1, med, q3 = _quantiles(times[mode])
        row: dict[str, Any] = {"median_s": med, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1,
                               "min_s": min(times[mode]), "reps": reps, "warmup": warmup, "times_s": times[mode],
                               "params": sum(p.numel() for p in model.parameters())}
        if memory:
            optimizer.zero_grad(set_to_none=True)
            (loss, saved) = saved_tensor_bytes(lambda: F.cross_entropy(model(x), y))
            loss.backward()
            optimizer.zero_grad(set_to_none=True)
            row["saved_bytes"] = saved
            mem = peak_step_memory(steps[mode], model, optimizer)
            row.update(mem or {"peak_bytes": None, "activation_bytes": None})
        results[mode] = row
    if "dense" in results:
        for mode, row in results.items():
            row["speedup_vs_dense"] = results["dense"]["median_s"] / row["median_s"]
            row["speedup_paired"] = statistics.median(d / t for d, t in zip(times["dense"], times[mode]))
    return results


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def format_table(results: dict[str, dict[str, Any]], workload: Workload, threads: int) -> str:
    """Markdown table of :func:`bench_modes` results."""
    name = {"resnet18": "MS-ResNet18", "resnet34": "MS-ResNet34"}.get(workload.arch, f"MS-ResNet ({workload.arch})")
    head = (f"{name} training step (forward + backward + SGD), input {workload.in_channels}x"
            f"{workload.size}x{workload.size}, T={workload.timesteps}, batch {workload.batch}, "
            f"{workload.num_classes} classes, ranks {workload.ranks}, {threads} thread(s)\n\n")
    lines = ["| mode | median (s) | IQR (s) | min (s) | speed-up vs dense (medians / paired) | params "
             "| peak step memory (MiB) | saved for backward (MiB) |", "|---|---|---|---|---|---|---|---|"]
    for mode, r in results.items():
        sp, pair = r.get("speedup_vs_dense"), r.get("speedup_paired")
        speed = "-" if sp is None else f"{sp:.2f}x / {pair:.2f}x"
        lines.append(f"| {mode} | {r['median_s']:.4f} | {r['iqr_s']:.4f} | {r['min_s']:.4f} | "
                     f"{speed} | {r['params']:,} | {_mib(r.get('peak_bytes'))} | "
                     f"{_mib(r.get('saved_bytes'))} |")
    return head + "\n".join(lines)


def _sj_node():
    from spikingjelly.activation_based import neuron, surrogate  # type: ignore

    kwargs = dict(tau=4.0 / 3.0, decay_input=False, v_threshold=0.5, v_reset=0.0,
                  surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=True, step_mode="m")
    try:  # spikingjelly 0.0.0.0.14 selects the backend by argument; 2.0's LIFNode is the torch one
        return neuron.LIFNode(**kwargs, backend="torch")
    except TypeError:
        return neuron.LIFNode(**kwargs)


def bench_lif(shape=(6, 8, 64, 48, 48), reps: int = 10, warmup: int = 2, threads: int | None = None,
              seed: int = 0) -> dict[str, Any]:
    """Forward + backward time and saved-for-backward bytes of our LIF vs spikingjelly's.

    Returns ``{'shape', 'ours': {...}, 'spikingjelly': {...} or None, 'spikingjelly_error': str,
    'spikes_equal': bool|None, 'speedup': float|None}``.
    """
    from ttsnn.sw.neurons import lif_multistep

    if threads is not None:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g) * 1.5 - 0.25
    grad = torch.randn(shape, generator=g)

    def ours(x):
        return lif_multistep(x, tau=0.25, v_threshold=0.5, surrogate="atan", alpha=2.0)

    def ours_rect(x):
        return lif_multistep(x, tau=0.25, v_threshold=0.5, surrogate="rectangle")

    impls: dict[str, Callable] = {"ours": ours, "ours-rectangle": ours_rect}
    sj_error = None
    try:
        node = _sj_node()

        def sj(x):
            node.reset()
            return node(x)

        impls["spikingjelly"] = sj
    except ImportError:
        sj_error = SPIKINGJELLY_HINT
    out: dict[str, Any] = {"shape": list(shape), "spikingjelly_error": sj_error}
    spikes = {}
    for name, fn in impls.items():
        times = []
        for i in range(warmup + reps):
            x = x0.clone().requires_grad_(True)
            t0 = time.perf_counter()
            s = fn(x)
            s.backward(grad)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
        x = x0.clone().requires_grad_(True)
        s, saved = saved_tensor_bytes(lambda: fn(x))
        spikes[name] = s.detach()
        q1, med, q3 = _quantiles(times)
        out[name] = {"median_s": med, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "min_s": min(times),
                     "saved_bytes": saved, "times_s": times}
    out.setdefault("spikingjelly", None)
    if out["spikingjelly"]:
        out["spikes_equal"] = bool(torch.equal(spikes["ours"], spikes["spikingjelly"].to(spikes["ours"].dtype)))
        out["speedup"] = out["spikingjelly"]["median_s"] / out["ours"]["median_s"]
        out["saved_ratio"] = out["spikingjelly"]["saved_bytes"] / max(out["ours"]["saved_bytes"], 1)
    else:
        out["spikes_equal"] = out["speedup"] = out["saved_ratio"] = None
    return out


def format_lif(res: dict[str, Any], threads: int) -> str:
    """Markdown table of :func:`bench_lif` results."""
    head = (f"Multi-step LIF forward + backward on {res['shape']} (float32, ATan surrogate), "
            f"{threads} thread(s)\n\n")
    lines = ["| implementation | median (s) | IQR (s) | min (s) | saved for backward (MiB) |", "|---|---|---|---|---|"]
    for name in ("ours", "ours-rectangle", "spikingjelly"):
        r = res.get(name)
        if r:
            lines.append(f"| {name} | {r['median_s']:.4f} | {r['iqr_s']:.4f} | {r['min_s']:.4f} | "
                         f"{_mib(r['saved_bytes'])} |")
    text = head + "\n".join(lines)
    if res["spikingjelly"] is None:
        text += f"\n\n{res['spikingjelly_error']}"
    else:
        text += (f"\n\nours is {res['speedup']:.2f}x faster and saves {res['saved_ratio']:.2f}x less for backward; "
                 f"spikes identical: {res['spikes_equal']}")
    return text
