"""The three celltwin dashboards: fleet overview, cell drill-down, pipeline health.

Built in Python rather than edited in the Grafana UI so a renamed field or a moved
threshold in ``connectors.wire`` changes the dashboards in the same commit; the
JSON under ``infra/grafana/provisioning/dashboards`` is generated from here. The layout is
the same in both query languages; the queries come from ``dialects``.
"""

from __future__ import annotations

from typing import Any

from connectors.grafana.datasource import DATASOURCE_REF
from connectors.grafana.dialects import RETENTIONS, Dialect, FluxQueries, InfluxQLQueries, queries_for
from connectors.grafana.flux import Query
from connectors.grafana.panels import (
    Panel, above, bargauge, below, dashboard, outside, override, plain, table, timeseries, xy_points,
)
from connectors.wire import MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, TAG_CELL, TAG_HALF, TAG_KIND, THRESHOLDS

__all__ = ["FOLDER_UID", "FOLDER_TITLE", "DASHBOARD_UIDS", "all_dashboards", "fleet_overview",
           "cell_drilldown", "pipeline_health"]

FOLDER_UID = "celltwin"
FOLDER_TITLE = "celltwin"
DASHBOARD_UIDS = {
    "fleet": "celltwin-fleet",
    "cell": "celltwin-cell",
    "health": "celltwin-health",
}

Queries = FluxQueries | InfluxQLQueries
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


def _fleet_table(q: Queries, title: str, at_risk: bool, sort_by: str | None, description: str) -> Panel:
    columns = [_colour_column(name, limit) for name, limit in _risk_limits().items()]
    columns.append(override("soc", unit="percentunit"))
    columns.append(override(q.time_column, displayName="last seen"))
    queries, transformations = q.fleet_table(at_risk)
    return table(title, queries, overrides=columns, transformations=transformations, sort_by=sort_by,
                 description=description)


def _per_cell_bars(title: str, query: Query, thresholds: dict[str, Any],
                   display: str = "${__field.labels.cell}", **limits: float) -> Panel:
    panel = bargauge(title, query, unit="percentunit", thresholds=thresholds, **limits)
    panel["fieldConfig"]["defaults"]["displayName"] = display
    return panel


def _state_bars(q: Queries, field: str, title: str, thresholds: dict[str, Any], **limits: float) -> Panel:
    return _per_cell_bars(title, q.newest_per_cell(field), thresholds, **limits)


def fleet_overview(dialect: Dialect = "flux") -> dict[str, Any]:
    """Every cell's state at a glance, limits coloured, cells at risk listed first."""
    q = queries_for(dialect)
    limits = _risk_limits()
    panels = [
        _fleet_table(q, "Cells at risk", True, "crack_risk",
                     "Cells beyond any limit in connectors.wire.THRESHOLDS."),
        _fleet_table(q, "All cells", False, None,
                     "Newest estimate of every cell and the retentions of its newest half-cycle; "
                     "click a header to sort."),
        _state_bars(q, "soc", "State of charge", plain(), minimum=0, maximum=1),
        # Each bar is named by its cell and its column: measured_retention, retention.
        _per_cell_bars("Capacity retention: measured, and the twin's", q.newest_retentions_per_cell(),
                       limits["retention"], display="${__field.labels.cell} ${__field.name}",
                       minimum=0, maximum=1),
        _state_bars(q, "impedance_growth", "Impedance growth", limits["impedance_growth"], minimum=0),
        _state_bars(q, "crack_risk", "Crack risk", limits["crack_risk"], minimum=0, maximum=1),
        _state_bars(q, "phase_sep_risk", "Phase-separation risk", limits["phase_sep_risk"],
                    minimum=0, maximum=1),
        timeseries("Retention per half-cycle: measured, and the twin's", [q.retention_series()],
                   unit="percentunit", thresholds=limits["retention"], points=True, width=8,
                   description=_RETENTION_NOTE),
        timeseries("Crack risk over time", [q.fleet_series("crack_risk", "max")],
                   unit="percentunit", thresholds=limits["crack_risk"]),
        timeseries("Phase-separation risk over time", [q.fleet_series("phase_sep_risk", "max")],
                   unit="percentunit", thresholds=limits["phase_sep_risk"]),
    ]
    return dashboard(DASHBOARD_UIDS["fleet"], "celltwin - Fleet overview", panels,
                     description="Every cell on test: state of charge, ageing and risk.")


