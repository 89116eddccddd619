"""Local output files of a run: Parquet tables of the twin's points, dead letters as JSONL.

The Parquet layout is the one `pipeline.report` reads: per measurement a file named in
contracts, columns `time` (epoch seconds), the measurement's tags, then its fields in
contract order. Files are created when the flow starts (an empty alerts table is a
result too) and row groups are written as points arrive; Parquet writes its footer on
close, which bytewax calls when a finite run ends. A run stopped by a signal ends
without closing its sinks, and a Parquet file without its footer cannot be read: the
runner then calls `close_open_files` (`pipeline.dataflow.run_flow` does), so what the
run had processed stays readable. A process killed outright (SIGKILL, power loss) leaves
its files without footers, and a run resumed from a recovery folder starts its files
afresh: results that must survive crashes belong in InfluxDB and Kafka.

The sink has one partition, so however many workers run, one writer owns each file;
every run starts its files afresh. Dead letters are flushed per batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from pipeline.contracts import (
    ALERT_FIELDS,
    CYCLE_FIELDS,
    MEAS_ALERT,
    MEAS_CYCLE,
    MEAS_STATE,
    OUT_ALERTS,
    OUT_CYCLES,
    OUT_DEADLETTER,
    OUT_ESTIMATES,
    STATE_FIELDS,
    TAG_CELL,
    TAG_HALF,
    TAG_KIND,
    TAG_PRESET,
)

__all__ = ["PARQUET_LAYOUT", "OutputFolderSink", "close_open_files"]

_STRING_FIELDS = {"severity", "message"}
_INT_FIELDS = {"cycle", "flags"}


def _schema(tags: tuple[str, ...], fields: tuple[str, ...]) -> pa.Schema:
    def kind(name: str) -> pa.DataType:
        return pa.string() if name in _STRING_FIELDS else pa.int64() if name in _INT_FIELDS else pa.float64()

    return pa.schema([("time", pa.float64())] + [(t, pa.string()) for t in tags] + [(f, kind(f)) for f in fields])


PARQUET_LAYOUT: Mapping[str, tuple[str, pa.Schema]] = {
    MEAS_STATE: (OUT_ESTIMATES, _schema((TAG_CELL, TAG_PRESET), STATE_FIELDS)),
    MEAS_CYCLE: (OUT_CYCLES, _schema((TAG_CELL, TAG_PRESET, TAG_HALF), CYCLE_FIELDS)),
    MEAS_ALERT: (OUT_ALERTS, _schema((TAG_CELL, TAG_PRESET, TAG_KIND), ALERT_FIELDS)),
}

Point = Mapping[str, Any]
Record = Point | bytes  # a point, or a dead letter as one JSON document


class OutputFolderSink(FixedPartitionedSink[Record, None]):
    """Points (InfluxSink's item dicts) into the Parquet files of `out_dir`, dead letters
    (JSON bytes) as lines of its deadletter.jsonl; items keyed by any string.
    `rows_per_group` bounds the rows held in memory per file."""

    def __init__(self, out_dir: Path, rows_per_group: int = 50_000) -> None:
        self._out = Path(out_dir)
        self._rows_per_group = rows_per_group

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> StatefulSinkPartition[Record, None]:
        self._out.mkdir(parents=True, exist_ok=True)
        return _FolderPartition(self._out, self._rows_per_group)


_OPEN: set["_FolderPartition"] = set()  # partitions not closed yet


def close_open_files() -> None:
    """Write out and close the files of every partition bytewax has not closed."""
    for partition in list(_OPEN):
        partition.close()


class _FolderPartition(StatefulSinkPartition[Record, None]):
    def __init__(self, out: Path, rows_per_group: int) -> None:
        _OPEN.add(self)
        self._rows_per_group = rows_per_group
        self._writers = {m: pq.ParquetWriter(out / name, schema) for m, (name, schema) in PARQUET_LAYOUT.items()}
        self._rows: dict[str, list[Point]] = {m: [] for m in PARQUET_LAYOUT}
        self._letters = (out / OUT_DEADLETTER).open("wb")

    def write_batch(self, items: list[Record]) -> None:
        letters = []
        for item in items:
            if isinstance(item, bytes):
                letters.append(item + b"\n")
                continue
            rows = self._rows[item["measurement"]]
            rows.append(item)
            if len(rows) >= self._rows_per_group:
                self._flush(item["measurement"])
        if letters:
            # Flushed per batch: a dead letter already reported is on disk even if the run dies.
            self._letters.write(b"".join(letters))
            self._letters.flush()

    def _flush(self, measurement: str) -> None:
        rows = self._rows[measurement]
        if not rows:
            return
        schema = PARQUET_LAYOUT[measurement][1]
        columns = {"time": [p["time"] for p in rows]}
        for name in schema.names[1:]:
            part = "tags" if name in rows[0]["tags"] else "fields"
            columns[name] = [p[part].get(name) for p in rows]
        self._writers[measurement].write_table(pa.table(columns, schema=schema))
        # Cleared only once written: a Ctrl-C in between leaves the rows for close().
        self._rows[measurement] = []

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        if self not in _OPEN:
            return
        _OPEN.discard(self)
        for measurement, writer in self._writers.items():
            self._flush(measurement)
            writer.close()
        self._letters.close()
