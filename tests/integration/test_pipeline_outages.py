"""`celltwin run` rides out outages: the broker away for 60 s, the store away for 120 s.

Each test takes a service away while the pipeline is in the middle of a stream, brings it
back on the same port with the same data, and checks that the pipeline stayed up and that
the store then holds exactly what an uninterrupted run computes: every estimate once, with
the same values. They are slow by nature (the outages are the point), so one test each,
on a small fleet; `--max-outage` is checked on a short outage of its own.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from connectors.kafka_admin import ensure_topics
from infra.services import RunningService, pause_service, resume_service
from connectors.wire import MEAS_HEALTH, TOPIC_META, TOPIC_SAMPLES, TOPIC_TWIN, frame_rows
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    Fleet, assert_same_points, fresh_kafka, stored_estimates, kill, log_tail, parquet_points, pipeline_command, publish, read_topic,
    reference_run, simulated_fleet, start_pipeline, stored_points, unique_prefix, with_last_halves_open,
)

pytestmark = pytest.mark.integration

BROKER_OUTAGE_S = 60.0
STORE_OUTAGE_S = 120.0
HEALTH_INTERVAL_S = 5.0


def _wait_for(condition: Callable[[], bool], what: str, process, log: Path, timeout_s: float = 240.0) -> None:
    """Poll ``condition`` while the pipeline runs; fail with its log if it ends or stalls."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the pipeline exited ({process.returncode}) before {what}:\n{log_tail(log)}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s:\n{log_tail(log)}"
        time.sleep(0.2)


def _bring_back(service: RunningService, paused: float, store: str, made: Fleet, process,
                log: Path) -> tuple[float, float]:
    """Restart the paused service; wait for every estimate. How long it was away (from
    ``paused``, a monotonic time), and how long after its return everything was stored."""
    resume_service(service)
    back = time.monotonic()
    _wait_for(lambda: stored_estimates(store, made.prefix) >= made.sample_count,
              "every estimate stored after the outage", process, log)
    return back - paused, time.monotonic() - back


def _fleet(name: str, cycles: int = 2) -> Fleet:
    # Single-sample records: the source reads at most 1000 records per partition and poll,
    # so the stream lasts long enough to be interrupted in its middle.
    return simulated_fleet(unique_prefix(name), cells=6, cycles=cycles, frame_size=1)


def _pipeline(bootstrap: str, store: str, made: Fleet, tmp_path: Path, *extra: str) -> list[str]:
    config = made.write_config(tmp_path / "cells.toml", health_interval_s=HEALTH_INTERVAL_S)
    # Following the topic (no --exit-when-idle): a live pipeline, which has no end to reach.
    return pipeline_command(bootstrap, store, exit_when_idle=False, extra=["--config", str(config), *extra])


