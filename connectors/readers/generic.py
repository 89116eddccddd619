"""Generic CSV / TSV / Parquet / XLSX tables, the Battery Data Format, and column mappings.

Most archived data is not a raw cycler export but a table someone already
wrote: a BDF file, a lab's own CSV or spreadsheet, a Parquet dump (battdat's states its
units in its metadata), a battery-data-hub or BatteryArchive time series, this project's
own ``t, v, i`` columns. Those are recognised by their column names (BDF preferred labels and machine-readable
names, the wire names, common spellings) with the unit read from the header
(``Voltage (V)``, ``Current / mA``, ``Time_s``, ``Charge_Capacity_Ah``);
any other table is read with a mapping ``role -> column`` given in code, on the
command line (``--map current=Current(mA)``) or in a small TOML file::

    [columns]
    time = "Elapsed (min)"
    voltage = "U"
    current = "I"
    [units]
    voltage = "mV"
    current = "mA"
    [options]
    discharge_positive = true
    tz = "Europe/Berlin"

A mapping's units override what a header says, which is how a column whose
header lies about its unit is read correctly.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import xlsx
from .counters import COUNTER_ROLES
from .model import Archive, MissingColumnError, ParseReport, ReaderError
from .tabular import ROLES, Layout, Options, header_key, normalise, pick, read_text, require
from .text import read_head, split_line
from .units import DATENUM, QUANTITIES, canonical_unit, split_header

__all__ = [
    "BDF_COLUMNS",
    "ColumnMapping",
    "load_mapping",
    "generic_layout",
    "override",
    "with_mapping_options",
    "read_table",
    "read_xlsx_table",
    "sniff_delimiter",
]

_HEADER_SEARCH_ROWS = 30  # rows of notes a spreadsheet may hold above its column names

# Battery Data Format preferred labels (battery-data-alliance/battery-data-format
# README) and machine-readable names. BDF units are fixed and current is
# positive on charge, which is the wire's convention.
BDF_COLUMNS: dict[str, tuple[str, ...]] = {
    "time": ("Test Time / s", "test_time_second"),
    "timestamp": ("Unix Time / s", "unix_time_second"),
    "voltage": ("Voltage / V", "voltage_volt"),
    "current": ("Current / A", "current_ampere"),
    "cycle": ("Cycle Count / 1", "cycle_count"),
    "step": ("Step Count / 1", "step_count"),
    "temperature": (
        "Surface Temperature T1 / degC",
        "Temperature T1 / degC",  # the same without "Surface", as some converters write it
        "temperature_t1_celsius",
        "Ambient Temperature / degC",
        "ambient_temperature_celsius",
    ),
    "charge_capacity": ("Charging Capacity / Ah", "charging_capacity_ah", "charging_capacity_ampere_hour"),
    "discharge_capacity": (
        "Discharging Capacity / Ah", "discharging_capacity_ah", "discharging_capacity_ampere_hour",
    ),
}
_BDF_UNITS = {
    "time": "s", "timestamp": "s", "voltage": "V", "current": "A", "temperature": "degC",
    "charge_capacity": "Ah", "discharge_capacity": "Ah",
}

# The wire's own names (ARCHITECTURE.md), units implied: a file written from
# cell.samples frames reads back without a mapping.
_WIRE = {
    "timestamp": "t", "voltage": "v", "current": "i", "temperature": "temp_c",
    "cycle": "cycle", "step": "step", "cell": "cell",
}
_WIRE_UNITS = {"timestamp": "s", "voltage": "V", "current": "A", "temperature": "degC"}

# Common spellings in hand-made tables and data portals (battery-data-hub, BatteryArchive,
# battdat), BioLogic's averaged ``<I>`` and German exports (Digatron, BaSyTec: Zeit, Spannung,
# Strom), most specific first; matched on the name without its unit.
_ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("test time", "elapsed time", "total time", "prog time", "testtime", "elapsed", "time", "seconds", "secs",
             "minutes", "hours", "testzeit", "zeit"),
    "timestamp": ("unix time", "timestamp", "time stamp", "date time", "datetime", "date", "datenum"),
    "voltage": ("voltage", "cell voltage", "potential", "ewe", "ecell", "u", "v", "volts", "volt", "millivolts", "mv",
                "spannung"),
    "current": ("current", "cell current", "i", "<i>", "amps", "amp", "amperes", "ampere", "milliamps", "ma", "strom"),
    "temperature": ("cell temperature", "temperature", "temp", "t1", "temperature a1", "temperatur"),
    "cycle": ("cycle index", "cycle number", "cycle count", "cycle", "zyklus"),
    "step": ("step index", "step number", "step count", "step", "schritt"),
    "cell": ("cell id", "cell"),
    "charge_capacity": ("charge capacity", "charging capacity", "cycle charge capacity", "cycle capacity charge",
                        "chg cap", "q charge"),
    "discharge_capacity": ("discharge capacity", "discharging capacity", "cycle discharge capacity",
                           "cycle capacity discharge", "dchg cap", "q discharge"),
    "capacity": ("capacity", "step capacity"),
    "net_capacity": ("net capacity", "net charge", "(q-qo)"),
    "frequency": ("frequency", "freq"),
}


# Quantities whose column may be named by its unit alone ("volts", "amps", "mA", "seconds").
_NAMED_BY_UNIT = ("voltage", "current", "time")

# Exports whose headers state no units but whose vendor fixes them, known by a column only
# they have: Bitrode's first CSV layout (``Total Time,Cycle,Loop Counter #1,...,Current,
# Voltage,...``; its later one says ``"Total Time, S"``).
_UNSTATED_UNITS = {"Loop Counter #1": ("bitrode csv", {"time": "s", "voltage": "V", "current": "A"})}


@dataclass
class ColumnMapping:
    """Which column holds which quantity, in which unit; plus file-level options."""

    columns: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    discharge_positive: bool | None = None
    tz: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(ROLES)) + sorted(set(self.units) - set(ROLES))
        if unknown:
            raise ReaderError(f"unknown mapping role(s) {unknown}; roles are {', '.join(ROLES)}")

    @classmethod
    def coerce(
        cls, mapping: ColumnMapping | Mapping[str, str] | None, units: Mapping[str, str] | None = None
    ) -> ColumnMapping:
        """A mapping from a ``ColumnMapping``, a plain ``{role: column}`` dict or None."""
        if isinstance(mapping, ColumnMapping):
            base = mapping
        else:
            base = cls(columns=dict(mapping or {}))
        if units:
            base = cls(dict(base.columns), {**base.units, **units}, base.discharge_positive, base.tz)
        return base

    @classmethod
    def from_pairs(cls, pairs: Sequence[str]) -> ColumnMapping:
        """From command-line items ``role=Column header`` (``--map current=Current(mA)``)."""
        columns = {}
        for pair in pairs:
            role, sep, column = pair.partition("=")
            if not sep or not column:
                raise ReaderError(f"mapping item {pair!r} is not role=COLUMN, e.g. current=Current(mA)")
            columns[role.strip()] = column.strip()
        return cls(columns=columns)


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read a mapping TOML file with ``[columns]``, ``[units]`` and ``[options]`` tables."""
    with Path(path).open("rb") as fh:
        data = tomllib.load(fh)
    unknown = sorted(set(data) - {"columns", "units", "options"})
    if unknown:
        raise ReaderError(f"{path}: unknown table(s) {unknown}; expected [columns], [units], [options]")
    options = data.get("options", {})
    return ColumnMapping(
        columns={k: str(v) for k, v in data.get("columns", {}).items()},
        units={k: str(v) for k, v in data.get("units", {}).items()},
        discharge_positive=options.get("discharge_positive"),
        tz=options.get("tz"),
    )


