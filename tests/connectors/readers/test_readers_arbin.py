"""Arbin CSV exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors.readers import MissingExtraError, detect_format, read_archive
from cycler_writers import as_xls, synthetic_cell, write_arbin, write_arbin_xlsx
from real_files import REAL, assert_counters_match_current, assert_discharge_negative, assert_wire_ready


def test_arbin_round_trip_with_gap(tmp_path: Path) -> None:
    cell = synthetic_cell(gap_s=7200.0)
    path = write_arbin(tmp_path / "cell_CH1.csv", cell)
    assert detect_format(path) == "arbin"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    # Date_Time says when; Test_Time(s) keeps sub-second resolution when they agree.
    np.testing.assert_allclose(got.t, cell.t, atol=1e-4)
    np.testing.assert_allclose(got.v, cell.v, atol=1e-6)
    np.testing.assert_allclose(got.i, cell.i, atol=1e-6)
    np.testing.assert_allclose(got.temp_c, cell.temp_c, atol=1e-2)
    np.testing.assert_array_equal(got.cycle, cell.cycle)
    assert archive.report.columns["timestamp"] == "Date_Time"
    assert "arbin csv convention" in archive.report.sign_convention
    assert got.meta["format"] == "arbin csv"


def test_arbin_xls_of_older_software_reads_as_its_xlsx_does(tmp_path: Path) -> None:
    """Excel 97-2003 workbooks (older Arbin software) through xlrd: the same sheets, cells and
    dates as the XLSX of the same data; before, a ".xls" was "a binary file of no supported format"."""
    pytest.importorskip("xlrd")
    pytest.importorskip("xlwt")
    cell = synthetic_cell()
    xlsx = write_arbin_xlsx(tmp_path / "arbin.xlsx", {"Channel_1-008": cell}, rows_per_sheet=50)
    path = as_xls(xlsx)
    assert detect_format(path) == "arbin-xlsx"
    archive, reference = read_archive(path, tz="UTC"), read_archive(xlsx, tz="UTC")
    for name in ("t", "v", "i", "step", "cycle"):
        np.testing.assert_array_equal(getattr(archive.only(), name), getattr(reference.only(), name))
    assert archive.report.rows_rejected == 0 and archive.report.format == "arbin xlsx"


def test_arbin_xlsx_reads_its_channel_sheets_in_order(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    cell = synthetic_cell()
    path = write_arbin_xlsx(tmp_path / "arbin.xlsx", {"Channel_1-008": cell}, rows_per_sheet=50)  # 3 sheets
    assert detect_format(path) == "arbin-xlsx"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)
    np.testing.assert_allclose(got.v, cell.v)
    np.testing.assert_allclose(got.i, cell.i)
    np.testing.assert_array_equal(got.step, cell.step)
    assert archive.report.format == "arbin xlsx" and "arbin xlsx convention" in archive.report.sign_convention

    other = synthetic_cell(cycles=3)
    path = write_arbin_xlsx(tmp_path / "two.xlsx", {"Channel_1-008": cell, "Channel_2-009": other}, rows_per_sheet=50)
    archive = read_archive(path, tz="UTC")
    assert list(archive.cells) == ["Channel_1-008", "Channel_2-009"]  # one cell per channel, not one merged
    np.testing.assert_allclose(archive.cells["Channel_2-009"].i, other.i)
    np.testing.assert_allclose(archive.cells["Channel_1-008"].t, cell.t, atol=1e-3)


def test_arbin_paused_test_keeps_the_wall_clock(tmp_path: Path) -> None:
    # Arbin's test clock stops while a channel is paused; the wall clock does not.
    cell = synthetic_cell()
    path = write_arbin(tmp_path / "p.csv", cell)
    lines = path.read_text().splitlines()
    half = len(lines) // 2
    shifted = []
    for k, line in enumerate(lines):
        fields = line.split(",")
        if k >= half:
            fields[1] = f"{float(fields[1]) - 600.0:.4f}"  # elapsed clock lost the 10-minute pause
        shifted.append(",".join(fields))
    path.write_text("\n".join(shifted) + "\n")
    archive = read_archive(path, tz="UTC")
    np.testing.assert_allclose(archive.only().t, cell.t, atol=1e-6)
    assert any("disagree" in w for w in archive.report.warnings)


def test_arbin_us_dates_and_local_zone(tmp_path: Path) -> None:
    path = tmp_path / "us.csv"
    path.write_text(
        "Data_Point,Date_Time,Test_Time(s),Current(A),Voltage(V),Cycle_Index,Step_Index\n"
        "1,07/01/2024 12:00:00.500,0.5,0.1,3.0,1,1\n"
        "2,07/01/2024 12:00:01.500,1.5,0.1,3.1,1,1\n"
    )
    got = read_archive(path, tz="America/New_York").only()
    np.testing.assert_allclose(got.t, [1719849600.5, 1719849601.5])


def test_real_arbin_export_reads_without_a_mapping() -> None:
    path = REAL / "arbin_example.csv"
    assert detect_format(path) == "arbin"
    archive = read_archive(path, tz="UTC")
    report, got = archive.report, archive.only()
    assert (report.rows_read, report.rows_kept, report.rows_rejected) == (2142, 2142, 0)
    # MITS names without units ("Current", "Charge_Capacity") are in Arbin's base units.
    assert report.columns == {
        "time": "Test_Time", "timestamp": "DateTime", "voltage": "Voltage", "current": "Current",
        "cycle": "Cycle_Index", "step": "Step_Index", "temperature": "Temperature",
        "charge_capacity": "Charge_Capacity", "discharge_capacity": "Discharge_Capacity",
    }
    assert report.units["current"] == "A" and report.units["charge_capacity"] == "Ah"
    # DateTime is Unix seconds truncated to the second; Test_Time keeps the sub-second part.
    assert 1499006353.0 <= got.t[0] < 1499006354.0
    assert report.time_origin.startswith("timestamps")
    assert (got.t[-1] - got.t[0]) / 3600 == pytest.approx(1.7524, abs=1e-3)
    assert set(got.cycle.tolist()) == {1, 2}
    assert 28.0 < np.nanmin(got.temp_c) and np.nanmax(got.temp_c) < 33.0
    assert got.charge_mah[0] == pytest.approx(880.0053)  # 0.8800053 Ah in the file
    assert_wire_ready(got)
    assert_discharge_negative(got)
    assert_counters_match_current(got, rel=0.02)


def test_arbin_units_after_an_underscore(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text(
        "Data_Point,Test_Time_s,Current_mA,Voltage_V,Charge_Capacity_mAh,Discharge_Capacity_mAh\n"
        "1,0.0,-500,3.30,0,0\n"
        "2,3.6,-500,3.20,0,0.5\n"
    )
    archive = read_archive(path, start=0.0)
    got = archive.only()
    assert archive.report.columns["time"] == "Test_Time_s"
    np.testing.assert_allclose(got.i, [-0.5, -0.5])
    np.testing.assert_allclose(got.discharge_mah, [0.0, 0.5])
    assert archive.report.units["current"] == "mA"


def test_arbin_table_export_with_serial_dates(tmp_path: Path) -> None:
    # Channel_Normal_Table of an Arbin .res file as mdb-export writes it: DateTime is an
    # OLE / spreadsheet serial date (days since 1899-12-30), 42587.6815162037 being
    # 2016-08-05 16:21:23, not 42587 s after 1970 (which put 238 h of test into 10 s).
    path = tmp_path / "res_normal.csv"
    path.write_text(
        "Test_ID,Data_Point,Test_Time,Step_Time,DateTime,Step_Index,Cycle_Index,Is_FC_Data,Current,Voltage,"
        "Charge_Capacity,Discharge_Capacity\n"
        "1,1,300.0104819316021,300.0104819316021,42587.6815162037,1,1,0,0,3.0976174,0,0\n"
        "1,2,600.0149465474614,600.0149465474614,42587.68498842593,1,1,0,0,3.1000805,0,0\n"
        "1,3,610.0,10.0,42587.68510416667,2,1,0,-0.0002,3.05,0,0.0000005\n"
    )
    archive = read_archive(path)
    got = archive.only()
    assert archive.report.units["timestamp"] == "spreadsheet serial date (days since 1899-12-30)"
    assert any("read as spreadsheet serial dates" in w for w in archive.report.warnings)
    # 2016-08-05 16:21:23 UTC; the elapsed clock keeps its resolution within the rounded stamps.
    assert got.t[0] == pytest.approx(1470414083.0, abs=1.0)
    np.testing.assert_allclose(np.diff(got.t), [300.0044646, 9.9850535], atol=1e-3)
    # Wall-clock dates: the cycler's zone moves them like any naive timestamp.
    berlin = read_archive(path, tz="Europe/Berlin").only().t
    np.testing.assert_allclose(berlin, got.t - 7200.0, atol=1e-3)
    # A stated unit wins: --unit timestamp=s keeps seconds.
    seconds = read_archive(path, units={"timestamp": "s"})
    assert seconds.report.units["timestamp"] == "s since the epoch"


def test_arbin_res_file_is_read_through_mdb_export_in_sample_order() -> None:
    # An Arbin .res file is an Access database whose rows come out in storage order
    # (rows 1321-1560 after row 1800 in this one): read in Arbin's Data_Point order.
    path = REAL / "navani_arbin_example.res"
    assert detect_format(path) == "arbin-res"
    archive = read_archive(path)
    got = archive.only()
    assert got.cell == "navani_arbin_example" and len(got) == 2150
    assert archive.report.format == got.meta["format"] == "arbin res"
    assert archive.report.source == got.meta["source"] == str(path)
    assert archive.report.units["timestamp"] == "spreadsheet serial date (days since 1899-12-30)"
    # Serial date 45131.7847 is 2023-07-24 18:50:00; the elapsed clock, anchored to the dates at
    # their median offset, starts within the few seconds they drift apart.
    assert got.t[0] == pytest.approx(1690224600.0, abs=10.0)
    assert_wire_ready(got)
    assert_discharge_negative(got)
    assert_counters_match_current(got, rel=0.01)


def test_arbin_res_without_mdbtools_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.readers.arbin.shutil.which", lambda name: None)
    with pytest.raises(MissingExtraError, match="apt install mdbtools"):
        read_archive(REAL / "navani_arbin_example.res")
