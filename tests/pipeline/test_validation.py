"""Validation: coulomb counting on the file, the twin beside it, and the verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.readers import CellRecord, read_archive
from connectors.wire import CYCLE_FIELDS, OUT_CYCLES, OUT_ESTIMATES, STATE_FIELDS
from pipeline.report import build_report
from pipeline.report_data import CellData, load_validation
from pipeline.validation import (
    CLOSURE_FLOOR, COLUMNS, GAP_S, Check, Verdict, gap_s, half_cycles, validate, validate_cell, verdict, verdicts,
    write_validation,
)

T0 = 1_767_225_600.0
DT = 10.0
CAPACITY_MAH = 1.0


def _cell(steps: list[tuple[float, float]], name: str = "V1", noise_a: float = 0.0,
          sloped: bool = False) -> CellRecord:
    """Samples every DT seconds of ``(current A, duration s)`` steps; rests get sensor noise.
    The voltage is a flat 0.6 V (no window), or `sloped`: 0.5 V + 0.2 V x the SOC counted on
    CAPACITY_MAH from full, so halves that run the SOC range run the voltage window."""
    currents = np.concatenate([np.full(int(round(d / DT)), c) for c, d in steps])
    rng = np.random.default_rng(0)
    currents = currents + np.where(currents == 0, rng.normal(0.0, noise_a, currents.size), 0.0)
    t = T0 + DT * np.arange(1, currents.size + 1)
    soc = 1.0 + np.cumsum(currents * DT) / 3.6 / CAPACITY_MAH
    v = 0.5 + 0.2 * soc if sloped else np.full(t.size, 0.6)
    return CellRecord(name, t, v, currents, np.full(t.size, 130.0))


# After a rest (the file's first sample has no interval before it), two cycles of
# 0.9 mAh discharge at 1 mA, rest, 0.88 mAh charge at 1.1 mA, rest.
STEPS = [(0.0, 600.0)] + [(-1e-3, 3240.0), (0.0, 600.0), (1.1e-3, 2880.0), (0.0, 600.0)] * 2
# Deep 0.1C halves (on a 10 mA 1C) that end within 0.02 of the window ends.
DEEP = [(0.0, 600.0)] + [(-1e-3, 3530.0), (0.0, 600.0), (1e-3, 3530.0), (0.0, 600.0)] * 2


def test_half_cycles_by_current_sign_rests_ignored() -> None:
    halves = half_cycles(_cell(STEPS, noise_a=2e-6))

    assert [(h.cycle, h.half) for h in halves] == [(1, "discharge"), (1, "charge"), (2, "discharge"), (2, "charge")]
    # Trapezoids: the rest readings either side (2 uA of noise) weigh half an interval each.
    assert [h.mah for h in halves] == pytest.approx([0.9, 0.88, 0.9, 0.88], abs=1e-5)
    assert [h.active_s for h in halves] == pytest.approx([3240.0, 2880.0, 3240.0, 2880.0])
    assert all(h.uncounted_s == 0.0 for h in halves)
    assert halves[1].t_start == halves[0].t_end + 600.0  # the rest is not part of a half


def test_a_gap_stays_a_gap_and_is_not_counted() -> None:
    rec = _cell(STEPS[:4])
    middle = 160  # 100 samples into the discharge
    rec.t[middle:] += 2 * 3600.0  # the cycler stopped for two hours mid-discharge

    discharge, charge = half_cycles(rec)

    assert discharge.uncounted_s == pytest.approx(2 * 3600.0 + DT)
    assert discharge.mah == pytest.approx(0.9 - 1e-3 * DT / 3.6, rel=1e-9)  # the sample after the gap
    # The file ends on the charge's last sample: the half interval after it is no one's to count.
    assert charge.uncounted_s == 0.0 and charge.mah == pytest.approx(0.88 - 1.1e-3 * DT / 2 / 3.6)
    assert rec.t[middle] - rec.t[middle - 1] > GAP_S


def test_a_file_logged_every_15_min_is_counted_and_a_long_stop_in_it_is_still_a_gap() -> None:
    """Every interval of a slow test logged each 900 s is longer than GAP_S: before, each was
    a gap and not a charge was counted. A stop of ten of its intervals still is one."""
    rec = _cell(STEPS[:4])
    every = 90  # keep each 90th sample of the 10 s ones: 900 s apart
    rec = CellRecord(rec.cell, rec.t[::every], rec.v[::every], rec.i[::every], rec.temp_c[::every])
    assert gap_s(rec.t) == pytest.approx(10 * 900.0)

    discharge, charge = half_cycles(rec)
    assert discharge.uncounted_s == charge.uncounted_s == 0.0
    assert discharge.mah == pytest.approx(0.9, rel=0.15)  # the ends are 900 s coarse
    assert charge.mah == pytest.approx(0.88, rel=0.15)

    rec.t[2:] += 3 * 3600.0  # the cycler stopped for 3 h, twelve of its intervals
    discharge, _ = half_cycles(rec)
    assert discharge.uncounted_s == pytest.approx(3 * 3600.0 + 900.0)



def test_a_mean_current_is_counted_over_the_interval_before_it() -> None:
    """BioLogic's <I> is what flowed since the row before. A 10 s charge at 1 mA logged each
    second, then a rest row 180 s on: taken as linear to the rest row, the current adds
    1 mA x 90 s the cycle never passed; each row's current over its own interval does not."""
    t = T0 + np.r_[np.arange(0.0, 11.0), 190.0, 200.0]
    i = np.r_[0.0, np.full(10, 1e-3), 0.0, 0.0]
    rec = CellRecord("B1", t, np.full(t.size, 3.5), i, np.full(t.size, 25.0))
    (linear,) = half_cycles(rec)
    (held,) = half_cycles(replace(rec, mean_current=True))
    assert held.mah == pytest.approx(10 * 1.0 / 3600.0, rel=1e-12)
    assert linear.mah == pytest.approx((0.5 + 9.0 + 90.0) * 1.0 / 3600.0, rel=1e-12)  # ramps at both ends
    assert held.active_s == pytest.approx(10.0)


