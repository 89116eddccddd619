"""Replays through the real dataflow: archived = live, the simulator's truth recovered, dirty files.

Simulated cells (with sensor noise) are run once live (the embedded simulator source)
and written in the cycler formats the readers know; replaying any of those files
must give the twin the same per-cycle results as the live stream, and the truth
the simulator kept. 1C cycles at 5 s sampling keep every run to about a second.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main

from connectors.config import Config, SimulatorConfig
from connectors.readers import CellRecord
from connectors.replay_source import ReplaySource
from connectors.wire import OUT_DEADLETTER, OUT_ESTIMATES, CellMeta
from pipeline.dataflow import build_flow
from pipeline.embedded import simulated_fleet
from pipeline.health import Progress
from pipeline.replay_cmd import read_files, replay_config, replay_flow
from pipeline.report_data import CellData, load_cells
from pipeline.validation import validate, verdict
from tests.connectors.readers.cycler_writers import (
    Synthetic,
    write_arbin,
    write_bdf,
    write_maccor,
    write_mpt,
    write_neware_csv,
)
from twin.estimator import FLAG_GAP
from twin.simulator import HalfCycleTruth, SampleBlock

SIM = SimulatorConfig(cells=2, cycles=2, c_rate=1.0, dt=5.0, seed=3)


@dataclasses.dataclass
class Live:
    out: Path
    metas: dict[str, CellMeta]
    records: list[CellRecord]  # the simulated samples as the cycler reported them
    truth: list[HalfCycleTruth]
    capacity: dict[str, tuple[np.ndarray, np.ndarray]]  # cell -> (t, true reversible capacity)


def _records(blocks: list[SampleBlock], names: list[str]) -> tuple[list[CellRecord], dict]:
    records, capacity = [], {}
    for row, name in enumerate(names):
        valid = np.concatenate([b.valid[row] for b in blocks])
        t = np.concatenate([b.t for b in blocks])[valid]
        columns = {k: np.concatenate([getattr(b, k)[row] for b in blocks])[valid]
                   for k in ("v", "i", "temp_c", "cycle", "capacity_mah")}
        records.append(CellRecord(name, t, columns["v"], columns["i"], columns["temp_c"],
                                  columns["cycle"].astype(np.int64), None, {"source": "simulator"}))
        capacity[name] = (t, columns["capacity_mah"])
    return records, capacity


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    """The embedded run on the simulator, and the same simulation's samples and truth."""
    out = tmp_path_factory.mktemp("live")
    run_main(build_flow(Config(out=out, simulator=SIM)))
    metas, make_simulation = simulated_fleet(SIM)
    sim = make_simulation()
    blocks = list(sim.blocks(block_ticks=SIM.frame_samples))  # as the source cuts them: same noise
    records, capacity = _records(blocks, [m.cell for m in metas])
    return Live(out, {m.cell: m for m in metas}, records, sim.truth, capacity)


def _replay(files: list[Path], metas: dict[str, CellMeta], out: Path,
            **read: object) -> tuple[list[CellRecord], Progress]:
    records, _ = read_files(files, **read)
    progress = Progress()
    run_main(replay_flow(replay_config(Config(), out, metas), ReplaySource(records), progress))
    return records, progress


def _synthetic(rec: CellRecord) -> Synthetic:
    step = np.where(rec.i < 0, 1, np.where(rec.i > 0, 3, 2))
    return Synthetic(rec.t, rec.v, rec.i, rec.temp_c, rec.cycle, step)


def _write_parquet(path: Path, rec: CellRecord) -> Path:
    pq.write_table(pa.table({"cell": [rec.cell] * len(rec), "t": rec.t, "v": rec.v, "i": rec.i,
                             "temp_c": rec.temp_c}), path)
    return path


