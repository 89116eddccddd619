"""Write (key, value) byte pairs from a bytewax dataflow to one Kafka topic.

A batch counts as written only once the broker has acknowledged every record of it on all
in-sync replicas: ``write_batch`` sends the whole batch, flushes, then waits on each
record's future. bytewax therefore never moves past an epoch whose output is not stored.
A broker outage is ridden out: records that timed out or failed with a retriable error are
sent again after a backoff, however long the outage lasts unless ``max_outage_s`` says
otherwise (see :mod:`connectors.outage`); while ``write_batch`` waits, the worker reads no
new input. With ``overlap=True`` (runs without recovery) all this happens on a writer
thread while the dataflow computes the next batch (:mod:`connectors.overlap`).

A record the broker refuses for itself (larger than the topic or the client allows, or
invalid) is sent once more alone; if it is refused again it goes to a local JSON-lines
file (``undeliverable``) when one is given (the dead-letter sink does, so that no record
stops the run), else it raises and stops the dataflow (to be resumed from its last
snapshot: delivery is at least once) instead of dropping data.

The producer is idempotent (kafka-python 3 supports it and enables it by default), so the
client's own retries of a timed-out request cannot duplicate or reorder records.
Encoding stays in the dataflow; the sink takes bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from kafka import KafkaProducer
from kafka.errors import (
    CorruptRecordError, InvalidRecordError, KafkaError, KafkaTimeoutError, MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from connectors import kafka_clients
from connectors.outage import Outage
from connectors.overlap import Overlapped

__all__ = ["KafkaSink"]

KeyValue = tuple[bytes | None, bytes | None]
_Refused = tuple[bytes | None, bytes | None, KafkaError]  # key, value, why the broker or client refused it

# write_batch flushes at its end, so lingering costs no latency; it lets the sender
# thread ship large batches instead of waking up for every few records (measured with
# 400-byte records: 29 us per record against 40 us with kafka-python's defaults).
_BATCHING = {"linger_ms": 100, "batch_size": 512 * 1024}
_SMALLEST_BATCH = 16 * 1024  # kafka-python's default batch_size
# Errors that are the record's own: sending it again unchanged cannot succeed.
_REFUSED = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError, CorruptRecordError)


class KafkaSink(DynamicSink[KeyValue]):
    """A bytewax sink of ``(key, value)`` bytes to ``topic``; one producer per worker.

    :arg bootstrap_servers: ``"host:port"`` or a list of them.
    :arg topic: the topic every item goes to (its partition follows from the key).
    :arg timeout_s: how long write_batch waits for a batch to be acknowledged before it
        counts a failed attempt (and sends what is missing again).
    :arg max_outage_s: how long a broker outage is ridden out before the run stops; None: no limit.
    :arg producer_config: extra kafka-python ``KafkaProducer`` arguments, e.g. TLS/SASL
        (``security_protocol``, ``sasl_mechanism``, ``ssl_cafile``...) or
        ``compression_type``, or other ``linger_ms`` / ``batch_size`` than the 100 ms /
        512 KiB used here. ``acks`` and ``enable_idempotence`` cannot be weakened here.
    :arg undeliverable: a file that records refused by the broker for themselves (too
        large, invalid) are appended to, one JSON object per line (``topic``, ``error``,
        ``key``, ``value``; key and value as UTF-8 text), instead of failing the batch.
    :arg overlap: write each batch while the dataflow computes the next
        (:class:`~connectors.overlap.Overlapped`); only for runs without recovery.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        timeout_s: float = 10.0,
        max_outage_s: float | None = None,
        producer_config: Mapping[str, Any] | None = None,
        undeliverable: Path | None = None,
        overlap: bool = False,
    ) -> None:
        self._overlap = overlap
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._timeout_s = timeout_s
        self._max_outage_s = max_outage_s
        self._extra = dict(producer_config or {})
        self._undeliverable = undeliverable

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[KeyValue]:
        outage = Outage(f"Kafka broker {self._bootstrap} ({self._topic}, worker {worker_index})",
                        max_outage_s=self._max_outage_s)
        partition = _KafkaSinkPartition(self._new_producer, self._topic, self._timeout_s, outage, self._undeliverable)
        return Overlapped(partition, f"kafka-{self._topic}-{worker_index}") if self._overlap else partition

    def _new_producer(self, shrink: int = 0) -> KafkaProducer:
        """A producer; its batches ``2**shrink`` times smaller (down to 16 KiB) after refusals."""
        config = {**_BATCHING, **self._extra}
        config["batch_size"] = max(config["batch_size"] >> shrink, min(config["batch_size"], _SMALLEST_BATCH))
        return kafka_clients.producer(**{**config, "bootstrap_servers": self._bootstrap, "acks": "all",
                                         "enable_idempotence": True})


