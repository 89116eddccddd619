"""Speed of a replay: `celltwin replay --speed max` of a long single-cell test, end to end.

    python benchmarks/replay_bench.py [--rows 1000000] [--data DIR] [--profile FILE]
                                      [--parse-rows 2000000] [--cells 16 64] [--samples 20000]

End to end: a single-cell sample stream of about ``--rows`` rows made with `celltwin
simulate --samples` (0.5C, 2 s sampling; kept in ``--data`` and reused when it is there,
since simulating it takes minutes), replayed by the `celltwin replay` command in a fresh
process: start-up, parse, twin, Parquet, validation and the report, as a user runs it.
Prints the wall time and the command's CPU time (on a shared machine wall time includes
waiting for a core; CPU time does not), samples/s for each, the dataflow's own time as the
command reports it, and the size of the report (it is downsampled, so it stays small
however long the test). ``--profile FILE`` runs the command under cProfile into FILE.

Optional: ``--parse-rows`` times the readers alone on a BDF CSV and an Arbin export;
``--cells`` replays that many simulated cells at once in-process (the twin steps the
cells of a shard together, so the rate grows with the number of cells).
Prints figures; asserts nothing. Timings on a shared machine are noisy: compare ratios
from one run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

T0 = 1_767_225_600.0
_DT_S = 2.0
_C_RATE = 0.5
_ROWS_PER_CYCLE = 4050  # what a cycle of the composite logs at that rate and sampling (measured)


def _cli(*args: str, profile: Path | None = None) -> list[str]:
    runner = ["-m", "cProfile", "-o", str(profile), "-m", "pipeline.cli"] if profile else ["-m", "pipeline.cli"]
    return [sys.executable, *runner, *args]


def _env() -> dict[str, str]:
    """The command's environment as an installed package runs: bytecode cached (pip compiles it
    at install; PYTHONDONTWRITEBYTECODE, set on some build machines, recompiles every module at
    every start: +0.15 s here)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _stream(rows: int, folder: Path) -> Path:
    """The sample stream of one simulated cell, about `rows` rows, made once per folder."""
    path = folder / f"cell-{rows}.csv"
    if path.exists():
        return path
    cycles = max(1, round(rows / _ROWS_PER_CYCLE))
    print(f"simulating {cycles} cycles at {_C_RATE}C, {_DT_S:g} s sampling into {path} (once) ...", flush=True)
    subprocess.run(_cli("simulate", "--c-rate", str(_C_RATE), "--cycles", str(cycles), "--dt", str(_DT_S),
                        "--samples", str(path), "--out", str(folder / f"cycles-{rows}.csv")),
                   env=_env(), check=True, stdout=subprocess.DEVNULL)
    return path


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def replay(rows: int, data: Path, profile: Path | None) -> None:
    path = _stream(rows, data)
    samples = sum(1 for _ in path.open()) - 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        done = subprocess.run(_cli("replay", str(path), "--mass-mg", "1", "--speed", "max", "--out", str(out),
                                   profile=profile), env=_env(), capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
        if done.returncode:
            sys.exit(f"replay failed ({done.returncode}):\n{done.stderr[-3000:]}")
        flow = re.search(r"replayed [\d,]+ of [\d,]+ samples in ([\d.]+) s", done.stderr)
        report = (out / "report.html").stat().st_size / 1e6
    print(f"replay --speed max, 1 cell, {samples:,} rows ({path.stat().st_size / 1e6:.0f} MB CSV):")
    print(f"  end to end: wall {wall:6.2f} s  {samples / wall:>9,.0f} samples/s;  "
          f"CPU {cpu:6.2f} s  {samples / cpu:>9,.0f} samples/s")
    print(f"  dataflow alone (as the command reports it): {flow.group(1) if flow else '?'} s;  "
          f"report.html {report:.2f} MB")
    if profile:
        print(f"  profile: {profile} (python -m pstats {profile})")


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
    from connectors.readers import read_archive

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
    from twin.params import preset
    from twin.protocol import cc_cycles
    from twin.simulator import SensorNoise, Simulation

    cells = [preset("nd4mg80ni8", mass_mg=1.0)] * n_cells
    sim = Simulation(cells, cc_cycles(1.0, 1000), dt=5.0, noise=SensorNoise(), seed=1)
    blocks = list(sim.blocks(block_ticks=4096, max_ticks=samples))
    t = np.concatenate([b.t for b in blocks])
    columns = {k: np.concatenate([getattr(b, k) for b in blocks], axis=1).ravel() for k in ("v", "i", "temp_c")}
    names = np.repeat([f"c{k:03d}" for k in range(n_cells)], t.size)
    path = folder / f"cells{n_cells}.parquet"
    pq.write_table(pa.table({"cell": names, "t": np.tile(t, n_cells), **columns}), path)
    return path


def many_cells(n_cells: int, samples: int, folder: Path) -> None:
    """The dataflow of a replay in-process (no start-up, validation or report): many cells at once."""
    from bytewax.testing import run_main

    from connectors.config import Config
    from connectors.readers import read_archive
    from connectors.replay_source import ReplaySource
    from connectors.wire import CellMeta
    from pipeline.health import Progress
    from pipeline.replay_cmd import replay_config, replay_flow

    path = _cells(n_cells, samples, folder)
    t0 = time.perf_counter()
    records = list(read_archive(path).cells.values())
    parsed = time.perf_counter() - t0
    metas = {r.cell: CellMeta(cell=r.cell, mass_mg=1.0, preset="nd4mg80ni8") for r in records}
    progress = Progress()
    t0 = time.perf_counter()
    run_main(replay_flow(replay_config(Config(), folder / f"out{n_cells}", metas), ReplaySource(records), progress))
    ran = time.perf_counter() - t0
    total = sum(len(r) for r in records)
    assert progress.snapshot()[0] == total
    print(f"replay dataflow, {n_cells:3d} cells x {samples:,} samples: read {parsed:5.2f} s, "
          f"dataflow {ran:6.2f} s  {total / (parsed + ran):>9,.0f} samples/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the replayed single-cell CSV")
    parser.add_argument("--data", type=Path, help="folder keeping the simulated CSV between runs (default: a temp one)")
    parser.add_argument("--profile", type=Path, help="run the replay under cProfile, stats into this file")
    parser.add_argument("--parse-rows", type=int, default=0, help="also time the readers on CSV files of this many rows")
    parser.add_argument("--cells", type=int, nargs="*", default=[], help="also replay this many cells at once")
    parser.add_argument("--samples", type=int, default=20_000, help="samples per cell with --cells")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        replay(args.rows, data, args.profile)
        if args.parse_rows:
            parsing(args.parse_rows, Path(tmp))
        for n in args.cells:
            many_cells(n, args.samples, Path(tmp))


if __name__ == "__main__":
    main()
