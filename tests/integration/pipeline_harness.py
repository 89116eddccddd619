"""What the pipeline's integration tests share: simulated input, `celltwin run` processes,
an in-process reference run, and reading back what was stored in Kafka, VictoriaMetrics
and the output folder.

Tests of one session share one broker and one store, and the dataflow's topic names are
fixed, so every test gives its cells an id prefix of its own and reads back only those.
Tests take the :func:`fresh_kafka` fixture: ``cell.samples`` is emptied before and after
each, so runs that start at the earliest offset see only what that test produced.

The reference for "the same results" is the embedded dataflow (`build_flow` without
Kafka) fed the very samples that went to Kafka: the simulator source with the same
cells, seed and block size, so the values are bit for bit those of the JSON frames.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main
from kafka import KafkaConsumer, TopicPartition

from connectors.config import load_config
from connectors.kafka_admin import empty_topic, ensure_topics
from connectors.sim_producer import (
    BLOCK_TICKS, KeyValue, Publisher, SimCell, encode_block, fleet, meta_messages, simulation,
)
from connectors.wire import (
    MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, OUT_ALERTS, OUT_CYCLES, OUT_ESTIMATES, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET,
    TOPIC_ALERTS, TOPIC_DEADLETTER, TOPIC_META, TOPIC_SAMPLES, TOPIC_TWIN, CellMeta,
)
from pipeline import dataflow

__all__ = [
    "REPO",
    "log_tail",
    "T0",
    "SAMPLE_PARTITIONS",
    "Fleet",
    "unique_prefix",
    "simulated_fleet",
    "fresh_kafka",
    "publish",
    "read_topic",
    "topic_ends",
    "stuck_report",
    "pipeline_command",
    "start_pipeline",
    "run_pipeline",
    "kill",
    "reference_run",
    "parquet_rows",
    "parquet_points",
    "stored_estimates",
    "stored_points",
    "stored_series",
    "assert_same_points",
    "timestamps_by_cell",
    "with_last_halves_open",
]

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the simulator's default: runs are comparable
SAMPLE_PARTITIONS = 4
_INFLUX_ARGS = ("--influx-token", "test-token", "--influx-org", "lab", "--influx-bucket", "celltwin")

# Per measurement: the output file and the tags that are columns of it.
_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    MEAS_STATE: (OUT_ESTIMATES, (TAG_CELL, TAG_PRESET)),
    MEAS_CYCLE: (OUT_CYCLES, (TAG_CELL, TAG_PRESET, TAG_HALF)),
    MEAS_ALERT: (OUT_ALERTS, (TAG_CELL, TAG_PRESET, TAG_KIND)),
}
# Line-protocol string fields: VictoriaMetrics keeps the series but stores 0 as the value.
_STRING_SERIES = {f"{MEAS_ALERT}_severity", f"{MEAS_ALERT}_message"}

# One stored value: (series name, sorted tag pairs, timestamp in ms) -> value.
PointKey = tuple[str, tuple[tuple[str, str], ...], int]


@dataclass(frozen=True)
class Fleet:
    """Simulated cells and the exact records that describe and sample them."""

    prefix: str
    cells: list[SimCell]
    cycles: int
    dt: float
    seed: int
    meta: list[KeyValue]  # cell.meta records
    samples: list[KeyValue]  # cell.samples records in send order
    sample_count: int
    rest_s: float = 0.0  # rest after each half

    @property
    def ids(self) -> list[str]:
        return [c.cell for c in self.cells]

    def metas(self) -> list[CellMeta]:
        return [CellMeta(cell=c.cell, mass_mg=c.mass_mg, preset=c.preset, composition=c.composition,
                         c_rate=c.c_rate) for c in self.cells]

    def make_simulation(self) -> Any:
        return simulation(self.cells, self.cycles, dt=self.dt, t0=T0, seed=self.seed, rest_s=self.rest_s)

    def write_config(self, path: Path, leave_out: Iterable[str] = (), **settings: float | bool) -> Path:
        """A `celltwin run --config` file: top-level ``settings``, a ``[cells.<id>]`` per cell
        but those of ``leave_out``."""
        lines = [f"{name} = {str(value).lower() if isinstance(value, bool) else repr(value)}"
                 for name, value in settings.items()]
        for meta in (m for m in self.metas() if m.cell not in set(leave_out)):
            material = f'preset = "{meta.preset}"' if meta.preset else f'composition = "{meta.composition}"'
            lines += [f'[cells."{meta.cell}"]', material, f"mass_mg = {meta.mass_mg!r}", f"c_rate = {meta.c_rate!r}", ""]
        path.write_text("\n".join(lines))
        return path


def unique_prefix(name: str) -> str:
    """Cell ids of one test: ``{name}-{random}-`` then the cell number."""
    return f"{name}-{uuid.uuid4().hex[:6]}-"


def simulated_fleet(
    prefix: str, *, cells: int = 20, cycles: int = 2, c_rate: float = 1.0, dt: float = 10.0,
    frame_size: int = 100, preset: str = "mixed", seed: int = 0, rest_s: float = 0.0,
) -> Fleet:
    """The records `celltwin produce` sends for these options (same functions, same bytes)."""
    members = fleet(cells, preset, c_rate=c_rate, seed=seed, prefix=prefix)
    made = Fleet(prefix, members, cycles, dt, seed, meta_messages(members), [], 0, rest_s)
    samples: list[KeyValue] = []
    count = 0
    for block in made.make_simulation().blocks(block_ticks=BLOCK_TICKS):
        count += int(block.valid.sum())
        for _, _, messages in encode_block(block, made.ids, frame_size):
            samples.extend(messages)
    return Fleet(prefix, members, cycles, dt, seed, made.meta, samples, count, rest_s)


@pytest.fixture
def fresh_kafka(kafka_bootstrap: str) -> Iterator[str]:
    """The broker, with the pipeline's topics created and ``cell.samples`` empty; emptied
    again afterwards, so later runs from the earliest offset do not read this test's data."""
    _prepare_topics(kafka_bootstrap)
    yield kafka_bootstrap
    _prepare_topics(kafka_bootstrap)


