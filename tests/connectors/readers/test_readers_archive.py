"""read_archive: format detection, options, and errors that say what to do."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from connectors.readers import (
    ColumnMapping,
    ReaderError,
    UnsupportedFormatError,
    detect_format,
    read_archive,
)
from cycler_writers import synthetic_cell, write_arbin, write_bdf, write_maccor, write_mpt, write_neware_csv

WRITERS = {
    "table": write_bdf,
    "arbin": write_arbin,
    "maccor": write_maccor,
    "biologic": write_mpt,
    "neware": write_neware_csv,
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_formats_are_detected_from_content_not_extension(tmp_path: Path, name: str) -> None:
    path = WRITERS[name](tmp_path / "export.txt", synthetic_cell(n_per_step=3, cycles=1))
    assert detect_format(path) == name


def test_binary_of_unknown_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x00\x01Standard Jet DB" + bytes(100))
    with pytest.raises(UnsupportedFormatError, match="--format NAME"):
        read_archive(path)
    with pytest.raises(UnsupportedFormatError, match="unknown format 'res'"):
        read_archive(path, format="res")
    # A .res that is no Arbin database: what mdb-export said.
    res = tmp_path / "x.res"
    res.write_bytes(path.read_bytes())
    with pytest.raises(ReaderError, match="mdb-export could not read its Channel_Normal_Table"):
        read_archive(res)
    with pytest.raises(ReaderError, match="does not exist"):
        read_archive(tmp_path / "missing.csv")


def test_start_given_as_iso_string_or_datetime(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("Test Time / s,Voltage / V,Current / A\n0,3.0,0.1\n10,3.1,0.1\n")
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    by_text = read_archive(path, start="2024-05-01T14:00:00", tz="Europe/Berlin")
    by_datetime = read_archive(path, start=moment)
    np.testing.assert_allclose(by_text.only().t, [moment.timestamp(), moment.timestamp() + 10])
    np.testing.assert_array_equal(by_text.only().t, by_datetime.only().t)
    assert by_text.report.time_origin == "given start + elapsed"


def test_mapping_overrides_a_vendor_column(tmp_path: Path) -> None:
    cell = synthetic_cell(n_per_step=4, cycles=1)
    path = write_neware_csv(tmp_path / "n.csv", cell)
    text = path.read_text().replace("T1(°C)", "Probe")
    path.write_text(text)
    archive = read_archive(path, tz="UTC", mapping=ColumnMapping.from_pairs(["temperature=Probe"]),
                           units={"temperature": "degC"})
    np.testing.assert_allclose(archive.only().temp_c, cell.temp_c)
    assert archive.report.columns["temperature"] == "Probe"
    with pytest.raises(ReaderError, match="not role=COLUMN"):
        ColumnMapping.from_pairs(["temperature"])


def test_report_summary_names_the_essentials(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Test Time / s,Voltage / V,Current / A\n0,3.0,0.1\n1,x,0.1\n")
    summary = read_archive(path).report.summary()
    assert "2 rows read, 1 kept, 1 rejected" in summary
    assert "line 3: cannot parse Voltage / V='x'" in summary


# read_files is the replay command's use of these readers (pipeline/replay_cmd.py).


def test_read_files_keeps_the_reports_made_before_it_fails(tmp_path: Path) -> None:
    from pipeline.replay_cmd import ReadFilesError, read_files

    good = write_bdf(tmp_path / "good.csv", synthetic_cell(n_per_step=3, cycles=1))
    unreadable = tmp_path / "bad.csv"
    unreadable.write_text("Test Time / s,Voltage / V,Current / A\n0,x,0.1\n1,y,0.1\n")
    with pytest.raises(ReadFilesError, match="no usable rows") as failed:
        read_files([good, unreadable])
    assert [r.source for r in failed.value.reports] == [str(good), str(unreadable)]
    assert failed.value.reports[1].rows_rejected == 2
    no_voltage = tmp_path / "nov.csv"
    no_voltage.write_text("Test Time / s,Current / A\n0,0.1\n")
    with pytest.raises(ReadFilesError, match="no voltage column") as failed:
        read_files([good, no_voltage])
    assert [r.source for r in failed.value.reports] == [str(good)]


def test_replay_prints_the_parse_report_its_error_points_to(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = tmp_path / "bad.csv"
    path.write_text("Test Time / s,Voltage / V,Current / A\n0,x,0.1\n1,y,0.1\n")
    result = CliRunner().invoke(app, ["replay", str(path), "--mass-mg", "1", "--out", str(tmp_path / "out")])
    output = " ".join(result.output.replace("│", " ").split())  # the error box wraps its text
    assert result.exit_code == 2
    assert "line 2: cannot parse Voltage / V='x'" in output
    assert output.index("2 rows read, 0 kept, 2 rejected") < output.index("no usable rows for cell(s) ['bad']: "
                                                                          "see the parse report above")


def test_files_of_one_cell_are_joined_with_their_counters(tmp_path: Path) -> None:
    from pipeline.replay_cmd import read_files

    def part(name: str, start: float, counters: bool) -> Path:
        path = tmp_path / name
        head = "Unix Time / s,Voltage / V,Current / A" + (",Charging Capacity / Ah,Discharging Capacity / Ah"
                                                           if counters else "")
        rows = [f"{start + k},3.{k},0.1" + (f",{k / 1000},0" if counters else "") for k in range(3)]
        path.write_text("\n".join([head, *rows]) + "\n")
        return path

    first, second = part("a.csv", 1000.0, True), part("b.csv", 2000.0, True)
    (record,), _ = read_files([second, first], cell="A")
    np.testing.assert_allclose(record.charge_mah, [0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(record.discharge_mah, np.zeros(6))
    (record,), _ = read_files([first, part("c.csv", 3000.0, False)], cell="A")
    assert record.charge_mah is None and record.discharge_mah is None
