"""Cell metadata: what the twin must know about a cell before it can read its samples.

The same record comes from a `[cells.<id>]` table of the config file and from a JSON
message on the compacted `cell.meta` topic, so both go through `meta_from_mapping`.
The active mass has no default on purpose: capacities per gram, the 1C current and the
model's absolute capacity all scale with it, and a guessed mass would make every
number the twin reports wrong without anyone noticing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from twin.generic import DEFAULT_TAU_S, generic_params
from twin.params import OCV_POINTS, CellParams, preset

__all__ = ["CellMeta", "MetaError", "meta_from_mapping", "GENERIC"]

_KEYS = {"cell", "preset", "composition", "generic", "mass_mg", "c_rate"}
_GENERIC_KEYS = {"capacity_mah", "v_min", "v_max", "ocv", "r_ohm", "tau_diff_s"}
GENERIC = "generic"  # the electrode label of cells of another chemistry


class MetaError(ValueError):
    """Metadata that cannot describe a cell; the message says what to fix."""


@dataclass(frozen=True)
class CellMeta:
    """One cell: its electrode (a preset name, a composition, or a generic cell of another
    chemistry with its capacity, window and learned OCV table), mass, nominal rate."""

    cell: str
    mass_mg: float | None  # hydride mass; optional only for generic cells
    preset: str | None = None
    composition: str | None = None
    c_rate: float | None = None  # nominal C-rate of its test plan (informational)
    generic: dict | None = None  # {"capacity_mah", "v_min", "v_max", "ocv": [[...], [...]], "r_ohm", "tau_diff_s"}

    @property
    def label(self) -> str:
        """The electrode as written in the metadata: the `preset` tag of every output."""
        return GENERIC if self.generic else (self.preset or self.composition or "")

    def params(self) -> CellParams:
        """The twin's parameters for this cell."""
        if self.generic:
            g = self.generic
            return generic_params(self.cell, g["capacity_mah"], g["v_min"], g["v_max"], np.array(g["ocv"]),
                                  g.get("r_ohm", 0.05), self.mass_mg, g.get("tau_diff_s", DEFAULT_TAU_S))
        return preset(self.label, mass_mg=self.mass_mg)


def _number(cell: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetaError(f"cell {cell!r}: {name} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise MetaError(f"cell {cell!r}: {name} must be a positive number, got {value!r}")
    return value


def meta_from_mapping(cell: str, data: Mapping[str, Any]) -> CellMeta:
    """Validate one cell's metadata; raises MetaError naming the cell and the problem."""
    unknown = set(data) - _KEYS
    if unknown:
        raise MetaError(f"cell {cell!r}: unknown metadata keys {sorted(unknown)} (allowed: {sorted(_KEYS - {'cell'})})")
    if "cell" in data and data["cell"] != cell:
        raise MetaError(f"metadata names cell {data['cell']!r} but is filed under {cell!r}")
    electrode = [k for k in ("preset", "composition", "generic") if data.get(k) is not None]
    if len(electrode) != 1:
        raise MetaError(f"cell {cell!r}: give exactly one of preset, composition or generic")
    if electrode == ["generic"]:
        return _generic_meta(cell, data)
    label = data[electrode[0]]
    if not isinstance(label, str) or not label.strip():
        raise MetaError(f"cell {cell!r}: {electrode[0]} must be a non-empty string")
    if "mass_mg" not in data:
        raise MetaError(f"cell {cell!r}: mass_mg (hydride mass in mg) is required; there is no default")
    meta = CellMeta(
        cell=cell,
        mass_mg=_number(cell, "mass_mg", data["mass_mg"]),
        c_rate=_number(cell, "c_rate", data["c_rate"]) if data.get("c_rate") is not None else None,
        **{electrode[0]: label.strip()},
    )
    try:
        meta.params()
    except ValueError as error:
        raise MetaError(f"cell {cell!r}: {error}") from None
    return meta


def _generic_meta(cell: str, data: Mapping[str, Any]) -> CellMeta:
    g = data["generic"]
    if not isinstance(g, Mapping) or not {"capacity_mah", "v_min", "v_max", "ocv"} <= set(g) or set(g) - _GENERIC_KEYS:
        raise MetaError(f"cell {cell!r}: generic needs capacity_mah, v_min, v_max and ocv (optional r_ohm, tau_diff_s)")
    numbers = {k: _number(cell, f"generic.{k}", g[k]) for k in ("capacity_mah", "v_min", "v_max")}
    try:
        ocv = np.asarray(g["ocv"], dtype=float)
    except (TypeError, ValueError):
        raise MetaError(f"cell {cell!r}: generic.ocv must be two lists of {OCV_POINTS} voltages") from None
    if ocv.shape != (2, OCV_POINTS) or not np.all(np.isfinite(ocv)):
        raise MetaError(f"cell {cell!r}: generic.ocv must be two lists of {OCV_POINTS} finite voltages "
                        "(discharge branch, charge branch, SOC 0..1)")
    spec = {**numbers, "ocv": ocv.tolist()}
    for key in ("r_ohm", "tau_diff_s"):
        if g.get(key) is not None:
            spec[key] = _number(cell, f"generic.{key}", g[key])
    mass = _number(cell, "mass_mg", data["mass_mg"]) if data.get("mass_mg") is not None else None
    c_rate = _number(cell, "c_rate", data["c_rate"]) if data.get("c_rate") is not None else None
    meta = CellMeta(cell=cell, mass_mg=mass, c_rate=c_rate, generic=spec)
    try:
        meta.params()
    except ValueError as error:
        raise MetaError(f"cell {cell!r}: {error}") from None
    return meta
