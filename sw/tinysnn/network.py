"""The simulation of the Diehl & Cook baseline and of tinySNN, and their learning rules.

Pure stage functions first (one neuron-layer step, inhibition, traces, the two STDP rules,
normalisation), then the two drivers: :func:`train_image` (one image, learning on; the only
Python loop is over timesteps) and :func:`infer` (learning off, a batch of images at once).

Conventions (the same in both variants):

- potentials are stored relative to their layer's rest potential, so they decay towards 0;
- at step ``t`` the excitatory layer receives the input spikes of step ``t`` and the
  recurrent (inhibitory) spikes of step ``t - 1``;
- a neuron that spiked is clamped out of integration for ``refractory`` steps (BindsNET's
  order: decay, integrate if not refractory, compare, reset);
- traces are nearest-spike traces: set to 1 at a spike, otherwise multiplied by
  ``exp(-dt / tau)``; the learning rules read them after this step's spikes set them;
- between images the state (potentials, refractory counters, traces) is reset, which is what
  Diehl & Cook's 150 ms of rest does to within ``exp(-150/100)`` of the potentials; the
  adaptive threshold ``theta`` (time constant 1e7 ms) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ttsnn.sw.tinysnn.config import SNNConfig
from ttsnn.sw.tinysnn.fixedpoint import QuantSpec

__all__ = ["lif_step", "lateral_inhibition", "trace_step", "pre_traces", "pairwise_stdp",
           "windowed_stdp", "adaptive_factor", "normalize_columns", "initial_weights",
           "poisson_spikes", "train_image", "infer", "OpCounts", "RangeRecorder"]


# ---- pure stage functions --------------------------------------------------------------------

def lif_step(v: Tensor, refrac: Tensor, current: Tensor, threshold: Tensor | float, *, decay: float,
             reset: float, refractory_steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """One step of a layer of LIF neurons (potentials relative to rest).

    ``v <- decay * v``; ``v += current`` where not refractory; spike where ``v >= threshold``;
    a spiking neuron is reset to ``reset`` and made refractory for ``refractory_steps`` steps.
    Returns ``(v, refrac, spikes)`` with ``spikes`` as 0/1 of ``v``'s dtype.
    """
    v = v * decay + current * (refrac <= 0)
    refrac = refrac - 1
    spikes = v >= threshold
    refrac = torch.where(spikes, torch.full_like(refrac, refractory_steps), refrac)
    v = torch.where(spikes, torch.full_like(v, reset), v)
    return v, refrac, spikes.to(v.dtype)


def lateral_inhibition(spikes: Tensor, weight: float) -> Tensor:
    """Current into each neuron from the others' spikes through ``-weight`` off the diagonal:
    ``-weight * (sum_j s_j - s_i)`` (the all-but-self connection, without building the matrix)."""
    return -weight * (spikes.sum(-1, keepdim=True) - spikes)


def trace_step(x: Tensor, spikes: Tensor, decay: float) -> Tensor:
    """Nearest-spike trace: 1 where a spike occurred, ``decay * x`` elsewhere."""
    return torch.where(spikes > 0, torch.ones_like(x), x * decay)


def pre_traces(spikes: Tensor, decay: float) -> Tensor:
    """The nearest-spike traces of a whole spike train ``[T, ...]`` at once (no loop):
    ``decay ** (t - last spike at or before t)``, 0 before the first spike."""
    steps = spikes.shape[0]
    t = torch.arange(steps, dtype=torch.float64).view(-1, *([1] * (spikes.dim() - 1)))
    last = torch.where(spikes > 0, t, torch.full_like(t, -1e30).expand_as(spikes))
    last = torch.cummax(last, dim=0).values
    return torch.where(last >= 0, decay ** (t - last), torch.zeros(())).to(spikes.dtype)


def pairwise_stdp(w: Tensor, pre_spikes: Tensor, post_spikes: Tensor, x_pre: Tensor, x_post: Tensor, *,
                  nu_pre: float, nu_post: float, w_max: float) -> Tensor:
    """Diehl & Cook pair-wise STDP at one step, weights ``[n_pre, n_post]``:
    a pre spike depresses by ``nu_pre * x_post``, a post spike potentiates by ``nu_post * x_pre``;
    the result is clipped to ``[0, w_max]``."""
    dw = nu_post * torch.outer(x_pre, post_spikes) - nu_pre * torch.outer(pre_spikes, x_post)
    return (w + dw).clamp_(0.0, w_max)


def adaptive_factor(max_post_count: Tensor | float, spike_count_threshold: float) -> Tensor | float:
    """tinySNN's potentiation factor ``k`` = max post-synaptic spike count so far / threshold."""
    return max_post_count / spike_count_threshold


