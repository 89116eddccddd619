"""Generic cells: any chemistry, with its open-circuit curve learned from a slow cycle.

For archived tests of cells that are not the hydride anode, the twin keeps the same
estimator (SOC with hysteresis, R0 + RC, capacity, plateau offset) but takes the
voltage window from the cell's metadata and replaces the hydride OCV by a table: the
lithiation (discharge) and delithiation (charge) branches on a uniform SOC grid,
learned from the first slow full cycle of the data, or supplied by the user. There is
no degradation model for a chemistry the twin does not know, so its risks stay 0 and
capacity fade is tracked from the data alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import OCV_POINTS, CellParams

__all__ = ["LearnedOcv", "learn_ocv", "generic_params", "soc_grid"]


def soc_grid() -> np.ndarray:
    return np.linspace(0.0, 1.0, OCV_POINTS)


@dataclass(frozen=True)
class LearnedOcv:
    table: np.ndarray  # (2, OCV_POINTS): lithiation (discharge) branch, delithiation branch
    capacity_mah: float  # charge of the slow discharge between the window ends
    r_ohm: float  # resistance from the voltage step where the current reversed
    c_rate: float  # of the learning cycle, relative to `capacity_mah` per hour


def _runs(sign: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [a, b) of constant non-zero current sign."""
    edges = np.flatnonzero(np.diff(sign) != 0) + 1
    bounds = np.concatenate([[0], edges, [len(sign)]])
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if sign[a] != 0 and b - a > 10]


def _branch(q_frac: np.ndarray, v_ocv: np.ndarray) -> np.ndarray:
    """Bin the voltage by SOC onto the grid (means), then fill empty bins linearly."""
    grid = soc_grid()
    idx = np.clip(np.rint(q_frac * (OCV_POINTS - 1)).astype(int), 0, OCV_POINTS - 1)
    sums = np.bincount(idx, v_ocv, OCV_POINTS)
    counts = np.bincount(idx, minlength=OCV_POINTS)
    have = counts > 0
    return np.interp(grid, grid[have], sums[have] / counts[have])


def learn_ocv(t: np.ndarray, v: np.ndarray, i: np.ndarray, v_min: float, v_max: float) -> LearnedOcv:
    """Learn the two OCV branches from the first full discharge (v_max side to v_min)
    followed by a full charge, both slow (C/10 or slower gives a curve within the
    resistance drop; faster cycles bias it).

    Raises ValueError naming what is missing when the data hold no such cycle.
    """
    t, v, i = (np.asarray(a, dtype=float) for a in (t, v, i))
    if not (t.shape == v.shape == i.shape) or t.ndim != 1:
        raise ValueError("t, v and i must be 1-D arrays of one length")
    ok = np.isfinite(t) & np.isfinite(v) & np.isfinite(i)
    t, v, i = t[ok], v[ok], i[ok]
    scale = np.nanmax(np.abs(i)) if i.size else 0.0
    sign = np.where(np.abs(i) > 0.01 * scale, np.sign(i), 0.0)
    span = v_max - v_min
    runs = _runs(sign)
    for (a, b), nxt in zip(runs, runs[1:] + [None]):
        full_discharge = sign[a] < 0 and v[a:b].min() <= v_min + 0.05 * span
        if not full_discharge or nxt is None or sign[nxt[0]] <= 0 or v[nxt[0] : nxt[1]].max() < v_max - 0.05 * span:
            continue
        c, e = nxt
        dq_d = np.abs(i[a:b]) * np.diff(t[a - 1 : b] if a > 0 else np.r_[t[a], t[a:b]])
        dq_c = np.abs(i[c:e]) * np.diff(t[c - 1 : e])
        q_d, q_c = np.cumsum(dq_d), np.cumsum(dq_c)
        # Ohmic + fast RC drop, from the voltage step at the reversal into the charge.
        r = max((v[c] - v[c - 1]) / (i[c] - i[c - 1]), 0.0) if i[c] != i[c - 1] else 0.0
        dis = _branch(1.0 - q_d / q_d[-1], v[a:b] - i[a:b] * r)
        chg = _branch(q_c / q_c[-1], v[c:e] - i[c:e] * r)
        capacity_mah = float(q_d[-1] / 3.6)
        hours = (t[b - 1] - t[a]) / 3600.0
        return LearnedOcv(np.stack([dis, chg]), capacity_mah, float(r), 1.0 / hours if hours > 0 else float("nan"))
    raise ValueError(
        f"no full slow cycle found to learn the open-circuit curve: need a discharge down to "
        f"{v_min:g} V followed by a charge up to {v_max:g} V (or supply the table)"
    )


def generic_params(
    name: str,
    capacity_mah: float,
    v_min: float,
    v_max: float,
    ocv_table: np.ndarray,
    r_ohm: float = 0.05,
    mass_mg: float | None = None,
) -> CellParams:
    """Parameters of a generic cell: 1C = the capacity per hour; no hydride degradation."""
    if not (capacity_mah > 0 and v_max > v_min):
        raise ValueError("a generic cell needs a positive capacity and v_max > v_min")
    mass = mass_mg if mass_mg else 1000.0  # per-gram figures are in mAh when no mass is known
    return CellParams(
        name=name,
        composition=None,
        mass_mg=mass,
        one_c_ma_g=capacity_mah / (mass / 1000.0),
        utilisation=1.0,
        first_irreversible_mah_g=0.0,
        tau_diff_s=60.0,
        activation_factor=0.0,
        r0_ohm=0.5 * r_ohm,
        r1_ohm=0.5 * r_ohm,
        hysteresis_rate=30.0,
        ps_rate=0.0,
        crack_rate=0.0,
        v_min=v_min,
        v_max=v_max,
        generic_capacity_mah=capacity_mah,
        ocv_table=np.asarray(ocv_table, dtype=float),
    )
