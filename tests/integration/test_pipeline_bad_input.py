"""Malformed and hostile records among good ones, on cell.samples and on cell.meta: each bad
one is dead-lettered with its reason, every good sample is processed, the running pipeline
never stops, and a later start is not stopped by the bad metadata it re-reads either.

GARBAGE = 10^5 seeded random records (about 120 MB on the topic, a few minutes); the same
load, and more, in benchmarks/hostile_bench.py, which prints records/s."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from connectors.kafka_admin import empty_topic
from connectors.wire import (
    MAX_DEADLETTER_BYTES, MAX_DEADLETTER_KEY_BYTES, OUT_DEADLETTER, OUT_UNDELIVERED, TOPIC_DEADLETTER, TOPIC_META,
    TOPIC_SAMPLES,
)
from tests.integration.hostile_records import garbage, interleave, named_metas, named_samples, send
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, T0, assert_same_points, kill, log_tail, parquet_points, pipeline_command, read_topic,
    reference_run, simulated_fleet, start_pipeline, stored_points, stuck_report, timestamps_by_cell, topic_ends,
    unique_prefix,
    with_last_halves_open,
)

pytestmark = pytest.mark.integration

MAX_RECORD = 4 << 20  # the test topic's limit, so that a record over the pipeline's 1 MiB arrives
GARBAGE = 100_000  # seeded random bad records
# cell.deadletter's limit in this test: the largest dead letters are refused and must land in
# the output folder's file instead, the rest must still reach the topic.
DEADLETTER_LIMIT = 128 * 1024


def _frame(cell: str, t: list, v: list, i: list, **extra: object) -> dict:
    return {"cell": cell, "t": t, "v": v, "i": i, **extra}


def _bad_records(prefix: str, good: str) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected reason) of malformed records; ``good`` is a known cell."""
    key = good.encode()
    ok_t = [T0 + 1.0, T0 + 2.0]

    def js(body: object) -> bytes:
        return json.dumps(body).encode()

    return [
        (key, b"{not json", "not_json"),
        (key, b"\xff\xfe\x00binary", "not_json"),
        (key, None, "not_json"),
        (key, js([1, 2, 3]), "not_object"),
        (key, js({"t": ok_t, "v": [0.5, 0.5], "i": [0.0, 0.0]}), "missing_field"),
        (key, js({"cell": good, "t": ok_t, "v": [0.5, 0.5]}), "missing_field"),
        (key, b'{"cell": "%s", "t": [%r, %r], "v": [0.5, NaN], "i": [0.0, 0.0]}' % (key, *ok_t), "not_finite"),
        (key, js(_frame(good, ok_t, ["0.5", "0.5"], [0.0, 0.0])), "wrong_type"),
        (key, js({"cell": good, "t": "soon", "v": 0.5, "i": 0.0}), "wrong_type"),
        (key, js(_frame(good, [T0 + 2.0, T0 + 1.0], [0.5, 0.5], [0.0, 0.0])), "time_order"),
        (key, js(_frame(good, [t * 1000 for t in ok_t], [0.5, 0.5], [0.0, 0.0])), "time_range"),
        (key, js(_frame(good, ok_t, [0.5, 1e6], [0.0, 0.0])), "voltage_range"),
        (key, js(_frame(good, ok_t, [0.5, 0.5], [0.0, -5e3])), "current_range"),
        (key, js(_frame(good, ok_t, [0.5, 0.5], [0.0, 0.0], temp_c=[130.0, 9e3])), "temperature_range"),
        (key, js(_frame(good, ok_t, [0.5], [0.0, 0.0])), "length_mismatch"),
        (key, js(_frame(f"{prefix}other", ok_t, [0.5, 0.5], [0.0, 0.0])), "key_mismatch"),
        (f"{prefix}ghost".encode(), js(_frame(f"{prefix}ghost", ok_t, [0.5, 0.5], [0.0, 0.0])), "unknown_cell"),
        (key, js(_frame(good, ok_t, [0.5, 0.5], [0.0, 0.0], note="x" * (1 << 20))), "oversized"),
    ]


