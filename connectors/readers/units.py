"""Units as cyclers print them in headers, and their conversion to wire units.

Cycler exports carry the unit in the column header (``Current(mA)``,
``<I>/mA``, ``Voltage / V``, ``Test (Sec)``, ``Voltage_V``, ``Charge_Capacity_Ah``)
and vendors disagree on spelling, so the one place that knows ``mA``, ``Amps``,
``Sec``, ``mA.h``, ``degC`` and ``øC`` (a latin-1 degree sign read as cp437) is here.
A unit that is not in these tables is an error, never a guess: a current
column off by a factor of 1000 would make the twin's capacity fade look like a
dead cell.
"""

from __future__ import annotations

import re

from .model import AmbiguousUnitError

__all__ = ["QUANTITIES", "WIRE_UNITS", "DATENUM", "SERIAL_DATE", "split_header", "canonical_unit", "conversion", "epoch_conversion"]

# quantity -> {unit spelling (lower case, normalised) -> (scale, offset)} so that
# wire value = file value * scale + offset.
QUANTITIES: dict[str, dict[str, tuple[float, float]]] = {
    "current": {
        "a": (1.0, 0.0),
        "ampere": (1.0, 0.0),
        "amp": (1.0, 0.0),
        "amps": (1.0, 0.0),
        "ma": (1e-3, 0.0),
        "milliamp": (1e-3, 0.0),
        "milliamps": (1e-3, 0.0),
        "milliampere": (1e-3, 0.0),
        "ua": (1e-6, 0.0),
        "na": (1e-9, 0.0),
    },
    "voltage": {
        "v": (1.0, 0.0),
        "volt": (1.0, 0.0),
        "volts": (1.0, 0.0),
        "mv": (1e-3, 0.0),
        "millivolt": (1e-3, 0.0),
        "millivolts": (1e-3, 0.0),
    },
    "time": {
        "s": (1.0, 0.0),
        "sec": (1.0, 0.0),
        "secs": (1.0, 0.0),
        "second": (1.0, 0.0),
        "seconds": (1.0, 0.0),
        "ms": (1e-3, 0.0),
        "us": (1e-6, 0.0),
        "ns": (1e-9, 0.0),
        "min": (60.0, 0.0),
        "mins": (60.0, 0.0),
        "minute": (60.0, 0.0),
        "minutes": (60.0, 0.0),
        "h": (3600.0, 0.0),
        "hr": (3600.0, 0.0),
        "hour": (3600.0, 0.0),
        "hours": (3600.0, 0.0),
        "d": (86400.0, 0.0),
    },
    "temperature": {
        "c": (1.0, 0.0),
        "k": (1.0, -273.15),
    },
    # The cycler's charge counters, read into mAh (not a wire quantity; see model.CellRecord).
    "charge": {
        "ah": (1e3, 0.0),
        "a.h": (1e3, 0.0),
        "a-h": (1e3, 0.0),
        "a-hr": (1e3, 0.0),
        "amp-hr": (1e3, 0.0),
        "mah": (1.0, 0.0),
        "ma.h": (1.0, 0.0),
        "ma-h": (1.0, 0.0),
        "uah": (1e-3, 0.0),
        "ua.h": (1e-3, 0.0),
        "c": (1 / 3.6, 0.0),  # coulomb: 1 mAh = 3.6 C
        "as": (1 / 3.6, 0.0),
        "mc": (1 / 3600.0, 0.0),
        "ampere_hour": (1e3, 0.0),  # BDF machine-readable names
        "milliampere_hour": (1.0, 0.0),
    },
    # Only to tell impedance rows from cycler samples (tabular), never converted to the wire.
    "frequency": {
        "hz": (1.0, 0.0),
        "khz": (1e3, 0.0),
    },
}

# The wire's own units, for messages and reports (charge: the unit of the counters).
WIRE_UNITS = {"current": "A", "voltage": "V", "time": "s", "temperature": "degC", "charge": "mAh"}

