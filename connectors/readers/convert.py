"""Vectorised conversion of text columns: numbers, durations, timestamps.

Everything here runs as Arrow compute kernels over whole columns. A value that
does not convert becomes NaN and is flagged in the returned mask instead of
raising, so one bad cell costs one rejected row, not the file. The patterns
are RE2 (Arrow's engine): no look-around.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "as_strings",
    "numbers",
    "durations",
    "looks_like_durations",
    "looks_numeric",
    "timestamps",
    "carries_zone",
    "COMMON_DATE_FORMATS",
    "date_format",
    "parse_start",
]

_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_DURATION = (
    r"^(?:(?P<d>\d+)\s*d(?:ays?)?,?\s*)?(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d*)?)$"
)
_ISO_NAIVE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"
_ISO_ZONED = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})$"
_FRACTION = r"(?P<keep>:\d{2})(?P<f>\.\d+)"

# The non-ISO dates of spreadsheets and of cyclers whose reader names none: month-first
# (US, with or without AM/PM), day-first (Europe, with / . or -), year-first with slashes.
COMMON_DATE_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M",
)


def parse_start(text: str, formats: Sequence[str], tz: str | None) -> float | None:
    """Epoch seconds of a start time printed in a file header, or None."""
    from zoneinfo import ZoneInfo

    text = text.strip()
    for fmt in formats:
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(tz) if tz else timezone.utc)
        return moment.timestamp()
    return None


def as_strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as trimmed strings, nulls as empty strings."""
    return pc.utf8_trim_whitespace(pc.fill_null(col.cast(pa.string()), ""))