WRITERS = {
    "parquet": (".parquet", _write_parquet),
    "bdf": (".csv", lambda path, rec: write_bdf(path, _synthetic(rec))),
    "arbin": (".csv", lambda path, rec: write_arbin(path, _synthetic(rec))),
    "maccor": (".txt", lambda path, rec: write_maccor(path, _synthetic(rec))),
    "biologic": (".mpt", lambda path, rec: write_mpt(path, _synthetic(rec))),
    "neware": (".csv", lambda path, rec: write_neware_csv(path, _synthetic(rec))),
}
# What each format prints, relative to the value: the twin's results may differ by about that.
PRINTED = {"parquet": 1e-12, "bdf": 2e-3, "arbin": 2e-3, "maccor": 2e-3, "biologic": 2e-3, "neware": 2e-3}


def _halves(cell: CellData) -> dict[tuple[str, int], float]:
    return {(half, int(c)): float(q) for half, table in (("discharge", cell.discharge), ("charge", cell.charge))
            for c, q in zip(table["cycle"], table["capacity_mah"])}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_an_archived_stream_replays_to_the_live_results(live: Live, tmp_path: Path, fmt: str) -> None:
    suffix, write = WRITERS[fmt]
    files = [write(tmp_path / f"{rec.cell}{suffix}", rec) for rec in live.records]
    records, progress = _replay(files, live.metas, tmp_path / "out", tz="UTC")

    assert sorted(r.cell for r in records) == sorted(live.metas)
    assert progress.snapshot()[0] == sum(len(r) for r in live.records)  # every sample reached the twin
    replayed = {c.cell: c for c in load_cells(tmp_path / "out")}
    masses = {c: m.mass_mg for c, m in live.metas.items()}
    for cell in load_cells(live.out):
        mine = replayed[cell.cell]
        assert _halves(mine).keys() == _halves(cell).keys() and len(_halves(cell)) >= 3
        for key, q in _halves(cell).items():
            assert _halves(mine)[key] == pytest.approx(q, rel=PRINTED[fmt]), key
        live_rows = validate([r for r in live.records if r.cell == cell.cell], [cell], masses)
        replay_rows = validate([r for r in records if r.cell == cell.cell], [mine], masses)
        for a, b in zip(live_rows, replay_rows):
            assert b["twin_capacity_mah"] == pytest.approx(a["twin_capacity_mah"], rel=max(PRINTED[fmt], 1e-9))
            assert b["soc_end_discharge"] == pytest.approx(a["soc_end_discharge"], abs=10 * PRINTED[fmt])


def test_a_replayed_archive_recovers_the_simulators_truth(live: Live, tmp_path: Path) -> None:
    files = [_write_parquet(tmp_path / f"{rec.cell}.parquet", rec) for rec in live.records]
    records, _ = _replay(files, live.metas, tmp_path / "out")
    twins = load_cells(tmp_path / "out")
    masses = {c: m.mass_mg for c, m in live.metas.items()}
    one_c = {c: m.params().one_c_ma for c, m in live.metas.items()}
    rows = validate(records, twins, masses, one_c)

    checked = 0
    for truth in live.truth:
        cell = list(live.metas)[truth.cell]
        row = next(r for r in rows if r["cell"] == cell and r["cycle"] == truth.cycle)
        assert row[f"measured_{truth.half}_mah"] == pytest.approx(truth.capacity_mah, rel=0.02)
        twin = row[f"twin_{truth.half}_mah"]
        if np.isfinite(twin):  # the last half closes only when the current reverses
            assert twin == pytest.approx(truth.capacity_mah, rel=0.02)
        # validation.csv reads the twin's capacity at the end of the cycle's full discharge,
        # else its full charge, else its last half: the capacity in effect over that half.
        t, capacity = live.capacity[cell]
        read = "discharge" if row["full_discharge"] else "charge"
        read_at = next(x.t_end for x in live.truth if x.cell == truth.cell and x.cycle == truth.cycle
                       and x.half == read)
        true_capacity = float(np.interp(read_at - SIM.dt / 2, t, capacity))
        assert row["twin_capacity_mah"] == pytest.approx(true_capacity, rel=0.02)
        checked += 1
    assert checked == len(live.truth) == 2 * SIM.cycles * SIM.cells
    # The composite electrode the twin is built for tracks within its own uncertainty at 1C.
    composite = next(c for c, m in live.metas.items() if m.label == "nd4mg80ni8")
    judged = verdict(composite, {k: np.array([r[k] for r in rows if r["cell"] == composite]) for k in rows[0]})
    assert judged.tracks, judged.checks


