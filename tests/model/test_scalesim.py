"""Cross-check of the single array (SATA-like baseline, and every non-TT layer of the proposed
design) against SCALE-Sim, a tool nobody here wrote: output-stationary 8 x 16 array, output
pixels on the rows, filters on the columns (docs/energy_model.md, "Cross-checks").

SCALE-Sim 3.0.0 fails under numpy 2, so it runs in its own environment through
model/scalesim_runner.py; without that environment these tests skip and say how to make it.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from ttsnn.model.array import ArrayMachine, array_shape, core_forward
from ttsnn.model.counts import Core, Counts
from ttsnn.model.energy_table import Memory

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "model" / "scalesim_runner.py"
MAKE_VENV = ("python3 -m venv build/scalesim-venv && "
             "build/scalesim-venv/bin/pip install scalesim==3.0.0 'numpy<2'")


def _scalesim_python() -> str:
    py = os.environ.get("SCALESIM_PYTHON") or str(ROOT / "build" / "scalesim-venv" / "bin" / "python")
    if not Path(py).is_file():
        pytest.skip(f"SCALE-Sim cross-check: no environment with scalesim at {py}; make it with: {MAKE_VENV}")
    probe = subprocess.run([py, "-c", "import scalesim, numpy; assert int(numpy.__version__.split('.')[0]) < 2"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"SCALE-Sim cross-check: {py} lacks scalesim 3.0.0 with numpy < 2; make it with: {MAKE_VENV}")
    return py


def _scalesim(layers, rows=8, cols=16):
    # -I: the script's folder (model/, with an array.py) must not shadow the standard library
    out = subprocess.run([_scalesim_python(), "-I", str(RUNNER)], input=json.dumps(
        {"rows": rows, "cols": cols, "layers": layers}), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)["layers"]


def _machine(pes=128):
    rows, cols = array_shape(pes)
    mems = {"weight": Memory("weight", 147456, 256), "spike_in": Memory("spike_in", 32768, 64),
            "state_out": Memory("state_out", 32768, 512)}
    return ArrayMachine(pes, rows, cols, 8, 8, 16, 16, mems, "weight", "spike_in", "state_out", 1 << 20)


def _model_cycles(cin, cout, k, ho, wo):
    core = Core("conv", cin, cout, k, k, ho * wo, 1, "act")
    return core_forward(_machine(), core, 1.0, Counts(), 8, 16)


def test_array_shape_is_satas_for_128_pes():
    assert array_shape(128) == (8, 16) and array_shape(32) == (4, 8) and array_shape(64) == (8, 8)


def test_fold_count_by_hand():
    """The issue's example, counted by hand: 3x3 conv 64 -> 64, 32x32 output, 8 x 16 array:
    ceil(1024/8) * ceil(64/16) = 512 folds of 576 + 8 + 16 - 2 cycles = 306,176 (SCALE-Sim's
    figure quoted in issue 22: 306,175). The former mapping (output channels only) gave 589,824."""
    assert _model_cycles(64, 64, 3, 32, 32) == 512 * (576 + 22)


LAYERS = [  # (name, input h = w, k, cin, cout); stride 1, no padding (SCALE-Sim's convention)
    ("a", 6, 3, 4, 16), ("b", 8, 1, 8, 20), ("c", 5, 3, 2, 40), ("e", 7, 3, 3, 24),
]


STRIDED = {"name": "d", "ih": 10, "iw": 10, "kh": 1, "kw": 1, "cin": 16, "cout": 8, "stride": 2}


@pytest.fixture(scope="module")
def small_runs():
    """One SCALE-Sim run (its start-up dominates) for every small layer."""
    return _scalesim([{"name": n, "ih": h, "iw": h, "kh": k, "kw": k, "cin": ci, "cout": co, "stride": 1}
                      for n, h, k, ci, co in LAYERS] + [STRIDED])


def test_single_array_cycles_match_scalesim(small_runs):
    for (n, h, k, ci, co), ss in zip(LAYERS, small_runs):
        ho = h - k + 1
        # SCALE-Sim counts one cycle fewer per layer (its last fold's final cycle)
        assert _model_cycles(ci, co, k, ho, ho) == ss["compute_cycles"] + 1, (n, ss)
        assert ss["stall_cycles"] == 0


def test_strided_layer_scalesim_rounds_its_output_up(small_runs):
    """SCALE-Sim sizes a strided output as ceil((H - R + S) / S): for a 1x1 stride-2 conv of a
    10x10 input that is 6x6, one row and column more than the layer's 5x5 (docs)."""
    ss = small_runs[-1]
    assert _model_cycles(16, 8, 1, 6, 6) == ss["compute_cycles"] + 1
    assert _model_cycles(16, 8, 1, 5, 5) < ss["compute_cycles"]


@pytest.mark.slow
def test_issue_example_matches_scalesim():
    (ss,) = _scalesim([{"name": "x", "ih": 34, "iw": 34, "kh": 3, "kw": 3, "cin": 64, "cout": 64, "stride": 1}])
    assert ss["compute_cycles"] == 306175
    assert _model_cycles(64, 64, 3, 32, 32) == ss["compute_cycles"] + 1
