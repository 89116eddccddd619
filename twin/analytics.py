"""The lab's per-half-cycle analytics, measured from the data alone (no model inside).

What a lab reads off every half-cycle of a cycler file, computed as the samples stream in:

* **Energy** (mWh, and per gram of active mass) by the trapezoid rule on ``v * i``
  (both linear between samples), counted per current direction: an interval where the
  current changes sign is cut at its zero crossing, as the coulomb counting of
  `twin.estimator` does, so each half gets its own part.
* **Mean voltage**: energy over charge, the charge-weighted mean.
* On a charge half, against the discharge before it: **energy efficiency** (discharge
  energy over charge energy: what the cell gave back over what it took; below 1 by the
  hysteresis and the resistive losses) and **voltage hysteresis** (mean charge voltage
  minus mean discharge voltage).
* **Incremental capacity dQ/dV** on a fixed voltage grid (:data:`GRID_BINS` bins over the
  cell's voltage window): each interval's charge goes to the bin of its mean voltage (a
  charge-by-voltage histogram: robust to voltage noise, where a sample-to-sample dQ/dV
  divides by a dV that noise dominates). Smoothed with a Gaussian of
  :data:`SMOOTH_BINS` bins when the half closes.
* **Peaks** of that curve (up to :data:`PEAKS`, each holding at least :data:`PEAK_SHARE`
  of the half's charge, in voltage order): position = the centroid of the peak above half
  its height (a plateau with a slope is a box in dQ/dV, whose highest point noise moves
  about; its centroid stays put), height, and the **time at that plateau** (active time
  spent in the same voltage range). For the hydride: the lithiation plateaus near
  0.42 V, the delithiation ones near 0.57 and 0.65 V; for other cells whatever is there.
* **Pulse / DC resistance** from current steps in the data (HPPC, GITT, a rest before
  a constant-current step, an interruption): a change of at least :data:`STEP_C` of 1C
  between consecutive samples, after a steady current, that does not reverse the cell's
  direction of work (see :func:`_measure_steps`). Its resistance is dV/dI between the sample before the
  step and the last sample of the hold after it: the current stays within
  :data:`HOLD_TOLERANCE` of the step, no other step comes, and at most
  :data:`HOLD_CAP_S` after the step (enough for a charge-transfer RC of tens of seconds
  to settle, little for the OCV to move). The half reports the median of its steps and
  the median hold, so a 10 s HPPC resistance is not mistaken for a settled one.

Rests carry nothing: intervals below :data:`ACTIVE_C` of 1C count no charge, energy or
time (a current sensor's offset over an hour of rest would otherwise count). A silence
longer than :data:`GAP_S` is a gap, counted as nothing (the estimator's bound).

Streaming layout, for the twin step's batches of N cells x K samples: :func:`begin`
computes every interval's increments for the whole batch with numpy; :func:`close` ends
a cell's half at a sample of the batch (where the estimator closed it) from what was
accumulated before plus a slice of the batch; :func:`end` accumulates the rest. State is
arrays over cells, like `twin.estimator.Tracker`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from .params import CellParams

__all__ = [
    "GRID_BINS",
    "SMOOTH_BINS",
    "ACTIVE_C",
    "GAP_S",
    "STEP_C",
    "HOLD_TOLERANCE",
    "HOLD_CAP_S",
    "PEAK_SHARE",
    "PEAKS",
    "CURVE_FLOOR",
    "VALLEY_RISE",
    "MIN_HOLD_SAMPLES",
    "FIELDS",
    "Peak",
    "HalfFigures",
    "Analytics",
    "Batch",
    "new_analytics",
    "for_cells",
    "concat",
    "reset",
    "begin",
    "close",
    "end",
    "peaks",
]

GRID_BINS = 200  # dQ/dV bins over the voltage window: 3.5 mV for the hydride, 8.5 mV over 2.5-4.2 V
SMOOTH_BINS = 1.5  # Gaussian sigma of the dQ/dV smoothing, in bins
ACTIVE_C = 0.005  # intervals with a mean |i| below this share of 1C are rest
GAP_S = 600.0  # longer silences are gaps (the estimator's and the validation's bound)
STEP_C = 0.05  # current changes of at least C/20 between two samples are resistance steps
HOLD_TOLERANCE = 0.1  # after a step the current stays within this share of the step
HOLD_CAP_S = 120.0  # a step's resistance is read at most this long after it
PEAK_SHARE = 0.05  # a dQ/dV peak holds at least this share of the half's charge
PEAKS = 3
CURVE_FLOOR = 0.01  # the curve handed out leaves out bins below this share of its maximum
VALLEY_RISE = 0.1  # a rise of this share of a peak's height past a valley is the next peak
MIN_HOLD_SAMPLES = 2  # a step is measured only if the current holds over this many samples

_DISCHARGE, _CHARGE = 0, 1  # index of a direction: lithiation (i < 0), delithiation (i > 0)
_KERNEL_SIGMAS = 4  # the smoothing kernel is cut at this many sigmas

# The per-half fields, in this order (connectors.wire.ANALYTICS_FIELDS holds the same).
FIELDS: tuple[str, ...] = (
    "energy_mwh", "energy_mwh_g", "mean_v", "energy_efficiency", "hysteresis_v",
    *(f"peak{n}_{part}" for n in range(1, PEAKS + 1) for part in ("v", "dqdv", "s")),
    "pulse_r_ohm", "pulse_hold_s", "pulse_count",
)


@dataclass(frozen=True)
class Peak:
    """One dQ/dV peak: centroid voltage (V), height (mAh/V), active time in its range (s)."""

    v: float
    dqdv: float
    seconds: float


@dataclass(frozen=True)
class HalfFigures:
    """What the data of one half-cycle says; NaN where it says nothing."""

    energy_mwh: float
    energy_mwh_g: float
    mean_v: float
    energy_efficiency: float  # charge halves: preceding discharge energy / this charge energy
    hysteresis_v: float  # charge halves: this mean voltage - the preceding discharge's
    peaks: tuple[Peak, ...]
    pulse_r_ohm: float  # median over the half's steps
    pulse_hold_s: float  # median time after the step at which they were read
    pulse_count: int
    curve_v: np.ndarray  # bin centres (V) where the smoothed dQ/dV is above CURVE_FLOOR of its maximum ...
    curve_dqdv: np.ndarray  # ... and its value there, mAh/V

    def fields(self) -> dict[str, float]:
        """The scalar figures under the names of :data:`FIELDS`."""
        out = {"energy_mwh": self.energy_mwh, "energy_mwh_g": self.energy_mwh_g, "mean_v": self.mean_v,
               "energy_efficiency": self.energy_efficiency, "hysteresis_v": self.hysteresis_v}
        for n in range(PEAKS):
            peak = self.peaks[n] if n < len(self.peaks) else Peak(math.nan, math.nan, math.nan)
            out.update({f"peak{n + 1}_v": peak.v, f"peak{n + 1}_dqdv": peak.dqdv, f"peak{n + 1}_s": peak.seconds})
        out.update(pulse_r_ohm=self.pulse_r_ohm, pulse_hold_s=self.pulse_hold_s, pulse_count=float(self.pulse_count))
        return out


@dataclass
class Analytics:
    """The open halves of N cells: what has been accumulated so far. Arrays over cells."""

    v_lo: np.ndarray  # V: lower edge of the dQ/dV grid (the cell's window)
    v_step: np.ndarray  # V: bin width
    one_c_a: np.ndarray  # A
    grams: np.ndarray  # active mass, g
    last: np.ndarray  # (N, 4) t, v, i of the cell's latest sample and i of the one before (NaN before)
    direction: np.ndarray  # (N,) sign of the cell's latest active current (0 before one)
    q: np.ndarray  # (N, 2) mAh per direction
    e: np.ndarray  # (N, 2) mWh per direction
    hist_q: np.ndarray  # (N, 2, GRID_BINS) mAh per voltage bin
    hist_s: np.ndarray  # (N, 2, GRID_BINS) active seconds per voltage bin
    pulses: list[list[tuple[float, float]]]  # per cell: (resistance ohm, hold s) of the open half
    hold: np.ndarray  # (N, 7) a step whose hold goes on: its time, v0, i0, i1; t, v of its latest sample; samples
    discharge: np.ndarray  # (N, 2) energy (mWh) and mean voltage of the cell's latest discharge


def new_analytics(v_min: np.ndarray, v_max: np.ndarray, one_c_a: np.ndarray, grams: np.ndarray) -> Analytics:
    """Empty accumulators for cells with these voltage windows, 1C currents and masses."""
    v_min, v_max = np.asarray(v_min, dtype=float), np.asarray(v_max, dtype=float)
    n = v_min.size
    return Analytics(
        v_lo=v_min.copy(), v_step=(v_max - v_min) / GRID_BINS, one_c_a=np.asarray(one_c_a, dtype=float).copy(),
        grams=np.asarray(grams, dtype=float).copy(), last=np.full((n, 4), np.nan), direction=np.zeros(n),
        q=np.zeros((n, 2)), e=np.zeros((n, 2)), hist_q=np.zeros((n, 2, GRID_BINS)), hist_s=np.zeros((n, 2, GRID_BINS)),
        pulses=[[] for _ in range(n)], hold=np.full((n, 7), np.nan), discharge=np.full((n, 2), np.nan),
    )


def for_cells(cells: list[CellParams]) -> Analytics:
    """Empty accumulators for these cells (their windows, 1C currents and masses)."""
    return new_analytics(np.array([c.v_min for c in cells]), np.array([c.v_max for c in cells]),
                         np.array([c.one_c_ma / 1000.0 for c in cells]), np.array([c.mass_mg / 1000.0 for c in cells]))


def concat(parts: list[Analytics]) -> Analytics:
    """The cells of several accumulators, in order."""
    return Analytics(**{
        f.name: [p for part in parts for p in part.pulses] if f.name == "pulses"
        else np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(Analytics)
    })


def reset(an: Analytics, row: int, fresh: Analytics) -> None:
    """Cell `row` starts over as the single cell of `fresh` (its metadata changed)."""
    for f in fields(Analytics):
        if f.name == "pulses":
            an.pulses[row] = []
        else:
            getattr(an, f.name)[row] = getattr(fresh, f.name)[0]


@dataclass
class Batch:
    """Per-interval increments of one batch (interval k ends at sample k), and how far each
    cell's open half has taken them."""

    counts: np.ndarray  # (N,) samples of each cell in the batch
    q: np.ndarray  # (N, 2, K) mAh per direction
    e: np.ndarray  # (N, 2, K) mWh per direction
    s: np.ndarray  # (N, 2, K) active seconds per direction
    bins: np.ndarray  # (N, K) dQ/dV bin of the interval's mean voltage
    pos: np.ndarray  # (N,) first interval the open half has not yet taken
    pulses: list[list[tuple[int, float, float]]] = field(default_factory=list)  # per cell: (sample, ohm, hold s)


