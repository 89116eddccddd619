"""The calibrated presets against the published cycling figures (CHEMISTRY.md)."""

import pytest

from twin import calibration
from twin.params import CALIBRATION, preset
from twin.protocol import cc_cycles
from twin.simulator import simulate_cycles


@pytest.fixture(scope="module")
def fig():
    values = calibration.predict([CALIBRATION])[0]
    return dict(zip((t.name for t in calibration.TARGETS), values))


def test_composite_first_cycle(fig):
    assert fig["composite first discharge 0.1C (mAh/g)"] == pytest.approx(1440, rel=0.05)
    assert fig["composite first charge 0.1C (mAh/g)"] == pytest.approx(1392, rel=0.05)
    assert fig["composite ICE 0.1C"] == pytest.approx(0.922, abs=0.015)


def test_composite_long_cycling(fig):
    assert fig["composite discharge cycle 100 at 0.1C (mAh/g)"] == pytest.approx(1191, rel=0.05)


def test_composite_rate_ladder(fig):
    assert fig["composite ladder 1C (mAh/g)"] == pytest.approx(1110, rel=0.07)
    assert fig["composite ladder 2C (mAh/g)"] == pytest.approx(694, rel=0.10)
    assert fig["composite ladder back at 0.5C (mAh/g)"] == pytest.approx(1160, rel=0.07)


def test_mgh2(fig):
    assert fig["MgH2 ICE 0.1C"] == pytest.approx(0.764, abs=0.02)
    assert fig["MgH2 discharge cycle 18 at 0.1C (mAh/g)"] < 300
    assert fig["MgH2 ladder 2C (mAh/g)"] == pytest.approx(93, rel=0.30)


def test_activation_at_1c():
    truth = simulate_cycles([preset("nd4mg80ni8")], cc_cycles(1.0, 8), dt=10.0)
    dis = {x.cycle: x.capacity_mah_g for x in truth if x.half == "discharge"}
    # After the first (irreversible) lithiation, capacity rises for several cycles.
    assert dis[2] < dis[3] < dis[4] < dis[5]
    assert dis[6] - dis[2] > 0.02 * dis[2]


def test_other_mixtures_are_the_same_model():
    mix = preset("MgH2=0.6,Nd2H5=0.4")
    ni = preset("Mg2NiH4=1")
    assert mix.composition.theoretical_capacity_mah_g == pytest.approx(0.6 * 2036.5, rel=0.001)
    assert ni.one_c_ma_g == 960.0
    truth = simulate_cycles([mix, ni], cc_cycles(0.1, 2), dt=120.0)
    assert {x.cell for x in truth} == {0, 1}
    assert all(x.capacity_mah_g > 0 for x in truth)
