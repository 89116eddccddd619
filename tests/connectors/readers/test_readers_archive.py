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
    path = tmp_path / "x.res"
    path.write_bytes(b"\x00\x01Standard Jet DB" + bytes(100))
    with pytest.raises(UnsupportedFormatError, match="pass format="):
        read_archive(path)
    with pytest.raises(UnsupportedFormatError, match="unknown format 'res'"):
        read_archive(path, format="res")
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
