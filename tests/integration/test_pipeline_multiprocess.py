"""Two `celltwin run` processes of one cluster (`-i 0/1 -a ...`) over a 4-partition topic."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaConsumer

from infra.services import free_ports
from connectors.wire import MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, OUT_ESTIMATES, TOPIC_SAMPLES
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, SAMPLE_PARTITIONS, assert_same_points, kill, log_tail, parquet_points, parquet_rows, pipeline_command,
    publish, reference_run, simulated_fleet, start_pipeline, stored_points, unique_prefix,
)

pytestmark = pytest.mark.integration


def test_two_processes_give_the_results_of_one(
    fresh_kafka: str, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = simulated_fleet(unique_prefix("cluster"), cells=16, cycles=2)
    consumer = KafkaConsumer(bootstrap_servers=fresh_kafka)
    try:
        assert len(consumer.partitions_for_topic(TOPIC_SAMPLES)) == SAMPLE_PARTITIONS
    finally:
        consumer.close()
    publish(fresh_kafka, made.samples)
    config = made.write_config(tmp_path / "cells.toml")

    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    runs = [
        (start_pipeline(pipeline_command(fresh_kafka, victoria_url, tmp_path / f"out{k}", process_id=k,
                                         addresses=addresses, extra=["--config", str(config)]),
                        tmp_path / f"run{k}.log"), tmp_path / f"run{k}.log")
        for k in range(2)
    ]
    try:
        for process, log in runs:
            assert process.wait(timeout=120) == 0, log_tail(log)
    finally:
        for process, _ in runs:
            kill(process)

    reference = tmp_path / "reference"
    reference_run(made, reference, monkeypatch)
    assert_same_points(stored_points(victoria_url, made.prefix), parquet_points(reference, made.prefix),
                       "two processes vs one")
    # The output folder has one writer: exactly one process wrote it, all of it.
    written = [k for k in range(2) if (tmp_path / f"out{k}" / OUT_ESTIMATES).exists()]
    assert len(written) == 1, written
    for measurement in (MEAS_STATE, MEAS_CYCLE, MEAS_ALERT):
        assert (parquet_rows(tmp_path / f"out{written[0]}", measurement, made.prefix)
                == parquet_rows(reference, measurement, made.prefix)), measurement
