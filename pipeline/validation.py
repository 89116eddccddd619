"""Does the twin track a replayed cell? Per-cycle numbers from the file beside the twin's.

A replay gives what live data never does: the whole record up front, so the
twin's outputs can be checked against the file itself. Everything here is a
pure function of a :class:`~connectors.readers.CellRecord` and the run's
output tables (:class:`~pipeline.report_data.CellData`):

* **Coulomb counting on the file**: half-cycles split where the current
  changes sign, rests (|i| under 1 % of the file's working current) ignored,
  charge summed as ``|i_k| (t_k - t_{k-1})``, the convention of cyclers and of
  the twin (a sample reports the current since the one before). A silence
  longer than :data:`GAP_S` is a gap: its charge is unknown, so it is not
  counted, only reported (``uncounted_s``). Cycles are numbered like the twin's:
  a discharge starts cycle n, the charge after it shares n.
* **Beside the twin**: its own count of each half (``cycles.parquet``), its
  tracked reversible capacity, its SOC and ``soc_std`` at the window ends, the
  charge its SOC says moved over each half (SOC change times the capacity in
  effect) against the file's count, the voltage residual and the NIS. Cycles
  with a gap are listed but not judged on charge: nobody counted it.
* **A verdict per cell** (:func:`verdict`), recomputed from ``validation.csv``
  alone so the report and the command line agree.

Why the SOC check is limited to slow halves: at 1C a cell meets its voltage
limit with ~10 % of its charge still in it (polarisation; the simulator's own
truth says so), so "SOC near 0 at the end of discharge" only holds where the
rate is low enough to reach the window end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.readers import CellRecord
from pipeline.report_data import VALIDATION_COLUMNS, VALIDATION_FILE, CellData, Columns

__all__ = [
    "GAP_S",
    "REST_FRACTION",
    "COUNT_TOLERANCE",
    "SLOW_C_RATE",
    "SOC_END_TOLERANCE",
    "CLOSURE_FLOOR",
    "NIS_LIMIT",
    "SIGMAS",
    "COLUMNS",
    "Half",
    "Check",
    "Verdict",
    "half_cycles",
    "validate_cell",
    "validate",
    "write_validation",
    "verdict",
    "verdicts",
]

GAP_S = 600.0  # longer silences are gaps; the twin's estimator uses the same bound
REST_FRACTION = 0.01  # |i| below this share of the file's working current is a rest
COUNT_TOLERANCE = 0.01  # twin's count vs the file's: the twin saw what the file holds
SLOW_C_RATE = 0.2  # halves at or below this rate reach the voltage window's SOC ends
SOC_END_TOLERANCE = 0.05  # SOC left unreached at the window end by a slow half
CLOSURE_FLOOR = 0.02  # stands for the capacity variance the outputs do not carry
NIS_LIMIT = 3.0  # a consistent filter's NIS averages ~1; beyond 3 the misfit exceeds its belief
SIGMAS = 3.0

_HALVES = ("discharge", "charge")

# validation.csv, in this order; per-gram columns only when the cell's mass is known.
COLUMNS: tuple[str, ...] = VALIDATION_COLUMNS + (
    "t_end",
    "uncounted_s",
    "discharge_c_rate",
    "charge_c_rate",
    "twin_discharge_mah",
    "twin_charge_mah",
    "soc_end_discharge",
    "soc_std_end_discharge",
    "soc_end_charge",
    "soc_std_end_charge",
    "closure_discharge",
    "closure_discharge_std",
    "closure_charge",
    "closure_charge_std",
    "v_residual_mean",
    "v_residual_std",
    "v_residual_rms",
    "nis",
)
_PER_GRAM = ("measured_discharge_mah_g", "measured_charge_mah_g", "twin_capacity_mah_g")


@dataclass(frozen=True)
class Half:
    """One half-cycle as counted on the file."""

    half: str  # "discharge" | "charge"
    cycle: int
    t_start: float  # time of the sample before its first active sample
    t_end: float  # time of its last active sample
    mah: float
    active_s: float
    uncounted_s: float  # time inside gaps, whose charge is unknown


@dataclass(frozen=True)
class Check:
    """One criterion of a verdict: passed (None: not applicable) and why."""

    name: str
    passed: bool | None
    detail: str


@dataclass(frozen=True)
class Verdict:
    """Whether the twin tracks one cell: every check that could be made, passed."""

    cell: str
    checks: tuple[Check, ...]

    @property
    def tracks(self) -> bool:
        """True when every applicable check passed (and at least one applied)."""
        applied = [c.passed for c in self.checks if c.passed is not None]
        return bool(applied) and all(applied)

    def summary(self) -> str:
        failed = [c.name for c in self.checks if c.passed is False]
        if self.tracks:
            return "tracks within its own uncertainty"
        return "does not track: " + (", ".join(failed) if failed else "nothing to compare")


# --------------------------------------------------------------------------- the file


def half_cycles(record: CellRecord) -> list[Half]:
    """The file's half-cycles by current sign, coulomb-counted, rests and gaps left out."""
    t, i = record.t, record.i
    if len(record) < 2:
        return []
    dt = np.diff(t, prepend=t[0])
    gap = dt > GAP_S
    counted_dt = np.where(gap | ~(dt > 0), 0.0, dt)
    # The 99th percentile, not the maximum: one glitch of the current sensor must not
    # turn every real half-cycle into a "rest".
    scale = float(np.quantile(np.abs(i), 0.99))
    sign = np.where(np.abs(i) > REST_FRACTION * scale, np.sign(i), 0.0)
    active = np.flatnonzero(sign != 0)
    if active.size == 0:
        return []
    turns = np.flatnonzero(np.diff(sign[active]) != 0) + 1
    halves: list[Half] = []
    cycle = 0
    for run in np.split(active, turns):
        first, last = int(run[0]), int(run[-1])
        discharge = sign[first] < 0
        cycle += int(discharge)
        mah = float(np.sum(np.abs(i[run]) * counted_dt[run]) / 3.6)
        span = slice(first, last + 1)
        halves.append(Half(
            half="discharge" if discharge else "charge",
            cycle=cycle,
            t_start=float(t[max(first - 1, 0)]),
            t_end=float(t[last]),
            mah=mah,
            active_s=float(np.sum(counted_dt[run])),
            uncounted_s=float(np.sum(np.where(gap[span], dt[span], 0.0))),
        ))
    return halves


