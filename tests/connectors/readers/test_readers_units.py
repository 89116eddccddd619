"""Units as headers state them: brackets, slashes and underscore suffixes; charge counters in mAh."""

from __future__ import annotations

import pytest

from connectors.readers import AmbiguousUnitError
from connectors.readers.units import conversion, epoch_conversion, split_header


@pytest.mark.parametrize(
    ("header", "base", "unit"),
    [
        ("Voltage_V", "Voltage", "V"),
        ("Current_mA", "Current", "mA"),
        ("Test_Time_s", "Test_Time", "s"),
        ("Cell_Temperature_C", "Cell_Temperature", "C"),
        ("Charge_Capacity_Ah", "Charge_Capacity", "Ah"),
        ("charging_capacity_ampere_hour", "charging_capacity", "ampere_hour"),
        ("Test (Min)", "Test", "Min"),
        ("Capacity(mAh)", "Capacity", "mAh"),
        ("Q charge/mA.h", "Q charge", "mA.h"),
        ("Cycle_Index", "Cycle_Index", None),  # "Index" is no unit
        ("Test_Time", "Test_Time", None),
        ("Power_W", "Power_W", None),  # a unit no quantity here uses stays in the name
        ("Amp-hr", "Amp-hr", None),
        ("Total Time, S", "Total Time", "S"),  # Bitrode: after a comma
        ("Temperature A1, °C", "Temperature A1", "°C"),
        ("Watt-Hours, WH", "Watt-Hours, WH", None),
    ],
)
def test_split_header(header: str, base: str, unit: str | None) -> None:
    assert split_header(header) == (base, unit)


@pytest.mark.parametrize(("unit", "scale"), [("Ah", 1e3), ("mAh", 1.0), ("mA.h", 1.0), ("A.h", 1e3),
                                             ("uAh", 1e-3), ("C", 1 / 3.6), ("ampere_hour", 1e3)])
def test_charge_counters_are_read_in_mah(unit: str, scale: float) -> None:
    assert conversion("charge", unit, "Q") == (pytest.approx(scale), 0.0)


def test_time_units_and_date_numbers() -> None:
    assert conversion("time", "Min", "Test (Min)") == (60.0, 0.0)
    assert epoch_conversion("ms", "t") == (1e-3, 0.0)
    scale, offset = epoch_conversion("datenum", "Datenum_d")
    assert 738887.5 * scale + offset == pytest.approx(1672574400.0)  # 2023-01-01 12:00
    scale, offset = epoch_conversion("serial date", "DateTime")
    assert 44927.5 * scale + offset == pytest.approx(1672574400.0)  # Excel / OLE serial date of the same
    with pytest.raises(AmbiguousUnitError, match="'kAh' is not a known charge unit"):
        conversion("charge", "kAh", "Q (kAh)")
