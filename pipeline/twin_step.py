"""The stateful twin step: one bytewax state per shard of cells, stepped in lockstep.

Why shards and not one state per cell: the estimator steps a `Tracker` of many cells per
call, so what a call costs is shared. Keying by `pipeline.shards.shard_of(cell)` puts a few
dozen cells into one `Tracker`, and `on_batch` steps all cells of a batch together: every
sample of every cell in one `twin.kernel.step_frame` call (compiled, the time loop inside),
with `present` masking cells that have fewer samples. Each cell's numbers depend only on
its own samples, so results do not depend on shard count, worker count or how the
stream was cut into batches.

Per cell the state also holds the last accepted sample time (a record at or before
it goes to the dead letters: replays and out-of-order data), the clock that limits
`twin_state` points to one per `estimate_interval_s` of sample time, the latest
cycle-level risks, the alert latch, and the bit-OR of the twin's flags since the last
estimate (the `flags` field: samples the twin could not fully use are visible on the
next point even though the point is rate-limited).

Metadata (config or `cell.meta`) flows through the same keyed step. A cell gets its
row when its metadata arrives or, for cells in the config file, with its first
frame. Topics are read in parallel, so a cell's first frames can overtake metadata
published before them: frames of a cell without metadata wait (in order, up to
`WAIT_SAMPLES` samples) for `meta_wait_s` of wall time, and are stepped as soon as
it arrives; what is still waiting then, or when the input ends, becomes an
`unknown_cell` dead letter. Corrected metadata (another mass or electrode) restarts
that cell's twin.

Results leave as columns (`connectors.wire.Batch`): the estimates of one pass over a batch
are one twin_state batch, the arrays the estimator returned, gathered in step order; a
closed half's dQ/dV curve is one dqdv batch, its arrays as `twin.analytics` made them; the
rare cycle summaries and alerts are built as rows and gathered into a batch per
measurement. No dict per estimate is made on the way to the sinks.

Costs stay linear: a waiting queue keeps its sample count (no re-summing per frame),
and new cells join the arrays once per batch, all together (`ShardLogic._grow`), not
one copy of the whole tracker per cell; a correction overwrites its row in place.

A half-cycle closes when the current reverses, so the last one of a stream stays
open. With `close_at_end` the end of the input closes it: right when no later run
continues this state (embedded runs, replays, a Kafka batch run without recovery),
wrong when one does (a recovered run would see the rest of that half). A half closed
this way is marked `partial` when the data stopped before its cut-off, and a partial
half fires no alert (it would read as lost capacity).
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import numpy as np
from bytewax.operators import StatefulBatchLogic

from connectors.wire import (
    ANALYTICS_FIELDS, CYCLE_FIELDS, FIELD_PARTIAL, MEAS_ALERT, MEAS_CYCLE, MEAS_DQDV, MEAS_STATE, TAG_CELL, TAG_HALF,
    TAG_KIND, TAG_PRESET, TAG_VOLTAGE, Batch, CellMeta, DeadLetter, Frame, Point, batches,
)
from pipeline.alerts import Alert, frame_alerts, half_cycle_alerts, new_latch
from twin import analytics, estimator
from twin.estimator import HalfCycle, Tracker, concat, finish, new_tracker
from twin.kernel import FrameOutput, step_frame
from twin.params import T_REF_C

__all__ = ["WAIT_SAMPLES", "STATE_FORMAT", "StateFormatError", "ShardStats", "ShardState", "ShardLogic"]

WAIT_SAMPLES = 100_000  # per cell waiting for its metadata; older frames go to the dead letters
_Due = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # twin_state points of a row: rows, samples, risks, flags
_TWIN_CYCLE_FIELDS = tuple(name for name in CYCLE_FIELDS if name not in ANALYTICS_FIELDS)  # HalfCycle's


def _unknown_cell(frame: Frame) -> DeadLetter:
    error = (f"unknown cell: no metadata for {frame.cell!r} "
             f"(add [cells.{frame.cell}] to the config or publish to cell.meta)")
    return DeadLetter("unknown_cell", error, frame.origin, frame.to_json(), frame.cell)


@dataclass(frozen=True)
class ShardStats:
    """What one batch of a shard did, for pipeline_health and the progress display."""

    new_cells: int  # cells the shard took on in this batch
    samples: int  # samples stepped
    deadletters: int
    positions: Mapping[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset


@dataclass
class ShardState:
    """Everything a shard remembers; arrays are per row (= per cell of `cells`)."""

    cells: list[str] = field(default_factory=list)
    metas: list[CellMeta] = field(default_factory=list)
    tracker: Tracker | None = None
    last_t: list[float] = field(default_factory=list)  # a list: a joining cell needs it at once
    next_estimate_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    flags_since: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    risks: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # crack, phase separation
    latch: np.ndarray = field(default_factory=lambda: new_latch(0))
    waiting: dict[str, deque[Frame]] = field(default_factory=dict)  # frames of cells without metadata
    waiting_samples: dict[str, int] = field(default_factory=dict)  # samples in each queue of `waiting`
    waiting_since: dict[str, float] = field(default_factory=dict)  # wall time (epoch s) of the first
    measured: analytics.Analytics | None = None  # the lab's per-half figures from the data (twin.analytics)
    # The release's STATE_FORMAT, stamped on every snapshot; a factory, not a class-level
    # default, so a snapshot pickled without it does not read the default.
    state_format: str = field(default_factory=lambda: STATE_FORMAT)


def _state_format() -> str:
    """A fingerprint of what a snapshot holds: the fields of the shard's, the twin's and the
    analytics' state, and the twin's per-cell constants in their order. A release that
    changes any of them cannot read an older snapshot's state and says so, rather than
    failing on a missing field in the middle of a run."""
    layout = [f"{cls.__name__}:{','.join(f.name for f in fields(cls))}"
              for cls in (ShardState, Tracker, analytics.Analytics, CellMeta)]
    layout.append("consts:" + ",".join(estimator._CONSTS))
    return hashlib.sha256(";".join(layout).encode()).hexdigest()[:12]


STATE_FORMAT = _state_format()


class StateFormatError(RuntimeError):
    """A recovery snapshot written by a release whose state this one cannot read; the message is one line."""


def _check_format(state: ShardState) -> None:
    written = state.__dict__.get("state_format")  # a snapshot from before the stamp has none
    if written != STATE_FORMAT:
        raise StateFormatError(
            f"the recovery folder holds twin state in format {written or 'unstamped'} and this release reads format "
            f"{STATE_FORMAT}: it was written by another celltwin release. Resume with the release that wrote it, "
            "or start with an empty --recovery-dir (the twins then start again from the data the broker still holds)")


_Item = Frame | CellMeta
# Out of the step: ("batch", Batch) | ("deadletter", DeadLetter) | ("stats", ShardStats); inside it
# also ("point", Point), the rare cycle and alert rows, gathered into batches by _with_stats.
_Out = tuple[str, Any]


class ShardLogic(StatefulBatchLogic[_Item, _Out, ShardState]):
    """The bytewax logic of one shard. `config_cells` is the metadata of the config file;
    `measure` False leaves out the analytics measured from the data (to time their cost)."""

    def __init__(self, config_cells: Mapping[str, CellMeta], estimate_interval_s: float,
                 meta_wait_s: float = 30.0, close_at_end: bool = False, resume: ShardState | None = None,
                 measure: bool = True) -> None:
        self._config_cells = config_cells
        self._measure = measure
        self._close_at_end = close_at_end
        self._interval = estimate_interval_s
        self._meta_wait_s = meta_wait_s
        if resume is not None:
            _check_format(resume)
        self._state = resume or ShardState()
        self._rows = {cell: row for row, cell in enumerate(self._state.cells)}
        self._joining: list[CellMeta] = []  # cells past the end of the arrays, in row order

    def snapshot(self) -> ShardState:
        self._grow()
        # The tracker is updated in place between snapshots; the snapshot must not move.
        return copy.deepcopy(self._state)

    def on_batch(self, values: list[_Item]) -> tuple[Iterable[_Out], bool]:
        out: list[_Out] = []
        pending: dict[int, list[Frame]] = defaultdict(list)
        samples = 0
        positions: dict[str, int] = {}
        cells_before = len(self._state.cells)
        for item in values:
            if isinstance(item, CellMeta):
                row = self._rows.get(item.cell)
                if row is not None and self._state.metas[row] != item and pending:
                    # Samples that came before the correction belong to the old cell.
                    samples += self._step(pending, out)
                    pending.clear()
                self._apply_meta(item)
                self._state.waiting_since.pop(item.cell, None)
                self._state.waiting_samples.pop(item.cell, None)
                for frame in self._state.waiting.pop(item.cell, ()):
                    self._admit(frame, pending, out)
                continue
            if item.origin is not None and item.origin.offset is not None:
                key = f"{item.origin.topic}:{item.origin.partition}"
                positions[key] = max(positions.get(key, 0), item.origin.offset + 1)
            self._admit(item, pending, out)
        samples += self._step(pending, out) if pending else 0
        return self._with_stats(out, len(self._state.cells) - cells_before, samples, positions), self.RETAIN

    def notify_at(self) -> datetime | None:
        since = self._state.waiting_since
        if not since:
            return None
        return datetime.fromtimestamp(min(since.values()) + self._meta_wait_s, tz=timezone.utc)

    def on_notify(self) -> tuple[Iterable[_Out], bool]:
        now = time.time()
        expired = [cell for cell, since in self._state.waiting_since.items() if now >= since + self._meta_wait_s]
        return self._with_stats(self._give_up(expired)), self.RETAIN

    def on_eof(self) -> tuple[Iterable[_Out], bool]:
        # The input has ended: metadata that has not come will not come in this run.
        out = self._give_up(list(self._state.waiting))
        self._grow()
        if self._close_at_end and self._state.tracker is not None:
            # The last half of each cell has no reversal to end it; this input will not go on.
            out.extend(self._half_points(finish(self._state.tracker)))
        return self._with_stats(out), self.RETAIN

    @staticmethod
    def _with_stats(out: list[_Out], new_cells: int = 0, samples: int = 0,
                    positions: Mapping[str, int] | None = None) -> list[_Out]:
        deadletters = sum(1 for kind, _ in out if kind == "deadletter")
        points = [item for kind, item in out if kind == "point"]
        out = [entry for entry in out if entry[0] != "point"] + [("batch", b) for b in batches(points)]
        out.append(("stats", ShardStats(new_cells, samples, deadletters, dict(positions or {}))))
        return out

    def _give_up(self, cells: list[str]) -> list[_Out]:
        """Dead letters for the frames of `cells`, whose metadata did not come in time."""
        out: list[_Out] = []
        for cell in cells:
            self._state.waiting_since.pop(cell, None)
            self._state.waiting_samples.pop(cell, None)
            out.extend(("deadletter", _unknown_cell(frame)) for frame in self._state.waiting.pop(cell, ()))
        return out

    def _wait(self, frame: Frame, out: list[_Out]) -> None:
        """Hold a frame of a cell without metadata; beyond WAIT_SAMPLES the oldest give way."""
        st = self._state
        queue = st.waiting.setdefault(frame.cell, deque())
        queue.append(frame)
        st.waiting_since.setdefault(frame.cell, time.time())
        held = st.waiting_samples.get(frame.cell, 0) + len(frame)
        while len(queue) > 1 and held > WAIT_SAMPLES:
            oldest = queue.popleft()
            held -= len(oldest)
            out.append(("deadletter", _unknown_cell(oldest)))
        st.waiting_samples[frame.cell] = held

    def _apply_meta(self, meta: CellMeta) -> None:
        st = self._state
        row = self._rows.get(meta.cell)
        if row is not None and st.metas[row] == meta:
            return
        if row is None:
            self._rows[meta.cell] = len(st.cells)
            st.cells.append(meta.cell)
            st.metas.append(meta)
            st.last_t.append(np.nan)
            self._joining.append(meta)
            return
        st.metas[row] = meta
        grown = len(st.cells) - len(self._joining)
        if row >= grown:  # not in the arrays yet: it joins with the corrected metadata
            self._joining[row - grown] = meta
            return
        assert st.tracker is not None
        params = meta.params()
        fresh = new_tracker([params])
        for name in (f.name for f in fields(Tracker)):
            getattr(st.tracker, name)[row] = getattr(fresh, name)[0]
        if st.measured is not None:
            analytics.reset(st.measured, row, analytics.for_cells([params]))
        st.next_estimate_t[row] = np.nan
        st.flags_since[row] = 0
        st.risks[row] = 0.0
        st.latch[row] = False

    def _grow(self) -> None:
        """Give the joining cells their rows of the arrays: one copy for all of them."""
        joining, st = self._joining, self._state
        if not joining:
            return
        count = len(joining)
        fresh = new_tracker([meta.params() for meta in joining])
        st.tracker = fresh if st.tracker is None else concat([st.tracker, fresh])
        if self._measure:
            # The cells without accumulators: the joining ones (all, in a state saved without any).
            have = 0 if st.measured is None else len(st.measured.v_lo)
            added = analytics.for_cells([meta.params() for meta in st.metas[have:]])
            st.measured = added if st.measured is None else analytics.concat([st.measured, added])
        st.next_estimate_t = np.concatenate([st.next_estimate_t, np.full(count, np.nan)])
        st.flags_since = np.concatenate([st.flags_since, np.zeros(count, dtype=np.int64)])
        st.risks = np.concatenate([st.risks, np.zeros((count, 2))])
        st.latch = np.concatenate([st.latch, new_latch(count)])
        self._joining = []

    def _admit(self, frame: Frame, pending: dict[int, list[Frame]], out: list[_Out]) -> None:
        """Queue what the twin can take of a frame; dead-letter samples it has seen past."""
        if frame.cell not in self._rows:
            meta = self._config_cells.get(frame.cell)
            if meta is None:
                self._wait(frame, out)
                return
            self._apply_meta(meta)
        row = self._rows[frame.cell]
        last = self._state.last_t[row]
        # Frames are in strict time order (decode checks), so stale samples are a prefix.
        stale = int(np.searchsorted(frame.t, last, side="right")) if np.isfinite(last) else 0
        if stale:
            old = frame.select(slice(0, stale))
            out.append(("deadletter", DeadLetter(
                "stale_time", f"{stale} sample(s) at or before the cell's last accepted time {last:.3f} s: "
                "replayed or out-of-order data", frame.origin, old.to_json(), frame.cell)))
        if stale < len(frame):
            kept = frame.select(slice(stale, None)) if stale else frame
            self._state.last_t[row] = kept.t[-1]
            pending[row].append(kept)

    def _step(self, pending: Mapping[int, list[Frame]], out: list[_Out]) -> int:
        """Step every pending sample of all cells in one call, then emit what the samples raised
        in step order (sample k of all cells, then k + 1), and their twin_state points as one batch."""
        self._grow()
        st = self._state
        assert st.tracker is not None
        n = len(st.cells)
        columns = {row: [np.concatenate(a) for a in zip(*((f.t, f.v, f.i, f.temp_c) for f in frames))]
                   for row, frames in pending.items()}
        counts = np.zeros(n, dtype=int)
        width = max(c[0].size for c in columns.values())
        t, v, i, temp = (np.full((n, width), np.nan) for _ in range(4))
        for row, (ct, cv, ci, ctemp) in columns.items():
            m = ct.size
            counts[row] = m
            t[row, :m], v[row, :m], i[row, :m], temp[row, :m] = ct, cv, ci, ctemp
        twin_temp = np.where(np.isnan(temp), T_REF_C, temp)  # not reported: the test temperature
        present = np.arange(width) < counts[:, None]
        frame = step_frame(st.tracker, t, v, i, twin_temp, present)
        batch = analytics.begin(st.measured, t, v, i, counts) if st.measured is not None else None
        risks = st.risks.copy()  # as the frame starts; the halves closed in it move them
        # What happens at sample k, in the order of a sample-by-sample pass: its alerts, then its closed halves.
        alerts_at: dict[int, list[_Out]] = defaultdict(list)
        for k, alert in frame_alerts(st.latch, present, t, v, temp):
            alerts_at[k].append(("point", self._alert_point(alert)))
        halves_at: dict[int, list[HalfCycle]] = defaultdict(list)
        for k, half in zip(frame.half_samples, frame.halves):
            halves_at[k].append(half)
        for k in sorted(alerts_at.keys() | halves_at.keys()):
            out.extend(alerts_at.get(k, ()))
            out.extend(self._half_points(halves_at.get(k, []), batch, k))
        if batch is not None:
            analytics.end(st.measured, batch)
        due = [self._due(row, int(counts[row]), t, frame, risks) for row in np.flatnonzero(counts)]
        due = [part for part in due if part is not None]
        if due:
            out.append(("batch", self._estimate_batch(frame, t, v, i, temp, due)))
        return int(counts.sum())

    def _due(self, row: int, count: int, t: np.ndarray, frame: FrameOutput,
             risks: np.ndarray) -> _Due | None:
        """The samples of `row` (of its first `count`) at which a twin_state point is due, with
        the risks and flags each carries; moves the row's clock and its flags since the last point."""
        st = self._state
        times = t[row, :count]  # strictly increasing (decode checks)
        next_t = float(st.next_estimate_t[row])
        # From each sample, the first one due after it; then follow that chain from the first due.
        after = np.maximum(np.searchsorted(times, times + self._interval), np.arange(1, count + 1)).tolist()
        k = 0 if np.isnan(next_t) else int(np.searchsorted(times, next_t))  # NaN: the cell's first sample
        samples = []
        while k < count:
            samples.append(k)
            k = after[k]
        flags = frame.flags[row, :count]
        if not samples:
            st.flags_since[row] |= np.bitwise_or.reduce(flags)
            return None
        ks = np.array(samples)
        # Each point carries the flags since the one before (the first also those of earlier batches).
        carried = np.bitwise_or.reduceat(flags[:ks[-1] + 1], np.concatenate([[0], ks[:-1] + 1]))
        carried[0] |= st.flags_since[row]
        st.flags_since[row] = np.bitwise_or.reduce(flags[ks[-1] + 1:])
        st.next_estimate_t[row] = t[row, ks[-1]] + self._interval
        # Each point carries the risks of the last half closed at or before it.
        closed = [(k, half) for k, half in zip(frame.half_samples, frame.halves) if half.cell == row]
        series = np.array([risks[row]] + [(half.crack_risk, half.phase_sep_risk) for _, half in closed], dtype=float)
        at = np.searchsorted([k for k, _ in closed], ks, side="right")
        return np.full(ks.size, row), ks, series[at], carried

    def _tags(self, row: int) -> dict[str, str]:
        return {TAG_CELL: self._state.cells[row], TAG_PRESET: self._state.metas[row].label}

    def _estimate_batch(self, frame: FrameOutput, t: np.ndarray, v: np.ndarray, i: np.ndarray, temp: np.ndarray,
                        due: list[_Due]) -> Batch:
        """The twin_state rows of one pass over a batch, in step order (sample, then row), as one batch."""
        st = self._state
        rows, ks, risks, flags = (np.concatenate(parts) for parts in zip(*due))
        order = np.lexsort((rows, ks))
        rows, ks, risks, flags = rows[order], ks[order], risks[order], flags[order]
        at = (rows, ks)
        first, base, capacity = frame.first_capacity_mah[at], frame.r_base[at], frame.capacity_mah[at]
        fields = {
            "v": v[at], "i": i[at], "temp_c": temp[at], "soc": frame.soc[at], "soc_std": frame.soc_std[at],
            "capacity_mah": capacity, "capacity_std_mah": frame.capacity_std_mah[at],
            "retention": np.where(np.isfinite(first), capacity / first, 1.0),
            "r0_ohm": frame.r0_ohm[at], "rct_ohm": frame.r1_ohm[at],
            "r0_std_ohm": frame.r0_std_ohm[at], "rct_std_ohm": frame.r1_std_ohm[at],
            "impedance_growth": np.where(np.isfinite(base), (frame.r0_ohm[at] + frame.r1_ohm[at]) / base - 1.0, 0.0),
            "crack_risk": risks[:, 0], "phase_sep_risk": risks[:, 1], "hysteresis": frame.hysteresis[at],
            "v_residual": frame.v_residual[at], "nis": frame.nis[at], "flags": flags,
        }
        tags = {TAG_CELL: np.array(st.cells, dtype=object)[rows],
                TAG_PRESET: np.array([meta.label for meta in st.metas], dtype=object)[rows]}
        return Batch(MEAS_STATE, t[at], tags, fields)

    def _half_points(self, halves: list[HalfCycle], batch: analytics.Batch | None = None, k: int = 0) -> list[_Out]:
        """The cycle_summary point of each closed half, its dQ/dV curve, then the alerts it
        raises. `k`: the sample of `batch` at which the halves closed (none: at the data's end)."""
        out: list[_Out] = []
        st = self._state
        for half in halves:
            st.risks[half.cell] = half.crack_risk, half.phase_sep_risk
            figures = (analytics.close(st.measured, batch, half.cell, k, half.half == "discharge")
                       if st.measured is not None else None)
            out.append(("point", self._cycle_point(half, figures)))
            if figures is not None and figures.curve_v.size:
                out.append(("batch", self._dqdv_batch(half, figures)))
            out.extend(("point", self._alert_point(a)) for a in half_cycle_alerts(st.latch, half))
        return out

    def _cycle_point(self, half: HalfCycle, figures: analytics.HalfFigures | None) -> Point:
        fields: dict[str, Any] = {name: float(getattr(half, name)) for name in _TWIN_CYCLE_FIELDS}
        fields["cycle"], fields[FIELD_PARTIAL] = int(half.cycle), bool(half.partial)
        if figures is not None:
            fields.update(figures.fields())
        return {"measurement": MEAS_CYCLE, "tags": {**self._tags(half.cell), TAG_HALF: half.half},
                "fields": fields, "time": float(half.t)}

    def _dqdv_batch(self, half: HalfCycle, figures: analytics.HalfFigures) -> Batch:
        """The half's dQ/dV curve as columns: a row per voltage bin, all at the half's end time."""
        n = figures.curve_v.size
        tags = {name: np.full(n, value, dtype=object) for name, value in self._tags(half.cell).items()}
        tags[TAG_HALF] = np.full(n, half.half, dtype=object)
        tags[TAG_VOLTAGE] = np.array([f"{v * 1000:.1f}" for v in figures.curve_v.tolist()], dtype=object)
        fields = {"cycle": np.full(n, int(half.cycle), dtype=np.int64), "v": figures.curve_v,
                  "dqdv_mah_v": figures.curve_dqdv}
        return Batch(MEAS_DQDV, np.full(n, float(half.t)), tags, fields)

    def _alert_point(self, alert: Alert) -> Point:
        return {"measurement": MEAS_ALERT, "tags": {**self._tags(alert.row), TAG_KIND: alert.kind},
                "fields": {"value": alert.value, "threshold": alert.threshold, "severity": alert.severity,
                           "message": alert.message},
                "time": alert.time}
