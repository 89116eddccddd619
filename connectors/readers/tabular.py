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
  gap in the twin's input. An optional reading (temperature, a charge
  counter) that is empty or ``NaN`` is missing on its row, not a bad row.
  Rows that are no cycler sample (impedance points: a ``frequency`` above 0;
  rows a vendor's ``mode`` column marks as unreadable) are rejected with the reason.
* Rows of a cell that repeat a timestamp are settled by :mod:`.repeats`, the
  cycler's charge counters are read by :mod:`.counters`.
* Time: absolute timestamps win (a pause on the cycler is real time for the
  cell); when the file also has an elapsed clock finer than the timestamps,
  it is anchored to them to keep its resolution, stretch by stretch when a
  pause or a clock change moves one against the other (never back in time:
  a clock set back leaves the time to the elapsed clock). Elapsed-only files
  start at a given or the default epoch, and the report says which.
* Sign: step or state labels (``D``/``C``, ``CC_DChg``) decide where a vendor
  prints magnitudes; otherwise the vendor's documented convention or the
  caller's ``discharge_positive``; with neither, the voltage trend under load
  (voltage falls while discharging) decides, or the file is kept as it is with
  a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import counters, repeats
from .convert import (
    as_strings, carries_zone, date_format, durations, looks_like_durations, looks_numeric, numbers, timestamps,
)
from .model import (
    MAX_EXAMPLES, AmbiguousUnitError, Archive, CellRecord, MissingColumnError, ParseReport, ReaderError, RejectedRow,
)
from .text import TextTable, read_delimited
from .units import DATENUM, SERIAL_DATE, WIRE_UNITS, conversion, epoch_conversion, split_header

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

# Roles a column can play. "time" is elapsed test time, "timestamp" absolute time; the
# counter roles are the cycler's charge counters (see counters); "frequency" marks
# impedance rows, "mode" a vendor's control-mode column.
ROLES = (
    "time", "timestamp", "voltage", "current", "temperature", "cycle", "step", "cell", "state",
    *counters.COUNTER_ROLES, "frequency", "mode",
)
_QUANTITY = {
    "time": "time", "voltage": "voltage", "current": "current", "temperature": "temperature",
    **{role: "charge" for role in counters.COUNTER_ROLES},
}
# Readings a row may lack: empty or one of these spellings is a missing value, not a bad row.
_OPTIONAL = ("temperature", *counters.COUNTER_ROLES)
_MISSING = ("", "nan", "na", "n/a", "null", "none")
# Elapsed time and timestamps whose offset jumps by more than this are a pause or a clock change,
# unless the jump is gone again within this many rows (exporter jitter).
_CLOCK_JUMP_S = 2.0
_JITTER_ROWS = 2


@dataclass
class Layout:
    """Where the quantities are in a vendor table and how to read them.

    ``columns`` maps a role (:data:`ROLES`) to a column of the table, ``units``
    a role to the unit its values are in. ``state_sign`` turns the state/step
    label column into +1 (charge), -1 (discharge) or 0 (keep the file's sign).
    ``discharge_positive`` is the vendor's documented convention when labels
    are absent (None when the vendor has none). ``mode_exclusion`` turns the
    ``mode`` column into the rows that are no usable sample, and says why.
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
    mode_exclusion: Callable[[pa.ChunkedArray], tuple[np.ndarray, str]] | None = None
    mean_current: bool = False  # the current column holds each row's mean since the row before


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
) -> tuple[np.ndarray, bool]:
    """The current in the wire's sign, and whether the file's sign was negated to get it."""
    if labels is not None:
        report.sign_convention = (
            f"from the {report.columns['state']!r} labels: discharge steps negative, charge steps positive"
        )
        return np.where(labels != 0, labels * np.abs(i), i), False
    given = options.discharge_positive
    source = "given"
    if given is None and layout.discharge_positive is not None:
        given, source = layout.discharge_positive, f"{layout.format} convention"
    score = _trend_score(v, i)
    if given is None:
        if score is None or abs(score) < 0.2:
            report.sign_convention = "kept as in the file (too little current to detect the convention)"
            report.warn("current sign convention could not be detected; give --discharge-positive or "
                        "--discharge-negative (Python: discharge_positive=True/False)")
            return i, False
        given, source = score < 0, f"detected from the voltage trend (score {score:+.2f})"
    elif score is not None and abs(score) >= 0.5 and (score < 0) != given:
        report.warn(
            f"the voltage trend (score {score:+.2f}) suggests discharge_positive={score < 0}, "
            f"but {source} says {given}; check the channel wiring or give --discharge-positive or "
            "--discharge-negative"
        )
    report.sign_convention = f"discharge {'positive' if given else 'negative'} in the file ({source})" + (
        "; negated" if given else ""
    )
    return (-i if given else i), bool(given)


# --------------------------------------------------------------------------- normalise


def require(layout: Layout, header: Sequence[str] = (), table: pa.Table | None = None) -> None:
    """Raise one error listing everything a file lacks to be read: each of voltage, current
    and a time without a column, and each unit neither its header states nor was given
    (:class:`MissingColumnError` if a column is missing, else :class:`AmbiguousUnitError`),
    so a person fixes them in one go. A time column's missing unit is only known with the
    ``table`` (``h:mm:ss`` text and dates need none)."""
    cols = layout.columns
    missing = [f"no {role} column found; give --map {role}=COLUMN (Python: mapping={{'{role}': 'COLUMN'}})"
               for role in ("voltage", "current") if role not in cols]
    if "time" not in cols and "timestamp" not in cols:
        missing.append("no time column found; give --map time=COLUMN for elapsed time or --map timestamp=COLUMN "
                       "for absolute time (Python: mapping={'time': 'COLUMN'})")
    problems = missing + _unit_problems(layout, table)
    if not problems:
        return
    if len(problems) == 1:
        text, listing = problems[0], f"; the file's columns are {list(header)}"
    else:
        text, listing = "".join(f"\n  - {p}" for p in problems), f"\n  (the file's columns are {list(header)})"
    raise (MissingColumnError if missing else AmbiguousUnitError)(f"{layout.format}: {text}{listing if header else ''}")


def _unit_problems(layout: Layout, table: pa.Table | None) -> list[str]:
    """Why each unit of voltage, current, temperature and time cannot be read (see require)."""
    problems = []
    for role in ("voltage", "current", "time", "temperature"):
        column = layout.columns.get(role)
        if column is None or role not in _QUANTITY:
            continue
        unit = layout.units.get(role)
        if role == "time" and (unit is None and (table is None or _holds_dates(table.column(column), layout))
                               or table is not None and looks_like_durations(table.column(column))):
            continue  # h:mm:ss text, whatever its header calls it, or dates (absolute time) need no unit
        try:
            conversion(_QUANTITY[role], unit, layout.headers.get(column, column))
        except AmbiguousUnitError as error:
            problems.append(str(error))
    return problems


def normalise(
    source: pa.Table | TextTable, layout: Layout, options: Options, report: ParseReport
) -> Archive:
    """Convert a vendor table to wire-unit cells, rejecting rows that fail."""
    text = source if isinstance(source, TextTable) else None
    table = text.table if text else source
    require(layout, table=table)
    cols = layout.columns
    if "time" in cols and "timestamp" not in cols and _holds_dates(table.column(cols["time"]), layout):
        cols["timestamp"] = cols.pop("time")  # a "Time" column of dates is absolute time
    headers = layout.headers or {c: c for c in cols.values()}
    _drop_unusable_counters(layout, headers, report)
    report.format = layout.format
    report.columns = {role: headers.get(c, c) for role, c in cols.items()}

    values, failed = _convert(table, layout, headers, options, report)
    blank = _blank_rows(table, cols)
    _drop_unreadable_timestamps(table, cols, headers, values, failed, blank, report)
    excluded = {role: (mask & ~blank, why) for role, (mask, why) in _not_samples(table, layout).items()}
    bad = np.logical_or.reduce([*failed.values(), *(mask for mask, _ in excluded.values())])
    bad &= ~blank  # blank lines are not rows
    keep = ~bad & ~blank
    skipped = text.skipped if text else []
    report.rows_read = int(table.num_rows - blank.sum()) + len(skipped)
    if blank.any():
        report.warn(f"{int(blank.sum())} blank rows skipped")
    _report_rejects(report, table, cols, headers, bad, failed, excluded, text, skipped)

    t = _assemble_time(values, keep, layout, options, report)
    v = values["voltage"][keep]
    labels = layout.state_sign(table.column(cols["state"]))[keep] if "state" in cols and layout.state_sign else None
    i, negated = _apply_sign(values["current"][keep], v, labels, layout, options, report)
    rows = {
        "t": t, "v": v, "i": i,
        "temp_c": values["temperature"][keep] if "temperature" in values else None,
        "cycle": values["cycle"][keep].astype(np.int64) if "cycle" in values else None,
        "step": values["step"][keep].astype(np.int64) if "step" in values else None,
    }
    # A signed counter follows the current into the wire's sign; a row's direction is its
    # step label where it has one, else the sign of its current.
    counts = {role: values[role][keep] * (-1.0 if negated else 1.0) for role in counters.COUNTER_ROLES
              if role in values}
    direction = np.sign(i) if labels is None else np.where(labels != 0, labels, np.sign(i))

    meta = {
        "format": layout.format,
        "source": report.source,
        "time_origin": report.time_origin,
        "start_assumed": report.start_assumed,
    }
    cells: dict[str, CellRecord] = {}
    for name, sel in _cells(table, cols, keep, options, report):
        record = CellRecord(str(name), **{k: a[sel] if a is not None else None for k, a in rows.items()},
                            meta=dict(meta), mean_current=layout.mean_current)
        record.charge_mah, record.discharge_mah = counters.split(
            {role: c[sel] for role, c in counts.items()}, direction[sel]
        )
        cells[str(name)] = record
    if "timestamp" not in values:
        _join_restarts(cells, report)
    elif options.tz:
        _unfold_repeated_hour(cells, options.tz, report)
    _settle_repeats(cells, report)
    return Archive(cells, report)


def _drop_unreadable_timestamps(table: pa.Table, cols: dict[str, str], headers: dict[str, str],
                                values: dict[str, np.ndarray], failed: dict[str, np.ndarray],
                                blank: np.ndarray, report: ParseReport) -> None:
    """A file with elapsed time whose timestamp column mostly cannot be read as times (a date
    without the time of day, ``02.07.2017``; a format not known here) is read on its elapsed
    time, with a warning, rather than every row rejected for the timestamp."""
    if "time" not in values or "timestamp" not in failed:
        return
    rows = ~blank & ~failed["time"]
    if not rows.any() or failed["timestamp"][rows].mean() <= 0.5:
        return
    column = cols.pop("timestamp")
    example = as_strings(table.column(column)).to_numpy(zero_copy_only=False)[np.flatnonzero(rows)[0]]
    del values["timestamp"], failed["timestamp"]
    report.columns.pop("timestamp", None)
    report.units.pop("timestamp", None)
    report.warn(f"timestamps in {headers.get(column, column)!r} cannot be read as times (e.g. {example!r}): "
                "elapsed time is used alone")


def _file_cell(source: str) -> str:
    """A one-cell file's cell: its name without the extension, nor BDF's ``.bdf`` before
    one (``A7.bdf.csv`` holds cell A7)."""
    return Path(source).stem.removesuffix(".bdf")


def _cells(
    table: pa.Table, cols: dict[str, str], keep: np.ndarray, options: Options, report: ParseReport
) -> list[tuple[str, np.ndarray | slice]]:
    """Each cell's name and its kept rows (all of them in a one-cell file)."""
    if "cell" not in cols:
        return [(options.cell or _file_cell(report.source), slice(None))]
    # Codes, not a million Python strings: one comparison of integers per cell.
    encoded = pc.dictionary_encode(as_strings(table.column(cols["cell"]))).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)[keep]
    present, first = np.unique(codes, return_index=True)
    labels = encoded.dictionary.to_pylist()
    order = present[np.argsort(first)]  # the file's order of first appearance
    chosen = [c for c in order.tolist() if options.cell is None or labels[c] == options.cell]
    if options.cell is not None and not chosen:
        found = sorted(labels[c] for c in order.tolist())
        raise ReaderError(f"cell {options.cell!r} is not in {report.source}; it holds {found}")
    return [(labels[c], codes == c) for c in chosen]


