"""The InfluxDB sink over the real wire, against InfluxDB OSS 1.13 (its v2 write API)."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest

from connectors.influx_sink import InfluxSink, InfluxWriteError
from connectors.line_protocol import lines as line_protocol
from connectors.wire import MEAS_STATE, TAG_CELL, TAG_PRESET, Batch, batches
from tests.integration.conftest import INFLUX_DATABASE

pytestmark = pytest.mark.integration


def _select(url: str, statement: str) -> list[dict]:
    """The rows of an InfluxQL statement, time in epoch milliseconds."""
    query = urllib.parse.urlencode({"db": INFLUX_DATABASE, "q": statement, "epoch": "ms"})
    with urllib.request.urlopen(f"{url}/query?{query}", timeout=10) as response:
        (result,) = json.loads(response.read())["results"]
    assert "error" not in result, result
    return [dict(zip(s["columns"], values)) for s in result.get("series", []) for values in s["values"]]


def test_points_are_stored_once_per_sample_time(influx_url: str) -> None:
    cell = f"cell-{uuid.uuid4().hex[:8]}"
    t0 = math.floor(time.time()) - 60 + 0.25

    def item(t: float, soc: float, v: float) -> dict:
        return {"measurement": MEAS_STATE, "tags": {TAG_CELL: cell, TAG_PRESET: "mgh2-nd2h5"},
                "fields": {"soc": soc, "v": v, "nis": math.nan}, "time": t}

    part = InfluxSink(influx_url, "token", "-", INFLUX_DATABASE).build("influx", 0, 1)
    first, second = item(t0, 0.5, 3.25), item(t0 + 1, 0.25, 3.5)
    part.write_batch(batches([first, first]))
    part.write_batch(batches([first, second]))  # a replay of the same sample time, and a new one
    part.close()

    rows = _select(influx_url, f'SELECT "soc", "v", "nis", "{TAG_PRESET}" FROM "{MEAS_STATE}" '
                               f"WHERE \"{TAG_CELL}\" = '{cell}'")
    t0_ms = round(t0 * 1000)  # millisecond precision keeps the sub-second part
    assert rows == [
        {"time": t0_ms, "soc": 0.5, "v": 3.25, "nis": None, TAG_PRESET: "mgh2-nd2h5"},
        {"time": t0_ms + 1000, "soc": 0.25, "v": 3.5, "nis": None, TAG_PRESET: "mgh2-nd2h5"},
    ]  # the NaN field "nis" was dropped, not stored


def test_rejected_write_raises_with_status_and_message(influx_url: str) -> None:
    part = InfluxSink(influx_url, "token", "-", "no-such-database").build("influx", 0, 1)
    point = {"measurement": MEAS_STATE, "tags": {TAG_CELL: "x"}, "fields": {"soc": 0.5}, "time": time.time()}
    with pytest.raises(InfluxWriteError, match="database not found") as raised:
        part.write_batch(batches([point]))
    part.close()
    assert raised.value.status == 404
    assert raised.value.attempts == 1  # a client error is not retried


def test_a_batch_beyond_the_stores_body_limit_is_stored_whole(influx_url: str) -> None:
    # InfluxDB refuses a request body over 25 MB (413); 60,000 points of 20 fields make ~33 MB.
    cell, rows = f"cell-{uuid.uuid4().hex[:8]}", 60_000
    rng = np.random.default_rng(3)
    fields = {f"field_{k:02d}": rng.random(rows) for k in range(20)}
    t = math.floor(time.time()) - 7 * 86400 + np.arange(rows) * 10.0
    batch = Batch(MEAS_STATE, t, {TAG_CELL: np.full(rows, cell, dtype=object)}, fields)
    assert sum(len(line) + 1 for line in line_protocol(batch)) > 25 * 2**20

    part = InfluxSink(influx_url, "token", "-", INFLUX_DATABASE).build("influx", 0, 1)
    part.write_batch([batch])
    part.close()

    (row,) = _select(influx_url, f'SELECT count("field_00"), sum("field_19") FROM "{MEAS_STATE}" '
                                 f"WHERE \"{TAG_CELL}\" = '{cell}'")
    assert row["count"] == rows
    assert row["sum"] == pytest.approx(fields["field_19"].sum(), rel=1e-12)
