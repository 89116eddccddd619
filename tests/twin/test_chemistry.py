import pytest

from twin.chemistry import PHASES, Composition, hydrogenated_alloy, parse_composition, phase_capacity_mah_g


def test_composite_capacity_from_composition_matches_paper():
    c = hydrogenated_alloy(4, 80, 8)
    assert c.theoretical_capacity_mah_g == pytest.approx(1352, rel=0.01)
    assert c.fraction("MgH2") == pytest.approx(0.533, abs=0.002)
    assert c.fraction("Mg2NiH4") == pytest.approx(0.282, abs=0.002)
    assert c.fraction("Nd2H5") == pytest.approx(0.186, abs=0.002)


def test_pure_phases():
    assert Composition({"MgH2": 1}).theoretical_capacity_mah_g == pytest.approx(2038, rel=0.005)
    assert phase_capacity_mah_g(PHASES["Mg2NiH4"]) == pytest.approx(963, rel=0.005)
    assert PHASES["MgH2"].volume_change == pytest.approx(0.89, abs=0.02)
    assert PHASES["Mg2NiH4"].volume_change == pytest.approx(0.65, abs=0.02)
    assert PHASES["Nd2H5"].volume_change == 0.0


def test_lithium_uptake_is_two_per_mgh2_and_four_per_mg2nih4():
    mg = Composition({"MgH2": 1}).lithium_uptake_mol_g
    assert mg == pytest.approx(2 / PHASES["MgH2"].molar_mass)
    mix = Composition({"MgH2": 0.5, "Mg2NiH4": 0.5}).lithium_uptake_mol_g
    assert mix == pytest.approx(0.5 * 2 / PHASES["MgH2"].molar_mass + 0.5 * 4 / PHASES["Mg2NiH4"].molar_mass)


def test_framework_dilutes_capacity_linearly():
    a = Composition({"MgH2": 0.8, "Nd2H5": 0.2}).theoretical_capacity_mah_g
    assert a == pytest.approx(0.8 * phase_capacity_mah_g(PHASES["MgH2"]))


def test_parse_composition_normalises_and_rejects_nonsense():
    c = parse_composition("MgH2=53, Mg2NiH4=28, Nd2H5=19")
    assert sum(c.fractions.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown phase"):
        parse_composition("LiH=1")
    with pytest.raises(ValueError, match="PHASE=FRACTION"):
        parse_composition("MgH2")
    with pytest.raises(ValueError, match="active phase"):
        parse_composition("Nd2H5=1")
    with pytest.raises(ValueError, match=">= 0"):
        parse_composition("MgH2=-1,Nd2H5=2")
