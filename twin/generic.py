"""Generic cells: any chemistry, with its open-circuit curve and capacity learned from the data.

For archived tests of cells that are not the hydride anode, the twin keeps the same
estimator (SOC with hysteresis, R0 + RC, capacity, plateau offset) but replaces the
hydride OCV by a table: the lithiation (discharge) and delithiation (charge) branches on
a uniform SOC grid, SOC 0 = empty at v_min and 1 = full at v_max. There is no degradation
model for a chemistry the twin does not know, so its risks stay 0 and capacity fade is
tracked from the data alone.

How `learn_ocv` reads a file, and why
-------------------------------------
Halves. A half-cycle is a stretch of one current sign. A sample below 0.2 % of the largest
current is a rest (a CV tail ends near C/20-C/50, above that even in a file whose largest
current is 10C). A rest of any length does not end a half, since the state of charge does
not move in it, and neither does a single sample of the other sign (a logging glitch), nor a
pulse of the other sign that moves less than 5 % of the charge of the two halves around it
(HPPC regen pulses). So a charge split by a pause or a step change of current,
and the CV hold that ends it, make one half. Charge is the trapezoid integral of the
current; repeated timestamps carry none.

Window. The window is `v_min`/`v_max` if given, else the cut-offs the cycler keeps
stopping at: the median, over the long halves (at least half the charge of the largest),
of the lowest voltage of each discharge and the highest of each charge. The median ignores
one odd half. An inferred window makes every long half that set it count as full, so a
file that never reached the cell's real limits needs the window given.

Full. A half is full when it starts within 5 % of the window span of the opposite end and
reaches within 5 % of its own end. The start may also be reached by the rest before the
half or by the end of the half before it (a discharge right after a charge to v_max
starts full, even though its first loaded sample sits a resistance drop lower). The
curve is steep at both ends, so 5 % of the voltage span is a few % of the capacity at
most. A discharge that only ends at v_min, such as a tail from 2.5 to 2.0 V, is not full.
A curve also needs `MIN_SAMPLES` samples.

Rate. A half's C-rate is its charge-weighted mean current over its own charge, so the CC
level counts and a CV tail weighs little. Full halves up to C/2 are trusted. At C/2 a Li-ion
cell's polarisation beyond the ohmic drop is some 10-30 mV and the capacity at the cut-off
is within a few % of the low-rate one, which is the twin's own tolerance. Up to 2C the
curve is still learned, but with a note (it is biased by tens of mV and the capacity may
be low by 5-10 %). Above 2C the cut-off is reached 10-30 % early and the step resistance
misses most of the overpotential, so no curve is trusted from it. The slowest full half
of each direction is used. Halves within 25 % of its rate count as equally slow, and the
earliest of those wins, because the twin starts at the start of the file and needs the
capacity of then.

Formation. A first cycle whose charge and discharge differ by more than 3 % (steady
Coulombic efficiency is above 99 %, formation loses 5-20 %) is irreversible loss, not
capacity. A full half whose adjacent full halves all differ from it by more than 3 % is
used only when its direction has no other full half. A half with no full neighbour cannot be checked and
counts as balanced.

Branches. The first choice is a full discharge for the lithiation branch and a full charge
for the delithiation branch, in either order in the file. The capacity comes from the
discharge, since a charge also counts side reactions (Coulombic efficiency below 1). When only one direction is full, its curve
serves as both branches (no hysteresis learned) and a note says so. Each branch is the
voltage corrected by the resistance drop, binned on the SOC grid. Its ends are rested
voltages where the file has them: the rest before a half (at least RELAXED_REST_S) is the
open circuit at the half's start, and the half's first samples whose corrected voltage
lies beyond it (within START_TRANSIENT of its charge: the drop was still building, so the
step resistance over-corrects them) are left out; the rest after a half that ended in a
voltage hold is the open circuit at its end.

Resistance. This is the median of dV/dI over the file's current interruptions (the
current falls by more than half without reversing, such as at the end of a half or a
step down). Each step runs from a settled level to a settled level, with at most one
sample logged mid-transition in between, within 60 s, so that it measures R0 plus the
fast RC (the twin splits it over both). A reversal also swaps the hysteresis branch and
would add that jump to the resistance, so reversals are used only when the file has no
interruption, and then with a note. The result is non-negative, and 0 with a note when
the file has no settled step.

Rate. The curve's own half is slow; a full half at least `RATE_STEP` times faster that
ends on its constant current (no voltage hold) delivers less than the capacity even after
the resistance drop is allowed for. That shortfall is the lag of the bulk behind the
surface, `I tau / 3Q` in the twin's diffusion model, and gives its time constant (the
median over such halves; `DEFAULT_TAU_S`, which leaves rate losses to the resistance,
when the file has none). Without it the twin promises a 1C discharge the charge of a C/20 one.

Fallback. When nothing can be learned, `learn_ocv` raises ValueError with the failed
condition in numbers. With `fallback=True` it instead returns a provisional result: the
curve from the slowest full half even if it is faster than 2C, or, with no full half, a
straight line across the window and the largest half counted as the capacity (a lower
bound). The caller then says that the cell's capacity figures are provisional.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from .params import END_TOLERANCE, OCV_POINTS, V_WINDOW_FLOOR, CellParams

__all__ = ["DEFAULT_TAU_S", "Half", "LearnedOcv", "Window", "find_halves", "infer_window", "learn_ocv", "generic_params", "soc_grid"]

REST_FRACTION = 0.002  # of the largest current: below it a sample is a rest
PULSE_SHARE = 0.05  # of the charge of the two halves around it: a run of the other sign below it is a pulse
LONG_HALF = 0.5  # of the largest half's charge: the halves whose cut-offs define the window
OVERSHOOT_V = 0.1  # how far below 0 V a half-cell's cut-off may read; lower is no cell's window
STOPS_AGREE_V = 0.01  # halves that stop this close together stopped at a cut-off
MIN_SAMPLES = 10  # of a half to learn a curve from
SLOW_C_RATE = 0.5  # trusted without a note
FASTEST_C_RATE = 2.0  # learned at all
SAME_RATE = 1.25  # rates within this factor of the slowest count as equally slow
BALANCE_TOLERANCE = 0.03  # charge vs discharge of one cycle, relative
RELAXED_REST_S = 300.0  # a rest this long after a constant-voltage tail shows where the curve ends
START_TRANSIENT = 0.05  # of a half's charge from rest: its drop is still building, the rested voltage stands in
STEP_MAX_DT_S = 60.0  # a resistance step measured later includes slow relaxation
RATE_STEP = 3.0  # a full half this many times faster than the curve's shows the rate loss
DEFAULT_TAU_S = 60.0  # diffusion time constant of a cell whose rate loss the file does not show
MAX_TAU_S = 36000.0

_NAMES = {-1: "discharge", 1: "charge"}


def soc_grid() -> np.ndarray:
    return np.linspace(0.0, 1.0, OCV_POINTS)


@dataclass(frozen=True)
class Half:
    """One half-cycle of a file: samples [start, stop), first to last of its current sign."""

    index: int  # 0 = the file's first half
    sign: int  # -1 discharge (lithiation), +1 charge
    start: int
    stop: int
    start_s: float  # time of its first sample since the file's first sample
    charge_mah: float
    current_ma: float  # charge-weighted mean current: the CC level, a CV tail weighs little
    v_from: float  # the voltage it started from (or the rest / half before it reached)
    v_to: float  # the extreme it reached: lowest on a discharge, highest on a charge

    @property
    def direction(self) -> str:
        return _NAMES[self.sign]

    @property
    def c_rate(self) -> float:
        """Relative to its own charge: 1 / hours at its mean current."""
        return self.current_ma / self.charge_mah if self.charge_mah > 0 else float("inf")

    def is_full(self, v_min: float, v_max: float) -> bool:
        tol = END_TOLERANCE * (v_max - v_min)
        top, bottom = (self.v_from, self.v_to) if self.sign < 0 else (self.v_to, self.v_from)
        return top >= v_max - tol and bottom <= v_min + tol

    def describe(self, capacity_mah: float | None = None) -> str:
        """One line; the C-rate relative to `capacity_mah` when given, else to its own charge."""
        rate = self.current_ma / capacity_mah if capacity_mah else self.c_rate
        return (f"{self.direction} #{self.index} at {self.start_s / 3600:.1f} h, {rate:.2g}C, "
                f"{self.v_from:.2f}->{self.v_to:.2f} V, {self.charge_mah:.4g} mAh")


@dataclass(frozen=True)
class LearnedOcv:
    """What `learn_ocv` learned, where from, and what the user should be told about it."""

    table: np.ndarray  # (2, OCV_POINTS): lithiation (discharge) branch, delithiation branch
    capacity_mah: float  # charge of the full half between the window ends (see capacity_from)
    r_ohm: float  # median resistance of the file's current steps
    c_rate: float  # of the half the capacity came from; NaN for the straight-line fallback
    v_min: float
    v_max: float
    inferred: tuple[str, ...]  # "v_min" and/or "v_max" when read from the data
    lithiation: Half | None  # the half each branch came from; None: straight line (fallback)
    delithiation: Half | None
    capacity_from: Half | None
    provisional: bool  # a fallback: the twin's capacity figures for this cell are provisional
    notes: tuple[str, ...]  # for the user: rates, skipped formation, one direction, fallback reason
    tau_diff_s: float = DEFAULT_TAU_S  # from the rate loss of faster full halves (see "Rate")
    learned_until: float = float("nan")  # time (the file's) of the last sample of the latest half it came from

    def sources(self) -> str:
        """Which half gave what, for one line of output."""
        if self.lithiation is None or self.delithiation is None:
            return "no full half (straight line across the window)"
        lith, delith = (h.describe(self.capacity_mah) for h in (self.lithiation, self.delithiation))
        return f"{lith} (both branches)" if self.lithiation is self.delithiation else f"{lith} and {delith}"


def _cumulative_charge_as(t: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Signed charge since the first sample, A*s, by the trapezoid rule; a repeated (or
    backwards) timestamp carries no charge."""
    dq = 0.5 * (i[1:] + i[:-1]) * np.maximum(np.diff(t), 0.0)
    return np.concatenate([[0.0], np.cumsum(dq)])


