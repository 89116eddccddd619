"""Repeated timestamps: exact duplicates dropped, rows that differ spread within the clock's resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from connectors.readers import CellRecord, read_archive
from connectors.readers.repeats import settle


def _cell(t: list[float], v: list[float]) -> CellRecord:
    n = len(t)
    return CellRecord("c", np.array(t, dtype=float), np.array(v, dtype=float), np.full(n, -1.0),
                      temp_c=np.full(n, np.nan), cycle=np.ones(n, dtype=np.int64))


def test_exact_duplicates_are_dropped_and_counted() -> None:
    record, done = settle(_cell([0, 10, 10, 20], [3.5, 3.4, 3.4, 3.3]))  # NaN temperatures compare equal
    np.testing.assert_array_equal(record.t, [0, 10, 20])
    np.testing.assert_array_equal(record.v, [3.5, 3.4, 3.3])
    assert record.cycle.tolist() == [1, 1, 1] and record.temp_c.size == 3
    assert (done.dropped, done.spread) == (1, 0)


def test_rows_sharing_a_coarse_timestamp_are_spread_evenly_before_the_next_one() -> None:
    # A clock of 36 s: three samples printed at 36, two at 108 (after a gap, still within one tick).
    record, done = settle(_cell([0, 36, 36, 36, 72, 108, 108, 1000], [9, 8, 7, 6, 5, 4, 3, 2]))
    np.testing.assert_allclose(record.t, [0, 36, 48, 60, 72, 108, 126, 1000])
    np.testing.assert_array_equal(record.v, [9, 8, 7, 6, 5, 4, 3, 2])  # nothing dropped, order kept
    assert (done.dropped, done.spread, done.resolution) == (0, 3, 36.0)


def test_a_spread_never_reaches_the_next_distinct_time() -> None:
    record, _ = settle(_cell([0, 100, 100, 100, 101], [1, 2, 3, 4, 5]))  # resolution 1 s
    np.testing.assert_allclose(record.t, [0, 100, 100 + 1 / 3, 100 + 2 / 3, 101])


def test_time_going_backwards_is_left_alone() -> None:
    record, done = settle(_cell([0, 10, 5, 20], [1, 2, 3, 4]))
    np.testing.assert_array_equal(record.t, [0, 10, 5, 20])
    assert (done.dropped, done.spread) == (0, 0)


def test_each_cell_of_a_table_is_settled_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(
        "cell,t,v,i\n"
        "A,100,3.5,-1\nB,100,3.6,-1\n"  # two cells at the same time: no repeat
        "A,110,3.4,-1\nA,110,3.4,-1\n"  # an exact duplicate
        "B,110,3.5,-1\nB,110,3.45,-1\nB,120,3.4,-1\n"  # a shared timestamp, different values
    )
    archive = read_archive(path)
    np.testing.assert_allclose(archive.cells["A"].t, [100, 110])
    np.testing.assert_allclose(archive.cells["B"].t, [100, 110, 115, 120])
    report = archive.report
    assert (report.rows_read, report.rows_kept, report.rows_duplicate) == (7, 6, 1)
    assert any("1 rows shared a timestamp" in w and "resolution of 10 s" in w for w in report.warnings)
