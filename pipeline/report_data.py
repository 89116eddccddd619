"""Reading a run's output folder into per-cell arrays for the HTML report.

Kept apart from the plotting so the numbers in the summary table (and the
decimation that keeps the page small) can be tested without a browser. Columns
come back as numpy arrays; no data-frame library is needed for a few Parquet files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.alert_catalogue import by_kind
from connectors.file_sink import read_parts
from connectors.wire import OUT_ALERTS, OUT_CYCLES, OUT_DQDV, OUT_ESTIMATES
from pipeline.flags import package_version

__all__ = [
    "VALIDATION_FILE",
    "RUN_FILE",
    "write_run_info",
    "load_run_info",
    "VALIDATION_COLUMNS",
    "Columns",
    "CellData",
    "SummaryRow",
    "fmt",
    "load_cells",
    "forget_other_jobs",
    "load_validation",
    "minmax_indices",
    "summarize",
]

VALIDATION_FILE = "validation.csv"
RUN_FILE = "run.json"  # the job that filled the folder, for the report's header
VALIDATION_COLUMNS = ("cell", "cycle", "measured_discharge_mah", "measured_charge_mah",
                      "coulombic_efficiency", "twin_capacity_mah")

Columns = dict[str, np.ndarray]


@dataclass
class CellData:
    """Everything the report shows about one cell, each table sorted by time."""

    cell: str
    preset: str
    state: Columns
    discharge: Columns
    charge: Columns
    alerts: Columns = field(default_factory=dict)
    curves: Columns = field(default_factory=dict)  # dqdv: the measured dQ/dV curve of each half


def fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    """``value`` formatted, or "-" where the run has none."""
    return "-" if value is None else pattern.format(value)


@dataclass(frozen=True)
class SummaryRow:
    """One line of the fleet table; ``None`` where the run has no value."""

    cell: str
    preset: str
    cycles: int
    capacity_mah: float | None
    capacity_mah_g: float | None
    measured_retention: float | None  # of the newest half-cycle with a retention, either kind
    retention: float | None  # the twin's, of the same half
    impedance_growth: float | None
    crack_risk: float | None
    phase_sep_risk: float | None
    alerts: int
    critical_alerts: int

    @property
    def lab_retention(self) -> float | None:
        """The retention held against the floor: the measured one where there is one, else the
        twin's (as the in-stream alert does)."""
        return self.retention if self.measured_retention is None else self.measured_retention

    def retention_text(self) -> str:
        """Measured (twin), e.g. "81.2% (80.9%)"."""
        return f"{fmt(self.measured_retention, '{:.1%}')} ({fmt(self.retention, '{:.1%}')})"

    def breaches(self) -> dict[str, bool]:
        """Which values lie beyond their limit in the alert catalogue."""

        def beyond(value: float | None, kind: str) -> bool:
            return value is not None and by_kind(kind).crossed(value) is not None

        return {
            "retention": beyond(self.lab_retention, "retention_floor"),
            "impedance_growth": beyond(self.impedance_growth, "impedance_growth"),
            "crack_risk": beyond(self.crack_risk, "crack_risk"),
            "phase_sep_risk": beyond(self.phase_sep_risk, "phase_sep_risk"),
        }


def _columns(table: pa.Table) -> Columns:
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _read(path: Path, required: bool) -> Columns:
    if not path.exists():
        if required:
            raise FileNotFoundError(f"{path} is missing: is {path.parent} the output folder of a run?")
        return {}
    return _columns(read_parts(path))


def _select(columns: Columns, mask: np.ndarray) -> Columns:
    picked = {name: values[mask] for name, values in columns.items()}
    if "time" in picked:
        order = np.argsort(picked["time"], kind="stable")
        picked = {name: values[order] for name, values in picked.items()}
    return picked


def load_cells(out_dir: Path) -> list[CellData]:
    """Per-cell data of the run in ``out_dir``, cells in name order."""
    state = _read(out_dir / OUT_ESTIMATES, required=True)
    cycles = _read(out_dir / OUT_CYCLES, required=True)
    alerts = _read(out_dir / OUT_ALERTS, required=False)
    curves = _read(out_dir / OUT_DQDV, required=False)  # a folder written before the curves existed has none
    names = sorted({str(c) for c in state["cell"]} | {str(c) for c in cycles["cell"]})
    cells = []
    for name in names:
        cell_state = _select(state, state["cell"] == name)
        cell_cycles = _select(cycles, cycles["cell"] == name)
        presets = [*cell_state["preset"], *cell_cycles["preset"]]
        cells.append(CellData(
            cell=name,
            preset=str(presets[-1]) if presets else "",
            state=cell_state,
            discharge=_select(cell_cycles, cell_cycles["half"] == "discharge"),
            charge=_select(cell_cycles, cell_cycles["half"] == "charge"),
            alerts=_select(alerts, alerts["cell"] == name) if alerts else {},
            curves=_select(curves, curves["cell"] == name) if curves else {},
        ))
    return cells


