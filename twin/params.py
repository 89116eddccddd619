"""Physically named parameters of one cell, and how they follow from its composition.

Everything the model needs is a field of `CellParams`; presets are CellParams built
from a composition plus the small set of calibrated constants in `Calibration`
(one set for every composition: other mixtures are the same model, not refits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .chemistry import Composition, hydrogenated_alloy, parse_composition

__all__ = [
    "T_REF_C",
    "V_MIN",
    "V_MAX",
    "END_TOLERANCE",
    "Calibration",
    "CALIBRATION",
    "CellParams",
    "PRESETS",
    "MIXED",
    "preset",
    "fleet_labels",
    "params_from_composition",
    "one_c_ma_g",
    "li_diffusion_cm2_s",
    "stack_params",
    "stack_ocv_tables",
    "OCV_POINTS",
]

T_REF_C = 130.0  # every test of this electrode runs at 130 C (LiBH4 needs it)
V_MIN, V_MAX = 0.3, 1.0  # V vs Li+/Li; below 0.3 V Li-Mg alloying destroys reversibility
END_TOLERANCE = 0.05  # of the window span: how close to a cut-off a half that reached it gets
OCV_POINTS = 101  # grid of a learned open-circuit table (generic cells), SOC 0..1
V_WINDOW_FLOOR = 1.0e-3  # V: the lowest a generic cell's window may start

# Measured open-circuit Li diffusion coefficients (cm2/s) of the two electrodes; other
# mixtures interpolate log D linearly in the mass fraction of fast-path phases.
_D_MGH2 = 2.48e-14
_D_COMPOSITE = 1.83e-9
_FAST_PATH_COMPOSITE = hydrogenated_alloy(4, 80, 8).fast_path_fraction
_FRAMEWORK_COMPOSITE = hydrogenated_alloy(4, 80, 8).framework_fraction
_D_CAP = 1e-8

# DC electronic conductivity at 130 C, S/cm, for the ohmic part of the resistance.
_SIGMA_MGH2 = 0.54
_SIGMA_COMPOSITE = 0.99

# Interface cracking that no framework prevents (pellet/electrode interface), as a
# fraction of the unconfined rate.
_CRACK_FLOOR = 0.005


@dataclass(frozen=True)
class Calibration:
    """Constants shared by every composition, fitted by `twin.calibration` to the paper.

    Each one has a physical meaning; units in the names.
    """

    utilisation: float = 1.0  # reachable fraction of theoretical capacity at low rate
    unframed_ni_access: float = 0.7498  # reachable fraction of Mg2NiH4 with no Nd2H5 framework
    first_irreversible_mah_g: float = 150.4  # first-lithiation Li sink: Li-Mg alloying + interphase
    diffusion_length_um: float = 11.28  # Li path through a hydride particle (particles 5-25 um)
    network_tau_h: float = 0.6592  # Li supply through the LiBH4/carbon network, parallel path
    activation_factor: float = 1.0  # extra R_ct of a fresh electrode (and 0.3 of it in diffusion time)
    activation_cycles: float = 2.5  # e-folding of the activation (pathways opening)
    r_pellet_ohm_mg: float = 3.0  # LiBH4 pellet + contacts, ohm x mg
    r_electronic_ohm_mg_s_cm: float = 3.0  # ohm x mg x S/cm, divided by the conductivity
    r_ct_framework_ohm_mg: float = 17.01  # charge transfer + interphase, fully confined electrode
    r_ct_unconfined_ohm_mg: float = 20.0  # the same without a framework
    tau_ct_s: float = 40.0  # RC time constant of charge transfer / interphase
    hysteresis_rate: float = 30.0  # Plett gamma: branch switch within ~1/30 of capacity
    ps_rate: float = 0.2111  # phase-separation growth per full lithiation, unconfined
    ps_saturation: float = 0.8448  # fraction of active material that can segregate
    confinement_scale: float = 0.0278  # framework mass fraction that halves segregation
    crack_rate: float = 1.610e-03  # contact loss per (volume strain x depth x rate factor)
    crack_front_ref: float = 0.4590  # diffusion time over half-cycle time above which cracking accelerates
    crack_r_growth: float = 6.0  # relative R_ct growth per unit contact loss


CALIBRATION = Calibration()


@dataclass(frozen=True)
class CellParams:
    """One cell. Absolute units (mAh, ohm) for a cell with `mass_mg` of hydride.

    A generic cell (another chemistry) has no composition: its capacity is given, its
    open-circuit curve is a learned table (see `twin.generic`) and its window its own.
    """

    name: str
    composition: Composition | None
    mass_mg: float = 1.0
    one_c_ma_g: float = 2038.0
    utilisation: float = 0.985
    ni_access: float = 1.0  # reachable fraction of the Mg2NiH4 (see `reachable_ni_fraction`)
    first_irreversible_mah_g: float = 100.0
    tau_diff_s: float = 3600.0  # diffusion time constant L^2/D of the electrode
    activation_factor: float = 0.5
    activation_cycles: float = 2.5
    r0_ohm: float = 10.0  # ohmic (electronic + ionic), at 130 C
    r1_ohm: float = 15.0  # charge transfer + interphase, at 130 C
    tau1_s: float = 40.0
    hysteresis_rate: float = 30.0
    ps_rate: float = 0.0
    ps_saturation: float = 0.9
    confinement: float = 0.0  # 0 free crystallites .. 1 fully held by the Nd2H5 framework
    crack_rate: float = 0.0
    crack_front_ref: float = 0.1
    crack_r_growth: float = 6.0
    ocv_shift_v: float = 0.0  # cell-to-cell offset of the open-circuit curve
    v_min: float = V_MIN
    v_max: float = V_MAX
    generic_capacity_mah: float = 0.0  # the capacity of a generic cell (no composition)
    ocv_table: np.ndarray | None = field(default=None, compare=False)  # (2, K) generic cells

    @property
    def is_generic(self) -> bool:
        return self.composition is None

    @property
    def theoretical_mah(self) -> float:
        if self.composition is None:
            return self.generic_capacity_mah
        return self.composition.theoretical_capacity_mah_g * self.mass_mg / 1000.0

    @property
    def capacity_mah(self) -> float:
        """Fresh reversible capacity at low rate."""
        return self.theoretical_mah * self._reachable_share * self.utilisation

    @property
    def _reachable_share(self) -> float:
        """Share of the theoretical capacity in phases the electrode can reach."""
        return 1.0 - self._theoretical_ni_share * (1.0 - self.ni_access)

    @property
    def _theoretical_ni_share(self) -> float:
        return 0.0 if self.composition is None else self.composition.capacity_shares()["Mg2NiH4"]

    @property
    def one_c_ma(self) -> float:
        return self.one_c_ma_g * self.mass_mg / 1000.0

    @property
    def ni_share(self) -> float:
        """Share of the reachable capacity in Mg2NiH4 (the top of the SOC range)."""
        return self._theoretical_ni_share * self.ni_access / self._reachable_share

    @property
    def volume_change(self) -> float:
        return 0.0 if self.composition is None else self.composition.volume_change

    def with_(self, **changes) -> "CellParams":
        return replace(self, **changes)


_NUMERIC = tuple(
    f
    for f in CellParams.__dataclass_fields__
    if f not in ("name", "composition", "ocv_table")
)


def one_c_ma_g(composition: Composition) -> float:
    """The paper's 1C convention: 2038 mA/g whenever MgH2 is present, 960 for Mg2NiH4 alone."""
    return 2038.0 if composition.fraction("MgH2") > 0 else 960.0


