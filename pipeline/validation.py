"""Does the twin track a replayed cell? Per-cycle numbers from the file beside the twin's.

A replay gives what live data never does: the whole record up front, so the
twin's outputs can be checked against the file itself. Everything here is a
pure function of a :class:`~connectors.readers.CellRecord` and the run's
output tables (:class:`~pipeline.report_data.CellData`).

**Coulomb counting on the file** (:func:`half_cycles`), meant to be checked
against the cycler's own numbers:

* *Charge*: the trapezoid rule on the current between consecutive samples
  (the current taken as linear between them); where each row's current is its
  mean since the row before (BioLogic's ``<I>``, ``CellRecord.mean_current``),
  that current times the interval, which is the cycler's own count. Where the sign changes between
  two samples the interval is split at the zero crossing and each side goes to
  its own half. A repeated timestamp carries no time, hence no charge; it is
  kept and is no error. A silence longer than :data:`GAP_S`, and than
  :data:`GAP_PACES` of the file's median interval (:func:`gap_s`: a test logged
  every 15 min has no gap at every row), is a gap: its charge is unknown, so it
  is not counted, only reported (``uncounted_s``, for the halves it touches). ``active_s`` is the time the current flowed, by the
  same rule applied to "active or not".
* *Working current*: the charge-weighted median of ``|i|``, the current below
  which half of the file's charge moved. Rests move no charge and pulses or CV
  tails little, so it is the current of the long working steps whatever the
  largest current is (5C pulses between C/20 steps: C/20, not 5C).
* *Rest*: a half starts where ``|i|`` reaches :data:`REST_FRACTION` (1 %) of the
  working current (a C/20 step beside 1C work is 5 % of it; cyclers' CV
  cut-offs, C/20 to C/50, lie above 1 % of any working current up to 2C),
  raised to :data:`NOISE_SIGMAS` (5) sigma of the sensor noise where that is
  more. The noise is measured on the quiet samples themselves: a robust sigma
  of the steps between consecutive readings under the threshold (1.4826 x
  median ``|di|`` / sqrt 2), which sees the sensor's scatter but not a slow CV
  tail (nor a steady offset, which the threshold and the voltage rule leave
  at rest); a threshold the noise reaches is raised and the noise measured
  again.
* *CV tails*: after its last sample above the threshold a half keeps the
  samples that follow while their current keeps its sign, stays above the
  noise (:data:`NOISE_SIGMAS` sigma) and the voltage stays within
  :data:`V_HOLD` (5 mV) of where the strong current left it. A voltage held
  while the current decays is a CV step; in a rest the voltage relaxes away
  from the limit within its first samples, and the tail ends there.
* *Halves*: split only where the current changes sign, so a rest between
  currents of one sign (a GITT rest, a lone zero sample) stays inside its
  half. A stretch of the other sign between two parts of one half that moves
  less than :data:`PULSE_SHARE` (2 %) of that half's charge is a pulse (HPPC,
  DCIR, GITT, regen): it belongs to the half it interrupts and is counted with
  its own sign, so ``mah`` is a half's net charge. The half a stretch
  interrupts reaches, either side, to the nearest stretch of the stretch's own
  sign that is larger, so pulses on every SOC step of an HPPC discharge are
  weighed against the whole discharge. A 10 s pulse at 1C is 0.3 % of a full
  half; real half-cycles, even shallow ones, are alike in size and stay
  apart.
* *The cycler's counters* (``CellRecord.charge_mah`` / ``discharge_mah``,
  running counters with any reset convention): a half's own counter summed over
  its positive increments (a drop is a reset, from which the new value counts
  from 0), less the other counter's increments inside it (its absorbed pulses),
  so it is the cycler's net beside ours (``cycler_*_mah``). The two are held to
  :data:`COUNTER_TOLERANCE` on every full half, widened by what the file's current
  resolution allows (``cycler_*_tolerance``): a steady current logged to a step q
  can read up to q/2 off for a whole half, and the cycler counts the current it
  ran, not the one it logged (0.0001 mA steps on a 0.00094 mA formation cycle:
  5 %). Partial halves are listed, not judged: a half a few samples long (a file
  that ends just after a step) is mostly the intervals around its edges.
* *Full halves*: a discharge that starts near ``v_max`` (or follows a charge
  that ended there) and ends near ``v_min``, a charge the reverse; near = within
  :data:`WINDOW_TOLERANCE` (5 %) of the window's span. The window is the twin's
  (``v_min``/``v_max``), else the file's 1st and 99th voltage percentiles.
* *Cycles* are numbered like the twin's: a discharge starts cycle n, the
  charge after it shares n.

**Measured retention**: a full discharge's count over the reference, the first
full discharge at the same mean current (within :data:`RATE_MATCH`, 10 %). A
file that opens with a discharge says nothing of the state it started in (a
fresh cell's first lithiation also carries its irreversible loss), so that
discharge is never the reference. Halves with a gap are neither judged nor a
reference.

**Beside the twin**: its own count of each half (``cycles.parquet``; the twin closes a half
at every reversal, so the halves it closed inside one of the file's, pulses included, add up
with their signs), its
capacity and ``capacity_std_mah`` at the end of the cycle's full discharge
(else full charge, else the cycle's last half), its SOC and ``soc_std`` at the
window ends, the charge its SOC says moved over each half (SOC change times the
capacity in effect) against the file's count (for a full charge followed by a full
discharge, the charge it stored: the lesser of its count and that discharge's, since
side reactions take their share of a charge's count), the voltage residual and the NIS.
Cycles with a gap are listed but not judged on charge: nobody counted it.

**A verdict per cell** (:func:`verdict`), recomputed from ``validation.csv``
alone so the report and the command line agree; its summary names each failed
check and by how much.

Why the SOC check is limited to slow halves: at 1C a cell meets its voltage
limit with ~10 % of its charge still in it (polarisation; the simulator's own
truth says so), so "SOC near 0 at the end of discharge" only holds where the
rate is low enough to reach the window end. For the same reason the capacity
check is one-sided where it must be: a full half delivers the twin's
(reversible) capacity less the charge its voltage limit leaves unreached, so
its count may fall short of the twin's capacity by up to
:data:`SOC_END_TOLERANCE` on a slow half (<= :data:`SLOW_C_RATE` within :data:`RATE_MATCH`; the
simulator's truth: 2 % at 0.1C, 4 % at 0.2C, 18 % at 1C) and by any amount on a faster one
or one of unknown rate, but never exceed it beyond the twin's own uncertainty.
The first full cycle is not judged: a generic twin learns its capacity there; nor, given
the time its curve was learned until, any cycle up to that one (marked ``learned``). A full
half faster than slow is also judged on the twin's prediction at its rate, made before its
count (``twin_expected_mah``), within the capacity tolerance plus
:data:`AT_RATE_MODEL_TOLERANCE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.readers import CellRecord
from connectors.wire import GENERIC
from pipeline.report_data import VALIDATION_COLUMNS, VALIDATION_FILE, CellData, Columns
from twin.estimator import GAP_PACES, GAP_S  # one rule for a gap: the file's count and the twin's

__all__ = [
    "GAP_S",
    "GAP_PACES",
    "gap_s",
    "REST_FRACTION",
    "NOISE_SIGMAS",
    "V_HOLD",
    "PULSE_SHARE",
    "WINDOW_TOLERANCE",
    "RATE_MATCH",
    "COUNT_TOLERANCE",
    "COUNTER_TOLERANCE",
    "CAPACITY_FLOOR",
    "CAPACITY_TOLERANCE_WITHOUT_STD",
    "SLOW_C_RATE",
    "SOC_END_TOLERANCE",
    "CLOSURE_FLOOR",
    "NIS_LIMIT",
    "RESIDUAL_RMS_LIMIT",
    "SIGMAS",
    "COLUMNS",
    "Half",
    "Check",
    "Verdict",
    "half_cycles",
    "validate_cell",
    "validate",
    "write_validation",
    "verdict",
    "verdicts",
]

REST_FRACTION = 0.01  # |i| from this share of the file's working current on starts a half
NOISE_SIGMAS = 5.0  # a current this many noise sigmas clear of zero is not sensor noise
V_HOLD = 0.005  # V: a CV step holds its voltage this closely; a rest relaxes away from it
PULSE_SHARE = 0.02  # a stretch of the other sign moving less of a half's charge is a pulse in it
WINDOW_TOLERANCE = 0.05  # share of the voltage window's span that still counts as its end
RATE_MATCH = 0.10  # mean currents this close are the same C-rate (retention reference)
COUNT_TOLERANCE = 0.01  # twin's count vs the file's: the twin saw what the file holds
COUNTER_TOLERANCE = 0.01  # the file's count vs the cycler's own counters
CAPACITY_FLOOR = 0.005  # added to SIGMAS capacity std: gain and timing errors of the count itself
CAPACITY_TOLERANCE_WITHOUT_STD = 0.02  # allowed when the twin's outputs carry no capacity std
SLOW_C_RATE = 0.2  # halves at or below this rate (within RATE_MATCH) reach the voltage window's SOC ends
SOC_END_TOLERANCE = 0.05  # SOC left unreached at the window end by a slow half
CLOSURE_FLOOR = 0.02  # of SOC: model error of the SOC the voltage reads (and the capacity variance of older outputs)
NIS_LIMIT = 3.0  # a consistent filter's NIS averages ~1; beyond 3 the misfit exceeds its belief
RESIDUAL_RMS_LIMIT = 0.1  # V, median over cycles: beyond it the twin does not follow the voltage
SIGMAS = 3.0
AT_RATE_MODEL_TOLERANCE = 0.02  # added for the twin's prediction of a faster half: its at-rate model's error

_HALVES = ("discharge", "charge")
_CURRENT_DIGITS = 12  # decimals of an ampere tried as the file's current resolution (1 pA)
_NOISE_ROUNDS = 10  # raising the threshold past the noise converges in a few rounds
_MAD_TO_SIGMA = 1.4826  # sigma of a normal from the median of its absolute deviation

# validation.csv, in this order; per-gram columns only when the cell's mass is known.
COLUMNS: tuple[str, ...] = VALIDATION_COLUMNS + (
    "t_end",
    "uncounted_s",
    "discharge_c_rate",
    "charge_c_rate",
    "cycler_discharge_mah",
    "cycler_charge_mah",
    "cycler_discharge_tolerance",
    "cycler_charge_tolerance",
    "full_discharge",
    "full_charge",
    "measured_retention",
    "learned",
    "twin_discharge_mah",
    "twin_charge_mah",
    "twin_capacity_std_mah",
    "capacity_error",
    "twin_expected_mah",
    "expected_error",
    "soc_end_discharge",
    "soc_std_end_discharge",
    "soc_end_charge",
    "soc_std_end_charge",
    "closure_discharge",
    "closure_discharge_std",
    "closure_charge",
    "closure_charge_std",
    "v_residual_mean",
    "v_residual_std",
    "v_residual_rms",
    "nis",
)
_PER_GRAM = ("measured_discharge_mah_g", "measured_charge_mah_g", "twin_capacity_mah_g")
_INTEGER_COLUMNS = ("cycle", "full_discharge", "full_charge", "learned")


@dataclass(frozen=True)
class Half:
    """One half-cycle as counted on the file."""

    half: str  # "discharge" | "charge"
    cycle: int
    t_start: float  # time of the sample before its first active sample
    t_end: float  # time of its last active sample
    mah: float  # net charge: pulses of the other sign inside it count against it
    active_s: float  # time the current flowed
    uncounted_s: float  # time inside gaps, whose charge is unknown
    v_start: float  # voltage at t_start
    v_end: float  # voltage at t_end
    cycler_mah: float = math.nan  # the cycler's own counters over the half (net), NaN without them
    full: bool = False  # runs the whole voltage window

    @property
    def mean_ma(self) -> float:
        """Mean current while it flowed, mA."""
        return self.mah / (self.active_s / 3600.0) if self.active_s > 0 else math.nan


@dataclass(frozen=True)
class Check:
    """One criterion of a verdict: passed (None: not applicable), why, and the worst case."""

    name: str
    passed: bool | None
    detail: str
    worst: str = ""  # the case nearest to (or furthest past) the limit, for the summary


@dataclass(frozen=True)
class Verdict:
    """Whether the twin tracks one cell: every check that could be made, passed, over at
    least one complete cycle (a few samples of one half pass every check and show nothing)."""

    cell: str
    checks: tuple[Check, ...]
    complete_cycles: int  # cycles with both a discharge and a charge counted

    @property
    def tracks(self) -> bool:
        """True when every applicable check passed (at least one applied) over a complete cycle."""
        applied = [c.passed for c in self.checks if c.passed is not None]
        return bool(applied) and all(applied) and self.complete_cycles > 0

    def summary(self) -> str:
        """One line: tracks, or each failed check and by how much, or that nothing could be judged."""
        if self.tracks:
            return "tracks within its own uncertainty"
        failed = [f"{c.name} ({c.worst})" if c.worst else c.name for c in self.checks if c.passed is False]
        if not failed and self.complete_cycles == 0:
            return "no verdict: no complete cycle (a discharge and a charge) in the file"
        if not failed:
            return "no verdict: no check could be made"
        return "does not track: " + ", ".join(failed)


# --------------------------------------------------------------------------- the file


class _Counts(NamedTuple):
    """Per span of samples: signed charge (mAh), time the current flowed, time in gaps."""

    net_mah: np.ndarray
    active_s: np.ndarray
    uncounted_s: np.ndarray


def gap_s(t: np.ndarray) -> float:
    """The silence beyond which a file's charge between two samples is unknown: `GAP_S`,
    or `GAP_PACES` of its median interval where it logs that coarsely (a slow test logged
    every 15 min: every row was "a gap", and not a charge was counted)."""
    dt = np.diff(t)
    forward = dt[dt > 0]
    return max(GAP_S, GAP_PACES * float(np.median(forward))) if forward.size else GAP_S


def _known_dt(t: np.ndarray) -> np.ndarray:
    """Intervals whose charge is known: not a gap, and time that ran forwards (a repeat: 0)."""
    dt = np.diff(t)
    return np.where((dt > 0) & (dt <= gap_s(t)), dt, 0.0)


def _working_current(t: np.ndarray, i: np.ndarray) -> float:
    """The charge-weighted median of |i|: the current below which half the charge moved."""
    known = _known_dt(t)
    magnitude = np.abs(i)
    weight = magnitude * (np.r_[0.0, known] + np.r_[known, 0.0]) / 2
    if not weight.sum() > 0:
        return 0.0
    order = np.argsort(magnitude)
    cumulative = np.cumsum(weight[order])
    return float(magnitude[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _rest_thresholds(i: np.ndarray, working: float) -> tuple[float, float]:
    """(current that starts a half, noise floor a CV tail must stay above), in A."""
    start, noise = REST_FRACTION * working, 0.0
    for _ in range(_NOISE_ROUNDS):
        quiet = np.abs(i) < start
        both = quiet[1:] & quiet[:-1]
        # Scatter between consecutive quiet readings: the sensor's noise, not a slow CV tail.
        steps = np.abs(np.diff(i))[both]
        noise = _MAD_TO_SIGMA * float(np.median(steps)) / math.sqrt(2) if steps.size else 0.0
        if NOISE_SIGMAS * noise <= start:
            break
        start = NOISE_SIGMAS * noise  # the noise reaches the threshold: clear it, measure again
    return start, NOISE_SIGMAS * noise


def _active_sign(i: np.ndarray, v: np.ndarray, start: float, floor: float) -> np.ndarray:
    """+1 / -1 where current flows (strong current, or the CV tail after it), 0 at rest."""
    sign = np.sign(i)
    strong = np.abs(i) >= start
    index = np.arange(i.size)
    last = np.maximum.accumulate(np.where(strong, index, -1))
    ref = np.maximum(last, 0)
    after = (last >= 0) & ~strong
    held = after & (sign == sign[ref]) & (np.abs(i) > floor) & (np.abs(v - v[ref]) <= V_HOLD)
    breaks = np.cumsum(after & ~held)
    tail = held & (breaks == breaks[ref])  # nothing broke the tail since the strong current
    return np.where(strong | tail, sign, 0.0)


def _runs(sign: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) sample of each stretch of one sign; rests inside a stretch stay in it."""
    active = np.flatnonzero(sign)
    if active.size == 0:
        return []
    turns = np.flatnonzero(np.diff(sign[active]) != 0) + 1
    return [(int(run[0]), int(run[-1])) for run in np.split(active, turns)]


