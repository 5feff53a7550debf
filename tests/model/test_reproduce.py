"""The reproduction report (python -m model reproduce): solved conditions, bands, and what the
model gives for the paper's Fig. 4 claims at central published constants."""

import itertools

import pytest

from ttsnn.gen.config import load_config
from ttsnn.model.energy_table import GROUPS, LEVELS, load_energy_table
from ttsnn.model.reproduce import CLAIMS, Claim, reproduce, solve_linear_ratio


def test_solve_linear_ratio_by_hand():
    # (50 + x) / (100 + x) - 1 = -0.25  ->  50 + x = 75 + 0.75 x  ->  x = 100
    assert solve_linear_ratio(50, 1, 100, 1, -0.25) == pytest.approx(100)
    # (10 + 2x) / (10 + x) - 1 = 0.5  ->  10 + 2x = 15 + 1.5x  ->  x = 10
    assert solve_linear_ratio(10, 2, 10, 1, 0.5) == pytest.approx(10)
    # the figure runs from -0.5 (x = 0) to 0 (x -> inf): -0.6 is out of reach
    assert solve_linear_ratio(50, 1, 100, 1, -0.6) is None
    assert solve_linear_ratio(50, 1, 100, 1, 0.0) is None      # only as x -> inf


def test_claim_verdicts():
    v = Claim("k", "", ("proposed",), "ptt", "value", -0.283)
    assert v.holds(-0.30) and v.holds(-0.24) and not v.holds(-0.20)
    assert Claim("k", "", ("sata",), "ptt", "above").holds(0.01)
    assert not Claim("k", "", ("sata",), "ptt", "above").holds(-0.01)
    s = Claim("k", "", ("sata",), "htt", "same")
    assert s.holds(0.04) and s.holds(-0.05) and not s.holds(-0.06)


@pytest.fixture(scope="module")
def tiny(request):
    """The reproduction on a tiny network (config small), to check its mechanics."""
    import ttsnn.model.networks as nets
    import ttsnn.model.reproduce as rep
    from ttsnn.model.evaluate import Workload
    mp = pytest.MonkeyPatch()
    mp.setitem(nets.FIG4_NETWORKS, "tiny", Workload("tiny", 2, (8, 8), 10, 4, 4))
    request.addfinalizer(mp.undo)
    cfg, table = load_config("small"), load_energy_table()
    return cfg, table, rep.reproduce(cfg, table, progress=False, network="tiny")


def test_band_holds_every_point_of_the_ranges(tiny):
    """The band is taken over the 2^4 corners only; a figure is monotone in each constant, so
    no point of the 3^4 grid (low, central, high of each group) may fall outside it."""
    from ttsnn.model.accelerators import make_accelerator
    from ttsnn.model.counts import Sparsity
    from ttsnn.model.evaluate import evaluate_network
    import ttsnn.model.networks as nets
    cfg, table, res = tiny
    wl = nets.FIG4_NETWORKS["tiny"]
    acc = make_accelerator("proposed", cfg)
    for levels in itertools.product(LEVELS, repeat=len(GROUPS)):
        t = table.at_levels(**dict(zip(GROUPS, levels)))
        e = {m: evaluate_network(wl, m, acc, cfg, t, Sparsity()).total_pj for m in ("stt", "ptt", "htt")}
        for m in ("ptt", "htt"):
            f = e[m] / e["stt"] - 1
            assert res["low"]["proposed"][m] - 1e-12 <= f <= res["high"]["proposed"][m] + 1e-12
    assert res["low"]["sata"]["ptt"] <= res["central"]["sata"]["ptt"] <= res["high"]["sata"]["ptt"]


