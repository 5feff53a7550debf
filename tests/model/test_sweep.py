"""python -m model sweep: points, invalid configurations, resume after an interruption, and the
same rows bit for bit on every backend."""

import csv
import io

import pytest

from ttsnn.gen.config import config_from_dict, load_config
from ttsnn.model.__main__ import main
from ttsnn.model.energy_table import load_energy_table
from ttsnn.model.evaluate import Workload, evaluate_network
from ttsnn.model.sweep import load_grid, pareto_front, run_sweep
from ttsnn.sw.backends import LocalBackend
from ttsnn.sw.cli_util import run_cli

GRID = """
[sweep]
base = "small"
accelerators = ["proposed-rtl"]
modes = ["stt", "ptt"]

[hardware]
"clusters.pes" = [4, 8]
"widths.accumulator" = [16, 8]      # 8 < weight + activation bits: invalid

[networks.tiny]
arch = "tiny"
input = "2x8x8"
classes = 10
timesteps = 2
ranks = 4
"""


def _grid(tmp_path, text=GRID):
    p = tmp_path / "grid.toml"
    p.write_text(text)
    return load_grid(p)


def _rows(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _quiet(_msg):
    pass


def test_rows_match_the_model_and_invalid_points_carry_their_error(tmp_path):
    grid = _grid(tmp_path)
    summary = run_sweep(grid, tmp_path / "out", LocalBackend(1), log=_quiet, progress=False)
    rows = _rows(tmp_path / "out" / "sweep.csv")
    assert [int(r["point"]) for r in rows] == list(range(8))     # 2 x 2 hardware x 1 net x 2 modes
    assert summary == {**summary, "points": 8, "ok": 4, "invalid": 4, "evaluated": 4}
    table = load_energy_table(None)
    wl = Workload("tiny", 2, (8, 8), 10, 2, 4)
    for r in rows:
        if r["widths.accumulator"] == "8":
            assert r["status"] == "invalid" and "widths.accumulator" in r["error"] and r["energy_pj"] == ""
            continue
        # reference: the configuration edited by hand, evaluated directly
        d = load_config("small").to_dict()
        p = int(r["clusters.pes"])
        d["clusters"].update(spike_pes=p, g2_pes=p, g3_pes=p, g4_pes=p, adder_lanes=p, lif_lanes=p)
        ref = evaluate_network(wl, r["mode"], "proposed-rtl", config_from_dict(d), table)
        assert r["status"] == "ok"
        assert float(r["energy_pj"]) == ref.total_pj
        assert float(r["cycles"]) == ref.cycles()["total"]
        assert int(r["total_pes"]) == 4 * p
    png = tmp_path / "out" / "pareto.png"
    assert png.stat().st_size > 1000


def test_pareto_front_is_the_set_no_other_point_dominates():
    pts = [(5, 1), (1, 5), (3, 3), (4, 4), (2, 6), (3, 2), (6, 0.5), (3, 2)]
    rows = [{"point": i, "cycles": c, "energy_pj": e} for i, (c, e) in enumerate(pts)]
    front = {r["point"] for r in pareto_front(rows)}
    # by the definition: no other point at most as large in both and smaller in one
    want = {i for i, (c, e) in enumerate(pts)
            if not any((c2 <= c and e2 <= e and (c2, e2) != (c, e)) for c2, e2 in pts)}
    want -= {7}                          # of two equal points the first is kept
    assert front == want == {0, 1, 5, 6}


def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path):
    grid = _grid(tmp_path)
    ref = tmp_path / "ref"
    run_sweep(grid, ref, LocalBackend(1), log=_quiet, progress=False)
    out = tmp_path / "out"
    seen = []

    def stop_after_3(row):
        seen.append(row["point"])
        if len(seen) == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, out, LocalBackend(1), log=_quiet, progress=False, on_row=stop_after_3)
    journal = _rows(out / "sweep.csv")
    assert sum(r["status"] == "ok" for r in journal) == 3
    # a kill in the middle of a line leaves half a row: it is dropped and evaluated again
    text = (out / "sweep.csv").read_text()
    (out / "sweep.csv").write_text(text[:-10])
    again = []
    summary = run_sweep(grid, out, LocalBackend(2), log=_quiet, progress=False,
                        on_row=lambda r: again.append(r["point"]))
    assert summary["evaluated"] == 2 and len(again) == 2 and not set(again) & set(seen[:2])
    assert (out / "sweep.csv").read_bytes() == (ref / "sweep.csv").read_bytes()
    assert (out / "pareto.csv").read_bytes() == (ref / "pareto.csv").read_bytes()


def test_another_grid_in_the_same_out_is_refused(tmp_path):
    run_sweep(_grid(tmp_path), tmp_path / "out", LocalBackend(1), log=_quiet, progress=False)
    other = _grid(tmp_path, GRID.replace('modes = ["stt", "ptt"]', 'modes = ["htt"]'))
    with pytest.raises(ValueError, match="another grid"):
        run_sweep(other, tmp_path / "out", LocalBackend(1), log=_quiet, progress=False)
    s = run_sweep(other, tmp_path / "out", LocalBackend(1), log=_quiet, progress=False, force=True)
    assert s["points"] == 4


@pytest.mark.parametrize("text, msg", [
    ("[sweep\n", "not valid TOML"),
    ('[hardware]\n"clusters.pe" = [4]\n', "'clusters.pe' is not a configuration field"),
    ('[hardware]\n"clusters.spike_pes" = 4\n', "non-empty list"),
    ('[sweep]\nmodes = ["xtt"]\n', "unknown mode"),
    ('[sweep]\nbase = "nosuch"\n', "not found"),
    ('[networks.n]\nworkload = "nosuch"\n', "unknown workload"),
    ("[extra]\n", "unknown section"),
])
def test_bad_grids_are_one_clear_line(tmp_path, capsys, text, msg):
    p = tmp_path / "g.toml"
    p.write_text(text)
    assert run_cli(main, ["sweep", "--grid", str(p), "--out", str(tmp_path / "o")], prog="model") == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_the_example_grid_parses():
    grid = load_grid("configs/sweep/example.toml")
    assert len(grid.points()) == 3 * 2 * 2 * 2 * 3


def test_the_ray_backend_gives_the_same_rows_bit_for_bit(tmp_path):
    pytest.importorskip("ray")
    from ttsnn.sw.backends import RayBackend
    grid = _grid(tmp_path)
    run_sweep(grid, tmp_path / "local", LocalBackend(1), log=_quiet, progress=False)
    with RayBackend(workers=2) as ray_backend:
        run_sweep(grid, tmp_path / "ray", ray_backend, log=_quiet, progress=False)
    assert (tmp_path / "ray" / "sweep.csv").read_bytes() == (tmp_path / "local" / "sweep.csv").read_bytes()


def test_the_command_line_runs_a_sweep(tmp_path, capsys):
    p = tmp_path / "g.toml"
    p.write_text(GRID)
    assert main(["sweep", "--grid", str(p), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "8 points: 4 ok, 4 invalid" in out and "widths.accumulator" in out
    assert len(_rows(tmp_path / "o" / "sweep.csv")) == 8
