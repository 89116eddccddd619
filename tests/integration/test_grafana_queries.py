"""Every dashboard query and alert rule, in both query languages, run on a real InfluxDB.

One Kafka-mode pipeline run (so the health measurement is written too) goes into
InfluxDB OSS 1.13 and its output folder. Then every panel, variable, annotation and rule
query of every dashboard runs against the store with Grafana's macros filled in, and
must return what its panel promises; every alert rule, evaluated as Grafana does (query,
last non-null value, threshold), must fire for exactly the cells, kinds and severities the
pipeline's own stream alerts hold at the end of the same data (raised, and not re-armed);
and every name a query reads must be one the run wrote.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest

from connectors.alert_catalogue import CATALOGUE, by_kind
from connectors.grafana import query_references
from connectors.grafana.alerts import alert_rules
from connectors.grafana.dashboards import DASHBOARD_UIDS, all_dashboards
from connectors.grafana.dialects import AT_RISK, DIALECTS, FLEET_FIELDS, RETENTIONS
from connectors.kafka_admin import empty_topic, ensure_topics
from connectors.wire import (
    MEAS_HEALTH, OUT_ALERTS, OUT_CYCLES, OUT_ESTIMATES, TAG_CELL, THRESHOLDS, TOPIC_ALERTS, TOPIC_DEADLETTER,
    TOPIC_META, TOPIC_SAMPLES, TOPIC_TWIN,
)
from tests.integration.conftest import INFLUX_DATABASE
from tests.integration.grafana_eval import Table, Window, evaluate_rule, run_influxql, run_query, series_of
from tests.integration.pipeline_harness import (
    SAMPLE_PARTITIONS, T0, pipeline_command, publish, run_pipeline, simulated_fleet, unique_prefix,
)

pytestmark = pytest.mark.integration

_DEAD = 3  # records the pipeline must dead-letter: the health panels show them
_REST_S = 600.0
_PULSE_PANEL = "Pulse resistance measured from current steps, and the twin's R0 and R_ct"


@dataclass(frozen=True)
class Run:
    url: str
    cells: list[str]
    out: Path
    data: Window  # the data's sample times, an hour either side
    data_end: float  # just after the newest sample time: "now" for the alert rules (a range's
    #                  stop is exclusive, and the end of the data closes the last halves there)
    wall: Window  # the run's wall-clock time: the health measurement's

    def alerts(self) -> list[dict[str, Any]]:
        return [r for r in pq.read_table(self.out / OUT_ALERTS).to_pylist() if r[TAG_CELL] in self.cells]

    def halves(self, cell: str) -> int:
        return sum(r[TAG_CELL] == cell for r in pq.read_table(self.out / OUT_CYCLES).to_pylist())


def _excursion(cell: str, start: float, *, v: float, temp_c: float, samples: int = 60) -> tuple[bytes, bytes]:
    # Ten minutes at rest beyond a sample-level limit: the newest estimates show it.
    t = [start + 10.0 * (k + 1) for k in range(samples)]
    frame = {"cell": cell, "t": t, "v": [v] * samples, "i": [0.0] * samples, "temp_c": [temp_c] * samples}
    return cell.encode(), json.dumps(frame).encode()


def _stopped_mid_half(samples: list[tuple[bytes, bytes]], cell: str, share: float = 0.65) -> list[tuple[bytes, bytes]]:
    """``samples`` with ``cell``'s data ending ``share`` of the way through its last charge."""
    mine = [json.loads(v) for k, v in samples if k == cell.encode()]
    t = np.concatenate([f["t"] for f in mine])
    i = np.concatenate([f["i"] for f in mine])
    charging = np.flatnonzero(i > 0.5 * i.max())  # not the noise of a rest
    first = charging[np.flatnonzero(np.diff(charging) > 1)[-1] + 1]  # the last charge's first sample
    cut = t[first] + share * (t[charging[-1]] - t[first])
    kept = []
    for key, value in samples:
        frame = json.loads(value)
        if key != cell.encode() or frame["t"][-1] <= cut:
            kept.append((key, value))
        elif frame["t"][0] <= cut:
            n = sum(x <= cut for x in frame["t"])
            kept.append((key, json.dumps({k: v[:n] if isinstance(v, list) else v for k, v in frame.items()}).encode()))
    return kept


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, influx_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    topics = {TOPIC_SAMPLES: SAMPLE_PARTITIONS, TOPIC_META: 1, TOPIC_DEADLETTER: 1, TOPIC_TWIN: SAMPLE_PARTITIONS,
              TOPIC_ALERTS: 1}
    ensure_topics(kafka_bootstrap, topics)
    empty_topic(kafka_bootstrap, TOPIC_SAMPLES)
    tmp = tmp_path_factory.mktemp("grafana-queries")
    # Rests after each half, as cycler schedules have: the steps into them give pulse resistances.
    made = simulated_fleet(unique_prefix("grafana-q"), cells=8, cycles=4, rest_s=_REST_S)
    last_t = max(max(json.loads(v)["t"]) for _, v in made.samples)
    # A cold oven for the first cell, a voltage below the window for the second: sample-level alerts.
    extra = [_excursion(made.ids[0], last_t, v=0.9, temp_c=100.0),
             _excursion(made.ids[1], last_t, v=0.2, temp_c=130.0)]
    dead = [(made.ids[2].encode(), b"not json")] * _DEAD
    # The third cell's data stops in its last half: the end of the input closes that half as
    # partial, which neither the stream nor a rule judges; the others' last halves are complete.
    publish(kafka_bootstrap, [*_stopped_mid_half(made.samples, made.ids[2]), *extra, *dead])
    started = time.time()
    # Health points often enough that a fast run still has two per worker: rates are derivatives.
    config = made.write_config(tmp / "cells.toml", health_interval_s=0.2)
    run_pipeline(pipeline_command(kafka_bootstrap, influx_url, tmp / "out", extra=["--config", str(config)]),
                 tmp / "run.log", timeout_s=300)
    data_end = last_t + 600.0 + 1.0
    yield Run(influx_url, made.ids, tmp / "out", Window(T0 - 3600, data_end + 3600),
              data_end, Window(started - 60, time.time() + 60, interval_s=10))
    empty_topic(kafka_bootstrap, TOPIC_SAMPLES)


