"""In-stream alerts: each fires once when a cell crosses its limit, not on every sample.

A latch per cell and kind remembers that the limit is crossed; the alert fires on the
transition from inside to beyond and re-arms when the value comes back. A cell sitting
at 0.25 V for an hour therefore raises one alert, and a second excursion a day later
raises another. Kinds, limits, severities and messages come from
``connectors.alert_catalogue``, which the Grafana rules are made from too.

Sample-level kinds (temperature, voltage window) are checked on every sample of every
cell at once with numpy; cycle-level kinds (risks, retention, fade, impedance) on
each finished half-cycle, where the twin updates them. Retention is the measured one (counted
capacity over the cell's first reversible half of the same kind at the same C-rate) where the
half has such a reference, else the twin's; the message says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from connectors.alert_catalogue import CATALOGUE, KINDS, WINDOW_MARGIN_V, AlertKind
from twin.estimator import HalfCycle

__all__ = ["KINDS", "WINDOW_MARGIN_V", "Alert", "new_latch", "sample_alerts", "half_cycle_alerts"]

_K = {kind: k for k, kind in enumerate(KINDS)}
_SAMPLE_KINDS = tuple(k for k in CATALOGUE if k.scope == "sample")
_HALF_KINDS = tuple(k for k in CATALOGUE if k.scope == "half_cycle")


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


def _beyond(kind: AlertKind, values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN (no value) is beyond no limit
        masks = [values > lim.trips_at if lim.side == "above" else values < lim.trips_at
                 for lim in kind.limits]
    return np.logical_or.reduce(masks)


def sample_alerts(
    latch: np.ndarray,
    present: np.ndarray,
    t: np.ndarray,
    v: np.ndarray,
    temp_c: np.ndarray,
) -> list[Alert]:
    """Alerts of one lockstep sample (arrays over all rows; `present` marks real samples,
    `temp_c` is NaN where no temperature was reported)."""
    columns = {"v": v, "temp_c": temp_c}
    alerts = []
    for kind in _SAMPLE_KINDS:
        values = columns[kind.fields[0]]
        for row in _crossings(latch, kind.kind, present & np.isfinite(values), _beyond(kind, values)):
            value = float(values[row])
            limit = kind.crossed(value)
            assert limit is not None  # a crossing row is beyond a limit
            alerts.append(Alert(int(row), float(t[row]), kind.kind, value, limit.value, limit.severity,
                                kind.message(kind.labels[0], value, limit)))
    return alerts


def _judged(kind: AlertKind, half: HalfCycle) -> tuple[float, str]:
    """The first of the kind's values the half has, with its label (NaN if none)."""
    for field, label in zip(kind.fields, kind.labels):
        value = float(getattr(half, field))
        if math.isfinite(value):
            return value, label
    return math.nan, kind.labels[0]


def half_cycle_alerts(latch: np.ndarray, half: HalfCycle) -> list[Alert]:
    """Alerts of a finished half-cycle of the cell in row `half.cell`; none of a partial one
    (the data stopped in it: its charge would read as lost capacity)."""
    if half.partial:
        return []
    alerts = []
    for kind in _HALF_KINDS:
        value, label = _judged(kind, half)
        if not math.isfinite(value):
            continue
        limit = kind.crossed(value)
        if limit and not latch[half.cell, _K[kind.kind]]:
            where = f" after the {half.half} of cycle {half.cycle}"
            alerts.append(Alert(half.cell, half.t, kind.kind, value, limit.value, limit.severity,
                                kind.message(label, value, limit, where)))
        latch[half.cell, _K[kind.kind]] = limit is not None
    return alerts
