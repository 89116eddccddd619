"""Delimited text as Arrow string columns, with the file's line numbers kept.

Cycler exports are CSV or TSV after a vendor-specific preamble. ``pyarrow.csv``
reads them on all cores; rows it cannot split (a truncated last line, a
stray delimiter) go through a handler that records them for the report
instead of aborting the file. Empty lines are kept as rows so that table row
``k`` stays on file line ``first_line + k`` plus the skipped rows before it.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

__all__ = ["TextTable", "UTF16_BOMS", "read_head", "read_delimited", "split_line"]

UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass
class TextTable:
    """A delimited file read as strings, plus what is needed to name its lines."""

    table: pa.Table
    first_line: int  # 1-based line of the first data row
    skipped: list[tuple[int | None, str, str]]  # (line, text, reason) of rows Arrow could not split

    def line_of(self, rows: np.ndarray) -> np.ndarray:
        """1-based file lines of table rows (skipped rows shift the numbering)."""
        lines = self.first_line + rows.astype(np.int64)
        known = np.sort(np.array([s[0] for s in self.skipped if s[0] is not None], dtype=np.int64))
        if known.size == 0:
            return lines
        current = lines
        while True:  # fixed point: skipped lines at or before a row push it down
            shifted = lines + np.searchsorted(known, current, side="right")
            if np.array_equal(shifted, current):
                return current
            current = shifted


def read_head(path: Path, max_lines: int = 200, max_bytes: int = 1 << 16) -> tuple[list[str], str]:
    """The first lines of a text file and its encoding (UTF-16 after its byte-order mark, as
    spreadsheets save "Unicode text"; else UTF-8, else latin-1)."""
    with Path(path).open("rb") as fh:
        raw = fh.read(max_bytes)
    if raw.startswith(UTF16_BOMS):
        return raw[: len(raw) & ~1].decode("utf-16", errors="replace").splitlines()[:max_lines], "utf-16"
    try:
        text, encoding = raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(raw) - 4:  # cut inside a multi-byte character at the end
            text, encoding = raw[: exc.start].decode("utf-8-sig"), "utf-8"
        else:
            text, encoding = raw.decode("latin-1"), "latin-1"
    return text.splitlines()[:max_lines], encoding


def read_delimited(
    path: Path,
    *,
    header_line: int,
    delimiter: str,
    encoding: str,
    header: list[str],
    wanted: Sequence[str],
) -> TextTable:
    """Read the ``wanted`` headers of a delimited file as string columns.

    ``header_line`` is the 1-based line of the column names, ``header`` those
    names as split by the caller. Columns are addressed by position so that
    duplicate or blank header names do not matter.
    """
    header = _fit_header(path, header_line, delimiter, header)
    names = [f"c{j}" for j in range(len(header))]
    include = [names[header.index(w)] for w in dict.fromkeys(wanted)]
    skipped: list[tuple[int | None, str, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        skipped.append(
            (row.number, row.text, f"{row.actual_columns} fields where the header has {row.expected_columns}")
        )
        return "skip"

    def read(threads: bool) -> pa.Table:
        skipped.clear()
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(
                skip_rows=header_line,
                column_names=names,
                encoding=encoding,
                use_threads=threads,
                block_size=1 << 24,
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                invalid_row_handler=on_invalid,
                ignore_empty_lines=False,  # keeps table rows aligned with file lines
                quote_char='"' if delimiter == "," else False,
            ),
            convert_options=pcsv.ConvertOptions(
                include_columns=include,
                column_types={n: pa.string() for n in include},
                strings_can_be_null=False,
            ),
        )

    table = read(True)
    if any(s[0] is None for s in skipped):
        # Arrow knows the line of a bad row only when parsing in one thread; the
        # second pass is paid only by files that have bad rows.
        table = read(False)
    return TextTable(table, header_line + 1, list(skipped))


def _fit_header(path: Path, header_line: int, delimiter: str, header: list[str]) -> list[str]:
    """Match the header's field count to the data's.

    EC-Lab and some Neware exports end the header (or every data line) with a
    stray delimiter; trusting the header would make every row "malformed".
    """
    lines, _ = read_head(path, max_lines=header_line + 1, max_bytes=1 << 20)
    if len(lines) <= header_line:
        return header
    width = len(lines[header_line].split(delimiter))
    if width < len(header) and not any(header[width:]):
        return header[:width]
    if width > len(header):
        return header + [""] * (width - len(header))
    return header


def split_line(line: str, delimiter: str) -> list[str]:
    """Header fields as Arrow will see them: for CSV, quoted (``"Total Time, S"``) and unquoted."""
    if delimiter == ",":
        return [f.strip().strip('"').strip() for f in next(csv.reader([line], skipinitialspace=True), [])]
    return [f.strip() for f in line.split(delimiter)]

