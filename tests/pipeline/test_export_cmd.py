"""`celltwin export --format bdf`: BDF CSV, battdat cycle statistics and metadata, read back
through the project's own readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from connectors.file_sink import PARQUET_LAYOUT
from connectors.readers import read_archive
from connectors.wire import CYCLE_FIELDS, MEAS_CYCLE, MEAS_STATE, OUT_CYCLES, OUT_ESTIMATES, STATE_FIELDS
from pipeline.cli import app
from pipeline.export_cmd import export_bdf

T0 = 1_767_225_600.0
HALF_S = 600.0  # each half-cycle lasts this long in the synthetic output


def _estimates(cell: str, preset: str, n: int, seed: int) -> dict[str, np.ndarray | list]:
    rng = np.random.default_rng(seed)
    t = T0 + 7.0 * seed + np.arange(n) * 10.0 + rng.uniform(0.0, 0.999, n)  # not whole seconds
    columns: dict[str, np.ndarray | list] = {name: np.zeros(n) for name in STATE_FIELDS}
    columns.update(
        v=rng.uniform(0.2, 1.0, n), i=rng.choice([-1.0, 1.0], n) * rng.uniform(1e-4, 3e-3, n),
        temp_c=rng.uniform(125.0, 135.0, n), flags=np.zeros(n, np.int64),
    )
    columns["temp_c"][3] = np.nan  # a point without temperature
    return {"time": t, "cell": [cell] * n, "preset": [preset] * n, **columns}


def _halves(cell: str, preset: str, t_first: float, cycles: int, seed: int) -> dict[str, np.ndarray | list]:
    rng = np.random.default_rng(100 + seed)
    n = 2 * cycles - 1  # the last cycle's charge half has not ended
    columns: dict[str, np.ndarray | list] = {name: np.full(n, np.nan) for name in CYCLE_FIELDS}
    columns.update(cycle=np.arange(n) // 2 + 1, capacity_mah=rng.uniform(0.8, 1.6, n))
    return {"time": t_first + HALF_S * (np.arange(n) + 1), "cell": [cell] * n, "preset": [preset] * n,
            "half": ["discharge" if k % 2 == 0 else "charge" for k in range(n)], **columns}


def _concat(*parts: dict) -> dict:
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def _output_folder(root: Path, as_parts: bool) -> Path:
    """Two cells' estimates and cycles in the run's Parquet layout, interleaved by time."""
    root.mkdir(parents=True)
    a, b = _estimates("A7", "nd4mg80ni8", 400, 1), _estimates("B-2", "mgh2", 250, 2)
    halves = _concat(_halves("A7", "nd4mg80ni8", a["time"][0], 3, 1), _halves("B-2", "mgh2", b["time"][0], 2, 2))
    estimates = _concat(a, b)
    order = np.argsort(estimates["time"], kind="stable")
    for measurement, columns in ((MEAS_STATE, {k: v[order] for k, v in estimates.items()}), (MEAS_CYCLE, halves)):
        name, schema = PARQUET_LAYOUT[measurement]
        table = pa.table({k: columns[k] for k in schema.names}, schema=schema)
        if as_parts:  # the folder of part files a run writes, an empty part 0 first
            (root / name).mkdir()
            pq.write_table(schema.empty_table(), root / name / "part-000000.parquet")
            pq.write_table(table.slice(0, 100), root / name / "part-000001.parquet")
            pq.write_table(table.slice(100), root / name / "part-000002.parquet")
        else:
            pq.write_table(table, root / name)
    return root


@pytest.mark.parametrize("as_parts", [True, False], ids=["part files", "single file"])
def test_bdf_reads_back_as_the_output_holds_it(tmp_path: Path, as_parts: bool) -> None:
    out = _output_folder(tmp_path / "out", as_parts)
    written = export_bdf(out, tmp_path / "bdf")
    assert sorted(p.name for p in written) == sorted(
        f"{c}.{kind}" for c in ("A7", "B-2") for kind in ("bdf.csv", "cycle_stats.csv", "metadata.json"))
    estimates = pq.read_table(out / OUT_ESTIMATES)
    cycles = pq.read_table(out / OUT_CYCLES)

    for cell in ("A7", "B-2"):
        mine = estimates.filter(pc.equal(estimates["cell"], cell))
        archive = read_archive(tmp_path / "bdf" / f"{cell}.bdf.csv")  # no mapping, no cell name given
        got = archive.only()
        assert archive.report.format == "bdf" and archive.report.rows_rejected == 0
        assert got.cell == cell
        np.testing.assert_allclose(got.t, mine["time"].to_numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.v, mine["v"].to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(got.i, mine["i"].to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(got.temp_c, mine["temp_c"].to_numpy(), rtol=1e-12)  # NaN where none
        assert np.isnan(got.temp_c[3])

        halves = cycles.filter(pc.equal(cycles["cell"], cell))
        stats = pacsv.read_csv(tmp_path / "bdf" / f"{cell}.cycle_stats.csv").to_pydict()
        discharge = halves.filter(pc.equal(halves["half"], "discharge"))
        charge = halves.filter(pc.equal(halves["half"], "charge"))
        assert stats["cycle_number"] == discharge["cycle"].to_pylist()
        np.testing.assert_allclose(np.array(stats["capacity_discharge"]) * 1000.0,
                                   discharge["capacity_mah"].to_numpy(), rtol=1e-12)
        charged = np.array(stats["capacity_charge"], dtype=float) * 1000.0
        np.testing.assert_allclose(charged[:-1], charge["capacity_mah"].to_numpy(), rtol=1e-12)
        assert np.isnan(charged[-1])  # the last cycle's charge never ended
        np.testing.assert_allclose(np.array(stats["coulomb_efficiency"][:-1], dtype=float),
                                   charged[:-1] / (np.array(stats["capacity_discharge"][:-1]) * 1000.0))
        # Cycles follow each other: the first starts at the first point, each where the last ended.
        np.testing.assert_allclose(stats["cycle_start"][0], 0.0)
        np.testing.assert_allclose(stats["cycle_duration"][0], 2 * HALF_S)
        np.testing.assert_allclose(np.diff(stats["cycle_start"]), stats["cycle_duration"][:-1])

        # Each point carries the cycle of the half-cycle it belongs to.
        ends, numbers = halves["time"].to_numpy(), halves["cycle"].to_numpy()
        for k in (0, len(got) // 2, len(got) - 1):
            later = np.nonzero(ends >= got.t[k])[0]
            assert got.cycle[k] == (numbers[later[0]] if len(later) else numbers[-1])


def test_metadata_describes_each_column(tmp_path: Path) -> None:
    out = _output_folder(tmp_path / "out", as_parts=True)
    export_bdf(out, tmp_path / "bdf")
    meta = json.loads((tmp_path / "bdf" / "A7.metadata.json").read_text())
    assert meta["name"] == "A7" and meta["preset"] == "nd4mg80ni8"
    assert "not every raw sample" in meta["comments"]
    tables = {t["url"]: t["columns"] for t in meta["tables"]}
    header = (tmp_path / "bdf" / "A7.bdf.csv").read_text().splitlines()[0].split(",")
    assert [c["titles"] for c in tables["A7.bdf.csv"]] == header
    voltage = next(c for c in tables["A7.bdf.csv"] if c["titles"] == "Voltage / V")
    assert voltage["name"] == "voltage_volt" and voltage["units"] == "V"
    assert voltage["propertyUrl"].endswith("battery-data-format#voltage_volt")
    units = {c["name"]: c["units"] for c in tables["A7.cycle_stats.csv"]}
    assert units["capacity_discharge"] == "A-hr" and units["cycle_start"] == "s"


def test_command_writes_into_the_folder_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    out = _output_folder(tmp_path / "out", as_parts=True)
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(out), "--format", "bdf"])
    assert result.exit_code == 0, result.output
    assert (out / "bdf" / "B-2.bdf.csv").exists() and "B-2.cycle_stats.csv" in result.output

    unknown = runner.invoke(app, ["export", str(out), "--format", "hdf5"])
    assert unknown.exit_code != 0 and "not one of bdf" in str(unknown.exception)
    missing = runner.invoke(app, ["export", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "does not exist" in str(missing.exception)
