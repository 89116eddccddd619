"""Spreadsheet record sheets (Arbin, Neware, Landt, a lab's own) read into the string table
a CSV export would give.

openpyxl (extra ``xlsx``) yields cells one by one, so only the wanted columns
are collected, as text, for the shared rules in :mod:`.tabular` (datetimes in
ISO form, numbers as Python prints them). An Excel 97-2003 ``.xls`` workbook (older
Arbin exports) is read through xlrd (extra ``xls``) and seen the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataclasses import replace

from .model import Archive, MissingExtraError, ParseReport
from .tabular import Layout, Options, normalise

__all__ = ["open_workbook", "header_of", "collect", "table_of", "cell_text", "archive_of"]


def open_workbook(path: Path) -> Any:
    """The workbook, read-only (close it when done); a clear error without openpyxl (xlrd
    for ``.xls``)."""
    if Path(path).suffix.lower() == ".xls":
        return _XlsBook(path)
    try:
        import openpyxl
    except ImportError as exc:
        raise MissingExtraError(
            "reading XLSX needs openpyxl: pip install 'celltwin[xlsx]' or pip install openpyxl; "
            "or export the data as CSV"
        ) from exc
    return openpyxl.load_workbook(path, read_only=True, data_only=True)


def header_of(row: Sequence[object] | None) -> list[str]:
    """A sheet row as header names (empty cells as empty names)."""
    return [str(h).strip() if h is not None else "" for h in (row or ())]


def collect(rows: Iterable[Sequence[object]], header: Sequence[str], wanted: Sequence[str]) -> list[list[str]]:
    """The ``wanted`` columns of ``rows`` as lists of cell text, in ``wanted`` order."""
    index = [header.index(name) for name in wanted]
    cells: list[list[str]] = [[] for _ in wanted]
    for row in rows:
        for out, k in zip(cells, index):
            out.append(cell_text(row[k] if k < len(row) else None))
    return cells


def table_of(wanted: Sequence[str], cells: list[list[str]]) -> pa.Table:
    """An Arrow table of string columns named as in the sheet."""
    return pa.table({name: pa.array(col, pa.string()) for name, col in zip(wanted, cells)})


def cell_text(value: object) -> str:
    """An XLSX cell as the text a CSV export would hold (datetimes in ISO form)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def archive_of(path: Path, wanted: Sequence[str], cells: list[list[str]], layout: Layout, options: Options,
               rows_above: int) -> Archive:
    """The archive of collected record cells, rejected rows numbered as on the sheet:
    data row k is sheet row k + `rows_above` (header and anything above it)."""
    report = ParseReport(source=str(path))
    archive = normalise(table_of(wanted, cells), layout, options, report)
    report.rejected = [replace(r, line=r.line + rows_above) if r.line is not None else r for r in report.rejected]
    return archive


class _XlsBook:
    """An ``.xls`` workbook through xlrd, as much of openpyxl's read-only one as the readers
    use: ``worksheets`` in order (each with a ``title`` and ``iter_rows``), ``close``."""

    def __init__(self, path: Path) -> None:
        try:
            import xlrd
        except ImportError as exc:
            raise MissingExtraError(
                "reading XLS (Excel 97-2003) needs xlrd: pip install 'celltwin[xls]' or pip install xlrd; "
                "or save the workbook as XLSX or CSV"
            ) from exc
        self._book = xlrd.open_workbook(str(path), on_demand=True)
        self.worksheets = [_XlsSheet(self._book, k) for k in range(self._book.nsheets)]

    def close(self) -> None:
        self._book.release_resources()


class _XlsSheet:
    def __init__(self, book: Any, index: int) -> None:
        self._book, self._index = book, index
        self.title = book.sheet_names()[index]

    def iter_rows(self, values_only: bool = True, min_row: int = 1,
                  max_row: int | None = None) -> Iterator[tuple[object, ...]]:
        """Rows of cell values, 1-based and inclusive as openpyxl counts them."""
        import xlrd

        sheet = self._book.sheet_by_index(self._index)
        stop = sheet.nrows if max_row is None else min(max_row, sheet.nrows)
        for r in range(min_row - 1, stop):
            yield tuple(_xls_value(cell, self._book.datemode, xlrd) for cell in sheet.row(r))


def _xls_value(cell: Any, datemode: int, xlrd: Any) -> object:
    """An xlrd cell as openpyxl gives it: dates as datetimes, empty and error cells as None."""
    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return None
    if cell.ctype == xlrd.XL_CELL_DATE:
        return xlrd.xldate.xldate_as_datetime(cell.value, datemode)
    return cell.value
