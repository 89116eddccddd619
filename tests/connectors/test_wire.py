"""The wire: the README documents every field the sinks write, in the table of its measurement,
with a unit and a meaning, and the risk scale's numbers are the ones the alerts use; batches
become the Kafka records consumers read."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from connectors.wire import (
    ALERT_FIELDS, CYCLE_FIELDS, DQDV_FIELDS, HEALTH_FIELDS, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_HEALTH, MEAS_STATE,
    FRAME_ROWS, MAX_MESSAGE_BYTES, STATE_FIELDS, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET, TAG_VOLTAGE, THRESHOLDS, Batch, batches, frame_rows,
)

README = Path(__file__).resolve().parents[2] / "README.md"
_SECTION = README.read_text(encoding="utf-8").split("## Output columns", 1)[1].split("\n## ", 1)[0]


def _documented(measurement: str) -> dict[str, tuple[str, str]]:
    """The first table after the paragraph that starts with the measurement's name:
    field -> (unit, meaning)."""
    after = _SECTION.split(f"\n`{measurement}`:", 1)[1]
    table = re.search(r"\n(\| field \| unit \| meaning \|\n\|---\|---\|---\|\n(?:\|.*\|\n)+)", after)
    assert table, f"no field table for {measurement}"
    rows: dict[str, tuple[str, str]] = {}
    for line in table.group(1).splitlines()[2:]:
        names, unit, meaning = (cell.strip() for cell in line.strip().strip("|").split("|"))
        for name in re.findall(r"`([a-z_0-9]+)`", names):
            rows[name] = (unit, meaning)
    return rows


@pytest.mark.parametrize("measurement, fields", [
    (MEAS_STATE, STATE_FIELDS), (MEAS_CYCLE, CYCLE_FIELDS), (MEAS_ALERT, ALERT_FIELDS), (MEAS_HEALTH, HEALTH_FIELDS),
    (MEAS_DQDV, DQDV_FIELDS),
])
def test_every_field_a_sink_writes_is_in_its_readme_table(measurement: str, fields: tuple[str, ...]) -> None:
    rows = _documented(measurement)
    assert set(rows) == set(fields), f"{measurement}: undocumented {set(fields) - set(rows)}, " \
                                     f"stale {set(rows) - set(fields)}"
    for name, (unit, meaning) in rows.items():
        assert unit and len(meaning) > 10, name


def test_tags_time_mass_and_risk_scale_are_documented() -> None:
    for column in ("time", TAG_CELL, TAG_PRESET, TAG_HALF, TAG_KIND, TAG_VOLTAGE):
        assert f"`{column}`" in _SECTION, column
    assert "per gram of hydride" in _SECTION and "Nd2H5 framework" in _SECTION
    risk = _SECTION.split("**Risk scale.**", 1)[1].split("\n\n", 1)[0]
    assert f"retention floor of {THRESHOLDS.retention_floor:g}" in risk
    assert f"Both alert at {THRESHOLDS.crack_risk:g}" in risk and THRESHOLDS.phase_sep_risk == THRESHOLDS.crack_risk
    assert f"1 - {1 - THRESHOLDS.crack_risk:.1f}^share" in risk  # the mapping that puts the floor at the limit


def _rows() -> list[dict]:
    """Rows of two cells, interleaved as the twin steps them, with a NaN and an int field."""
    return [{"measurement": MEAS_STATE, "tags": {TAG_CELL: cell, TAG_PRESET: preset}, "time": time,
             "fields": {"soc": soc, "v_residual": residual, "flags": flags}}
            for cell, preset, time, soc, residual, flags in [
                ("A1", "mgh2", 12.5, 0.5, math.nan, 2), ("B2", "nd4mg80ni8", 12.5, 0.25, 1e-3, 0),
                ("A1", "mgh2", 22.5, 0.75, -2e-3, 0)]]


def test_a_batch_goes_to_kafka_as_one_frame_per_cell() -> None:
    frames = batches(_rows())[0].frames()
    assert [key for key, _ in frames] == [b"A1", b"B2"]
    assert json.loads(frames[0][1]) == {"cell": "A1", "preset": "mgh2", "time": [12.5, 22.5], "soc": [0.5, 0.75],
                                        "v_residual": [None, -2e-3], "flags": [2, 0]}
    # Read back, a frame is the cell's rows, as one record per point carried them before.
    rows = [row for _, value in frames for row in frame_rows(value)]
    assert rows == [{"cell": "A1", "preset": "mgh2", "time": 12.5, "soc": 0.5, "v_residual": None, "flags": 2},
                    {"cell": "A1", "preset": "mgh2", "time": 22.5, "soc": 0.75, "v_residual": -2e-3, "flags": 0},
                    {"cell": "B2", "preset": "nd4mg80ni8", "time": 12.5, "soc": 0.25, "v_residual": 1e-3, "flags": 0}]


def test_a_cell_with_more_rows_than_a_frame_holds_goes_in_several_frames_in_order() -> None:
    rows, rng = 2500, np.random.default_rng(0)
    batch = Batch(MEAS_STATE, np.arange(rows, dtype=float), {TAG_CELL: np.array(["A1", "B2"] * (rows // 2), dtype=object)},
                  {name: rng.random(rows) for name in STATE_FIELDS})
    frames = batch.frames()
    assert [key for key, _ in frames] == [b"A1", b"A1", b"B2", b"B2"]
    sizes = [len(frame_rows(value)) for _, value in frames]
    assert sizes == [FRAME_ROWS, rows // 2 - FRAME_ROWS] * 2
    assert max(len(value) for _, value in frames) < MAX_MESSAGE_BYTES  # every twin_state field: still one record
    times = [row["time"] for _, value in frames for row in frame_rows(value)]
    assert times == [*range(0, rows, 2), *range(1, rows, 2)]


def test_alerts_go_to_kafka_as_one_record_each() -> None:
    batch = Batch(MEAS_ALERT, np.array([5.0, 6.0]), {TAG_CELL: np.array(["A1", "A1"], dtype=object)},
                  {"value": np.array([np.inf, 0.5]), "message": np.array(["hot", "cold"], dtype=object)})
    assert [(key, json.loads(value)) for key, value in batch.records()] == [
        (b"A1", {"cell": "A1", "time": 5.0, "value": None, "message": "hot"}),
        (b"A1", {"cell": "A1", "time": 6.0, "value": 0.5, "message": "cold"})]


def test_row_points_become_typed_columns() -> None:
    batch, = batches(_rows())
    assert batch.time.dtype == np.float64 and batch.fields["soc"].dtype == np.float64
    assert batch.fields["flags"].dtype == np.int64
    mixed, = batches([{"measurement": MEAS_HEALTH, "tags": {}, "time": 1.0, "fields": {"lag": 3}},
                      {"measurement": MEAS_HEALTH, "tags": {}, "time": 2.0, "fields": {"stalled_s": 0.5}}])
    assert mixed.fields["lag"].tolist() == [3, None] and mixed.fields["stalled_s"].tolist() == [None, 0.5]
