"""XLSX record sheets (Neware, Landt) read into the string table a CSV export would give.

openpyxl (extra ``xlsx``) yields cells one by one, so only the wanted columns
are collected, as text, for the shared rules in :mod:`.tabular` (datetimes in
ISO form, numbers as Python prints them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataclasses import replace

from .model import Archive, MissingExtraError, ParseReport
from .tabular import Layout, Options, normalise

__all__ = ["open_workbook", "header_of", "collect", "table_of", "cell_text", "archive_of"]


def open_workbook(path: Path) -> Any:
    """The workbook, read-only (close it when done); a clear error without openpyxl."""
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
