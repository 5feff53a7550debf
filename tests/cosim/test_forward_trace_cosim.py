"""The forward RTL's trace words (spike, surrogate-window bit, pooling arg-max per output
neuron and timestep; docs/host_interface.md, region ``trace``) under Verilator, bit for bit
against the golden model's ``sw.golden_backward.forward_trace`` of the whole layer.

Layers of the small configuration's coverage batch (cosim/cases.py): T = 1, 2 and 4, pooling
with and without tiles, a residual, a saturating layer; the window bounds are membranes the
golden layer produces (so that some membranes sit exactly on a bound: strict both sides), or
bounds just outside the membrane's range on the saturating layer. One simulator process.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ttsnn.cosim.cases import coverage_cases
from ttsnn.cosim.layer import RtlTarget, run_cases
from ttsnn.sw import golden_backward as GB
from ttsnn.sw.golden import golden_layer

pytestmark = pytest.mark.cosim

CASES = ("stt-T1-small", "ptt-T2-pool", "stt-T2-pool-tiles", "htt-T4-residual",
         "ptt-T2-pool-residual", "stt-T4-saturate")


def _as_t(a):
    return None if a is None else torch.from_numpy(np.asarray(a, dtype=np.int64))


def _with_bounds(case, widths):
    """``case`` with window bounds that the golden membranes hit exactly (the 30th and 70th
    percentile values), or, for the saturating layer, bounds one past the membrane's range."""
    if "saturate" in case.name:
        mb = widths.membrane
        return dataclasses.replace(case, surrogate=(-(1 << (mb - 1)) - 1, 1 << (mb - 1)))
    u = golden_layer(case.qlayer, _as_t(case.spikes), _as_t(case.residual), widths).membrane.numpy()
    lo, hi = (int(v) for v in np.percentile(u, (30, 70), method="nearest"))
    return dataclasses.replace(case, surrogate=(lo, hi if hi > lo else lo + 1))


def test_trace_words_match_the_golden_forward_trace():
    target = RtlTarget.for_config("small")
    cfg = target.config
    wd = cfg.widths
    by_name = {c.name: c for c in coverage_cases(cfg)}
    cases = [_with_bounds(by_name[n], wd) for n in CASES]
    results = run_cases(target, cases, waves="never")
    for r in results:
        case, q = r.case, r.case.qlayer
        assert r.match, r.report.format()
        lo, hi = case.surrogate
        x = torch.nn.functional.pad(_as_t(case.spikes), (1, 1, 1, 1)).unsqueeze(1)
        res = None if case.residual is None else _as_t(case.residual).unsqueeze(1)
        gold, membrane, _ = GB.forward_trace(q, x, res, wd, lo, hi)
        assert np.array_equal(r.spikes, gold.spikes[:, 0].numpy()), case.name
        assert np.array_equal(r.window, gold.window[:, 0].numpy()), case.name
        if q.pool:
            assert np.array_equal(r.argmax, gold.argmax[:, 0].numpy()), case.name
        else:
            assert r.argmax is None
        # one trace word per output word, as the membranes
        assert r.counters["trace_writes"] == r.counters["membrane_writes"] > 0
        # the bounds were hit exactly (strict compare) and both window values occur
        u = membrane[:, 0].numpy()
        if "saturate" not in case.name:
            assert (u == lo).any() and (u == hi).any(), case.name
            assert 0 < int(r.window.sum()) < r.window.size, case.name
        else:
            assert (np.abs(u) >= (1 << (wd.membrane - 1)) - 1).any(), case.name   # saturated
            assert r.window.all(), case.name
    pooled = [r for r in results if r.case.qlayer.pool]
    assert pooled and any(len(np.unique(r.argmax)) > 1 for r in pooled)
    assert {r.case.spikes.shape[0] for r in results} == {1, 2, 4}
