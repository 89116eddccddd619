"""Every name a Grafana dashboard or alert rule reads is one the pipeline writes.

The pipeline runs against VictoriaMetrics (the InfluxDB write API; a series is named
``<measurement>_<field>`` and tags become labels), then the stored series are held
against :func:`connectors.grafana.query_references`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.grafana import query_references
from pipeline.contracts import MEAS_HEALTH, TAG_CELL
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, pipeline_command, publish, run_pipeline, simulated_fleet, stored_series, unique_prefix,
)

pytestmark = pytest.mark.integration


def test_every_name_grafana_reads_is_written(fresh_kafka: str, victoria_url: str, tmp_path: Path) -> None:
    made = simulated_fleet(unique_prefix("grafana"), cells=4, cycles=2)
    # One more frame of the first cell, in a cold oven: a temperature alert (twin_alert).
    cell = made.ids[0]
    last_t = max(max(json.loads(v)["t"]) for k, v in made.samples if k == cell.encode())
    cold = {"cell": cell, "t": [last_t + 10.0, last_t + 20.0], "v": [0.9, 0.9], "i": [0.0, 0.0],
            "temp_c": [100.0, 100.0]}
    publish(fresh_kafka, [*made.samples, (cell.encode(), json.dumps(cold).encode())])
    run_pipeline(pipeline_command(fresh_kafka, victoria_url, extra=[
        "--config", str(made.write_config(tmp_path / "cells.toml"))]), tmp_path / "run.log")

    written: set[tuple[str, str]] = set()
    for measurement in {m for m, _ in query_references()}:
        for labels in stored_series(victoria_url, measurement):
            # This run's series: its cells', and the health totals (no cell tag).
            if measurement != MEAS_HEALTH and not labels.get(TAG_CELL, "").startswith(made.prefix):
                continue
            written.add((measurement, labels["__name__"][len(measurement) + 1:]))
            written.update((measurement, tag) for tag in labels if tag != "__name__")
    missing = sorted(query_references() - written)
    assert not missing, f"read by Grafana, never written: {missing}"
