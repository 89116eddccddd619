"""The InfluxDB sink over the real wire, against VictoriaMetrics (InfluxDB v2 write API)."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from connectors.influx_sink import InfluxSink, InfluxWriteError
from pipeline.contracts import MEAS_STATE, TAG_CELL, TAG_PRESET

pytestmark = pytest.mark.integration


def _export(url: str, cell: str) -> dict[str, dict]:
    """Every stored twin_state series of ``cell``, by VictoriaMetrics series name."""
    query = urllib.parse.urlencode(
        {"match[]": f'{{__name__=~"{MEAS_STATE}.*",{TAG_CELL}="{cell}"}}'}
    )
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=5) as response:
        rows = [json.loads(line) for line in response.read().decode().splitlines() if line]
    return {row["metric"]["__name__"]: row for row in rows}


def _export_when_complete(url: str, cell: str, names: set[str], samples: int) -> dict[str, dict]:
    # Ingested rows become searchable asynchronously; force_flush makes them visible.
    deadline = time.monotonic() + 15
    while True:
        urllib.request.urlopen(f"{url}/internal/force_flush", timeout=5).close()
        series = _export(url, cell)
        if set(series) >= names and all(len(series[n]["values"]) >= samples for n in names):
            return series
        if time.monotonic() > deadline:
            raise AssertionError(f"stored series never complete: {series}")
        time.sleep(0.2)


def test_points_are_stored_once_per_sample_time(victoria_url: str) -> None:
    cell = f"cell-{uuid.uuid4().hex[:8]}"
    t0 = math.floor(time.time()) - 60 + 0.25  # recent: outside retention limits never

    def item(t: float, soc: float, v: float) -> dict:
        return {
            "measurement": MEAS_STATE,
            "tags": {TAG_CELL: cell, TAG_PRESET: "mgh2-nd2h5"},
            "fields": {"soc": soc, "v": v, "nis": math.nan},
            "time": t,
        }

    part = InfluxSink(victoria_url, "token", "org", "bucket").build("influx", 0, 1)
    first, second = item(t0, 0.5, 3.25), item(t0 + 1, 0.25, 3.5)
    part.write_batch([first, first])
    part.write_batch([first, second])  # a replay of the same sample time, and a new one
    part.close()

    names = {f"{MEAS_STATE}_soc", f"{MEAS_STATE}_v"}
    series = _export_when_complete(victoria_url, cell, names, samples=2)
    assert set(series) == names  # the NaN field "nis" was dropped, not stored
    t0_ms = round(t0 * 1000)
    soc, v = series[f"{MEAS_STATE}_soc"], series[f"{MEAS_STATE}_v"]
    labels = {"__name__": f"{MEAS_STATE}_soc", TAG_CELL: cell, TAG_PRESET: "mgh2-nd2h5"}
    assert soc["metric"] == labels  # tags became labels, nothing else was added
    assert soc["timestamps"] == [t0_ms, t0_ms + 1000]
    assert soc["values"] == [0.5, 0.25]
    assert v["values"] == [3.25, 3.5]


def test_rejected_write_raises_with_status_and_message(victoria_url: str) -> None:
    sink = InfluxSink(f"{victoria_url}/no/such/prefix", "token", "org", "bucket")
    part = sink.build("influx", 0, 1)
    point = {"measurement": MEAS_STATE, "tags": {TAG_CELL: "x"}, "fields": {"soc": 0.5},
             "time": time.time()}
    with pytest.raises(InfluxWriteError, match="unsupported path") as raised:
        part.write_batch([point])
    part.close()
    assert raised.value.status == 400
    assert raised.value.attempts == 1