def test_a_real_cc_cv_binary_is_counted_as_the_cycler_counted() -> None:
    """A BioLogic GCPL binary with CV steps and no measured current (aurora-cycler-manager's
    test data): each row's charge over its interval, counted, is the cycler's count of every half."""
    pytest.importorskip("galvani")
    path = Path(__file__).parents[1] / "connectors" / "readers" / "data" / "250116_kigr_gen6_01_02_GCPL_CD8.mpr"
    halves = half_cycles(read_archive(path, tz="UTC").only())
    assert len(halves) == 6
    for half in halves:
        assert half.mah == pytest.approx(half.cycler_mah, rel=1e-6)


def test_a_file_that_starts_charging_numbers_cycles_like_the_twin() -> None:
    halves = half_cycles(_cell([(0.0, 60.0), (1e-3, 360.0), (-1e-3, 720.0), (1e-3, 720.0)]))
    assert [(h.cycle, h.half) for h in halves] == [(0, "charge"), (1, "discharge"), (1, "charge")]


def _twin(rec: CellRecord, *, count_bias: float = 0.0, soc_offset: float = 0.0,
          residual_v: float = 0.003, nis: float = 0.8) -> CellData:
    """Outputs of a twin that follows the file: SOC by coulomb counting on CAPACITY_MAH."""
    soc = 1.0 + np.cumsum(rec.i * np.diff(rec.t, prepend=rec.t[0] - DT)) / 3.6 / CAPACITY_MAH + soc_offset
    n = len(rec)
    rng = np.random.default_rng(1)
    state = {
        "time": rec.t.copy(), "soc": soc, "soc_std": np.full(n, 0.004), "capacity_mah": np.full(n, CAPACITY_MAH),
        "v_residual": rng.normal(0.0, residual_v, n), "nis": np.full(n, nis),
    }
    tables = {}
    for name in ("discharge", "charge"):
        halves = [h for h in half_cycles(rec) if h.half == name]
        tables[name] = {"time": np.array([h.t_end for h in halves]), "cycle": np.array([h.cycle for h in halves]),
                        "capacity_mah": np.array([h.mah * (1 + count_bias) for h in halves])}
    return CellData(rec.cell, "nd4mg80ni8", state, tables["discharge"], tables["charge"])


def test_rows_put_the_file_beside_the_twin() -> None:
    rec = _cell(STEPS)
    rows = validate_cell(rec, _twin(rec), mass_mg=2.0, one_c_ma=10.0)

    assert [r["cycle"] for r in rows] == [1, 2]
    first = rows[0]
    assert first["measured_discharge_mah"] == pytest.approx(0.9)
    assert first["measured_charge_mah"] == pytest.approx(0.88)
    assert first["coulombic_efficiency"] == pytest.approx(0.88 / 0.9)
    assert first["twin_discharge_mah"] == pytest.approx(0.9)
    assert first["twin_capacity_mah"] == pytest.approx(CAPACITY_MAH)
    assert first["discharge_c_rate"] == pytest.approx(0.1)  # 1 mA on a 10 mA 1C
    assert first["soc_end_discharge"] == pytest.approx(0.1)
    assert first["soc_end_charge"] == pytest.approx(0.98)
    assert math.isnan(first["closure_discharge"])  # no charge before the first discharge
    assert first["closure_charge"] == pytest.approx(0.0, abs=1e-9)
    assert rows[1]["closure_discharge"] == pytest.approx(0.0, abs=1e-9)
    assert first["measured_discharge_mah_g"] == pytest.approx(450.0)
    assert first["twin_capacity_mah_g"] == pytest.approx(500.0)
    assert first["v_residual_rms"] == pytest.approx(0.003, rel=0.2)


@pytest.mark.parametrize("capacity_std, holds", [(0.10, True), (0.01, False)])
def test_the_soc_closure_allows_for_the_twins_stated_capacity_uncertainty(tmp_path: Path, capacity_std: float,
                                                                          holds: bool) -> None:
    # The twin's capacity is 6 % high, its SOC where the voltage pins it: the charge its SOC
    # moved is 6 % more than the count. Within a stated 10 % that is tracking; within 1 % it is not.
    rec = _cell(DEEP, sloped=True)
    twin = _twin(rec)
    twin.state["capacity_mah"] = twin.state["capacity_mah"] * 1.06
    twin.state["capacity_std_mah"] = twin.state["capacity_mah"] * capacity_std
    rows = validate_cell(rec, twin, one_c_ma=10.0)
    assert rows[1]["closure_discharge"] == pytest.approx(0.06, abs=1e-6)
    check = next(c for c in verdict("V1", _table(rows, tmp_path)).checks if c.name == "SOC x capacity vs charge")
    assert check.passed is holds, check.detail



@pytest.mark.parametrize("soc_error, holds", [(0.03, True), (0.06, False)])
def test_the_closure_floor_is_of_soc_so_a_file_ending_mid_half_is_judged_by_it(tmp_path: Path, soc_error: float,
                                                                                holds: bool) -> None:
    # The file ends 20 % into a discharge, the twin's SOC there off by 3 % of capacity: within
    # the 2 % floor plus its stated soc_std, though 15 % of that half's charge. Off by 6 %, not.
    rec = _cell(DEEP + [(-1e-3, 720.0)], sloped=True)
    twin = _twin(rec)
    last = half_cycles(rec)[-1]
    twin.state["soc"][rec.t >= last.t_start] -= soc_error
    rows = validate_cell(rec, twin, one_c_ma=10.0)
    assert rows[-1]["closure_discharge"] == pytest.approx(soc_error * CAPACITY_MAH / last.mah, abs=0.01)
    check = next(c for c in verdict("V1", _table(rows, tmp_path)).checks if c.name == "SOC x capacity vs charge")
    assert check.passed is holds, check.detail


@pytest.mark.parametrize("c_rate, holds", [(0.2017, False), (0.3, True)])
def test_a_nominal_c5_half_reaches_the_window_ends(tmp_path: Path, c_rate: float, holds: bool) -> None:
    # A twin 8 % above the count: more than a slow half leaves unreached (5 %), which C/5
    # read as 0.2017C against a capacity learned a little low still is; any share at 0.3C.
    rec = _cell(DEEP, sloped=True)
    twin = _twin(rec)
    twin.state["capacity_mah"] = twin.state["capacity_mah"] * 1.08
    twin.state["capacity_std_mah"] = twin.state["capacity_mah"] * 0.001
    mean_ma = half_cycles(rec)[0].mean_ma
    rows = validate_cell(rec, twin, one_c_ma=mean_ma / c_rate)
    check = next(c for c in verdict("V1", _table(rows, tmp_path)).checks if c.name == "capacity")
    assert check.passed is holds, check.detail


