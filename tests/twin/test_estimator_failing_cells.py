"""The estimator on cells that fail fast, and on cells it was not told the state of.

The fleets are the product's own demo fleets (composite and pure-MgH2 cells alternating,
1C and 0.5C, 10 s sampling, cycler noise); the MgH2 cells lose 60-70 % in ten cycles.
The twin sees only each cell's preset, not its manufacturing spread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from connectors.sim_producer import fleet, simulation
from pipeline.alerts import half_cycle_alerts, new_latch
from twin import estimator as est
from twin.chemistry import Composition
from twin.generic import generic_params, soc_grid
from twin.params import params_from_composition
from twin.protocol import cc_cycles, parse_step
from twin.simulator import Faults, SensorNoise, Simulation, vary

from estimator_runs import run_estimator


def _run_fleet(n: int, cycles: int, c_rate: float, seed: int):
    cells = fleet(n, "mixed", c_rate=c_rate, seed=seed)
    sim = simulation(cells, cycles, dt=10.0, t0=1.7e9, seed=seed)
    tr = est.new_tracker([c.params for c in cells])
    residual, flags, halves = [], [], []
    for b in sim.blocks():
        for k in range(b.t.size):
            out = est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k])
            residual.append(np.where(b.valid[:, k], out.v_residual, np.nan))
            flags.append(np.where(b.valid[:, k], out.flags, 0))
            halves += out.halves
    return cells, np.array(residual), np.array(flags), halves, tr, sim.truth


@pytest.fixture(scope="module")
def fleet_1c():
    """`celltwin run --cells 20 --cycles 10`: where the filter used to diverge."""
    return _run_fleet(20, 10, 1.0, 0)


@pytest.fixture(scope="module")
def fleet_half_c():
    return _run_fleet(12, 15, 0.5, 7)


@pytest.mark.parametrize("run", ["fleet_1c", "fleet_half_c"])
def test_no_residual_beyond_a_tenth_of_a_volt_goes_unflagged(run, request):
    _, residual, flags, _, tr, _ = request.getfixturevalue(run)
    assert np.all(np.isfinite(tr.x)) and np.all(np.isfinite(tr.P))
    unflagged = np.abs(np.where(flags == 0, residual, 0.0))
    assert np.nanmax(unflagged) <= 0.1


def _retention_gaps(halves) -> list[float]:
    return [abs(h.retention - h.measured_retention) for h in halves
            if h.half == "charge" and h.cycle >= 3 and math.isfinite(h.measured_retention)]


def test_twin_retention_follows_the_measured_one_at_half_c(fleet_half_c):
    gaps = _retention_gaps(fleet_half_c[3])
    assert gaps and max(gaps) <= 0.03


def test_twin_retention_of_fast_failing_cells_at_1c(fleet_1c):
    """Measured: worst 1.7 points over 20 cells x 10 cycles (3.15 before the count was read
    through the at-rate model); the MgH2 cells' twin retention used to climb to 1.46 while
    they lost 65 %."""
    cells, _, _, halves, _, _ = fleet_1c
    gaps = _retention_gaps(halves)
    assert gaps and max(gaps) <= 0.03
    for h in halves:
        if cells[h.cell].preset == "mgh2" and h.cycle >= 2 and math.isfinite(h.retention):
            assert h.retention <= 1.0  # 1 at the reference half itself


@pytest.mark.parametrize("run", ["fleet_1c", "fleet_half_c"])
def test_every_cell_below_the_floor_is_alerted_within_one_cycle(run, request):
    cells, _, _, halves, _, _ = request.getfixturevalue(run)
    latch = new_latch(len(cells))
    alerted, failed = {}, {}
    for h in halves:
        if any(a.kind == "retention_floor" for a in half_cycle_alerts(latch, h)):
            alerted.setdefault(h.cell, h.cycle)
        if math.isfinite(h.measured_retention) and h.measured_retention < 0.8:
            failed.setdefault(h.cell, h.cycle)
    assert failed, "the fleet has failing cells"
    for cell, cycle in failed.items():
        assert cell in alerted and alerted[cell] <= cycle + 1, cells[cell].cell


def test_capacity_follows_a_fast_fade(fleet_half_c):
    """The MgH2 cells lose 15-20 % a cycle early on; the capacity estimate keeps up with
    the truth and says how well it knows it. Measured: MgH2 worst 7.4 %, mean +2.4 %
    (the diffusion lag of MgH2, known to ~10 %, blurs where the bulk SOC ends); the
    composite worst 0.2 %. Measuring tau_D on every charge where the lag weighs at least
    half what the capacity does (not 0.7) piles that fade into tau_D: mean +2.7 % (+3.1 %
    at 0.3)."""
    cells, _, _, halves, _, truth = fleet_half_c
    true_capacity = {(x.cell, x.cycle, x.half): x.reversible_capacity_mah for x in truth}
    errors = {"mgh2": [], "nd4mg80ni8": []}
    for h in halves:
        if h.half == "charge" and h.cycle >= 3:
            errors[cells[h.cell].preset].append(h.twin_capacity_mah / true_capacity[(h.cell, h.cycle, h.half)] - 1)
            assert 0 < h.twin_capacity_std_mah < 0.2 * h.twin_capacity_mah
    assert max(np.abs(errors["mgh2"])) <= 0.10 and abs(np.mean(errors["mgh2"])) <= 0.03
    assert max(np.abs(errors["nd4mg80ni8"])) <= 0.01


def test_a_cell_that_diffuses_faster_than_its_composition_says():
    """The twin has the composition's nominal parameters; the cell's diffusion time is 15 %
    shorter (the spread between cells is 8 %). At 1C the lag is a quarter of the SOC range,
    and the count over the filter's swing read the lag error as capacity: the capacity ran
    5.5 % high and climbing, the twin's retention 16 points above the measured one.
    Measured now: tau_D within 1.6 % of the cell's, capacity within 0.8 %, gap 0.8 points."""
    tau_scale, charges = _off_diffusion_cell(0.85, cycles=5)
    assert abs(tau_scale / 0.85 - 1.0) <= 0.03
    assert len(charges) >= 2
    for h, truth in charges:
        assert abs(h.twin_capacity_mah / truth - 1.0) <= 0.02
        assert abs(h.retention - h.measured_retention) <= 0.035


