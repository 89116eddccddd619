"""The alert catalogue: one definition that the stream, Grafana, the report and the README share."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from connectors.alert_catalogue import CATALOGUE, KINDS, by_kind, readme_table
from connectors.wire import CYCLE_FIELDS, STATE_FIELDS, THRESHOLDS
from pipeline.alerts import new_latch, sample_alerts

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_alert_table_is_the_catalogues() -> None:
    text = README.read_text(encoding="utf-8")
    table = re.search(r"<!-- alert-table[^>]*-->\n(.*?)<!-- /alert-table -->", text, re.S)
    assert table, "README has no alert table markers"
    assert table.group(1) == readme_table(), "regenerate the README table from connectors.alert_catalogue"


def test_every_kind_reads_a_written_field_and_has_a_sane_limit() -> None:
    assert len({k.kind for k in CATALOGUE}) == len(CATALOGUE)
    for kind in CATALOGUE:
        written = STATE_FIELDS if kind.scope == "sample" else CYCLE_FIELDS
        if kind.scope != "store":
            assert set(kind.fields) <= set(written), kind.kind
        assert len(kind.fields) == len(kind.labels) and kind.limits
        assert re.fullmatch(r"\d+[smh]", kind.hold), kind.kind
        sides = [limit.side for limit in kind.limits]
        assert len(set(sides)) == len(sides), f"{kind.kind}: two limits on one side"
    assert KINDS == tuple(k.kind for k in CATALOGUE if k.scope != "store")
    assert by_kind("temperature").limits[0].value == THRESHOLDS.temp_low_c


@pytest.mark.parametrize("kind", [k for k in CATALOGUE if k.scope == "sample"], ids=lambda k: k.kind)
def test_stream_fires_just_beyond_each_limit_with_its_severity(kind) -> None:
    for limit in kind.limits:
        step = 1e-6 if limit.side == "above" else -1e-6
        for value, fires in ((limit.trips_at, False), (limit.trips_at + step, True)):
            columns = {"v": np.array([0.6]), "temp_c": np.array([130.0])}
            columns[kind.fields[0]] = np.array([value])
            alerts = sample_alerts(new_latch(1), np.array([True]), np.array([0.0]),
                                   columns["v"], columns["temp_c"])
            mine = [a for a in alerts if a.kind == kind.kind]
            assert bool(mine) == fires, (kind.kind, limit.side, value)
            if mine:
                assert (mine[0].severity, mine[0].threshold) == (limit.severity, limit.value)
                assert mine[0].message.endswith(limit.why) and not math.isnan(mine[0].value)
