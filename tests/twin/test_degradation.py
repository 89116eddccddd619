"""Rate dependence of the ageing laws, mechanism by mechanism."""

import numpy as np
import pytest

from twin import degradation as deg
from twin.params import preset, stack_params


def _psi_after_one_lithiation(name: str, c_rate: float) -> float:
    p = stack_params([preset(name)])
    new = deg.age_half_cycle(p, deg.fresh(p), np.array([True]), np.array([0.8]), np.array([c_rate]))
    return float(new.psi[0])


def test_free_crystallites_segregate_per_swing_confined_ones_need_time():
    # Free MgH2 crystallites segregate with every volume swing, whatever the rate.
    assert _psi_after_one_lithiation("mgh2", 1.0) == pytest.approx(_psi_after_one_lithiation("mgh2", 0.1))
    # In the framework the Mg only ripens by diffusion: at 1C a tenth of the time, and the
    # cube root of it (Lifshitz-Slyozov-Wagner) of the segregation per lithiation.
    ratio = _psi_after_one_lithiation("nd4mg80ni8", 1.0) / _psi_after_one_lithiation("nd4mg80ni8", 0.1)
    assert ratio == pytest.approx(0.1 ** (1 / 3), rel=0.03)
    # A rest-like half (C/1000) does not make the factor blow up.
    assert deg.ripening_factor(np.array([1e-3]))[0] == pytest.approx(deg.ripening_factor(np.array([0.01]))[0])
