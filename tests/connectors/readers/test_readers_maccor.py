"""Maccor text exports: current magnitude with a C/D/R state column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors.readers import detect_format, read_archive
from cycler_writers import synthetic_cell, write_maccor
from real_files import REAL, assert_wire_ready


def test_maccor_round_trip_sign_from_state(tmp_path: Path) -> None:
    cell = synthetic_cell(gap_s=90.0)
    path = write_maccor(tmp_path / "synthetic.001", cell)
    assert detect_format(path) == "maccor"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-4)
    np.testing.assert_allclose(got.v, cell.v, atol=1e-9)
    np.testing.assert_allclose(got.i, cell.i, atol=1e-9)  # magnitudes signed by State
    np.testing.assert_array_equal(got.step, cell.step)
    np.testing.assert_allclose(got.temp_c, cell.temp_c)
    assert "'State' labels" in archive.report.sign_convention


def test_maccor_without_dpt_time_starts_at_date_of_test(tmp_path: Path) -> None:
    cell = synthetic_cell(n_per_step=3, cycles=1)
    path = write_maccor(tmp_path / "x.txt", cell)
    lines = path.read_text().splitlines()
    keep = [k for k, name in enumerate(lines[1].split("\t")) if name != "DPt Time"]
    trimmed = lines[:1] + ["\t".join(line.split("\t")[k] for k in keep) for line in lines[1:]]
    path.write_text("\n".join(trimmed) + "\n")
    archive = read_archive(path, tz="UTC")
    np.testing.assert_allclose(archive.only().t, cell.t, atol=1e-4)
    assert archive.report.time_origin == "start from the file header + elapsed"


def test_maccor_state_overrides_a_signed_export_and_bad_rows_are_kept_out(tmp_path: Path) -> None:
    path = tmp_path / "signed.txt"
    path.write_text(
        "Today's Date\t01/02/2024\tDate of Test:\t01/01/2024 1:00:00 PM\n"
        "Rec#\tCyc#\tStep\tTestTime\tAmps\tVolts\tState\n"
        "1\t1\t1\t0d 00:00:00.00\t-0.25\t3.5\tD\n"
        "2\t1\t1\t0d 00:00:01.50\t0.25\t3.4\tD\n"
        "3\t1\t2\t0d 00:00:02.x\t0\t3.4\tR\n"
        "4\t1\t3\t1d 00:00:03.00\t0.25\t3.5\tC\n"
    )
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    np.testing.assert_allclose(got.i, [-0.25, -0.25, 0.25])
    np.testing.assert_allclose(got.t - 1704114000.0, [0.0, 1.5, 86403.0])
    assert archive.report.rejected[0].line == 5


def test_real_maccor_export_in_minutes() -> None:
    path = REAL / "maccor_example.001"
    assert detect_format(path) == "maccor"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    assert archive.report.columns["time"] == "Test (Min)" and archive.report.units["time"] == "Min"
    # "Test (Min)" 0.1667 is 10 s after the first row, as "DPt Time" 03/31/2016 16:05:41 says.
    np.testing.assert_allclose(got.t - got.t[0], np.arange(8) * 10.0, atol=0.02)
    assert got.t[0] == pytest.approx(1459440331.0, abs=1.0)
    assert archive.report.columns["capacity"] == "Amp-hr"
    np.testing.assert_array_equal(got.charge_mah, np.zeros(8))  # a rest: nothing counted
    assert_wire_ready(got)


def test_maccor_amp_hours_go_to_the_counter_of_the_state(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text(
        "Today's Date\t01/02/2024\tDate of Test:\t01/01/2024 1:00:00 PM\n"
        "Rec#\tCyc#\tStep\tTest (Sec)\tAmp-hr\tAmps\tVolts\tState\n"
        "1\t1\t1\t0\t0.0000\t0.5\t3.50\tD\n"
        "2\t1\t1\t36\t0.0050\t0.5\t3.40\tD\n"
        "3\t1\t2\t72\t0.0000\t0.0\t3.42\tR\n"
        "4\t1\t3\t108\t0.0050\t0.5\t3.55\tC\n"
    )
    got = read_archive(path, tz="UTC").only()
    np.testing.assert_allclose(got.discharge_mah, [0.0, 5.0, 0.0, 0.0])
    np.testing.assert_allclose(got.charge_mah, [0.0, 0.0, 0.0, 5.0])


def test_maccor_dpt_time_of_day_only_is_placed_on_the_date_of_test(tmp_path: Path) -> None:
    """Some exports print DPt Time as a clock time without its date (and the date of test
    without a time): the elapsed clock, started at that date and the first row's time,
    places every row, across midnight too."""
    cell = synthetic_cell(n_per_step=3, cycles=1, dt=1800.0)
    path = write_maccor(tmp_path / "clock.txt", cell)
    lines = path.read_text().splitlines()
    names = lines[1].split("\t")
    at = names.index("DPt Time")
    rows = [line.split("\t") for line in lines[2:]]
    for row in rows:
        row[at] = row[at].split(" ", 1)[1]  # "01/01/2026 11:00:00 PM" -> "11:00:00 PM"
    head = lines[0].split("\t")
    head[3] = head[3].split(" ", 1)[0]  # the date of test without its time
    path.write_text("\n".join(["\t".join(head), lines[1], *("\t".join(row) for row in rows)]) + "\n")
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    assert archive.report.rows_kept == len(cell.t) and not archive.report.rejected
    np.testing.assert_allclose(got.t, cell.t, atol=1e-4)
    assert any("time of day only" in w for w in archive.report.warnings)
