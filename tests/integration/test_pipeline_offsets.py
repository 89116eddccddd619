"""`celltwin run` without a recovery folder goes on from its consumer group's offsets.

A restart neither reads `cell.samples` again from its start nor sends its dead letters
again; `cell.meta` is read from its start every time (the cells of the second run have
their metadata only there), and a bad metadata record is dead-lettered once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.wire import TOPIC_DEADLETTER, TOPIC_META, TOPIC_SAMPLES
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, pipeline_command, publish, read_topic, run_pipeline, simulated_fleet, unique_prefix,
)

pytestmark = pytest.mark.integration


def _samples(records: list[tuple[bytes, bytes]]) -> int:
    """Samples in these cell.samples records (frames or single samples)."""
    count = 0
    for _, value in records:
        t = json.loads(value)["t"]
        count += len(t) if isinstance(t, list) else 1
    return count


def _processed(log: Path, run: int) -> int:
    """Samples the ``run``-th run (1, 2...) of the log says it processed."""
    done = re.findall(r"done: ([\d,]+) samples", log.read_text(errors="replace"))
    return int(done[run - 1].replace(",", ""))


def test_a_restart_reads_on_from_the_committed_offsets(fresh_kafka: str, tmp_path: Path) -> None:
    made = simulated_fleet(unique_prefix("offsets"), cells=4, cycles=1)
    bad_meta = (f"{made.prefix}nometa".encode(), b"{not json")
    bad_sample = (f"{made.prefix}000".encode(), b"[1, 2]")
    publish(fresh_kafka, [*made.meta, bad_meta], topic=TOPIC_META)
    half = len(made.samples) // 2
    first, second = made.samples[:half], made.samples[half:]
    log = tmp_path / "run.log"
    # Metadata from cell.meta only: no config file of cells.
    cmd = pipeline_command(fresh_kafka, None, tmp_path / "out")

    publish(fresh_kafka, [*first, bad_sample])
    run_pipeline(cmd, log)
    publish(fresh_kafka, second)
    run_pipeline(cmd, log)

    assert _processed(log, 1) == _samples(first)
    # Only what came after the first run, every sample with its cell's metadata.
    assert _processed(log, 2) == _samples(second)
    letters = [json.loads(r.value) for r in read_topic(fresh_kafka, TOPIC_DEADLETTER)
               if r.key is not None and r.key.startswith(made.prefix.encode())]
    assert sorted(letter["topic"] for letter in letters) == [TOPIC_META, TOPIC_SAMPLES], letters
    consumer = KafkaConsumer(bootstrap_servers=fresh_kafka, group_id="celltwin", enable_auto_commit=False)
    try:
        parts = [TopicPartition(TOPIC_SAMPLES, p) for p in consumer.partitions_for_topic(TOPIC_SAMPLES)]
        ends = consumer.end_offsets(parts)
        # Everything read is committed (a partition none of the cells hashed to has nothing).
        assert {tp: consumer.committed(tp) or 0 for tp in parts} == ends
    finally:
        consumer.close()