def _positive_part(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over an interval of max(x, 0) for x linear from a to b."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lo >= 0, 0.5 * (a + b), np.where(hi > 0, 0.5 * hi * hi / np.maximum(hi - lo, 1e-300), 0.0))


def begin(an: Analytics, t: np.ndarray, v: np.ndarray, i: np.ndarray, counts: np.ndarray) -> Batch:
    """The increments of a batch: t, v, i are (N, K), cell n's samples in its first counts[n]
    columns. Steps whose hold ends inside the batch are measured; the cells' latest samples kept."""
    n, width = t.shape
    column = np.arange(width)
    present = column[None, :] < counts[:, None]
    tp, vp, ip = (np.concatenate([an.last[:, j : j + 1], x[:, :-1]], axis=1) for j, x in enumerate((t, v, i)))
    ipp = np.concatenate([an.last[:, 3:4], ip[:, :-1]], axis=1)  # the current two samples back
    dt = t - tp
    with np.errstate(invalid="ignore"):
        ok = present & (dt > 0) & (dt <= GAP_S) & np.isfinite(vp + v + ip + i)
    dt = np.where(ok, dt, 0.0)
    mean_pos = _positive_part(np.where(ok, ip, 0.0), np.where(ok, i, 0.0))
    mean_neg = _positive_part(np.where(ok, -ip, 0.0), np.where(ok, -i, 0.0))
    active = ok & (mean_pos + mean_neg >= ACTIVE_C * an.one_c_a[:, None])
    q = np.where(active[:, None, :], np.stack([mean_neg, mean_pos], axis=1) * (dt / 3.6)[:, None, :], 0.0)
    vm = np.where(ok, 0.5 * (vp + v), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(active[:, None, :], q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300), 0.0)
    bins = np.clip(((vm - an.v_lo[:, None]) / an.v_step[:, None]).astype(np.int64), 0, GRID_BINS - 1)
    batch = Batch(counts=counts.copy(), q=q, e=q * vm[:, None, :], s=share * dt[:, None, :], bins=bins,
                  pos=np.zeros(n, dtype=np.int64), pulses=[[] for _ in range(n)])
    signs = np.where(active, np.sign(i), 0.0)
    _measure_steps(an, batch, (t, v, i), (tp, vp, ip, ipp), signs, present)
    rows = np.flatnonzero(counts > 0)
    last = counts[rows] - 1
    an.last[rows] = np.stack([t[rows, last], v[rows, last], i[rows, last], ip[rows, last]], axis=1)
    worked = signs.any(axis=1)
    an.direction[worked] = signs[worked, width - 1 - np.argmax(signs[worked, ::-1] != 0, axis=1)]
    return batch


def _measure_steps(an: Analytics, batch: Batch, now: tuple[np.ndarray, ...], before: tuple[np.ndarray, ...],
                   signs: np.ndarray, present: np.ndarray) -> None:
    """Resistance of every current step whose hold ends in this batch; holds still going on
    are kept in `an.hold`. A few steps per cell and cycle: a loop over them is cheap.

    A step counts where the current before it was steady (so the sample before is not the
    middle of a ramp or the partial sample of a cut-off) and where it does not turn the
    cell's direction of work: on a conversion electrode a reversal also moves the voltage
    from one hysteresis branch to the other, which is no resistance."""
    (t, _, i), (tp, vp, ip, ipp) = now, before
    size = np.abs(i - ip)
    resting = np.abs(ip) < ACTIVE_C * an.one_c_a[:, None]
    with np.errstate(invalid="ignore"):
        # Cyclers log rests sparsely: a step out of rest may follow a long silence (a relaxed voltage).
        steps = (present & (size >= STEP_C * an.one_c_a[:, None]) & (t - tp > 0) & ((t - tp <= GAP_S) | resting)
                 & (np.abs(ip - ipp) <= HOLD_TOLERANCE * size))
    # Steps are rare: what follows looks only at the rows that have one.
    rows = np.flatnonzero(steps.any(axis=1))
    t, i, tp, vp, ip, signs, steps = (x[rows] for x in (t, i, tp, vp, ip, signs, steps))
    # The direction of work before each sample: the latest active sign before it, else the carried one.
    index = np.where(signs != 0, np.arange(signs.shape[1])[None, :], -1)
    latest = np.maximum.accumulate(index, axis=1)
    before_dir = np.concatenate([an.direction[rows, None], np.where(
        latest[:, :-1] >= 0, np.take_along_axis(signs, np.maximum(latest[:, :-1], 0), axis=1), an.direction[rows, None])],
        axis=1)
    steps &= (np.abs(i) < ACTIVE_C * an.one_c_a[rows, None]) | (np.sign(i) == before_dir)
    # When the step came: one sampling interval before the first sample after it (the sample
    # before may be long before it, in a sparsely logged rest).
    following = np.concatenate([t[:, 1:] - t[:, :-1], np.full((t.shape[0], 1), np.nan)], axis=1)
    start_t = t - np.fmin(t - tp, np.where(following > 0, following, np.nan))
    at_step = dict(zip(rows.tolist(), range(rows.size)))
    rows = np.union1d(rows, np.flatnonzero(np.isfinite(an.hold[:, 0])))
    for row in rows.tolist():
        m = int(batch.counts[row])
        sub = at_step.get(row)
        starts = [] if sub is None else np.flatnonzero(steps[sub, :m]).tolist()
        if np.isfinite(an.hold[row, 0]):  # a hold from the previous batch goes on from sample 0
            t0, v0, i0, i1, t_held, v_held, samples = an.hold[row]
            _follow(an, batch, row, now, (0, starts[0] if starts else m), (t0, v0, i0, i1), (0, t_held, v_held),
                    int(samples))
        for k, j in enumerate(starts):
            stop = starts[k + 1] if k + 1 < len(starts) else m
            _follow(an, batch, row, now, (j, stop), (start_t[sub, j], vp[sub, j], ip[sub, j], i[sub, j]), None, 0)


def _follow(an: Analytics, batch: Batch, row: int, now: tuple[np.ndarray, ...], span: tuple[int, int],
            step: tuple[float, float, float, float], held: tuple[int, float, float] | None, samples: int) -> None:
    """Follow a step's hold over samples span[0]..span[1]-1 of a row (span[1]: the next step
    or the batch's end), `samples` held already. Measure it where it ends, at its last held
    sample `held` (sample, t, v); or keep it in `an.hold` if it is held to the batch's end."""
    (t, v, i), (start, stop), (t0, v0, i0, i1) = now, span, step
    with np.errstate(invalid="ignore"):
        holding = ((np.abs(i[row, start:stop] - i1) <= HOLD_TOLERANCE * abs(i1 - i0))
                   & (t[row, start:stop] - t0 <= HOLD_CAP_S) & np.isfinite(v[row, start:stop]))
    broken = np.flatnonzero(~holding)
    kept = int(broken[0]) if broken.size else stop - start
    if kept:
        last = start + kept - 1
        held = (last, float(t[row, last]), float(v[row, last]))
    if kept == stop - start and stop == batch.counts[row] and held is not None:
        an.hold[row] = (t0, v0, i0, i1, held[1], held[2], samples + kept)  # held to the end: the next batch goes on
        return
    an.hold[row] = np.nan
    if held is not None and samples + kept >= MIN_HOLD_SAMPLES:
        batch.pulses[row].append((held[0], (held[2] - v0) / (i1 - i0), held[1] - t0))


def _add(an: Analytics, batch: Batch, rows: np.ndarray, cols: np.ndarray) -> None:
    """Add the intervals (rows[j], cols[j]), in sample order, to the open halves. np.add.at adds
    them one by one, so a half's sums do not depend on where the batches split it (the
    histograms through flat indices: numpy's fast path, 4x faster than a 2-D index)."""
    bins = batch.bins[rows, cols]
    an.hist_q, an.hist_s = np.ascontiguousarray(an.hist_q), np.ascontiguousarray(an.hist_s)  # as made: no copy
    hist_q, hist_s = an.hist_q.reshape(-1), an.hist_s.reshape(-1)  # views of them
    for d in (_DISCHARGE, _CHARGE):
        q = batch.q[rows, d, cols]
        flat = (rows * 2 + d) * GRID_BINS + bins
        np.add.at(an.q[:, d], rows, q)
        np.add.at(an.e[:, d], rows, batch.e[rows, d, cols])
        np.add.at(hist_q, flat, q)
        np.add.at(hist_s, flat, batch.s[rows, d, cols])


def _take(an: Analytics, batch: Batch, row: int, upto: int) -> None:
    """Add intervals pos..upto-1 of a row of the batch to the open half's accumulators."""
    cols = np.arange(int(batch.pos[row]), upto)
    _add(an, batch, np.full(cols.size, row), cols)
    taken = [p for p in batch.pulses[row] if p[0] < upto]
    an.pulses[row] += [(ohm, hold) for _, ohm, hold in taken]
    batch.pulses[row] = batch.pulses[row][len(taken):]
    batch.pos[row] = max(int(batch.pos[row]), upto)


def close(an: Analytics, batch: Batch | None, row: int, sample: int, discharge: bool) -> HalfFigures:
    """End cell `row`'s half at `sample` of the batch (the first sample of the next half:
    the interval up to it is cut at the zero crossing, each side to its own half), or at
    what was accumulated (`batch` None: the data has ended)."""
    if batch is not None:
        _take(an, batch, row, sample + 1)
        batch.pos[row] = sample  # the next half takes its own direction's part of that interval
    d = _DISCHARGE if discharge else _CHARGE
    q, e = float(an.q[row, d]), float(an.e[row, d])
    mean_v = e / q if q > 0 else math.nan
    before_e, before_v = an.discharge[row]
    if discharge:
        efficiency = hysteresis = math.nan
        an.discharge[row] = e, mean_v
    else:
        efficiency = before_e / e if e > 0 else math.nan
        hysteresis = mean_v - before_v
    centres = an.v_lo[row] + (np.arange(GRID_BINS) + 0.5) * an.v_step[row]
    curve = _smooth(an.hist_q[row, d]) / an.v_step[row]
    found = peaks(curve, an.hist_q[row, d], an.hist_s[row, d], centres)
    shown = curve > CURVE_FLOOR * curve.max()
    resistances = np.array(an.pulses[row]).reshape(-1, 2)
    figures = HalfFigures(
        energy_mwh=e, energy_mwh_g=e / an.grams[row], mean_v=mean_v, energy_efficiency=efficiency,
        hysteresis_v=hysteresis, peaks=found,
        pulse_r_ohm=float(np.median(resistances[:, 0])) if len(resistances) else math.nan,
        pulse_hold_s=float(np.median(resistances[:, 1])) if len(resistances) else math.nan,
        pulse_count=len(resistances), curve_v=centres[shown], curve_dqdv=curve[shown],
    )
    an.q[row] = an.e[row] = 0.0
    an.hist_q[row] = an.hist_s[row] = 0.0
    an.pulses[row] = []
    return figures


def end(an: Analytics, batch: Batch) -> None:
    """Accumulate what is left of the batch into the open halves."""
    width = batch.q.shape[2]
    rows, cols = np.nonzero((np.arange(width)[None, :] >= batch.pos[:, None])
                            & (np.arange(width)[None, :] < batch.counts[:, None]))
    _add(an, batch, rows, cols)
    batch.pos = np.maximum(batch.pos, batch.counts)
    for row, left in enumerate(batch.pulses):
        an.pulses[row] += [(ohm, hold) for _, ohm, hold in left]
        left.clear()


def _smooth(hist: np.ndarray) -> np.ndarray:
    """Gaussian smoothing of SMOOTH_BINS sigma, cut at a few sigmas (exact zeros beyond)."""
    half = int(math.ceil(_KERNEL_SIGMAS * SMOOTH_BINS))
    x = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (x / SMOOTH_BINS) ** 2)
    return np.convolve(hist, kernel / kernel.sum(), mode="same")


