"""gen.fpga: logic levels of hand-built netlists and of a tiny design through Yosys, the
device fit, the critical-path report by unit, the CLI's one-line errors. The place and
route itself (minutes) is `make fpga`, never a test."""

from __future__ import annotations

import json

import pytest

from ttsnn.gen.fpga import (DEVICE, LEVELS_SCRIPT, fit, stub_script, levels_by_unit, logic_levels, module_lines, path_units,
                      run_levels, unit_of)
from ttsnn.sw.cli_util import run_cli


def _cell(ctype, ins, outs):
    return {"type": ctype, "port_directions": {**{p: "input" for p in ins}, **{p: "output" for p in outs}},
            "connections": {**ins, **outs}}


def _netlist(cells, netnames, ports):
    return {"modules": {"ttsnn_accel": {
        "ports": ports, "cells": cells,
        "netnames": {n: {"bits": b, "hide_name": int(n.startswith("$"))} for n, b in netnames.items()}}}}


def test_levels_of_a_hand_built_netlist():
    # r1 (bit 2) -> AND with input x (bit 3) -> AND with x -> NOT -> r2.d (bit 6): 3 levels;
    # memory read data (bit 11) -> XOR with r1 -> the memory's write data: 1 level;
    # output port y is r2's q (bit 7): 0 levels
    cells = {
        "ff1": _cell("$_DFF_P_", {"C": [1], "D": [10]}, {"Q": [2]}),
        "g1": _cell("$_AND_", {"A": [2], "B": [3]}, {"Y": [4]}),
        "g2": _cell("$_AND_", {"A": [4], "B": [3]}, {"Y": [5]}),
        "g3": _cell("$_NOT_", {"A": [5]}, {"Y": [6]}),
        "ff2": _cell("$_SDFF_PP0_", {"C": [1], "D": [6], "R": ["0"]}, {"Q": [7]}),
        "mem": _cell("$mem_v2", {"WR_DATA": [12], "RD_ADDR": [3]}, {"RD_DATA": [11]}),
        "g4": _cell("$_XOR_", {"A": [11], "B": [2]}, {"Y": [12]}),
    }
    names = {"clk": [1], "x": [3], "r1": [2], "u.r2": [7], "$abc$1": [4], "e4.mem_rd": [11]}
    ports = {"clk": {"direction": "input", "bits": [1]}, "x": {"direction": "input", "bits": [3]},
             "y": {"direction": "output", "bits": [7]}}
    lv = logic_levels(_netlist(cells, names, ports))
    ep = lv["endpoints"]
    assert ep["u.r2"] == {"levels": 3, "unit": "u", "from": "r1"}
    assert ep["e4.mem_rd"]["levels"] == 1 and ep["e4.mem_rd"]["unit"] == "e4"
    assert ep["r1"]["levels"] == 0 and ep["y"]["levels"] == 0
    assert lv["worst_levels"] == 3
    assert [p["net"] for p in lv["worst_path"]][0] == "r1"
    assert [r["unit"] for r in levels_by_unit(ep)][0] == "u"


def test_unit_names_follow_the_component_hierarchy():
    assert module_lines("// x\nmodule ttsnn_accel(a);\nendmodule\nmodule \\ttsnn_accel.e4.lif (b);\n") == [
        (2, "top"), (4, "e4.lif")]
    assert unit_of("e4.affine.prod0") == "e4.affine"
    assert unit_of("\\e23.cluster2.acc") == "e23.cluster2"
    assert unit_of("$flatten\\e4.\\lif.$add$ttsnn_accel.v:12$3_Y") == "e4.lif"
    assert unit_of("cnt_cycles") == "top"
    assert unit_of("$abc$123$new_n5") == "?"
    scopes = ["e23", "e23.cluster2"]
    assert unit_of("e23.cluster2.spad_p.0.1", scopes) == "e23.cluster2"   # a memory's slice
    assert unit_of("$243_LUT4_C", scopes) == "top"