def _band_overrides(mid: str) -> list[dict[str, Any]]:
    edge = {"custom.lineWidth": 0, "custom.hideFrom": {"legend": True, "tooltip": False, "viz": False}}
    return [override(f"{mid}_hi", **edge, **{"custom.fillBelowTo": f"{mid}_lo"}),
            override(f"{mid}_lo", **edge)]


def _points_only(name: str) -> dict[str, Any]:
    return override(name, **{"custom.drawStyle": "points", "custom.pointSize": 7})


_CYCLE_COLUMNS = ("cycle", "capacity_mah_g", "expected_mah_g", "coulombic_efficiency", "measured_retention",
                  "retention", "fade_per_cycle")
_ALERT_COLUMNS = ("severity", "message", "value", "threshold")


def _alert_annotation(q: Queries) -> dict[str, Any]:
    return {"name": "Twin alerts", "datasource": DATASOURCE_REF, "enable": True,
            "iconColor": "red", "target": q.annotation()}


def _cell_variable(q: Queries) -> dict[str, Any]:
    query = q.cells()
    return {"name": TAG_CELL, "label": "Cell", "type": "query", "datasource": DATASOURCE_REF,
            "query": query, "definition": query, "refresh": 2, "sort": 1, "multi": False,
            "includeAll": False}