def _break(line: str, column: int, text: str | None) -> str:
    fields = line.split(",")
    return ",".join(fields[:column] if text is None else fields[:column] + [text] + fields[column + 1:])


def _dirty_csv(path: Path, rec: CellRecord, gap: slice, millivolts: slice) -> tuple[Path, int]:
    """BDF-style CSV with two unparseable rows, a truncated line, rows logged in mV, a gap."""
    lines = ["Test Time / s,Unix Time / s,Voltage / V,Current / A,Surface Temperature T1 / degC"]
    volts = rec.v.copy()
    volts[millivolts] *= 1000.0
    keep = np.ones(len(rec), dtype=bool)
    keep[gap] = False
    for k in np.flatnonzero(keep):
        lines.append(f"{rec.t[k] - rec.t[0]:.3f},{rec.t[k]:.3f},{volts[k]:.9g},{rec.i[k]:.9g},{rec.temp_c[k]:.2f}")
    lines[40] = _break(lines[40], 2, "x")  # file line 41
    lines[41] = _break(lines[41], 3, "--")
    lines[60] = _break(lines[60], 3, None)  # cut short
    path.write_text("\n".join(lines) + "\n")
    return path, int(keep.sum())


def test_a_dirty_file_replays_its_good_rows_reports_the_bad_ones_and_keeps_the_gap(
        live: Live, tmp_path: Path) -> None:
    rec = live.records[0]
    gap, millivolts = slice(150, 330), slice(900, 903)  # 15 min lost mid-discharge; 3 rows in mV
    path, written = _dirty_csv(tmp_path / "dirty.csv", rec, gap, millivolts)
    metas = {"dirty": dataclasses.replace(live.metas[rec.cell], cell="dirty")}

    records, progress = _replay([path], metas, tmp_path / "out")

    report = read_files([path])[1][0]
    assert report.rows_read == written and report.rows_rejected == 3
    assert [r.line for r in report.rejected] == [41, 42, 61]
    assert "Voltage / V='x'" in report.rejected[0].reason
    (got,) = records
    assert len(got) == written - 3
    letters = [json.loads(line) for line in (tmp_path / "out" / OUT_DEADLETTER).read_text().splitlines()]
    assert [x["reason"] for x in letters] == ["voltage_range"] * 3
    assert progress.snapshot()[0] == len(got) - 3  # every good row reached the twin

    states = pq.read_table(tmp_path / "out" / OUT_ESTIMATES).to_pydict()
    times = np.array(states["time"])
    t_gap = (rec.t[gap.start - 1], rec.t[gap.stop])
    assert not np.any((times > t_gap[0]) & (times < t_gap[1]))  # nothing was made up inside it
    after = int(np.searchsorted(times, t_gap[1]))
    assert times[after] == t_gap[1] and states["flags"][after] & FLAG_GAP

    rows = validate(records, load_cells(tmp_path / "out"))
    first = rows[0]
    assert first["uncounted_s"] == pytest.approx(t_gap[1] - t_gap[0])
    lost = float(np.sum(np.abs(rec.i[gap.start:gap.stop + 1])) * SIM.dt / 3.6)
    true_first = next(x.capacity_mah for x in live.truth if x.cell == 0 and x.half == "discharge")
    assert first["measured_discharge_mah"] == pytest.approx(true_first - lost, rel=0.01)
