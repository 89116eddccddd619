"""The real cycler files in tests/data/real, and what every file must read as to be replayed.

Shared by the reader tests of each format: time strictly increasing (the wire
refuses anything else), discharge negative (checked against the physics: the
voltage falls under discharge), and the cycler's charge counters in mAh and of
the size the current says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from connectors.readers import CellRecord

__all__ = ["REAL", "assert_wire_ready", "assert_discharge_negative", "counted_mah", "held_mah",
           "assert_counters_match_current"]

REAL = Path(__file__).resolve().parents[2] / "data" / "real"


def assert_wire_ready(record: CellRecord) -> None:
    """Time strictly increasing, voltage and current finite: every sample can go on the wire."""
    assert len(record) > 0
    assert np.all(np.diff(record.t) > 0)
    assert np.all(np.isfinite(record.v)) and np.all(np.isfinite(record.i))


def assert_discharge_negative(record: CellRecord) -> None:
    """The voltage falls where the current is negative and rises where it is positive."""
    dv, current = np.diff(record.v), record.i[1:]
    loaded = (np.abs(current) > 0.05 * np.abs(record.i).max()) & (dv != 0)
    for sign in (-1, 1):
        rows = loaded & (np.sign(current) == sign)
        if rows.any():
            assert sign * np.mean(np.sign(dv[rows])) > 0.5, f"voltage trend under current of sign {sign}"
    assert loaded.any()


def counted_mah(counter: np.ndarray) -> float:
    """Charge a counter counted over the record; a drop is a reset, after which it counts from 0."""
    c = np.nan_to_num(counter)
    step = np.diff(c)
    return float(np.sum(np.where(step >= 0, step, c[1:])))


def held_mah(record: CellRecord, sign: int) -> float:
    """Charge of one direction by the current, held at the lesser of its two ends over each
    sampling step (coarse logs catch a pulse at one end only); pauses in the record are left out."""
    dt = np.diff(record.t)
    part = np.clip(sign * record.i, 0.0, None)
    held = np.minimum(part[1:], part[:-1]) * dt
    return float(np.sum(held[dt <= 5 * np.median(dt)]) / 3.6)


def assert_counters_match_current(record: CellRecord, rel: float) -> None:
    """Both counters present, in mAh, and within ``rel`` of what the current passed."""
    assert record.charge_mah is not None and record.discharge_mah is not None
    for counter, sign in ((record.charge_mah, 1), (record.discharge_mah, -1)):
        assert counter.shape == record.t.shape and np.nanmin(counter) >= 0
        np.testing.assert_allclose(counted_mah(counter), held_mah(record, sign), rtol=rel, atol=1e-9)