def _join_restarts(cells: dict[str, CellRecord], report: ParseReport) -> None:
    """A file with elapsed time alone whose clock starts again (a test resumed on the cycler,
    two runs of one cell exported together) goes on from the row before each restart, one
    typical sampling step later: otherwise every row after it is at or before the cell's
    last sample, and the pipeline refuses the rest of the test. A restart is a drop to less
    than half the elapsed time before it (jitter and repeats are left to `repeats`)."""
    joined = []
    for name, record in cells.items():
        t = record.t
        step = np.diff(t)
        forward = step[step > 0]
        if not forward.size:
            continue
        elapsed = t - t[0]
        restarts = np.flatnonzero((step < 0) & (elapsed[1:] < elapsed[:-1] / 2)) + 1
        if not restarts.size:
            continue
        t, typical = t.copy(), float(np.median(forward))
        for k in restarts:
            t[k:] += t[k - 1] + typical - t[k]
        cells[name] = replace(record, t=t)
        joined += [f"{name} at its sample {k + 1}" for k in restarts[:3]] + (["..."] if restarts.size > 3 else [])
    if joined:
        report.warn(f"the elapsed time starts again ({', '.join(joined)}): each restart goes on one sampling step "
                    "after the row before it (a pause between is not in the file)")


def _unfold_repeated_hour(cells: dict[str, CellRecord], tz: str, report: ParseReport) -> None:
    """Wall-clock timestamps in a zone whose clocks go back (the end of summer time) repeat
    an hour, which reads as its first pass: the rows of the second pass are set an hour on
    (before, they went back in time, and the pipeline refused them as stale). A step back
    in time counts as one where the wall clock there is ambiguous and it is no larger than
    the change of the zone's offset."""
    from zoneinfo import ZoneInfo

    zone, unfolded = ZoneInfo(tz), 0
    for name, record in cells.items():
        t = record.t
        for k in np.flatnonzero(np.diff(t) < 0) + 1:
            wall = datetime.fromtimestamp(t[k], zone).replace(tzinfo=None)
            first, second = (wall.replace(tzinfo=zone, fold=fold).utcoffset() for fold in (0, 1))
            change = (first - second).total_seconds()
            if not 0 < t[k - 1] - t[k] <= change:
                continue
            after = np.flatnonzero(t[k:] > t[k - 1])
            end = k + int(after[0]) if after.size else t.size
            t = t.copy() if t is record.t else t
            t[k:end] += change
            unfolded += end - k
        cells[name] = replace(record, t=t)
    if unfolded:
        report.warn(f"{unfolded} rows in the hour the {tz} clocks went back read as its second pass, an hour on")


