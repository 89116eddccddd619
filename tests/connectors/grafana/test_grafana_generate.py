"""The generated provisioning files: up to date, consistent with the contracts."""

from __future__ import annotations

import json
import re

import pytest

from connectors.alert_catalogue import CATALOGUE
from connectors.grafana import alerts, datasource
from connectors.grafana.dashboards import DASHBOARD_UIDS, all_dashboards
from connectors.grafana.datasource import DATASOURCE_UID
from connectors.grafana.dialects import DIALECTS
from connectors.grafana.flux import Flux, FluxQuery, Query
from connectors.grafana.generate import PROVISIONING_DIR, render, stale_files
from connectors.grafana.influxql import InfluxQLQuery
from connectors.grafana.references import all_queries, query_references
from connectors.wire import (
    ALERT_FIELDS, CYCLE_FIELDS, DQDV_FIELDS, HEALTH_FIELDS, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_HEALTH, MEAS_STATE,
    STATE_FIELDS, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET, TAG_VOLTAGE, THRESHOLDS,
)

KNOWN = {
    MEAS_STATE: set(STATE_FIELDS) | {TAG_CELL, TAG_PRESET},
    MEAS_CYCLE: set(CYCLE_FIELDS) | {TAG_CELL, TAG_PRESET, TAG_HALF},
    MEAS_ALERT: set(ALERT_FIELDS) | {TAG_CELL, TAG_PRESET, TAG_KIND},
    MEAS_HEALTH: set(HEALTH_FIELDS),
    MEAS_DQDV: set(DQDV_FIELDS) | {TAG_CELL, TAG_PRESET, TAG_HALF, TAG_VOLTAGE},
}


def _walk(value):
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("query", "definition"):
                yield ("query", item)
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_committed_provisioning_files_are_up_to_date() -> None:
    stale = stale_files(PROVISIONING_DIR)
    assert stale == [], f"run `python -m connectors.grafana.generate`; out of date: {stale}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_query_is_built_from_contract_names(dialect: str) -> None:
    documents = [*all_dashboards(dialect).values(), *alerts.alert_rules(dialect)]
    queries = [item[1] for doc in documents for item in _walk(doc)
               if isinstance(item, tuple) and item[0] == "query"]
    assert len(queries) == len(all_queries(dialect)) > 20
    kind = FluxQuery if dialect == "flux" else InfluxQLQuery
    assert all(isinstance(q, kind) for q in queries), "a query was written by hand, or in the other language"


def test_influxql_references_match_the_query_text() -> None:
    for query in all_queries("influxql"):
        measurements = set(re.findall(r'FROM "(\w+)"', query))
        assert measurements == {m for m, _ in query.refs}, query
        quoted = set(re.findall(r'"(\w+)"', query)) - measurements
        aliases = set(re.findall(r'AS "(\w+)"', query))
        assert quoted - aliases <= {name for _, name in query.refs}, query
        assert all(name in KNOWN[m] for m, name in query.refs), query


def test_references_match_the_query_text_and_the_contracts() -> None:
    for query in all_queries("flux"):
        measurements = set(re.findall(r'r\._measurement == "(\w+)"', query)) or {m for m, _ in query.refs}
        fields = set(re.findall(r'r\._field == "(\w+)"', query))
        tags = set(re.findall(r'r\.(\w+) == "', query)) - {"_measurement", "_field"}
        assert measurements == {m for m, _ in query.refs}, query
        named = {name for _, name in query.refs}
        assert fields | tags <= named, query
        assert all(name in KNOWN[m] for m, name in query.refs), query

    references = query_references()
    assert {(m, name) for m, name in references} <= {(m, n) for m, names in KNOWN.items() for n in names}
    for expected in [(MEAS_STATE, "soc_std"), (MEAS_STATE, TAG_CELL), (MEAS_CYCLE, "expected_mah_g"),
                     (MEAS_CYCLE, TAG_HALF), (MEAS_ALERT, TAG_KIND), (MEAS_ALERT, "message"),
                     (MEAS_DQDV, "dqdv_mah_v"), (MEAS_CYCLE, "energy_efficiency"), (MEAS_CYCLE, "peak1_v")]:
        assert expected in references
    assert {(MEAS_HEALTH, f) for f in HEALTH_FIELDS} <= references