def _off_diffusion_cell(factor: float, cycles: int):
    """A 1C cell whose diffusion time is `factor` times its composition's, the twin told the
    nominal one: (its estimated tau_D over the nominal, [(charge half, true capacity)] from
    cycle 3)."""
    nominal = params_from_composition(Composition({"MgH2": 0.896, "Mg2NiH4": 0.037, "Nd2H5": 0.067}))
    true = nominal.with_(tau_diff_s=factor * nominal.tau_diff_s)
    sim = Simulation([true], cc_cycles(1.0, cycles), dt=10.0, noise=SensorNoise(), seed=3)
    run = run_estimator(sim, [nominal])
    truth = {(x.cycle, x.half): x.reversible_capacity_mah for x in sim.truth}
    return float(run.tracker.tau_scale[0]), [(h, truth[(h.cycle, h.half)]) for h in run.halves
                                             if h.half == "charge" and h.cycle >= 3]


@pytest.mark.parametrize("factor", [0.8, 1.22])
def test_a_diffusion_time_two_and_a_half_spreads_off_is_found_in_the_first_charge(factor):
    """The spread between cells is 8 %: these cells are 2.5-2.8 sigma out, and at 1C their
    first charge misses the twin's prediction by a fifth to a third. Before the count was
    read through the at-rate model, the faster cell's twin retention ran 4.6 points above
    the measured one on every half (its reference half was off the count) and the slower
    one's capacity 5.8 % low. Measured now: tau_D within 3 % (0.8) and 7.5 % (1.22) of the
    cell's, capacity within 1.2 % and 4.3 %, gap at most 0.3 and 0.5 points (2.1 before the
    half's start moved to where its count says it was, `_update_capacity`)."""
    tau_scale, charges = _off_diffusion_cell(factor, cycles=6)
    assert abs(tau_scale - factor) <= 0.5 * abs(factor - 1.0)  # at least half way
    assert len(charges) >= 3
    for h, truth in charges:
        assert abs(h.twin_capacity_mah / truth - 1.0) <= 0.05
        assert abs(h.retention - h.measured_retention) <= 0.03


