"""Turn raw Kafka records into validated frames of samples, metadata, or dead letters.

Everything a bad producer can send is caught here, before any state is touched, and
goes to the dead-letter topic with a short machine-readable `reason` and a sentence
for a person: a lab debugging a cycler export reads the latter, a dashboard counts
the former. Nothing valid is dropped: a record is either a `Frame`, a `CellMeta`, or
a `DeadLetter` carrying its position and (a prefix of) its bytes.

What counts as implausible is what no cycler channel reports for these cells:

- voltage outside -1 .. 6 V (the widest lab cycler ranges; the electrode lives at
  0.3 .. 1.0 V, and voltages between 6 V and that window are the twin's business,
  where they are flagged, not discarded),
- |current| above 100 A (far beyond any channel for mg-scale electrodes; catches
  milliamperes sent as amperes for everything above 0.1 A),
- temperature outside -60 .. 400 C,
- time before the epoch or after year 5000 (`t` in milliseconds is the usual cause).

Time must increase strictly within a frame here; against the cell's last accepted
sample it is checked in the twin step, which holds that state. Cell ids follow
`connectors.meta.name_error` (reason `bad_cell_id`).

No record stops the pipeline: whatever a record makes the decoder raise (JSON nested
past the parser's depth, a number too large for a float, anything not foreseen here)
becomes a dead letter, and a dead letter is cut to at most `MAX_DEADLETTER_BYTES`
(JSON-escaped: a non-ASCII character takes up to 12 bytes) and its Kafka key to
`MAX_DEADLETTER_KEY_BYTES`, well below the broker's default 1 MiB limit on a record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from connectors.meta import V_RANGE, meta_from_mapping, name_error, shown
from connectors.wire import (
    MAX_MESSAGE_BYTES, TOPIC_META, CellMeta, DeadLetter, Decoded, Frame, KafkaMessage, MetaError, Origin, Rejected,
    json_loads,
)

__all__ = [
    "MAX_ABS_CURRENT_A",
    "TEMP_RANGE_C",
    "T_RANGE_S",
    "check_samples",
    "implausible",
    "decode_message",
    "decode_samples",
    "decode_meta",
]

MAX_ABS_CURRENT_A = 100.0
TEMP_RANGE_C = (-60.0, 400.0)
T_RANGE_S = (0.0, 1.0e11)


def _origin(msg: KafkaMessage) -> Origin:
    return Origin(msg.topic, msg.partition, msg.offset, msg.key)


def _object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise Rejected("not_json", "empty record (no value)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise Rejected("oversized", f"record of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        body = json_loads(value)
    except RecursionError:
        raise Rejected("not_json", "JSON nested deeper than the parser follows") from None
    except ValueError as error:  # also: not UTF-8, an integer of more than 4300 digits
        raise Rejected("not_json", f"not JSON: {error}") from None
    if not isinstance(body, dict):
        raise Rejected("not_object", f"expected a JSON object, got {type(body).__name__}")
    return body


def _cell(body: dict[str, Any], key: bytes | None) -> str:
    if "cell" not in body:
        raise Rejected("missing_field", "missing field 'cell'")
    cell = body["cell"]
    problem = name_error("'cell'", cell)
    if problem:
        raise Rejected("bad_cell_id" if isinstance(cell, str) else "wrong_type", problem)
    if key is not None and key != cell.encode():
        raise Rejected("key_mismatch", f"record key {shown.repr(key.decode('utf-8', 'replace'))} is not its cell {cell!r}")
    return cell


_NUMBER_TYPES = {int, float}


def _numbers(body: dict[str, Any], name: str, frame: bool) -> np.ndarray:
    value = body[name]
    if frame != isinstance(value, list):
        shape = "an array (the record is a frame: 't' is an array)" if frame else "a number"
        raise Rejected("wrong_type", f"'{name}' must be {shape}, got {type(value).__name__}")
    items = value if frame else [value]
    kinds = set(map(type, items))  # JSON gives exact types; one pass in C
    if not kinds <= _NUMBER_TYPES:
        if bool in kinds:
            raise Rejected("wrong_type", f"'{name}' must hold numbers, not true/false")
        bad = next(x for x in items if type(x) not in _NUMBER_TYPES)
        raise Rejected("wrong_type", f"'{name}' must hold numbers, got {type(bad).__name__} {shown.repr(bad)}")
    try:
        return np.array(items, dtype=float)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise Rejected("not_finite", f"'{name}' holds an integer too large for a float") from None


# Checked per row of a frame stacked as [t, v, i, temp_c]: name, bounds, reason, unit hint.
_ROWS = ("t", "v", "i", "temp_c")
_LOW = np.array([T_RANGE_S[0], V_RANGE[0], -MAX_ABS_CURRENT_A, TEMP_RANGE_C[0]])[:, None]
_HIGH = np.array([T_RANGE_S[1], V_RANGE[1], MAX_ABS_CURRENT_A, TEMP_RANGE_C[1]])[:, None]
_RANGE_REASONS = (("time_range", " s since the epoch (milliseconds?)"), ("voltage_range", " V"),
                  ("current_range", " A"), ("temperature_range", " C"))


def _check_values(data: np.ndarray, temp_given: bool) -> None:
    """Finite, then within range, row by row; a few numpy calls for the whole frame,
    which is what single-sample records spend most of their decoding on."""
    rows = 4 if temp_given else 3  # an unreported temperature is NaN, and that is fine
    finite = np.isfinite(data[:rows])
    if not finite.all():
        row, k = np.unravel_index(int(np.argmin(finite)), finite.shape)
        raise Rejected("not_finite", f"{_ROWS[row]}{_at(k, data)} is {data[row, k]}")
    outside = (data < _LOW) | (data > _HIGH)  # NaN compares false: passes
    if outside.any():
        row, k = np.unravel_index(int(np.argmax(outside)), outside.shape)
        reason, hint = _RANGE_REASONS[row]
        raise Rejected(reason, f"{_ROWS[row]} = {data[row, k]:g}{_at(k, data)} is outside "
                               f"{_LOW[row, 0]:g} .. {_HIGH[row, 0]:g}{hint}")


def implausible(t: np.ndarray, v: np.ndarray, i: np.ndarray, temp_c: np.ndarray | None = None) -> np.ndarray:
    """Which samples lie outside the plausible ranges the decoder holds every frame to
    (a temperature not reported, NaN, is no fault): the ones a replay's frames send to
    the dead letters, and that nothing learned from the file may rest on."""
    data = np.vstack([t, v, i, np.full(np.shape(t), np.nan) if temp_c is None else temp_c])
    return ((data < _LOW) | (data > _HIGH)).any(axis=0)


def _at(k: int, data: np.ndarray) -> str:
    """Which sample, where there are several to tell apart."""
    return f" at sample {k}" if data.shape[1] > 1 else ""


def check_samples(
    t: np.ndarray, v: np.ndarray, i: np.ndarray, temp_c: np.ndarray | float | None = None, *,
    after: float | None = None,
) -> np.ndarray:
    """The samples of one cell as rows ``[t, v, i, temp_c]`` (temperature NaN where not
    reported), or :class:`Rejected` naming the first problem: lengths, finite values,
    the plausible ranges, strictly increasing time (also past ``after``, the time of the
    cell's previous sample, where the caller knows it). What the pipeline's decoder
    checks of every frame, and what a producer checks before it sends."""
    if not (t.size == v.size == i.size):
        raise Rejected("length_mismatch", f"t, v and i have {t.size}, {v.size} and {i.size} values")
    if t.size == 0:
        raise Rejected("empty_frame", "frame without samples")
    if np.ndim(temp_c) and np.size(temp_c) != t.size:
        raise Rejected("length_mismatch", f"temp_c has {np.size(temp_c)} values for {t.size} samples")
    data = np.empty((4, t.size))
    data[0], data[1], data[2], data[3] = t, v, i, np.nan if temp_c is None else temp_c
    _check_values(data, temp_c is not None)
    if after is not None and t[0] <= after:
        raise Rejected("time_order", f"t = {t[0]:.3f} is not after the previous sample's {after:.3f}: "
                                     "samples must be in time order")
    if t.size > 1:
        steps = np.diff(t)
        if (steps <= 0).any():
            k = int(np.argmax(steps <= 0)) + 1
            what = "repeats" if steps[k - 1] == 0 else f"goes back to {t[k]:.3f} after"
            raise Rejected("time_order", f"t {what} {t[k - 1]:.3f} at sample {k}: samples must be in time order")
    return data


_T_LOW, _T_HIGH = T_RANGE_S
_V_LOW, _V_HIGH = V_RANGE
_TEMP_LOW, _TEMP_HIGH = TEMP_RANGE_C


def _plain_sample(body: dict[str, Any], cell: str, origin: Origin) -> Frame | None:
    """A well-formed single-sample record, checked in plain Python: numbers (not true/false)
    within range, temperature optional. None for anything else, which the full checks of
    `_frame` then name (NaN and infinities fail the comparisons here, so they go there too).
    Single-sample records spend most of their decoding on numpy's per-call overhead."""
    t, v, i, temp = body.get("t"), body.get("v"), body.get("i"), body.get("temp_c")
    if not (type(t) in _NUMBER_TYPES and type(v) in _NUMBER_TYPES and type(i) in _NUMBER_TYPES
            and _T_LOW <= t <= _T_HIGH and _V_LOW <= v <= _V_HIGH and -MAX_ABS_CURRENT_A <= i <= MAX_ABS_CURRENT_A):
        return None
    if temp is None:
        temp = np.nan
    elif not (type(temp) in _NUMBER_TYPES and _TEMP_LOW <= temp <= _TEMP_HIGH):
        return None
    data = np.array([[t], [v], [i], [temp]], dtype=float)
    return Frame(cell, data[0], data[1], data[2], data[3], origin)


def _frame(body: dict[str, Any], cell: str, origin: Origin) -> Frame:
    sample = _plain_sample(body, cell, origin)
    if sample is not None:
        return sample
    for name in ("t", "v", "i"):
        if name not in body:
            raise Rejected("missing_field", f"missing field {name!r}")
    frame = isinstance(body["t"], list)
    t, v, i = (_numbers(body, name, frame) for name in ("t", "v", "i"))
    temp = None
    if body.get("temp_c") is not None:
        temp = (_numbers(body, "temp_c", True) if isinstance(body["temp_c"], list)
                else _numbers(body, "temp_c", False)[0])
    data = check_samples(t, v, i, temp)
    return Frame(cell, data[0], data[1], data[2], data[3], origin)


def _unforeseen(error: Exception) -> Rejected:
    """Whatever else a record made the decoder raise: a dead letter, never the end of the run."""
    try:
        text = shown.repr(str(error))
    except Exception:  # noqa: BLE001 (a message that cannot even be shown)
        text = "(no message)"
    return Rejected("undecodable", f"the record could not be decoded: {type(error).__name__}: {text}")


def decode_samples(msg: KafkaMessage) -> Frame | DeadLetter:
    """A record of `cell.samples` (one sample or a frame) -> Frame, or why not."""
    origin, cell = _origin(msg), None
    try:
        body = _object(msg.value)
        cell = _cell(body, msg.key)
        return _frame(body, cell, origin)
    except Exception as error:  # noqa: BLE001 (see _unforeseen)
        rejected = error if isinstance(error, Rejected) else _unforeseen(error)
        return DeadLetter(rejected.reason, rejected.error, origin, msg.value, cell)


def decode_meta(msg: KafkaMessage) -> CellMeta | DeadLetter:
    """A record of `cell.meta` -> CellMeta, or why not."""
    origin, cell = _origin(msg), None
    try:
        if msg.value is None:
            raise Rejected("bad_meta", "metadata tombstone: removing a cell's metadata is not supported, "
                                      "publish corrected metadata instead")
        body = _object(msg.value)
        cell = _cell(body, msg.key)
        return meta_from_mapping(cell, body)
    except MetaError as error:
        return DeadLetter("bad_meta", str(error), origin, msg.value, cell)
    except Exception as error:  # noqa: BLE001 (see _unforeseen)
        rejected = error if isinstance(error, Rejected) else _unforeseen(error)
        return DeadLetter(rejected.reason, rejected.error, origin, msg.value, cell)


def decode_message(msg: KafkaMessage) -> Decoded:
    """Dispatch on the topic: metadata records, everything else as samples."""
    return decode_meta(msg) if msg.topic == TOPIC_META else decode_samples(msg)
