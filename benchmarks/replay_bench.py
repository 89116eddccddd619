"""Speed of a replay: archived rows parsed per second, and replayed end to end at --speed max.

    python benchmarks/replay_bench.py [--rows 2000000] [--cells 1 16 64] [--samples 20000]

Parsing: a BDF CSV (the most common exchange table) and an Arbin export of the same
rows, read by ``read_archive``. End to end: simulated cells written as one wire
table, read back, replayed through the embedded dataflow (decode, twin step, Parquet
sinks) with ``ReplaySource(speed=None)``, as ``celltwin replay --speed max`` does.
The twin steps the cells of a shard together, so the rate grows with the number of
cells replayed at once. Prints figures; asserts nothing. Timings on a shared machine
are noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from bytewax.testing import run_main

from connectors.config import Config
from connectors.readers import read_archive
from connectors.replay_source import ReplaySource
from connectors.wire import CellMeta
from pipeline.health import Progress
from pipeline.replay_cmd import replay_config, replay_flow
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation

T0 = 1_767_225_600.0


def _bdf(path: Path, n: int) -> None:
    """``n`` rows of a 1 s-sampled cell in the Battery Data Format's preferred labels."""
    k = np.arange(n, dtype=float)
    i = np.where((k // 3600) % 2 == 0, -2e-3, 2e-3)
    table = pa.table({
        "Test Time / s": k, "Unix Time / s": T0 + k, "Voltage / V": 0.6 + 0.05 * np.sin(k / 500.0),
        "Current / A": i, "Cycle Count / 1": (k // 7200 + 1).astype(np.int64),
        "Surface Temperature T1 / degC": np.full(n, 130.0),
    })
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def _arbin(path: Path, n: int) -> None:
    k = np.arange(n, dtype=float)
    stamps = pa.array((T0 + k).astype("datetime64[s]")).cast(pa.string())
    table = pa.table({
        "Data_Point": np.arange(1, n + 1), "Test_Time(s)": k, "Date_Time": stamps,
        "Step_Index": np.ones(n, dtype=np.int64), "Cycle_Index": (k // 7200 + 1).astype(np.int64),
        "Current(A)": np.where((k // 3600) % 2 == 0, -2e-3, 2e-3), "Voltage(V)": 0.6 + 0.05 * np.sin(k / 500.0),
        "Aux_Temperature_1(C)": np.full(n, 130.0),
    })
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def parsing(rows: int, folder: Path) -> None:
    for name, write in (("BDF CSV", _bdf), ("Arbin CSV", _arbin)):
        path = folder / f"{name.split()[0].lower()}.csv"
        write(path, rows)
        size = path.stat().st_size / 1e6
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            archive = read_archive(path, tz="UTC")
            best = min(best, time.perf_counter() - t0)
        assert archive.report.rows_kept == rows, archive.report.summary()
        print(f"parse {name:9s} {rows:>9,} rows ({size:6.1f} MB): {best:6.2f} s  "
              f"{rows / best:>11,.0f} rows/s  {size / best:6.1f} MB/s")


def _cells(n_cells: int, samples: int, folder: Path) -> Path:
    """``n_cells`` simulated composite cells, ``samples`` each at 5 s, as one wire table."""
    cells = [preset("nd4mg80ni8", mass_mg=1.0)] * n_cells
    sim = Simulation(cells, cc_cycles(1.0, 1000), dt=5.0, noise=SensorNoise(), seed=1)
    blocks = list(sim.blocks(block_ticks=4096, max_ticks=samples))
    t = np.concatenate([b.t for b in blocks])
    columns = {k: np.concatenate([getattr(b, k) for b in blocks], axis=1).ravel() for k in ("v", "i", "temp_c")}
    names = np.repeat([f"c{k:03d}" for k in range(n_cells)], t.size)
    path = folder / f"cells{n_cells}.parquet"
    pq.write_table(pa.table({"cell": names, "t": np.tile(t, n_cells), **columns}), path)
    return path


def end_to_end(n_cells: int, samples: int, folder: Path) -> None:
    path = _cells(n_cells, samples, folder)
    t0 = time.perf_counter()
    records = list(read_archive(path).cells.values())
    parsed = time.perf_counter() - t0
    metas = {r.cell: CellMeta(cell=r.cell, mass_mg=1.0, preset="nd4mg80ni8") for r in records}
    out = folder / f"out{n_cells}"
    progress = Progress()
    t0 = time.perf_counter()
    run_main(replay_flow(replay_config(Config(), out, metas), ReplaySource(records), progress))
    ran = time.perf_counter() - t0
    total = sum(len(r) for r in records)
    assert progress.snapshot()[0] == total
    print(f"replay --speed max, {n_cells:3d} cell(s) x {samples:,} samples: read {parsed:5.2f} s, "
          f"dataflow {ran:6.2f} s  {total / (parsed + ran):>9,.0f} samples/s end to end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the parsed CSV files")
    parser.add_argument("--cells", type=int, nargs="+", default=[1, 16, 64], help="cells replayed at once")
    parser.add_argument("--samples", type=int, default=20_000, help="samples per replayed cell")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parsing(args.rows, folder)
        for n in args.cells:
            end_to_end(n, args.samples, folder)


if __name__ == "__main__":
    main()
