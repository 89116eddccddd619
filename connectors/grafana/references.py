"""Which stored names Grafana reads: every (measurement, field) and (measurement, tag).

The pipeline's integration test holds this set against what the pipeline really
writes, so a dashboard or alert rule reading a name nobody writes fails a test
instead of showing "No data". The set is collected from the queries themselves
(each ``Query`` records what it reads while it is built), in both query languages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectors.grafana.alerts import alert_rules
from connectors.grafana.dashboards import all_dashboards
from connectors.grafana.dialects import DIALECTS, Dialect
from connectors.grafana.flux import Query, Ref

__all__ = ["all_queries", "query_references"]


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def all_queries(dialect: Dialect) -> list[Query]:
    """Every query of ``dialect`` in the dashboards (panels, variables, annotations) and rules."""
    documents = [*all_dashboards(dialect).values(), *alert_rules(dialect)]
    return [v for doc in documents for v in _walk(doc) if isinstance(v, Query)]


def query_references() -> set[Ref]:
    """Every (measurement, field) and (measurement, tag) a dashboard or rule reads, in either
    query language."""
    return {ref for dialect in DIALECTS for query in all_queries(dialect) for ref in query.refs}
