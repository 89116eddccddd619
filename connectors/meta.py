"""Checking cell metadata: what the twin must know about a cell before it can read its samples.

The same record comes from a `[cells.<id>]` table of the config file and from a JSON
message on the compacted `cell.meta` topic, so both go through `meta_from_mapping`.
The hydride mass has no default on purpose: capacities per gram, the 1C current and the
model's absolute capacity all scale with it, and a guessed mass would make every
number the twin reports wrong without anyone noticing.

Cell ids and electrode labels become tags in InfluxDB, Kafka keys, Parquet columns and
strings in Flux and PromQL queries, so both are held to one character set (`name_error`):
letters and digits of any script and ``NAME_PUNCTUATION``, at most ``NAME_MAX_CHARS``.
No backslash, quote or control character: line protocol has no escape for a backslash
before a separator that InfluxDB and VictoriaMetrics read alike, and quotes break the
query strings and dashboards that quote the name. Metadata numbers are bounded (``LIMITS``)
so that everything derived from them (per-gram capacities, the 1C current, resistances)
stays finite.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
from typing import Any, Mapping

import numpy as np

from connectors.wire import CellMeta, MetaError
from twin.params import OCV_POINTS, V_WINDOW_FLOOR

__all__ = ["meta_from_mapping", "name_error", "shown", "LIMITS", "NAME_MAX_CHARS", "NAME_PUNCTUATION", "V_RANGE"]

_KEYS = {"cell", "preset", "composition", "generic", "mass_mg", "c_rate"}
_GENERIC_KEYS = {"capacity_mah", "v_min", "v_max", "ocv", "r_ohm", "tau_diff_s"}

NAME_MAX_CHARS = 200
# Besides letters and digits of any script; a space not first or last. Left out: backslash,
# quotes and $ { } < > (escapes in line protocol and query strings, Grafana variables, HTML).
NAME_PUNCTUATION = " !#%&()*+,-./:;=?@[]^_|~"
_NAME = re.compile(f"[\\w{re.escape(NAME_PUNCTUATION)}]+")  # \w: letters and digits (any script) and _

V_RANGE = (-1.0, 6.0)  # volts a cycler channel can report: samples and OCV tables
# Bounds (inclusive) of each metadata number: far beyond any cell on a cycler, near enough
# that nothing derived from them (per-gram figures, the 1C current) overflows.
LIMITS: dict[str, tuple[float, float]] = {
    "mass_mg": (1.0e-6, 1.0e7),  # 1 ng .. 10 kg
    "c_rate": (1.0e-6, 1.0e3),
    "generic.capacity_mah": (1.0e-6, 1.0e9),
    "generic.v_min": (V_WINDOW_FLOOR, V_RANGE[1]),
    "generic.v_max": (V_WINDOW_FLOOR, V_RANGE[1]),
    "generic.r_ohm": (1.0e-9, 1.0e6),
    "generic.tau_diff_s": (1.0e-3, 1.0e7),
}

shown = reprlib.Repr()  # values quoted in error texts: long strings and deep lists cut short
shown.maxstring = shown.maxother = 80
shown.maxlevel = 3


def name_error(what: str, name: object) -> str | None:
    """Why ``name`` cannot be a cell id (or electrode label), or None if it can."""
    if not isinstance(name, str):
        return f"{what} must be a string, got {type(name).__name__}"
    if not 0 < len(name) <= NAME_MAX_CHARS:
        return f"{what} must have 1 to {NAME_MAX_CHARS} characters, got {len(name)}"
    if _NAME.fullmatch(name) and name.strip(" ") == name:
        return None
    if name.strip(" ") != name:
        return f"{what} {shown.repr(name)} starts or ends with a space"
    at, char = next((k, c) for k, c in enumerate(name) if not _NAME.fullmatch(c))
    return (f"{what} {shown.repr(name)} has {char!r} (U+{ord(char):04X}) at position {at}: allowed are "
            f"letters, digits, inner spaces and {NAME_PUNCTUATION.strip()}")


def _number(cell: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetaError(f"cell {cell!r}: {name} must be a number, got {shown.repr(value)}")
    low, high = LIMITS[name]
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise MetaError(f"cell {cell!r}: {name} = {shown.repr(value)} is too large (at most {high:g})") from None
    if not low <= number <= high:  # NaN fails too
        raise MetaError(f"cell {cell!r}: {name} must be a number within {low:g} .. {high:g}, got {shown.repr(value)}")
    return number


def _params_checked(meta: CellMeta) -> CellMeta:
    """``meta`` if the twin can be built from it; else MetaError saying why."""
    try:
        params = meta.params()
    except (ValueError, ArithmeticError) as error:
        raise MetaError(f"cell {meta.cell!r}: {error}") from None
    numbers = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    numbers.update(capacity_mah=params.capacity_mah, one_c_ma=params.one_c_ma)
    bad = [name for name, value in numbers.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise MetaError(f"cell {meta.cell!r}: the metadata give non-finite {', '.join(sorted(bad))}")
    if not (params.capacity_mah > 0 and params.one_c_ma > 0):
        raise MetaError(f"cell {meta.cell!r}: the metadata give the cell no capacity")
    return meta


def meta_from_mapping(cell: str, data: Mapping[str, Any]) -> CellMeta:
    """Validate one cell's metadata; raises MetaError naming the cell and the problem."""
    problem = name_error("cell id", cell)
    if problem:
        raise MetaError(problem)
    unknown = set(data) - _KEYS
    if unknown:
        raise MetaError(f"cell {cell!r}: unknown metadata keys {shown.repr(sorted(unknown))} "
                        f"(allowed: {sorted(_KEYS - {'cell'})})")
    if "cell" in data and data["cell"] != cell:
        raise MetaError(f"metadata names cell {shown.repr(data['cell'])} but is filed under {cell!r}")
    electrode = [k for k in ("preset", "composition", "generic") if data.get(k) is not None]
    if len(electrode) != 1:
        raise MetaError(f"cell {cell!r}: give exactly one of preset, composition or generic")
    if electrode == ["generic"]:
        return _generic_meta(cell, data)
    label = data[electrode[0]]
    problem = name_error(electrode[0], label.strip() if isinstance(label, str) else label)
    if problem:
        raise MetaError(f"cell {cell!r}: {problem}")
    if "mass_mg" not in data:
        raise MetaError(f"cell {cell!r}: mass_mg (hydride mass in mg) is required; there is no default")
    return _params_checked(CellMeta(
        cell=cell,
        mass_mg=_number(cell, "mass_mg", data["mass_mg"]),
        c_rate=_number(cell, "c_rate", data["c_rate"]) if data.get("c_rate") is not None else None,
        **{electrode[0]: label.strip()},
    ))


