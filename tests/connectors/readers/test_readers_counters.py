"""The cycler's charge counters: one per direction, one shared, or a net one, as two counters in mAh."""

from __future__ import annotations

import numpy as np

from connectors.readers.counters import outranked, split

DIRECTION = np.array([-1, -1, 0, 1, 1])


def test_a_counter_per_direction_is_taken_as_it_is() -> None:
    charge, discharge = np.array([0, 0, 0, 1.0, 2.0]), np.array([0, 1.0, 1.0, 1.0, 1.0])
    got = split({"charge_capacity": charge, "discharge_capacity": discharge}, DIRECTION)
    assert got[0] is charge and got[1] is discharge
    assert split({"discharge_capacity": discharge}, DIRECTION) == (None, discharge)


def test_a_shared_magnitude_goes_to_the_direction_of_its_row() -> None:
    charge, discharge = split({"capacity": np.array([0.5, 1.0, 0.0, 0.5, np.nan])}, DIRECTION)
    np.testing.assert_allclose(charge, [0, 0, 0, 0.5, np.nan])
    np.testing.assert_allclose(discharge, [0.5, 1.0, 0, 0, np.nan])


def test_a_signed_shared_counter_goes_by_its_sign() -> None:
    # Signed like BioLogic's Q charge/discharge: a rest keeps the value, the direction does not matter.
    charge, discharge = split({"capacity": np.array([-0.5, -1.0, -1.0, 0.5, 1.0])}, np.zeros(5))
    np.testing.assert_allclose(charge, [0, 0, 0, 0.5, 1.0])
    np.testing.assert_allclose(discharge, [0.5, 1.0, 1.0, 0, 0])


def test_a_net_counter_counts_its_rises_as_charge_and_its_falls_as_discharge() -> None:
    charge, discharge = split({"net_capacity": np.array([5.0, 4.0, np.nan, 4.5, 6.0])}, DIRECTION)
    np.testing.assert_allclose(charge, [0, 0, np.nan, 0.5, 2.0])
    np.testing.assert_allclose(discharge, [0, 1.0, np.nan, 1.0, 1.0])


def test_the_most_direct_counters_win() -> None:
    every = {"charge_capacity", "discharge_capacity", "capacity", "net_capacity"}
    assert outranked(every) == {"capacity", "net_capacity"}
    assert outranked({"capacity", "net_capacity"}) == {"net_capacity"}
    assert outranked({"net_capacity"}) == set()
    assert split({}, DIRECTION) == (None, None)