def numbers(col: pa.ChunkedArray, decimal_comma: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a mask of rows whose value is a finite number."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        values = np.where(pc.is_null(col).to_numpy(zero_copy_only=False), np.nan, values)
        return values, np.isfinite(values)
    if decimal_comma:
        col = pc.replace_substring(col, ",", ".")
    try:
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Slow path, still vectorised: only values that look like numbers are cast.
        text = as_strings(col)
        good = pc.match_substring_regex(text, _NUMBER)
        values = pc.cast(pc.if_else(good, text, "nan"), pa.float64()).to_numpy(zero_copy_only=False)
    return values, np.isfinite(values)


def durations(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of ``[Nd ]h:mm:ss[.f]`` strings (Neware, Maccor elapsed time)."""
    parts = pc.extract_regex(as_strings(col), _DURATION)
    total = np.zeros(len(col))
    for name, scale in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        piece = pc.fill_null(pc.struct_field(parts, name), "")
        piece = pc.if_else(pc.equal(piece, ""), "0", piece)
        total += pc.cast(piece, pa.float64()).to_numpy(zero_copy_only=False) * scale
    ok = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    return np.where(ok, total, np.nan), ok


def looks_like_durations(col: pa.ChunkedArray) -> bool:
    """True when most of the first values are ``h:mm:ss`` durations, not seconds."""
    if not pa.types.is_string(col.type):
        return False
    return _mostly(col, _DURATION)


def looks_numeric(col: pa.ChunkedArray, decimal_comma: bool = False) -> bool:
    """True when most of the first values are plain numbers (epoch seconds, not dates)."""
    sample = as_strings(col.slice(0, 200))
    if decimal_comma:
        sample = pc.replace_substring(sample, ",", ".")
    matches = pc.sum(pc.match_substring_regex(sample, _NUMBER)).as_py() or 0
    return matches * 2 > len(sample)


def _mostly(col: pa.ChunkedArray, pattern: str) -> bool:
    """True when most of the first values of a column match ``pattern``."""
    sample = as_strings(col.slice(0, 200))
    return (pc.sum(pc.match_substring_regex(sample, pattern)).as_py() or 0) * 2 > len(sample)


def carries_zone(col: pa.ChunkedArray) -> bool:
    """True when most of the first text timestamps end in a zone (``Z``, ``+01:00``)."""
    return _mostly(col, _ISO_ZONED)


def date_format(col: pa.ChunkedArray, formats: Sequence[str] = COMMON_DATE_FORMATS) -> tuple[str | None, bool]:
    """The one of ``formats`` that reads a column of text timestamps, and whether another read
    it as well (``03/04/2024``: 4 March or 3 April).

    One format for the whole column, so that day-first and month-first never mix; of those that
    read the most rows, the one whose largest step between rows is least: a record runs on, and
    the wrong order jumps a month at the turn of a day.
    """
    if _mostly(col, _ISO_NAIVE) or _mostly(col, _ISO_ZONED):
        return None, False
    sample = col.slice(0, 200)
    fits = [fmt for fmt in formats if timestamps(sample, (fmt,), None)[1].mean() > 0.5]
    if len(fits) < 2:  # one order reads it, or none: nothing to weigh on the whole column
        return (fits[0] if fits else None), False
    scored = []
    for fmt in fits:
        secs, ok = timestamps(col, (fmt,), None)
        steps = np.abs(np.diff(secs[ok]))
        scored.append((-int(ok.sum()), float(steps.max()) if steps.size else 0.0, fmt))
    best = min(scored)
    return best[2], sum(score[0] == best[0] for score in scored) > 1


def timestamps(col: pa.ChunkedArray, formats: Sequence[str], tz: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds of text timestamps: ISO 8601 (zoned or naive) or ``formats``.

    Naive timestamps are in ``tz`` (UTC when not given; the caller warns); the
    hour repeated when daylight saving time ends is read as its first occurrence.
    """
    text = as_strings(col)
    try:  # fast path: a clean column of naive ISO timestamps casts in one kernel call
        local = pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        utc = pc.assume_timezone(local, tz or "UTC", ambiguous="earliest", nonexistent="earliest")
        secs = pc.cast(utc, pa.int64()).to_numpy(zero_copy_only=False) / 1e6
        return secs, np.isfinite(secs)
    out = np.full(len(text), np.nan)
    pending = np.ones(len(text), dtype=bool)

    def fill(mask: np.ndarray, parsed: pa.Array) -> None:
        us = pc.cast(pc.cast(parsed, pa.timestamp("us", "UTC")), pa.int64()).to_numpy(zero_copy_only=False)
        out[mask] = us / 1e6
        pending[mask] = False

    zoned = pc.match_substring_regex(text, _ISO_ZONED).to_numpy(zero_copy_only=False)
    if zoned.any():
        subset = pc.replace_substring_regex(text.filter(pa.array(zoned)), r"\s+([Z+-][\d:]*)$", r"\1")
        fill(zoned, pc.cast(pc.replace_substring(subset, " ", "T"), pa.timestamp("us", "UTC")))
    naive = pc.match_substring_regex(text, _ISO_NAIVE).to_numpy(zero_copy_only=False)
    if naive.any():
        local = pc.cast(pc.replace_substring(text.filter(pa.array(naive)), " ", "T"), pa.timestamp("us"))
        fill(naive, pc.assume_timezone(local, tz or "UTC", ambiguous="earliest", nonexistent="earliest"))
    for fmt in formats:
        if not pending.any():
            break
        subset = text.filter(pa.array(pending))
        fraction = pc.struct_field(pc.extract_regex(subset, _FRACTION), "f")
        base = pc.replace_substring_regex(subset, _FRACTION, r"\1")
        parsed = pc.strptime(base, format=fmt, unit="us", error_is_null=True)
        hit = pc.is_valid(parsed).to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        frac = pc.cast(pc.fill_null(fraction, "0"), pa.float64()).to_numpy(zero_copy_only=False)
        local = parsed.filter(pa.array(hit))
        zoned_ts = pc.assume_timezone(local, tz or "UTC", ambiguous="earliest", nonexistent="earliest")
        rows = np.flatnonzero(pending)[hit]
        mask = np.zeros(len(text), dtype=bool)
        mask[rows] = True
        fill(mask, zoned_ts)
        out[rows] += frac[hit]
    return out, np.isfinite(out)

