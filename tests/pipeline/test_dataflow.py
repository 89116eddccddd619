"""The embedded dataflow through bytewax: output files, and independence of shards and workers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from bytewax.testing import cluster_main, run_main

from connectors.config import load_config
from connectors.wire import (
    ALERT_FIELDS, CYCLE_FIELDS, OUT_ALERTS, OUT_CYCLES, OUT_DEADLETTER, OUT_ESTIMATES, STATE_FIELDS,
)
from pipeline.dataflow import build_flow, run_flow
from pipeline.health import Progress

SMALL = {"simulator.cells": 3, "simulator.cycles": 2, "simulator.dt": 20.0, "simulator.frame_samples": 25}


def _config(out: Path, **flags):
    return load_config(env={}, flags={**SMALL, "out": str(out), **flags})


def _rows(path: Path) -> list[tuple]:
    table = pq.read_table(path)
    return sorted(json.dumps(row, sort_keys=True) for row in table.to_pylist())


def test_embedded_flow_writes_the_report_columns(tmp_path: Path) -> None:
    progress = Progress()
    run_main(build_flow(_config(tmp_path), progress))

    estimates, cycles, alerts = (pq.read_table(tmp_path / name) for name in (OUT_ESTIMATES, OUT_CYCLES, OUT_ALERTS))
    assert estimates.column_names == ["time", "cell", "preset", *STATE_FIELDS]
    assert cycles.column_names == ["time", "cell", "preset", "half", *CYCLE_FIELDS]
    assert alerts.column_names == ["time", "cell", "preset", "kind", *ALERT_FIELDS]
    assert set(estimates.column("cell").to_pylist()) == {"sim-01", "sim-02", "sim-03"}
    assert set(estimates.column("preset").to_pylist()) == {"nd4mg80ni8", "mgh2"}
    halves = cycles.column("cell").to_pylist()
    assert all(halves.count(cell) == 4 for cell in set(halves))  # 2 cycles; the end closes the last charge
    assert (tmp_path / OUT_DEADLETTER).read_bytes() == b""
    samples, cells, deadletters, _ = progress.snapshot()
    assert (cells, deadletters) == (3, 0) and samples > 3 * 100
    # One estimate per 10 s of sample time at 20 s sampling: every sample.
    assert estimates.num_rows == samples


def test_a_finite_run_closes_its_last_half_unless_told_not_to(tmp_path: Path) -> None:
    run_main(build_flow(_config(tmp_path / "default")))
    run_main(build_flow(_config(tmp_path / "open", close_last_half=False)))

    closed = pq.read_table(tmp_path / "default" / OUT_CYCLES).column("half").to_pylist()
    assert closed.count("discharge") == closed.count("charge") == 3 * 2
    kept_open = pq.read_table(tmp_path / "open" / OUT_CYCLES).column("half").to_pylist()
    assert (kept_open.count("discharge"), kept_open.count("charge")) == (3 * 2, 3 * 1)


def test_shards_and_workers_do_not_change_results(tmp_path: Path) -> None:
    one, many, workers = tmp_path / "one", tmp_path / "many", tmp_path / "workers"
    run_main(build_flow(_config(one, shards=1)))
    run_main(build_flow(_config(many, shards=5)))
    cluster_main(build_flow(_config(workers, shards=7)), [], 0, worker_count_per_proc=2)

    for name in (OUT_ESTIMATES, OUT_CYCLES, OUT_ALERTS):
        assert _rows(many / name) == _rows(one / name), name
        assert _rows(workers / name) == _rows(one / name), name


@pytest.mark.parametrize("missing", ["influx.token", "influx.org"])
def test_influx_needs_all_four_settings(tmp_path: Path, missing: str) -> None:
    influx = {"influx.url": "http://x", "influx.token": "t", "influx.org": "o", "influx.bucket": "b"}
    del influx[missing]
    with pytest.raises(ValueError, match=missing.split(".")[1]):
        _config(tmp_path, **influx)


def test_a_stop_signal_ends_the_run_with_readable_files(tmp_path: Path) -> None:
    class StopAfterFiveBatches(Progress):
        updates = 0

        def add(self, stats) -> None:
            super().add(stats)
            self.updates += 1
            if self.updates == 5:
                os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` would

    cfg = _config(tmp_path, **{"simulator.cycles": 40})
    progress = StopAfterFiveBatches()

    assert run_flow(build_flow(cfg, progress), cfg) is False
    samples = progress.snapshot()[0]
    estimates = pq.read_table(tmp_path / OUT_ESTIMATES)  # a Parquet footer was written
    assert 0 < estimates.num_rows <= samples < 3 * 40 * 300  # stopped early, what was done is kept
    assert pq.read_table(tmp_path / OUT_CYCLES).column_names[:2] == ["time", "cell"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler given back
