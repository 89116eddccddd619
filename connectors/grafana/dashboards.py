"""The three celltwin dashboards: fleet overview, cell drill-down, pipeline health.

Built in Python rather than edited in the Grafana UI so a renamed field or a moved
threshold in ``pipeline.contracts`` changes the dashboards in the same commit; the
JSON under ``infra/grafana/provisioning/dashboards`` is generated from here.
"""

from __future__ import annotations

from typing import Any

from connectors.grafana.datasource import DATASOURCE_REF
from connectors.grafana.flux import Flux, FluxQuery, tag_values
from connectors.grafana.panels import (
    Panel,
    above,
    bargauge,
    below,
    dashboard,
    outside,
    override,
    plain,
    table,
    timeseries,
)
from pipeline.contracts import (
    MEAS_ALERT,
    MEAS_CYCLE,
    MEAS_HEALTH,
    MEAS_STATE,
    TAG_CELL,
    TAG_HALF,
    TAG_KIND,
    TAG_PRESET,
    THRESHOLDS,
)

__all__ = ["FOLDER_UID", "FOLDER_TITLE", "DASHBOARD_UIDS", "RETENTIONS", "LAB_RETENTION",
           "halves_in_time", "all_dashboards", "fleet_overview", "cell_drilldown", "pipeline_health"]

FOLDER_UID = "celltwin"
FOLDER_TITLE = "celltwin"
DASHBOARD_UIDS = {
    "fleet": "celltwin-fleet",
    "cell": "celltwin-cell",
    "health": "celltwin-health",
}

_CELL_VAR = "${cell}"
_FLEET_FIELDS = ("soc", "impedance_growth", "crack_risk", "phase_sep_risk")
# Retention as a lab reads it, per half-cycle: the counted one, the twin's beside it.
RETENTIONS = ("measured_retention", "retention")
# The one held against the floor, as pipeline.alerts does: measured where the half has a
# reference, else the twin's (a Flux expression over a row with both pivoted in).
LAB_RETENTION = "if exists r.measured_retention then r.measured_retention else r.retention"
_RETENTION_NOTE = ("measured_retention: the counted capacity of a half-cycle over that of the cell's "
                   "first reversible half of the same kind at the same C-rate (none without one); "
                   "retention: the twin's capacity at that rate over the same at that reference.")
_T = THRESHOLDS


def _colour_column(name: str, thresholds: dict[str, Any], unit: str = "percentunit") -> dict[str, Any]:
    return override(name, unit=unit, thresholds=thresholds,
                    **{"custom.cellOptions": {"type": "color-background"}})


def _risk_limits() -> dict[str, dict[str, Any]]:
    return {
        "measured_retention": below(_T.retention_floor),
        "retention": below(_T.retention_floor),
        "impedance_growth": above(_T.impedance_growth),
        "crack_risk": above(_T.crack_risk),
        "phase_sep_risk": above(_T.phase_sep_risk),
    }


def _last_per_field(flux: Flux) -> Flux:
    return flux.then("last()").keep(TAG_CELL, TAG_PRESET, "_field", "_value")


def halves_in_time(flux: Flux, *columns: str) -> Flux:
    """Discharge and charge halves in one time-ordered table per cell (and ``columns``), so the
    newest half of either kind comes last: the one the in-stream alert judged last."""
    return flux.group(TAG_CELL, TAG_PRESET, *columns).then('sort(columns: ["_time"])')


def _newest_retentions() -> Flux:
    return _last_per_field(halves_in_time(Flux(MEAS_CYCLE, RETENTIONS), "_field"))


def _per_cell_row(flux: Flux) -> Flux:
    return flux.group(TAG_CELL, TAG_PRESET).pivot(TAG_CELL, TAG_PRESET)


def _latest_per_cell() -> Flux:
    # One row per cell with the newest estimate of every fleet field and the newest half-cycle's
    # retentions (absent until a cell has finished one).
    state = _last_per_field(Flux(MEAS_STATE, _FLEET_FIELDS))
    return _per_cell_row(state.union(_newest_retentions())).ungroup()


