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


def test_pure_mg2nih4(fig):
    # Pure Mg2NiH4 at 0.5C (1C = 960 mA/g): 652 mAh/g after 75 cycles, 92 % retention,
    # well below its theoretical 963 mAh/g.
    assert fig["Mg2NiH4 discharge cycle 75 at 0.5C (mAh/g)"] == pytest.approx(652, rel=0.05)
    assert fig["Mg2NiH4 at 0.5C: cycle 75 over first charge"] == pytest.approx(0.92, abs=0.02)


def test_only_mg2nih4_without_the_framework_is_partly_out_of_reach():
    composite, mgh2, ni = preset("nd4mg80ni8"), preset("mgh2"), preset("Mg2NiH4=1")
    # The framework reaches all of it: the composite and MgH2 keep their whole capacity.
    assert composite.capacity_mah == pytest.approx(composite.theoretical_mah * composite.utilisation)
    assert mgh2.capacity_mah == pytest.approx(mgh2.theoretical_mah * mgh2.utilisation)
    assert ni.capacity_mah < 0.85 * ni.theoretical_mah
    # A mixture is the same law, not a refit: half the composite's framework, half the loss.
    framework = composite.composition.fraction("Nd2H5")
    half = preset(f"Mg2NiH4={1 - framework / 2},Nd2H5={framework / 2}")
    assert half.ni_access == pytest.approx(0.5 * (1 + ni.ni_access))
    # What is out of reach holds no plateau: the SOC range is all reachable Mg2NiH4.
    assert ni.ni_share == pytest.approx(1.0)
    mix = preset("MgH2=0.5,Mg2NiH4=0.5")
    assert mix.ni_share < mix.composition.capacity_shares()["Mg2NiH4"]


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
