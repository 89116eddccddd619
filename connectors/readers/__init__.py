"""Readers that turn archived cycler files into cells in wire units.

``read_archive`` picks the reader from the extension and the first lines of the
file, so ``celltwin replay FILE`` works without being told the cycler; every
reader can also be called directly. See :mod:`.model` for what is returned
and :mod:`.tabular` for the rules on time, units and sign that all share.

==============  ==========================================  =================
format          files                                       needs
==============  ==========================================  =================
``table``       CSV/TSV/Parquet, BDF, wire names, mapping   -
``arbin``       Arbin CSV export                            -
``arbin-xlsx``  Arbin XLSX/XLS export (``Channel_...``)     openpyxl/xlrd
``arbin-res``   Arbin ``.res`` (Access database)            mdbtools
``maccor``      Maccor text export                          -
``biologic``    EC-Lab ``.mpt``                             -
``mpr``         EC-Lab ``.mpr``                             galvani (GPL)
``neware``      Neware CSV record export, BTS 7 nested CSV  -
``xlsx``        Neware XLSX export                          openpyxl
``xlsx-table``  a lab's own spreadsheet, by a CSV's rules   openpyxl
``landt``       Landt (LANHE) XLSX export                   openpyxl
``nda``         Neware ``.nda``/``.ndax``                   fastnda/NewareNDA
==============  ==========================================  =================

Columns are found by their names and the unit each header states, so the
common exports need no mapping; :mod:`.counters` and :mod:`.repeats` say how
the cycler's charge counters and repeated timestamps are read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from . import arbin, biologic, landt, maccor, neware, xlsx
from .generic import ColumnMapping, load_mapping, read_table, read_xlsx_table
from .model import (
    Archive,
    AmbiguousUnitError,
    CellRecord,
    MissingColumnError,
    MissingExtraError,
    ParseReport,
    ReaderError,
    RejectedRow,
    UnsupportedFormatError,
)
from .tabular import DEFAULT_EPOCH, Options
from .text import UTF16_BOMS, read_head

__all__ = [
    "FORMATS",
    "DEFAULT_EPOCH",
    "read_archive",
    "detect_format",
    "load_mapping",
    "ColumnMapping",
    "Archive",
    "CellRecord",
    "ParseReport",
    "RejectedRow",
    "ReaderError",
    "MissingColumnError",
    "AmbiguousUnitError",
    "UnsupportedFormatError",
    "MissingExtraError",
]

_Reader = Callable[..., Archive]
FORMATS: dict[str, _Reader] = {
    "table": read_table,
    "arbin": arbin.read_arbin,
    "arbin-res": arbin.read_arbin_res,
    "arbin-xlsx": arbin.read_arbin_xlsx,
    "maccor": maccor.read_maccor,
    "biologic": biologic.read_mpt,
    "mpr": biologic.read_mpr,
    "neware": neware.read_neware_csv,
    "xlsx": neware.read_neware_xlsx,
    "xlsx-table": read_xlsx_table,
    "landt": landt.read_landt_xlsx,
    "nda": neware.read_nda,
}
_BY_EXTENSION = {".mpt": "biologic", ".mpr": "mpr", ".nda": "nda", ".ndax": "nda", ".xlsx": "xlsx", ".xls": "xlsx",
                 ".res": "arbin-res", ".parquet": "table", ".pq": "table"}


def detect_format(path: str | Path) -> str:
    """The key in :data:`FORMATS` for a file, from its extension, then its first lines."""
    path = Path(path)
    by_ext = _BY_EXTENSION.get(path.suffix.lower())
    if by_ext == "xlsx":
        return _xlsx_format(path)
    if by_ext:
        return by_ext
    with path.open("rb") as fh:
        magic = fh.read(64)
    if magic.startswith(biologic.MPR_MAGIC):
        return "mpr"
    if magic.startswith(b"PK\x03\x04") or (b"\x00" in magic and not magic.startswith(UTF16_BOMS)):
        raise UnsupportedFormatError(
            f"{path} is a binary file of no supported format; give --format NAME (Python: format=), one of {sorted(FORMATS)}"
        )
    lines, _ = read_head(path, max_lines=40)
    for name, module in (("biologic", biologic), ("maccor", maccor), ("arbin", arbin), ("neware", neware)):
        if module.sniff(lines):
            return name
    return "table"


def _xlsx_format(path: Path) -> str:
    """Landt, Arbin and Neware all export XLSX; their header rows tell them apart, and a
    spreadsheet of none of them is read as a table."""
    book = xlsx.open_workbook(path)
    try:
        for name, module in (("landt", landt), ("arbin-xlsx", arbin), ("xlsx", neware)):
            if module.sniff_workbook(book):
                return name
        return "xlsx-table"
    finally:
        book.close()


def read_archive(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: ColumnMapping | Mapping[str, str] | str | Path | None = None,
    units: Mapping[str, str] | None = None,
    cell: str | None = None,
    start: float | datetime | str | None = None,
    tz: str | None = None,
    discharge_positive: bool | None = None,
) -> Archive:
    """Read an archived cycler file into cells in wire units.

    ``mapping`` is a ``{role: column}`` dict, a :class:`ColumnMapping` or the
    path of a TOML mapping file; ``units`` overrides units per role. ``cell``
    names a one-cell file or picks one cell of a multi-cell table. ``start``
    (epoch seconds, a datetime or an ISO string) places elapsed-only data in
    time; ``tz`` is the zone of timestamps printed without one.
    ``discharge_positive`` states the file's sign convention when it has no
    step labels (None: vendor convention, else detected from the voltage).
    """
    path = Path(path)
    if not path.exists():
        raise ReaderError(f"{path} does not exist")
    name = format or detect_format(path)
    if name not in FORMATS:
        raise UnsupportedFormatError(f"unknown format {name!r}; formats are {sorted(FORMATS)}")
    if isinstance(mapping, (str, Path)):
        mapping = load_mapping(mapping)
    options = Options(start=_epoch(start, tz), tz=tz, discharge_positive=discharge_positive, cell=cell)
    if name == "table":
        return read_table(path, mapping=mapping, units=units, options=options)
    return FORMATS[name](path, mapping=ColumnMapping.coerce(mapping, units), options=options)


def _epoch(start: float | datetime | str | None, tz: str | None) -> float | None:
    if start is None or isinstance(start, (int, float)):
        return None if start is None else float(start)
    moment = datetime.fromisoformat(start) if isinstance(start, str) else start
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(tz) if tz else timezone.utc)
    return moment.timestamp()
