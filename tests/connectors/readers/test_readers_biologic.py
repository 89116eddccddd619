"""BioLogic EC-Lab text (.mpt) and binary (.mpr) files, synthetic and real (galvani's v1150 samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors.readers import MissingColumnError, detect_format, read_archive
from cycler_writers import synthetic_cell, write_mpt
from real_files import assert_counters_match_current, assert_discharge_negative

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


def test_real_counters_are_the_q_charge_and_q_discharge_columns() -> None:
    for name in ("v1150_CP.mpt", "v1150_GCPL.mpt"):
        archive = read_archive(DATA / name, tz="UTC")
        got = archive.only()
        assert archive.report.columns["charge_capacity"] == "Q charge/mA.h"
        assert archive.report.columns["discharge_capacity"] == "Q discharge/mA.h"
        assert archive.report.units["charge_capacity"] == "mA.h"
        assert np.nanmax(got.charge_mah) > 0
    # GCPL: +-30 uA half cycles of ~10 s; the counters agree with the current to 5 %.
    assert_counters_match_current(got, rel=0.05)
    assert_discharge_negative(got)


def _without(path: Path, column: str, out: Path) -> Path:
    """A copy of an EC-Lab export without one column."""
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    n = int(lines[1].split(":")[1])
    k = lines[n - 1].split("\t").index(column)
    kept = [line if j < n - 1 or not line else "\t".join(f for m, f in enumerate(line.split("\t")) if m != k)
            for j, line in enumerate(lines)]
    out.write_bytes("\r\n".join(kept).encode("latin-1"))
    return out


def test_gcpl_without_a_measured_current_reads_the_control_set_point(tmp_path: Path) -> None:
    measured = read_archive(DATA / "v1150_GCPL.mpt", tz="UTC").only()
    path = _without(DATA / "v1150_GCPL.mpt", "<I>/mA", tmp_path / "gcpl.mpt")
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    assert archive.report.columns["current"] == "control/V/mA" and archive.report.units["current"] == "mA"
    assert any("no measured current" in w and "Galvanostatic Cycling" in w for w in archive.report.warnings)
    np.testing.assert_array_equal(got.t, measured.t)
    # The set point (+-30 uA, 0 at rest) is the measured current but for the first samples of a step.
    np.testing.assert_allclose(np.median(np.abs(got.i - measured.i)), 0.0, atol=1e-8)
    assert set(np.round(got.i * 1e6).tolist()) == {-30.0, 0.0, 30.0}


def test_control_set_point_rows_in_potentiostatic_mode_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cv.mpt"
    path.write_text(
        "EC-Lab ASCII FILE\nNb header lines : 5\n\nGalvanostatic Cycling with Potential Limitation\n"
        "mode\ttime/s\tcontrol/V/mA\tEwe/V\n"
        "1\t0\t-1.0\t3.50\n1\t1\t-1.0\t3.49\n2\t2\t3.48\t3.48\n3\t3\t0\t3.49\n",
        encoding="latin-1",
    )
    archive = read_archive(path, start=0.0)
    np.testing.assert_allclose(archive.only().i, [-1e-3, -1e-3, 0.0])
    assert archive.report.rejected[0].line == 8
    assert "potentiostatic row" in archive.report.rejected[0].reason


def test_control_set_point_of_a_potentiostatic_technique_is_no_current(tmp_path: Path) -> None:
    path = tmp_path / "ca.mpt"
    path.write_text("EC-Lab ASCII FILE\nNb header lines : 5\n\nChronoamperometry / Chronocoulometry\n"
                    "mode\ttime/s\tcontrol/V/mA\tEwe/V\n2\t0\t3.5\t3.5\n")
    with pytest.raises(MissingColumnError, match="no current column"):
        read_archive(path)


def test_signed_and_net_charge_counters(tmp_path: Path) -> None:
    rows = [(0, -1.0, 3.50, 0.0, 0.0), (3.6, -1.0, 3.40, -1.0, -1.0), (7.2, 0.0, 3.45, -1.0, -1.0),
            (10.8, 1.0, 3.50, 1.0, 0.0), (14.4, 1.0, 3.55, 2.0, 1.0)]
    head = "EC-Lab ASCII FILE\nNb header lines : 5\n\nGalvanostatic Cycling with Potential Limitation\n"
    body = "".join(f"{t}\t{i}\t{v}\t{q}\t{net}\n" for t, i, v, q, net in rows)
    signed = tmp_path / "signed.mpt"
    signed.write_text(head + "time/s\tI/mA\tEwe/V\tQ charge/discharge/mA.h\t(Q-Qo)/mA.h\n" + body)
    got = read_archive(signed, start=0.0).only()  # the per-half-cycle counter wins over the net one
    np.testing.assert_allclose(got.charge_mah, [0, 0, 0, 1, 2])
    np.testing.assert_allclose(got.discharge_mah, [0, 1, 1, 0, 0])
    net = tmp_path / "net.mpt"
    net.write_text(head + "time/s\tI/mA\tEwe/V\tdummy\t(Q-Qo)/mA.h\n" + body)
    got = read_archive(net, start=0.0).only()  # rises counted as charge, falls as discharge
    np.testing.assert_allclose(got.charge_mah, [0, 0, 0, 1, 2])
    np.testing.assert_allclose(got.discharge_mah, [0, 1, 1, 1, 1])


def test_impedance_rows_are_no_cycler_samples(tmp_path: Path) -> None:
    path = tmp_path / "mb.mpt"
    path.write_text(
        "EC-Lab ASCII FILE\nNb header lines : 5\n\nModulo Bat\n"
        "freq/Hz\ttime/s\tEwe/V\tI/mA\n"
        "0\t0\t3.50\t-1\n0\t1\t3.49\t-1\n10000\t2\t3.49\t0\n0\t3\t3.48\t-1\n"
    )
    archive = read_archive(path, start=0.0)
    np.testing.assert_allclose(archive.only().t, [0, 1, 3])
    assert archive.report.rejected[0].line == 8
    assert archive.report.rejected[0].reason.startswith("an impedance (EIS) point")


def test_real_gcpl_binary_without_a_measured_current_reads_each_rows_charge_over_its_interval() -> None:
    """navani's C/24 GCPL binary: no measured current, but each row's charge dq: the current
    is that over the row's interval (EC-Lab's <I>), the set point while it flows, none at rest,
    and the count is the cycler's own."""
    pytest.importorskip("galvani")
    path = DATA / "jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr"
    archive = read_archive(path, tz="UTC")
    got = archive.only()
    assert archive.report.rows_kept == 46_102 and not archive.report.rejected
    assert archive.report.columns["current"] == "<I>/mA" and got.mean_current
    assert any("no measured current" in w and "'dq/mA.h'" in w for w in archive.report.warnings)
    flowing = np.abs(got.i[np.abs(got.i) > 1e-5]) * 1e3
    # The +-0.0888 mA set point, but on the 12 rows whose interval a step began or ended in.
    assert np.sum(~np.isclose(flowing, 0.0888, rtol=0.01)) == 12
    assert_discharge_negative(got)
    assert_counters_match_current(got, rel=0.002)


def test_constant_voltage_rows_of_a_binary_without_current_are_kept() -> None:
    """aurora-cycler-manager's CC-CV GCPL binary: 475 of its rows hold a voltage (mode 2), whose
    set point is no current. Read by their charge they are kept, with the current of the CV
    tail; by the set point they were rejected and the CV charge lost."""
    pytest.importorskip("galvani")
    archive = read_archive(DATA / "250116_kigr_gen6_01_02_GCPL_CD8.mpr", tz="UTC")
    got = archive.only()
    assert archive.report.rows_kept == 3_791 and not archive.report.rejected
    assert got.mean_current
    assert_counters_match_current(got, rel=0.002)
