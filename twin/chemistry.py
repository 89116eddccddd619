"""Electrode chemistry computed from a phase composition.

The twin never hard-codes the composite's 1352 mAh/g: theoretical capacity, lithium
uptake and volume change all follow from the mass fractions of the phases, so the
composite, pure MgH2 and any other mixture are one model with other numbers.

    MgH2    + 2 Li+ + 2 e-  <->  Mg    + 2 LiH
    Mg2NiH4 + 4 Li+ + 4 e-  <->  Mg2Ni + 4 LiH
    Nd2H5: electrochemically inactive framework (conducts electrons and Li ions)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "FARADAY",
    "Phase",
    "PHASES",
    "ACTIVE_PHASES",
    "Composition",
    "hydrogenated_alloy",
    "parse_composition",
    "phase_capacity_mah_g",
]

FARADAY = 96485.332  # C/mol
_M = {"H": 1.008, "Li": 6.94, "Mg": 24.305, "Ni": 58.693, "Nd": 144.242}  # g/mol
_LIH_MOLAR_VOLUME = (_M["Li"] + _M["H"]) / 0.78  # cm3/mol, LiH density 0.78 g/cm3


@dataclass(frozen=True)
class Phase:
    """One phase of the hydride electrode."""

    name: str
    molar_mass: float  # g/mol
    electrons: int  # Li+ / e- taken per formula unit on full conversion (0 = inactive)
    density: float  # g/cm3 of the hydride
    product_molar_volume: float  # cm3/mol of the lithiated products, LiH included

    @property
    def molar_volume(self) -> float:
        return self.molar_mass / self.density

    @property
    def volume_change(self) -> float:
        """Fractional volume change on full lithiation (0.89 = +89 %)."""
        if self.electrons == 0:
            return 0.0
        return self.product_molar_volume / self.molar_volume - 1.0


def _phase(name: str, mass: float, electrons: int, density: float, product_volume: float) -> Phase:
    return Phase(name, mass, electrons, density, product_volume)


# Densities: MgH2 1.45, Mg 1.738, Mg2Ni 3.46 g/cm3 (handbook). Mg2NiH4 2.57 g/cm3 is the
# high-temperature cubic phase that forms at the 130 C test temperature.
PHASES: Mapping[str, Phase] = MappingProxyType(
    {
        "MgH2": _phase(
            "MgH2", _M["Mg"] + 2 * _M["H"], 2, 1.45, _M["Mg"] / 1.738 + 2 * _LIH_MOLAR_VOLUME
        ),
        "Mg2NiH4": _phase(
            "Mg2NiH4",
            2 * _M["Mg"] + _M["Ni"] + 4 * _M["H"],
            4,
            2.57,
            (2 * _M["Mg"] + _M["Ni"]) / 3.46 + 4 * _LIH_MOLAR_VOLUME,
        ),
        "Nd2H5": _phase("Nd2H5", 2 * _M["Nd"] + 5 * _M["H"], 0, 5.6, 0.0),
    }
)
ACTIVE_PHASES = ("Mg2NiH4", "MgH2")  # order of lithiation: Mg2NiH4 is favoured (-1.96 eV)


def phase_capacity_mah_g(phase: Phase) -> float:
    """Theoretical specific capacity of one phase: n F / (3.6 M)."""
    return phase.electrons * FARADAY / (3.6 * phase.molar_mass)


@dataclass(frozen=True)
class Composition:
    """Mass fractions of the phases of the hydride (they sum to 1)."""

    fractions: Mapping[str, float]

    def __post_init__(self) -> None:
        unknown = set(self.fractions) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown phase(s) {sorted(unknown)}; known: {sorted(PHASES)}")
        if any(f < 0 or not math.isfinite(f) for f in self.fractions.values()):
            raise ValueError(f"phase fractions must be finite and >= 0, got {dict(self.fractions)}")
        total = sum(self.fractions.values())
        if total <= 0:
            raise ValueError("a composition needs at least one phase with a positive fraction")
        if sum(self.fractions.get(p, 0.0) for p in ACTIVE_PHASES) <= 0:
            raise ValueError("a composition needs an active phase (MgH2 or Mg2NiH4)")
        normalised = {p: self.fractions.get(p, 0.0) / total for p in PHASES}
        object.__setattr__(self, "fractions", MappingProxyType(normalised))

    def fraction(self, phase: str) -> float:
        return self.fractions[phase]

    @property
    def theoretical_capacity_mah_g(self) -> float:
        """Capacity per gram of hydride if every active phase converts fully."""
        return sum(f * phase_capacity_mah_g(PHASES[p]) for p, f in self.fractions.items())

    def capacity_shares(self) -> dict[str, float]:
        """Share of the theoretical capacity carried by each active phase."""
        total = self.theoretical_capacity_mah_g
        if total == 0.0:  # fractions too large to sum (1e308 each) normalise to zeros: no capacity to share
            return dict.fromkeys(ACTIVE_PHASES, 0.0)
        return {p: self.fractions[p] * phase_capacity_mah_g(PHASES[p]) / total for p in ACTIVE_PHASES}

    @property
    def lithium_uptake_mol_g(self) -> float:
        """mol of Li taken per gram of hydride on full lithiation."""
        return sum(f * PHASES[p].electrons / PHASES[p].molar_mass for p, f in self.fractions.items())

    @property
    def volume_change(self) -> float:
        """Volume change of the active material on full lithiation, weighted by volume."""
        vol = {p: f / PHASES[p].density for p, f in self.fractions.items() if p in ACTIVE_PHASES}
        total = sum(vol.values())
        return sum(v * PHASES[p].volume_change for p, v in vol.items()) / total if total else 0.0

    @property
    def framework_fraction(self) -> float:
        """Mass fraction of the inactive, Li- and electron-conducting Nd2H5 framework."""
        return self.fractions["Nd2H5"]

    @property
    def fast_path_fraction(self) -> float:
        """Mass fraction of the phases with low Li surface-diffusion barriers (Nd2H5, Mg2NiH4)."""
        return self.fractions["Nd2H5"] + self.fractions["Mg2NiH4"]

    def describe(self) -> str:
        return ",".join(f"{p}={f:.3f}" for p, f in self.fractions.items() if f > 0)


def hydrogenated_alloy(nd: float, mg: float, ni: float) -> Composition:
    """Phases formed by hydrogenating Nd_a Mg_b Ni_c: Ni takes 2 Mg into Mg2NiH4, the rest
    of the Mg becomes MgH2, Nd becomes Nd2H5 (Nd4Mg80Ni8 -> 64 MgH2 + 8 Mg2NiH4 + 2 Nd2H5)."""
    if mg < 2 * ni:
        raise ValueError("not enough Mg to bind all Ni as Mg2NiH4")
    moles = {"Mg2NiH4": ni, "MgH2": mg - 2 * ni, "Nd2H5": nd / 2}
    return Composition({p: n * PHASES[p].molar_mass for p, n in moles.items()})


def parse_composition(text: str) -> Composition:
    """Parse "MgH2=0.53,Mg2NiH4=0.28,Nd2H5=0.19" (mass fractions, normalised to 1)."""
    fractions: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"composition item {part!r} is not PHASE=FRACTION, e.g. MgH2=0.53")
        try:
            fractions[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"composition fraction {value!r} for {name!r} is not a number") from None
    return Composition(fractions)