# --------------------------------------------------------------------------- the twin


def _at(state: Columns, t_start: float, t_end: float) -> int | None:
    """Index of the last estimate inside (t_start, t_end], or None."""
    times = state.get("time")
    if times is None or times.size == 0:
        return None
    k = int(np.searchsorted(times, t_end, side="right")) - 1
    return k if k >= 0 and times[k] > t_start else None


def _value(columns: Columns, name: str, k: int | None) -> float:
    if k is None or name not in columns:
        return math.nan
    return float(columns[name][k])


def _twin_half(table: Columns, cycle: int) -> int | None:
    cycles = table.get("cycle")
    if cycles is None:
        return None
    hits = np.flatnonzero(cycles == cycle)
    return int(hits[0]) if hits.size else None


def _closure(state: Columns, a: int | None, b: int | None, measured: float) -> tuple[float, float]:
    """Relative error of the charge the twin's SOC moved over a half, and its std.

    ``a`` is the estimate at the end of the half before, ``b`` at the end of this
    one. The capacity in effect over the half is the one at ``b``: the twin
    updates its capacity when a half closes and leaves the SOC where the
    voltage pinned it. What remains is what the voltage had to correct the
    coulomb count by, which a twin that tracks keeps within its own soc_std.
    """
    if a is None or b is None or not measured > 0:
        return math.nan, math.nan
    capacity = _value(state, "capacity_mah", b)
    moved = abs(_value(state, "soc", b) - _value(state, "soc", a)) * capacity
    std = math.hypot(_value(state, "soc_std", a), _value(state, "soc_std", b)) * capacity
    return (moved - measured) / measured, std / measured


def _residuals(state: Columns, t_start: float, t_end: float) -> dict[str, float]:
    times = state.get("time", np.array([]))
    inside = (times > t_start) & (times <= t_end)
    res = state.get("v_residual", np.full(times.shape, np.nan))[inside].astype(float)
    res = res[np.isfinite(res)]
    nis = state.get("nis", np.full(times.shape, np.nan))[inside].astype(float)
    nis = nis[np.isfinite(nis)]
    if res.size == 0:
        stats = {"v_residual_mean": math.nan, "v_residual_std": math.nan, "v_residual_rms": math.nan}
    else:
        stats = {"v_residual_mean": float(res.mean()), "v_residual_std": float(res.std()),
                 "v_residual_rms": float(np.sqrt(np.mean(res * res)))}
    stats["nis"] = float(nis[-1]) if nis.size else math.nan  # a running mean: its last value
    return stats


