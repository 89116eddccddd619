"""`celltwin produce` -> Kafka -> `celltwin run` -> VictoriaMetrics and Parquet, against the
embedded dataflow run in this process on the same samples."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from connectors.wire import MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, OUT_DEADLETTER, TOPIC_META, TOPIC_SAMPLES
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, REPO, T0, assert_same_points, parquet_points, parquet_rows, pipeline_command, read_topic,
    reference_run, run_pipeline, simulated_fleet, stored_points, timestamps_by_cell, unique_prefix,
)

pytestmark = pytest.mark.integration

CELLS, CYCLES = 20, 2


def test_kafka_run_stores_what_the_embedded_run_computes(
    fresh_kafka: str, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique_prefix("e2e")
    produced = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "produce", "--kafka", fresh_kafka, "--cells", str(CELLS),
         "--cycles", str(CYCLES), "--c-rate", "1", "--dt", "10", "--preset", "mixed", "--speed", "max",
         "--frame-size", "100", "--start", str(T0), "--seed", "0", "--prefix", prefix],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert produced.returncode == 0, produced.stderr
    made = simulated_fleet(prefix, cells=CELLS, cycles=CYCLES)
    assert f"{made.sample_count:,}" in produced.stdout  # the summary counts what was sent

    # The producer sent exactly these records: metadata, then frames in order per cell.
    meta = {r.key: r.value for r in read_topic(fresh_kafka, TOPIC_META) if r.key.startswith(prefix.encode())}
    assert meta == dict(made.meta)
    by_cell: dict[bytes, list[bytes]] = defaultdict(list)
    for record in read_topic(fresh_kafka, TOPIC_SAMPLES):
        by_cell[record.key].append(record.value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in made.samples:
        expected[key].append(value)
    assert by_cell == expected

    out, reference = tmp_path / "out", tmp_path / "reference"
    run_pipeline(pipeline_command(fresh_kafka, victoria_url, out, workers=2), tmp_path / "run.log")
    reference_run(made, reference, monkeypatch)

    # Nothing of this clean input was refused (e.g. samples read before their cell.meta record);
    # cell.meta is re-read from its start, so bad metadata of other tests' cells is refused again.
    letters = Counter((d["reason"], d["key"]) for d in map(json.loads, (out / OUT_DEADLETTER).read_text().splitlines())
                      if (d["key"] or "").startswith(prefix))
    assert not letters, f"dead letters (reason, cell): {dict(letters)}"
    # Parquet of the Kafka run (2 workers, 64 shards, frames of 100) equals the embedded run's
    # (1 worker, frames of 2048) row for row, every column.
    for measurement in (MEAS_STATE, MEAS_CYCLE, MEAS_ALERT):
        assert parquet_rows(out, measurement, prefix) == parquet_rows(reference, measurement, prefix), measurement

    want = parquet_points(reference, prefix)
    estimates = timestamps_by_cell(want, f"{MEAS_STATE}_soc")
    halves = timestamps_by_cell(want, f"{MEAS_CYCLE}_capacity_mah")
    # dt = estimate interval = 10 s: one estimate per sample. Two halves per cycle; the
    # last one closes only if the run is set to close it at the end of its input.
    assert sum(estimates.values()) == made.sample_count and set(estimates) == set(made.ids)
    assert all(halves[cell] >= 2 * CYCLES - 1 for cell in made.ids), halves

    stored = stored_points(victoria_url, prefix)
    assert_same_points(stored, want, "VictoriaMetrics vs embedded run")
