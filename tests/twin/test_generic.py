"""Generic mode: a cell of another chemistry, OCV learned from its first slow cycle."""

import numpy as np
import pytest

from twin import estimator as est
from twin.generic import generic_params, learn_ocv, soc_grid
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation

V_MIN, V_MAX = 2.9, 4.2


def _true_table() -> np.ndarray:
    """A layered-oxide-like curve with a small hysteresis: the simulator's truth."""
    z = soc_grid()
    delith = 3.0 + 1.1 * z - 0.25 * np.exp(-z / 0.04) + 0.12 * np.exp(-(1 - z) / 0.03) + 0.05 * np.sin(3 * z)
    return np.stack([delith - 0.02, delith])


@pytest.fixture(scope="module")
def archive():
    true = generic_params("nmc-like", 2000.0, V_MIN, V_MAX, _true_table(), r_ohm=0.04)
    protocol = cc_cycles(0.05, 1, v_min=V_MIN, v_max=V_MAX) + cc_cycles(0.5, 3, start_half=2, v_min=V_MIN, v_max=V_MAX)
    sim = Simulation([true.with_(utilisation=0.97)], protocol, dt=10.0,
                     noise=SensorNoise(v_std=1e-3, i_std_frac=1e-3, i_offset_frac=5e-4), seed=7)
    blocks = list(sim.blocks(block_ticks=8192))
    cat = {name: np.concatenate([getattr(b, name)[0] for b in blocks]) for name in ("v", "i", "soc", "capacity_mah", "step")}
    cat["t"] = np.concatenate([b.t for b in blocks])
    return cat


def _window(archive):
    """The true SOC at the ends of the slow cycle: a generic twin's SOC runs between them
    (0 and 1 are where the slow cycle met the window), so the truth is mapped the same way."""
    bottom = archive["soc"][archive["step"] == 0][-1]
    top = archive["soc"][archive["step"] == 1][-1]
    return bottom, top


def test_learned_curve_matches_the_truth(archive):
    slow = archive["step"] < 2
    learned = learn_ocv(archive["t"][slow], archive["v"][slow], archive["i"][slow], V_MIN, V_MAX)
    bottom, top = _window(archive)
    assert learned.capacity_mah == pytest.approx(0.97 * 2000.0 * (top - bottom), rel=0.01)
    z_true = bottom + soc_grid() * (top - bottom)
    truth = np.stack([np.interp(z_true, soc_grid(), branch) for branch in _true_table()])
    # The ends: knees steeper than a slow cycle resolves, and at the top of the discharge the
    # hysteresis still switching from the charge branch.
    inner = slice(5, 86)
    np.testing.assert_allclose(learned.table[:, inner], truth[:, inner], atol=0.015)


def test_tracks_soc_and_capacity_with_the_learned_curve(archive):
    slow = archive["step"] < 2
    learned = learn_ocv(archive["t"][slow], archive["v"][slow], archive["i"][slow], V_MIN, V_MAX)
    cell = generic_params("A01", learned.capacity_mah, V_MIN, V_MAX, learned.table, r_ohm=learned.r_ohm)
    tr = est.new_tracker([cell], soc0=1.0, fresh=False)
    start = int(np.argmax(~slow))
    soc = []
    for k in range(start, len(archive["t"])):
        soc.append(est.step(tr, archive["t"][k], archive["v"][k], archive["i"][k], 130.0).soc[0])
    bottom, top = _window(archive)
    err = np.array(soc) - (archive["soc"][start:] - bottom) / (top - bottom)
    assert np.sqrt(np.mean(err**2)) <= 0.02
    assert tr.capacity_mah[0] == pytest.approx(archive["capacity_mah"][-1] * (top - bottom), rel=0.02)


def test_no_slow_cycle_is_a_clear_error():
    t = np.arange(100.0)
    with pytest.raises(ValueError, match="no full slow cycle"):
        learn_ocv(t, np.full(100, 3.7), np.full(100, -1.0), V_MIN, V_MAX)
