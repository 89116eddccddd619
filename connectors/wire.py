"""What crosses a process boundary, defined once: names and record types.

Topics, InfluxDB measurements, their tags and fields, the local output files and the
alert thresholds, and the records that travel between processes (a raw Kafka record, a
frame of samples, a cell's metadata, a dead letter) live here, so that producers, the
dataflow, the sinks, the Grafana dashboards, the alert rules and the HTML report all
import the same definitions (a renamed field breaks the build, not a dashboard in
production). Both ``connectors/`` and ``pipeline/`` import this module; it imports only
the twin's parameter, forecast and analytics modules (never the estimator), so a producer
script stays light. How records are checked and decoded is ``connectors.decode`` and
``connectors.meta``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import orjson

from twin.analytics import FIELDS as _ANALYTICS_FIELDS
from twin.forecast import RETENTION_FLOOR, RISK_AT_FLOOR
from twin.generic import DEFAULT_TAU_S, generic_params
from twin.params import CellParams, preset

__all__ = [
    "TOPIC_SAMPLES",
    "TOPIC_META",
    "TOPIC_DEADLETTER",
    "TOPIC_TWIN",
    "TOPIC_ALERTS",
    "TOPIC_PARTITIONS",
    "MEAS_STATE",
    "MEAS_CYCLE",
    "MEAS_ALERT",
    "MEAS_HEALTH",
    "MEAS_DQDV",
    "TAG_CELL",
    "TAG_PRESET",
    "TAG_HALF",
    "TAG_KIND",
    "TAG_VOLTAGE",
    "STATE_FIELDS",
    "CYCLE_FIELDS",
    "ANALYTICS_FIELDS",
    "DQDV_FIELDS",
    "FIELD_PARTIAL",
    "ALERT_FIELDS",
    "HEALTH_FIELDS",
    "OUT_ESTIMATES",
    "OUT_CYCLES",
    "OUT_ALERTS",
    "OUT_DQDV",
    "OUT_DEADLETTER",
    "OUT_REPORT",
    "OUT_UNDELIVERED",
    "AlertThresholds",
    "THRESHOLDS",
    "MAX_MESSAGE_BYTES",
    "FRAME_ROWS",
    "MAX_PAYLOAD_CHARS",
    "MAX_DEADLETTER_BYTES",
    "MAX_DEADLETTER_KEY_BYTES",
    "GENERIC",
    "KafkaMessage",
    "Origin",
    "Frame",
    "CellMeta",
    "MetaError",
    "DeadLetter",
    "Rejected",
    "Decoded",
    "Point",
    "Batch",
    "batches",
    "frame_rows",
]

# Kafka topics (key = cell id on every per-cell topic).
TOPIC_SAMPLES = "cell.samples"
TOPIC_META = "cell.meta"  # compacted: key = cell id, value = CellMeta JSON
TOPIC_DEADLETTER = "cell.deadletter"
TOPIC_TWIN = "cell.twin"
TOPIC_ALERTS = "cell.alerts"
# Partitions of the topics celltwin creates where they do not exist yet (existing ones are kept).
TOPIC_PARTITIONS = {TOPIC_SAMPLES: 8, TOPIC_META: 1, TOPIC_TWIN: 8, TOPIC_ALERTS: 1, TOPIC_DEADLETTER: 1}

# InfluxDB measurements. Timestamps are sample times, so re-writing is idempotent.
MEAS_STATE = "twin_state"
MEAS_CYCLE = "cycle_summary"
MEAS_ALERT = "twin_alert"
MEAS_HEALTH = "pipeline_health"
MEAS_DQDV = "dqdv"  # the dQ/dV curve of each half-cycle: one point per voltage bin

TAG_CELL = "cell"
TAG_PRESET = "preset"
TAG_HALF = "half"  # "discharge" | "charge" on cycle_summary
TAG_KIND = "kind"  # alert kind on twin_alert
TAG_VOLTAGE = "v_mv"  # bin centre in mV on dqdv: each bin its own series, all at the half's end time

# Per-sample estimate (rate-limited per cell), measurement twin_state.
STATE_FIELDS: tuple[str, ...] = (
    "v",  # measured voltage, V
    "i",  # measured current, A (lithiation negative)
    "temp_c",  # cell temperature, C
    "soc",  # state of charge 0..1 (1 = delithiated / charged)
    "soc_std",  # one standard deviation of soc
    "capacity_mah",  # tracked reversible capacity, mAh
    "capacity_std_mah",  # one standard deviation of capacity_mah
    "retention",  # capacity_mah / the twin's capacity at the cell's first reversible half-cycle
    "r0_ohm",  # ohmic resistance at 130 C reference
    "rct_ohm",  # charge-transfer + interphase resistance at reference
    "r0_std_ohm",  # one standard deviation of r0_ohm
    "rct_std_ohm",  # one standard deviation of rct_ohm
    "impedance_growth",  # (r0 + rct) / own baseline - 1
    "crack_risk",  # 0..1
    "phase_sep_risk",  # 0..1
    "hysteresis",  # hysteresis state -1 (lithiation branch) .. +1 (delithiation)
    "v_residual",  # measured - predicted voltage, V
    "nis",  # normalised innovation squared, running mean
    "flags",  # integer: bit-OR of twin.estimator FLAG_* over the samples since the previous point
)

# One point per half-cycle, measurement cycle_summary (tags cell, preset, half).
CYCLE_FIELDS: tuple[str, ...] = (
    "cycle",
    "capacity_mah",  # coulomb-counted capacity of this half-cycle
    "capacity_mah_g",  # the same per gram of hydride
    "expected_mah_g",  # the twin's prediction of this half's charge, from its start to the cut-off
    "coulombic_efficiency",  # on charge halves: charge / preceding discharge
    "measured_retention",  # capacity_mah / the counted capacity of the cell's first reversible half
    #                        of the same kind at the same C-rate (NaN without such a reference)
    "retention",  # the twin's: its capacity at this half's rate / the same at that reference
    "twin_capacity_mah",  # the twin's reversible capacity estimate at the end of the half
    "twin_capacity_std_mah",  # one standard deviation of twin_capacity_mah
    "impedance_growth",
    "crack_risk",
    "phase_sep_risk",
    "fade_per_cycle",  # recent capacity fade rate, fraction per cycle
    "c_rate",
    "nis",
    "eol_cycles",  # forecast cycles from this half until the retention reaches the floor (median) ...
    "eol_low",  # ... and its 90 % interval (5th, 95th percentile); NaN while unknown,
    "eol_high",  #     HORIZON_CYCLES (1000) means at least that (twin.forecast)
    "r0_ohm",  # the twin's R0 at the end of the half (130 C reference), beside pulse_r_ohm
    "rct_ohm",  # the twin's R_ct, the same
    "partial",  # bool: closed by the end of the data before its cut-off (no alert judges it)
) + _ANALYTICS_FIELDS
FIELD_PARTIAL = "partial"
# Of those, measured from the data alone (twin.analytics; README "Output columns" says how):
# energy, mean voltage, energy efficiency and hysteresis (charge halves), up to three dQ/dV
# peaks (voltage, height, time at that plateau), pulse resistance from current steps.
ANALYTICS_FIELDS: tuple[str, ...] = _ANALYTICS_FIELDS

# The dQ/dV curve of each half, measurement dqdv (tags cell, preset, half, v_mv).
DQDV_FIELDS: tuple[str, ...] = ("cycle", "v", "dqdv_mah_v")

# One point per alert, measurement twin_alert (tags cell, preset, kind).
ALERT_FIELDS: tuple[str, ...] = ("value", "threshold", "severity", "message")

# Pipeline self-observation, measurement pipeline_health (tag worker).
HEALTH_FIELDS: tuple[str, ...] = (
    "samples",
    "deadletters",
    "write_errors",
    "consumer_lag",
    "stalled_s",  # the longest broker or store outage since the previous point
)

# Local output folder of `celltwin run` / `celltwin replay`.
OUT_ESTIMATES = "estimates.parquet"
OUT_CYCLES = "cycles.parquet"
OUT_ALERTS = "alerts.parquet"
OUT_DQDV = "dqdv.parquet"
OUT_DEADLETTER = "deadletter.jsonl"
OUT_UNDELIVERED = "deadletter-undelivered.jsonl"  # dead letters the broker refused (also without --out: ./)
OUT_REPORT = "report.html"


@dataclass(frozen=True)
class AlertThresholds:
    """Alert limits shared by the in-stream alerts and the Grafana alert rules."""

    crack_risk: float = RISK_AT_FLOOR  # risk scale: 0.7 = on course to the floor in 100 cycles
    phase_sep_risk: float = RISK_AT_FLOOR
    retention_floor: float = RETENTION_FLOOR
    eol_horizon_cycles: float = 20.0  # the forecast's lower bound (eol_low) of cycles to the floor
    fade_rate_jump: float = 0.01  # fraction of capacity lost per cycle
    impedance_growth: float = 0.5  # +50 % over the cell's own baseline
    temp_low_c: float = 120.0  # LiBH4 loses its conduction below ~107 C
    temp_high_c: float = 140.0
    silent_after_s: float = 300.0  # a cell on test that sends nothing this long
    deadletter_burst_per_min: float = 10.0


THRESHOLDS = AlertThresholds()

# Limits of a record on the wire.
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: larger records are refused unread
FRAME_ROWS = 1000  # rows of a cell.twin frame at most: ~0.45 MB of twin_state
MAX_PAYLOAD_CHARS = 64 * 1024  # what a dead letter keeps of the record
MAX_DEADLETTER_BYTES = 256 * 1024  # a dead letter's JSON as a whole, after escaping
MAX_DEADLETTER_KEY_BYTES = 1024  # its Kafka key (the cell id, else the record's key cut short)
_KEY_TEXT_BYTES, _ERROR_BYTES = 1024, 16 * 1024  # the dead letter's "key" and "error", escaped
GENERIC = "generic"  # the electrode label of cells of another chemistry


@dataclass(frozen=True)
class KafkaMessage:
    """One record as read from Kafka, undecoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int  # record timestamp: producer create time unless the topic says otherwise
    replayed: bool = False  # read again from the start of a table topic: seen by an earlier run


