"""`celltwin watch` against the real broker: cyclers writing at 10 Hz, a kill, rewrites, a truncation.

A writer thread writes simulated cells as a lab's cyclers would: a CSV appended row by row
(each row in two writes, so a line is often half written), a BioLogic ``.mpt`` appended row
by row, a CSV export replaced by a longer copy every two seconds (by rename, and once in
place), and a CSV whose channel restarts its log halfway (truncated, then written on).
The watcher runs as its own process, is SIGKILLed midway and started again. At the end
every row is on ``cell.samples`` exactly once and in file order (the truncated file: what
it held before the truncation, then its new content), and `celltwin run --kafka` on those
records computes what `celltwin replay` of the final files computes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from connectors.readers import read_archive
from connectors.sim_producer import fleet, simulation
from connectors.wire import MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, OUT_DEADLETTER, TOPIC_SAMPLES
from tests.connectors.readers.cycler_writers import Synthetic, write_bdf, write_mpt
from tests.integration.pipeline_harness import (  # noqa: F401 (fresh_kafka: a fixture)
    REPO, T0, fresh_kafka, kill, log_tail, parquet_rows, pipeline_command, read_topic, run_pipeline,
    start_pipeline, unique_prefix,
)

pytestmark = pytest.mark.integration

TICK_S = 0.1  # the writer's pace: 10 rows a second per file
KILL_AT, TRUNCATE_AT = 0.35, 0.6  # fractions of the rows written
MASSES = (1.7, 1.2, 0.9, 1.4)
C_RATE = 0.5


def _cells(prefix: str) -> list[tuple[str, Synthetic]]:
    """Four simulated cells, one cycle at C/2, a sample every 30 s: about 300 rows each."""
    members = fleet(len(MASSES), "nd4mg80ni8", c_rate=C_RATE, seed=3, prefix=prefix)
    blocks = list(simulation(members, 1, dt=30.0, t0=T0, seed=3).blocks())
    out = []
    for n, member in enumerate(members):
        pick = np.concatenate([b.valid[n] for b in blocks])

        def joined(name: str, n: int = n, pick: np.ndarray = pick) -> np.ndarray:
            return np.concatenate([getattr(b, name)[n] for b in blocks])[pick]

        t = np.concatenate([b.t for b in blocks])[pick]
        out.append((member.cell, Synthetic(t, joined("v"), joined("i"), joined("temp_c"), joined("cycle"),
                                           joined("step") + 1)))
    return out


def _lines(data: bytes, newline: bytes) -> tuple[bytes, list[bytes]]:
    """A whole export split into its header and its row lines (each with its newline)."""
    lines = [line + newline for line in data.split(newline)[:-1]]
    head = int(lines[1].split(b":")[1]) if data.startswith(b"EC-Lab") else 1
    return b"".join(lines[:head]), lines[head:]


class Lab(threading.Thread):
    """Writes the four files at 10 Hz; remembers what the truncated file held before."""

    def __init__(self, folder: Path, cells: list[tuple[str, Synthetic]], state: Path) -> None:
        super().__init__(daemon=True)
        scratch = folder.parent / "scratch"
        scratch.mkdir()
        self.paths = [folder / f"{cells[0][0]}_log.csv", folder / f"{cells[1][0]}_ch2.mpt",
                      folder / f"{cells[2][0]}_export.csv", folder / f"{cells[3][0]}_chan.csv"]
        self.exports = []
        for (_, cell), path in zip(cells, self.paths):
            writer = write_mpt if path.suffix == ".mpt" else write_bdf
            data = writer(scratch / path.name, cell).read_bytes()
            self.exports.append(_lines(data, b"\r\n" if path.suffix == ".mpt" else b"\n"))
        self.rows = min(len(rows) for _, rows in self.exports)
        self.state = state
        self.before_truncation: bytes = b""
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def _write(self) -> None:
        appended, rewritten, truncated = (0, 1, 3), 2, 3
        for k in appended:
            self.paths[k].write_bytes(self.exports[k][0])
        for row in range(self.rows):
            if row:
                self._finish_line(row - 1)
            for k in appended:
                line = self.exports[k][1][row]
                with self.paths[k].open("ab") as handle:
                    handle.write(line[:len(line) // 2] if k == 0 else line)
            if row == int(TRUNCATE_AT * self.rows):
                self._truncate(self.paths[truncated], self.exports[truncated][0], row + 1)
            if row % 20 == 10 or row == self.rows - 1:
                self._rewrite(self.paths[rewritten], self.exports[rewritten], row + 1, in_place=row == 90)
            self.written = row + 1
            time.sleep(TICK_S)
        self._finish_line(self.rows - 1)

    def _finish_line(self, row: int) -> None:
        """The second half of a row of the first file, written one tick after its first half."""
        line = self.exports[0][1][row]
        with self.paths[0].open("ab") as handle:
            handle.write(line[len(line) // 2:])

    def _rewrite(self, path: Path, export: tuple[bytes, list[bytes]], rows: int, in_place: bool) -> None:
        data = export[0] + b"".join(export[1][:rows])
        if in_place:
            path.write_bytes(data)
        else:
            temporary = path.with_name(".export.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)

    def _truncate(self, path: Path, header: bytes, rows: int) -> None:
        """The channel's log restarts: once the watcher has sent what it holds (else those rows
        were never seen, by anyone), it is cut to nothing and written on from its header."""
        deadline = time.monotonic() + 30
        while self.rows_sent(path) < rows:
            assert time.monotonic() < deadline, "the watcher did not catch up before the truncation"
            time.sleep(0.1)
        self.before_truncation = path.read_bytes()
        with path.open("r+b") as handle:
            handle.truncate(0)
            handle.write(header)  # and the rows after it follow as before

    def rows_sent(self, path: Path) -> int:
        """The rows of ``path`` the watcher's state file counts as sent."""
        try:
            files = json.loads(self.state.read_text())["files"]
        except (FileNotFoundError, ValueError):
            return 0
        return sum(files.get(str(path.resolve()), {}).get("rows", {}).values())