def _rows(tables: list[Table]) -> list[dict[str, Any]]:
    """Rows with their table's group key (Flux) or tags (InfluxQL) as columns."""
    return [{**table.key, **row} for table in tables for row in table.rows]


def _by_cell(tables: list[Table], cells: list[str]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in _rows(tables):
        if row.get(TAG_CELL) in cells:
            merged[row[TAG_CELL]].update({k: v for k, v in row.items() if v is not None})
    return merged


def _panels(dialect: str, board: str) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in all_dashboards(dialect)[DASHBOARD_UIDS[board]]["panels"]}


def _results(run: Run, dialect: str, panel: dict[str, Any], window: Window,
             variables: dict[str, str] = {}) -> list[list[Table]]:
    return [run_query(dialect, run.url, INFLUX_DATABASE, t["query"], window, variables, now=window.stop)
            for t in panel["targets"]]


def _has_values(tables: list[Table]) -> bool:
    return any(v is not None for _, values in series_of(tables) for v in values)


def _beyond(row: dict[str, Any], dialect: str) -> bool:
    """The fleet's at-risk test, as the dialect's table states it."""
    def crossed(field: str) -> bool:
        side, limit = AT_RISK[field]
        value = row.get(field)
        return value is not None and (value > limit if side == "above" else value < limit)

    if any(crossed(f) for f in AT_RISK if f not in RETENTIONS):
        return True
    if dialect == "flux":  # the measured retention where there is one, as the stream judges
        judged = next((f for f in RETENTIONS if row.get(f) is not None), None)
        return judged is not None and crossed(judged)
    return any(crossed(f) for f in RETENTIONS)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fleet_overview_lists_every_cell_with_each_column(run: Run, dialect: str) -> None:
    panels = _panels(dialect, "fleet")
    everyone = _by_cell([t for r in _results(run, dialect, panels["All cells"], run.data) for t in r], run.cells)
    assert set(everyone) == set(run.cells)
    for cell, row in everyone.items():
        missing = [c for c in (*FLEET_FIELDS, *RETENTIONS, "_time") if c not in row]
        assert not missing, f"{cell}: no {missing} in the fleet table: {row}"

    if dialect == "flux":  # the filter is in the query
        at_risk = _by_cell(_results(run, dialect, panels["Cells at risk"], run.data)[0], run.cells)
    else:  # Grafana's filterByValue transformation over the joined rows
        at_risk = {c: row for c, row in everyone.items() if _beyond(row, dialect)}
        assert panels["Cells at risk"]["transformations"][-1]["id"] == "filterByValue"
    assert set(at_risk) == {c for c, row in everyone.items() if _beyond(row, dialect)}
    assert 0 < len(at_risk) < len(run.cells), "the data should hold cells at risk and cells not"

    for title, panel in panels.items():
        if panel["type"] == "table":
            continue
        (tables,) = _results(run, dialect, panel, run.data)
        with_data = {labels.get(TAG_CELL) for labels, values in series_of(tables)
                     if any(v is not None for v in values)}
        assert set(run.cells) <= with_data, f"{title}: no data for {sorted(set(run.cells) - with_data)}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cell_drilldown_shows_the_chosen_cells_series(run: Run, dialect: str) -> None:
    board = all_dashboards(dialect)[DASHBOARD_UIDS["cell"]]
    (variable,) = board["templating"]["list"]
    options = run_query(dialect, run.url, INFLUX_DATABASE, variable["query"], run.data, now=run.data.stop)
    listed = {str(row.get("_value", row.get("value"))) for row in _rows(options)}
    assert set(run.cells) <= listed

    alerts = run.alerts()
    counts = {cell: sum(a[TAG_CELL] == cell for a in alerts) for cell in run.cells}
    chosen = max(counts, key=counts.__getitem__)
    assert counts[chosen] > 0
    variables = {TAG_CELL: chosen}
    for title, panel in _panels(dialect, "cell").items():
        if title == _PULSE_PANEL:  # only halves with a current step have a point: checked below
            continue
        (tables,) = _results(run, dialect, panel, run.data, variables)
        assert tables and _has_values(tables), f"{title}: no data for {chosen}"
        cells = {row[TAG_CELL] for row in _rows(tables) if TAG_CELL in row}
        assert cells <= {chosen}, f"{title}: shows {cells}"
        if title == "Cycles":
            assert len(_rows(tables)) == run.halves(chosen)
        if title == "Twin alerts":
            assert len(_rows(tables)) == counts[chosen]
    annotation = board["annotations"]["list"][1]["target"]
    marks = run_query(dialect, run.url, INFLUX_DATABASE, annotation["query"], run.data, variables)
    assert len(_rows(marks)) == counts[chosen]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_pulse_panel_shows_each_cells_measured_resistances(run: Run, dialect: str) -> None:
    rows = [r for r in pq.read_table(run.out / OUT_CYCLES).to_pylist() if r[TAG_CELL] in run.cells]
    pulsed = {r[TAG_CELL] for r in rows if r["pulse_count"]}
    assert pulsed, "the rests' current steps should give some half a pulse resistance"
    panel = _panels(dialect, "cell")[_PULSE_PANEL]
    for cell in run.cells:
        (tables,) = _results(run, dialect, panel, run.data, {TAG_CELL: cell})
        shown = [row for row in _rows(tables) if row.get("pulse_r_ohm") is not None]
        written = sorted((r for r in rows if r[TAG_CELL] == cell and r["pulse_count"]), key=lambda r: r["time"])
        assert [row["pulse_r_ohm"] for row in shown] == pytest.approx([r["pulse_r_ohm"] for r in written]), cell
        # The twin's resistances are beside them on every half.
        assert sum(row.get("r0_ohm") is not None for row in _rows(tables)) == run.halves(cell)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_health_panels_have_data_in_kafka_mode(run: Run, dialect: str) -> None:
    for title, panel in _panels(dialect, "health").items():
        (tables,) = _results(run, dialect, panel, run.wall)
        assert _has_values(tables), f"{title}: no data"
    # The counter behind the dead-letter rate saw this run's bad records (a rate needs two points,
    # and in a run this short the first may already hold them all).
    counted = run_influxql(run.url, INFLUX_DATABASE, f'SELECT last("deadletters") FROM "{MEAS_HEALTH}" '
                           f"WHERE time >= {round(run.wall.start)}s AND time <= {round(run.wall.stop)}s")
    assert [row["last"] for row in _rows(counted)] == [_DEAD]