@pytest.mark.parametrize("noise_seed", range(6))
def test_a_slow_diffusing_fast_segregating_cell_is_read_from_its_first_charge(noise_seed):
    """A cell of the benchmark's population drawn with seed 5: diffusion 22 % slower than
    its composition says (2.7 spreads), phase separation 19 % faster. Its first 1C charge
    delivers a quarter less than the twin predicts. Where the capacity was still uncertain
    enough that the lag's share of that miss came out under the capacity's, the count went
    to the capacity alone, with tau_D only "considered", and part of the miss stayed in the
    twin's answer for that half, its retention reference. Measured over these six noise
    draws: worst gap 3.1 points before, 1.0 now."""
    nominal = params_from_composition(Composition({"MgH2": 0.87, "Mg2NiH4": 0.078, "Nd2H5": 0.052}))
    true = nominal.with_(tau_diff_s=1.218 * nominal.tau_diff_s, ps_rate=1.187 * nominal.ps_rate,
                         crack_rate=1.104 * nominal.crack_rate, r0_ohm=1.02 * nominal.r0_ohm,
                         r1_ohm=1.007 * nominal.r1_ohm, utilisation=0.996 * nominal.utilisation,
                         ocv_shift_v=nominal.ocv_shift_v + 0.0033)
    sim = Simulation([true], cc_cycles(1.0, 8), dt=10.0, noise=SensorNoise(),
                     faults=Faults(dropout_prob=0.01, spike_prob=0.002), seed=noise_seed)
    gaps = _retention_gaps(run_estimator(sim, [nominal]).halves)
    assert len(gaps) >= 5
    assert max(gaps) <= 0.03


@pytest.mark.parametrize("c_rate", [0.5, 1.0])
def test_twin_retention_follows_the_measured_one_over_a_composition_population(c_rate):
    """30 cells from pure MgH2 to the composite, each with the manufacturing spread the
    twin is not told (diffusion time 8 %, resistances 8 %, ageing rates 25 %), dropouts and
    spikes; the twin has each composition's nominal parameters. The benchmark's population
    draws another 200 (seed 11, `--seed N` others); this one is drawn apart from it.
    Measured: worst 1.7 (0.5C) and 1.3 (1C) points (1.8 and 2.5 before the twin's
    retention read each half from where its count says it started); before the count was
    read through the at-rate model, 4.2 and 5.0, with 10 and 20 charge halves beyond 3
    points."""
    rng = np.random.default_rng(5)
    nominal, true = [], []
    for _ in range(30):
        nd2h5, mg2nih4 = rng.uniform(0.0, 0.19), rng.uniform(0.0, 0.28)
        p = params_from_composition(Composition({"MgH2": 1.0 - nd2h5 - mg2nih4, "Mg2NiH4": mg2nih4, "Nd2H5": nd2h5}))
        nominal.append(p)
        true.append(vary(p, 1, rng)[0])
    sim = Simulation(true, cc_cycles(c_rate, 8), dt=10.0, noise=SensorNoise(),
                     faults=Faults(dropout_prob=0.01, spike_prob=0.002), seed=5)
    halves = run_estimator(sim, nominal).halves
    gaps = _retention_gaps(halves)
    assert len(gaps) >= 100
    assert max(gaps) <= 0.03
    # Discharges: the twin's answer at the activation the half had, not the next cycle's
    # (a discharge completes a lithiation). Measured median gap 0.4 (0.5C) and 1.8 (1C)
    # points, 1.1 and 4.0 when read a cycle on.
    discharge_gaps = [abs(h.retention - h.measured_retention) for h in halves
                      if h.half == "discharge" and h.cycle >= 3 and math.isfinite(h.measured_retention)]
    assert len(discharge_gaps) >= 100
    assert np.median(discharge_gaps) <= 0.025