@dataclass(frozen=True)
class Origin:
    """Where a record came from: enough to find it again in Kafka."""

    topic: str | None
    partition: int | None
    offset: int | None
    key: bytes | None


@dataclass(frozen=True)
class Frame:
    """Samples of one cell in time order. `temp_c` is NaN where none was reported."""

    cell: str
    t: np.ndarray
    v: np.ndarray
    i: np.ndarray
    temp_c: np.ndarray
    origin: Origin | None = None

    def __len__(self) -> int:
        return int(self.t.size)

    def select(self, index: np.ndarray | slice) -> "Frame":
        return Frame(self.cell, self.t[index], self.v[index], self.i[index], self.temp_c[index], self.origin)

    def to_json(self) -> bytes:
        """The frame in the wire format (temperature only where it was reported)."""
        body: dict[str, Any] = {"cell": self.cell, "t": self.t.tolist(), "v": self.v.tolist(), "i": self.i.tolist()}
        if np.isfinite(self.temp_c).any():
            body["temp_c"] = [x if math.isfinite(x) else None for x in self.temp_c.tolist()]
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class DeadLetter:
    """A record the twin could not use, and why. `to_json` is the dead-letter message."""

    reason: str
    error: str
    origin: Origin | None
    payload: bytes | None
    cell: str | None = None

    def to_json(self) -> bytes:
        """At most MAX_DEADLETTER_BYTES: key, error and payload are cut to their shares if needed."""
        origin = self.origin or Origin(None, None, None, None)
        key = None if origin.key is None else origin.key[:4 * _KEY_TEXT_BYTES].decode("utf-8", "replace")
        fixed = json.dumps({"reason": self.reason, "topic": origin.topic, "partition": origin.partition,
                            "offset": origin.offset}, separators=(",", ":"))
        payload_budget = MAX_DEADLETTER_BYTES - len(fixed) - _KEY_TEXT_BYTES - _ERROR_BYTES - 64
        return (f'{fixed[:-1]},"error":{_escaped(self.error, _ERROR_BYTES)},"key":{_escaped(key, _KEY_TEXT_BYTES)},'
                f'"payload":{_escaped(_payload_text(self.payload), payload_budget)}}}').encode()

    def kafka_key(self) -> bytes | None:
        """The dead letter's Kafka key: its cell, else the record's own key, cut short."""
        key = self.cell.encode("utf-8", "replace") if self.cell else (self.origin.key if self.origin else None)
        return None if key is None else key[:MAX_DEADLETTER_KEY_BYTES]


