"""Fidelity of the twin on data whose truth is known. Prints one table; asserts nothing.

    python benchmarks/fidelity_bench.py            # everything (200-cell population)
    python benchmarks/fidelity_bench.py --quick    # smaller fleets, a smoke run
    python benchmarks/fidelity_bench.py --only pybamm
    python benchmarks/fidelity_bench.py --only population --seed 1   # another draw of the population

What it measures, and why: the other benchmarks time the twin; this one asks whether
its answers are right. The Kalman filter of ``twin/estimator.py`` is stepped sample by
sample, exactly as the streaming pipeline steps it, over three kinds of data:

A. the twin's own hydride simulator, with failing (fading) cells, sensor noise and, for
   the population, dropouts, voltage spikes and cell-to-cell variation the filter is not
   told about. Truth: the simulator's charge moved per half, its reversible capacity
   and its SOC.
B. PyBaMM archives (tests/data/pybamm): another simulator, other chemistries, CV holds,
   rests and ageing the twin does not model. The twin learns the open-circuit curve
   from the file (twin.generic.learn_ocv), as it does for a real cell. Truth: PyBaMM's
   per-cycle capacities and SOC.
C. real cycler files (tests/data/real): no model truth, but the cycler's own charge
   counters, against which the twin's coulomb count and capacity are checked.

Columns (NaN / "-" where the data set has no such truth):

  counted %    worst |counted capacity of a half / truth - 1|
  twin %       A, B: worst |twin reversible-capacity estimate / truth - 1| (from cycle 3 on);
               C: worst |the twin's predicted charge of a full discharge (expected_mah_g) /
               its count - 1|, on every full discharge after the half it learned from
  ret. gap     A: worst |twin retention - measured retention| (points, cycle 3 on);
               B: |twin fade - true fade| from cycle 3 to the end (points)
  SOC RMSE %   over samples after each cell's first closed half
  |res| V      worst |voltage residual| over samples the filter did not flag

Verdicts: A pass when the unflagged residual <= 0.1 V, the retention gap <= 3 points and
every cell whose measured retention falls below 0.8 raised the retention alert
(pipeline.alerts) within one cycle. B pass when the twin capacity is within 2 % from
cycle 3, the fade within 1 point and the SOC RMSE <= 2 %. C pass when the counted
capacity is within 1 % of the cycler's counter and the twin capacity within 3 %.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twin import estimator as est  # noqa: E402

PYBAMM_DIR = ROOT / "tests" / "data" / "pybamm"
REAL_DIR = ROOT / "tests" / "data" / "real"
PYBAMM_NAMES = ("chen2020", "prada2013", "marquis2019")
REAL_FILES = (
    "arbin_example.csv",
    "p492-13-raw.csv",
    "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv",
)

NAN = float("nan")

# Limits of the verdicts.
A_RESIDUAL_V = 0.1
A_RETENTION_GAP_PTS = 3.0
RETENTION_FLOOR = 0.8
B_TWIN_PCT = 2.0
JUDGED_FROM_CYCLE = 3  # B: the twin's capacity and fade are judged from this cycle on
B_FADE_PTS = 1.0
B_SOC_RMSE_PCT = 2.0
C_COUNTED_PCT = 1.0
C_TWIN_PCT = 3.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Row:
    name: str
    cells: int | str = "-"
    cycles: int | str = "-"
    counted_pct: float = NAN
    twin_pct: float = NAN
    gap_pts: float = NAN
    soc_rmse_pct: float = NAN
    residual_v: float = NAN
    failed: list[str] = field(default_factory=list)
    verdict_text: str | None = None  # overrides pass/FAIL (errors, "not present")
    seconds: float = NAN

    @property
    def verdict(self) -> str:
        if self.verdict_text is not None:
            return self.verdict_text
        return "pass" if not self.failed else "FAIL: " + "; ".join(self.failed)


def _nanmax(values) -> float:
    a = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    return float(a.max()) if a.size else NAN


# --------------------------------------------------------------------------- A: simulator


def run_simulation(name: str, sim, filter_params, rate_cycles: int) -> Row:
    """Step the twin over a Simulation; compare with its truth."""
    from pipeline.alerts import half_cycle_alerts, new_latch

    n = len(filter_params)
    tr = est.new_tracker(list(filter_params))
    halves: list = []
    closed = np.zeros(n, dtype=bool)  # the cell has closed its first half
    se = np.zeros(n)
    cnt = np.zeros(n)
    worst_res = 0.0
    ticks = 0
    t0 = time.perf_counter()
    for b in sim.blocks():
        for k in range(b.t.size):
            valid = b.valid[:, k]
            o = est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=valid)
            res = np.abs(np.asarray(o.v_residual, dtype=float))
            ok = valid & (np.asarray(o.flags) == 0) & np.isfinite(res)
            if ok.any():
                worst_res = max(worst_res, float(res[ok].max()))
            use = valid & closed
            if use.any():
                d = np.asarray(o.soc, dtype=float) - b.soc[:, k]
                d = np.where(use & np.isfinite(d), d, 0.0)
                se += d * d
                cnt += use & np.isfinite(np.asarray(o.soc, dtype=float))
            for h in o.halves:
                closed[int(h.cell)] = True
            halves.extend(o.halves)
            ticks += 1
        log(f"  {name}: {ticks} ticks, {len(halves)} halves, {time.perf_counter() - t0:.0f} s")
    halves.extend(est.finish(tr))

    truth = {(int(x.cell), int(x.cycle), x.half): x for x in sim.truth}
    counted, twin, gap = [], [], []
    unmatched = 0
    for h in halves:
        x = truth.get((int(h.cell), int(h.cycle), h.half))
        if x is None:
            unmatched += 1
            continue
        if x.capacity_mah > 0:
            counted.append(abs(h.capacity_mah / x.capacity_mah - 1.0))
        if h.half == "charge" and h.cycle >= 3:
            if x.reversible_capacity_mah > 0 and math.isfinite(h.twin_capacity_mah):
                twin.append(abs(h.twin_capacity_mah / x.reversible_capacity_mah - 1.0))
            if math.isfinite(h.measured_retention) and math.isfinite(h.retention):
                gap.append(abs(h.retention - h.measured_retention))
    if unmatched:
        log(f"  {name}: {unmatched} halves without a truth half")

    # Alerts, exactly as the pipeline raises them, in the order the halves closed.
    latch = new_latch(n)
    alert_cycle: dict[int, int] = {}
    fail_cycle: dict[int, int] = {}
    for h in halves:
        c = int(h.cell)
        for a in half_cycle_alerts(latch, h):
            if a.kind == "retention_floor" and c not in alert_cycle:
                alert_cycle[c] = int(h.cycle)
        if h.half == "charge" and math.isfinite(h.measured_retention) and h.measured_retention < RETENTION_FLOOR:
            fail_cycle.setdefault(c, int(h.cycle))
    late = [c for c, cyc in fail_cycle.items() if c not in alert_cycle or alert_cycle[c] > cyc + 1]

    soc_rmse = float(np.sqrt(se.sum() / cnt.sum())) if cnt.sum() > 0 else NAN
    row = Row(name, n, rate_cycles, 100 * _nanmax(counted), 100 * _nanmax(twin), 100 * _nanmax(gap),
              100 * soc_rmse, worst_res)
    if not worst_res <= A_RESIDUAL_V:
        row.failed.append(f"residual > {A_RESIDUAL_V} V")
    if not (row.gap_pts <= A_RETENTION_GAP_PTS or not gap):
        row.failed.append(f"retention gap > {A_RETENTION_GAP_PTS:g} pts")
    if late:
        row.failed.append(f"{len(late)}/{len(fail_cycle)} failing cells not alerted within 1 cycle")
    log(f"  {name}: {len(fail_cycle)} cells fell below {RETENTION_FLOOR} measured retention, "
        f"{len(alert_cycle)} retention alerts, {len(late)} late/missing")
    return row


def sim_fleet(name: str, n: int, cycles: int, c_rate: float, seed: int) -> Row:
    from connectors.sim_producer import fleet, simulation

    cells = fleet(n, "mixed", c_rate=c_rate, seed=seed)
    sim = simulation(cells, cycles, dt=10.0, t0=1.7e9, seed=seed)
    return run_simulation(name, sim, [c.params for c in cells], cycles)


POP_GROUPS = ((0.1, 60.0, 6), (0.2, 30.0, 6), (0.5, 10.0, 10), (1.0, 10.0, 10), (2.0, 5.0, 10))
POP_SEED = 11


def population(n: int, quick: bool, seed: int = POP_SEED) -> Row:
    """N cells from pure MgH2 to the composite, in five rate groups; the filter gets nominal params."""
    from twin.chemistry import Composition
    from twin.params import params_from_composition
    from twin.protocol import cc_cycles
    from twin.simulator import Faults, SensorNoise, Simulation, vary

    rng = np.random.default_rng(seed)
    nominal, true = [], []
    for _ in range(n):
        nd, ni = rng.uniform(0.0, 0.19), rng.uniform(0.0, 0.28)
        p = params_from_composition(Composition({"MgH2": 1.0 - nd - ni, "Mg2NiH4": ni, "Nd2H5": nd}))
        nominal.append(p)
        true.append(vary(p, 1, rng)[0])
    groups = np.array_split(np.arange(n), len(POP_GROUPS))
    rows = []
    for g, (idx, (rate, dt, cycles)) in enumerate(zip(groups, POP_GROUPS)):
        if idx.size == 0:
            continue
        if quick:
            cycles = min(cycles, 4)
        sim = Simulation([true[k] for k in idx], cc_cycles(rate, cycles), dt=dt, noise=SensorNoise(),
                         faults=Faults(dropout_prob=0.01, spike_prob=0.002), seed=seed + g)
        log(f" population group {rate}C: {idx.size} cells, {cycles} cycles, dt {dt:g} s")
        rows.append((rate, run_simulation(f"pop {rate}C", sim, [nominal[k] for k in idx], cycles)))
    # Worst case over the groups; the SOC RMSE is the worst group's too.
    out = Row(f"population {n}" + ("" if seed == POP_SEED else f" seed {seed}"), n,
              "/".join(str(r.cycles) for _, r in rows))
    for attr in ("counted_pct", "twin_pct", "gap_pts", "soc_rmse_pct", "residual_v"):
        setattr(out, attr, _nanmax(getattr(r, attr) for _, r in rows))
    for rate, r in rows:
        out.failed += [f"{rate}C {f}" for f in r.failed]
    return out


# --------------------------------------------------------------------------- B: PyBaMM


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        data = np.array([[float(x) if x != "" else NAN for x in row] for row in reader], dtype=float)
    return {name: data[:, k] for k, name in enumerate(header)}


def _learn(t, v, i, v_min, v_max, fallback: bool = False):
    from twin.generic import generic_params, learn_ocv

    learned = learn_ocv(t, v, i, v_min, v_max, fallback=fallback)
    params = generic_params("bench", learned.capacity_mah, learned.v_min, learned.v_max, learned.table,
                            r_ohm=max(learned.r_ohm, 1e-6), tau_diff_s=learned.tau_diff_s)
    return learned, params


def _step_one(params, t, v, i, temp, soc_true=None):
    """Step one generic cell over a file: halves, SOC, residual, flags per sample."""
    tr = est.new_tracker([params])
    n = t.size
    soc = np.full(n, NAN)
    res = np.full(n, NAN)
    flags = np.zeros(n, dtype=np.int64)
    first_closed = n
    halves = []
    one = np.ones(1)
    t0 = time.perf_counter()
    for k in range(n):
        o = est.step(tr, t[k:k + 1], v[k:k + 1], i[k:k + 1], temp[k:k + 1], present=one.astype(bool))
        soc[k], res[k], flags[k] = float(o.soc[0]), float(o.v_residual[0]), int(o.flags[0])
        if o.halves:
            halves.extend(o.halves)
            first_closed = min(first_closed, k + 1)
        if k and k % 20000 == 0:
            log(f"    {k}/{n} samples, {time.perf_counter() - t0:.0f} s")
    halves.extend(est.finish(tr))
    return halves, soc, res, flags, first_closed


def pybamm_one(name: str) -> Row:
    base = PYBAMM_DIR / name
    if not (base.with_suffix(".csv")).exists():
        return Row(f"pybamm {name}", verdict_text="not present")
    meta = json.loads(base.with_suffix(".json").read_text())
    a = _read_csv(base.with_suffix(".csv"))
    truth = _read_csv(PYBAMM_DIR / f"{name}.truth.csv")
    soc_true = _read_csv(PYBAMM_DIR / f"{name}.soc.csv")["soc_true"]
    t, v, i = a["time_s"], a["voltage_v"], a["current_a"]
    temp = np.where(np.isfinite(a["temp_c"]), a["temp_c"], 25.0)
    learned, params = _learn(t, v, i, float(meta["v_min"]), float(meta["v_max"]))
    log(f"  pybamm {name}: learned {learned.capacity_mah:.0f} mAh, r {learned.r_ohm * 1e3:.1f} mOhm; "
        f"stepping {t.size} samples")
    halves, soc, res, flags, first_closed = _step_one(params, t, v, i, temp)

    dis = sorted((h for h in halves if h.half == "discharge"), key=lambda h: h.t)
    cyc = truth["cycle"].astype(int)
    true_dis = dict(zip(cyc, truth["discharge_capacity_ah"] * 1000.0))
    # The k-th discharge half of the file is cycle k of the truth (the file starts with a discharge).
    counted, twin, twin_series, true_series = [], [], [], []
    for k, h in enumerate(dis, start=1):
        ref = true_dis.get(k)
        if ref is None or not ref > 0:
            continue
        counted.append(abs(h.capacity_mah / ref - 1.0))
        if math.isfinite(h.twin_capacity_mah) and k >= JUDGED_FROM_CYCLE:
            twin_series.append(h.twin_capacity_mah)
            true_series.append(ref)
            twin.append(abs(h.twin_capacity_mah / ref - 1.0))
    if len(dis) != len(true_dis):
        log(f"  pybamm {name}: {len(dis)} discharge halves vs {len(true_dis)} truth cycles")
    fade_gap = NAN
    if len(twin_series) >= 2:
        fade_gap = 100 * abs(twin_series[-1] / twin_series[0] - true_series[-1] / true_series[0])
    m = min(soc.size, soc_true.size)
    after = np.arange(m) >= first_closed
    d = (soc[:m] - soc_true[:m])[after]
    d = d[np.isfinite(d)]
    soc_rmse = float(np.sqrt(np.mean(d * d))) if d.size else NAN
    ok = (flags == 0) & np.isfinite(res)
    row = Row(f"pybamm {name}", 1, len(true_dis), 100 * _nanmax(counted), 100 * _nanmax(twin), fade_gap,
              100 * soc_rmse, float(np.abs(res[ok]).max()) if ok.any() else NAN)
    if not row.twin_pct <= B_TWIN_PCT:
        row.failed.append(f"twin cap > {B_TWIN_PCT:g} %")
    if not fade_gap <= B_FADE_PTS:
        row.failed.append(f"fade gap > {B_FADE_PTS:g} pt")
    if not row.soc_rmse_pct <= B_SOC_RMSE_PCT:
        row.failed.append(f"SOC RMSE > {B_SOC_RMSE_PCT:g} %")
    return row


# --------------------------------------------------------------------------- C: real files


def _find_real(name: str) -> Path | None:
    for p in (REAL_DIR / name, REAL_DIR / "batterydata" / name, REAL_DIR / "batteryarchive" / name):
        if p.exists():
            return p
    hits = sorted(REAL_DIR.rglob(name)) if REAL_DIR.exists() else []
    return hits[0] if hits else None


def real_one(name: str) -> Row:
    from connectors.readers import read_archive

    label = f"real {name[:24]}"
    path = _find_real(name)
    if path is None:
        return Row(label, verdict_text="not present")
    rec = read_archive(path).only()
    t, v, i = (np.asarray(x, dtype=float) for x in (rec.t, rec.v, rec.i))
    temp = np.asarray(rec.temp_c, dtype=float) if rec.temp_c is not None else np.full(t.size, NAN)
    temp = np.where(np.isfinite(temp), temp, 25.0)
    # Real files may lack a slow full cycle: learn provisionally rather than not at all.
    learned, params = _learn(t, v, i, None, None, fallback=True)
    if learned.provisional:
        log(f"  {label}: provisional curve: {learned.notes[0] if learned.notes else ''}")
    log(f"  {label}: learned {learned.capacity_mah:.4g} mAh in {learned.v_min:.3g}-{learned.v_max:.3g} V; "
        f"stepping {t.size} samples")
    halves, soc, res, flags, _ = _step_one(params, t, v, i, temp)
    ok = (flags == 0) & np.isfinite(res)
    row = Row(label, 1, "-", residual_v=float(np.abs(res[ok]).max()) if ok.any() else NAN)

    from pipeline import validation

    counted_halves = validation.half_cycles(rec, learned.v_min, learned.v_max)
    full = [h for h in counted_halves if h.full and h.mah > 0]
    row.cycles = max((h.cycle for h in counted_halves), default=0)
    learned_end = NAN
    if learned.capacity_from is not None:
        t_clean = t[np.isfinite(t) & np.isfinite(v) & np.isfinite(i)]
        learned_end = float(t_clean[min(learned.capacity_from.stop, t_clean.size) - 1])
    counted, twin = [], []
    for h in full:
        # The twin closes a half when the opposite current starts, after any rest: the first
        # close of the same kind from this half's end on, before the next half of that kind.
        later = [g.t_start for g in counted_halves if g.half == h.half and g.t_start > h.t_start]
        until = min(later, default=math.inf)
        same = [x for x in halves if x.half == h.half and h.t_end - 120.0 <= x.t <= until]
        if not same:
            continue
        x = min(same, key=lambda x: x.t)
        if math.isfinite(h.cycler_mah) and h.cycler_mah > 0:
            counted.append(abs(x.capacity_mah / h.cycler_mah - 1.0))
        if h.half == "discharge" and (not math.isfinite(learned_end) or h.t_start >= learned_end):
            predicted = x.expected_mah_g * params.mass_mg / 1000.0
            if math.isfinite(predicted):
                twin.append(abs(predicted / h.mah - 1.0))
    log(f"  {label}: {len(full)} full halves, {len(counted)} with cycler counters, {len(twin)} discharges "
        "after the learned half")
    row.counted_pct, row.twin_pct = 100 * _nanmax(counted), 100 * _nanmax(twin)
    if not counted:
        row.failed.append("no full half with counters")
    elif not row.counted_pct <= C_COUNTED_PCT:
        row.failed.append(f"counted > {C_COUNTED_PCT:g} %")
    if twin and not row.twin_pct <= C_TWIN_PCT:
        row.failed.append(f"twin cap > {C_TWIN_PCT:g} %")
    if not twin and not row.failed:
        row.verdict_text = "pass (counted only: no full discharge after the learned one)"
    if learned.provisional:
        row.name = row.name[:27] + " (prov.)"  # a fallback curve: twin capacity is provisional
    return row


# --------------------------------------------------------------------------- table

COLUMNS = (
    ("data set", 36, "name"),
    ("cells", 6, "cells"),
    ("cycles", 12, "cycles"),
    ("counted %", 10, "counted_pct"),
    ("twin %", 8, "twin_pct"),
    ("ret.gap pt", 11, "gap_pts"),
    ("SOC RMSE %", 11, "soc_rmse_pct"),
    ("|res| V", 8, "residual_v"),
    ("time s", 7, "seconds"),
)


def _cell(value, width: int, attr: str) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            text = "-"
        elif attr == "residual_v":
            text = f"{value:.4f}"
        elif attr == "seconds":
            text = f"{value:.0f}"
        else:
            text = f"{value:.2f}"
        return text.rjust(width)
    return str(value).rjust(width) if attr != "name" else str(value)[:width].ljust(width)


def print_table(rows: list[Row]) -> None:
    header = " ".join(h.ljust(w) if a == "name" else h.rjust(w) for h, w, a in COLUMNS) + "  verdict"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(" ".join(_cell(getattr(r, a), w, a) for _, w, a in COLUMNS) + "  " + r.verdict)


def data_sets(args) -> list[tuple[str, str, object]]:
    """(key for --only, row label, callable) in table order."""
    quick = args.quick
    pop_n = 20 if quick else args.population
    sets = [
        ("demo", "demo (6 cells x 3 cycles 1C)", lambda: sim_fleet("demo (6 cells x 3 cycles 1C)", 6, 3, 1.0, 0)),
        ("fleet20", "fleet 20 x 10 cycles 1C",
         lambda: sim_fleet("fleet 20 x 10 cycles 1C", 8 if quick else 20, 4 if quick else 10, 1.0, 0)),
        ("fleet12", "fleet 12 x 15 cycles 0.5C seed 7",
         lambda: sim_fleet("fleet 12 x 15 cycles 0.5C seed 7", 6 if quick else 12, 4 if quick else 15, 0.5, 7)),
    ]
    sets += [("population", f"population {pop_n}", (lambda seed=seed: population(pop_n, quick, seed))) for seed in args.seed]
    sets += [(f"pybamm-{n}", f"pybamm {n}", (lambda n=n: pybamm_one(n))) for n in PYBAMM_NAMES]
    sets += [(f"real-{f}", f"real {f[:24]}", (lambda f=f: real_one(f))) for f in REAL_FILES]
    return sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Judges the twin (Kalman filter) on simulated hydride "
        "fleets, PyBaMM archives and real cycler files against known truth; prints one row per data set. "
        "Progress goes to stderr, the table to stdout.",
        epilog="--only matches a substring of a data set's key: demo, fleet20, fleet12, population, "
        "pybamm (all three), pybamm-chen2020, pybamm-prada2013, pybamm-marquis2019, real (all), "
        "real-arbin..., real-p492..., real-CALCE...",
    )
    ap.add_argument("--quick", action="store_true",
                    help="smaller fleets and fewer cycles (a smoke run); population of 20 cells")
    ap.add_argument("--population", type=int, default=200, metavar="N",
                    help="cells in the composition population (default 200; --quick uses 20)")
    ap.add_argument("--seed", type=int, nargs="+", default=[POP_SEED], metavar="N",
                    help="seed of the population: its compositions, cell-to-cell spread, noise and faults "
                         f"(default {POP_SEED}; others check that the twin was not tuned to one draw). "
                         "Several seeds give one population row each")
    ap.add_argument("--only", metavar="NAME", help="run only the data sets whose key contains NAME")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    rows = []
    for key, label, fn in data_sets(args):
        if args.only and args.only.lower() not in key.lower():
            continue
        log(f"[{time.perf_counter() - started:6.0f} s] {label} ...")
        t0 = time.perf_counter()
        try:
            row = fn()
        except Exception as exc:  # one data set failing must not stop the table
            log(traceback.format_exc())
            row = Row(label, verdict_text=f"FAIL: error {type(exc).__name__}: {exc}"[:160])
        row.seconds = time.perf_counter() - t0
        rows.append(row)
    if not rows:
        log(f"no data set matches --only {args.only!r}")
        return 2
    print_table(rows)
    print(f"total run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
