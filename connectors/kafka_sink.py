"""Write (key, value) byte pairs from a bytewax dataflow to one Kafka topic.

A batch counts as written only once the broker has acknowledged every record of it on all
in-sync replicas: ``write_batch`` sends the whole batch, flushes, then waits on each
record's future. bytewax therefore never moves past an epoch whose output is not stored.
A broker outage is ridden out: records that timed out or failed with a retriable error are
sent again after a backoff, however long the outage lasts unless ``max_outage_s`` says
otherwise (see :mod:`connectors.outage`); while ``write_batch`` waits, the worker reads no
new input. A record the broker refuses for good (too large, not authorised) raises and
stops the dataflow (to be resumed from its last snapshot: delivery is at least once)
instead of dropping data.

The producer is idempotent (kafka-python 3 supports it and enables it by default), so the
client's own retries of a timed-out request cannot duplicate or reorder records.
Encoding stays in the dataflow; the sink takes bytes.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from connectors.outage import Outage

__all__ = ["KafkaSink"]

KeyValue = tuple[bytes | None, bytes | None]

# write_batch flushes at its end, so lingering costs no latency; it lets the sender
# thread ship large batches instead of waking up for every few records (measured with
# 400-byte records: 29 us per record against 40 us with kafka-python's defaults).
_BATCHING = {"linger_ms": 100, "batch_size": 512 * 1024}


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
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        timeout_s: float = 10.0,
        max_outage_s: float | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._timeout_s = timeout_s
        self._max_outage_s = max_outage_s
        self._extra = dict(producer_config or {})

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[KeyValue]:
        producer = KafkaProducer(
            **{
                **_BATCHING,
                **self._extra,
                "bootstrap_servers": self._bootstrap,
                "acks": "all",
                "enable_idempotence": True,
            }
        )
        outage = Outage(f"Kafka broker {self._bootstrap} ({self._topic}, worker {worker_index})",
                        max_outage_s=self._max_outage_s)
        return _KafkaSinkPartition(producer, self._topic, self._timeout_s, outage)


class _KafkaSinkPartition(StatelessSinkPartition[KeyValue]):
    def __init__(self, producer: KafkaProducer, topic: str, timeout_s: float, outage: Outage) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s
        self._outage = outage

    def write_batch(self, items: list[KeyValue]) -> None:
        pending = items
        while pending:
            sent, error = self._send(pending)
            self._await(sent)
            failed = [(item, future.exception) for item, future in sent if future.failed()]
            for _, cause in failed:
                if not (isinstance(cause, KafkaError) and cause.retriable):
                    raise cause  # refused for good: retrying cannot help
            # Only what failed, or was never handed to the producer, goes again.
            pending = [item for item, _ in failed] + pending[len(sent):]
            if pending:
                time.sleep(self._outage.failed(error or failed[0][1]))
        self._outage.succeeded()

    def _send(self, items: list[KeyValue]) -> tuple[list[tuple[KeyValue, Any]], KafkaError | None]:
        """Hand ``items`` to the producer, in order, until one cannot be (no metadata or
        no buffer space while the broker is away); the futures of those handed over."""
        sent = []
        for item in items:
            try:
                sent.append((item, self._producer.send(self._topic, key=item[0], value=item[1])))
            except KafkaError as error:
                if not error.retriable:
                    raise
                return sent, error
        return sent, None

    def _await(self, sent: list[tuple[KeyValue, Any]]) -> None:
        """Wait until the producer has an answer for every record sent (acknowledged or failed)."""
        while not all(future.is_done for _, future in sent):
            try:
                self._producer.flush(timeout=self._timeout_s)
            except KafkaTimeoutError as error:
                self._outage.failed(error)  # records stay queued in the producer: wait again

    def close(self) -> None:
        self._producer.close(timeout=self._timeout_s)