def _sloped_cell(capacity_mah: float = 19.6):
    """A Li-ion-like cell with a sloped open-circuit curve (2.8-4.2 V) and 10 mV hysteresis."""
    z = soc_grid()
    ocv = 3.0 + 1.0 * z + 0.15 * np.tanh((z - 0.05) / 0.03)
    table = np.stack([ocv - 0.005, ocv + 0.005])
    return generic_params("sloped", capacity_mah, float(table[0, 0]) + 0.01, float(table[1, -1]) - 0.01, table,
                          r_ohm=2.0)


def test_a_rest_after_the_cut_off_is_not_read_as_charge_left():
    """A learned cell whose voltage relaxes for 15 min after each cut-off (diffusion 50x
    slower than the twin assumes): the relaxation is no open circuit, so a half ends at its
    last active sample. Read at the end of the rest, the swing came out short and the
    capacity, count over swing, 19 % above what the cell delivers."""
    cell = _sloped_cell()
    sim = Simulation([cell.with_(tau_diff_s=3000.0)], cc_cycles(0.2, 5, rest_s=900.0, v_min=cell.v_min,
                                                                 v_max=cell.v_max),
                     dt=10.0, noise=SensorNoise(), seed=3, temp_c=25.0)
    halves = run_estimator(sim, [cell]).halves
    delivered = [h.capacity_mah for h in halves if h.half == "discharge"][-1]
    assert halves[-1].twin_capacity_mah == pytest.approx(delivered, rel=0.03)


def test_a_branch_switch_faster_than_the_default_does_not_restart_the_filter():
    """A half-cell-like learned curve (steep ends, 0.1 V between its branches) whose real
    branch switch after a reversal is over in seconds, where the twin's default rate takes
    3 % of SOC: the voltage moves the branch state instead. Each restart had floored the
    capacity uncertainty at 10 %."""
    z = soc_grid()
    ocv = 0.15 + 0.25 * z + 0.6 * np.exp((z - 1.0) / 0.03) - 0.1 * np.exp(-z / 0.03)
    table = np.stack([ocv - 0.05, ocv + 0.05])
    cell = generic_params("steep", 19.6, float(table[0, 0]) + 0.01, float(table[1, -1]) - 0.01, table, r_ohm=2.0)
    sim = Simulation([cell.with_(hysteresis_rate=1000.0)], cc_cycles(1.0, 5, v_min=cell.v_min, v_max=cell.v_max),
                     dt=10.0, noise=SensorNoise(), seed=3, temp_c=25.0)
    tr = est.new_tracker([cell], soc0=None)
    recovered, halves = 0, []
    for b in sim.blocks():
        for k in range(b.t.size):
            o = est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k])
            recovered += bool(o.flags[0] & est.FLAG_RECOVERED)
            halves += o.halves
    assert recovered == 0
    assert len(halves) == 9
    for h in halves[2:]:
        assert h.twin_capacity_mah == pytest.approx(cell.capacity_mah, rel=0.01)
        assert h.twin_capacity_std_mah < 0.01 * cell.capacity_mah