def _table(rows: list[dict], tmp_path: Path) -> dict[str, np.ndarray]:
    write_validation(tmp_path, rows)
    table = load_validation(tmp_path)
    assert table is not None
    return table


def test_the_verdict_on_a_twin_that_tracks(tmp_path: Path) -> None:
    rec = _cell(DEEP, sloped=True)
    judged = verdict("V1", _table(validate_cell(rec, _twin(rec), one_c_ma=10.0), tmp_path))

    assert judged.tracks, judged.checks
    assert judged.summary() == "tracks within its own uncertainty"
    # No cycler counters in the file, no full half faster than slow: those checks do not apply.
    assert [c.passed for c in judged.checks] == [True, None, True, None, True, True, True]


def test_the_soc_is_judged_at_window_ends_only_where_a_half_reached_them(tmp_path: Path) -> None:
    """A flat 0.6 V has no window: no half is full, and an end SOC off by 0.15 says nothing."""
    rec = _cell(DEEP)
    judged = verdict("V1", _table(validate_cell(rec, _twin(rec, soc_offset=0.15), one_c_ma=10.0), tmp_path))
    soc = next(c for c in judged.checks if c.name == "SOC at window ends")
    assert soc.passed is None and "no full half" in soc.detail


@pytest.mark.parametrize(
    ("twin", "failing", "by_how_much"),
    [
        ({"count_bias": 0.05}, "charge counted", "worst 5.00%, allowed 1%"),  # the twin missed what the file holds
        ({"soc_offset": 0.15}, "SOC at window ends", "worst miss"),  # SOC off by far more than soc_std
        ({"nis": 12.0}, "voltage residual", "median NIS 12.00, allowed 3"),  # beyond the filter's own belief
        # A filter that gated every sample keeps its NIS; its residual says it lost the voltage.
        ({"residual_v": 1.0}, "voltage residual", "residual rms 10"),
    ],
)
def test_the_verdict_names_what_fails_and_by_how_much(tmp_path: Path, twin: dict, failing: str,
                                                      by_how_much: str) -> None:
    rec = _cell(DEEP, sloped=True)
    judged = verdict("V1", _table(validate_cell(rec, _twin(rec, **twin), one_c_ma=10.0), tmp_path))

    assert not judged.tracks
    assert [c.name for c in judged.checks if c.passed is False] == [failing]
    assert judged.summary().startswith(f"does not track: {failing} ({by_how_much}")


def test_a_knee_at_the_end_of_a_cycle_does_not_stand_for_its_nis(tmp_path: Path) -> None:
    """The running NIS of a twin consistent all cycle long jumps at the knee its last sample
    sits on: the cycle's NIS is the median of it, not its last value."""
    rec = _cell(DEEP, sloped=True)
    twin = _twin(rec)
    for h in half_cycles(rec):
        end = np.searchsorted(rec.t, h.t_end, side="right")
        twin.state["nis"][end - 3 : end] = 12.0
    judged = verdict("V1", _table(validate_cell(rec, twin, one_c_ma=10.0), tmp_path))
    voltage = next(c for c in judged.checks if c.name == "voltage residual")
    assert voltage.passed and "median NIS 0.80" in voltage.detail


def test_capacity_that_does_not_explain_the_charge_fails(tmp_path: Path) -> None:
    rec = _cell(DEEP)
    twin = _twin(rec)
    twin.state["capacity_mah"] = np.full(len(rec), CAPACITY_MAH * (1 + 3 * CLOSURE_FLOOR))
    judged = verdict("V1", _table(validate_cell(rec, twin, one_c_ma=10.0), tmp_path))
    assert [c.name for c in judged.checks if c.passed is False] == ["SOC x capacity vs charge"]


def test_fast_halves_leave_the_soc_check_out_and_no_twin_means_no_verdict(tmp_path: Path) -> None:
    rec = _cell(STEPS)
    fast = verdict("V1", _table(validate_cell(rec, _twin(rec), one_c_ma=1.0), tmp_path))  # 1C halves
    soc = next(c for c in fast.checks if c.name == "SOC at window ends")
    assert soc.passed is None and "0.2C" in soc.detail
    assert fast.tracks

    alone = verdict("V1", _table(validate_cell(rec, None), tmp_path))  # the twin never saw it
    assert not alone.tracks and alone.summary() == "does not track: voltage residual (no voltage estimate)"
    assert "no usable voltage estimate" in alone.checks[-1].detail


def test_csv_columns_and_the_report_section(tmp_path: Path) -> None:
    good, bad = _cell(STEPS, "G1"), _cell(STEPS, "B1")
    rows = validate([good, bad], [_twin(good), _twin(bad, nis=12.0)], masses={"G1": 1.0, "B1": 1.0},
                    one_c_ma={"G1": 1.0, "B1": 1.0})
    table = _table(rows, tmp_path)

    assert list(table) == list(COLUMNS) + ["measured_discharge_mah_g", "measured_charge_mah_g", "twin_capacity_mah_g"]
    assert [v.cell for v in verdicts(table)] == ["B1", "G1"]
    assert [v.tracks for v in verdicts(table)] == [False, True]

    estimates = {"time": [T0], "cell": ["G1"], "preset": ["p"], **{f: [0.5] for f in STATE_FIELDS}}
    cycles = {"time": [T0], "cell": ["G1"], "preset": ["p"], "half": ["discharge"], **{f: [1.0] for f in CYCLE_FIELDS}}
    pq.write_table(pa.table(estimates), tmp_path / OUT_ESTIMATES)
    pq.write_table(pa.table(cycles), tmp_path / OUT_CYCLES)
    page = build_report(tmp_path).read_text()
    section = page[page.index("<section id='validation'>"):]
    assert "tracks within its own uncertainty" in section
    assert "does not track: voltage residual" in section
    assert "SOC at window ends: n/a" in section
    assert section.count("Twin SOC at the window ends") == 2


# --------------------------------------------------------------------------- a cycler's log, with known truth

V_MIN, V_MAX = 0.3, 1.0
Current = float | Callable[[np.ndarray], np.ndarray]  # A, or A as a function of the time into the step


