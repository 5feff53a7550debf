"""Clusters 2/3: packed lanes (Px columns x Pk channels), the 1x3 tap shift across block edges,
weights from the weight-buffer word or the per-PE scratchpad, partial sums saved and resumed
(a plain-Python reference of the documented behaviour)."""

import numpy as np
import pytest

from ttsnn.gen.sim import pack_lanes, run_testbench, unpack_lanes
from ttsnn.gen.units import MacCluster

P, WB, QB, AB = 8, 8, 8, 16
C, B = 4, 4


def _wrap(v: int, bits: int = AB) -> int:
    return ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))


class Reference:
    """The MacCluster contract, one step at a time. A partial sum written by step i is seen by
    the reads of step i + 2 on (it is written the cycle after step i executes); a weight
    written by step i is seen by step i + 1 on."""

    def __init__(self):
        self.acc = [0] * P
        self.spad_w = [[0] * P for _ in range(C)]
        self.spad_p = [[0] * P for _ in range(B)]
        self.pending = None

    def step(self, st):
        v = st["pack"]
        pk, px = 1 << v, P >> v
        d = {0: 0, 1: -1, 2: 1}[st["shift"]]
        routed = []
        ops = []
        for l in range(P):
            s, c = l >> v, l & (pk - 1)
            col = s + d
            src = st["centre"] if 0 <= col < px else st["neighbour"]
            ops.append(src[((col % px) << v) | st["jl"]])
            routed.append(st["weights"][(st["wsel"] << v) | c])
        w = self.spad_w[st["w_addr"]] if st["use_spad"] else routed
        psum = self.spad_p[st["p_addr"]]
        if self.pending is not None:      # the previous step's partial-sum write lands now
            self.spad_p[self.pending[0]] = self.pending[1]
            self.pending = None
        new = []
        for l in range(P):
            base = (psum[l] if st["from_psum"] else 0) if st["first"] else self.acc[l]
            new.append(_wrap(base + w[l] * ops[l]))
        if st["w_wr"]:
            self.spad_w[st["w_wr_addr"]] = routed
        self.acc = new
        if st["p_wr"]:
            self.pending = (st["p_wr_addr"], list(new))
        return list(new)


def _random_steps(rng, n, spads=True):
    steps = []
    for i in range(n):
        v = int(rng.integers(0, 4))
        pk, px = 1 << v, P >> v
        steps.append(dict(
            pack=v, shift=int(rng.integers(0, 3)), jl=int(rng.integers(0, pk)),
            wsel=int(rng.integers(0, px)),
            centre=rng.integers(-128, 128, P).tolist(), neighbour=rng.integers(-128, 128, P).tolist(),
            weights=rng.integers(-128, 128, P).tolist(),
            first=int(rng.random() < 0.3 or i == 0), from_psum=int(spads and rng.random() < 0.5),
            use_spad=int(spads and i > 2 and rng.random() < 0.5), w_addr=int(rng.integers(0, C)),
            w_wr=int(spads and rng.random() < 0.5), w_wr_addr=int(rng.integers(0, C)),
            p_addr=int(rng.integers(0, B)),
            p_wr=int(spads and rng.random() < 0.5), p_wr_addr=int(rng.integers(0, B))))
    return steps


def _simulate(steps, spads=True, pipelined=False):
    dut = MacCluster(P, WB, QB, AB, C if spads else 0, B if spads else 0, pipelined=pipelined)
    L = dut.latency
    got = []

    async def bench(ctx):
        # step i: issue (spad reads) in cycle i, execute in cycle i+1, its result on acc and
        # its psum write in cycle i+1+L (L: the cluster's latency, 1 or 3)
        for i in range(len(steps) + 1 + L):
            if i < len(steps):
                st = steps[i]
                ctx.set(dut.w_rd, 1); ctx.set(dut.w_addr, st["w_addr"])
                ctx.set(dut.p_rd, 1); ctx.set(dut.p_addr, st["p_addr"])
            else:
                ctx.set(dut.w_rd, 0); ctx.set(dut.p_rd, 0)
            if 1 <= i <= len(steps):
                st = steps[i - 1]
                ctx.set(dut.valid, 1)
                for k in ("pack", "shift", "jl", "wsel", "first", "from_psum", "use_spad", "w_wr",
                          "w_wr_addr"):
                    ctx.set(getattr(dut, k), st[k])
                ctx.set(dut.centre, pack_lanes(st["centre"], QB))
                ctx.set(dut.neighbour, pack_lanes(st["neighbour"], QB))
                ctx.set(dut.weights, pack_lanes(st["weights"], WB))
            else:
                ctx.set(dut.valid, 0); ctx.set(dut.w_wr, 0)
            if 1 + L <= i:
                st = steps[i - 1 - L]
                got.append(unpack_lanes(ctx.get(dut.acc), P, AB))
                ctx.set(dut.p_wr, st["p_wr"]); ctx.set(dut.p_wr_addr, st["p_wr_addr"])
            await ctx.tick()
        ctx.set(dut.p_wr, 0)

    run_testbench(dut, bench)
    return got


@pytest.mark.parametrize("pipelined", [False, True], ids=["latency1", "pipelined"])
@pytest.mark.parametrize("spads", [True, False], ids=["weight-stationary", "no-scratchpad"])
def test_mac_cluster_matches_reference(spads, pipelined):
    """The same steps give the same sums unpipelined and pipelined (there ``latency`` - 1
    cycles later), partial sums written by step i seen by step i + 2's read in both."""
    rng = np.random.default_rng(5 if spads else 6)
    steps = _random_steps(rng, 60, spads)
    ref = Reference()
    want = [ref.step(st) for st in steps]
    assert _simulate(steps, spads, pipelined) == want


def test_mac_cluster_extremes_wrap():
    """-128 x -128 products accumulated until the 16-bit accumulator wraps, every packing."""
    steps = []
    for v in range(4):
        for i in range(6):
            steps.append(dict(pack=v, shift=i % 3, jl=0, wsel=0, centre=[-128] * P,
                              neighbour=[-128] * P, weights=[-128] * P, first=int(i == 0),
                              from_psum=0, use_spad=0, w_addr=0, w_wr=0, w_wr_addr=0, p_addr=0,
                              p_wr=0, p_wr_addr=0))
    ref = Reference()
    want = [ref.step(st) for st in steps]
    assert _simulate(steps, spads=False) == want
    got = _simulate(steps, spads=False, pipelined=True)
    assert got == want
    assert want[5][0] == _wrap(6 * 16384)


def test_mac_cluster_rejects_bad_parameters():
    with pytest.raises(ValueError, match="power of two"):
        MacCluster(6, WB, QB, AB)
    with pytest.raises(ValueError, match="both"):
        MacCluster(P, WB, QB, AB, 4, 0)
    with pytest.raises(ValueError, match="pipelined"):
        MacCluster(P, WB, QB, AB, pipelined=1)
