"""Read Kafka topics into a bytewax dataflow, with offsets kept in bytewax snapshots.

One bytewax partition per Kafka topic-partition, each with its own consumer assigned by
hand: no consumer group, no rebalancing and no committed offsets. The resume point is the
bytewax snapshot (the next offset to read), so a recovered dataflow re-reads exactly what
its last snapshot had not covered, and the twin state snapshotted at the same epoch matches.

The source is an adapter only: items are raw :class:`KafkaMessage` records; decoding and
validation are dataflow steps, where a bad message can go to the dead-letter topic.

``tail=False`` makes the source finite: each partition ends at the high-water mark it had
when the partition was built, which is what tests and replays of a topic need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from kafka import KafkaConsumer, TopicPartition

__all__ = ["KafkaMessage", "KafkaSource"]


@dataclass(frozen=True)
class KafkaMessage:
    """One record as read from Kafka, undecoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # record timestamp: producer create time unless the topic says otherwise


class KafkaSource(FixedPartitionedSource[KafkaMessage, int]):
    """A bytewax source over kafka-python; resume state is the next offset of a partition.

    :arg bootstrap_servers: ``"host:port"`` or a list of them.
    :arg topics: topics to read; each must exist (partitions are listed at start).
    :arg tail: keep reading new records (live) if true; if false, each partition ends at
        its high-water mark measured when the partition is built (tests, replays).
    :arg auto_offset_reset: where a partition without resume state starts,
        ``"earliest"`` or ``"latest"``.
    :arg batch_size: most records returned by one ``next_batch``.
    :arg idle_wait_s: how long a partition that had nothing new waits before polling again;
        bounds both idle CPU use and the added latency.
    :arg consumer_config: extra kafka-python ``KafkaConsumer`` arguments, e.g. TLS/SASL:
        ``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username``,
        ``sasl_plain_password``, ``ssl_cafile``. Group and commit settings are fixed
        (offsets live in snapshots, not in Kafka).
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topics: Sequence[str],
        *,
        tail: bool = True,
        auto_offset_reset: str = "earliest",
        batch_size: int = 1000,
        idle_wait_s: float = 0.05,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(
                f"auto_offset_reset must be 'earliest' or 'latest', not {auto_offset_reset!r}"
            )
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not one string")
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._tail = tail
        self._reset = auto_offset_reset
        self._batch_size = batch_size
        self._idle_wait = timedelta(seconds=idle_wait_s)
        self._extra = dict(consumer_config or {})

    def list_parts(self) -> list[str]:
        """Every partition of every topic, as ``"topic:partition"``."""
        consumer = self._consumer()
        try:
            parts = []
            for topic in self._topics:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    raise ValueError(f"Kafka topic {topic!r} does not exist or has no partitions")
                parts.extend(f"{topic}:{p}" for p in sorted(partitions))
            return parts
        finally:
            consumer.close(autocommit=False)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[KafkaMessage, int]:
        """Open the partition at ``resume_state`` (the next offset) or at the reset point."""
        # Topic names cannot contain ":", so the last one separates the partition number.
        topic, _, number = for_part.rpartition(":")
        tp = TopicPartition(topic, int(number))
        consumer = self._consumer()
        try:
            consumer.assign([tp])
            if resume_state is not None:
                consumer.seek(tp, resume_state)
            # Resolves the reset policy now, so the start offset is a number from here on.
            start = consumer.position(tp)
            end = None if self._tail else consumer.end_offsets([tp])[tp]
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return _KafkaPartition(consumer, tp, start, end, self._batch_size, self._idle_wait)

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            **{
                **self._extra,
                "bootstrap_servers": self._bootstrap,
                "group_id": None,
                "enable_auto_commit": False,
                "auto_offset_reset": self._reset,
            }
        )


class _KafkaPartition(StatefulSourcePartition[KafkaMessage, int]):
    def __init__(
        self,
        consumer: KafkaConsumer,
        tp: TopicPartition,
        start: int,
        end: int | None,
        batch_size: int,
        idle_wait: timedelta,
    ) -> None:
        self._consumer = consumer
        self._tp = tp
        self._next = start
        self._end = end
        self._batch_size = batch_size
        self._idle_wait = idle_wait
        self._awake: datetime | None = None

    def next_batch(self) -> list[KafkaMessage]:
        if self._end is not None and self._next >= self._end:
            raise StopIteration
        # Non-blocking: bytewax runs other partitions on this worker in the same thread.
        records = self._consumer.poll(timeout_ms=0, max_records=self._batch_size).get(self._tp, [])
        if self._end is not None:
            # Records written after the end was measured belong to a later run.
            records = [r for r in records if r.offset < self._end]
        # The consumer's position, not last offset + 1: transaction markers and compacted
        # gaps occupy offsets that never come back as records.
        position = self._consumer.position(self._tp)
        self._next = position if self._end is None else min(position, self._end)
        self._awake = None if records else datetime.now(timezone.utc) + self._idle_wait
        return [
            KafkaMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for r in records
        ]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close(autocommit=False)
