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
and ``dump_seq`` (a new value loads the word files, dumps the captured reads) and
``play_done`` (flips when a play has finished as far as the host is concerned).
"""

from __future__ import annotations

__all__ = ["PLAYER_TOP", "PLAYER_DEPTH", "PLAYER_PORTS", "player_verilog", "PLAYER_FILES"]

PLAYER_TOP = "ttsnn_tb"
#: entries of each player memory (words of one tile; a tile with more is driven from Python)
PLAYER_DEPTH = 1 << 18
#: the files the player reads and writes, in the simulator's working directory
PLAYER_FILES = {"w_addr": "player_w_addr.hex", "w_data": "player_w_data.hex",
                "r_addr": "player_r_addr.hex", "capture": "player_capture.hex"}
PLAYER_PORTS = ("play_seq", "play_first", "play_count", "play_read", "load_seq", "dump_seq", "play_done")


def player_verilog(top: str, addr_bits: int, data_bits: int, depth: int = PLAYER_DEPTH) -> str:
    """Verilog of the wrapper around module ``top`` (appended to the design's source)."""
    aw, dw, f = addr_bits, data_bits, PLAYER_FILES
    return f"""
// ---- simulation-only host-word player (cosim/player.py), not part of the accelerator ----
module {PLAYER_TOP}(clk, rst, host_addr, host_wdata, host_write, host_read, host_rdata,
                    host_rvalid, busy, done, \\event , play_seq, play_first, play_count,
                    play_read, load_seq, dump_seq, play_done);
  input clk; input rst;
  input [{aw - 1}:0] host_addr; input [{dw - 1}:0] host_wdata; input host_write; input host_read;
  output [{dw - 1}:0] host_rdata; output host_rvalid; output busy; output done; output \\event ;
  input [31:0] play_seq; input [31:0] play_first; input [31:0] play_count; input play_read;
  input [31:0] load_seq; input [31:0] dump_seq;
  output reg play_done = 1'b0;
  reg [{aw - 1}:0] w_addr [0:{depth - 1}];
  reg [{dw - 1}:0] w_data [0:{depth - 1}];
  reg [{aw - 1}:0] r_addr [0:{depth - 1}];
  reg [{dw - 1}:0] capture [0:{depth - 1}];
  reg [31:0] seen_play = 0, seen_load = 0, seen_dump = 0;
  reg [31:0] idx = 0, remaining = 0, cap_idx = 0, cap_left = 0;
  reg reading = 1'b0, read_tail = 1'b0;
  wire trigger = play_seq != seen_play;
  wire [31:0] cur = trigger ? play_first : idx;
  wire active = trigger | (remaining != 0);
  wire rd_mode = trigger ? play_read : reading;
  wire [{aw - 1}:0] p_addr = rd_mode ? r_addr[cur[{_log2(depth) - 1}:0]] : w_addr[cur[{_log2(depth) - 1}:0]];
  wire [{dw - 1}:0] p_data = w_data[cur[{_log2(depth) - 1}:0]];
  wire [{dw - 1}:0] acc_rdata;
  wire acc_rvalid;
  assign host_rdata = acc_rdata;
  assign host_rvalid = acc_rvalid;
  {top} accelerator(.clk(clk), .rst(rst),
    .host_addr(active ? p_addr : host_addr), .host_wdata(active ? p_data : host_wdata),
    .host_write(active ? ~rd_mode : host_write), .host_read(active ? rd_mode : host_read),
    .host_rdata(acc_rdata), .host_rvalid(acc_rvalid), .busy(busy), .done(done), .\\event (\\event ));
  always @(posedge clk) begin
    read_tail <= 1'b0;
    if (trigger) begin
      seen_play <= play_seq;
      idx <= play_first + 1;
      remaining <= play_count - 1;
      reading <= play_read;
      if (play_count == 1) begin
        if (play_read) read_tail <= 1'b1; else play_done <= ~play_done;
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
    cap_left <= cap_left + ((trigger && play_read) ? play_count : 32'd0)
                - ((acc_rvalid && cap_left != 0) ? 32'd1 : 32'd0);
    if (acc_rvalid && cap_left != 0) begin
      capture[cap_idx[{_log2(depth) - 1}:0]] <= acc_rdata;
      cap_idx <= cap_idx + 1;
    end
    if (load_seq != seen_load) begin
      seen_load <= load_seq;
      $readmemh("{f['w_addr']}", w_addr);
      $readmemh("{f['w_data']}", w_data);
      $readmemh("{f['r_addr']}", r_addr);
      cap_idx <= 0;
    end
    if (dump_seq != seen_dump) begin
      seen_dump <= dump_seq;
      if (cap_idx != 0) $writememh("{f['capture']}", capture, 0, cap_idx - 1);
    end
  end
endmodule
"""


def _log2(n: int) -> int:
    return max(1, (n - 1).bit_length())
