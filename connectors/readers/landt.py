"""Landt (LANHE, LANDdt) XLSX exports: a record table of ``Current/mA``, ``Voltage/V``, ``Capacity/mAh``.

LANDdt writes the record table on a sheet named ``Record``, continued on
``Record1``, ``Record2`` ... without a header row when it outgrows a sheet;
newer versions put it on a single sheet below a few rows of test information,
under a header row that starts with ``Index``. Units follow a slash in the
header. The current is signed with discharge negative, the wire's convention;
``TestTime`` is the test clock (its unit by the header: ``TestTime/h``,
``TestTime/Sec``, or ``h:mm:ss`` text) and ``SysTime`` the PC's wall clock
without a zone (pass ``tz``). ``Capacity/mAh`` is the step's charge counter, a
magnitude that restarts with each step.

Neware also exports XLSX, so a workbook is told apart by its header (see
:func:`sniff_workbook`): Landt names the test clock ``TestTime``, Neware
``Total Time``. The column names follow the two Landt layouts navani reads
(be-smith/navani); no redistributable Landt export was available to test with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import xlsx
from .generic import ColumnMapping, override, with_mapping_options
from .model import Archive, UnsupportedFormatError
from .tabular import Layout, Options, header_key, pick, require
from .units import split_header

__all__ = ["sniff_workbook", "read_landt_xlsx"]

_ALIASES = {
    "time": ("TestTime/h", "TestTime/Sec", "TestTime", "Test Time"),
    "timestamp": ("SysTime", "System Time", "Realtime"),
    "voltage": ("Voltage/V", "Voltage"),
    "current": ("Current/mA", "Current"),
    "capacity": ("Capacity/mAh", "Capacity"),
    "cycle": ("Cycle", "Cycle-Index", "CycleIndex"),
    "step": ("Step", "Step-Index", "StepIndex"),
    "temperature": ("Temperature/°C", "Temp/°C", "Temperature"),
}
# Header names only Landt uses (compared without units): its test, step and wall clocks.
_MARKERS = ("testtime", "steptime", "systime")
_HEADER_SEARCH_ROWS = 30  # rows of test information above the header in single-sheet exports


def sniff_workbook(book: Any) -> bool:
    """A Landt workbook has a header row naming ``TestTime``/``StepTime``/``SysTime``."""
    return any(_header_row(sheet) is not None for sheet in book.worksheets)


def _header_row(sheet: Any) -> tuple[int, list[str]] | None:
    """The 0-based row and names of a sheet's Landt header row, if it has one."""
    for k, row in enumerate(sheet.iter_rows(values_only=True, max_row=_HEADER_SEARCH_ROWS)):
        names = xlsx.header_of(row)
        if any(header_key(name) in _MARKERS for name in names):
            return k, names
    return None


def _record_rows(book: Any, first: Any, skip: int) -> Iterator[Sequence[object]]:
    """Data rows of the record sheet, then of its ``Record1``, ``Record2`` ... continuations."""
    yield from first.iter_rows(values_only=True, min_row=skip + 1)
    for sheet in book.worksheets:
        if sheet is not first and sheet.title.lower().startswith("record") and _header_row(sheet) is None:
            yield from sheet.iter_rows(values_only=True)


def read_landt_xlsx(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read the record table of a Landt XLSX export (needs openpyxl)."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    book = xlsx.open_workbook(path)
    try:
        found = next(((s, h) for s in book.worksheets if (h := _header_row(s)) is not None), None)
        if found is None:
            raise UnsupportedFormatError(
                f"{path}: no sheet has a Landt header row (TestTime, SysTime) in its first {_HEADER_SEARCH_ROWS} "
                f"rows; sheets are {[ws.title for ws in book.worksheets]}; give --format NAME (Python: format=...) for another cycler"
            )
        sheet, (row, header) = found
        columns = {role: col for role, names in _ALIASES.items() if (col := pick(header, names))}
        units = {role: u for role, col in columns.items() if (u := split_header(col)[1])}
        layout = override(Layout("landt xlsx", columns, units, discharge_positive=False), header, mapping)
        require(layout, header)
        wanted = list(dict.fromkeys(layout.columns.values()))
        cells = xlsx.collect(_record_rows(book, sheet, row + 1), header, wanted)
    finally:
        book.close()
    return xlsx.archive_of(path, wanted, cells, layout, options, row + 1)  # as on the first record sheet
