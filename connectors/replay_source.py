"""Archived cells back onto the wire: frames paced by their own timestamps.

A replay must look to the dataflow exactly like a cycler on line, so the twin
is validated on the code path that runs in production. This module only turns
:class:`~connectors.readers.CellRecord` arrays into wire-format frames
(ARCHITECTURE.md: ``{"cell", "t": [...], "v": [...], "i": [...]}`` plus
``temp_c`` when the file has it) and releases them when they are due:

* ``speed=1`` replays in real time, ``speed=10`` ten times faster, ``speed=None``
  ("max") as fast as the consumer takes them. Due times are the samples' own
  timestamps relative to the earliest sample of the whole replay, so cells
  recorded side by side stay side by side, and a pause in the file is a pause
  on the wire (scaled), never filled.
* A frame holds the samples that are due at once, up to ``max_frame``; at
  ``speed=None`` that is every frame, which is the fast path.

Two ways out, sharing the pacing and the frames: :class:`ReplaySource`, a
bytewax source for the embedded run (one partition per cell, each frame
through the checks of the dataflow's own decoder), and
:func:`produce`, through the simulator producer's :class:`Publisher` into
``cell.samples``, with the cell metadata first on ``cell.meta``, for a
pipeline that is already running.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.decode import check_samples, implausible
from connectors.meta import name_error
from connectors.readers import CellRecord
from connectors.sim_producer import Publisher
from connectors.wire import TOPIC_META, TOPIC_SAMPLES, CellMeta, DeadLetter, Frame, Origin, Rejected

__all__ = [
    "MAX_FRAME",
    "WireFrame",
    "Pacer",
    "parse_speed",
    "origin_of",
    "wire_frames",
    "encode",
    "ReplaySource",
    "produce",
]

WireFrame = dict[str, Any]

# Samples per frame at full speed: large enough that per-message overhead
# (JSON, Kafka record, dataflow item) is amortised, small enough that one
# frame is well under Kafka's default 1 MB message limit (~60 bytes a sample).
MAX_FRAME = 4096

# An embedded replay at full speed sends no message: its frames are larger (fewer passes of
# the twin step, each with its fixed costs), within this many samples per pass over all
# cells (the step holds cells x samples arrays), and at most _MAX_EMBEDDED_FRAME per cell.
_EMBEDDED_BUDGET = 1 << 17
_MAX_EMBEDDED_FRAME = 1 << 15

# At real-time speeds frames are released when due; a partition never sleeps
# longer than this, so a stopped dataflow notices promptly.
_MAX_NAP_S = 1.0


def parse_speed(text: str | float | None) -> float | None:
    """``"1"``, ``"10"``, any positive factor, or ``"max"`` (None: no pacing)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "max"):
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}") from None
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a positive number or 'max', not {text!r}")
    return speed


def _frame(record: CellRecord, lo: int, hi: int) -> WireFrame:
    frame: WireFrame = {
        "cell": record.cell,
        "t": record.t[lo:hi].tolist(),
        "v": record.v[lo:hi].tolist(),
        "i": record.i[lo:hi].tolist(),
    }
    # Frames are cut where the temperature appears or disappears: all or nothing here.
    if record.temp_c is not None and np.isfinite(record.temp_c[lo]):
        frame["temp_c"] = record.temp_c[lo:hi].tolist()
    return frame


def encode(frame: WireFrame) -> tuple[bytes, bytes]:
    """The Kafka (key, value) of a frame: key = cell id, value = strict JSON."""
    return frame["cell"].encode(), json.dumps(frame, allow_nan=False, separators=(",", ":")).encode()


def _frame_breaks(record: CellRecord) -> np.ndarray:
    """Indices where a frame must start, so the decoder refuses only the bad samples.

    The decoder refuses a whole frame for one sample out of order or out of the
    plausible ranges, and a frame reports a temperature for every sample or for
    none. So a new frame starts where the file's time stalls or goes back (the
    stale sample leads its frame and is refused alone), where the temperature
    appears or disappears, and around every implausible sample (a row logged in
    mV among rows in V becomes a dead letter of one sample, not of thousands).
    """
    starts = np.zeros(len(record), dtype=bool)
    starts[1:] = np.diff(record.t) <= 0
    if record.temp_c is not None:
        has_temp = np.isfinite(record.temp_c)
        starts[1:] |= has_temp[1:] != has_temp[:-1]
    bad = implausible(record.t, record.v, record.i, record.temp_c)
    starts |= bad
    starts[1:] |= bad[:-1]
    starts[0] = False
    return np.flatnonzero(starts)