class _KafkaSinkPartition(StatelessSinkPartition[KeyValue]):
    def __init__(self, make_producer: Callable[[int], KafkaProducer], topic: str, timeout_s: float,
                 outage: Outage, undeliverable: Path | None) -> None:
        self._make_producer = make_producer
        self._shrink = 0  # batches are halved each time a whole batch was too large for the topic
        self._producer = make_producer(self._shrink)
        self._topic = topic
        self._timeout_s = timeout_s
        self._outage = outage
        self._undeliverable = undeliverable

    def write_batch(self, items: list[KeyValue]) -> None:
        refused = self._deliver(items)
        if refused:
            refused = self._again_alone(refused)
        if refused:
            self._set_aside(refused)

    def _deliver(self, items: list[KeyValue]) -> list[_Refused]:
        """Send until each item is acknowledged or refused for itself (those are returned);
        retriable failures are sent again after the outage's backoff."""
        pending, refused = items, []
        while pending:
            sent, handed, error = self._send(pending, refused)
            self._await(sent)
            failed = [(item, future.exception) for item, future in sent if future.failed()]
            retry: list[KeyValue] = []
            for item, cause in failed:
                if isinstance(cause, _REFUSED):
                    refused.append((*item, cause))
                elif isinstance(cause, KafkaError) and cause.retriable:
                    retry.append(item)
                    error = error or cause
                else:
                    raise cause  # refused for good (not authorised...): retrying cannot help
            # Only what failed for the broker's state, or was never handed over, goes again.
            pending = retry + pending[handed:]
            if pending:
                self._outage.wait(self._outage.failed(error))
        self._outage.succeeded()
        return refused

    def _send(self, items: list[KeyValue], refused: list[_Refused]) -> tuple[list[tuple[KeyValue, Any]], int, KafkaError | None]:
        """Hand ``items`` to the producer, in order, until one cannot be (no metadata or no
        buffer space while the broker is away): the futures of those handed over, how many
        items were dealt with, and the error that stopped it. Items the client refuses
        outright (larger than its max_request_size) are added to ``refused``."""
        sent = []
        for k, item in enumerate(items):
            try:
                sent.append((item, self._producer.send(self._topic, key=item[0], value=item[1])))
            except _REFUSED as error:
                refused.append((*item, error))
            except KafkaError as error:
                if not error.retriable:
                    raise
                return sent, k, error
        return sent, len(items), None

    def _await(self, sent: list[tuple[KeyValue, Any]]) -> None:
        """Wait until the producer has an answer for every record sent (acknowledged or failed)."""
        while not all(future.is_done for _, future in sent):
            try:
                self._producer.flush(timeout=self._timeout_s)
            except KafkaTimeoutError as error:
                self._outage.failed(error)
                self._outage.wait(0.0)  # records stay queued in the producer: flush again, unless told to stop
            except KafkaError:
                pass  # each record's future says what became of it (kafka-python's flush fails on a split batch)

    def _again_alone(self, failed: list[_Refused]) -> list[_Refused]:
        """Send each refused record again, alone, on a new producer after each refusal: what a refused
        record takes down with it (kafka-python splits a batch the broker finds too large, then fails
        the rest, and an idempotent producer fails everything after) is delivered."""
        refused: list[_Refused] = []
        self._renew()
        for key, value, _ in failed:
            again = self._deliver([(key, value)])
            if again:
                refused += again
                self._renew()
        if len(refused) < len(failed):  # some went down only with their batch: smaller batches from now on
            self._shrink += 1
            self._renew()
        return refused

    def _renew(self) -> None:
        try:
            self._producer.close(timeout=self._timeout_s)
        except KafkaError:
            pass  # a producer given up on: what it held was sent or is sent again
        self._producer = self._make_producer(self._shrink)

    def _set_aside(self, refused: list[_Refused]) -> None:
        if self._undeliverable is None:
            raise refused[0][2]
        self._undeliverable.parent.mkdir(parents=True, exist_ok=True)
        with self._undeliverable.open("a", encoding="utf-8") as file:
            for key, value, error in refused:
                file.write(json.dumps({
                    "topic": self._topic, "error": f"{type(error).__name__}: {error}",
                    "key": None if key is None else key.decode("utf-8", "replace"),
                    "value": None if value is None else value.decode("utf-8", "replace"),
                }) + "\n")

    def close(self) -> None:
        self._producer.close(timeout=self._timeout_s)
