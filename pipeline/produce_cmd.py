"""`celltwin produce`: simulated cells on test, streamed into Kafka like live cyclers.

For demos, load tests and trying the pipeline without hardware. Options only; the
encoding, pacing and delivery live in :mod:`connectors.sim_producer`.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.config import ConfigError, KafkaConfig, kafka_config
from connectors.kafka_admin import ensure_topics
from connectors.preflight import check_kafka
from connectors.sim_producer import ProduceStats, Publisher, fleet, meta_messages, simulation, stream
from connectors.wire import TOPIC_META, TOPIC_SAMPLES
from pipeline.flags import (
    COMPOSITION, CONFIG, DT, MASS_MG, MIXED_CELLS, NOISE, PRESET, REST, SEED, SPEED, START, parse_speed, parse_start,
)

__all__ = ["produce", "kafka_settings"]

_err = Console(stderr=True)
_out = Console()


def kafka_settings(config: Path | None, kafka: str | None) -> KafkaConfig:
    """:func:`connectors.config.kafka_config`, its errors as usage errors."""
    try:
        return kafka_config(config, kafka)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


def produce(
    kafka: Annotated[Optional[str], typer.Option(
        "--kafka", help="Kafka bootstrap server(s), host:port[,host:port] (env CELLTWIN_KAFKA).")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", envvar="CELLTWIN_CONFIG", exists=True, dir_okay=False,
        help=f"{CONFIG} Its \\[kafka] tables give the broker and the TLS/SASL settings.")] = None,
    cells: Annotated[int, typer.Option(min=1, help="Number of simulated cells.")] = 8,
    preset: Annotated[str, typer.Option(help=PRESET + MIXED_CELLS)] = "nd4mg80ni8",
    composition: Annotated[Optional[str], typer.Option(help=COMPOSITION)] = None,
    c_rate: Annotated[float, typer.Option("--c-rate", help="C-rate of constant-current cycling.")] = 1.0,
    cycles: Annotated[int, typer.Option(min=1, help="Full cycles per cell.")] = 2,
    rest_min: Annotated[float, typer.Option("--rest-min", min=0.0, help=REST)] = 0.0,
    mass_mg: Annotated[float, typer.Option("--mass-mg", help=MASS_MG)] = 1.0,
    dt: Annotated[float, typer.Option(help=DT)] = 10.0,
    speed: Annotated[str, typer.Option(help=SPEED)] = "1",
    speedup: Annotated[Optional[str], typer.Option(hidden=True, help="The old name of --speed.")] = None,
    frame_size: Annotated[int, typer.Option(
        "--frame-size", min=1, help="Samples per message and cell; 1 sends single-sample messages.")] = 100,
    start: Annotated[Optional[str], typer.Option(
        help=f"{START} Default: early enough that the run ends no later than now, so dashboards "
             "never see future samples.")] = None,
    tz: Annotated[Optional[str], typer.Option(help="Time zone of a --start without one, e.g. Europe/Berlin "
                                                   "(default: UTC).")] = None,
    seed: Annotated[int, typer.Option(help=SEED)] = 0,
    noise: Annotated[bool, typer.Option(help=NOISE)] = True,
    prefix: Annotated[str, typer.Option(help="Cell ids are PREFIX000, PREFIX001, ...")] = "cell",
    topic: Annotated[str, typer.Option(help="Topic of the samples.")] = TOPIC_SAMPLES,
    partitions: Annotated[int, typer.Option(
        min=1, help="Partitions of the samples topic if it has to be created.")] = 4,
    meta: Annotated[bool, typer.Option(
        "--meta/--no-meta", help=f"Publish each cell's metadata to {TOPIC_META} first.")] = True,
) -> None:
    """Stream simulated cells into Kafka (key = cell id), paced by sample time."""
    pace = parse_speed(speedup if speedup is not None else speed)
    settings = kafka_settings(config, kafka)
    if not (c_rate > 0 and math.isfinite(c_rate)) or not dt > 0 or not mass_mg > 0:
        raise typer.BadParameter("--c-rate, --dt and --mass-mg must be > 0")
    try:
        cell_list = fleet(cells, preset, composition=composition, mass_mg=mass_mg,
                          c_rate=c_rate, seed=seed, prefix=prefix)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    t0 = _default_start(cycles, c_rate, rest_min, pace, dt) if start is None else parse_start(start, tz)
    sim = simulation(cell_list, cycles, dt=dt, t0=t0, seed=seed, noise=noise, rest_s=60.0 * rest_min)

    check_kafka(settings.bootstrap, settings.admin_config())
    ensure_topics(settings.bootstrap, {topic: partitions, **({TOPIC_META: 1} if meta else {})},
                  admin_config=settings.admin_config())
    with Publisher(settings.bootstrap, producer_config=settings.producer_config()) as publisher:
        if meta:
            publisher.send(TOPIC_META, meta_messages(cell_list))
            publisher.flush()
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=_err, transient=True) as bar:
            task = bar.add_task("starting", total=None)

            def show(stats: ProduceStats) -> None:
                bar.update(task, description=(
                    f"{_when(stats.t_last)}  {stats.samples:,} samples in {stats.messages:,} "
                    f"messages  {stats.samples_per_s:,.0f} samples/s"))

            stats = stream(sim, [c.cell for c in cell_list], publisher, topic,
                           frame_size=frame_size, speedup=pace, on_window=show)
    _out.print(_summary(stats, topic, frame_size, meta))


def _default_start(cycles: int, c_rate: float, rest_min: float, speedup: float | None, dt: float) -> float:
    """A start time that keeps every sample time in the past of the wall clock.

    Sample time runs ``speedup`` times faster than the clock, so starting now would put
    samples in the future. The run's length is bounded by its nominal duration (each half
    at most 1/C-rate hours, one more half for the first lithiation's irreversible part, and
    the rests), so starting that much earlier, less the wall time it takes, ends at or before now.
    """
    duration = (2 * cycles + 1) * 3600.0 / c_rate + 2 * cycles * 60.0 * rest_min
    lead = duration if speedup is None else duration * (1.0 - 1.0 / speedup)
    return math.floor((time.time() - lead) / dt) * dt


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary(stats: ProduceStats, topic: str, frame_size: int, meta: bool) -> Table:
    table = Table(title=f"produced to {topic}", show_header=False)
    table.add_column(justify="right")
    table.add_column()
    shape = "single samples" if frame_size == 1 else f"frames of up to {frame_size} samples"
    rows = [
        ("cells", f"{stats.cells}" + (f" (metadata on {TOPIC_META})" if meta else "")),
        ("messages", f"{stats.messages:,} ({shape})"),
        ("samples", f"{stats.samples:,}"),
        ("payload", f"{stats.bytes / 1e6:,.1f} MB"),
        ("sample time", f"{_when(stats.t_first)} .. {_when(stats.t_last)}"),
        ("wall time", f"{stats.elapsed_s:,.1f} s"),
        ("throughput", f"{stats.samples_per_s:,.0f} samples/s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