class Pacer:
    """When each sample of one cell is due on the replay's clock, and its frames.

    ``origin`` is the earliest timestamp of the whole replay; a sample is due
    ``(t - origin) / speed`` seconds after the replay started (``speed=None``:
    at once). Timestamps that go backwards in the file do not pull a sample
    earlier than the one before it, so file order is kept.
    """

    def __init__(
        self, record: CellRecord, origin: float, speed: float | None, start: int = 0, max_frame: int = MAX_FRAME
    ) -> None:
        if max_frame < 1:
            raise ValueError(f"max_frame must be >= 1, got {max_frame}")
        self.record = record
        self.index = start
        self.max_frame = max_frame
        self._breaks = _frame_breaks(record)
        self._due = None if speed is None else (np.maximum.accumulate(record.t) - origin) / speed

    @property
    def done(self) -> bool:
        return self.index >= len(self.record)

    def next_due(self) -> float:
        """Replay seconds at which the next sample is due (-inf: now; inf: finished)."""
        if self.done:
            return math.inf
        return -math.inf if self._due is None else float(self._due[self.index])

    def span(self, elapsed_s: float) -> tuple[int, int] | None:
        """The samples ``[lo, hi)`` of the record due by ``elapsed_s`` replay seconds, taken
        as one frame, or None."""
        if self.done:
            return None
        lo = self.index
        hi = min(lo + self.max_frame, len(self.record))
        cut = int(np.searchsorted(self._breaks, lo, side="right"))
        if cut < self._breaks.size:
            hi = min(hi, int(self._breaks[cut]))
        if self._due is not None:
            hi = min(hi, int(np.searchsorted(self._due, elapsed_s, side="right")))
        if hi <= lo:
            return None
        self.index = hi
        return lo, hi

    def take(self, elapsed_s: float) -> WireFrame | None:
        """The frame of samples due by ``elapsed_s`` replay seconds, or None."""
        span = self.span(elapsed_s)
        return None if span is None else _frame(self.record, *span)


def origin_of(records: Sequence[CellRecord]) -> float:
    """The earliest timestamp of a replay: its clock starts there (0.0 when empty)."""
    return min((float(r.t.min()) for r in records if len(r)), default=0.0)


def wire_frames(records: Sequence[CellRecord], max_frame: int = MAX_FRAME) -> Iterator[WireFrame]:
    """Every frame of the records, cell by cell, without pacing."""
    for record in records:
        pacer = Pacer(record, 0.0, None, max_frame=max_frame)
        while (frame := pacer.take(math.inf)) is not None:
            yield frame


