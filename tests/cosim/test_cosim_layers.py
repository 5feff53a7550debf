"""The generated Verilog against the golden model, bit for bit (cocotb + Verilator).

The small configuration's whole coverage batch (cosim/cases.py) runs in ONE simulator process
after ONE cached C++ build; the paper-sized layer is in the cosim_full target.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ttsnn.cosim.cases import coverage_cases, paper_layer_case
from ttsnn.cosim.layer import RtlTarget, run_cases
from ttsnn.cosim.report import MismatchReport
from ttsnn.gen.driver import reference_window
from ttsnn.sw.golden import golden_layer
from ttsnn.sw.golden_backward import forward_trace


def _check_results(results, cfg):
    failures = [r.report.format() + (f"\n  waveform: {r.waves}" if r.waves else "")
                for r in results if not r.match]
    assert not failures, "RTL differs from the golden model:\n" + "\n".join(failures)
    for r in results:
        q, case = r.case.qlayer, r.case
        # the layer-level outputs stitched from the tiles equal the untiled golden layer
        res = None if case.residual is None else torch.from_numpy(np.asarray(case.residual, dtype=np.int64))
        whole = golden_layer(q, torch.from_numpy(np.asarray(case.spikes, dtype=np.int64)), res, cfg.widths)
        assert np.array_equal(r.spikes, whole.spikes.numpy()), case.name
        assert np.array_equal(r.membrane, whole.membrane.numpy()), case.name
        # the trace words (window bits of the reference rectangle, a pooling layer's arg-max)
        # equal the golden forward trace of the untiled layer
        lo, hi = case.surrogate or reference_window(q)
        x = torch.nn.functional.pad(torch.from_numpy(np.asarray(case.spikes, dtype=np.int64)), (1, 1, 1, 1))
        trace, _, _ = forward_trace(q, x.unsqueeze(1), None if res is None else res.unsqueeze(1), cfg.widths, lo, hi)
        assert np.array_equal(r.window, trace.window[:, 0].numpy()), case.name
        assert (r.argmax is None) if trace.argmax is None else np.array_equal(r.argmax, trace.argmax[:, 0].numpy())
        # counters that have an independent reference
        assert r.counters["spikes_out"] == int(whole.spikes.sum()), case.name
        assert r.counters["cycles"] >= 1 and r.cycles == r.counters["cycles"]
        # the testbench clock (start write to the rising edge of done) within a cycle a tile
        tb = sum(r.tb_cycles)
        assert abs(r.counters["cycles"] - tb) <= 2 * r.tiles + 2, (case.name, r.counters["cycles"], tb)
        # every host word of the streamed rows went through the bus
        assert r.span_cycles > r.cycles and r.wall_s > 0 and r.cpu_s > 0
        assert r.counters["host_words_in"] >= sum(n["in"] + n["res"] for n in r.rows)
        assert r.counters["host_words_out"] >= 2 * sum(n["out"] for n in r.rows)


def _host_timed(name: str) -> bool:
    """Counters that depend on when the host answers: they equal a model's only when the
    host never made the accelerator wait (``c1_in_wait``, ``lif_stall`` and every ``*_w_wait``
    zero)."""
    return name in ("cycles", "c1_in_wait", "lif_stall") or name.endswith(("_stall", "_w_wait"))


def _check_all_model_counters(results, cfg) -> None:
    for r in results:
        waited = any(r.counters[k] > 0 for k in ("c1_in_wait", "lif_stall", "c4_w_wait", "c2_w_wait",
                                                  "c3_w_wait", "c1_w_wait"))
        _check_model_counters(r, cfg, host_waited=waited)


def _check_model_counters(r, cfg, host_waited: bool = False) -> None:
    """The energy model's forward counters, summed over the tiles the co-simulation ran, equal
    the RTL's counters (issue 6: forward counts of the model == RTL counters, every tile).
    ``host_waited``: the host made the accelerator wait (the capped-ring cases), so the
    host-timed counters (cycles, stalls) are left out; every other counter is compared."""
    from ttsnn.gen.driver import Driver
    from ttsnn.model.tile import tile_forward_counters

    q, case = r.case.qlayer, r.case
    drv = Driver(cfg)
    total: dict[str, float] = {}
    for tile in r.plan.tiles:           # the tiles the co-simulation ran
        window = drv.window(np.asarray(case.spikes), tile)
        c = tile_forward_counters(cfg, tile, q.mode, q.full_timesteps(case.spikes.shape[0]),
                                  window=window, residual=q.residual,
                                  load_weights=tile.weights_change)
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    assert len(r.plan.tiles) == r.tiles, case.name
    compared = {k: (v, total[k]) for k, v in r.counters.items()
                if k in total and not (host_waited and _host_timed(k))}
    assert len(compared) >= 30, sorted(set(r.counters) - set(total))
    mismatched = {k: rv_mv for k, rv_mv in compared.items() if rv_mv[0] != rv_mv[1]}
    assert not mismatched, f"{case.name}: counter (rtl, model) {mismatched}"


@pytest.mark.cosim
def test_small_config_coverage_batch(tmp_path):
    from ttsnn.gen.config import load_config

    cfg = load_config("small")
    target = RtlTarget.for_config("small")
    cases = coverage_cases(target.config, seed=0)
    results = run_cases(target, cases, workdir=tmp_path)
    assert len(results) == len(cases)
    _check_results(results, target.config)
    # the batch really covers what it claims
    modes = {r.case.qlayer.mode for r in results}
    assert modes == {"stt", "ptt", "htt"}
    assert {1, 2, 4, 6} <= {r.case.spikes.shape[0] for r in results}
    assert any(r.tiles > 1 for r in results)
    assert any(r.case.qlayer.pool for r in results) and any(r.case.qlayer.residual for r in results)
    # the comparison is sensitive: a golden model of a slightly different layer disagrees
    r = next(r for r in results if r.case.name == "ptt-T2-tiles")
    q2 = dataclasses.replace(r.case.qlayer, threshold=r.case.qlayer.threshold + 1,
                             bias=r.case.qlayer.bias + 1)
    wrong = golden_layer(q2, torch.from_numpy(np.asarray(r.case.spikes, dtype=np.int64)), None,
                         target.config.widths)
    rep = MismatchReport("perturbed")
    rep.add_tile(0, 0, 0, 0, wrong.spikes.numpy(), wrong.membrane.numpy(), r.spikes, r.membrane)
    assert not rep.match and rep.membrane_mismatches > 0
    # the streaming protocol is exercised: every ring wraps around in some case, and capped
    # rings make the accelerator wait for the host in both row orders
    for ring in ("in", "res", "out"):
        assert any(r.rings_wrapped[ring] for r in results), ring
    waited = [r for r in results if r.counters["c1_in_wait"] > 0 and r.counters["lif_stall"] > 0]
    assert {r.case.order for r in waited} >= {0, 1}, [r.case.name for r in waited]
    assert {0, 1} <= {t.order for r in results for t in r.plan}
    _check_host_timing(results, target.config, need_groups=True)
    # last: the energy model's counters (model/ has its own owner)
    _check_all_model_counters(results, target.config)


@pytest.mark.cosim
def test_wider_host_port_rates(tmp_path):
    """The small configuration with a 128-bit host port (four words per beat): the streamed
    and capped-ring cases bit-exact, every tile's timing counters and bus cycles equal to the
    host-timed cycle model at that rate, and the host still the one holding up the capped
    rings (c1_in_wait / lif_stall > 0)."""
    from ttsnn.cosim.cases import coverage_cases
    from ttsnn.gen.config import CONFIG_DIR

    text = (CONFIG_DIR / "small.toml").read_text()
    assert 'name = "small"' in text and "host_data = 32" in text
    toml = tmp_path / "small_host128.toml"
    toml.write_text(text.replace('name = "small"', 'name = "small_host128"')
                    .replace("host_data = 32", "host_data = 128"))
    target = RtlTarget.for_config(str(toml))
    assert target.config.widths.host_data == 128
    keep = ("ring", "residual", "tiles")
    cases = [c for c in coverage_cases(target.config, seed=0) if any(k in c.name for k in keep)]
    results = run_cases(target, cases, workdir=tmp_path / "run")
    _check_results(results, target.config)
    _check_host_timing(results, target.config, need_groups=True)


def _check_host_timing(results, cfg, need_waits: bool = True, need_groups: bool = False) -> None:
    """Every tile's timing counters (cycles and every stall, the host's c1_in_wait and
    lif_stall included) equal the cycle model with the host of run_tile on the configured
    port (gen/hosttiming.py), also where capped rings make the accelerator wait; the host's
    bus cycles too. The first tile of the run is the simulator's first after reset. The
    zero-skipping cluster 1's row lengths come from each tile's input spikes. Tiles of more
    than one output group read their last output row a group at a time (``out_groups``;
    ``need_groups``: some tile of the batch does)."""
    from ttsnn.gen.cyclemodel import TileShape
    from ttsnn.gen.driver import Driver
    from ttsnn.gen.hosttiming import host_tile_timing, traffic_of_program
    from ttsnn.gen.zero_skip import zero_skip_row_lens

    drv = Driver(cfg)
    fresh, waited, grouped = True, 0, 0
    for r in results:
        q, case = r.case.qlayer, r.case
        span = 0
        for tile, rtl in zip(r.plan.tiles, r.tile_counters):
            window = drv.window(np.asarray(case.spikes), tile)
            res = drv.residual_tile(case.residual, tile) if q.residual else None
            prog = drv.program(q, tile, window, res, ring_limit=case.ring_limit)
            grouped += len(prog.last_row_groups) > 1
            shape = TileShape.of(q, tile)
            lens = zero_skip_row_lens(cfg, shape, window) if cfg.arrangement.cluster1 == "zero_skip" else None
            model = host_tile_timing(cfg, shape, traffic_of_program(prog, drv.map), fresh, c1_lens=lens)
            fresh = False
            diff = {k: (rtl[k], model[k]) for k in model if k in rtl and rtl[k] != model[k]}
            assert not diff, f"{case.name} tile {tile.index}: timing counters (rtl, host-timed model) {diff}"
            span += model["host_span"]
            waited += rtl["c1_in_wait"] + rtl["lif_stall"]
        assert span == r.span_cycles, (case.name, r.span_cycles, span)
    assert waited > 0 or not need_waits
    assert grouped > 0 or not need_groups


@pytest.mark.cosim_full
def test_paper_first_resnet18_tt_layer():
    """MS-ResNet18 / CIFAR10 layers.0.0.conv1 (64 -> 64, 32x32, T=4, rank 32) in all modes, as
    the planner tiles it (one tile streaming the whole layer), and in PTT forced into 16x16
    tiles (several tiles with halos), on the paper configuration: the paper's arrangement
    (zero-skipping cluster 1, sequential STT chain)."""
    target = RtlTarget.for_config("paper")
    assert target.config.arrangement.cluster1 == "zero_skip"
    cases = [paper_layer_case(target.config, seed=i, mode=m) for i, m in enumerate(("stt", "ptt", "htt"))]
    cases.append(paper_layer_case(target.config, seed=3, mode="ptt", tile_hw=(16, 16)))
    results = run_cases(target, cases)
    _check_results(results, target.config)
    # full-size streaming: more input and output rows than the rings hold
    assert all(r.tiles == 1 and r.rings_wrapped["in"] and r.rings_wrapped["out"]
               for r in results[:3]), [(r.tiles, r.rings_wrapped) for r in results]
    assert results[-1].tiles > 1
    _check_host_timing(results, target.config, need_waits=False)   # the 256-bit port keeps up
    _check_all_model_counters(results, target.config)


@pytest.mark.cosim
def test_hang_is_reported_not_waited_forever(tmp_path, monkeypatch):
    """A tile that does not finish within its cycle limit fails the run with the log named."""
    import ttsnn.cosim.layer as L
    from ttsnn.cosim.cases import coverage_cases
    from ttsnn.cosim.runner import CosimRunError

    target = RtlTarget.for_config("small")
    monkeypatch.setattr(L, "_cycle_limit", lambda cfg, tile, prog: 5)
    case = coverage_cases(target.config)[0]
    with pytest.raises(CosimRunError, match=r"(?s)testbench failed.*cycle limit of 5 "):
        run_cases(target, [case], workdir=tmp_path, waves="never")


@pytest.mark.slow  # builds the traced variant of the small configuration
@pytest.mark.cosim
def test_mismatch_is_reported_with_waveform(tmp_path, monkeypatch):
    """A wrong expectation (golden output shifted by one in one neuron) is reported with its
    coordinates, and the failing case is re-run with a waveform."""
    import ttsnn.cosim.layer as L
    from ttsnn.cosim.cases import coverage_cases
    from ttsnn.sw.golden import GoldenResult

    real = L.golden_tile

    def off_by_one(*args, **kw):
        g = real(*args, **kw)
        m = g.membrane.clone()
        m[0, 0, 0, 0] += 1
        return GoldenResult(g.spikes, m)

    monkeypatch.setattr(L, "golden_tile", off_by_one)
    target = RtlTarget.for_config("small")
    case = coverage_cases(target.config)[0]
    (res,) = run_cases(target, [case], workdir=tmp_path, waves="fail")
    assert not res.match and res.report.membrane_mismatches == res.tiles
    m = res.report.first[0]
    assert (m.t, m.channel, m.row, m.col, m.what) == (0, 0, 0, 0, "membrane")
    assert m.got == m.expected - 1
    assert res.waves is not None and res.waves.is_file() and res.waves.stat().st_size > 0
