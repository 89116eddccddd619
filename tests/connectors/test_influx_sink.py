"""InfluxSink: its retry policy over real HTTP to a scripted local server."""

from __future__ import annotations

import gzip
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from connectors.influx_sink import InfluxSink, InfluxWriteError
from pipeline.contracts import MEAS_STATE, TAG_CELL, TAG_PRESET


def _item(**fields: float) -> dict:
    return {
        "measurement": MEAS_STATE,
        "tags": {TAG_CELL: "A 1", TAG_PRESET: "p"},
        "fields": fields,
        "time": 1767225600.2506,
    }



class _ScriptedServer(ThreadingHTTPServer):
    """Answers each write with the next status of its script (204 once it runs out)."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str], bytes]] = []


class _Handler(BaseHTTPRequestHandler):
    server: _ScriptedServer

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, dict(self.headers), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 204
        payload = b'{"code":"x","message":"scripted failure"}' if status >= 400 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads the recorded requests, not a log line per request."""


@pytest.fixture
def scripted() -> Iterator[_ScriptedServer]:
    server = _ScriptedServer([])
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _partition(url: str, max_retries: int = 3):
    sink = InfluxSink(url, "token", "org", "bucket", max_retries=max_retries,
                      backoff_s=0.01, timeout_s=2, health_interval_s=3600.0)
    return sink.build("influx", 0, 1)


def test_transient_errors_are_retried_until_stored(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503, 500, 429]
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch([_item(soc=0.5), _item(soc=math.nan)])
    part.close()

    assert len(scripted.requests) == 4
    path, headers, body = scripted.requests[-1]
    assert path.startswith("/api/v2/write?")
    assert "bucket=bucket" in path and "org=org" in path and "precision=ms" in path
    assert headers["Content-Encoding"] == "gzip"
    lines = gzip.decompress(body).splitlines()
    assert lines[0] == rb"twin_state,cell=A\ 1,preset=p soc=0.5 1767225600251"
    assert lines[1].startswith(b"pipeline_health,worker=influx-0 write_errors=0i ")


def test_failed_attempts_are_reported_as_write_errors(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503, 503]
    sink = InfluxSink(f"http://127.0.0.1:{scripted.server_port}", "token", "org", "bucket",
                      max_retries=3, backoff_s=0.01, timeout_s=2, health_interval_s=0.0)
    part = sink.build("influx", 0, 1)
    part.write_batch([_item(soc=0.5)])
    part.write_batch([_item(soc=0.6)])
    part.close()
    last = gzip.decompress(scripted.requests[-1][2]).splitlines()
    assert last[1].startswith(b"pipeline_health,worker=influx-0 write_errors=2i ")


def test_client_error_raises_at_once_with_status_and_message(scripted: _ScriptedServer) -> None:
    scripted.statuses = [400]
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    with pytest.raises(InfluxWriteError, match="scripted failure") as raised:
        part.write_batch([_item(soc=0.5)])
    part.close()
    assert (raised.value.status, raised.value.attempts) == (400, 1)
    assert len(scripted.requests) == 1


def test_persistent_server_error_raises_after_the_retries(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503] * 10
    part = _partition(f"http://127.0.0.1:{scripted.server_port}", max_retries=2)
    with pytest.raises(InfluxWriteError) as raised:
        part.write_batch([_item(soc=0.5)])
    part.close()
    assert (raised.value.status, raised.value.attempts) == (503, 3)
    assert len(scripted.requests) == 3


def test_unreachable_server_raises_after_the_retries() -> None:
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    part = _partition(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(InfluxWriteError) as raised:
        part.write_batch([_item(soc=0.5)])
    part.close()
    assert raised.value.status is None and raised.value.attempts == 3


def test_batch_without_finite_values_sends_nothing(scripted: _ScriptedServer) -> None:
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch([_item(soc=math.nan)])
    part.close()
    assert scripted.requests == []
