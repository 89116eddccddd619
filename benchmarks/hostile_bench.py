"""Hostile input at scale: records/s of the pipeline when most of what it reads is bad.
Prints figures; exits non-zero if a record was lost or the pipeline fell over.

    python benchmarks/hostile_bench.py [--garbage 100000] [--cells 4] [--seed 10]

Starts its own Kafka broker and VictoriaMetrics (infra/services.py), fills `cell.samples`
with the good frames of a small simulated fleet (half as frames, half as single samples)
interleaved with every named hostile record of tests/integration/hostile_records.py and
``--garbage`` seeded random ones, and `cell.meta` with bad metadata before the corrected
record of one cell. Then `celltwin run --exit-when-idle` reads it all, timed from process
start to exit. Checked afterwards: every bad record is a dead letter with the reason it was
made for, nothing went to the undeliverable file, and every good sample has its estimate in
the store. Also printed: the decoder alone, in this process, on the same records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

from connectors.kafka_admin import ensure_topics  # noqa: E402
from connectors.wire import KafkaMessage  # noqa: E402
from infra.services import start_kafka, start_victoria  # noqa: E402
from connectors.decode import decode_message  # noqa: E402
from connectors.wire import OUT_UNDELIVERED, TOPIC_DEADLETTER, TOPIC_META, TOPIC_SAMPLES  # noqa: E402
from pipeline.dataflow import TOPIC_PARTITIONS  # noqa: E402
from tests.integration.hostile_records import (  # noqa: E402
    Hostile, garbage, interleave, named_metas, named_samples, send,
)
from tests.integration.pipeline_harness import (  # noqa: E402
    T0, pipeline_command, read_topic, simulated_fleet, stored_points, timestamps_by_cell,
)


def _decoder_alone(records: list[Hostile]) -> float:
    """Records/s of decode + the dead letter's JSON, in this process."""
    started = time.perf_counter()
    for n, (key, value, _) in enumerate(records):
        decoded = decode_message(KafkaMessage(TOPIC_SAMPLES, 0, n, key, value, 0))
        if hasattr(decoded, "to_json"):
            decoded.to_json()
    return len(records) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--garbage", type=int, default=100_000, help="seeded random bad records")
    parser.add_argument("--cells", type=int, default=4, help="simulated good cells (one cycle each)")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()

    prefix = "hostile-"
    made = simulated_fleet(prefix, cells=args.cells, cycles=1)
    singles = simulated_fleet(prefix, cells=args.cells, cycles=1, frame_size=1)
    framed = set(made.ids[: args.cells // 2])
    good = ([r for r in made.samples if r[0].decode() in framed]
            + [r for r in singles.samples if r[0].decode() not in framed])
    first, on_topic = made.ids[0], made.ids[-1]
    bad = named_samples(first, T0) + garbage(first, T0, args.garbage, seed=args.seed)
    records = interleave(good, bad)
    metas = named_metas(on_topic) + [next((k, v, None) for k, v in made.meta if k == on_topic.encode())]
    kinds = Counter(reason for _, _, reason in bad)
    print(f"input: {len(records):,} records on {TOPIC_SAMPLES} ({len(bad):,} bad of {len(kinds)} reasons, "
          f"{len(good):,} good with {made.sample_count:,} samples of {args.cells} cells), "
          f"{sum(len(k or b'') + len(v or b'') for k, v, _ in records) / 1e6:,.0f} MB; "
          f"{len(metas)} records on {TOPIC_META}")
    print(f"decoder alone: {_decoder_alone(records):,.0f} records/s")

    kafka, victoria = start_kafka(), start_victoria()
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as folder:
        work = Path(folder)
        try:
            ensure_topics(kafka.address, TOPIC_PARTITIONS)
            expected_meta = send(kafka.address, TOPIC_META, metas)
            expected = send(kafka.address, TOPIC_SAMPLES, records)
            config = made.write_config(work / "cells.toml", leave_out=[on_topic])
            command = pipeline_command(kafka.address, victoria.address, work / "out", extra=["--config", str(config)])
            started = time.monotonic()
            with (work / "run.log").open("wb") as log:
                code = subprocess.run(command, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT).returncode
            took = time.monotonic() - started
            if code != 0:
                raise SystemExit(f"the pipeline exited with {code}:\n{(work / 'run.log').read_text()[-3000:]}")
            letters = [json.loads(r.value) for r in read_topic(kafka.address, TOPIC_DEADLETTER)]
            by_position = {(d["topic"], d["partition"], d["offset"]): d["reason"] for d in letters}
            wrong = sum(by_position.get((TOPIC_SAMPLES, *p)) != r for p, r in expected.items())
            wrong += sum(by_position.get((TOPIC_META, *p)) != r for p, r in expected_meta.items())
            estimates = sum(timestamps_by_cell(stored_points(victoria.address, prefix), "twin_state_soc").values())
            undelivered = (work / "out" / OUT_UNDELIVERED).exists()
        finally:
            kafka.stop()
            victoria.stop()
    print(f"pipeline: {took:.1f} s from start to exit: {len(records) / took:,.0f} records/s, "
          f"{len(bad) / took:,.0f} dead letters/s")
    print(f"dead letters: {len(letters):,}; bad records without their reason: {wrong}; "
          f"undeliverable file: {'yes' if undelivered else 'no'}; "
          f"estimates stored: {estimates:,} of {made.sample_count:,} samples")
    if wrong or undelivered or estimates != made.sample_count:
        raise SystemExit("FAILED: a bad record lacks its dead letter, or a good sample its estimate")


if __name__ == "__main__":
    main()
