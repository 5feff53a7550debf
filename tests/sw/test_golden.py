"""The integer golden model against an independent scalar reference of docs/numerics.md.

The reference below is written from the numerics page with plain Python integers and loops
(no tensors, no shared helpers), so that a mistake in sw/golden.py's vectorised code cannot be
mirrored by the reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ttsnn.gen.config import load_config
from ttsnn.sw import golden
from ttsnn.sw.golden import golden_layer, golden_tile, tile_windows
from ttsnn.sw.qlayer import QuantTTLayer

WIDTHS = load_config("small").widths


# ---- scalar reference ------------------------------------------------------------------------

def ref_sat(v: int, b: int) -> int:
    lo, hi = -(2 ** (b - 1)), 2 ** (b - 1) - 1
    return lo if v < lo else hi if v > hi else v


def ref_wrap(v: int, b: int) -> int:
    v &= (1 << b) - 1
    return v - (1 << b) if v >= 1 << (b - 1) else v


def ref_rshift(v: int, s: int, rnd: int) -> int:
    if s == 0:
        return v
    num = v + rnd * 2 ** (s - 1)
    # floor division of Python ints is exact for negative numbers too
    return num // 2 ** s


def ref_tile(q: QuantTTLayer, x, res, wd):
    """x: nested lists [T][Cin][H+2][W+2]; returns (spikes, membrane) nested lists."""
    T, cin = len(x), len(x[0])
    hw, ww = len(x[0][0]), len(x[0][0][0])
    H, W = hw - 2, ww - 2
    r, cout = q.rank, q.out_channels
    ab, qb, mb, rnd = wd.accumulator, wd.activation, wd.membrane, q.round
    w1, w2, w3, w4 = (np.asarray(getattr(q, n)).tolist() for n in ("w1", "w2", "w3", "w4"))
    full = q.full_timesteps(T)
    Ho, Wo = (H // 2, W // 2) if q.pool else (H, W)
    u = [[[0] * Wo for _ in range(Ho)] for _ in range(cout)]
    s = [[[0] * Wo for _ in range(Ho)] for _ in range(cout)]
    spikes_out, mem_out = [], []
    for t in range(T):
        q1 = [[[ref_sat(ref_rshift(ref_wrap(sum(w1[k][c] * x[t][c][i][j] for c in range(cin)), ab),
                                   q.shift1, rnd), qb)
                for j in range(ww)] for i in range(hw)] for k in range(r)]

        def a2_at(k, i, j, src):  # i in window rows 1..H
            return ref_wrap(sum(w2[k][jj][tap] * src[jj][i + tap - 1][j]
                                for jj in range(r) for tap in range(3)), ab)

        def a3_at(k, i, j, src):  # j in window columns 1..W; src indexed by window column
            return ref_wrap(sum(w3[k][jj][tap] * src[jj][i][j + tap - 1]
                                for jj in range(r) for tap in range(3)), ab)

        q23 = [[[0] * (W + 2) for _ in range(H + 2)] for _ in range(r)]
        for k in range(r):
            for i in range(1, H + 1):
                for j in range(1, W + 1):
                    if q.mode == "htt" and not full[t]:
                        q23[k][i][j] = q1[k][i][j]
                    elif q.mode == "stt":
                        pass
                    else:
                        m = a2_at(k, i, j, q1) + a3_at(k, i, j, q1)
                        q23[k][i][j] = ref_sat(ref_rshift(m, q.shift3 + 1, rnd), qb)
        if q.mode == "stt":
            q2 = [[[0] * (W + 2) for _ in range(H + 2)] for _ in range(r)]
            for k in range(r):
                for i in range(1, H + 1):
                    for j in range(0, W + 2):
                        q2[k][i][j] = ref_sat(ref_rshift(a2_at(k, i, j, q1), q.shift2, rnd), qb)
            for k in range(r):
                for i in range(1, H + 1):
                    for j in range(1, W + 1):
                        q23[k][i][j] = ref_sat(ref_rshift(a3_at(k, i, j, q2), q.shift3, rnd), qb)
        a4 = [[[ref_wrap(sum(w4[o][k] * q23[k][i][j] for k in range(r)), ab)
                for j in range(1, W + 1)] for i in range(1, H + 1)] for o in range(cout)]
        cls = 0 if full[t] else 1
        st, mt = [], []
        for o in range(cout):
            srow, mrow = [], []
            for i in range(Ho):
                sr, mr = [], []
                for j in range(Wo):
                    if q.pool:
                        p = max(a4[o][2 * i + di][2 * j + dj] for di in (0, 1) for dj in (0, 1))
                    else:
                        p = a4[o][i][j]
                    cur = ref_sat(ref_rshift(p * int(q.scale[cls][o]), q.affine_shift, rnd)
                                  + int(q.bias[o]), mb)
                    if q.residual:
                        cur = ref_sat(cur + res[t][o][i][j], mb)
                    kept = 0 if s[o][i][j] else u[o][i][j]
                    leaked = ref_rshift(kept * q.leak_mul, q.leak_shift, rnd)
                    u[o][i][j] = ref_sat(leaked + cur, mb)
                    s[o][i][j] = 1 if u[o][i][j] > q.threshold else 0
                    sr.append(s[o][i][j])
                    mr.append(u[o][i][j])
                srow.append(sr)
                mrow.append(mr)
            st.append(srow)
            mt.append(mrow)
        spikes_out.append(st)
        mem_out.append(mt)
    return spikes_out, mem_out


# ---- helpers ---------------------------------------------------------------------------------

def make_layer(rng: np.random.Generator, mode: str, cin: int, r: int, cout: int, *, wmax=127,
               pool=False, residual=False, schedule=(), shifts=(3, 3, 3), affine_shift=6,
               threshold=200, rnd=1, leak=(1, 2)) -> QuantTTLayer:
    w = lambda *s: rng.integers(-wmax, wmax + 1, size=s)
    return QuantTTLayer(
        mode=mode, w1=w(r, cin), w2=w(r, r, 3), w3=w(r, r, 3), w4=w(cout, r),
        shift1=shifts[0], shift2=shifts[1], shift3=shifts[2],
        scale=rng.integers(-300, 3000, size=(2, cout)), affine_shift=affine_shift,
        bias=rng.integers(-500, 500, size=cout), threshold=threshold,
        leak_mul=leak[0], leak_shift=leak[1], round=rnd, pool=pool, residual=residual,
        schedule=schedule)


def check_against_reference(q, x, res, wd=WIDTHS):
    got = golden_tile(q, x, res, wd)
    exp_s, exp_m = ref_tile(q, x.tolist(), None if res is None else res.tolist(), wd)
    assert got.spikes.dtype == torch.uint8 and got.membrane.dtype == torch.int64
    assert got.spikes.tolist() == exp_s
    assert got.membrane.tolist() == exp_m
    return got


# ---- helper operations -----------------------------------------------------------------------

def test_sat_wrap_rshift_match_scalar_definitions():
    vals = list(range(-300, 301)) + [-(2 ** 20) - 3, 2 ** 20 + 5, 2 ** 15, -(2 ** 15) - 1]
    t = torch.tensor(vals)
    for b in (2, 5, 8, 16):
        assert golden.sat(t, b).tolist() == [ref_sat(v, b) for v in vals]
        assert golden.wrap(t, b).tolist() == [ref_wrap(v, b) for v in vals]
    for s in range(0, 6):
        for rnd in (0, 1):
            assert golden.rshift(t, s, rnd).tolist() == [ref_rshift(v, s, rnd) for v in vals]


def test_rshift_hand_computed_ties_and_negatives():
    t = torch.tensor([5, -5, 6, -6, 7, -7, 2, -2, 1, -1])
    # shift 2, round half up: 1.25->1, -1.25->-1, 1.5->2, -1.5->-1, 1.75->2, -1.75->-2,
    # 0.5->1, -0.5->0, 0.25->0, -0.25->0
    assert golden.rshift(t, 2, 1).tolist() == [1, -1, 2, -1, 2, -2, 1, 0, 0, 0]
    # floor
    assert golden.rshift(t, 2, 0).tolist() == [1, -2, 1, -2, 1, -2, 0, -1, 0, -1]
    assert golden.rshift(t, 0, 1).tolist() == t.tolist()
    with pytest.raises(ValueError, match="shift"):
        golden.rshift(t, -1, 0)


def test_wrap_and_sat_edges_hand_computed():
    assert golden.wrap(torch.tensor([127, 128, -128, -129, 255, 256]), 8).tolist() == \
        [127, -128, -128, 127, -1, 0]
    assert golden.sat(torch.tensor([127, 128, -128, -129]), 8).tolist() == [127, 127, -128, -128]


def test_clusters23_choosers_and_batch_dimensions():
    """A shift chooser (used by calibrations) gets the accumulator it re-quantises and gives
    the result of that shift passed as a number; a batch dimension after T is routed like
    separate tiles; HTT's reduced timesteps bypass with q1. (The routing itself is checked
    against the scalar reference through golden_tile below.)"""
    rng = np.random.default_rng(2)
    r, t = 3, 4
    full = torch.tensor([True, False, True, False])
    q1 = torch.from_numpy(rng.integers(-128, 128, size=(t, 2, r, 5, 6)))     # H = 3, W = 4
    w2, w3 = (torch.from_numpy(rng.integers(-128, 128, size=(r, r, 3))) for _ in range(2))
    for mode in ("stt", "ptt", "htt"):
        seen = {}

        def chooser(name, shift):
            def choose(acc):
                seen[name] = acc
                return shift
            return choose

        got = golden.clusters23(q1, w2, w3, mode, chooser("s2", 5), chooser("s3", 6), 1, 8, 20,
                                full)
        ref = golden.clusters23(q1, w2, w3, mode, 5, 6, 1, 8, 20, full)
        assert torch.equal(got.q23, ref.q23) and got.shift3 == 6
        assert got.shift2 == (5 if mode == "stt" else 0)
        if mode == "stt":
            assert torch.equal(seen["s2"], ref.a2) and torch.equal(seen["s3"], ref.a3)
        else:
            assert "s2" not in seen and torch.equal(seen["s3"], ref.a2 + ref.a3)
        for b in range(2):
            one = golden.clusters23(q1[:, b], w2, w3, mode, 5, 6, 1, 8, 20, full)
            assert torch.equal(one.q23, ref.q23[:, b]), mode
        if mode == "htt":
            assert torch.equal(ref.q23[~full], q1[~full][..., 1:4, 1:5])
            assert not torch.equal(ref.q23[full], q1[full][..., 1:4, 1:5])
    with pytest.raises(ValueError, match="full-timestep"):
        golden.clusters23(q1, w2, w3, "htt", 0, 0, 1, 8, 20)
    with pytest.raises(ValueError, match="mode"):
        golden.clusters23(q1, w2, w3, "tt", 0, 0, 1, 8, 20, full)


def test_stage_functions_against_loops():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 2, size=(3, 5, 6)))
    w1 = torch.from_numpy(rng.integers(-128, 128, size=(4, 3)))
    a1 = golden.g1(x, w1, 10)
    for k in range(4):
        for i in range(5):
            for j in range(6):
                assert a1[k, i, j] == ref_wrap(sum(int(w1[k, c]) * int(x[c, i, j]) for c in range(3)), 10)
    q = torch.from_numpy(rng.integers(-128, 128, size=(4, 5, 6)))
    w = torch.from_numpy(rng.integers(-128, 128, size=(2, 4, 3)))
    a2, a3 = golden.g2(q, w, 12), golden.g3(q, w, 12)
    assert a2.shape == (2, 3, 6) and a3.shape == (2, 5, 4)
    for k in range(2):
        for i in range(3):
            for j in range(6):
                assert a2[k, i, j] == ref_wrap(sum(int(w[k, c, d]) * int(q[c, i + d, j])
                                                   for c in range(4) for d in range(3)), 12)
        for i in range(5):
            for j in range(4):
                assert a3[k, i, j] == ref_wrap(sum(int(w[k, c, d]) * int(q[c, i, j + d])
                                                   for c in range(4) for d in range(3)), 12)
    # merge: one bit wider than the accumulator, never wraps before the shift
    big = torch.tensor([32767]), torch.tensor([32767])
    assert golden.merge_ptt(*big, 7, 1, 16).tolist() == [ref_sat(ref_rshift(65534, 8, 1), 16)]
    assert golden.merge_ptt(torch.tensor([-3]), torch.tensor([0]), 0, 1, 8).tolist() == [-1]
    a = torch.tensor([[[1, -5, 3, 3], [-7, -2, 9, -9]]])
    assert golden.maxpool2x2(a).tolist() == [[[1, 9]]]
    with pytest.raises(ValueError, match="even"):
        golden.maxpool2x2(torch.zeros(1, 3, 4, dtype=torch.int64))
    # affine: the product is exact, the result saturates to the membrane width
    p = torch.tensor([[[1000]], [[-1000]]])
    out = golden.affine(p, torch.tensor([30000, 30000]), torch.tensor([5, 5]), 4, 1, 16)
    assert out.flatten().tolist() == [ref_sat(ref_rshift(30_000_000, 4, 1) + 5, 16),
                                      ref_sat(ref_rshift(-30_000_000, 4, 1) + 5, 16)] == [32767, -32768]


def test_lif_hand_computed():
    cur = torch.tensor([[100], [100], [100], [-40], [300], [0]])
    s, u = golden.lif(cur, threshold=150, leak_mul=1, leak_shift=2, rnd=1, mem_bits=16)
    # u: 100; 25+100=125; 31+100=131 (31.25->31); 33-40=-7 (32.75->33);
    #    -2+300=298 (-1.75 -> -2); reset -> 0
    assert u.flatten().tolist() == [100, 125, 131, -7, 298, 0]
    assert s.flatten().tolist() == [0, 0, 0, 0, 1, 0]
    # threshold is strict
    s2, _ = golden.lif(torch.tensor([[150]]), 150, 1, 2, 1, 16)
    assert s2.tolist() == [[0]]
    # saturation of the membrane
    _, u3 = golden.lif(torch.tensor([[32767], [32767]]), 40000, 3, 1, 0, 16)
    assert u3.flatten().tolist() == [32767, 32767]


# ---- whole tile against the scalar reference -------------------------------------------------

CASES = [
    # mode, cin, r, cout, H, W, T, pool, residual, schedule
    ("stt", 3, 2, 3, 3, 4, 2, False, False, ()),
    ("ptt", 4, 3, 2, 4, 4, 3, True, False, ()),
    ("htt", 3, 2, 2, 2, 3, 4, False, True, ()),
    ("htt", 2, 3, 3, 4, 2, 4, True, True, (True, False, True, False)),
    ("ptt", 1, 1, 1, 1, 1, 1, False, False, ()),
    ("stt", 2, 2, 2, 2, 2, 6, True, True, ()),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-T{c[6]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("rnd", [0, 1])
def test_tile_matches_scalar_reference(case, rnd):
    mode, cin, r, cout, h, w, T, pool, residual, sched = case
    rng = np.random.default_rng(hash((case, rnd)) & 0xFFFF)
    q = make_layer(rng, mode, cin, r, cout, pool=pool, residual=residual, schedule=sched, rnd=rnd)
    x = torch.from_numpy(rng.integers(0, 2, size=(T, cin, h + 2, w + 2)))
    ho, wo = (h // 2, w // 2) if pool else (h, w)
    res = torch.from_numpy(rng.integers(-3000, 3000, size=(T, cout, ho, wo))) if residual else None
    got = check_against_reference(q, x, res)
    assert got.spikes.shape == (T, cout, ho, wo)


def test_saturation_and_wrap_edges_against_reference():
    """Full-scale weights, all-one spikes and tiny widths: every stage saturates or wraps."""
    rng = np.random.default_rng(7)
    # deliberately tiny formats (and 8-bit weights, for the 127s below)
    wd = dataclasses.replace(WIDTHS, weight=8, activation=4, accumulator=9, membrane=10)
    for mode in ("stt", "ptt", "htt"):
        q = make_layer(rng, mode, 6, 3, 2, shifts=(0, 1, 0), affine_shift=0, threshold=100)
        q = dataclasses.replace(q, w1=np.full((3, 6), 127), bias=np.array([511, -512]),
                                scale=np.array([[1000, -1000], [3, 3]]))
        x = torch.ones(3, 6, 4, 4, dtype=torch.int64)
        got = golden_tile(q, x, None, wd, intermediates=True)
        assert got.q1.max() <= 7 and got.q1.min() >= -8
        assert got.membrane.max() <= 511 and got.membrane.min() >= -512
        exp_s, exp_m = ref_tile(q, x.tolist(), None, wd)
        assert got.spikes.tolist() == exp_s and got.membrane.tolist() == exp_m
    # wrap really happens in G1: 6 * 127 = 762 -> 762 - 512 = 250 in 9 bits (range -256..255)
    assert int(golden.g1(torch.ones(6, 1, 1, dtype=torch.int64), torch.full((1, 6), 127), 9)) == 250


def test_all_zero_spikes_give_bias_only_dynamics():
    rng = np.random.default_rng(3)
    q = make_layer(rng, "ptt", 3, 2, 2, residual=False)
    x = torch.zeros(4, 3, 4, 4, dtype=torch.int64)
    got = golden_tile(q, x, None, WIDTHS, intermediates=True)
    assert int(got.a4.abs().sum()) == 0
    exp_s, exp_m = ref_tile(q, x.tolist(), None, WIDTHS)
    assert got.spikes.tolist() == exp_s and got.membrane.tolist() == exp_m


def test_htt_reduced_timesteps_bypass_clusters_2_and_3():
    rng = np.random.default_rng(5)
    q = make_layer(rng, "htt", 3, 2, 2, schedule=(True, False))
    x = torch.from_numpy(rng.integers(0, 2, size=(2, 3, 5, 5)))
    got = golden_tile(q, x, None, WIDTHS, intermediates=True)
    assert torch.equal(got.q23[1], got.q1[1, :, 1:4, 1:4])
    assert not torch.equal(got.q23[0], got.q1[0, :, 1:4, 1:4])


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    q = make_layer(rng, "ptt", 3, 2, 2, residual=True, pool=True)
    x = torch.zeros(2, 3, 6, 6, dtype=torch.int64)
    with pytest.raises(ValueError, match="residual"):
        golden_tile(q, x, None, WIDTHS)
    with pytest.raises(ValueError, match="residual: expected shape"):
        golden_tile(q, x, torch.zeros(2, 2, 4, 4, dtype=torch.int64), WIDTHS)
    with pytest.raises(ValueError, match="input channels"):
        golden_tile(q, torch.zeros(2, 4, 6, 6, dtype=torch.int64), None, WIDTHS)
    with pytest.raises(ValueError, match="0 or 1"):
        golden_tile(q, x + 2, torch.zeros(2, 2, 2, 2, dtype=torch.int64), WIDTHS)
    with pytest.raises(ValueError, match="even"):
        golden_tile(q, torch.zeros(2, 3, 5, 6, dtype=torch.int64), None, WIDTHS)
    with pytest.raises(ValueError, match="integer"):
        golden_tile(q, x.float(), None, WIDTHS)
    with pytest.raises(ValueError, match="membrane"):
        golden_tile(q, x, torch.full((2, 2, 2, 2), 1 << 20), WIDTHS)
    with pytest.raises(ValueError, match="do not fit"):
        golden_tile(make_layer(rng, "ptt", 3, 2, 2, wmax=300), torch.zeros(1, 3, 3, 3,
                    dtype=torch.int64), None, WIDTHS)


# ---- the halo convention: tiles stitched together equal the untiled layer ---------------------

@pytest.mark.parametrize("mode,pool,tile", [("stt", False, (3, 2)), ("ptt", True, (2, 4)),
                                           ("htt", False, (4, 3)), ("stt", True, (2, 2))])
def test_stitched_tiles_equal_untiled_layer(mode, pool, tile):
    rng = np.random.default_rng(11)
    T, cin, cout, H, W = 4, 3, 3, 6, 8
    q = make_layer(rng, mode, cin, 3, cout, pool=pool, residual=True)
    x = torch.from_numpy(rng.integers(0, 2, size=(T, cin, H, W)))
    ho, wo = (H // 2, W // 2) if pool else (H, W)
    res = torch.from_numpy(rng.integers(-2000, 2000, size=(T, cout, ho, wo)))
    whole = golden_layer(q, x, res, WIDTHS)
    stitched_s = torch.full_like(whole.spikes, 9)
    stitched_m = torch.full_like(whole.membrane, -99999)
    f = 2 if pool else 1
    tiles = tile_windows(x, *tile)
    assert len(tiles) > 1
    for r0, c0, win in tiles:
        h, w = win.shape[-2] - 2, win.shape[-1] - 2
        sl = (slice(None), slice(None), slice(r0 // f, (r0 + h) // f), slice(c0 // f, (c0 + w) // f))
        part = golden_tile(q, win, res[sl], WIDTHS)
        stitched_s[sl] = part.spikes
        stitched_m[sl] = part.membrane
    assert torch.equal(stitched_s, whole.spikes)
    assert torch.equal(stitched_m, whole.membrane)
    # and the untiled layer is itself right (scalar reference on the zero-padded input)
    exp_s, exp_m = ref_tile(q, torch.nn.functional.pad(x, (1, 1, 1, 1)).tolist(), res.tolist(), WIDTHS)
    assert whole.spikes.tolist() == exp_s and whole.membrane.tolist() == exp_m


def test_dropping_the_halo_breaks_stitching():
    """The property above is not vacuous: without halo pixels the tiles disagree."""
    rng = np.random.default_rng(12)
    q = make_layer(rng, "stt", 3, 3, 2, shifts=(0, 2, 2), threshold=-10_000)
    x = torch.ones(2, 3, 4, 4, dtype=torch.int64)
    whole = golden_layer(q, x, None, WIDTHS, intermediates=True)
    part = golden_layer(q, x[..., :2, :2], None, WIDTHS, intermediates=True)  # zero halo
    assert not torch.equal(part.membrane, whole.membrane[..., :2, :2])


# ---- tie to the float model ------------------------------------------------------------------

@pytest.mark.parametrize("mode,stride", [("stt", 1), ("ptt", 1), ("htt", 1), ("ptt", 2),
                                         ("htt", 2)])
def test_integer_chain_equals_float_ttconv_on_integer_weights(mode, stride):
    """Wide formats, shifts 0, unit affine, tau = 1: the golden model is the float TT conv +
    LIF exactly (G2/G3 weights even, so PTT's /2 is exact)."""
    from ttsnn.sw.neurons import lif_multistep
    from ttsnn.sw.tt import TTConv2d

    torch.manual_seed(0)
    T, cin, r, cout, H, W = 4, 3, 3, 4, 6, 4
    conv = TTConv2d(cin, cout, r, mode, stride=stride).double()
    with torch.no_grad():
        conv.g1.weight.copy_(torch.randint(-3, 4, conv.g1.weight.shape))
        conv.g2.weight.copy_(2 * torch.randint(-2, 3, conv.g2.weight.shape))
        conv.g3.weight.copy_(2 * torch.randint(-2, 3, conv.g3.weight.shape))
        conv.g4.weight.copy_(torch.randint(-3, 4, conv.g4.weight.shape))
    x = (torch.rand(T, 1, cin, H, W) < 0.5).double()
    y = conv(x)[:, 0]
    # deliberately wide formats: nothing saturates or wraps, as in the float model
    wide = dataclasses.replace(WIDTHS, activation=40, accumulator=48, membrane=48)
    q = QuantTTLayer(
        mode=mode, w1=conv.g1.weight[:, :, 0, 0].long().numpy(),
        w2=conv.g2.weight[:, :, :, 0].long().numpy(), w3=conv.g3.weight[:, :, 0, :].long().numpy(),
        w4=conv.g4.weight[:, :, 0, 0].long().numpy(), shift1=0, shift2=0, shift3=0,
        scale=np.ones((2, cout), dtype=np.int64), affine_shift=0, bias=np.zeros(cout, dtype=np.int64),
        threshold=3, leak_mul=1, leak_shift=0, pool=stride == 2,
        schedule=conv.full_timesteps(T) if mode == "htt" else ())
    got = golden_layer(q, x[:, 0].long(), None, wide, intermediates=True)
    p = golden.maxpool2x2(got.a4) if q.pool else got.a4
    assert torch.equal(p.double(), y)
    s, u = lif_multistep(y, tau=1.0, v_threshold=3.0, return_membrane=True)
    assert torch.equal(got.membrane.double(), u)
    assert torch.equal(got.spikes.double(), s)


def test_int_einsum_is_exact_on_both_paths():
    """The float64 fast path is taken only when every partial sum is below 2^53; either way the
    result is the int64 einsum's."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-(1 << 15), 1 << 15, (5, 7), generator=g)
    b = torch.randint(-(1 << 15), 1 << 15, (3, 7, 4, 6), generator=g)
    want = torch.einsum("kc,...chw->...khw", a, b)
    assert torch.equal(golden.int_einsum("kc,...chw->...khw", a, b), want)
    big = torch.full((2, 3), (1 << 30) + 1)             # products ~ 2^60 * 3 terms: int64 path
    x = torch.full((3, 2), (1 << 29) + 3)
    assert torch.equal(golden.int_einsum("ij,jk->ik", big, x), torch.einsum("ij,jk->ik", big, x))
    assert golden.int_einsum("ij,jk->ik", big, x).dtype == torch.int64
