"""kafka-python clients that ask the broker for its API versions once per process.

A kafka-python client made without ``api_version`` probes the broker for it, ~0.1 s
each; a pipeline makes a dozen at start-up (preflight, topics, a consumer per partition,
a producer per sink) and its health check one a minute. The first client of a bootstrap
list probes; later ones are given what it found. An ``api_version`` the caller sets wins.
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

__all__ = ["admin", "consumer", "producer"]

_Client = TypeVar("_Client", KafkaAdminClient, KafkaConsumer, KafkaProducer)
_probed: dict[str, tuple[int, ...]] = {}


def _made(cls: type[_Client], config: dict[str, Any]) -> _Client:
    servers: str | Sequence[str] = config["bootstrap_servers"]
    key = servers if isinstance(servers, str) else ",".join(servers)
    known = {"api_version": _probed[key]} if key in _probed else {}
    client = cls(**{**known, **config})
    version = client.config.get("api_version")
    if version is not None:
        _probed.setdefault(key, tuple(version))
    return client


def consumer(**config: Any) -> KafkaConsumer:
    return _made(KafkaConsumer, config)


def producer(**config: Any) -> KafkaProducer:
    return _made(KafkaProducer, config)


def admin(**config: Any) -> KafkaAdminClient:
    return _made(KafkaAdminClient, config)
