"""The paper's STT chaining (``arrangement.stt_chain = "sequential"``) in the generated Verilog
against the golden model, bit for bit (cocotb + Verilator): the STT cases of the small
configuration's coverage batch in one simulator process, every counter equal to the model's
(the cycle model of the sequential chaining)."""

from __future__ import annotations

import pytest

from ttsnn.cosim.cases import coverage_cases
from ttsnn.cosim.layer import RtlTarget, run_cases
from ttsnn.gen.config import CONFIG_DIR, load_config
from tests.cosim.test_cosim_layers import _check_all_model_counters, _check_results

SMALL_SEQUENTIAL = "small_sequential"


def small_arrangement(tmp_path, name: str, arrangement: str):
    """The small configuration with ``arrangement`` (TOML lines) in place of its default
    ``stt_chain = "pipelined"``, as a TOML file of its own name (the co-simulation generates
    and builds RTL per configuration name)."""
    text = (CONFIG_DIR / "small.toml").read_text()
    assert 'name = "small"' in text and 'stt_chain = "pipelined"' in text
    text = text.replace('name = "small"', f'name = "{name}"').replace('stt_chain = "pipelined"', arrangement)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_config(path)


def sequential_small(tmp_path):
    """The small configuration with the sequential chaining."""
    return small_arrangement(tmp_path, SMALL_SEQUENTIAL, 'stt_chain = "sequential"')


@pytest.mark.cosim
def test_sequential_stt_chain_is_bit_exact(tmp_path):
    cfg = sequential_small(tmp_path)
    assert cfg.arrangement.stt_chain == "sequential"
    target = RtlTarget.for_config(cfg)
    assert target.config.arrangement.stt_chain == "sequential"
    cases = [c for c in coverage_cases(target.config, seed=0) if c.qlayer.mode == "stt"]
    assert len(cases) >= 6
    results = run_cases(target, cases, workdir=tmp_path / "run")
    assert len(results) == len(cases)
    _check_results(results, target.config)
    assert any(r.tiles > 1 for r in results) and any(r.case.qlayer.pool for r in results)
    _check_all_model_counters(results, target.config)
