"""`celltwin watch`: follow the files cyclers write and stream their new rows into Kafka.

Options and display only. Which rows are new, and the state that remembers it, are
:mod:`connectors.file_follower`'s; the readers, the framing and the metadata records are
the ones `celltwin replay --kafka` uses. Each poll: the metadata of cells whose metadata
is new or changed goes to ``cell.meta`` (acknowledged first, so the pipeline never sees a
sample of a cell it does not know), then the new rows as frames to ``cell.samples``; once
the broker acknowledged them, the state file is replaced. A restart after a kill looks at
the records sent after the state's marks (:mod:`connectors.kafka_tail`), so rows delivered
just before the kill are not sent twice.

Kafka only: the running pipeline (`celltwin run --kafka`) computes the twin. A cell's
metadata comes from the sidecar ``<file>.toml``, then the flags, then ``[cells.ID]`` of
the config; without an active mass its rows wait (the pipeline would refuse them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connectors.config import Config, ConfigError, load_config
from connectors.file_follower import Follower, Update, WatchState, cell_matcher, sidecar_of
from connectors.kafka_admin import ensure_topics
from connectors.kafka_tail import TopicTail
from connectors.meta import meta_from_mapping
from connectors.preflight import check_kafka
from connectors.replay_source import encode, wire_frames
from connectors.sim_producer import Publisher
from connectors.wire import TOPIC_META, TOPIC_SAMPLES, CellMeta, MetaError
from pipeline.dataflow import TOPIC_PARTITIONS
from pipeline.flags import (
    COMPOSITION, CONFIG, MASS_MG, PRESET, DischargeFlag, FormatFlag, MapFlag, MappingFlag, StartFlag, TzFlag, UnitFlag,
    read_options,
)
from pipeline.produce_cmd import kafka_settings
from pipeline.replay_cmd import DEFAULT_PRESET

__all__ = ["watch", "DEFAULT_STATE"]

DEFAULT_STATE = Path("celltwin-watch-state.json")
_ELECTRODES = ("preset", "composition", "generic")

_err = Console(stderr=True)
_out = Console()


def cell_meta(cell: str, sidecar: dict[str, Any] | None, cfg: Config, mass_mg: float | None,
              electrode: str | None, source: Path) -> CellMeta:
    """A cell's metadata: its sidecar TOML, over the flags, over the config's ``[cells.ID]``."""
    known = cfg.cells.get(cell)
    data = {k: v for k, v in dataclasses.asdict(known).items() if v is not None} if known else {}
    given: dict[str, Any] = {}
    if electrode:
        given["composition" if "=" in electrode else "preset"] = electrode
    if mass_mg is not None:
        given["mass_mg"] = mass_mg
    for layer in (given, sidecar or {}):
        if any(layer.get(k) is not None for k in _ELECTRODES):
            data = {k: v for k, v in data.items() if k not in _ELECTRODES}
        data.update(layer)
    data["cell"] = cell
    if not any(data.get(k) is not None for k in _ELECTRODES):
        data["preset"] = DEFAULT_PRESET
    if data.get("mass_mg") is None and "generic" not in data:
        raise MetaError(f"cell {cell!r} has no active mass: add mass_mg to {sidecar_of(source).name}, pass "
                        f"--mass-mg, or add [cells.{cell}] to the --config file; its rows wait until it has one")
    return meta_from_mapping(cell, data)


class _Sender:
    """Delivers the follower's updates: metadata, then frames, then the state file."""

    def __init__(self, publisher: Publisher, tail: TopicTail, follower: Follower, state_path: Path,
                 meta_of: Any) -> None:
        self._publisher = publisher
        self._tail = tail
        self._follower = follower
        self._state_path = state_path
        self._meta_of = meta_of
        self._published: dict[str, CellMeta] = {}
        self._said: set[str] = set()
        self.rows = 0

    def say(self, note: str, style: str = "") -> None:
        if note not in self._said:  # a lasting problem is said once
            self._said.add(note)
            _out.print(Text(note, style=style), soft_wrap=True)

    def deliver(self, updates: list[Update]) -> None:
        ready: list[Update] = []
        metas: dict[str, CellMeta] = {}
        for update in updates:
            for note in update.notes:
                _out.print(note, soft_wrap=True, markup=False)
            try:
                metas.update({r.cell: self._meta_of(r.cell, update.sidecar, update.path) for r in update.records})
            except MetaError as error:
                self.say(f"{update.path.name}: {error}", "yellow")
                continue
            ready.append(update)
        changed = [(cell.encode(), meta.to_json()) for cell, meta in metas.items()
                   if self._published.get(cell) != meta]
        if changed:
            self._publisher.send(TOPIC_META, changed)
            self._publisher.flush()
            self._published.update(metas)
        frames = list(wire_frames([r for u in ready for r in u.records]))
        if frames:
            self._publisher.send(TOPIC_SAMPLES, [encode(f) for f in frames])
            self._publisher.flush()
        if not ready:
            return
        for update in ready:
            self._follower.commit(update)
            self.rows += update.rows
        state = self._follower.state
        state.marks = self._tail.ends()  # after the acknowledgement: every later record is past them
        state.save(self._state_path)