def _prepare_topics(bootstrap: str) -> None:
    # Create what is missing (existing topics are kept), then move the start of every
    # cell.samples partition to its end.
    ensure_topics(bootstrap, {TOPIC_SAMPLES: SAMPLE_PARTITIONS, TOPIC_META: 1, TOPIC_DEADLETTER: 1,
                              TOPIC_TWIN: SAMPLE_PARTITIONS, TOPIC_ALERTS: 1})
    empty_topic(bootstrap, TOPIC_SAMPLES)


def publish(bootstrap: str, records: Iterable[KeyValue], topic: str = TOPIC_SAMPLES,
            **producer_config: Any) -> None:
    """Send and wait until every record is acknowledged."""
    with Publisher(bootstrap, producer_config=producer_config) as publisher:
        publisher.send(topic, records)
        publisher.flush()


def topic_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``: where records written from now on start."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, since: Mapping[int, int] | None = None,
               timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from its start (or the offsets ``since``, per partition) up to
    its current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        for tp in tps:
            if since is not None and tp.partition in since:
                consumer.seek(tp, since[tp.partition])
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return records
    finally:
        consumer.close()


def pipeline_command(
    bootstrap: str, victoria_url: str | None, out: Path | None = None, *, recovery_dir: Path | None = None,
    workers: int = 1, process_id: int | None = None, addresses: Sequence[str] = (),
    exit_when_idle: bool = True, extra: Sequence[str] = (),
) -> list[str]:
    """The `celltwin run` command line of a Kafka-mode run."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--kafka", bootstrap, "--workers", str(workers),
           "--no-report"]
    if victoria_url is not None:
        cmd += ["--influx-url", victoria_url, *_INFLUX_ARGS]
    if out is not None:
        cmd += ["--out", str(out)]
    if recovery_dir is not None:
        cmd += ["--recovery-dir", str(recovery_dir)]
    if process_id is not None:
        cmd += ["-i", str(process_id), "-a", ";".join(addresses)]
    if exit_when_idle:
        cmd.append("--exit-when-idle")
    return cmd + list(extra)


def start_pipeline(cmd: Sequence[str], log: Path) -> subprocess.Popen:
    """Start a run in its own process group, so a kill reaches every process it made."""
    # CELLTWIN_* settings of the calling shell must not leak into the run under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLTWIN_")}
    with log.open("ab") as handle:
        return subprocess.Popen(list(cmd), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def run_pipeline(cmd: Sequence[str], log: Path, timeout_s: float = 120.0) -> None:
    """Run to its end; fail with the end of its log if it fails or hangs."""
    process = start_pipeline(cmd, log)
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(process)
        raise AssertionError(f"celltwin run did not end within {timeout_s:.0f} s:\n{log_tail(log)}")
    assert code == 0, f"celltwin run exited with {code}:\n{log_tail(log)}"


def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the run's process group and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended between poll and kill
            os.killpg(process.pid, sig)
    process.wait(timeout=30)


def log_tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def stuck_report(process: subprocess.Popen, log: Path, chars: int = 20000) -> str:
    """The log of a run that made no progress, ending with every thread's stack (the CLI
    prints them on SIGUSR1): what it was waiting for."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGUSR1)
        time.sleep(2.0)
    return log_tail(log, chars)