def _settle_repeats(cells: dict[str, CellRecord], report: ParseReport) -> None:
    """Drop exact duplicate rows and spread shared timestamps, per cell; report what moved."""
    spread, resolution, backwards = 0, None, 0
    for name, record in cells.items():
        cells[name], done = repeats.settle(record)
        report.rows_duplicate += done.dropped
        spread += done.spread
        if done.resolution is not None:
            resolution = done.resolution if resolution is None else min(resolution, done.resolution)
        backwards += int(np.sum(np.diff(cells[name].t) < 0))
    report.rows_kept = sum(len(r) for r in cells.values())
    if spread:
        report.warn(
            f"{spread} rows shared a timestamp with the row before but differ from it; kept, and spread "
            f"evenly within the file's time resolution of {resolution:.6g} s so that time increases"
        )
    if backwards:
        report.warn(f"time goes backwards {backwards} times; rows are kept in file order")


def _drop_unusable_counters(layout: Layout, headers: dict[str, str], report: ParseReport) -> None:
    """Keep the most direct charge counters; one whose unit is unknown is left out with a warning.

    The counters are optional: a file is still read without them.
    """
    cols = layout.columns
    for role in counters.outranked(set(cols) & set(counters.COUNTER_ROLES)):
        del cols[role]
    for role in [r for r in counters.COUNTER_ROLES if r in cols]:
        column = headers.get(cols[role], cols[role])
        try:
            conversion("charge", layout.units.get(role), column)
        except ReaderError:
            del cols[role]
            unit = layout.units.get(role)
            report.warn(
                f"charge counter {column!r} left out: " + (f"unit {unit!r} is unknown" if unit else "no unit")
                + f"; give --unit {role}=Ah (Python: units={{'{role}': 'Ah'}}) to read it"
            )


