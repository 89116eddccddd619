"""Generic CSV / TSV / Parquet tables, the Battery Data Format, and column mappings.

Most archived data is not a raw cycler export but a table someone already
wrote: a BDF file, a lab's own CSV, a Parquet dump, a battery-data-hub or
BatteryArchive time series, this project's own ``t, v, i`` columns. Those are
recognised by their column names (BDF preferred labels and machine-readable
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

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow.parquet as pq

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
    "sniff_delimiter",
]

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
# battdat), most specific first; matched on the name without its unit.
_ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("test time", "elapsed time", "total time", "testtime", "elapsed", "time", "seconds", "secs", "minutes",
             "hours"),
    "timestamp": ("unix time", "timestamp", "date time", "datetime", "date", "datenum"),
    "voltage": ("voltage", "cell voltage", "potential", "ewe", "ecell", "u", "v", "volts", "volt", "millivolts", "mv"),
    "current": ("current", "cell current", "i", "amps", "amp", "amperes", "ampere", "milliamps", "ma"),
    "temperature": ("cell temperature", "temperature", "temp", "t1"),
    "cycle": ("cycle index", "cycle number", "cycle count", "cycle"),
    "step": ("step index", "step number", "step count", "step"),
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
        header = pq.read_schema(path).names
        layout = generic_layout(header, mp, "parquet")
        require(layout, header)
        table = pq.read_table(path, columns=list(dict.fromkeys(layout.columns.values())))
        if layout.format == "bdf":
            layout.format = "bdf parquet"
        return normalise(table, layout, options, report)

    lines, encoding = read_head(path)
    index = next((k for k, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")), None)
    if index is None:
        raise ReaderError(f"{path} has no header line")
    delimiter = sniff_delimiter(lines[index])
    header = split_line(lines[index], delimiter)
    layout = generic_layout(header, mp, {"\t": "tsv", ";": "csv (;)", ",": "csv"}[delimiter])
    if delimiter != "," and index + 1 < len(lines):
        layout.decimal_comma = _decimal_comma(lines[index + 1 : index + 21], delimiter)
    return read_text(
        path, header_line=index + 1, delimiter=delimiter, encoding=encoding,
        header=header, layout=layout, options=options, report=report,
    )


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