def generic_layout(header: Sequence[str], mapping: ColumnMapping, fmt: str = "table") -> Layout:
    """Find the roles in a header: mapping first, then BDF, wire names, common spellings."""
    columns: dict[str, str] = {}
    units: dict[str, str] = {}
    convention: bool | None = None
    for role, column in mapping.columns.items():
        if column not in header:
            raise MissingColumnError(
                f"mapped column {column!r} for {role} is not in the file; columns are {list(header)}"
            )
        columns[role] = column

    bdf = {role: pick(header, names, any_unit=False) for role, names in BDF_COLUMNS.items()}
    if bdf["voltage"] and bdf["current"] and (bdf["time"] or bdf["timestamp"]):
        fmt, convention = "bdf", False
        for role, column in bdf.items():
            if column and role not in columns:
                columns[role] = column
                if role in _BDF_UNITS:
                    units[role] = _BDF_UNITS[role]
    elif all(name in header for name in ("t", "v", "i")):
        fmt, convention = "wire table", False
        for role, name in _WIRE.items():
            if name in header and role not in columns:
                columns[role] = name
                if role in _WIRE_UNITS:
                    units[role] = _WIRE_UNITS[role]
    else:
        taken = set(columns.values())
        for role, aliases in _ALIASES.items():
            found = pick([h for h in header if h not in taken], aliases)
            if found and role not in columns:
                columns[role] = found
                taken.add(found)
    # A timestamp-like column is only absolute time when it is not also the elapsed one.
    if columns.get("timestamp") is not None and columns.get("timestamp") == columns.get("time"):
        del columns["timestamp"]
    for role, column in columns.items():
        if role not in units:
            name, unit = split_header(column)
            if unit is None and role in _NAMED_BY_UNIT and canonical_unit(name) in QUANTITIES[role]:
                unit = name  # a column called "volts", "mA" or "seconds" holds just that
            if unit is not None:
                units[role] = unit
    if header_key(columns.get("timestamp", "")) == DATENUM:  # "Datenum_d" counts days since year 0
        units["timestamp"] = DATENUM
    for marker, (vendor, vendor_units) in _UNSTATED_UNITS.items():
        unstated = {role: unit for role, unit in vendor_units.items() if role in columns and role not in units}
        if marker in header and unstated:
            fmt = vendor
            units.update(unstated)
    units.update(mapping.units)
    return Layout(fmt, columns, units, discharge_positive=convention)


