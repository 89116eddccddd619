"""Local output files of a run: Parquet tables of the twin's batches, dead letters as JSONL.

The Parquet layout is the one `pipeline.report` reads: per measurement a folder named in
contracts (`estimates.parquet/`, ...) of part files, columns `time` (epoch seconds), the
measurement's tags, then its fields in contract order. pyarrow, pandas, polars and DuckDB
read such a folder as one table (`pq.read_table("out/estimates.parquet")`); `read_parts`
reads it in the order it was written.

Why part files: a Parquet file is readable only once its footer is written, so one
growing file is lost to any stop that does not close it (SIGKILL, a second Ctrl-C,
power loss). Each part is written to a hidden temporary name and renamed into place, so
every part a reader sees is complete, whatever stops the run. Parts are committed
when `rows_per_group` rows of a table are gathered, at the end, and at every snapshot
(bytewax takes one per epoch) of a run with recovery (`exact`), which needs its files
to match its snapshots; without recovery, at the first snapshot `commit_interval_s`
after the last commit, which keeps the parts of a long run fewer. A schema-only
part 0 makes an empty table readable. Dead letters are appended to deadletter.jsonl
per batch.

With recovery the sink's state is (next part number, length of deadletter.jsonl) as of
the snapshot: a resumed run deletes the parts and cuts off the dead letters written
after it (the resumed input brings them again, with the same values) and continues
the folder. A run without a snapshot to resume starts its files afresh.

The sink has one partition, so however many workers run, one writer owns each file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.wire import (
    ALERT_FIELDS, CYCLE_FIELDS, DQDV_FIELDS, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_STATE, OUT_ALERTS, OUT_CYCLES,
    OUT_DEADLETTER, OUT_DQDV, OUT_ESTIMATES, STATE_FIELDS, TAG_CELL, TAG_HALF, TAG_KIND, TAG_PRESET, TAG_VOLTAGE, Batch,
)

__all__ = ["PARQUET_LAYOUT", "OutputFolderSink", "close_open_files", "read_parts"]

_STRING_FIELDS = {"severity", "message"}
_INT_FIELDS = {"cycle", "flags"}
_BOOL_FIELDS = {"partial"}


def _schema(tags: tuple[str, ...], fields: tuple[str, ...]) -> pa.Schema:
    def kind(name: str) -> pa.DataType:
        if name in _STRING_FIELDS:
            return pa.string()
        return pa.int64() if name in _INT_FIELDS else pa.bool_() if name in _BOOL_FIELDS else pa.float64()

    return pa.schema([("time", pa.float64())] + [(t, pa.string()) for t in tags] + [(f, kind(f)) for f in fields])


PARQUET_LAYOUT: Mapping[str, tuple[str, pa.Schema]] = {
    MEAS_STATE: (OUT_ESTIMATES, _schema((TAG_CELL, TAG_PRESET), STATE_FIELDS)),
    MEAS_CYCLE: (OUT_CYCLES, _schema((TAG_CELL, TAG_PRESET, TAG_HALF), CYCLE_FIELDS)),
    MEAS_ALERT: (OUT_ALERTS, _schema((TAG_CELL, TAG_PRESET, TAG_KIND), ALERT_FIELDS)),
    MEAS_DQDV: (OUT_DQDV, _schema((TAG_CELL, TAG_PRESET, TAG_HALF, TAG_VOLTAGE), DQDV_FIELDS)),
}

Record = Batch | bytes  # rows of a measurement, or a dead letter as one JSON document

# Dictionary-encoded: the tag columns (a few distinct strings). The float columns are near
# unique; trying a dictionary for them made writing a part five times slower, and larger.
_DICTIONARY_COLUMNS: Mapping[str, list[str]] = {
    measurement: [field.name for field in schema if pa.types.is_string(field.type)]
    for measurement, (_, schema) in PARQUET_LAYOUT.items()
}


@dataclass(frozen=True)
class FolderState:
    """What a resumed run keeps of the folder: parts numbered below `next_part`, and the
    first `letter_bytes` bytes of deadletter.jsonl."""

    next_part: int
    letter_bytes: int


def _part_name(number: int) -> str:
    return f"part-{number:06d}.parquet"


def _part_number(path: Path) -> int | None:
    stem = path.name.removeprefix("part-").removesuffix(".parquet")
    return int(stem) if path.name.startswith("part-") and path.suffix == ".parquet" and stem.isdigit() else None


def read_parts(path: Path) -> pa.Table:
    """A table of the output folder (a folder of parts, in the order written), or a single
    Parquet file."""
    if not path.is_dir():
        return pq.read_table(path)
    parts = sorted((n, p) for p in path.iterdir() if (n := _part_number(p)) is not None)
    tables = [pq.read_table(p) for _, p in parts]
    if tables:
        return pa.concat_tables(tables)
    schema = next((s for name, s in PARQUET_LAYOUT.values() if name == path.name), None)
    if schema is None:
        raise FileNotFoundError(f"{path} holds no Parquet parts")
    return schema.empty_table()


def _table(batch: Batch) -> pa.Table:
    """A batch as its table's schema: columns as they are, a column it lacks as nulls."""
    schema = PARQUET_LAYOUT[batch.measurement][1]
    given = {"time": batch.time, **batch.tags, **batch.fields}
    return pa.table([given[name] if name in given else pa.nulls(len(batch), schema.field(name).type)
                     for name in schema.names], schema=schema)


