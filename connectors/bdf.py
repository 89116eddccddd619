"""Files in the formats labs share: Battery Data Format time series, battdat cycle statistics.

Battery Data Format (BDF, battery-data-alliance/battery-data-format README): one cell
per file, a header row of preferred labels (``Test Time / s``, ``Voltage / V``,
``Current / A``, ...) with units fixed by the label, current positive on charge (the
wire's convention, so nothing is flipped). The labels are the readers' own
(:data:`connectors.readers.generic.BDF_COLUMNS`), so what is written here reads back
without a mapping. Files are named ``CELL.bdf.csv`` (BDF: "supplemented with a .bdf
prefix" when another extension is needed).

Cycle statistics use the column names and units of battdat's ``CycleLevelData``
(ROVI-org/battery-data-toolkit, ``battdat/schemas/column.py``): ``cycle_number``,
``cycle_start`` and ``cycle_duration`` in s, ``capacity_discharge`` and
``capacity_charge`` in A-hr, ``coulomb_efficiency``. The metadata file holds
battdat's ``BatteryMetadata`` fields (``name``, ``comments``, ``source``; battdat
allows extra fields) and, per column of each table, its label, machine-readable
name, BDF IRI and unit.

Writers only: what goes into the columns is the caller's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.readers.generic import BDF_COLUMNS

__all__ = [
    "BDF_TIME", "BDF_UNIX_TIME", "BDF_VOLTAGE", "BDF_CURRENT", "BDF_CYCLE", "BDF_TEMPERATURE",
    "CYCLE_STATS_UNITS", "bdf_name", "write_csv", "write_metadata",
]

BDF_TIME = BDF_COLUMNS["time"][0]  # "Test Time / s"
BDF_UNIX_TIME = BDF_COLUMNS["timestamp"][0]  # "Unix Time / s"
BDF_VOLTAGE = BDF_COLUMNS["voltage"][0]  # "Voltage / V"
BDF_CURRENT = BDF_COLUMNS["current"][0]  # "Current / A"
BDF_CYCLE = BDF_COLUMNS["cycle"][0]  # "Cycle Count / 1"
BDF_TEMPERATURE = BDF_COLUMNS["temperature"][0]  # "Surface Temperature T1 / degC"

_BDF_IRI = "https://w3id.org/battery-data-alliance/ontology/battery-data-format#"

# battdat CycleLevelData: column -> unit (None: a count or a ratio).
CYCLE_STATS_UNITS: dict[str, str | None] = {
    "cycle_number": None,
    "cycle_start": "s",
    "cycle_duration": "s",
    "capacity_discharge": "A-hr",
    "capacity_charge": "A-hr",
    "coulomb_efficiency": None,  # charge / discharge of the cycle, a fraction
}


def bdf_name(label: str) -> str:
    """The machine-readable name of a BDF preferred label (``Voltage / V`` -> ``voltage_volt``)."""
    for names in BDF_COLUMNS.values():
        if label == names[0]:
            return names[1]
    raise KeyError(f"{label!r} is not a BDF label this project knows")


def write_csv(path: Path, columns: Mapping[str, np.ndarray]) -> Path:
    """A CSV of ``columns`` (header -> values) in column order; NaN as an empty field.

    Floats are printed with every digit (pyarrow's shortest round-trip form), so a value
    read back is the value written. The header row is written unquoted, as BDF shows it.
    """
    arrays = {name: pa.array(np.asarray(values), from_pandas=True) for name, values in columns.items()}
    table = pa.table(arrays)
    with path.open("wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return path


def write_metadata(path: Path, *, cell: str, comments: str, extra: Mapping[str, Any],
                   tables: Mapping[str, list[str]]) -> Path:
    """The metadata of one cell's files: battdat ``BatteryMetadata`` fields, then, per table
    file, each column's label, name, IRI (BDF labels) and unit."""

    def describe(column: str) -> dict[str, Any]:
        if column in CYCLE_STATS_UNITS:
            return {"name": column, "units": CYCLE_STATS_UNITS[column]}
        name = bdf_name(column)
        return {"titles": column, "name": name, "propertyUrl": _BDF_IRI + name,
                "units": column.rpartition(" / ")[2]}

    document = {
        "name": cell,
        "comments": comments,
        "source": "celltwin",
        **extra,
        "tables": [{"url": url, "columns": [describe(c) for c in cols]} for url, cols in tables.items()],
    }
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path
