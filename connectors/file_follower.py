"""Follow the files cyclers write as a test runs: new rows of each file, once, in order.

Cyclers append to a text export while a test runs, or replace it with a longer copy at
each export; a data logger rotates its file; a channel is restarted and its file starts
again. :class:`Follower` turns each poll of a set of files and folders into
:class:`Update` objects holding only the rows not sent before, read by the same readers
as ``celltwin replay`` (format chosen per file by :func:`~connectors.readers.read_archive`).
What was sent is remembered in a :class:`WatchState` (a small JSON file, replaced
atomically) that the caller saves only once the rows are acknowledged, so a restart,
also after a kill, neither skips nor repeats a row.

How a file is read, and what it costs: a file whose size, modification time and inode
are unchanged costs one ``stat``. A changed file is read whole and parsed whole, up to
its last complete line (its copy is parsed, so a line being written never is), and the
rows past those already sent are new. Per changed file and poll that is one read and one
parse of the whole file: linear in its size, which keeps every whole-file rule of the readers (time anchoring, sign
detection, repeated timestamps) exactly as a replay of the final file applies them.

Rules, per file:

* a line without its newline is not read until the file has not grown for ``idle_s``
  (the cycler stopped mid-line); binary formats (XLSX, ``.mpr``, ``.nda``, Parquet) are
  read once their size and time held still for one poll;
* a file is the same stream as long as its first row and the last row sent keep their
  timestamps: a longer rewrite (in place or by rename) sends only its new rows;
* a file that is now shorter than what was sent gets ``grace_s`` to grow back (an
  exporter rewriting in place) and then, like a file whose rows changed (truncated and
  written anew, rotated to a new inode), is followed afresh from its first row as a new
  stream of the same cell, and the update says so;
* a file that has not grown for ``idle_s`` is reported finished once.

Cell ids come from a file-name pattern (``{cell}_*.csv`` or a regular expression with
a ``(?P<cell>...)`` group), else from the file as the readers name it; a sidecar
``<file>.toml`` beside a file carries its metadata (and may name the cell).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from connectors.readers import CellRecord, ReaderError, detect_format, read_archive

__all__ = ["cell_matcher", "FileState", "WatchState", "Update", "Follower", "sidecar_of"]

# Files in a watched folder that are never cycler data: sidecars, state, exporters' temporaries.
_NOT_DATA = {".toml", ".json", ".tmp", ".part", ".partial", ".swp", ".lock"}
_LINE_FORMATS = {"table", "arbin", "maccor", "biologic", "neware"}  # text read line by line
_BINARY_SUFFIXES = {".parquet", ".pq"}  # "table" files that are not text
_SAME_T_S = 1e-3  # timestamps of one row read twice agree to float noise
_STATE_VERSION = 1


def cell_matcher(pattern: str | None) -> Callable[[str], str | None] | None:
    """The cell id in a file name, or None for a name that does not match.

    ``pattern`` is a glob with one ``{cell}`` field (``{cell}_*.csv``: ``*`` any text,
    ``?`` one character) or a regular expression with a ``(?P<cell>...)`` group, matched
    against the whole file name. None: no pattern (every file; the readers name the cell).
    """
    if pattern is None:
        return None
    if "(?P<cell>" in pattern:
        regex = re.compile(pattern)
    elif pattern.count("{cell}") == 1:
        before, after = pattern.split("{cell}")
        regex = re.compile(_glob(before) + "(?P<cell>.+?)" + _glob(after))
    else:
        raise ValueError(f"a cell pattern holds one {{cell}} field (e.g. '{{cell}}_*.csv') or a regular "
                         f"expression with a (?P<cell>...) group, not {pattern!r}")

    def cell_of(name: str) -> str | None:
        match = regex.fullmatch(name)
        return match.group("cell") if match else None

    return cell_of


def _glob(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def sidecar_of(path: Path) -> Path:
    """The metadata file beside a data file: ``run7.csv`` -> ``run7.csv.toml``."""
    return path.with_name(path.name + ".toml")


@dataclass
class FileState:
    """What was sent of one file's current stream (JSON in the state file)."""

    stream: int = 1  # 1, then 2, 3... each time the file starts afresh
    consumed: int = 0  # bytes read: through the last complete line (or the whole file)
    mtime_ns: int = 0
    inode: int = 0
    sidecar_mtime_ns: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # cell -> rows sent
    first_t: dict[str, float] = field(default_factory=dict)  # cell -> time of its first row
    last_t: dict[str, float] = field(default_factory=dict)  # cell -> time of the last row sent
    rejected: int = 0  # rows the reader refused so far
    finished: bool = False  # reported as not growing any more


