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

__all__ = ["KINDS", "WINDOW_MARGIN_V", "Alert", "new_latch", "frame_alerts", "sample_alerts", "half_cycle_alerts"]

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


def _crossings(latch: np.ndarray, kind: str, known: np.ndarray, beyond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, samples) that just crossed in a frame (N, T); the latch ends where each row's
    last known value left it. Before a sample the latch is what the last known one set."""
    column = latch[:, _K[kind]]
    n, width = known.shape
    last = np.maximum.accumulate(np.where(known, np.arange(width), -1), axis=1)  # last known sample so far
    after = np.where(last >= 0, beyond[np.arange(n)[:, None], np.maximum(last, 0)], column[:, None])
    before = np.concatenate([column[:, None], after[:, :-1]], axis=1)
    latch[:, _K[kind]] = after[:, -1]
    return np.nonzero(known & beyond & ~before)


def _beyond(kind: AlertKind, values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN (no value) is beyond no limit
        masks = [values > lim.trips_at if lim.side == "above" else values < lim.trips_at
                 for lim in kind.limits]
    return np.logical_or.reduce(masks)


def frame_alerts(
    latch: np.ndarray,
    present: np.ndarray,
    t: np.ndarray,
    v: np.ndarray,
    temp_c: np.ndarray,
) -> list[tuple[int, Alert]]:
    """Alerts of a frame of lockstep samples, arrays (N, T) over rows and samples (`present`
    marks real samples, `temp_c` is NaN where no temperature was reported): each with the
    index of its sample, in the order a sample-by-sample check raises them (sample, kind, row)."""
    columns = {"v": v, "temp_c": temp_c}
    found = []
    for order, kind in enumerate(_SAMPLE_KINDS):
        values = columns[kind.fields[0]]
        rows, samples = _crossings(latch, kind.kind, present & np.isfinite(values), _beyond(kind, values))
        for row, k in zip(rows.tolist(), samples.tolist()):
            value = float(values[row, k])
            limit = kind.crossed(value)
            assert limit is not None  # a crossing row is beyond a limit
            found.append((k, order, row, Alert(row, float(t[row, k]), kind.kind, value, limit.value, limit.severity,
                                               kind.message(kind.labels[0], value, limit))))
    found.sort(key=lambda entry: entry[:3])
    return [(k, alert) for k, _, _, alert in found]


def sample_alerts(
    latch: np.ndarray,
    present: np.ndarray,
    t: np.ndarray,
    v: np.ndarray,
    temp_c: np.ndarray,
) -> list[Alert]:
    """Alerts of one lockstep sample (arrays over all rows; `present` marks real samples,
    `temp_c` is NaN where no temperature was reported)."""
    return [alert for _, alert in frame_alerts(latch, *(np.asarray(a)[:, None] for a in (present, t, v, temp_c)))]


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
