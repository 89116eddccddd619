"""End of life: cycles until the retention reaches the floor, with a 90 % interval.

Retention here is the reversible capacity over its value after the first full cycle (the
capacity filter's estimate, as `twin_state.retention`); the end is the first whole cycle
that ends below the floor. The counted ratio at a given rate (`measured_retention`) is not
forecast: activation lifts it by several % over the first cycles at 0.5C and more, which
the ageing model does not carry forward.

How. The ageing model (`twin.degradation.age_half_cycle`) takes, per cycle of a steady
protocol, a fixed share `a` of the room left to phase separation (`psi` approaches its
saturation) and a fixed share `b` of the material still in contact (cracking). The
estimator integrates both with the cell's nominal rates over the depths it measured, so
from its `psi`, `crack` after `n` cycles these shares are read back exactly (geometric
inversion). A real cell ages at `m_psi * a` and `m_crack * b`: its rates scatter about
the preset's (cell-to-cell spread `_RATE_SD`, lognormal). The two multipliers get a
posterior on a grid: the prior spread, weighed by how well each pair explains the loss
measured so far (1 - capacity / first capacity, with the capacity filter's variance).
Monte Carlo: `_DRAWS` draws of (m_psi, m_crack) from that posterior and of today's
capacity from its filter distribution are aged forward in closed form; each draw's
cycles to the floor is found by bisection. The point forecast is the draws' median, the
interval their 5th and 95th percentiles. Early on the prior dominates and the interval
is wide; the measured loss narrows it as cycles accumulate.

Pure numpy, no I/O, and one compiled loop: the bisection (each draw's 20 steps, which as
array calls cost more than all the rest). The draws use a fixed seed, so a forecast moves
only when the state does (common random numbers from one half-cycle to the next): the
random numbers are the same in every forecast and are drawn once, as the module loads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["EndOfLife", "HORIZON_CYCLES", "RETENTION_FLOOR", "RISK_AT_FLOOR", "UNKNOWN", "end_of_life"]

RETENTION_FLOOR = 0.8  # end of life: risks measure the way to it
RISK_AT_FLOOR = 0.7  # the risk of a mechanism on course to the floor within the horizon
HORIZON_CYCLES = 1000.0  # forecasts beyond this are reported as this (read: at least)
_RATE_SD = 0.3  # lognormal cell-to-cell spread of each ageing rate about its preset (with model error)
_GRID = np.linspace(-3.0 * _RATE_SD, 3.0 * _RATE_SD, 25)  # log multipliers the posterior is kept on
_LOSS_MODEL_SD = 0.01  # fraction of the first capacity: model error of the measured loss (the ageing
# model's, and the capacity filter's split of a single-rate count between capacity and diffusion time)
_DRAWS = 400
_BISECTIONS = 20
_SEED = 20260101
_M_PSI, _M_CRACK = (m.ravel() for m in np.meshgrid(np.exp(_GRID), np.exp(_GRID), indexing="ij"))
_LOG_PRIOR = -0.5 * (_GRID[:, None] ** 2 + _GRID[None, :] ** 2).ravel() / _RATE_SD**2


def _draw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The random numbers of every forecast, in the order one generator seeded `_SEED` gives
    them: the uniforms `Generator.choice` turns into picks, then the jitter of each
    multiplier within a grid step (so the draws are not a lattice), then the normal
    deviates of today's capacity."""
    rng = np.random.default_rng(_SEED)
    picks = rng.random(_DRAWS)
    step = _GRID[1] - _GRID[0]
    jitter_psi = np.exp(rng.uniform(-0.5, 0.5, _DRAWS) * step)
    jitter_crack = np.exp(rng.uniform(-0.5, 0.5, _DRAWS) * step)
    return picks, jitter_psi, jitter_crack, rng.standard_normal(_DRAWS)


_PICKS, _JITTER_PSI, _JITTER_CRACK, _NORMAL = _draw()


@dataclass(frozen=True)
class EndOfLife:
    """Cycles from now until the retention reaches the floor: median and 90 % interval."""

    cycles: float
    low: float
    high: float


UNKNOWN = EndOfLife(float("nan"), float("nan"), float("nan"))


