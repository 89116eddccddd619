"""`celltwin replay --kafka` against the real broker: metadata first, frames the pipeline decodes, pacing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from connectors.decode import decode_meta, decode_samples
from connectors.kafka_admin import ensure_topics
from connectors.readers import CellRecord
from connectors.replay_source import produce
from connectors.sim_producer import Publisher
from connectors.wire import TOPIC_META, TOPIC_SAMPLES, CellMeta, Frame, KafkaMessage
from pipeline.cli import app
from pipeline.dataflow import TOPIC_PARTITIONS
from tests.connectors.readers.cycler_writers import synthetic_cell, write_bdf
from tests.integration.pipeline_harness import read_topic

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0


def _read(bootstrap: str, topic: str, key: bytes) -> list[KafkaMessage]:
    """Every record of ``topic`` with ``key`` (the topics are shared by the session's tests)."""
    return [KafkaMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for r in read_topic(bootstrap, topic) if r.key == key]


def _record(name: str, n: int, dt: float = 1.0) -> CellRecord:
    t = T0 + dt * np.arange(n)
    return CellRecord(name, t, 0.4 + 0.3 * np.arange(n) / n, np.full(n, -1e-3), np.full(n, 130.0))


def test_produce_sends_metadata_then_frames_the_pipeline_decodes(kafka_bootstrap: str) -> None:
    name = f"replay-{uuid.uuid4().hex[:8]}"
    rec = _record(name, 10_000)
    meta = CellMeta(cell=name, mass_mg=1.3, preset="mgh2")
    ensure_topics(kafka_bootstrap, {t: TOPIC_PARTITIONS[t] for t in (TOPIC_SAMPLES, TOPIC_META)})
    with Publisher(kafka_bootstrap) as publisher:
        sent = produce([rec], publisher, {name: meta}, max_frame=1000)

    assert sent == len(rec)
    (meta_record,) = _read(kafka_bootstrap, TOPIC_META, name.encode())
    assert decode_meta(meta_record) == meta
    frames = [decode_samples(m) for m in _read(kafka_bootstrap, TOPIC_SAMPLES, name.encode())]
    assert len(frames) == 10 and all(isinstance(f, Frame) for f in frames)
    np.testing.assert_array_equal(np.concatenate([f.t for f in frames]), rec.t)
    np.testing.assert_array_equal(np.concatenate([f.v for f in frames]), rec.v)
    assert meta_record.timestamp_ms <= min(m.timestamp_ms for m in _read(kafka_bootstrap, TOPIC_SAMPLES,
                                                                           name.encode()))


def test_produce_paces_by_the_files_clock(kafka_bootstrap: str) -> None:
    name = f"paced-{uuid.uuid4().hex[:8]}"
    rec = _record(name, 31)  # 30 s of file time
    ensure_topics(kafka_bootstrap, {t: TOPIC_PARTITIONS[t] for t in (TOPIC_SAMPLES, TOPIC_META)})
    with Publisher(kafka_bootstrap) as publisher:
        started = time.monotonic()
        produce([rec], publisher, {name: CellMeta(cell=name, mass_mg=1.0, preset="mgh2")}, speed=30.0)
        elapsed = time.monotonic() - started

    assert 0.95 <= elapsed < 5.0
    assert len(_read(kafka_bootstrap, TOPIC_SAMPLES, name.encode())) > 5  # sent as they came due


def test_the_command_produces_into_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    path = write_bdf(tmp_path / "export.csv", synthetic_cell(n_per_step=50, cycles=1))

    result = CliRunner().invoke(app, ["replay", str(path), "--cell", name, "--mass-mg", "2",
                                      "--kafka", kafka_bootstrap, "--speed", "max"])

    assert result.exit_code == 0, result.output
    assert "produced 150 samples of 1 cell(s)" in result.output
    assert decode_meta(_read(kafka_bootstrap, TOPIC_META, name.encode())[0]).mass_mg == 2.0
    frames = [decode_samples(m) for m in _read(kafka_bootstrap, TOPIC_SAMPLES, name.encode())]
    assert sum(len(f) for f in frames) == 150
