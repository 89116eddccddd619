r"""InfluxDB line protocol for the sink's batches (:class:`connectors.wire.Batch`), each row
byte for byte what influxdb-client's ``Point.to_line_protocol`` gives for it (tests compare
the two), at a fraction of its cost.

Why not ``Point``: it spends ~55 us per twin_state point on generic type dispatch and
re-escaping the same names, 60 % of the InfluxDB sink's time in the pipeline profile.
Here the work goes column by column: a field's name is escaped and its type looked at once
per batch, its values formatted in one pass (floats by orjson, which writes them as repr
does); tag sets, which repeat on every row of a cell, are escaped once and cached. Only
object columns (strings, values missing from some rows) dispatch on each value's type.

Rules kept from the client: tags sorted by key, empty or None tags left out; fields
sorted by name, None and non-finite floats left out (line protocol cannot carry them),
whole floats without their ".0", integers with an ``i`` suffix; a point without fields
is no line at all. Time is in milliseconds.

One rule differs: a tag value with a backslash, tab or line break is refused
(ValueError), where the client writes a line the store reads wrongly or drops with a
204. Commas, spaces and equals signs are escaped with a backslash, and InfluxDB reads
any of them after a backslash as escaped; VictoriaMetrics reads ``\\`` as one
backslash. So ``x\,y`` or a trailing backslash cannot be written the same for both
(the client's trailing space makes a value InfluxDB reads as ending in a space), and the
tab and line-break escapes are not unescaped in tag values at all. Cell ids and electrode
labels, the tag values that come from outside, are checked against this before they get
here (`connectors.meta.name_error`).
"""

from __future__ import annotations

import math
import numbers
import re
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from connectors.wire import Batch

__all__ = ["lines"]

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_KEY = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\"})
_UNWRITABLE_TAG = re.compile(r"[\\\t\n\r]")
_WHOLE = re.compile(r"\.0(?=,|$)")  # a whole float's ".0", which the client leaves out


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    return name.translate(_KEY)


@lru_cache(maxsize=65536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """`measurement,tag=value,...` followed by the space before the fields."""
    parts = [measurement.translate(_MEASUREMENT)]
    for name, value in sorted(tags):
        if _UNWRITABLE_TAG.search(value):
            raise ValueError(f"tag {name}={value!r}: a backslash, tab or line break in a tag value cannot be "
                             "written so that InfluxDB and VictoriaMetrics both read it back")
        key, text = _key(name), value.translate(_KEY)
        if key and text:
            parts.append(f"{key}={text}")
    return ",".join(parts) + " "


def _field(key: str, value: Any) -> str | None:
    """`key=value` with `key` already escaped; None for what line protocol cannot carry."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            return None
        text = repr(value)
        return f"{key}={text[:-2] if text.endswith('.0') else text}"
    if kind is int:
        return f"{key}={value}i"
    if kind is bool:
        return f"{key}={'true' if value else 'false'}"
    if kind is str:
        return f'{key}="{value.translate(_STRING)}"'
    if value is None:
        return None
    if isinstance(value, numbers.Integral):  # numpy integers and floats
        return _field(key, int(value))
    if isinstance(value, numbers.Real):
        return _field(key, float(value))
    raise TypeError(f"field {key!r}: {kind.__name__} cannot be written (float, int, bool or str)")


def _column(key: str, column: np.ndarray) -> tuple[list[str | None], np.ndarray | None]:
    """`key=value` of every row of a field (`key` escaped), None where there is no value, and
    which rows those are (None if every row has one)."""
    kind = column.dtype.kind
    if not column.size:
        return [], None
    if kind == "f":
        values = np.ascontiguousarray(column, dtype=float)  # orjson reads only contiguous arrays
        # orjson writes a float as repr does (shortest round trip) where repr uses no exponent,
        # 18x faster; elsewhere (and for zeros: -0.0) repr itself. One string for the column.
        prefix = key + "="
        written = _WHOLE.sub("", orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode())
        texts: list[str | None] = list(map(prefix.__add__, written.split(",")))
        magnitude = np.abs(values)
        for row in np.flatnonzero((magnitude < 1e-4) | (magnitude >= 1e16)).tolist():
            texts[row] = prefix + repr(float(values[row])).removesuffix(".0")
        missing = ~np.isfinite(column)
        if not missing.any():
            return texts, None
        for row in np.flatnonzero(missing).tolist():
            texts[row] = None
        return texts, missing
    if kind in "iu":
        return [f"{key}={value}i" for value in column.tolist()], None
    if kind == "b":
        return [f"{key}=true" if value else f"{key}=false" for value in column.tolist()], None
    texts = [_field(key, value) for value in column.tolist()]
    missing = np.array([text is None for text in texts], dtype=bool)
    return texts, missing if missing.any() else None


def lines(batch: Batch) -> list[str]:
    """The lines of a batch in row order; a row left without fields gives none."""
    names = list(batch.tags)
    prefixes: dict[tuple, str] = {}
    series = []
    tag_rows = zip(*(column.tolist() for column in batch.tags.values())) if names else [()] * len(batch)
    for values in tag_rows:
        prefix = prefixes.get(values)
        if prefix is None:
            tags = tuple((name, str(value)) for name, value in zip(names, values) if value is not None)
            prefix = prefixes[values] = _series(batch.measurement, tags)
        series.append(prefix)
    columns = [_column(_key(name), batch.fields[name]) for name in sorted(batch.fields)]
    gaps = np.zeros(len(batch), dtype=bool)
    for _, missing in columns:
        if missing is not None:
            gaps |= missing
    times = np.rint(batch.time.astype(float, copy=False) * 1000).astype(np.int64).tolist()
    out = []
    # Most rows have every field: joined as they are; the others without their missing ones.
    for prefix, parts, ms, gap in zip(series, zip(*(texts for texts, _ in columns)), times, gaps.tolist()):
        body = ",".join([part for part in parts if part is not None] if gap else parts)
        if body:
            out.append(f"{prefix}{body} {ms}")
    return out
