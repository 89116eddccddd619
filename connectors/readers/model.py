"""What every reader returns: normalised cells, a parse report, and the errors.

Readers are adapters from a vendor's file to the wire format of ``cell.samples``
(ARCHITECTURE.md): ``t`` in seconds since the epoch, ``v`` in volts, ``i`` in
amperes with lithiation (discharge) negative, optional ``temp_c``, ``cycle`` and
``step``. Each cell is a small dataclass of numpy arrays so that a producer can
slice it straight into frames, and the :class:`ParseReport` travels beside it
because archived files are dirty: a reader keeps the good rows, counts the bad
ones and shows a few of them with line numbers instead of failing or guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

__all__ = [
    "MAX_EXAMPLES",
    "CellRecord",
    "Archive",
    "RejectedRow",
    "ParseReport",
    "ReaderError",
    "MissingColumnError",
    "AmbiguousUnitError",
    "UnsupportedFormatError",
    "MissingExtraError",
]

MAX_EXAMPLES = 10  # rejected rows shown in a report; the count covers all of them


@dataclass
class CellRecord:
    """One cell's samples in wire units, in file order (never resampled).

    ``temp_c`` holds NaN where the file has no temperature for a row; ``cycle``
    and ``step`` are None when the file has no such column. ``charge_mah`` and
    ``discharge_mah`` are the cycler's own running charge and discharge
    counters as the file has them, in mAh (see :mod:`.counters`): each resets
    where the file's counter does (a drop is a reset), NaN where a row has no
    reading, None when the file has no counters. ``mean_current``: the current of
    a row is what flowed on average since the row before, not a reading at its
    time, so the charge of an interval is its current times its length.
    """

    cell: str
    t: np.ndarray  # float64, seconds since the epoch
    v: np.ndarray  # float64, volts
    i: np.ndarray  # float64, amperes, lithiation / discharge negative
    temp_c: np.ndarray | None = None  # float64, degrees Celsius
    cycle: np.ndarray | None = None  # int64
    step: np.ndarray | None = None  # int64
    meta: dict[str, Any] = field(default_factory=dict)
    charge_mah: np.ndarray | None = None  # float64, mAh, the cycler's charge counter
    discharge_mah: np.ndarray | None = None  # float64, mAh, the cycler's discharge counter
    mean_current: bool = False  # each row's current is its mean since the row before (BioLogic's <I>)

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def rows(self, index: slice | np.ndarray) -> "CellRecord":
        """The record at these rows (a slice, a mask or indices): every per-row array alike."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if isinstance(getattr(self, f.name), np.ndarray)})


@dataclass(frozen=True)
class RejectedRow:
    """A row that could not be parsed: where it is, why, and what it held."""

    line: int | None  # 1-based line in the file (row number for binary/XLSX sources)
    reason: str
    text: str = ""


@dataclass
class ParseReport:
    """How a file was read: format, units, what was kept and what was not."""

    source: str
    format: str = ""
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0  # exact repeats of the row before, dropped (see repeats)
    rejected: list[RejectedRow] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # role -> column in the file
    units: dict[str, str] = field(default_factory=dict)  # role -> unit found or given
    time_origin: str = ""  # "timestamps", "start + elapsed", "default epoch + elapsed"
    start_assumed: bool = False  # elapsed-only file placed at the default epoch
    sign_convention: str = ""  # how the discharge-negative sign was established
    warnings: list[str] = field(default_factory=list)

    def reject(self, line: int | None, reason: str, text: str = "") -> None:
        """Count one rejected row and keep it as an example while there is room."""
        self.rows_rejected += 1
        if len(self.rejected) < MAX_EXAMPLES:
            self.rejected.append(RejectedRow(line, reason, text))

    def reject_many(self, count: int, examples: list[RejectedRow]) -> None:
        """Count ``count`` rejected rows of which ``examples`` are shown."""
        self.rows_rejected += count
        room = MAX_EXAMPLES - len(self.rejected)
        self.rejected.extend(examples[: max(room, 0)])

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def summary(self) -> str:
        """A few human-readable lines for a CLI or a log."""
        lines = [
            f"{self.source}: {self.format}, {self.rows_read} rows read, "
            f"{self.rows_kept} kept, {self.rows_rejected} rejected"
            + (f", {self.rows_duplicate} exact duplicates dropped" if self.rows_duplicate else ""),
            "columns: " + ", ".join(f"{k}={v!r}" for k, v in self.columns.items()),
            "units: " + ", ".join(f"{k}={v}" for k, v in self.units.items()),
            f"time: {self.time_origin}; sign: {self.sign_convention}",
        ]
        lines += [f"  line {r.line}: {r.reason}" for r in self.rejected]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class Archive:
    """Everything read from one file: one or more cells and the report."""

    cells: dict[str, CellRecord]
    report: ParseReport

    def only(self) -> CellRecord:
        """The single cell of a one-cell file (most cycler exports)."""
        if len(self.cells) != 1:
            raise ReaderError(
                f"{self.report.source} holds {len(self.cells)} cells "
                f"({', '.join(self.cells)}); pick one with cell=NAME"
            )
        return next(iter(self.cells.values()))


class ReaderError(ValueError):
    """A file cannot be read as asked; the message says what to do instead."""


class MissingColumnError(ReaderError):
    """A required quantity has no column in the file."""


class AmbiguousUnitError(ReaderError):
    """A column's unit can neither be read from its header nor was given."""


class UnsupportedFormatError(ReaderError):
    """The file's format or version is not one the readers understand."""


class MissingExtraError(ReaderError):
    """An optional dependency needed for this format is not installed."""
