"""The celltwin dataflow, Kafka or embedded, and how to run it.

    Kafka cell.samples + cell.meta  ->  decode  --bad-->  dead letters
    (or the simulator: frames + meta)     |
                                          v
                 key by shard -> twin step (twin_step.ShardLogic) -> batches, dead letters, stats
    batches     -> InfluxDB (twin_state, cycle_summary, dqdv, twin_alert), Kafka cell.twin (a frame per
                   cell and batch) / cell.alerts (a record per alert), Parquet files in the output folder
    dead letters-> Kafka cell.deadletter, deadletter.jsonl
    stats       -> pipeline_health (InfluxDB), the in-process progress display

A batch (`connectors.wire.Batch`) holds the rows of one measurement as columns, and each
sink writes it as it is: no dict per point between the twin and the stores.

`build_flow` only wires steps; `run_flow` runs it (recovery, workers, processes) and
`ensure_kafka_topics` creates the topics the Kafka mode reads and writes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from connectors.config import Config, debugging
from connectors.decode import decode_message
from connectors.file_sink import OutputFolderSink, close_open_files
from connectors.kafka_admin import ensure_topics
from connectors.kafka_sink import KafkaSink
from connectors.kafka_source import KafkaSource
from connectors.outage import OutageError, clear_stop, take_held
from connectors.sim_source import SimulatorSource
from connectors.wire import (
    MEAS_ALERT, MEAS_STATE, OUT_UNDELIVERED, TOPIC_ALERTS, TOPIC_DEADLETTER, TOPIC_META, TOPIC_PARTITIONS,
    TOPIC_SAMPLES, TOPIC_TWIN, Batch, DeadLetter, Decoded, KafkaMessage,
)
from pipeline.embedded import simulated_fleet
from pipeline.health import HEALTH_KEY, HealthLogic, KafkaLag, Progress
from pipeline.shards import shard_keys, shard_of
from pipeline.stops import StopBetweenSteps, quiet_stderr
from pipeline.twin_step import ShardLogic, ShardStats, StateFormatError
from twin.kernel import warm_up

__all__ = ["TOPIC_PARTITIONS", "build_flow", "ensure_kafka_topics", "run_flow", "warm_up_twin"]


def _deadletter_message(letter: DeadLetter) -> tuple[bytes | None, bytes]:
    return letter.kafka_key(), letter.to_json()


def _decode_fresh(message: KafkaMessage) -> Decoded | None:
    """Decode; a cell.meta record read again at a restart (it is read from its start every
    time) was dead-lettered by the run that first read it, if bad: not again."""
    item = decode_message(message)
    return None if message.replayed and isinstance(item, DeadLetter) else item


def _of_kind(kind: str):
    return lambda record: record[1] if record[0] == kind else None


def _decode_stats(letter: DeadLetter) -> ShardStats:
    origin = letter.origin
    positions = {}
    if origin is not None and origin.offset is not None:
        positions[f"{origin.topic}:{origin.partition}"] = origin.offset + 1
    return ShardStats(new_cells=0, samples=0, deadletters=1, positions=positions)


def build_flow(cfg: Config, progress: Progress | None = None, keys: Sequence[str] | None = None) -> Dataflow:
    """The dataflow for `cfg`: Kafka mode if `cfg.kafka`, else embedded (simulator in).
    `keys` are the state keys of the twin's shards (`pipeline.shards.shard_layout`); by
    default those of a one-worker run.

    Sinks follow the config: InfluxDB if `cfg.influx`, Parquet + JSONL files if `cfg.out`,
    and in Kafka mode always the cell.twin / cell.alerts / cell.deadletter topics.
    `progress`, if given, is updated as batches are processed (the CLI's display).
    """
    flow = Dataflow("celltwin")
    if cfg.kafka is not None:
        source = KafkaSource(cfg.kafka.bootstrap, [TOPIC_SAMPLES, TOPIC_META], tail=not cfg.kafka.exit_when_idle,
                             start=cfg.kafka.start, group_id=cfg.kafka.group_id, from_beginning=[TOPIC_META],
                             max_outage_s=cfg.max_outage_s, consumer_config=cfg.kafka.consumer_config())
        decoded = op.filter_map("decode", op.input("kafka_in", flow, source), _decode_fresh)
    else:
        metas, make_simulation = simulated_fleet(cfg.simulator)
        decoded = op.input("simulator", flow, SimulatorSource(metas, make_simulation, cfg.simulator.frame_samples))
    checked = op.branch("valid", decoded, lambda item: not isinstance(item, DeadLetter))
    keys = list(keys) if keys is not None else shard_keys(cfg.shard_count(1), 1)
    keyed = op.key_on("shard", checked.trues, lambda item: shard_of(item.cell, keys))
    # The end of a finite input is the end of the data only if no later run resumes this state.
    finite = cfg.kafka is None or (cfg.kafka.exit_when_idle and cfg.recovery_dir is None)
    close_at_end = cfg.close_last_half and finite
    twin = op.stateful_batch("twin", keyed, lambda resume: ShardLogic(
        cfg.cells, cfg.estimate_interval_s, cfg.meta_wait_s, close_at_end, resume))
    results = op.key_rm("unkey", twin)
    batches = op.filter_map("batches", results, _of_kind("batch"))
    deadletters = op.merge("deadletters", checked.falses, op.filter_map("twin_deadletters", results, _of_kind("deadletter")))
    stats = op.merge("stats", op.filter_map("shard_stats", results, _of_kind("stats")),
                     op.map("decode_stats", checked.falses, _decode_stats))
    if progress is not None:
        op.inspect("progress", stats, lambda _step, s: progress.add(s))

    if cfg.out is not None:
        letters = op.map("deadletter_json", deadletters, lambda letter: letter.to_json())
        records = op.merge("file_records", batches, letters)
        # With recovery the files follow the snapshots exactly: a resumed run continues them.
        files = OutputFolderSink(cfg.out, exact=cfg.recovery_dir is not None)
        op.output("files_out", op.key_on("files_key", records, lambda _: "files"), files)
    # Without recovery a sink's return commits nothing: its writes may overlap the next batch.
    overlap = cfg.recovery_dir is None
    if cfg.influx is not None:
        lag = KafkaLag(cfg.kafka.bootstrap, cfg.kafka.consumer_config()) if cfg.kafka is not None else None
        health = op.stateful_batch("health", op.key_on("health_key", stats, lambda _: HEALTH_KEY),
                                   lambda resume: HealthLogic(cfg.health_interval_s, lag, resume))
        from connectors.influx_sink import InfluxSink  # its client library loads in a second: only when writing there

        influx = cfg.influx
        op.output("influx_out", op.merge("influx_batches", batches, op.key_rm("health_unkey", health)),
                  InfluxSink(influx.url, influx.token, influx.org, influx.bucket, max_outage_s=cfg.max_outage_s,
                             health_interval_s=cfg.health_interval_s, overlap=overlap))
    if cfg.kafka is not None:
        kafka = cfg.kafka.bootstrap
        producing = {"max_outage_s": cfg.max_outage_s, "producer_config": cfg.kafka.producer_config(),
                     "overlap": overlap}
        states = op.filter("twin_batches", batches, lambda b: b.measurement == MEAS_STATE)
        alerts = op.filter("alert_batches", batches, lambda b: b.measurement == MEAS_ALERT)
        op.output("twin_out", op.flat_map("twin_json", states, Batch.frames), KafkaSink(kafka, TOPIC_TWIN, **producing))
        op.output("alerts_out", op.flat_map("alert_json", alerts, Batch.records),
                  KafkaSink(kafka, TOPIC_ALERTS, **producing))
        undelivered = (cfg.out or Path()) / OUT_UNDELIVERED  # what the broker refuses, rather than stop
        op.output("deadletter_out", op.map("deadletter_kafka", deadletters, _deadletter_message),
                  KafkaSink(kafka, TOPIC_DEADLETTER, **producing, undeliverable=undelivered))
    return flow


def warm_up_twin() -> None:
    """Load the compiled twin (numba's cache, ~0.3 s) on a thread of its own while the caller
    connects or reads files: the first batch need not wait for it."""
    threading.Thread(target=warm_up, name="twin-warm-up", daemon=True).start()


def ensure_kafka_topics(cfg: Config) -> None:
    """Create the topics of Kafka mode that do not exist yet (partitions: TOPIC_PARTITIONS)."""
    if cfg.kafka is None:
        raise ValueError("no Kafka broker configured")
    ensure_topics(cfg.kafka.bootstrap, TOPIC_PARTITIONS, admin_config=cfg.kafka.admin_config())


def _recovery(cfg: Config, partitions: int, process_id: int | None) -> RecoveryConfig | None:
    """RecoveryConfig for cfg.recovery_dir, creating the partitions in a new folder.
    Process 0 creates them; the others wait for them (they share the folder)."""
    if cfg.recovery_dir is None:
        return None
    folder = cfg.recovery_dir
    if process_id in (None, 0):
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.glob("part-*")):
            init_db_dir(folder, partitions)
    else:
        deadline = time.monotonic() + 60.0
        while len(list(folder.glob("part-*"))) < partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"recovery partitions did not appear in {folder} (process 0 creates them)")
            time.sleep(0.2)
    return RecoveryConfig(str(folder))


def _interrupted(error: BaseException | None) -> bool:
    """A signal stopped the run: bytewax saw it between steps ("signal received") or
    the KeyboardInterrupt hit a step's Python code and is the cause of the error."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt) or "signal received" in str(error):
            return True
        error = error.__cause__
    return False


def _fatal(error: BaseException | None) -> OutageError | StateFormatError | None:
    """What ended the run with a one-line message of its own, if that was the cause: an
    outage that outlasted --max-outage, or recovery state another release wrote."""
    while error is not None and not isinstance(error, (OutageError, StateFormatError)):
        error = error.__cause__
    return error


def run_flow(flow: Dataflow, cfg: Config, workers: int = 1, process_id: int | None = None,
             addresses: Sequence[str] | None = None) -> bool:
    """Run `flow` here: `workers` threads, optionally as process `process_id` of the cluster
    at `addresses` ("host:port" per process); with recovery if `cfg.recovery_dir`.

    Returns False if Ctrl-C or SIGTERM (a container stop) ended the run: the output
    files then hold what was processed, closed and readable; with recovery the next run
    resumes from the last snapshot. Raises OutageError if the broker or the store was
    away longer than `cfg.max_outage_s`, StateFormatError if the recovery folder holds
    state another release wrote."""
    processes = len(addresses) if addresses else 1
    recovery = _recovery(cfg, workers * processes, process_id)
    main_thread = threading.current_thread() is threading.main_thread()
    stop = StopBetweenSteps(run_flow.__code__)
    clear_stop()  # a stop asked of an earlier run in this process is not this run's
    # Outside the main thread Python runs no signal handlers: nothing to install there.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        with quiet_stderr(stop, debugging()) if main_thread else contextlib.nullcontext():
            cli_main(
                flow,
                workers_per_process=workers,
                process_id=process_id,
                addresses=list(addresses) if addresses else None,
                epoch_interval=timedelta(seconds=cfg.epoch_interval_s),
                recovery_config=recovery,
            )
    except BytewaxRuntimeError as error:
        fatal = _fatal(error)
        if fatal is not None:
            raise fatal from None  # its one line says it all
        if not _interrupted(error):
            raise
        stop.finish()
        close_open_files()
        held = take_held()  # a sink's last write failed while the run stopped
        if isinstance(held, OutageError):
            raise held from None  # its one line says it all
        if held is not None:
            raise held
        return False
    finally:
        stop.finish()  # no signal sent again once the handlers are given back
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return True