def _ocv_table(cell: str, table: Any) -> list[list[float]]:
    """The generic OCV table: two lists (discharge, charge) of OCV_POINTS voltages within V_RANGE."""
    shape = f"generic.ocv must be two lists of {OCV_POINTS} voltages (discharge branch, charge branch, SOC 0..1)"
    if not (isinstance(table, list) and len(table) == 2
            and all(isinstance(row, list) and len(row) == OCV_POINTS for row in table)):
        raise MetaError(f"cell {cell!r}: {shape}")
    values = [x for row in table for x in row]
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in values):
        raise MetaError(f"cell {cell!r}: {shape}, not {shown.repr(next(x for x in values if not isinstance(x, float)))}")
    try:
        ocv = np.array(values, dtype=float)
    except OverflowError:  # an integer of hundreds of digits
        ocv = np.full(1, np.inf)
    if not (np.all(np.isfinite(ocv)) and np.all((ocv >= V_RANGE[0]) & (ocv <= V_RANGE[1]))):
        raise MetaError(f"cell {cell!r}: {shape}, each finite and within {V_RANGE[0]:g} .. {V_RANGE[1]:g} V")
    return ocv.reshape(2, OCV_POINTS).tolist()


def _generic_meta(cell: str, data: Mapping[str, Any]) -> CellMeta:
    g = data["generic"]
    if not isinstance(g, Mapping) or not {"capacity_mah", "v_min", "v_max", "ocv"} <= set(g) or set(g) - _GENERIC_KEYS:
        raise MetaError(f"cell {cell!r}: generic needs capacity_mah, v_min, v_max and ocv (optional r_ohm, tau_diff_s)")
    spec: dict[str, Any] = {k: _number(cell, f"generic.{k}", g[k]) for k in ("capacity_mah", "v_min", "v_max")}
    spec["ocv"] = _ocv_table(cell, g["ocv"])
    for key in ("r_ohm", "tau_diff_s"):
        if g.get(key) is not None:
            spec[key] = _number(cell, f"generic.{key}", g[key])
    mass = _number(cell, "mass_mg", data["mass_mg"]) if data.get("mass_mg") is not None else None
    c_rate = _number(cell, "c_rate", data["c_rate"]) if data.get("c_rate") is not None else None
    return _params_checked(CellMeta(cell=cell, mass_mg=mass, c_rate=c_rate, generic=spec))