def _not_samples(table: pa.Table, layout: Layout) -> dict[str, tuple[np.ndarray, str]]:
    """Per role, the rows that hold no cycler sample and why: impedance points, excluded modes."""
    cols = layout.columns
    out = {}
    if "frequency" in cols:
        freq, _ = numbers(table.column(cols["frequency"]), layout.decimal_comma)
        out["frequency"] = (np.nan_to_num(freq) > 0, "an impedance (EIS) point, not a cycler sample")
    if "mode" in cols and layout.mode_exclusion is not None:
        out["mode"] = layout.mode_exclusion(table.column(cols["mode"]))
    return out


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
    for role in ("voltage", "current", "time", *_OPTIONAL):
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
        if role in _OPTIONAL:  # an empty or NaN reading is missing, not a bad row
            ok = ok | (np.isnan(raw) & _missing(col))
        values[role], failed[role] = raw * scale + offset, ~ok
    if "timestamp" in cols:
        col = table.column(cols["timestamp"])
        header = headers.get(cols["timestamp"], cols["timestamp"])
        text = pa.types.is_string(col.type) and not looks_numeric(col, layout.decimal_comma)
        numeric = not text and not pa.types.is_timestamp(col.type)
        unit = _timestamp_unit(col, layout, report, header) if numeric else layout.units.get("timestamp", "s")
        if text and not layout.timestamp_formats:
            layout = replace(layout, timestamp_formats=_date_formats(col, header, report))
        values["timestamp"], ok = _epoch_seconds(col, header, layout, options, unit)
        failed["timestamp"] = ~ok
        datenum = numeric and unit == DATENUM
        serial = numeric and unit == SERIAL_DATE
        naive = (pa.types.is_timestamp(col.type) and col.type.tz is None) or (text and not carries_zone(col)) \
            or datenum or serial
        if text:
            report.units["timestamp"] = "date-time text"
        elif datenum:
            report.units["timestamp"] = "MATLAB date number (days since year 0)"
        elif serial:
            report.units["timestamp"] = "spreadsheet serial date (days since 1899-12-30)"
        elif pa.types.is_timestamp(col.type):
            report.units["timestamp"] = str(col.type)
        else:
            report.units["timestamp"] = unit + " since the epoch"
        if naive and options.tz is None:
            report.warn(
                f"timestamps in {header!r} carry no time zone; "
                "read as UTC (give --tz Area/City for the cycler's local time; Python: tz=...)"
            )
    for role in ("cycle", "step"):
        if role in cols:
            raw, ok = numbers(table.column(cols[role]), layout.decimal_comma)
            values[role], failed[role] = raw, ~(ok & (raw == np.round(raw)))
    return values, failed


