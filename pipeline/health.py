"""Pipeline self-observation: running totals for `pipeline_health` and the progress display.

Every shard reports per batch what it did (`ShardStats`); decode dead letters count
too. One keyed step adds them up and, every `health_interval_s` of wall time, emits a
`pipeline_health` point of running totals (tag `worker` = "all": the totals of the
whole flow, however many workers share it). Totals are snapshotted with the rest of
the state, so they continue across a recovery instead of restarting at zero.

`consumer_lag` is the number of `cell.samples` records not yet read: the partitions'
end offsets minus the next offset the flow had seen per partition. The broker is asked
in a thread of its own when a point is due, so a slow answer never holds the dataflow;
a point carries the answer to the question its predecessor asked (the lag as it was one
health interval earlier). The last point, at the end of the stream, waits for a fresh
answer: a run shorter than the probe would otherwise never report one. The lag is absent
in embedded mode, from the first point, and while the broker is away or has not answered.

`stalled_s` is the longest outage of the broker or the store in this process since the
previous point, in progress or over (`connectors.outage.take_stall`); 0 without one.
A sink that waits for the broker or the store holds its worker, this step included, so
the stall shows once it is over; the InfluxDB sink also adds its own points while it
waits (tag `worker` = "influx-N", stored once the store is back).

`Progress` is the in-process view for `celltwin run`: a thread-safe tally the
display thread reads while the dataflow runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

from bytewax.operators import StatefulBatchLogic
from kafka import TopicPartition
from kafka.errors import KafkaError

from connectors import kafka_clients
from connectors.outage import take_stall
from connectors.wire import MEAS_HEALTH, TOPIC_SAMPLES, Batch, batches
from pipeline.twin_step import ShardStats

__all__ = ["HEALTH_KEY", "Progress", "HealthTotals", "HealthLogic", "KafkaLag"]

HEALTH_KEY = "health"

LagProbe = Callable[[Mapping[str, int], bool], int | None]  # (positions, wait for the answer)


class Progress:
    """Samples, cells and dead letters seen so far in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples = 0
        self.cells = 0
        self.deadletters = 0
        self.started = time.monotonic()

    def add(self, stats: ShardStats) -> None:
        with self._lock:
            self.samples += stats.samples
            self.cells += stats.new_cells
            self.deadletters += stats.deadletters

    def snapshot(self) -> tuple[int, int, int, float]:
        """(samples, cells, dead letters, seconds since start)."""
        with self._lock:
            return self.samples, self.cells, self.deadletters, time.monotonic() - self.started


@dataclass
class HealthTotals:
    samples: int = 0
    deadletters: int = 0
    positions: dict[str, int] = field(default_factory=dict)


class HealthLogic(StatefulBatchLogic[ShardStats, Batch, HealthTotals]):
    """Adds up ShardStats; emits a pipeline_health point every `interval_s` and at the end."""

    def __init__(self, interval_s: float, lag: LagProbe | None, resume: HealthTotals | None = None) -> None:
        self._interval = timedelta(seconds=interval_s)
        self._lag = lag
        self._totals = resume or HealthTotals()
        self._next = datetime.now(timezone.utc) + self._interval

    def on_batch(self, values: list[ShardStats]) -> tuple[Iterable[Batch], bool]:
        totals = self._totals
        for stats in values:
            totals.samples += stats.samples
            totals.deadletters += stats.deadletters
            for part, offset in stats.positions.items():
                totals.positions[part] = max(totals.positions.get(part, 0), offset)
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime:
        return self._next

    def on_notify(self) -> tuple[Iterable[Batch], bool]:
        self._next = datetime.now(timezone.utc) + self._interval
        return [self._batch(final=False)], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Batch], bool]:
        return [self._batch(final=True)], StatefulBatchLogic.RETAIN

    def snapshot(self) -> HealthTotals:
        t = self._totals
        return HealthTotals(t.samples, t.deadletters, dict(t.positions))

    def _batch(self, final: bool) -> Batch:
        fields: dict[str, Any] = {"samples": self._totals.samples, "deadletters": self._totals.deadletters}
        fields["stalled_s"] = round(take_stall(), 3)
        if self._lag is not None and not fields["stalled_s"]:  # not in an outage: nobody might answer
            lag = self._lag(self._totals.positions, final)
            if lag is not None:
                fields["consumer_lag"] = lag
        point = {"measurement": MEAS_HEALTH, "tags": {"worker": "all"}, "fields": fields, "time": time.time()}
        return batches([point])[0]


class KafkaLag:
    """Records of `cell.samples` not yet read, given the next offset seen per partition.

    A call starts a probe in a thread (unless one still runs) and returns the answer of the
    one before, if it had one: the dataflow never waits for the broker. A short-lived
    consumer per probe: one per health interval, and nothing left open when the flow stops
    (a logic has no close hook)."""

    def __init__(self, bootstrap: str, client: Mapping[str, Any], topic: str = TOPIC_SAMPLES) -> None:
        self._bootstrap = bootstrap
        self._client = dict(client)
        self._topic = topic
        self._lock = threading.Lock()
        self._answer: int | None = None
        self._probe: threading.Thread | None = None

    def __call__(self, positions: Mapping[str, int], wait: bool = False) -> int | None:
        """The lag the last finished probe found (None if none or the broker could not tell),
        and a new probe for `positions` started; with `wait`, the lag now, asked in this thread."""
        if wait:
            return self.measure(positions)
        with self._lock:
            answer, self._answer = self._answer, None
        if self._probe is None or not self._probe.is_alive():
            self._probe = threading.Thread(target=self._run, args=(dict(positions),), name="celltwin-kafka-lag",
                                           daemon=True)
            self._probe.start()
        return answer

    def _run(self, positions: Mapping[str, int]) -> None:
        lag = self.measure(positions)
        with self._lock:
            self._answer = lag

    def measure(self, positions: Mapping[str, int]) -> int | None:
        """The lag now, asked from the broker in this thread, or None if it cannot tell it now
        (unreachable, or no topic)."""
        try:
            consumer = kafka_clients.consumer(**{**self._client, "bootstrap_servers": self._bootstrap,
                                                 "group_id": None, "enable_auto_commit": False})
        except KafkaError:
            return None
        try:
            parts = [TopicPartition(self._topic, p) for p in sorted(consumer.partitions_for_topic(self._topic) or ())]
            if not parts:
                return None
            ends = consumer.end_offsets(parts)
            starts = consumer.beginning_offsets(parts)
        except KafkaError:
            return None
        finally:
            consumer.close(autocommit=False)
        return sum(max(ends[tp] - positions.get(f"{tp.topic}:{tp.partition}", starts[tp]), 0) for tp in parts)
