"""`celltwin export DIR --format bdf`: an output folder in the formats labs share.

Per cell, three files in ``DIR/bdf/`` (or ``--to``):

- ``CELL.bdf.csv``: Battery Data Format time series (:mod:`connectors.bdf`): test time,
  Unix time, voltage, current, cycle count, temperature;
- ``CELL.cycle_stats.csv``: one row per cycle with battdat's column names;
- ``CELL.metadata.json``: what the files hold, column by column.

An output folder keeps the twin's ``twin_state`` points, not every raw sample: the
voltage and current exported are the measured ones of those points (one per cell per
``estimate_interval_s`` of sample time), which the metadata says. The capacities are
the coulomb-counted ones of ``cycles.parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pyarrow as pa
import typer

from connectors.bdf import (
    BDF_CURRENT, BDF_CYCLE, BDF_TEMPERATURE, BDF_TIME, BDF_UNIX_TIME, BDF_VOLTAGE, write_csv, write_metadata,
)
from connectors.config import ConfigError
from connectors.file_sink import read_parts
from connectors.wire import OUT_CYCLES, OUT_ESTIMATES, TAG_CELL, TAG_HALF, TAG_PRESET

__all__ = ["export", "FORMATS", "export_bdf", "cycle_stats"]

FORMATS = ("bdf",)

_SAMPLES_NOTE = (
    "Voltage, current and temperature are the measured values of the twin's twin_state points "
    "(one per cell per estimate interval of sample time), not every raw sample. Cycle Count is the "
    "cycle of the half-cycle each point belongs to. Capacities in the cycle statistics are coulomb-counted "
    "per half-cycle; cycle_number counts from 1 as the cycler does; cycle_start is seconds after the "
    "cell's first point."
)


def export(
    out_dir: Annotated[Path, typer.Argument(help="Output folder of `celltwin run` or `celltwin replay`.")],
    format: Annotated[str, typer.Option("--format", help="Format to write: bdf (Battery Data Format CSV, "
                                                         "battdat cycle statistics, metadata).")] = "bdf",
    to: Annotated[Optional[Path], typer.Option(help="Folder for the files (default DIR/bdf).")] = None,
) -> None:
    """Export an output folder in a format labs share; print the files written."""
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    for path in export_bdf(out_dir, to or out_dir / "bdf"):
        typer.echo(str(path))


def _table(out_dir: Path, name: str) -> pa.Table:
    path = out_dir / name
    if not path.exists():
        raise ConfigError(f"{path} does not exist; give the output folder of `celltwin run` or `celltwin replay`")
    return read_parts(path)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _safe_file_stem(cell: str) -> str:
    if not cell or cell in (".", "..") or any(ch in cell for ch in '/\\:*?"<>|'):
        raise ConfigError(f"cell id {cell!r} cannot name a file; rename the cell to export it")
    return cell


def export_bdf(out_dir: Path, dest: Path) -> list[Path]:
    """Write each cell's BDF CSV, cycle statistics and metadata into ``dest``; the paths written."""
    estimates = _table(out_dir, OUT_ESTIMATES)
    cycles = _table(out_dir, OUT_CYCLES)
    if estimates.num_rows == 0:
        raise ConfigError(f"{out_dir / OUT_ESTIMATES} holds no points; nothing to export")
    dest.mkdir(parents=True, exist_ok=True)
    cells = _column(estimates, TAG_CELL)
    cycle_cells = _column(cycles, TAG_CELL)
    written = []
    for cell in dict.fromkeys(cells.tolist()):
        stem = _safe_file_stem(cell)
        points = estimates.filter(pa.array(cells == cell))
        halves = cycles.filter(pa.array(cycle_cells == cell))
        t = _column(points, "time")
        order = np.argsort(t, kind="stable")
        t = t[order]
        series = {
            BDF_TIME: t - t[0],
            BDF_UNIX_TIME: t,
            BDF_VOLTAGE: _column(points, "v")[order],
            BDF_CURRENT: _column(points, "i")[order],
        }
        if halves.num_rows:
            series[BDF_CYCLE] = _cycle_of(t, _column(halves, "time"), _column(halves, "cycle"))
        series[BDF_TEMPERATURE] = _column(points, "temp_c")[order]
        stats = cycle_stats(halves, t0=float(t[0]))
        files = {f"{stem}.bdf.csv": series, f"{stem}.cycle_stats.csv": stats}
        for name, columns in files.items():
            written.append(write_csv(dest / name, columns))
        written.append(write_metadata(
            dest / f"{stem}.metadata.json", cell=cell, comments=_SAMPLES_NOTE,
            extra={"preset": str(_column(points, TAG_PRESET)[0]), "exported_from": str(out_dir)},
            tables={name: list(columns) for name, columns in files.items()},
        ))
    return written


def _cycle_of(t: np.ndarray, half_end: np.ndarray, half_cycle: np.ndarray) -> np.ndarray:
    """The cycle of each point: that of the first half-cycle ending at or after it (the
    last one's after the final half)."""
    order = np.argsort(half_end, kind="stable")
    ends, numbers = half_end[order], half_cycle[order]
    return numbers[np.minimum(np.searchsorted(ends, t, side="left"), len(ends) - 1)]


def cycle_stats(halves: pa.Table, t0: float) -> dict[str, np.ndarray]:
    """One row per cycle in battdat's names from a cell's half-cycle rows of cycles.parquet.

    A cycle starts where the previous cycle's last half ended (the first at ``t0``) and
    ends with its last half; a cycle without one of its halves has NaN for it.
    """
    number = _column(halves, "cycle")
    end = _column(halves, "time")
    half = _column(halves, TAG_HALF)
    mah = _column(halves, "capacity_mah")
    cycles = np.unique(number)
    stats = {name: np.full(len(cycles), np.nan) for name in
             ("cycle_start", "cycle_duration", "capacity_discharge", "capacity_charge")}
    start = t0
    for k, cycle in enumerate(cycles):
        rows = number == cycle
        for kind, column in (("discharge", "capacity_discharge"), ("charge", "capacity_charge")):
            of_kind = rows & (half == kind)
            if of_kind.any():
                stats[column][k] = mah[of_kind][-1] / 1000.0  # mAh -> A-hr
        finish = float(end[rows].max())
        stats["cycle_start"][k] = start - t0
        stats["cycle_duration"][k] = finish - start
        start = finish
    with np.errstate(invalid="ignore", divide="ignore"):
        efficiency = stats["capacity_charge"] / stats["capacity_discharge"]
    return {"cycle_number": cycles.astype(np.int64), **stats, "coulomb_efficiency": efficiency}
