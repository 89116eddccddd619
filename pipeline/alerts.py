"""In-stream alerts: each fires once when a cell crosses its limit, not on every sample.

A latch per cell and kind remembers that the limit is crossed; the alert fires on the
transition from inside to beyond and re-arms when the value comes back. A cell sitting
at 0.25 V for an hour therefore raises one alert, and a second excursion a day later
raises another. Limits come from `THRESHOLDS` in contracts, shared with Grafana.

Sample-level kinds (temperature, voltage window) are checked on every sample of every
cell at once with numpy; cycle-level kinds (risks, retention, fade, impedance) on
each finished half-cycle, where the twin updates them. Retention is the measured one (counted
capacity over the cell's first reversible half of the same kind at the same C-rate) where the
half has such a reference, else the twin's; the message says which.

Severity: `critical` where the cell is being damaged or is at end of life (voltage
below the window: Li-Mg alloying; retention below the floor), `warning` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.contracts import THRESHOLDS, AlertThresholds
from twin.estimator import HalfCycle
from twin.params import V_MAX, V_MIN

__all__ = ["KINDS", "WINDOW_MARGIN_V", "Alert", "new_latch", "sample_alerts", "half_cycle_alerts"]

KINDS: tuple[str, ...] = (
    "crack_risk",
    "phase_sep_risk",
    "retention_floor",
    "fade_rate_jump",
    "impedance_growth",
    "temperature",
    "voltage_window",
)
_K = {kind: k for k, kind in enumerate(KINDS)}
# A cycler ending a step at its cut-off reads a few mV past it (overshoot, noise): that
# is the protocol working, not abuse.
WINDOW_MARGIN_V = 0.02


@dataclass(frozen=True)
class Alert:
    """One alert of the cell in tracker row `row`, at sample time `time`."""

    row: int
    time: float
    kind: str
    value: float
    threshold: float
    severity: str  # "warning" | "critical"
    message: str


def new_latch(cells: int) -> np.ndarray:
    """The latch of `cells` cells: nothing crossed yet."""
    return np.zeros((cells, len(KINDS)), dtype=bool)


def _crossings(latch: np.ndarray, kind: str, known: np.ndarray, beyond: np.ndarray) -> np.ndarray:
    """Rows that just crossed; updates the latch where the value is known."""
    column = latch[:, _K[kind]]
    fired = known & beyond & ~column
    latch[:, _K[kind]] = np.where(known, beyond, column)
    return np.flatnonzero(fired)


def sample_alerts(
    latch: np.ndarray,
    present: np.ndarray,
    t: np.ndarray,
    v: np.ndarray,
    temp_c: np.ndarray,
    limits: AlertThresholds = THRESHOLDS,
) -> list[Alert]:
    """Alerts of one lockstep sample (arrays over all rows; `present` marks real samples,
    `temp_c` is NaN where no temperature was reported)."""
    alerts = []
    cold, hot = temp_c < limits.temp_low_c, temp_c > limits.temp_high_c
    for row in _crossings(latch, "temperature", present & np.isfinite(temp_c), cold | hot):
        limit = limits.temp_low_c if cold[row] else limits.temp_high_c
        side = "below" if cold[row] else "above"
        alerts.append(Alert(int(row), float(t[row]), "temperature", float(temp_c[row]), limit, "warning",
                            f"temperature {temp_c[row]:.1f} C {side} {limit:.0f} C: LiBH4 conduction "
                            "and the twin's resistances are off their calibrated range"))
    below, above = v < V_MIN - WINDOW_MARGIN_V, v > V_MAX + WINDOW_MARGIN_V
    for row in _crossings(latch, "voltage_window", present, below | above):
        if below[row]:
            alerts.append(Alert(int(row), float(t[row]), "voltage_window", float(v[row]), V_MIN, "critical",
                                f"voltage {v[row]:.3f} V below {V_MIN} V: Li-Mg alloying destroys reversibility"))
        else:
            alerts.append(Alert(int(row), float(t[row]), "voltage_window", float(v[row]), V_MAX, "warning",
                                f"voltage {v[row]:.3f} V above {V_MAX} V: outside the electrode's window "
                                "and the model"))
    return alerts


def _retention(half: HalfCycle) -> tuple[float, str]:
    """The retention a lab holds against the floor: the counted one where the half has a
    reference (same kind, same C-rate), else the twin's; with the name of the one used."""
    if math.isfinite(half.measured_retention):
        return half.measured_retention, "measured retention"
    return half.retention, "twin retention"


def half_cycle_alerts(latch: np.ndarray, half: HalfCycle, limits: AlertThresholds = THRESHOLDS) -> list[Alert]:
    """Alerts of a finished half-cycle of the cell in row `half.cell`."""
    retention, retention_name = _retention(half)
    checks = (
        ("crack_risk", half.crack_risk, limits.crack_risk, True, "warning", "crack risk"),
        ("phase_sep_risk", half.phase_sep_risk, limits.phase_sep_risk, True, "warning", "phase-separation risk"),
        ("retention_floor", retention, limits.retention_floor, False, "critical", retention_name),
        ("fade_rate_jump", half.fade_per_cycle, limits.fade_rate_jump, True, "warning", "capacity fade per cycle"),
        ("impedance_growth", half.impedance_growth, limits.impedance_growth, True, "warning", "impedance growth"),
    )
    alerts = []
    for kind, value, limit, high_is_bad, severity, name in checks:
        if not math.isfinite(value):
            continue
        beyond = value > limit if high_is_bad else value < limit
        if beyond and not latch[half.cell, _K[kind]]:
            side = "above" if high_is_bad else "below"
            alerts.append(Alert(half.cell, half.t, kind, float(value), limit, severity,
                                f"{name} {value:.3g} {side} {limit:.3g} after the {half.half} of cycle {half.cycle}"))
        latch[half.cell, _K[kind]] = beyond
    return alerts
