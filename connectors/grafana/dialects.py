"""What each dashboard panel and alert rule asks InfluxDB, in Flux and in InfluxQL.

The dashboards and rules are laid out once (``dashboards``, ``alerts``); the queries behind
them come from one of these two sets, which answer the same questions:

- Flux: InfluxDB 2 (and 1.8+ with Flux enabled);
- InfluxQL: InfluxDB 1.x, InfluxDB 3 (Core, Enterprise), InfluxDB 2 through its v1 API with a
  DBRP mapping.

Where InfluxQL cannot say what Flux says, the difference is named at the method.
"""

from __future__ import annotations

from typing import Any, Literal

from connectors.alert_catalogue import AlertKind
from connectors.grafana.flux import Flux, FluxQuery, Query, tag_values
from connectors.grafana.influxql import InfluxQL, show_tag_values
from connectors.wire import (
    FIELD_PARTIAL, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_HEALTH, MEAS_STATE, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET,
    THRESHOLDS,
)

__all__ = ["Dialect", "DIALECTS", "FLEET_FIELDS", "RETENTIONS", "FluxQueries", "InfluxQLQueries", "queries_for"]

Dialect = Literal["flux", "influxql"]
DIALECTS: tuple[Dialect, ...] = ("flux", "influxql")
CELL_VAR = "${cell}"
FLEET_FIELDS = ("soc", "impedance_growth", "crack_risk", "phase_sep_risk")
# Retention as a lab reads it, per half-cycle: the counted one, the twin's beside it.
RETENTIONS = ("measured_retention", "retention")
_T = THRESHOLDS
# The fleet tables' limits: value beyond which a cell is at risk (retention: below).
AT_RISK = {"crack_risk": ("above", _T.crack_risk), "phase_sep_risk": ("above", _T.phase_sep_risk),
           "impedance_growth": ("above", _T.impedance_growth),
           "measured_retention": ("below", _T.retention_floor), "retention": ("below", _T.retention_floor)}


def _coalesce(fields: tuple[str, ...]) -> str:
    """Flux: the first of ``fields`` a row has."""
    tests = " ".join(f"if exists r.{f} then r.{f} else" for f in fields[:-1])
    return f"{tests} r.{fields[-1]}"


def halves_in_time(flux: Flux, *columns: str) -> Flux:
    """Discharge and charge halves in one time-ordered table per cell (and ``columns``), so the
    newest half of either kind comes last: the one the in-stream alert judged last."""
    return flux.group(TAG_CELL, TAG_PRESET, *columns).then('sort(columns: ["_time"])')


