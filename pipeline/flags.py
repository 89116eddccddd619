"""The flags several commands share: one name, one help text, one parser each.

A flag that means the same thing in `run`, `simulate`, `produce` and `replay` reads the
same in each `--help` (tests/pipeline/test_flags.py holds them to it); a command adds
its own default after the shared text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from connectors import replay_source
from connectors.readers import FORMATS, ColumnMapping, load_mapping
from connectors.readers.tabular import ROLES

PRESET = "Electrode preset: nd4mg80ni8 (the composite) or mgh2."
MIXED_CELLS = " Or mixed: the two in turn, cell by cell."
COMPOSITION = 'Phase mass fractions instead of a preset, e.g. "MgH2=0.53,Mg2NiH4=0.28,Nd2H5=0.19".'
SPEED = "Pacing, sample time per wall time: 1 = as recorded (live), 60 = a minute per second, max = unpaced."
START = "Start time: ISO time (e.g. 2026-03-01T09:00, zone: --tz, else UTC) or epoch seconds."
MASS_MG = "Hydride mass per cell, mg: the whole hydrogenated alloy (with an inert framework), not the composite."
DT = "Sampling interval, s."
REST = ("Minutes of rest after each half-cycle, as cycler schedules have (the steps into rest give "
        "the measured pulse resistance).")
SEED = "Random seed (cell-to-cell spread and sensor noise)."
NOISE = "Add cycler sensor noise."
REPORT = "Build report.html in the output folder at the end."
CONFIG = "TOML file: settings, and cells.ID tables of cell metadata."
# How cycler files are read (replay, watch): see connectors/readers.
MAP = f"Column of a role, repeatable: --map current='Current(mA)'. Roles: {', '.join(ROLES)}."
MAPPING = "Mapping TOML file with columns, units and options tables."
UNIT = "Unit of a role when the header lacks or misstates it, repeatable: --unit current=mA."
FORMAT = f"Reader: {', '.join(FORMATS)} (default: detected)."
TZ = "Time zone of timestamps printed without one, e.g. Europe/Berlin (default: UTC)."
DISCHARGE = ("The file's current sign, when it has no step labels (default: vendor convention, else "
             "detected from the voltage).")

# The reader flags of the commands that read cycler files (replay, watch), declared once;
# `read_options` turns their values into the readers' arguments.
MapFlag = Annotated[Optional[list[str]], typer.Option("--map", help=MAP)]
MappingFlag = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help=MAPPING)]
UnitFlag = Annotated[Optional[list[str]], typer.Option("--unit", help=UNIT)]
FormatFlag = Annotated[Optional[str], typer.Option("--format", help=FORMAT)]
StartFlag = Annotated[Optional[str], typer.Option(help=f"{START} Of files with elapsed time only.")]
TzFlag = Annotated[Optional[str], typer.Option(help=TZ)]
DischargeFlag = Annotated[Optional[bool], typer.Option("--discharge-positive/--discharge-negative", help=DISCHARGE)]


def parse_speed(text: str) -> float | None:
    """``--speed``: ``"max"`` (None: no pacing) or a positive factor of sample time over wall time."""
    try:
        return replay_source.parse_speed(text)
    except ValueError as error:
        raise typer.BadParameter(f"--{error}") from None


def parse_start(text: str, tz: str | None = None) -> float:
    """``--start``: epoch seconds, or an ISO time (in `tz`, else UTC, when it names no zone)."""
    with contextlib.suppress(ValueError):  # not a number: an ISO time
        return float(text)
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(tz) if tz else timezone.utc)
    except (ValueError, ZoneInfoNotFoundError):
        raise typer.BadParameter(f"--start takes an ISO time like 2026-03-01T09:00 or epoch seconds, "
                                 f"not {text!r}") from None
    return moment.timestamp()


def read_options(
    map_: list[str] | None, mapping: Path | None, unit: list[str] | None, format_: str | None,
    start: str | None, tz: str | None, discharge_positive: bool | None,
) -> dict[str, Any]:
    """The reader flags (--map, --mapping, --unit, --format, --start, --tz, --discharge-positive)
    as keyword arguments of :func:`connectors.readers.read_archive`."""
    try:
        columns = ColumnMapping.from_pairs(map_ or [])
        if mapping is not None:
            loaded = load_mapping(mapping)
            columns = dataclasses.replace(loaded, columns={**loaded.columns, **columns.columns})
        units = dict(ColumnMapping.from_pairs(unit or []).columns)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return {"format": format_, "mapping": columns, "units": units or None,
            "start": parse_start(start, tz) if start is not None else None, "tz": tz,
            "discharge_positive": discharge_positive}


def invocation(ctx: typer.Context) -> str:
    """The command as given, to repeat it: ``celltwin`` and the subcommand, then each argument
    and option set on the command line or in the environment, never a token or password."""
    names, level = [], ctx
    while level.parent is not None:  # the root's name is however the program was started
        names.insert(0, level.info_name or "")
        level = level.parent
    words = ["celltwin", *names]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)  # typer's own click: its enum, compared by name
        if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        if any(secret in param.name for secret in ("token", "password")):
            continue
        value = ctx.params[param.name]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += map(str, values)
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0])
        else:
            for item in values:
                words += [param.opts[0], str(item.value if hasattr(item, "value") else item)]
    return shlex.join(words)


def package_version() -> str:
    """The installed package's version, for `celltwin --version`."""
    try:
        return version("celltwin")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def hide_flag_types() -> None:
    """No ``<bool>`` after a flag that takes no value in typer's --help (``--report``,
    ``--help``): it reads as if the flag wanted one."""
    from typer.core import TyperOption

    typed = TyperOption.display_type_rich
    if getattr(typed, "hides_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag and not self.count else typed(self, ctx)

    display_type_rich.hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