class MetaError(ValueError):
    """Metadata that cannot describe a cell; the message says what to fix."""


@dataclass(frozen=True)
class CellMeta:
    """One cell: its electrode (a preset name, a composition, or a generic cell of another
    chemistry with its capacity, window and learned OCV table), mass, nominal rate."""

    cell: str
    mass_mg: float | None  # hydride mass; optional only for generic cells
    preset: str | None = None
    composition: str | None = None
    c_rate: float | None = None  # nominal C-rate of its test plan (informational)
    generic: dict | None = None  # {"capacity_mah", "v_min", "v_max", "ocv": [[...], [...]], "r_ohm", "tau_diff_s"}

    @property
    def label(self) -> str:
        """The electrode as written in the metadata: the `preset` tag of every output."""
        return GENERIC if self.generic else (self.preset or self.composition or "")

    def params(self) -> CellParams:
        """The twin's parameters for this cell."""
        if self.generic:
            g = self.generic
            return generic_params(self.cell, g["capacity_mah"], g["v_min"], g["v_max"], np.array(g["ocv"]),
                                  g.get("r_ohm", 0.05), self.mass_mg, g.get("tau_diff_s", DEFAULT_TAU_S))
        return preset(self.label, mass_mg=self.mass_mg)

    def to_json(self) -> bytes:
        """The ``cell.meta`` record, as ``meta_from_mapping`` reads it back (unset fields left out)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return json.dumps(fields, allow_nan=False).encode()


Decoded = Frame | CellMeta | DeadLetter

Point = Mapping[str, Any]  # one row: {"measurement", "tags": {...}, "fields": {...}, "time": epoch s}


@dataclass(frozen=True)
class Batch:
    """Rows of one measurement, column by column: what the twin step emits and every sink
    writes as it is (a Parquet table, line protocol, one ``cell.twin`` frame per cell).

    ``time`` holds epoch seconds; each tag and field one value per row: float64 (NaN: no
    value), int64, bool, or objects (strings; None where a row has no value)."""

    measurement: str
    time: np.ndarray
    tags: Mapping[str, np.ndarray]
    fields: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.time.size)

    def frames(self, max_rows: int = FRAME_ROWS) -> list[tuple[bytes, bytes]]:
        """Kafka records of a cell's rows (key = cell id), one per cell, or several of at most
        ``max_rows`` rows for a cell with more (a broker takes records of 1 MB by default):
        its tags, then ``time`` and every field as arrays in row order, NaN as null, e.g.
        ``{"cell": "A1", "preset": "mgh2", "time": [1767225600.0, ...], "soc": [0.4, ...],
        ...}``; ``frame_rows`` reads it back."""
        names = list(self.tags)
        groups: dict[tuple, int] = {}
        tag_rows = zip(*(column.tolist() for column in self.tags.values()))
        group = np.fromiter((groups.setdefault(values, len(groups)) for values in tag_rows), np.intp, len(self))
        order = np.argsort(group, kind="stable")  # each cell's rows together, in row order
        ends = np.cumsum(np.bincount(group, minlength=len(groups))).tolist()
        columns = {"time": self.time, **self.fields}
        records, start = [], 0
        for values, end in zip(groups, ends):
            head = dict(zip(names, values))
            key = str(head[TAG_CELL]).encode()
            for first in range(start, end, max_rows):
                rows = order[first:min(first + max_rows, end)]
                body = head | {name: _json_array(column[rows]) for name, column in columns.items()}
                records.append((key, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)))
            start = end
        return records

    def records(self) -> list[tuple[bytes, bytes]]:
        """One Kafka record per row (key = cell id): its tags, ``time`` and fields, NaN as null
        (the ``cell.alerts`` records)."""
        names = [*self.tags, "time", *self.fields]
        columns = [c.tolist() for c in [*self.tags.values(), self.time, *self.fields.values()]]
        bodies = (dict(zip(names, values)) for values in zip(*columns))
        return [(str(body[TAG_CELL]).encode(), orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)) for body in bodies]


def _json_array(column: np.ndarray) -> np.ndarray | list[Any]:
    """A column as orjson writes it: numbers and booleans as the array itself (NaN becomes
    null), objects (strings, None) as a list."""
    return column.tolist() if column.dtype.kind == "O" else column


def json_loads(value: bytes) -> Any:
    """JSON as :func:`json.loads` reads it. orjson reads the valid records, 7x faster; what it
    refuses (NaN literals, integers beyond 64 bits, lone surrogates, deep nesting) goes to the
    standard parser, so a bad record fails, or passes, exactly as it always did."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def batches(points: Sequence[Point]) -> list[Batch]:
    """Row-wise points as batches, one per measurement in order of first appearance. A column
    whose values are all floats (ints, bools) becomes a float64 (int64, bool) array; any other
    (strings, a value missing from some rows) an object array with None where missing."""
    grouped: dict[str, list[Point]] = {}
    for point in points:
        grouped.setdefault(point["measurement"], []).append(point)
    return [Batch(measurement, np.array([p["time"] for p in rows], dtype=float),
                  _columns([p["tags"] for p in rows]), _columns([p["fields"] for p in rows]))
            for measurement, rows in grouped.items()]