def sniff_delimiter(line: str) -> str:
    """Tab, semicolon or comma, whichever splits the header line most."""
    return max(("\t", ";", ","), key=line.count)


def read_table(
    path: str | Path,
    *,
    mapping: ColumnMapping | Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
    options: Options | None = None,
) -> Archive:
    """Read a generic CSV/TSV/Parquet table (BDF and wire names need no mapping)."""
    path = Path(path)
    options = options or Options()
    mp = ColumnMapping.coerce(mapping, units)
    options = with_mapping_options(mp, options)
    report = ParseReport(source=str(path))
    if path.suffix.lower() in (".parquet", ".pq"):
        schema = pq.read_schema(path)
        header = schema.names
        layout = generic_layout(header, mp, "parquet")
        dataset = _battdat_layout(path, schema, layout, mp)
        require(layout, header)
        options = replace(options, cell=options.cell or dataset)
        table = pq.read_table(path, columns=list(dict.fromkeys(layout.columns.values())))
        if layout.format == "bdf":
            layout.format = "bdf parquet"
        return normalise(table, layout, options, report)

    lines, encoding = read_head(path)
    index = _header_index(lines, mp)
    if index is None:
        raise ReaderError(f"{path} has no header line")
    if index:
        report.warn(f"column names on line {index + 1}; the {index} line(s) above them are not data")
    delimiter = sniff_delimiter(lines[index])
    header = _names(lines[index])
    layout = generic_layout(header, mp, {"\t": "tsv", ";": "csv (;)", ",": "csv"}[delimiter])
    if layout.format in {vendor for vendor, _units in _UNSTATED_UNITS.values()}:
        assumed = ", ".join(f"{role} in {layout.units[role]}" for role in ("time", "voltage", "current")
                            if role in layout.units and role not in mp.units and not split_header(layout.columns[role])[1])
        if assumed:
            report.warn(f"the header states no units; read as a {layout.format} export: {assumed} "
                        "(give --unit ROLE=UNIT if the file says otherwise)")
    unit_rows = _read_units_row(lines[index + 1] if index + 1 < len(lines) else "", delimiter, header, layout)
    if unit_rows:
        report.warn(f"units from the row below the column names (line {index + 2})")
    first_data = index + 1 + unit_rows
    if delimiter != "," and first_data < len(lines):
        layout.decimal_comma = _decimal_comma(lines[first_data : first_data + 20], delimiter)
    return read_text(
        path, header_line=first_data, delimiter=delimiter, encoding=encoding,
        header=header, layout=layout, options=options, report=report,
    )


def _battdat_layout(path: Path, schema: pa.Schema, layout: Layout, mapping: ColumnMapping) -> str | None:
    """Complete the layout of a battdat (battery-data-toolkit) Parquet table, and name its cell.

    battdat states each column's unit in the table's ``table_metadata``, not in the column
    name, and fixes current as positive on charge; its ``time`` column is the UNIX timestamp
    beside the elapsed ``test_time``. Every dataset's table is called ``raw_data.parquet``,
    so the cell is the dataset's ``name`` or else its folder's."""
    metadata = schema.metadata or {}
    try:
        described = json.loads(metadata.get(b"table_metadata", b""))
        battery = json.loads(metadata.get(b"battery_metadata", b"{}"))
    except ValueError:
        return None
    if not isinstance(described, dict) or layout.format != "parquet":
        return None
    layout.format, layout.discharge_positive = "battdat parquet", False
    if "time" in schema.names and "time" not in layout.columns.values() and "timestamp" not in mapping.columns:
        layout.columns["timestamp"] = "time"
    for role, column in layout.columns.items():
        info = described.get(column)
        if role not in layout.units and isinstance(info, dict) and info.get("units"):
            layout.units[role] = info["units"]
    name = battery.get("name") if isinstance(battery, dict) else None
    return name or (path.resolve().parent.name if path.stem == "raw_data" else None)