def validate_cell(
    record: CellRecord, twin: CellData | None, mass_mg: float | None = None, one_c_ma: float | None = None
) -> list[dict[str, float | int | str]]:
    """Rows of ``validation.csv`` for one cell, one per cycle of the file."""
    twin = twin or CellData(record.cell, "", {}, {}, {})
    state = twin.state
    cycles: dict[int, dict[str, Half]] = {}
    for h in half_cycles(record):
        cycles.setdefault(h.cycle, {})[h.half] = h
    rows = []
    previous_charge_end: int | None = None
    for number in sorted(cycles):
        halves = cycles[number]
        row: dict[str, float | int | str] = {"cell": record.cell, "cycle": number}
        ends: dict[str, int | None] = {}
        for name in _HALVES:
            h = halves.get(name)
            row[f"measured_{name}_mah"] = h.mah if h else math.nan
            hours = h.active_s / 3600.0 if h else 0.0
            row[f"{name}_c_rate"] = h.mah / hours / one_c_ma if h and hours > 0 and one_c_ma else math.nan
            table = twin.discharge if name == "discharge" else twin.charge
            k = _twin_half(table, number)
            row[f"twin_{name}_mah"] = _value(table, "capacity_mah", k)
            ends[name] = _at(state, h.t_start, h.t_end) if h else None
            row[f"soc_end_{name}"] = _value(state, "soc", ends[name])
            row[f"soc_std_end_{name}"] = _value(state, "soc_std", ends[name])
        discharge, charge = halves.get("discharge"), halves.get("charge")
        row["coulombic_efficiency"] = (
            charge.mah / discharge.mah if charge and discharge and discharge.mah > 0 else math.nan
        )
        last = charge or discharge
        row["twin_capacity_mah"] = _value(state, "capacity_mah", ends["charge"] if charge else ends["discharge"])
        row["t_end"] = last.t_end if last else math.nan
        row["uncounted_s"] = sum(h.uncounted_s for h in halves.values())
        row["closure_discharge"], row["closure_discharge_std"] = _closure(
            state, previous_charge_end, ends["discharge"], row["measured_discharge_mah"])
        row["closure_charge"], row["closure_charge_std"] = _closure(
            state, ends["discharge"], ends["charge"], row["measured_charge_mah"])
        first = min(h.t_start for h in halves.values())
        row.update(_residuals(state, first, last.t_end if last else first))
        if mass_mg:
            grams = mass_mg / 1000.0
            for name, source in zip(_PER_GRAM, ("measured_discharge_mah", "measured_charge_mah", "twin_capacity_mah")):
                row[name] = row[source] / grams
        previous_charge_end = ends["charge"]
        rows.append(row)
    return rows


def validate(
    records: Sequence[CellRecord],
    twins: Sequence[CellData],
    masses: Mapping[str, float] | None = None,
    one_c_ma: Mapping[str, float] | None = None,
) -> list[dict[str, float | int | str]]:
    """Rows of ``validation.csv`` for every replayed cell (twin outputs matched by name)."""
    by_name = {t.cell: t for t in twins}
    masses, one_c_ma = masses or {}, one_c_ma or {}
    rows = []
    for r in records:
        rows += validate_cell(r, by_name.get(r.cell), masses.get(r.cell), one_c_ma.get(r.cell))
    return rows


def write_validation(out_dir: Path, rows: Sequence[Mapping[str, float | int | str]]) -> Path:
    """Write ``validation.csv`` (per-gram columns when every cell's mass was known)."""
    columns = list(COLUMNS) + [c for c in _PER_GRAM if rows and all(c in r for r in rows)]
    data = {c: [r.get(c, math.nan) for r in rows] for c in columns}
    types = {c: pa.string() if c == "cell" else pa.int64() if c == "cycle" else pa.float64() for c in columns}
    table = pa.table({c: pa.array(data[c], types[c]) for c in columns})
    path = Path(out_dir) / VALIDATION_FILE
    pacsv.write_csv(table, path)
    return path


# --------------------------------------------------------------------------- verdict


def _finite(table: Columns, name: str) -> np.ndarray:
    values = table.get(name)
    return np.array([]) if values is None else values.astype(float)


def _without_gaps(table: Columns) -> np.ndarray:
    """Cycles whose charge is known: over a gap neither the file nor the twin can count."""
    uncounted = _finite(table, "uncounted_s")
    return ~(uncounted > 0) if uncounted.size else np.ones(table["cell"].size, dtype=bool)


def _gap_note(table: Columns) -> str:
    skipped = int((~_without_gaps(table)).sum())
    return f"; {skipped} cycle(s) with a gap not judged" if skipped else ""


