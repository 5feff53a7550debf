"""A simulation-only bus master that plays host words inside the simulator (issue 17, section 3).

The testbench (cosim/tb_host.py) drives the host protocol of :func:`gen.driver.run_tile` from
Python. Without help that is one cocotb await per host word; with the player the testbench
hands a tile's words over once (files read with ``$readmemh`` at the tile's start) and then,
per block of words (the set-up, one input or residual row, one output row, the counter reads),
only says "play entries ``first .. first + count - 1``": the wrapper drives them on the
accelerator's host port one per cycle, exactly as the Python bus would (a write takes one
cycle, ``n`` reads ``n + 1`` cycles to the last value), captures the read data into a memory
that the testbench dumps with ``$writememh`` after the tile, and flips ``play_done`` when the
Python bus would have returned. The cycles of every tile are therefore those of the
word-by-word bus (and of the cycle model, gen/hosttiming.py); only the Python work changes.

The wrapper ``ttsnn_tb`` has the top level's ports (the testbench's ``dut.host_*``,
``done``, ``event`` are unchanged) plus the player's: ``play_seq`` (a new value starts a
play), ``play_first``, ``play_count``, ``play_read`` (0: writes, 1: reads), ``load_seq``
and ``dump_seq`` (a new value loads the word files, dumps the captured reads),
``play_done`` (flips when a play has finished as far as the host is concerned) and
``in_strobe``.

``in_strobe``: the wrapper takes every input (``rst``, ``host_*``, ``play_*``, ``*_seq``) into a
register on each edge of ``in_strobe``, which the testbench flips in the simulation step in
which it drives inputs (:meth:`cosim.tb_host.CocotbBus.drive`, after a falling edge), and the
accelerator and the player see those registers. They hold at every rising edge of ``clk`` what
the ports hold, so every cycle is as before; but no logic depends on a top-level input
combinationally any more. Verilator re-evaluates such logic (its input-combinational region,
``ico``: here the player's multiplexers, the host decoder, the memories' address and write
multiplexers) on every ``eval``, both clock edges, whether an input changed or not; behind the
registers it is evaluated once per change instead (docs/cosim.md, section 6). Each rising edge
checks that the registers equal the ports and stops the simulation (``$fatal``) otherwise.
"""

from __future__ import annotations

__all__ = ["PLAYER_TOP", "PLAYER_DEPTH", "PLAYER_PORTS", "player_verilog", "PLAYER_FILES"]

PLAYER_TOP = "ttsnn_tb"
#: entries of each player memory (words of one tile; a tile with more is driven from Python)
PLAYER_DEPTH = 1 << 18
#: the files the player reads and writes, in the simulator's working directory
PLAYER_FILES = {"w_addr": "player_w_addr.hex", "w_data": "player_w_data.hex",
                "r_addr": "player_r_addr.hex", "capture": "player_capture.hex"}
PLAYER_PORTS = ("play_seq", "play_first", "play_count", "play_read", "load_seq", "dump_seq", "play_done",
                "in_strobe")


