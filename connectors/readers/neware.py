"""Neware BTS exports: CSV and XLSX record tables, and ``.nda``/``.ndax`` binaries.

Neware's sign of the current has changed between BTS versions (older exports
print discharge current as positive), so the sign comes from the ``Step Type``
label (``CC_DChg``, ``CCCV_Chg``, ``Rest``; Chinese exports ``放电``/``充电``)
whenever the file has one. ``Time`` in these exports is the step time; the
test clock is ``Total Time`` (seconds or ``h:mm:ss``) and the wall clock is
``Date``/``Realtime``, local time without a zone (pass ``tz``).

BTS 7 exported a nested CSV instead: a cycle row, then step rows one field in (with the
step's name), then record rows two fields in whose ``Time`` restarts with each step; it is
flattened, and the test clock is the sum of the steps' times.

The charge counters are ``Capacity(mAh)`` (the step's, a magnitude) or the
per-direction ``Chg. Cap.(mAh)``/``DChg. Cap.(mAh)`` of newer BTS versions.

XLSX needs openpyxl (extra ``xlsx``); binaries need fastnda (BSD-3, preferred:
it returns Unix time) or NewareNDA (BSD-3) (extra ``neware``). Names mirror
the BDF project's Neware plugin, beep's Neware config and the two NDA readers.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import xlsx
from .convert import durations, looks_like_durations, numbers
from .generic import ColumnMapping, override, sniff_delimiter, with_mapping_options
from .model import Archive, MissingExtraError, ParseReport, UnsupportedFormatError
from .tabular import Layout, Options, normalise, pick, read_text, require
from .text import read_head, split_line
from .units import split_header

__all__ = ["sniff", "state_sign", "read_neware_csv", "read_neware_xlsx", "read_nda"]

_ALIASES = {
    "time": ("Total Time", "Total Time(s)", "TotalTime(s)", "Test Time(s)", "Test Time", "test_time"),
    "timestamp": ("Date", "Realtime", "Real Time", "DateTime", "Date Time", "Absolute Time"),
    "voltage": ("Voltage(V)", "Voltage(mV)", "Voltage"),
    "current": ("Current(A)", "Current(mA)", "Current(uA)", "Current(μA)", "Current"),
    "cycle": ("Cycle Index", "Cycle ID", "Cycle"),
    "step": ("Step Index", "Step ID", "Step Number", "Step"),
    "state": ("Step Type", "Status", "Step Name"),
    "temperature": ("T1(°C)", "T1(℃)", "Temperature(°C)", "Temperature(℃)", "Aux. Temp.(°C)", "T1"),
    "charge_capacity": ("Chg. Cap.(mAh)", "Capacitance_Chg(mAh)", "Charge Capacity(mAh)", "Charge_Capacity(mAh)"),
    "discharge_capacity": (
        "DChg. Cap.(mAh)", "Capacitance_DChg(mAh)", "Discharge Capacity(mAh)", "Discharge_Capacity(mAh)",
    ),
    "capacity": ("Capacity(mAh)", "CapaCity(mAh)", "Capacity"),
}
TIMESTAMP_FORMATS = ("%Y/%m/%d %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S")
_MARKERS = ("Step Type", "DataPoint", "Record Index", "Record ID", "Total Time")


def sniff(lines: Sequence[str]) -> bool:
    """A Neware record table names ``Step Type``/``DataPoint``/``Total Time`` in its header;
    a BTS 7 export nests ``Cycle ID``, ``Step ID`` and ``Record ID`` rows."""
    return bool(lines) and (sum(m in lines[0] for m in _MARKERS) >= 2 or _nested(lines))


def _nested(lines: Sequence[str]) -> bool:
    """BTS 7's CSV: a cycle row, a step row one field in, a record row two fields in."""
    return (len(lines) >= 3 and lines[0].lstrip().startswith("Cycle ID") and "Step ID" in lines[1]
            and "Record ID" in lines[2] and not lines[1].split(sniff_delimiter(lines[1]))[0].strip())


