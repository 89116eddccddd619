"""Grafana unified-alerting rules over the twin's estimates and the pipeline's health.

The limits are ``pipeline.contracts.THRESHOLDS``, the same the dataflow uses for its
in-stream alerts, so Grafana and the pipeline disagree only about timing, never
about where a limit lies. Every rule is multi-dimensional: its query returns one
series per cell (labels ``cell`` and ``preset``), so one rule fires per cell.

Each rule is query (A) -> reduce to the newest value (B) -> threshold (C). The same
rule dictionaries go into the provisioning file and, with folder and group added,
into the alerting provisioning HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.grafana.dashboards import FOLDER_TITLE, LAB_RETENTION, RETENTIONS, halves_in_time
from connectors.grafana.datasource import DATASOURCE_UID
from connectors.grafana.flux import Flux, FluxQuery
from pipeline.contracts import (
    MEAS_CYCLE,
    MEAS_HEALTH,
    MEAS_STATE,
    TAG_CELL,
    TAG_HALF,
    TAG_PRESET,
    THRESHOLDS,
)

__all__ = ["RULE_GROUP", "EVALUATION_INTERVAL", "alert_rules", "provisioning_file"]

RULE_GROUP = "celltwin"
# Grafana's default evaluation interval for a group created through the HTTP API.
EVALUATION_INTERVAL = "1m"
_EXPR = {"type": "__expr__", "uid": "__expr__"}
_T = THRESHOLDS
# Cycle summaries come once per half-cycle, 20 h apart at 0.05C: a week holds several.
_CYCLE_LOOKBACK_S = 7 * 86400


@dataclass(frozen=True)
class _Rule:
    uid: str
    title: str
    query: FluxQuery
    evaluator: str  # Grafana threshold type: gt, lt, outside_range
    limits: tuple[float, ...]
    pending: str  # how long the condition must hold before the alert fires
    severity: str
    summary: str
    lookback_s: int = 600


def _per_cell(flux: Flux) -> FluxQuery:
    # Only cell and preset survive as labels; _start/_stop would make a new alert
    # instance at every evaluation.
    return flux.keep("_time", "_value", TAG_CELL, TAG_PRESET).build()


def _newest(measurement: str, *fields: str) -> Flux:
    # The range macros follow the rule's relativeTimeRange, its one lookback setting.
    return Flux(measurement, fields)


def _silence_seconds() -> FluxQuery:
    age = "map(fn: (r) => ({r with _value: float(v: int(v: now()) - int(v: r._time)) / 1000000000.0}))"
    return _per_cell(_newest(MEAS_STATE, "v").then("last()").then(age))


def _lab_retention() -> FluxQuery:
    # Of the newest half of either kind, as in the stream: the measured retention, the twin's
    # where the half has no reference. Pivot first: both values of one half in one row.
    value = f"map(fn: (r) => ({{r with _value: {LAB_RETENTION}}}))"
    return _per_cell(halves_in_time(_newest(MEAS_CYCLE, *RETENTIONS).pivot("_time").then(value))
                     .then("last()"))


def _deadletters_per_minute() -> FluxQuery:
    # Counters per worker -> per-minute rate per worker -> fleet total per minute.
    return (
        _newest(MEAS_HEALTH, "deadletters")
        .then("derivative(unit: 1m, nonNegative: true)")
        .window("mean", every="1m")
        .group("_measurement", "_field")
        .window("sum", every="1m")
        .keep("_time", "_value")
        .build()
    )


def _rules() -> tuple[_Rule, ...]:
    last = "last()"
    return (
        _Rule("celltwin-crack-risk", "Crack risk above limit",
              _per_cell(_newest(MEAS_STATE, "crack_risk").then(last)), "gt", (_T.crack_risk,),
              "5m", "critical", "Crack risk of {{ $labels.cell }} is {{ $values.B }}"),
        _Rule("celltwin-phase-sep-risk", "Phase-separation risk above limit",
              _per_cell(_newest(MEAS_STATE, "phase_sep_risk").then(last)), "gt",
              (_T.phase_sep_risk,), "5m", "critical",
              "Phase-separation risk of {{ $labels.cell }} is {{ $values.B }}"),
        _Rule("celltwin-retention-floor", "Capacity retention below floor", _lab_retention(), "lt",
              (_T.retention_floor,), "10m", "warning",
              "Retention of {{ $labels.cell }} fell to {{ $values.B }} (measured; the twin's where "
              "the half-cycle has no reference at its C-rate)",
              lookback_s=_CYCLE_LOOKBACK_S),
        _Rule("celltwin-fade-rate-jump", "Capacity fade rate jumped",
              _per_cell(_newest(MEAS_CYCLE, "fade_per_cycle")
                        .where(TAG_HALF, "discharge").then(last)),
              "gt", (_T.fade_rate_jump,), "0s", "warning",
              "{{ $labels.cell }} loses {{ $values.B }} of its capacity per cycle",
              lookback_s=_CYCLE_LOOKBACK_S),
        _Rule("celltwin-impedance-growth", "Impedance growth above limit",
              _per_cell(_newest(MEAS_STATE, "impedance_growth").then(last)), "gt",
              (_T.impedance_growth,), "10m", "warning",
              "Impedance of {{ $labels.cell }} grew by {{ $values.B }} over its baseline"),
        _Rule("celltwin-temperature", "Cell temperature outside its window",
              _per_cell(_newest(MEAS_STATE, "temp_c").window("mean", every="1m")),
              "outside_range", (_T.temp_low_c, _T.temp_high_c), "2m", "critical",
              "{{ $labels.cell }} is at {{ $values.B }} C"),
        _Rule("celltwin-cell-silent", "Cell gone silent", _silence_seconds(), "gt",
              (_T.silent_after_s,), "0s", "warning",
              "No data from {{ $labels.cell }} for {{ $values.B }} s", lookback_s=86400),
        _Rule("celltwin-deadletter-burst", "Dead-letter burst", _deadletters_per_minute(), "gt",
              (_T.deadletter_burst_per_min,), "2m", "warning",
              "{{ $values.B }} dead letters per minute"),
    )


def _rule(spec: _Rule) -> dict[str, Any]:
    query = {
        "refId": "A",
        "relativeTimeRange": {"from": spec.lookback_s, "to": 0},
        "datasourceUid": DATASOURCE_UID,
        "model": {"refId": "A", "query": spec.query, "intervalMs": 60000, "maxDataPoints": 43200},
    }
    reduce = {
        "refId": "B",
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": _EXPR["uid"],
        "model": {"refId": "B", "type": "reduce", "datasource": _EXPR, "expression": "A",
                  "reducer": "last", "settings": {"mode": "dropNN"}},
    }
    threshold = {
        "refId": "C",
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": _EXPR["uid"],
        "model": {"refId": "C", "type": "threshold", "datasource": _EXPR, "expression": "B",
                  "conditions": [{"evaluator": {"type": spec.evaluator, "params": list(spec.limits)}}]},
    }
    limits = " .. ".join(repr(v) for v in spec.limits)
    return {
        "uid": spec.uid,
        "title": spec.title,
        "condition": "C",
        "data": [query, reduce, threshold],
        # No data means no cell on test, not a broken cell.
        "noDataState": "OK",
        "execErrState": "Error",
        "for": spec.pending,
        "labels": {"severity": spec.severity, "service": "celltwin"},
        "annotations": {"summary": spec.summary,
                        "description": f"{spec.title} ({spec.evaluator} {limits})."},
        "isPaused": False,
    }


def alert_rules() -> list[dict[str, Any]]:
    """Every rule as the provisioning file and the HTTP API both spell it."""
    return [_rule(spec) for spec in _rules()]


def provisioning_file() -> dict[str, Any]:
    """Content of ``provisioning/alerting/rules.yaml`` (the folder is found by title)."""
    group = {"orgId": 1, "name": RULE_GROUP, "folder": FOLDER_TITLE,
             "interval": EVALUATION_INTERVAL, "rules": alert_rules()}
    return {"apiVersion": 1, "groups": [group]}
