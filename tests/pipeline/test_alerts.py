"""Alerts fire once on crossing a limit, re-arm when the value comes back, per cell."""

from __future__ import annotations

import math

import numpy as np

from connectors.wire import THRESHOLDS
from pipeline.alerts import WINDOW_MARGIN_V, half_cycle_alerts, new_latch, sample_alerts
from twin.estimator import HalfCycle
from twin.params import V_MIN


def _half(cell: int = 0, **values: float | bool) -> HalfCycle:
    base = dict(cell=cell, t=1000.0, cycle=5, half="charge", capacity_mah=1.0, capacity_mah_g=1000.0,
                expected_mah_g=1000.0, coulombic_efficiency=0.99, measured_retention=0.96, retention=0.95,
                twin_capacity_mah=1.01, twin_capacity_std_mah=0.01, impedance_growth=0.1, crack_risk=0.1,
                phase_sep_risk=0.1, fade_per_cycle=0.001, c_rate=1.0, nis=1.0)
    return HalfCycle(**{**base, **values})


def _temperatures(latch: np.ndarray, temps: list[float], present: list[bool] | None = None):
    n = len(temps)
    present = np.array(present if present is not None else [True] * n)
    return sample_alerts(latch, present, np.full(n, 50.0), np.full(n, 0.6), np.array(temps))


def test_temperature_excursion_fires_once_and_rearms() -> None:
    latch = new_latch(2)
    hot = THRESHOLDS.temp_high_c + 5

    first = _temperatures(latch, [130.0, hot])
    assert [(a.row, a.kind, a.value, a.threshold) for a in first] == [(1, "temperature", hot, THRESHOLDS.temp_high_c)]
    assert _temperatures(latch, [130.0, hot + 1]) == []  # still beyond: no repeat
    assert _temperatures(latch, [130.0, math.nan]) == []  # no reading changes nothing
    assert _temperatures(latch, [130.0, 130.0]) == []  # back: re-armed
    again = _temperatures(latch, [THRESHOLDS.temp_low_c - 10, hot])
    assert sorted((a.row, a.threshold) for a in again) == [(0, THRESHOLDS.temp_low_c), (1, THRESHOLDS.temp_high_c)]


def test_absent_cells_keep_their_latch() -> None:
    latch = new_latch(1)
    hot = THRESHOLDS.temp_high_c + 5
    assert len(_temperatures(latch, [hot])) == 1
    assert _temperatures(latch, [130.0], present=[False]) == []
    assert _temperatures(latch, [hot]) == []


def test_voltage_below_window_is_critical_but_the_cut_off_itself_is_not() -> None:
    latch = new_latch(1)

    def at(v: float):
        return sample_alerts(latch, np.array([True]), np.array([1.0]), np.array([v]), np.array([130.0]))

    assert at(V_MIN - WINDOW_MARGIN_V / 2) == []  # a CC step ending at 0.3 V reads a little below it
    [alert] = at(0.2)
    assert (alert.kind, alert.severity, alert.value, alert.threshold) == ("voltage_window", "critical", 0.2, V_MIN)
    assert at(0.1) == []


def test_half_cycle_limits_fire_once_each() -> None:
    latch = new_latch(3)
    bad = dict(crack_risk=0.9, phase_sep_risk=0.8, measured_retention=0.7, fade_per_cycle=0.02,
               impedance_growth=0.6, eol_low=5.0)

    alerts = half_cycle_alerts(latch, _half(cell=2, **bad))
    assert {a.kind for a in alerts} == {"crack_risk", "phase_sep_risk", "retention_floor", "eol_horizon",
                                        "fade_rate_jump", "impedance_growth"}
    assert {a.row for a in alerts} == {2}
    retention = next(a for a in alerts if a.kind == "retention_floor")
    assert (retention.severity, retention.value, retention.threshold) == ("critical", 0.7, THRESHOLDS.retention_floor)
    assert "cycle 5" in retention.message
    assert half_cycle_alerts(latch, _half(cell=2, **bad)) == []
    assert half_cycle_alerts(latch, _half(cell=1, crack_risk=0.9))[0].row == 1  # another cell has its own latch
    assert half_cycle_alerts(latch, _half(cell=2)) == []  # all back inside: re-armed
    assert [a.kind for a in half_cycle_alerts(latch, _half(cell=2, crack_risk=0.95))] == ["crack_risk"]


def test_a_partial_half_raises_nothing_and_leaves_the_latch() -> None:
    latch = new_latch(1)
    bad = dict(crack_risk=0.9, measured_retention=0.5)
    assert half_cycle_alerts(latch, _half(partial=True, **bad)) == []
    assert {a.kind for a in half_cycle_alerts(latch, _half(**bad))} == {"crack_risk", "retention_floor"}


def test_retention_floor_follows_the_measured_retention_where_there_is_one() -> None:
    latch = new_latch(1)
    floor = THRESHOLDS.retention_floor

    # The twin sees the cell below the floor, the counted capacity does not: the lab's number wins.
    assert half_cycle_alerts(latch, _half(measured_retention=floor + 0.05, retention=floor - 0.1)) == []
    [measured] = half_cycle_alerts(latch, _half(measured_retention=floor - 0.05, retention=floor + 0.1))
    assert (measured.kind, measured.value) == ("retention_floor", floor - 0.05)
    assert measured.message.startswith("measured retention")


def test_retention_floor_falls_back_to_the_twin_without_a_reference() -> None:
    latch = new_latch(1)
    floor = THRESHOLDS.retention_floor

    [twin] = half_cycle_alerts(latch, _half(measured_retention=math.nan, retention=floor - 0.1))
    assert (twin.kind, twin.value) == ("retention_floor", floor - 0.1)
    assert twin.message.startswith("twin retention")


def test_unknown_values_do_not_fire() -> None:
    latch = new_latch(1)
    assert half_cycle_alerts(latch, _half(measured_retention=math.nan, retention=math.nan, crack_risk=math.nan)) == []