def reference_run(made: Fleet, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded dataflow, in this process, on the samples of ``made``: the reference.

    The embedded flow's simulator source is given this fleet's cells and simulation, with
    one frame per simulator block of :data:`BLOCK_TICKS` ticks (the producer's block size),
    so it sees exactly the samples that went to Kafka, framed differently.
    """
    monkeypatch.setattr(dataflow, "simulated_fleet",
                        lambda _cfg: (made.metas(), partial(Fleet.make_simulation, made)))
    cfg = load_config(None, env={}, flags={"out": str(out), "simulator.frame_samples": BLOCK_TICKS})
    run_main(dataflow.build_flow(cfg))


def parquet_rows(out: Path, measurement: str, prefix: str) -> list[tuple[Any, ...]]:
    """The rows of a measurement's Parquet file for cells of ``prefix``, sorted; NaN as None."""
    rows = pq.read_table(out / _TABLES[measurement][0]).to_pylist()
    picked = [
        tuple((k, None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items())
        for row in rows if str(row[TAG_CELL]).startswith(prefix)
    ]
    return sorted(picked, key=repr)


def parquet_points(out: Path, prefix: str) -> dict[PointKey, float]:
    """The output folder's tables as the points InfluxDB gets from them (numeric fields)."""
    points: dict[PointKey, float] = {}
    for measurement, (file, tags) in _TABLES.items():
        for row in pq.read_table(out / file).to_pylist():
            if not str(row[TAG_CELL]).startswith(prefix):
                continue
            labels = tuple(sorted((t, str(row[t])) for t in tags))
            stamp = round(float(row["time"]) * 1000)
            for name, value in row.items():
                if name in tags or name == "time" or value is None or isinstance(value, str):
                    continue
                if math.isfinite(float(value)):
                    points[(f"{measurement}_{name}", labels, stamp)] = float(value)
    return points


def _export(url: str, match: str) -> list[dict[str, Any]]:
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).close()
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=60) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


def stored_estimates(url: str, prefix: str) -> int:
    """How many twin_state points of the cells of ``prefix`` the store holds now."""
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).close()
    match = f'{{__name__="{MEAS_STATE}_soc",{TAG_CELL}=~"{_escape(prefix)}.*"}}'
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as response:
        return sum(len(json.loads(line)["timestamps"]) for line in response.read().splitlines() if line)