@dataclass
class WatchState:
    """Every followed file's :class:`FileState`, and ``marks``: for each partition of the
    samples topic, an offset at or before every record not yet counted here (the caller
    looks there after a restart for rows delivered just before it was killed)."""

    files: dict[str, FileState] = field(default_factory=dict)
    marks: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatchState:
        """The state in ``path``; an empty state when there is no such file."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as error:
            raise ValueError(f"the state file {path} cannot be read ({error}); move it away to start "
                             "afresh (every file is then sent again from its first row)") from None
        if data.get("version") != _STATE_VERSION:
            raise ValueError(f"the state file {path} has version {data.get('version')!r}, not {_STATE_VERSION}")
        return cls({name: FileState(**fs) for name, fs in data["files"].items()},
                   {int(p): int(o) for p, o in data["marks"].items()})

    def save(self, path: Path) -> None:
        """Write atomically: a reader (or a restart after a kill) sees the old or the new state."""
        text = json.dumps({"version": _STATE_VERSION, "marks": self.marks,
                           "files": {name: dataclasses.asdict(fs) for name, fs in self.files.items()}}, indent=1)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)


@dataclass
class Update:
    """What one poll found in one file: its new rows per cell, and what to tell the user.

    Pass it to :meth:`Follower.commit` once the rows are delivered."""

    path: Path
    records: list[CellRecord]  # only the new rows, per cell, in file order
    sidecar: dict[str, Any] | None  # the file's <file>.toml, if any
    notes: list[str]
    state: FileState | None  # the file's state once these rows are delivered (None: unchanged)

    @property
    def rows(self) -> int:
        return sum(len(r) for r in self.records)


class Follower:
    """Polls files and folders for new complete rows (see the module doc for the rules).

    :arg paths: files, and folders whose files (not sub-folders) are followed, new ones too.
    :arg state: what was sent before (:meth:`WatchState.load`).
    :arg cell_of: the cell id of a file name (:func:`cell_matcher`); files it gives None are skipped.
    :arg read_options: passed to :func:`~connectors.readers.read_archive` (units, start, ...).
    :arg idle_s: seconds without growth after which a file counts as finished.
    :arg grace_s: seconds a file that got shorter is given to grow back before it is a new stream.
    :arg delivered: per cell, the latest sample time already on the topic but not counted in
        ``state`` (rows at or before it are skipped once, see :class:`WatchState`).
    :arg skip: files never followed (the state file).
    """

    def __init__(
        self, paths: Iterable[Path], state: WatchState, *, cell_of: Callable[[str], str | None] | None = None,
        read_options: Mapping[str, Any] | None = None, idle_s: float = 900.0, grace_s: float = 5.0,
        delivered: Mapping[str, float] | None = None, skip: Iterable[Path] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.state = state
        self._cell_of = cell_of
        self._options = dict(read_options or {})
        self._idle_s = idle_s
        self._grace_s = grace_s
        self._delivered = dict(delivered or {})
        self._skip = {Path(p).resolve() for p in skip}
        self._clock = clock
        self._shrunk_since: dict[str, float] = {}
        self._last_stat: dict[str, tuple[int, int]] = {}
        self._said: dict[str, str] = {}  # file -> the last reading problem reported
        self._scratch = tempfile.TemporaryDirectory(prefix="celltwin-watch-")

    def close(self) -> None:
        self._scratch.cleanup()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def files(self) -> list[Path]:
        """The files followed now: the file arguments, and the data files of the folders."""
        found: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                found += sorted(p for p in path.iterdir() if p.is_file() and _is_data(p))
            elif path.is_file():
                found.append(path)
        return [p for p in dict.fromkeys(found) if p.resolve() not in self._skip and self._cell(p) is not False]

    def poll(self) -> list[Update]:
        """One pass over every file: an :class:`Update` for each file with new rows or news."""
        updates = []
        for path in self.files():
            update = self._poll_file(path)
            if update is not None:
                updates.append(update)
        return updates

    def commit(self, update: Update) -> None:
        """Count ``update``'s rows as sent (call once they are acknowledged; then save the state)."""
        if update.state is None:  # nothing was read
            return
        self.state.files[_key(update.path)] = update.state
        for cell in update.state.rows:  # counted in the state from now on
            self._delivered.pop(cell, None)

    # ------------------------------------------------------------------ one file

    def _cell(self, path: Path) -> str | None | bool:
        """The cell id from the name pattern (None: the reader's), or False: not followed."""
        if self._cell_of is None:
            return None
        cell = self._cell_of(path.name)
        return False if cell is None else cell

    def _poll_file(self, path: Path) -> Update | None:
        key = _key(path)
        try:
            stat = path.stat()
            sidecar_path = sidecar_of(path)
            sidecar_mtime = sidecar_path.stat().st_mtime_ns if sidecar_path.exists() else 0
        except FileNotFoundError:  # gone between listing and reading: rotated away
            return None
        now = self._clock()
        old = self.state.files.get(key)
        idle = now - stat.st_mtime >= self._idle_s
        stable = self._last_stat.get(key) == (stat.st_size, stat.st_mtime_ns)
        self._last_stat[key] = (stat.st_size, stat.st_mtime_ns)
        unchanged = old is not None and (stat.st_mtime_ns, stat.st_ino, sidecar_mtime) == (
            old.mtime_ns, old.inode, old.sidecar_mtime_ns)
        if unchanged and stat.st_size == old.consumed:
            return self._finished(path, old) if idle and not old.finished else None
        lines = self._is_text(path)
        if not lines and not (stable or idle):
            return None  # a binary file is read once it holds still
        data = path.read_bytes()
        end = len(data) if idle or not lines else data.rfind(b"\n") + 1
        if old is not None and end == old.consumed and unchanged:
            return self._finished(path, old) if idle and not old.finished else None
        try:
            sidecar = _read_sidecar(sidecar_path) if sidecar_mtime else None
        except ValueError as error:
            return self._problem(path, str(error))
        cell = (sidecar or {}).get("cell") or self._cell(path) or None
        copy = Path(self._scratch.name) / path.name
        copy.write_bytes(data[:end])
        try:
            archive = read_archive(copy, cell=cell, **self._options)
        except ReaderError as error:
            return self._problem(path, str(error).replace(str(copy), str(path)))
        finally:
            copy.unlink()
        self._said.pop(key, None)
        new = FileState() if old is None else dataclasses.replace(old, rows=dict(old.rows), first_t=dict(
            old.first_t), last_t=dict(old.last_t))
        new.consumed, new.mtime_ns, new.inode, new.sidecar_mtime_ns = end, stat.st_mtime_ns, stat.st_ino, sidecar_mtime
        notes: list[str] = []
        verdict = self._continuity(key, old, archive.cells, stat.st_ino, end, now) if old is not None else "same"
        if verdict == "wait":
            return None
        if verdict != "same":
            new = dataclasses.replace(FileState(), stream=new.stream + 1, consumed=end, mtime_ns=stat.st_mtime_ns,
                                      inode=stat.st_ino, sidecar_mtime_ns=sidecar_mtime)
            notes.append(f"{path.name}: {verdict}; following it afresh from its first row as stream {new.stream}")
        if archive.report.rows_rejected > new.rejected:
            notes.append(f"{path.name}: {archive.report.rows_rejected - new.rejected} row(s) refused by the reader: "
                         + "; ".join(f"line {r.line}: {r.reason}" for r in archive.report.rejected[:3]))
            new.rejected = archive.report.rows_rejected
        records = [r for r in (self._new_rows(record, new, notes, path) for record in archive.cells.values()) if len(r)]
        if records and new.finished:
            notes.append(f"{path.name}: grows again")
            new.finished = False
        if idle and not new.finished and new.rows:
            new.finished = True
            notes.append(self._finished_note(path, new))
        return Update(path, records, sidecar, notes, new)

    def _is_text(self, path: Path) -> bool:
        if path.suffix.lower() in _BINARY_SUFFIXES:
            return False
        try:
            return (self._options.get("format") or detect_format(path)) in _LINE_FORMATS
        except (ReaderError, OSError):
            return False

    def _continuity(self, key: str, old: FileState, cells: Mapping[str, CellRecord], inode: int, size: int,
                    now: float) -> str:
        """"same" stream, "wait" (shorter: maybe a rewrite in progress), or why it is a new stream."""
        shorter = False
        for name, sent in old.rows.items():
            record = cells.get(name)
            if not sent:
                continue
            if record is None or len(record) == 0:
                shorter = True
                continue
            if abs(float(record.t[0]) - old.first_t[name]) > _SAME_T_S:
                if inode != old.inode:
                    return "replaced by a new inode with other rows"
                return "truncated and written anew" if size < old.consumed else "rewritten with other rows"
            if len(record) < sent:
                shorter = True
            elif abs(float(record.t[sent - 1]) - old.last_t[name]) > _SAME_T_S:
                return "rewritten with other rows"
        if not shorter:
            self._shrunk_since.pop(key, None)
            return "same"
        since = self._shrunk_since.setdefault(key, now)
        if now - since < self._grace_s:
            return "wait"
        del self._shrunk_since[key]
        return "rotated (a new inode with fewer rows)" if inode != old.inode else "truncated (fewer rows than were sent)"

    def _new_rows(self, record: CellRecord, state: FileState, notes: list[str], path: Path) -> CellRecord:
        """The rows of ``record`` past those sent, counted in ``state`` as sent."""
        start = state.rows.get(record.cell, 0)
        delivered = self._delivered.get(record.cell)
        if delivered is not None:  # sent just before a kill, before the state was saved
            skipped = int(np.searchsorted(record.t[start:], delivered, side="right"))
            if skipped:
                notes.append(f"{path.name}: {skipped} row(s) of cell {record.cell} were delivered before the "
                             "restart but not yet in the state file; not sent again")
                start += skipped
        if len(record):  # every row of the file is sent once these are
            state.first_t.setdefault(record.cell, float(record.t[0]))
            state.rows[record.cell] = len(record)
            state.last_t[record.cell] = float(record.t[-1])
        return record.rows(slice(min(start, len(record)), None))

    def _finished(self, path: Path, old: FileState) -> Update | None:
        if not old.rows:
            return None
        state = dataclasses.replace(old, finished=True)
        return Update(path, [], None, [self._finished_note(path, state)], state)

    def _finished_note(self, path: Path, state: FileState) -> str:
        cells = ", ".join(f"{c} ({n:,} rows)" for c, n in state.rows.items())
        return f"{path.name}: finished, no growth for {self._idle_s:g} s: {cells}"

    def _problem(self, path: Path, message: str) -> Update | None:
        """A file the reader refuses now (often: a header without rows yet); said once until it changes."""
        key = _key(path)
        if self._said.get(key) == message:
            return None
        self._said[key] = message
        return Update(path, [], None, [f"{path.name}: not read yet: {message}"], None)


def _is_data(path: Path) -> bool:
    name = path.name
    return not (name.startswith(".") or name.endswith("~") or path.suffix.lower() in _NOT_DATA)


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: {error}") from None


def _key(path: Path) -> str:
    return str(path.resolve())
