"""Read Kafka topics into a bytewax dataflow, with offsets kept in bytewax snapshots.

One bytewax partition per Kafka topic-partition, each with its own consumer assigned by
hand: no group membership and no rebalancing. The resume point is the bytewax snapshot
(the next offset to read), so a recovered dataflow re-reads exactly what its last
snapshot had not covered, and the twin state snapshotted at the same epoch matches.

A partition without resume state (a run without a recovery folder, or its first start)
begins where ``start`` says: at the offsets the consumer group ``group_id`` committed
(``"committed"``; a partition the group never committed starts at its first record), at
the end (``"end"``: only what is written from now on), or at the first record
(``"beginning"``). Topics in ``from_beginning`` (a compacted table such as the cell
metadata) are always read from their first record; their records below the group's
committed offset come marked ``replayed`` (the dataflow has seen them before, and need
not dead-letter them again). With a group, each partition commits the offset of its
snapshot before last: by the time a later epoch closes, the records
before it have gone through the dataflow, so a restart without a recovery folder re-reads
the last epoch or two instead of the whole topic, and loses nothing that reached a sink.

A broker outage does not end the source: a failed poll is retried with backoff (a
partition returns no records meanwhile), the outage is logged once per interval (see
:mod:`connectors.outage`), and reading resumes at the same offset once the broker is
back. ``max_outage_s`` ends the run with :class:`~connectors.outage.OutageError` instead.

The source is an adapter only: items are raw :class:`KafkaMessage` records; decoding and
validation are dataflow steps, where a bad message can go to the dead-letter topic.

``tail=False`` makes the source finite: each partition ends at the high-water mark it had
when the partition was built, which is what tests and replays of a topic need.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Collection, Mapping, Sequence

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors import kafka_clients
from connectors.outage import Outage
from connectors.wire import KafkaMessage

__all__ = ["KafkaMessage", "KafkaSource", "START_POLICIES"]

# Where a partition without resume state starts -> (use committed offsets, reset policy).
START_POLICIES: Mapping[str, tuple[bool, str]] = {
    "committed": (True, "earliest"),
    "end": (False, "latest"),
    "beginning": (False, "earliest"),
}
_COMMIT_TIMEOUT_MS = 5000
_log = logging.getLogger("celltwin.kafka")


class KafkaSource(FixedPartitionedSource[KafkaMessage, int]):
    """A bytewax source over kafka-python; resume state is the next offset of a partition.

    :arg bootstrap_servers: ``"host:port"`` or a list of them.
    :arg topics: topics to read; each must exist (partitions are listed at start).
    :arg tail: keep reading new records (live) if true; if false, each partition ends at
        its high-water mark measured when the partition is built (tests, replays).
    :arg start: where a partition without resume state starts: ``"committed"``,
        ``"end"`` or ``"beginning"`` (see the module doc).
    :arg group_id: consumer group whose offsets ``"committed"`` reads and the partitions
        commit; None: no group (nothing committed, ``"committed"`` means the beginning).
    :arg from_beginning: topics read from their first record whatever ``start`` says.
    :arg batch_size: most records returned by one ``next_batch``.
    :arg idle_wait_s: how long a partition that had nothing new waits before polling again;
        bounds both idle CPU use and the added latency.
    :arg max_outage_s: how long a broker outage is ridden out before the run stops; None: no limit.
    :arg consumer_config: extra kafka-python ``KafkaConsumer`` arguments, e.g. TLS/SASL:
        ``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username``,
        ``sasl_plain_password``, ``ssl_cafile``. Group and commit settings are fixed.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topics: Sequence[str],
        *,
        tail: bool = True,
        start: str = "beginning",
        group_id: str | None = None,
        from_beginning: Collection[str] = (),
        batch_size: int = 1000,
        idle_wait_s: float = 0.01,
        max_outage_s: float | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if start not in START_POLICIES:
            raise ValueError(f"start must be one of {sorted(START_POLICIES)}, not {start!r}")
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not one string")
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._tail = tail
        self._start = start
        self._group = group_id
        self._from_beginning = frozenset(from_beginning)
        self._batch_size = batch_size
        self._idle_wait = timedelta(seconds=idle_wait_s)
        self._extra = dict(consumer_config or {})
        self._outage = Outage(f"Kafka broker {bootstrap_servers}", max_outage_s=max_outage_s)

    def list_parts(self) -> list[str]:
        """Every partition of every topic, as ``"topic:partition"``."""
        consumer = self._consumer("earliest")
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
        """Open the partition at ``resume_state`` (the next offset) or where ``start`` says."""
        # Topic names cannot contain ":", so the last one separates the partition number.
        topic, _, number = for_part.rpartition(":")
        tp = TopicPartition(topic, int(number))
        table = topic in self._from_beginning
        use_committed, reset = START_POLICIES["beginning" if table else self._start]
        consumer = self._consumer(reset)
        try:
            consumer.assign([tp])
            # Now, with the partition assigned: left to itself, the consumer's first request
            # finds no metadata yet and waits out retry_backoff_ms (0.1 s a partition).
            consumer.bootstrap()
            seen = (consumer.committed(tp) or 0) if table and self._group is not None else 0
            if resume_state is not None:
                consumer.seek(tp, resume_state)
            elif not use_committed:
                # Committed offsets would otherwise win over the reset policy.
                (consumer.seek_to_end if reset == "latest" else consumer.seek_to_beginning)(tp)
            # Resolves the start now, so the start offset is a number from here on.
            start = consumer.position(tp)
            end = None if self._tail else consumer.end_offsets([tp])[tp]
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return _KafkaPartition(consumer, tp, start, end, self._batch_size, self._idle_wait,
                               self._outage, self._group is not None, seen)

    def _consumer(self, reset: str) -> KafkaConsumer:
        return kafka_clients.consumer(
            **{
                **self._extra,
                "bootstrap_servers": self._bootstrap,
                "group_id": self._group,
                "enable_auto_commit": False,
                "auto_offset_reset": reset,
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
        outage: Outage,
        commits: bool,
        seen: int,
    ) -> None:
        self._consumer = consumer
        self._tp = tp
        self._next = start
        self._end = end
        self._batch_size = batch_size
        self._idle_wait = idle_wait
        self._awake: datetime | None = None
        self._outage = outage
        self._failing = False  # this partition's last poll failed
        self._commits = commits
        self._seen = seen  # records below this offset were read by an earlier run
        self._snapshots = [start, start]  # the last two snapshots: what is safe to commit
        self._committed = start  # commits only move forward (the end of a finite run is final)

    def next_batch(self) -> list[KafkaMessage]:
        if self._end is not None and self._next >= self._end:
            self._commit(self._next)  # a finite run that got here has handed every record on
            raise StopIteration
        # Non-blocking: bytewax runs other partitions on this worker in the same thread.
        try:
            records = self._consumer.poll(timeout_ms=0, max_records=self._batch_size).get(self._tp, [])
        except KafkaError as error:
            return self._wait(error)
        if self._end is not None:
            # Records written after the end was measured belong to a later run.
            records = [r for r in records if r.offset < self._end]
        # The consumer's position, not last offset + 1: transaction markers and compacted
        # gaps occupy offsets that never come back as records.
        try:
            position = self._consumer.position(self._tp, timeout_ms=0)
        except KafkaError as error:
            if not records:
                return self._wait(error)
            position = None
        if position is None:  # not known right now (a broker restart): the records say it
            position = records[-1].offset + 1 if records else self._next
        if self._failing:
            # Only a partition that saw the outage ends it: a poll of another one may
            # succeed on what its consumer had fetched before the broker went away.
            self._failing = False
            self._outage.succeeded()
        self._next = position if self._end is None else min(position, self._end)
        self._awake = None if records else datetime.now(timezone.utc) + self._idle_wait
        return [
            KafkaMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, r.offset < self._seen)
            for r in records
        ]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        # Called as each epoch closes; the records before the snapshot of the epoch before
        # have passed through the dataflow by now, so that offset is safe to commit.
        self._snapshots = [self._snapshots[1], self._next]
        self._commit(self._snapshots[0])
        return self._next

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def _wait(self, error: KafkaError) -> list[KafkaMessage]:
        """No records this time: the broker is unreachable; poll again after a backoff."""
        self._failing = True
        wait_s = self._outage.failed(error)
        self._awake = datetime.now(timezone.utc) + timedelta(seconds=wait_s)
        return []

    def _commit(self, offset: int) -> None:
        if not self._commits or offset <= self._committed or self._outage.down:
            return  # during an outage the commit waits for the next snapshot
        try:
            self._consumer.commit({self._tp: OffsetAndMetadata(offset, "", -1)},
                                  timeout_ms=_COMMIT_TIMEOUT_MS)
            self._committed = offset
        except KafkaError as error:
            # Only a restart without recovery folder needs it, and the next snapshot tries again.
            _log.warning("committing offset %d of %s:%d failed: %s", offset, self._tp.topic,
                         self._tp.partition, error)
