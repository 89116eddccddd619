"""BioLogic EC-Lab / BT-Lab files: ``.mpt`` text exports and ``.mpr`` binaries.

An ``.mpt`` starts with ``EC-Lab ASCII FILE`` and ``Nb header lines : N``; line
N holds the tab-separated column names (``time/s``, ``Ewe/V``, ``<I>/mA``,
``cycle number``, ``Ns``), and numbers use the decimal comma when the PC's
locale did. ``Acquisition started on : MM/DD/YYYY HH:MM:SS[.fff]`` is the
start of elapsed time, in the PC's local zone (pass ``tz``). Current is
positive when the working electrode is oxidised, which is charge of a full
cell and delithiation of an anode half-cell: the wire's convention.

Some galvanostatic exports (GCPL, chronopotentiometry) record no measured
current, only ``control/V/mA``: the set point, a current in mA while the
channel is galvanostatic (``mode`` 1) or resting (3), a voltage while it is
potentiostatic (2). Such a file is read with the set point as its current and
its mode-2 rows rejected, and the report says so. The charge counters are
``Q charge/mA.h`` and ``Q discharge/mA.h``, else the signed
``Q charge/discharge/mA.h``, else the net ``(Q-Qo)/mA.h``; impedance rows
(``freq/Hz`` above 0) are no cycler samples and are rejected.

``.mpr`` binaries are decoded by galvani (GPL-3.0, installed as the optional
extra ``biologic``: ``pip install galvani``) into the same column names, then
normalised by the same code as the text export. A binary without a measured current
has each row's charge ``dq/mA.h``: its current is that over the row's interval, which
is what EC-Lab exports as ``<I>/mA`` and holds through constant-voltage steps too.
Without it, the binary's flags keep each row's control mode and its set point is read
as above, as no current at rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from .generic import ColumnMapping, override, with_mapping_options
from .model import Archive, MissingExtraError, ParseReport, UnsupportedFormatError
from .convert import numbers, parse_start
from .tabular import Layout, Options, normalise, pick, read_text, require
from .text import read_head, split_line
from .units import split_header

__all__ = ["sniff", "read_mpt", "read_mpr", "MPR_MAGIC"]

MPR_MAGIC = b"BIO-LOGIC MODULAR FILE"
_MAGIC = ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE")
_NB_HEADER = re.compile(r"Nb header lines\s*:\s*(\d+)")
_STARTED = re.compile(r"Acquisition started on\s*:\s*(.+)")
START_FORMATS = ("%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S.%f", "%d/%m/%Y %H:%M:%S")

# Column names as EC-Lab versions print them, with the unit each one is in.
_ALIASES: dict[str, dict[str, str]] = {
    "time": {"time/s": "s"},
    "voltage": {"Ewe/V": "V", "<Ewe>/V": "V", "<Ewe/V>": "V", "Ecell/V": "V", "<Ecell>/V": "V", "Ewe/mV": "mV"},
    "current": {"<I>/mA": "mA", "I/mA": "mA", "<I/mA>": "mA", "I/A": "A", "<I>/A": "A", "I/uA": "uA"},
    "cycle": {"cycle number": "1"},
    "step": {"Ns": "1"},
    "temperature": {
        "Temperature/°C": "degC", "Temperature/øC": "degC", "Temperature/C": "degC", "Temperature/K": "K",
    },
    "charge_capacity": {"Q charge/mA.h": "mA.h"},
    "discharge_capacity": {"Q discharge/mA.h": "mA.h"},
    "capacity": {"Q charge/discharge/mA.h": "mA.h"},
    "net_capacity": {"(Q-Qo)/mA.h": "mA.h", "(Q-Qo)/C": "C"},
    "frequency": {"freq/Hz": "Hz"},
}
# The set point column: mA while galvanostatic, V while potentiostatic (see the module doc).
CONTROL = "control/V/mA"
DQ = "dq/mA.h"  # the charge each row passed since the row before
MEAN_CURRENT = "<I>/mA"  # EC-Lab's name for the mean current over each row's interval: dq over it
_GALVANOSTATIC = ("galvanostatic", "chronopotentiometry")  # technique names whose set point is a current
_POTENTIOSTATIC_MODE = 2
_REST_MODE = 3


def sniff(lines: Sequence[str]) -> bool:
    """An EC-Lab text export names itself on its first line."""
    return bool(lines) and lines[0].strip() in _MAGIC


def _layout(header: Sequence[str], fmt: str, mapping: ColumnMapping, galvanostatic: bool = False) -> Layout:
    columns: dict[str, str] = {}
    units: dict[str, str] = {}
    for role, spellings in _ALIASES.items():
        found = pick(header, list(spellings))
        if found:
            columns[role] = found
            exact = {name.lower(): u for name, u in spellings.items()}
            unit = exact.get(found.lower()) or split_header(found)[1]
            if unit:
                units[role] = unit
    layout = Layout(fmt, columns, units, discharge_positive=False)
    layout.mean_current = columns.get("current", "").startswith("<")  # <I>: averaged over the interval
    if "current" not in columns and galvanostatic and CONTROL in header:
        columns["current"], units["current"] = CONTROL, "mA"
        if "mode" in header:
            columns["mode"] = "mode"
            layout.mode_exclusion = _potentiostatic_rows
    return override(layout, header, mapping)


def _mean_current(data: dict[str, np.ndarray]) -> np.ndarray:
    """mA: each row's charge over its interval, which holds through constant-voltage steps,
    where the set point is a voltage; the set point where the interval is unknown (the first
    row, a repeated time), and none where that is a voltage."""
    t = np.asarray(data["time/s"], dtype=float)
    dt = np.diff(t, prepend=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.asarray(data[DQ], dtype=float) * 3600.0 / dt
    set_point = np.asarray(data.get(CONTROL, np.full(t.size, np.nan)), dtype=float)
    set_point = np.where(data.get("mode", np.zeros(t.size)) == _POTENTIOSTATIC_MODE, np.nan, set_point)
    return np.where(dt > 0, mean, set_point)


def _potentiostatic_rows(mode: pa.ChunkedArray) -> tuple[np.ndarray, str]:
    """Rows whose set point is a voltage: no current can be read from them."""
    value, _ = numbers(mode, False)
    why = f"potentiostatic row: {CONTROL!r} holds a voltage here and no current is recorded"
    return value == _POTENTIOSTATIC_MODE, why


def _warn_set_point(layout: Layout, report: ParseReport, source: str) -> None:
    if layout.columns.get("current") == CONTROL:
        report.warn(
            f"the file records no measured current: the current is the set point {CONTROL!r}, as "
            f"{source} says" + ("" if "mode" in layout.columns else " (no 'mode' column to check it)")
        )


def _technique(lines: Sequence[str]) -> str:
    """The technique named below the header count (``Galvanostatic Cycling with Potential Limitation``)."""
    return next((line.strip() for line in lines[2:] if line.strip()), "")


def read_mpt(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read an EC-Lab ``.mpt`` text export."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    lines, encoding = read_head(path, max_lines=400, max_bytes=1 << 18)
    header_line = 1
    for line in lines[:5]:
        found = _NB_HEADER.search(line)
        if found:
            header_line = int(found.group(1))
    if header_line > len(lines) - 1:
        raise UnsupportedFormatError(f"{path}: header of {header_line} lines is longer than the file's head")
    header = split_line(lines[header_line - 1], "\t")
    if "time/s" not in header:
        raise UnsupportedFormatError(
            f"{path}: line {header_line} has no 'time/s' column; this EC-Lab export version is not supported"
        )
    start = None
    for line in lines[: header_line - 1]:
        found = _STARTED.search(line)
        if found:
            start = parse_start(found.group(1), START_FORMATS, options.tz)
    technique = _technique(lines[: header_line - 1])
    galvanostatic = any(word in technique.lower() for word in _GALVANOSTATIC)
    layout = _layout(header, "biologic mpt", mapping, galvanostatic)
    layout.start = start
    first = split_line(lines[header_line], "\t") if header_line < len(lines) else []
    layout.decimal_comma = any("," in f for f in first)
    report = ParseReport(source=str(path))
    if start is not None and options.tz is None:
        report.warn("'Acquisition started on' carries no time zone; read as UTC (give --tz Area/City; Python: tz=...)")
    _warn_set_point(layout, report, f"its {technique!r} technique")
    return read_text(
        path, header_line=header_line, delimiter="\t", encoding=encoding, header=header,
        layout=layout, options=options, report=report,
    )


def read_mpr(
    path: str | Path, *, mapping: ColumnMapping | None = None, options: Options | None = None
) -> Archive:
    """Read an EC-Lab ``.mpr`` binary through galvani."""
    try:
        from galvani import BioLogic
    except ImportError as exc:
        raise MissingExtraError(
            "reading BioLogic .mpr needs galvani (GPL-3.0): pip install 'celltwin[biologic]' "
            "or pip install galvani; or export the file as .mpt from EC-Lab"
        ) from exc
    path = Path(path)
    mapping = mapping or ColumnMapping()
    options = with_mapping_options(mapping, options or Options())
    mpr = BioLogic.MPRfile(str(path))
    data = {name: mpr.data[name] for name in mpr.data.dtype.names}
    if CONTROL in data and "mode" not in data and "flags" in data:
        # The binary keeps each row's control mode in its flags; at rest (mode 3) no current
        # flows, whatever set point the row carries (that of the step next to it).
        data["mode"] = np.asarray(mpr.get_flag("mode"))
        data[CONTROL] = np.where(data["mode"] == _REST_MODE, 0.0, data[CONTROL])
    from_dq = DQ in data and "time/s" in data and not any(name in data for name in _ALIASES["current"])
    if from_dq:
        data[MEAN_CURRENT] = _mean_current(data)
    header = list(data)
    layout = _layout(header, "biologic mpr", mapping, galvanostatic="mode" in data)
    require(layout, header)
    wanted = list(dict.fromkeys(layout.columns.values()))
    table = pa.table({name: data[name] for name in wanted})
    report = ParseReport(source=str(path))
    _warn_set_point(layout, report, "the binary's control mode of each row")
    if from_dq and layout.columns.get("current") == MEAN_CURRENT:
        report.warn(f"the file records no measured current: the current is each row's charge {DQ!r} over its "
                    f"interval, as EC-Lab exports {MEAN_CURRENT!r}")
    stamp = getattr(mpr, "timestamp", None)
    if stamp is not None:
        layout.start = parse_start(stamp.strftime("%Y-%m-%d %H:%M:%S.%f"), ("%Y-%m-%d %H:%M:%S.%f",), options.tz)
        if options.tz is None:
            report.warn("the .mpr start time carries no time zone; read as UTC (give --tz Area/City; Python: tz=...)")
    return normalise(table, layout, options, report)
