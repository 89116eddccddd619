"""The cycler's own charge counters, read into two running counters in mAh.

Cyclers count the charge they pass, and validating the twin against those
counts avoids re-integrating a current that was sampled coarsely. Files carry
the counts in one of three shapes; all become ``charge_mah`` and
``discharge_mah`` of a :class:`~.model.CellRecord`:

* ``charge_capacity`` + ``discharge_capacity``: a counter per direction (Arbin
  ``Charge_Capacity(Ah)``/``Discharge_Capacity(Ah)``, BioLogic ``Q charge/mA.h``
  /``Q discharge/mA.h``, BDF, battery-data-hub, BatteryArchive), taken as they are;
* ``capacity``: one counter for whichever direction the row is in (Maccor
  ``Amp-hr``, Neware ``Capacity(mAh)``, Landt ``Capacity/mAh``, BioLogic's
  signed ``Q charge/discharge/mA.h``). A magnitude goes to the counter of the
  row's direction (its step label, else the sign of its current) and the
  other counter reads 0 on that row; a signed value goes by its sign;
* ``net_capacity``: a net counter (BioLogic ``(Q-Qo)/mA.h``): its rises are
  summed as charge, its falls as discharge.

Resets stay where the file has them (a counter that restarts at 0 on every
step or cycle still does), so a consumer derives per-half-cycle capacities
from increments and treats a drop as a reset.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COUNTER_ROLES", "outranked", "split"]

COUNTER_ROLES = ("charge_capacity", "discharge_capacity", "capacity", "net_capacity")


def outranked(roles: set[str]) -> set[str]:
    """Counter roles to ignore when a more direct one is present: per-direction, then shared, then net."""
    if roles & {"charge_capacity", "discharge_capacity"}:
        return roles & {"capacity", "net_capacity"}
    if "capacity" in roles:
        return roles & {"net_capacity"}
    return set()


def split(
    counters: dict[str, np.ndarray], direction: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(charge_mah, discharge_mah) of one cell from its counter columns, already in mAh.

    ``direction`` is +1 on charge rows, -1 on discharge rows and 0 otherwise.
    Signed counters must already follow the wire's sign (charge positive).
    """
    if "charge_capacity" in counters or "discharge_capacity" in counters:
        return counters.get("charge_capacity"), counters.get("discharge_capacity")
    if "capacity" in counters:
        value = counters["capacity"]
        if np.any(value < 0):  # signed: the sign is the direction
            return _keep(value, value >= 0), _keep(-value, value <= 0)
        return _keep(value, direction > 0), _keep(value, direction < 0)
    if "net_capacity" in counters:
        value = counters["net_capacity"]
        missing = np.isnan(value)
        last_read = value[np.maximum.accumulate(np.where(missing, 0, np.arange(value.size)))]
        step = np.nan_to_num(np.diff(last_read, prepend=last_read[:1]))  # across a missing reading
        charge = np.cumsum(np.maximum(step, 0.0))
        discharge = np.cumsum(np.maximum(-step, 0.0))
        return np.where(missing, np.nan, charge), np.where(missing, np.nan, discharge)
    return None, None


def _keep(value: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``value`` on ``rows``, 0 elsewhere; a missing reading stays NaN."""
    return np.where(rows, np.abs(value), np.where(np.isnan(value), np.nan, 0.0))
