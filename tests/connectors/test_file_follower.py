"""The file follower on files written as a cycler writes them: partial lines, longer
rewrites, truncation, rotation, idle cells, restarts from the state file. No broker."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from connectors.file_follower import Follower, Update, WatchState, cell_matcher
from tests.connectors.readers.cycler_writers import synthetic_cell, write_mpt, write_neware_xlsx

T0 = 1_767_225_600.0
HEADER = "Unix Time / s,Voltage / V,Current / A\n"


def _row(k: int, offset: float = 0.0) -> str:
    return f"{T0 + offset + k:.1f},{3.0 + 0.001 * k:.4f},-0.0010\n"


def _rows(ks: range, offset: float = 0.0) -> str:
    return "".join(_row(k, offset) for k in ks)


class Clock:
    """A settable wall clock, so idle and grace times pass without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _follower(folder: Path, state: WatchState | None = None, **kwargs) -> tuple[Follower, Clock]:
    clock = Clock()
    clock.now = max((p.stat().st_mtime for p in folder.iterdir()), default=0.0) + 1.0
    kwargs = {"idle_s": 60.0, "grace_s": 5.0, **kwargs}
    return Follower([folder], state or WatchState(), clock=clock, **kwargs), clock


def _sent(follower: Follower) -> tuple[list[Update], dict[str, np.ndarray]]:
    """One poll, committed as if delivered: the updates and the new times per cell."""
    updates = follower.poll()
    times: dict[str, list[np.ndarray]] = {}
    for update in updates:
        follower.commit(update)
        for record in update.records:
            times.setdefault(record.cell, []).append(record.t)
    return updates, {c: np.concatenate(ts) for c, ts in times.items()}


def _notes(updates: list[Update]) -> str:
    return " | ".join(n for u in updates for n in u.notes)


def test_a_line_without_its_newline_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(5)) + _row(5)[:12])
    follower, _ = _follower(tmp_path)

    _, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(5))
    with path.open("a") as handle:
        handle.write(_row(5)[12:] + _rows(range(6, 8)))
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(5, 8))
    (record,) = updates[0].records
    assert record.v[0] == pytest.approx(3.005)  # the whole value, not the half read before
    assert follower.poll() == []  # nothing new: nothing to say


def test_a_partial_last_line_is_sent_once_the_file_is_idle_and_the_cell_is_finished_once(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(3)) + _row(3).rstrip("\n"))
    follower, clock = _follower(tmp_path, idle_s=30.0)
    _, times = _sent(follower)
    assert len(times["A1"]) == 3

    clock.now = path.stat().st_mtime + 31.0
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], [T0 + 3])
    assert "finished, no growth for 30 s: A1 (4 rows)" in _notes(updates)
    assert follower.poll() == []  # said once

    with path.open("a") as handle:
        handle.write("\n" + _row(4))
    clock.now = path.stat().st_mtime + 1.0
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], [T0 + 4])
    assert "grows again" in _notes(updates)


def test_a_rewrite_by_a_longer_copy_sends_only_the_new_rows(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(5)))
    follower, _ = _follower(tmp_path)
    _sent(follower)

    copy = tmp_path / ".export.tmp"
    copy.write_text(HEADER + _rows(range(9)))
    os.replace(copy, path)  # the exporter's atomic replace: a new inode
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(5, 9))
    assert _notes(updates) == "" and follower.state.files[str(path.resolve())].stream == 1

    path.write_text(HEADER + _rows(range(12)))  # rewritten in place
    _, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(9, 12))


def test_a_rewrite_in_place_caught_half_written_waits_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(6)))
    follower, clock = _follower(tmp_path)
    _sent(follower)

    path.write_text(HEADER + _rows(range(2)))  # the exporter has written a third so far
    assert follower.poll() == []
    path.write_text(HEADER + _rows(range(8)))
    clock.now += 1.0
    _, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(6, 8))


def test_a_truncated_file_is_a_new_stream_after_the_grace_time(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(6)))
    follower, clock = _follower(tmp_path, grace_s=5.0)
    _sent(follower)

    with path.open("r+") as handle:
        handle.truncate(len(HEADER + _rows(range(2))))  # cut back: the same first rows, fewer of them
    assert follower.poll() == []  # shorter: maybe a rewrite in progress
    clock.now += 6.0
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(2))
    assert "truncated (fewer rows than were sent); following it afresh from its first row as stream 2" \
        in _notes(updates)
    with path.open("a") as handle:
        handle.write(_rows(range(100, 102)))
    _, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(100, 102))


def test_a_file_restarted_with_other_rows_is_a_new_stream_at_once(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(6)))
    follower, _ = _follower(tmp_path)
    _sent(follower)

    with path.open("r+") as handle:
        handle.truncate(0)
        handle.write(HEADER + _rows(range(2), offset=100.0))  # the channel restarted its log
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + 100 + np.arange(2))
    assert "truncated and written anew; following it afresh from its first row as stream 2" in _notes(updates)