_DTYPES = {frozenset({float}): np.float64, frozenset({int}): np.int64, frozenset({bool}): np.bool_}


def _columns(rows: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    names = dict.fromkeys(name for row in rows for name in row)
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        column = np.empty(len(values), dtype=_DTYPES.get(frozenset(map(type, values)), object))
        column[:] = values  # element by element: strings and None stay objects
        columns[name] = column
    return columns


def frame_rows(value: bytes) -> list[dict[str, Any]]:
    """A ``cell.twin`` frame as one dict per row (tags, ``time`` and fields), in time order."""
    body = json_loads(value)
    arrays = {name: v for name, v in body.items() if isinstance(v, list)}
    tags = {name: v for name, v in body.items() if name not in arrays}
    return [{**tags, **dict(zip(arrays, values))} for values in zip(*arrays.values())]


def _escaped(text: str | None, budget: int) -> str:
    """``text`` as a JSON string of at most ``budget`` bytes, cut (and saying so) if longer."""
    whole = json.dumps(text)
    if len(whole) <= budget or text is None:
        return whole
    note = " [cut]"
    fits, over = 0, min(len(text), budget)  # an escaped character takes 1 to 12 bytes
    while over - fits > 1:
        middle = (fits + over) // 2
        fits, over = (middle, over) if len(json.dumps(text[:middle] + note)) <= budget else (fits, middle)
    return json.dumps(text[:fits] + note)


def _payload_text(raw: bytes | None) -> str | None:
    """The record as text, cut to MAX_PAYLOAD_CHARS; base64 if it is not UTF-8."""
    if raw is None:
        return None
    head = raw[: MAX_PAYLOAD_CHARS * 4]
    try:
        return head.decode("utf-8")[:MAX_PAYLOAD_CHARS]
    except UnicodeDecodeError:
        return base64.b64encode(raw[: MAX_PAYLOAD_CHARS * 3 // 4]).decode("ascii")


class Rejected(ValueError):
    """Why a record or a sample cannot be used: a short machine-readable ``reason`` (the dead
    letter's) and a sentence for a person (``error``, the exception's message)."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error
