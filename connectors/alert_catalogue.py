"""Every alert kind, defined once: what is judged, against which limit, how bad, for how long.

The in-stream alerts (``pipeline.alerts``), the Grafana alert rules
(``connectors.grafana.alerts``), the report and the README's alert table are all made
from :data:`CATALOGUE`, so they cannot disagree on a limit, a direction or a severity.
The limits themselves are ``connectors.wire.THRESHOLDS`` (and the electrode's voltage
window from ``twin.params``).

Scopes: ``sample`` kinds are judged on every sample, ``half_cycle`` kinds on every finished
half-cycle (where the twin updates them), ``store`` kinds only by Grafana, from what the
store holds (a silent cell, a dead-letter rate): the stream has nothing to judge them on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from connectors.wire import MEAS_CYCLE, MEAS_HEALTH, MEAS_STATE, THRESHOLDS
from twin.params import V_MAX, V_MIN

__all__ = ["WINDOW_MARGIN_V", "Limit", "AlertKind", "CATALOGUE", "KINDS", "by_kind", "limits_text", "readme_table"]

Side = Literal["above", "below"]
Scope = Literal["sample", "half_cycle", "store"]
_T = THRESHOLDS
# A cycler ending a step at its cut-off reads a few mV past it (overshoot, noise): that
# is the protocol working, not abuse.
WINDOW_MARGIN_V = 0.02


@dataclass(frozen=True)
class Limit:
    """One side of a kind: beyond ``value`` (plus ``margin``) on ``side`` is an alert."""

    side: Side
    value: float  # the limit as stated, the alert's `threshold`
    severity: Literal["warning", "critical"]
    why: str = ""  # what crossing it means, ends the message
    margin: float = 0.0  # tolerated beyond the limit before it counts

    @property
    def trips_at(self) -> float:
        """The value beyond which the alert fires."""
        # Rounded: 0.3 - 0.02 is 0.27999999999999997 in floats, and rules show this number.
        return round(self.value + self.margin if self.side == "above" else self.value - self.margin, 12)

    def beyond(self, value: float) -> bool:
        return value > self.trips_at if self.side == "above" else value < self.trips_at


@dataclass(frozen=True)
class AlertKind:
    """One alert kind (the ``kind`` tag of ``twin_alert``)."""

    kind: str
    title: str  # a rule's title, the README's name
    scope: Scope
    measurement: str  # where the judged value is stored (and Grafana reads it)
    fields: tuple[str, ...]  # the first of these with a value is judged
    labels: tuple[str, ...]  # how a message names each of ``fields``
    limits: tuple[Limit, ...]  # one, or two for a window
    hold: str  # Grafana: how long the condition must hold before the rule fires
    unit: str = ""  # after numbers in messages
    fmt: str = ".3g"  # of the value in messages
    derived: str = ""  # for store kinds: what Grafana makes of the field

    def crossed(self, value: float) -> Limit | None:
        """The limit ``value`` is beyond, if any (NaN is beyond none)."""
        if not math.isfinite(value):
            return None
        return next((limit for limit in self.limits if limit.beyond(value)), None)

    def message(self, label: str, value: float, limit: Limit, where: str = "") -> str:
        text = f"{label} {value:{self.fmt}}{self.unit} {limit.side} {limit.value:g}{self.unit}{where}"
        return f"{text}: {limit.why}" if limit.why else text


_RESISTANCE_RANGE = "LiBH4 conduction and the twin's resistances are off their calibrated range"

CATALOGUE: tuple[AlertKind, ...] = (
    AlertKind("crack_risk", "Crack risk", "half_cycle", MEAS_CYCLE, ("crack_risk",),
              ("crack risk",),
              (Limit("above", _T.crack_risk, "warning"),), hold="5m"),
    AlertKind("phase_sep_risk", "Phase-separation risk", "half_cycle", MEAS_CYCLE, ("phase_sep_risk",),
              ("phase-separation risk",),
              (Limit("above", _T.phase_sep_risk, "warning"),), hold="5m"),
    # The retention a lab holds against the floor: the counted one where the half has a reference
    # (same kind, same C-rate), else the twin's.
    AlertKind("retention_floor", "Capacity retention", "half_cycle", MEAS_CYCLE, ("measured_retention", "retention"),
              ("measured retention", "twin retention"),
              (Limit("below", _T.retention_floor, "critical", "end of life"),), hold="10m"),
    # The forecast's 5 % bound: the floor may come within the horizon (the median is later).
    AlertKind("eol_horizon", "End of life within the horizon", "half_cycle", MEAS_CYCLE, ("eol_low",),
              ("end-of-life forecast, lower bound",),
              (Limit("below", _T.eol_horizon_cycles, "warning", "the retention may reach the floor this soon"),),
              hold="0s", unit=" cycles", fmt=".0f"),
    AlertKind("fade_rate_jump", "Capacity fade per cycle", "half_cycle", MEAS_CYCLE, ("fade_per_cycle",),
              ("capacity fade per cycle",),
              (Limit("above", _T.fade_rate_jump, "warning"),), hold="0s"),
    AlertKind("impedance_growth", "Impedance growth", "half_cycle", MEAS_CYCLE, ("impedance_growth",),
              ("impedance growth",),
              (Limit("above", _T.impedance_growth, "warning"),), hold="10m"),
    AlertKind("temperature", "Cell temperature", "sample", MEAS_STATE, ("temp_c",), ("temperature",),
              (Limit("below", _T.temp_low_c, "warning", _RESISTANCE_RANGE),
               Limit("above", _T.temp_high_c, "warning", _RESISTANCE_RANGE)),
              hold="2m", unit=" C", fmt=".1f"),
    AlertKind("voltage_window", "Cell voltage", "sample", MEAS_STATE, ("v",), ("voltage",),
              (Limit("below", V_MIN, "critical", "Li-Mg alloying destroys reversibility", WINDOW_MARGIN_V),
               Limit("above", V_MAX, "warning", "outside the electrode's window and the model",
                     WINDOW_MARGIN_V)),
              hold="1m", unit=" V", fmt=".3f"),
    AlertKind("cell_silent", "Cell gone silent", "store", MEAS_STATE, ("v",), ("seconds without data",),
              (Limit("above", _T.silent_after_s, "warning", "the cell or its cycler went quiet"),),
              hold="0s", unit=" s", fmt=".0f", derived="seconds since the newest `twin_state.v`"),
    AlertKind("deadletter_burst", "Dead-letter burst", "store", MEAS_HEALTH, ("deadletters",),
              ("dead letters per minute",),
              (Limit("above", _T.deadletter_burst_per_min, "warning", "producers send records the "
                     "pipeline rejects, see cell.deadletter"),),
              hold="2m", derived="per-minute rate of the `pipeline_health.deadletters` counters"),
)
# Kinds the stream judges, in the order of its latch columns.
KINDS: tuple[str, ...] = tuple(k.kind for k in CATALOGUE if k.scope != "store")


def by_kind(kind: str) -> AlertKind:
    return next(k for k in CATALOGUE if k.kind == kind)


def limits_text(kind: AlertKind) -> str:
    """E.g. "capacity retention below 0.8 (measured retention, else twin retention)"."""
    bounds = " or ".join(f"{limit.side} {limit.value:g}{kind.unit}" for limit in kind.limits)
    judged = f" ({', else '.join(kind.labels)})" if len(kind.fields) > 1 else ""
    return f"{kind.title.lower()} {bounds}{judged}"


_JUDGED = {"sample": "every sample", "half_cycle": "every half-cycle", "store": "Grafana only"}


def readme_table() -> str:
    """The README's alert table (a test holds the README to it)."""
    rows = ["| kind | alert | judged on | value | fires when | severity | Grafana holds |",
            "|---|---|---|---|---|---|---|"]
    for kind in CATALOGUE:
        value = kind.derived or " else ".join(f"`{kind.measurement}.{f}`" for f in kind.fields)
        for limit in kind.limits:
            bound = f"{limit.side} {limit.value:g}{kind.unit}"
            if limit.margin:
                bound += f" (by more than {limit.margin:g}{kind.unit})"
            rows.append(f"| `{kind.kind}` | {kind.title} | {_JUDGED[kind.scope]} | {value} | {bound} "
                        f"| {limit.severity} | {kind.hold} |")
    return "\n".join(rows) + "\n"