@dataclass(frozen=True)
class Step:
    """One programmed step: its current, length, voltage (linear from, to) and logging period."""

    current: Current
    seconds: float
    v: tuple[float, float] = (0.6, 0.6)
    every: float = DT

    def amps(self, into: np.ndarray) -> np.ndarray:
        return self.current(into) if callable(self.current) else np.full(into.size, self.current)


def _discharge(amps: float, seconds: float, **options: object) -> Step:
    return Step(-amps, seconds, (V_MAX, V_MIN), **options)


def _charge(amps: float, seconds: float, **options: object) -> Step:
    return Step(amps, seconds, (V_MIN, V_MAX), **options)


def _rest(seconds: float, v: float = 0.6, **options: object) -> Step:
    return Step(0.0, seconds, (v, v), **options)


def _timing(steps: list[Step]) -> tuple[np.ndarray, np.ndarray]:
    """(step index, seconds into the step) of each record: one every ``every`` s, and one at each
    step's start and end, so a boundary is logged twice at one time, as cyclers do."""
    index, into = [], []
    for k, step in enumerate(steps):
        offsets = np.r_[np.arange(0.0, step.seconds, step.every), step.seconds]
        index.append(np.full(offsets.size, k))
        into.append(offsets)
    return np.concatenate(index), np.concatenate(into)


def _logged(steps: list[Step], name: str = "L1", noise_a: float = 0.0, **counters: np.ndarray) -> CellRecord:
    """The cycler's log of ``steps``; rests read sensor noise of ``noise_a``."""
    index, into = _timing(steps)
    starts = T0 + np.r_[0.0, np.cumsum([s.seconds for s in steps])]
    i = np.concatenate([steps[k].amps(into[index == k]) for k in range(len(steps))])
    v = np.array([steps[k].v[0] + (steps[k].v[1] - steps[k].v[0]) * x / steps[k].seconds for k, x in zip(index, into)])
    rests = np.array([steps[k].current == 0.0 for k in index])
    i = i + np.where(rests, np.random.default_rng(2).normal(0.0, noise_a, i.size), 0.0)
    return CellRecord(name, starts[index] + into, v, i, np.full(i.size, 130.0), **counters)


def _mah(amps: float, seconds: float) -> float:
    return amps * seconds / 3.6


def test_counts_equal_the_analytic_integral() -> None:
    tau, hold = 900.0, 5400.0
    wavy = Step(lambda x: -1e-3 * (1 + 0.5 * np.sin(2 * np.pi * x / 1200.0)), 3000.0, (V_MAX, V_MIN))
    cv = Step(lambda x: 1e-3 * np.exp(-x / tau), hold, (V_MAX, V_MAX))
    rec = _logged([_rest(600.0), wavy, _rest(600.0, 0.33), _charge(1e-3, 2400.0), cv, _rest(600.0, 0.97)])

    discharge, charge = half_cycles(rec)

    # 3000 s is 2.5 periods: the sine adds 0.5 mA x 1200 s / (2 pi) x (1 - cos(5 pi)) = 0.5 x 1200 / pi mA s.
    assert discharge.mah == pytest.approx(_mah(1e-3, 3000.0) + _mah(0.5e-3, 1200.0 / np.pi), rel=1e-3)
    assert charge.mah == pytest.approx(_mah(1e-3, 2400.0) + _mah(1e-3, tau * (1 - np.exp(-hold / tau))), rel=1e-3)


def test_30_s_logging_is_counted_within_0_2_percent() -> None:
    tau, hold = 900.0, 5400.0
    cv = Step(lambda x: 1e-3 * np.exp(-x / tau), hold, (V_MAX, V_MAX), every=30.0)
    rec = _logged([_rest(600.0, every=30.0), _charge(1e-3, 2400.0, every=30.0), cv, _rest(600.0, 0.97, every=30.0)])
    truth = _mah(1e-3, 2400.0) + _mah(1e-3, tau * (1 - np.exp(-hold / tau)))

    (charge,) = half_cycles(rec)

    assert charge.mah == pytest.approx(truth, rel=0.002)
    # Charging each record for the interval before it (the old rule) misses the decay by far more.
    rectangles = np.sum(np.abs(rec.i[1:]) * np.diff(rec.t)) / 3.6
    assert abs(rectangles / truth - 1) > 0.002


def test_a_c20_step_between_hppc_pulses_is_counted_not_taken_for_rest() -> None:
    pulses = [Step(-50e-3, 10.0, every=1.0), _rest(40.0, every=1.0), Step(37.5e-3, 10.0, every=1.0),
              _rest(60.0, every=1.0)]
    soc_step = [Step(-0.5e-3, 7200.0, every=60.0), _rest(600.0, every=60.0)]  # C/20 on a 10 mA cell
    rec = _logged([_rest(600.0)] + (pulses + soc_step) * 9 + [Step(5e-3, 6480.0), _rest(600.0)])

    halves = half_cycles(rec)

    # The charge pulses sit inside the discharge and count against it: its net charge.
    assert [h.half for h in halves] == ["discharge", "charge"]
    net = 9 * (_mah(50e-3, 10.0) - _mah(37.5e-3, 10.0) + _mah(0.5e-3, 7200.0))
    assert halves[0].mah == pytest.approx(net, rel=1e-3)
    assert halves[1].mah == pytest.approx(_mah(5e-3, 6480.0), rel=1e-3)


def _reversal_twin(rec: CellRecord) -> CellData:
    """Cycle tables of a twin that closes a half at every reversal of the current, as the
    estimator does: a piece per run of one sign (rests inside it), closed at the first sample
    of the next run (the file's last sample closes the last), counted on its own sign."""
    sign = np.sign(np.where(np.abs(rec.i) > 1e-4, rec.i, 0.0))
    active = np.flatnonzero(sign)
    firsts = active[np.r_[True, np.diff(sign[active]) != 0]]
    closes = np.r_[firsts[1:], len(rec) - 1]
    tables: dict[str, dict[str, list]] = {"discharge": {}, "charge": {}}
    cycle = 0
    for first, close in zip(firsts, closes):
        s = sign[first]
        cycle += int(s < 0)
        seg = slice(max(first - 1, 0), close + 1)
        mah = float(np.sum(np.maximum(s * (rec.i[seg][1:] + rec.i[seg][:-1]) / 2, 0.0) * np.diff(rec.t[seg])) / 3.6)
        table = tables["discharge" if s < 0 else "charge"]
        for key, value in (("time", rec.t[close]), ("cycle", cycle), ("capacity_mah", mah)):
            table.setdefault(key, []).append(value)
    arrays = {name: {k: np.array(v) for k, v in table.items()} for name, table in tables.items()}
    return CellData(rec.cell, "generic", {}, arrays["discharge"], arrays["charge"])


