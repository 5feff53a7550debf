"""The integer golden backward pass (sw/golden_backward.py) against references written from
the equations of docs/numerics.md ("Backward pass"): scalar loops per stage (the transposed
cores in scatter form, where the model gathers), a pure-Python hash, hand-computed cases, and
float64 autograd of the integer forward with straight-through rounding for whole layers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttsnn.cosim.cases import calibrate, random_layer
from ttsnn.gen.config import ConfigError, GradientFormats, config_from_dict, load_config
from ttsnn.sw import golden
from ttsnn.sw import golden_backward as GB

WD = load_config("small").widths
WIDE = GradientFormats(width=30, accumulator=60, wgrad_tile=62, wgrad_batch=62)


# ---- references written from the equations --------------------------------------------------

def py_lowbias32(x: int) -> int:
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def py_round_shift(v: int, s: int, mode: str) -> int:
    if s <= 0:
        return v * 2 ** -s
    return (v + (2 ** (s - 1) if mode == "nearest" else 0)) // 2 ** s


def py_sat(v: int, b: int) -> int:
    return max(-(2 ** (b - 1)), min(2 ** (b - 1) - 1, v))


def ste(y, y_int):
    """Forward value ``y_int``, gradient of ``y`` (straight-through rounding)."""
    return y + (y_int.double() - y).detach()


def float_ste_backward(q, xs, wd, e_f, g_extra_f, trace, params):
    """Float64 autograd of the integer forward (straight-through rounding and saturation):
    ``dL/dx``, ``dL/dW_int`` per core and the current gradient, in float units of ``e_f``."""
    steps, batch, _, h, w = xs.shape
    full = torch.tensor(q.full_timesteps(steps))
    st = golden.forward_stages(q, F.pad(xs, (1, 1, 1, 1)), None, wd, full)
    x = xs.double().requires_grad_()
    ws = [torch.from_numpy(np.array(getattr(q, n))).double().requires_grad_()
          for n in ("w1", "w2", "w3", "w4")]
    w1, w2, w3, w4 = ws
    fold = lambda t: t.reshape(steps * batch, *t.shape[2:])              # noqa: E731
    unfold = lambda t: t.reshape(steps, batch, *t.shape[1:])             # noqa: E731
    conv = lambda t, k, pad=0: unfold(F.conv2d(fold(t), k, padding=pad))  # noqa: E731
    q1 = ste(conv(x, w1[:, :, None, None]) * 2.0 ** -q.shift1, st.q1[..., 1:h + 1, 1:w + 1])
    if q.mode == "stt":
        q2_int = golden.sat(golden.rshift(st.clusters.a2, q.shift2, q.round), wd.activation)
        q2 = ste(conv(q1, w2[:, :, :, None], (1, 0)) * 2.0 ** -q.shift2, q2_int[..., 1:w + 1])
        q23 = ste(conv(q2, w3[:, :, None, :], (0, 1)) * 2.0 ** -q.shift3, st.q23)
    else:
        m = conv(q1, w2[:, :, :, None], (1, 0)) + conv(q1, w3[:, :, None, :], (0, 1))
        q23 = torch.where(full.view(-1, 1, 1, 1, 1), ste(m * 2.0 ** -(q.shift3 + 1), st.q23), q1)
    a4 = conv(q23, w4[:, :, None, None])
    p = unfold(F.max_pool2d(fold(a4), 2)) if q.pool else a4
    k = torch.from_numpy(np.array(q.scale)).double()[(~full).long()].view(steps, 1, -1, 1, 1)
    cur = p * k * 2.0 ** -q.affine_shift
    height = params.height_mul / 2 ** params.height_shift
    leak = q.leak_mul / 2 ** q.leak_shift
    d = torch.zeros_like(e_f)
    nxt = torch.zeros_like(e_f[0])
    for t in reversed(range(steps)):    # bptt.md: d = m e h + (1 - s) leak d[t+1]
        nxt = trace.window[t].double() * e_f[t] * height + (1 - trace.spikes[t].double()) * leak * nxt
        d[t] = nxt
    g_cur = d + (0 if g_extra_f is None else g_extra_f)
    cur.backward(g_cur * 2.0 ** -q.frac_bits)       # dL/dcur_int = dL/dcur * 2^-frac_bits
    return x.grad, {n: wt.grad for n, wt in zip(("w1", "w2", "w3", "w4"), ws)}, g_cur


def make_case(seed, mode, pool, t=4, b=2, cin=6, r=5, cout=7, h=8, w=6):
    rng = np.random.default_rng(seed)
    q = random_layer(rng, WD, mode, cin, r, cout, pool=pool)
    xs = (rng.random((t, b, cin, h, w)) < 0.3).astype(np.int64)
    q = dataclasses.replace(calibrate(q, xs[:, 0], None, WD, rng), frac_bits=8)
    params = dataclasses.replace(GB.surrogate_params(q, 0.5, 1.0, WD),
                                 window_lo=q.threshold - 300, window_hi=q.threshold + 300)
    xs = torch.from_numpy(xs)
    trace, _, _ = GB.forward_trace(q, F.pad(xs, (1, 1, 1, 1)), None, WD, params.window_lo,
                                   params.window_hi)
    ho, wo = trace.spikes.shape[-2:]
    e = torch.from_numpy(rng.integers(-1000, 1000, size=(t, b, cout, ho, wo)))
    g_extra = torch.from_numpy(rng.integers(-500, 500, size=(t, b, cout, ho, wo)))
    return q, xs, params, trace, e, g_extra


def rel_err(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / b.norm())


# ---- rounding and the dither ----------------------------------------------------------------

def test_lowbias32_equals_python_integers():
    vals = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 123456789, 0xDEADBEEF]
    got = GB.lowbias32(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert got == [py_lowbias32(v) for v in vals]
    assert len(set(got)) == len(vals)


def test_deterministic_roundings_hand_computed():
    v = torch.tensor([5, 6, 7, -5, -6, -7, 4, -4])
    near = GB.GradRounding("nearest").shift(v, 2, "g1t", None).tolist()
    floor = GB.GradRounding("floor").shift(v, 2, "g1t", None).tolist()
    assert near == [1, 2, 2, -1, -1, -2, 1, -1]       # (v + 2) // 4: ties go up
    assert floor == [1, 1, 1, -2, -2, -2, 1, -1]
    assert GB.GradRounding("nearest").shift(v, -3, "g1t", None).tolist() == [8 * x for x in v.tolist()]
    assert [py_round_shift(x, 2, "nearest") for x in v.tolist()] == near


def test_stochastic_rounding_is_unbiased_and_one_of_the_neighbours():
    n = 20000
    v = torch.full((1, 1, 1, 1, n), 37)                 # 37 / 8 = 4.625
    rnd = GB.GradRounding("stochastic", seed=3)
    idx = lambda: GB.element_index(tuple(v.shape), (0, 0), (1, n))  # noqa: E731
    r = rnd.shift(v, 3, "g4t", idx)
    assert set(r.unique().tolist()) == {4, 5}
    assert abs(float(r.double().mean()) - 4.625) < 0.01    # 4 sigma of a Bernoulli mean ~ 0.014
    # the dither is a function of (seed, stage, coordinates): repeatable, stage-dependent
    assert torch.equal(r, rnd.shift(v, 3, "g4t", idx))
    assert not torch.equal(r, rnd.shift(v, 3, "g1t", idx))
    # python reference of one element
    i = int(idx().flatten()[5])
    dither = py_lowbias32(i ^ py_lowbias32(16 * 3 + GB.STAGE_IDS["g4t"])) & 7
    assert int(r.flatten()[5]) == (37 + dither) // 8


# ---- stages against scalar loops -------------------------------------------------------------

def test_lif_grad_hand_computed():
    # T = 3, one neuron, leak 1/4, height 1: e = [8, 4, 12], m = [1, 0, 1], s = [0, 1, 0]
    e = torch.tensor([8, 4, 12]).view(3, 1, 1, 1, 1)
    m = torch.tensor([1, 0, 1]).view(3, 1, 1, 1, 1)
    s = torch.tensor([0, 1, 0]).view(3, 1, 1, 1, 1)
    d, n = GB.lif_grad(e, s, m, height_mul=1, height_shift=0, leak_mul=1, leak_shift=2, bits=16,
                       rnd=GB.GradRounding("nearest"))
    # d[2] = 12; d[1] = 0 (no window) + 0 (spiked: reset blocks the path); d[0] = 8 + 0 / 4
    assert d.flatten().tolist() == [8, 0, 12] and n == 0
    s = torch.zeros(3, 1, 1, 1, 1, dtype=torch.int64)
    d, _ = GB.lif_grad(e, s, m, height_mul=1, height_shift=0, leak_mul=1, leak_shift=2, bits=16,
                       rnd=GB.GradRounding("nearest"))
    # d[2] = 12; d[1] = round(12 / 4) = 3; d[0] = 8 + round(3 / 4) = 9
    assert d.flatten().tolist() == [9, 3, 12]
    d, n = GB.lif_grad(e * 1000, s, m, height_mul=3, height_shift=1, leak_mul=1, leak_shift=2,
                       bits=12, rnd=GB.GradRounding("floor"))
    assert d.flatten().tolist() == [py_sat(12000 + 2047 // 4, 12), 2047 // 4, 2047] and n == 2


def test_lif_grad_against_scalar_loop():
    rng = np.random.default_rng(0)
    t, n = 6, 40
    e = rng.integers(-3000, 3000, size=(t, n))
    m = rng.integers(0, 2, size=(t, n))
    s = rng.integers(0, 2, size=(t, n))
    shape = (t, 1, n, 1, 1)
    d, nsat = GB.lif_grad(*(torch.from_numpy(a).view(shape) for a in (e, s, m)), height_mul=5,
                          height_shift=2, leak_mul=3, leak_shift=3, bits=12,
                          rnd=GB.GradRounding("nearest"))
    ref = np.zeros((t, n), dtype=np.int64)
    count = 0
    for j in range(n):
        nxt = 0
        for k in reversed(range(t)):
            v = (py_round_shift(int(e[k, j]) * 5, 2, "nearest") if m[k, j] else 0) \
                + (0 if s[k, j] else py_round_shift(nxt * 3, 3, "nearest"))
            nxt = py_sat(v, 12)
            count += nxt != v
            ref[k, j] = nxt
    assert np.array_equal(d.view(t, n).numpy(), ref) and nsat == count > 0


def test_affine_grad_and_pool_routing_against_loops():
    rng = np.random.default_rng(1)
    g = torch.from_numpy(rng.integers(-2000, 2000, size=(3, 1, 4, 2, 3)))
    scale = torch.from_numpy(rng.integers(-300, 300, size=(2, 4)))
    full = torch.tensor([True, False, True])
    got, _ = GB.affine_grad(g, scale, full, 5, 16, GB.GradRounding("nearest"))
    for t in range(3):
        for o in range(4):
            for y in range(2):
                for x in range(3):
                    k = int(scale[0 if full[t] else 1, o])
                    assert int(got[t, 0, o, y, x]) == py_sat(py_round_shift(int(g[t, 0, o, y, x]) * k, 5, "nearest"), 16)
    a = torch.from_numpy(rng.integers(-3, 3, size=(2, 1, 3, 4, 6)))    # small range: many ties
    arg = GB.maxpool2x2_argmax(a)
    routed = GB.maxpool2x2_grad(g[:2, :, :3, :, :], arg)
    for t in range(2):
        for c in range(3):
            for y in range(2):
                for x in range(3):
                    block = [int(a[t, 0, c, 2 * y + i, 2 * x + j]) for i in (0, 1) for j in (0, 1)]
                    first = block.index(max(block))               # raster order, first on ties
                    assert int(arg[t, 0, c, y, x]) == first
                    for pos in range(4):
                        want = int(g[t, 0, c, y, x]) if pos == first else 0
                        assert int(routed[t, 0, c, 2 * y + pos // 2, 2 * x + pos % 2]) == want


def test_transposed_cores_against_scatter_loops():
    """The model gathers; the reference scatters each output gradient back through the
    forward kernel (dq[j, y + i - 1] += w[k, j, i] * g[k, y])."""
    rng = np.random.default_rng(2)
    r, h, w = 3, 4, 5
    w2 = rng.integers(-50, 50, size=(r, r, 3))
    w3 = rng.integers(-50, 50, size=(r, r, 3))
    g = rng.integers(-100, 100, size=(r, h + 2, w + 2))
    tt = lambda a: torch.from_numpy(a).view(1, 1, *a.shape)          # noqa: E731
    ref2 = np.zeros((r, h + 2, w + 2), dtype=np.int64)               # over the whole window
    ref3 = np.zeros((r, h + 2, w + 2), dtype=np.int64)
    for k in range(r):
        for y in range(h + 2):
            for x in range(w + 2):
                for j in range(r):
                    for i in range(3):
                        if 0 <= y + i - 1 < h + 2:
                            ref2[j, y + i - 1, x] += w2[k, j, i] * g[k, y, x]
                        if 0 <= x + i - 1 < w + 2:
                            ref3[j, y, x + i - 1] += w3[k, j, i] * g[k, y, x]
    got2 = GB.g2_t(tt(g), torch.from_numpy(w2), 40)[0, 0]
    got3 = GB.g3_t(tt(g), torch.from_numpy(w3), 40)[0, 0]
    assert np.array_equal(got2.numpy(), ref2[:, 1:h + 1, :])          # the tile's own rows
    assert np.array_equal(got3.numpy(), ref3[:, :, 1:w + 1])
    ptt = GB.g23_t_ptt(tt(g), torch.from_numpy(w2), torch.from_numpy(w3), 40)[0, 0]
    # PTT's G2^T reads the tile's columns only, G3^T the tile's rows only
    g_cols = g.copy(); g_cols[:, :, [0, w + 1]] = 0
    g_rows = g.copy(); g_rows[:, [0, h + 1], :] = 0
    want = GB.g2_t(tt(g_cols), torch.from_numpy(w2), 40)[0, 0][..., 1:w + 1] \
        + GB.g3_t(tt(g_rows), torch.from_numpy(w3), 40)[0, 0][..., 1:h + 1, :]
    assert torch.equal(ptt, want)
    w4 = rng.integers(-50, 50, size=(6, r))
    w1 = rng.integers(-50, 50, size=(r, 7))
    g4 = rng.integers(-100, 100, size=(6, 2, 2))
    got4 = GB.g4_t(tt(g4), torch.from_numpy(w4), 40)[0, 0]
    got1 = GB.g1_t(tt(g[:, :2, :2]), torch.from_numpy(w1), 40)[0, 0]
    for y in range(2):
        for x in range(2):
            for k in range(r):
                assert int(got4[k, y, x]) == sum(int(w4[o, k]) * int(g4[o, y, x]) for o in range(6))
            for c in range(7):
                assert int(got1[c, y, x]) == sum(int(w1[k, c]) * int(g[k, y, x]) for k in range(r))
    # the accumulator wraps at its width (never reached within the configuration's limits)
    assert int(GB.g4_t(tt(g4), torch.from_numpy(w4), 8).abs().max()) <= 128


def test_weight_gradients_against_loops():
    rng = np.random.default_rng(3)
    t, b, r, c, h, w = 2, 2, 3, 4, 3, 4
    g = rng.integers(-100, 100, size=(t, b, r, h, w))
    act = rng.integers(-60, 60, size=(t, b, c, h + 2, w + 2))
    T = torch.from_numpy
    pw = GB.wgrad_pointwise(T(g), T(act[..., 1:h + 1, 1:w + 1]))
    rows = GB.wgrad_rows(T(g), T(act[:, :, :r, :, 1:w + 1]))
    cols = GB.wgrad_cols(T(g), T(act[:, :, :r, 1:h + 1, :]))
    for bb in range(b):
        for k in range(r):
            for j in range(c):
                assert int(pw[bb, k, j]) == int((g[:, bb, k] * act[:, bb, j, 1:h + 1, 1:w + 1]).sum())
            for j in range(r):
                for i in range(3):
                    want_r = sum(int(g[tt_, bb, k, y, x]) * int(act[tt_, bb, j, y + i, x + 1])
                                 for tt_ in range(t) for y in range(h) for x in range(w))
                    want_c = sum(int(g[tt_, bb, k, y, x]) * int(act[tt_, bb, j, y + 1, x + i])
                                 for tt_ in range(t) for y in range(h) for x in range(w))
                    assert int(rows[bb, k, j, i]) == want_r and int(cols[bb, k, j, i]) == want_c


def test_batch_accumulator_saturates_in_sample_order():
    parts = torch.tensor([[100], [60], [-50]])
    acc, n = GB.accumulate_batch(parts, 8)          # 100 + 60 -> 127 (sat), then 77
    assert acc.tolist() == [77] and n == 1


def test_surrogate_params_in_the_membrane_fixed_point():
    q = random_layer(np.random.default_rng(0), WD, "ptt", 4, 3, 4)
    q = dataclasses.replace(q, frac_bits=8)
    p = GB.surrogate_params(q, 0.5, 1.0, WD)
    assert (p.window_lo, p.window_hi, p.height_mul, p.height_shift) == (0, 256, 1, 0)
    p = GB.surrogate_params(q, 0.5, 0.5, WD)
    assert (p.window_lo, p.window_hi, p.height_mul, p.height_shift) == (64, 192, 2, 0)
    p = GB.surrogate_params(q, 0.5, 3.0, WD)       # height 1/3 with an 8-bit multiplier
    assert abs(p.height_mul / 2 ** p.height_shift - 1 / 3) < 2 ** -8 and p.height_mul < 256


# ---- whole layers ----------------------------------------------------------------------------

CASES = [("ptt", False), ("stt", False), ("htt", False), ("ptt", True), ("stt", True), ("htt", True)]


@pytest.mark.parametrize("mode,pool", CASES)
def test_layer_backward_equals_float_autograd_of_the_integer_forward(mode, pool):
    q, xs, params, trace, e, g_extra = make_case(10 + CASES.index((mode, pool)), mode, pool)
    params = GB.calibrate_backward(q, trace, e, WD, WIDE, params, g_extra)
    res = GB.backward_layer(q, trace, e, WD, WIDE, params, g_extra)
    assert sum(res.saturations.values()) == 0
    lsb = GB.gradient_lsbs(q, res.shifts, 0)
    gx, gw, gcur = float_ste_backward(q, xs, WD, e.double(), g_extra.double(), trace, params)
    assert rel_err(res.g_current * lsb["g_current"], gcur) < 2e-3
    assert rel_err(res.e_in * lsb["e_in"], gx) < 2e-3
    for n in ("w1", "w2", "w3", "w4"):
        assert rel_err(res.dw[n].sum(0) * lsb[n], gw[n]) < 2e-3, n
    assert float(gx.abs().max()) > 0 and all(float(g.abs().max()) > 0 for g in gw.values())


@pytest.mark.parametrize("mode,pool,rounding", [("ptt", False, "stochastic"), ("stt", True, "nearest"),
                                                ("htt", True, "stochastic"), ("stt", False, "floor")])
def test_tiled_backward_equals_the_untiled_layer(mode, pool, rounding):
    """Tiles with a one-pixel gradient ring compute the layer's input gradient exactly and their
    weight-gradient sums add up to the layer's (stochastic dither included: it is hashed from
    layer coordinates)."""
    q, xs, params, trace, e, g_extra = make_case(30, mode, pool)
    grads = GradientFormats(width=12, accumulator=40, wgrad_tile=40, wgrad_batch=48, rounding=rounding)
    params = GB.calibrate_backward(q, trace, e, WD, grads, params, g_extra)
    params = dataclasses.replace(params, shifts={k: max(0, v - 1) for k, v in params.shifts.items()})
    whole = GB.backward_layer(q, trace, e, WD, grads, params, g_extra)
    h, w = xs.shape[-2:]
    f = 2 if pool else 1
    ptrace = GB.pad_trace(trace)
    pe, pg = (F.pad(t, (1, 1, 1, 1)) for t in (e, g_extra))
    px = F.pad(xs, (1, 1, 1, 1))
    e_in = torch.zeros_like(whole.e_in)
    g_cur = torch.zeros_like(whole.g_current)
    dw = {n: torch.zeros_like(v) for n, v in whole.dw.items()}
    sats = 0
    for y0, th in ((0, 4), (4, 4)):
        for x0, tw in ((0, 2), (2, 4)):
            oy, ox, oh, ow = y0 // f, x0 // f, th // f, tw // f
            ring = lambda t: t[..., oy:oy + oh + 2, ox:ox + ow + 2]    # noqa: E731
            tr = GB.ForwardTrace(x=px[..., y0:y0 + th + 2, x0:x0 + tw + 2], spikes=ring(ptrace.spikes),
                                 window=ring(ptrace.window),
                                 argmax=None if ptrace.argmax is None else ring(ptrace.argmax))
            part = GB.backward_tile(q, tr, ring(pe), WD, grads, params, ring(pg), origin=(y0, x0),
                                    layer_hw=(h, w))
            e_in[..., y0:y0 + th, x0:x0 + tw] = part.e_in
            g_cur[..., oy:oy + oh, ox:ox + ow] = part.g_current
            for n in dw:
                dw[n] += part.dw[n]
            sats += sum(part.saturations.values())
    assert torch.equal(e_in, whole.e_in) and torch.equal(g_cur, whole.g_current)
    for n in dw:
        assert torch.equal(dw[n], whole.dw[n]), n
    assert sum(whole.saturations.values()) > 0     # the narrowed shifts do saturate somewhere
    assert set(whole.requantised) == set(whole.saturations) and 0 < whole.saturated_share < 1


def test_calibrated_shifts_are_the_smallest_that_do_not_saturate():
    q, xs, params, trace, e, g_extra = make_case(40, "stt", False)
    grads = GradientFormats(width=10, accumulator=40, wgrad_tile=40, wgrad_batch=48)
    cal = GB.calibrate_backward(q, trace, e, WD, grads, params, g_extra)
    res = GB.backward_layer(q, trace, e, WD, grads, cal, g_extra)
    assert set(res.shifts) == {"affine", "g4t", "g3t", "g23t", "g1t"}
    assert all(res.saturations[s] == 0 for s in res.shifts)
    for stage, s in cal.shifts.items():
        if s > 0:
            lower = dataclasses.replace(cal, shifts={**cal.shifts, stage: s - 1})
            assert GB.backward_layer(q, trace, e, WD, grads, lower, g_extra).saturations[stage] > 0, stage


def test_trace_keeps_two_bits_per_neuron_and_timestep():
    q, xs, params, trace, e, _ = make_case(50, "ptt", True)
    n_out = trace.spikes.numel()
    assert trace.stored_bits == 2 * n_out + 2 * n_out
    assert set(trace.window.unique().tolist()) <= {0, 1} and set(trace.spikes.unique().tolist()) <= {0, 1}


def test_bad_shapes_raise_clear_errors():
    q, xs, params, trace, e, _ = make_case(60, "ptt", False)
    with pytest.raises(ValueError, match="halo ring"):
        GB.backward_tile(q, trace, e, WD, WIDE, GB.calibrate_backward(q, trace, e, WD, WIDE, params))
    with pytest.raises(ValueError, match="no shift for stage"):
        GB.backward_layer(q, trace, e, WD, WIDE, params)
    with pytest.raises(ValueError, match="rounding"):
        GB.GradRounding("up")


# ---- the configuration's gradient formats ----------------------------------------------------

def _cfg_dict(**gradients):
    d = load_config("small").to_dict()
    d["gradients"] = {**d["gradients"], **gradients}
    return d


def test_gradient_formats_are_validated_against_the_limits():
    paper, default = load_config("paper").gradients, GradientFormats()
    for f in ("width", "accumulator", "wgrad_tile", "wgrad_batch", "rounding"):   # the formats
        assert getattr(paper, f) == getattr(default, f)
    assert paper.buffer_bytes > default.buffer_bytes          # the paper's backward memories are its own
    with pytest.raises(ConfigError, match=r"gradients.buffer_bytes.*two"):
        config_from_dict(_cfg_dict(buffer_bytes=8))
    with pytest.raises(ConfigError, match=r"gradients.wgrad_entries"):
        config_from_dict(_cfg_dict(wgrad_entries=1))
    assert config_from_dict(_cfg_dict(width=12, rounding="stochastic")).gradients.width == 12
    # small: 32 output channels, rank 8 -> the longest transposed sum has 48 terms (6 bits)
    with pytest.raises(ConfigError, match=r"gradients.accumulator.*>= 30"):
        config_from_dict(_cfg_dict(accumulator=29))
    # 8 x 8 tile x 8 timesteps = 512 terms (9 bits) of 16 + 8 bits
    with pytest.raises(ConfigError, match=r"gradients.wgrad_tile.*>= 33"):
        config_from_dict(_cfg_dict(wgrad_tile=32))
    with pytest.raises(ConfigError, match="gradients.rounding"):
        config_from_dict(_cfg_dict(rounding="up"))
    with pytest.raises(ConfigError, match="gradients.bogus"):
        config_from_dict(_cfg_dict(bogus=1))
    with pytest.raises(ConfigError, match="gradients.wgrad_batch"):
        config_from_dict(_cfg_dict(wgrad_batch=39))
