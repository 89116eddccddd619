"""The shared core: a table of vendor columns in, wire-unit cells out.

Every format reader only finds where the data starts and which column plays
which role (a :class:`Layout`); this module does the rest in one place, so a
unit, sign or time rule is fixed once for all cyclers:

* Delimited text is read by ``pyarrow.csv`` as strings and converted column by
  column with Arrow kernels. A row is visited in Python only when it failed
  (wrong field count, unparseable value), which keeps the bulk path at
  millions of rows per second and still names each bad row's line.
* Rows that fail are rejected and reported; the rest are kept in file order.
  Nothing is sorted, resampled or interpolated, so a gap in the file stays a
  gap in the twin's input.
* Time: absolute timestamps win (a pause on the cycler is real time for the
  cell); when the file also has a sub-second elapsed clock that agrees with
  the timestamps, the elapsed clock is anchored to them to keep its
  resolution. Elapsed-only files start at a given or the default epoch,
  and the report says which.
* Sign: step or state labels (``D``/``C``, ``CC_DChg``) decide where a vendor
  prints magnitudes; otherwise the vendor's documented convention or the
  caller's ``discharge_positive``; with neither, the voltage trend under load
  (voltage falls while discharging) decides, or the file is kept as it is with
  a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .convert import as_strings, durations, looks_like_durations, looks_numeric, numbers, timestamps
from .model import MAX_EXAMPLES, Archive, CellRecord, MissingColumnError, ParseReport, ReaderError, RejectedRow
from .text import TextTable, read_delimited
from .units import WIRE_UNITS, conversion, split_header

__all__ = [
    "DEFAULT_EPOCH",
    "ROLES",
    "Layout",
    "Options",
    "normalise",
    "require",
    "header_key",
    "pick",
    "read_text",
]

# Elapsed-only files without a start in their header begin here (1970-01-01 UTC),
# a value no real test has, so a plot or a query makes the missing date obvious.
DEFAULT_EPOCH = 0.0

# Roles a column can play. "time" is elapsed test time, "timestamp" absolute time.
ROLES = ("time", "timestamp", "voltage", "current", "temperature", "cycle", "step", "cell", "state")
_QUANTITY = {"time": "time", "voltage": "voltage", "current": "current", "temperature": "temperature"}


@dataclass
class Layout:
    """Where the quantities are in a vendor table and how to read them.

    ``columns`` maps a role (:data:`ROLES`) to a column of the table, ``units``
    a role to the unit its values are in. ``state_sign`` turns the state/step
    label column into +1 (charge), -1 (discharge) or 0 (keep the file's sign).
    ``discharge_positive`` is the vendor's documented convention when labels
    are absent (None when the vendor has none).
    """

    format: str
    columns: dict[str, str]
    units: dict[str, str] = field(default_factory=dict)
    state_sign: Callable[[pa.ChunkedArray], np.ndarray] | None = None
    discharge_positive: bool | None = None
    timestamp_formats: Sequence[str] = ()
    decimal_comma: bool = False
    start: float | None = None  # epoch seconds of elapsed 0, from the file's header
    headers: dict[str, str] = field(default_factory=dict)  # table column -> header as printed


@dataclass
class Options:
    """What a caller can tell a reader that the file does not say."""

    start: float | None = None  # epoch seconds of elapsed time 0
    tz: str | None = None  # zone of naive timestamps, e.g. "Europe/Berlin"
    discharge_positive: bool | None = None  # None: labels, vendor convention, then voltage trend
    cell: str | None = None  # name of a one-cell file, or the cell to pick


# --------------------------------------------------------------------------- sign


def _trend_score(v: np.ndarray, i: np.ndarray) -> float | None:
    """Agreement of current sign and voltage trend: +1 charge raises the voltage.

    With lithiation (discharge) negative, the voltage falls under negative
    current and rises under positive current, in full cells and in anode
    half-cells alike. None when there is too little current to tell.
    """
    if i.size < 3:
        return None
    dv = np.diff(v)
    cur = i[1:]
    scale = np.nanmax(np.abs(i))
    if not np.isfinite(scale) or scale == 0.0:
        return None
    active = (np.abs(cur) > 0.05 * scale) & (dv != 0)
    if active.sum() < 10:
        return None
    return float(np.mean(np.sign(dv[active]) * np.sign(cur[active])))


def _apply_sign(
    i: np.ndarray, v: np.ndarray, labels: np.ndarray | None, layout: Layout, options: Options, report: ParseReport
) -> np.ndarray:
    if labels is not None:
        report.sign_convention = (
            f"from the {report.columns['state']!r} labels: discharge steps negative, charge steps positive"
        )
        return np.where(labels != 0, labels * np.abs(i), i)
    given = options.discharge_positive
    source = "given"
    if given is None and layout.discharge_positive is not None:
        given, source = layout.discharge_positive, f"{layout.format} convention"
    score = _trend_score(v, i)
    if given is None:
        if score is None or abs(score) < 0.2:
            report.sign_convention = "kept as in the file (too little current to detect the convention)"
            report.warn("current sign convention could not be detected; pass discharge_positive=True/False")
            return i
        given, source = score < 0, f"detected from the voltage trend (score {score:+.2f})"
    elif score is not None and abs(score) >= 0.5 and (score < 0) != given:
        report.warn(
            f"the voltage trend (score {score:+.2f}) suggests discharge_positive={score < 0}, "
            f"but {source} says {given}; check the channel wiring or pass discharge_positive"
        )
    report.sign_convention = f"discharge {'positive' if given else 'negative'} in the file ({source})" + (
        "; negated" if given else ""
    )
    return -i if given else i


# --------------------------------------------------------------------------- normalise


def require(layout: Layout, header: Sequence[str] = ()) -> None:
    """Raise :class:`MissingColumnError` unless voltage, current and a time are mapped."""
    cols = layout.columns
    listing = f"; the file's columns are {list(header)}" if header else ""
    for role in ("voltage", "current"):
        if role not in cols:
            raise MissingColumnError(
                f"{layout.format}: no {role} column found; pass mapping={{'{role}': 'COLUMN'}} "
                f"(CLI: --map {role}=COLUMN){listing}"
            )
    if "time" not in cols and "timestamp" not in cols:
        raise MissingColumnError(
            f"{layout.format}: no time column found; pass mapping={{'time': 'COLUMN'}} for elapsed "
            f"time or {{'timestamp': 'COLUMN'}} for absolute time (CLI: --map time=COLUMN){listing}"
        )


def normalise(
    source: pa.Table | TextTable, layout: Layout, options: Options, report: ParseReport
) -> Archive:
    """Convert a vendor table to wire-unit cells, rejecting rows that fail."""
    require(layout)
    text = source if isinstance(source, TextTable) else None
    table = text.table if text else source
    cols = layout.columns
    if "time" in cols and "timestamp" not in cols and _holds_dates(table.column(cols["time"]), layout):
        cols["timestamp"] = cols.pop("time")  # a "Time" column of dates is absolute time
    headers = layout.headers or {c: c for c in cols.values()}
    report.format = layout.format
    report.columns = {role: headers.get(c, c) for role, c in cols.items()}

    values, failed = _convert(table, layout, headers, options, report)
    bad = np.logical_or.reduce(list(failed.values()))
    blank = _blank_rows(table, cols)
    bad &= ~blank  # blank lines are not rows
    keep = ~bad & ~blank
    skipped = text.skipped if text else []
    report.rows_read = int(table.num_rows - blank.sum()) + len(skipped)
    if blank.any():
        report.warn(f"{int(blank.sum())} blank rows skipped")
    _report_rejects(report, table, cols, headers, bad, failed, text, skipped)

    t = _assemble_time(values, keep, layout, options, report)
    v = values["voltage"][keep]
    labels = layout.state_sign(table.column(cols["state"]))[keep] if "state" in cols and layout.state_sign else None
    i = _apply_sign(values["current"][keep], v, labels, layout, options, report)
    temp = values["temperature"][keep] if "temperature" in values else None
    cycle = values["cycle"][keep].astype(np.int64) if "cycle" in values else None
    step = values["step"][keep].astype(np.int64) if "step" in values else None
    report.rows_kept = int(keep.sum())
    backwards = int(np.sum(np.diff(t) < 0))
    if backwards:
        report.warn(f"time goes backwards {backwards} times; rows are kept in file order")

    meta = {
        "format": layout.format,
        "source": report.source,
        "time_origin": report.time_origin,
        "start_assumed": report.start_assumed,
    }
    if "cell" not in cols:
        name = options.cell or Path(report.source).stem
        return Archive({name: CellRecord(name, t, v, i, temp, cycle, step, meta)}, report)
    names = as_strings(table.column(cols["cell"])).to_numpy(zero_copy_only=False)[keep]
    cells = {}
    for name in dict.fromkeys(names.tolist()):
        if options.cell is not None and name != options.cell:
            continue
        sel = names == name
        cells[name] = CellRecord(
            str(name), t[sel], v[sel], i[sel],
            temp[sel] if temp is not None else None,
            cycle[sel] if cycle is not None else None,
            step[sel] if step is not None else None,
            dict(meta),
        )
    if options.cell is not None and not cells:
        raise ReaderError(f"cell {options.cell!r} is not in {report.source}; it holds {sorted(set(names))}")
    return Archive(cells, report)


def _holds_dates(col: pa.ChunkedArray, layout: Layout) -> bool:
    if pa.types.is_timestamp(col.type):
        return True
    if not pa.types.is_string(col.type) or len(col) == 0:
        return False
    return not looks_numeric(col, layout.decimal_comma) and not looks_like_durations(col)


def _blank_rows(table: pa.Table, cols: dict[str, str]) -> np.ndarray:
    """Rows with none of the required quantities: empty lines, not data."""
    blank = np.ones(table.num_rows, dtype=bool)
    for role in ("voltage", "current", "time", "timestamp"):
        if role in cols:
            col = table.column(cols[role])
            empty = pc.equal(pc.utf8_length(as_strings(col)), 0) if pa.types.is_string(col.type) else pc.is_null(col)
            blank &= empty.to_numpy(zero_copy_only=False)
    return blank


def _convert(
    table: pa.Table, layout: Layout, headers: dict[str, str], options: Options, report: ParseReport
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Wire-unit values per role, and per role the mask of rows that failed."""
    cols = layout.columns
    values: dict[str, np.ndarray] = {}
    failed: dict[str, np.ndarray] = {}
    for role in ("voltage", "current", "temperature", "time"):
        if role not in cols:
            continue
        col = table.column(cols[role])
        if role == "time" and looks_like_durations(col):
            raw, ok = durations(col)
            report.units[role] = "h:mm:ss"
            scale, offset = 1.0, 0.0
        else:
            raw, ok = numbers(col, layout.decimal_comma)
            unit = layout.units.get(role)
            scale, offset = conversion(_QUANTITY[role], unit, headers.get(cols[role], cols[role]))
            report.units[role] = unit or WIRE_UNITS[_QUANTITY[role]]
        if role == "temperature":  # an empty temperature is a missing reading, not a bad row
            empty = np.isnan(raw) & ~ok
            if pa.types.is_string(col.type):
                empty &= pc.equal(pc.utf8_length(as_strings(col)), 0).to_numpy(zero_copy_only=False)
            ok = ok | empty
        values[role], failed[role] = raw * scale + offset, ~ok
    if "timestamp" in cols:
        col = table.column(cols["timestamp"])
        header = headers.get(cols["timestamp"], cols["timestamp"])
        values["timestamp"], ok = _epoch_seconds(col, header, layout, options)
        failed["timestamp"] = ~ok
        text = pa.types.is_string(col.type) and not looks_numeric(col, layout.decimal_comma)
        naive = (pa.types.is_timestamp(col.type) and col.type.tz is None) or text
        if text:
            report.units["timestamp"] = "date-time text"
        elif pa.types.is_timestamp(col.type):
            report.units["timestamp"] = str(col.type)
        else:
            report.units["timestamp"] = layout.units.get("timestamp", "s") + " since the epoch"
        if naive and options.tz is None:
            report.warn(
                f"timestamps in {header!r} carry no time zone; "
                "read as UTC (pass tz='Area/City' for the cycler's local time)"
            )
    for role in ("cycle", "step"):
        if role in cols:
            raw, ok = numbers(table.column(cols[role]), layout.decimal_comma)
            values[role], failed[role] = raw, ~(ok & (raw == np.round(raw)))
    return values, failed


def _epoch_seconds(
    col: pa.ChunkedArray, header: str, layout: Layout, options: Options
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute time from a timestamp column, a text column, or numbers since the epoch."""
    if pa.types.is_timestamp(col.type):
        zoned = col if col.type.tz else pc.assume_timezone(col, options.tz or "UTC")
        micros = pc.cast(pc.cast(zoned, pa.timestamp("us", "UTC")), pa.int64())
        ok = pc.is_valid(col).to_numpy(zero_copy_only=False)
        return np.where(ok, micros.to_numpy(zero_copy_only=False) / 1e6, np.nan), ok
    if pa.types.is_string(col.type) and not looks_numeric(col, layout.decimal_comma):
        return timestamps(col, layout.timestamp_formats, options.tz)
    raw, ok = numbers(col, layout.decimal_comma)
    scale, _ = conversion("time", layout.units.get("timestamp", "s"), header)
    return raw * scale, ok


def _assemble_time(
    values: dict[str, np.ndarray], keep: np.ndarray, layout: Layout, options: Options, report: ParseReport
) -> np.ndarray:
    elapsed = values["time"][keep] if "time" in values else None
    stamps = values["timestamp"][keep] if "timestamp" in values else None
    if stamps is not None and elapsed is not None and stamps.size:
        offset = stamps - elapsed
        spread = float(np.max(offset) - np.min(offset))
        if spread <= 2.0:
            # Exporters truncate timestamps to their resolution: the true offset lies
            # in [max(offset), min(offset) + 1 s); its lower end is exact as soon as
            # one row falls on a whole second. Rounded timestamps fall back to the median.
            low, high = float(np.max(offset)), float(np.min(offset)) + 1.0
            anchor = low if low < high else float(np.median(offset))
            report.time_origin = "timestamps (elapsed time anchored to them for sub-second resolution)"
            return elapsed + anchor
        report.warn(
            f"elapsed time and timestamps disagree by up to {spread:.0f} s (paused test or clock change); "
            "timestamps used"
        )
    if stamps is not None:
        report.time_origin = "timestamps"
        return stamps
    assert elapsed is not None
    if options.start is not None:
        report.time_origin = "given start + elapsed"
        return options.start + elapsed
    if layout.start is not None:
        report.time_origin = "start from the file header + elapsed"
        return layout.start + elapsed
    report.time_origin = f"default epoch {DEFAULT_EPOCH:.0f} + elapsed"
    report.start_assumed = True
    report.warn("the file has elapsed time only and no start date; t starts at the default epoch (pass start=...)")
    return DEFAULT_EPOCH + elapsed


def _report_rejects(
    report: ParseReport,
    table: pa.Table,
    cols: dict[str, str],
    headers: dict[str, str],
    bad: np.ndarray,
    reasons: dict[str, np.ndarray],
    text: TextTable | None,
    skipped: list[tuple[int | None, str, str]],
) -> None:
    rows = np.flatnonzero(bad)
    examples: list[tuple[int | None, RejectedRow]] = []
    lines = text.line_of(rows[:MAX_EXAMPLES]) if text else rows[:MAX_EXAMPLES] + 1
    for row, line in zip(rows[:MAX_EXAMPLES], lines):
        parts = []
        for role, mask in reasons.items():
            if mask[row]:
                raw = table.column(cols[role])[int(row)].as_py()
                parts.append(f"{headers.get(cols[role], cols[role])}={raw!r}")
        reason = "cannot parse " + ", ".join(parts)
        examples.append((int(line), RejectedRow(int(line), reason, "; ".join(parts))))
    for line, line_text, why in skipped[:MAX_EXAMPLES]:
        examples.append((line, RejectedRow(line, why, line_text)))
    examples.sort(key=lambda e: (e[0] is None, e[0] or 0))
    report.reject_many(int(rows.size) + len(skipped), [e[1] for e in examples])


# --------------------------------------------------------------------------- headers


def header_key(name: str) -> str:
    """A header's base name folded for matching: ``Test_Time(s)`` -> ``test time``."""
    base, _ = split_header(name)
    return " ".join(base.replace("_", " ").replace(".", " ").lower().split())


def pick(header: Sequence[str], aliases: Sequence[str]) -> str | None:
    """The first header whose full text or base name is one of ``aliases`` (case-insensitive).

    Aliases are tried in order, so the most specific spelling wins.
    """
    full = {" ".join(h.lower().split()): h for h in reversed(header)}
    base = {header_key(h): h for h in reversed(header)}
    for alias in aliases:
        a = " ".join(alias.lower().split())
        if a in full:
            return full[a]
        if a in base:
            return base[a]
    return None


def read_text(
    path: Path,
    *,
    header_line: int,
    delimiter: str,
    encoding: str,
    header: list[str],
    layout: Layout,
    options: Options,
    report: ParseReport,
) -> Archive:
    """Read a delimited file whose ``layout`` names columns by their header text."""
    require(layout, header)
    wanted = list(layout.columns.values())
    text = read_delimited(
        path, header_line=header_line, delimiter=delimiter, encoding=encoding, header=header, wanted=wanted
    )
    position = {name: f"c{header.index(name)}" for name in wanted}
    layout.columns = {role: position[name] for role, name in layout.columns.items()}
    layout.headers = {position[name]: name for name in wanted}
    return normalise(text, layout, options, report)


