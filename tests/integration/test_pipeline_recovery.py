"""`celltwin run --recovery-dir`: killed with SIGKILL mid-stream, restarted, nothing lost.

Delivery is at least once: after a kill, the run resumes from its last snapshot and
writes again what it had written since. Those rewrites must be identical (same sample
times, same values), so the store ends as after one uninterrupted run.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline.contracts import TOPIC_DEADLETTER, TOPIC_TWIN
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, assert_same_points, kill, log_tail, parquet_points, pipeline_command, publish,
    read_topic, reference_run, stored_estimates, with_last_halves_open, run_pipeline, simulated_fleet, start_pipeline, stored_points, unique_prefix,
)

pytestmark = pytest.mark.integration

KILL_AT = (0.2, 0.45, 0.7)  # fractions of the estimates stored when each kill happens


def test_killed_runs_resume_to_the_uninterrupted_result(
    fresh_kafka: str, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Single-sample records: the source reads at most 1000 records per partition and poll,
    # so the run needs many polls (and epochs) and can be killed between them.
    made = simulated_fleet(unique_prefix("recovery"), cells=8, cycles=2, frame_size=1)
    publish(fresh_kafka, made.samples)
    config = made.write_config(tmp_path / "cells.toml")
    recovery, log = tmp_path / "recovery", tmp_path / "run.log"
    cmd = pipeline_command(fresh_kafka, victoria_url, tmp_path / "out", recovery_dir=recovery,
                           extra=["--config", str(config), "--epoch-interval", "0.3"])

    progress = []
    for fraction in KILL_AT:
        process = start_pipeline(cmd, log)
        deadline = time.monotonic() + 120
        while (stored := stored_estimates(victoria_url, made.prefix)) < fraction * made.sample_count:
            assert process.poll() is None, (
                f"the run ended before the kill at {fraction:.0%} ({stored} of {made.sample_count} stored):\n"
                + log_tail(log))
            assert time.monotonic() < deadline, f"no progress to {fraction:.0%}:\n{log_tail(log)}"
            time.sleep(0.1)
        kill(process)
        progress.append(stored)
    assert progress == sorted(progress) and progress[-1] < made.sample_count, progress
    run_pipeline(cmd, log)

    reference = tmp_path / "reference"
    reference_run(made, reference, monkeypatch)
    # A run with recovery may be continued: it leaves each cell's last half open.
    want = with_last_halves_open(parquet_points(reference, made.prefix))
    # Every sample's estimate, once, with the uninterrupted values: nothing lost, and the
    # store's dedup found only identical rewrites (stored_points fails on two samples at
    # one timestamp, which a rewrite with another value than the first would not cause).
    assert_same_points(stored_points(victoria_url, made.prefix), want, "after 3 kills vs uninterrupted")

    # Kafka keeps every write: rewrites of an estimate are byte-identical records.
    written: dict[tuple[bytes, float], set[bytes]] = defaultdict(set)
    for record in read_topic(fresh_kafka, TOPIC_TWIN):
        if record.key.startswith(made.prefix.encode()):
            written[(record.key, json.loads(record.value)["time"])].add(record.value)
    assert all(len(values) == 1 for values in written.values())
    assert len(written) == made.sample_count
    # A resumed state that did not match its resumed offsets would reject replayed samples.
    letters = [r for r in read_topic(fresh_kafka, TOPIC_DEADLETTER)
               if r.key is not None and r.key.startswith(made.prefix.encode())]
    assert letters == []
