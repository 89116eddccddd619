"""Rows of one cell that share a timestamp, made into strictly increasing time.

The wire needs time to increase strictly within a cell (the pipeline refuses a
sample at or before the last one as ``stale_time``), but exports repeat
timestamps: a row written twice at a step boundary, or several rows within one
tick of a coarse clock (exports in hours with two decimals tick every 36 s).
Here, per cell and in file order:

* a row equal in every value to the row before it is a duplicate and is
  dropped (the parse report counts them);
* rows that share a timestamp but differ are all kept, spread evenly from
  their timestamp over one step of the file's time resolution (the smallest
  step between distinct times), never past the next distinct time. A clock
  that prints ``T`` for anything in ``[T, T + resolution)`` puts them there.

Nothing else moves: time that goes backwards stays as it is (the report warns).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from .model import CellRecord

__all__ = ["Repeats", "settle"]

# Time differences below this are float noise in epoch seconds, not a clock's resolution.
_NOISE_S = 1e-6


@dataclass
class Repeats:
    """What :func:`settle` did to one cell."""

    dropped: int = 0  # exact duplicate rows removed
    spread: int = 0  # rows moved off a shared timestamp
    resolution: float | None = None  # seconds, the step the spread rows were placed within


def settle(record: CellRecord) -> tuple[CellRecord, Repeats]:
    """The cell without exact duplicate rows and with no two rows at the same time."""
    arrays = _row_arrays(record)
    t = record.t
    if t.size < 2:
        return record, Repeats()
    same_time = t[1:] == t[:-1]
    if not same_time.any():
        return record, Repeats()
    duplicate = np.zeros(t.size, dtype=bool)
    duplicate[1:] = same_time & np.logical_and.reduce([_equal_to_previous(a) for a in arrays.values()])
    keep = ~duplicate
    record = replace(record, **{name: a[keep] for name, a in arrays.items()})
    t, resolution, spread = _spread(record.t)
    return replace(record, t=t), Repeats(int(duplicate.sum()), spread, resolution)


def _row_arrays(record: CellRecord) -> dict[str, np.ndarray]:
    """Every per-row array of the record (t, v, i and the optional ones it has)."""
    n = len(record)
    arrays = {f.name: getattr(record, f.name) for f in fields(record)}
    return {name: a for name, a in arrays.items() if isinstance(a, np.ndarray) and a.shape == (n,)}


def _equal_to_previous(a: np.ndarray) -> np.ndarray:
    equal = a[1:] == a[:-1]
    if np.issubdtype(a.dtype, np.floating):
        equal |= np.isnan(a[1:]) & np.isnan(a[:-1])
    return equal


def _resolution(t: np.ndarray) -> float | None:
    """A clock's resolution: the smallest step between consecutive distinct times (None: no such step)."""
    step = np.diff(t)
    distinct = step[step > _NOISE_S]
    return float(distinct.min()) if distinct.size else None


def _spread(t: np.ndarray) -> tuple[np.ndarray, float | None, int]:
    """Times with each run of equal values spread over one resolution step; the step; rows moved."""
    first = np.ones(t.size, dtype=bool)
    first[1:] = np.diff(t) != 0
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, t.size))
    tick = _resolution(t)
    if tick is None or not np.any(sizes > 1):
        return t, None, 0
    # The next distinct time after each run (inf after the last run, or when time goes back).
    following = np.append(t[starts[1:]], np.inf)
    room = following - t[starts]
    room = np.where(room > 0, np.minimum(room, tick), tick)
    run = np.repeat(np.arange(starts.size), sizes)
    position = np.arange(t.size) - starts[run]
    out = t + position * (room / sizes)[run]
    return out, tick, int(np.sum(sizes[sizes > 1] - 1))
