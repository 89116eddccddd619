"""Outage: backoff, one log line per interval, the end of patience, the health tally."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from connectors import outage as outage_module
from connectors.outage import Outage, OutageError, ask_stop, clear_stop, take_stall


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable monotonic clock for the module, and no outages of other tests."""
    now = [1000.0]
    monkeypatch.setattr(outage_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(outage_module, "_stalls", {})
    monkeypatch.setattr(outage_module, "_ended", [0.0])
    return now


def test_backoff_doubles_up_to_its_cap(clock: list[float]) -> None:
    down = Outage("store", backoff_s=0.5, max_backoff_s=3.0)
    assert [down.failed("refused") for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    down.succeeded()
    assert not down.down and down.failed("refused") == 0.5  # a new outage starts over


def test_logged_once_per_interval_and_when_over(clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "celltwin.outage")
    down = Outage("InfluxDB x", log_interval_s=10.0)
    for _ in range(25):  # an attempt per second for 25 s
        down.failed(ConnectionRefusedError("refused"))
        clock[0] += 1.0
    down.succeeded()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4, messages  # at 0, 10 and 20 s, then the end
    assert messages[0] == "InfluxDB x unreachable for 0 s (1 failed attempts), retrying: ConnectionRefusedError: refused"
    assert messages[2].startswith("InfluxDB x unreachable for 20 s (21 failed attempts)")
    assert messages[3] == "InfluxDB x is back after 25 s (25 failed attempts); resuming"


def test_no_limit_by_default_and_one_line_error_past_the_limit(clock: list[float]) -> None:
    patient = Outage("broker")
    patient.failed("down")
    clock[0] += 1e6
    patient.failed("down")  # no limit: still waiting after 11 days
    strict = Outage("InfluxDB x", max_outage_s=60.0)
    strict.failed("down")
    clock[0] += 60.0
    strict.failed("down")
    clock[0] += 0.5
    with pytest.raises(OutageError) as raised:
        strict.failed("HTTP 503:\n  unavailable")
    assert str(raised.value) == ("InfluxDB x unreachable for 60 s, longer than the allowed 60 s (--max-outage): "
                                 "HTTP 503: unavailable")


def test_health_takes_the_longest_stall_in_progress_or_over(clock: list[float]) -> None:
    assert take_stall() == 0.0
    source, sink = Outage("broker (source)"), Outage("broker (sink)")
    source.failed("down")
    sink.failed("down")
    clock[0] += 30.0
    sink.succeeded()
    clock[0] += 5.0
    assert take_stall() == 35.0  # the source's, still going on
    clock[0] += 5.0
    source.succeeded()
    assert take_stall() == 40.0  # over since the last take: its whole length, once
    assert take_stall() == 0.0


def test_a_wait_ends_with_an_error_once_a_stop_is_asked_for() -> None:
    outage = Outage("InfluxDB http://store:8086")
    outage.failed("refused")
    timer = threading.Timer(0.2, ask_stop)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(OutageError, match=r"^stopped while InfluxDB http://store:8086 was unreachable"):
            outage.wait(30.0)
        assert time.monotonic() - started < 5.0
        with pytest.raises(OutageError):  # and every wait after it, until a new run clears it
            outage.wait(30.0)
    finally:
        timer.cancel()
        clear_stop()
    outage.wait(0.01)
