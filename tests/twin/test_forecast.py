"""End-of-life forecast on simulated populations whose end of life is known.

The populations are the risk test's (60 cells from MgH2-like to the composite, with
cell-to-cell variability) for two seeds. The truth runs each cell far past the floor; the
twin, with the cells' nominal parameters, sees sampled data of the first cycles only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin import estimator as est
from twin import forecast
from twin.estimator import RETENTION_FLOOR
from twin.forecast import HORIZON_CYCLES, end_of_life
from twin.params import params_from_composition
from twin.protocol import cc_cycles
from twin.simulator import Simulation, SensorNoise, simulate_cycles

from test_risk import _population  # the risk test's population: a shared, known fate

TRUTH_CYCLES = 400  # every cell of both seeds but a few reaches the floor within this
TWIN_CYCLES = 40  # 10 % of the longest life
EARLY_SHARE = 0.1  # the forecast is judged after this share of each cell's life
LATER_SHARE = 0.2  # ... and its interval compared with that after this share


def _cycles_to_floor(cells) -> dict[int, int]:
    """First cycle whose charge ends with the reversible capacity below the floor, relative to
    that after the first cycle (the retention the twin's capacity estimate is judged by)."""
    truth = simulate_cycles(cells, cc_cycles(0.5, TRUTH_CYCLES), dt=120.0)
    first: dict[int, float] = {}
    fail: dict[int, int] = {}
    for x in truth:
        if x.half == "charge":
            first.setdefault(x.cell, x.reversible_capacity_mah)
            if x.reversible_capacity_mah < RETENTION_FLOOR * first[x.cell]:
                fail.setdefault(x.cell, x.cycle)
    return fail


@pytest.fixture(scope="module", params=[11, 12])
def population(request):
    cells = _population(np.random.default_rng(request.param))
    nominal = [params_from_composition(c.composition) for c in cells]
    sim = Simulation(cells, cc_cycles(0.5, TWIN_CYCLES), dt=60.0, noise=SensorNoise(), seed=3)
    tr = est.new_tracker(nominal)
    charges: dict[int, dict[int, est.HalfCycle]] = {}
    for b in sim.blocks():
        for k in range(b.t.size):
            for h in est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k]).halves:
                if h.half == "charge":
                    charges.setdefault(h.cell, {})[h.cycle] = h
    return request.param, _cycles_to_floor(cells), charges


def _forecast_after(share: float, fail: dict[int, int], charges) -> dict[int, tuple[int, est.HalfCycle]]:
    """Per failing cell: (true cycles left, the charge half) at the first charge after `share` of its life."""
    out = {}
    for cell, failed_at in fail.items():
        due = max(1, math.ceil(share * failed_at))
        half = charges.get(cell, {}).get(due)
        if half is not None and failed_at > due:
            out[cell] = failed_at - due, half
    return out


def test_forecast_covers_the_true_end_of_life_after_a_tenth_of_it(population):
    seed, fail, charges = population
    early = _forecast_after(EARLY_SHARE, fail, charges)
    assert len(early) >= 50, f"seed {seed}: {len(early)} cells judged"
    true = np.array([left for left, _ in early.values()], dtype=float)
    mid = np.array([h.eol_cycles for _, h in early.values()])
    low = np.array([h.eol_low for _, h in early.values()])
    high = np.array([h.eol_high for _, h in early.values()])
    coverage = np.mean((low <= true) & (true <= high))
    error = np.median(np.abs(mid - true) / true)
    width = np.median((high - low) / true)
    print(f"seed {seed}: {len(early)} cells, coverage {coverage:.3f}, median |error| {error:.3f}, "
          f"median interval width {width:.3f} of the true value")
    assert coverage >= 0.85
    assert error <= 0.20
    assert width <= 1.2  # not bought with an absurd interval


def test_interval_narrows_as_cycles_accumulate(population):
    seed, fail, charges = population
    early = _forecast_after(EARLY_SHARE, fail, charges)
    later = _forecast_after(LATER_SHARE, fail, charges)
    both = [cell for cell in later if cell in early]
    assert len(both) >= 30

    def width(forecasts, cell):
        return forecasts[cell][1].eol_high - forecasts[cell][1].eol_low

    def relative(forecasts, cell):
        return width(forecasts, cell) / forecasts[cell][0]

    before, after = (np.median([width(f, c) for c in both]) for f in (early, later))
    rel_before, rel_after = (np.median([relative(f, c) for c in both]) for f in (early, later))
    print(f"seed {seed}: median interval {before:.1f} cycles after 10 % of life, {after:.1f} after 20 %; "
          f"of the cycles left: {rel_before:.3f}, {rel_after:.3f}")
    assert after < 0.9 * before  # in cycles
    assert rel_after < rel_before  # and as a share of what is left


def test_unknown_before_the_first_capacity_and_without_an_ageing_model():
    assert math.isnan(end_of_life(0, 0.01, 0.0, 0.84, 1.0, 1e-4, math.nan, 0.8).cycles)
    assert math.isnan(end_of_life(5, 0.0, 0.0, 0.9, 1.0, 1e-4, 1.0, 0.8).cycles)  # a generic cell


def test_more_loss_means_an_earlier_end_and_the_point_lies_inside_its_interval():
    healthy = end_of_life(10, 0.05, 0.001, 0.84, 0.97, 1e-4, 1.0, 0.8)
    worn = end_of_life(10, 0.05, 0.001, 0.84, 0.90, 1e-4, 1.0, 0.8)
    assert worn.cycles < healthy.cycles
    for f in (healthy, worn):
        assert f.low <= f.cycles <= f.high <= HORIZON_CYCLES
    assert end_of_life(10, 0.05, 0.001, 0.84, 0.75, 1e-4, 1.0, 0.8).high == 0.0  # already below the floor


def test_draws_and_percentiles_are_numpys_own() -> None:
    """The forecast draws its random numbers once and takes its percentiles itself: the same
    numbers as a generator seeded alike that draws them every time, and as np.percentile."""
    weight = np.exp(-np.random.default_rng(3).uniform(0.0, 30.0, forecast._M_PSI.size))
    rng = np.random.default_rng(forecast._SEED)
    np.testing.assert_array_equal(forecast._pick(weight),
                                  rng.choice(weight.size, size=forecast._DRAWS, p=weight / weight.sum()))
    step = forecast._GRID[1] - forecast._GRID[0]
    np.testing.assert_array_equal(forecast._JITTER_PSI, np.exp(rng.uniform(-0.5, 0.5, forecast._DRAWS) * step))
    np.testing.assert_array_equal(forecast._JITTER_CRACK, np.exp(rng.uniform(-0.5, 0.5, forecast._DRAWS) * step))
    np.testing.assert_array_equal(forecast._NORMAL, rng.standard_normal(forecast._DRAWS))
    cycles = np.ceil(np.random.default_rng(4).uniform(0.0, HORIZON_CYCLES, forecast._DRAWS))
    for x in (cycles, np.random.default_rng(5).normal(size=forecast._DRAWS)):
        np.testing.assert_array_equal(forecast._percentiles(x), np.percentile(x, [5.0, 50.0, 95.0]))