def test_the_twins_halves_inside_one_of_the_files_add_up_with_their_signs() -> None:
    # HPPC: the file's count makes one discharge of the pulses and SOC steps, the twin closes
    # a discharge and a regen pulse per SOC step; cycle numbers do not line up.
    pulses = [Step(-50e-3, 10.0, every=1.0), _rest(40.0, every=1.0), Step(37.5e-3, 10.0, every=1.0),
              _rest(60.0, every=1.0)]
    soc_step = [Step(-0.5e-3, 7200.0, every=60.0), _rest(600.0, every=60.0)]
    rec = _logged([_rest(600.0)] + (pulses + soc_step) * 9 + [Step(5e-3, 6480.0), _rest(600.0)])
    twin = _reversal_twin(rec)
    assert twin.discharge["cycle"].size == 10 and twin.charge["cycle"].size == 10

    (row,) = validate_cell(rec, twin)

    assert row["twin_discharge_mah"] == pytest.approx(row["measured_discharge_mah"], rel=1e-3)
    assert row["twin_charge_mah"] == pytest.approx(row["measured_charge_mah"], rel=1e-3)


def test_a_sparsely_logged_regen_pulse_is_matched_to_the_files_own_charge_half() -> None:
    # HPPC logged every 50 s but for the pulses (p492-13): the file ends a 10 s regen pulse,
    # its own charge half, at its last sample; the twin closes it at the next sample, 50 s
    # into the discharge after it, and its span overlaps that discharge longer.
    pieces = [(-1e-3, np.arange(0.0, 1800.0, 10.0)), (20e-3, np.array([1805.0, 1810.0])),
              (-1e-3, np.arange(1860.0, 3600.0, 50.0)), (0.0, np.arange(3600.0, 4200.0, 60.0)),
              (1e-3, np.arange(4200.0, 7800.0, 10.0)), (0.0, np.arange(7800.0, 8400.0, 60.0))]
    t = T0 + np.concatenate([times for _, times in pieces])
    i = np.concatenate([np.full(times.size, amps) for amps, times in pieces])
    v = np.interp(t - T0, [0.0, 3600.0, 4200.0, 7800.0, 8400.0], [V_MAX, V_MIN, V_MIN, V_MAX, V_MAX])
    rec = CellRecord("L1", t, v, i, np.full(t.size, 130.0))
    assert [h.half for h in half_cycles(rec, V_MIN, V_MAX)] == ["discharge", "charge", "discharge", "charge"]

    rows = validate_cell(rec, _reversal_twin(rec), v_min=V_MIN, v_max=V_MAX)

    # (The stand-in twin counts a ramp across zero less exactly than the estimator: 1 %.)
    for row in rows:
        assert row["twin_discharge_mah"] == pytest.approx(row["measured_discharge_mah"], rel=0.01)
        assert row["twin_charge_mah"] == pytest.approx(row["measured_charge_mah"], rel=0.01)


def test_shallow_cycles_stay_apart_however_small() -> None:
    rec = _logged([Step(-1e-3, 180.0), Step(1e-3, 180.0)] * 4)
    assert [h.half for h in half_cycles(rec)] == ["discharge", "charge"] * 4


def test_a_cv_tail_stays_in_its_half_and_the_rest_after_it_does_not() -> None:
    tau, hold = 3600.0, 5 * 3600.0
    cv = Step(lambda x: 1e-3 * np.exp(-x / tau), hold, (V_MAX, V_MAX))
    # A fast discharge sets the working current at 5 mA: the tail runs far below 1 % of it.
    rec = _logged([_rest(600.0), _discharge(5e-3, 3600.0), _rest(600.0, 0.33), _charge(1e-3, 3600.0), cv,
                   _rest(3600.0, 0.97)], noise_a=2e-7)

    discharge, charge = half_cycles(rec)

    assert charge.mah == pytest.approx(_mah(1e-3, 3600.0) + _mah(1e-3, tau * (1 - np.exp(-hold / tau))), rel=1e-3)
    assert charge.t_end == pytest.approx(T0 + 600.0 + 3600.0 + 600.0 + 3600.0 + hold, abs=DT)


def test_a_short_rest_and_a_lone_zero_sample_do_not_split_a_half() -> None:
    rec = _logged([_rest(600.0), Step(-1e-3, 1800.0), _rest(300.0), Step(-1e-3, 1800.0), _rest(600.0)],
                  noise_a=2e-7)
    rec.i[np.searchsorted(rec.t, T0 + 3600.0)] = 0.0  # one reading lost mid-step

    (discharge,) = half_cycles(rec)

    # The lost reading costs its two half intervals; the rest inside the half only its noise.
    assert discharge.mah == pytest.approx(_mah(1e-3, 3600.0 - DT), rel=1e-4)


def test_repeated_timestamps_carry_no_time_and_no_charge() -> None:
    # Discharge straight into charge, the reversal logged twice at one time; every step boundary too.
    rec = _logged([_rest(600.0), Step(-1e-3, 3600.0), Step(2e-3, 1800.0), _rest(600.0)])
    assert np.sum(np.diff(rec.t) == 0) == 3
    twice = np.sort(np.r_[np.arange(len(rec)), 100])  # and one record written twice mid-step
    doubled = CellRecord("L1", rec.t[twice], rec.v[twice], rec.i[twice])

    for record in (rec, doubled):
        discharge, charge = half_cycles(record)
        assert discharge.mah == pytest.approx(_mah(1e-3, 3600.0), rel=1e-9)
        assert charge.mah == pytest.approx(_mah(2e-3, 1800.0), rel=1e-9)
        assert discharge.t_end == charge.t_start == T0 + 4200.0
        assert discharge.uncounted_s == charge.uncounted_s == 0.0


def _faded(cycles: int, amps: float = 1e-3, fade: float = 0.01, opens_with_charge: bool = False) -> list[Step]:
    """Full cycles between V_MIN and V_MAX losing ``fade`` of the capacity per cycle."""
    steps = [_rest(600.0, V_MAX)] + ([_charge(amps, 3600.0), _rest(600.0, V_MAX)] if opens_with_charge else [])
    for n in range(cycles):
        seconds = 3600.0 * (1 - fade * n)
        steps += [_discharge(amps, seconds), _rest(600.0, V_MIN + 0.03), _charge(amps, seconds),
                  _rest(600.0, V_MAX - 0.03)]
    return steps


