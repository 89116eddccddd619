"""Hostile records for `cell.samples` and `cell.meta`, each with the dead-letter reason the
pipeline must give it: the named kinds that once crashed or silently lost data, and seeded
random garbage built so that its reason follows from how it was made (one defect per
record, on top of a frame that is valid otherwise), and how to send them. Used by the
bad-input integration test and by benchmarks/hostile_bench.py.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any, Callable

from kafka import KafkaProducer

__all__ = ["Hostile", "named_samples", "named_metas", "garbage", "interleave", "send"]

Hostile = tuple[bytes | None, bytes | None, str]  # key, value, the reason its dead letter must give

_DEEP = 100_000  # nesting far beyond the JSON parser's recursion limit
_BACKSLASH_IDS = ("x\\,y", "x\\ y", "x\\=", "x\\\\", "x\\")
# Characters a cell id must not have (see connectors.meta.name_error): backslash, quotes,
# control characters, Grafana's $ { }, HTML's < >, a lone surrogate, symbols and odd spaces.
_FORBIDDEN = ("\\", '"', "'", "`", "\x00", "\n", "\t", "\x1f", "\x7f", "$", "{", "}", "<", ">",
              "\ud800", "\udfff", "\u200b", "\u00a0", "\u2028", "\U0001f600", "\u00b0")


def _js(body: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _frame(cell: str, t0: float, n: int = 2) -> dict[str, Any]:
    return {"cell": cell, "t": [t0 + k for k in range(n)], "v": [0.5] * n, "i": [0.0] * n}


def named_samples(cell: str, t0: float) -> list[Hostile]:
    """One of each named kind for ``cell``, a cell the pipeline knows (its good samples must go on)."""
    key = cell.encode()
    frame = _frame(cell, t0)
    records: list[Hostile] = [
        (key, b"[" * _DEEP + b"]" * _DEEP, "not_json"),
        (key, b'{"cell": "%s", "t": ' % key + b"[" * _DEEP + b"]" * _DEEP + b"}", "not_json"),
        (None, _js({**frame, "cell": "\ud800x"}), "bad_cell_id"),
        (None, b'{"cell": "\\udfff", "t": 1, "v": 0.5, "i": 0.0}', "bad_cell_id"),
        (key, b'{"cell": "%s", "t": 1, "v": 0.5, "i": 1%s}' % (key, b"0" * 400), "not_finite"),
        (key, b'{"cell": "%s", "t": 1, "v": 0.5, "i": 1%s}' % (key, b"0" * 5000), "not_json"),
        (b"k" * 600_000, _js(frame), "key_mismatch"),
        (key, _js({**frame, "v": ["\u00e9" * 300_000, 0.5]}, ascii_only=False), "wrong_type"),
        (key, _js({**frame, "v": ["\U0001f600" * 150_000, 0.5]}, ascii_only=False), "wrong_type"),
        (b"\xff\xfe", _js(frame), "key_mismatch"),
        (None, _js({**frame, "cell": "x" * 201}), "bad_cell_id"),
        (None, _js({**frame, "cell": " padded"}), "bad_cell_id"),
    ]
    records += [(c.encode(), _js({**frame, "cell": c}), "bad_cell_id") for c in _BACKSLASH_IDS]
    records += [(None, _js({**frame, "cell": f"a{c}b"}), "bad_cell_id") for c in _FORBIDDEN]
    return records


def named_metas(cell: str) -> list[Hostile]:
    """Bad `cell.meta` records for ``cell`` (keyed by it, so a corrected record replaces them)."""
    key = cell.encode()
    head = b'{"cell": "%s", "preset": "mgh2", ' % key
    ocv = [[0.5] * 101, [0.6] * 101]
    generic = {"capacity_mah": 1.0, "v_min": 0.3, "v_max": 1.0, "ocv": ocv}
    return [
        (key, head + b'"mass_mg": 1%s}' % (b"0" * 400), "bad_meta"),
        (key, head + b'"mass_mg": 1e300}', "bad_meta"),
        (key, head + b'"mass_mg": NaN}', "bad_meta"),
        (key, head + b'"mass_mg": Infinity}', "bad_meta"),
        (key, head + b'"mass_mg": 0}', "bad_meta"),
        (key, head + b'"mass_mg": 1.0, "c_rate": 1%s}' % (b"0" * 400), "bad_meta"),
        (key, _js({"cell": cell, "generic": {**generic, "ocv": [[10 ** 400] * 101, [0.6] * 101]}}), "bad_meta"),
        (key, _js({"cell": cell, "generic": {**generic, "ocv": [[1e300] * 101, [0.6] * 101]}}), "bad_meta"),
        (key, _js({"cell": cell, "generic": {**generic, "capacity_mah": 1e300}}), "bad_meta"),
        (key, _js({"cell": cell, "composition": "MgH2=1e308,Mg2NiH4=1e308", "mass_mg": 1.0}), "bad_meta"),
        (key, _js({"cell": cell, "composition": "MgH2=0.5\x1f,Nd2H5=0.5", "mass_mg": 1.0}), "bad_meta"),
        (key, _js({"cell": cell, "preset": "mgh2\\", "mass_mg": 1.0}), "bad_meta"),
        (key, b'{"cell": "%s", "preset": ' % key + b"[" * _DEEP + b"]" * _DEEP + b"}", "not_json"),
        (key, None, "bad_meta"),  # a tombstone
        ("\ud800".encode("utf-8", "surrogatepass"), _js({"cell": "\ud800", "preset": "mgh2", "mass_mg": 1.0}),
         "bad_cell_id"),  # a compacted topic takes no record without a key
        (key, _js({"cell": f"{cell}\\", "preset": "mgh2", "mass_mg": 1.0}), "bad_cell_id"),
    ]


# --------------------------------------------------------------------------- random garbage

_Make = Callable[[random.Random, dict[str, Any]], tuple[bytes | None, bytes | None, str] | None]


def _random_text(rng: random.Random, size: int) -> str:
    """Text from every corner of Unicode: ASCII, accents, CJK, emoji, controls, lone surrogates."""
    ranges = ((0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x17F), (0x4E00, 0x4FFF), (0x1F600, 0x1F64F), (0xD800, 0xDFFF))
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(size))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([rng.randint(-10**30, 10**30), rng.uniform(-1e300, 1e300), rng.random()])
    if kind in (2, 3):
        return _random_text(rng, rng.randint(0, 20))
    if kind in (4, 5):
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {_random_text(rng, rng.randint(0, 8)): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _not_a_number(rng: random.Random) -> Any:
    value = _random_json(rng)
    return value if isinstance(value, (str, list, dict, bool)) or value is None else str(value)


def _bytes_garbage(rng: random.Random, base: dict[str, Any]) -> Hostile:
    return base["cell"].encode(), b"\xff" + rng.randbytes(rng.randint(0, 300)), "not_json"


def _cut_json(rng: random.Random, base: dict[str, Any]) -> Hostile:
    whole = _js(base)
    return base["cell"].encode(), whole[: rng.randint(1, len(whole) - 1)], "not_json"


def _deep(rng: random.Random, base: dict[str, Any]) -> Hostile:
    depth = rng.randint(5_000, 50_000)
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    return base["cell"].encode(), opener * depth + b"1" + closer * depth, "not_json"


def _not_object(rng: random.Random, base: dict[str, Any]) -> Hostile:
    value = _random_json(rng)
    while isinstance(value, dict):
        value = _random_json(rng)
    return base["cell"].encode(), _js(value), "not_object"


def _soup(rng: random.Random, base: dict[str, Any]) -> Hostile | None:
    """Random characters of JSON's alphabet; the reason by what Python's json makes of them."""
    text = "".join(rng.choice('{}[]":,0123456789.eE+- truefalsnul\\u') for _ in range(rng.randint(1, 80)))
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return base["cell"].encode(), text.encode(), "not_json"
    if not isinstance(value, dict):
        return base["cell"].encode(), text.encode(), "not_object"
    return None if "cell" in value else (base["cell"].encode(), text.encode(), "missing_field")


def _bad_cell_id(rng: random.Random, base: dict[str, Any]) -> Hostile:
    text = _random_text(rng, rng.randint(0, 10))
    at = rng.randint(0, len(text))
    cell = text[:at] + "x" + rng.choice(_FORBIDDEN) + "x" + text[at:]  # no neighbour to pair a surrogate with
    return None, _js({**base, "cell": cell}), "bad_cell_id"


def _missing(rng: random.Random, base: dict[str, Any]) -> Hostile:
    body = dict(base)
    del body[rng.choice(["cell", "t", "v", "i"])]
    return base["cell"].encode(), _js(body), "missing_field"


def _wrong_type(rng: random.Random, base: dict[str, Any]) -> Hostile:
    name = rng.choice(["t", "v", "i"])
    values = list(base[name])
    values[rng.randrange(len(values))] = _not_a_number(rng)
    return base["cell"].encode(), _js({**base, name: values}), "wrong_type"


def _not_finite(rng: random.Random, base: dict[str, Any]) -> Hostile:
    name = rng.choice(["t", "v", "i"])
    values = list(base[name])
    values[rng.randrange(len(values))] = "<not finite>"  # JSON's json module cannot write these tokens
    token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * rng.randint(400, 4000)])
    return base["cell"].encode(), _js({**base, name: values}).replace(b'"<not finite>"', token), "not_finite"


def _out_of_range(rng: random.Random, base: dict[str, Any]) -> Hostile:
    """A value beyond the bound: at most 10^300 and beyond it by at least a thousandth."""
    name, reason, low, high = rng.choice([("v", "voltage_range", -1.0, 6.0), ("i", "current_range", -100.0, 100.0),
                                          ("temp_c", "temperature_range", -60.0, 400.0)])
    bound = rng.choice([low, high])
    beyond = math.copysign(10 ** rng.uniform(math.log10(abs(bound) * 1.001), 300), bound)
    values = list(base.get(name) or [130.0] * len(base["t"]))
    values[rng.randrange(len(values))] = beyond
    return base["cell"].encode(), _js({**base, name: values}), reason


def _milliseconds(rng: random.Random, base: dict[str, Any]) -> Hostile:
    return base["cell"].encode(), _js({**base, "t": [t * 1000 for t in base["t"]]}), "time_range"


def _length(rng: random.Random, base: dict[str, Any]) -> Hostile:
    name = rng.choice(["v", "i"])
    values = list(base[name])
    if rng.random() < 0.5:
        values.pop()
    else:
        values.append(0.5)
    return base["cell"].encode(), _js({**base, name: values}), "length_mismatch"


def _time_order(rng: random.Random, base: dict[str, Any]) -> Hostile:
    t = list(base["t"])
    k = rng.randrange(len(t) - 1)
    t[k + 1] = t[k] if rng.random() < 0.5 else t[k] - rng.uniform(0.001, 10.0)
    return base["cell"].encode(), _js({**base, "t": t}), "time_order"


def _other_key(rng: random.Random, base: dict[str, Any]) -> Hostile:
    key = rng.choice([rng.randbytes(rng.randint(1, 40)), b"A" + base["cell"].encode(), b"k" * rng.randint(1, 400)])
    return key, _js(base), "key_mismatch"


def _empty(rng: random.Random, base: dict[str, Any]) -> Hostile:
    return base["cell"].encode(), _js({**base, "t": [], "v": [], "i": []}), "empty_frame"


_KINDS: tuple[_Make, ...] = (_bytes_garbage, _cut_json, _not_object, _soup, _bad_cell_id, _missing, _wrong_type,
                             _not_finite, _out_of_range, _milliseconds, _length, _time_order, _other_key, _empty)


def garbage(cell: str, t0: float, count: int, seed: int = 0, deep_every: int = 1000) -> list[Hostile]:
    """``count`` random bad records, each a frame of ``cell`` (samples just after ``t0``) with one
    defect, or no frame at all; every ``deep_every``-th one nested far too deep."""
    rng = random.Random(seed)
    out: list[Hostile] = []
    while len(out) < count:
        n = rng.randint(2, 40)
        t = list(itertools.accumulate(rng.uniform(0.5, 2.0) for _ in range(n)))
        base = {"cell": cell, "t": [t0 + dt for dt in t],
                "v": [rng.uniform(-1.0, 6.0) for _ in range(n)], "i": [rng.uniform(-100.0, 100.0) for _ in range(n)]}
        if rng.random() < 0.3:
            base["temp_c"] = [rng.uniform(-60.0, 400.0) for _ in range(n)]
        make = _deep if deep_every and len(out) % deep_every == deep_every - 1 else rng.choice(_KINDS)
        record = make(rng, base)
        if record is not None:
            out.append(record)
    return out


def interleave(good: list[tuple[bytes, bytes]], bad: list[Hostile]) -> list[Hostile]:
    """``bad`` spread evenly among ``good`` (reason None), which keeps its order (a cell's samples
    stay in time order)."""
    ratio, rest = len(bad) / max(len(good), 1), iter(bad)
    records: list[Hostile] = []
    for k, (key, value) in enumerate(good):
        records += itertools.islice(rest, int((k + 1) * ratio) - int(k * ratio))
        records.append((key, value, None))
    return records + list(rest)


def send(bootstrap: str, topic: str, records: list[Hostile], max_request_size: int = 1 << 20) -> dict[tuple[int, int], str]:
    """Send in order and wait for every acknowledgement; the reason each bad record must get,
    by its (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=max_request_size,
                             linger_ms=50, batch_size=1 << 20)
    try:
        futures = [(producer.send(topic, key=k, value=v), reason) for k, v, reason in records]
        producer.flush()
        return {(m.partition, m.offset): reason for m, reason in ((f.get(timeout=120), r) for f, r in futures)
                if reason is not None}
    finally:
        producer.close()
