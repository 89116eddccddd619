"""Run Grafana's queries against a real InfluxDB the way Grafana does, and evaluate alert rules.

Grafana fills its macros into a query's text before sending it (its InfluxDB data source,
``pkg/tsdb/influxdb/flux/macros.go`` and the InfluxQL query builder): for Flux the range
(``v.timeRangeStart``, ``v.timeRangeStop``, RFC 3339), the window (``v.windowPeriod``), the
bucket (``v.defaultBucket``, quoted); for InfluxQL the time filter (``$timeFilter`` =
``time >= ...ms and time <= ...ms``) and the interval (``$__interval``); dashboards also fill
template variables (``${cell}``). Results become
series with labels; an alert rule reduces each series (``last``, dropping nulls) and holds
the number against its threshold.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

__all__ = ["Table", "Window", "fill_flux", "fill_influxql", "run_flux", "run_influxql", "run_query",
           "series_of", "evaluate_rule"]

# Columns Flux adds to every table that Grafana does not turn into labels of a series.
_NOT_LABELS = {"_time", "_value", "_start", "_stop", "result", "table", "_field", "_measurement"}


@dataclass(frozen=True)
class Window:
    """A dashboard's time range (or an alert rule's, ending at ``stop`` = "now")."""

    start: float  # epoch seconds
    stop: float
    interval_s: int = 60  # what Grafana computes from the range and the panel's width

    def rfc3339(self, t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Table:
    """One result table: its group key (Flux) or tags (InfluxQL), and its rows."""

    key: dict[str, Any]
    rows: list[dict[str, Any]]


def fill_flux(query: str, window: Window, bucket: str, variables: Mapping[str, str] = {}) -> str:
    """The Flux text Grafana sends for ``query``."""
    text = _fill_variables(query, variables)
    text = text.replace("v.timeRangeStart", window.rfc3339(window.start))
    text = text.replace("v.timeRangeStop", window.rfc3339(window.stop))
    text = text.replace("v.windowPeriod", f"{window.interval_s}s")
    return _filled(text.replace("v.defaultBucket", json.dumps(bucket)))


def fill_influxql(query: str, window: Window, variables: Mapping[str, str] = {}) -> str:
    """The InfluxQL text Grafana sends for ``query``."""
    text = _fill_variables(query, variables)
    time_filter = f"time >= {round(window.start * 1000)}ms and time <= {round(window.stop * 1000)}ms"
    text = text.replace("$timeFilter", time_filter)
    return _filled(text.replace("$__interval", f"{window.interval_s}s"))


def _fill_variables(query: str, variables: Mapping[str, str]) -> str:
    for name, value in variables.items():
        query = query.replace("${%s}" % name, value).replace(f"${name}", value)
    return query


def _filled(text: str) -> str:
    if "$" in text or re.search(r"\bv\.\w", text):
        raise AssertionError(f"a macro or variable was left unfilled in:\n{text}")
    return text


def run_flux(url: str, text: str, now: float | None = None) -> list[Table]:
    """Every table a Flux query returns (InfluxDB's /api/v2/query); fails on any error."""
    body: dict[str, Any] = {"query": text, "type": "flux",
                            "dialect": {"annotations": ["datatype", "group", "default"]}}
    if now is not None:
        body["now"] = Window(now, now).rfc3339(now)
    request = urllib.request.Request(f"{url}/api/v2/query", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/csv"})
    csv_text = _answer(request, text)
    return _parse_annotated_csv(csv_text, text)


def run_influxql(url: str, database: str, text: str) -> list[Table]:
    """Every series an InfluxQL query returns (InfluxDB's /query); fails on any error."""
    form = urllib.parse.urlencode({"db": database, "q": text, "epoch": "ms"}).encode()
    answer = json.loads(_answer(urllib.request.Request(f"{url}/query", data=form), text))
    tables = []
    for result in answer.get("results", []):
        if "error" in result:
            raise AssertionError(f"InfluxQL error {result['error']!r} in:\n{text}")
        for series in result.get("series", []):
            rows = [dict(zip(series["columns"], values)) for values in series["values"]]
            for row in rows:
                if "time" in row:
                    row["_time"] = row.pop("time") / 1000.0
            tables.append(Table(dict(series.get("tags") or {}), rows))
    return tables


def run_query(dialect: str, url: str, database: str, query: str, window: Window,
              variables: Mapping[str, str] = {}, now: float | None = None) -> list[Table]:
    """``query`` of ``dialect`` with Grafana's macros filled in, run."""
    if dialect == "flux":
        return run_flux(url, fill_flux(query, window, database, variables), now=now)
    return run_influxql(url, database, fill_influxql(query, window, variables))


def _answer(request: urllib.request.Request, text: str) -> str:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        raise AssertionError(f"query failed ({error.code}): {error.read().decode(errors='replace')}\n"
                             f"in:\n{text}") from error


def _parse_annotated_csv(csv_text: str, text: str) -> list[Table]:
    tables: dict[tuple[int, int], Table] = {}
    types: list[str] = []
    groups: list[str] = []
    header: list[str] = []
    for block_number, block in enumerate(re.split(r"\r?\n\r?\n", csv_text.strip())):
        header = []
        for row in csv.reader(io.StringIO(block)):
            if not row:
                continue
            if row[0] == "#datatype":
                types, header = row, []
            elif row[0] == "#group":
                groups = row
            elif row[0].startswith("#"):
                continue
            elif not header:
                header = row
                if "error" in header and "reference" in header:
                    continue
            else:
                if "error" in header and "reference" in header:
                    raise AssertionError(f"Flux error {row} in:\n{text}")
                record = {name: _value(types[i], value)
                          for i, (name, value) in enumerate(zip(header, row)) if i > 0}
                key = {name: record[name] for i, name in enumerate(header)
                       if i > 0 and groups[i] == "true"}
                number = (block_number, int(record.get("table", 0)))
                tables.setdefault(number, Table(key, [])).rows.append(record)
    return list(tables.values())


def _value(datatype: str, value: str) -> Any:
    if value == "":
        return None
    if datatype == "double":
        return float(value)
    if datatype in ("long", "unsignedLong"):
        return int(value)
    if datatype == "boolean":
        return value == "true"
    if datatype.startswith("dateTime"):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return value


def series_of(tables: list[Table]) -> list[tuple[dict[str, str], list[float | None]]]:
    """Grafana's series of a result: per table, labels (its group key or tags) and the values
    of each value column (``_value``, or every numeric column of a pivoted or InfluxQL table)."""
    found = []
    for table in tables:
        labels = {k: str(v) for k, v in table.key.items() if k not in _NOT_LABELS}
        names = list(dict.fromkeys(name for row in table.rows for name in row))
        columns = ["_value"] if "_value" in names else [
            name for name in names if name not in _NOT_LABELS and name not in labels
            and all(isinstance(row.get(name), (int, float, type(None))) for row in table.rows)]
        found.extend((labels, [row.get(column) for row in table.rows]) for column in columns)
    return found


def evaluate_rule(rule: Mapping[str, Any], tables: list[Table]) -> dict[tuple[tuple[str, str], ...], bool]:
    """Per series (its sorted labels): does the rule's reduce (B) and threshold (C) fire."""
    steps = {item["refId"]: item["model"] for item in rule["data"]}
    reduce, threshold = steps["B"], steps["C"]
    assert (reduce["type"], reduce["reducer"], reduce["settings"]["mode"]) == ("reduce", "last", "dropNN")
    evaluator = threshold["conditions"][0]["evaluator"]
    kind, params = evaluator["type"], evaluator["params"]
    verdicts = {}
    for labels, values in series_of(tables):
        kept = [v for v in values if v is not None and math.isfinite(v)]
        if not kept:
            continue  # dropNN of nothing: no value, no alert instance
        last = kept[-1]
        fires = {"gt": lambda: last > params[0], "lt": lambda: last < params[0],
                 "outside_range": lambda: last < params[0] or last > params[1]}[kind]()
        verdicts[tuple(sorted(labels.items()))] = fires
    return verdicts
