"""Arbin CSV exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from connectors.readers import detect_format, read_archive
from cycler_writers import synthetic_cell, write_arbin


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