def _reference(made: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    reference = tmp_path / "reference"
    reference_run(made, reference, monkeypatch)
    # A pipeline that follows the topic cannot know its input ended: last halves stay open.
    return with_last_halves_open(parquet_points(reference, made.prefix))


def _outage_lines(log: Path) -> dict[str, list[str]]:
    """The log's outage lines, by what was unreachable."""
    lines: dict[str, list[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if " unreachable for " in line:
            lines.setdefault(line.split(" unreachable for ")[0], []).append(line)
    return lines


def _logged_once_per_interval(said: list[str], interval_s: float = 10.0) -> bool:
    """Whether each outage in these lines of one connection was logged at most once per
    interval of its own length (a producer may see the broker later and longer than the test)."""
    lasted = [float(re.search(r" unreachable for (\d+) s", line).group(1)) for line in said]
    episodes: list[list[float]] = []
    for was, now in zip([float("inf")] + lasted, lasted):
        if now < was:  # a new outage starts counting from 0 again
            episodes.append([])
        episodes[-1].append(now)
    return all(len(episode) <= episode[-1] / interval_s + 1 for episode in episodes)


def test_broker_away_for_a_minute_is_ridden_out(
    own_kafka: RunningService, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = own_kafka.address
    # Twelve cycles: the compiled twin reads two cycles' records faster than the store shows
    # the first of them, and the outage must fall in the stream's middle.
    made = _fleet("broker-outage", cycles=12)
    ensure_topics(bootstrap, {TOPIC_SAMPLES: 4, TOPIC_META: 1})
    publish(bootstrap, made.samples)
    log = tmp_path / "run.log"
    process = start_pipeline(_pipeline(bootstrap, victoria_url, made, tmp_path), log)
    try:
        _wait_for(lambda: stored_estimates(victoria_url, made.prefix) >= 0.1 * made.sample_count,
                  "10 % of the estimates stored", process, log)
        pause_service(own_kafka)
        paused = time.monotonic()
        at_pause = stored_estimates(victoria_url, made.prefix)
        time.sleep(BROKER_OUTAGE_S)
        assert process.poll() is None, f"the pipeline ended during the broker outage:\n{log_tail(log)}"
        away_s, resumed_s = _bring_back(own_kafka, paused, victoria_url, made, process, log)
        got = stored_points(victoria_url, made.prefix)
        print(f"broker away {away_s:.1f} s at {at_pause} of {made.sample_count} estimates; "
              f"all stored {resumed_s:.1f} s after it was back")
    finally:
        kill(process, signal.SIGINT)
    assert 0.1 * made.sample_count <= at_pause < made.sample_count, "the outage did not hit the stream's middle"
    assert_same_points(got, _reference(made, tmp_path, monkeypatch), f"broker away {away_s:.0f} s vs uninterrupted")
    lines = _outage_lines(log)
    # Logged once per 10 s interval, not once per attempt (every 5 s at most, and at every poll).
    assert lines and all(what.startswith("Kafka broker") for what in lines), log_tail(log)
    assert all(_logged_once_per_interval(said) for said in lines.values()), lines
    assert "is back after" in log.read_text(errors="replace"), log_tail(log)


def test_store_away_for_two_minutes_is_ridden_out(
    fresh_kafka: str, own_victoria: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = own_victoria.address
    made = _fleet("store-outage", cycles=12)  # as the broker's: the compiled twin reads two cycles too soon
    publish(fresh_kafka, made.samples)
    log = tmp_path / "run.log"
    process = start_pipeline(_pipeline(fresh_kafka, store, made, tmp_path), log)

    def twin_records() -> int:
        """Estimates on cell.twin so far (a record is a frame of them)."""
        return sum(len(frame_rows(r.value)) for r in read_topic(fresh_kafka, TOPIC_TWIN)
                   if r.key.startswith(made.prefix.encode()))

    try:
        _wait_for(lambda: stored_estimates(store, made.prefix) >= 0.1 * made.sample_count,
                  "10 % of the estimates stored", process, log)
        pause_service(own_victoria)
        paused = time.monotonic()
        time.sleep(10.0)  # what was on its way when the store went has gone out to Kafka by now
        early = twin_records()
        time.sleep(STORE_OUTAGE_S - 10.0)
        late = twin_records()
        assert process.poll() is None, f"the pipeline ended during the store outage:\n{log_tail(log)}"
        away_s, resumed_s = _bring_back(own_victoria, paused, store, made, process, log)
        got = stored_points(store, made.prefix)
        # The flow's totals report the outage at their first point after it.
        _wait_for(lambda: max(_health_stalls(store).get("all", [0.0])) >= STORE_OUTAGE_S - 2 * HEALTH_INTERVAL_S,
                  "the outage in the flow's health totals", process, log, timeout_s=60.0)
        stalls = _health_stalls(store)
        print(f"store away {away_s:.1f} s; cell.twin estimates {early} -> {late} during it; "
              f"all stored {resumed_s:.1f} s after it was back; stalled_s points "
              f"{ {worker: [v for v in values if v > 0] for worker, values in stalls.items()} }")
    finally:
        kill(process, signal.SIGINT)
    # Backpressure: while the store could not write, the pipeline read and emitted nothing.
    assert early == late < made.sample_count, (early, late, made.sample_count)
    assert_same_points(got, _reference(made, tmp_path, monkeypatch), f"store away {away_s:.0f} s vs uninterrupted")
    # The stall is in pipeline_health: from the sink at the times it happened, once per
    # interval (and in the flow's totals once it was over, waited for above).
    during = [value for value in stalls["influx-0"] if value > 0]
    assert max(during) >= STORE_OUTAGE_S - 2 * HEALTH_INTERVAL_S, stalls
    assert len(during) <= STORE_OUTAGE_S / HEALTH_INTERVAL_S + 2, stalls
    lines = _outage_lines(log)
    assert lines and all(what.startswith("InfluxDB") for what in lines), log_tail(log)
    assert all(len(said) <= STORE_OUTAGE_S / HEALTH_INTERVAL_S + 2 for said in lines.values()), lines


def _into_a_store_outage(bootstrap: str, store: RunningService, tmp_path: Path, name: str, *extra: str):
    """A pipeline (and its log) past its first stored estimate, with the store then taken
    away and more samples to write."""
    made = simulated_fleet(unique_prefix(name), cells=2, cycles=1)
    publish(bootstrap, made.samples)
    log = tmp_path / "run.log"
    process = start_pipeline(_pipeline(bootstrap, store.address, made, tmp_path, *extra), log)
    try:
        _wait_for(lambda: stored_estimates(store.address, made.prefix) > 0, "a first estimate stored", process, log)
        pause_service(store)
        publish(bootstrap, simulated_fleet(made.prefix, cells=2, cycles=1, seed=1).samples)
    except BaseException:
        kill(process, signal.SIGKILL)
        raise
    return process, log


def _error_lines(log: Path) -> tuple[str, list[str]]:
    text = log.read_text(errors="replace")
    return text, [line for line in text.splitlines() if line.startswith("error:")]


def test_max_outage_stops_the_run_with_one_line(
    fresh_kafka: str, own_victoria: RunningService, tmp_path: Path,
) -> None:
    process, log = _into_a_store_outage(fresh_kafka, own_victoria, tmp_path, "max-outage", "--max-outage", "3")
    try:
        code = process.wait(timeout=60)
    finally:
        kill(process, signal.SIGKILL)
    text, errors = _error_lines(log)
    assert code == 1, log_tail(log)
    assert len(errors) == 1 and re.search(r"InfluxDB .* unreachable for \d+ s.*3 s \(--max-outage\)", errors[0]), text
    assert "Traceback" not in text, text


def test_a_stop_during_a_store_outage_ends_the_run_and_says_what_was_not_written(
    fresh_kafka: str, own_victoria: RunningService, tmp_path: Path,
) -> None:
    process, log = _into_a_store_outage(fresh_kafka, own_victoria, tmp_path, "stop-outage")
    try:
        _wait_for(lambda: "InfluxDB" in "".join(_outage_lines(log)), "the outage noticed", process, log)
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)  # without a stop, it would wait for the store for ever
        took = time.monotonic() - asked
    finally:
        kill(process, signal.SIGKILL)
    text, errors = _error_lines(log)
    assert code == 1 and took < 20.0, (code, took, log_tail(log))
    assert len(errors) == 1 and re.search(r"stopped while InfluxDB .* was unreachable .* not written", errors[0]), text
    assert "Traceback" not in text, text


def _health_stalls(url: str) -> dict[str, list[float]]:
    """The ``stalled_s`` values stored in pipeline_health, by worker tag."""
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).close()
    query = urllib.parse.urlencode({"match[]": f'{{__name__="{MEAS_HEALTH}_stalled_s"}}'})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as response:
        series = [json.loads(line) for line in response.read().splitlines() if line]
    return {row["metric"]["worker"]: row["values"] for row in series}