def read_xlsx_table(
    path: str | Path,
    *,
    mapping: ColumnMapping | Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
    options: Options | None = None,
) -> Archive:
    """Read a spreadsheet of the lab's own (no cycler's layout; needs openpyxl): the first
    sheet with a row, among its first few, that names voltage and current by the rules of a
    CSV's header (names, unit suffixes, a mapping), and the rows below it."""
    path = Path(path)
    mp = ColumnMapping.coerce(mapping, units)
    options = with_mapping_options(mp, options or Options())
    book = xlsx.open_workbook(path)
    try:
        found = None
        for sheet in book.worksheets:
            for above, row in enumerate(sheet.iter_rows(values_only=True, max_row=_HEADER_SEARCH_ROWS)):
                header = xlsx.header_of(row)
                layout = generic_layout(header, mp, "xlsx table")
                if {"voltage", "current"} <= layout.columns.keys():
                    found = sheet, above, header, layout
                    break
            if found:
                break
        if found is None:  # none has voltage and current: the first sheet's first row says what it lacks
            header = xlsx.header_of(next(book.worksheets[0].iter_rows(values_only=True, max_row=1), None))
            found = book.worksheets[0], 0, header, generic_layout(header, mp, "xlsx table")
        sheet, above, header, layout = found
        require(layout, header)
        wanted = list(dict.fromkeys(layout.columns.values()))
        cells = xlsx.collect(sheet.iter_rows(values_only=True, min_row=above + 2), header, wanted)
    finally:
        book.close()
    archive = xlsx.archive_of(path, wanted, cells, layout, options, above + 1)
    if above:
        archive.report.warn(f"column names on sheet row {above + 1} of {sheet.title!r}; the rows above them are not data")
    return archive


def _names(line: str) -> list[str]:
    """The column names on a header line; BaSyTec marks its header as a comment (``~Time[h]``)."""
    return split_line(line.removeprefix("~"), sniff_delimiter(line))


def _read_units_row(line: str, delimiter: str, header: Sequence[str], layout: Layout) -> int:
    """1 if `line`, the one below the column names, holds their units (Digatron: ``Voltage,
    Current`` over ``V,A``), which then fill the units the names do not state; else 0."""
    fields = split_line(line, delimiter)
    if len(fields) < len(header) // 2 or not any(fields) or any(_is_number(f) for f in fields):
        return 0
    under = dict(zip(header, fields))
    stated = {role: under[column] for role, column in layout.columns.items() if under.get(column)}
    if not any(canonical_unit(stated.get(role, "")) in QUANTITIES[role] for role in ("voltage", "current")):
        return 0
    for role, unit in stated.items():
        quantity = "charge" if role in COUNTER_ROLES else role
        if quantity in QUANTITIES and canonical_unit(unit) in QUANTITIES[quantity]:  # not "h:mm:ss", formats
            layout.units.setdefault(role, unit)
    return 1


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True


def _header_index(lines: Sequence[str], mapping: ColumnMapping) -> int | None:
    """The line that names the columns: the first that names voltage, current and a time (or
    every mapped column), below any preamble a cycler writes first (Bitrode's ``Test Name``,
    ``Test Date``, BaSyTec's ``~`` lines); else the first line that is not blank or a ``#`` comment."""
    candidates = [k for k, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")]
    for k in candidates:
        header = _names(lines[k])
        if mapping.columns:
            if set(mapping.columns.values()) <= set(header):
                return k
            continue
        try:
            cols = generic_layout(header, mapping).columns
        except ReaderError:
            continue
        if "voltage" in cols and "current" in cols and ("time" in cols or "timestamp" in cols):
            return k
    return candidates[0] if candidates else None


def _decimal_comma(lines: Sequence[str], delimiter: str) -> bool:
    """True when numbers in the first data lines are written ``1,5``."""
    import re

    pattern = re.compile(r"^[-+]?\d+,\d+([eE][-+]?\d+)?$")
    fields = [f.strip() for ln in lines for f in ln.split(delimiter)]
    return any(pattern.match(f) for f in fields)


def with_mapping_options(mapping: ColumnMapping, options: Options) -> Options:
    """Options in a mapping file apply unless the caller passed them explicitly."""
    return replace(
        options,
        discharge_positive=(
            options.discharge_positive if options.discharge_positive is not None else mapping.discharge_positive
        ),
        tz=options.tz or mapping.tz,
    )


def override(layout: Layout, header: Sequence[str], mapping: ColumnMapping) -> Layout:
    """Let a caller's mapping and units win over a vendor layout's defaults."""
    for role, column in mapping.columns.items():
        if column not in header:
            raise MissingColumnError(
                f"mapped column {column!r} for {role} is not in the file; columns are {list(header)}"
            )
        layout.columns[role] = column
        unit = split_header(column)[1]
        if unit is not None:
            layout.units[role] = unit
    layout.units.update(mapping.units)
    return layout