def windowed_stdp(w: Tensor, pre_fired: Tensor, post_fired: Tensor, x_pre: Tensor, x_post: Tensor,
                  k: Tensor | float, *, nu_pre: float, nu_post: float, w_max: float) -> Tensor:
    """tinySNN's update at the end of a timestep window, weights ``[n_pre, n_post]``.

    For every post neuron that fired in the window: ``+ k * nu_post * x_pre * (w_max - w)``;
    for every pre input that fired in the window: ``- nu_pre * x_post``; traces are their
    values at the window's end. Clipped to ``[0, w_max]``.
    """
    pot = k * nu_post * torch.outer(x_pre, post_fired) * (w_max - w)
    dep = nu_pre * torch.outer(pre_fired, x_post)
    return (w + pot - dep).clamp_(0.0, w_max)


def normalize_columns(w: Tensor, total: float) -> Tensor:
    """Scale each post neuron's input weights to sum to ``total`` (columns that sum to 0 stay)."""
    s = w.sum(0, keepdim=True)
    return torch.where(s > 0, w * (total / s.clamp_min(1e-30)), w)


def initial_weights(cfg: SNNConfig, generator: torch.Generator) -> Tensor:
    """Uniform ``[0, w_init_max)`` weights, ``[n_inputs, n_neurons]``, float32."""
    return torch.rand(cfg.n_inputs, cfg.n_neurons, generator=generator) * cfg.w_init_max


def poisson_spikes(pixels: Tensor, rate_hz: float, dt_ms: float, steps: int,
                   generator: torch.Generator) -> Tensor:
    """Bernoulli approximation of Poisson spikes: ``[steps, *pixels.shape]`` 0/1 float32,
    probability ``pixel * rate * dt`` per step (pixels in [0, 1])."""
    p = (pixels * (rate_hz * dt_ms / 1000.0)).clamp(0, 1)
    return (torch.rand((steps, *pixels.shape), generator=generator) < p).to(torch.float32)


# ---- bookkeeping -----------------------------------------------------------------------------

@dataclass
class OpCounts:
    """Operations of a simulation, the inputs of the energy model (:mod:`sw.tinysnn.cost`).

    ``syn_events``: weight reads + accumulations (an input spike x its ``n_neurons`` targets);
    ``exc_updates`` / ``inh_updates``: neuron-step updates; ``inh_events``: inhibitory
    accumulations (spike x targets); ``trace_updates``: trace decays; ``stdp_updates``: weight
    read-modify-writes by STDP; ``norm_updates``: by normalisation; ``threshold_updates``;
    ``images`` and ``steps`` simulated (re-presentations included)."""

    syn_events: float = 0.0
    exc_updates: float = 0.0
    inh_updates: float = 0.0
    inh_events: float = 0.0
    trace_updates: float = 0.0
    stdp_updates: float = 0.0
    norm_updates: float = 0.0
    threshold_updates: float = 0.0
    images: float = 0.0
    steps: float = 0.0

    def add(self, **kw: float) -> None:
        for k, v in kw.items():
            setattr(self, k, getattr(self, k) + float(v))

    def per_image(self) -> dict[str, float]:
        n = max(self.images, 1.0)
        return {k: v / n for k, v in vars(self).items() if k != "images"}


class RangeRecorder:
    """Observed min / max of the stored quantities (the integer part of the fixed-point
    formats is chosen from these). Kept as element-wise running extremes, reduced only when
    read, so recording costs two tensor ops per step and no synchronisation."""

    def __init__(self) -> None:
        self._lo: dict[str, Tensor] = {}
        self._hi: dict[str, Tensor] = {}

    def see(self, name: str, t: Tensor) -> None:
        if t.numel() == 0:
            return
        t = t.detach()
        if name in self._lo and self._lo[name].shape == t.shape:
            self._lo[name] = torch.minimum(self._lo[name], t)
            self._hi[name] = torch.maximum(self._hi[name], t)
            return
        lo, hi = t.min(), t.max()
        if name in self._lo:  # a new shape: fold what we have into scalars
            lo, hi = torch.minimum(lo, self._lo[name].min()), torch.maximum(hi, self._hi[name].max())
        self._lo[name], self._hi[name] = lo, hi

    def as_dict(self) -> dict[str, tuple[float, float]]:
        return {k: (float(self._lo[k].min()), float(self._hi[k].max())) for k in self._lo}


