"""Validation: coulomb counting on the file, the twin beside it, and the verdict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.readers import CellRecord
from pipeline.contracts import CYCLE_FIELDS, OUT_CYCLES, OUT_ESTIMATES, STATE_FIELDS
from pipeline.report import build_report
from pipeline.report_data import CellData, load_validation
from pipeline.validation import (
    CLOSURE_FLOOR,
    COLUMNS,
    GAP_S,
    half_cycles,
    validate,
    validate_cell,
    verdict,
    verdicts,
    write_validation,
)

T0 = 1_767_225_600.0
DT = 10.0
CAPACITY_MAH = 1.0


def _cell(steps: list[tuple[float, float]], name: str = "V1", noise_a: float = 0.0) -> CellRecord:
    """Samples every DT seconds of ``(current A, duration s)`` steps; rests get sensor noise."""
    currents = np.concatenate([np.full(int(round(d / DT)), c) for c, d in steps])
    rng = np.random.default_rng(0)
    currents = currents + np.where(currents == 0, rng.normal(0.0, noise_a, currents.size), 0.0)
    t = T0 + DT * np.arange(1, currents.size + 1)
    return CellRecord(name, t, np.full(t.size, 0.6), currents, np.full(t.size, 130.0))


# After a rest (the file's first sample has no interval before it), two cycles of
# 0.9 mAh discharge at 1 mA, rest, 0.88 mAh charge at 1.1 mA, rest.
STEPS = [(0.0, 600.0)] + [(-1e-3, 3240.0), (0.0, 600.0), (1.1e-3, 2880.0), (0.0, 600.0)] * 2
# Deep 0.1C halves (on a 10 mA 1C) that end within 0.02 of the window ends.
DEEP = [(0.0, 600.0)] + [(-1e-3, 3530.0), (0.0, 600.0), (1e-3, 3530.0), (0.0, 600.0)] * 2


def test_half_cycles_by_current_sign_rests_ignored() -> None:
    halves = half_cycles(_cell(STEPS, noise_a=2e-6))

    assert [(h.cycle, h.half) for h in halves] == [(1, "discharge"), (1, "charge"), (2, "discharge"), (2, "charge")]
    assert [h.mah for h in halves] == pytest.approx([0.9, 0.88, 0.9, 0.88], rel=1e-9)
    assert [h.active_s for h in halves] == pytest.approx([3240.0, 2880.0, 3240.0, 2880.0])
    assert all(h.uncounted_s == 0.0 for h in halves)
    assert halves[1].t_start == halves[0].t_end + 600.0  # the rest is not part of a half


def test_a_gap_stays_a_gap_and_is_not_counted() -> None:
    rec = _cell(STEPS[:4])
    middle = 160  # 100 samples into the discharge
    rec.t[middle:] += 2 * 3600.0  # the cycler stopped for two hours mid-discharge

    discharge, charge = half_cycles(rec)

    assert discharge.uncounted_s == pytest.approx(2 * 3600.0 + DT)
    assert discharge.mah == pytest.approx(0.9 - 1e-3 * DT / 3.6, rel=1e-9)  # the sample after the gap
    assert charge.uncounted_s == 0.0 and charge.mah == pytest.approx(0.88)
    assert rec.t[middle] - rec.t[middle - 1] > GAP_S


def test_a_file_that_starts_charging_numbers_cycles_like_the_twin() -> None:
    halves = half_cycles(_cell([(0.0, 60.0), (1e-3, 360.0), (-1e-3, 720.0), (1e-3, 720.0)]))
    assert [(h.cycle, h.half) for h in halves] == [(0, "charge"), (1, "discharge"), (1, "charge")]


def _twin(rec: CellRecord, *, count_bias: float = 0.0, soc_offset: float = 0.0,
          residual_v: float = 0.003, nis: float = 0.8) -> CellData:
    """Outputs of a twin that follows the file: SOC by coulomb counting on CAPACITY_MAH."""
    soc = 1.0 + np.cumsum(rec.i * np.diff(rec.t, prepend=rec.t[0] - DT)) / 3.6 / CAPACITY_MAH + soc_offset
    n = len(rec)
    rng = np.random.default_rng(1)
    state = {
        "time": rec.t.copy(), "soc": soc, "soc_std": np.full(n, 0.004), "capacity_mah": np.full(n, CAPACITY_MAH),
        "v_residual": rng.normal(0.0, residual_v, n), "nis": np.full(n, nis),
    }
    tables = {}
    for name in ("discharge", "charge"):
        halves = [h for h in half_cycles(rec) if h.half == name]
        tables[name] = {"time": np.array([h.t_end for h in halves]), "cycle": np.array([h.cycle for h in halves]),
                        "capacity_mah": np.array([h.mah * (1 + count_bias) for h in halves])}
    return CellData(rec.cell, "nd4mg80ni8", state, tables["discharge"], tables["charge"])


def test_rows_put_the_file_beside_the_twin() -> None:
    rec = _cell(STEPS)
    rows = validate_cell(rec, _twin(rec), mass_mg=2.0, one_c_ma=10.0)

    assert [r["cycle"] for r in rows] == [1, 2]
    first = rows[0]
    assert first["measured_discharge_mah"] == pytest.approx(0.9)
    assert first["measured_charge_mah"] == pytest.approx(0.88)
    assert first["coulombic_efficiency"] == pytest.approx(0.88 / 0.9)
    assert first["twin_discharge_mah"] == pytest.approx(0.9)
    assert first["twin_capacity_mah"] == pytest.approx(CAPACITY_MAH)
    assert first["discharge_c_rate"] == pytest.approx(0.1)  # 1 mA on a 10 mA 1C
    assert first["soc_end_discharge"] == pytest.approx(0.1)
    assert first["soc_end_charge"] == pytest.approx(0.98)
    assert math.isnan(first["closure_discharge"])  # no charge before the first discharge
    assert first["closure_charge"] == pytest.approx(0.0, abs=1e-9)
    assert rows[1]["closure_discharge"] == pytest.approx(0.0, abs=1e-9)
    assert first["measured_discharge_mah_g"] == pytest.approx(450.0)
    assert first["twin_capacity_mah_g"] == pytest.approx(500.0)
    assert first["v_residual_rms"] == pytest.approx(0.003, rel=0.2)


def _table(rows: list[dict], tmp_path: Path) -> dict[str, np.ndarray]:
    write_validation(tmp_path, rows)
    table = load_validation(tmp_path)
    assert table is not None
    return table


def test_the_verdict_on_a_twin_that_tracks(tmp_path: Path) -> None:
    rec = _cell(DEEP)
    judged = verdict("V1", _table(validate_cell(rec, _twin(rec), one_c_ma=10.0), tmp_path))

    assert judged.tracks, judged.checks
    assert judged.summary() == "tracks within its own uncertainty"
    assert [c.passed for c in judged.checks] == [True, True, True, True]


@pytest.mark.parametrize(
    ("twin", "failing"),
    [
        ({"count_bias": 0.05}, "charge counted"),  # the twin did not see what the file holds
        ({"soc_offset": 0.15}, "SOC at window ends"),  # SOC off by far more than soc_std
        ({"nis": 12.0}, "voltage residual"),  # residuals beyond the filter's own belief
    ],
)
def test_the_verdict_names_what_fails(tmp_path: Path, twin: dict, failing: str) -> None:
    rec = _cell(DEEP)
    judged = verdict("V1", _table(validate_cell(rec, _twin(rec, **twin), one_c_ma=10.0), tmp_path))

    assert not judged.tracks
    assert [c.name for c in judged.checks if c.passed is False] == [failing]
    assert judged.summary() == f"does not track: {failing}"


def test_capacity_that_does_not_explain_the_charge_fails(tmp_path: Path) -> None:
    rec = _cell(DEEP)
    twin = _twin(rec)
    twin.state["capacity_mah"] = np.full(len(rec), CAPACITY_MAH * (1 + 3 * CLOSURE_FLOOR))
    judged = verdict("V1", _table(validate_cell(rec, twin, one_c_ma=10.0), tmp_path))
    assert [c.name for c in judged.checks if c.passed is False] == ["SOC x capacity vs charge"]


def test_fast_halves_leave_the_soc_check_out_and_no_twin_means_no_verdict(tmp_path: Path) -> None:
    rec = _cell(STEPS)
    fast = verdict("V1", _table(validate_cell(rec, _twin(rec), one_c_ma=1.0), tmp_path))  # 1C halves
    soc = next(c for c in fast.checks if c.name == "SOC at window ends")
    assert soc.passed is None and "0.2C" in soc.detail
    assert fast.tracks

    alone = verdict("V1", _table(validate_cell(rec, None), tmp_path))  # the twin never saw it
    assert not alone.tracks and alone.summary() == "does not track: voltage residual"
    assert "no usable voltage estimate" in alone.checks[-1].detail


def test_csv_columns_and_the_report_section(tmp_path: Path) -> None:
    good, bad = _cell(STEPS, "G1"), _cell(STEPS, "B1")
    rows = validate([good, bad], [_twin(good), _twin(bad, nis=12.0)], masses={"G1": 1.0, "B1": 1.0},
                    one_c_ma={"G1": 1.0, "B1": 1.0})
    table = _table(rows, tmp_path)

    assert list(table) == list(COLUMNS) + ["measured_discharge_mah_g", "measured_charge_mah_g", "twin_capacity_mah_g"]
    assert [v.cell for v in verdicts(table)] == ["B1", "G1"]
    assert [v.tracks for v in verdicts(table)] == [False, True]

    estimates = {"time": [T0], "cell": ["G1"], "preset": ["p"], **{f: [0.5] for f in STATE_FIELDS}}
    cycles = {"time": [T0], "cell": ["G1"], "preset": ["p"], "half": ["discharge"], **{f: [1.0] for f in CYCLE_FIELDS}}
    pq.write_table(pa.table(estimates), tmp_path / OUT_ESTIMATES)
    pq.write_table(pa.table(cycles), tmp_path / OUT_CYCLES)
    page = build_report(tmp_path).read_text()
    section = page[page.index("<section id='validation'>"):]
    assert "tracks within its own uncertainty" in section
    assert "does not track: voltage residual" in section
    assert "SOC at window ends: n/a" in section
    assert section.count("Twin SOC at the window ends") == 2