def forget_other_jobs(out_dir: Path) -> None:
    """Remove what a replay left in `out_dir` that a run does not write: its
    validation would show in the run's report, for cells that are not in the run."""
    (out_dir / VALIDATION_FILE).unlink(missing_ok=True)


def write_run_info(out_dir: Path, command: str, facts: dict[str, str]) -> None:
    """What the report's header says of the job that filled ``out_dir``: the command, the
    version that ran it, when, and ``facts`` (input, C-rate, seed...), in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"command": command, "version": package_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **facts}
    (out_dir / RUN_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")


def load_run_info(out_dir: Path) -> dict[str, str]:
    """The facts :func:`write_run_info` left, or none (a folder from an older version)."""
    path = out_dir / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_validation(out_dir: Path) -> Columns | None:
    """The optional validation table (measured cycles next to the twin), if present."""
    path = out_dir / VALIDATION_FILE
    if not path.is_file():
        return None
    options = pacsv.ConvertOptions(column_types={"cell": pa.string()})
    table = pacsv.read_csv(path, convert_options=options)
    # A column with no value at all (e.g. no twin estimate in any cycle) reads as nulls.
    table = pa.table({name: col.cast(pa.float64()) if pa.types.is_null(col.type) else col
                      for name, col in zip(table.column_names, table.columns)})
    columns = _columns(table)
    missing = [c for c in VALIDATION_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return columns


def _last(columns: Columns, name: str) -> float | None:
    values = columns.get(name)
    if values is None:
        return None
    finite = values[np.isfinite(values.astype(float))]
    return float(finite[-1]) if finite.size else None


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _newest_retentions(cell: CellData) -> tuple[float | None, float | None]:
    """Measured and twin retention of the newest half-cycle that has either, discharge or
    charge: the one the in-stream alert judged last."""
    halves = [h for h in (cell.discharge, cell.charge) if h.get("time", np.array([])).size]
    if not halves:
        return None, None
    time, measured, twin = (np.concatenate([h[name].astype(float) for h in halves])
                            for name in ("time", "measured_retention", "retention"))
    known = np.flatnonzero(np.isfinite(measured) | np.isfinite(twin))
    if not known.size:
        return None, None
    newest = known[np.argmax(time[known])]
    return _finite(measured[newest]), _finite(twin[newest])


def summarize(cell: CellData) -> SummaryRow:
    """The fleet-table line of one cell: newest estimate, falling back to cycle summaries."""

    def newest(name: str) -> float | None:
        value = _last(cell.state, name)
        return value if value is not None else _last(cell.discharge, name)

    cycle_numbers = [*cell.discharge.get("cycle", []), *cell.charge.get("cycle", [])]
    severity = cell.alerts.get("severity", np.array([], dtype=object))
    measured_retention, retention = _newest_retentions(cell)
    return SummaryRow(
        cell=cell.cell,
        preset=cell.preset,
        cycles=int(max(cycle_numbers)) if cycle_numbers else 0,
        capacity_mah=_last(cell.discharge, "capacity_mah"),
        capacity_mah_g=_last(cell.discharge, "capacity_mah_g"),
        measured_retention=measured_retention,
        retention=retention,
        impedance_growth=newest("impedance_growth"),
        crack_risk=newest("crack_risk"),
        phase_sep_risk=newest("phase_sep_risk"),
        alerts=int(severity.size),
        critical_alerts=int(np.count_nonzero(severity == "critical")),
    )


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` samples keeping each bucket's min and max.

    Plain striding would drop the short spikes (a voltage step, a risk jump) a
    reader looks for; keeping both extremes of every bucket preserves the envelope.
    """
    n = values.size
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 2)
    size = math.ceil(n / buckets)
    rows = math.ceil(n / size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = values.astype(float)
    grid = padded.reshape(rows, size)
    finite = np.isfinite(grid)
    low = np.where(finite, grid, np.inf).argmin(axis=1)
    high = np.where(finite, grid, -np.inf).argmax(axis=1)
    offsets = np.arange(rows) * size
    picked = np.concatenate([[0, n - 1], offsets + low, offsets + high])
    return np.unique(picked[picked < n])
