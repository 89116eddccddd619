"""Which stored names Grafana reads: every (measurement, field) and (measurement, tag).

The pipeline's integration test holds this set against what the pipeline really
writes, so a dashboard or alert rule reading a name nobody writes fails a test
instead of showing "No data". The set is collected from the queries themselves
(each ``FluxQuery`` records what it reads while it is built).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectors.grafana.alerts import alert_rules
from connectors.grafana.dashboards import all_dashboards
from connectors.grafana.flux import FluxQuery, Ref

__all__ = ["flux_queries", "query_references"]


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def flux_queries() -> list[FluxQuery]:
    """Every Flux query in the dashboards (panels, variables, annotations) and rules."""
    documents = [*all_dashboards().values(), *alert_rules()]
    return [v for doc in documents for v in _walk(doc) if isinstance(v, FluxQuery)]


def query_references() -> set[Ref]:
    """Every (measurement, field) and (measurement, tag) a dashboard or rule reads."""
    return {ref for query in flux_queries() for ref in query.refs}
