"""infra/services.py's InfluxDB: found where the build script puts it, and a failed start says why."""

from __future__ import annotations

import urllib.parse

import pytest

from infra.services import INFLUXD_ENV, ServiceError, default_influxd, start_influxdb

pytestmark = pytest.mark.integration


def test_missing_influxd_names_the_build_script(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INFLUXD_ENV, str(tmp_path / "influxd"))
    assert default_influxd() == tmp_path / "influxd"
    with pytest.raises(ServiceError, match=r"infra/influxdb/build\.sh"):
        start_influxdb()


def test_cache_lies_outside_the_repository(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(INFLUXD_ENV, raising=False)
    monkeypatch.setenv("CELLTWIN_CACHE", str(tmp_path))
    assert default_influxd() == tmp_path / "influxdb-1.13.2" / "influxd"


def test_start_on_a_taken_port_fails_with_the_service_log(influx_url: str) -> None:
    taken = urllib.parse.urlsplit(influx_url).port  # held by the session's instance
    with pytest.raises(ServiceError, match="influxdb: exited") as raised:
        start_influxdb(port=taken, timeout_s=30)
    assert f"127.0.0.1:{taken}" in str(raised.value)  # the log line naming the busy address