def li_diffusion_cm2_s(composition: Composition) -> float:
    """Open-circuit Li diffusion coefficient from the fast-path (Nd2H5 + Mg2NiH4) fraction,
    log-linear between the two measured electrodes and capped for fast-path-only mixtures."""
    s = composition.fast_path_fraction / _FAST_PATH_COMPOSITE
    log_d = math.log10(_D_MGH2) + s * (math.log10(_D_COMPOSITE) - math.log10(_D_MGH2))
    return min(10.0**log_d, _D_CAP)


def _conductivity_s_cm(composition: Composition) -> float:
    s = min(composition.framework_fraction / _FRAMEWORK_COMPOSITE, 1.5)
    return _SIGMA_MGH2 + s * (_SIGMA_COMPOSITE - _SIGMA_MGH2)


def reachable_ni_fraction(composition: Composition, cal: Calibration = CALIBRATION) -> float:
    """Reachable fraction of the Mg2NiH4: all of it with the composite's share of Nd2H5
    framework or more, `cal.unframed_ni_access` with none, linear in between (as the
    conductivity). Why this phase and not MgH2: lithiated MgH2 leaves Mg, on which Li moves
    almost freely (0.03 eV surface barrier), a path of its own through the electrode;
    Mg2NiH4 leaves Mg2Ni (0.24 eV). Without the Li- and electron-conducting framework the
    Mg2NiH4 crystallites far from the carbon and the electrolyte are never converted."""
    s = min(composition.framework_fraction / _FRAMEWORK_COMPOSITE, 1.0)
    return cal.unframed_ni_access + s * (1.0 - cal.unframed_ni_access)


def confinement(composition: Composition, cal: Calibration = CALIBRATION) -> float:
    """0 (free crystallites) .. 1 (fully confined by the Nd2H5 framework)."""
    return 1.0 - math.exp(-math.log(2.0) * composition.framework_fraction / cal.confinement_scale)


