"""Grafana as code: dashboards, alert rules and the data source, generated and published.

``generate`` writes ``infra/grafana/provisioning`` for a Grafana started by docker
compose; ``publisher`` pushes the same definitions to a Grafana that already runs.
``query_references`` tells the pipeline's tests which stored names Grafana reads.
"""

from connectors.grafana.references import query_references

__all__ = ["query_references"]
