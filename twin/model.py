"""The reduced-order cell model: one discrete state-space model for simulator and filter.

Fast states, per cell:

    z   state of charge 0..1 (1 = hydride, delithiated; lithiation lowers it)
    h   hysteresis state -1 (lithiation branch) .. +1 (delithiation branch), Plett-style
    v1  charge-transfer / interphase RC voltage, V
    d   diffusion lag: surface minus bulk state of charge (the second RC, in SOC units)

Terminal voltage:  V = OCV(z + d, h) + I * R0 * g(T) + v1,  I > 0 on charge.

The OCV has the lithiation plateau of both hydrides near 0.42 V (Mg2NiH4 first,
slightly higher) and the two delithiation plateaus, 0.57 V (MgH2 re-forms first) and
0.65 V (Mg2NiH4). The SOC ranges of the two phases come from their capacity shares,
so the curve follows the composition. Diffusion enters through the surface SOC: a
planar Li-supply path of time constant tau_D leaves the surface ahead of the bulk by
I * tau_D / (3 Q) at steady state (parabolic-profile approximation), so at high rate
the surface hits the end of the plateau early and the cut-off voltage comes before
the bulk is converted: the rate capability is an outcome, not a table.

All functions are vectorised over cells (leading axis) and use zero-order-hold exact
discretisation over a sample interval, so simulator and estimator step identically.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "E_LITH_MGH2",
    "E_LITH_MG2NIH4",
    "E_DELITH_MGH2",
    "E_DELITH_MG2NIH4",
    "ocv_branches",
    "ocv",
    "temperature_factor",
    "transition",
    "table_branches",
    "terminal_voltage",
    "terminal_voltage_only",
    "ocv_inverse",
]

E_LITH_MGH2 = 0.41  # V, both hydrides reduce around the 0.42 V CV peak
E_LITH_MG2NIH4 = 0.44  # favoured thermodynamically: lithiated first, slightly higher
E_DELITH_MGH2 = 0.57
E_DELITH_MG2NIH4 = 0.65
_PLATEAU_SLOPE = 0.05  # V per unit SOC across a plateau (solid-solution tail of the two-phase)
_STEP_WIDTH = 0.02  # SOC width of the switch between the two phases' plateaus
_END_WIDTH = 0.003  # SOC width of the knees at both ends
_LOW_KNEE = 0.22  # V: the lithiation curve falls from the plateau below 0.3 V at z -> 0
_HIGH_KNEE = 0.5  # V: the delithiation curve rises above 1.0 V at z -> 1

# LiBH4 conduction: Arrhenius above its orthorhombic -> hexagonal transition near 380 K,
# and a jump of about two orders of magnitude in resistance below it.
_EA_EV = 0.3
_KB_EV = 8.617333e-5
_T_TRANSITION_K = 380.0
_TRANSITION_WIDTH_K = 2.5
_LOW_PHASE_FACTOR = 100.0
T_REF_K = 403.15


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# The cores below (`_plateau_branches`, `_plateau_slopes`, `_mix`, `_temperature_core`)
# use arithmetic and ufuncs only, so they run on numpy arrays here and, compiled as they
# are, on scalars in `twin.kernel`: one definition of the curve for both paths.


def _switch_soc(ni_share) -> np.ndarray:
    """Where the plateau switches phase; a missing phase moves the switch off the range."""
    ni_share = np.asarray(ni_share, dtype=float)
    return np.where(ni_share <= 0, 2.0, np.where(ni_share >= 1, -1.0, 1.0 - ni_share))


def _plateau_branches(z, loc):
    # Past the ends the knees would grow as exp(overshoot / 3 mSOC): a state that strays
    # there (a filter that has lost the cell) would predict 1e26 V. Clipped, they stay
    # the window-end potentials, and the slope at the end still points the filter back.
    z = np.minimum(np.maximum(z, 0.0), 1.0)
    s = 0.5 * (1.0 + np.tanh(0.5 * ((z - loc) / _STEP_WIDTH)))
    low = np.exp(-z / _END_WIDTH)
    high = np.exp(-(1.0 - z) / _END_WIDTH)
    slope = _PLATEAU_SLOPE * (z - 0.5)
    e_lith = E_LITH_MGH2 + (E_LITH_MG2NIH4 - E_LITH_MGH2) * s + slope - _LOW_KNEE * low
    e_delith = E_DELITH_MGH2 + (E_DELITH_MG2NIH4 - E_DELITH_MGH2) * s + slope + _HIGH_KNEE * high
    return e_lith, e_delith, s, low, high


def _plateau_slopes(s, low, high):
    ds = s * (1 - s) / _STEP_WIDTH
    de_lith = (E_LITH_MG2NIH4 - E_LITH_MGH2) * ds + _PLATEAU_SLOPE + _LOW_KNEE * low / _END_WIDTH
    de_delith = (E_DELITH_MG2NIH4 - E_DELITH_MGH2) * ds + _PLATEAU_SLOPE + _HIGH_KNEE * high / _END_WIDTH
    return de_lith, de_delith


def _branches(z, ni_share):
    return _plateau_branches(np.asarray(z, dtype=float), _switch_soc(ni_share))


def ocv_branches(z: np.ndarray, ni_share: np.ndarray) -> tuple[np.ndarray, ...]:
    """Lithiation and delithiation OCV at surface SOC z, and their derivatives in z.

    Mg2NiH4 holds the top `ni_share` of the SOC range (it lithiates first and re-forms
    last), MgH2 the rest. Returns (e_lith, e_delith, de_lith, de_delith).
    """
    e_lith, e_delith, s, low, high = _branches(z, ni_share)
    return (e_lith, e_delith, *_plateau_slopes(s, low, high))


def _mix(h, e_l, e_d, de_l, de_d):
    mid, half = 0.5 * (e_d + e_l), 0.5 * (e_d - e_l)
    return mid + h * half, 0.5 * (de_d + de_l) + h * 0.5 * (de_d - de_l), half


def table_branches(z: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, ...]:
    """Branches of a tabulated OCV (generic cells): table (N, 2, K), lithiation then
    delithiation, on a uniform SOC grid 0..1; linear inside, extrapolated past the ends."""
    k = table.shape[-1] - 1
    x = np.asarray(z, dtype=float) * k
    j = np.clip(np.floor(np.nan_to_num(x)), 0, k - 1).astype(int)
    rows = np.arange(table.shape[0])[:, None]
    lo, hi = table[rows, [[0, 1]], j[:, None]], table[rows, [[0, 1]], j[:, None] + 1]
    e = lo + (x - j)[:, None] * (hi - lo)
    de = (hi - lo) * k
    return e[:, 0], e[:, 1], de[:, 0], de[:, 1]


def ocv(z, h, ni_share, table=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OCV between the branches as set by the hysteresis state h, with dOCV/dz and dOCV/dh.

    Cells with a table row (not NaN) use their learned curve, the others the hydride's."""
    hydride = _mix(h, *ocv_branches(z, ni_share))
    if table is None:
        return hydride
    generic = ~np.isnan(table[:, 0, 0])
    if not generic.any():
        return hydride
    tabled = _mix(h, *table_branches(z, np.nan_to_num(table)))
    return tuple(np.where(generic, a, b) for a, b in zip(tabled, hydride))