# MATLAB serial date numbers (battery-data-hub "Datenum_d"): days since year 0, wall-clock time.
DATENUM = "datenum"
_DATENUM_1970 = 719529.0  # datenum of 1970-01-01 00:00
# Spreadsheet / OLE Automation serial dates (Excel, the DateTime of Arbin's .res tables):
# days since 1899-12-30, wall-clock time.
SERIAL_DATE = "serial date"
_SERIAL_1970 = 25569.0  # serial date of 1970-01-01 00:00

# "Name(unit)", "Name (unit)", "Name [unit]", "Name / unit", "<I>/mA", "time/s".
# The unit is the last bracketed or slash-separated token of the header.
_HEADER = re.compile(r"^(?P<base>.*?)\s*(?:\((?P<p>[^()]*)\)|\[(?P<b>[^\[\]]*)\]|/\s*(?P<s>[^/]*))\s*$")
# "Voltage_V", "Charge_Capacity_Ah", "charging_capacity_ampere_hour": a unit after an underscore;
# "Total Time, S", "Current, A" (Bitrode): after a comma.
_SUFFIXES = (re.compile(r"^(?P<base>.+?)_(?P<u>[^_\s]+_[^_\s]+)$"), re.compile(r"^(?P<base>.+?)_(?P<u>[^_\s]+)$"),
             re.compile(r"^(?P<base>.+?),\s*(?P<u>[^,]+?)$"))


def split_header(header: str) -> tuple[str, str | None]:
    """Split a column header into its base name and the unit it states, if any.

    An underscore or comma suffix counts as a unit only when it is a unit this
    module knows (``Voltage_V``, ``Time_s``, ``Current, A``), so ``Cycle_Index``
    keeps its name.
    """
    text = header.strip()
    m = _HEADER.match(text)
    if m is not None:
        unit = next((u for u in m.group("p", "b", "s") if u is not None), "")
        return m.group("base").strip(), (unit.strip() or None)
    for pattern in _SUFFIXES:
        m = pattern.match(text)
        if m is not None and _is_unit(m.group("u")):
            return m.group("base"), m.group("u")
    return text, None


def _is_unit(token: str) -> bool:
    key = canonical_unit(token)
    return any(key in table for table in QUANTITIES.values())


def canonical_unit(unit: str) -> str:
    """Fold the spellings of one unit together: ``µA``/``μA``/``uA``, ``°C``/``degC``/``øC``."""
    u = unit.strip().lower().replace("µ", "u").replace("μ", "u")
    u = re.sub(r"^(deg(ree)?s?\s*|°|º|ø|\u2103)", "", u)  # temperature prefixes
    return "c" if u in ("celsius", "\u2103") else u


def conversion(quantity: str, unit: str | None, column: str) -> tuple[float, float]:
    """(scale, offset) from ``unit`` to the wire unit of ``quantity``.

    Raises :class:`AmbiguousUnitError` naming the column when the unit is
    missing or unknown, with the option that resolves it.
    """
    if unit is None:
        raise AmbiguousUnitError(
            f"column {column!r} ({quantity}) states no unit; give --unit {quantity}={WIRE_UNITS[quantity]} "
            f"(mapping file: [units] {quantity} = \"...\"; Python: units={{'{quantity}': ...}})"
        )
    table = QUANTITIES[quantity]
    key = canonical_unit(unit)
    if key not in table:
        known = ", ".join(sorted(table))
        raise AmbiguousUnitError(
            f"column {column!r}: unit {unit!r} is not a known {quantity} unit ({known}); "
            f"give --unit {quantity}=UNIT (Python: units={{'{quantity}': ...}}) to state it"
        )
    return table[key]


def epoch_conversion(unit: str, column: str) -> tuple[float, float]:
    """(scale, offset) from numbers in a timestamp column to seconds since the epoch.

    Plain time units count from 1970 (``s``, ``ms``); MATLAB date numbers
    (unit :data:`DATENUM`) count days from year 0, spreadsheet serial dates
    (unit :data:`SERIAL_DATE`) days from 1899-12-30.
    """
    if canonical_unit(unit) == DATENUM:
        return 86400.0, -_DATENUM_1970 * 86400.0
    if canonical_unit(unit) == SERIAL_DATE:
        return 86400.0, -_SERIAL_1970 * 86400.0
    return conversion("time", unit, column)