def _on_the_wire(bootstrap: str, prefix: str) -> dict[str, dict[str, np.ndarray]]:
    """Per cell, the t, v, i of every frame on cell.samples, in offset order."""
    frames: dict[str, list[dict]] = {}
    for record in sorted(read_topic(bootstrap, TOPIC_SAMPLES), key=lambda r: (r.partition, r.offset)):
        if record.key and record.key.decode(errors="replace").startswith(prefix):
            frames.setdefault(record.key.decode(), []).append(json.loads(record.value))
    return {cell: {q: np.concatenate([np.atleast_1d(f[q]) for f in fs]) for q in ("t", "v", "i")}
            for cell, fs in frames.items()}


def _config(path: Path, cells: list[tuple[str, float]]) -> Path:
    path.write_text("".join(f'[cells."{cell}"]\npreset = "nd4mg80ni8"\nmass_mg = {mass}\nc_rate = {C_RATE}\n\n'
                            for cell, mass in cells))
    return path


def test_watch_sends_each_row_once_in_order_through_a_kill_rewrites_and_a_truncation(
    fresh_kafka: str, tmp_path: Path,
) -> None:
    prefix = unique_prefix("watch")
    cells = _cells(prefix)
    ids = [cell for cell, _ in cells]
    lab_dir, state, log = tmp_path / "lab", tmp_path / "watch-state.json", tmp_path / "watch.log"
    lab_dir.mkdir()
    lab = Lab(lab_dir, cells, state)
    (lab_dir / f"{lab.paths[0].name}.toml").write_text(f'mass_mg = {MASSES[0]}\nc_rate = {C_RATE}\n')  # a sidecar
    config = _config(tmp_path / "watch.toml", list(zip(ids, MASSES))[1:])
    watch = [sys.executable, "-m", "pipeline.cli", "watch", str(lab_dir), "--kafka", fresh_kafka,
             "--cell-pattern", "{cell}_*", "--config", str(config), "--state", str(state),
             "--poll", "0.3", "--idle", "6", "--grace", "2"]

    watcher = start_pipeline(watch, log)
    try:
        lab.start()
        while lab.written < KILL_AT * lab.rows and lab.is_alive():
            time.sleep(0.05)
        assert sum(lab.rows_sent(path) for path in lab.paths) > 0, log_tail(log)  # killed mid-stream
        kill(watcher, signal.SIGKILL)
        assert watcher.returncode == -signal.SIGKILL
        watcher = start_pipeline(watch, log)
        lab.join(timeout=90)
        assert not lab.is_alive() and lab.error is None, lab.error
        deadline = time.monotonic() + 60
        while log_tail(log, 100_000).count("finished, no growth for 6 s") < 4:
            assert time.monotonic() < deadline and watcher.poll() is None, log_tail(log)
            time.sleep(0.2)
    finally:
        kill(watcher, signal.SIGINT)
    once = subprocess.run([*watch, "--once"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert once.returncode == 0 and "sent 0 rows" in once.stdout, once.stdout + once.stderr

    text = log_tail(log, 100_000)
    assert "truncated and written anew; following it afresh from its first row as stream 2" in text, text
    # The files as `celltwin replay` reads them; the truncated one is what it held, then what it holds.
    replayed = tmp_path / "replay"
    for cell, path in zip(ids, lab.paths):
        (replayed / "now").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, replayed / "now" / f"{cell}{path.suffix}")
    (replayed / "before").mkdir()
    (replayed / "before" / f"{ids[3]}.csv").write_bytes(lab.before_truncation)
    files = [replayed / "now" / f"{cell}{path.suffix}" for cell, path in zip(ids, lab.paths)]
    files.insert(3, replayed / "before" / f"{ids[3]}.csv")
    want: dict[str, list] = {}
    for path in files:
        record = read_archive(path).only()
        want.setdefault(record.cell, []).append(record)
    wire = _on_the_wire(fresh_kafka, prefix)
    assert sorted(wire) == sorted(ids)
    for cell in ids:
        expected = {q: np.concatenate([getattr(r, q) for r in want[cell]]) for q in ("t", "v", "i")}
        assert len(wire[cell]["t"]) == len(expected["t"]) == lab.rows, cell
        for q in ("t", "v", "i"):
            np.testing.assert_array_equal(wire[cell][q], expected[q], err_msg=f"{cell} {q}")

    out, reference = tmp_path / "out", tmp_path / "reference"
    run_pipeline(pipeline_command(fresh_kafka, None, out), tmp_path / "run.log")
    replay = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "replay", *map(str, files), "--no-report", "--out", str(reference),
         "--config", str(_config(tmp_path / "replay.toml", list(zip(ids, MASSES))))],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert not [line for line in (out / OUT_DEADLETTER).read_text().splitlines() if prefix in line]
    for measurement in (MEAS_STATE, MEAS_CYCLE, MEAS_ALERT):
        assert parquet_rows(out, measurement, prefix) == parquet_rows(reference, measurement, prefix), measurement
    assert len(parquet_rows(out, MEAS_CYCLE, prefix)) >= len(ids)


