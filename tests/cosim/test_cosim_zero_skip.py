"""The paper's arrangement (the zero-skipping cluster 1, ``arrangement.cluster1 =
"zero_skip"``, with STT's sequential chaining) in the generated Verilog against the golden
model, bit for bit (cocotb + Verilator): a few cases of the small configuration's coverage
batch in one simulator process (every mode, several tiles, pooling, residual, an all-ones
saturating input, capped rings in both row orders), every counter equal to the model's (the
cycle model with the zero-skipping cluster 1's row lengths from each tile's input spikes), the
timing counters and bus cycles of every tile equal to the host-rate cycle model's, also
where the host holds the engines up."""

from __future__ import annotations

import pytest

from ttsnn.cosim.cases import coverage_cases
from ttsnn.cosim.layer import RtlTarget, run_cases
from tests.cosim.test_cosim_arrangement import small_arrangement
from tests.cosim.test_cosim_layers import _check_all_model_counters, _check_host_timing, _check_results

SMALL_PAPER_ARRANGEMENT = "small_paper_arrangement"
CASES = ("stt-T1-small", "ptt-T2-partial-groups", "htt-T6-alternating", "stt-T2-tiles-forced",
         "stt-T2-pool-tiles", "htt-T4-residual", "ptt-T4-saturate-residual",
         "stt-T2-ring-limit-row-outer", "htt-T4-ring-limit-timestep-outer")


def paper_arrangement_small(tmp_path):
    """The small configuration in the paper's arrangement (zero-skipping cluster 1, sequential
    STT chain)."""
    return small_arrangement(tmp_path, SMALL_PAPER_ARRANGEMENT, 'stt_chain = "sequential"\ncluster1 = "zero_skip"')


@pytest.mark.cosim
def test_zero_skip_cluster1_is_bit_exact(tmp_path):
    cfg = paper_arrangement_small(tmp_path)
    target = RtlTarget.for_config(cfg)
    assert target.config.arrangement.cluster1 == "zero_skip"
    assert target.config.arrangement.stt_chain == "sequential"
    cases = [c for c in coverage_cases(target.config, seed=0) if c.name in CASES]
    assert len(cases) == len(CASES)
    results = run_cases(target, cases, workdir=tmp_path / "run")
    assert len(results) == len(cases)
    _check_results(results, target.config)
    assert {r.case.qlayer.mode for r in results} == {"stt", "ptt", "htt"}
    assert any(r.tiles > 1 for r in results) and any(r.case.qlayer.pool for r in results)
    waited = [r.case.name for r in results if r.counters["c1_in_wait"] > 0 or r.counters["lif_stall"] > 0]
    assert waited, "no case made the accelerator wait for the host"
    _check_host_timing(results, target.config)
    _check_all_model_counters(results, target.config)