def _dead_letters(bootstrap: str, out: Path, since: dict[int, int]) -> list[dict]:
    """Every dead letter on the topic from the offsets ``since``, each within the size limits, and
    in the output folder's file of those the broker refused (larger than the topic's limit)."""
    records = read_topic(bootstrap, TOPIC_DEADLETTER, since, timeout_s=300)
    assert all(len(r.value) <= MAX_DEADLETTER_BYTES and len(r.key or b"") <= MAX_DEADLETTER_KEY_BYTES for r in records)
    refused = [json.loads(line) for line in (out / OUT_UNDELIVERED).read_text().splitlines()] \
        if (out / OUT_UNDELIVERED).exists() else []
    assert all(len(r["value"]) > DEADLETTER_LIMIT - 1024 for r in refused)
    return [json.loads(r.value) for r in records] + [json.loads(r["value"]) for r in refused]


@pytest.fixture
def small_deadletter_topic(fresh_kafka: str) -> Iterator[str]:
    """The broker, with cell.deadletter's max.message.bytes at DEADLETTER_LIMIT for this test;
    emptied afterwards, so that later tests do not read this test's 10^5 dead letters."""
    _limit_records(fresh_kafka, TOPIC_DEADLETTER, DEADLETTER_LIMIT)
    try:
        yield fresh_kafka
    finally:
        _limit_records(fresh_kafka, TOPIC_DEADLETTER, 1048588)  # the broker's default
        empty_topic(fresh_kafka, TOPIC_DEADLETTER)


def _limit_records(bootstrap: str, topic: str, limit: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)})])
    finally:
        admin.close()


def _undelivered(out: Path) -> int:
    """Dead letters the topic refused, set aside in the output folder's file."""
    path = out / OUT_UNDELIVERED
    return sum(1 for _ in path.open("rb")) if path.exists() else 0


def _by_position_all(letters: list[dict], topic: str) -> list[tuple[int, int]]:
    """(partition, offset) of the record of ``topic`` behind each dead letter, repeats kept."""
    return [(d["partition"], d["offset"]) for d in letters if d["topic"] == topic]


def _by_position(letters: list[dict], topic: str) -> dict[tuple[int, int], dict]:
    return {(d["partition"], d["offset"]): d for d in letters if d["topic"] == topic}