def cell_drilldown(dialect: Dialect = "flux") -> dict[str, Any]:
    """One cell in depth, chosen with the ``cell`` variable; twin alerts as annotations."""
    q = queries_for(dialect)
    panels = [
        timeseries("Voltage and current", [q.cell_series(MEAS_STATE, "v", "i")], unit="volt",
                   overrides=[override("i", unit="amp", **{"custom.axisPlacement": "right"})]),
        timeseries("State of charge (band: soc +/- soc_std)", [q.band(MEAS_STATE, "soc", "soc_std")],
                   unit="percentunit", overrides=_band_overrides("soc")),
        timeseries("Discharge capacity per cycle vs the twin's expectation",
                   [q.cycle_series("discharge", "capacity_mah_g", "expected_mah_g")], unit="none",
                   points=True,
                   overrides=[override("expected_mah_g", **{"custom.lineStyle": {"fill": "dash",
                                                                                "dash": [10, 10]}})],
                   description="mAh per gram of hydride, one point per discharge half-cycle."),
        timeseries("Discharge capacity: counted, and the twin's (band: +/- 1 std)",
                   [q.band(MEAS_CYCLE, "twin_capacity_mah", "twin_capacity_std_mah", "capacity_mah",
                           half="discharge")],
                   unit="none", points=True,
                   overrides=[_points_only("capacity_mah"), *_band_overrides("twin_capacity_mah")],
                   description="mAh: coulomb-counted per discharge half-cycle (points), the twin's "
                               "reversible capacity estimate at its end (line) +/- one standard deviation."),
        timeseries("Retention per discharge: measured, and the twin's",
                   [q.cycle_series("discharge", *RETENTIONS)], unit="percentunit",
                   thresholds=below(_T.retention_floor), points=True,
                   overrides=[_points_only("measured_retention")], description=_RETENTION_NOTE),
        timeseries("End of life: cycles to the retention floor, forecast per charge",
                   [q.cycle_series("charge", "eol_cycles", "eol_low", "eol_high")], unit="none", points=True,
                   overrides=[override(name, **{"custom.lineStyle": {"fill": "dash", "dash": [10, 10]}})
                              for name in ("eol_low", "eol_high")],
                   description="The twin's forecast after each charge: median (eol_cycles) and 90 % "
                               "interval (eol_low, eol_high) of the cycles until the retention is below "
                               "the floor; 1000 means at least 1000."),
        xy_points("Measured dQ/dV of the half-cycles in range", q.dqdv_points(), "v", "dqdv_mah_v",
                  x_unit="volt", description="Incremental capacity (mAh/V) against voltage, measured from the "
                  "data of each half-cycle (measurement dqdv; lithiation and delithiation peaks lie apart). "
                  "Narrow the time range to single cycles to follow the peaks."),
        timeseries("Measured dQ/dV peak positions per charge (delithiation)",
                   [q.cycle_series("charge", "peak1_v", "peak2_v")], unit="volt", points=True,
                   description="Centroids of the two lowest-voltage measured dQ/dV peaks of each charge "
                               "(for the hydride: MgH2 and Mg2NiH4 re-forming); a drift shows a changing "
                               "overpotential. The report shows the lithiation peaks too."),
        timeseries("Measured energy efficiency and voltage hysteresis per cycle",
                   [q.cycle_series("charge", "energy_efficiency", "hysteresis_v")], unit="percentunit",
                   points=True, overrides=[override("hysteresis_v", unit="volt", **{"custom.axisPlacement": "right"})],
                   description="From the data: discharge energy / charge energy, and mean charge voltage - "
                               "mean discharge voltage, per charge half-cycle."),
        timeseries("Coulombic efficiency per cycle",
                   [q.cycle_series("charge", "coulombic_efficiency")], unit="percentunit",
                   points=True),
        timeseries("Resistance at reference temperature",
                   [q.cell_series(MEAS_STATE, "r0_ohm", "rct_ohm")], unit="ohm"),
        timeseries("Pulse resistance measured from current steps, and the twin's R0 and R_ct",
                   [q.cycle_series(None, "pulse_r_ohm", "r0_ohm", "rct_ohm")], unit="ohm", points=True,
                   overrides=[_points_only("pulse_r_ohm")],
                   description="Per half-cycle: the median of (voltage change / current change) over the "
                               "current steps in the data (HPPC, GITT pulses, steps into rest), read "
                               "pulse_hold_s after each step (at most 120 s); beside it the twin's R0 and "
                               "R_ct at the end of the half. A short hold reads about R0 + R_ct; a longer "
                               "one adds diffusion. Halves without a step have no point."),
        timeseries("Impedance growth", [q.cell_series(MEAS_STATE, "impedance_growth", fn="last")],
                   unit="percentunit", thresholds=above(_T.impedance_growth)),
        timeseries("Crack and phase-separation risk",
                   [q.cell_series(MEAS_STATE, "crack_risk", "phase_sep_risk", fn="max")],
                   unit="percentunit", thresholds=above(_T.crack_risk),
                   overrides=[override("phase_sep_risk", thresholds=above(_T.phase_sep_risk))]),
        timeseries("Temperature", [q.cell_series(MEAS_STATE, "temp_c")], unit="celsius",
                   thresholds=outside(_T.temp_low_c, _T.temp_high_c)),
        table("Cycles", [q.newest_first(MEAS_CYCLE, TAG_HALF, *_CYCLE_COLUMNS)], width=12, height=10,
              overrides=[override(name, unit="percentunit")
                         for name in ("coulombic_efficiency", *RETENTIONS)]),
        table("Twin alerts", [q.newest_first(MEAS_ALERT, TAG_KIND, *_ALERT_COLUMNS)], width=12, height=10),
    ]
    return dashboard(DASHBOARD_UIDS["cell"], "celltwin - Cell drill-down", panels,
                     description="One cell: measurements, estimates with uncertainty, ageing, risk.",
                     variables=[_cell_variable(q)], annotations=[_alert_annotation(q)])


def pipeline_health(dialect: Dialect = "flux") -> dict[str, Any]:
    """Is the pipeline keeping up: lag, throughput, dead letters, failed writes."""
    q = queries_for(dialect)
    panels = [
        timeseries("Consumer lag (messages)", [q.health_last("consumer_lag")]),
        timeseries("Throughput (samples per second)", [q.health_rate("samples", "1s")]),
        timeseries("Dead letters per minute", [q.health_rate("deadletters", "1m")],
                   thresholds=above(_T.deadletter_burst_per_min)),
        timeseries("Write errors per minute", [q.health_rate("write_errors", "1m")]),
        timeseries("Broker or store outage (seconds stalled)", [q.health_max("stalled_s")], unit="s", points=True),
    ]
    return dashboard(DASHBOARD_UIDS["health"], "celltwin - Pipeline health", panels,
                     description="Kafka consumer lag, throughput, dead-letter rate, sink errors and outages.",
                     refresh="10s", time_from="now-1h")


def all_dashboards(dialect: Dialect = "flux") -> dict[str, dict[str, Any]]:
    """Every dashboard by its uid."""
    built = (fleet_overview(dialect), cell_drilldown(dialect), pipeline_health(dialect))
    return {d["uid"]: d for d in built}