def state_sign(col: pa.ChunkedArray) -> np.ndarray:
    """-1 for discharge steps (``*DChg``, ``放电``), +1 for charge steps, 0 otherwise."""
    labels = pc.fill_null(col.cast(pa.string()), "")
    discharge = pc.or_(
        pc.match_substring(labels, "dchg", ignore_case=True), pc.match_substring(labels, "放电")
    ).to_numpy(zero_copy_only=False)
    charge = pc.or_(
        pc.match_substring(labels, "chg", ignore_case=True), pc.match_substring(labels, "充电")
    ).to_numpy(zero_copy_only=False)
    return np.where(discharge, -1, np.where(charge, 1, 0)).astype(np.int8)


def _layout(header: Sequence[str], fmt: str, mapping: ColumnMapping) -> Layout:
    columns = {role: col for role, names in _ALIASES.items() if (col := pick(header, names))}
    units = {"time": "s", "voltage": "V", "current": "A", "temperature": "degC", "capacity": "Ah"}
    units.update({role: u for role, col in columns.items() if (u := split_header(col)[1])})
    layout = Layout(fmt, columns, units, state_sign=state_sign, timestamp_formats=TIMESTAMP_FORMATS)
    return override(layout, header, mapping)


def read_neware_csv(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read a Neware BTS CSV record export."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    lines, encoding = read_head(path, max_lines=3)
    if _nested(lines):
        return _read_nested(path, lines, encoding, mapping, options)
    delimiter = sniff_delimiter(lines[0])
    header = split_line(lines[0], delimiter)
    layout = _layout(header, "neware csv", mapping)
    return read_text(
        path, header_line=1, delimiter=delimiter, encoding=encoding, header=header,
        layout=layout, options=options, report=ParseReport(source=str(path)),
    )


def _read_nested(path: Path, lines: Sequence[str], encoding: str, mapping: ColumnMapping,
                 options: Options) -> Archive:
    """BTS 7's nested CSV, flattened: each record row with its cycle, its step and the step's
    name (the sign), and the test clock summed over the steps, whose ``Time`` restarts at 0."""
    delimiter = sniff_delimiter(lines[2])
    step_header = split_line(lines[1], delimiter)[1:]
    header = split_line(lines[2], delimiter)[2:]
    layout = _layout(header, "neware csv (cycle, step, record rows)", mapping)
    step_time = pick(header, ("Time(h:min:s.ms)", "Time"))
    name_at = step_header.index("Step Name") if "Step Name" in step_header else None
    if step_time is None or "time" in layout.columns:
        raise UnsupportedFormatError(f"{path}: a nested Neware CSV without a record 'Time' column; "
                                     "give --format table with a mapping")
    wanted = list(dict.fromkeys(layout.columns.values()))
    index = [header.index(name) for name in wanted + [step_time]]
    cells: list[list[str]] = [[] for _ in index]
    cycles: list[str] = []
    steps: list[str] = []
    names: list[str] = []
    starts: list[int] = []  # the first record of each step
    cycle = step = name = ""
    with path.open(encoding=encoding, newline="") as fh:
        for number, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            if number <= 3 or not any(field.strip() for field in row):
                continue
            if row[0].strip():
                cycle = row[0].strip()
            elif len(row) > 1 and row[1].strip():
                step = row[1].strip()
                name = row[1 + name_at].strip() if name_at is not None and len(row) > 1 + name_at else ""
                starts.append(len(cycles))
            else:
                record = row[2:]
                for out, k in zip(cells, index):
                    out.append(record[k] if k < len(record) else "")
                cycles.append(cycle)
                steps.append(step)
                names.append(name)
    extra = {"Test Time (s)": _test_clock(cells.pop(), starts), "Cycle ID": cycles, "Step ID": steps,
             "Step Name": names}
    for role, column in (("time", "Test Time (s)"), ("cycle", "Cycle ID"), ("step", "Step ID"), ("state", "Step Name")):
        if role == "time" or role not in layout.columns:
            layout.columns[role] = column
            wanted.append(column)
            cells.append(extra[column])
    layout.units["time"] = "s"
    require(layout, header + list(extra))
    report = ParseReport(source=str(path))
    report.warn("a nested cycle / step / record export: the test clock is the sum of the steps' times")
    return normalise(xlsx.table_of(wanted, cells), layout, options, report)


def _test_clock(step_times: list[str], starts: list[int]) -> list[str]:
    """Seconds since the test began, from step times (``h:mm:ss.ms``) that restart at each of
    `starts`: each step begins where the one before it last logged."""
    if not step_times:
        return []
    col = pa.chunked_array([pa.array(step_times, pa.string())])
    seconds = durations(col)[0] if looks_like_durations(col) else numbers(col, False)[0]
    seconds = np.nan_to_num(seconds)
    bounds = np.unique(np.r_[0, starts, len(step_times)].astype(int))  # steps as [begin, end) of the records
    lasts = seconds[bounds[1:] - 1]
    offsets = np.repeat(np.cumsum(np.r_[0.0, lasts[:-1]]), np.diff(bounds))
    return [repr(float(x)) for x in seconds + offsets]


def sniff_workbook(book: Any) -> bool:
    """A Neware workbook has a sheet whose first row names voltage, current and a time by
    Neware's names (a spreadsheet of the lab's own is read as a table, `generic`)."""
    for sheet in book.worksheets:
        header = xlsx.header_of(next(sheet.iter_rows(values_only=True, max_row=1), None))
        cols = _layout(header, "neware xlsx", ColumnMapping()).columns
        if {"voltage", "current"} <= cols.keys() and ("time" in cols or "timestamp" in cols):
            return True
    return False


def read_neware_xlsx(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read the record sheet of a Neware XLSX export (needs openpyxl)."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    book = xlsx.open_workbook(path)
    try:
        sheets = sorted(book.worksheets, key=lambda ws: "record" not in ws.title.lower())
        for sheet in sheets:
            rows = sheet.iter_rows(values_only=True)
            header = xlsx.header_of(next(rows, None))
            layout = _layout(header, "neware xlsx", mapping)
            if "voltage" in layout.columns and "current" in layout.columns:
                break
        else:
            raise UnsupportedFormatError(
                f"{path}: no sheet has Neware voltage and current columns; sheets are "
                f"{[ws.title for ws in book.worksheets]}"
            )
        require(layout, header)
        wanted = list(dict.fromkeys(layout.columns.values()))
        cells = xlsx.collect(rows, header, wanted)
    finally:
        book.close()
    return xlsx.archive_of(path, wanted, cells, layout, options, 1)  # the header is sheet row 1


def read_nda(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read a Neware ``.nda``/``.ndax`` binary through fastnda, else NewareNDA."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    try:
        import fastnda

        table = fastnda.read(path, cycle_mode="raw").to_arrow()
        table = table.set_column(
            table.schema.get_field_index("step_type"), "step_type", table.column("step_type").cast(pa.string())
        )
        columns = {
            "time": "total_time_s", "timestamp": "unix_time_s", "voltage": "voltage_V",
            "current": "current_mA", "cycle": "cycle_count", "step": "step_count", "state": "step_type",
            "capacity": "capacity_mAh",  # charge minus discharge counter of the step: signed
        }
        units = {"time": "s", "timestamp": "s", "voltage": "V", "current": "mA", "temperature": "degC",
                 "capacity": "mAh"}
        fmt = "neware nda (fastnda)"
    except ImportError:
        try:
            import NewareNDA
        except ImportError as exc:
            raise MissingExtraError(
                "reading Neware .nda/.ndax needs fastnda or NewareNDA: pip install 'celltwin[neware]' "
                "or pip install fastnda"
            ) from exc
        table = pa.Table.from_pandas(NewareNDA.read(str(path)), preserve_index=False)
        columns = {
            "timestamp": "Timestamp", "voltage": "Voltage", "current": "Current(mA)",
            "cycle": "Cycle", "step": "Step", "state": "Status",
            "charge_capacity": "Charge_Capacity(mAh)", "discharge_capacity": "Discharge_Capacity(mAh)",
        }
        units = {"voltage": "V", "current": "mA", "temperature": "degC",
                 "charge_capacity": "mAh", "discharge_capacity": "mAh"}
        fmt = "neware nda (NewareNDA)"
    names = table.column_names
    columns = {role: col for role, col in columns.items() if col in names}
    temperature = next((n for n in names if "temp" in n.lower() or n.startswith("T1")), None)
    if temperature:
        columns["temperature"] = temperature
    layout = override(Layout(fmt, columns, units, state_sign=state_sign), names, mapping)
    require(layout, names)
    table = table.select(list(dict.fromkeys(layout.columns.values())))
    return normalise(table, layout, options, ParseReport(source=str(path)))