class FluxQueries:
    """The queries for a Flux data source (Grafana fills ``v.timeRangeStart`` and co.)."""

    dialect: Dialect = "flux"
    time_column = "_time"

    @staticmethod
    def _last_per_field(flux: Flux) -> Flux:
        return flux.then("last()").keep(TAG_CELL, TAG_PRESET, "_field", "_value")

    def _newest_retentions(self) -> Flux:
        return self._last_per_field(halves_in_time(Flux(MEAS_CYCLE, RETENTIONS), "_field"))

    @staticmethod
    def _per_cell_row(flux: Flux) -> Flux:
        return flux.group(TAG_CELL, TAG_PRESET).pivot(TAG_CELL, TAG_PRESET)

    def fleet_table(self, at_risk: bool) -> tuple[list[Query], list[dict[str, Any]]]:
        """One row per cell: the newest estimate of every fleet field, the retentions of its
        newest half-cycle and when it was last seen; with ``at_risk`` only cells beyond a limit."""
        state = self._last_per_field(Flux(MEAS_STATE, FLEET_FIELDS))
        latest = self._per_cell_row(state.union(self._newest_retentions())).ungroup()
        if at_risk:
            # Retention as the stream judges it: the measured one where the half has it.
            tests = [f"(exists r.{f} and r.{f} > {limit!r})" for f, (side, limit) in AT_RISK.items()
                     if side == "above"]
            tests.append(f"((exists r.measured_retention or exists r.retention) and "
                         f"({_coalesce(RETENTIONS)}) < {_T.retention_floor!r})")
            latest = latest.then("filter(fn: (r) => " + " or ".join(tests) + ")")
        # Voltage is written with every estimate, so its newest point is "last seen".
        last_seen = Flux(MEAS_STATE, ("v",)).then("last()").keep(TAG_CELL, "_time").ungroup().build()
        # Inner join: "last seen" must not bring back cells the risk filter removed.
        join = {"id": "joinByField", "options": {"byField": TAG_CELL, "mode": "inner"}}
        return [latest.build(), last_seen], [join]

    def newest_per_cell(self, field: str) -> FluxQuery:
        return Flux(MEAS_STATE, (field,)).then("last()").build()

    def newest_retentions_per_cell(self) -> FluxQuery:
        return self._per_cell_row(self._newest_retentions()).build()

    def retention_series(self) -> FluxQuery:
        return Flux(MEAS_CYCLE, RETENTIONS).build()

    def fleet_series(self, field: str, fn: str) -> FluxQuery:
        return Flux(MEAS_STATE, (field,)).window(fn).build()

    @staticmethod
    def _cell(measurement: str, *fields: str) -> Flux:
        return Flux(measurement, fields).where(TAG_CELL, CELL_VAR)

    def cell_series(self, measurement: str, *fields: str, fn: str = "mean") -> FluxQuery:
        # Pivot to one column per field so panel overrides can match fields by name.
        return self._cell(measurement, *fields).window(fn).pivot("_time").keep("_time", *fields).build()

    def cycle_series(self, half: str | None, *fields: str) -> FluxQuery:
        """The cell's half-cycles of one kind, or (``None``) of both in one time-ordered table."""
        if half:
            return self._cell(MEAS_CYCLE, *fields).where(TAG_HALF, half).pivot("_time").keep("_time", *fields).build()
        return (self._cell(MEAS_CYCLE, *fields).pivot("_time").keep("_time", *fields).ungroup()
                .then('sort(columns: ["_time"])').build())

    def band(self, measurement: str, mid: str, std: str, *also: str, half: str | None = None) -> FluxQuery:
        """``mid`` with ``mid_lo``/``mid_hi`` = ``mid`` -/+ ``std`` as columns of their own (Grafana
        shades between two fields): windowed means of the cell's estimates, or its half-cycles."""
        flux = self._cell(measurement, mid, std, *also)
        flux = flux.where(TAG_HALF, half) if half else flux.window("mean")
        band = f"map(fn: (r) => ({{r with {mid}_hi: r.{mid} + r.{std}, {mid}_lo: r.{mid} - r.{std}}}))"
        return (flux.pivot("_time").then(band)
                .keep("_time", mid, *also, derived=(f"{mid}_lo", f"{mid}_hi")).build())

    def dqdv_points(self) -> FluxQuery:
        """The cell's measured dQ/dV points (voltage, value) of every half in range, in one
        table by voltage: each bin is a series of its own in the store."""
        return (self._cell(MEAS_DQDV, "v", "dqdv_mah_v").pivot("_time").keep("v", "dqdv_mah_v").ungroup()
                .then('sort(columns: ["v"])').build())

    def newest_first(self, measurement: str, tag: str, *fields: str) -> FluxQuery:
        """The cell's points as table rows, newest first, with ``tag`` as a column."""
        return (self._cell(measurement, *fields).pivot("_time").keep("_time", tag, *fields).ungroup()
                .then('sort(columns: ["_time"], desc: true)').build())

    def annotation(self) -> dict[str, Any]:
        query = (self._cell(MEAS_ALERT, "message").keep("_time", "_value", TAG_KIND)
                 .then('rename(columns: {_value: "text"})').build())
        return {"refId": "Anno", "query": query}

    def cells(self) -> Query:
        return tag_values(MEAS_STATE, TAG_CELL)

    def health_rate(self, field: str, unit: str) -> FluxQuery:
        # pipeline_health fields are cumulative counters per worker; their derivative is
        # the rate, and nonNegative hides the drop when a worker restarts.
        return (Flux(MEAS_HEALTH, (field,)).then(f"derivative(unit: {unit}, nonNegative: true)")
                .window("mean").build())

    def health_last(self, field: str) -> FluxQuery:
        return Flux(MEAS_HEALTH, (field,)).window("last").build()

    def health_max(self, field: str) -> FluxQuery:
        return Flux(MEAS_HEALTH, (field,)).window("max").build()

    @staticmethod
    def _labelled(flux: Flux) -> FluxQuery:
        # Only cell and preset survive as labels; _start/_stop would make a new alert
        # instance at every evaluation.
        return flux.keep("_time", "_value", TAG_CELL, TAG_PRESET).build()

    def rule_query(self, kind: AlertKind) -> FluxQuery:
        """Per cell, the value the stream judged last: the newest point (sample kinds) or the
        newest half-cycle of either kind (the first of the kind's fields it has); for store
        kinds, the value Grafana derives."""
        flux = Flux(kind.measurement, kind.fields)
        if kind.kind == "cell_silent":
            age = "map(fn: (r) => ({r with _value: float(v: int(v: now()) - int(v: r._time)) / 1000000000.0}))"
            return self._labelled(flux.then("last()").then(age))
        if kind.kind == "deadletter_burst":
            # Counters per worker -> per-minute rate per worker -> fleet total per minute.
            return (flux.then("derivative(unit: 1m, nonNegative: true)").window("mean", every="1m")
                    .group("_measurement", "_field").window("sum", every="1m").keep("_time", "_value")
                    .build())
        if kind.scope == "half_cycle":
            # One row per half with its partial mark (a half the data stopped in is not judged),
            # then the first of the kind's values it has.
            flux = (Flux(kind.measurement, (*kind.fields, FIELD_PARTIAL)).pivot("_time")
                    .then(f"filter(fn: (r) => not exists r.{FIELD_PARTIAL} or not r.{FIELD_PARTIAL})")
                    .then(f"map(fn: (r) => ({{r with _value: {_coalesce(kind.fields)}}}))"))
            flux = halves_in_time(flux)
        return self._labelled(flux.then("last()"))