def _missing(col: pa.ChunkedArray) -> np.ndarray:
    """Rows whose value is empty, null or a NaN/NA spelling."""
    if not pa.types.is_string(col.type):
        return np.ones(len(col), dtype=bool)  # typed columns: NaN and null are the only non-numbers
    text = pc.utf8_lower(as_strings(col))
    return pc.is_in(text, value_set=pa.array(_MISSING)).to_numpy(zero_copy_only=False)


# Numbers that, read as seconds since 1970, would date a test to its first days, but are
# days in a date convention of their own: spreadsheet serial dates 1927-2173, MATLAB date
# numbers 1889-2080.
_DAY_NUMBERS = ((SERIAL_DATE, 1e4, 1e5), (DATENUM, 6.9e5, 7.6e5))


def _timestamp_unit(col: pa.ChunkedArray, layout: Layout, report: ParseReport, header: str) -> str:
    """The unit of a numeric timestamp column: the one stated or mapped, else read from its values.

    Unstated, numbers are seconds since 1970 unless every one of them lies where only a
    date in days can (an Arbin ``DateTime`` of 42587.68 is 2016-08-05 16:21, not
    1970-01-01 11:49): then they are spreadsheet serial dates or MATLAB date numbers.
    """
    if "timestamp" in layout.units:
        return layout.units["timestamp"]
    raw, ok = numbers(col, layout.decimal_comma)
    finite = raw[ok]
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        for unit, lo, hi in _DAY_NUMBERS:
            if lo <= low and high < hi:
                name = "spreadsheet serial dates (days since 1899-12-30)" if unit == SERIAL_DATE else (
                    "MATLAB date numbers (days since year 0)")
                report.warn(f"timestamps in {header!r} ({low:.6g} to {high:.6g}) read as {name}: as seconds since "
                            "1970 they would date the test to its first days (give --unit timestamp=s to keep seconds)")
                return unit
    return "s"


