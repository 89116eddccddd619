"""Smoke test of Kafka mode: frames and metadata in, InfluxDB points and dead letters out."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from connectors.config import load_config
from connectors.wire import (
    MEAS_CYCLE, MEAS_HEALTH, MEAS_STATE, TOPIC_DEADLETTER, TOPIC_META, TOPIC_SAMPLES, TOPIC_TWIN, frame_rows,
)
from pipeline.cli import app
from pipeline.dataflow import ensure_kafka_topics
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import Simulation

# The real-service fixtures live with the integration tests; this is the pipeline's own smoke test.
from tests.integration.conftest import kafka_bootstrap, victoria_url  # noqa: F401

pytestmark = pytest.mark.integration


def _frames(cell: str, t0: float) -> list[dict]:
    sim = Simulation([preset("nd4mg80ni8")], cc_cycles(1.0, 2), dt=20.0, t0=t0, seed=1)
    frames = []
    for block in sim.blocks(block_ticks=50):
        ok = block.valid[0]
        frames.append({"cell": cell, "t": block.t[ok].tolist(), "v": block.v[0, ok].tolist(),
                       "i": block.i[0, ok].tolist(), "temp_c": block.temp_c[0, ok].tolist()})
    return frames


def _read_all(bootstrap: str, topic: str) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(parts)
    records = []
    while any(consumer.position(tp) < ends[tp] for tp in parts):
        for batch in consumer.poll(timeout_ms=500).values():
            records += [json.loads(r.value) for r in batch]
    consumer.close()
    return records


def _export(url: str, match: str, ready=bool) -> list[dict]:
    """Stored series matching `match`, once `ready(rows)` (rows become searchable
    asynchronously, so poll) or after 15 s."""
    query = urllib.parse.urlencode({"match[]": match})
    deadline = time.monotonic() + 15
    while True:
        urllib.request.urlopen(f"{url}/internal/force_flush", timeout=5).close()
        with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=5) as response:
            rows = [json.loads(line) for line in response.read().decode().splitlines() if line]
        if ready(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_kafka_mode_end_to_end(kafka_bootstrap: str, victoria_url: str, tmp_path: Path) -> None:
    prefix = uuid.uuid4().hex[:8]
    known, unknown = f"{prefix}-A1", f"{prefix}-X9"
    ensure_kafka_topics(load_config(env={}, flags={"kafka.bootstrap": kafka_bootstrap}))
    t0 = float(np.floor(time.time())) - 2 * 86400.0  # inside the store's retention
    frames = _frames(known, t0)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(TOPIC_META, key=known.encode(),
                  value=json.dumps({"cell": known, "preset": "nd4mg80ni8", "mass_mg": 1.0}).encode())
    producer.flush()
    for frame in frames:
        producer.send(TOPIC_SAMPLES, key=known.encode(), value=json.dumps(frame).encode())
    producer.send(TOPIC_SAMPLES, key=unknown.encode(), value=json.dumps({**frames[0], "cell": unknown}).encode())
    producer.send(TOPIC_SAMPLES, key=known.encode(), value=b"not json")
    producer.flush()
    producer.close()

    args = ["run", "--kafka", kafka_bootstrap, "--exit-when-idle", "--influx-url", victoria_url,
            "--influx-token", "token", "--influx-org", "lab", "--influx-bucket", "celltwin",
            "--out", str(tmp_path), "--no-report"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    samples = sum(len(f["t"]) for f in frames)
    soc = _export(victoria_url, f'{{__name__="{MEAS_STATE}_soc",cell="{known}"}}',
                  lambda rows: rows and len(rows[0]["values"]) >= samples)
    assert len(soc) == 1 and soc[0]["metric"]["preset"] == "nd4mg80ni8"
    assert len(soc[0]["values"]) == samples  # every 20 s sample is due at a 10 s estimate interval
    assert all(0.0 <= value <= 1.05 for value in soc[0]["values"])
    capacity = _export(victoria_url, f'{{__name__="{MEAS_CYCLE}_capacity_mah",cell="{known}"}}',
                       lambda rows: len(rows) == 2)
    assert {row["metric"]["half"] for row in capacity} == {"discharge", "charge"}

    health = _export(victoria_url, f'{{__name__="{MEAS_HEALTH}_samples"}}',
                     lambda rows: any(max(row["values"]) >= samples for row in rows))
    assert health and max(max(row["values"]) for row in health) >= samples

    letters = [d for d in _read_all(kafka_bootstrap, TOPIC_DEADLETTER) if (d["key"] or "").startswith(prefix)]
    assert sorted(d["reason"] for d in letters) == ["not_json", "unknown_cell"]
    frames = [r for r in _read_all(kafka_bootstrap, TOPIC_TWIN) if r["cell"] == known]  # a frame per batch
    twin = [row for frame in frames for row in frame_rows(json.dumps(frame).encode())]
    assert len(twin) == samples and {"soc", "capacity_mah", "flags", "time"} <= set(twin[0])
    assert len(frames) < samples and [row["time"] for row in twin] == sorted(row["time"] for row in twin)
