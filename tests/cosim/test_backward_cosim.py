"""Backward tiles on the generated Verilog (cocotb + Verilator) against the golden backward,
bit for bit: the small configuration's coverage batch (cosim/backward.py) in ONE simulator
process after the cached build; the counters against counts made here from each tile's
shape and the golden model's saturations."""

from __future__ import annotations

import pytest

from cosim.backward import backward_coverage_cases, describe, run_backward_cases
from cosim.layer import RtlTarget

pytestmark = pytest.mark.cosim


def test_backward_coverage_batch_is_bit_exact(tmp_path):
    target = RtlTarget.for_config("small")
    cfg = target.config
    cases = backward_coverage_cases(cfg)
    results = run_backward_cases(target, cases, workdir=tmp_path)
    bad = [describe(r) for r in results if not r.match]
    assert not bad, "RTL differs from the golden backward:\n" + "\n".join(bad)
    P = cfg.lanes
    saturated = 0
    for r in results:
        q, T = r.case.qlayer, r.case.e.shape[0]
        ring = r.case.e.shape[-2] * r.case.e.shape[-1]
        assert r.counters["lifg_updates"] == T * q.out_channels * ring, r.case.name
        assert r.counters["lifg_saturations"] == sum(r.golden.saturations.get(k, 0)
                                                     for k in ("lif", "current", "affine")), r.case.name
        assert r.counters["grad_saturations"] == sum(r.golden.saturations.get(k, 0)
                                                     for k in ("g4t", "g3t", "g23t", "g1t")), r.case.name
        assert r.counters["wgrad_updates"] > 0 and r.counters["stage_macs"] > 0
        assert r.cycles > r.counters["stage_busy"] + r.counters["lifg_busy"]
        saturated += r.counters["grad_saturations"] + r.counters["lifg_saturations"]
    assert saturated > 0                      # the saturating cases reached the edges
    assert any(r.case.trace.argmax is not None for r in results) and P >= 2
