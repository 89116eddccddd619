"""Generic tables: BDF and wire names, mappings, units, sign, bad rows, gaps, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from connectors.readers import (
    AmbiguousUnitError,
    ColumnMapping,
    MissingColumnError,
    ReaderError,
    load_mapping,
    read_archive,
)
from cycler_writers import START, synthetic_cell, write_basytec, write_bdf, write_bitrode, write_digatron
from real_files import REAL, assert_counters_match_current, assert_discharge_negative, assert_wire_ready


def test_bdf_round_trip_needs_no_mapping(tmp_path: Path) -> None:
    cell = synthetic_cell()
    archive = read_archive(write_bdf(tmp_path / "x.bdf.csv", cell))
    got = archive.only()
    assert archive.report.format == "bdf"
    assert got.cell == "x"  # BDF's ".bdf" before the extension is not part of the cell's name
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)
    np.testing.assert_allclose(got.v, cell.v, atol=1e-6)
    np.testing.assert_allclose(got.i, cell.i, atol=1e-6)
    np.testing.assert_allclose(got.temp_c, cell.temp_c, atol=1e-2)
    np.testing.assert_array_equal(got.cycle, cell.cycle)
    np.testing.assert_array_equal(got.step, cell.step)
    assert archive.report.rows_rejected == 0
    assert "bdf convention" in archive.report.sign_convention


def test_wire_names_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "frames.csv"
    path.write_text(
        "cell,t,v,i,temp_c\nA,1700000000.5,3.1,-0.2,130\nB,1700000001.0,3.2,0.2,131\nA,1700000002.0,3.0,-0.2,\n"
    )
    archive = read_archive(path)
    assert set(archive.cells) == {"A", "B"}
    a = archive.cells["A"]
    np.testing.assert_allclose(a.t, [1700000000.5, 1700000002.0])
    np.testing.assert_allclose(a.i, [-0.2, -0.2])
    assert np.isnan(a.temp_c[1])  # an empty temperature is a missing reading, not a bad row
    assert read_archive(path, cell="B").only().v.tolist() == [3.2]
    with pytest.raises(ReaderError, match="'C' is not in"):
        read_archive(path, cell="C")


@pytest.mark.parametrize(
    ("headers", "scale_t", "scale_v", "scale_i"),
    [
        (("time (s)", "voltage (V)", "current (A)"), 1.0, 1.0, 1.0),
        (("time (ms)", "voltage (mV)", "current (mA)"), 1e3, 1e3, 1e3),
        (("Time / h", "Voltage / mV", "Current / uA"), 1 / 3600, 1e3, 1e6),
        (("Time [min]", "Voltage [V]", "Current [µA]"), 1 / 60, 1.0, 1e6),
    ],
)
def test_units_are_read_from_headers(tmp_path: Path, headers, scale_t, scale_v, scale_i) -> None:
    cell = synthetic_cell(n_per_step=5, cycles=1)
    lines = [",".join(headers)]
    rows = zip((cell.elapsed * scale_t).tolist(), (cell.v * scale_v).tolist(), (cell.i * scale_i).tolist())
    lines += [f"{e!r},{v!r},{i!r}" for e, v, i in rows]
    path = tmp_path / "u.csv"
    path.write_text("\n".join(lines) + "\n")
    got = read_archive(path, start=START, discharge_positive=False).only()
    np.testing.assert_allclose(got.t, cell.t, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.v, cell.v, rtol=1e-12)
    np.testing.assert_allclose(got.i, cell.i, rtol=1e-12)


def test_mapping_units_override_a_header_that_lies(tmp_path: Path) -> None:
    # The logger printed "(A)" but recorded milliamperes: only the user can know.
    path = tmp_path / "lie.csv"
    path.write_text("Elapsed (s),U (V),I (A)\n0,3.0,-500\n1,2.9,-500\n")
    got = read_archive(path, mapping={"current": "I (A)"}, units={"current": "mA"}, start=0.0)
    np.testing.assert_allclose(got.only().i, [-0.5, -0.5])
    assert got.report.units["current"] == "mA"


def test_mapping_file_in_toml(tmp_path: Path) -> None:
    toml = tmp_path / "map.toml"
    toml.write_text(
        '[columns]\ntime = "Zeit"\nvoltage = "Spannung"\ncurrent = "Strom"\n'
        '[units]\ntime = "min"\nvoltage = "mV"\ncurrent = "mA"\n'
        "[options]\ndischarge_positive = true\n"
    )
    data = tmp_path / "de.tsv"
    data.write_text("Zeit\tSpannung\tStrom\n0\t3000\t100\n0,5\t2990\t100\n")
    mapping = load_mapping(toml)
    assert mapping.units == {"time": "min", "voltage": "mV", "current": "mA"}
    archive = read_archive(data, mapping=toml, start=100.0)
    got = archive.only()
    np.testing.assert_allclose(got.t, [100.0, 130.0])  # decimal comma in a TSV
    np.testing.assert_allclose(got.v, [3.0, 2.99])
    np.testing.assert_allclose(got.i, [-0.1, -0.1])  # discharge positive in the file -> negated
    assert "negated" in archive.report.sign_convention


def test_unitless_current_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "bare.csv"
    path.write_text("time (s),voltage (V),current\n0,3,1\n")
    with pytest.raises(AmbiguousUnitError, match=r"'current'.*units=\{'current'"):
        read_archive(path)


def test_unknown_unit_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "kA.csv"
    path.write_text("time (s),voltage (V),current (kA)\n0,3,1\n")
    with pytest.raises(AmbiguousUnitError, match="'kA' is not a known current unit"):
        read_archive(path)


def test_missing_voltage_names_the_columns_and_the_option(tmp_path: Path) -> None:
    path = tmp_path / "nov.csv"
    path.write_text("time (s),Ewe-Ece (V),current (A)\n0,3,1\n")
    with pytest.raises(MissingColumnError, match=r"--map voltage=COLUMN.*Ewe-Ece \(V\)"):
        read_archive(path)
    with pytest.raises(MissingColumnError, match="'nope' for voltage is not in the file"):
        read_archive(path, mapping=ColumnMapping.from_pairs(["voltage=nope"]))
    with pytest.raises(ReaderError, match="unknown mapping role"):
        ColumnMapping({"volts": "x"})


def test_columns_named_by_their_unit_are_read_in_it(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text("time,volts,amps\n0,0.5,-0.002\n10,0.45,-0.002\n")
    # Voltage and current found by their names, in V and A; elapsed time states no unit: the one fix.
    with pytest.raises(AmbiguousUnitError) as raised:
        read_archive(path)
    message = str(raised.value)
    assert "--unit time=s" in message and "volts" in message.split("columns are")[-1]
    assert "voltage" not in message.split("columns are")[0] and "current" not in message.split("columns are")[0]
    got = read_archive(path, units={"time": "s"}).only()
    np.testing.assert_allclose(got.v, [0.5, 0.45])
    np.testing.assert_allclose(got.i, [-0.002, -0.002])
    path.write_text("Elapsed (min),mV,milliamps\n0,500,-2\n1,450,-2\n")
    got = read_archive(path).only()
    np.testing.assert_allclose(got.v, [0.5, 0.45])
    np.testing.assert_allclose(got.i, [-0.002, -0.002])
    np.testing.assert_allclose(np.diff(got.t), [60.0])
    # Elapsed time named by its unit too (ampworks' HPPC and ICI exports).
    path.write_text("Seconds,Amps,Volts,State\n0.0,-0.0,4.17,R\n10.0,-0.0032,4.1,D\n")
    got = read_archive(path).only()
    np.testing.assert_allclose(np.diff(got.t), [10.0])
    np.testing.assert_allclose(got.i, [0.0, -0.0032])
    path.write_text("Hours,mV,milliamps\n0,500,-2\n0.5,450,-2\n")
    np.testing.assert_allclose(np.diff(read_archive(path).only().t), [1800.0])


def test_everything_a_file_lacks_is_listed_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "bare.csv"
    path.write_text("time,voltage,current\n0,0.5,-0.002\n")
    with pytest.raises(AmbiguousUnitError) as raised:
        read_archive(path)
    for fix in ("--unit time=s", "--unit voltage=V", "--unit current=A"):
        assert fix in str(raised.value)
    path.write_text("x,y,Temperature\n0,0.5,130\n")
    with pytest.raises(MissingColumnError) as raised:  # the missing columns and the unit of the one found
        read_archive(path)
    for fix in ("--map voltage=COLUMN", "--map current=COLUMN", "--map time=COLUMN", "--unit temperature="):
        assert fix in str(raised.value)


def test_broken_rows_are_reported_good_rows_kept_and_gaps_stay(tmp_path: Path) -> None:
    path = tmp_path / "dirty.csv"
    path.write_text(
        "Test Time / s,Voltage / V,Current / A\n"  # line 1
        "0,3.50,-0.1\n"  # 2
        "1,3.49,-0.1\n"  # 3
        "2,#VALUE!,-0.1\n"  # 4 bad voltage
        "3,3.47\n"  # 5 too few fields
        "\n"  # 6 blank
        "4,3.46,-0.1,extra\n"  # 7 too many fields
        "5,3.45,nan\n"  # 8 not finite
        "3605,3.60,0.0\n"  # 9 an hour-long pause: a gap, not a bad row
        "3606,3.61,0.0\n"  # 10
    )
    archive = read_archive(path, start=START)
    report = archive.report
    got = archive.only()
    np.testing.assert_allclose(got.t - START, [0, 1, 3605, 3606])
    np.testing.assert_allclose(got.v, [3.50, 3.49, 3.60, 3.61])
    assert (report.rows_read, report.rows_kept, report.rows_rejected) == (8, 4, 4)
    assert [r.line for r in report.rejected] == [4, 5, 7, 8]
    assert "#VALUE!" in report.rejected[0].reason
    assert "2 fields where the header has 3" in report.rejected[1].reason
    assert report.rejected[1].text == "3,3.47"
    assert "nan" in report.rejected[3].reason
    assert np.max(np.diff(got.t)) == 3604.0  # no samples were invented in the pause


def test_rejected_examples_are_capped_but_counted(tmp_path: Path) -> None:
    rows = [f"{k},{'x' if k % 2 else '3.0'},0.1" for k in range(100)]
    path = tmp_path / "many.csv"
    path.write_text("Test Time / s,Voltage / V,Current / A\n" + "\n".join(rows) + "\n")
    report = read_archive(path).report
    assert report.rows_rejected == 50
    assert len(report.rejected) == 10
    assert report.rejected[0].line == 3


def test_iso_timestamps_with_and_without_zone(tmp_path: Path) -> None:
    path = tmp_path / "iso.csv"
    path.write_text(
        "timestamp,voltage (V),current (A)\n"
        "2024-01-01T00:00:00Z,3.0,0.1\n"
        "2024-01-01 01:00:00.250+01:00,3.1,0.1\n"
        "2024-01-01 00:00:01.5,3.2,0.1\n"
        "01.01.2024,3.3,0.1\n"
    )
    archive = read_archive(path, tz="UTC")
    t = archive.only().t
    np.testing.assert_allclose(t - 1704067200.0, [0.0, 0.25, 1.5])
    assert archive.report.rows_rejected == 1
    berlin = read_archive(path, tz="Europe/Berlin").only().t
    assert berlin[2] == pytest.approx(1704067200.0 - 3600 + 1.5)  # naive -> local zone
    assert any("no time zone" in w for w in read_archive(path).report.warnings)


def test_sign_convention_given_or_detected(tmp_path: Path) -> None:
    cell = synthetic_cell()
    lines = ["time (s),voltage (V),current (A)"]  # discharge positive in this file
    lines += [f"{e},{v},{-i}" for e, v, i in zip(cell.elapsed.tolist(), cell.v.tolist(), cell.i.tolist())]
    path = tmp_path / "flip.csv"
    path.write_text("\n".join(lines) + "\n")
    auto = read_archive(path)
    np.testing.assert_allclose(auto.only().i, cell.i)
    assert "detected from the voltage trend" in auto.report.sign_convention
    np.testing.assert_allclose(read_archive(path, discharge_positive=True).only().i, cell.i)
    kept = read_archive(path, discharge_positive=False)
    np.testing.assert_allclose(kept.only().i, -cell.i)
    assert any("suggests discharge_positive=True" in w for w in kept.report.warnings)


def test_sign_left_alone_with_a_warning_when_undecidable(tmp_path: Path) -> None:
    path = tmp_path / "rest.csv"
    path.write_text("time (s),voltage (V),current (A)\n0,3.0,0\n1,3.0,0\n")
    archive = read_archive(path)
    assert any("discharge_positive" in w for w in archive.report.warnings)
    assert archive.report.time_origin.startswith("default epoch")
    assert archive.only().t.tolist() == [0.0, 1.0]


def test_parquet_round_trip_with_typed_columns(tmp_path: Path) -> None:
    cell = synthetic_cell()
    table = pa.table({
        "Unix Time / s": cell.t,
        "Voltage / V": cell.v,
        "Current / A": cell.i,
        "Cycle Count / 1": pa.array(cell.cycle, pa.int32()),
        "Step Count / 1": pa.array(cell.step, pa.int32()),
    })
    path = tmp_path / "x.bdf.parquet"
    pq.write_table(table, path)
    archive = read_archive(path)
    got = archive.only()
    assert archive.report.format == "bdf parquet"
    np.testing.assert_array_equal(got.t, cell.t)
    np.testing.assert_array_equal(got.i, cell.i)
    np.testing.assert_array_equal(got.cycle, cell.cycle)


def test_parquet_timestamp_column_and_nulls(tmp_path: Path) -> None:
    stamps = pa.array([0, 1_000_000, None, 3_000_000], pa.timestamp("us", "UTC"))
    table = pa.table(
        {"timestamp": stamps, "voltage (V)": [3.0, 3.1, 3.2, None], "current (A)": [1.0, 1.0, 1.0, 1.0]}
    )
    path = tmp_path / "ts.parquet"
    pq.write_table(table, path)
    archive = read_archive(path, discharge_positive=False)
    assert archive.only().t.tolist() == [0.0, 1.0]
    assert [r.line for r in archive.report.rejected] == [3, 4]



BATTDAT = Path(__file__).parent / "data" / "battdat_raw_data.parquet"


def test_battdat_parquet_takes_its_units_from_the_schema(tmp_path: Path) -> None:
    """battdat writes bare column names and keeps their units in the table's metadata; its
    tables are all called raw_data.parquet, so the cell is named by the dataset's folder."""
    dataset = tmp_path / "cell-7"
    dataset.mkdir()
    (dataset / "raw_data.parquet").write_bytes(BATTDAT.read_bytes())
    archive = read_archive(dataset / "raw_data.parquet")
    got = archive.only()
    source = pq.read_table(BATTDAT)
    assert archive.report.format == "battdat parquet"
    assert got.cell == "cell-7"
    assert archive.report.units == {"time": "s", "voltage": "V", "current": "A"}
    assert "battdat parquet convention" in archive.report.sign_convention
    np.testing.assert_array_equal(got.t - got.t[0], source["test_time"].to_numpy())
    np.testing.assert_array_equal(got.i, source["current"].to_numpy())  # battdat: positive charges
    np.testing.assert_array_equal(got.cycle, source["cycle_number"].to_numpy())
    assert_wire_ready(got)
    assert_discharge_negative(got)


