import pytest

from twin.protocol import gitt, parse_step, rate_ladder


def test_lab_words():
    s = parse_step("Discharge at 0.1C until 0.3 V")
    assert (s.c_rate, s.until_v, s.duration_s) == (-0.1, 0.3, None)
    assert parse_step("Charge at 2C until 1.0 V").c_rate == 2.0
    assert parse_step("Rest for 10 minutes").duration_s == 600
    pulse = parse_step("Discharge at 0.1C for 10 minutes or until 0.3 V")
    assert (pulse.duration_s, pulse.until_v) == (600, 0.3)


@pytest.mark.parametrize("bad", ["Discharge until 0.3 V", "Rest", "Jump at 1C", "Rest for 3 fortnights"])
def test_bad_steps_say_what_is_expected(bad):
    with pytest.raises(ValueError):
        parse_step(bad)


def test_ladder_and_gitt_structure():
    ladder = rate_ladder(2)
    assert [abs(s.c_rate) for s in ladder[::4]] == [0.1, 0.2, 0.5, 1.0, 2.0, 0.5]
    assert len({s.half for s in ladder}) == len(ladder)
    g = gitt(pulses=3)
    assert {s.half for s in g} == {0, 1}
    assert all(s.skip_to == 6 for s in g[:6] if not s.is_rest)
