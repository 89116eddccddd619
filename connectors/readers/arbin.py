"""Arbin CSV exports (MITS Pro "Data_Point, Test_Time(s), Date_Time, ..." and MITS 8 spellings).

Arbin writes one header line, comma separated, units in parentheses, and signed
current with charge positive, which is the wire's convention. ``Date_Time`` is
the channel's local wall clock without a zone (pass ``tz``); ``Test_Time(s)``
has sub-second resolution, so both are read and combined (see tabular).
``Charge_Capacity(Ah)``/``Discharge_Capacity(Ah)`` are the cycler's charge
counters. Column names mirror what cellpy, beep and battdat expect from these
exports; the unit may also follow an underscore (``Test_Time_s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .generic import ColumnMapping, override, with_mapping_options
from .model import Archive, ParseReport
from .tabular import Layout, Options, pick, read_text
from .text import read_head, split_line
from .units import split_header

__all__ = ["sniff", "read_arbin"]

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
# Date_Time as Arbin prints it besides ISO 8601.
TIMESTAMP_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M")


def sniff(lines: Sequence[str]) -> bool:
    """An Arbin export has its Arbin column names on the first line."""
    if not lines:
        return False
    first = lines[0]
    return ("Test_Time(s)" in first or "Data_Point" in first) or ("Test Time (s)" in first and "Date Time" in first)


def read_arbin(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read an Arbin CSV export."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    lines, encoding = read_head(path, max_lines=2)
    header = split_line(lines[0], ",")
    columns = {role: col for role, names in _ALIASES.items() if (col := pick(header, names))}
    # Unitless spellings (MITS 8 "Voltage") are in Arbin's base units.
    units = {"time": "s", "voltage": "V", "current": "A", "temperature": "degC",
             "charge_capacity": "Ah", "discharge_capacity": "Ah"}
    units.update({role: u for role, col in columns.items() if (u := split_header(col)[1])})
    layout = override(
        Layout("arbin csv", columns, units, discharge_positive=False, timestamp_formats=TIMESTAMP_FORMATS),
        header,
        mapping,
    )
    return read_text(
        path, header_line=1, delimiter=",", encoding=encoding, header=header,
        layout=layout, options=options, report=ParseReport(source=str(path)),
    )
