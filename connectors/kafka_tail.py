"""The end of a topic, and the latest sample time each cell reached after given offsets.

A producer that records what it sent only after the broker acknowledged it can be killed
between the acknowledgement and the record. It notes the topic's end offsets with each
record it saves (at or before anything it sends next); after a restart, the records
from those offsets on show how far each cell got, so nothing is sent twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from kafka import TopicPartition

from connectors import kafka_clients

__all__ = ["TopicTail"]


class TopicTail:
    """Reads the end of one topic of wire-format samples (key = cell id, ``t`` a time or a list)."""

    def __init__(self, bootstrap: str, topic: str, consumer_config: Mapping[str, Any] | None = None) -> None:
        self._topic = topic
        self._consumer = kafka_clients.consumer(**{**dict(consumer_config or {}), "bootstrap_servers": bootstrap,
                                                   "group_id": None, "enable_auto_commit": False})
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not self._parts:
            raise ValueError(f"topic {topic!r} has no partitions on {bootstrap}")
        self._consumer.assign(self._parts)

    def ends(self) -> dict[int, int]:
        """The next offset of every partition."""
        return {tp.partition: offset for tp, offset in self._consumer.end_offsets(self._parts).items()}

    def last_times(self, marks: Mapping[int, int], timeout_s: float = 60.0) -> dict[str, float]:
        """Per cell, the latest sample time in the records from ``marks`` to the current end
        (partitions without a mark are read from where they end now, i.e. not at all)."""
        ends = self.ends()
        start = {tp: min(marks.get(tp.partition, ends[tp.partition]), ends[tp.partition]) for tp in self._parts}
        for tp, offset in start.items():
            self._consumer.seek(tp, offset)
        latest: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while any(self._consumer.position(tp) < ends[tp.partition] for tp in self._parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self._topic} to its end within {timeout_s:g} s")
            for batch in self._consumer.poll(timeout_ms=500).values():
                for record in batch:
                    if record.offset >= ends[record.partition] or record.key is None:
                        continue
                    try:
                        t = json.loads(record.value)["t"]
                        newest = float(max(t) if isinstance(t, list) else t)
                    except (ValueError, KeyError, TypeError):  # not a sample: the pipeline refuses it
                        continue
                    cell = record.key.decode()
                    latest[cell] = max(latest.get(cell, newest), newest)
        return latest

    def close(self) -> None:
        self._consumer.close()
