"""The mismatch report: counts, layer coordinates of the first mismatches, formatting."""

from __future__ import annotations

import numpy as np

from ttsnn.cosim.report import MismatchReport


def test_report_counts_and_locates_mismatches():
    rng = np.random.default_rng(0)
    es = rng.integers(0, 2, size=(3, 4, 2, 5)).astype(np.uint8)
    em = rng.integers(-100, 100, size=(3, 4, 2, 5))
    gs, gm = es.copy(), em.copy()
    gm[1, 2, 0, 3] += 7          # membrane differs (spike equal)
    gs[2, 0, 1, 4] ^= 1          # spike differs (membrane equal)
    gm[2, 3, 1, 1] -= 1
    gs[2, 3, 1, 1] ^= 1          # both differ: counted once
    rep = MismatchReport("case-a", max_listed=2)
    assert rep.add_tile(5, out0=8, row0=10, col0=20, expected_spikes=es, expected_membrane=em,
                        got_spikes=gs, got_membrane=gm) == 3
    rep.add_tile(6, 8, 12, 20, es, em, es, em)
    assert not rep.match
    assert (rep.mismatches, rep.membrane_mismatches, rep.spike_mismatches) == (3, 2, 2)
    assert rep.compared == 2 * es.size and rep.tiles == 2 and rep.failing_tiles == [5]
    first = rep.first[0]
    assert (first.tile, first.t, first.channel, first.row, first.col, first.what,
            first.expected, first.got) == (5, 1, 10, 10, 23, "membrane", int(em[1, 2, 0, 3]),
                                          int(em[1, 2, 0, 3]) + 7)
    assert len(rep.first) == 2 and rep.first[1].what == "spike" and rep.first[1].channel == 8
    text = rep.format()
    assert "3 of 240 neuron-timesteps differ (2 membrane, 2 spike) in 1 of 2 tiles" in text
    assert "tile" in text and "expected" in text
    d = rep.to_dict()
    assert d["match"] is False and d["first"][0]["row"] == 10


def test_report_match_and_shape_error():
    rep = MismatchReport("ok")
    z = np.zeros((1, 1, 1, 1), dtype=np.int64)
    rep.add_tile(0, 0, 0, 0, z, z, z, z)
    assert rep.match and "bit-exact" in rep.format()
    assert not MismatchReport("empty").match
    import pytest
    with pytest.raises(ValueError, match="shape"):
        rep.add_tile(1, 0, 0, 0, z, z, np.zeros((1, 2, 1, 1)), z)


def test_speed_rejects_a_repeat_below_one(capsys):
    """`python -m cosim speed --repeat 0` is one line, before any build or simulation."""
    from ttsnn.cosim.__main__ import main
    from ttsnn.sw.cli_util import run_cli

    assert run_cli(main, ["speed", "--repeat", "0"], prog="cosim") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repeat must be at least 1, got 0" in err[0]
