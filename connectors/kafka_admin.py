"""Create the topics celltwin needs, idempotently, so every entry point can call it.

Run before producers and the dataflow start: the source lists partitions at start and the
dev/CI broker does not auto-create topics. A topic that already exists is left as it is
(its partition count and configuration are not changed): growing partitions would move
cell ids between partitions, which is a decision for an operator, not a side effect.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

from kafka import TopicPartition
from kafka.errors import TopicAlreadyExistsError, for_code

from connectors import kafka_clients
from connectors.wire import TOPIC_META

__all__ = ["ensure_topics", "empty_topic"]


def ensure_topics(
    bootstrap_servers: str | Sequence[str],
    topics: Mapping[str, int],
    *,
    compacted: Collection[str] = (TOPIC_META,),
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    admin_config: Mapping[str, Any] | None = None,
) -> None:
    """Make sure each topic in ``{name: partitions}`` exists; return once all are usable.

    Topics named in ``compacted`` get ``cleanup.policy=compact`` (a keyed latest-value
    table such as the cell metadata); the others keep the broker's default (delete).
    ``admin_config`` passes extra kafka-python admin arguments (TLS/SASL).
    """
    if not topics:
        return
    admin = kafka_clients.admin(**{**dict(admin_config or {}), "bootstrap_servers": bootstrap_servers})
    try:
        request = {
            name: {
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "configs": {"cleanup.policy": "compact"} if name in compacted else {},
            }
            for name, partitions in topics.items()
        }
        # Errors per topic, not raised at the first one: "already exists" is success here,
        # and the other topics of the same request must still be checked.
        response = admin.create_topics(
            request, timeout_ms=int(timeout_s * 1000), raise_errors=False
        )
        for result in response["topics"]:
            error = for_code(result["error_code"])
            if result["error_code"] != 0 and error is not TopicAlreadyExistsError:
                raise error(f"creating topic {result['name']!r}: {result.get('error_message')}")
        # A created topic is usable only once every partition has a leader.
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
    finally:
        admin.close()


def empty_topic(bootstrap_servers: str | Sequence[str], topic: str) -> None:
    """Move the start of every partition of ``topic`` to its end (delete the records), so
    a reader from the earliest offset sees only what comes next. For tests and benchmarks."""
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(parts)
    finally:
        consumer.close()
    admin = kafka_clients.admin(bootstrap_servers=bootstrap_servers)
    try:
        admin.delete_records({tp: end for tp, end in ends.items() if end > 0})
    finally:
        admin.close()
