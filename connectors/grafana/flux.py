"""Flux queries built from the contract names, remembering what they read.

Every dashboard panel and alert rule reads InfluxDB through a query built here, so
every measurement, field and tag in a query comes from ``connectors.wire`` and is
checked against it when the query is built (an unknown field fails generation, not a
panel in production). A built query is a ``str`` that also carries the
(measurement, field-or-tag) pairs it reads; the pipeline's integration test compares
those pairs with what the pipeline really writes.

The bucket is Grafana's ``v.defaultBucket`` macro: the bucket lives in the data
source alone, and Grafana expands the macro for dashboards and alert rules alike
(environment variables are not expanded inside provisioned alert queries).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from connectors.wire import (
    ALERT_FIELDS, CYCLE_FIELDS, DQDV_FIELDS, HEALTH_FIELDS, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_HEALTH, MEAS_STATE,
    STATE_FIELDS, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET, TAG_VOLTAGE,
)

__all__ = ["Query", "FluxQuery", "Flux", "Ref", "FIELDS", "TAGS", "DASHBOARD_RANGE", "tag_values"]

Ref = tuple[str, str]

# Fields and tags each measurement carries, as the contracts describe them.
FIELDS: dict[str, tuple[str, ...]] = {
    MEAS_STATE: STATE_FIELDS,
    MEAS_CYCLE: CYCLE_FIELDS,
    MEAS_ALERT: ALERT_FIELDS,
    MEAS_HEALTH: HEALTH_FIELDS,
    MEAS_DQDV: DQDV_FIELDS,
}
TAGS: dict[str, tuple[str, ...]] = {
    MEAS_STATE: (TAG_CELL, TAG_PRESET),
    MEAS_CYCLE: (TAG_CELL, TAG_PRESET, TAG_HALF),
    MEAS_ALERT: (TAG_CELL, TAG_PRESET, TAG_KIND),
    MEAS_HEALTH: (),
    MEAS_DQDV: (TAG_CELL, TAG_PRESET, TAG_HALF, TAG_VOLTAGE),
}

# Grafana's own range macros: the dashboard time picker, or an alert rule's
# relative time range.
DASHBOARD_RANGE = ("v.timeRangeStart", "v.timeRangeStop")


class Query(str):
    """The text of a query (Flux or InfluxQL) that also knows which names it reads.

    A ``str`` so it drops into dashboard JSON unchanged; any string operation on it
    returns a plain ``str`` without ``refs``, which the generator's tests catch.
    """

    refs: frozenset[Ref]

    def __new__(cls, text: str, refs: Iterable[Ref]) -> Query:
        query = super().__new__(cls, text)
        query.refs = frozenset(refs)
        return query


class FluxQuery(Query):
    """A Flux query."""


def _quote(value: str) -> str:
    # A JSON string literal is a valid Flux string literal for the names used here.
    return json.dumps(value)


def _columns(names: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(n) for n in names) + "]"


@dataclass(frozen=True)
class Flux:
    """An immutable query builder: one measurement, some of its fields, then stages."""

    measurement: str
    fields: tuple[str, ...]
    start: str = DASHBOARD_RANGE[0]
    stop: str = DASHBOARD_RANGE[1]
    stages: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    merged: tuple[FluxQuery, ...] = ()  # set by union(): the queries whose rows this one reads

    def __post_init__(self) -> None:
        known = FIELDS.get(self.measurement)
        if known is None:
            raise ValueError(f"unknown measurement {self.measurement!r}")
        unknown = [f for f in self.fields if f not in known]
        if unknown or not self.fields:
            raise ValueError(f"{self.measurement}: unknown or no fields {unknown}")
        bad_tags = sorted(self.tags - set(TAGS[self.measurement]))
        if bad_tags:
            raise ValueError(f"{self.measurement} has no tags {bad_tags}")

    def _with(self, stage: str, tags: Iterable[str] = ()) -> Flux:
        return replace(self, stages=(*self.stages, stage), tags=self.tags | frozenset(tags))

    def _tags_in(self, columns: Iterable[str]) -> list[str]:
        # Columns that are neither Flux's own (_time, _value, ...) nor a field
        # selected above are tags of the measurement.
        return [c for c in columns if not c.startswith("_") and c not in self.fields]

    def where(self, tag: str, value: str) -> Flux:
        """Keep rows whose ``tag`` equals ``value`` (a literal or a Grafana variable)."""
        return self._with(f"filter(fn: (r) => r.{tag} == {_quote(value)})", [tag])

    def group(self, *columns: str) -> Flux:
        return self._with(f"group(columns: {_columns(columns)})", self._tags_in(columns))

    def ungroup(self) -> Flux:
        """Merge every table into one, as a Grafana table panel expects."""
        return self._with("group()")

    def pivot(self, *row_key: str) -> Flux:
        """One column per field, one row per ``row_key`` value."""
        stage = f'pivot(rowKey: {_columns(row_key)}, columnKey: ["_field"], valueColumn: "_value")'
        return self._with(stage, self._tags_in(row_key))

    def keep(self, *columns: str, derived: Iterable[str] = ()) -> Flux:
        """Keep ``columns`` plus ``derived`` ones computed by an earlier ``map``."""
        names = (*columns, *derived)
        return self._with(f"keep(columns: {_columns(names)})", self._tags_in(columns))

    def window(self, fn: str, every: str = "v.windowPeriod") -> Flux:
        """Aggregate per window so long ranges stay light in the browser."""
        return self._with(f"aggregateWindow(every: {every}, fn: {fn}, createEmpty: false)")

    def then(self, stage: str) -> Flux:
        """Append a stage that names no tag (fields it names must be selected above)."""
        return self._with(stage)

    def union(self, *others: Flux) -> Flux:
        """The rows of this query and of ``others`` in one stream (tables with equal group keys
        merge), e.g. to pivot fields of two measurements into one row. Stages added afterwards
        apply to all rows and are checked against this query's measurement."""
        if any(query.merged for query in (self, *others)):
            raise ValueError("a union of unions is not supported")
        return replace(self, stages=(), merged=(self.build(), *(o.build() for o in others)))

    def _source(self) -> tuple[list[str], set[Ref]]:
        """The lines that produce the rows, and what they read."""
        if self.merged:
            names = [f"t{k}" for k in range(len(self.merged))]
            lines = [f"{name} = {query}" for name, query in zip(names, self.merged)]
            lines.append(f"union(tables: [{', '.join(names)}])")
            return lines, set().union(*(query.refs for query in self.merged))
        field_test = " or ".join(f"r._field == {_quote(f)}" for f in self.fields)
        lines = [
            "from(bucket: v.defaultBucket)",
            f"  |> range(start: {self.start}, stop: {self.stop})",
            f"  |> filter(fn: (r) => r._measurement == {_quote(self.measurement)})",
            f"  |> filter(fn: (r) => {field_test})",
        ]
        return lines, {(self.measurement, f) for f in self.fields}

    def build(self) -> FluxQuery:
        lines, refs = self._source()
        lines.extend(f"  |> {stage}" for stage in self.stages)
        refs |= {(self.measurement, t) for t in self.tags}
        return FluxQuery("\n".join(lines), refs)


def tag_values(measurement: str, tag: str, lookback: str = "-30d") -> FluxQuery:
    """The values a tag takes, for a Grafana template variable."""
    if tag not in TAGS.get(measurement, ()):
        raise ValueError(f"{measurement} has no tag {tag!r}")
    text = "\n".join(
        [
            'import "influxdata/influxdb/schema"',
            "schema.tagValues(",
            "  bucket: v.defaultBucket,",
            f"  tag: {_quote(tag)},",
            f"  predicate: (r) => r._measurement == {_quote(measurement)},",
            f"  start: {lookback},",
            ")",
        ]
    )
    return FluxQuery(text, {(measurement, tag)})
