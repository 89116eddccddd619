"""infra/services.py: a service that cannot start says why."""

from __future__ import annotations

import urllib.parse

import pytest

from infra.services import KAFKA_LIBS_ENV, ServiceError, start_kafka, start_victoria

pytestmark = pytest.mark.integration


def test_failed_start_raises_with_the_service_log(victoria_url: str) -> None:
    taken = urllib.parse.urlsplit(victoria_url).port  # held by the session's instance
    with pytest.raises(ServiceError, match="victoria: exited") as raised:
        start_victoria(port=taken, timeout_s=10)
    assert f"127.0.0.1:{taken}" in str(raised.value)  # the log line naming the busy address


def test_missing_broker_jars_name_the_fix(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KAFKA_LIBS_ENV, str(tmp_path))
    # Without Java on the machine the same call says so instead.
    with pytest.raises(ServiceError, match=r"infra/kafka/fetch\.sh|no `java`"):
        start_kafka()