def _kind_of(uid: str) -> str:
    return next(k.kind for k in CATALOGUE if uid.startswith("celltwin-" + k.kind.replace("_", "-")))


def _first_value(row: dict[str, Any], fields: tuple[str, ...]) -> float:
    values = [row.get(f) for f in fields]
    return next((float(v) for v in values if v is not None and math.isfinite(v)), math.nan)


def _stream_end_state(run: Run) -> set[tuple[str, str, str]]:
    """(cell, kind, severity) the stream's latch holds at the end of the data: its kinds judged, as
    the stream judges them (pipeline.alerts), on the values in the run's output folder."""
    latched = set()
    tables = {"sample": pq.read_table(run.out / OUT_ESTIMATES).to_pylist(),
              "half_cycle": pq.read_table(run.out / OUT_CYCLES).to_pylist()}
    for kind in CATALOGUE:
        if kind.scope == "store":
            continue
        for cell in run.cells:
            rows = sorted((r for r in tables[kind.scope] if r[TAG_CELL] == cell and not r.get("partial")),
                          key=lambda r: r["time"])
            judged = [v for v in (_first_value(r, kind.fields) for r in rows) if math.isfinite(v)]
            limit = kind.crossed(judged[-1]) if judged else None
            if limit is not None:
                latched.add((cell, kind.kind, limit.severity))
    return latched


