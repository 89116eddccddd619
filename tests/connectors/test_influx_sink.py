"""InfluxSink: its retry policy over real HTTP to a scripted local server."""

from __future__ import annotations

import gzip
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

import connectors.influx_sink as influx_sink
from connectors.influx_sink import InfluxSink, InfluxWriteError
from connectors.outage import OutageError
from connectors.wire import MEAS_STATE, TAG_CELL, TAG_PRESET, batches


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
        self.answer = threading.Event()  # cleared: a request waits (5 s at most) before its answer
        self.answer.set()
        self.received = threading.Event()
        self.answered = 0


class _Handler(BaseHTTPRequestHandler):
    server: _ScriptedServer

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, dict(self.headers), body))
        self.server.received.set()
        self.server.answer.wait(5.0)
        status = self.server.statuses.pop(0) if self.server.statuses else 204
        payload = b'{"code":"x","message":"scripted failure"}' if status >= 400 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.server.answered += 1

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


def _lines(request: tuple[str, dict[str, str], bytes]) -> list[bytes]:
    """The line protocol lines of a recorded write."""
    _path, headers, body = request
    return (gzip.decompress(body) if headers["Content-Encoding"] == "gzip" else body).splitlines()


def _partition(url: str, max_retries: int = 3):
    sink = InfluxSink(url, "token", "org", "bucket", max_retries=max_retries,
                      backoff_s=0.01, timeout_s=2, health_interval_s=3600.0)
    return sink.build("influx", 0, 1)


def test_transient_errors_are_retried_until_stored(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503, 500, 429]
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch(batches([_item(soc=0.5), _item(soc=math.nan)]))
    part.close()

    assert len(scripted.requests) == 4
    path, headers, body = scripted.requests[-1]
    assert path.startswith("/api/v2/write?")
    assert "bucket=bucket" in path and "org=org" in path and "precision=ms" in path
    assert headers["Content-Encoding"] == "identity"  # a store on loopback: not worth compressing
    lines = body.splitlines()
    assert lines[0] == rb"twin_state,cell=A\ 1,preset=p soc=0.5 1767225600251"
    assert lines[1].startswith(b"pipeline_health,worker=influx-0 write_errors=0i ")


def test_failed_attempts_are_reported_as_write_errors(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503, 503]
    sink = InfluxSink(f"http://127.0.0.1:{scripted.server_port}", "token", "org", "bucket",
                      max_retries=3, backoff_s=0.01, timeout_s=2, health_interval_s=0.0)
    part = sink.build("influx", 0, 1)
    part.write_batch(batches([_item(soc=0.5)]))
    part.write_batch(batches([_item(soc=0.6)]))
    part.close()
    last = _lines(scripted.requests[-1])
    assert last[1].startswith(b"pipeline_health,worker=influx-0 write_errors=2i ")


def test_client_error_raises_at_once_with_status_and_message(scripted: _ScriptedServer) -> None:
    scripted.statuses = [400]
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    with pytest.raises(InfluxWriteError, match="scripted failure") as raised:
        part.write_batch(batches([_item(soc=0.5)]))
    part.close()
    assert (raised.value.status, raised.value.attempts) == (400, 1)
    assert len(scripted.requests) == 1


def test_persistent_server_error_raises_after_the_retries(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503] * 10
    part = _partition(f"http://127.0.0.1:{scripted.server_port}", max_retries=2)
    with pytest.raises(InfluxWriteError) as raised:
        part.write_batch(batches([_item(soc=0.5)]))
    part.close()
    assert (raised.value.status, raised.value.attempts) == (503, 3)
    assert len(scripted.requests) == 3