def test_bad_records_are_dead_lettered_and_good_ones_processed(
    small_deadletter_topic: str, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = small_deadletter_topic
    # Cell ids with line protocol's separators and a non-ASCII letter: stored under exactly these names.
    prefix = unique_prefix("bad") + "x ,=ü-"
    made = simulated_fleet(prefix, cells=4, cycles=1)
    singles = simulated_fleet(prefix, cells=4, cycles=1, frame_size=1)
    # Half the cells send frames, the other half single samples (the wire format allows both).
    framed = set(made.ids[:2])
    good = ([r for r in made.samples if r[0].decode() in framed]
            + [r for r in singles.samples if r[0].decode() not in framed])
    first, on_topic = made.ids[0], made.ids[-1]
    bad = _bad_records(prefix, first) + named_samples(first, T0) + garbage(first, T0, GARBAGE, seed=10)
    # A frame of a known cell that goes back before what it already sent: last, so that
    # the cell's good samples were accepted first (same key, same partition, in order).
    stale = (first.encode(), json.dumps(_frame(first, [T0 + 5.0, T0 + 15.0], [0.5, 0.5], [0.0, 0.0])).encode(),
             "stale_time")
    records = interleave(good, bad) + [stale]
    # One cell's metadata is not in the config: on cell.meta, bad records for its key come
    # first, then the corrected one, which must take effect.
    corrected = next((key, value, None) for key, value in made.meta if key == on_topic.encode())
    metas = named_metas(on_topic) + [corrected]

    _limit_records(bootstrap, TOPIC_SAMPLES, MAX_RECORD)
    out, log = tmp_path / "out", tmp_path / "run.log"
    # Frames of a cell without metadata wait meta_wait_s for it before they are refused.
    config = made.write_config(tmp_path / "cells.toml", leave_out=[on_topic], meta_wait_s=10.0)
    command = pipeline_command(bootstrap, victoria_url, out, exit_when_idle=False, extra=["--config", str(config)])
    since = topic_ends(bootstrap, TOPIC_DEADLETTER)
    expected_meta = send(bootstrap, TOPIC_META, metas, MAX_RECORD)
    process = start_pipeline(command, log)
    try:
        expected = send(bootstrap, TOPIC_SAMPLES, records, MAX_RECORD)
        deadline = time.monotonic() + 900
        samples, meta, estimates = {}, {}, {}
        while True:
            # Counting is cheap, reading 10^5 dead letters is not: read once they are all there.
            written = sum(topic_ends(bootstrap, TOPIC_DEADLETTER).values()) - sum(since.values())
            if written + _undelivered(out) >= len(expected) + len(expected_meta):
                letters = _dead_letters(bootstrap, out, since)
                samples, meta = _by_position(letters, TOPIC_SAMPLES), _by_position(letters, TOPIC_META)
                if set(expected) <= set(samples) and set(expected_meta) <= set(meta):
                    estimates = timestamps_by_cell(stored_points(victoria_url, prefix), "twin_state_soc")
                    if sum(estimates.values()) >= made.sample_count:
                        break
            assert process.poll() is None, f"the pipeline stopped:\n{log_tail(log)}"
            assert time.monotonic() < deadline, (
                f"{written} dead letters on the topic, {_undelivered(out)} in the file; "
                f"{len(set(expected) & set(samples))} of {len(expected)} of samples, "
                f"{len(set(expected_meta) & set(meta))} of {len(expected_meta)} of metadata, "
                f"{sum(estimates.values())} of {made.sample_count} estimates:\n{stuck_report(process, log)}")
            time.sleep(5.0)
        assert process.poll() is None, f"the pipeline stopped:\n{log_tail(log)}"
    finally:
        kill(process)

    assert {position: samples[position]["reason"] for position in expected} == expected
    assert {position: meta[position]["reason"] for position in expected_meta} == expected_meta
    assert all(samples[p]["error"] for p in expected) and all(meta[p]["error"] for p in expected_meta)
    # The output folder's dead letters (flushed per batch) say the same.
    local = [json.loads(line) for line in (out / OUT_DEADLETTER).read_text().splitlines()]
    assert {p: d["reason"] for p, d in _by_position(local, TOPIC_SAMPLES).items() if p in expected} == expected
    assert (out / OUT_UNDELIVERED).exists()  # the largest ones were refused by the topic, and the run went on

    reference = tmp_path / "reference"
    reference_run(made, reference, monkeypatch)
    # The run follows the topic, so each cell's last half is still open.
    assert_same_points(stored_points(victoria_url, prefix), with_last_halves_open(parquet_points(reference, prefix)),
                       "good samples among bad ones vs clean run")

    # A later start re-reads cell.meta from its start: the bad records do not stop it, and
    # their dead letters, sent by the run that first read them, are not sent again.
    again = start_pipeline(command, tmp_path / "again.log")
    try:
        time.sleep(20.0)
        assert again.poll() is None, f"the restarted pipeline stopped:\n{log_tail(tmp_path / 'again.log')}"
        seen = Counter(p for p in _by_position_all(_dead_letters(bootstrap, out, since), TOPIC_META)
                       if p in expected_meta)
        assert all(seen[p] == 1 for p in expected_meta), seen
    finally:
        kill(again)