def test_the_branch_state_does_not_soak_up_what_the_resistance_owes():
    """A learned cell with 0.1 V between its branches whose resistance is 0.3 of the twin's
    prior, cycled at 1C: under load its voltage sits above the twin's prediction. Freed for
    a branch switch, the hysteresis state followed that voltage towards the charge branch
    in mid-discharge, and the resistances, the twin's impedance figures, stayed near the
    prior (r0 + r1 1.9x the truth). The voltage now frees the branch state only on the side
    the current switches it towards, and the resistances take the difference."""
    z = soc_grid()
    ocv = 3.0 + 1.0 * z + 0.15 * np.tanh((z - 0.05) / 0.03)
    table = np.stack([ocv - 0.05, ocv + 0.05])
    cell = generic_params("wide", 19.6, float(table[0, 0]) + 0.01, float(table[1, -1]) - 0.01, table, r_ohm=4.0)
    true = cell.with_(r0_ohm=0.3 * cell.r0_ohm, r1_ohm=0.3 * cell.r1_ohm)
    sim = Simulation([true], cc_cycles(1.0, 4, v_min=cell.v_min, v_max=cell.v_max), dt=10.0, noise=SensorNoise(),
                     seed=3, temp_c=25.0)
    run = run_estimator(sim, [cell], soc0=None)
    r_true = run.r0_true[-1, 0] + run.r1_true[-1, 0]
    assert run.r0[-1, 0] + run.r1[-1, 0] == pytest.approx(r_true, rel=0.15)
    late = slice(run.soc.shape[0] // 2, None)
    assert np.sqrt(np.mean((run.soc[late, 0] - run.soc_true[late, 0]) ** 2)) < 0.02


def test_a_curve_that_sagged_at_its_end_since_it_was_learned_does_not_inflate_the_capacity():
    """The cell's curve has sagged 40 mV at its empty end since the twin learned it: at 0.2C
    it reaches the cut-off with charge the learned curve would still count as there. A half
    that gets to its cut-off ended at the curve's end (pinned as loosely as its current's lag
    says), so the capacity follows what the cell delivers (it was 2.4-2.7 % high). The
    window is where a curve learned at 0.2C ends, its ends less the resistive drop: there
    the cell delivered the curve's whole charge."""
    cell = _sloped_cell()
    drop = 0.2 * cell.capacity_mah / 1000.0 * (cell.r0_ohm + cell.r1_ohm)
    cell = cell.with_(v_min=float(cell.ocv_table[0, 0]) - drop, v_max=float(cell.ocv_table[1, -1]) + drop)
    z = soc_grid()
    sagged = cell.with_(ocv_table=cell.ocv_table - 0.04 * np.clip((0.15 - z) / 0.15, 0.0, 1.0))
    sim = Simulation([sagged], cc_cycles(0.2, 4, v_min=cell.v_min, v_max=cell.v_max), dt=10.0, noise=SensorNoise(),
                     seed=3, temp_c=25.0)
    discharges = [h for h in run_estimator(sim, [cell], soc0=None).halves if h.half == "discharge"]
    assert len(discharges) == 4
    for h in discharges[2:]:
        assert h.twin_capacity_mah == pytest.approx(h.capacity_mah, rel=0.02)


def test_a_fast_constant_current_half_is_not_pinned_to_the_end_of_the_curve():
    """At 1C the resistive drop (2 ohm x 19.6 mA) stops a charge at the cut-off 4 % short
    of a top that rises 1 V over the SOC. Pinned to the curve's end, that 4 % read as
    capacity missing: 5 % low, SOC RMSE 2.6 %. The pin reads where the curve less the
    drop meets the cut-off."""
    cell = _sloped_cell()
    sim = Simulation([cell], cc_cycles(1.0, 6, v_min=cell.v_min, v_max=cell.v_max), dt=10.0, noise=SensorNoise(),
                     seed=3, temp_c=25.0)
    run = run_estimator(sim, [cell], soc0=None)
    late = slice(run.soc.shape[0] // 2, None)
    assert np.sqrt(np.mean((run.soc[late, 0] - run.soc_true[late, 0]) ** 2)) < 0.015
    assert run.capacity[-1, 0] == pytest.approx(run.capacity_true[-1, 0], rel=0.025)


def test_a_cell_that_starts_empty_is_not_read_as_full():
    """SOC from the first voltage: an empty cell that charges first keeps its capacity
    (it used to start at SOC 1, be gated, and have its capacity cut from 19.6 to 1.6 mAh)."""
    cell = _sloped_cell()
    steps = [parse_step(f"Charge at 0.5C until {cell.v_max} V", 0), parse_step(f"Discharge at 0.5C until {cell.v_min} V", 1),
             parse_step(f"Charge at 0.5C until {cell.v_max} V", 2)]
    sim = Simulation([cell], steps, dt=10.0, noise=SensorNoise(), seed=2, initial_soc=0.0, temp_c=25.0)
    run = run_estimator(sim, [cell], soc0=None)
    assert abs(run.soc[0, 0] - run.soc_true[0, 0]) < 0.1
    assert np.sqrt(np.mean((run.soc[20:, 0] - run.soc_true[20:, 0]) ** 2)) < 0.02
    assert run.capacity[-1, 0] == pytest.approx(cell.capacity_mah, rel=0.03)
