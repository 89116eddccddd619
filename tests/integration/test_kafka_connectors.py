"""The Kafka source, sink and topic admin against the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from connectors.kafka_admin import ensure_topics
from connectors.kafka_sink import KafkaSink
from connectors.kafka_source import KafkaSource
from connectors.outage import OutageError
from connectors.wire import KafkaMessage
from infra.services import RunningService, pause_service, resume_service
from tests.integration.pipeline_harness import read_topic

pytestmark = pytest.mark.integration


def _topic() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


def _produce(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for future in [producer.send(topic, key=k, value=v) for k, v in pairs]:
            future.get(timeout=10)
    finally:
        producer.close()


def _drain(part, timeout_s: float = 10.0) -> list[KafkaMessage]:
    """Read a finite partition (tail=False) to its end."""
    items: list[KafkaMessage] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            items.extend(part.next_batch())
        except StopIteration:
            return items
        time.sleep(0.005)
    raise AssertionError(f"partition did not end within {timeout_s} s; read {len(items)}")


def test_dataflow_reads_every_partition_to_its_end(kafka_bootstrap: str) -> None:
    topic = _topic()
    ensure_topics(kafka_bootstrap, {topic: 3})
    pairs = [(f"cell-{i % 5}".encode(), f"sample-{i}".encode()) for i in range(300)]
    _produce(kafka_bootstrap, topic, pairs)

    out: list[KafkaMessage] = []
    flow = Dataflow("kafka_roundtrip")
    source = KafkaSource(kafka_bootstrap, [topic], tail=False, batch_size=64)
    messages = op.input("in", flow, source)
    op.output("out", messages, TestingSink(out))
    run_main(flow)

    assert sorted((m.key, m.value) for m in out) == sorted(pairs)
    assert {m.topic for m in out} == {topic}
    for partition in {m.partition for m in out}:
        offsets = sorted(m.offset for m in out if m.partition == partition)
        assert offsets == list(range(len(offsets)))
    # Kafka keeps per-key order within a partition; the source must not reorder it.
    for key in {k for k, _ in pairs}:
        got = [m.value for m in out if m.key == key]
        assert got == [v for k, v in pairs if k == key]


def test_partition_resumes_at_snapshot_offset(kafka_bootstrap: str) -> None:
    topic = _topic()
    ensure_topics(kafka_bootstrap, {topic: 1})
    _produce(kafka_bootstrap, topic, [(b"c", f"v{i}".encode()) for i in range(10)])
    source = KafkaSource(kafka_bootstrap, [topic], tail=False, batch_size=3)
    assert source.list_parts() == [f"{topic}:0"]

    first = source.build_part("in", f"{topic}:0", None)
    batch: list[KafkaMessage] = []
    while not batch:
        batch = first.next_batch()
    resume = first.snapshot()
    first.close()
    assert [m.offset for m in batch] == [0, 1, 2]
    assert resume == 3  # the next offset to read, not the last one read

    resumed = source.build_part("in", f"{topic}:0", resume)
    rest = _drain(resumed)
    assert [m.offset for m in rest] == list(range(3, 10))
    assert [m.value for m in rest] == [f"v{i}".encode() for i in range(3, 10)]
    assert resumed.snapshot() == 10
    resumed.close()


def test_finite_partition_ends_at_high_water_mark_of_build_time(kafka_bootstrap: str) -> None:
    topic = _topic()
    ensure_topics(kafka_bootstrap, {topic: 1})
    _produce(kafka_bootstrap, topic, [(b"c", b"before")] * 4)
    part = KafkaSource(kafka_bootstrap, [topic], tail=False).build_part("in", f"{topic}:0", None)
    _produce(kafka_bootstrap, topic, [(b"c", b"after")] * 2)

    assert [m.value for m in _drain(part)] == [b"before"] * 4
    # What came later is left for the next run, which resumes at the snapshot.
    assert part.snapshot() == 4
    part.close()


def test_live_partition_keeps_reading_new_records(kafka_bootstrap: str) -> None:
    topic = _topic()
    ensure_topics(kafka_bootstrap, {topic: 1})
    part = KafkaSource(kafka_bootstrap, [topic]).build_part("in", f"{topic}:0", None)
    assert part.next_batch() == []
    _produce(kafka_bootstrap, topic, [(b"c", b"late")])

    got: list[KafkaMessage] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = part.next_batch()
        time.sleep(0.01)
    assert [m.value for m in got] == [b"late"]
    assert part.snapshot() == 1
    part.close()


def test_source_refuses_a_missing_topic(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        KafkaSource(kafka_bootstrap, [_topic()]).list_parts()


def test_sink_returns_only_once_the_batch_is_stored(kafka_bootstrap: str) -> None:
    topic = _topic()
    ensure_topics(kafka_bootstrap, {topic: 2})
    items = [(f"cell-{i % 3}".encode(), f"estimate-{i}".encode()) for i in range(200)]
    part = KafkaSink(kafka_bootstrap, topic).build("out", 0, 1)
    part.write_batch(items)  # no close(): acknowledgement must not wait for it

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for p in (0, 1)]
        consumer.assign(tps)
        assert sum(consumer.end_offsets(tps).values()) == len(items)
        read = [(r.key, r.value) for _, r in zip(range(len(items)), consumer)]
    finally:
        consumer.close()
        part.close()
    assert sorted(read) == sorted(items)


def test_an_overlapped_sink_keeps_the_order_of_its_batches_and_stores_all_by_close(kafka_bootstrap: str) -> None:
    topic = _topic()
    ensure_topics(kafka_bootstrap, {topic: 1})
    batches = [[(b"cell", f"estimate-{b}-{i}".encode()) for i in range(50)] for b in range(4)]
    part = KafkaSink(kafka_bootstrap, topic, overlap=True).build("out", 0, 1)
    for batch in batches:
        part.write_batch(batch)
    part.close()  # waits for the batch in flight

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        read = [r.value for _, r in zip(range(200), consumer)]
    finally:
        consumer.close()
    assert read == [value for batch in batches for _key, value in batch]


def test_sink_raises_when_records_cannot_be_stored(kafka_bootstrap: str) -> None:
    # The broker does not auto-create topics, so nothing sent here can be acknowledged: the
    # sink retries as in an outage, until the outage limit.
    part = KafkaSink(kafka_bootstrap, _topic(), timeout_s=3, max_outage_s=4.0,
                     producer_config={"max_block_ms": 2000}).build("out", 0, 1)
    try:
        with pytest.raises(OutageError, match="longer than the allowed 4 s"):
            part.write_batch([(b"c", b"lost")])
    finally:
        part.close()


def test_ensure_topics_is_idempotent_and_compacts_what_it_is_told(kafka_bootstrap: str) -> None:
    samples, meta = _topic(), _topic()
    wanted = {samples: 3, meta: 1}
    ensure_topics(kafka_bootstrap, wanted, compacted=[meta])
    ensure_topics(kafka_bootstrap, wanted, compacted=[meta])
    # An existing topic is left as it is, whatever partition count is asked for now.
    ensure_topics(kafka_bootstrap, {samples: 5}, compacted=[meta])

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        topics = admin.describe_topics([samples, meta])
        described = {t["name"]: len(t["partitions"]) for t in topics}
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, ["cleanup.policy"]) for name in wanted],
            config_filter="all",
        )
    finally:
        admin.close()
    assert described == wanted
    policy = {name: configs["topic"][name]["cleanup.policy"]["value"] for name in wanted}
    assert policy == {samples: "delete", meta: "compact"}


def test_source_and_sink_wait_for_a_broker_that_comes_back(own_kafka: RunningService) -> None:
    bootstrap = own_kafka.address
    topic, out = _topic(), _topic()
    ensure_topics(bootstrap, {topic: 1, out: 1})
    _produce(bootstrap, topic, [(b"c", f"before{i}".encode()) for i in range(5)])
    part = KafkaSource(bootstrap, [topic]).build_part("in", f"{topic}:0", None)
    sink = KafkaSink(bootstrap, out, timeout_s=2.0).build("out", 0, 1)
    try:
        assert [m.value for m in _read(part, 5)] == [f"before{i}".encode() for i in range(5)]
        pause_service(own_kafka)
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:  # polls as bytewax would: no records, no error
            assert part.next_batch() == []
            time.sleep(max((part.next_awake() - datetime.now(timezone.utc)).total_seconds(), 0.0))
        writer = threading.Thread(target=sink.write_batch, args=([(b"c", b"written in the outage")],))
        writer.start()
        time.sleep(3.0)
        assert writer.is_alive()  # waiting for the broker, not failed
        resume_service(own_kafka)
        writer.join(timeout=60)
        assert not writer.is_alive()
        _produce(bootstrap, topic, [(b"c", b"after")])
        after = _read(part, 1, timeout_s=60.0)
        assert [(m.offset, m.value) for m in after] == [(5, b"after")] and part.snapshot() == 6
    finally:
        part.close()
        sink.close()
    assert [r.value for r in read_topic(bootstrap, out)] == [b"written in the outage"]


def _read(part, count: int, timeout_s: float = 10.0) -> list[KafkaMessage]:
    """``count`` records from a partition that follows its topic."""
    items: list[KafkaMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(items) < count:
        assert time.monotonic() < deadline, f"read {len(items)} of {count} within {timeout_s} s"
        items.extend(part.next_batch())
        time.sleep(0.01)
    return items