def _last_seen() -> FluxQuery:
    # Voltage is written with every estimate, so its newest point is "last seen".
    return Flux(MEAS_STATE, ("v",)).then("last()").keep(TAG_CELL, "_time").ungroup().build()


def _at_risk_filter() -> str:
    tests = [
        f"(exists r.crack_risk and r.crack_risk > {_T.crack_risk!r})",
        f"(exists r.phase_sep_risk and r.phase_sep_risk > {_T.phase_sep_risk!r})",
        f"((exists r.measured_retention or exists r.retention) and ({LAB_RETENTION}) < {_T.retention_floor!r})",
        f"(exists r.impedance_growth and r.impedance_growth > {_T.impedance_growth!r})",
    ]
    return "filter(fn: (r) => " + " or ".join(tests) + ")"


def _fleet_table(title: str, latest: Flux, sort_by: str | None, description: str) -> Panel:
    columns = [_colour_column(name, limit) for name, limit in _risk_limits().items()]
    columns.append(override("soc", unit="percentunit"))
    columns.append(override("_time", displayName="last seen"))
    # Inner join: "last seen" must not bring back cells the risk filter removed.
    join = {"id": "joinByField", "options": {"byField": TAG_CELL, "mode": "inner"}}
    return table(title, [latest.build(), _last_seen()], overrides=columns,
                 transformations=[join], sort_by=sort_by, description=description)


def _per_cell_bars(title: str, query: FluxQuery, thresholds: dict[str, Any],
                   display: str = "${__field.labels.cell}", **limits: float) -> Panel:
    panel = bargauge(title, query, unit="percentunit", thresholds=thresholds, **limits)
    panel["fieldConfig"]["defaults"]["displayName"] = display
    return panel


def _state_bars(field: str, title: str, thresholds: dict[str, Any], **limits: float) -> Panel:
    return _per_cell_bars(title, Flux(MEAS_STATE, (field,)).then("last()").build(), thresholds,
                          **limits)


def _retention_bars(thresholds: dict[str, Any]) -> Panel:
    # Pivoted, so each bar is named by its cell and its column: measured_retention, retention.
    return _per_cell_bars("Capacity retention: measured, and the twin's",
                          _per_cell_row(_newest_retentions()).build(), thresholds,
                          display="${__field.labels.cell} ${__field.name}", minimum=0, maximum=1)


def fleet_overview() -> dict[str, Any]:
    """Every cell's state at a glance, limits coloured, cells at risk listed first."""
    limits = _risk_limits()
    latest = _latest_per_cell()
    at_risk = latest.then(_at_risk_filter())
    panels = [
        _fleet_table("Cells at risk", at_risk, "crack_risk",
                     "Cells beyond any limit in pipeline.contracts.THRESHOLDS."),
        _fleet_table("All cells", latest, None,
                     "Newest estimate of every cell and the retentions of its newest half-cycle; "
                     "click a header to sort."),
        _state_bars("soc", "State of charge", plain(), minimum=0, maximum=1),
        _retention_bars(limits["retention"]),
        _state_bars("impedance_growth", "Impedance growth", limits["impedance_growth"], minimum=0),
        _state_bars("crack_risk", "Crack risk", limits["crack_risk"], minimum=0, maximum=1),
        _state_bars("phase_sep_risk", "Phase-separation risk", limits["phase_sep_risk"],
                    minimum=0, maximum=1),
        timeseries("Retention per half-cycle: measured, and the twin's",
                   [Flux(MEAS_CYCLE, RETENTIONS).build()],
                   unit="percentunit", thresholds=limits["retention"], points=True, width=8,
                   description=_RETENTION_NOTE),
        timeseries("Crack risk over time", [Flux(MEAS_STATE, ("crack_risk",)).window("max").build()],
                   unit="percentunit", thresholds=limits["crack_risk"]),
        timeseries("Phase-separation risk over time",
                   [Flux(MEAS_STATE, ("phase_sep_risk",)).window("max").build()],
                   unit="percentunit", thresholds=limits["phase_sep_risk"]),
    ]
    return dashboard(DASHBOARD_UIDS["fleet"], "celltwin - Fleet overview", panels,
                     description="Every cell on test: state of charge, ageing and risk.")