def test_solved_static_power_reproduces_the_target(tiny):
    """Independent route: the energy of a mode is linear in the static power, E = D + P tau;
    two evaluations (SRAM leakage low and high) give D and tau, and the figure at the solved
    power must be the claim's target."""
    from ttsnn.model.accelerators import make_accelerator
    from ttsnn.model.counts import Sparsity
    from ttsnn.model.evaluate import evaluate_network
    import ttsnn.model.networks as nets
    cfg, table, res = tiny
    wl = nets.FIG4_NETWORKS["tiny"]
    acc = make_accelerator("proposed", cfg)
    lin = {}
    for m in ("stt", "ptt"):
        pts = []
        for lv in ("low", "high"):
            t = table.at_levels(sram_leakage=lv)
            pts.append((acc.leakage_mw(t), evaluate_network(wl, m, acc, cfg, t, Sparsity()).total_pj))
        (p0, e0), (p1, e1) = pts
        tau = (e1 - e0) / (p1 - p0)
        lin[m] = (e0 - tau * p0, tau)
    row = next(r for r in res["claims"] if r["claim"] == "proposed_ptt" and r["accelerator"] == "proposed")
    for cross in row["conditions"]["static"]["crossings"]:
        if cross["x"] is not None:
            p = cross["x"]
            fig = (lin["ptt"][0] + lin["ptt"][1] * p) / (lin["stt"][0] + lin["stt"][1] * p) - 1
            assert fig == pytest.approx(cross["figure"], abs=1e-9)
    limit = lin["ptt"][1] / lin["stt"][1] - 1
    assert row["conditions"]["static"]["at_infinity"] == pytest.approx(limit)


# The reproduction on the paper configuration plans every layer of both networks for both
# arrangements (about 3 CPU-minutes): its tests run in make test-slow (and make energy runs
# the same reproduction); the tiny network above checks the mechanics in make test.
@pytest.fixture(scope="module")
def paper():
    return reproduce(load_config("paper"), load_energy_table(), progress=False)


def _row(res, claim, acc):
    return next(r for r in res["claims"] if r["claim"] == claim and r["accelerator"] == acc)


@pytest.mark.slow
def test_every_claim_is_reported_for_both_arrangements(paper):
    got = {(r["claim"], r["accelerator"]) for r in paper["claims"]}
    assert got == {(c.key, a) for c in CLAIMS for a in c.accels}
    for r in paper["claims"]:
        assert r["low"] <= r["central"] <= r["high"]


@pytest.mark.slow
def test_proposed_htt_what_the_model_gives(paper):
    """Formerly a strict expected failure against the paper's -43.5 %. What the model gives at
    central published constants: HTT saves energy versus STT and more than PTT, but not the
    paper's 43.5 %; and no static power can make it: with clusters 2/3 packed, cluster 4
    bounds HTT's time as it bounds PTT's, so HTT's time is more than 56.5 % of STT's (the
    figure's limit as leakage grows is the time ratio)."""
    r = _row(paper, "proposed_htt", "proposed")
    ptt = _row(paper, "proposed_ptt", "proposed")
    assert r["central"] < ptt["central"] < 0
    assert not r["holds_central"] and not r["holds_somewhere_in_band"]
    static = r["conditions"]["static"]
    assert static["at_infinity"] > -0.435 and static["at_zero"] > -0.435
    assert all(c["x"] is None for c in static["crossings"])


@pytest.mark.slow
def test_single_array_orderings(paper):
    """STT below dense and PTT above STT (PTT's branch output round trip through DRAM) hold at
    every point of the ranges; HTT is more than 5 % below STT at central values, and would be
    "about the same" only with less static power than the central SRAM leakage (HTT's step is
    shorter, so leakage widens the gap)."""
    assert _row(paper, "sata_stt_below_dense", "sata")["low"] > 0
    assert _row(paper, "sata_ptt_above_stt", "sata")["low"] > 0
    htt = _row(paper, "sata_htt_same_as_stt", "sata")
    assert htt["central"] < -0.05 and not htt["holds_central"]
    static = htt["conditions"]["static"]
    assert not static["rising"]
    (at_5,) = [c["x"] for c in static["crossings"] if c["figure"] == -0.05]
    assert 0 < at_5 < paper["sram_leakage_mw"]