# ---- training: one image, learning on --------------------------------------------------------

def _quant(fmt, t: Tensor, spec: QuantSpec, gen: torch.Generator) -> Tensor:
    return t if fmt.fp32 else fmt.quantize(t, spec.rounding, gen)


def train_image(cfg: SNNConfig, w: Tensor, thr: Tensor, pixels: Tensor, gen: torch.Generator,
                spec: QuantSpec, ops: OpCounts, ranges: RangeRecorder | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Present one image (``pixels [n_inputs]`` in [0, 1]) with learning on.

    ``w [n_inputs, n_neurons]`` and the stored thresholds ``thr [n_neurons]`` (relative to
    rest: ``v_thresh - v_rest + theta``) are returned updated with the excitatory spike counts.
    Diehl & Cook's rule is kept: while the layer fires fewer than ``min_spikes`` times the image
    is shown again ``rate_step`` Hz brighter (at most ``max_retries`` times).
    """
    rate = cfg.input_rate
    for attempt in range(cfg.max_retries + 1):
        run = _train_tinysnn if cfg.variant == "tinysnn" else _train_baseline
        w, thr, counts = run(cfg, w, thr, pixels, rate, gen, spec, ops, ranges)
        if float(counts.sum()) >= cfg.min_spikes:
            break
        rate += cfg.rate_step
    w = normalize_columns(w, cfg.norm_total)
    w = _quant(spec.weight, w, spec, gen) if spec.in_training else w
    ops.add(norm_updates=w.numel(), images=1)
    return w, thr, counts


def _post_trace(last_spike: Tensor, t: int, decay: float) -> Tensor:
    """Nearest-spike trace at step ``t`` from the step of each neuron's last spike (-1: none)."""
    return torch.where(last_spike >= 0, decay ** (t - last_spike), torch.zeros(()))


class _ExcLayer:
    """The excitatory layer during training, stepped with the work a spike-free step needs only
    (spikes are rare: a few per 350 steps), so the per-step cost is a handful of tensor ops.
    Equivalent to :func:`lif_step` + :func:`trace_step` (tests/sw/tinysnn check it)."""

    def __init__(self, cfg: SNNConfig, thr: Tensor, spec: QuantSpec, gen: torch.Generator):
        n = cfg.n_neurons
        self.cfg, self.spec, self.gen, self.thr = cfg, spec, gen, thr
        self.v = torch.zeros(n)
        self.until = torch.zeros(n)        # first step at which a neuron integrates again
        self.last = torch.full((n,), -1.0)  # step of the last spike (post trace in closed form)
        self.counts = torch.zeros(n)
        self.spikes = torch.zeros(n)
        self.any_spike = False

    def step(self, t: int, current: Tensor) -> bool:
        cfg = self.cfg
        self.v = self.v * cfg.decay + current * (self.until <= t)
        if cfg.v_floor is not None:
            self.v = self.v.clamp_min(cfg.floor_rel)
        self.v = _quant(self.spec.membrane, self.v, self.spec, self.gen)
        mask = self.v >= self.thr
        self.any_spike = bool(mask.any())
        if not self.any_spike:
            return False
        self.spikes = mask.to(torch.float32)
        self.v = torch.where(mask, torch.full_like(self.v, cfg.reset_rel), self.v)
        self.until = torch.where(mask, torch.full_like(self.until, t + 1 + cfg.refractory_steps), self.until)
        self.last = torch.where(mask, torch.full_like(self.last, float(t)), self.last)
        self.thr = self.thr + cfg.theta_plus * self.spikes
        self.counts = self.counts + self.spikes
        return True


def _train_tinysnn(cfg, w, thr, pixels, rate, gen, spec, ops, ranges):
    steps, n = cfg.steps, cfg.n_neurons
    s_in = poisson_spikes(pixels, rate, cfg.dt, steps, gen)
    x_pre_all = pre_traces(s_in, cfg.pre_decay)
    exc = _ExcLayer(cfg, thr, spec, gen)
    stdp_rows = torch.zeros(())
    for t0 in range(0, steps, cfg.update_window):
        t1 = min(t0 + cfg.update_window, steps)
        drive = s_in[t0:t1] @ w  # weights are constant inside a window: one matmul for it
        post_fired = torch.zeros(n)
        for i in range(t1 - t0):
            cur = drive[i] + lateral_inhibition(exc.spikes, cfg.w_lateral) if exc.any_spike else drive[i]
            if exc.step(t0 + i, cur):
                post_fired = torch.maximum(post_fired, exc.spikes)
            if ranges is not None:
                ranges.see("membrane", exc.v)
        # the threshold's decay (tau 1e7 ms) applied once per window
        exc.thr = cfg.thresh_rel + (exc.thr - cfg.thresh_rel) * cfg.theta_decay ** (t1 - t0)
        exc.thr = _quant(spec.threshold, exc.thr, spec, gen)
        pre_fired = s_in[t0:t1].amax(0)
        k = adaptive_factor(exc.counts.max(), cfg.spike_count_threshold)
        w = windowed_stdp(w, pre_fired, post_fired, x_pre_all[t1 - 1], _post_trace(exc.last, t1 - 1, cfg.post_decay),
                          k, nu_pre=cfg.nu_pre, nu_post=cfg.nu_post, w_max=cfg.w_max)
        if spec.in_training:
            w = _quant(spec.weight, w, spec, gen)
        stdp_rows = stdp_rows + pre_fired.sum() * n + post_fired.sum() * cfg.n_inputs
    total = float(exc.counts.sum())
    ops.add(syn_events=float(s_in.sum()) * n, exc_updates=steps * n, inh_events=total * (n - 1),
            trace_updates=steps * (cfg.n_inputs + n), stdp_updates=float(stdp_rows), threshold_updates=total,
            steps=steps)
    if ranges is not None:
        ranges.see("threshold", exc.thr)
    return w, exc.thr, exc.counts


def _train_baseline(cfg, w, thr, pixels, rate, gen, spec, ops, ranges):
    steps, n = cfg.steps, cfg.n_neurons
    s_in = poisson_spikes(pixels, rate, cfg.dt, steps, gen)
    x_pre_all = pre_traces(s_in, cfg.pre_decay)
    exc = _ExcLayer(cfg, thr, spec, gen)
    vi, refrac_i = torch.zeros(n), torch.zeros(n, dtype=torch.int32)
    inh_total, spk_i, inh_fired = torch.zeros(()), torch.zeros(n), False
    for t in range(steps):
        cur = s_in[t] @ w
        if inh_fired:  # inh -> exc: all but the partner neuron
            cur = cur + lateral_inhibition(spk_i, cfg.w_inh_exc)
        prev_exc = exc.spikes if exc.any_spike else None
        exc.step(t, cur)
        # the inhibitory layer integrates the excitatory spikes of the previous step
        vi, refrac_i, spk_i = lif_step(vi, refrac_i, cfg.w_exc_inh * prev_exc if prev_exc is not None
                                       else torch.zeros(n), cfg.inh_thresh_rel, decay=cfg.inh_decay,
                                       reset=cfg.inh_reset_rel, refractory_steps=cfg.inh_refractory_steps)
        vi = _quant(spec.inh_membrane, vi, spec, gen)
        s_sum = spk_i.sum()
        inh_fired = bool(s_sum > 0)
        inh_total = inh_total + s_sum
        # pair-wise STDP at every step: traces read after this step's spikes set them
        if exc.last.max() >= 0 or exc.any_spike:
            w = pairwise_stdp(w, s_in[t], exc.spikes if exc.any_spike else torch.zeros(n), x_pre_all[t],
                              _post_trace(exc.last, t, cfg.post_decay), nu_pre=cfg.nu_pre,
                              nu_post=cfg.nu_post, w_max=cfg.w_max)
            if spec.in_training:
                w = _quant(spec.weight, w, spec, gen)
        if ranges is not None:
            ranges.see("membrane", exc.v)
            ranges.see("inh_membrane", vi)
    exc.thr = cfg.thresh_rel + (exc.thr - cfg.thresh_rel) * cfg.theta_decay ** steps
    exc.thr = _quant(spec.threshold, exc.thr, spec, gen)
    total, pre_total = float(exc.counts.sum()), float(s_in.sum())
    ops.add(syn_events=pre_total * n, exc_updates=steps * n, inh_updates=steps * n,
            inh_events=total + float(inh_total) * (n - 1), trace_updates=steps * (cfg.n_inputs + n),
            stdp_updates=pre_total * n + total * cfg.n_inputs, threshold_updates=total, steps=steps)
    if ranges is not None:
        ranges.see("threshold", exc.thr)
    return w, exc.thr, exc.counts


# ---- inference: a batch of images, learning off ----------------------------------------------

def infer(cfg: SNNConfig, w: Tensor, thr: Tensor, pixels: Tensor, gen: torch.Generator, spec: QuantSpec,
          ops: OpCounts | None = None, ranges: RangeRecorder | None = None) -> Tensor:
    """Excitatory spike counts ``[B, n_neurons]`` for ``pixels [B, n_inputs]``, learning off.

    All images are simulated together (independent networks sharing ``w`` and ``thr``);
    images whose layer fired fewer than ``min_spikes`` times are shown again, brighter.
    Weights and thresholds are used as given (quantise them beforehand for PTQ); the
    membrane potentials are quantised at every step by ``spec.membrane``.
    """
    ops = ops if ops is not None else OpCounts()
    counts = torch.zeros(pixels.shape[0], cfg.n_neurons)
    todo = torch.arange(pixels.shape[0])
    rate = cfg.input_rate
    for _ in range(cfg.max_retries + 1):
        counts[todo] = _infer_batch(cfg, w, thr, pixels[todo], rate, gen, spec, ops, ranges)
        todo = todo[counts[todo].sum(1) < cfg.min_spikes]
        if todo.numel() == 0:
            break
        rate += cfg.rate_step
    ops.add(images=pixels.shape[0])
    return counts


def _infer_batch(cfg, w, thr, pixels, rate, gen, spec, ops, ranges):
    b, n, steps = pixels.shape[0], cfg.n_neurons, cfg.steps
    baseline = cfg.variant == "baseline"
    p = (pixels * (rate * cfg.dt / 1000.0)).clamp(0, 1)
    v = torch.zeros(b, n)
    refrac = torch.zeros(b, n, dtype=torch.int32)
    vi, refrac_i = torch.zeros(b, n), torch.zeros(b, n, dtype=torch.int32)
    prev_exc, prev_inh = torch.zeros(b, n), torch.zeros(b, n)
    counts, inh_total, pre_total = torch.zeros(b, n), torch.zeros(()), torch.zeros(())
    for _ in range(steps):
        s_in = (torch.rand(p.shape, generator=gen) < p).to(torch.float32)
        pre_total = pre_total + s_in.sum()
        rec = prev_inh if baseline else prev_exc
        cur = s_in @ w + lateral_inhibition(rec, cfg.w_inh_exc if baseline else cfg.w_lateral)
        v, refrac, spk = lif_step(v, refrac, cur, thr, decay=cfg.decay, reset=cfg.reset_rel,
                                  refractory_steps=cfg.refractory_steps)
        if cfg.v_floor is not None:  # the floor bounds the integrated value; a spike resets above it
            v = v.clamp_min(cfg.floor_rel)
        v = _quant(spec.membrane, v, spec, gen)
        if baseline:
            vi, refrac_i, spk_i = lif_step(vi, refrac_i, cfg.w_exc_inh * prev_exc, cfg.inh_thresh_rel,
                                           decay=cfg.inh_decay, reset=cfg.inh_reset_rel,
                                           refractory_steps=cfg.inh_refractory_steps)
            vi = _quant(spec.inh_membrane, vi, spec, gen)
            inh_total = inh_total + spk_i.sum()
            prev_inh = spk_i
        prev_exc = spk
        counts = counts + spk
        if ranges is not None:
            ranges.see("membrane", v)
            if baseline:
                ranges.see("inh_membrane", vi)
    total = float(counts.sum())
    ops.add(syn_events=float(pre_total) * n, exc_updates=steps * n * b, inh_updates=steps * n * b * baseline,
            inh_events=(total + float(inh_total) * (n - 1)) if baseline else total * (n - 1), steps=steps * b)
    return counts
