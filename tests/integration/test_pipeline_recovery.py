"""`celltwin run --recovery-dir`: killed with SIGKILL mid-stream, restarted, nothing lost.

Delivery is at least once: after a kill, the run resumes from its last snapshot and
writes again what it had written since. Those rewrites must be identical (same sample
times, same values), so the store ends as after one uninterrupted run. The output
folder is exactly once: every stop leaves its files readable, and the resumed run
continues them to the rows of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.file_sink import read_parts
from connectors.wire import (
    MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, OUT_DEADLETTER, OUT_ESTIMATES, TOPIC_DEADLETTER, TOPIC_TWIN, frame_rows,
)
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, assert_same_points, kill, log_tail, parquet_points, parquet_rows, pipeline_command, publish,
    read_topic, reference_run, stored_estimates, with_last_halves_open, run_pipeline, simulated_fleet,
    start_pipeline, stored_points, unique_prefix,
)

pytestmark = pytest.mark.integration

KILL_AT = (0.2, 0.45, 0.7)  # fractions of the estimates stored when each kill happens


def test_killed_runs_resume_to_the_uninterrupted_result(
    fresh_kafka: str, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Single-sample records: the source reads at most 1000 records per partition and poll,
    # so the run needs many polls (and epochs) and can be killed between them. Enough cycles
    # that one 0.3 s epoch of a fast run stores far less than the 30 % left after the last kill.
    made = simulated_fleet(unique_prefix("recovery"), cells=8, cycles=6, frame_size=1)
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

    # Kafka keeps every write: a rewritten estimate (in a frame cut where the resumed run's
    # batches fell) has the same values as its first write.
    written: dict[tuple[bytes, float], set[str]] = defaultdict(set)
    for record in read_topic(fresh_kafka, TOPIC_TWIN):
        if record.key.startswith(made.prefix.encode()):
            for row in frame_rows(record.value):
                written[(record.key, row["time"])].add(json.dumps(row, sort_keys=True))
    assert all(len(values) == 1 for values in written.values())
    assert len(written) == made.sample_count
    # A resumed state that did not match its resumed offsets would reject replayed samples.
    letters = [r for r in read_topic(fresh_kafka, TOPIC_DEADLETTER)
               if r.key is not None and r.key.startswith(made.prefix.encode())]
    assert letters == []


def _parts(out: Path) -> int:
    """Parts of the estimates table committed so far."""
    folder = out / OUT_ESTIMATES
    return sum(1 for p in folder.iterdir() if p.name.startswith("part-")) if folder.is_dir() else 0


def _assert_readable(out: Path) -> None:
    """Every table of the folder reads (all parts), and every dead-letter line is JSON."""
    for table in ("estimates.parquet", "cycles.parquet", "alerts.parquet"):
        read_parts(out / table)
        pq.read_table(out / table)  # as any Parquet reader sees the folder
    for line in (out / OUT_DEADLETTER).read_bytes().splitlines():
        json.loads(line)


def test_output_files_survive_kills_and_a_double_ctrl_c(tmp_path: Path) -> None:
    # Embedded: the simulator source resumes from its snapshot like the Kafka one.
    # Enough data that six runs, each stopped after two committed parts, cannot finish it on a fast machine.
    args = ["--cells", "6", "--cycles", "40", "--dt", "10", "--epoch-interval", "0.2", "--no-report"]
    reference = tmp_path / "reference"
    run_pipeline([sys.executable, "-m", "pipeline.cli", "run", "--out", str(reference), *args], tmp_path / "ref.log")
    out, log = tmp_path / "out", tmp_path / "run.log"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--out", str(out), "--recovery-dir", str(tmp_path / "rec"), *args]

    def start_and_progress() -> subprocess.Popen:
        """A run that has committed a part since it started (so it made progress)."""
        before = _parts(out)
        process = start_pipeline(cmd, log)
        deadline = time.monotonic() + 120
        while _parts(out) < before + 2:
            assert process.poll() is None, f"the run ended before it was stopped:\n{log_tail(log)}"
            assert time.monotonic() < deadline, f"no progress:\n{log_tail(log)}"
            time.sleep(0.05)
        return process

    first_part = None
    for _ in range(5):
        kill(start_and_progress())
        _assert_readable(out)
        first_part = first_part or (out / OUT_ESTIMATES / "part-000000.parquet").stat().st_ino
    process = start_and_progress()
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 130, log_tail(log)
    _assert_readable(out)
    assert "panicked" not in log.read_text(errors="replace"), log_tail(log)
    run_pipeline(cmd, log)

    # Resumed runs continued the folder (part 0 of the first run is still there) ...
    assert (out / OUT_ESTIMATES / "part-000000.parquet").stat().st_ino == first_part
    # ... to the rows of the uninterrupted run: none lost, none twice.
    for measurement in (MEAS_STATE, MEAS_CYCLE, MEAS_ALERT):
        got, want = parquet_rows(out, measurement, "sim-"), parquet_rows(reference, measurement, "sim-")
        assert got == want, f"{measurement}: {len(got)} rows after the stops, {len(want)} uninterrupted"
    assert (out / OUT_DEADLETTER).read_bytes() == (reference / OUT_DEADLETTER).read_bytes()
