"""The README documents every field the sinks write, in the table of its measurement, with a
unit and a meaning, and the risk scale's numbers are the ones the alerts use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.contracts import (
    ALERT_FIELDS, CYCLE_FIELDS, DQDV_FIELDS, HEALTH_FIELDS, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_HEALTH, MEAS_STATE,
    STATE_FIELDS, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET, TAG_VOLTAGE, THRESHOLDS,
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