def test_an_eight_input_and_takes_three_levels_through_yosys(tmp_path):
    # 8-input AND: ceil(log2 8) = 3 levels of 2-input gates; 4-input XOR: 2; the submodule's
    # register (its output also the top's port q) is named by the module that declares it
    (tmp_path / "ttsnn_accel.v").write_text(
        "module \\ttsnn_accel.u (input clk, input [3:0] a, output reg q);\n"
        "  always @(posedge clk) q <= ^a;\nendmodule\n"
        "module ttsnn_accel(input clk, input [7:0] a, output reg s, output q);\n"
        "  reg [7:0] r; always @(posedge clk) begin r <= a; s <= &r; end\n"
        "  \\ttsnn_accel.u  u(.clk(clk), .a(r[3:0]), .q(q));\nendmodule\n")
    (tmp_path / "levels.ys").write_text(LEVELS_SCRIPT.format(stubs=""))
    lv = run_levels(tmp_path)
    assert lv["endpoints"]["s"]["levels"] == 3
    assert lv["endpoints"]["s"]["from"] == "r"
    assert lv["endpoints"]["u.q"]["levels"] == 2 and lv["endpoints"]["u.q"]["unit"] == "u"
    assert lv["worst_levels"] == 3


def test_without_backward_empties_that_unit_and_ties_its_outputs_to_zero(tmp_path):
    # the backward unit's register (3 levels deep) goes; its output, which the top registers
    # through an OR with a, becomes 0 (the OR is gone: 0 levels into t); the top's own
    # register stays
    (tmp_path / "ttsnn_accel.v").write_text(
        "module \\ttsnn_accel.backward (input clk, input [7:0] a, output reg q);\n"
        "  always @(posedge clk) q <= &a;\nendmodule\n"
        "module ttsnn_accel(input clk, input [7:0] a, output reg s, output reg t);\n"
        "  wire b; always @(posedge clk) begin s <= ^a[1:0]; t <= b | a[0]; end\n"
        "  \\ttsnn_accel.backward  backward(.clk(clk), .a(a), .q(b));\nendmodule\n")
    (tmp_path / "levels.ys").write_text(LEVELS_SCRIPT.format(stubs=""))
    full = run_levels(tmp_path)["endpoints"]
    assert full["backward.q"]["levels"] == 3 and full["t"]["levels"] == 1
    (tmp_path / "levels.ys").write_text(LEVELS_SCRIPT.format(stubs=stub_script(["backward"])))
    stubbed = run_levels(tmp_path)["endpoints"]
    assert "backward.q" not in stubbed
    assert stubbed["t"]["levels"] == 0 and stubbed["s"]["levels"] == 1
    with pytest.raises(ValueError, match="--without: unit must be one of backward"):
        stub_script(["e4"])


def test_fit_reports_how_far_over_the_device():
    res = {"LUT4": 60000, "CCU2C": 20000, "TRELLIS_FF": 1000, "DP16KD": 416, "MULT18X18D": 10,
           "TRELLIS_DPR16X4": 0}
    f = fit(res)
    assert not f["fits"]
    assert f["use"]["LUT4 (incl. carry, LUTRAM)"]["used"] == 100000
    assert f["over"] == {"LUT4 (incl. carry, LUTRAM)": round(100000 / DEVICE["LUT4"], 2), "DP16KD": 2.0}
    assert fit({**res, "LUT4": 100, "CCU2C": 0, "DP16KD": 1})["fits"]