def _cell(measurement: str, *fields: str) -> Flux:
    return Flux(measurement, fields).where(TAG_CELL, _CELL_VAR)


def _cell_series(measurement: str, *fields: str, fn: str = "mean") -> FluxQuery:
    # Pivot to one column per field so panel overrides can match fields by name.
    return _cell(measurement, *fields).window(fn).pivot("_time").keep("_time", *fields).build()


def _cycle_series(half: str, *fields: str) -> FluxQuery:
    return (_cell(MEAS_CYCLE, *fields).where(TAG_HALF, half).pivot("_time")
            .keep("_time", *fields).build())


def _band(flux: Flux, mid: str, std: str, *also: str) -> FluxQuery:
    # Grafana shades between two fields: the band's edges become columns of their own.
    band = f"map(fn: (r) => ({{r with {mid}_hi: r.{mid} + r.{std}, {mid}_lo: r.{mid} - r.{std}}}))"
    return (flux.pivot("_time").then(band)
            .keep("_time", mid, *also, derived=(f"{mid}_lo", f"{mid}_hi")).build())


def _band_overrides(mid: str) -> list[dict[str, Any]]:
    edge = {"custom.lineWidth": 0, "custom.hideFrom": {"legend": True, "tooltip": False, "viz": False}}
    return [override(f"{mid}_hi", **edge, **{"custom.fillBelowTo": f"{mid}_lo"}),
            override(f"{mid}_lo", **edge)]


def _points_only(name: str) -> dict[str, Any]:
    return override(name, **{"custom.drawStyle": "points", "custom.pointSize": 7})


def _cycle_table() -> FluxQuery:
    fields = ("cycle", "capacity_mah_g", "expected_mah_g", "coulombic_efficiency", "measured_retention",
              "retention", "fade_per_cycle")
    return (_cell(MEAS_CYCLE, *fields).pivot("_time").keep("_time", TAG_HALF, *fields).ungroup()
            .then('sort(columns: ["_time"], desc: true)').build())


def _alert_table() -> FluxQuery:
    fields = ("severity", "message", "value", "threshold")
    return (_cell(MEAS_ALERT, *fields).pivot("_time").keep("_time", TAG_KIND, *fields).ungroup()
            .then('sort(columns: ["_time"], desc: true)').build())


def _alert_annotation() -> dict[str, Any]:
    query = (_cell(MEAS_ALERT, "message").keep("_time", "_value", TAG_KIND)
             .then('rename(columns: {_value: "text"})').build())
    return {"name": "Twin alerts", "datasource": DATASOURCE_REF, "enable": True,
            "iconColor": "red", "target": {"refId": "Anno", "query": query}}


def _cell_variable() -> dict[str, Any]:
    query = tag_values(MEAS_STATE, TAG_CELL)
    return {"name": TAG_CELL, "label": "Cell", "type": "query", "datasource": DATASOURCE_REF,
            "query": query, "definition": query, "refresh": 2, "sort": 1, "multi": False,
            "includeAll": False}


