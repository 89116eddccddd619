"""infra/services.py: a service that cannot start says why; a paused one comes back whole."""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request

import pytest

from infra.services import (
    KAFKA_LIBS_ENV, RunningService, ServiceError, pause_service, resume_service, start_kafka, start_victoria,
)
from tests.integration.pipeline_harness import stored_estimates

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


def test_a_paused_service_comes_back_on_its_port_with_its_data(own_victoria: RunningService) -> None:
    url = own_victoria.address
    line = b"twin_state,cell=svc-1,preset=p soc=0.5 1767225600000"
    urllib.request.urlopen(urllib.request.Request(f"{url}/api/v2/write?precision=ms", data=line), timeout=10).close()
    assert stored_estimates(url, "svc-") == 1
    pause_service(own_victoria)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(url).port), timeout=2).close()
    resume_service(own_victoria)
    assert stored_estimates(url, "svc-") == 1  # same port, same data folder
    with pytest.raises(ServiceError, match="pause it first"):
        resume_service(own_victoria)
