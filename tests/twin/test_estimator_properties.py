"""Bad input never corrupts the estimator state (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin import estimator as est
from twin.params import preset

_CELL = preset("nd4mg80ni8")
_ANY = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(np.nan), st.just(np.inf), st.just(-np.inf))


def _warm(n: int = 3) -> est.Tracker:
    tr = est.new_tracker([_CELL] * n, soc0=0.8)
    for k in range(20):
        est.step(tr, 100.0 + k, 0.41, -2e-4)
    return tr


@settings(max_examples=200, deadline=None)
@given(t=st.lists(_ANY, min_size=3, max_size=3), v=st.lists(_ANY, min_size=3, max_size=3),
       i=st.lists(_ANY, min_size=3, max_size=3), temp=st.lists(_ANY, min_size=3, max_size=3))
def test_any_sample_leaves_a_finite_state_and_skips_are_flagged(t, v, i, temp):
    tr = _warm()
    x0, p0 = tr.x.copy(), tr.P.copy()
    with np.errstate(all="ignore"):
        out = est.step(tr, np.array(t), np.array(v), np.array(i), np.array(temp))
    assert np.all(np.isfinite(tr.x)) and np.all(np.isfinite(tr.P))
    skipped = (out.flags & (est.FLAG_NONFINITE | est.FLAG_TIME | est.FLAG_IMPLAUSIBLE)) != 0
    np.testing.assert_array_equal(tr.x[skipped], x0[skipped])
    np.testing.assert_array_equal(tr.P[skipped], p0[skipped])
    # A skipped sample is always flagged: nothing is dropped silently.
    with np.errstate(invalid="ignore"):
        plausible = (np.abs(i) <= 20 * _CELL.one_c_ma / 1000) & (np.array(temp) >= -50) & (np.array(temp) <= 250)
    usable = np.isfinite(t) & np.isfinite(v) & np.isfinite(i) & np.isfinite(temp) & (np.array(t) > 119.0) & plausible
    assert np.all(skipped == ~usable)
    # The covariance stays a covariance.
    assert np.all(np.linalg.eigvalsh(tr.P) > -1e-12)


@settings(max_examples=100, deadline=None)
@given(dt=st.floats(min_value=-1e6, max_value=0.0), v=st.floats(0.0, 2.0))
def test_time_going_backwards_is_skipped(dt, v):
    tr = _warm(1)
    x0 = tr.x.copy()
    out = est.step(tr, 119.0 + dt, v, -2e-4)
    assert out.flags[0] & est.FLAG_TIME
    np.testing.assert_array_equal(tr.x, x0)


@pytest.mark.parametrize("shape", [(2,), (4,), (3, 1)])
def test_wrong_shapes_raise_a_clear_error(shape):
    tr = _warm()
    with pytest.raises(ValueError, match="shape"):
        est.step(tr, np.zeros(shape), 0.4, -2e-4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_noisy_gappy_spiky_stream_never_diverges(seed):
    from twin.protocol import cc_cycles
    from twin.simulator import Faults, Simulation

    faults = Faults(dropout_prob=0.05, spike_prob=0.01)
    # Long enough to meet a knee: a 2C cycle of a fresh cell is over in a few samples.
    sim = Simulation([_CELL], cc_cycles(0.5, 1), dt=20.0, faults=faults, seed=seed)
    tr = est.new_tracker([_CELL])
    for b in sim.blocks():
        for k in range(b.t.size):
            est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k])
            assert np.all(np.isfinite(tr.x))
    assert -0.05 <= tr.x[0, 0] <= 1.05
    assert np.sqrt(tr.P[0, 0, 0]) < 0.2