def stored_points(url: str, prefix: str, settle_s: float = 1.0, timeout_s: float = 30.0) -> dict[PointKey, float]:
    """Every stored numeric sample of the cells of ``prefix`` (twin_state, cycle_summary,
    twin_alert), read until two reads ``settle_s`` apart agree (ingestion is asynchronous).
    Fails if one series holds several samples at one timestamp (the store's dedup failed).
    """
    names = "|".join(_TABLES)
    match = f'{{__name__=~"({names})_.+",{TAG_CELL}=~"{_escape(prefix)}.*"}}'
    deadline = time.monotonic() + timeout_s
    previous: dict[PointKey, float] | None = None
    while True:
        current = _points(_export(url, match))
        if current and current == previous:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"stored points of {prefix}* did not settle within {timeout_s} s")
        previous = current
        time.sleep(settle_s)


def stored_series(url: str, measurement: str) -> list[dict[str, str]]:
    """Labels (``__name__`` included) of every series of ``measurement``."""
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).close()
    # An explicit start: by default the series API looks at the last day only, and start=0
    # counts as none. Simulated sample times are in 2026.
    query = urllib.parse.urlencode({"match[]": f'{{__name__=~"{measurement}_.+"}}',
                                    "start": "2000-01-01T00:00:00Z"})
    with urllib.request.urlopen(f"{url}/api/v1/series?{query}", timeout=30) as response:
        return json.loads(response.read())["data"]


def _escape(text: str) -> str:
    # A regex literal inside a PromQL string: backslashes are doubled once for each.
    return "".join(c if c.isalnum() or c in "-_" else "\\\\" + c for c in text)


def _points(rows: Iterable[Mapping[str, Any]]) -> dict[PointKey, float]:
    points: dict[PointKey, float] = {}
    for row in rows:
        labels = dict(row["metric"])
        name = labels.pop("__name__")
        if name in _STRING_SERIES:
            continue
        tags = tuple(sorted(labels.items()))
        stamps = row["timestamps"]
        assert len(stamps) == len(set(stamps)), f"{name} {tags}: several samples at one timestamp"
        for stamp, value in zip(stamps, row["values"]):
            points[(name, tags, int(stamp))] = float(value)
    return points


def assert_same_points(got: Mapping[PointKey, float], want: Mapping[PointKey, float], what: str,
                       digits: float = 1e-9) -> None:
    """Same keys, and the same values to ``digits`` of each series' largest magnitude.

    VictoriaMetrics stores a block of a series as integers with one decimal exponent, so a
    value keeps about 12 significant digits of the largest value near it, not of its own.
    """
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, (
        f"{what}: {len(missing)} points missing (e.g. {sorted(missing)[:3]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    scale: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for (name, tags, _), value in want.items():
        scale[(name, tags)] = max(scale.get((name, tags), 0.0), abs(value))
    differ = [k for k, value in want.items()
              if not math.isclose(got[k], value, rel_tol=digits, abs_tol=digits * scale[k[:2]])]
    assert not differ, (f"{what}: {len(differ)} of {len(want)} values differ, e.g. "
                        + ", ".join(f"{k}: {got[k]!r} != {want[k]!r}" for k in differ[:3]))


def with_last_halves_open(points: Mapping[PointKey, float]) -> dict[PointKey, float]:
    """``points`` of a run that closed each cell's last half-cycle at the end of its input,
    as a run that may still go on leaves them: without the cycle summaries and alerts
    stamped at the cell's last sample (a half closes only when the next one starts, and
    runs with recovery or following the topic cannot know their input has ended)."""
    last: dict[str, int] = {}
    for name, tags, stamp in points:
        if name == f"{MEAS_STATE}_soc":
            cell = dict(tags)[TAG_CELL]
            last[cell] = max(last.get(cell, stamp), stamp)
    closing = (f"{MEAS_CYCLE}_", f"{MEAS_ALERT}_")
    return {key: value for key, value in points.items()
            if not (key[0].startswith(closing) and key[2] == last[dict(key[1])[TAG_CELL]])}


def timestamps_by_cell(points: Mapping[PointKey, float], series: str) -> Counter[str]:
    """How many timestamps ``series`` has per cell."""
    return Counter(dict(tags)[TAG_CELL] for name, tags, _ in points if name == series)