def test_flux_builder_refuses_names_outside_the_contracts() -> None:
    with pytest.raises(ValueError, match="unknown or no fields"):
        Flux(MEAS_STATE, ("voltage",))
    with pytest.raises(ValueError, match="has no tags"):
        Flux(MEAS_STATE, ("soc",)).where(TAG_KIND, "x")
    with pytest.raises(ValueError, match="unknown measurement"):
        Flux("twin", ("soc",))


# Per rule: threshold type, limits, severity; as the stream alerts (tests/pipeline/test_alerts.py)
# and the README state them.
EXPECTED_RULES = {
    "celltwin-crack-risk": ("gt", [THRESHOLDS.crack_risk], "warning"),
    "celltwin-phase-sep-risk": ("gt", [THRESHOLDS.phase_sep_risk], "warning"),
    "celltwin-retention-floor": ("lt", [THRESHOLDS.retention_floor], "critical"),
    "celltwin-eol-horizon": ("lt", [THRESHOLDS.eol_horizon_cycles], "warning"),
    "celltwin-fade-rate-jump": ("gt", [THRESHOLDS.fade_rate_jump], "warning"),
    "celltwin-impedance-growth": ("gt", [THRESHOLDS.impedance_growth], "warning"),
    "celltwin-temperature": ("outside_range", [THRESHOLDS.temp_low_c, THRESHOLDS.temp_high_c], "warning"),
    "celltwin-voltage-window-below": ("lt", [0.28], "critical"),
    "celltwin-voltage-window-above": ("gt", [1.02], "warning"),
    "celltwin-cell-silent": ("gt", [THRESHOLDS.silent_after_s], "warning"),
    "celltwin-deadletter-burst": ("gt", [THRESHOLDS.deadletter_burst_per_min], "warning"),
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_alert_thresholds_come_from_the_contracts(dialect: str) -> None:
    # InfluxQL cannot compute the age of a point: no silent-cell rule.
    expected = {uid: spec for uid, spec in EXPECTED_RULES.items()
                if dialect == "flux" or uid != "celltwin-cell-silent"}
    rules = {rule["uid"]: rule for rule in alerts.alert_rules(dialect)}
    assert set(rules) == set(expected)
    for uid, (kind, params, severity) in expected.items():
        rule = rules[uid]
        assert len(uid) <= 40
        by_ref = {item["refId"]: item for item in rule["data"]}
        assert rule["condition"] == "C" and set(by_ref) == {"A", "B", "C"}
        assert by_ref["A"]["datasourceUid"] == DATASOURCE_UID
        assert by_ref["A"]["relativeTimeRange"]["from"] > 0
        assert by_ref["B"]["model"] | {"type": "reduce", "expression": "A"} == by_ref["B"]["model"]
        evaluator = by_ref["C"]["model"]["conditions"][0]["evaluator"]
        assert (evaluator["type"], evaluator["params"]) == (kind, params)
        assert rule["labels"]["severity"] == severity
        assert by_ref["C"]["model"]["expression"] == "B"
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert {"summary", "description"} <= set(rule["annotations"])


def test_silent_rule_looks_back_further_than_its_limit() -> None:
    rule = next(r for r in alerts.alert_rules() if r["uid"] == "celltwin-cell-silent")
    assert rule["data"][0]["relativeTimeRange"]["from"] > THRESHOLDS.silent_after_s


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dashboards_are_well_formed(dialect: str) -> None:
    boards = all_dashboards(dialect)
    assert set(boards) == set(DASHBOARD_UIDS.values())
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert panel["targets"] and all(t["query"] for t in panel["targets"])


def test_fleet_overview_colours_limits_from_the_contracts() -> None:
    fleet = all_dashboards()[DASHBOARD_UIDS["fleet"]]
    table = next(p for p in fleet["panels"] if p["title"] == "Cells at risk")
    limits = {}
    for entry in table["fieldConfig"]["overrides"]:
        for prop in entry["properties"]:
            if prop["id"] == "thresholds":
                limits[entry["matcher"]["options"]] = [s["value"] for s in prop["value"]["steps"]][1]
    assert limits == {"measured_retention": THRESHOLDS.retention_floor,
                      "retention": THRESHOLDS.retention_floor,
                      "impedance_growth": THRESHOLDS.impedance_growth,
                      "crack_risk": THRESHOLDS.crack_risk,
                      "phase_sep_risk": THRESHOLDS.phase_sep_risk}
    assert "last seen" in json.dumps(table)
    assert table["options"]["sortBy"] == [{"displayName": "crack_risk", "desc": True}]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_query_balances_its_brackets_and_quotes(dialect: str) -> None:
    # Catch a builder that drops a bracket or a quote before a server does.
    pairs = {")": "(", "]": "[", "}": "{"}
    for query in all_queries(dialect):
        assert query.count('"') % 2 == 0 and query.count("'") % 2 == 0, query
        open_ = []
        for char in re.sub(r"""'[^']*'""", "''", re.sub(r'"[^"]*"', '""', query)):
            if char in "([{":
                open_.append(char)
            elif char in pairs:
                assert open_ and open_.pop() == pairs[char], query
        assert not open_, query


def test_retention_rule_reads_the_measured_retention_and_falls_back_to_the_twins() -> None:
    rule = next(r for r in alerts.alert_rules() if r["uid"] == "celltwin-retention-floor")
    query = rule["data"][0]["model"]["query"]

    assert {(MEAS_CYCLE, "measured_retention"), (MEAS_CYCLE, "retention")} <= query.refs
    assert "if exists r.measured_retention then r.measured_retention else r.retention" in query
    # Both values of one half in a row, then the newest half of either kind, as in the stream.
    assert query.index("pivot(") < query.index("map(") < query.index("sort(") < query.index("last()")
    assert "r.half ==" not in query
    # One summary per half-cycle: the rule must look back further than one takes at low rates.
    assert rule["data"][0]["relativeTimeRange"]["from"] >= 86400


def test_fleet_judges_retention_by_the_measured_value_and_shows_both() -> None:
    fleet = all_dashboards()[DASHBOARD_UIDS["fleet"]]
    at_risk = next(p for p in fleet["panels"] if p["title"] == "Cells at risk")["targets"][0]["query"]

    assert {(MEAS_STATE, "crack_risk"), (MEAS_CYCLE, "measured_retention"), (MEAS_CYCLE, "retention")} \
        <= at_risk.refs
    assert "union(tables: [t0, t1])" in at_risk
    assert "r.half ==" not in at_risk  # the newest half of either kind, as the alert rule
    assert f"else r.retention) < {THRESHOLDS.retention_floor!r}" in at_risk
    bars = next(p for p in fleet["panels"] if p["type"] == "bargauge" and "retention" in p["title"].lower())
    assert '"measured_retention" or r._field == "retention"' in bars["targets"][0]["query"]
    assert bars["fieldConfig"]["defaults"]["displayName"] == "${__field.labels.cell} ${__field.name}"


def test_flux_union_reads_both_measurements_and_refuses_nesting() -> None:
    state = Flux(MEAS_STATE, ("soc",)).then("last()")
    cycles = Flux(MEAS_CYCLE, ("measured_retention",)).where(TAG_HALF, "discharge")
    query = state.union(cycles).group(TAG_CELL).build()

    assert query.refs == {(MEAS_STATE, "soc"), (MEAS_STATE, TAG_CELL), (MEAS_CYCLE, "measured_retention"),
                          (MEAS_CYCLE, TAG_HALF)}
    assert query.startswith("t0 = from(bucket: v.defaultBucket)")
    assert query.endswith('union(tables: [t0, t1])\n  |> group(columns: ["cell"])')
    with pytest.raises(ValueError, match="union of unions"):
        state.union(cycles).union(state)


def test_cell_drilldown_has_cell_variable_band_and_alert_annotations() -> None:
    cell = all_dashboards()[DASHBOARD_UIDS["cell"]]
    (variable,) = cell["templating"]["list"]
    assert variable["name"] == TAG_CELL
    assert f'tag: "{TAG_CELL}"' in variable["query"]
    annotation = cell["annotations"]["list"][1]
    assert f'r._measurement == "{MEAS_ALERT}"' in annotation["target"]["query"]
    band = next(p for p in cell["panels"] if p["title"].startswith("State of charge"))
    assert "r.soc + r.soc_std" in band["targets"][0]["query"]
    fill = [prop for o in band["fieldConfig"]["overrides"] for prop in o["properties"]
            if prop["id"] == "custom.fillBelowTo"]
    assert fill == [{"id": "custom.fillBelowTo", "value": "soc_lo"}]
    capacity = next(p for p in cell["panels"] if p["title"].startswith("Discharge capacity"))
    assert '"expected_mah_g"' in capacity["targets"][0]["query"]
    twin = next(p for p in cell["panels"] if p["title"].startswith("Discharge capacity: counted"))
    assert "r.twin_capacity_mah + r.twin_capacity_std_mah" in twin["targets"][0]["query"]
    assert {"twin_capacity_mah_lo", "capacity_mah"} <= {
        o["matcher"]["options"] for o in twin["fieldConfig"]["overrides"]}
    retention = next(p for p in cell["panels"] if p["title"].startswith("Retention per discharge"))
    assert '"measured_retention", "retention"' in retention["targets"][0]["query"]
    assert all('"${cell}"' in t["query"] for p in cell["panels"] for t in p["targets"])


def test_provisioning_files_parse_as_yaml_to_the_python_definitions() -> None:
    yaml = pytest.importorskip("yaml")
    files = render()
    assert yaml.safe_load(files["datasources/influxdb.yaml"]) == datasource.provisioning_file()
    rules = json.loads(json.dumps(alerts.provisioning_file()))  # FluxQuery -> str
    assert yaml.safe_load(files["alerting/rules.yaml"]) == rules
    provider = yaml.safe_load(files["dashboards/dashboards.yaml"])["providers"][0]
    assert provider["folderUid"] == "celltwin" and provider["options"]["path"].endswith("/dashboards")


def test_datasource_file_keeps_secrets_in_the_environment() -> None:
    text = render()["datasources/influxdb.yaml"]
    for name in ("INFLUX_URL", "INFLUX_ORG", "INFLUX_BUCKET", "INFLUX_TOKEN"):
        assert f'"${{{name}}}"' in text
    assert f"uid: {DATASOURCE_UID}" in text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_data_sources_are_addressed_by_uid_only(dialect: str) -> None:
    documents = [*all_dashboards(dialect).values(), *alerts.alert_rules(dialect)]
    refs = [value["datasource"] for doc in documents for value in _walk(doc)
            if isinstance(value, dict) and isinstance(value.get("datasource"), dict)]
    assert refs and all(set(ref) == {"type", "uid"} for ref in refs)
    uids = {item["datasourceUid"] for rule in alerts.alert_rules(dialect) for item in rule["data"]}
    assert uids == {DATASOURCE_UID, "__expr__"}


def test_rules_carry_the_catalogue_hold_and_severity() -> None:
    rules = {rule["uid"]: rule for rule in alerts.alert_rules("flux")}
    for kind in CATALOGUE:
        mine = [rule for uid, rule in rules.items() if uid.startswith(f"celltwin-{kind.kind.replace('_', '-')}")]
        assert mine, kind.kind
        assert {rule["for"] for rule in mine} == {kind.hold}
        assert {rule["labels"]["severity"] for rule in mine} == {limit.severity for limit in kind.limits}


def test_influxql_data_source_reads_the_database_with_a_token_header() -> None:
    settings = datasource.InfluxSettings(url="http://influx:8181", org="", bucket="cells", token="t0k")
    source = datasource.datasource(settings, "influxql")
    assert source["jsonData"]["version"] == "InfluxQL" and source["jsonData"]["dbName"] == "cells"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"] == {"httpHeaderValue1": "Token t0k"}
    assert source["uid"] == DATASOURCE_UID
    table = next(p for p in all_dashboards("influxql")[DASHBOARD_UIDS["fleet"]]["panels"]
                 if p["title"] == "All cells")
    assert all(t["rawQuery"] and t["resultFormat"] == "table" for t in table["targets"])
