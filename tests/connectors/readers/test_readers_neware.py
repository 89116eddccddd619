"""Neware CSV/XLSX record exports: sign from the step type, h:mm:ss test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors.readers import MissingExtraError, detect_format, read_archive
from cycler_writers import START, synthetic_cell, write_neware_csv, write_neware_nested, write_neware_xlsx


@pytest.mark.parametrize("discharge_positive", [True, False])
def test_neware_csv_round_trip_either_sign_version(tmp_path: Path, discharge_positive: bool) -> None:
    cell = synthetic_cell(gap_s=3600.0)
    path = write_neware_csv(tmp_path / "n.csv", cell, discharge_positive=discharge_positive)
    assert detect_format(path) == "neware"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)
    np.testing.assert_allclose(got.v, cell.v, atol=1e-4)
    np.testing.assert_allclose(got.i, cell.i, atol=1e-7)
    np.testing.assert_allclose(got.temp_c, cell.temp_c)
    assert archive.report.units["current"] == "mA"
    assert archive.report.units["time"] == "h:mm:ss"
    assert "'Step Type' labels" in archive.report.sign_convention


def test_neware_nested_cycle_step_record_csv_round_trip(tmp_path: Path) -> None:
    cell = synthetic_cell(cycles=3)
    path = write_neware_nested(tmp_path / "bts7.csv", cell)
    assert detect_format(path) == "neware"
    archive = read_archive(path, start=START)
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)  # the step times, summed
    np.testing.assert_allclose(got.v, cell.v, atol=1e-4)
    np.testing.assert_allclose(got.i, cell.i, atol=1e-7)  # signed by the step's name
    np.testing.assert_allclose(got.temp_c, cell.temp_c)
    np.testing.assert_array_equal(got.step, cell.step)
    np.testing.assert_array_equal(got.cycle, cell.cycle)
    assert archive.report.rows_rejected == 0
    assert "'Step Name' labels" in archive.report.sign_convention


def test_neware_xlsx_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    cell = synthetic_cell()
    path = write_neware_xlsx(tmp_path / "n.xlsx", cell)
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)
    np.testing.assert_allclose(got.i, cell.i)
    np.testing.assert_array_equal(got.step, cell.step)


def test_nda_without_a_reader_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fastnda", None)
    monkeypatch.setitem(sys.modules, "NewareNDA", None)
    path = tmp_path / "x.nda"
    path.write_bytes(b"NEWARE" + bytes(64))
    with pytest.raises(MissingExtraError, match="pip install fastnda"):
        read_archive(path)


def test_nda_adapter_maps_fastnda_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No redistributable .nda sample exists; this checks the adapter against the
    # column contract of fastnda.read (names, units, categorical step type).
    fastnda = pytest.importorskip("fastnda")
    pl = pytest.importorskip("polars")
    cell = synthetic_cell(n_per_step=4, cycles=1)
    labels = {1: "CC_DChg", 2: "Rest", 3: "CCCV_Chg"}
    frame = pl.DataFrame({
        "index": np.arange(1, len(cell.t) + 1, dtype=np.uint32),
        "voltage_V": cell.v.astype(np.float32),
        "current_mA": (np.abs(cell.i) * 1e3).astype(np.float32),
        "unix_time_s": cell.t,
        "total_time_s": cell.elapsed,
        "cycle_count": cell.cycle.astype(np.uint32),
        "step_count": cell.step.astype(np.uint32),
        "step_type": pl.Series([labels[int(s)] for s in cell.step], dtype=pl.Categorical),
        "aux1_temperature_degC": cell.temp_c.astype(np.float32),
    })
    monkeypatch.setattr(fastnda, "read", lambda path, cycle_mode="chg": frame)
    path = tmp_path / "x.ndax"
    path.write_bytes(b"PK\x03\x04")
    archive = read_archive(path)
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t)
    np.testing.assert_allclose(got.i, cell.i, rtol=1e-6)
    np.testing.assert_allclose(got.v, cell.v, rtol=1e-6)
    np.testing.assert_allclose(got.temp_c, cell.temp_c, atol=1e-4)
    np.testing.assert_array_equal(got.step, cell.step)
    assert archive.report.format == "neware nda (fastnda)"
