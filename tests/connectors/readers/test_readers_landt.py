"""Landt XLSX exports, told apart from Neware's; synthetic workbooks (no redistributable Landt file exists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pytest

from connectors.readers import UnsupportedFormatError, detect_format, read_archive
from connectors.readers.landt import read_landt_xlsx
from cycler_writers import START, step_capacity_mah, synthetic_cell, write_landt_xlsx, write_neware_xlsx


def test_landt_record_sheets_are_read_by_their_own_reader(tmp_path: Path) -> None:
    cell = synthetic_cell(n_per_step=20, cycles=2, dt=10.0)
    path = write_landt_xlsx(tmp_path / "landt.xlsx", cell, rows_per_sheet=50)  # Record, Record1, Record2
    assert detect_format(path) == "landt"
    assert detect_format(write_neware_xlsx(tmp_path / "neware.xlsx", cell)) == "xlsx"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    assert archive.report.format == "landt xlsx" and archive.report.rows_kept == len(cell.t)
    np.testing.assert_allclose(got.t, cell.t, atol=1e-6)  # SysTime, with TestTime/Sec's resolution
    np.testing.assert_allclose(got.i, cell.i, atol=1e-9)  # mA, discharge negative as printed
    np.testing.assert_allclose(got.v, cell.v)
    assert "landt xlsx convention" in archive.report.sign_convention
    capacity = step_capacity_mah(cell)
    np.testing.assert_allclose(got.charge_mah, np.where(cell.i > 0, capacity, 0.0), atol=1e-9)
    np.testing.assert_allclose(got.discharge_mah, np.where(cell.i < 0, capacity, 0.0), atol=1e-9)
    assert archive.report.units["capacity"] == "mAh" and archive.report.units["time"] == "Sec"


def test_landt_single_sheet_below_test_information(tmp_path: Path) -> None:
    cell = synthetic_cell(n_per_step=5, cycles=1)
    path = write_landt_xlsx(tmp_path / "lanhe.xlsx", cell, single_sheet=True)
    book = openpyxl.load_workbook(path)
    book.active.cell(row=8, column=7, value="--")  # the third data row (header on row 5) loses its voltage
    book.save(path)
    assert detect_format(path) == "landt"
    archive = read_archive(path, tz="UTC")
    np.testing.assert_allclose(archive.only().t, np.delete(cell.t, 2), atol=1e-6)
    assert [r.line for r in archive.report.rejected] == [8]


def test_coarse_test_time_in_hours_is_spread_and_duplicates_dropped(tmp_path: Path) -> None:
    # Samples every 18 s, printed in hours with two decimals: two rows per 0.01 h tick (36 s).
    cell = synthetic_cell(n_per_step=10, cycles=1, dt=18.0)
    resting = cell.i == 0
    cell.v[resting] += 1e-4 * np.arange(resting.sum())  # relaxing: no two samples are alike
    path = write_landt_xlsx(tmp_path / "coarse.xlsx", cell, hours=True, systime=False)
    book = openpyxl.load_workbook(path)
    sheet = book["Record"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    del book["Record"]
    sheet = book.create_sheet("Record", 0)
    for k, row in enumerate(rows):
        sheet.append(row)
        if k in (10, 20):  # the last row of a step written twice
            sheet.append(row)
    book.save(path)
    archive = read_archive(path, start=START)
    got = archive.only()
    report = archive.report
    assert report.rows_duplicate == 2 and "2 exact duplicates dropped" in report.summary()
    assert (report.rows_read, report.rows_kept) == (len(cell.t) + 2, len(cell.t))
    assert np.all(np.diff(got.t) > 0)
    np.testing.assert_allclose(got.t, cell.t, atol=1e-6)  # each pair spread over its 36 s tick
    assert any("15 rows shared a timestamp" in w and "resolution of 36 s" in w for w in report.warnings)


def test_coarse_test_time_yields_to_the_wall_clock(tmp_path: Path) -> None:
    cell = synthetic_cell(n_per_step=10, cycles=1, dt=18.0)
    archive = read_archive(write_landt_xlsx(tmp_path / "c.xlsx", cell, hours=True), tz="UTC")
    np.testing.assert_allclose(archive.only().t, cell.t)
    assert any("coarser than the timestamps" in w for w in archive.report.warnings)


def test_a_workbook_without_a_landt_header_says_what_to_do(tmp_path: Path) -> None:
    path = write_neware_xlsx(tmp_path / "n.xlsx", synthetic_cell(n_per_step=2, cycles=1))
    with pytest.raises(UnsupportedFormatError, match="no sheet has a Landt header row"):
        read_landt_xlsx(path)
