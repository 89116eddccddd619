"""Crack and phase-separation risk on a simulated population whose fate is known."""

import numpy as np
import pytest

from connectors.wire import THRESHOLDS
from twin import estimator as est
from twin.chemistry import Composition
from twin.params import params_from_composition, preset
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation, simulate_cycles, vary

N_CELLS = 60
EARLY_CYCLES = 5


def _population(rng):
    """Framework fractions from none (MgH2-like) to the composite's, with variability."""
    cells = []
    for _ in range(N_CELLS):
        nd2h5 = rng.uniform(0.0, 0.2)
        mg2nih4 = rng.uniform(0.0, 0.3)
        comp = Composition({"MgH2": 1.0 - nd2h5 - mg2nih4, "Mg2NiH4": mg2nih4, "Nd2H5": nd2h5})
        cells.append(vary(params_from_composition(comp), 1, rng)[0])
    return cells


def _auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    return (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(11)
    cells = _population(rng)
    truth = simulate_cycles(cells, cc_cycles(0.5, 100), dt=60.0)
    # Retention as the twin defines it: reversible capacity over that after the first cycle.
    first, fail_cycle = {}, {}
    for x in truth:
        if x.half == "charge":
            first.setdefault(x.cell, x.reversible_capacity_mah)
            if x.reversible_capacity_mah < 0.8 * first[x.cell]:
                fail_cycle.setdefault(x.cell, x.cycle)
    # The twin sees only the first cycles, with the cells' nominal parameters (no variability).
    nominal = [params_from_composition(c.composition) for c in cells]
    sim = Simulation(cells, cc_cycles(0.5, EARLY_CYCLES), dt=10.0, noise=SensorNoise(), seed=3)
    tr = est.new_tracker(nominal)
    halves = []
    for b in sim.blocks():
        for k in range(b.t.size):
            halves += est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k]).halves
    return cells, fail_cycle, halves


def test_population_has_both_fates(population):
    cells, fail_cycle, _ = population
    assert 10 <= len(fail_cycle) <= len(cells) - 10


def test_risk_separates_failing_cells_within_five_cycles(population):
    cells, fail_cycle, halves = population
    score = np.zeros(len(cells))
    for h in halves:
        if h.cycle <= EARLY_CYCLES:
            score[h.cell] = max(h.crack_risk, h.phase_sep_risk)
    labels = np.array([c in fail_cycle for c in range(len(cells))])
    assert _auc(score, labels) >= 0.94  # 0.999 measured (40 of 60 fail)


def test_every_failing_cell_is_flagged_before_it_fails(population):
    cells, fail_cycle, halves = population
    threshold = min(THRESHOLDS.crack_risk, THRESHOLDS.phase_sep_risk)
    for cell, failed_at in fail_cycle.items():
        flagged = [h.cycle for h in halves if h.cell == cell and max(h.crack_risk, h.phase_sep_risk) >= threshold]
        assert flagged, f"cell {cell} fails at cycle {failed_at} but was never flagged"
        assert min(flagged) < failed_at, f"cell {cell} flagged at cycle {min(flagged)}, fails at {failed_at}"


def _twin_halves(name, c_rate, cycles):
    """The twin (nominal preset) run on a simulated cell of that preset with sensor noise."""
    sim = Simulation([preset(name)], cc_cycles(c_rate, cycles), dt=10.0, noise=SensorNoise(), seed=5)
    tr = est.new_tracker([preset(name)])
    halves = []
    for b in sim.blocks():
        for k in range(b.t.size):
            halves += est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k]).halves
    return halves


def test_mgh2_at_1c_is_flagged_for_cracks_within_five_cycles():
    # The paper: MgH2 electrodes cycled at 1C show pores and cracks at the interface.
    halves = _twin_halves("mgh2", 1.0, 5)
    assert max(h.crack_risk for h in halves if h.cycle <= 5) > THRESHOLDS.crack_risk


def test_composite_at_1c_is_low_risk_after_20_cycles():
    # The paper: the composite's surface stays smooth (no pores, no cracks) after 20 cycles
    # at 1C, and the framework suppresses segregation. Measured: crack 0.013, phase 0.27.
    halves = [h for h in _twin_halves("nd4mg80ni8", 1.0, 20) if h.cycle == 20]
    assert halves
    assert max(h.crack_risk for h in halves) < 0.3
    assert max(h.phase_sep_risk for h in halves) < 0.3
