"""BioLogic EC-Lab text (.mpt) and binary (.mpr) files, synthetic and real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors.readers import MissingColumnError, detect_format, read_archive
from cycler_writers import synthetic_cell, write_mpt

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("decimal_comma", [True, False])
def test_mpt_round_trip(tmp_path: Path, decimal_comma: bool) -> None:
    cell = synthetic_cell(gap_s=30.0)
    path = write_mpt(tmp_path / "cell.mpt", cell, decimal_comma=decimal_comma)
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    np.testing.assert_allclose(got.t, cell.t, atol=1e-3)
    np.testing.assert_allclose(got.v, cell.v, atol=1e-6)
    np.testing.assert_allclose(got.i, cell.i, atol=1e-9)  # <I>/mA -> A
    np.testing.assert_allclose(got.temp_c, cell.temp_c, atol=1e-3)
    np.testing.assert_array_equal(got.cycle, cell.cycle - 1)
    assert archive.report.units["current"] == "mA"


def test_real_ec_lab_v1150_export() -> None:
    archive = read_archive(DATA / "v1150_CP.mpt", tz="UTC")
    got = archive.only()
    assert archive.report.rows_kept == 44 and archive.report.rows_rejected == 0
    # "Acquisition started on : 01/10/2024 11:02:29.886" + time/s "1,099979972212168E+001"
    assert got.t[0] == pytest.approx(1704884549.886 + 10.99979972212168, abs=1e-6)
    assert got.i[0] == pytest.approx(2.0003509e-5)  # I/mA with a decimal comma
    assert np.all(np.diff(got.t) > 0)
    assert 3.0 < got.v.min() and got.v.max() < 4.5
    assert archive.report.columns["voltage"] == "<Ewe/V>"


def test_mpr_matches_the_mpt_export() -> None:
    pytest.importorskip("galvani")
    assert detect_format(DATA / "v1150_CP.mpr") == "mpr"
    binary = read_archive(DATA / "v1150_CP.mpr", tz="UTC").only()
    text = read_archive(DATA / "v1150_CP.mpt", tz="UTC").only()
    np.testing.assert_allclose(binary.t, text.t, atol=1e-3)
    np.testing.assert_allclose(binary.v, text.v, atol=1e-6)
    np.testing.assert_allclose(binary.i, text.i, rtol=1e-6)


def test_mpt_without_current_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "ocv.mpt"
    path.write_text("EC-Lab ASCII FILE\nNb header lines : 3\ntime/s\tEwe/V\n0\t3.0\n")
    with pytest.raises(MissingColumnError, match="--map current="):
        read_archive(path)
