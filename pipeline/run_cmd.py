"""`celltwin run`: the main job, embedded by default, Kafka + InfluxDB when configured.

With nothing configured it simulates a small fleet (composite and MgH2 cells, a few 1C
cycles at 10 s sampling, accelerated time), runs the full dataflow on it and leaves
Parquet files, dead letters and an HTML report in `./celltwin-out`. Every setting
can also come from a TOML file (`--config`) or `CELLTWIN_*` variables; see
`connectors.config` for the file format and the order in which they apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connectors.config import Config, ConfigError, load_config
from connectors.outage import OutageError
from connectors.preflight import check_folder, check_influx, check_kafka
from connectors.wire import (
    OUT_ALERTS, OUT_CYCLES, OUT_DEADLETTER, OUT_ESTIMATES, TOPIC_ALERTS, TOPIC_DEADLETTER, TOPIC_TWIN,
)
from pipeline.dataflow import build_flow, ensure_kafka_topics, run_flow, warm_up_twin
from pipeline.flags import COMPOSITION, CONFIG, DT, MIXED_CELLS, PRESET, REPORT, REST, SEED, invocation
from pipeline.health import Progress
from pipeline.report import build_report
from pipeline.report_data import fmt, forget_other_jobs, load_cells, summarize, write_run_info
from pipeline.shards import shard_layout
from pipeline.twin_step import StateFormatError

__all__ = ["run", "DEFAULT_OUT"]

DEFAULT_OUT = Path("celltwin-out")

_err = Console(stderr=True)


def _progress_view(progress: Progress, mode: str) -> Text:
    samples, cells, deadletters, elapsed = progress.snapshot()
    rate = samples / elapsed if elapsed > 0 else 0.0
    return Text.assemble(
        (f"{mode}: ", "bold"), f"{samples:,} samples ({rate:,.0f}/s), {cells} cells, ",
        (f"{deadletters:,} dead letters", "red" if deadletters else ""), f", {elapsed:.0f} s",
    )


def _summary_table(out: Path) -> Table:
    """Per cell: its cycles, capacity, retention, risks and alerts, in 80 columns for a
    cell id of up to 7 characters (headers over two lines, one space between columns)."""
    table = Table(title="cells", box=box.SIMPLE_HEAD, show_edge=False, padding=0)  # a blank between columns
    retention = "retention\n(twin)"  # measured, the twin's in brackets
    for column in ("cell", "preset", "cycles", "capacity\nmAh/g", retention, "imped.\ngrowth",
                   "crack\nrisk", "phase\nsep risk", "alerts\n(crit.)"):
        # The retention pair stays whole; a longer cell id wraps rather than cut the rest.
        table.add_column(column, justify="left" if column in ("cell", "preset") else "right",
                         no_wrap=column == retention, overflow="fold")

    for cell in load_cells(out):
        row = summarize(cell)
        table.add_row(row.cell, row.preset, str(row.cycles), fmt(row.capacity_mah_g, "{:.0f}"),
                      row.retention_text(), fmt(row.impedance_growth, "{:+.1%}"),
                      fmt(row.crack_risk, "{:.2f}"), fmt(row.phase_sep_risk, "{:.2f}"),
                      f"{row.alerts} ({row.critical_alerts})")
    return table


def _where(cfg: Config, report: Path | None) -> list[str]:
    lines = []
    if cfg.out is not None:
        files = [cfg.out / name for name in (OUT_ESTIMATES, OUT_CYCLES, OUT_ALERTS, OUT_DEADLETTER)]
        written = [str(path) for path in files if path.exists()]
        lines.append(f"files: {', '.join(written)}" if written else f"files: none written to {cfg.out} (no data)")
    if report is not None:
        lines.append(f"report: {report}")
    if cfg.influx is not None:
        lines.append(f"InfluxDB: {cfg.influx.url}, org {cfg.influx.org}, bucket {cfg.influx.bucket}")
    if cfg.kafka is not None:
        lines.append(f"Kafka {cfg.kafka.bootstrap}: topics {TOPIC_TWIN}, {TOPIC_ALERTS}, {TOPIC_DEADLETTER}")
    return lines


def _preflight(cfg: Config) -> None:
    """Fail in seconds, with what to do, on what would otherwise fail inside the dataflow."""
    if cfg.out is not None:
        check_folder(cfg.out, "--out (or CELLTWIN_OUT)")
    if cfg.recovery_dir is not None:
        check_folder(cfg.recovery_dir, "--recovery-dir (or CELLTWIN_RECOVERY_DIR)")
    if cfg.kafka is not None:
        check_kafka(cfg.kafka.bootstrap, cfg.kafka.admin_config())
    if cfg.influx is not None:
        check_influx(cfg.influx.url, cfg.influx.token, cfg.influx.org, cfg.influx.bucket)


def _run_with_display(flow, cfg: Config, progress: Progress, mode: str, workers: int,
                      process_id: int | None, peers: list[str] | None) -> bool:
    """Run the flow under a live progress line; False if stopped by a signal (Ctrl-C, SIGTERM)."""
    with Live(get_renderable=lambda: _progress_view(progress, mode), console=_err, refresh_per_second=4,
              transient=True):
        return run_flow(flow, cfg, workers=workers, process_id=process_id, addresses=peers)


def _run_facts(cfg: Config) -> dict[str, str]:
    """The report header's account of a run's input."""
    if cfg.kafka is not None:
        return {"input": f"Kafka {cfg.kafka.bootstrap}, topic cell.samples", "C-rate": "per cell, from its metadata"}
    sim = cfg.simulator
    return {"input": f"simulator: {sim.cells} cells ({sim.composition or sim.preset}), {sim.cycles} cycles, "
                     f"a sample every {sim.dt:g} s",
            "C-rate": f"{sim.c_rate:g}C" + (f", {sim.rest_min:g} min rest after each half" if sim.rest_min else ""),
            "seed": str(sim.seed)}


def run(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", envvar="CELLTWIN_CONFIG", exists=True, dir_okay=False,
                                                   help=CONFIG)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder for Parquet files, dead letters and the "
                                                     f"report (embedded default: ./{DEFAULT_OUT}).")] = None,
    kafka: Annotated[Optional[str], typer.Option(help="Kafka bootstrap host:port: read cell.samples and cell.meta "
                                                      "instead of simulating (env CELLTWIN_KAFKA).")] = None,
    exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle", help="Kafka mode: stop at the end of the "
                                                 "partitions as of startup (tests, batch jobs); default: follow "
                                                 "forever.")] = False,
    influx_url: Annotated[Optional[str], typer.Option(help="InfluxDB URL; with token, org and bucket, results "
                                                           "are written there (env CELLTWIN_INFLUX_URL).")] = None,
    influx_token: Annotated[Optional[str], typer.Option(help="InfluxDB API token; better from the environment "
                                                             "(CELLTWIN_INFLUX_TOKEN) or --influx-token-file: a flag "
                                                             "shows in the process list.")] = None,
    influx_token_file: Annotated[Optional[Path], typer.Option(help="File holding the InfluxDB API token (env "
                                                                   "CELLTWIN_INFLUX_TOKEN_FILE).")] = None,
    influx_org: Annotated[Optional[str], typer.Option(help="InfluxDB organisation (env CELLTWIN_INFLUX_ORG).")] = None,
    influx_bucket: Annotated[Optional[str], typer.Option(help="InfluxDB bucket (env CELLTWIN_INFLUX_BUCKET).")] = None,
    cells: Annotated[Optional[int], typer.Option(help="Embedded: simulated cells (default 6).")] = None,
    preset: Annotated[Optional[str], typer.Option(help=f"{PRESET}{MIXED_CELLS} Embedded; default mixed.")] = None,
    composition: Annotated[Optional[str], typer.Option(help=f"{COMPOSITION} Embedded.")] = None,
    cycles: Annotated[Optional[int], typer.Option(help="Embedded: constant-current cycles (default 3).")] = None,
    c_rate: Annotated[Optional[float], typer.Option("--c-rate", help="Embedded: C-rate of the cycles (default 1).")] = None,
    rest_min: Annotated[Optional[float], typer.Option("--rest-min", help=f"{REST} Embedded; default 0.")] = None,
    dt: Annotated[Optional[float], typer.Option(help=f"{DT} Embedded; default 10.")] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"{SEED} Embedded; default 0.")] = None,
    shards: Annotated[Optional[int], typer.Option(help="State shards: cells of a shard are stepped together, "
                                                       "shards spread over workers (default: one per worker; a "
                                                       "recovery folder keeps the layout it started with).")] = None,
    estimate_interval: Annotated[Optional[float], typer.Option(help="One twin_state point per cell per this many "
                                                                    "seconds of sample time (default 10).")] = None,
    recovery_dir: Annotated[Optional[Path], typer.Option(help="Snapshot state here and resume from it on restart "
                                                              "(created if empty).")] = None,
    epoch_interval: Annotated[Optional[float], typer.Option(help="Seconds between snapshots with recovery (default 2).")] = None,
    max_outage: Annotated[Optional[float], typer.Option(help="Stop with exit status 1 once the broker or the store "
                                                             "has been unreachable this many seconds (default: wait "
                                                             "for it however long; env CELLTWIN_MAX_OUTAGE_S).")] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker threads in this process.")] = 1,
    process_id: Annotated[Optional[int], typer.Option("--process-id", "-i", min=0,
                                                      help="This process's index in --addresses.")] = None,
    addresses: Annotated[Optional[str], typer.Option("--addresses", "-a", help="All processes of a cluster, "
                                                     "'host:port;host:port' (same list everywhere).")] = None,
    report: Annotated[bool, typer.Option(help=REPORT)] = True,
) -> None:
    """Run the twin: embedded (simulator in, files and a report out) or Kafka -> InfluxDB/Kafka.

    Without a broker it runs embedded: a simulator stands in for the cyclers, and the
    results and an HTML report go to ./celltwin-out. With --kafka (or CELLTWIN_KAFKA, or
    a kafka table in the config file) it reads cell.samples and cell.meta and writes
    cell.twin, cell.alerts and cell.deadletter, plus InfluxDB when configured. Flags
    override CELLTWIN_* variables, which override the config file.
    """
    flags: dict[str, Any] = {
        "out": str(out) if out else None, "kafka.bootstrap": kafka, "kafka.exit_when_idle": exit_when_idle or None,  # unset: file/env decide
        "influx.url": influx_url, "influx.token": influx_token,
        "influx.token_file": str(influx_token_file) if influx_token_file else None, "influx.org": influx_org,
        "influx.bucket": influx_bucket, "simulator.cells": cells,
        "simulator.preset": preset, "simulator.composition": composition, "simulator.cycles": cycles,
        "simulator.c_rate": c_rate, "simulator.rest_min": rest_min, "simulator.dt": dt, "simulator.seed": seed, "shards": shards,
        "estimate_interval_s": estimate_interval, "recovery_dir": str(recovery_dir) if recovery_dir else None,
        "epoch_interval_s": epoch_interval, "max_outage_s": max_outage,
    }
    try:
        cfg = load_config(config, flags=flags)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None
    if cfg.embedded and cfg.out is None:
        cfg = load_config(config, flags={**flags, "out": str(DEFAULT_OUT)})
    peers = [a.strip() for a in addresses.split(";") if a.strip()] if addresses else None
    if (process_id is None) != (peers is None):
        raise typer.BadParameter("--process-id and --addresses go together")
    warm_up_twin()
    _preflight(cfg)
    if cfg.out is not None and process_id in (None, 0):
        forget_other_jobs(cfg.out)
        write_run_info(cfg.out, invocation(ctx), _run_facts(cfg))
    if cfg.kafka is not None:
        ensure_kafka_topics(cfg)
    mode = "embedded" if cfg.embedded else f"Kafka {cfg.kafka.bootstrap}"
    progress = Progress()
    try:
        keys = shard_layout(cfg, workers * (len(peers) if peers else 1))
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None
    try:
        finished = _run_with_display(build_flow(cfg, progress, keys), cfg, progress, mode, workers, process_id, peers)
    except (OutageError, StateFormatError) as error:
        _err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if finished:
        _err.print(_progress_view(progress, f"{mode}, done"))
    else:
        resume = f"; the next run resumes from {cfg.recovery_dir}" if cfg.recovery_dir else ""
        _err.print(_progress_view(progress, f"{mode}, stopped") + Text(resume))
    report_path = None
    # In a cluster the output folder has one writer; process 0 alone reads it back.
    lead = process_id in (None, 0)
    if lead and cfg.out is not None and (cfg.out / OUT_ESTIMATES).exists():
        table = _summary_table(cfg.out)
        if table.row_count:
            Console().print(table)
        if report:
            report_path = build_report(cfg.out)  # also after a stop: of what was processed
    for line in _where(cfg, report_path):
        typer.echo(line)  # plain lines, unwrapped: paths for people and scripts alike
    if not finished:
        raise typer.Exit(130)