def _check_count(table: Columns) -> Check:
    errors = []
    known = _without_gaps(table)
    for name in _HALVES:
        measured, twin = _finite(table, f"measured_{name}_mah"), _finite(table, f"twin_{name}_mah")
        if measured.size and twin.size:
            ok = known & np.isfinite(measured) & np.isfinite(twin) & (measured > 0)
            errors.append(np.abs(twin[ok] - measured[ok]) / measured[ok])
    worst = np.concatenate(errors) if errors else np.array([])
    if worst.size == 0:
        return Check("charge counted", None, "no half-cycle closed by the twin" + _gap_note(table))
    return Check("charge counted", bool(worst.max() <= COUNT_TOLERANCE),
                 f"twin's count vs the file's: worst {worst.max():.2%} over {worst.size} halves "
                 f"(limit {COUNT_TOLERANCE:.0%})" + _gap_note(table))


def _check_soc_ends(table: Columns) -> Check:
    misses, seen = [], 0
    for name, target in (("discharge", 0.0), ("charge", 1.0)):
        soc, std = _finite(table, f"soc_end_{name}"), _finite(table, f"soc_std_end_{name}")
        rate = _finite(table, f"{name}_c_rate")
        if not (soc.size and std.size and rate.size):
            continue
        slow = np.isfinite(soc) & np.isfinite(std) & (rate <= SLOW_C_RATE)
        seen += int(slow.sum())
        gap = np.abs(soc[slow] - target)
        misses += gap[gap > np.maximum(SIGMAS * std[slow], SOC_END_TOLERANCE)].tolist()
    if seen == 0:
        return Check("SOC at window ends", None, f"no half at <= {SLOW_C_RATE}C reaches the window ends")
    return Check("SOC at window ends", not misses,
                 f"{seen - len(misses)}/{seen} slow halves end within max({SIGMAS:g} soc_std, "
                 f"{SOC_END_TOLERANCE}) of 0 / 1" + (f"; worst miss {max(misses):.3f}" if misses else ""))


def _check_closure(table: Columns) -> Check:
    parts = []
    known = _without_gaps(table)
    for name in _HALVES:
        err, std = _finite(table, f"closure_{name}"), _finite(table, f"closure_{name}_std")
        if err.size and std.size:
            ok = known & np.isfinite(err) & np.isfinite(std)
            parts.append((err[ok], std[ok]))
    if not parts or sum(e.size for e, _ in parts) == 0:
        return Check("SOC x capacity vs charge", None, "no half with twin estimates at both ends" + _gap_note(table))
    err = np.concatenate([e for e, _ in parts])
    std = np.concatenate([s for _, s in parts])
    allowed = SIGMAS * std + CLOSURE_FLOOR
    inside = np.abs(err) <= allowed
    return Check("SOC x capacity vs charge", bool(inside.all()),
                 f"{int(inside.sum())}/{err.size} halves: the charge the twin's SOC moved matches the "
                 f"file within {SIGMAS:g} sigma + {CLOSURE_FLOOR:.0%} (worst {np.abs(err).max():.2%})"
                 + _gap_note(table))


def _check_voltage(table: Columns) -> Check:
    if "nis" not in table:
        return Check("voltage residual", None, "no voltage residuals in the table")
    nis = _finite(table, "nis")
    nis = nis[np.isfinite(nis)]
    if nis.size == 0:
        return Check("voltage residual", False, "no finite NIS: the twin made no usable voltage estimate")
    rms = _finite(table, "v_residual_rms")
    rms = rms[np.isfinite(rms)]
    note = f", residual rms {1000 * float(np.median(rms)):.1f} mV" if rms.size else ""
    return Check("voltage residual", bool(np.median(nis) <= NIS_LIMIT),
                 f"median NIS {float(np.median(nis)):.2f} (limit {NIS_LIMIT:g}){note}")


def verdict(cell: str, table: Columns) -> Verdict:
    """The verdict on one cell from its rows of ``validation.csv``."""
    return Verdict(cell, (_check_count(table), _check_soc_ends(table), _check_closure(table), _check_voltage(table)))


def verdicts(table: Columns) -> list[Verdict]:
    """One verdict per cell of a validation table, cells in name order."""
    names = sorted({str(c) for c in table["cell"]})
    out = []
    for name in names:
        mask = table["cell"].astype(str) == name
        out.append(verdict(name, {k: v[mask] for k, v in table.items()}))
    return out