def cell_drilldown() -> dict[str, Any]:
    """One cell in depth, chosen with the ``cell`` variable; twin alerts as annotations."""
    discharges = (_cell(MEAS_CYCLE, "capacity_mah", "twin_capacity_mah", "twin_capacity_std_mah")
                  .where(TAG_HALF, "discharge"))
    panels = [
        timeseries("Voltage and current", [_cell_series(MEAS_STATE, "v", "i")], unit="volt",
                   overrides=[override("i", unit="amp", **{"custom.axisPlacement": "right"})]),
        timeseries("State of charge (band: soc +/- soc_std)",
                   [_band(_cell(MEAS_STATE, "soc", "soc_std").window("mean"), "soc", "soc_std")],
                   unit="percentunit", overrides=_band_overrides("soc")),
        timeseries("Discharge capacity per cycle vs the twin's expectation",
                   [_cycle_series("discharge", "capacity_mah_g", "expected_mah_g")], unit="none",
                   points=True,
                   overrides=[override("expected_mah_g", **{"custom.lineStyle": {"fill": "dash",
                                                                                "dash": [10, 10]}})],
                   description="mAh per gram of hydride, one point per discharge half-cycle."),
        timeseries("Discharge capacity: counted, and the twin's (band: +/- 1 std)",
                   [_band(discharges, "twin_capacity_mah", "twin_capacity_std_mah", "capacity_mah")],
                   unit="none", points=True,
                   overrides=[_points_only("capacity_mah"), *_band_overrides("twin_capacity_mah")],
                   description="mAh: coulomb-counted per discharge half-cycle (points), the twin's "
                               "reversible capacity estimate at its end (line) +/- one standard deviation."),
        timeseries("Retention per discharge: measured, and the twin's",
                   [_cycle_series("discharge", *RETENTIONS)], unit="percentunit",
                   thresholds=below(_T.retention_floor), points=True,
                   overrides=[_points_only("measured_retention")], description=_RETENTION_NOTE),
        timeseries("Coulombic efficiency per cycle",
                   [_cycle_series("charge", "coulombic_efficiency")], unit="percentunit",
                   points=True),
        timeseries("Resistance at reference temperature",
                   [_cell_series(MEAS_STATE, "r0_ohm", "rct_ohm")], unit="ohm"),
        timeseries("Impedance growth", [_cell_series(MEAS_STATE, "impedance_growth", fn="last")],
                   unit="percentunit", thresholds=above(_T.impedance_growth)),
        timeseries("Crack and phase-separation risk",
                   [_cell_series(MEAS_STATE, "crack_risk", "phase_sep_risk", fn="max")],
                   unit="percentunit", thresholds=above(_T.crack_risk),
                   overrides=[override("phase_sep_risk", thresholds=above(_T.phase_sep_risk))]),
        timeseries("Temperature", [_cell_series(MEAS_STATE, "temp_c")], unit="celsius",
                   thresholds=outside(_T.temp_low_c, _T.temp_high_c)),
        table("Cycles", [_cycle_table()], width=12, height=10,
              overrides=[override(name, unit="percentunit")
                         for name in ("coulombic_efficiency", *RETENTIONS)]),
        table("Twin alerts", [_alert_table()], width=12, height=10),
    ]
    return dashboard(DASHBOARD_UIDS["cell"], "celltwin - Cell drill-down", panels,
                     description="One cell: measurements, estimates with uncertainty, ageing, risk.",
                     variables=[_cell_variable()], annotations=[_alert_annotation()])


def _rate(field: str, unit: str) -> FluxQuery:
    # pipeline_health fields are cumulative counters per worker; their derivative is
    # the rate, and nonNegative hides the drop when a worker restarts.
    return (Flux(MEAS_HEALTH, (field,)).then(f"derivative(unit: {unit}, nonNegative: true)")
            .window("mean").build())


def pipeline_health() -> dict[str, Any]:
    """Is the pipeline keeping up: lag, throughput, dead letters, failed writes."""
    panels = [
        timeseries("Consumer lag (messages)",
                   [Flux(MEAS_HEALTH, ("consumer_lag",)).window("last").build()]),
        timeseries("Throughput (samples per second)", [_rate("samples", "1s")]),
        timeseries("Dead letters per minute", [_rate("deadletters", "1m")],
                   thresholds=above(_T.deadletter_burst_per_min)),
        timeseries("Write errors per minute", [_rate("write_errors", "1m")]),
        timeseries("Broker or store outage (seconds stalled)",
                   [Flux(MEAS_HEALTH, ("stalled_s",)).window("max").build()], unit="s", points=True),
    ]
    return dashboard(DASHBOARD_UIDS["health"], "celltwin - Pipeline health", panels,
                     description="Kafka consumer lag, throughput, dead-letter rate, sink errors and outages.",
                     refresh="10s", time_from="now-1h")


def all_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by its uid."""
    built = (fleet_overview(), cell_drilldown(), pipeline_health())
    return {d["uid"]: d for d in built}
