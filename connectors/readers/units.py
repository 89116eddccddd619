"""Units as cyclers print them in headers, and their conversion to wire units.

Cycler exports carry the unit in the column header (``Current(mA)``,
``<I>/mA``, ``Voltage / V``, ``Test (Sec)``) and vendors disagree on spelling,
so the one place that knows ``mA``, ``Amps``, ``Sec``, ``degC`` and ``øC`` (a
latin-1 degree sign read as cp437) is here. A unit that is not in these tables
is an error, never a guess: a current column off by a factor of 1000 would
make the twin's capacity fade look like a dead cell.
"""

from __future__ import annotations

import re

from .model import AmbiguousUnitError

__all__ = ["QUANTITIES", "WIRE_UNITS", "split_header", "canonical_unit", "conversion"]

# quantity -> {unit spelling (lower case, normalised) -> (scale, offset)} so that
# wire value = file value * scale + offset.
QUANTITIES: dict[str, dict[str, tuple[float, float]]] = {
    "current": {
        "a": (1.0, 0.0),
        "amp": (1.0, 0.0),
        "amps": (1.0, 0.0),
        "ma": (1e-3, 0.0),
        "ua": (1e-6, 0.0),
        "na": (1e-9, 0.0),
    },
    "voltage": {
        "v": (1.0, 0.0),
        "volt": (1.0, 0.0),
        "volts": (1.0, 0.0),
        "mv": (1e-3, 0.0),
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
}

# The wire's own units, for messages and reports.
WIRE_UNITS = {"current": "A", "voltage": "V", "time": "s", "temperature": "degC"}

# "Name(unit)", "Name (unit)", "Name [unit]", "Name / unit", "<I>/mA", "time/s".
# The unit is the last bracketed or slash-separated token of the header.
_HEADER = re.compile(r"^(?P<base>.*?)\s*(?:\((?P<p>[^()]*)\)|\[(?P<b>[^\[\]]*)\]|/\s*(?P<s>[^/]*))\s*$")


def split_header(header: str) -> tuple[str, str | None]:
    """Split a column header into its base name and the unit it states, if any."""
    m = _HEADER.match(header.strip())
    if m is None:
        return header.strip(), None
    unit = m.group("p") if m.group("p") is not None else m.group("b")
    if unit is None:
        unit = m.group("s")
    return m.group("base").strip(), (unit.strip() or None)


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
            f"column {column!r} ({quantity}) states no unit; pass units={{'{quantity}': "
            f"'{WIRE_UNITS[quantity]}'}} (or [units] {quantity} = \"...\" in the mapping file)"
        )
    table = QUANTITIES[quantity]
    key = canonical_unit(unit)
    if key not in table:
        known = ", ".join(sorted(table))
        raise AmbiguousUnitError(
            f"column {column!r}: unit {unit!r} is not a known {quantity} unit ({known}); "
            f"pass units={{'{quantity}': ...}} to state it"
        )
    return table[key]