class InfluxQLQueries:
    """The queries for an InfluxQL data source (Grafana fills ``$timeFilter``, ``$__interval``)."""

    dialect: Dialect = "influxql"
    time_column = "Time"

    def fleet_table(self, at_risk: bool) -> tuple[list[Query], list[dict[str, Any]]]:
        """As Flux's, joined and filtered by Grafana: InfluxQL cannot join two measurements.
        Differs in one point: a cell is at risk when either retention is below the floor
        (InfluxQL and Grafana's filter cannot take the measured one where it exists)."""
        state = InfluxQL(MEAS_STATE)
        for field in FLEET_FIELDS:
            state = state.field(field, "last")
        retentions = InfluxQL(MEAS_CYCLE)
        for field in RETENTIONS:
            retentions = retentions.field(field, "last")
        last_seen = InfluxQL(MEAS_STATE).field("v", "last")
        queries = [q.by(TAG_CELL).build() for q in (state, retentions, last_seen)]
        transformations: list[dict[str, Any]] = [
            {"id": "joinByField", "options": {"byField": TAG_CELL, "mode": "outer"}}]
        if at_risk:
            filters = [{"fieldName": field, "config": {"id": "greater" if side == "above" else "lower",
                                                       "options": {"value": limit}}}
                       for field, (side, limit) in AT_RISK.items()]
            transformations.append({"id": "filterByValue", "options": {
                "type": "include", "match": "any", "filters": filters}})
        return queries, transformations

    def newest_per_cell(self, field: str) -> Query:
        return InfluxQL(MEAS_STATE).field(field, "last").by(TAG_CELL).build()

    def newest_retentions_per_cell(self) -> Query:
        query = InfluxQL(MEAS_CYCLE)
        for field in RETENTIONS:
            query = query.field(field, "last")
        return query.by(TAG_CELL, TAG_PRESET).build()

    def retention_series(self) -> Query:
        return InfluxQL(MEAS_CYCLE).field(RETENTIONS[0]).field(RETENTIONS[1]).by(TAG_CELL, TAG_HALF).build()

    def fleet_series(self, field: str, fn: str) -> Query:
        return InfluxQL(MEAS_STATE).field(field, fn).per_interval().by(TAG_CELL).build()

    @staticmethod
    def _cell(measurement: str) -> InfluxQL:
        return InfluxQL(measurement).where(TAG_CELL, CELL_VAR)

    def cell_series(self, measurement: str, *fields: str, fn: str = "mean") -> Query:
        query = self._cell(measurement)
        for field in fields:
            query = query.field(field, fn)
        return query.per_interval().build()

    def cycle_series(self, half: str | None, *fields: str) -> Query:
        query = self._cell(MEAS_CYCLE)
        if half:
            query = query.where(TAG_HALF, half)
        for field in fields:
            query = query.field(field)
        return query.build()

    def band(self, measurement: str, mid: str, std: str, *also: str, half: str | None = None) -> Query:
        query = self._cell(measurement)
        if half:
            query = query.where(TAG_HALF, half)
        fn = None if half else "mean"  # half-cycles are points of their own; estimates are windowed

        def term(field: str) -> str:
            return f'{fn}("{field}")' if fn else f'"{field}"'

        query = query.field(mid, fn)
        for field in also:
            query = query.field(field, fn)
        query = (query.expression(f"{term(mid)} + {term(std)}", f"{mid}_hi", mid, std)
                 .expression(f"{term(mid)} - {term(std)}", f"{mid}_lo", mid, std))
        return query.build() if half else query.per_interval().build()

    def dqdv_points(self) -> Query:
        """As Flux's; without GROUP BY InfluxQL gives every bin's points as one series."""
        return self._cell(MEAS_DQDV).field("v").field("dqdv_mah_v").build()

    def newest_first(self, measurement: str, tag: str, *fields: str) -> Query:
        query = self._cell(measurement).tag(tag)
        for field in fields:
            query = query.field(field)
        return query.newest_first().build()

    def annotation(self) -> dict[str, Any]:
        query = self._cell(MEAS_ALERT).field("message").tag(TAG_KIND).build()
        return {"refId": "Anno", "query": query, "rawQuery": True, "resultFormat": "table",
                "textColumn": "message", "tagsColumn": TAG_KIND}

    def cells(self) -> Query:
        return show_tag_values(MEAS_STATE, TAG_CELL)

    def health_rate(self, field: str, unit: str) -> Query:
        # Between raw counter points, as Flux's; non-negative hides a worker's restart.
        return InfluxQL(MEAS_HEALTH).expression(f'non_negative_derivative("{field}", {unit})', field,
                                                field).build()

    def health_last(self, field: str) -> Query:
        return InfluxQL(MEAS_HEALTH).field(field, "last").per_interval().build()

    def health_max(self, field: str) -> Query:
        return InfluxQL(MEAS_HEALTH).field(field, "max").per_interval().build()

    def rule_query(self, kind: AlertKind) -> Query | None:
        """As Flux's, with two differences InfluxQL forces: the retention rule judges the newest
        measured retention (no per-half fallback to the twin's), and there is no silent-cell rule
        (InfluxQL cannot compute the age of a point)."""
        if kind.kind == "cell_silent":
            return None
        if kind.kind == "deadletter_burst":
            # Per minute, the change of the counter's last value; a quiet minute holds it (0 more).
            field = kind.fields[0]
            return (InfluxQL(kind.measurement)
                    .expression(f'non_negative_derivative(last("{field}"), 1m)', field, field)
                    .per_interval(fill="previous").build())
        query = InfluxQL(kind.measurement).field(kind.fields[0], "last").by(TAG_CELL, TAG_PRESET)
        return (query.unless(FIELD_PARTIAL) if kind.scope == "half_cycle" else query).build()


def queries_for(dialect: Dialect) -> FluxQueries | InfluxQLQueries:
    if dialect == "flux":
        return FluxQueries()
    if dialect == "influxql":
        return InfluxQLQueries()
    raise ValueError(f"unknown query language {dialect!r} (flux or influxql)")