class OutputFolderSink(FixedPartitionedSink[Record, FolderState]):
    """Batches into the Parquet tables of `out_dir`, dead letters
    (JSON bytes) as lines of its deadletter.jsonl; items keyed by any string."""

    def __init__(self, out_dir: Path, exact: bool = False, rows_per_group: int = 50_000,
                 commit_interval_s: float = 10.0) -> None:
        self._out = Path(out_dir)
        self._exact = exact
        self._rows_per_group = rows_per_group
        self._commit_interval_s = 0.0 if exact else commit_interval_s

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: FolderState | None) -> StatefulSinkPartition[Record, FolderState]:
        return _FolderPartition(self._out, self._rows_per_group, self._commit_interval_s, resume_state)


_OPEN: set["_FolderPartition"] = set()  # partitions not closed yet


def close_open_files() -> None:
    """Commit and close the files of every partition bytewax has not closed."""
    for partition in list(_OPEN):
        partition.close()


class _FolderPartition(StatefulSinkPartition[Record, FolderState]):
    def __init__(self, out: Path, rows_per_group: int, commit_interval_s: float,
                 resume: FolderState | None) -> None:
        self._rows_per_group = rows_per_group
        self._commit_interval_s = commit_interval_s
        self._tables = {m: out / name for m, (name, _) in PARQUET_LAYOUT.items()}
        self._tables_due: dict[str, list[pa.Table]] = {m: [] for m in PARQUET_LAYOUT}  # not written yet
        self._rows_due: dict[str, int] = {m: 0 for m in PARQUET_LAYOUT}
        self._next_part = resume.next_part if resume else 0
        for table in self._tables.values():
            self._clear(table, keep_below=self._next_part)
        letters = out / OUT_DEADLETTER
        with letters.open("ab") as handle:  # created if missing; cut to what the snapshot had
            handle.truncate(resume.letter_bytes if resume else 0)
        self._letters = letters.open("ab")
        if resume is None:  # part 0 of every table: its schema, so an empty table reads
            for measurement in PARQUET_LAYOUT:
                self._write_part(measurement, PARQUET_LAYOUT[measurement][1].empty_table())
            self._next_part += 1
        self._committed_at = time.monotonic()
        _OPEN.add(self)

    @staticmethod
    def _clear(table: Path, keep_below: int) -> None:
        """Make `table` a folder holding only parts numbered below `keep_below`."""
        if table.is_file():  # a single file of an older layout, or another run's
            table.unlink()
        table.mkdir(parents=True, exist_ok=True)
        for path in table.iterdir():
            number = _part_number(path)
            if path.name.startswith(".part-") or (number is not None and number >= keep_below):
                path.unlink()

    def write_batch(self, items: list[Record]) -> None:
        letters = []
        for item in items:
            if isinstance(item, bytes):
                letters.append(item + b"\n")
                continue
            measurement = item.measurement
            self._tables_due[measurement].append(_table(item))
            self._rows_due[measurement] += len(item)
            if self._rows_due[measurement] >= self._rows_per_group:
                self._commit(measurement)
        if letters:
            # Written per batch: a dead letter already reported is on disk even if the run dies.
            self._letters.write(b"".join(letters))
            self._letters.flush()

    def _commit(self, measurement: str) -> None:
        tables = self._tables_due[measurement]
        if not tables:
            return
        self._write_part(measurement, pa.concat_tables(tables))
        self._next_part += 1
        # Cleared only once written: a Ctrl-C in between leaves the rows for close().
        self._tables_due[measurement], self._rows_due[measurement] = [], 0

    def _write_part(self, measurement: str, table: pa.Table) -> None:
        """Write under a hidden name, then rename: readers (and pyarrow datasets, which skip
        names starting with ".") never see a part half written."""
        final = self._tables[measurement] / _part_name(self._next_part)
        partial = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, partial, use_dictionary=_DICTIONARY_COLUMNS[measurement])
        partial.replace(final)

    def _commit_all(self) -> None:
        for measurement in PARQUET_LAYOUT:
            self._commit(measurement)
        self._committed_at = time.monotonic()

    def snapshot(self) -> FolderState:
        if time.monotonic() - self._committed_at >= self._commit_interval_s:
            self._commit_all()
        self._letters.flush()
        return FolderState(self._next_part, self._letters.tell())

    def close(self) -> None:
        if self not in _OPEN:
            return
        _OPEN.discard(self)
        self._commit_all()
        self._letters.close()
