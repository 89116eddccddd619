"""Decoding and validation of cell.samples and cell.meta records: each bad kind, its reason."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from connectors import decode
from connectors.decode import decode_message
from connectors.wire import (
    MAX_DEADLETTER_BYTES, MAX_DEADLETTER_KEY_BYTES, MAX_MESSAGE_BYTES, MAX_PAYLOAD_CHARS, TOPIC_META, TOPIC_SAMPLES,
    CellMeta, DeadLetter, Frame, KafkaMessage, Origin,
)
from tests.integration.hostile_records import garbage, named_metas, named_samples


def _record(value: bytes | dict | None, key: bytes | None = b"A1", topic: str = TOPIC_SAMPLES) -> KafkaMessage:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return KafkaMessage(topic, 3, 17, key, raw, 0)


FRAME = {"cell": "A1", "t": [100.0, 110.0, 120.0], "v": [0.6, 0.55, 0.5], "i": [-0.002, -0.002, -0.002]}


def test_single_sample_becomes_a_frame_of_one() -> None:
    frame = decode_message(_record({"cell": "A1", "t": 100, "v": 0.61, "i": -0.002, "temp_c": 129.5,
                                    "cycle": 3, "step": 2}))

    assert isinstance(frame, Frame)
    assert frame.cell == "A1" and len(frame) == 1
    assert frame.t.tolist() == [100.0] and frame.v.tolist() == [0.61] and frame.temp_c.tolist() == [129.5]
    assert (frame.origin.topic, frame.origin.partition, frame.origin.offset) == (TOPIC_SAMPLES, 3, 17)


def test_frame_keeps_order_and_marks_missing_temperature() -> None:
    frame = decode_message(_record(FRAME))

    assert isinstance(frame, Frame)
    assert frame.t.tolist() == FRAME["t"] and frame.i.tolist() == FRAME["i"]
    assert np.isnan(frame.temp_c).all()
    assert json.loads(frame.to_json()) == FRAME  # the wire format back


def test_frame_with_scalar_temperature_applies_it_to_every_sample() -> None:
    frame = decode_message(_record({**FRAME, "temp_c": 131.0}))
    assert frame.temp_c.tolist() == [131.0, 131.0, 131.0]


BAD = [
    pytest.param(b"{not json", "not_json", id="not-json"),
    pytest.param(None, "not_json", id="no-value"),
    pytest.param(b"[1, 2]", "not_object", id="array"),
    pytest.param({"t": 1, "v": 0.5, "i": 0.0}, "missing_field", id="no-cell"),
    pytest.param({"cell": "A1", "t": 1, "v": 0.5}, "missing_field", id="no-current"),
    pytest.param({"cell": 7, "t": 1, "v": 0.5, "i": 0.0}, "wrong_type", id="cell-number"),
    pytest.param({"cell": "A1", "t": 1, "v": "0.5", "i": 0.0}, "wrong_type", id="string-voltage"),
    pytest.param({**FRAME, "v": [0.6, "0.55", 0.5]}, "wrong_type", id="string-in-frame"),
    pytest.param({**FRAME, "i": [-0.002, None, -0.002]}, "wrong_type", id="null-in-frame"),
    pytest.param({**FRAME, "v": 0.5}, "wrong_type", id="scalar-in-frame"),
    pytest.param({"cell": "A1", "t": 1, "v": True, "i": 0.0}, "wrong_type", id="boolean"),
    pytest.param({**FRAME, "i": [-0.002, -0.002]}, "length_mismatch", id="short-current"),
    pytest.param({**FRAME, "temp_c": [130.0]}, "length_mismatch", id="short-temperature"),
    pytest.param({"cell": "A1", "t": [], "v": [], "i": []}, "empty_frame", id="empty"),
    pytest.param(b'{"cell": "A1", "t": 1, "v": NaN, "i": 0.0}', "not_finite", id="nan"),
    pytest.param(b'{"cell": "A1", "t": [1, 2], "v": [0.5, 0.5], "i": [0.0, Infinity]}', "not_finite", id="inf"),
    pytest.param(b'{"cell": "A1", "t": 1, "v": 0.5, "i": 1' + b"0" * 400 + b"}", "not_finite", id="huge-integer"),
    pytest.param({"cell": "A1", "t": 1, "v": 7.5, "i": 0.0}, "voltage_range", id="voltage-high"),
    pytest.param({"cell": "A1", "t": 1, "v": -1.5, "i": 0.0}, "voltage_range", id="voltage-low"),
    pytest.param({"cell": "A1", "t": 1, "v": 0.5, "i": -250.0}, "current_range", id="current"),
    pytest.param({"cell": "A1", "t": 1, "v": 0.5, "i": 0.0, "temp_c": 900}, "temperature_range", id="temperature"),
    pytest.param({"cell": "A1", "t": 1_767_225_600_000, "v": 0.5, "i": 0.0}, "time_range", id="milliseconds"),
    pytest.param({**FRAME, "t": [100.0, 90.0, 120.0]}, "time_order", id="backwards"),
    pytest.param({**FRAME, "t": [100.0, 100.0, 120.0]}, "time_order", id="duplicate"),
]


@pytest.mark.parametrize(("value", "reason"), BAD)
def test_bad_records_become_dead_letters_with_their_reason(value, reason: str) -> None:
    letter = decode_message(_record(value))

    assert isinstance(letter, DeadLetter), letter
    assert letter.reason == reason
    document = json.loads(letter.to_json())
    assert set(document) == {"reason", "error", "topic", "partition", "offset", "key", "payload"}
    assert document["reason"] == reason and document["error"]
    assert (document["topic"], document["partition"], document["offset"], document["key"]) == (TOPIC_SAMPLES, 3, 17, "A1")


SINGLES = [
    {"cell": "A1", "t": 100, "v": 0.61, "i": -0.002},
    {"cell": "A1", "t": 100.5, "v": 6.0, "i": -100, "temp_c": 129.5},
    {"cell": "A1", "t": 0, "v": -1.0, "i": 100.0, "temp_c": None},
    {"cell": "A1", "t": 1e11, "v": 0.5, "i": 0.0, "temp_c": -60},
]


@pytest.mark.parametrize("body", SINGLES)
def test_plain_single_samples_decode_as_the_full_checks_do(body: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = decode_message(_record(body))
    monkeypatch.setattr(decode, "_plain_sample", lambda *_: None)
    full = decode_message(_record(body))

    assert isinstance(fast, Frame) and isinstance(full, Frame)
    for name in ("t", "v", "i", "temp_c"):
        a, b = getattr(fast, name), getattr(full, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    assert (fast.cell, fast.origin) == (full.cell, full.origin)


# The records whose defect is in the samples (the cell is checked before).
SAMPLE_DEFECTS = [p for p in BAD if p.id not in ("no-value", "not-json", "array", "no-cell", "cell-number")]


@pytest.mark.parametrize(("value", "reason"), SAMPLE_DEFECTS)
def test_the_plain_sample_path_leaves_bad_samples_to_the_full_checks(value, reason: str) -> None:
    body = json.loads(value) if isinstance(value, bytes) else value
    assert decode._plain_sample(body, "A1", None) is None


def test_key_must_be_the_cell() -> None:
    letter = decode_message(_record(FRAME, key=b"B2"))
    assert isinstance(letter, DeadLetter) and letter.reason == "key_mismatch"
    assert "'B2'" in letter.error and "'A1'" in letter.error
    assert isinstance(decode_message(_record(FRAME, key=None)), Frame)  # unkeyed: the producer's choice


def test_oversized_record_is_refused_unread_and_truncated() -> None:
    raw = b'{"cell": "A1", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    letter = decode_message(_record(raw))

    assert letter.reason == "oversized"
    assert len(json.loads(letter.to_json())["payload"]) == MAX_PAYLOAD_CHARS


def test_binary_payload_is_kept_as_base64() -> None:
    raw = b"\x00\xff\xfe binary"
    document = json.loads(decode_message(_record(raw)).to_json())

    assert document["reason"] == "not_json"
    assert base64.b64decode(document["payload"]) == raw


def test_meta_record_decodes_to_cell_meta() -> None:
    meta = decode_message(_record({"cell": "A1", "preset": "nd4mg80ni8", "mass_mg": 1.2, "c_rate": 0.1},
                                  topic=TOPIC_META))
    assert meta == CellMeta(cell="A1", mass_mg=1.2, preset="nd4mg80ni8", c_rate=0.1)

    composed = decode_message(_record({"cell": "A1", "composition": "MgH2=0.6,Nd2H5=0.4", "mass_mg": 1},
                                      topic=TOPIC_META))
    assert composed.label == "MgH2=0.6,Nd2H5=0.4" and composed.params().mass_mg == 1.0


@pytest.mark.parametrize(("value", "words"), [
    ({"cell": "A1", "preset": "nd4mg80ni8"}, "mass_mg"),
    ({"cell": "A1", "preset": "nd4mg80ni8", "mass_mg": -1}, "within 1e-06 .. 1e+07"),
    ({"cell": "A1", "preset": "unobtainium", "mass_mg": 1}, "unknown preset"),
    ({"cell": "A1", "preset": "mgh2", "composition": "MgH2=1", "mass_mg": 1}, "exactly one"),
    ({"cell": "A1", "preset": "mgh2", "mass_mg": 1, "colour": "red"}, "unknown metadata keys"),
    (None, "tombstone"),
])
def test_bad_meta_says_what_to_fix(value, words: str) -> None:
    letter = decode_message(_record(value, topic=TOPIC_META))
    assert isinstance(letter, DeadLetter) and letter.reason == "bad_meta"
    assert words in letter.error


@pytest.mark.parametrize(("topic", "key", "value", "reason"), [
    pytest.param(TOPIC_SAMPLES, *record, id=f"samples-{n}-{record[2]}") for n, record in enumerate(named_samples("A1", 100.0))
] + [
    pytest.param(TOPIC_META, *record, id=f"meta-{n}-{record[2]}") for n, record in enumerate(named_metas("A1"))
])
def test_hostile_records_are_dead_letters_within_the_size_limit(topic: str, key, value, reason: str) -> None:
    letter = decode_message(KafkaMessage(topic, 0, 5, key, value, 0))

    assert isinstance(letter, DeadLetter) and letter.reason == reason, letter
    document = letter.to_json()
    assert len(document) <= MAX_DEADLETTER_BYTES and json.loads(document)["error"] == letter.error
    assert len(letter.error) < 1000  # quoted values are shown cut short
    assert letter.kafka_key() is None or len(letter.kafka_key()) <= MAX_DEADLETTER_KEY_BYTES


def test_random_garbage_gets_the_reason_of_its_defect() -> None:
    records = garbage("A1", 1_767_225_600.0, 3000, seed=7, deep_every=300)
    got = [decode_message(KafkaMessage(TOPIC_SAMPLES, 0, n, key, value, 0)) for n, (key, value, _) in enumerate(records)]

    assert [getattr(letter, "reason", letter) for letter in got] == [reason for _, _, reason in records]
    assert len({reason for _, _, reason in records}) >= 14  # every kind of defect was made


@pytest.mark.parametrize("text", ["\u00e9", "\U0001f600", "\x01", "\ud800"], ids=["accent", "emoji", "control", "surrogate"])
def test_dead_letter_is_capped_as_a_whole_after_escaping(text: str) -> None:
    """Key, error and payload of non-ASCII text grow up to 12x when JSON-escaped; all three are cut."""
    raw = (text * 300_000).encode("utf-8", "surrogatepass")
    letter = DeadLetter("wrong_type", text * 300_000, Origin(TOPIC_SAMPLES, 1, 2, raw), raw)

    document = letter.to_json()
    body = json.loads(document)
    assert len(document) <= MAX_DEADLETTER_BYTES
    assert body["error"].startswith(text * 100) and body["error"].endswith("[cut]")
    assert body["key"].endswith("[cut]")
    # Text is cut; bytes that are not UTF-8 (a lone surrogate) are kept as base64 of their start.
    assert body["payload"].endswith("[cut]") or raw.startswith(base64.b64decode(body["payload"]))
    assert len(letter.kafka_key()) == MAX_DEADLETTER_KEY_BYTES


def test_dead_letter_under_the_limit_is_whole() -> None:
    letter = DeadLetter("not_json", "not JSON: x", Origin(TOPIC_SAMPLES, 0, 1, "é1".encode()), "é{".encode(), None)
    assert json.loads(letter.to_json()) == {"reason": "not_json", "error": "not JSON: x", "topic": TOPIC_SAMPLES,
                                            "partition": 0, "offset": 1, "key": "é1", "payload": "é{"}
    assert letter.kafka_key() == "é1".encode()


@pytest.mark.parametrize("cell", ["A 1", "x,y=z", "Zelle-Ä/7 (#2)", "電池:01", "a|b;c?d!e%f&g*h^i~j@k[l]m+n.o_p"])
def test_cell_ids_of_the_documented_character_set_are_accepted(cell: str) -> None:
    frame = decode_message(_record({**FRAME, "cell": cell}, key=cell.encode()))
    assert isinstance(frame, Frame) and frame.cell == cell


def test_corrected_metadata_for_the_same_key_decodes_after_bad_ones() -> None:
    """cell.meta is re-read from its start: bad records before a correction are only dead letters."""
    records = named_metas("A1") + [(b"A1", json.dumps({"cell": "A1", "preset": "mgh2", "mass_mg": 2.0}).encode(), None)]
    decoded = [decode_message(KafkaMessage(TOPIC_META, 0, n, key, value, 0)) for n, (key, value, _) in enumerate(records)]

    assert all(isinstance(d, DeadLetter) for d in decoded[:-1])
    assert decoded[-1] == CellMeta(cell="A1", mass_mg=2.0, preset="mgh2")


@pytest.mark.parametrize("topic", [TOPIC_SAMPLES, TOPIC_META])
def test_an_unforeseen_error_is_a_dead_letter_too(topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object) -> None:
        raise ZeroDivisionError("x" * 10_000)

    monkeypatch.setattr(decode, "_frame", fail)
    monkeypatch.setattr(decode, "meta_from_mapping", fail)
    letter = decode_message(_record({"cell": "A1", "preset": "mgh2", "mass_mg": 1, "t": 1, "v": 0.5, "i": 0.0},
                                    topic=topic))

    assert isinstance(letter, DeadLetter) and letter.reason == "undecodable" and letter.cell == "A1"
    assert letter.error.startswith("the record could not be decoded: ZeroDivisionError: 'xxx")
    assert len(letter.error) < 200