def _files_table(state: WatchState, rows: int, started: float) -> Table:
    table = Table(title=f"watching: {rows:,} rows sent in {time.monotonic() - started:.0f} s", title_justify="left")
    for column in ("file", "cell", "stream", "rows sent", "status"):
        table.add_column(column, justify="right" if column in ("stream", "rows sent") else "left", overflow="fold")
    for name, fs in state.files.items():
        for cell, count in fs.rows.items() or {"-": 0}.items():
            table.add_row(Path(name).name, cell, str(fs.stream), f"{count:,}",
                          "finished" if fs.finished else "following")
    return table


def watch(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files and folders to follow (a folder: every "
                                                "data file in it, new ones too; not its sub-folders).")],
    kafka: Annotated[Optional[str], typer.Option(
        "--kafka", help="Kafka bootstrap server(s), host:port[,host:port] (env CELLTWIN_KAFKA). Required: "
        "watch feeds a running `celltwin run --kafka` pipeline.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", envvar="CELLTWIN_CONFIG", exists=True, dir_okay=False,
        help=f"{CONFIG} Its \\[kafka] tables give the broker and the TLS/SASL settings.")] = None,
    cell_pattern: Annotated[Optional[str], typer.Option(
        "--cell-pattern", help="Cell id from the file name: a glob with a {cell} field, e.g. '{cell}_*.csv', "
        "or a regular expression with a (?P<cell>...) group. Files that do not match are not followed "
        "(default: every file; the cell is the file name without its extension).")] = None,
    mass_mg: Annotated[Optional[float], typer.Option("--mass-mg", help=f"{MASS_MG} For cells whose sidecar "
                                                     "<file>.toml gives none (else \\[cells.ID] of the config).")] = None,
    preset: Annotated[Optional[str], typer.Option(help=f"{PRESET} Default: sidecar, config, else {DEFAULT_PRESET}.")] = None,
    composition: Annotated[Optional[str], typer.Option(help=COMPOSITION)] = None,
    state: Annotated[Path, typer.Option(
        "--state", dir_okay=False, help="JSON file remembering how far each file was sent; replaced atomically "
        "after the broker acknowledged the rows, so a restart resumes without gaps or repeats. Delete it to "
        "send everything again.")] = DEFAULT_STATE,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between two looks at the files.")] = 1.0,
    idle: Annotated[float, typer.Option(
        min=0.0, help="Seconds without growth after which a file's cell counts as finished (said once); a last "
        "line without its newline is sent then, not before.")] = 900.0,
    grace: Annotated[float, typer.Option(
        min=0.0, help="Seconds a file that got shorter may take to grow back (an export rewritten in place) "
        "before it counts as truncated and is sent afresh as a new stream of its cell.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="One pass: send what the files hold now, then exit.")] = False,
    map_: MapFlag = None,
    mapping: MappingFlag = None,
    unit: UnitFlag = None,
    format_: FormatFlag = None,
    start: StartFlag = None,
    tz: TzFlag = None,
    discharge_positive: DischargeFlag = None,
) -> None:
    """Follow the files cyclers write and send each new row once, in order, to Kafka.

    Growing files, and new files in the folders, are read as `celltwin replay` reads them
    (any format the readers know, detected per file) and their new complete rows go to
    cell.samples, each cell's metadata to cell.meta first. A file replaced by a longer
    copy sends only its new rows; a truncated or rotated file is sent afresh from its first
    row as a new stream of its cell (the output says so); a file that stops growing for
    --idle seconds is reported finished. Metadata per file: a sidecar <file>.toml
    (mass_mg, preset or composition, c_rate, cell), else the flags, else \\[cells.ID] of the
    config. How far each file got is kept in --state, so a restart (also after a kill)
    resumes without gaps or repeats.

    Kafka only: a running `celltwin run --kafka` computes the twin from what watch sends.
    """
    settings = kafka_settings(config, kafka)
    try:
        cfg = load_config(config, flags={"kafka.bootstrap": kafka})
        cell_of = cell_matcher(cell_pattern)
        if preset and composition:
            raise ValueError("give --preset or --composition, not both")
        watch_state = WatchState.load(state)
    except (ValueError, ConfigError) as error:
        raise typer.BadParameter(str(error)) from None
    options = read_options(map_, mapping, unit, format_, start, tz, discharge_positive)
    check_kafka(settings.bootstrap, settings.admin_config())
    ensure_topics(settings.bootstrap, {t: TOPIC_PARTITIONS[t] for t in (TOPIC_SAMPLES, TOPIC_META)},
                  admin_config=settings.admin_config())

    def meta_of(cell: str, sidecar: dict[str, Any] | None, source: Path) -> CellMeta:
        return cell_meta(cell, sidecar, cfg, mass_mg, composition or preset, source)

    tail = TopicTail(settings.bootstrap, TOPIC_SAMPLES, settings.consumer_config())
    try:
        delivered = tail.last_times(watch_state.marks) if watch_state.marks else {}
        if not watch_state.marks:  # before anything is sent: where to look after a kill
            watch_state.marks = tail.ends()
            watch_state.save(state)
        with Publisher(settings.bootstrap, producer_config=settings.producer_config()) as publisher, Follower(
            paths, watch_state, cell_of=cell_of, read_options=options, idle_s=idle, grace_s=grace,
            delivered=delivered, skip=[state],
        ) as follower:
            sender = _Sender(publisher, tail, follower, state, meta_of)
            started = time.monotonic()
            _follow(follower, sender, poll, once, lambda: _files_table(watch_state, sender.rows, started))
    finally:
        tail.close()
    _out.print(_files_table(watch_state, sender.rows, started))
    _out.print(f"sent {sender.rows:,} rows to {TOPIC_SAMPLES} on {settings.bootstrap}; state in {state}",
               soft_wrap=True)


def _follow(follower: Follower, sender: _Sender, poll: float, once: bool, view: Any) -> None:
    """Poll and send until done (``once``) or stopped. Ctrl-C or SIGTERM stops after the pass
    under way, never inside the Kafka client (an interrupt there can leave it unable to close);
    a second Ctrl-C interrupts at once. The state holds every acknowledged row either way."""
    stop = threading.Event()

    def ask_stop(signum: int, _frame: Any) -> None:
        stop.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    previous = {sig: signal.signal(sig, ask_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A second Ctrl-C ends the loop at once: what was acknowledged is in the state.
        with contextlib.suppress(KeyboardInterrupt), Live(get_renderable=view, console=_err,
                                                          refresh_per_second=2, transient=True):
            while not stop.is_set():
                sender.deliver(follower.poll())
                if once:
                    return
                stop.wait(poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
