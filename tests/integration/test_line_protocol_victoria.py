"""Cell ids with line protocol's separators round-trip through the real store; ids the line
protocol cannot carry faithfully never reach it."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from connectors.influx_sink import InfluxSink
from connectors.meta import name_error
from connectors.wire import MEAS_STATE, TAG_CELL, TAG_PRESET, batches

pytestmark = pytest.mark.integration

# Commas, spaces and equals signs are escaped; any script's letters pass as they are.
_ODD = ("x,y", "x y", "x=y", "a,b c=d", "x=", "=x", "Zelle-Ä/7 (#2)", "電池:01", "a|b;c?d!e%f&g*h^i~j@k[l]m+n.o_p")
_BACKSLASHED = ("x\\,y", "x\\ y", "x\\=", "x\\\\", "x\\")


def _stored_cells(url: str, prefix: str) -> dict[str, list[float]]:
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).close()
    query = urllib.parse.urlencode({"match[]": f'{{__name__="{MEAS_STATE}_soc",{TAG_CELL}=~"{prefix}.*"}}'})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as response:
        rows = [json.loads(line) for line in response.read().decode().splitlines() if line]
    return {row["metric"][TAG_CELL]: row["values"] for row in rows}


def test_ids_with_separators_round_trip_and_backslashes_are_refused(victoria_url: str) -> None:
    prefix = f"lp{uuid.uuid4().hex[:6]}-"
    t = math.floor(time.time()) - 60 + 0.5
    cells = [prefix + odd for odd in _ODD]
    assert all(name_error("cell id", cell) is None for cell in cells)
    part = InfluxSink(victoria_url, "token", "org", "bucket").build("influx", 0, 1)
    try:
        part.write_batch(batches([{"measurement": MEAS_STATE, "tags": {TAG_CELL: cell, TAG_PRESET: "MgH2=0.6,Nd2H5=0.4"},
                                   "fields": {"soc": k / 100}, "time": t} for k, cell in enumerate(cells)]))
        for cell in (prefix + b for b in _BACKSLASHED):
            assert name_error("cell id", cell) is not None  # refused as a dead letter long before the sink
            with pytest.raises(ValueError, match="backslash"):
                part.write_batch(batches([{"measurement": MEAS_STATE, "tags": {TAG_CELL: cell},
                                           "fields": {"soc": 0.5}, "time": t}]))
    finally:
        part.close()

    deadline = time.monotonic() + 15
    while (stored := _stored_cells(victoria_url, prefix)).keys() != set(cells) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert stored == {cell: [k / 100] for k, cell in enumerate(cells)}