def params_from_composition(
    composition: Composition | str,
    name: str | None = None,
    mass_mg: float = 1.0,
    cal: Calibration = CALIBRATION,
) -> CellParams:
    """Build a cell's parameters from its phases and the shared calibration."""
    if isinstance(composition, str):
        composition = parse_composition(composition)
    if not (mass_mg > 0 and math.isfinite(mass_mg)):
        raise ValueError(f"active mass must be a positive number of mg, got {mass_mg}")
    conf = confinement(composition, cal)
    tau_solid_s = (cal.diffusion_length_um * 1e-4) ** 2 / li_diffusion_cm2_s(composition)
    # Two parallel Li supply paths: through the hydride itself and around it.
    tau_diff_s = 1.0 / (1.0 / tau_solid_s + 1.0 / (cal.network_tau_h * 3600.0))
    r0_mg = cal.r_pellet_ohm_mg + cal.r_electronic_ohm_mg_s_cm / _conductivity_s_cm(composition)
    r1_mg = cal.r_ct_framework_ohm_mg + (1 - conf) * (cal.r_ct_unconfined_ohm_mg - cal.r_ct_framework_ohm_mg)
    return CellParams(
        name=name or composition.describe(),
        composition=composition,
        mass_mg=mass_mg,
        one_c_ma_g=one_c_ma_g(composition),
        utilisation=cal.utilisation,
        ni_access=reachable_ni_fraction(composition, cal),
        first_irreversible_mah_g=cal.first_irreversible_mah_g,
        tau_diff_s=tau_diff_s,
        activation_factor=cal.activation_factor * conf,
        activation_cycles=cal.activation_cycles,
        r0_ohm=r0_mg / mass_mg,
        r1_ohm=r1_mg / mass_mg,
        tau1_s=cal.tau_ct_s,
        hysteresis_rate=cal.hysteresis_rate,
        ps_rate=cal.ps_rate * (1 - conf) * composition.fraction("MgH2") / max(
            composition.fraction("MgH2") + composition.fraction("Mg2NiH4"), 1e-12
        ),
        ps_saturation=cal.ps_saturation,
        confinement=conf,
        crack_rate=cal.crack_rate * (1.0 - conf + _CRACK_FLOOR),
        crack_front_ref=cal.crack_front_ref,
        crack_r_growth=cal.crack_r_growth,
    )


PRESETS = {
    "nd4mg80ni8": lambda mass_mg=1.0, cal=CALIBRATION: params_from_composition(
        hydrogenated_alloy(4, 80, 8), "nd4mg80ni8", mass_mg, cal
    ),
    "mgh2": lambda mass_mg=1.0, cal=CALIBRATION: params_from_composition(
        Composition({"MgH2": 1.0}), "mgh2", mass_mg, cal
    ),
}


MIXED = "mixed"  # a fleet alternating cell by cell between the PRESETS, the composite first


def fleet_labels(name: str, n: int) -> list[str]:
    """The electrode of each of ``n`` cells: ``name`` (a preset or a composition) for all,
    or with ``name == MIXED`` the PRESETS in turn, so even two cells show the framework's effect."""
    if name.strip().lower() != MIXED:
        return [name] * n
    names = list(PRESETS)
    return [names[k % len(names)] for k in range(n)]


def preset(name: str, mass_mg: float = 1.0, cal: Calibration = CALIBRATION) -> CellParams:
    """A named preset (see PRESETS), or a composition string like 'MgH2=0.6,Nd2H5=0.4'."""
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key](mass_mg, cal)
    if "=" in name:
        return params_from_composition(name, None, mass_mg, cal)
    raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)} or give a composition")


def stack_params(cells: list[CellParams]) -> dict[str, np.ndarray]:
    """Per-field arrays over cells (plus derived quantities) for the vectorised model."""
    table = {f: np.array([getattr(c, f) for c in cells], dtype=float) for f in _NUMERIC}
    table["capacity_mah"] = np.array([c.capacity_mah for c in cells])
    table["one_c_ma"] = np.array([c.one_c_ma for c in cells])
    table["volume_change"] = np.array([c.volume_change for c in cells])
    table["ni_share"] = np.array([c.ni_share for c in cells])
    return table


def stack_ocv_tables(cells: list[CellParams]) -> np.ndarray:
    """(N, 2, OCV_POINTS) learned OCV tables; NaN rows for hydride cells (analytic OCV)."""
    out = np.full((len(cells), 2, OCV_POINTS), np.nan)
    for k, c in enumerate(cells):
        if c.ocv_table is not None:
            table = np.asarray(c.ocv_table, dtype=float)
            if table.shape != (2, OCV_POINTS):
                raise ValueError(f"OCV table of {c.name!r} must have shape (2, {OCV_POINTS}), got {table.shape}")
            out[k] = table
    return out