def _split_at(a: np.ndarray, b: np.ndarray, share: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integrals of a quantity linear from ``a`` to ``b`` over ``dt``, before and after ``share * dt``."""
    cut = share * dt
    middle = a + (b - a) * share
    return (a + middle) / 2 * cut, (middle + b) / 2 * (dt - cut)


def _count(t: np.ndarray, i: np.ndarray, active: np.ndarray, spans: Sequence[tuple[int, int]],
           hold: bool = False) -> _Counts:
    """Charge, active time and gap time of each span of samples (see the module docstring).

    Each interval is cut at its zero crossing (else in the middle): the part
    next to a sample goes to that sample's span, or to the other side's span
    when the sample is at rest (the current ramping into or out of a half).
    With ``hold`` each sample's current is its mean over the interval before it
    (BioLogic's ``<I>``): that interval is all its own, at that current.
    """
    labels = np.full(t.size, -1)
    for number, (first, last) in enumerate(spans):
        labels[first : last + 1] = number
    left, right = labels[:-1], labels[1:]
    owners = (np.where(left >= 0, left, right), np.where(right >= 0, right, left))
    a, b = i[:-1], i[1:]
    crossing = a * b < 0
    share = np.where(crossing, np.abs(a) / np.where(crossing, np.abs(a) + np.abs(b), 1.0), 0.5)
    known = _known_dt(t)
    gap = np.where(np.diff(t) > gap_s(t), np.diff(t), 0.0)

    def per_span(parts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        total = np.zeros(len(spans))
        for owner, part in zip(owners, parts):
            mine = owner >= 0
            total += np.bincount(owner[mine], part[mine], minlength=len(spans))
        return total

    if hold:
        share = np.zeros(known.size)
        charge, flowing = (np.zeros(known.size), b * known), (np.zeros(known.size), active[1:] * known)
    else:
        charge, flowing = _split_at(a, b, share, known), _split_at(active[:-1], active[1:], share, known)
    return _Counts(
        net_mah=per_span(charge) / 3.6,
        active_s=per_span(flowing),
        uncounted_s=per_span((gap * share, gap * (1 - share))),
    )


def _nearest_larger(size: np.ndarray, sign: np.ndarray, order: range, none: int) -> np.ndarray:
    """For each run, the nearest run in ``order`` of its own sign and larger charge (else ``none``)."""
    out = np.full(size.size, none)
    stacks: dict[float, list[int]] = {1.0: [], -1.0: []}
    for j in order:
        stack = stacks[float(sign[j])]
        while stack and size[stack[-1]] <= size[j]:
            stack.pop()
        out[j] = stack[-1] if stack else none
        stack.append(j)
    return out


def _pulses(net: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Runs that move less than PULSE_SHARE of the half they interrupt.

    That half reaches, either side of the run, up to the nearest run of the
    run's own sign that is larger than it: HPPC pulses on every SOC step of a
    discharge make one half, however few steps lie between two of them.
    """
    n = net.size
    size = np.abs(net)
    left = _nearest_larger(size, sign, range(n), -1)
    right = _nearest_larger(size, sign, range(n - 1, -1, -1), n)
    total = np.r_[0.0, np.cumsum(net)]
    half = np.abs(total[right] - total[left + 1])
    interior = (np.arange(n) > 0) & (np.arange(n) < n - 1)
    return interior & (size < PULSE_SHARE * half)


def _absorb_pulses(spans: list[tuple[int, int]], net: np.ndarray, sign: np.ndarray) -> list[tuple[int, int]]:
    """Spans with each pulse (see :func:`_pulses`) merged into the half it interrupts."""
    net, sign = np.asarray(net, dtype=float), np.asarray(sign, dtype=float)
    while len(spans) >= 3:
        pulse = _pulses(net, sign)
        # Two pulses side by side would both claim the span between them: the smaller goes first.
        size = np.where(pulse, np.abs(net), np.inf)
        rival = np.r_[np.inf, size, np.inf]
        absorbed = pulse & (size < rival[:-2]) & (size <= rival[2:])
        if not absorbed.any():
            break
        new_group = np.r_[True, ~(absorbed[1:] | absorbed[:-1])]
        firsts = np.flatnonzero(new_group)
        lasts = np.r_[firsts[1:], len(spans)] - 1
        spans = [(spans[f][0], spans[e][1]) for f, e in zip(firsts, lasts)]
        net, sign = np.bincount(np.cumsum(new_group) - 1, net), sign[firsts]
    return spans


def _increments(counter: np.ndarray | None) -> np.ndarray | None:
    """What a running counter added at each sample: a drop is a reset, the new value counts from 0."""
    if counter is None:
        return None
    value = np.asarray(counter, dtype=float)
    finite = np.isfinite(value)
    if not finite.any():
        return None
    # A missing reading is the last one carried on, not a reset to 0.
    index = np.maximum.accumulate(np.where(finite, np.arange(value.size), 0))
    index[: np.argmax(finite)] = np.argmax(finite)
    value = value[index]
    step = np.diff(value, prepend=value[0])
    return np.where(step >= 0, step, value)


def _current_step_ma(current: np.ndarray) -> float:
    """The file's current resolution in mA where it shows: the coarsest decimal step every
    logged current is a multiple of, if the current dithers between neighbouring steps while
    it flows (a setpoint logged clean, 1.0000 mA throughout, says nothing of the resolution);
    else 0."""
    amps = current[np.isfinite(current)]

    def multiples(values: np.ndarray, step: float) -> bool:
        units = values / step
        whole = np.round(units)
        return bool(np.all((np.abs(units - whole) < 1e-3) & ((whole != 0) | (values == 0))))

    for digits in range(_CURRENT_DIGITS + 1):
        step = 10.0**-digits
        if multiples(amps[:4096], step) and multiples(amps, step):  # the first rows rule most steps out
            units = amps / step
            flowing = units[1:] * units[:-1] > 0.25  # one sign, neither at rest
            dithers = np.any(flowing & (np.abs(np.abs(np.diff(units)) - 1.0) < 1e-3))
            return step * 1000.0 if dithers else 0.0
    return 0.0


def _cycler_mah(record: CellRecord, spans: Sequence[tuple[int, int]], signs: Sequence[float]) -> list[float]:
    """The cycler's net count of each span: its own counter into and out of it, less the other inside it."""
    counters = {1.0: _increments(getattr(record, "charge_mah", None)),
                -1.0: _increments(getattr(record, "discharge_mah", None))}
    out = []
    for (first, last), sign in zip(spans, signs):
        own, other = counters[sign], counters[-sign]
        if own is None:
            out.append(math.nan)
            continue
        mah = float(own[first : last + 2].sum())
        if other is not None:
            mah -= float(other[first + 1 : last + 1].sum())
        out.append(mah)
    return out


def _window(v: np.ndarray, v_min: float | None, v_max: float | None) -> tuple[float, float]:
    """The voltage window: as given, else the file's 1st / 99th percentile."""
    low, high = (float(x) for x in np.nanpercentile(v, [1, 99]))
    return (low if v_min is None else v_min, high if v_max is None else v_max)


def _full(halves: Sequence[Half], v_min: float, v_max: float) -> list[bool]:
    """Which halves run the whole window (see the module docstring)."""
    span = v_max - v_min
    if not span > 0:
        return [False] * len(halves)
    top, bottom = v_max - WINDOW_TOLERANCE * span, v_min + WINDOW_TOLERANCE * span
    flags = []
    for before, h in zip([None, *halves], halves):
        if h.half == "discharge":
            starts = h.v_start >= top or (before is not None and before.v_end >= top)
            flags.append(starts and h.v_end <= bottom)
        else:
            starts = h.v_start <= bottom or (before is not None and before.v_end <= bottom)
            flags.append(starts and h.v_end >= top)
    return flags


def half_cycles(record: CellRecord, v_min: float | None = None, v_max: float | None = None) -> list[Half]:
    """The file's half-cycles, coulomb-counted; ``v_min``/``v_max``: the window for ``full``."""
    t, v, i = (np.asarray(x, dtype=float) for x in (record.t, record.v, record.i))
    working = _working_current(t, i) if t.size >= 2 else 0.0
    if not working > 0:
        return []
    sign = _active_sign(i, v, *_rest_thresholds(i, working))
    active = (sign != 0).astype(float)
    runs = _runs(sign)
    run_signs = np.array([sign[first] for first, _ in runs])
    hold = record.mean_current
    spans = _absorb_pulses(runs, _count(t, i, active, runs, hold).net_mah, run_signs)
    signs = [float(sign[first]) for first, _ in spans]
    counts = _count(t, i, active, spans, hold)
    cycler = _cycler_mah(record, spans, signs)
    halves: list[Half] = []
    cycle = 0
    for k, ((first, last), s) in enumerate(zip(spans, signs)):
        discharge = s < 0
        cycle += int(discharge)
        before = max(first - 1, 0)
        halves.append(Half(
            half="discharge" if discharge else "charge",
            cycle=cycle,
            t_start=float(t[before]),
            t_end=float(t[last]),
            mah=float(s * counts.net_mah[k]),
            active_s=float(counts.active_s[k]),
            uncounted_s=float(counts.uncounted_s[k]),
            v_start=float(v[before]),
            v_end=float(v[last]),
            cycler_mah=cycler[k],
        ))
    flags = _full(halves, *_window(v, v_min, v_max))
    return [replace(h, full=f) for h, f in zip(halves, flags)]


def _counted_in_full(h: Half) -> bool:
    """A full half whose charge is all known."""
    return h.full and h.uncounted_s == 0 and h.mah > 0


def _measured_retention(halves: Sequence[Half]) -> dict[int, float]:
    """Per cycle: its full discharge over the first full discharge at the same rate (see the docstring)."""
    discharges = [h for h in halves if h.half == "discharge" and _counted_in_full(h)]
    opens_discharging = bool(halves) and halves[0].half == "discharge"
    references = [h for h in discharges if not (opens_discharging and h is halves[0])]
    out = {}
    for h in discharges:
        reference = next((r for r in references if abs(h.mean_ma / r.mean_ma - 1) <= RATE_MATCH), None)
        if reference is not None:
            out[h.cycle] = h.mah / reference.mah
    return out


# --------------------------------------------------------------------------- the twin


def _at(state: Columns, t_start: float, t_end: float) -> int | None:
    """Index of the last estimate inside (t_start, t_end], or None."""
    times = state.get("time")
    if times is None or times.size == 0:
        return None
    k = int(np.searchsorted(times, t_end, side="right")) - 1
    return k if k >= 0 and times[k] > t_start else None


def _value(columns: Columns, name: str, k: int | None) -> float:
    if k is None or name not in columns:
        return math.nan
    return float(columns[name][k])


class _TwinHalf(NamedTuple):
    """What the twin's halves inside one file half say: their net count, the capacity
    (with its std) the last of them of the file half's kind closed with, and what the
    twin predicted that one would deliver at its rate before its count came in."""

    mah: float
    capacity_mah: float
    capacity_std_mah: float
    expected_mah: float


def _twin_halves(twin: CellData, halves: Sequence[Half]) -> list[_TwinHalf]:
    """The twin's halves matched to the file's (NaN where the twin closed none of its kind).

    The twin closes a half at every reversal of the current, the file's count absorbs pulses
    into the half they interrupt (an HPPC discharge: one half here, a discharge piece and a
    regen pulse per SOC step for the twin), so their cycle numbers do not line up. A twin half
    runs from the previous twin half's close to its own; it belongs to the file half of its
    kind its span overlaps longest, else to the one it overlaps longest (the file's halves
    cover their active time only, so the rest a twin half closes in does not pull it over;
    a 10 s regen pulse logged every 50 s is the file's own charge half, though the twin's
    closes at the next sample, 50 s into the discharge after it; one logged on one sample
    only touches it), and counts there with its own sign, as pulses do in the file's count.
    The capacity is the one its close updated: the estimate at the file half's last sample
    is still the one of the half before.
    """
    closes = []
    for name in _HALVES:
        table = twin.discharge if name == "discharge" else twin.charge
        times, mah = table.get("time"), table.get("capacity_mah")
        if times is None or mah is None:
            continue
        nan = np.full(len(times), np.nan)
        capacity, std = table.get("twin_capacity_mah", nan), table.get("twin_capacity_std_mah", nan)
        # mAh per gram of the count gives the grams the prediction is per.
        expected = table.get("expected_mah_g", nan) * mah / table.get("capacity_mah_g", nan)
        closes += [(float(t), name, float(m), (float(c), float(sd), float(e)))
                   for t, m, c, sd, e in zip(times, mah, capacity, std, expected)]
    closes.sort(key=lambda c: c[0])
    starts = np.array([h.t_start for h in halves])
    ends = np.array([h.t_end for h in halves])
    kinds = np.array([h.half for h in halves])
    net = np.zeros(len(halves))
    seen = np.zeros(len(halves), dtype=bool)
    closed = np.full((len(halves), 3), np.nan)
    previous = -math.inf
    for t, name, mah, figures in closes:
        overlap = np.minimum(ends, t) - np.maximum(starts, previous)
        previous = t
        own_kind = np.where(kinds == name, overlap, -np.inf)  # touching counts: a one-sample pulse spans no time
        if not overlap.size or not math.isfinite(mah) or not (own_kind.max() >= 0 or overlap.max() > 0):
            continue
        k = int(np.argmax(own_kind if own_kind.max() >= 0 else overlap))
        own = halves[k].half == name
        net[k] += mah if own else -mah
        seen[k] |= own
        if own:
            closed[k] = figures
    return [_TwinHalf(float(n) if s else math.nan, *map(float, f)) for n, s, f in zip(net, seen, closed)]


def _closure(state: Columns, a: int | None, b: int | None, measured: float) -> tuple[float, float]:
    """Relative error of the charge the twin's SOC moved over a half, and its std.

    ``a`` is the estimate at the end of the half before, ``b`` at the end of this
    one. The capacity in effect over the half is the one at ``b``: the twin
    updates its capacity when a half closes and leaves the SOC where the
    voltage pinned it. What remains is what the voltage had to correct the
    coulomb count by, which a twin that tracks keeps within its own soc_std and
    capacity_std: a capacity off by x % has the voltage add x % of the swing.
    """
    if a is None or b is None or not measured > 0:
        return math.nan, math.nan
    capacity = _value(state, "capacity_mah", b)
    swing = abs(_value(state, "soc", b) - _value(state, "soc", a))
    capacity_std = _value(state, "capacity_std_mah", b)
    std = math.hypot(_value(state, "soc_std", a) * capacity, _value(state, "soc_std", b) * capacity,
                     swing * capacity_std if math.isfinite(capacity_std) else 0.0)
    return (swing * capacity - measured) / measured, std / measured


def _stored(charge: Half | None, next_discharge: Half | None) -> float:
    """The charge a charge half left in the cell, which its SOC moved by: its count, less what
    side reactions took (electrolyte oxidation, shuttles, SEI growth: Coulombic efficiency 1.08
    in a real C/24 GCPL file), which no voltage tells from stored charge. A full charge stored
    what the full discharge after it delivered, when that is less; otherwise the count."""
    if charge is None:
        return math.nan
    if charge.full and next_discharge is not None and next_discharge.full and next_discharge.uncounted_s == 0:
        return min(charge.mah, next_discharge.mah)
    return charge.mah


def _residuals(state: Columns, t_start: float, t_end: float) -> dict[str, float]:
    """Voltage residual statistics of the estimates inside (t_start, t_end] (times sorted, as `_at` has them)."""
    times = state.get("time", np.array([]))
    inside = slice(*np.searchsorted(times, [t_start, t_end], side="right"))
    res = state.get("v_residual", np.full(times.shape, np.nan))[inside].astype(float)
    res = res[np.isfinite(res)]
    nis = state.get("nis", np.full(times.shape, np.nan))[inside].astype(float)
    nis = nis[np.isfinite(nis)]
    if res.size == 0:
        stats = {"v_residual_mean": math.nan, "v_residual_std": math.nan, "v_residual_rms": math.nan}
    else:
        stats = {"v_residual_mean": float(res.mean()), "v_residual_std": float(res.std()),
                 "v_residual_rms": float(np.sqrt(np.mean(res * res)))}
    # The NIS is a running mean over the last ~100 used samples: its median over the cycle,
    # not its last value, which a knee at the cut-off ends on (a GITT's one discharge: 0.00
    # over 288 h, 4.9 after its final knee).
    stats["nis"] = float(np.median(nis)) if nis.size else math.nan
    return stats


def _capacity_half(halves: Mapping[str, Half]) -> str:
    """The half the twin's capacity is read at: the full discharge, else the full charge, else the last."""
    for name in _HALVES:
        if name in halves and halves[name].full:
            return name
    return "charge" if "charge" in halves else "discharge"


def _capacity_columns(state: Columns, halves: Mapping[str, Half], ends: Mapping[str, int | None],
                      twin_halves: Mapping[int, _TwinHalf], generic: bool) -> dict[str, float]:
    """The twin's capacity over the half it is read at.

    A generic twin has no fade model: the capacity its close of the half left is that
    half's own measurement, where its estimate at the half's last sample is still the
    one of the half before. A hydride twin's close also takes off the loss its
    degradation model puts on the half (8 % in one half on a cracking cell), so the
    capacity in effect over the half is its estimate at the half's end."""
    name = _capacity_half(halves)
    counted = halves[name]
    closed = twin_halves[id(counted)]
    if generic and math.isfinite(closed.capacity_mah):
        twin, std = closed.capacity_mah, closed.capacity_std_mah
    else:
        twin, std = _value(state, "capacity_mah", ends[name]), _value(state, "capacity_std_mah", ends[name])
    judged = counted.full and counted.mah > 0
    return {
        "twin_capacity_mah": twin,
        "twin_capacity_std_mah": std,
        "capacity_error": twin / counted.mah - 1 if judged else math.nan,
        "twin_expected_mah": closed.expected_mah,
        "expected_error": closed.expected_mah / counted.mah - 1 if judged else math.nan,
    }


def validate_cell(
    record: CellRecord,
    twin: CellData | None,
    mass_mg: float | None = None,
    one_c_ma: float | None = None,
    *,
    v_min: float | None = None,
    v_max: float | None = None,
    learned_until: float = math.nan,
) -> list[dict[str, float | int | str]]:
    """Rows of ``validation.csv`` for one cell, one per cycle of the file.

    ``v_min``/``v_max``: the voltage window a full half runs (None: the file's 1st / 99th percentile).
    ``learned_until``: a generic twin learned its curve from halves that end then (the file's
    time): cycles that start by then are marked ``learned`` and not judged on capacity.
    """
    twin = twin or CellData(record.cell, "", {}, {}, {})
    state = twin.state
    halves_in_order = half_cycles(record, v_min, v_max)
    retention = _measured_retention(halves_in_order)
    twin_halves = dict(zip(map(id, halves_in_order), _twin_halves(twin, halves_in_order)))
    half_quantum_ma = 0.5 * _current_step_ma(record.i)
    cycles: dict[int, dict[str, Half]] = {}
    for h in halves_in_order:
        cycles.setdefault(h.cycle, {})[h.half] = h
    rows = []
    previous_charge_end: int | None = None
    for number in sorted(cycles):
        halves = cycles[number]
        row: dict[str, float | int | str] = {"cell": record.cell, "cycle": number}
        ends: dict[str, int | None] = {}
        for name in _HALVES:
            h = halves.get(name)
            row[f"measured_{name}_mah"] = h.mah if h else math.nan
            row[f"cycler_{name}_mah"] = h.cycler_mah if h else math.nan
            row[f"cycler_{name}_tolerance"] = (COUNTER_TOLERANCE + half_quantum_ma / abs(h.mean_ma)
                                               if h and math.isfinite(h.cycler_mah) and h.mean_ma else math.nan)
            row[f"full_{name}"] = int(bool(h and h.full))
            row[f"{name}_c_rate"] = h.mean_ma / one_c_ma if h and one_c_ma else math.nan
            row[f"twin_{name}_mah"] = twin_halves[id(h)].mah if h else math.nan
            ends[name] = _at(state, h.t_start, h.t_end) if h else None
            row[f"soc_end_{name}"] = _value(state, "soc", ends[name])
            row[f"soc_std_end_{name}"] = _value(state, "soc_std", ends[name])
        discharge, charge = halves.get("discharge"), halves.get("charge")
        row["coulombic_efficiency"] = (
            charge.mah / discharge.mah if charge and discharge and discharge.mah > 0 else math.nan
        )
        row["measured_retention"] = retention.get(number, math.nan)
        row["learned"] = int(min(h.t_start for h in halves.values()) <= learned_until)
        row.update(_capacity_columns(state, halves, ends, twin_halves, twin.preset == GENERIC))
        last = charge or discharge
        row["t_end"] = last.t_end
        row["uncounted_s"] = sum(h.uncounted_s for h in halves.values())
        row["closure_discharge"], row["closure_discharge_std"] = _closure(
            state, previous_charge_end, ends["discharge"], row["measured_discharge_mah"])
        row["closure_charge"], row["closure_charge_std"] = _closure(
            state, ends["discharge"], ends["charge"], _stored(charge, cycles.get(number + 1, {}).get("discharge")))
        row.update(_residuals(state, min(h.t_start for h in halves.values()), last.t_end))
        if mass_mg:
            grams = mass_mg / 1000.0
            for name, source in zip(_PER_GRAM, ("measured_discharge_mah", "measured_charge_mah", "twin_capacity_mah")):
                row[name] = row[source] / grams
        previous_charge_end = ends["charge"]
        rows.append(row)
    return rows


def validate(
    records: Sequence[CellRecord],
    twins: Sequence[CellData],
    masses: Mapping[str, float] | None = None,
    one_c_ma: Mapping[str, float] | None = None,
    windows: Mapping[str, tuple[float, float]] | None = None,
    learned_until: Mapping[str, float] | None = None,
) -> list[dict[str, float | int | str]]:
    """Rows of ``validation.csv`` for every replayed cell (twin outputs matched by name).

    ``windows``: each cell's (v_min, v_max); a cell without one is judged on its file's own.
    ``learned_until``: where a generic cell's curve was learned from halves ending at that time.
    """
    by_name = {t.cell: t for t in twins}
    masses, one_c_ma, windows, learned_until = masses or {}, one_c_ma or {}, windows or {}, learned_until or {}
    rows = []
    for r in records:
        v_min, v_max = windows.get(r.cell, (None, None))
        rows += validate_cell(r, by_name.get(r.cell), masses.get(r.cell), one_c_ma.get(r.cell),
                              v_min=v_min, v_max=v_max, learned_until=learned_until.get(r.cell, math.nan))
    return rows


def write_validation(out_dir: Path, rows: Sequence[Mapping[str, float | int | str]]) -> Path:
    """Write ``validation.csv`` (per-gram columns when every cell's mass was known)."""
    columns = list(COLUMNS) + [c for c in _PER_GRAM if rows and all(c in r for r in rows)]
    data = {c: [r.get(c, math.nan) for r in rows] for c in columns}
    types = {c: pa.string() if c == "cell" else pa.int64() if c in _INTEGER_COLUMNS else pa.float64()
             for c in columns}
    table = pa.table({c: pa.array(data[c], types[c]) for c in columns})
    path = Path(out_dir) / VALIDATION_FILE
    pacsv.write_csv(table, path)
    return path


# --------------------------------------------------------------------------- verdict


def _floats(table: Columns, name: str) -> np.ndarray:
    """A column as floats; all NaN when the table lacks it (a table from an older run)."""
    values = table.get(name)
    return np.full(table["cell"].size, np.nan) if values is None else values.astype(float)


def _without_gaps(table: Columns) -> np.ndarray:
    """Cycles whose charge is known: over a gap neither the file nor the twin can count."""
    return ~(_floats(table, "uncounted_s") > 0)


def _gap_note(table: Columns) -> str:
    skipped = int((~_without_gaps(table)).sum())
    return f"; {skipped} cycle(s) with a gap not judged" if skipped else ""


def _relative_errors(table: Columns, measured: str, reference: str, *also: str) -> tuple[np.ndarray, ...]:
    """(measured / reference - 1, cycle, then each column of `also`) over both halves of every
    cycle without a gap where both are known; column names hold ``{}`` for the half."""
    picked: list[list[np.ndarray]] = [[] for _ in range(2 + len(also))]
    for name in _HALVES:
        value, base = _floats(table, measured.format(name)), _floats(table, reference.format(name))
        ok = _without_gaps(table) & np.isfinite(value) & np.isfinite(base) & (base > 0)
        columns = [value[ok] / base[ok] - 1, table["cycle"][ok], *(_floats(table, c.format(name))[ok] for c in also)]
        for into, column in zip(picked, columns):
            into.append(column)
    return tuple(np.concatenate(columns) for columns in picked)


def _check_count(table: Columns) -> Check:
    errors, _ = _relative_errors(table, "twin_{}_mah", "measured_{}_mah")
    if errors.size == 0:
        return Check("charge counted", None, "no half-cycle closed by the twin" + _gap_note(table))
    worst = float(np.abs(errors).max())
    return Check("charge counted", worst <= COUNT_TOLERANCE,
                 f"twin's count vs the file's: worst {worst:.2%} over {errors.size} halves "
                 f"(limit {COUNT_TOLERANCE:.0%})" + _gap_note(table),
                 f"worst {worst:.2%}, allowed {COUNT_TOLERANCE:.0%}")


def _check_counter(table: Columns) -> Check:
    """The file's count vs the cycler's counters on every full half, each within its tolerance."""
    errors, cycles, tolerance, full = _relative_errors(table, "measured_{}_mah", "cycler_{}_mah",
                                                      "cycler_{}_tolerance", "full_{}")
    allowed = np.where(np.isfinite(tolerance), tolerance, COUNTER_TOLERANCE)  # a table from an older run has none
    full = full > 0
    if errors.size == 0:
        return Check("charge counted vs cycler", None, "the file carries no charge counters of its own"
                     + _gap_note(table))
    partial = ""
    if (~full).any():
        rest = errors[~full]
        partial = f"; {rest.size} partial half(s) not judged (worst {rest[np.argmax(np.abs(rest))]:+.2%})"
    if not full.any():
        return Check("charge counted vs cycler", None, "no full half to judge the counters on" + partial
                     + _gap_note(table))
    errors, cycles, allowed = errors[full], cycles[full], allowed[full]
    k = int(np.argmax(np.abs(errors) / allowed))
    worst = f"worst {errors[k]:+.2%} at cycle {int(cycles[k])}, allowed {allowed[k]:.1%}"
    return Check("charge counted vs cycler", bool(np.all(np.abs(errors) <= allowed)),
                 f"the file's count vs the cycler's own counters over {errors.size} full halves: {worst}"
                 + partial + _gap_note(table), worst)


def _read_half(table: Columns, column: str) -> np.ndarray:
    """Per row, `column` (``{}`` for the half) of the half the capacity is read at: the full
    discharge, else the charge (as `_capacity_half` picks it)."""
    on_discharge = _floats(table, "full_discharge") > 0
    return np.where(on_discharge, _floats(table, column.format("discharge")), _floats(table, column.format("charge")))


def _capacity_bounds(table: Columns) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how far the twin's capacity may lie below the count, and how much further above.

    Below: SIGMAS x its std + CAPACITY_FLOOR (CAPACITY_TOLERANCE_WITHOUT_STD without a std).
    Above, on top of that: a full half delivers the capacity less what its voltage limit leaves
    unreached, up to SOC_END_TOLERANCE on a slow half and any share on a faster one (or one of
    unknown rate).
    """
    counted, rate = _read_half(table, "measured_{}_mah"), _read_half(table, "{}_c_rate")
    std = _floats(table, "twin_capacity_std_mah") / counted
    below = np.where(np.isfinite(std), SIGMAS * std + CAPACITY_FLOOR, CAPACITY_TOLERANCE_WITHOUT_STD)
    return below, np.where(_slow(rate), SOC_END_TOLERANCE, np.inf)


def _learning(table: Columns) -> np.ndarray:
    """Cycles a twin learned its capacity on: the first full one, and for a generic twin
    every cycle up to the one its curve came from (marked ``learned``)."""
    full = np.isfinite(_floats(table, "capacity_error"))
    cycles = table["cycle"]
    first = cycles == (cycles[full].min() if full.any() else -1)
    return first | (_floats(table, "learned") > 0)


def _learning_note(table: Columns) -> str:
    learning = table["cycle"][_learning(table)]
    if learning.size > 1:
        return f"cycles {int(learning.min())}-{int(learning.max())}, up to the one its curve came from, are not judged"
    if learning.size:
        return f"cycle {int(learning[0])}, the first full one, is where a generic twin learns its capacity and is not judged"
    return "no cycle to learn on"


def _check_capacity(table: Columns) -> Check:
    error = _floats(table, "capacity_error")
    full = np.isfinite(error)
    if not full.any():
        return Check("capacity", None, "no full half-cycle (one that runs the whole voltage window)")
    cycles = table["cycle"]
    judged = full & ~_learning(table) & _without_gaps(table)
    learned = _learning_note(table)
    if not judged.any():
        return Check("capacity", None, learned + "; no other full cycle" + _gap_note(table))
    below, headroom = _capacity_bounds(table)
    beyond = np.maximum(-error - below, error - below - headroom)
    k = int(np.flatnonzero(judged)[np.argmax(beyond[judged])])
    upper = f" to {below[k] + headroom[k]:+.1%}" if np.isfinite(headroom[k]) else ""
    worst = f"worst {error[k]:+.1%} at cycle {int(cycles[k])}, allowed {-below[k]:+.1%}{upper}"
    return Check("capacity", bool(beyond[judged].max() <= 0),
                 f"twin's capacity / the count of {int(judged.sum())} full cycles - 1: {worst} (below: "
                 f"{SIGMAS:g} x its capacity_std_mah + {CAPACITY_FLOOR:.1%}, else {CAPACITY_TOLERANCE_WITHOUT_STD:.0%};"
                 f" above: {SOC_END_TOLERANCE:.0%} more at <= {SLOW_C_RATE}C, any amount faster); {learned}"
                 + _gap_note(table), worst)


def _check_at_rate(table: Columns) -> Check:
    """A full half faster than slow, where the capacity check allows any shortfall: the
    twin's own prediction of what it would deliver at its rate, made before its count."""
    error = _floats(table, "expected_error")
    full = np.isfinite(_floats(table, "capacity_error"))
    rate = _read_half(table, "{}_c_rate")
    cycles = table["cycle"]
    judged = full & np.isfinite(error) & ~_slow(rate) & ~_learning(table) & _without_gaps(table)
    if not judged.any():
        return Check("capacity at rate", None, f"no full half faster than {SLOW_C_RATE}C after the cycles it "
                     "learned from" + _gap_note(table))
    allowed = _capacity_bounds(table)[0] + AT_RATE_MODEL_TOLERANCE
    beyond = np.abs(error) - allowed
    k = int(np.flatnonzero(judged)[np.argmax(beyond[judged])])
    worst = f"worst {error[k]:+.1%} at cycle {int(cycles[k])} ({rate[k]:.2g}C), allowed {allowed[k]:.1%}"
    return Check("capacity at rate", bool(beyond[judged].max() <= 0),
                 f"twin's prediction at the half's rate, before its count / the count of {int(judged.sum())} full "
                 f"halves faster than {SLOW_C_RATE}C - 1: {worst} ({SIGMAS:g} x its capacity_std_mah + "
                 f"{CAPACITY_FLOOR:.1%} + {AT_RATE_MODEL_TOLERANCE:.0%} for its at-rate model)" + _gap_note(table),
                 worst)


def _check_soc_ends(table: Columns) -> Check:
    misses, seen = [], 0
    for name, target in (("discharge", 0.0), ("charge", 1.0)):
        soc, std = _floats(table, f"soc_end_{name}"), _floats(table, f"soc_std_end_{name}")
        # Only a full half reached its window end (a charge the file stops in did not).
        slow = (np.isfinite(soc) & np.isfinite(std) & _slow(_floats(table, f"{name}_c_rate"))
                & (_floats(table, f"full_{name}") > 0))
        seen += int(slow.sum())
        gap = np.abs(soc[slow] - target)
        misses += gap[gap > np.maximum(SIGMAS * std[slow], SOC_END_TOLERANCE)].tolist()
    if seen == 0:
        return Check("SOC at window ends", None, f"no full half at <= {SLOW_C_RATE}C (one that reaches the window ends)")
    worst = f"worst miss {max(misses):.3f} of SOC" if misses else ""
    return Check("SOC at window ends", not misses,
                 f"{seen - len(misses)}/{seen} slow halves end within max({SIGMAS:g} soc_std, "
                 f"{SOC_END_TOLERANCE}) of 0 / 1" + (f"; {worst}" if misses else ""), worst)


def _check_closure(table: Columns) -> Check:
    known = _without_gaps(table)
    err = np.concatenate([_floats(table, f"closure_{name}") for name in _HALVES])
    std = np.concatenate([_floats(table, f"closure_{name}_std") for name in _HALVES])
    ok = np.tile(known, len(_HALVES)) & np.isfinite(err) & np.isfinite(std)
    if not ok.any():
        return Check("SOC x capacity vs charge", None, "no half with twin estimates at both ends" + _gap_note(table))
    # The floor is an error of the SOC, so of the capacity: a half that moves a fifth of it
    # carries it five times over, relative to its charge (a file that ends mid-half).
    capacity = _floats(table, "twin_capacity_mah")
    share = np.concatenate([_floats(table, f"measured_{name}_mah") / capacity for name in _HALVES])
    floor = CLOSURE_FLOOR / np.where(share > 0, np.minimum(share, 1.0), 1.0)
    err, allowed = err[ok], SIGMAS * std[ok] + floor[ok]
    inside = np.abs(err) <= allowed
    k = int(np.argmax(np.abs(err) - allowed))
    worst = f"worst {err[k]:+.2%}, allowed {allowed[k]:.2%}"
    return Check("SOC x capacity vs charge", bool(inside.all()),
                 f"{int(inside.sum())}/{err.size} halves: the charge the twin's SOC moved matches the "
                 f"file within {SIGMAS:g} sigma + {CLOSURE_FLOOR:.0%} of capacity ({worst})" + _gap_note(table), worst)


def _slow(rate: np.ndarray) -> np.ndarray:
    """Halves at a rate that reaches the window's ends: a nominal C/5 is 0.2017C against a
    capacity learned a little low, and still C/5."""
    return rate <= SLOW_C_RATE * (1.0 + RATE_MATCH)


def _check_voltage(table: Columns) -> Check:
    if "nis" not in table:
        return Check("voltage residual", None, "no voltage residuals in the table")
    nis = _floats(table, "nis")
    nis = nis[np.isfinite(nis)]
    if nis.size == 0:
        return Check("voltage residual", False, "no finite NIS: the twin made no usable voltage estimate",
                     "no voltage estimate")
    rms = _floats(table, "v_residual_rms")
    rms = rms[np.isfinite(rms)]
    median = float(np.median(nis))
    # The NIS averages the samples the filter used: one that gates every sample keeps its
    # start value. The residual of all of them says whether it followed the voltage at all.
    typical = float(np.median(rms)) if rms.size else 0.0
    worst = (f"median NIS {median:.2f}, allowed {NIS_LIMIT:g}" if median > NIS_LIMIT or typical <= RESIDUAL_RMS_LIMIT
             else f"residual rms {1000 * typical:.0f} mV, allowed {1000 * RESIDUAL_RMS_LIMIT:.0f}")
    return Check("voltage residual", median <= NIS_LIMIT and typical <= RESIDUAL_RMS_LIMIT,
                 f"median NIS {median:.2f} (limit {NIS_LIMIT:g}), residual rms {1000 * typical:.1f} mV "
                 f"(limit {1000 * RESIDUAL_RMS_LIMIT:.0f})", worst)


def verdict(cell: str, table: Columns) -> Verdict:
    """The verdict on one cell from its rows of ``validation.csv``."""
    checks = (_check_count, _check_counter, _check_capacity, _check_at_rate, _check_soc_ends, _check_closure,
              _check_voltage)
    complete = np.isfinite(_floats(table, "measured_discharge_mah")) & np.isfinite(_floats(table, "measured_charge_mah"))
    return Verdict(cell, tuple(check(table) for check in checks), int(complete.sum()))


def verdicts(table: Columns) -> list[Verdict]:
    """One verdict per cell of a validation table, cells in name order."""
    names = sorted({str(c) for c in table["cell"]})
    out = []
    for name in names:
        mask = table["cell"].astype(str) == name
        out.append(verdict(name, {k: v[mask] for k, v in table.items()}))
    return out