def player_verilog(top: str, addr_bits: int, data_bits: int, depth: int = PLAYER_DEPTH,
                   clock_ns: float | None = None) -> str:
    """Verilog of the wrapper around module ``top`` (appended to the design's source).
    ``clock_ns``: the wrapper drives ``clk`` itself with this period (an output then; the
    build needs Verilator's ``--timing``), else ``clk`` is an input the testbench drives."""
    aw, dw, f = addr_bits, data_bits, PLAYER_FILES
    clk_decl = "input clk;"
    if clock_ns is not None:
        half_ps = clock_ns * 500
        if clock_ns <= 0 or abs(half_ps - round(half_ps)) > 1e-6:
            raise ValueError(f"clock period {clock_ns} ns: half of it must be a whole number of ps")
        # high at time 0, first falling edge after half a period: the phase of cocotb's Clock
        clk_decl = f"output reg clk = 1'b1; always #{round(half_ps) / 1000:g} clk = ~clk;"
    return f"""
// ---- simulation-only host-word player (cosim/player.py), not part of the accelerator ----
module {PLAYER_TOP}(clk, rst, host_addr, host_wdata, host_write, host_read, host_rdata,
                    host_rvalid, busy, done, \\event , play_seq, play_first, play_count,
                    play_read, load_seq, dump_seq, play_done, in_strobe);
  {clk_decl} input rst;
  input [{aw - 1}:0] host_addr; input [{dw - 1}:0] host_wdata; input host_write; input host_read;
  output [{dw - 1}:0] host_rdata; output host_rvalid; output busy; output done; output \\event ;
  input [31:0] play_seq; input [31:0] play_first; input [31:0] play_count; input play_read;
  input [31:0] load_seq; input [31:0] dump_seq; input in_strobe;
  output reg play_done = 1'b0;
  // The inputs as the testbench last drove them, taken when it flips in_strobe (after every
  // change, in the same simulation step, so before the next rising edge of clk): the
  // accelerator sees at every rising edge exactly what it would see on the ports themselves,
  // but no logic depends on a top-level input combinationally, so Verilator has nothing to
  // re-evaluate in its input-combinational region at every clock edge (see module docstring).
  reg in_rst = 1'b1;
  reg [{aw - 1}:0] in_addr = 0; reg [{dw - 1}:0] in_wdata = 0; reg in_write = 1'b0, in_read = 1'b0;
  reg [31:0] in_play_seq = 0, in_play_first = 0, in_play_count = 0, in_load_seq = 0, in_dump_seq = 0;
  reg in_play_read = 1'b0;
  always @(posedge in_strobe or negedge in_strobe) begin
    in_rst <= rst; in_addr <= host_addr; in_wdata <= host_wdata; in_write <= host_write;
    in_read <= host_read; in_play_seq <= play_seq; in_play_first <= play_first;
    in_play_count <= play_count; in_play_read <= play_read; in_load_seq <= load_seq;
    in_dump_seq <= dump_seq;
  end
  reg [{aw - 1}:0] w_addr [0:{depth - 1}];
  reg [{dw - 1}:0] w_data [0:{depth - 1}];
  reg [{aw - 1}:0] r_addr [0:{depth - 1}];
  reg [{dw - 1}:0] capture [0:{depth - 1}];
  reg [31:0] seen_play = 0, seen_load = 0, seen_dump = 0;
  reg [31:0] idx = 0, remaining = 0, cap_idx = 0, cap_left = 0;
  reg reading = 1'b0, read_tail = 1'b0;
  // nothing plays during reset: see the reset branch below
  wire trigger = ~in_rst & (in_play_seq != seen_play);
  wire [31:0] cur = trigger ? in_play_first : idx;
  wire active = trigger | (remaining != 0);
  wire rd_mode = trigger ? in_play_read : reading;
  wire [{aw - 1}:0] p_addr = rd_mode ? r_addr[cur[{_log2(depth) - 1}:0]] : w_addr[cur[{_log2(depth) - 1}:0]];
  wire [{dw - 1}:0] p_data = w_data[cur[{_log2(depth) - 1}:0]];
  wire [{dw - 1}:0] acc_rdata;
  wire acc_rvalid;
  assign host_rdata = acc_rdata;
  assign host_rvalid = acc_rvalid;
  {top} accelerator(.clk(clk), .rst(in_rst),
    .host_addr(active ? p_addr : in_addr), .host_wdata(active ? p_data : in_wdata),
    .host_write(active ? ~rd_mode : in_write), .host_read(active ? rd_mode : in_read),
    .host_rdata(acc_rdata), .host_rvalid(acc_rvalid), .busy(busy), .done(done), .\\event (\\event ));
  always @(posedge clk) begin
    // every rising edge checks that the latched inputs are the ports' values (a testbench
    // that changed an input without flipping in_strobe would otherwise go unnoticed); not at
    // time 0, where the clock's first edge and the first inputs come in the same step (the
    // registers' initial values are those inputs: reset, everything else 0)
    if ($time != 0 && {{in_rst, in_addr, in_wdata, in_write, in_read, in_play_seq, in_play_first,
                        in_play_count, in_play_read, in_load_seq, in_dump_seq}}
                   !== {{rst, host_addr, host_wdata, host_write, host_read, play_seq, play_first,
                        play_count, play_read, load_seq, dump_seq}}) begin
      $display("ttsnn_tb: an input changed without a flip of in_strobe (cosim/player.py)");
      $fatal;
    end
    read_tail <= 1'b0;
    if (in_rst) begin
      // the testbench holds rst for its first cycles, with every sequence input at 0: forget
      // whatever the input registers held before it first drove them (Verilator's random
      // initial values of the ports can be taken at the simulation's first edge)
      seen_play <= in_play_seq;
      remaining <= 0;
      cap_left <= 0;
    end else if (trigger) begin
      seen_play <= in_play_seq;
      idx <= in_play_first + 1;
      remaining <= in_play_count - 1;
      reading <= in_play_read;
      if (in_play_count == 1) begin
        if (in_play_read) read_tail <= 1'b1; else play_done <= ~play_done;
      end
    end else if (remaining != 0) begin
      idx <= idx + 1;
      remaining <= remaining - 1;
      if (remaining == 1) begin
        if (reading) read_tail <= 1'b1; else play_done <= ~play_done;
      end
    end
    // reads: the host would return once the last value is valid, a cycle after its strobe
    if (read_tail) play_done <= ~play_done;
    // reads still to capture: a new block's, less the one landing now (an earlier block's
    // last value may land in the cycle the next block starts)
    if (!in_rst)
      cap_left <= cap_left + ((trigger && in_play_read) ? in_play_count : 32'd0)
                  - ((acc_rvalid && cap_left != 0) ? 32'd1 : 32'd0);
    if (acc_rvalid && cap_left != 0) begin
      capture[cap_idx[{_log2(depth) - 1}:0]] <= acc_rdata;
      cap_idx <= cap_idx + 1;
    end
    if (in_rst) begin
      seen_load <= in_load_seq;
      seen_dump <= in_dump_seq;
    end
    if (!in_rst && in_load_seq != seen_load) begin
      seen_load <= in_load_seq;
      $readmemh("{f['w_addr']}", w_addr);
      $readmemh("{f['w_data']}", w_data);
      $readmemh("{f['r_addr']}", r_addr);
      cap_idx <= 0;
    end
    if (!in_rst && in_dump_seq != seen_dump) begin
      seen_dump <= in_dump_seq;
      if (cap_idx != 0) $writememh("{f['capture']}", capture, 0, cap_idx - 1);
    end
  end
endmodule
"""


def _log2(n: int) -> int:
    return max(1, (n - 1).bit_length())
