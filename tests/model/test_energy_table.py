"""The energy table: data validation, lookups, unknown actions, interpolation."""

import math

import pytest

from ttsnn.model.energy_table import (DEFAULT_TABLE, Memory, UnknownActionError, load_energy_table)


@pytest.fixture(scope="module")
def table():
    return load_energy_table()


def test_every_entry_names_unit_node_and_source(table):
    assert table.node_nm == 28
    assert table.entries
    for e in table.entries:
        assert e.get("source"), e
        assert e.get("unit") or e["kind"] == "action", e
        if e["kind"] == "primitive":
            assert e["node_nm"] == 28 and e["bits"] > 0


def test_no_constant_is_calibrated_and_ranges_bracket_the_central_value(table):
    for e in table.entries:
        assert e.get("treatment", "published") in ("published", "scaled"), e
        if e.get("treatment") == "scaled":
            assert e.get("rule"), e
        c = e.get("central", e.get("energy"))
        if "low" in e and c is not None:
            assert e["low"] <= c <= e["high"], e


def test_central_values_are_the_published_figures(table):
    """Spot checks against the sources (shared/reference/energy.md), typed in by hand."""
    assert table.dram_memory == "hbm2" and table.energy("dram", "read", 1) == 4.0   # O'Connor
    assert table.with_dram("ddr").energy("dram", "write", 1) == pytest.approx((1.3e3 + 2.6e3) / 2 / 64, rel=1e-2)  # Horowitz
    assert table.with_dram("sata-sim").energy("dram", "read", 1) == pytest.approx(468.8 / 1024, rel=1e-3)
    assert table.energy("mult_pe", "mac", 8) == pytest.approx(0.205 + 0.092)
    low = table.at_levels(logic="low")
    assert low.energy("mult_pe", "mac", 8) == pytest.approx(0.2 + 0.05)             # Horowitz 45 nm
    assert low.energy("scratchpad", "read", 16) == pytest.approx(0.063)              # no other figure
    assert table.at_levels(sram_access="high").sram_access(32 * 1024, 64, "read") == pytest.approx(20.0, rel=1e-2)


def test_leakage_is_the_published_cacti_points_with_no_factor(table):
    # log-log between (32 KB, 6.26 mW) and (144 KB, 24.9 mW), by hand
    slope = math.log(24.9 / 6.26) / math.log(144 / 32)
    assert table.sram_leakage_mw(64 * 1024) == pytest.approx(6.26 * 2 ** slope)
    assert table.sram_leakage_mw(144 * 1024, "low") == pytest.approx(4.02, rel=1e-2)   # CACTI, 300 K
    assert table.sram_leakage_mw(256 * 1024, "high") == pytest.approx(4 * 27.0, rel=1e-3)
    for kb in (8, 32, 64, 144, 512):
        lo, c, hi = (table.sram_leakage_mw(kb * 1024, lv) for lv in ("low", "central", "high"))
        assert lo <= c <= hi


def test_levels_and_dram_types_are_checked(table):
    with pytest.raises(ValueError, match="unknown DRAM type"):
        table.with_dram("ddr9")
    with pytest.raises(ValueError, match="level"):
        table.at_levels(dram="highest")
    with pytest.raises(ValueError, match="unknown constant group"):
        table.at_levels(cooling="low")
    assert table.at_levels(dram="high").with_dram("lpddr4").energy("dram", "read", 1) == 14.0


def test_actions_are_sums_of_their_published_primitives(table):
    # SATA's units: forward MAC with a spike operand = acc + and; MAC = mul8 + add16
    assert table.energy("spike_pe", "accumulate", 16) == pytest.approx(0.006 + 0.092)
    assert table.energy("mult_pe", "mac", 8) == pytest.approx(0.205 + 0.092)
    assert table.energy("scratchpad", "read", 16) == pytest.approx(0.063)