def test_rows_acknowledged_but_not_yet_in_the_state_file_are_not_sent_again(fresh_kafka: str, tmp_path: Path) -> None:
    """A kill between the broker's acknowledgement and the state file's replacement: the
    restart finds those rows on the topic after the state's marks and skips them."""
    cell = f"{unique_prefix('resume')}7"
    (_, synthetic), = _cells(unique_prefix("unused"))[:1]
    header, rows = _lines(write_bdf(tmp_path / "whole.csv", synthetic).read_bytes(), b"\n")
    lab_dir, state = tmp_path / "lab", tmp_path / "state.json"
    lab_dir.mkdir()
    path = lab_dir / f"{cell}.csv"
    watch = [sys.executable, "-m", "pipeline.cli", "watch", str(path), "--kafka", fresh_kafka, "--mass-mg", "1.1",
             "--state", str(state), "--once"]

    def once() -> str:
        done = subprocess.run(watch, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    path.write_bytes(header + b"".join(rows[:10]))
    assert "sent 10 rows" in once()
    saved = state.read_bytes()
    with path.open("ab") as handle:
        handle.write(b"".join(rows[10:15]))
    assert "sent 5 rows" in once()
    state.write_bytes(saved)  # as if killed after the acknowledgement, before the state was replaced
    with path.open("ab") as handle:
        handle.write(b"".join(rows[15:17]))
    resumed = once()
    assert "5 row(s) of cell" in resumed and "sent 2 rows" in resumed, resumed
    np.testing.assert_array_equal(_on_the_wire(fresh_kafka, cell)[cell]["t"], synthetic.t[:17])
