"""Cycler protocols written the way a lab writes them.

    "Discharge at 0.1C until 0.3 V"
    "Charge at 1C until 1.0 V"
    "Rest for 10 minutes"
    "Discharge at 0.1C for 10 minutes or until 0.3 V"   (a GITT pulse)

A protocol is a flat list of `Step`s. Steps of one current direction that belong
together (a CC step, or all the pulses of a GITT half) share a `half` number, which is
how the simulator and the truth tables group samples into half-cycles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .params import V_MAX, V_MIN

__all__ = ["Step", "parse_step", "cc_cycles", "rate_ladder", "gitt", "RATE_LADDER"]

_UNITS_S = {"s": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}
_STEP_RE = re.compile(
    r"^\s*(?P<kind>discharge|charge|rest)"
    r"(?:\s+at\s+(?P<rate>[\d.]+)\s*C)?"
    r"(?:\s+for\s+(?P<dur>[\d.]+)\s*(?P<unit>[a-z]+))?"
    r"(?:\s+(?:or\s+)?until\s+(?P<v>[\d.]+)\s*V)?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Step:
    """One cycler step. c_rate is signed: negative = discharge (lithiation)."""

    c_rate: float
    until_v: float | None = None
    duration_s: float | None = None
    half: int = 0
    skip_to: int | None = None  # index to jump to when the voltage limit ends the step

    @property
    def is_rest(self) -> bool:
        return self.c_rate == 0.0


def parse_step(text: str, half: int = 0) -> Step:
    """Parse one step in the lab's words; raises ValueError saying what is expected."""
    m = _STEP_RE.match(text)
    if not m:
        raise ValueError(
            f"cannot read step {text!r}: write e.g. 'Discharge at 0.1C until 0.3 V', "
            "'Charge at 1C until 1.0 V' or 'Rest for 10 minutes'"
        )
    kind = m["kind"].lower()
    if m["dur"] and m["unit"].lower() not in _UNITS_S:
        raise ValueError(f"unknown time unit {m['unit']!r} in {text!r}: use s, minutes or hours")
    duration = float(m["dur"]) * _UNITS_S[m["unit"].lower()] if m["dur"] else None
    if kind == "rest":
        if duration is None:
            raise ValueError(f"a rest needs a duration: {text!r}")
        return Step(0.0, None, duration, half)
    if not m["rate"]:
        raise ValueError(f"a {kind} step needs a C-rate: {text!r}")
    rate = float(m["rate"]) * (-1.0 if kind == "discharge" else 1.0)
    until = float(m["v"]) if m["v"] else (V_MIN if rate < 0 else V_MAX)
    return Step(rate, until, duration, half)


def cc_cycles(
    c_rate: float, cycles: int, rest_s: float = 0.0, start_half: int = 0, v_min: float = V_MIN, v_max: float = V_MAX
) -> list[Step]:
    """Constant-current cycles inside the window (0.3-1.0 V for the hydride), discharge first."""
    steps: list[Step] = []
    half = start_half
    for _ in range(cycles):
        for text in (f"Discharge at {c_rate}C until {v_min} V", f"Charge at {c_rate}C until {v_max} V"):
            steps.append(parse_step(text, half))
            half += 1
            if rest_s:
                steps.append(Step(0.0, None, rest_s, half - 1))
    return steps


RATE_LADDER = (0.1, 0.2, 0.5, 1.0, 2.0, 0.5)


def rate_ladder(cycles_per_rate: int = 3, rates: tuple[float, ...] = RATE_LADDER) -> list[Step]:
    """The rate-capability test: a few cycles each at 0.1C .. 2C, then back to 0.5C."""
    steps: list[Step] = []
    for rate in rates:
        steps += cc_cycles(rate, cycles_per_rate, start_half=len({s.half for s in steps}))
    return steps


def gitt(pulse_c: float = 0.1, pulse_s: float = 600.0, rest_s: float = 1800.0, pulses: int = 40) -> list[Step]:
    """GITT: discharge pulses with rests down to 0.3 V, then the same on charge."""
    steps: list[Step] = []
    for half, sign in ((0, -1.0), (1, 1.0)):
        start = len(steps)
        for _ in range(pulses):
            steps.append(Step(sign * pulse_c, V_MIN if sign < 0 else V_MAX, pulse_s, half))
            steps.append(Step(0.0, None, rest_s, half))
        end = len(steps)
        steps[start:end] = [replace(s, skip_to=end) if not s.is_rest else s for s in steps[start:end]]
    return steps