@pytest.mark.parametrize("component, action, bits", [
    ("mult_pe", "mac", 16),          # the table has no 16-bit multiplier MAC action
    ("mult_pe", "divide", 8),        # unknown action
    ("tensor_core", "mac", 8),       # unknown component
    ("dram", "read", 8),             # DRAM is per bit
    ("dram", "refresh", 1),
    ("glb.nonexistent", "read", 64),
    ("glb.spike_in", "read", 256),   # spike_in is 64 bits wide
    ("glb.spike_in", "erase", 64),
])
def test_unknown_action_is_an_error_not_zero(table, component, action, bits):
    mems = {"spike_in": Memory("spike_in", 32768, 64)}
    with pytest.raises(UnknownActionError):
        table.energy(component, action, bits, mems)


def test_sram_interpolation_reproduces_published_points(table):
    assert table.sram_access(32 * 1024, 256, "read") == pytest.approx(11.03)
    assert table.sram_access(32 * 1024, 256, "write") == pytest.approx(12.77)
    assert table.sram_access(144 * 1024, 256, "read") == pytest.approx(28.63)
    assert table.sram_access(256 * 1024, 64, "read") == pytest.approx(17.1, rel=1e-3)
    assert table.sram_leakage_mw(144 * 1024) == pytest.approx(24.9)


def test_sram_energy_grows_with_size_and_width(table):
    sizes = [8, 16, 32, 64, 128, 256, 512]
    e = [table.sram_access(k * 1024, 256, "read") for k in sizes]
    assert all(a < b for a, b in zip(e, e[1:]))
    w = [table.sram_access(64 * 1024, b, "read") for b in (32, 64, 128, 256, 512)]
    assert all(a < b for a, b in zip(w, w[1:]))
    assert all(math.isfinite(x) and x > 0 for x in e + w)


def test_overrides_change_only_what_they_name(table):
    t2 = table.with_overrides(dram_pj_per_bit=5.0, scale={"mult_pe": 2.0})
    assert t2.energy("dram", "read", 1) == 5.0
    assert t2.energy("mult_pe", "mac", 8) == pytest.approx(2 * table.energy("mult_pe", "mac", 8))
    assert t2.energy("spike_pe", "accumulate", 16) == table.energy("spike_pe", "accumulate", 16)
    with pytest.raises(UnknownActionError):
        table.with_overrides(scale={"warp_drive": 1.1})


def test_bad_table_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_energy_table(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("primitives: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_energy_table(bad)
    text = DEFAULT_TABLE.read_text().replace("source: \"[SATA] add8\"", "")
    nosrc = tmp_path / "nosrc.yaml"
    nosrc.write_text(text)
    with pytest.raises(ValueError, match="source"):
        load_energy_table(nosrc)
    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(DEFAULT_TABLE.read_text().replace("treatment: published, source: \"[SATA] add8\"",
                                                        "treatment: calibrated, source: \"[SATA] add8\""))
    with pytest.raises(ValueError, match="calibrated"):
        load_energy_table(fitted)
    inverted = tmp_path / "inverted.yaml"
    inverted.write_text(DEFAULT_TABLE.read_text().replace("central: 13.5, low: 13.0", "central: 13.5, low: 15.0"))
    with pytest.raises(ValueError, match="low"):
        load_energy_table(inverted)


def test_lane_enabled_accesses_are_priced_at_their_width(table):
    """A write of one 8-bit lane (cluster 1's q1 values into line1) costs less than a whole
    word of the port but more than its share of it; wider than the port is an error."""
    mems = {"interstage": Memory("interstage", 65536, 256)}
    lane = table.energy("glb.interstage", "write", 8, mems)
    word = table.energy("glb.interstage", "write", 256, mems)
    assert word / 32 < lane < word / 4
    assert lane == pytest.approx(table.sram_access(65536, 256, "write") * 0.1349)
    with pytest.raises(UnknownActionError):
        table.energy("glb.interstage", "write", 512, mems)
