"""Real services for integration tests, started once per test session.

A service that cannot start fails the run when ``CELLTWIN_REQUIRE_SERVICES=1`` or
``CI=true`` (CI must never pass by skipping), and is skipped with the reason on a dev box
that lacks Java, the broker jars, influxd or VictoriaMetrics.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from infra.services import RunningService, ServiceError, start_influxdb, start_kafka, start_victoria


def _services_required() -> bool:
    return (os.environ.get("CELLTWIN_REQUIRE_SERVICES") == "1"
            or os.environ.get("CI", "").lower() == "true")


def _running(start: Callable[[], RunningService]) -> Iterator[str]:
    for service in _service(start):
        yield service.address


def _service(start: Callable[[], RunningService]) -> Iterator[RunningService]:
    try:
        service = start()
    except ServiceError as error:
        if _services_required():
            pytest.fail(f"required service did not start: {error}", pytrace=False)
        pytest.skip(f"service not available on this machine: {error}")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap ``"127.0.0.1:PORT"`` of a single-node KRaft broker; topics are not auto-created."""
    yield from _running(start_kafka)


@pytest.fixture(scope="session")
def victoria_url() -> Iterator[str]:
    """Base URL ``"http://127.0.0.1:PORT"`` of VictoriaMetrics: InfluxDB v2 writes, 1 ms dedup."""
    yield from _running(start_victoria)


# The database every InfluxDB test writes to (a v2 write's bucket); tests keep apart by cell ids.
INFLUX_DATABASE = "celltwin"


@pytest.fixture(scope="session")
def influx_url() -> Iterator[str]:
    """Base URL ``"http://127.0.0.1:PORT"`` of InfluxDB OSS 1.13 (Flux on, auth off) with the
    database :data:`INFLUX_DATABASE`."""
    yield from _running(lambda: start_influxdb(databases=(INFLUX_DATABASE,)))


@pytest.fixture
def own_kafka() -> Iterator[RunningService]:
    """A broker of the test's own, which it may take away and bring back
    (``infra.services.pause_service`` / ``resume_service``) without disturbing other tests."""
    yield from _service(start_kafka)


@pytest.fixture
def own_victoria() -> Iterator[RunningService]:
    """A VictoriaMetrics of the test's own, which it may take away and bring back."""
    yield from _service(start_victoria)