class ReplaySource(FixedPartitionedSource[Frame | DeadLetter, int]):
    """A bytewax source of archived cells, one partition per cell, for the embedded run.

    Every frame meets the checks the dataflow's decoder makes of the bytes
    :func:`produce` would send (:func:`~connectors.decode.check_samples`, the
    cell id), so a replay meets the same checks as live data, without the JSON
    round trip: items are :class:`~connectors.decode.Frame` or, for a frame the
    decoder refuses, a :class:`~connectors.decode.DeadLetter` whose offset is
    the index of the frame's first sample in the cell's record. The resume
    state is the index of the next sample, so a recovered replay continues
    where its last snapshot was taken.

    :arg records: the cells to replay (names must be unique).
    :arg speed: replay speed factor, or None for as fast as possible.
    :arg max_frame: most samples in one frame (default: MAX_FRAME when paced; at full speed
        more, the fewer the cells).
    """

    def __init__(self, records: Sequence[CellRecord], speed: float | None = None, max_frame: int | None = None) -> None:
        names = [r.cell for r in records]
        if len(set(names)) != len(names):
            raise ValueError(f"cell names in a replay must be unique, got {names}")
        self._records = {r.cell: r for r in records}
        self._origin = origin_of(records)
        self._speed = speed
        if max_frame is None:
            wide = min(max(_EMBEDDED_BUDGET // max(len(records), 1), MAX_FRAME), _MAX_EMBEDDED_FRAME)
            max_frame = MAX_FRAME if speed is not None else wide
        self._max_frame = max_frame

    def list_parts(self) -> list[str]:
        return list(self._records)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ReplayPartition:
        pacer = Pacer(self._records[for_part], self._origin, self._speed, resume_state or 0, self._max_frame)
        return _ReplayPartition(pacer, list(self._records).index(for_part))


class _ReplayPartition(StatefulSourcePartition[Frame | DeadLetter, int]):
    def __init__(self, pacer: Pacer, number: int) -> None:
        self._pacer = pacer
        self._number = number
        # A resumed partition continues at its next sample instead of bursting to catch up.
        ahead = pacer.next_due()
        self._t0 = time.monotonic() - (ahead if math.isfinite(ahead) else 0.0)
        self._awake: datetime | None = None

    def next_batch(self) -> list[Frame | DeadLetter]:
        if self._pacer.done:
            raise StopIteration
        span = self._pacer.span(time.monotonic() - self._t0)
        wait = self._pacer.next_due() - (time.monotonic() - self._t0)
        self._awake = None
        # Once the last frame is out, the end is due at once (not a nap later).
        if not self._pacer.done and (span is None or wait > 0):
            nap = min(max(wait, 0.0), _MAX_NAP_S)
            self._awake = datetime.now(timezone.utc) + timedelta(seconds=nap)
        return [] if span is None else [self._decoded(*span)]

    def _decoded(self, lo: int, hi: int) -> Frame | DeadLetter:
        """What the decoder makes of the bytes `produce` would send for samples ``[lo, hi)``,
        checked on the arrays themselves (JSON gives back the very floats it was given):
        the bytes are made only for a dead letter."""
        record = self._pacer.record
        origin = Origin(TOPIC_SAMPLES, self._number, lo, record.cell.encode())
        temp = record.temp_c[lo:hi] if record.temp_c is not None and np.isfinite(record.temp_c[lo]) else None
        try:
            problem = name_error("'cell'", record.cell)
            if problem:
                raise Rejected("bad_cell_id", problem)
            data = check_samples(record.t[lo:hi], record.v[lo:hi], record.i[lo:hi], temp)
        except Rejected as rejected:
            payload = json.dumps(_frame(record, lo, hi), separators=(",", ":")).encode()
            return DeadLetter(rejected.reason, rejected.error, origin, payload,
                              None if rejected.reason == "bad_cell_id" else record.cell)
        return Frame(record.cell, data[0], data[1], data[2], data[3], origin)

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._pacer.index


def produce(
    records: Sequence[CellRecord],
    publisher: Publisher,
    metas: Mapping[str, CellMeta],
    *,
    speed: float | None = None,
    max_frame: int = MAX_FRAME,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send a replay into Kafka: each cell's metadata to ``cell.meta``, then the frames.

    The metadata is acknowledged before any sample is sent, so the running
    pipeline never sees a sample of a cell it has no mass for. Frames of all
    cells are interleaved in due order. Returns the number of samples sent once
    every record is acknowledged (the publisher raises the first failure).
    ``progress`` is called with the sample count of each sent frame.
    """
    missing = [r.cell for r in records if r.cell not in metas]
    if missing:
        raise ValueError(f"no metadata for cell(s) {missing}: the pipeline would dead-letter their samples")
    publisher.send(TOPIC_META, [(r.cell.encode(), metas[r.cell].to_json()) for r in records])
    publisher.flush()
    origin = origin_of(records)
    pacers = [Pacer(r, origin, speed, max_frame=max_frame) for r in records]
    sent = 0
    t0 = time.monotonic()
    while pacers:
        elapsed = time.monotonic() - t0
        for pacer in pacers:
            frame = pacer.take(elapsed)
            if frame is not None:
                publisher.send(TOPIC_SAMPLES, [encode(frame)])
                sent += len(frame["t"])
                if progress:
                    progress(len(frame["t"]))
        pacers = [p for p in pacers if not p.done]
        wait = min((p.next_due() for p in pacers), default=0.0) - (time.monotonic() - t0)
        if wait > 0:
            time.sleep(min(wait, _MAX_NAP_S))
    publisher.flush()
    return sent