def _step_counters(steps: list[Step], resets: str) -> dict[str, np.ndarray]:
    """Counters as a cycler writes them: per step (reset at every step) or running (reset once, halfway)."""
    index, into = _timing(steps)
    moved = np.array([steps[k].amps(np.array([x]))[0] * x / 3.6 for k, x in zip(index, into)])  # mAh
    counters = {}
    for name, sign in (("charge_mah", 1.0), ("discharge_mah", -1.0)):
        per_step = np.where(np.sign(moved) == sign, np.abs(moved), 0.0)
        if resets == "step":
            counters[name] = per_step
            continue
        ends = np.array([per_step[index == k][-1] for k in range(len(steps))])
        before = np.r_[0.0, np.cumsum(ends)][index]
        running = before + per_step
        restart = index >= len(steps) // 2
        counters[name] = np.where(restart, running - before[restart][0], running)
    return counters


@pytest.mark.parametrize("resets", ["step", "running"])
def test_the_cyclers_counters_with_resets_stand_beside_the_count(tmp_path: Path, resets: str) -> None:
    steps = _faded(4)
    counters = _step_counters(steps, resets)
    counters["discharge_mah"][5] = np.nan  # a row without a reading
    rows = validate_cell(_logged(steps, **counters), None, v_min=V_MIN, v_max=V_MAX)

    for name in ("discharge", "charge"):
        assert [r[f"cycler_{name}_mah"] for r in rows] == pytest.approx([r[f"measured_{name}_mah"] for r in rows],
                                                                        rel=1e-9)
    check = next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "charge counted vs cycler")
    assert check.passed and "over 8 full halves" in check.detail

    off = {name: value * 1.03 for name, value in counters.items()}  # a cycler that counts 3 % more
    judged = verdict("L1", _table(validate_cell(_logged(steps, **off), None), tmp_path))
    failed = next(c for c in judged.checks if c.name == "charge counted vs cycler")
    assert failed.passed is False and failed.worst == "worst -2.91% at cycle 1, allowed 1.0%"


def test_the_counters_allow_for_a_current_logged_in_coarse_steps(tmp_path: Path) -> None:
    # A 0.94 uA formation current logged to 0.1 uA: the log dithers between 0.9 and 1.0 uA and
    # reads 1 % high (mean 0.95 uA); the cycler counts what it ran. Later cycles at 27 uA log the same steps.
    steps = _faded(1, amps=0.94e-6) + _faded(2, amps=27e-6)[1:]
    counters = _step_counters(steps, "running")
    ran = _logged(steps, **counters)
    slow = (ran.i != 0) & (np.abs(ran.i) < 1e-6)
    dither = np.where(np.arange(ran.i.size) % 8 < 4, 1.0e-6, 0.9e-6)
    logged = np.round(np.where(slow, np.sign(ran.i) * dither, ran.i), 7)
    rows = validate_cell(CellRecord(ran.cell, ran.t, ran.v, logged, ran.temp_c, **counters), None,
                         v_min=V_MIN, v_max=V_MAX)

    assert rows[0]["measured_discharge_mah"] / rows[0]["cycler_discharge_mah"] - 1 == pytest.approx(0.0106, abs=1e-3)
    assert rows[0]["cycler_discharge_tolerance"] == pytest.approx(0.01 + 0.05 / 0.95, rel=1e-3)
    assert rows[-1]["cycler_charge_tolerance"] == pytest.approx(0.01 + 0.05 / 27, rel=1e-3)
    check = next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "charge counted vs cycler")
    assert check.passed, check.detail

    # Logged clean (a setpoint, no dither), the same steps say nothing of a resolution: 1 % holds.
    clean = CellRecord(ran.cell, ran.t, ran.v, np.round(ran.i, 7), ran.temp_c, **counters)
    assert validate_cell(clean, None, v_min=V_MIN, v_max=V_MAX)[0]["cycler_discharge_tolerance"] == 0.01


def test_a_partial_half_is_listed_beside_the_counters_not_judged(tmp_path: Path) -> None:
    # The file stops after half a discharge and two minutes of charge, its last counter reading far off.
    steps = _faded(2) + [Step(-1e-3, 1800.0, (V_MAX, 0.5)), _rest(600.0, 0.5), Step(1e-3, 120.0, (0.5, 0.52))]
    counters = _step_counters(steps, "running")
    counters["charge_mah"][-1] *= 1.2
    rows = validate_cell(_logged(steps, **counters), None, v_min=V_MIN, v_max=V_MAX)
    check = next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "charge counted vs cycler")
    assert check.passed, check.detail
    assert "over 4 full halves" in check.detail and "2 partial half(s) not judged (worst -85.99%)" in check.detail


def test_no_counters_means_nan_columns_and_no_check(tmp_path: Path) -> None:
    rows = validate_cell(_logged(_faded(2)), None)
    assert all(math.isnan(r["cycler_discharge_mah"]) and math.isnan(r["cycler_charge_mah"]) for r in rows)
    check = next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "charge counted vs cycler")
    assert check.passed is None


def _capacity_twin(rec: CellRecord, error: Callable[[int], float], std_share: float | None = 0.005) -> CellData:
    """A twin whose capacity at the end of each half is the cycle's counted discharge times 1 + error(cycle)."""
    halves = half_cycles(rec, V_MIN, V_MAX)
    counted = {h.cycle: h.mah for h in halves if h.half == "discharge"}
    capacity = np.array([counted[h.cycle] * (1 + error(h.cycle)) for h in halves])
    state = {"time": np.array([h.t_end for h in halves]), "capacity_mah": capacity,
             "nis": np.full(capacity.size, 0.8), "v_residual": np.zeros(capacity.size)}
    if std_share is not None:
        state["capacity_std_mah"] = std_share * capacity
    return CellData(rec.cell, "generic", state, {}, {})