def transition(z, h, v1, d, current, dt, capacity_mah, r1, tau1, tau_diff, gamma, g):
    """One zero-order-hold step of the fast states over dt seconds at constant current (A).

    Returns the new states and the partial derivatives the filter needs:
    (z, h, v1, d), (a_h, a_1, a_d, dv1_dr1).
    """
    q_as = capacity_mah * 3.6  # A*s
    z_new = z + current * dt / q_as
    a_h = np.exp(-np.abs(current) * gamma * dt / q_as)
    h_new = a_h * h + (1.0 - a_h) * np.sign(current)
    a_1 = np.exp(-dt / tau1)
    dv1_dr1 = (1.0 - a_1) * current * g
    v1_new = a_1 * v1 + dv1_dr1 * r1
    a_d = np.exp(-10.0 * dt / tau_diff)  # slowest diffusion mode ~ tau_D / pi^2
    d_new = a_d * d + (1.0 - a_d) * current * tau_diff / (3.0 * q_as)
    return (z_new, h_new, v1_new, d_new), (a_h, a_1, a_d, dv1_dr1)


def temperature_factor(temp_c: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """Resistance multiplier relative to 130 C: Arrhenius, plus the LiBH4 phase jump.

    The law is the hydride cell's (its LiBH4 electrolyte); cells with a learned OCV
    table (generic cells, another chemistry) have no temperature model: 1."""
    factor = _temperature_core(np.asarray(temp_c, dtype=float))
    return factor if table is None else np.where(np.isnan(table[:, 0, 0]), factor, 1.0)


def _temperature_core(temp_c):
    t_k = temp_c + 273.15
    arrhenius = np.exp(_EA_EV / _KB_EV * (1.0 / t_k - 1.0 / T_REF_K))
    jump = 1.0 + _LOW_PHASE_FACTOR * (0.5 * (1.0 + np.tanh(0.5 * ((_T_TRANSITION_K - t_k) / _TRANSITION_WIDTH_K))))
    return arrhenius * jump / _JUMP_REF


_JUMP_REF = 1.0 + _LOW_PHASE_FACTOR * _sigmoid((_T_TRANSITION_K - T_REF_K) / _TRANSITION_WIDTH_K)


def terminal_voltage(z, h, v1, d, current, r0, g, ni_share, shift=0.0, table=None):
    """Terminal voltage and its partial derivatives (dV/dz = dV/dd, dV/dh, dV/dr0)."""
    e, de_dz, de_dh = ocv(z + d, h, ni_share, table)
    return e + shift + current * r0 * g + v1, de_dz, de_dh, current * g


def terminal_voltage_only(z, h, v1, d, current, r0, g, ni_share, shift=0.0, table=None) -> np.ndarray:
    """Terminal voltage without derivatives (the simulator's hot path)."""
    if table is not None and not np.isnan(table[:, 0, 0]).all():
        return terminal_voltage(z, h, v1, d, current, r0, g, ni_share, shift, table)[0]
    e_l, e_d = _branches(z + d, ni_share)[:2]
    return 0.5 * (e_d + e_l) + h * 0.5 * (e_d - e_l) + shift + current * r0 * g + v1


_INVERSE_GRID = np.linspace(0.0, 1.0, 401)


@functools.lru_cache(maxsize=64)
def _inverse_branches(ni_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The hydride's branches on the inverse's grid: a composition's, computed once (every
    closed half-cycle inverts the OCV at its cut-off)."""
    e_l, e_d = ocv_branches(_INVERSE_GRID, np.full(_INVERSE_GRID.shape, ni_share))[:2]
    e_l.setflags(write=False)
    e_d.setflags(write=False)
    return e_l, e_d


def ocv_inverse(e, h, ni_share, table=None) -> np.ndarray:
    """The state of charge whose OCV, on the branch mix `h`, is `e` (per cell), in 0..1.

    Each branch rises with SOC, so the inverse is a monotone interpolation; on a flat
    plateau it is poorly determined, which is why callers give it a wide variance.
    Called when a cell starts or is re-initialised, not per sample: a loop over cells.
    """
    e = np.atleast_1d(np.asarray(e, dtype=float))
    h = np.broadcast_to(np.asarray(h, dtype=float), e.shape)
    ni_share = np.broadcast_to(np.asarray(ni_share, dtype=float), e.shape)
    out = np.empty(e.shape)
    for k in range(e.size):
        if table is not None and not np.isnan(table[k, 0, 0]):
            lith, delith, grid = table[k, 0], table[k, 1], np.linspace(0.0, 1.0, table.shape[-1])
        else:
            lith, delith = _inverse_branches(float(ni_share[k]))
            grid = _INVERSE_GRID
        curve = np.maximum.accumulate(0.5 * (delith + lith) + h[k] * 0.5 * (delith - lith))
        out[k] = np.interp(e[k], curve, grid)
    return out