def _despiked(x: np.ndarray) -> np.ndarray:
    """Running median of three: removes single-sample spikes, keeps steps."""
    if x.size < 3:
        return x.copy()
    out = x.copy()
    out[1:-1] = np.median(np.stack([x[:-2], x[1:-1], x[2:]]), axis=0)
    return out


def _current_signs(i: np.ndarray) -> np.ndarray:
    """-1, 0 (rest) or +1 per sample; a one-sample run of a sign is a rest."""
    scale = float(np.max(np.abs(_despiked(i)))) if i.size else 0.0
    sign = np.where(np.abs(i) > REST_FRACTION * scale, np.sign(i), 0.0).astype(int)
    lone = np.r_[True, sign[1:] != sign[:-1]] & np.r_[sign[:-1] != sign[1:], True]
    sign[lone] = 0
    return sign


def _sample_runs(sign: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each half: consecutive non-rest samples of one sign, rests inside allowed."""
    on = np.flatnonzero(sign)
    if on.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sign[on]) != 0) + 1
    return [(int(g[0]), int(g[-1]) + 1) for g in np.split(on, breaks)]


def find_halves(t: np.ndarray, v: np.ndarray, i: np.ndarray) -> list[Half]:
    """The file's half-cycles (see the module docstring for what joins samples into one);
    sample indices count the finite samples only."""
    return _halves(*_clean(t, v, i))


def _pulses_kept_in(sign: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The signs with pulses counted into the half they interrupt. A run of one sign between
    two of the other that moves less than PULSE_SHARE of their charge together (the regen
    pulses of an HPPC discharge) leaves the state of charge about where it was, so it does
    not end that half: its samples count as a rest inside it, and its charge still counts
    (the half's charge is the net one). The smallest such run goes first and the three
    become one, so a short last step after the last pulse is judged against the whole half
    it ends, not against the pulse."""
    runs = [list(r) for r in _sample_runs(sign)]
    n = len(runs)
    moved = [abs(float(q[stop - 1] - q[start])) for start, stop in runs]
    before, after = list(range(-1, n - 1)), [*range(1, n), -1]

    def share(k: int) -> float:
        if before[k] < 0 or after[k] < 0:
            return math.inf
        return moved[k] / max(moved[before[k]] + moved[after[k]], 1e-300)

    queue = [(share(k), k) for k in range(n)]
    heapq.heapify(queue)
    gone = [False] * n
    out = sign.copy()
    while queue and queue[0][0] < PULSE_SHARE:
        value, k = heapq.heappop(queue)
        if gone[k] or value != share(k):
            continue  # merged away, or its neighbours changed since it was queued
        a, b = before[k], after[k]
        out[runs[k][0] : runs[k][1]] = 0
        moved[a] += moved[b] - moved[k]
        runs[a][1] = runs[b][1]  # a now reaches over the pulse to b's end
        gone[k] = gone[b] = True
        after[a] = after[b]
        if after[b] >= 0:
            before[after[b]] = a
        for j in (a, before[a], after[a]):
            if j >= 0:
                heapq.heappush(queue, (share(j), j))
    return out


def _halves(t: np.ndarray, v: np.ndarray, i: np.ndarray) -> list[Half]:
    q = _cumulative_charge_as(t, i)
    sign = _pulses_kept_in(_current_signs(i), q)
    rest_v = _despiked(v)  # a rest holds no peaks: its one-sample spikes are logging glitches
    halves: list[Half] = []
    previous_stop = 0
    for start, stop in _sample_runs(sign):
        s = int(sign[start])
        # The half's charge includes the half-intervals to a rest on either side.
        lo = start - 1 if start > 0 and sign[start - 1] == 0 else start
        hi = stop if stop < len(sign) and sign[stop] == 0 else stop - 1
        charge_as = s * (q[hi] - q[lo])
        weights = np.abs(i[start:stop]) * np.gradient(t[start:stop]) if stop - start > 1 else np.ones(1)
        weights = np.maximum(weights, 0.0)
        current = np.average(np.abs(i[start:stop]), weights=weights) if weights.sum() > 0 else abs(i[start])
        before = np.r_[v[max(previous_stop - 1, 0)], rest_v[previous_stop:start], v[start]]
        reached = v[start:stop].min() if s < 0 else v[start:stop].max()
        halves.append(Half(len(halves), s, start, stop, float(t[start] - t[0]), max(charge_as, 0.0) / 3.6,
                           float(current) * 1000.0, float(before.max() if s < 0 else before.min()),
                           float(reached)))
        previous_stop = stop
    return halves


@dataclass(frozen=True)
class Window:
    """The voltage window a cell's halves are judged in, and how it was found."""

    v_min: float
    v_max: float
    inferred: tuple[str, ...]  # "v_min" and/or "v_max" when read from the data
    notes: tuple[str, ...]  # an end inferred from weaker evidence than a cut-off


def infer_window(halves: list[Half], v: np.ndarray, v_min: float | None = None, v_max: float | None = None) -> Window:
    """The window: given ends kept, missing ones from the cut-offs of the long halves.
    Without a long half ending at that side, it falls back to where the long halves of the
    other direction started, then to the file's voltage range, with a note."""
    largest = max((h.charge_mah for h in halves), default=0.0)
    long = [h for h in halves if largest > 0 and h.charge_mah >= LONG_HALF * largest]
    inferred, notes = [], []
    if v_min is None:
        v_min, note = _cutoff(halves, long, -1, np.asarray(v, dtype=float))
        inferred.append("v_min")
        notes += [note] if note else []
        if -OVERSHOOT_V <= v_min < V_WINDOW_FLOOR:  # a lithium counter electrode's overshoot below 0 V
            notes.append(f"the discharges end at {v_min:.3g} V, below {V_WINDOW_FLOOR:g} V: "
                         f"the window starts at {V_WINDOW_FLOOR:g} V")
            v_min = V_WINDOW_FLOOR
    if v_max is None:
        v_max, note = _cutoff(halves, long, 1, np.asarray(v, dtype=float))
        inferred.append("v_max")
        notes += [note] if note else []
    if not (np.isfinite(v_min) and np.isfinite(v_max) and v_max > v_min):
        raise ValueError(f"the voltage window {v_min:g}-{v_max:g} V is empty: v_max must be above v_min")
    return Window(float(v_min), float(v_max), tuple(inferred), tuple(notes))


def _cutoff(halves: list[Half], long: list[Half], sign: int, v: np.ndarray) -> tuple[float, str | None]:
    """One end of the window: where the long halves towards it stopped (the cut-off); else
    where most halves towards it stopped alike (a cell that lost its capacity after a long
    first charge still runs to its cut-offs)."""
    end, direction = ("v_min", "discharge") if sign < 0 else ("v_max", "charge")
    stopped = [h.v_to for h in long if h.sign == sign]
    if stopped:
        return float(np.median(stopped)), None
    stops = np.array([h.v_to for h in halves if h.sign == sign])
    alike = np.abs(stops - np.median(stops)) <= STOPS_AGREE_V if stops.size >= 3 else np.zeros(0, bool)
    if alike.sum() * 2 > stops.size:
        value = float(np.median(stops[alike]))
        return value, (f"no long {direction} reached a cut-off: {end} {value:.2f} V is where {int(alike.sum())} "
                       f"of the {stops.size} {direction}s stopped; check it, or give {end}")
    started = [h.v_from for h in long if h.sign == -sign]
    if started:
        value = float(np.median(started))
        return value, (f"no long {direction} reached a cut-off: {end} {value:.2f} V is where the long "
                       f"{_NAMES[-sign]}s started; check it, or give {end}")
    value = float((np.min if sign < 0 else np.max)(_despiked(v)))
    return value, f"no long half to infer {end} from: {value:.2f} V is the file's extreme voltage; give {end}"


def _current_steps(t: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample pairs (k, m) across a step of the current: a settled level at k, another at
    m = k + 1, or m = k + 2 with one sample logged mid-transition, more than half apart
    and measured within STEP_MAX_DT_S."""
    scale = float(np.max(np.abs(i))) if i.size else 0.0
    pairs = []
    for gap in (1, 2):
        k = np.arange(1, i.size - gap - 1)
        m = k + gap
        change = np.abs(i[m] - i[k])
        settled = (np.abs(i[k] - i[k - 1]) <= 0.1 * change) & (np.abs(i[m + 1] - i[m]) <= 0.1 * change)
        if gap == 2:  # the middle sample strictly between the levels, else it is a gap-1 step
            settled &= (np.abs(i[k + 1] - i[k]) > 0.1 * change) & (np.abs(i[m] - i[k + 1]) > 0.1 * change)
        big = (change > 0.5 * np.maximum(np.abs(i[k]), np.abs(i[m]))) & (change > 0.01 * scale)
        quick = (t[m] > t[k]) & (t[m] - t[k] <= STEP_MAX_DT_S)
        keep = settled & big & quick
        pairs.append((k[keep], m[keep]))
    return np.concatenate([p[0] for p in pairs]).astype(int), np.concatenate([p[1] for p in pairs]).astype(int)


def _resistance(t: np.ndarray, v: np.ndarray, i: np.ndarray) -> tuple[float, str | None]:
    """Median dV/dI of the file's current interruptions, else of its reversals (with a note)."""
    k, m = _current_steps(t, i)
    ratios = (v[m] - v[k]) / (i[m] - i[k])
    interrupt = (np.abs(i[m]) < np.abs(i[k])) & (i[m] * i[k] >= 0)
    kinds = (
        (interrupt, None),
        (~interrupt, "no current interruption in the file: the resistance comes from switch-on and reversal "
                     "steps and includes any fast switch of the hysteresis branch"),
    )
    for chosen, note in kinds:
        usable = ratios[chosen & np.isfinite(ratios)]
        if usable.size:
            return max(float(np.median(usable)), 0.0), note
    return 0.0, (f"no settled current step sampled within {STEP_MAX_DT_S:.0f} s: the curve is not corrected "
                 "for the resistance drop")


def _branch(q_frac: np.ndarray, v_ocv: np.ndarray) -> np.ndarray:
    """Bin the voltage by SOC onto the grid (means), then fill empty bins linearly."""
    grid = soc_grid()
    idx = np.clip(np.rint(q_frac * (OCV_POINTS - 1)).astype(int), 0, OCV_POINTS - 1)
    sums = np.bincount(idx, v_ocv, OCV_POINTS)
    counts = np.bincount(idx, minlength=OCV_POINTS)
    have = counts > 0
    return np.interp(grid, grid[have], sums[have] / counts[have])


def _half_branch(h: Half, t: np.ndarray, v: np.ndarray, i: np.ndarray, r_ohm: float) -> np.ndarray:
    """The open-circuit curve along one full half: SOC from its charge, voltage less the drop.

    A constant-voltage tail is no open-circuit curve: the cycler holds the voltage while
    the cell is still polarised. Its samples are left out, and the end of the curve is
    the voltage the cell relaxed to in the rest after the half (when it rested long
    enough), so the curve runs up (down) its real knee instead of a flat hold. The start
    of a half from a long rest is the rested voltage itself: its first samples carry less
    polarisation than the step resistance removes (the drop is still building), which
    would put the curve's end tens of mV beyond the open circuit and the twin's SOC a few
    % short of full."""
    q = np.abs(_cumulative_charge_as(t[h.start : h.stop], i[h.start : h.stop]))
    frac = q / q[-1] if q[-1] > 0 else np.linspace(0.0, 1.0, q.size)
    soc = 1.0 - frac if h.sign < 0 else frac
    amps = np.abs(i[h.start : h.stop])
    loaded = _loaded(amps)
    corrected = v[h.start : h.stop] - i[h.start : h.stop] * r_ohm
    rested = _rest_before(h, t, v, i)
    if rested is not None:
        # Beyond the rested voltage a half cannot start (the curve runs away from it): those
        # samples are the drop still building, and so is the rest of its first few %.
        early = frac < START_TRANSIENT
        beyond = np.flatnonzero(early & (h.sign * (rested - corrected) > 0))
        loaded[: beyond[-1] + 1 if beyond.size else 0] = False
    points, values = soc[loaded], corrected[loaded]
    ends = [(1.0 if h.sign < 0 else 0.0, rested)]
    if loaded.sum() < loaded.size:
        ends.append((0.0 if h.sign < 0 else 1.0, _relaxed_voltage(h, t, v, i)))
    for at, volts in ends:
        if volts is not None:
            points, values = np.append(points, at), np.append(values, volts)
    return _branch(points, values)


def _loaded(amps: np.ndarray) -> np.ndarray:
    """Samples at the half's working current: not its constant-voltage tail."""
    return amps >= 0.5 * np.quantile(amps, 0.9)


def _loaded_amps(i: np.ndarray) -> float:
    amps = np.abs(i)
    return float(np.mean(amps[_loaded(amps)]))


def _relaxed_voltage(h: Half, t: np.ndarray, v: np.ndarray, i: np.ndarray) -> float | None:
    """The last voltage of the rest right after a half, if it lasted RELAXED_REST_S."""
    level = float(np.quantile(np.abs(i[h.start : h.stop]), 0.9))
    k = h.stop
    while k < i.size and abs(i[k]) <= 0.01 * level:
        k += 1
    if k == h.stop or t[k - 1] - t[h.stop] < RELAXED_REST_S:
        return None
    return float(v[k - 1])


def _rest_before(h: Half, t: np.ndarray, v: np.ndarray, i: np.ndarray) -> float | None:
    """The last voltage of the rest right before a half, if it lasted RELAXED_REST_S."""
    level = float(np.quantile(np.abs(i[h.start : h.stop]), 0.9))
    k = h.start - 1
    while k >= 0 and abs(i[k]) <= 0.01 * level:
        k -= 1
    if k == h.start - 1 or t[h.start - 1] - t[k + 1] < RELAXED_REST_S:
        return None
    return float(v[h.start - 1])


def _mismatch(halves: list[Half], full: set[int]) -> dict[int, float]:
    """Per full half: the smallest relative charge difference to an adjacent full half
    (a cycle); halves with no full neighbour are absent."""
    out: dict[int, float] = {}
    for a, b in zip(halves, halves[1:]):
        if a.index in full and b.index in full and a.sign != b.sign:
            m = abs(a.charge_mah - b.charge_mah) / max(a.charge_mah, b.charge_mah)
            for h in (a, b):
                out[h.index] = min(out.get(h.index, np.inf), m)
    return out


def _preferred(candidates: list[Half], mismatch: dict[int, float]) -> Half | None:
    """Balanced before unbalanced, then the slowest (ties within SAME_RATE: the earliest)."""
    if not candidates:
        return None
    balanced = [h for h in candidates if mismatch.get(h.index, 0.0) <= BALANCE_TOLERANCE]
    pool = balanced or candidates
    slowest = min(h.c_rate for h in pool)
    return min((h for h in pool if h.c_rate <= SAME_RATE * slowest), key=lambda h: h.index)


def _choice_notes(used: list[Half], full: list[Half], mismatch: dict[int, float]) -> list[str]:
    """What the user should know about the halves chosen: a skipped formation cycle, an
    unbalanced cycle used anyway, a rate above C/2."""
    notes = []
    first = full[0] if full else None
    if first is not None and mismatch.get(first.index, 0.0) > BALANCE_TOLERANCE and first not in used:
        notes.append(f"first full cycle skipped: its charge and discharge differ by {mismatch[first.index]:.0%} "
                     "(formation / irreversible loss, not capacity)")
    for h in used:
        if mismatch.get(h.index, 0.0) > BALANCE_TOLERANCE:
            notes.append(f"{h.direction} #{h.index} differs by {mismatch[h.index]:.0%} from the other half of its "
                         "cycle and no balanced full cycle exists: capacity may include irreversible loss")
        if SLOW_C_RATE < h.c_rate <= FASTEST_C_RATE:
            notes.append(f"{h.direction} #{h.index} ran at {h.c_rate:.2g}C, faster than C/{1 / SLOW_C_RATE:g}: its "
                         "curve carries polarisation beyond the resistance drop, the capacity may be low by 5-10 %")
    return notes


def _learned_from(
    candidates: list[Half], full: list[Half], mismatch: dict[int, float], t: np.ndarray, v: np.ndarray,
    i: np.ndarray, r_ohm: float,
) -> tuple[np.ndarray, Half, Half, Half, list[str], float]:
    """The table from the preferred candidates: table, lithiation half, delithiation half,
    the half the capacity comes from, notes, the resistance the curves were corrected by."""
    discharge = _preferred([h for h in candidates if h.sign < 0], mismatch)
    charge = _preferred([h for h in candidates if h.sign > 0], mismatch)
    lith, delith = discharge or charge, charge or discharge
    notes = _choice_notes(list(dict.fromkeys([lith, delith])), full, mismatch)
    if discharge is None or charge is None:
        only = lith.direction
        notes.append(f"no usable full {'charge' if only == 'discharge' else 'discharge'}: the {only} curve, "
                     "corrected by the resistance drop, serves as both branches (no hysteresis learned)")
    if discharge is not None and charge is not None:
        r_ohm = _bounded_by_gap(lith, delith, t, v, i, r_ohm, notes)
    table = np.stack([_half_branch(lith, t, v, i, r_ohm), _half_branch(delith, t, v, i, r_ohm)])
    # Corrected by too large a drop, the branches would cross: there they are one curve.
    mean = table.mean(axis=0)
    crossed = table[0] > table[1]
    table[:, crossed] = mean[crossed]
    return table, lith, delith, discharge or charge, notes, r_ohm


def _bounded_by_gap(lith: Half, delith: Half, t: np.ndarray, v: np.ndarray, i: np.ndarray, r_ohm: float,
                    notes: list[str]) -> float:
    """The step resistance, at most what the gap between the loaded charge and discharge
    curves allows: a step sampled seconds after the switch can carry relaxation (or a
    logged mid-transition current) that the steady curves do not, and removing more than
    the gap would turn the hysteresis inside out."""
    raw = [_half_branch(h, t, v, i, 0.0) for h in (lith, delith)]
    middle = slice(int(0.3 * OCV_POINTS), int(0.7 * OCV_POINTS))
    gap = float(np.median(raw[1][middle] - raw[0][middle]))
    amps = sum(_loaded_amps(i[h.start : h.stop]) for h in (lith, delith))
    r_gap = max(gap, 0.0) / amps if amps > 0 else r_ohm
    if r_ohm > r_gap:
        notes.append(f"the step resistance {r_ohm:.3g} ohm exceeds what the gap between the loaded charge and "
                     f"discharge curves allows ({r_gap:.3g} ohm): using the latter")
        return r_gap
    return r_ohm


def _diffusion_time(full: list[Half], source: Half, table: np.ndarray, r_ohm: float, v_min: float, v_max: float,
                    i: np.ndarray) -> tuple[float, str | None]:
    """The twin's diffusion time constant from the rate loss of the faster full halves."""
    capacity, grid = source.charge_mah, soc_grid()
    taus, used = [], []
    for h in full:
        c_rate = h.current_ma / capacity
        amps = np.abs(i[h.start : h.stop])
        if c_rate < RATE_STEP * source.c_rate or amps[-1] < 0.5 * _loaded_amps(amps):
            continue  # not faster, or it ended on a voltage hold that makes up the rate loss
        # The surface meets the cut-off where the branch equals the limit less the drop;
        # what the half fell short of that is the bulk's lag at the end.
        branch = np.maximum.accumulate(table[0 if h.sign < 0 else 1])
        limit = v_min + h.current_ma / 1000.0 * r_ohm if h.sign < 0 else v_max - h.current_ma / 1000.0 * r_ohm
        surface = float(np.interp(limit, branch, grid))
        reach = 1.0 - surface if h.sign < 0 else surface
        lag = reach - h.charge_mah / capacity
        taus.append(float(np.clip(3.0 * 3600.0 * lag / c_rate, DEFAULT_TAU_S, MAX_TAU_S)))
        used.append(h)
    if not taus:
        return DEFAULT_TAU_S, None
    tau = float(np.median(taus))
    return tau, (f"rate loss: {len(used)} faster full half(s) (up to {max(h.current_ma for h in used) / capacity:.2g}C) "
                 f"delivered {min(h.charge_mah for h in used) / capacity:.0%}-{max(h.charge_mah for h in used) / capacity:.0%}"
                 f" of the capacity; diffusion time constant {tau:.0f} s")


def _deepest(halves: list[Half], sign: int) -> str:
    mine = [h for h in halves if h.sign == sign]
    if not mine:
        return f"no {_NAMES[sign]}"
    h = max(mine, key=lambda x: abs(x.v_from - x.v_to))
    low, high = sorted((h.v_from, h.v_to))
    return f"deepest {h.direction} (#{h.index}) covered {low:.2f}-{high:.2f} V"


def _why_not(halves: list[Half], full: list[Half], v_min: float, v_max: float) -> str:
    """Why no curve could be learned, in numbers."""
    window = f"{v_min:.2f}-{v_max:.2f} V"
    if not full:
        tol = END_TOLERANCE * (v_max - v_min) * 1000
        return (f"no full half-cycle in the {window} window (one that starts within {tol:.0f} mV of one end and "
                f"reaches within {tol:.0f} mV of the other): {_deepest(halves, -1)}, {_deepest(halves, 1)} of {window}")
    long_enough = [h for h in full if h.stop - h.start >= MIN_SAMPLES]
    if not long_enough:
        return (f"the full half-cycles have fewer than {MIN_SAMPLES} samples "
                f"({', '.join(str(h.stop - h.start) for h in full)}): too few for a curve")
    slowest = min(long_enough, key=lambda h: h.c_rate)
    return (f"no full half at {FASTEST_C_RATE:g}C or slower, the fastest a curve is learned from (the slowest: "
            f"{slowest.describe()}): a full cycle at C/{1 / SLOW_C_RATE:g} or slower is needed for a trustworthy curve")


def _straight_line(halves: list[Half], v_min: float, v_max: float) -> tuple[np.ndarray, Half]:
    largest = max(halves, key=lambda h: h.charge_mah)
    line = np.linspace(v_min, v_max, OCV_POINTS)
    return np.stack([line, line]), largest


def _clean(t, v, i) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, v, i = (np.asarray(a, dtype=float) for a in (t, v, i))
    if not (t.shape == v.shape == i.shape) or t.ndim != 1:
        raise ValueError("t, v and i must be 1-D arrays of one length")
    ok = np.isfinite(t) & np.isfinite(v) & np.isfinite(i)
    return t[ok], v[ok], i[ok]


def learn_ocv(
    t: np.ndarray, v: np.ndarray, i: np.ndarray, v_min: float | None = None, v_max: float | None = None,
    *, fallback: bool = False,
) -> LearnedOcv:
    """Learn the two OCV branches, the capacity and the resistance of a cell from its data
    (rules and thresholds: see the module docstring). A missing window end is inferred.

    Raises ValueError naming the failed condition when no full half at 2C or slower
    exists; with `fallback=True` returns a provisional result instead (still raises when
    the file carries no current at all, or the window is empty).
    """
    t, v, i = _clean(t, v, i)
    halves = [h for h in _halves(t, v, i) if h.charge_mah > 0]
    if not halves:
        raise ValueError("the file carries no current: there is no charge to learn a capacity from")
    window = infer_window(halves, v, v_min, v_max)
    v_min, v_max, inferred = window.v_min, window.v_max, window.inferred
    r_ohm, r_note = _resistance(t, v, i)
    full = [h for h in halves if h.is_full(v_min, v_max)]
    mismatch = _mismatch(halves, {h.index for h in full})
    learnable = [h for h in full if h.stop - h.start >= MIN_SAMPLES]
    trusted = [h for h in learnable if h.c_rate <= FASTEST_C_RATE]
    notes = list(window.notes) + ([r_note] if r_note else [])
    reason = None if trusted else _why_not(halves, full, v_min, v_max)
    if reason and not fallback:
        raise ValueError(f"cannot learn the open-circuit curve: {reason}")
    notes = ([reason] if reason else []) + notes
    if trusted or learnable:
        table, lith, delith, source, chosen, r_ohm = _learned_from(trusted or learnable, full, mismatch, t, v, i,
                                                                   r_ohm)
        tau_s, tau_note = _diffusion_time(full, source, table, r_ohm, v_min, v_max, i)
        notes += [tau_note] if tau_note else []
        return LearnedOcv(table, source.charge_mah, r_ohm, source.c_rate, v_min, v_max, inferred, lith, delith,
                          source, reason is not None, tuple(notes[:1] + chosen + notes[1:]), tau_s,
                          float(t[max(h.stop for h in (lith, delith, source)) - 1]))
    table, largest = _straight_line(halves, v_min, v_max)
    line = f"straight line across the window; capacity = the largest half counted ({largest.describe()}), a lower bound"
    return LearnedOcv(table, largest.charge_mah, r_ohm, float("nan"), v_min, v_max, inferred, None, None, largest,
                      True, (notes[0], line, *notes[1:]), learned_until=float(t[largest.stop - 1]))


def generic_params(
    name: str,
    capacity_mah: float,
    v_min: float,
    v_max: float,
    ocv_table: np.ndarray,
    r_ohm: float = 0.05,
    mass_mg: float | None = None,
    tau_diff_s: float = DEFAULT_TAU_S,
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
        tau_diff_s=tau_diff_s,
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