def _reach(side: list[float], height: float) -> int:
    """How far from a peak's top (side[0]) its half-height region goes along `side`: while
    the curve stays above half the height, and up to the valley where the next hill rises
    by VALLEY_RISE of the height above it (so a shoulder peak is not swallowed by its
    neighbour, and noise on a plateau's top does not cut it short). A Python loop: most
    maxima are noise a few bins wide, where numpy's per-call cost dominates."""
    low = lowest = math.inf
    at_lowest = 0
    for k, x in enumerate(side):
        low = min(low, x)
        if x < 0.5 * height or x > low + VALLEY_RISE * height:
            return at_lowest + 1 if x >= 0.5 * height else k
        if x < lowest:
            lowest, at_lowest = x, k
    return len(side)


def peaks(curve: np.ndarray, hist_q: np.ndarray, hist_s: np.ndarray, centres: np.ndarray) -> tuple[Peak, ...]:
    """The largest peaks of a smoothed dQ/dV curve, in voltage order (see the module docstring)."""
    total = hist_q.sum()
    if not total > 0:
        return ()
    inner = (curve[1:-1] >= curve[:-2]) & (curve[1:-1] > curve[2:]) & (curve[1:-1] > 0)
    maxima = np.flatnonzero(inner) + 1
    taken: list[tuple[float, Peak]] = []
    values = curve.tolist()
    covered = np.zeros(curve.size, dtype=bool)
    for top in maxima[np.argsort(-curve[maxima])].tolist():
        if covered[top]:
            continue  # a lesser maximum on the shoulder of one already taken
        lo, hi = _reach(values[top::-1], values[top]), _reach(values[top:], values[top])
        lo, hi = top - lo + 1, top + hi
        if covered[lo:hi].any():
            continue  # a lesser maximum whose half height reaches over a peak already taken
        covered[lo:hi] = True
        share = hist_q[lo:hi].sum() / total
        if share < PEAK_SHARE:
            continue
        weights = curve[lo:hi]
        centroid = float((weights * centres[lo:hi]).sum() / weights.sum())
        taken.append((share, Peak(centroid, float(curve[top]), float(hist_s[lo:hi].sum()))))
    largest = sorted(taken, key=lambda x: -x[0])[:PEAKS]
    return tuple(sorted((p for _, p in largest), key=lambda p: p.v))
