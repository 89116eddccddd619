"""Slow, cycle-level ageing of the electrode and the risks derived from it.

Mechanisms (CHEMISTRY.md, "Failure mechanisms"):

- phase separation: each lithiation leaves Mg and LiH that segregate and no longer
  reconvert; the segregated fraction `psi` grows with the depth of MgH2 conversion
  toward a saturation, at a rate the Nd2H5 framework suppresses (confinement). Free
  crystallites segregate with every volume swing, whatever the rate; inside the framework
  the cage takes the swing and the Mg can only ripen by diffusion, which needs time, so a
  confined electrode segregates less per cycle at high rate;
- cracking / contact loss: the volume swing (+89 % MgH2, +65 % Mg2NiH4) times depth
  times a rate factor opens cracks at the LiBH4 interface; the lost fraction `crack`
  removes capacity and raises the charge-transfer and interphase resistance;
- first-cycle irreversibility: a Li sink (alloying, interphase) filled on the first
  lithiation, and the early activation: diffusion pathways open over the first cycles
  (the diffusion time constant and R_ct relax from a higher fresh value).

Arrays are per cell (leading axis); the functions are pure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Ageing", "fresh", "activation", "tau_multiplier", "capacity_mah", "resistances", "tau_diff_s",
    "age_half_cycle", "rate_factor", "ripening_factor",
]


@dataclass
class Ageing:
    """Ageing variables of N cells."""

    cycle: np.ndarray  # completed lithiations
    psi: np.ndarray  # phase-separated fraction of active material
    crack: np.ndarray  # fraction lost to cracking / contact loss
    irr_left_mah: np.ndarray  # first-lithiation sink still to be filled


def fresh(p: dict[str, np.ndarray]) -> Ageing:
    n = len(p["mass_mg"])
    return Ageing(
        cycle=np.zeros(n),
        psi=np.zeros(n),
        crack=np.zeros(n),
        irr_left_mah=p["first_irreversible_mah_g"] * p["mass_mg"] / 1000.0,
    )


_ACTIVATION_TAU_SHARE = 0.3  # activation mostly lowers R_ct; the diffusion time gets this share


def activation(factor: np.ndarray, cycles: np.ndarray, cycle: np.ndarray) -> np.ndarray:
    """Extra (relative) R_ct of an electrode that has seen `cycle` lithiations."""
    return factor * np.exp(-cycle / cycles)


def tau_multiplier(act: np.ndarray) -> np.ndarray:
    return 1.0 + _ACTIVATION_TAU_SHARE * act


def _activation(p: dict[str, np.ndarray], age: Ageing) -> np.ndarray:
    return activation(p["activation_factor"], p["activation_cycles"], age.cycle)


def capacity_mah(p: dict[str, np.ndarray], age: Ageing) -> np.ndarray:
    """Reversible capacity at low rate after the losses so far."""
    return p["capacity_mah"] * (1.0 - age.psi) * (1.0 - age.crack)


def resistances(p: dict[str, np.ndarray], age: Ageing) -> tuple[np.ndarray, np.ndarray]:
    """(R0, R1) at 130 C: contact loss raises both, a fresh electrode has a higher R_ct."""
    growth = p["crack_r_growth"] * age.crack
    r0 = p["r0_ohm"] * (1.0 + 0.3 * growth)
    r1 = p["r1_ohm"] * (1.0 + growth) * (1.0 + _activation(p, age))
    return r0, r1


def tau_diff_s(p: dict[str, np.ndarray], age: Ageing) -> np.ndarray:
    return p["tau_diff_s"] * tau_multiplier(_activation(p, age))


def rate_factor(c_rate: np.ndarray, tau_diff_s: np.ndarray, front_ref: np.ndarray) -> np.ndarray:
    """Cracking speeds up with the sharpness of the conversion front: strain gradients grow
    with the diffusion time over the half-cycle's duration (~1 h / C). A slow-diffusing
    electrode (MgH2) converts in a sharp front that cracks; a fast one converts evenly."""
    front = np.abs(c_rate) * tau_diff_s / 3600.0
    return 1.0 + (front / front_ref) ** 2


_RIPENING_REF_C_RATE = 0.1  # the long-cycling figures that set ps_rate were run at 0.1C
_RIPENING_EXPONENT = 1.0 / 3.0  # Lifshitz-Slyozov-Wagner ripening: domain size^3 grows with time
_SLOWEST_C_RATE = 0.01  # below this a half is mostly rest; the factor stops growing


def ripening_factor(c_rate: np.ndarray) -> np.ndarray:
    """Confined segregation is Mg ripening by diffusion at 130 C: per unit of conversion it
    grows with the time the conversion takes, 1/C-rate, as a cube root, relative to the
    0.1C of the long-cycling figures. At 1C a lithiation leaves the Mg a tenth of the time,
    and about half the segregation."""
    c = np.maximum(np.abs(c_rate), _SLOWEST_C_RATE)
    return (_RIPENING_REF_C_RATE / c) ** _RIPENING_EXPONENT


def age_half_cycle(
    p: dict[str, np.ndarray],
    age: Ageing,
    lithiation: np.ndarray,
    depth: np.ndarray,
    c_rate: np.ndarray,
) -> Ageing:
    """Ageing after a half-cycle of `depth` (0..1 of the capacity) at `c_rate`.

    `lithiation` marks cells whose half-cycle was a discharge; others were charges.
    Phase separation only happens on lithiation; cracking on both volume swings.
    """
    depth = np.clip(depth, 0.0, 1.0)
    # Free crystallites segregate per swing; the confined share only as fast as Mg ripens.
    ps_rate = p["ps_rate"] * (1.0 - p["confinement"] + p["confinement"] * ripening_factor(c_rate))
    ps = np.where(lithiation, ps_rate * depth * (p["ps_saturation"] - age.psi), 0.0)
    strain = p["volume_change"] * depth * rate_factor(c_rate, p["tau_diff_s"], p["crack_front_ref"])
    cr = 0.5 * p["crack_rate"] * strain * (1.0 - age.crack)
    return Ageing(
        cycle=age.cycle + lithiation,
        psi=age.psi + np.maximum(ps, 0.0),
        crack=age.crack + cr,
        irr_left_mah=age.irr_left_mah,
    )
