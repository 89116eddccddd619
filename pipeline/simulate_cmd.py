"""`celltwin simulate` and `celltwin calibrate`: the twin's physics from the command line."""

from __future__ import annotations

import csv
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from twin import calibration
from twin.protocol import cc_cycles, gitt, rate_ladder
from twin.simulator import Faults, SensorNoise, Simulation, cycle_table

from connectors.sim_producer import SimCell, fleet
from pipeline.flags import COMPOSITION, DT, MASS_MG, MIXED_CELLS, NOISE, PRESET, SEED

__all__ = ["simulate", "calibrate", "Protocol", "resolve_cells"]

CYCLES_CSV = "cycles.csv"

console = Console(stderr=True)


class Protocol(str, Enum):
    cc = "cc"
    rate = "rate"
    gitt = "gitt"


def resolve_cells(preset: str, composition: Optional[str], cells: int, mass_mg: float, seed: int) -> list[SimCell]:
    """The simulated cells (a preset, mixed, or a composition), with a clear error."""
    try:
        return fleet(cells, preset, composition=composition, mass_mg=mass_mg, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def simulate(
    out: Annotated[Path, typer.Option("--out", help=f"Output folder: the per-cycle table goes to {CYCLES_CSV} there "
                                      "(a path ending in .csv names the file itself).")] = Path("."),
    preset: Annotated[str, typer.Option(help=PRESET + MIXED_CELLS)] = "nd4mg80ni8",
    composition: Annotated[Optional[str], typer.Option(help=COMPOSITION)] = None,
    c_rate: Annotated[float, typer.Option("--c-rate", help="C-rate of constant-current cycling (1C = 2038 mA/g with MgH2).")] = 0.1,
    cycles: Annotated[int, typer.Option(help="Cycles (cc), or cycles per rate (rate ladder).")] = 10,
    protocol: Annotated[Protocol, typer.Option(help="cc: constant current; rate: 0.1C..2C ladder then 0.5C; gitt: pulses.")] = Protocol.cc,
    cells: Annotated[int, typer.Option(help="Number of cells; more than one adds cell-to-cell variability.")] = 1,
    mass_mg: Annotated[float, typer.Option("--mass-mg", help=MASS_MG)] = 1.0,
    dt: Annotated[float, typer.Option(help=DT)] = 10.0,
    samples: Annotated[
        Optional[Path], typer.Option(help="Also write the sample stream (cell,t,v,i,temp_c,cycle,step) to this CSV/Parquet file.")
    ] = None,
    noise: Annotated[bool, typer.Option(help=f"{NOISE} To the sample stream (--samples).")] = True,
    seed: Annotated[int, typer.Option(help=SEED)] = 0,
) -> None:
    """Simulate cells on a cycler protocol and write the per-cycle table."""
    if cycles < 1 or cells < 1 or not (c_rate > 0 and math.isfinite(c_rate)):
        raise typer.BadParameter("--cycles and --cells must be >= 1 and --c-rate > 0")
    members = resolve_cells(preset, composition, cells, mass_mg, seed)
    params = [c.params for c in members]
    steps = {Protocol.cc: lambda: cc_cycles(c_rate, cycles), Protocol.rate: lambda: rate_ladder(cycles), Protocol.gitt: gitt}[protocol]()
    sim = Simulation(params, steps, dt=dt, noise=SensorNoise() if noise else SensorNoise.none(), faults=Faults(), seed=seed)
    names = [c.cell for c in members]  # the same ids in the table, the samples and the summary
    writer = _SampleWriter(samples, names) if samples else None
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=None)
        for block in sim.blocks(block_ticks=2048):
            if writer:
                writer.add(block)
            bar.update(task, advance=block.t.size, description=f"simulating: {len(sim.truth)} half-cycles done")
    if writer:
        writer.close()
    rows = cycle_table(sim.truth)
    for r in rows:
        if cells == 1:
            r.pop("cell")
        else:
            member = members[r["cell"]]
            r["cell"], r["preset"] = member.cell, member.preset or member.composition
    table_path = out if out.suffix == ".csv" else out / CYCLES_CSV
    _write_csv(table_path, rows)
    _print_summary(rows, table_path, samples)


def calibrate(
    iterations: Annotated[int, typer.Option(help="Gauss-Newton iterations (each runs the five paper protocols).")] = 10,
) -> None:
    """Refit the shared constants to the paper's cycling figures and print the residuals."""
    console.print("fitting (each iteration simulates 100 + 50 + 75 cycles and two rate ladders) ...")
    cal = calibration.fit(iterations=iterations, log=console.print)
    table = Table(title="calibrated constants (paste into twin/params.py Calibration)")
    table.add_column("constant")
    table.add_column("value", justify="right")
    for name, value in calibration.free_values(cal).items():
        table.add_row(name, f"{value:.6g}")
    Console().print(table)
    Console().print(residual_table(cal))


def residual_table(cal) -> Table:
    pred = calibration.predict([cal])[0]
    res = calibration.residuals(pred)
    table = Table(title="fit against the paper (residual in units of the tolerance)")
    for col in ("target", "paper", "model", "residual", "note"):
        table.add_column(col)
    for t, p, r in zip(calibration.TARGETS, pred, res):
        table.add_row(t.name, f"{t.value:g}", f"{p:.4g}", f"{r:+.2f}", t.note)
    return table


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _print_summary(rows: list[dict], out: Path, samples: Optional[Path]) -> None:
    table = Table(title=f"{len(rows)} cycle rows")
    several = any("cell" in r for r in rows)
    for col in ("cell",) * several + ("cycle", "c_rate", "discharge mAh/g", "charge mAh/g", "CE", "retention"):
        table.add_column(col, justify="left" if col == "cell" else "right")
    shown = rows if len(rows) <= 12 else rows[:6] + rows[-6:]
    for r in shown:
        table.add_row(
            *([r["cell"]] if several else []), str(r["cycle"]), f"{r['c_rate']:.2g}", f"{r.get('discharge_capacity_mah_g', float('nan')):.0f}",
            f"{r.get('charge_capacity_mah_g', float('nan')):.0f}", f"{r['coulombic_efficiency']:.3f}", f"{r['retention']:.3f}",
        )
    console.print(table)
    console.print(f"per-cycle table: {out}" + (f"\nsample stream: {samples}" if samples else ""))


class _SampleWriter:
    """Stream sample blocks to CSV or Parquet without holding the whole run in memory."""

    _SCHEMA = pa.schema(
        [("cell", pa.string()), ("t", pa.float64()), ("v", pa.float64()), ("i", pa.float64()),
         ("temp_c", pa.float64()), ("cycle", pa.int32()), ("step", pa.int32())]
    )

    def __init__(self, path: Path, names: list[str]):
        self.names = np.array(names)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            self._writer = pq.ParquetWriter(path, self._SCHEMA)
        else:
            self._writer = pacsv.CSVWriter(path, self._SCHEMA)

    def add(self, b) -> None:
        cell, k = np.nonzero(b.valid)
        cols = [self.names[cell], b.t[k], b.v[cell, k], b.i[cell, k], b.temp_c[cell, k],
                b.cycle[cell, k].astype(np.int32), b.step[cell, k].astype(np.int32)]
        self._writer.write_table(pa.table(cols, schema=self._SCHEMA))

    def close(self) -> None:
        self._writer.close()