def test_full_halves_by_the_voltage_window() -> None:
    steps = _faded(2) + [Step(-1e-3, 1800.0, (V_MAX, 0.65)), _rest(600.0, 0.68), _charge(1e-3, 1800.0)]
    halves = half_cycles(_logged(steps), V_MIN, V_MAX)
    assert [(h.half, h.full) for h in halves] == [("discharge", True), ("charge", True)] * 2 + [
        ("discharge", False), ("charge", False)]  # a half-depth discharge, and the charge after it

    rows = validate_cell(_logged(steps), None, v_min=V_MIN, v_max=V_MAX)
    assert [(r["full_discharge"], r["full_charge"]) for r in rows] == [(1, 1), (1, 1), (0, 0)]


def test_the_capacity_check_passes_a_twin_that_matches_and_names_one_8_percent_off(tmp_path: Path) -> None:
    rec = _logged(_faded(5))

    def judged(error: Callable[[int], float], **options: object) -> Verdict:
        rows = validate_cell(rec, _capacity_twin(rec, error, **options), one_c_ma=10.0, v_min=V_MIN, v_max=V_MAX)
        return verdict("L1", _table(rows, tmp_path))

    good = judged(lambda cycle: 0.002 * (-1) ** cycle)
    capacity = next(c for c in good.checks if c.name == "capacity")
    assert capacity.passed and good.tracks, good.checks
    assert "cycle 1, the first full one, is where a generic twin learns its capacity" in capacity.detail

    bad = judged(lambda cycle: -0.08 if cycle == 4 else 0.0)
    assert [c.name for c in bad.checks if c.passed is False] == ["capacity"]
    # Allowed: 3 x its std (0.5 % of the twin's 8 % low capacity) + 0.5 % below, and 5 % more above:
    # a slow full half may leave that much behind its voltage limit.
    assert bad.summary() == "does not track: capacity (worst -8.0% at cycle 4, allowed -1.9% to +6.9%)"
    assert not judged(lambda cycle: 0.08 if cycle == 4 else 0.0).tracks

    assert judged(lambda cycle: -0.08 if cycle == 1 else 0.0).tracks  # the cycle it learned on
    without_std = next(c for c in judged(lambda cycle: -0.03, std_share=None).checks if c.name == "capacity")
    assert without_std.passed is False and without_std.worst.endswith("allowed -2.0% to +7.0%")


def test_capacity_columns_per_cycle(tmp_path: Path) -> None:
    rec = _logged(_faded(3))
    rows = validate_cell(rec, _capacity_twin(rec, lambda cycle: 0.01), one_c_ma=10.0, v_min=V_MIN, v_max=V_MAX)
    table = _table(rows, tmp_path)

    assert table["capacity_error"] == pytest.approx([0.01] * 3)
    assert table["twin_capacity_mah"] == pytest.approx([_mah(1e-3, 3600.0 * (1 - 0.01 * n)) * 1.01 for n in range(3)])
    assert table["twin_capacity_std_mah"] == pytest.approx(0.005 * table["twin_capacity_mah"])


def test_the_twins_capacity_is_the_one_its_close_of_the_half_updated(tmp_path: Path) -> None:
    # The twin updates its capacity when a half closes, at the first sample of the next:
    # its estimate at the file half's last sample is still the one of the cycle before.
    rec = _logged(_faded(4))
    twin = _reversal_twin(rec)
    closed = twin.discharge["capacity_mah"]  # a twin that follows the fade within each half
    twin.discharge["twin_capacity_mah"], twin.discharge["twin_capacity_std_mah"] = closed, 0.005 * closed
    halves = [h for h in half_cycles(rec, V_MIN, V_MAX) if h.half == "discharge"]
    lagging = np.r_[closed[0], closed[:-1]]
    twin.state.update(time=np.array([h.t_end for h in halves]), capacity_mah=lagging,
                      capacity_std_mah=0.005 * lagging)

    rows = validate_cell(rec, twin, one_c_ma=10.0, v_min=V_MIN, v_max=V_MAX)

    assert [r["capacity_error"] for r in rows] == pytest.approx([0.0] * 4, abs=1e-3)
    assert [r["twin_capacity_mah"] for r in rows] == pytest.approx(closed.tolist())


def _predicting_twin(rec: CellRecord, error: Callable[[int], float]) -> CellData:
    """A twin closing each half with a capacity 5 % above its count (a fast half leaves
    that much behind), its std 0.5 % of the count, and a prediction of the count, before it
    came in, off by error(cycle)."""
    twin = _reversal_twin(rec)
    for table in (twin.discharge, twin.charge):
        count = table["capacity_mah"]
        table["capacity_mah_g"] = count  # a gram of it
        table["expected_mah_g"] = count * np.array([1 + error(int(c)) for c in table["cycle"]])
        table["twin_capacity_mah"], table["twin_capacity_std_mah"] = 1.05 * count, 0.005 * count
    return twin


def test_a_fast_half_is_judged_on_the_twins_prediction_at_its_rate(tmp_path: Path) -> None:
    rec = _logged(_faded(4))

    def checked(error: Callable[[int], float], **options: float) -> Check:
        rows = validate_cell(rec, _predicting_twin(rec, error), one_c_ma=1.0, v_min=V_MIN, v_max=V_MAX, **options)
        return next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "capacity at rate")

    assert checked(lambda cycle: 0.01 * (-1) ** cycle).passed  # 1C halves, predicted within 1 %
    off = checked(lambda cycle: -0.08 if cycle == 3 else 0.0)
    # Allowed: 3 x its std (0.5 % of the count) + 0.5 % + 2 % for the at-rate model.
    assert off.passed is False and off.worst == "worst -8.0% at cycle 3 (1C), allowed 4.0%"
    assert checked(lambda cycle: -0.08 if cycle == 1 else 0.0).passed  # the first full cycle is not judged
    # A curve learned from cycle 3's halves: cycles 1-3 are where it learned, and are not judged.
    learned_until = max(h.t_end for h in half_cycles(rec, V_MIN, V_MAX) if h.cycle == 3)
    learning = checked(lambda cycle: -0.08 if cycle == 3 else 0.0, learned_until=learned_until)
    assert learning.passed and "1 full halves" in learning.detail

    slow = validate_cell(rec, _predicting_twin(rec, lambda cycle: -0.08), one_c_ma=10.0, v_min=V_MIN, v_max=V_MAX)
    at_rate = next(c for c in verdict("L1", _table(slow, tmp_path)).checks if c.name == "capacity at rate")
    assert at_rate.passed is None  # 0.1C halves reach the window's ends: the capacity check judges them


