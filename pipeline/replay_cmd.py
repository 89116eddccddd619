"""`celltwin replay`: archived cycler files through the same dataflow as live data.

Embedded by default: the files are read (the parse report is printed: rows kept
and rejected with examples, units, sign convention), replayed through the run's
dataflow into the output folder, and checked against themselves
(``validation.csv`` and the validation section of the report). With ``--kafka``
the replay is produced into ``cell.samples`` (metadata first on ``cell.meta``)
for a pipeline that is already running, paced like the cycler was.

A cell's hydride mass comes from ``--mass-mg`` or the config file's
``[cells.ID]``; there is no default, because every capacity the twin reports
scales with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from bytewax.dataflow import Dataflow
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from connectors.config import Config, ConfigError, KafkaConfig, load_config
from connectors.kafka_admin import ensure_topics
from connectors.decode import MAX_ABS_CURRENT_A, implausible
from connectors.meta import V_RANGE, meta_from_mapping
from connectors.preflight import check_kafka
from connectors.readers import CellRecord, ParseReport, ReaderError, read_archive
from connectors.replay_source import ReplaySource, produce
from connectors.sim_producer import Publisher
from connectors.wire import OUT_DEADLETTER, TOPIC_META, TOPIC_SAMPLES, CellMeta, MetaError
from pipeline.dataflow import TOPIC_PARTITIONS, build_flow, run_flow, warm_up_twin
from pipeline.flags import (
    COMPOSITION, CONFIG, MASS_MG, PRESET, REPORT, SPEED, DischargeFlag, FormatFlag, MapFlag, MappingFlag, StartFlag,
    TzFlag, UnitFlag, invocation, parse_speed, read_options,
)
from pipeline.health import Progress as FlowProgress
from pipeline.report import build_report
from pipeline.report_data import load_cells, load_validation, write_run_info
from pipeline.run_cmd import DEFAULT_OUT
from pipeline.validation import gap_s, validate, verdicts, write_validation
from twin.generic import LearnedOcv, learn_ocv
from twin.params import MIXED

__all__ = [
    "replay", "read_files", "ReadFilesError", "cell_metas", "replay_config", "replay_flow", "DEFAULT_PRESET",
]

DEFAULT_PRESET = "nd4mg80ni8"  # the electrode this twin is built for; printed with every replay

_err = Console(stderr=True)
_out = Console()


def _concat(parts: list[CellRecord]) -> CellRecord:
    """One cell from several files of it (exports split by the cycler), in time order."""
    parts = sorted(parts, key=lambda r: float(r.t[0]) if len(r) else np.inf)
    for before, after in zip(parts, parts[1:]):
        if len(before) and len(after) and after.t[0] <= before.t[-1]:
            raise ReaderError(
                f"{after.meta.get('source')} starts before {before.meta.get('source')} ends: two files of cell "
                f"{after.cell!r} overlap in time; give them different --cell names, or --start for exports "
                "that only carry elapsed time"
            )
    if len(parts) == 1:
        return parts[0]

    def joined(name: str, fill: float | None) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        if fill is None and any(a is None for a in arrays):
            return None
        return np.concatenate([np.full(len(p), fill) if a is None else a for p, a in zip(parts, arrays)])

    return CellRecord(
        parts[0].cell, joined("t", None), joined("v", None), joined("i", None), joined("temp_c", np.nan),
        joined("cycle", None), joined("step", None),
        {**parts[0].meta, "source": ", ".join(str(p.meta.get("source")) for p in parts)},
        joined("charge_mah", None), joined("discharge_mah", None), all(p.mean_current for p in parts),
    )


class ReadFilesError(ReaderError):
    """Reading the files failed; ``reports`` are the parse reports of the files read before
    (the one the message points to among them), so that they can still be shown."""

    def __init__(self, message: str, reports: list[ParseReport]) -> None:
        super().__init__(message)
        self.reports = reports


def read_files(
    files: list[Path], *, cell: str | None = None, on_read: Callable[[Path], None] | None = None, **options: Any
) -> tuple[list[CellRecord], list[ParseReport]]:
    """Read archives into cells (files of the same cell joined) and their parse reports.

    ``options`` go to :func:`~connectors.readers.read_archive`; ``on_read(path)`` is
    called after each file (the progress bar). Raises :class:`ReadFilesError`
    carrying the reports made so far.
    """
    by_cell: dict[str, list[CellRecord]] = {}
    reports: list[ParseReport] = []
    try:
        for path in files:
            archive = read_archive(path, cell=cell, **options)
            reports.append(archive.report)
            for name, record in archive.cells.items():
                by_cell.setdefault(name, []).append(record)
            if on_read is not None:
                on_read(path)
        records = [_concat(parts) for parts in by_cell.values()]
    except ReaderError as error:
        raise ReadFilesError(str(error), reports) from error
    empty = [r.cell for r in records if len(r) == 0]
    if empty or not records:
        which = f"for cell(s) {empty}" if empty else "in " + ", ".join(p.name for p in files)
        raise ReadFilesError(f"no usable rows {which}: see the parse report above", reports)
    return records, reports


def plausible_records(records: list[CellRecord]) -> list[CellRecord]:
    """Each cell without its samples outside the plausible ranges (`connectors.decode`): the
    replay's frames send those to the dead letters, so neither the curve learned from the
    file nor its validation may rest on them (one row of 1e30 A made a capacity of 4e29 mAh).
    Says how many, per cell. A cell with none left (an unused channel of a multi-channel
    export) is left out of both, said with the ranges its data span; a file with no such
    cell at all is refused with what to check."""
    kept, empty = [], []
    for r in records:
        bad = implausible(r.t, r.v, r.i, r.temp_c)
        if bad.all():
            empty.append(f"cell {r.cell!r}: no sample within the plausible ranges (voltage {V_RANGE[0]:g} .. "
                         f"{V_RANGE[1]:g} V, |current| <= {MAX_ABS_CURRENT_A:g} A); its voltages run "
                         f"{np.nanmin(r.v):.3g} to {np.nanmax(r.v):.3g} V, its currents reach "
                         f"{np.nanmax(np.abs(r.i)):.3g} A")
        elif bad.any():
            _out.print(f"{r.cell}: {int(bad.sum()):,} sample(s) outside the plausible ranges go to the dead letters "
                       "and are left out of the learned curve and the validation", soft_wrap=True, markup=False)
        if not bad.all():
            kept.append(r.rows(~bad) if bad.any() else r)
    if not kept:
        raise typer.BadParameter("; ".join(empty) + ": is it a cell's charge/discharge test, in these units? If not "
                                 "in these units, give --unit (e.g. --unit current=mA)")
    for line in empty:
        _out.print(Text(f"{line}: left out; the other cells replay", style="yellow"), soft_wrap=True)
    return kept


def generic_metas(
    records: list[CellRecord], mass_mg: float | None, v_min: float | None = None, v_max: float | None = None
) -> tuple[dict[str, CellMeta], dict[str, float]]:
    """Generic cells (another chemistry): the window from the flags or inferred from each file,
    the open-circuit curve and the capacity learned from its slowest full cycle. A cell
    with nothing to learn from still replays, on a provisional curve, and the output says so.
    Also per cell: the time the halves it learned from end (the validation judges what follows)."""
    metas, learned_until = {}, {}
    for r in records:
        try:
            learned = learn_ocv(r.t, r.v, r.i, v_min, v_max, fallback=True)
            metas[r.cell] = meta_from_mapping(r.cell, {
                "generic": {"capacity_mah": learned.capacity_mah, "v_min": learned.v_min, "v_max": learned.v_max,
                            "ocv": learned.table.tolist(), "r_ohm": max(learned.r_ohm, 1e-6),
                            "tau_diff_s": learned.tau_diff_s},
                "mass_mg": mass_mg,
            })
        except MetaError as error:  # names the cell already
            hint = (f"; the window was inferred from the file, whose voltages run {np.nanmin(r.v):.3g} to "
                    f"{np.nanmax(r.v):.3g} V: is it a charge/discharge test? If so, give --v-min and --v-max"
                    if learned.inferred else "")
            raise typer.BadParameter(f"{error}{hint}") from None
        except ValueError as error:
            raise typer.BadParameter(f"cell {r.cell!r}: {error}") from None
        _print_learned(r.cell, learned)
        learned_until[r.cell] = learned.learned_until
    return metas, learned_until


def _print_learned(cell: str, learned: LearnedOcv) -> None:
    window = f"{learned.v_min:.2f}-{learned.v_max:.2f} V"
    if learned.inferred:
        flags = "/".join(f"--{end.replace('_', '-')}" for end in learned.inferred)
        _out.print(f"{cell}: window inferred from the data: {window}; pass {flags} to override", soft_wrap=True)
    verb = "provisional open-circuit curve" if learned.provisional else "learned the open-circuit curve"
    _out.print(f"{cell}: {verb} from {learned.sources()}; capacity {learned.capacity_mah:.4g} mAh in the "
               f"{window} window, resistance {learned.r_ohm:.3g} ohm", soft_wrap=True, markup=False)
    for note in learned.notes:
        _out.print(f"{cell}: note: {note}", soft_wrap=True, markup=False)
    if learned.provisional:
        _out.print(Text(f"{cell}: the twin's capacity figures for this cell are provisional (see the notes above)",
                        style="yellow"), soft_wrap=True)


def cell_metas(
    names: list[str], cfg: Config, mass_mg: float | None, electrode: str | None
) -> dict[str, CellMeta]:
    """Each cell's metadata: flags first, then the config's ``[cells.ID]``; a mass is required."""
    metas = {}
    for name in names:
        known = cfg.cells.get(name)
        mass = mass_mg if mass_mg is not None else (known.mass_mg if known else None)
        if mass is None:
            raise typer.BadParameter(
                f"cell {name!r} has no hydride mass: pass --mass-mg, or add [cells.{name}] with mass_mg to the "
                "config file (--config); there is no default, every capacity scales with it"
            )
        label = electrode or (known.label if known else DEFAULT_PRESET)
        kind = "composition" if "=" in label else "preset"
        try:
            metas[name] = meta_from_mapping(name, {kind: label, "mass_mg": mass,
                                                   "c_rate": known.c_rate if known else None})
        except MetaError as error:
            raise typer.BadParameter(str(error)) from None
    return metas


def replay_config(cfg: Config, out: Path, metas: dict[str, CellMeta]) -> Config:
    """The run's configuration turned into a replay's: embedded, into ``out``, these cells.

    One shard: a replay runs on one worker, and the twin steps the cells of a
    shard together (sample k of every cell in one call), which is what makes a
    replay of many cells fast. No recovery: a replay is a finite job that is
    simply run again, and a live job's snapshots must never be resumed by it.
    """
    return dataclasses.replace(cfg, kafka=None, recovery_dir=None, out=out, shards=1,
                               cells={**cfg.cells, **metas})


def replay_flow(cfg: Config, source: ReplaySource, progress: FlowProgress | None = None) -> Dataflow:
    """The embedded dataflow of ``cfg`` (see :func:`replay_config`) with ``source`` in
    place of the simulator.

    ``build_flow`` takes its embedded input from the config (the simulator);
    its input step is replaced here, so every step after it is the run's own.
    """
    if cfg.kafka is not None:
        raise ValueError("a replay runs embedded: pass the config through replay_config")
    flow = build_flow(cfg, progress)
    first = flow.substeps[0]
    if getattr(first, "source", None) is None:
        raise RuntimeError(f"the dataflow no longer starts with its input step ({first.step_id})")
    flow.substeps[0] = dataclasses.replace(first, source=source)
    return flow


def _print_reports(reports: list[ParseReport]) -> None:
    for report in reports:
        style = "yellow" if report.rows_rejected or report.warnings else "green"
        _out.print(Text(report.summary(), style=style), soft_wrap=True)
        if report.rows_rejected > len(report.rejected):
            _out.print(f"  ... {report.rows_rejected - len(report.rejected)} more rejected rows not shown")


def _metas_table(records: list[CellRecord], metas: dict[str, CellMeta]) -> Table:
    table = Table(title="replay")
    for column in ("cell", "electrode", "mass mg", "samples", "from", "hours", "gaps"):
        table.add_column(column, justify="left" if column in ("cell", "electrode", "from") else "right")
    for r in records:
        meta = metas.get(r.cell)  # none for a generic cell without a plausible sample
        start = np.datetime64(int(r.t[0]), "s").astype(str).replace("T", " ") + " UTC"
        gaps = int(np.sum(np.diff(r.t) > gap_s(r.t)))
        table.add_row(r.cell, meta.label if meta else "- (dead letters)", f"{meta.mass_mg:g}" if meta and meta.mass_mg
                      else "-", f"{len(r):,}", start, f"{(r.t[-1] - r.t[0]) / 3600:.1f}", str(gaps))
    return table


def _verdict_table(out: Path, cells: list[str]) -> Table:
    """A verdict per replayed cell; one whose file never left rest (no half-cycle, so no row
    in validation.csv) says so rather than going unmentioned."""
    table = Table(title="validation: does the twin track the file?")
    for column in ("cell", "cycles", "verdict"):
        table.add_column(column)
    validation = load_validation(out)
    judged = {v.cell: v for v in verdicts(validation)} if validation is not None else {}
    for cell in cells:
        if cell not in judged:
            table.add_row(cell, "0", Text("no verdict: no half-cycle in the file (the current never left rest)",
                                          style="red"))
            continue
        count = int(np.sum(validation["cell"].astype(str) == cell))
        table.add_row(cell, str(count), Text(judged[cell].summary(), style="green" if judged[cell].tracks else "red"))
    return table


def _embedded(cfg: Config, out: Path, records: list[CellRecord], plausible: list[CellRecord],
              metas: dict[str, CellMeta], speed: float | None, report: bool, learned_until: Mapping[str, float]) -> None:
    """Replay `records` through the run's dataflow into ``out``, then validate the twin on
    their `plausible` samples and report (a generic cell's curve learned from halves that
    end at `learned_until`, the file's time)."""
    cfg = replay_config(cfg, out, metas)
    progress = FlowProgress()
    flow = replay_flow(cfg, ReplaySource(records, speed), progress)
    total = sum(len(r) for r in records)

    def view() -> Text:
        samples, _, deadletters, elapsed = progress.snapshot()
        return Text(f"replaying: {samples:,}/{total:,} samples ({samples / max(elapsed, 1e-9):,.0f}/s), "
                    f"{deadletters:,} dead letters, {elapsed:.0f} s")

    with Live(get_renderable=view, console=_err, refresh_per_second=4, transient=True):
        finished = run_flow(flow, cfg)
    samples, _, deadletters, elapsed = progress.snapshot()
    if not finished:
        _err.print(f"stopped after {samples:,} of {total:,} samples; what was replayed is in {out}/")
        raise typer.Exit(130)
    _err.print(f"replayed {samples:,} of {total:,} samples in {elapsed:.1f} s"
               + (f"; the other {total - samples:,} are in {deadletters:,} dead letter(s) with their reasons, see "
                  f"{out / OUT_DEADLETTER}" if deadletters else ""))
    params = {c: m.params() for c, m in metas.items()}
    masses = {c: m.mass_mg for c, m in metas.items()}
    one_c = {c: p.one_c_ma for c, p in params.items()}
    windows = {c: (p.v_min, p.v_max) for c, p in params.items()}  # a full half runs the twin's own window
    cells = load_cells(out)  # read once: for the validation and the report
    validation = write_validation(out, validate(plausible, cells, masses, one_c, windows, learned_until))
    _out.print(_verdict_table(out, [r.cell for r in plausible]))
    _out.print(f"files: {out}/ (estimates, cycles, alerts, dead letters), {validation}", soft_wrap=True)
    if report:
        _out.print(f"report: {build_report(out, cells)}", soft_wrap=True)


def _to_kafka(kafka: KafkaConfig, records: list[CellRecord], metas: dict[str, CellMeta],
              speed: float | None) -> None:
    bootstrap = kafka.bootstrap
    # A generic cell without a plausible sample has no curve, so no metadata: not sent.
    records = [r for r in records if r.cell in metas]
    ensure_topics(bootstrap, {TOPIC_SAMPLES: TOPIC_PARTITIONS[TOPIC_SAMPLES], TOPIC_META: TOPIC_PARTITIONS[TOPIC_META]},
                  admin_config=kafka.admin_config())
    total = sum(len(r) for r in records)
    with Publisher(bootstrap, producer_config=kafka.producer_config()) as publisher, Progress(
        SpinnerColumn(), TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_err, transient=True,
    ) as bar:
        task = bar.add_task("producing", total=total)
        sent = produce(records, publisher, metas, speed=speed, progress=lambda n: bar.advance(task, n))
    _out.print(f"produced {sent:,} samples of {len(records)} cell(s) to {TOPIC_SAMPLES} on {bootstrap} "
               f"(metadata on {TOPIC_META}); the running pipeline writes the results", soft_wrap=True)


def replay(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Archived cycler files "
                                                "(files that hold the same cell, by name or --cell, are joined in "
                                                "time order; a one-cell file is named after the file).")],
    cell: Annotated[Optional[str], typer.Option(help="Cell id: names a one-cell file, or picks one cell of a "
                                                     "multi-cell table (default: the file name).")] = None,
    mass_mg: Annotated[Optional[float], typer.Option("--mass-mg", help=f"{MASS_MG} Default: mass_mg of the "
                                                     "cell in the config; there is no other.")] = None,
    preset: Annotated[Optional[str], typer.Option(help=f"{PRESET} Default: config, else {DEFAULT_PRESET}.")] = None,
    composition: Annotated[Optional[str], typer.Option(help=COMPOSITION)] = None,
    speed: Annotated[str, typer.Option(help=f"{SPEED} Paced by the file's timestamps.")] = "max",
    out: Annotated[Optional[Path], typer.Option(help=f"Output folder (default: config, else ./{DEFAULT_OUT}).")] = None,
    kafka: Annotated[Optional[str], typer.Option(help="Produce into cell.samples + cell.meta on this broker "
                                                      "(host:port) for a running pipeline instead; TLS/SASL "
                                                      "settings from the \\[kafka] tables of --config.")] = None,
    map_: MapFlag = None,
    mapping: MappingFlag = None,
    unit: UnitFlag = None,
    format_: FormatFlag = None,
    start: StartFlag = None,
    tz: TzFlag = None,
    discharge_positive: DischargeFlag = None,
    config: Annotated[Optional[Path], typer.Option("--config", envvar="CELLTWIN_CONFIG", exists=True,
                                                   dir_okay=False, help=CONFIG)] = None,
    report: Annotated[bool, typer.Option(help=REPORT)] = True,
    generic: Annotated[bool, typer.Option("--generic", help="A cell of another chemistry: learn its open-circuit "
                                          "curve and capacity from the file's slowest full cycle.")] = False,
    v_min: Annotated[Optional[float], typer.Option("--v-min", help="Generic cells: lower end of the voltage "
                                                   "window, V (default: inferred from the data).")] = None,
    v_max: Annotated[Optional[float], typer.Option("--v-max", help="Generic cells: upper end of the voltage "
                                                   "window, V (default: inferred from the data).")] = None,
) -> None:
    """Replay archived cycler files through the twin and validate it against them."""
    try:
        pace = parse_speed(speed)
        if preset and composition:
            raise ValueError("give --preset or --composition, not both")
        if preset and preset.strip().lower() == MIXED:
            raise ValueError(f"--preset {MIXED} alternates the presets over simulated cells; a replayed cell has one "
                             "electrode: give --preset nd4mg80ni8 or mgh2, or --composition")
        electrode = composition or preset
        cfg = load_config(config, flags={"out": str(out) if out else None, "kafka.bootstrap": kafka})
        _check_generic_options(generic, electrode, v_min, v_max)
    except (ValueError, ConfigError) as error:
        raise typer.BadParameter(str(error)) from None
    options = read_options(map_, mapping, unit, format_, start, tz, discharge_positive)
    if kafka:
        check_kafka(kafka, cfg.kafka.admin_config() if cfg.kafka is not None else {})  # before reading the files
    else:
        warm_up_twin()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=_err, transient=True) as bar:
            task = bar.add_task(f"reading {files[0].name}", total=len(files))

            def done(path: Path) -> None:
                bar.update(task, advance=1, description=f"read {path.name}")

            records, reports = read_files(files, cell=cell, on_read=done, **options)
    except ReadFilesError as error:
        _print_reports(error.reports)  # the reports the message points to, printed after the bar is gone
        also = ("" if generic or mass_mg is not None or cfg.cells else
                "\nAlso needed once the file reads: --mass-mg (hydride mass per cell, mg; no default).")
        raise typer.BadParameter(f"{error}{also}") from None
    _print_reports(reports)
    plausible = plausible_records(records)
    learned_until: dict[str, float] = {}
    if generic:
        metas, learned_until = generic_metas(plausible, mass_mg, v_min, v_max)
    else:
        metas = cell_metas([r.cell for r in records], cfg, mass_mg, electrode)
    _out.print(_metas_table(records, metas))
    if kafka:
        _to_kafka(cfg.kafka, records, metas, pace)
    else:
        out_dir = cfg.out or DEFAULT_OUT
        write_run_info(out_dir, invocation(ctx), {
            "input": "replay of " + ", ".join(str(f) for f in files),
            "C-rate": ", ".join(f"{c}: {m.c_rate:g}C" if m.c_rate else f"{c}: not given" for c, m in metas.items()),
        })
        _embedded(cfg, out_dir, records, plausible, metas, pace, report, learned_until)


def _check_generic_options(generic: bool, preset: str | None, v_min: float | None, v_max: float | None) -> None:
    """--generic learns the cell from the data, so it takes no --preset; a window is its alone."""
    if generic and preset:
        raise ValueError("--generic learns the cell from the data: it takes no --preset or --composition")
    if not generic and (v_min is not None or v_max is not None):
        raise ValueError("--v-min/--v-max set the window of a --generic cell; a preset carries its own window")
    if v_min is not None and v_max is not None and v_max <= v_min:
        raise ValueError(f"--v-max ({v_max:g} V) must be above --v-min ({v_min:g} V)")