@pytest.mark.parametrize("dialect", DIALECTS)
def test_alert_rules_fire_where_the_stream_alerts_hold(run: Run, dialect: str) -> None:
    firing: set[tuple[str, str, str]] = set()
    for rule in alert_rules(dialect):
        kind = _kind_of(rule["uid"])
        query = rule["data"][0]
        text = query["model"]["query"]
        if TAG_CELL not in text:  # the fleet's health: the run's wall-clock time
            window = Window(run.wall.stop - 600, run.wall.stop)
            verdicts = evaluate_rule(rule, run_query(dialect, run.url, INFLUX_DATABASE, text, window,
                                                     now=window.stop))
            assert len(verdicts) == 1, f"{rule['uid']}: no value to judge"
            assert not any(verdicts.values()), f"{rule['uid']}: {_DEAD} dead letters are no burst"
            continue
        window = Window(run.data_end - query["relativeTimeRange"]["from"], run.data_end)
        verdicts = evaluate_rule(rule, run_query(dialect, run.url, INFLUX_DATABASE, text, window,
                                                 now=window.stop))
        assert all(set(dict(labels)) == {TAG_CELL, "preset"} for labels in verdicts), rule["uid"]
        mine = {dict(labels)[TAG_CELL]: fires for labels, fires in verdicts.items()
                if dict(labels)[TAG_CELL] in run.cells}
        # Rules look back from "now" (the end of the data): sample kinds see only the two cells
        # whose excursion lasts to the end, the others fell silent 10 minutes before.
        present = run.cells[:2] if by_kind(kind).scope == "sample" else run.cells
        assert set(mine) == set(present), f"{rule['uid']}: judged {sorted(mine)}"
        firing |= {(cell, kind, rule["labels"]["severity"]) for cell, fires in mine.items() if fires}

    silent = {(cell, "cell_silent", "warning") for cell in run.cells[2:]}  # no excursion: 600 s quiet
    stream = _stream_end_state(run)
    assert {kind for _, kind, _ in stream} >= {"temperature", "voltage_window"}
    assert 0 < len({cell for cell, _, _ in stream}) <= len(run.cells)
    expected = stream | (silent if dialect == "flux" else set())
    assert firing == expected, (f"Grafana only: {sorted(firing - expected)}; "
                                f"stream only: {sorted(expected - firing)}")
    # Every alert the stream still holds was raised by it (and re-armed ones are not held).
    fired = {(a[TAG_CELL], a["kind"], a["severity"]) for a in run.alerts()}
    assert stream <= fired, f"held but never raised: {sorted(stream - fired)}"


def test_a_half_the_data_stopped_in_is_partial_and_raises_nothing(run: Run) -> None:
    rows = [r for r in pq.read_table(run.out / OUT_CYCLES).to_pylist() if r[TAG_CELL] in run.cells]
    stopped = max((r for r in rows if r[TAG_CELL] == run.cells[2]), key=lambda r: r["time"])
    assert [r for r in rows if r["partial"]] == [stopped]
    # Every last half was closed by the end of the input; the complete ones are judged.
    assert all(run.halves(cell) == 8 for cell in run.cells)
    # Two thirds of a charge of a healthy cell: judged, it would read as lost capacity.
    assert stopped["measured_retention"] < THRESHOLDS.retention_floor
    assert not [a for a in run.alerts() if a[TAG_CELL] == run.cells[2] and a["kind"] == "retention_floor"]


def test_every_name_grafana_reads_is_written(run: Run) -> None:
    written: set[tuple[str, str]] = set()
    cells = "|".join(re.escape(c) for c in run.cells)
    for measurement in {m for m, _ in query_references()}:
        # Health totals carry no cell tag; every other measurement only this run's cells.
        where = "" if measurement == MEAS_HEALTH else f" WHERE {TAG_CELL} =~ /^({cells})$/"
        condition = where.replace(" WHERE", " AND")
        for window in (run.data, run.wall):  # sample times, and the health measurement's wall time
            counted = (f'SELECT count(*) FROM "{measurement}" WHERE time >= {round(window.start)}s '
                       f"AND time <= {round(window.stop)}s{condition}")
            for row in _rows(run_influxql(run.url, INFLUX_DATABASE, counted)):
                written |= {(measurement, k[len("count_"):]) for k, v in row.items() if k.startswith("count_") and v}
        for row in _rows(run_influxql(run.url, INFLUX_DATABASE, f'SHOW TAG KEYS FROM "{measurement}"{where}')):
            written.add((measurement, row["tagKey"]))
    missing = sorted(query_references() - written)
    assert not missing, f"read by Grafana, never written: {missing}"