def test_the_cycles_a_generic_twin_learned_on_are_marked_and_not_judged(tmp_path: Path) -> None:
    rec = _logged(_faded(5))
    learned_until = max(h.t_end for h in half_cycles(rec, V_MIN, V_MAX) if h.cycle == 2)
    rows = validate_cell(rec, _capacity_twin(rec, lambda cycle: -0.08 if cycle <= 2 else 0.0), one_c_ma=10.0,
                         v_min=V_MIN, v_max=V_MAX, learned_until=learned_until)

    assert [r["learned"] for r in rows] == [1, 1, 0, 0, 0]
    capacity = next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "capacity")
    assert capacity.passed and "cycles 1-2, up to the one its curve came from, are not judged" in capacity.detail


def test_a_fast_full_half_may_fall_far_short_of_the_twins_capacity_but_not_exceed_it(tmp_path: Path) -> None:
    rec = _logged(_faded(3, amps=5e-3))  # 0.5C on a 10 mA cell: charge stays behind the voltage limit

    def capacity(error: float) -> Check:
        rows = validate_cell(rec, _capacity_twin(rec, lambda cycle: error), one_c_ma=10.0, v_min=V_MIN, v_max=V_MAX)
        return next(c for c in verdict("L1", _table(rows, tmp_path)).checks if c.name == "capacity")

    assert capacity(0.25).passed  # the simulator's 1C halves deliver 18 % less than its capacity
    assert capacity(-0.08).passed is False


def test_measured_retention_is_against_the_first_full_discharge_at_the_same_rate(tmp_path: Path) -> None:
    fast = [_discharge(2e-3, 1620.0), _rest(600.0, V_MIN + 0.03), _charge(2e-3, 1620.0), _rest(600.0, V_MAX)]
    partial = [Step(-1e-3, 1000.0, (V_MAX, 0.7)), _rest(600.0), _charge(1e-3, 1000.0), _rest(600.0, V_MAX)]
    rows = validate_cell(_logged(_faded(3) + fast + partial), None, v_min=V_MIN, v_max=V_MAX)
    retention = [r["measured_retention"] for r in rows]

    # The file opens with a discharge from an unknown state: cycle 2 is the reference; cycle 4 ran at
    # twice the current and is its own; cycle 5 is not full.
    assert retention[:4] == pytest.approx([1 / 0.99, 1.0, 0.98 / 0.99, 1.0])
    assert math.isnan(retention[4])

    from_a_charge = validate_cell(_logged(_faded(3, opens_with_charge=True)), None, v_min=V_MIN, v_max=V_MAX)
    assert from_a_charge[0]["cycle"] == 0 and math.isnan(from_a_charge[0]["measured_retention"])  # a charge only
    assert [r["measured_retention"] for r in from_a_charge[1:]] == pytest.approx([1.0, 0.99, 0.98])


def test_a_verdict_with_nothing_to_judge_never_says_it_tracks() -> None:
    table = {"cell": np.array(["X"]), "cycle": np.array([1]), "measured_discharge_mah": np.array([1.0]),
             "measured_charge_mah": np.array([0.98]), "coulombic_efficiency": np.array([0.98]),
             "twin_capacity_mah": np.array([np.nan])}
    judged = verdict("X", table)

    assert all(c.passed is None for c in judged.checks)
    assert not judged.tracks
    assert "tracks" not in judged.summary() and judged.summary().startswith("no verdict")


def test_counting_a_real_arbin_file_agrees_with_the_cyclers_own_counters() -> None:
    """tests/data/real/arbin_example.csv (battery-data-toolkit 0.4.6, Apache-2.0): every half
    counted by trapezoid within 1 % of Arbin's Charge/Discharge_Capacity columns."""
    record = read_archive(Path(__file__).resolve().parents[1] / "data" / "real" / "arbin_example.csv").only()
    halves = [h for h in half_cycles(record) if h.mah > 1.0]
    assert len(halves) >= 3 and all(math.isfinite(h.cycler_mah) for h in halves)
    for h in halves:
        assert h.mah == pytest.approx(h.cycler_mah, rel=0.01), h


def test_the_twin_predicts_the_faster_discharges_of_a_real_file() -> None:
    """tests/data/real/p492-13-raw.csv (Battery Data Hub, NMC532/graphite pouch): two C/20
    cycles, then full discharges at 0.4-0.9C that deliver ~10 % less. The learner reads
    that rate loss as the diffusion time constant, and the twin's prediction of each deep
    discharge (`expected_mah_g`, made before the half's own count corrects the twin) is
    within 3 % of the count. With the default time constant the first is 11 % high (the
    next one is right again only because the first one's count corrected the capacity)."""
    from twin import estimator as est
    from twin.generic import DEFAULT_TAU_S, generic_params, learn_ocv

    record = read_archive(Path(__file__).resolve().parents[1] / "data" / "real" / "p492-13-raw.csv").only()
    t, v, i = (np.asarray(x, dtype=float) for x in (record.t, record.v, record.i))
    learned = learn_ocv(t, v, i, fallback=True)
    assert learned.c_rate < 0.1 and 500.0 < learned.tau_diff_s < 3000.0
    assert any("rate loss" in note for note in learned.notes)

    def fast_discharges(tau_s: float) -> list:
        cell = generic_params("p492", learned.capacity_mah, learned.v_min, learned.v_max, learned.table,
                              r_ohm=learned.r_ohm, tau_diff_s=tau_s)
        tracker, halves, present = est.new_tracker([cell]), [], np.ones(1, dtype=bool)
        for k in range(t.size):
            halves += est.step(tracker, t[k : k + 1], v[k : k + 1], i[k : k + 1], np.full(1, 25.0), present).halves
        return [h for h in halves + est.finish(tracker)
                if h.half == "discharge" and h.c_rate > 0.3 and h.capacity_mah > 0.8 * learned.capacity_mah]

    learned_rate = fast_discharges(learned.tau_diff_s)
    assert len(learned_rate) == 2
    for h in learned_rate:
        assert h.expected_mah_g * 1.0 == pytest.approx(h.capacity_mah, rel=0.03), h  # no mass given: per gram = mAh
    first_at_default = fast_discharges(DEFAULT_TAU_S)[0]
    assert first_at_default.expected_mah_g > 1.05 * first_at_default.capacity_mah
