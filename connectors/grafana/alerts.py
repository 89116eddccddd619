"""Grafana unified-alerting rules over the twin's estimates and the pipeline's health.

Made from ``connectors.alert_catalogue``, as the dataflow's in-stream alerts are, so Grafana
and the pipeline disagree only about timing, never about a limit, a direction or a
severity: each rule reads the value the stream judged last (the newest point, or the newest
half-cycle of either kind). Every rule is multi-dimensional: its query returns one
series per cell (labels ``cell`` and ``preset``), so one rule fires per cell.

Each rule is query (A) -> reduce to the newest value (B) -> threshold (C). The same
rule dictionaries go into the provisioning file and, with folder and group added,
into the alerting provisioning HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.alert_catalogue import CATALOGUE, AlertKind, Limit
from connectors.grafana.dashboards import FOLDER_TITLE
from connectors.grafana.datasource import DATASOURCE_UID
from connectors.grafana.dialects import Dialect, queries_for
from connectors.grafana.flux import Query
from connectors.grafana.panels import target
from connectors.wire import MEAS_HEALTH

__all__ = ["RULE_GROUP", "EVALUATION_INTERVAL", "alert_rules", "provisioning_file"]

RULE_GROUP = "celltwin"
# Grafana's default evaluation interval for a group created through the HTTP API.
EVALUATION_INTERVAL = "1m"
_EXPR = {"type": "__expr__", "uid": "__expr__"}


@dataclass(frozen=True)
class _Rule:
    uid: str
    title: str
    query: Query
    evaluator: str  # Grafana threshold type: gt, lt, outside_range
    limits: tuple[float, ...]
    pending: str  # how long the condition must hold before the alert fires
    severity: str
    summary: str
    lookback_s: int


# How far back a rule looks: a half-cycle lasts up to 20 h at 0.05C, so a week holds several;
# a silent cell must still be in range to be missed.
_LOOKBACK_S = {"sample": 600, "half_cycle": 7 * 86400, "store": 600}
_LOOKBACK_S_OF = {"cell_silent": 86400}
_EVALUATOR = {"above": "gt", "below": "lt"}


def _title(kind: AlertKind, limits: tuple[Limit, ...]) -> str:
    bounds = " or ".join(f"{limit.side} {limit.value:g}{kind.unit}" for limit in limits)
    return f"{kind.title} {bounds}"


def _rules_of(kind: AlertKind, query: Query) -> list[_Rule]:
    """One rule per severity of the kind: a window whose sides share one becomes one rule."""
    severities = list(dict.fromkeys(limit.severity for limit in kind.limits))
    rules = []
    for severity in severities:
        limits = tuple(limit for limit in kind.limits if limit.severity == severity)
        if len(limits) == 1:
            evaluator, params = _EVALUATOR[limits[0].side], (limits[0].trips_at,)
        else:
            evaluator, params = "outside_range", tuple(sorted(limit.trips_at for limit in limits))
        uid = f"celltwin-{kind.kind.replace('_', '-')}"
        if len(severities) > 1:
            uid += "-" + limits[0].side
        why = "; ".join(dict.fromkeys(limit.why for limit in limits if limit.why))
        subject = "the fleet" if kind.measurement == MEAS_HEALTH else "{{ $labels.cell }}"
        summary = f"{kind.labels[0]} of {subject}: {{{{ $values.B }}}}{kind.unit}"
        rules.append(_Rule(uid, _title(kind, limits), query, evaluator, params, kind.hold, severity,
                           summary + (f" ({why})" if why else ""),
                           _LOOKBACK_S_OF.get(kind.kind, _LOOKBACK_S[kind.scope])))
    return rules


def _rules(dialect: Dialect) -> list[_Rule]:
    q = queries_for(dialect)
    rules = []
    for kind in CATALOGUE:
        query = q.rule_query(kind)
        if query is not None:  # a kind the query language cannot judge
            rules.extend(_rules_of(kind, query))
    return rules


def _rule(spec: _Rule) -> dict[str, Any]:
    query = {
        "refId": "A",
        "relativeTimeRange": {"from": spec.lookback_s, "to": 0},
        "datasourceUid": DATASOURCE_UID,
        "model": {**target("A", spec.query), "intervalMs": 60000, "maxDataPoints": 43200},
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


def alert_rules(dialect: Dialect = "flux") -> list[dict[str, Any]]:
    """Every rule as the provisioning file and the HTTP API both spell it."""
    return [_rule(spec) for spec in _rules(dialect)]


def provisioning_file(dialect: Dialect = "flux") -> dict[str, Any]:
    """Content of ``provisioning/alerting/rules.yaml`` (the folder is found by title)."""
    group = {"orgId": 1, "name": RULE_GROUP, "folder": FOLDER_TITLE,
             "interval": EVALUATION_INTERVAL, "rules": alert_rules(dialect)}
    return {"apiVersion": 1, "groups": [group]}