def test_a_truncated_file_that_outgrows_the_old_one_is_a_new_stream_at_once(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(3)))
    follower, _ = _follower(tmp_path)
    _sent(follower)

    path.write_text(HEADER + _rows(range(5), offset=100.0))
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + 100 + np.arange(5))
    assert "rewritten with other rows" in _notes(updates)


def test_a_rotated_file_is_a_new_stream(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    path.write_text(HEADER + _rows(range(4)))
    follower, _ = _follower(tmp_path, cell_of=cell_matcher("{cell}.csv"))
    _sent(follower)

    path.rename(tmp_path / "A1.csv.1")  # rotated away: not a data file by its name
    path.write_text(HEADER + _rows(range(4, 9)))
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(4, 9))
    assert "replaced by a new inode with other rows" in _notes(updates)
    assert [u.path.name for u in updates] == ["A1.csv"]


def test_a_restart_from_the_saved_state_resends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "A1.csv"
    state_file = tmp_path / "state.json"
    path.write_text(HEADER + _rows(range(4)))
    follower, _ = _follower(tmp_path, skip=[state_file])
    _sent(follower)
    follower.state.marks = {0: 17}
    follower.state.save(state_file)

    with path.open("a") as handle:
        handle.write(_rows(range(4, 6)))
    restarted, _ = _follower(tmp_path, WatchState.load(state_file), skip=[state_file])
    assert restarted.state.marks == {0: 17}
    _, times = _sent(restarted)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(4, 6))
    assert not list(tmp_path.glob("*.tmp"))  # replaced, not left behind


def test_rows_delivered_before_a_kill_but_not_in_the_state_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "A1.csv").write_text(HEADER + _rows(range(6)))
    follower, _ = _follower(tmp_path, delivered={"A1": T0 + 3})
    updates, times = _sent(follower)
    np.testing.assert_array_equal(times["A1"], T0 + np.arange(4, 6))
    assert "4 row(s) of cell A1 were delivered before the restart" in _notes(updates)


def test_cell_ids_from_a_name_pattern_or_a_sidecar(tmp_path: Path) -> None:
    (tmp_path / "B7_cycling_2026.csv").write_text(HEADER + _rows(range(2)))
    (tmp_path / "notes.csv").write_text(HEADER + _rows(range(2)))
    (tmp_path / "C2_x.csv").write_text(HEADER + _rows(range(3)))
    (tmp_path / "C2_x.csv.toml").write_text('cell = "C2-long"\nmass_mg = 2.5\n')
    follower, _ = _follower(tmp_path, cell_of=cell_matcher("{cell}_*.csv"))

    updates, times = _sent(follower)
    assert {c: len(t) for c, t in times.items()} == {"B7": 2, "C2-long": 3}
    assert {u.path.name: u.sidecar for u in updates} == {
        "B7_cycling_2026.csv": None, "C2_x.csv": {"cell": "C2-long", "mass_mg": 2.5}}
    regex = cell_matcher(r"run-(?P<cell>\d+)\.csv")
    assert regex("run-12.csv") == "12" and regex("run-12.csv.bak") is None
    with pytest.raises(ValueError, match="one \\{cell\\} field"):
        cell_matcher("*.csv")


def test_a_growing_biologic_file(tmp_path: Path) -> None:
    whole = write_mpt(tmp_path / "whole.mpt", synthetic_cell(n_per_step=5, cycles=1)).read_bytes()
    (tmp_path / "whole.mpt").unlink()
    lines = whole.split(b"\r\n")
    header = int(lines[1].split(b":")[1])
    path = tmp_path / "ch3.mpt"
    path.write_bytes(b"\r\n".join(lines[:header]) + b"\r\n")
    follower, _ = _follower(tmp_path)
    updates, _ = _sent(follower)
    assert "not read yet" in _notes(updates)  # a header without rows

    body = whole[len(path.read_bytes()):]
    sent: list[np.ndarray] = []
    for k in range(0, len(body), 97):  # chunks that end mid-line, as a cycler's buffered writes do
        with path.open("ab") as handle:
            handle.write(body[k:k + 97])
        _, times = _sent(follower)
        sent.append(times.get("ch3", np.array([])))
    got = np.concatenate(sent)
    assert len(got) == 15
    np.testing.assert_array_equal(np.diff(got), np.ones(14))


def test_a_binary_export_is_read_once_it_holds_still(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    cell = synthetic_cell(n_per_step=4, cycles=1)
    path = write_neware_xlsx(tmp_path / "N3.xlsx", cell)
    follower, _ = _follower(tmp_path)

    assert follower.poll() == []  # first seen: it may still be being written
    _, times = _sent(follower)
    np.testing.assert_array_equal(times["N3"], cell.t)
    write_neware_xlsx(path, synthetic_cell(n_per_step=6, cycles=1))  # the next, longer export
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # a new time even if it is quick
    assert follower.poll() == []
    _, times = _sent(follower)
    assert len(times["N3"]) == 18 - 12
