"""The calibration targets (issue 6, section 3). These fail when a model change moves the
figures out of the paper's bands: re-calibrate (docs/energy_model.md) or explain why.

Known miss: since the streaming redesign of gen/ (packed clusters 2/3, whole layers as one
tile), the HTT target (-43.5 % +- 5 points versus STT on the proposed accelerator) is not met
at any point of the calibration knobs' published ranges (best -32.9 %): cluster 4, which HTT
does not lighten, then bounds HTT's time as it bounds PTT's (docs/energy_model.md, section 4).
It is marked as an expected failure, strictly: if a change makes it pass, the test says so
and the docs must be updated.
"""

import pytest

from gen.config import load_config
from model.energy_table import load_energy_table
from model.networks import PAPER_REDUCTIONS, calibration_check

KNOWN_MISSES = {"proposed_htt_reduction"}
HTT_MISS = ("the HTT reduction is bounded by cluster 4 (docs/energy_model.md, section 4): "
            "-32.9 % at best in the published ranges, the paper has -43.5 %")


@pytest.fixture(scope="module")
def cal():
    return calibration_check(load_config("paper"), load_energy_table())


@pytest.mark.parametrize("mode", ["ptt", pytest.param("htt", marks=pytest.mark.xfail(strict=True,
                                                                                     reason=HTT_MISS))])
def test_proposed_reduction_within_5pp_of_the_paper(cal, mode):
    got = cal["proposed_vs_stt"][mode]
    assert abs(100 * (got - PAPER_REDUCTIONS[mode])) <= 5.0, (mode, got)


def test_proposed_htt_is_still_below_ptt(cal):
    """What HTT does achieve: below PTT, which is below STT."""
    red = cal["proposed_vs_stt"]
    assert red["htt"] < red["ptt"] < 0


def test_sata_like_ordering(cal):
    rel = cal["sata_vs_stt"]
    assert rel["dense"] > 0            # STT below dense
    assert rel["ptt"] > 0              # PTT above STT (branch output spilled and re-read)
    assert abs(rel["htt"]) < 0.25      # HTT close to STT ...
    assert abs(rel["htt"]) < abs(rel["dense"]) / 5  # ... much closer than the dense model


def test_check_reports_every_target_but_the_known_miss(cal):
    failing = {k for k, v in cal["checks"].items() if not v}
    assert failing == KNOWN_MISSES, cal["checks"]
    assert not cal["all_pass"]
