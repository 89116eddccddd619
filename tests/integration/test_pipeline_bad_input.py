"""Malformed records among good ones: each bad one is dead-lettered with its reason, every
good sample is processed, and the running pipeline never stops."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from pipeline.contracts import OUT_DEADLETTER, TOPIC_DEADLETTER, TOPIC_SAMPLES
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    fresh_kafka, T0, assert_same_points, kill, log_tail, parquet_points, pipeline_command, read_topic,
    reference_run, simulated_fleet, start_pipeline, stored_points, timestamps_by_cell, unique_prefix,
    with_last_halves_open,
)

pytestmark = pytest.mark.integration

MAX_RECORD = 4 << 20  # the test topic's limit, so that a record over the pipeline's 1 MiB arrives


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


def test_bad_records_are_dead_lettered_and_good_ones_processed(
    fresh_kafka: str, victoria_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique_prefix("bad")
    made = simulated_fleet(prefix, cells=4, cycles=1)
    singles = simulated_fleet(prefix, cells=4, cycles=1, frame_size=1)
    # Half the cells send frames, the other half single samples (the wire format allows both).
    framed = set(made.ids[:2])
    good = ([r for r in made.samples if r[0].decode() in framed]
            + [r for r in singles.samples if r[0].decode() not in framed])
    first = made.ids[0]
    bad = _bad_records(prefix, first)
    # A frame of a known cell that goes back before what it already sent: last, so that
    # the cell's good samples were accepted first (same key, same partition, in order).
    stale = (first.encode(), json.dumps(_frame(first, [T0 + 5.0, T0 + 15.0], [0.5, 0.5], [0.0, 0.0])).encode(),
             "stale_time")
    step = len(good) // len(bad)
    records = [(k, v, None) for k, v in good]
    for n, item in enumerate(bad):
        records.insert(n * (step + 1), item)
    records.append(stale)

    admin = KafkaAdminClient(bootstrap_servers=fresh_kafka)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC_SAMPLES,
                                            configs={"max.message.bytes": str(MAX_RECORD)})])
    finally:
        admin.close()

    out, log = tmp_path / "out", tmp_path / "run.log"
    # Frames of a cell without metadata wait meta_wait_s for it before they are refused.
    config = made.write_config(tmp_path / "cells.toml", meta_wait_s=2.0)
    process = start_pipeline(pipeline_command(fresh_kafka, victoria_url, out, exit_when_idle=False,
                                              extra=["--config", str(config)]), log)
    try:
        producer = KafkaProducer(bootstrap_servers=fresh_kafka, acks="all", max_request_size=MAX_RECORD)
        try:
            futures = [(producer.send(TOPIC_SAMPLES, key=k, value=v), reason) for k, v, reason in records]
            producer.flush()
            expected = {}
            for future, reason in futures:
                metadata = future.get(timeout=30)
                if reason is not None:
                    expected[(metadata.partition, metadata.offset)] = reason
        finally:
            producer.close()

        deadline = time.monotonic() + 120
        while True:
            letters = {(d["partition"], d["offset"]): d for d in
                       (json.loads(r.value) for r in read_topic(fresh_kafka, TOPIC_DEADLETTER))
                       if d["topic"] == TOPIC_SAMPLES}
            estimates = timestamps_by_cell(stored_points(victoria_url, prefix), "twin_state_soc") \
                if set(expected) <= set(letters) else {}
            if sum(estimates.values()) >= made.sample_count:
                break
            assert process.poll() is None, f"the pipeline stopped:\n{log_tail(log)}"
            assert time.monotonic() < deadline, (
                f"{len(set(expected) & set(letters))} of {len(expected)} dead letters, "
                f"{sum(estimates.values())} of {made.sample_count} estimates:\n{log_tail(log)}")
            time.sleep(1.0)
        assert process.poll() is None, f"the pipeline stopped:\n{log_tail(log)}"
    finally:
        kill(process)

    got = {position: letters[position]["reason"] for position in expected}
    assert got == expected
    assert all(letters[p]["error"] for p in expected)  # and a sentence for a person
    # The output folder's dead letters (flushed per batch) say the same.
    local = [json.loads(line) for line in (out / OUT_DEADLETTER).read_text().splitlines()]
    assert {(d["partition"], d["offset"]): d["reason"] for d in local if d["topic"] == TOPIC_SAMPLES
            and (d["partition"], d["offset"]) in expected} == expected

    reference = tmp_path / "reference"
    reference_run(made, reference, monkeypatch)
    # The run follows the topic, so each cell's last half is still open.
    assert_same_points(stored_points(victoria_url, prefix), with_last_halves_open(parquet_points(reference, prefix)),
                       "good samples among bad ones vs clean run")