def test_battdat_parquet_timestamp_and_name(tmp_path: Path) -> None:
    table = pa.table({"test_time": [0.0, 10.0, 20.0], "time": [1.7e9, 1.7e9 + 10, 1.7e9 + 20],
                      "voltage": [3.0, 3.1, 3.2], "current": [-500.0, -500.0, 0.0], "temperature": [25.0, 25.5, 26.0]})
    described = {"test_time": {"units": "s"}, "time": {"units": "s"}, "voltage": {"units": "V"},
                 "current": {"units": "mA"}, "temperature": {"units": "C"}}
    table = table.replace_schema_metadata({"table_metadata": json.dumps(described),
                                           "battery_metadata": json.dumps({"name": "B12"})})
    pq.write_table(table, tmp_path / "raw_data.parquet")
    got = read_archive(tmp_path / "raw_data.parquet").only()
    assert got.cell == "B12"
    np.testing.assert_allclose(got.t, [1.7e9, 1.7e9 + 10, 1.7e9 + 20])
    np.testing.assert_allclose(got.i, [-0.5, -0.5, 0.0])
    np.testing.assert_allclose(got.temp_c, [25.0, 25.5, 26.0])


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(np.float64, st.tuples(st.integers(1, 60), st.just(3)), elements=finite),
)
def test_random_arrays_survive_a_csv_round_trip(tmp_path_factory, data: np.ndarray) -> None:
    path = tmp_path_factory.mktemp("prop") / "r.csv"
    t = START + np.cumsum(1.0 + np.abs(data[:, 0]))  # increasing: repeated times are settled (test_readers_repeats)
    lines = ["Unix Time / s,Voltage / V,Current / A"]
    lines += [f"{a!r},{b!r},{c!r}" for a, b, c in zip(t.tolist(), data[:, 1].tolist(), data[:, 2].tolist())]
    path.write_text("\n".join(lines) + "\n")
    got = read_archive(path).only()
    np.testing.assert_array_equal(got.t, t)
    np.testing.assert_array_equal(got.v, data[:, 1])
    np.testing.assert_array_equal(got.i, data[:, 2])


