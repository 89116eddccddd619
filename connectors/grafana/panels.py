"""Small builders for Grafana dashboard JSON (schema of Grafana 10 and later).

Only the keys these dashboards need are written; Grafana fills in the rest when it
loads a dashboard, so the committed JSON stays readable in a review.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.grafana.datasource import DATASOURCE_REF
from connectors.grafana.flux import Query
from connectors.grafana.influxql import InfluxQLQuery

__all__ = [
    "Panel",
    "target",
    "above",
    "below",
    "outside",
    "plain",
    "override",
    "timeseries",
    "table",
    "bargauge",
    "dashboard",
]

Panel = dict[str, Any]
_GRID_WIDTH = 24
_GREEN, _RED, _AMBER = "green", "red", "orange"


def _thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def above(limit: float) -> dict[str, Any]:
    """Red from ``limit`` upwards (risks, impedance growth)."""
    return _thresholds((_GREEN, None), (_RED, limit))


def below(floor: float) -> dict[str, Any]:
    """Red under ``floor`` (retention)."""
    return _thresholds((_RED, None), (_GREEN, floor))


def outside(low: float, high: float) -> dict[str, Any]:
    """Amber below ``low``, green inside, red above ``high`` (temperature window)."""
    return _thresholds((_AMBER, None), (_GREEN, low), (_RED, high))


def plain() -> dict[str, Any]:
    """No limit to show: one neutral colour."""
    return _thresholds(("blue", None))


def override(name: str, **properties: Any) -> dict[str, Any]:
    """Field-config override for the field called ``name``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def target(ref_id: str, query: Query, result_format: str = "time_series") -> dict[str, Any]:
    """A query of a panel or rule; InfluxQL's is a raw query (not the UI's query builder)."""
    spec: dict[str, Any] = {"refId": ref_id, "datasource": DATASOURCE_REF, "query": query}
    if isinstance(query, InfluxQLQuery):
        spec |= {"rawQuery": True, "resultFormat": result_format}
    return spec


def _targets(queries: Sequence[Query], result_format: str) -> list[dict[str, Any]]:
    return [target(chr(ord("A") + n), q, result_format) for n, q in enumerate(queries)]


def _panel(kind: str, title: str, queries: Sequence[Query], defaults: dict[str, Any],
           overrides: Sequence[dict[str, Any]], options: dict[str, Any], width: int,
           height: int, description: str) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE_REF,
        "targets": _targets(queries, "table" if kind == "table" else "time_series"),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options,
        "gridPos": {"w": width, "h": height},
    }


def timeseries(title: str, queries: Sequence[Query], *, unit: str = "none",
               thresholds: dict[str, Any] | None = None, overrides: Sequence[dict[str, Any]] = (),
               points: bool = False, width: int = 12, height: int = 8,
               description: str = "") -> Panel:
    """A time-series panel; with ``thresholds`` the limit is drawn as a dashed line."""
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "showPoints": "always" if points else "never",
        "spanNulls": True,
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    defaults = {"unit": unit, "custom": custom, "thresholds": thresholds or plain()}
    options = {"legend": {"displayMode": "list", "placement": "bottom"},
               "tooltip": {"mode": "multi", "sort": "none"}}
    return _panel("timeseries", title, queries, defaults, overrides, options, width, height,
                  description)


def table(title: str, queries: Sequence[Query], *, overrides: Sequence[dict[str, Any]] = (),
          transformations: Sequence[dict[str, Any]] = (), sort_by: str | None = None,
          width: int = 24, height: int = 9, description: str = "") -> Panel:
    """A sortable table (click a header); ``sort_by`` sets the initial descending sort."""
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm"}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    panel = _panel("table", title, queries, {"custom": {"align": "auto"}}, overrides, options,
                   width, height, description)
    panel["transformations"] = list(transformations)
    return panel


def xy_points(title: str, query: Query, x: str, y: str, *, x_unit: str = "none", y_unit: str = "none",
              width: int = 12, height: int = 8, description: str = "") -> Panel:
    """Points of field ``y`` against field ``x`` (Grafana's XY chart), e.g. a dQ/dV curve."""
    defaults = {"unit": y_unit, "custom": {"show": "points", "pointSize": {"fixed": 4}}}
    matcher = {"id": "byName"}
    options = {"mapping": "manual", "series": [{"x": {"matcher": {**matcher, "options": x}},
                                                "y": {"matcher": {**matcher, "options": y}}}],
               "legend": {"showLegend": False}, "tooltip": {"mode": "single"}}
    panel = _panel("xychart", title, [query], defaults,
                   [override(x, unit=x_unit)], options, width, height, description)
    panel["targets"] = _targets([query], "table")
    return panel


def bargauge(title: str, query: Query, *, unit: str, thresholds: dict[str, Any],
             minimum: float | None = None, maximum: float | None = None, width: int = 8,
             height: int = 8, description: str = "") -> Panel:
    """One bar per cell, coloured by ``thresholds``: the fleet at a glance."""
    defaults: dict[str, Any] = {"unit": unit, "thresholds": thresholds,
                                "color": {"mode": "thresholds"}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    options = {"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
               "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return _panel("bargauge", title, [query], defaults, (), options, width, height, description)


def _place(panels: Sequence[Panel]) -> list[Panel]:
    # Left to right, wrapping at the grid width; a row is as tall as its tallest panel.
    placed, x, y, row_height = [], 0, 0, 0
    for number, panel in enumerate(panels, start=1):
        width, height = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + width > _GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({"id": number, **panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
        x, row_height = x + width, max(row_height, height)
    return placed


def dashboard(uid: str, title: str, panels: Sequence[Panel], *, description: str,
              variables: Sequence[dict[str, Any]] = (),
              annotations: Sequence[dict[str, Any]] = (), refresh: str = "30s",
              time_from: str = "now-24h") -> dict[str, Any]:
    """A whole dashboard with panels laid out on the grid and ids assigned."""
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["celltwin"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": refresh,
        "schemaVersion": 39,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": list(variables)},
        "annotations": {"list": [builtin, *annotations]},
        "panels": _place(panels),
    }
