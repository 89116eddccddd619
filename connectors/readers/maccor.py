"""Maccor text exports: a metadata line, then ``Rec#  Cyc#  Step  Test (Sec) ... Amps  Volts  State ... DPt Time``.

Maccor prints the current as a magnitude and the direction in the ``State``
column (``C`` charge, ``D`` discharge, ``R`` rest, ``O``/``S`` other), so the
sign comes from the state and never from the number. The first line carries
``Date of Test:``, the start used when rows have no ``DPt Time``. Column names
follow the raw export read by beep (``Test (Sec)``, ``Amps``, ``Volts``) and the
MacTest text export (``TestTime``, ``Current(A)``, ``Voltage(V)``); elapsed time
printed as ``1d 02:03:04.50`` or in other units (``Test (Min)``) is understood.
``Amp-hr`` is the step's charge counter, a magnitude like the current.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .generic import ColumnMapping, override, sniff_delimiter, with_mapping_options
from .model import Archive, ParseReport, ReaderError, UnsupportedFormatError
from .convert import parse_start
from .tabular import Layout, Options, pick, read_text
from .text import read_head, split_line
from .units import conversion, split_header

__all__ = ["sniff", "read_maccor", "state_sign"]

_ALIASES = {
    "time": ("Test (Sec)", "Test Time (sec)", "TestTime(s)", "TestTime", "Test Time"),
    "timestamp": ("DPt Time", "DPT Time"),
    "voltage": ("Volts", "Voltage(V)", "Voltage"),
    "current": ("Amps", "Current(A)", "Current"),
    "cycle": ("Cyc#", "Cycle C", "Cycle"),
    "step": ("Step",),
    "temperature": ("Temp 1", "Temperature 1"),
    "state": ("State",),
    "capacity": ("Amp-hr", "AmpHr", "Capacity(Ah)"),
}
# DPt Time / Date of Test as Maccor prints them (US locale, or day-month-year).
TIMESTAMP_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%d-%b-%y %I:%M:%S %p", "%d-%b-%Y %H:%M:%S")
_DATE_OF_TEST = re.compile(r"Date of Test:\s*[\t,]*\s*([^\t,]+)")
_CLOCK = re.compile(r"\d{1,2}:\d{2}:\d{2}(\s*[AaPp][Mm])?")  # a DPt Time without its date


def sniff(lines: Sequence[str]) -> bool:
    """A Maccor export has a ``Rec#`` column header near the top."""
    return _header_index(lines) is not None


def _header_index(lines: Sequence[str]) -> int | None:
    for k, line in enumerate(lines[:30]):
        if "Rec#" in line and ("Cyc#" in line or "Amps" in line or "Step" in line):
            return k
    return None


def state_sign(col: pa.ChunkedArray) -> np.ndarray:
    """+1 for ``C`` (charge), -1 for ``D`` (discharge), 0 for rest and other states."""
    state = pc.utf8_upper(pc.utf8_trim_whitespace(pc.fill_null(col.cast(pa.string()), "")))
    charge = pc.equal(state, "C").to_numpy(zero_copy_only=False)
    discharge = pc.equal(state, "D").to_numpy(zero_copy_only=False)
    return np.where(discharge, -1, np.where(charge, 1, 0)).astype(np.int8)


def read_maccor(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read a Maccor text export (tab or comma separated)."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    lines, encoding = read_head(path, max_lines=40)
    index = _header_index(lines)
    if index is None:
        raise UnsupportedFormatError(f"{path}: no Maccor 'Rec#' header in the first 30 lines; give --format NAME (Python: format=...)")
    delimiter = sniff_delimiter(lines[index])
    header = split_line(lines[index], delimiter)
    columns = {role: col for role, names in _ALIASES.items() if (col := pick(header, names))}
    units = {"time": "s", "voltage": "V", "current": "A", "temperature": "degC", "capacity": "Ah"}
    units.update({role: u for role, col in columns.items() if (u := split_header(col)[1])})
    start, date = None, None
    for line in lines[:index]:
        found = _DATE_OF_TEST.search(line)
        if found:
            date = found.group(1).strip()
            start = parse_start(date, TIMESTAMP_FORMATS, options.tz)
    report = ParseReport(source=str(path))
    first = split_line(lines[index + 1], delimiter) if len(lines) > index + 1 else []
    clock = _time_of_day(first, header, columns)
    if clock is not None and "time" in columns and not mapping.columns.get("timestamp"):
        # A DPt Time without its date: the date of test and the first row's clock time
        # place the elapsed clock, which carries the rest (across midnight too).
        name = columns.pop("timestamp")
        elapsed_s = _first_elapsed_s(first, header, columns["time"], units.get("time"))
        at = parse_start(f"{date} {clock}", TIMESTAMP_FORMATS, options.tz) if date else None
        start = at - elapsed_s if at is not None and elapsed_s is not None else None
        report.warn(f"{name!r} holds the time of day only; the start is the date of test {date!r} at the first "
                    f"row's {clock}, and the elapsed time places every row" if start is not None else
                    f"{name!r} holds the time of day only and the date of test could not be read; elapsed time "
                    "is used")
    layout = Layout(
        "maccor text", columns, units,
        state_sign=state_sign, timestamp_formats=TIMESTAMP_FORMATS, start=start,
    )
    layout = override(layout, header, mapping)
    return read_text(
        path, header_line=index + 1, delimiter=delimiter, encoding=encoding, header=header,
        layout=layout, options=options, report=report,
    )


def _time_of_day(first: list[str], header: list[str], columns: dict[str, str]) -> str | None:
    """The first row's DPt Time if it is a clock time without a date (``11:49:32``), else None."""
    name = columns.get("timestamp")
    if name is None or name not in header or header.index(name) >= len(first):
        return None
    text = first[header.index(name)].strip()
    return text if _CLOCK.fullmatch(text) else None


def _first_elapsed_s(first: list[str], header: list[str], name: str, unit: str | None) -> float | None:
    try:
        value = float(first[header.index(name)])
        scale, offset = conversion("time", unit or "s", name)
    except (ValueError, IndexError, ReaderError):
        return None
    return value * scale + offset
