"""Generic mode: a cell of another chemistry, its OCV and capacity learned from its data.

Most files here come from `Cycler`, a cycler driving a cell whose truth is known
exactly: a two-branch OCV (hysteresis), an ohmic drop, sensor noise, CC steps that stop
at a voltage cut-off, CV holds, rests. The rest use the twin's own simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin import estimator as est
from twin.generic import (
    DEFAULT_TAU_S, END_TOLERANCE, Half, find_halves, generic_params, infer_window, learn_ocv, soc_grid,
)
from twin.params import V_WINDOW_FLOOR
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation

V_LO, V_HI = 2.5, 4.2
CAPACITY_AH = 2.0
R_OHM = 0.05
HYSTERESIS_V = 0.01


def true_ocv(x: np.ndarray | float, sign: int) -> np.ndarray | float:
    """OCV at x (fraction of the cell's whole capacity) on the lithiation (-1) or
    delithiation (+1) branch: a steep knee at the bottom, a sloped top (so that a CV hold
    adds a few % there), a wiggle in between."""
    base = 3.2 + 1.1 * x - 1.5 * np.exp(-x / 0.02) + 0.05 * np.sin(6.0 * x)
    return base + sign * HYSTERESIS_V


def x_at(volts: float, sign: int) -> float:
    """The x where a branch has the given OCV (a rest there reads `volts`)."""
    grid = np.linspace(0.0, 1.0, 200001)
    return float(np.interp(volts, true_ocv(grid, sign), grid))


class Cycler:
    """Runs steps on the true cell and logs (t, v, i) every `dt` s, plus the sample where a
    cut-off ends a step, the way a cycler does. `moved_mah` holds each step's true charge."""

    def __init__(self, x: float, dt: float = 10.0, seed: int = 0, branch: int = -1) -> None:
        self.x, self.dt, self.branch = x, dt, branch
        self.t = 0.0
        self.rows: list[tuple[float, float, float]] = [(0.0, true_ocv(x, branch), 0.0)]
        self.moved_mah: list[float] = []
        self.rng = np.random.default_rng(seed)

    def _log(self, dt: float, volts: float, amps: float) -> None:
        self.t += dt
        self.rows.append((self.t, volts, amps))

    def rest(self, seconds: float) -> Cycler:
        for _ in range(max(int(round(seconds / self.dt)), 1)):
            self._log(self.dt, true_ocv(self.x, self.branch), 0.0)
        return self

    def cc(self, amps: float, until_v: float, efficiency: float = 1.0, max_s: float = np.inf) -> Cycler:
        """Constant current until the loaded voltage reaches `until_v` (or `max_s` pass);
        `efficiency` < 1 loses that share of the charge to side reactions."""
        sign, x0, elapsed = int(np.sign(amps)), self.x, 0.0
        self.branch = sign

        def x_after(seconds: float) -> float:
            return self.x + efficiency * amps * seconds / (CAPACITY_AH * 3600.0)

        def past_cutoff(seconds: float) -> bool:
            return sign * (true_ocv(x_after(seconds), sign) + amps * R_OHM - until_v) >= 0

        while elapsed < max_s:
            step = min(self.dt, max_s - elapsed)
            if past_cutoff(step):
                lo, hi = 0.0, step
                for _ in range(50):
                    mid = (lo + hi) / 2
                    lo, hi = (lo, mid) if past_cutoff(mid) else (mid, hi)
                self.x = x_after(hi)
                self._log(hi, until_v, amps)
                break
            self.x = x_after(step)
            elapsed += step
            self._log(step, true_ocv(self.x, sign) + amps * R_OHM, amps)
        self.moved_mah.append(abs(self.x - x0) * CAPACITY_AH * 1000.0)
        return self

    def cv(self, volts: float, until_amps: float) -> Cycler:
        """Hold `volts` until the current decays below `until_amps` (implicit steps: the
        ends of the curve are steep)."""
        sign, x0, q_as = self.branch, self.x, CAPACITY_AH * 3600.0
        while True:
            lo, hi = sorted((self.x, self.x + (volts - true_ocv(self.x, sign)) / R_OHM * self.dt / q_as))
            for _ in range(60):
                mid = (lo + hi) / 2
                excess = mid - self.x - (volts - true_ocv(mid, sign)) / R_OHM * self.dt / q_as
                lo, hi = (lo, mid) if excess > 0 else (mid, hi)
            self.x = (lo + hi) / 2
            amps = (volts - true_ocv(self.x, sign)) / R_OHM
            self._log(self.dt, volts, amps)
            if abs(amps) < until_amps:
                break
        self.moved_mah.append(abs(self.x - x0) * CAPACITY_AH * 1000.0)
        return self

    def charge(self, c_rate: float, cv: bool = True, efficiency: float = 1.0) -> Cycler:
        self.cc(c_rate * CAPACITY_AH, V_HI, efficiency)
        return self.cv(V_HI, CAPACITY_AH / 50) if cv else self

    def discharge(self, c_rate: float, cv: bool = False) -> Cycler:
        self.cc(-c_rate * CAPACITY_AH, V_LO)
        return self.cv(V_LO, CAPACITY_AH / 50) if cv else self

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, v, i = (np.array(col) for col in zip(*self.rows))
        v = v + self.rng.normal(0.0, 1e-3, v.size)
        i = i + self.rng.normal(0.0, 1e-3, i.size) * np.abs(i) + self.rng.normal(0.0, 1e-5, i.size)
        return t + 1.7e9, v, i


def full_cell(**options) -> Cycler:
    """At rest after a charge with CV to zero current: the top of the window."""
    return Cycler(x_at(V_HI, +1), branch=+1, **options)


def empty_cell(**options) -> Cycler:
    return Cycler(x_at(V_LO, -1), branch=-1, **options)


def assert_branch_matches(table_row: np.ndarray, sign: int, x_empty: float, x_full: float) -> None:
    """The learned branch against the truth mapped onto its SOC 0..1 (away from the ends,
    where one bin spans a steep knee)."""
    truth = true_ocv(x_empty + soc_grid() * (x_full - x_empty), sign)
    np.testing.assert_allclose(table_row[5:96], truth[5:96], atol=0.01)


def test_discharge_first_file_learns_curve_capacity_and_resistance():
    c = full_cell().rest(600).discharge(0.1).rest(1800).charge(0.1).rest(1800).discharge(0.1)
    x_full = x_at(V_HI, +1)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert not learned.provisional and learned.inferred == ()
    assert (learned.lithiation.direction, learned.lithiation.index) == ("discharge", 0)
    assert (learned.delithiation.direction, learned.delithiation.index) == ("charge", 1)
    assert learned.capacity_mah == pytest.approx(c.moved_mah[0], rel=0.01)
    assert learned.c_rate == pytest.approx(0.1, rel=0.1)
    assert learned.r_ohm == pytest.approx(R_OHM, rel=0.1)
    x_empty = x_full - c.moved_mah[0] / (CAPACITY_AH * 1000.0)
    assert_branch_matches(learned.table[0], -1, x_empty, x_full)
    x_top = x_empty + sum(c.moved_mah[1:3]) / (CAPACITY_AH * 1000.0)
    assert_branch_matches(learned.table[1], +1, x_empty, x_top)


def test_charge_first_file_learns_the_same():
    c = empty_cell().rest(600).charge(0.1).rest(1800).discharge(0.1).rest(1800)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert not learned.provisional
    assert (learned.delithiation.direction, learned.delithiation.index) == ("charge", 0)
    assert (learned.lithiation.direction, learned.lithiation.index) == ("discharge", 1)
    assert learned.capacity_mah == pytest.approx(c.moved_mah[2], rel=0.01)
    x_empty = x_at(V_LO, -1)
    x_full = x_empty + sum(c.moved_mah[:2]) / (CAPACITY_AH * 1000.0)
    assert_branch_matches(learned.table[1], +1, x_empty, x_full)
    assert_branch_matches(learned.table[0], -1, x_full - c.moved_mah[2] / (CAPACITY_AH * 1000.0), x_full)


def test_a_charge_split_by_a_low_sample_a_pause_and_a_step_change_is_one_half():
    c = full_cell().discharge(0.1).rest(1800)
    c.cc(0.1 * CAPACITY_AH, V_HI, max_s=3 * 3600).rest(c.dt)  # one zero-current sample
    c.cc(0.1 * CAPACITY_AH, V_HI, max_s=2 * 3600).rest(300)  # a five-minute pause
    c.cc(0.2 * CAPACITY_AH, V_HI).cv(V_HI, CAPACITY_AH / 50).rest(1800)  # C/5, then CV
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert not learned.provisional
    charge = learned.delithiation
    assert charge.direction == "charge" and charge.v_from < V_LO + 0.05 and charge.v_to > V_HI - 0.01
    assert charge.charge_mah == pytest.approx(sum(c.moved_mah[1:]), rel=0.01)


def test_an_hppc_discharge_with_regen_pulses_is_one_half():
    """Discharge in C/5 steps of 10 %, each followed by a rest and a 10 s charge pulse at
    0.75C (five samples each): the pulses move 0.2 % of the charge each and do not end the
    discharge."""
    c = full_cell(dt=2.0).rest(600)
    net_mah = 0.0
    while c.rows[-1][1] > V_LO:
        c.cc(-0.2 * CAPACITY_AH, V_LO, max_s=1800)
        net_mah += c.moved_mah[-1]
        if c.rows[-1][1] <= V_LO:
            break
        c.rest(600).cc(0.75 * CAPACITY_AH, V_HI, max_s=10)
        net_mah -= c.moved_mah[-1]
        c.rest(600)
    c.rest(1800).charge(0.1).rest(1800)
    halves = find_halves(*c.arrays())
    assert [h.direction for h in halves] == ["discharge", "charge"]
    assert halves[0].v_from > V_HI - 0.05 and halves[0].v_to <= V_LO + 0.01
    assert halves[0].charge_mah == pytest.approx(net_mah, rel=0.01)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert not learned.provisional and learned.capacity_mah == pytest.approx(net_mah, rel=0.01)


def test_cv_tails_belong_to_their_half():
    c = empty_cell().charge(0.5).rest(600).discharge(0.5, cv=True).rest(600)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert c.moved_mah[1] > 0.02 * c.moved_mah[0]  # the charge's CV hold matters...
    assert learned.delithiation.charge_mah == pytest.approx(sum(c.moved_mah[:2]), rel=0.01)  # ...and is counted
    assert learned.capacity_mah == pytest.approx(c.moved_mah[2] + c.moved_mah[3], rel=0.01)
    assert learned.c_rate == pytest.approx(0.5, rel=0.1)  # the CC level: a CV tail weighs little


def test_first_cycle_irreversible_loss_is_not_capacity():
    c = empty_cell().charge(0.1, efficiency=0.9).rest(600).discharge(0.1).rest(600)
    c.charge(0.1).rest(600).discharge(0.1).rest(600)
    t, v, i = c.arrays()
    first_charge = find_halves(t, v, i)[0]
    learned = learn_ocv(t, v, i, V_LO, V_HI)
    reversible = c.moved_mah[2]
    assert first_charge.charge_mah == pytest.approx(c.moved_mah[0] / 0.9 + c.moved_mah[1], rel=0.01)
    assert learned.capacity_mah == pytest.approx(reversible, rel=0.01)
    assert learned.delithiation.index == 2  # the second charge, not the formation one
    assert any("first full cycle skipped" in note for note in learned.notes)


def test_prefers_the_slow_cycle_after_a_fast_one():
    c = full_cell().discharge(2.0).rest(600).charge(2.0).rest(600).discharge(0.1).rest(600).charge(0.1)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert (learned.lithiation.index, learned.delithiation.index) == (2, 3)
    assert learned.c_rate == pytest.approx(0.1, rel=0.1)
    assert learned.capacity_mah == pytest.approx(c.moved_mah[3], rel=0.01)
    assert not any("faster than C/2" in note for note in learned.notes)


def test_no_rate_loss_learned_where_the_resistance_explains_it():
    # The true cell here has no diffusion: a 1C discharge falls short of the C/10 one only
    # by what the resistance drop leaves at the cut-off, which the learner allows for.
    c = full_cell().discharge(0.1).rest(600).charge(0.1).rest(600).discharge(1.0).rest(600)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert c.moved_mah[-1] < c.moved_mah[0]
    assert learned.tau_diff_s < 2 * DEFAULT_TAU_S


def test_only_fast_cycles_refuse_or_give_a_provisional_curve():
    c = full_cell().discharge(3.0).rest(600).charge(3.0, cv=False).rest(600)
    t, v, i = c.arrays()
    with pytest.raises(ValueError, match=r"no full half at 2C or slower.*C/2 or slower is needed"):
        learn_ocv(t, v, i, V_LO, V_HI)
    learned = learn_ocv(t, v, i, V_LO, V_HI, fallback=True)
    assert learned.provisional and learned.lithiation is not None
    assert learned.c_rate == pytest.approx(3.0, rel=0.15)
    assert "no full half at 2C or slower" in learned.notes[0]


def test_a_tail_that_only_ends_at_v_min_is_not_full():
    c = Cycler(x_at(2.55, -1)).rest(600).cc(-0.1 * CAPACITY_AH, 2.0).rest(600)
    t, v, i = c.arrays()
    with pytest.raises(ValueError) as refused:
        learn_ocv(t, v, i, 2.0, 4.2)
    assert "deepest discharge (#0) covered 2.0" in str(refused.value) and "of 2.00-4.20 V" in str(refused.value)
    learned = learn_ocv(t, v, i, 2.0, 4.2, fallback=True)
    assert learned.provisional and learned.lithiation is None


def test_window_is_inferred_from_the_cutoffs():
    c = full_cell()
    for _ in range(3):
        c.discharge(0.2).rest(900).charge(0.2).rest(900)
    learned = learn_ocv(*c.arrays())
    assert learned.inferred == ("v_min", "v_max")
    assert learned.v_min == pytest.approx(V_LO, abs=0.01) and learned.v_max == pytest.approx(V_HI, abs=0.01)
    assert not learned.provisional and learned.notes == ()



def test_a_window_inferred_below_zero_volts_starts_at_the_floor():
    """A half-cell against lithium overshoots 0 V at its cut-off: the window starts just
    above it, with a note, and the file is learned rather than refused."""
    c = full_cell()
    for _ in range(3):
        c.discharge(0.2).rest(900).charge(0.2).rest(900)
    t, v, i = c.arrays()
    learned = learn_ocv(t, v - V_LO - 0.015, i)
    assert learned.v_min == V_WINDOW_FLOOR
    assert learned.v_max == pytest.approx(V_HI - V_LO - 0.015, abs=0.01)
    assert any("below 0.001 V: the window starts at 0.001 V" in note for note in learned.notes)
    assert learned.capacity_mah == pytest.approx(learn_ocv(t, v, i).capacity_mah, rel=0.01)



def test_a_cut_off_the_short_halves_all_stop_at_is_the_window_end():
    """A long first charge (formation), then a cell that has lost most of its capacity and
    runs 4.9 -> 3.5 V between its cut-offs: no discharge is long beside the first charge,
    but every one stops at 3.5 V, which is v_min; not where the first charge started."""
    first = Half(0, 1, 0, 100, 0.0, 10.0, 1.0, 1.60, 4.90)
    cycles = [Half(1 + 2 * n + j, sign, 0, 1, 0.0, 2.0 - 0.1 * n, 1.0, v_from, v_to)
              for n in range(5) for j, (sign, v_from, v_to) in enumerate(((-1, 4.90, 3.50 + 0.001 * n),
                                                                          (1, 3.50, 4.90)))]
    window = infer_window([first, *cycles], np.array([1.6, 4.9]))
    assert window.v_min == pytest.approx(3.502, abs=1e-9) and window.v_max == pytest.approx(4.90)
    assert any("where 5 of the 5 discharges stopped" in note for note in window.notes)


def test_no_full_cycle_gives_a_provisional_fallback_with_the_reason():
    c = Cycler(x_at(3.6, -1))
    for _ in range(3):
        c.cc(-0.2 * CAPACITY_AH, 3.2).rest(600).cc(0.2 * CAPACITY_AH, 3.9).rest(600)
    t, v, i = c.arrays()
    with pytest.raises(ValueError, match=r"no full half-cycle in the 2.50-4.20 V window.*deepest discharge"):
        learn_ocv(t, v, i, V_LO, V_HI)
    learned = learn_ocv(t, v, i, V_LO, V_HI, fallback=True)
    assert learned.provisional and np.isnan(learned.c_rate)
    assert "deepest discharge" in learned.notes[0] and "straight line" in learned.notes[1]
    np.testing.assert_allclose(learned.table, np.stack([np.linspace(V_LO, V_HI, soc_grid().size)] * 2))
    assert learned.capacity_mah == pytest.approx(max(c.moved_mah), rel=0.02)  # a lower bound


def test_one_full_direction_serves_both_branches():
    c = full_cell().rest(600).discharge(0.1).rest(600).cc(0.1 * CAPACITY_AH, V_HI, max_s=3 * 3600).rest(600)
    learned = learn_ocv(*c.arrays(), V_LO, V_HI)
    assert learned.lithiation is learned.delithiation and learned.lithiation.direction == "discharge"
    np.testing.assert_array_equal(learned.table[0], learned.table[1])
    assert any("serves as both branches" in note for note in learned.notes)


def test_repeated_timestamps_carry_no_charge():
    t, v, i = full_cell().discharge(0.2).rest(600).charge(0.2).rest(600).arrays()
    once = learn_ocv(t, v, i, V_LO, V_HI)
    twice = np.repeat(np.arange(t.size), np.where(np.arange(t.size) % 7 == 0, 2, 1))
    again = learn_ocv(t[twice], v[twice], i[twice], V_LO, V_HI)
    assert again.capacity_mah == pytest.approx(once.capacity_mah, rel=1e-9)


def test_full_means_both_ends_within_the_tolerance():
    assert END_TOLERANCE == pytest.approx(0.05)
    c = Cycler(x_at(V_HI - 0.12, -1)).rest(600).discharge(0.1).rest(600)  # starts 7 % of the span low
    with pytest.raises(ValueError, match="no full half-cycle"):
        learn_ocv(*c.arrays(), V_LO, V_HI)


def test_generic_cells_carry_no_hydride_degradation():
    cell = generic_params("x", 1000.0, V_LO, V_HI, np.stack([np.linspace(V_LO, V_HI, soc_grid().size)] * 2))
    assert cell.is_generic and cell.ps_rate == cell.crack_rate == cell.first_irreversible_mah_g == 0.0


# With the twin's own simulator: its model, hysteresis and noise.

SIM_V_MIN, SIM_V_MAX = 2.9, 4.2


def _sim_table() -> np.ndarray:
    """A layered-oxide-like curve with a small hysteresis: the simulator's truth."""
    z = soc_grid()
    delith = 3.0 + 1.1 * z - 0.25 * np.exp(-z / 0.04) + 0.12 * np.exp(-(1 - z) / 0.03) + 0.05 * np.sin(3 * z)
    return np.stack([delith - 0.02, delith])


@pytest.fixture(scope="module")
def archive():
    """A slow C/20 cycle, then 0.5C cycles: the whole file goes to learn_ocv."""
    true = generic_params("nmc-like", 2000.0, SIM_V_MIN, SIM_V_MAX, _sim_table(), r_ohm=0.04)
    protocol = (cc_cycles(0.05, 1, v_min=SIM_V_MIN, v_max=SIM_V_MAX)
                + cc_cycles(0.5, 3, start_half=2, v_min=SIM_V_MIN, v_max=SIM_V_MAX))
    sim = Simulation([true.with_(utilisation=0.97)], protocol, dt=10.0,
                     noise=SensorNoise(v_std=1e-3, i_std_frac=1e-3, i_offset_frac=5e-4), seed=7)
    blocks = list(sim.blocks(block_ticks=8192))
    names = ("v", "i", "soc", "capacity_mah", "step")
    cat = {name: np.concatenate([getattr(b, name)[0] for b in blocks]) for name in names}
    cat["t"] = np.concatenate([b.t for b in blocks])
    return cat


def _window(archive):
    """The true SOC at the ends of the slow cycle: a generic twin's SOC runs between them
    (0 and 1 are where the slow cycle met the window), so the truth is mapped the same way."""
    bottom = archive["soc"][archive["step"] == 0][-1]
    top = archive["soc"][archive["step"] == 1][-1]
    return bottom, top


def test_learned_curve_matches_the_simulators_truth(archive):
    learned = learn_ocv(archive["t"], archive["v"], archive["i"], SIM_V_MIN, SIM_V_MAX)
    assert learned.c_rate == pytest.approx(0.05, rel=0.1)  # the slow cycle, not the 0.5C ones
    bottom, top = _window(archive)
    assert learned.capacity_mah == pytest.approx(0.97 * 2000.0 * (top - bottom), rel=0.01)
    z_true = bottom + soc_grid() * (top - bottom)
    truth = np.stack([np.interp(z_true, soc_grid(), branch) for branch in _sim_table()])
    # The ends: knees steeper than a slow cycle resolves, and at the top of the discharge the
    # hysteresis still switching from the charge branch.
    inner = slice(5, 86)
    np.testing.assert_allclose(learned.table[:, inner], truth[:, inner], atol=0.015)


def test_tracks_soc_and_capacity_with_the_learned_curve(archive):
    learned = learn_ocv(archive["t"], archive["v"], archive["i"], SIM_V_MIN, SIM_V_MAX)
    cell = generic_params("A01", learned.capacity_mah, SIM_V_MIN, SIM_V_MAX, learned.table, r_ohm=learned.r_ohm)
    tr = est.new_tracker([cell], soc0=1.0, fresh=False)
    start = int(np.argmax(archive["step"] >= 2))
    soc = []
    for k in range(start, len(archive["t"])):
        soc.append(est.step(tr, archive["t"][k], archive["v"][k], archive["i"][k], 130.0).soc[0])
    bottom, top = _window(archive)
    err = np.array(soc) - (archive["soc"][start:] - bottom) / (top - bottom)
    assert np.sqrt(np.mean(err**2)) <= 0.02
    assert tr.capacity_mah[0] == pytest.approx(archive["capacity_mah"][-1] * (top - bottom), rel=0.02)
