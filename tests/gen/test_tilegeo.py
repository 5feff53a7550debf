"""The tile-geometry unit: its stated latency is enough (every value is valid that many cycles
after the descriptor changes), and its values are the hand-written sizes of a tile."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from ttsnn.gen.config import load_config
from ttsnn.gen.tilegeo import GEOMETRY, TileGeometryUnit

CFG = load_config("small")     # P = 4, weight-stationary: 8 blocks share a chunk of 16 steps

# descriptors far apart in every field, so that every geometry value changes between them
DESC_A = dict(in_channels=3, rank=5, out_channels=6, height=4, width=7, timesteps=2, mode=0,
              pack=1, order=0, pool=0, zero_halo=0b0000, out_ring_rows=9, w23_ring=3)
DESC_B = dict(in_channels=30, rank=8, out_channels=31, height=8, width=8, timesteps=7, mode=1,
              pack=0, order=1, pool=1, zero_halo=0b1100, out_ring_rows=20, w23_ring=1)


def expected(d):
    """The geometry of descriptor ``d`` in plain integers (small configuration: P = 4,
    spike words of 32 bits, 8 blocks x 16 steps per weight chunk)."""
    P, SW, BLK, CHK = 4, CFG.spike_word_bits, CFG.spad_psum_entries, CFG.spad_weight_entries
    cdiv = lambda a, b: -(-a // b)  # noqa: E731
    pk = 1 << d["pack"]
    px = P // pk
    ng = cdiv(d["rank"], pk)
    nb = cdiv(d["width"], px)
    stt = d["mode"] == 0
    zl, zr = (d["zero_halo"] >> 2) & 1, (d["zero_halo"] >> 3) & 1
    aligned = d["width"] % px == 0
    ho = d["height"] // 2 if d["pool"] else d["height"]
    wo = d["width"] // 2 if d["pool"] else d["width"]
    go = cdiv(d["out_channels"], P)
    dist = ho if d["order"] else 1
    nbe2 = nb + (stt and not zl) + (stt and not zr and aligned)
    r3 = 3 * d["rank"]
    nch, nbg2, nbg3 = cdiv(r3, CHK), cdiv(nbe2, BLK), cdiv(nb, BLK)
    # the loop counters' last values (each value less one)
    last = {"pk_last": pk - 1, "ng_last": ng - 1, "last_lanes_last": d["rank"] - (ng - 1) * pk - 1,
            "nb_last": nb - 1, "r3_last": r3 - 1, "nch_last": nch - 1, "last_chunk_last": r3 - (nch - 1) * CHK - 1,
            "nbg2_last": nbg2 - 1, "lastg2_last": nbe2 - (nbg2 - 1) * BLK - 1, "nbg3_last": nbg3 - 1,
            "lastg3_last": nb - (nbg3 - 1) * BLK - 1, "h_last": d["height"] - 1, "t_last": d["timesteps"] - 1,
            "inner_last": (d["height"] if d["order"] else d["timesteps"]) - 1, "ring_last": d["w23_ring"] - 1}
    return last | {"ng": ng, "nb": nb, "rw1": (nb + 2) * ng, "rw4": nb * ng, "pk": pk, "px": px,
            "ncc": cdiv(d["in_channels"], P), "cw": cdiv(d["in_channels"], SW), "r3": r3,
            "ns": cdiv(r3, px), "nch": cdiv(r3, CHK), "ho": ho, "wo": wo, "go": go,
            "out_row_words": wo * go, "in_row_words": (d["width"] + 2 - zl - zr) * cdiv(d["in_channels"], SW),
            "dist": dist, "prev_init": (d["out_ring_rows"] - dist) * wo * go,
            "nbe2": nbe2, "nbg2": cdiv(nbe2, BLK), "nbg3": cdiv(nb, BLK),
            "tr1": d["timesteps"] * (nb + 2) * ng, "t3r1": 3 * d["timesteps"] * (nb + 2) * ng,
            "ew_ng": nb * ng + (ng if aligned else 0), "last_cols": d["width"] - (nb - 1) * px,
            "first_eoff1": 0 if not zl else (nb * ng + (ng if aligned else 0)) if not zr else ng}


def test_latency_is_the_longest_chain():
    unit = TileGeometryUnit(CFG)
    unit._MustUse__silence = True     # only its stated latency is looked at
    assert unit.latency == 5   # pack -> nb -> rw1 -> tr1 -> t3r1 (and nb -> nbe2 -> nbg2 -> lastg2)
    assert unit.depths["t3r1"] == 5 and unit.depths["lastg2"] == 5
    assert {v.name for v in GEOMETRY} >= set(expected(DESC_A))


@pytest.mark.parametrize("first,second", [(DESC_A, DESC_B), (DESC_B, DESC_A)])
def test_values_are_valid_after_the_stated_latency(first, second):
    """Hold one descriptor until the geometry settles, switch to another: ``latency`` cycles
    later every value is the new descriptor's (by hand), and one cycle earlier some are not."""
    unit = TileGeometryUnit(CFG)
    seen = {}

    async def bench(ctx):
        for k, v in first.items():
            ctx.set(unit.desc[k], v)
        await ctx.tick().repeat(2 * unit.latency + 2)
        for k, v in second.items():
            ctx.set(unit.desc[k], v)
        for cycle in range(1, unit.latency + 1):
            await ctx.tick()
            seen[cycle] = {name: ctx.get(unit.geo[name]) for name in expected(second)}

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = expected(second)
    assert seen[unit.latency] == want
    assert seen[unit.latency - 1] != want     # the latency is not overstated either