def test_critical_path_steps_are_named_by_unit():
    # the shape of nextpnr-ecp5's --report JSON: routing steps carry the source lines of
    # their net, cells theirs in the netlist; cell names (after some net, often far away)
    # are not used; a step without a line of the design takes the unit before it
    verilog = "module ttsnn_accel(a);\n\nendmodule\nmodule \\ttsnn_accel.e4.affine (b);\n\n\nendmodule\n"
    modules = module_lines(verilog)          # lines 1-3: top, 4-7: e4.affine

    def step(kind, delay, cell, sources=None, net=""):
        return {"type": kind, "delay": delay, "net": net, "from": {"cell": cell, "port": "A"},
                "to": {"cell": cell, "port": "Z"}, **({"sources": sources} if sources else {})}
    rep = {"critical_paths": [
        {"from": "<async>", "to": "posedge clk", "path": [step("routing", 40.0, "pin", ["ttsnn_accel.v:5"])]},
        {"from": "posedge clk", "to": "posedge clk", "path": [step("clk-to-q", 0.5, "ff_a"),
                                                              step("setup", 0.1, "ff_b")]},
        {"from": "posedge clk", "to": "posedge clk", "path": [
            step("clk-to-q", 0.5, "desc_TRELLIS_FF_Q_3"),
            step("routing", 1.0, "mem_x_LUT4_B", ["ttsnn_accel.v:5.1-5.9", "/share/lattice/x.v:1"], "desc[3]"),
            step("logic", 0.25, "mem_x_LUT4_B"),
            step("routing", 1.25, "c2", ["/share/lattice/cells_map_trellis.v:108"]),
            step("logic", 0.5, "c2"),
            step("routing", 0.5, "c3", ["ttsnn_accel.v:2"]),
            step("setup", 0.1, "cnt_TRELLIS_FF_Q")]}]}
    cell_src = {"desc_TRELLIS_FF_Q_3": "ttsnn_accel.v:2.1-2.5|/share/lattice/cells_map_trellis.v:83"}
    rows = path_units(rep, modules, cell_src)
    assert [r["unit"] for r in rows] == ["top", "e4.affine", "e4.affine", "e4.affine", "e4.affine", "top", "top"]
    assert sum(r["delay_ns"] for r in rows) == pytest.approx(4.1)      # the longer clock path


