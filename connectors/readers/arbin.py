"""Arbin CSV and XLSX exports (MITS Pro "Data_Point, Test_Time(s), Date_Time, ..." and MITS 8
spellings), and Arbin's own .res files.

Arbin writes one header line, comma separated, units in parentheses, and signed
current with charge positive, which is the wire's convention. ``Date_Time`` is
the channel's local wall clock without a zone (pass ``tz``); ``Test_Time(s)``
has sub-second resolution, so both are read and combined (see tabular).
``Charge_Capacity(Ah)``/``Discharge_Capacity(Ah)`` are the cycler's charge
counters. Column names mirror what cellpy, beep and battdat expect from these
exports; the unit may also follow an underscore (``Test_Time_s``).

A .res file is a Microsoft Access database; its ``Channel_Normal_Table`` holds the
samples under the unitless MITS 8 names (``DateTime`` a spreadsheet serial date). It is
exported with mdbtools' ``mdb-export``, as cellpy does on Linux, and read as that CSV.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv

from . import xlsx
from .generic import ColumnMapping, override, with_mapping_options
from .model import Archive, MissingExtraError, ParseReport, ReaderError, UnsupportedFormatError
from .tabular import Layout, Options, pick, read_text, require
from .text import read_head, split_line
from .units import SERIAL_DATE, split_header

__all__ = ["sniff", "sniff_workbook", "read_arbin", "read_arbin_xlsx", "read_arbin_res", "RES_TABLE"]

RES_TABLE = "Channel_Normal_Table"  # the samples of a .res file

_ALIASES = {
    "time": ("Test_Time(s)", "Test Time (s)", "Test_Time", "Test Time"),
    "timestamp": ("Date_Time", "Date Time", "DateTime"),
    "voltage": ("Voltage(V)", "Voltage (V)", "Voltage"),
    "current": ("Current(A)", "Current (A)", "Current"),
    "cycle": ("Cycle_Index", "Cycle Index"),
    "step": ("Step_Index", "Step Index"),
    "temperature": (
        "Aux_Temperature_1(C)", "Aux_Temperature_1 (C)", "Aux_Temperature_1", "Temperature (C)", "Temperature",
    ),
    "charge_capacity": ("Charge_Capacity(Ah)", "Charge Capacity (Ah)", "Charge_Capacity"),
    "discharge_capacity": ("Discharge_Capacity(Ah)", "Discharge Capacity (Ah)", "Discharge_Capacity"),
}
_CONTINUED = re.compile(r"_\d+$")  # "Channel_1-008_1": the rows of Channel_1-008 past the first sheet's
_CHANNEL = "(sheet)"  # the column of channel names added to a workbook of several channels
# Date_Time as Arbin prints it besides ISO 8601.
TIMESTAMP_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M")


def sniff(lines: Sequence[str]) -> bool:
    """An Arbin export has its Arbin column names on the first line."""
    if not lines:
        return False
    first = lines[0]
    return ("Test_Time(s)" in first or "Data_Point" in first) or ("Test Time (s)" in first and "Date Time" in first)


def _layout(header: Sequence[str], fmt: str, mapping: ColumnMapping) -> Layout:
    columns = {role: col for role, names in _ALIASES.items() if (col := pick(header, names))}
    # Unitless spellings (MITS 8 "Voltage") are in Arbin's base units.
    units = {"time": "s", "voltage": "V", "current": "A", "temperature": "degC",
             "charge_capacity": "Ah", "discharge_capacity": "Ah"}
    units.update({role: u for role, col in columns.items() if (u := split_header(col)[1])})
    return override(Layout(fmt, columns, units, discharge_positive=False, timestamp_formats=TIMESTAMP_FORMATS),
                    header, mapping)


def read_arbin_xlsx(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read an Arbin XLSX export (needs openpyxl): its ``Channel_...`` sheets in order, a
    channel continued on ``..._1``, ``..._2`` sheets past Excel's row limit; a workbook of
    several channels gives one cell per channel, named after its sheet."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    book = xlsx.open_workbook(path)
    try:
        header: list[str] = []
        cells: list[list[str]] = []
        channels: list[str] = []
        for sheet in book.worksheets:
            rows = sheet.iter_rows(values_only=True)
            names = xlsx.header_of(next(rows, None))
            if not sniff([",".join(names)]) or (header and names != header):
                continue
            header = header or names
            layout = _layout(header, "arbin xlsx", mapping)
            wanted = list(dict.fromkeys(layout.columns.values()))
            part = xlsx.collect(rows, header, wanted)
            cells = [have + more for have, more in zip(cells, part)] if cells else part
            channels += [_CONTINUED.sub("", sheet.title)] * len(part[0])
        if not header:
            raise UnsupportedFormatError(f"{path}: no sheet has Arbin columns; sheets are "
                                         f"{[ws.title for ws in book.worksheets]}")
    finally:
        book.close()
    require(layout, header)
    if len(set(channels)) > 1 and "cell" not in layout.columns:
        layout.columns["cell"] = _CHANNEL
        wanted.append(_CHANNEL)
        cells.append(channels)
    return xlsx.archive_of(path, wanted, cells, layout, options, 1)  # the header is sheet row 1


def sniff_workbook(book: Any) -> bool:
    """An Arbin workbook has a sheet whose first row holds Arbin column names."""
    return any(sniff([",".join(xlsx.header_of(next(ws.iter_rows(values_only=True, max_row=1), None)))])
               for ws in book.worksheets)


def read_arbin(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read an Arbin CSV export."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    lines, encoding = read_head(path, max_lines=2)
    header = split_line(lines[0], ",")
    layout = _layout(header, "arbin csv", mapping)
    return read_text(
        path, header_line=1, delimiter=",", encoding=encoding, header=header,
        layout=layout, options=options, report=ParseReport(source=str(path)),
    )


def read_arbin_res(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read an Arbin .res file (an Access database) through mdbtools' ``mdb-export``."""
    path = Path(path)
    exporter = shutil.which("mdb-export")
    if exporter is None:
        raise MissingExtraError(
            f"{path} is an Arbin .res file (an Access database): reading it needs mdbtools' mdb-export on PATH "
            f"(apt install mdbtools; brew install mdbtools), or export its {RES_TABLE} to CSV and replay that"
        )
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / f"{path.stem}.csv"  # the file's name names its cell
        with exported.open("wb") as out:
            done = subprocess.run([exporter, str(path), RES_TABLE], stdout=out, stderr=subprocess.PIPE)
        if done.returncode:
            why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
            raise ReaderError(f"{path}: mdb-export could not read its {RES_TABLE}: {why}")
        # A database keeps no row order (a real file gives rows 1321-1560 after row 1800);
        # Arbin numbers its samples.
        table = pacsv.read_csv(exported)
        if "Data_Point" in table.column_names:
            pacsv.write_csv(table.sort_by("Data_Point"), exported, pacsv.WriteOptions(quoting_style="none"))
        mapping = ColumnMapping.coerce(mapping, {"timestamp": SERIAL_DATE, **(mapping.units if mapping else {})})
        archive = read_arbin(exported, mapping=mapping, options=options)
    archive.report.source = str(path)
    archive.report.format = "arbin res"
    for record in archive.cells.values():
        record.meta.update(source=str(path), format="arbin res")
    return archive