def _date_formats(col: pa.ChunkedArray, header: str, report: ParseReport) -> tuple[str, ...]:
    """The date format of a table whose reader names none (ISO needs none), said when the
    other order of day and month would read the column too."""
    fmt, ambiguous = date_format(col)
    if fmt is None:
        return ()
    if ambiguous:
        report.warn(f"dates in {header!r} read as {fmt}: the other order of day and month reads them too, "
                    "but jumps further between rows")
    return (fmt,)


def _epoch_seconds(
    col: pa.ChunkedArray, header: str, layout: Layout, options: Options, unit: str | None = None
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
    unit = unit or layout.units.get("timestamp", "s")
    scale, offset = epoch_conversion(unit, header)
    if unit in (DATENUM, SERIAL_DATE):  # a wall-clock date number: local time in the cycler's zone
        return _wall_clock(raw * scale + offset, options.tz), ok
    return raw * scale + offset, ok


def _wall_clock(naive: np.ndarray, tz: str | None) -> np.ndarray:
    """Epoch seconds of wall-clock seconds read as if UTC, in zone ``tz`` (UTC when None)."""
    if tz is None:
        return naive
    micros = pa.array(np.round(np.nan_to_num(naive) * 1e6).astype(np.int64), pa.timestamp("us"))
    zoned = pc.assume_timezone(micros, tz, ambiguous="earliest", nonexistent="earliest")
    shifted = pc.cast(zoned, pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    return np.where(np.isnan(naive), np.nan, shifted)


def _assemble_time(
    values: dict[str, np.ndarray], keep: np.ndarray, layout: Layout, options: Options, report: ParseReport
) -> np.ndarray:
    elapsed = values["time"][keep] if "time" in values else None
    stamps = values["timestamp"][keep] if "timestamp" in values else None
    if stamps is not None and elapsed is not None and stamps.size:
        return _anchor(stamps, elapsed, report)
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
    report.warn("the file has elapsed time only and no start date; t starts at the default epoch "
                "(give --start 2026-03-01T09:00 or epoch seconds; Python: start=...)")
    return DEFAULT_EPOCH + elapsed


def _anchor(stamps: np.ndarray, elapsed: np.ndarray, report: ParseReport) -> np.ndarray:
    """Elapsed time placed on the timestamps, stretch by stretch between pauses and clock changes.

    The elapsed clock keeps the resolution the twin integrates current with;
    the timestamps say when. Within a stretch the two differ by a constant:
    exporters truncate timestamps to their resolution, so that constant lies in
    [max(offset), min(offset) + 1 s), whose lower end is exact as soon as one
    row falls on a whole second. Rounded timestamps, jitter and clocks that
    drift apart fall back to the median offset. Where the offset scatters by
    more than a second from row to row, the elapsed clock is the coarser one
    (hours with two decimals) and the timestamps are kept. A pause moves the
    timestamps on against the elapsed clock; where they fall back against it,
    the computer's clock was set back (a time sync, the end of summer time), and
    the cell's time goes on at the offset before.
    """
    offset = stamps - elapsed
    bounds = np.r_[_stretch_starts(offset), offset.size]
    t = stamps.copy()
    drift, coarse, before, set_back = 0.0, 0, -np.inf, []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = offset[lo:hi]
        if part.size > 1 and np.median(np.abs(np.diff(part))) > 1.0:
            coarse += hi - lo
            continue
        middle = float(np.median(part))
        inliers = part[np.abs(part - middle) <= 1.0]
        low, high = float(inliers.max()), float(inliers.min()) + 1.0
        level = low if low < high else middle
        if level < before:
            set_back.append(before - level)
            level = before
        t[lo:hi] = elapsed[lo:hi] + level
        before = level
        drift = max(drift, float(np.ptp(_steady(part))))
    if set_back:
        report.warn(f"the timestamps fall back against the elapsed time {len(set_back)} time(s), by up to "
                    f"{max(set_back):.1f} s (a clock set back: a time sync, the end of summer time): the elapsed time "
                    "goes on through them")
    if coarse:
        report.warn(f"the elapsed time is coarser than the timestamps on {coarse} rows; their timestamps are used")
    if bounds.size > 2:
        report.warn(
            f"elapsed time and timestamps disagree at {bounds.size - 2} point(s) (paused test or clock change); "
            "elapsed time is anchored to the timestamps stretch by stretch"
        )
    if drift > _CLOCK_JUMP_S:
        report.warn(
            f"elapsed time and timestamps drift apart by up to {drift:.1f} s within a stretch; "
            "elapsed time is kept for its resolution, anchored at the median offset"
        )
    report.time_origin = (
        "timestamps" if coarse == t.size else "timestamps (elapsed time anchored to them for sub-second resolution)"
    )
    return t


def _stretch_starts(offset: np.ndarray) -> np.ndarray:
    """Rows where the offset of timestamps to elapsed time steps to a new level and stays there.

    A jump is a pause or a clock change when the new level differs from the
    last few before it and holds for the next few rows; a timestamp or two off
    by a few seconds (exporter jitter) return to the old level and start nothing.
    """
    n = offset.size
    rows = np.arange(1, n)
    new = np.abs(offset[1:] - offset[:-1]) > _CLOCK_JUMP_S
    for j in range(_JITTER_ROWS + 1):
        earlier = rows - 1 - j
        new &= (earlier < 0) | (np.abs(offset[rows] - offset[np.maximum(earlier, 0)]) > _CLOCK_JUMP_S)
        later = rows + j
        new &= (later >= n) | (np.abs(offset[np.minimum(later, n - 1)] - offset[rows - 1]) > _CLOCK_JUMP_S)
    return np.r_[0, rows[new]]


def _steady(part: np.ndarray) -> np.ndarray:
    """The offset with jitter removed (a running median), to measure drift."""
    padded = np.pad(part, _JITTER_ROWS, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * _JITTER_ROWS + 1), axis=1)


def _report_rejects(
    report: ParseReport,
    table: pa.Table,
    cols: dict[str, str],
    headers: dict[str, str],
    bad: np.ndarray,
    reasons: dict[str, np.ndarray],
    excluded: dict[str, tuple[np.ndarray, str]],
    text: TextTable | None,
    skipped: list[tuple[int | None, str, str]],
) -> None:
    rows = np.flatnonzero(bad)
    examples: list[tuple[int | None, RejectedRow]] = []
    lines = text.line_of(rows[:MAX_EXAMPLES]) if text else rows[:MAX_EXAMPLES] + 1

    def shown(role: str, row: int) -> str:
        return f"{headers.get(cols[role], cols[role])}={table.column(cols[role])[row].as_py()!r}"

    for row, line in zip(rows[:MAX_EXAMPLES].tolist(), lines):
        why = next((f"{why}: {shown(role, row)}" for role, (mask, why) in excluded.items() if mask[row]), None)
        parts = [shown(role, row) for role, mask in reasons.items() if mask[row]]
        reason = why or "cannot parse " + ", ".join(parts)
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


def pick(header: Sequence[str], aliases: Sequence[str], *, any_unit: bool = True) -> str | None:
    """The first header whose full text or base name is one of ``aliases`` (case-insensitive).

    Aliases are tried in order, so the most specific spelling wins. With
    ``any_unit`` an alias with a unit also matches the same name with another
    unit (``Test (Sec)`` finds ``Test (Min)``), whose unit is then read from
    the header; without it (formats with fixed units) the unit must match.
    """
    full = {" ".join(h.lower().split()): h for h in reversed(header)}
    base = {header_key(h): h for h in reversed(header)}
    for alias in aliases:
        a = " ".join(alias.lower().split())
        found = full.get(a) or base.get(a) or (base.get(header_key(alias)) if any_unit else None)
        if found:
            return found
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
    wanted = list(layout.columns.values())
    text = read_delimited(
        path, header_line=header_line, delimiter=delimiter, encoding=encoding, header=header, wanted=wanted
    )
    position = {name: f"c{header.index(name)}" for name in wanted}
    layout.columns = {role: position[name] for role, name in layout.columns.items()}
    layout.headers = {position[name]: name for name in wanted}
    require(layout, header, text.table)  # with the data: a time column of h:mm:ss needs no unit
    return normalise(text, layout, options, report)