def test_cli_rejects_a_bad_frequency_and_config_in_one_line(tmp_path, capsys):
    from ttsnn.gen.fpga import main
    assert run_cli(main, ["--freq", "0", "--out", str(tmp_path / "o")], prog="ttsnn.gen.fpga") == 2
    assert "--freq must be positive" in capsys.readouterr().err
    assert run_cli(main, ["--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_small_configuration_levels_per_stage(tmp_path):
    """The technology-independent figure of docs/synthesis.md on the small configuration:
    the post-cluster-4 chain is pipelined, so no register of the affine or LIF units and
    not the spike counter sits behind more than a 16x16 product's worth of levels plus a
    few (a generic registered 16x16 signed multiply alone is 64 levels in this flow); the
    unpipelined chain put 298 levels before the spike counter. The counters' increments are
    registered, so the counters themselves sit behind one 48-bit add. The backward
    LIF-gradient lanes and the core-stage re-quantisation are pipelined too."""
    from ttsnn.gen.config import load_config
    from ttsnn.gen.emit import verilog_text
    (tmp_path / "ttsnn_accel.v").write_text(verilog_text(load_config("small")))
    (tmp_path / "levels.ys").write_text(LEVELS_SCRIPT.format(stubs=""))
    lv = run_levels(tmp_path)
    ep = lv["endpoints"]
    chain = {k: v["levels"] for k, v in ep.items() if v["unit"] in ("e4.affine", "e4.lif")}
    assert len(chain) >= 8 and max(chain.values()) <= 80, chain
    assert ep["host.inc_spikes_out"]["levels"] <= 80
    # the affine's rounding and bias are one add on the product clamped to Mb + 2 bits (43
    # levels measured; 64 as two adds as wide as the product), and the clusters-2/3 line4
    # write is a stage of its own, after the adder array's registered sums (45-46; 64 with
    # the adder array and the shift3 re-quantisation in one cycle)
    assert max(v for k, v in chain.items() if k.startswith("e4.affine.cur")) <= 50, chain
    assert ep["memories.mem_line4"]["levels"] <= 52
    # issue #24, pipe5: the LIF's add and saturation (52 measured) and its compares (20) are
    # stages of their own (62-64 as one); the weight-gradient product's operands are registered
    # before the multiplies (53 into the accumulator's product register; 66-74 with the
    # operand choice in front); the MAC loops' end tests compare with registered last values
    # (49-52 into their counters; 54-64 with the subtractions in front)
    assert max(v for k, v in chain.items() if k.startswith(("e4.lif.s", "e4.lif.m", "e4.lif.new_u"))) <= 58, chain
    assert ep["backward.core.wgrad.prod1"]["levels"] <= 58
    loops = {k: v["levels"] for k, v in ep.items() if v["unit"] in ("e23.e2_loop", "e23.stt_cluster3.loop")}
    assert len(loops) >= 8 and max(loops.values()) <= 58, loops
    # the counter bank adds registered increments: every 48-bit counter sits behind an add of
    # its own register (53 levels measured), not behind an engine's per-cycle logic as well
    # (91-102 levels before the increments were registered)
    counters = {k: v for k, v in ep.items() if k.startswith("host.cnt_")}
    assert len(counters) >= 40 and max(v["levels"] for v in counters.values()) <= 60, counters
    # the LIF-gradient lanes are pipelined: their deepest stage is the d recurrence (16x8
    # product, rounding, add, saturation: 101-110 measured), no longer steps 1-3 in one cycle
    # (247), and their saturation count starts at registered flags (268 before)
    lanes = {k: v["levels"] for k, v in ep.items() if v["unit"] == "backward.lif.lanes"}
    assert len(lanes) >= 8 and max(lanes.values()) <= 120, lanes
    assert ep["host.inc_lifg_saturations"]["levels"] <= 30
    # the core-stage engine's re-quantisation is four stages (the sums' two halves,
    # rounding, saturation and write: 42, 36, 31, 27 measured in pipe6; 61, 33, 53 with the
    # sums one add; 118-130 as one or two) and its strides are products
    # with one multiply per register (a chain of three multipliers before)
    core = {k: v["levels"] for k, v in ep.items() if v["unit"] == "backward.core"}
    assert len(core) >= 8 and max(core.values()) <= 80, core
    # its PE array is pipelined (product, then the sum in two halves: 45-47 measured; 74 as
    # one multiply-accumulate), and the LIF-gradient recurrence adds once (63; 71-72 before)
    array = {k: v["levels"] for k, v in ep.items() if v["unit"] in ("backward.core.array", "backward.core.array_hi")}
    assert len(array) >= 8 and max(array.values()) <= 56, array
    assert max(lanes.values()) <= 70, lanes
    # issue #24, pipe6: the core-stage sums are added in two halves (36 into sums_c, 42 into
    # the lower halves' carries; 61 as one add); the input address takes a registered tap
    # offset and schedule bit (55 into the gradient buffer's banks; 57 with the taps'
    # compares in front); the clusters-2/3 counts are registered where they arise (host.inc_*
    # at most a few levels; 54 with the engine's logic in front), and line1's ring slots are
    # kept by the loop (51 into line1; 54 with the adds and compares per step)
    assert ep["backward.core.sums_c"]["levels"] <= 48
    assert max(v for k, v in core.items() if "sum_carry" in k) <= 48, core
    assert max(ep[f"memories.mem_gbuf_bank{b}"]["levels"] for b in (0, 1)) <= 56
    e23_inc = {k: v["levels"] for k, v in ep.items()
               if k.startswith(tuple(f"host.inc_{n}" for n in ("c2_", "c3_", "line1_reads", "w2_", "w3_", "row2_")))}
    assert len(e23_inc) >= 10 and max(e23_inc.values()) <= 20, e23_inc
    assert ep["memories.mem_line1"]["levels"] <= 52
    json.dumps(lv)      # the report is plain JSON
