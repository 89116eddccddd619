"""Line protocol of the InfluxDB sink, written column by column: every row the same bytes as
influxdb-client's Point of that row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from connectors.line_protocol import lines
from connectors.wire import MEAS_STATE, TAG_CELL, TAG_PRESET, Batch, batches


def _reference(item: dict) -> str | None:
    """What the InfluxDB sink wrote before: the client's own Point."""
    point = Point(item["measurement"])
    for name, value in item["tags"].items():
        if value is not None:
            point.tag(name, str(value))
    for name, value in item["fields"].items():
        point.field(name, value)
    line = point.time(round(float(item["time"]) * 1000), WritePrecision.MS).to_line_protocol()
    return line or None


def _item(tags: dict, fields: dict, time: float = 1767225600.2506, measurement: str = MEAS_STATE) -> dict:
    return {"measurement": measurement, "tags": tags, "fields": fields, "time": time}


def to_line(item: dict) -> str | None:
    """The line of one row: a batch of that row alone."""
    written = lines(batches([item])[0])
    assert len(written) <= 1
    return written[0] if written else None


def test_tags_fields_and_millisecond_time() -> None:
    line = to_line(_item({TAG_CELL: "A 1", TAG_PRESET: "p"}, {"v": 3.25, "soc": 0.5}))
    assert line == r"twin_state,cell=A\ 1,preset=p soc=0.5,v=3.25 1767225600251"


def test_non_finite_fields_and_missing_tags_are_dropped() -> None:
    item = _item({TAG_CELL: "A 1", TAG_PRESET: None}, {"soc": math.nan, "v": 3.0, "nis": math.inf, "r0": -math.inf})
    assert to_line(item) == r"twin_state,cell=A\ 1 v=3 1767225600251"


def test_point_without_finite_fields_is_no_line() -> None:
    assert to_line(_item({TAG_CELL: "A1"}, {"soc": math.nan, "nis": None})) is None


def test_numpy_scalars_are_written_as_their_python_values() -> None:
    item = _item({TAG_CELL: "A1"}, {"n": np.int64(3), "x": np.float64(0.25)})
    assert to_line(item) == _reference(item) == "twin_state,cell=A1 n=3i,x=0.25 1767225600251"


def test_unwritable_field_type_says_which_field() -> None:
    with pytest.raises(TypeError, match="'when'"):
        to_line(_item({TAG_CELL: "A1"}, {"when": [1, 2]}))


_text = st.text(alphabet=st.sampled_from(list('ab= ,"\\\n\t\r#x1é')), max_size=8)
_tag_value = _text.filter(lambda text: not set(text) & set("\\\t\n\r"))  # the rest are refused (below)
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**63 - 1), st.booleans(), _text, st.none(),
)


@given(
    measurement=_text.filter(lambda m: m and not m.startswith("#")),
    tags=st.dictionaries(_text, st.one_of(_tag_value, st.none()), max_size=4),
    fields=st.dictionaries(_text.filter(bool), _value, max_size=6),
    time=st.floats(0, 1e11),
)
def test_same_line_as_influxdb_client(measurement: str, tags: dict, fields: dict, time: float) -> None:
    item = _item(tags, fields, time, measurement)
    assert to_line(item) == _reference(item)


@pytest.mark.parametrize("cell", ["x\\,y", "x\\ y", "x\\=", "x\\\\", "x\\", "a\nb", "a\tb", "a\rb"])
def test_unwritable_tag_values_are_refused_not_mangled(cell: str) -> None:
    """The client would write these so that the store drops the line or reads another value."""
    with pytest.raises(ValueError, match="tag cell="):
        to_line(_item({TAG_CELL: cell}, {"soc": 0.5}))


def test_separators_in_tag_values_are_escaped() -> None:
    item = _item({TAG_CELL: "a,b c=d", TAG_PRESET: "MgH2=0.6,Nd2H5=0.4"}, {"soc": 0.5})
    assert to_line(item) == _reference(item) == r"twin_state,cell=a\,b\ c\=d,preset=MgH2\=0.6\,Nd2H5\=0.4 soc=0.5 1767225600251"


_rows = st.lists(st.fixed_dictionaries({
    "tags": st.fixed_dictionaries({TAG_CELL: st.sampled_from(["A1", "B 2", "c,3"]),
                                   TAG_PRESET: st.sampled_from(["mgh2", None])}),
    "fields": st.dictionaries(st.sampled_from(["soc", "n", "ok", "msg", "x"]), _value, max_size=5),
    "time": st.floats(0, 1e11),
}), min_size=1, max_size=12)


@given(rows=_rows)
def test_a_batch_of_rows_gives_each_rows_own_line(rows: list[dict]) -> None:
    """Columns mixing types, values missing from some rows: row by row what the client writes."""
    items = [_item(**row) for row in rows]
    assert lines(batches(items)[0]) == [line for line in map(_reference, items) if line is not None]


def test_typed_columns_as_the_twin_emits_them() -> None:
    """float64 with NaN and infinities, int64, bool and string columns, each row like the client."""
    batch = Batch(MEAS_STATE, np.array([1767225600.0005, 1767225600.0015, 1767225601.25]),
                  {TAG_CELL: np.array(["A1", "A1", "B2"], dtype=object),
                   TAG_PRESET: np.array(["p", "p", "q"], dtype=object)},
                  # soc: a strided view, as columns cut from the twin's (cells, samples) arrays are
                  {"soc": np.array([[0.5, 0.0], [np.nan, 0.0], [1e16, 0.0]])[:, 0], "r": np.array([np.inf, 2.0, -0.0]),
                   "flags": np.array([0, 3, -(2**63)], dtype=np.int64), "partial": np.array([True, False, True]),
                   "message": np.array(['say "hi"', None, "a\\b"], dtype=object)})
    rows = [_item({TAG_CELL: c, TAG_PRESET: p}, {name: column[k].item() if hasattr(column[k], "item") else column[k]
                                                  for name, column in batch.fields.items()}, t)
            for k, (c, p, t) in enumerate(zip(batch.tags[TAG_CELL], batch.tags[TAG_PRESET], batch.time.tolist()))]
    assert lines(batch) == [_reference(row) for row in rows]
    assert lines(batch)[1] == "twin_state,cell=A1,preset=p flags=3i,partial=false,r=2 1767225600002"
