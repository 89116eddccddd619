import numpy as np
import pytest

from twin.model import E_DELITH_MG2NIH4, E_DELITH_MGH2, ocv, ocv_branches, temperature_factor


def test_plateaus_follow_the_cv_peaks():
    z = np.linspace(0.05, 0.95, 181)
    e_l, e_d, _, _ = ocv_branches(z, np.full_like(z, 0.2))
    assert np.median(e_l) == pytest.approx(0.42, abs=0.02)
    # Delithiation: MgH2 re-forms first (low SOC), then Mg2NiH4.
    assert np.median(e_d[z < 0.75]) == pytest.approx(E_DELITH_MGH2, abs=0.02)
    assert np.median(e_d[z > 0.85]) == pytest.approx(E_DELITH_MG2NIH4, abs=0.03)
    hysteresis = e_d - e_l
    assert 0.12 < hysteresis.min() and hysteresis.max() < 0.3


def test_window_ends_are_reached_at_the_soc_ends():
    e_l, _, _, _ = ocv_branches(np.array([0.0]), np.array([0.2]))
    _, e_d, _, _ = ocv_branches(np.array([1.0]), np.array([0.2]))
    assert e_l[0] < 0.3 and e_d[0] > 1.0


def test_ocv_derivative_matches_finite_difference():
    z = np.linspace(0.02, 0.98, 50)
    share = np.full_like(z, 0.2)
    for h in (-1.0, 0.3, 1.0):
        e, de, _ = ocv(z, h, share)
        e2, _, _ = ocv(z + 1e-7, h, share)
        np.testing.assert_allclose(de, (e2 - e) / 1e-7, rtol=1e-4, atol=1e-6)


def test_libh4_transition_jumps_resistance():
    assert temperature_factor(130.0) == pytest.approx(1.0)
    assert 1.0 < temperature_factor(120.0) < 3.0
    assert temperature_factor(95.0) > 30.0
