"""The Kafka sink against a real broker: records the broker refuses for themselves go to the
sink's local file when it has one, and every other record is still delivered."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import MessageSizeTooLargeError

from connectors.kafka_sink import KafkaSink

pytestmark = pytest.mark.integration

_TOPIC_LIMIT = 4096  # max.message.bytes of the test topic


def _small_topic(bootstrap: str) -> str:
    topic = f"sink-limit-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(_TOPIC_LIMIT)})])
    finally:
        admin.close()
    return topic


def _read_all(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        return [(r.key, r.value) for _, r in zip(range(end), consumer)]
    finally:
        consumer.close()


def test_refused_records_go_to_the_file_and_the_rest_is_delivered(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = _small_topic(kafka_bootstrap)
    small = [(f"c{i}".encode(), f"letter-{i}".encode()) for i in range(50)]
    over_topic = (b"big", b"x" * (2 * _TOPIC_LIMIT))  # the broker refuses it
    over_client = (b"huge", "é".encode() * (1 << 20))  # 2 MiB: the client refuses it before sending
    undeliverable = tmp_path / "out" / "deadletter-undelivered.jsonl"
    part = KafkaSink(kafka_bootstrap, topic, undeliverable=undeliverable).build("out", 0, 1)
    later = [(b"c", f"later-{i}".encode()) for i in range(10)]
    try:
        part.write_batch(small[:25] + [over_topic] + small[25:40] + [over_client] + small[40:])
        part.write_batch(later)  # a refusal leaves kafka-python's idempotent producer failing all after it
    finally:
        part.close()

    assert _read_all(kafka_bootstrap, topic) == small + later
    lines = [json.loads(line) for line in undeliverable.read_text().splitlines()]
    assert sorted((d["key"], d["value"]) for d in lines) == sorted(
        (k.decode(), v.decode()) for k, v in (over_topic, over_client))
    assert all(d["topic"] == topic and "MessageSizeTooLargeError" in d["error"] for d in lines)


def test_without_a_file_a_refused_record_fails_the_batch(kafka_bootstrap: str) -> None:
    topic = _small_topic(kafka_bootstrap)
    part = KafkaSink(kafka_bootstrap, topic, timeout_s=10).build("out", 0, 1)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            part.write_batch([(b"a", b"fine"), (b"big", b"x" * (2 * _TOPIC_LIMIT))])
    finally:
        part.close()
