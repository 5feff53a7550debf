"""Co-simulation cases: integer layers and inputs that cover the datapath.

:func:`coverage_cases` is the batch of the default test run on a configuration (modes STT,
PTT and HTT with several schedules; T in {1, 2, 4, 6}; shapes that do not fill the PE array;
several tiles with halos; pooling; residual; saturation and wrap edges; all-zero and all-one
inputs; random seeds; streaming rings that wrap around or are capped so that the accelerator
waits for the host, in both row orders). Sizes are derived from the configuration's limits,
never copied.
:func:`paper_layer_case` is the first TT layer of MS-ResNet18 on CIFAR10 at the paper's shape.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ttsnn.cosim.layer import LayerCase
from ttsnn.sw.arch import WORKLOADS, network_specs, tt_layers
from ttsnn.sw.qlayer import QuantTTLayer

__all__ = ["random_layer", "coverage_cases", "paper_layer_case"]

#: the workload whose first TT layer :func:`paper_layer_case` builds
PAPER_LAYER_NETWORK = "resnet18-cifar10"
PAPER_LAYER_WORKLOAD = WORKLOADS[PAPER_LAYER_NETWORK]


def random_layer(rng: np.random.Generator, widths, mode: str, cin: int, r: int, cout: int, *,
                 pool: bool = False, residual: bool = False, schedule=(), rnd: int = 1,
                 full_scale: bool = False, shifts: tuple[int, int, int] | None = None,
                 leak: tuple[int, int] = (1, 2)) -> QuantTTLayer:
    """A layer with random weights in the formats of ``widths``; shifts chosen so that
    activations use their range (``full_scale`` pins every weight to the extremes and uses
    small shifts so that every stage saturates or wraps)."""
    wb, ab, qb, mb, sb = widths.weight, widths.accumulator, widths.activation, widths.membrane, widths.affine_scale
    wmax = (1 << (wb - 1)) - 1
    if full_scale:
        w = lambda *s: rng.choice([-wmax - 1, wmax], size=s)
    else:
        w = lambda *s: rng.integers(-wmax - 1, wmax + 1, size=s)
    if shifts is None:
        bits = lambda n: max(0, int(np.ceil(np.log2(max(n, 1)))))
        # typical magnitudes: sums of n products of Wb-bit and Qb-bit values, kept in Qb bits
        s1 = max(0, bits(cin) + wb - qb + 1)
        s2 = max(0, bits(3 * r) + wb - 1 - 1)
        s3 = s2
        shifts = (s1, s2, s3)
    smax = (1 << (sb - 1)) - 1
    mmax = (1 << (mb - 1)) - 1
    return QuantTTLayer(
        mode=mode, w1=w(r, cin), w2=w(r, r, 3), w3=w(r, r, 3), w4=w(cout, r),
        shift1=shifts[0], shift2=shifts[1], shift3=shifts[2],
        scale=(rng.choice([-smax - 1, smax], size=(2, cout)) if full_scale
               else rng.integers(-smax // 64, smax // 8, size=(2, cout))),
        affine_shift=0 if full_scale else max(0, ab + sb - mb - 4),
        bias=(rng.choice([-mmax - 1, mmax], size=cout) if full_scale
              else rng.integers(-mmax // 16, mmax // 16, size=cout)),
        threshold=int(rng.integers(-(mmax // 64), mmax // 8)) if not full_scale else mmax - 1,
        leak_mul=leak[0], leak_shift=leak[1], round=rnd, pool=pool, residual=residual,
        schedule=schedule)


def _fit_shift(a: torch.Tensor, bits: int, extra: int = 0, pct: float = 99.0) -> int:
    """Smallest shift bringing the ``pct`` percentile of ``|a|`` into signed ``bits`` (so the
    largest values still saturate now and then)."""
    if a.numel() == 0:
        return 0
    m = float(torch.quantile(a.abs().double().flatten()[:200_000], pct / 100.0))
    lim = (1 << (bits - 1)) - 1
    s = 0
    while m / (1 << (s + extra)) > lim and s < 60:
        s += 1
    return s


def calibrate(q: QuantTTLayer, spikes: np.ndarray, residual: np.ndarray | None, widths,
              rng: np.random.Generator) -> QuantTTLayer:
    """Choose shifts, affine shift and threshold of a random layer from its own input so that
    activations use their range (the top percent saturates) and about half the neurons spike:
    random weights with guessed shifts give all-zero or all-one outputs, which test little."""
    from ttsnn.sw import golden as G

    qb, mb = widths.activation, widths.membrane
    x = torch.nn.functional.pad(torch.from_numpy(np.asarray(spikes, dtype=np.int64)), (1, 1, 1, 1))
    w1, w2, w3 = (torch.from_numpy(np.array(getattr(q, n))) for n in ("w1", "w2", "w3"))
    a1 = G.g1(x, w1, 62)
    s1 = _fit_shift(a1, qb)
    q1 = G.sat(G.rshift(a1, s1, q.round), qb)
    if q.mode == "stt":
        choose3 = lambda a3: _fit_shift(a3, qb)
    else:  # the merge shift adds PTT's /2 itself
        choose3 = lambda m: max(0, _fit_shift(m, qb) - 1)
    c23 = G.clusters23(q1, w2, w3, q.mode, lambda a2: _fit_shift(a2, qb), choose3, q.round, qb,
                       62, torch.tensor(q.full_timesteps(x.shape[0])))
    s2, s3 = c23.shift2, c23.shift3
    q = dataclasses.replace(q, shift1=s1, shift2=s2, shift3=s3, affine_shift=0,
                            threshold=(1 << (mb - 1)) - 1)
    wide = dataclasses.replace(widths, membrane=62, accumulator=62) if dataclasses.is_dataclass(widths) \
        else widths
    res = None if residual is None else torch.from_numpy(np.asarray(residual, dtype=np.int64))
    g = G.golden_layer(q, torch.from_numpy(np.asarray(spikes, dtype=np.int64)), res, wide,
                       intermediates=True)
    a4 = g.a4
    p = G.maxpool2x2(a4) if q.pool else a4
    prod = p * torch.from_numpy(np.array(q.scale))[0][:, None, None]
    aff = _fit_shift(prod, mb, pct=90.0) + 2   # LIF inputs mostly within a quarter of the range
    q = dataclasses.replace(q, affine_shift=aff)
    g = G.golden_layer(q, torch.from_numpy(np.asarray(spikes, dtype=np.int64)), res, widths,
                       intermediates=True)
    thr = int(torch.quantile(g.current.double().flatten(), float(rng.uniform(0.4, 0.7))))
    return dataclasses.replace(q, threshold=thr)


def _spikes(rng, shape, rate):
    if rate in (0.0, 1.0):
        return np.full(shape, int(rate), dtype=np.int64)
    return (rng.random(shape) < rate).astype(np.int64)


def _residual(rng, q: QuantTTLayer, widths, t, h, w, full_scale=False):
    if not q.residual:
        return None
    ho, wo = (h // 2, w // 2) if q.pool else (h, w)
    mmax = (1 << (widths.membrane - 1)) - 1
    lim = mmax if full_scale else mmax // 8
    return rng.integers(-lim - (1 if full_scale else 0), lim + 1, size=(t, q.out_channels, ho, wo))


def coverage_cases(config, seed: int = 0) -> list[LayerCase]:
    """The default co-simulation batch for ``config`` (a ``HardwareConfig``)."""
    rng = np.random.default_rng(seed)
    wd, lim, p = config.widths, config.limits, config.lanes
    th, tw = lim.max_tile_height, lim.max_tile_width
    cin_big = min(lim.max_in_channels, 2 * p + 1)
    r_big = min(lim.max_rank, p + 1)               # two rank groups, the second partial
    cout_big = min(lim.max_out_channels, p + 2)    # two output groups
    cases: list[LayerCase] = []

    def add(name, mode, cin, r, cout, t, h, w, *, rate=0.4, schedule=(), pool=False,
            residual=False, tile_hw=None, pack=None, order=None, ring_limit=None, **kw):
        q = random_layer(rng, wd, mode, cin, r, cout, pool=pool, residual=residual,
                         schedule=schedule, **kw)
        x = _spikes(rng, (t, cin, h, w), rate)
        res = _residual(rng, q, wd, t, h, w, kw.get("full_scale", False))
        if not kw.get("full_scale"):
            q = calibrate(q, x, res, wd, rng)
        cases.append(LayerCase(name, q, x, res, tile_hw, pack, order, ring_limit))

    # modes, timesteps, shapes that do not fill the array
    add("stt-T1-small", "stt", 3, 2, 3, 1, 3, 5)
    add("ptt-T2-partial-groups", "ptt", cin_big, r_big, cout_big, 2, 4, 3)
    add("htt-T4-default-schedule", "htt", 5, 3, 4, 4, 4, 4)
    add("htt-T6-alternating", "htt", 4, r_big, 3, 6, 3, 4,
        schedule=(True, False, True, False, True, False))
    add("htt-T4-late-full", "htt", 3, 2, 2, 4, 2, 2, schedule=(False, True, True, False))
    add("stt-T2-floor-rounding", "stt", 4, 3, 3, 2, 4, 4, rnd=0)
    # several tiles with halos (layer larger than the largest tile)
    add("ptt-T2-tiles", "ptt", 4, 3, 3, 2, th + 3, tw + 2)
    add("stt-T2-tiles-forced", "stt", 3, 2, 2, 2, 5, 6, tile_hw=(2, 4))
    # pooling (with tiles) and residual
    add("ptt-T2-pool", "ptt", 4, 3, 4, 2, 4, 6, pool=True)
    add("stt-T2-pool-tiles", "stt", 3, 2, 3, 2, 6, 4, pool=True, tile_hw=(2, 2))
    add("htt-T4-residual", "htt", 3, 3, p + 1, 4, 3, 3, residual=True)
    add("ptt-T2-pool-residual", "ptt", 3, 2, 3, 2, 4, 4, pool=True, residual=True)
    # saturation / wrap edges, extreme leak
    add("stt-T4-saturate", "stt", cin_big, r_big, 3, 4, 3, 3, rate=0.9, full_scale=True,
        shifts=(0, 0, 0), leak=((1 << wd.leak_mul) - 1, 0))
    add("ptt-T4-saturate-residual", "ptt", cin_big, 3, 3, 4, 2, 2, rate=1.0, full_scale=True,
        residual=True, shifts=(0, 1, 0))
    add("htt-T2-saturate", "htt", 6, 3, 2, 2, 2, 4, rate=0.8, full_scale=True, shifts=(1, 0, 0),
        leak=(3, 1))
    # all-zero and all-one spikes
    add("ptt-T2-zeros", "ptt", 3, 2, 3, 2, 3, 3, rate=0.0)
    add("stt-T2-ones", "stt", 3, 2, 3, 2, 3, 3, rate=1.0)
    # random seeds: random shapes and modes
    for i in range(3):
        mode = ("stt", "ptt", "htt")[int(rng.integers(3))]
        t = int(rng.choice([1, 2, 4, 6]))
        sched = tuple(bool(b) for b in rng.integers(0, 2, size=t)) if mode == "htt" else ()
        pool = bool(rng.integers(2))
        h = int(rng.integers(1, 4)) * 2 if pool else int(rng.integers(1, 6))
        w = int(rng.integers(1, 4)) * 2 if pool else int(rng.integers(1, 6))
        add(f"random-{i}-{mode}-T{t}", mode, int(rng.integers(1, cin_big + 1)),
            int(rng.integers(1, r_big + 1)), int(rng.integers(1, cout_big + 1)), t, h, w,
            rate=float(rng.uniform(0.1, 0.9)), schedule=sched, pool=pool,
            residual=bool(rng.integers(2)))
    # streaming (after the random cases, so that those keep their draws): a tile of the
    # largest size with more input, residual and output rows than the rings hold (they wrap
    # around); rings capped at two rows and at one row, so that the accelerator waits for the
    # host (c1_in_wait, lif_stall), in both row orders
    add("ptt-T6-rings-wrap-residual", "ptt", cin_big, r_big, cout_big, min(6, lim.max_timesteps),
        th, tw, residual=True)
    add("stt-T2-ring-limit-row-outer", "stt", 3, 2, 3, 2, th, 5, residual=True, ring_limit=2,
        order=0)
    add("htt-T4-ring-limit-timestep-outer", "htt", 5, 3, 4, 4, 4, 3, residual=True,
        ring_limit=1, order=1, pack=0, schedule=(True, False, False, True))
    return cases


def paper_layer_case(config, seed: int = 0, rank: int = PAPER_LAYER_WORKLOAD.uniform_rank,
                     timesteps: int = PAPER_LAYER_WORKLOAD.timesteps, mode: str = "ptt",
                     tile_hw: tuple[int, int] | None = None) -> LayerCase:
    """The first TT layer of MS-ResNet18 on CIFAR10 (``layers.0.0.conv1``: 64 -> 64 channels
    at 32x32, T=4); the workload's uniform rank (32) unless given (sw.arch.WORKLOADS).
    ``tile_hw`` forces a tile size (the planner runs the layer as one tile on the paper
    configuration)."""
    wl = PAPER_LAYER_WORKLOAD
    spec = tt_layers(network_specs(wl.arch, wl.in_channels, wl.input_size, wl.num_classes, mode,
                                   f"uniform:{rank}", timesteps))[0]
    rng = np.random.default_rng(seed)
    q = random_layer(rng, config.widths, mode, spec.in_channels, spec.rank, spec.out_channels)
    h, w = spec.in_hw
    x = _spikes(rng, (timesteps, spec.in_channels, h, w), 0.2)
    q = calibrate(q, x, None, config.widths, rng)
    name = f"{PAPER_LAYER_NETWORK}-{spec.name}-{mode}-r{spec.rank}"
    if tile_hw is not None:
        name += f"-tiles{tile_hw[0]}x{tile_hw[1]}"
    return LayerCase(name, q, x, None, tile_hw)