def test_elapsed_only_file_says_its_start_is_assumed(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("Test Time / s,Voltage / V,Current / A\n0,3.0,0.1\n5,3.1,0.1\n")
    assumed = read_archive(path).only()
    assert assumed.meta["start_assumed"] is True
    assert assumed.t.tolist() == [0.0, 5.0]
    assert read_archive(path, start=START).only().meta["start_assumed"] is False


def test_a_time_column_of_dates_is_absolute_time(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("Time,Voltage (V),Current (A)\n2024-01-01 00:00:00,3.0,0.1\n2024-01-01 00:00:10,3.1,0.1\n")
    archive = read_archive(path, tz="UTC")
    assert archive.only().t.tolist() == [1704067200.0, 1704067210.0]
    assert archive.report.columns["timestamp"] == "Time"
    assert archive.report.time_origin == "timestamps"


def test_real_battery_data_hub_raw_file_reads_without_a_mapping() -> None:
    archive = read_archive(REAL / "p492-13-raw.csv")
    report, got = archive.report, archive.only()
    # 78 impedance rows (Frequency_Hz set, Voltage_V -3.7865) are no cycler samples.
    assert (report.rows_read, report.rows_kept, report.rows_rejected) == (2021, 1943, 78)
    assert all("impedance (EIS) point" in r.reason for r in report.rejected)
    assert report.rejected[0].line == 1264
    assert {k: report.columns[k] for k in ("time", "timestamp", "voltage", "current", "temperature")} == {
        "time": "Time_s", "timestamp": "Datenum_d", "voltage": "Voltage_V", "current": "Current_A",
        "temperature": "Cell_Temperature_C",
    }
    assert (report.columns["charge_capacity"], report.columns["discharge_capacity"]) == (
        "Charge_Capacity_Ah", "Discharge_Capacity_Ah")
    assert report.units["voltage"] == "V" and report.units["charge_capacity"] == "Ah"
    assert "MATLAB date number" in report.units["timestamp"]
    # Datenum 737792.442372685 is 2020-01-02 10:37:01 (wall clock, read as UTC without tz).
    assert got.t[0] == pytest.approx(1577961421.0, abs=1.0)
    assert "detected from the voltage trend" in report.sign_convention
    # Stitched from several tests: the test clock skips the pauses the date numbers show.
    assert any("disagree at 2 point(s)" in w for w in report.warnings)
    assert (got.t[-1] - got.t[0]) / 86400 == pytest.approx(12.2, abs=0.05)
    assert set(got.cycle.tolist()) == {1, 2, 3, 4, 5, 6, 8, 9}
    assert np.all(np.isfinite(got.temp_c))
    assert_wire_ready(got)
    assert_discharge_negative(got)
    assert_counters_match_current(got, rel=0.06)


def test_real_battery_archive_time_series_reads_without_a_mapping() -> None:
    archive = read_archive(REAL / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv", tz="UTC")
    report, got = archive.report, archive.only()
    assert (report.rows_kept, report.rows_rejected) == (15, 0)
    assert report.columns["time"] == "Test_Time (s)" and report.columns["timestamp"] == "Date_Time"
    assert report.columns["charge_capacity"] == "Charge_Capacity (Ah)"
    assert report.columns["temperature"] == "Cell_Temperature (C)"
    assert np.all(np.isnan(got.temp_c))  # an empty column: missing readings, not bad rows
    assert got.t[0] == pytest.approx(1283438140.0, abs=0.5)  # 2010-09-02 14:35:40 + sub-second test time
    np.testing.assert_allclose(np.diff(got.t)[:3], [30.016, 30.015, 29.968], atol=1e-6)
    assert got.charge_mah[-1] == pytest.approx(59.0)  # 0.059 Ah
    assert_wire_ready(got)
    assert_discharge_negative(got)
    assert_counters_match_current(got, rel=0.06)


@pytest.mark.parametrize(
    ("header", "scale_t", "scale_v", "scale_i", "scale_q"),
    [
        ("Test_Time_s,Voltage_V,Current_A,Charge_Capacity_Ah", 1.0, 1.0, 1.0, 1e-3),
        ("Time_min,Voltage_mV,Current_mA,Charge_Capacity_mAh", 1 / 60, 1e3, 1e3, 1.0),
        ("test_time_second,voltage_volt,current_ampere,charging_capacity_ampere_hour", 1.0, 1.0, 1.0, 1e-3),
        ("Elapsed Time (h),Cell Voltage [V],I/uA,Q charge/mA.h", 1 / 3600, 1.0, 1e6, 1.0),
        ("Total Time (Sec),Potential (V),Current (A),Chg. Cap. (A.h)", 1.0, 1.0, 1.0, 1e-3),
    ],
)
def test_names_and_unit_suffixes_need_no_mapping(tmp_path: Path, header, scale_t, scale_v, scale_i, scale_q) -> None:
    cell = synthetic_cell(n_per_step=5, cycles=1)
    charge = np.cumsum(np.clip(cell.i, 0, None)) / 3.6  # mAh, 1 s steps
    lines = [header] + [f"{e!r},{v!r},{i!r},{q!r}" for e, v, i, q in zip(
        (cell.elapsed * scale_t).tolist(), (cell.v * scale_v).tolist(), (cell.i * scale_i).tolist(),
        (charge * scale_q).tolist())]
    path = tmp_path / "names.csv"
    path.write_text("\n".join(lines) + "\n")
    got = read_archive(path, start=START).only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-6)
    np.testing.assert_allclose(got.v, cell.v, rtol=1e-12)
    np.testing.assert_allclose(got.i, cell.i, rtol=1e-12)
    np.testing.assert_allclose(got.charge_mah, charge, rtol=1e-12)
    assert got.discharge_mah is None


def test_nan_in_an_optional_column_is_a_missing_value_not_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text(
        "Time_s,Voltage_V,Current_A,Cell_Temperature_C,Discharge_Capacity_Ah\n"
        "0,3.5,-1,25.0,0.0\n"
        "1,3.4,-1,NaN,NaN\n"  # missing readings
        "2,3.3,-1,nan,0.0005\n"
        "3,3.2,-1,n/a,\n"
        "4,3.1,-1,hot,0.001\n"  # not a number: a bad row
        "5,NaN,-1,25.0,0.0015\n"  # a required value cannot be missing
    )
    archive = read_archive(path, start=START)
    got = archive.only()
    np.testing.assert_allclose(got.t - START, [0, 1, 2, 3])
    np.testing.assert_array_equal(np.isnan(got.temp_c), [False, True, True, True])
    np.testing.assert_allclose(got.discharge_mah, [0.0, np.nan, 0.5, np.nan])
    assert [r.line for r in archive.report.rejected] == [6, 7]
    assert "'hot'" in archive.report.rejected[0].reason


def test_a_counter_without_a_unit_is_left_out_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("Time (s),Voltage (V),Current (A),Charge Capacity\n0,3.0,1,0\n1,3.1,1,0.3\n")
    archive = read_archive(path, start=START)
    assert archive.only().charge_mah is None
    assert any("'Charge Capacity' left out" in w and "units={'charge_capacity': 'Ah'}" in w
               for w in archive.report.warnings)
    given = read_archive(path, start=START, units={"charge_capacity": "mAh"}).only()
    np.testing.assert_allclose(given.charge_mah, [0.0, 0.3])


def test_matlab_date_numbers_are_wall_clock_time(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("Time_s,Datenum_d,Voltage_V,Current_A\n0,738887.5,3.0,1\n10,738887.500115741,3.1,1\n")
    utc = read_archive(path).only().t  # 738887.5 = 2023-01-01 12:00
    np.testing.assert_allclose(utc, [1672574400.0, 1672574410.0], atol=1e-3)
    berlin = read_archive(path, tz="Europe/Berlin").only().t
    np.testing.assert_allclose(berlin, utc - 3600.0, atol=1e-3)


def test_elapsed_time_follows_the_timestamps_across_pauses_but_not_their_jitter(tmp_path: Path) -> None:
    # The test clock stops during a pause (10 min); one timestamp is 3 s off (exporter jitter).
    truth = np.r_[np.arange(0, 100, 10), np.arange(700, 800, 10)]
    elapsed = np.r_[np.arange(0, 100, 10), np.arange(100, 200, 10)] + 0.25
    stamps = truth.copy()
    stamps[8] += 3
    rows = [f"{1700000000 + s},{e},3.{k},1" for k, (s, e) in enumerate(zip(stamps, elapsed))]
    path = tmp_path / "p.csv"
    path.write_text("Unix Time,Test Time (s),Voltage (V),Current (A)\n" + "\n".join(rows) + "\n")
    archive = read_archive(path)
    np.testing.assert_allclose(archive.only().t - 1700000000, truth)
    assert any("disagree at 1 point(s)" in w for w in archive.report.warnings)



def test_a_computer_clock_set_back_mid_test_does_not_send_the_cell_back_in_time(tmp_path: Path) -> None:
    # The timestamps fall back 72 s at row 30 (a time sync, as in real Neware .ndax files);
    # the test clock runs on. Anchored afresh there, 8 rows would go back in time.
    elapsed = np.arange(60) * 10.0 + 0.5
    stamps = 1700000000 + np.floor(elapsed)
    stamps[30:] -= 72
    rows = [f"{s:.0f},{e},3.5,1" for s, e in zip(stamps, elapsed)]
    path = tmp_path / "sync.csv"
    path.write_text("Unix Time,Test Time (s),Voltage (V),Current (A)\n" + "\n".join(rows) + "\n")
    archive = read_archive(path)
    np.testing.assert_allclose(archive.only().t - 1700000000, elapsed - 0.5)  # stamps truncated to the second
    assert any("fall back against the elapsed time 1 time(s), by up to 72.0 s" in w for w in archive.report.warnings)


def test_numeric_timestamps_in_days_are_dates_and_elapsed_seconds_stay_seconds(tmp_path: Path) -> None:
    # A numeric timestamp column without a unit is seconds since 1970, unless every value lies
    # where only a date in days can: spreadsheet serial dates, MATLAB date numbers.
    serial = tmp_path / "serial.csv"
    serial.write_text("Time_s,Timestamp,Voltage_V,Current_A\n0,44927.5,3.0,1\n10,44927.500115741,3.1,1\n")
    np.testing.assert_allclose(read_archive(serial).only().t, [1672574400.0, 1672574410.0], atol=1e-3)
    datenum = tmp_path / "datenum.csv"
    datenum.write_text("Time_s,Timestamp,Voltage_V,Current_A\n0,738887.5,3.0,1\n10,738887.500115741,3.1,1\n")
    got = read_archive(datenum)
    np.testing.assert_allclose(got.only().t, [1672574400.0, 1672574410.0], atol=1e-3)
    assert "MATLAB date number" in got.report.units["timestamp"]
    # Seconds that start at 0 (a timestamp column counting the test) are not days.
    elapsed = tmp_path / "elapsed.csv"
    elapsed.write_text("Timestamp,Voltage_V,Current_A\n0,3.0,1\n20000,3.1,1\n40000,3.2,1\n")
    got = read_archive(elapsed)
    np.testing.assert_allclose(got.only().t, [0.0, 20000.0, 40000.0])
    assert got.report.units["timestamp"] == "s since the epoch"
    # Epoch seconds of a real date stay seconds.
    unix = tmp_path / "unix.csv"
    unix.write_text("Time_s,Unix Time,Voltage_V,Current_A\n0,1672574400,3.0,1\n10,1672574410,3.1,1\n")
    np.testing.assert_allclose(read_archive(unix).only().t, [1672574400.0, 1672574410.0], atol=1e-3)


@pytest.mark.parametrize("stated_units", [False, True])
def test_bitrode_exports_read_without_a_mapping(tmp_path: Path, stated_units: bool) -> None:
    cell = synthetic_cell()
    archive = read_archive(write_bitrode(tmp_path / "bitrode.csv", cell, stated_units), start=START)
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t)
    np.testing.assert_allclose(got.v, cell.v)
    np.testing.assert_allclose(got.i, cell.i)
    warnings = " ".join(archive.report.warnings)
    if stated_units:  # the quoted "Total Time, S" below a preamble
        np.testing.assert_allclose(got.temp_c, cell.temp_c)
        assert "column names on line 4" in warnings and "states no units" not in warnings
    else:  # no unit in any header: Bitrode's own, said so
        assert archive.report.format == "bitrode csv"
        assert "time in s, voltage in V, current in A" in warnings


def test_units_in_the_row_below_the_column_names_are_read(tmp_path: Path) -> None:
    cell = synthetic_cell()
    archive = read_archive(write_digatron(tmp_path / "digatron.csv", cell))
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t)
    np.testing.assert_allclose(got.v, cell.v)
    np.testing.assert_allclose(got.i, cell.i)  # the units row says mA
    np.testing.assert_allclose(got.temp_c, cell.temp_c)
    assert archive.report.rows_rejected == 0
    assert "units from the row below the column names (line 5)" in " ".join(archive.report.warnings)



@pytest.mark.parametrize("time_header", ["Time (h:mm:ss)", "Test Time (hh:mm:ss.ms)", "Elapsed [h:min:s]"])
def test_a_header_that_names_a_clock_format_reads_its_durations(tmp_path: Path, time_header: str) -> None:
    path = tmp_path / "clock.csv"
    path.write_text(f"{time_header},Voltage (V),Current (mA)\n"
                    "0:00:00.000,3.5,-200\n23:59:59.500,3.4,-200\n123:00:30.250,3.3,-200\n")
    archive = read_archive(path)
    np.testing.assert_allclose(archive.only().t, [0.0, 86399.5, 442830.25])
    assert archive.report.units["time"] == "h:mm:ss"



def _dated(path: Path, header: str, stamps: list[str], sep: str = ",") -> Path:
    rows = [f"{stamp}{sep}{3.5 - 0.01 * k}{sep}-0.2" for k, stamp in enumerate(stamps)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_us_dates_with_am_pm_are_read(tmp_path: Path) -> None:
    stamps = ["03/01/2024 11:00:00 AM", "03/01/2024 12:00:00 PM", "03/01/2024 01:00:00 PM", "03/02/2024 12:30:00 AM"]
    archive = read_archive(_dated(tmp_path / "us.csv", "Date Time,Voltage (V),Current (A)", stamps))
    start = 1709290800.0  # 2024-03-01T11:00:00Z
    np.testing.assert_allclose(archive.only().t, [start, start + 3600, start + 7200, start + 48600])
    assert archive.report.rows_rejected == 0


def test_day_first_dates_are_told_from_month_first_by_the_steps_between_rows(tmp_path: Path) -> None:
    """05/03 is 5 March or 3 May: read month-first, the day's turn would jump two months."""
    stamps = [f"{day:02d}/03/2024 {hour:02d}:00:00" for day in (5, 6, 7) for hour in (0, 8, 16)]
    archive = read_archive(_dated(tmp_path / "eu.csv", "Datetime;Voltage (V);Current (A)", stamps, ";"))
    t = archive.only().t
    np.testing.assert_allclose(t - t[0], 8 * 3600.0 * np.arange(9))
    assert t[0] == 1709596800.0  # 2024-03-05T00:00:00Z
    assert any("%d/%m/%Y %H:%M:%S" in w and "other order of day and month" in w for w in archive.report.warnings)


def test_zoned_iso_timestamps_raise_no_zone_warning(tmp_path: Path) -> None:
    stamps = ["2024-03-01T09:00:00.000+01:00", "2024-03-01T09:01:00.000+01:00"]
    archive = read_archive(_dated(tmp_path / "iso.csv", "timestamp,voltage_V,current_A", stamps))
    np.testing.assert_allclose(archive.only().t, [1709280000.0, 1709280060.0])
    assert not any("time zone" in w for w in archive.report.warnings)


@pytest.mark.parametrize(("header", "units"), [
    ("time/s,Ewe/V,<I>/mA", {"time": "s", "voltage": "V", "current": "mA"}),  # BioLogic text saved as CSV
    ("Zeit [s],Spannung [V],Strom [A]", {"time": "s", "voltage": "V", "current": "A"}),  # a German export
])
def test_biologic_and_german_column_names(tmp_path: Path, header: str, units: dict[str, str]) -> None:
    path = tmp_path / "names.csv"
    path.write_text(f"{header}\n0,3.5,-2\n10,3.4,-2\n")
    archive = read_archive(path)
    assert archive.report.units == units
    np.testing.assert_allclose(archive.only().v, [3.5, 3.4])


def test_a_commented_header_is_found_and_a_date_without_its_time_does_not_reject_the_rows(tmp_path: Path) -> None:
    cell = synthetic_cell()
    archive = read_archive(write_basytec(tmp_path / "basytec.txt", cell), start=START)
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)  # "~Time[h]", in hours
    np.testing.assert_allclose(got.v, cell.v)
    np.testing.assert_allclose(got.i, cell.i)
    assert archive.report.rows_rejected == 0 and "timestamp" not in archive.report.columns
    assert "timestamps in 'Date' cannot be read as times" in " ".join(archive.report.warnings)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_unicode_text_of_a_spreadsheet_reads_as_the_utf8_file_does(tmp_path: Path, codec: str) -> None:
    """Excel's "Unicode text": UTF-16 after a byte-order mark (little-endian as Windows writes
    it, or big-endian), tab-separated. Its NUL bytes made it "a binary file" before."""
    cell = synthetic_cell()
    plain = read_archive(write_bdf(tmp_path / "x.csv", cell)).only()
    text = (tmp_path / "x.csv").read_text(encoding="utf-8").replace(",", "\t")
    unicode = tmp_path / "x.txt"
    unicode.write_bytes((b"\xfe\xff" if codec == "utf-16-be" else b"") + text.encode(codec))
    archive = read_archive(unicode)
    got = archive.only()
    assert archive.report.rows_rejected == 0
    for name in ("t", "v", "i", "temp_c"):
        np.testing.assert_array_equal(getattr(got, name), getattr(plain, name))


def test_an_elapsed_clock_that_starts_again_goes_on_from_the_row_before(tmp_path: Path) -> None:
    """A test resumed on the cycler restarts an export's elapsed time. With no date-time
    column the rows after the restart go on one sampling step after the row before it (they
    were all "stale" to the pipeline before); with one, the timestamps place them."""
    cell = synthetic_cell(cycles=4)
    half = len(cell.t) // 2
    elapsed = np.r_[cell.elapsed[:half], cell.elapsed[half:] - cell.elapsed[half]]
    rows = [f"{e:.3f},{v:.6f},{i:.6f}" for e, v, i in zip(elapsed, cell.v, cell.i)]
    path = tmp_path / "resumed.csv"
    path.write_text("Time (s),Voltage (V),Current (A)\n" + "\n".join(rows) + "\n")
    archive = read_archive(path)
    got = archive.only()
    assert len(got) == len(cell.t) and np.all(np.diff(got.t) > 0)
    np.testing.assert_allclose(np.diff(got.t), np.diff(cell.t))  # 1 s steps, the restart's too
    assert f"the elapsed time starts again (resumed at its sample {half + 1})" in " ".join(archive.report.warnings)

    stamped = tmp_path / "stamped.csv"
    stamped.write_text("Time (s),Unix Time / s,Voltage (V),Current (A)\n" + "\n".join(
        f"{e:.3f},{t + 3600.0 * (k >= half):.3f},{v:.6f},{i:.6f}"
        for k, (e, t, v, i) in enumerate(zip(elapsed, cell.t, cell.v, cell.i))) + "\n")
    archive = read_archive(stamped)
    assert archive.only().t[half] - archive.only().t[half - 1] == pytest.approx(3601.0)
    assert "starts again" not in " ".join(archive.report.warnings)


def _spreadsheet(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_a_spreadsheet_of_the_labs_own_reads_by_the_rules_of_a_csv(tmp_path: Path) -> None:
    """Time (s), Voltage (V), Current (mA) in a workbook: before, it went to the Neware reader,
    which found no time column. Notes above the names and a sheet of notes before the data
    are passed over; a workbook without voltage and current says what is missing."""
    cell = synthetic_cell()
    data = [["Time (s)", "Voltage (V)", "Current (mA)"]] + [
        [float(e), float(v), float(i) * 1000.0] for e, v, i in zip(cell.elapsed, cell.v, cell.i)]
    plain = read_archive(_spreadsheet(tmp_path / "a.xlsx", {"Data": data}))
    assert plain.report.format == "xlsx table" and plain.report.rows_rejected == 0
    got = plain.only()
    np.testing.assert_allclose(got.t - got.t[0], cell.elapsed)
    np.testing.assert_allclose(got.v, cell.v)
    np.testing.assert_allclose(got.i, cell.i)

    noted = read_archive(_spreadsheet(tmp_path / "b.xlsx", {
        "Info": [["Operator", "A. N. Other"], ["Cell", "B7"]],
        "Data": [["Test of B7"], ["started 2024-05-01"]] + data,
    }))
    np.testing.assert_array_equal(noted.only().i, got.i)
    assert "column names on sheet row 3 of 'Data'" in " ".join(noted.report.warnings)

    with pytest.raises(MissingColumnError, match="no current column found.*'Voltage \\(V\\)'"):
        read_archive(_spreadsheet(tmp_path / "c.xlsx", {"Data": [[row[0], row[1]] for row in data]}))


@pytest.mark.parametrize("elapsed", [False, True])
def test_the_hour_the_clocks_go_back_reads_as_its_second_pass(tmp_path: Path, elapsed: bool) -> None:
    """Berlin wall-clock timestamps logged every 60 s through 2024-10-27 03:00 CEST -> 02:00
    CET: the repeated hour read as its first pass went an hour back in time, and the pipeline
    refused it as stale. With or without an elapsed-time column beside the timestamps."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    start = datetime(2024, 10, 26, 23, 0, tzinfo=timezone.utc)  # 01:00 CEST
    utc = [start + timedelta(seconds=60 * k) for k in range(240)]
    walls = [u.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S") for u in utc]
    assert len(set(walls)) == 180  # one hour of wall-clock times appears twice
    lines = ["Date_Time," + ("Test_Time(s)," if elapsed else "") + "Voltage(V),Current(A)"]
    lines += [f"{w}," + (f"{60.0 * k}," if elapsed else "") + f"3.7,{0.1 if k % 120 < 60 else -0.1}"
              for k, w in enumerate(walls)]
    path = tmp_path / "dst.csv"
    path.write_text("\n".join(lines) + "\n")
    archive = read_archive(path, tz="Europe/Berlin", discharge_positive=False)
    np.testing.assert_allclose(archive.only().t, [u.timestamp() for u in utc])
    # Beside an elapsed clock, the timestamps that fall back are left to it.
    said = "fall back against the elapsed time" if elapsed else "the hour the Europe/Berlin clocks went back"
    assert said in " ".join(archive.report.warnings)