def test_unreachable_server_raises_after_the_retries() -> None:
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    part = _partition(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(InfluxWriteError) as raised:
        part.write_batch(batches([_item(soc=0.5)]))
    part.close()
    assert raised.value.status is None and raised.value.attempts == 3


def test_batch_without_finite_values_sends_nothing(scripted: _ScriptedServer) -> None:
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch(batches([_item(soc=math.nan)]))
    part.close()
    assert scripted.requests == []


def test_by_default_retries_have_no_count_limit_and_report_the_stall(scripted: _ScriptedServer) -> None:
    scripted.statuses = [503] * 12
    sink = InfluxSink(f"http://127.0.0.1:{scripted.server_port}", "token", "org", "bucket",
                      backoff_s=0.001, max_backoff_s=0.01, timeout_s=2, health_interval_s=0.0)
    part = sink.build("influx", 0, 1)
    part.write_batch(batches([_item(soc=0.5)]))
    part.close()
    assert len(scripted.requests) == 13
    lines = _lines(scripted.requests[-1])
    assert lines[0] == rb"twin_state,cell=A\ 1,preset=p soc=0.5 1767225600251"
    # A health point before the first attempt, then one per retry (interval 0 here), with
    # the stall's length so far; all stored with the batch once the store answers.
    health = [_fields(line) for line in lines[1:]]
    assert len(health) == 13 and "stalled_s" not in health[0]
    assert [h["write_errors"] for h in health] == [f"{n}i" for n in range(13)]
    stalls = [float(h["stalled_s"]) for h in health[1:]]
    assert stalls == sorted(stalls) and stalls[-1] > 0


def _fields(line: bytes) -> dict[str, str]:
    """The fields of a line-protocol line without spaces in its tags or fields."""
    measurement, fields, _stamp = line.decode().split(" ")
    assert measurement == "pipeline_health,worker=influx-0"
    return dict(pair.split("=") for pair in fields.split(","))


def test_an_outage_longer_than_the_limit_stops_with_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = InfluxSink(f"http://127.0.0.1:{port}", "token", "org", "bucket", max_outage_s=0.2,
                      backoff_s=0.01, timeout_s=2, health_interval_s=3600.0)
    part = sink.build("influx", 0, 1)
    with pytest.raises(OutageError) as raised:
        part.write_batch(batches([_item(soc=0.5)]))
    part.close()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"InfluxDB http://127.0.0.1:{port} (worker 0) unreachable for ")
    assert "0.2 s (--max-outage)" in message and "Connection refused" in message


def _overlapped(url: str):
    sink = InfluxSink(url, "token", "org", "bucket", max_retries=0, timeout_s=10, health_interval_s=3600.0,
                      overlap=True)
    return sink.build("influx", 0, 1)


def test_an_overlapped_write_returns_while_the_store_takes_it_and_the_next_waits(scripted: _ScriptedServer) -> None:
    scripted.answer.clear()
    part = _overlapped(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch(batches([_item(soc=0.5)]))  # returns with the store still holding its answer
    assert scripted.received.wait(5.0)
    assert len(scripted.requests) == 1 and scripted.answered == 0
    second = threading.Thread(target=part.write_batch, args=(batches([_item(soc=0.6)]),))
    second.start()
    second.join(0.3)
    assert second.is_alive() and len(scripted.requests) == 1  # one batch in flight at most
    scripted.answer.set()
    second.join(5.0)
    part.close()  # waits for the second
    bodies = [_lines(request)[0] for request in scripted.requests]
    assert bodies == [rb"twin_state,cell=A\ 1,preset=p soc=0.5 1767225600251",
                      rb"twin_state,cell=A\ 1,preset=p soc=0.6 1767225600251"]


def test_an_overlapped_write_that_fails_raises_at_the_next_write_or_at_close(scripted: _ScriptedServer) -> None:
    url = f"http://127.0.0.1:{scripted.server_port}"
    scripted.statuses = [400]
    part = _overlapped(url)
    part.write_batch(batches([_item(soc=0.5)]))
    with pytest.raises(InfluxWriteError, match="scripted failure"):
        part.write_batch(batches([_item(soc=0.6)]))
    part.close()
    assert len(scripted.requests) == 1  # the batch after a refused one is not sent

    scripted.statuses = [400]
    part = _overlapped(url)
    part.write_batch(batches([_item(soc=0.7)]))
    with pytest.raises(InfluxWriteError, match="scripted failure") as raised:
        part.close()
    assert (raised.value.status, raised.value.attempts) == (400, 1)


def test_a_store_elsewhere_gets_gzipped_line_protocol(scripted: _ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(influx_sink, "_on_loopback", lambda url: False)
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch(batches([_item(soc=0.5)]))
    part.close()
    (request,) = scripted.requests
    assert request[1]["Content-Encoding"] == "gzip"
    assert _lines(request)[0] == rb"twin_state,cell=A\ 1,preset=p soc=0.5 1767225600251"


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8086", True), ("http://localhost:8086", True), ("http://[::1]:8086", True),
    ("http://127.0.1.1", True), ("http://influxdb:8086", False), ("https://10.0.0.2:8086", False),
])
def test_only_a_loopback_store_counts_as_on_this_machine(url: str, loopback: bool) -> None:
    assert influx_sink._on_loopback(url) is loopback


def test_a_large_batch_goes_in_several_requests_each_within_the_size_limit(
        scripted: _ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(influx_sink, "_MAX_BODY_CHARS", 300)
    part = _partition(f"http://127.0.0.1:{scripted.server_port}")
    part.write_batch(batches([_item(soc=k / 100) for k in range(40)]))
    part.close()
    bodies = [request[2] for request in scripted.requests]
    assert len(bodies) > 5 and all(len(body) <= 300 for body in bodies)
    lines = [line for request in scripted.requests for line in _lines(request)]
    socs = [line.rsplit(b" ", 2)[1] for line in lines if line.startswith(b"twin_state")]
    assert socs == [f"soc={k / 100:g}".encode() for k in range(40)]  # every point, in order