def end_of_life(
    cycle: float,
    psi: float,
    crack: float,
    ps_saturation: float,
    capacity_mah: float,
    capacity_var: float,
    first_capacity_mah: float,
    floor: float,
) -> EndOfLife:
    """Forecast from the estimator's state after `cycle` completed lithiations: the model's
    nominal `psi` and `crack`, the tracked capacity (mean, variance) and the first full
    reversible capacity the retention is judged against. UNKNOWN before the first
    capacity, or where the model has no ageing for the cell (generic cells)."""
    if not (cycle >= 1 and np.isfinite(first_capacity_mah) and first_capacity_mah > 0):
        return UNKNOWN
    if psi <= 0 and crack <= 0:
        return UNKNOWN
    # Per-cycle shares of the nominal model, read back from the integrated state.
    a = 1.0 - (1.0 - min(psi / ps_saturation, 1.0 - 1e-12)) ** (1.0 / cycle) if ps_saturation > 0 else 0.0
    b = 1.0 - (1.0 - min(crack, 1.0 - 1e-12)) ** (1.0 / cycle)
    # The loss since the first capacity (set after cycle 1) each pair of multipliers predicts.
    predicted = 1.0 - _Ageing(a * _M_PSI, b * _M_CRACK, ps_saturation).kept(1.0, cycle)
    measured = 1.0 - capacity_mah / first_capacity_mah
    sd = np.hypot(np.sqrt(2.0 * capacity_var) / first_capacity_mah, _LOSS_MODEL_SD)
    log_post = _LOG_PRIOR - 0.5 * ((measured - predicted) / sd) ** 2
    weight = np.exp(log_post - log_post.max())
    pick = _pick(weight)
    mp = _M_PSI[pick] * _JITTER_PSI
    mc = _M_CRACK[pick] * _JITTER_CRACK
    retention_now = (capacity_mah + np.sqrt(capacity_var) * _NORMAL) / first_capacity_mah
    remaining = _cycles_to_floor(retention_now, a * mp, b * mc, ps_saturation, cycle, floor)
    low, mid, high = _percentiles(remaining)
    return EndOfLife(float(mid), float(low), float(high))


def _pick(weight: np.ndarray) -> np.ndarray:
    """`Generator.choice(weight.size, _DRAWS, p=weight / weight.sum())` of the generator
    seeded `_SEED`, with its uniforms drawn once (`_PICKS`)."""
    cdf = (weight / weight.sum()).cumsum()
    cdf /= cdf[-1]
    return cdf.searchsorted(_PICKS, side="right")


_QUANTILES = np.array([5.0, 50.0, 95.0]) / 100.0


def _percentiles(x: np.ndarray) -> np.ndarray:
    """`np.percentile(x, [5, 50, 95])` of finite `x`, its linear method in the same arithmetic,
    without the general function's overhead (more than the rest of a forecast)."""
    x = np.sort(x)
    virtual = (x.size - 1) * _QUANTILES
    below = np.floor(virtual).astype(np.intp)
    gamma = virtual - below
    a, b = x[below], x[np.minimum(below + 1, x.size - 1)]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


class _Ageing:
    """Shares a (of the room left to phase separation) and b (of the contact) lost per cycle."""

    def __init__(self, a: np.ndarray, b: np.ndarray, saturation: float) -> None:
        self.log_room = np.log1p(-np.minimum(np.maximum(a, 0.0), 1.0 - 1e-12))  # np.clip, without its overhead
        self.log_contact = np.log1p(-np.minimum(np.maximum(b, 0.0), 1.0 - 1e-12))
        self.saturation = saturation

    def intact(self, n) -> np.ndarray:  # 1 - psi after n cycles
        return 1.0 - self.saturation + self.saturation * np.exp(n * self.log_room)

    def kept(self, start: float, end) -> np.ndarray:
        return self.intact(end) / self.intact(start) * np.exp((np.asarray(end) - start) * self.log_contact)


def _cycles_to_floor(retention: np.ndarray, a: np.ndarray, b: np.ndarray, saturation: float, cycle: float,
                     floor: float) -> np.ndarray:
    """Per draw: cycles after `cycle` until the first cycle whose retention x kept share is
    below `floor` (bisection: the kept share falls monotonically), capped at HORIZON_CYCLES;
    0 if already below."""
    ageing = _Ageing(a, b, saturation)
    share = retention / ageing.intact(cycle)
    return _bisect_floor(retention, share, ageing.log_room, ageing.log_contact, float(saturation), float(cycle),
                         float(floor))


@njit(cache=True, error_model="numpy")
def _bisect_floor(retention: np.ndarray, share: np.ndarray, log_room: np.ndarray, log_contact: np.ndarray,
                  saturation: float, cycle: float, floor: float) -> np.ndarray:
    """`_cycles_to_floor`'s bisection, draw by draw: `_Ageing`'s arithmetic on scalars."""
    out = np.empty(retention.size)
    for d in range(retention.size):
        if retention[d] <= floor:
            out[d] = 0.0
            continue
        lo, hi = 0.0, HORIZON_CYCLES
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            if _above(share[d], log_room[d], log_contact[d], saturation, cycle, mid, floor):
                lo = mid
            else:
                hi = mid
        # The floor is reached by the first whole cycle that ends below it.
        above = _above(share[d], log_room[d], log_contact[d], saturation, cycle, hi, floor)
        out[d] = HORIZON_CYCLES if above else np.ceil(hi)
    return out


@njit(cache=True, error_model="numpy")
def _above(share: float, log_room: float, log_contact: float, saturation: float, cycle: float, k: float,
           floor: float) -> bool:
    """Whether the retention is still above `floor` `k` cycles after `cycle`."""
    intact = 1.0 - saturation + saturation * np.exp((cycle + k) * log_room)
    return share * intact * np.exp(k * log_contact) > floor
