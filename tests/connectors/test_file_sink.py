"""The output folder: parts committed whole, a resumed run continuing exactly at its snapshot."""

from __future__ import annotations

from pathlib import Path

import math

import numpy as np
import pyarrow.parquet as pq

from connectors.file_sink import FolderState, OutputFolderSink, read_parts
from connectors.wire import (
    ALERT_FIELDS, MEAS_ALERT, MEAS_STATE, OUT_ALERTS, OUT_DEADLETTER, OUT_ESTIMATES, STATE_FIELDS, Batch, batches,
)


def _batch(t: float) -> Batch:
    return batches([{"measurement": MEAS_STATE, "tags": {"cell": "A1", "preset": "mgh2"}, "time": t,
                     "fields": {name: 0.5 for name in STATE_FIELDS} | {"flags": 0}}])[0]


def _partition(out: Path, resume: FolderState | None = None, exact: bool = True):
    return OutputFolderSink(out, exact=exact).build_part("files_out", "files", resume)


def _times(out: Path) -> list[float]:
    return read_parts(out / OUT_ESTIMATES).column("time").to_pylist()


def test_a_resumed_run_continues_from_its_snapshot_not_from_what_came_after(tmp_path: Path) -> None:
    first = _partition(tmp_path)
    first.write_batch([_batch(1.0), b'{"reason": "a"}'])
    state = first.snapshot()
    first.write_batch([_batch(2.0), b'{"reason": "b"}'])
    first.snapshot()  # committed, but the run dies before bytewax stores this snapshot
    assert _times(tmp_path) == [1.0, 2.0]

    resumed = _partition(tmp_path, state)
    assert _times(tmp_path) == [1.0]
    assert (tmp_path / OUT_DEADLETTER).read_bytes() == b'{"reason": "a"}\n'
    resumed.write_batch([_batch(2.0), b'{"reason": "b"}'])
    resumed.close()

    assert _times(tmp_path) == [1.0, 2.0]
    assert pq.read_table(tmp_path / OUT_ESTIMATES).num_rows == 2  # any Parquet reader sees the same
    assert (tmp_path / OUT_DEADLETTER).read_bytes() == b'{"reason": "a"}\n{"reason": "b"}\n'


def test_a_half_written_part_is_never_read_and_is_cleared_at_the_next_start(tmp_path: Path) -> None:
    first = _partition(tmp_path)
    first.write_batch([_batch(1.0)])
    state = first.snapshot()
    leftover = tmp_path / OUT_ESTIMATES / ".part-000002.parquet.tmp"
    leftover.write_bytes(b"PAR1")  # what a kill in the middle of a write leaves

    assert _times(tmp_path) == [1.0] and pq.read_table(tmp_path / OUT_ESTIMATES).num_rows == 1
    _partition(tmp_path, state).close()
    assert not leftover.exists()


def test_a_fresh_run_starts_afresh_and_an_empty_table_reads_with_its_columns(tmp_path: Path) -> None:
    old = _partition(tmp_path)
    old.write_batch([_batch(1.0)])
    old.close()
    (tmp_path / OUT_ALERTS).rename(tmp_path / "alerts.old")
    (tmp_path / OUT_ALERTS).write_bytes(b"a single file of an older layout")

    fresh = _partition(tmp_path, exact=False)
    fresh.close()

    assert _times(tmp_path) == []
    alerts = read_parts(tmp_path / OUT_ALERTS)
    assert alerts.num_rows == 0 and alerts.column_names[:2] == ["time", "cell"]


def test_batches_are_written_as_their_columns(tmp_path: Path) -> None:
    """Typed columns go in as they are (NaN stays NaN, not null); a field no row has, or a
    row without a value (None), is null; parts hold whole batches, in the order written."""
    part = OutputFolderSink(tmp_path, rows_per_group=3).build_part("files_out", "files", None)
    states = Batch(MEAS_STATE, np.array([1.0, 2.0]), {"cell": np.array(["A1", "B2"], dtype=object),
                                                     "preset": np.array(["p", "q"], dtype=object)},
                   {"soc": np.array([0.25, np.nan]), "flags": np.array([1, 2], dtype=np.int64)})
    alerts = batches([{"measurement": MEAS_ALERT, "tags": {"cell": "A1", "preset": "p", "kind": "k"}, "time": 1.5,
                       "fields": {"value": 2.0, "severity": "warning", "message": "m"}},
                      {"measurement": MEAS_ALERT, "tags": {"cell": "A1", "preset": "p", "kind": "k"}, "time": 2.5,
                       "fields": {"value": None, "threshold": 1.0, "severity": "critical", "message": "n"}}])
    part.write_batch([states, *alerts, states])  # 4 rows of estimates: committed once past 3
    assert read_parts(tmp_path / OUT_ESTIMATES).num_rows == 4
    part.close()

    estimates = read_parts(tmp_path / OUT_ESTIMATES)
    assert estimates.column("time").to_pylist() == [1.0, 2.0, 1.0, 2.0]
    soc = estimates.column("soc").to_pylist()
    assert soc[0] == 0.25 and math.isnan(soc[1]) and estimates.column("soc").null_count == 0
    assert estimates.column("flags").to_pylist() == [1, 2, 1, 2]
    assert estimates.column("capacity_mah").null_count == 4  # a field no row has
    table = read_parts(tmp_path / OUT_ALERTS)
    assert table.column_names == ["time", "cell", "preset", "kind", *ALERT_FIELDS]
    assert table.column("value").to_pylist() == [2.0, None]
    assert table.column("threshold").to_pylist() == [None, 1.0]
    assert table.column("severity").to_pylist() == ["warning", "critical"]
