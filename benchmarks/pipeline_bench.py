"""End-to-end speed of the pipeline: Kafka (or the simulator) -> twin -> store. Prints figures; asserts nothing.

    python benchmarks/pipeline_bench.py [--cells 200] [--cycles 1] [--dt 1] [--processes 1] [--load 1000] [--profile]
                                        [--only frames single latency embedded] [--store victoria|influxdb]

Starts its own Kafka broker and store (infra/services.py: VictoriaMetrics, or with
``--store influxdb`` InfluxDB OSS 1.13) and puts a small HTTP relay in front of the store
that notes when each twin_state point was stored (the store answered the write). Four
measurements:

1. throughput with frames of 100 samples: the topic is filled first (by default 200
   cells, one 1C cycle sampled at 1 Hz, composite and MgH2 cells alternating), then
   `celltwin run --exit-when-idle` reads it (``--processes N``: a cluster of N); samples/s
   counted from the process start (startup included) and from its first stored point
   (steady state), and the CPU seconds the pipeline, the broker, the store and the bench's
   relay used meanwhile (they share the machine's cores). With the default estimate
   interval of 10 s of sample time, a 1 Hz stream gives one twin_state point per 10
   samples; ``--dt 10`` makes every sample one;
2. the same with single-sample messages (``--single-cells``, one cycle);
3. produce-to-store latency at a fixed offered load: the pipeline follows the topic while
   frames are produced at ``--load`` samples/s; a frame's latency runs from its send to
   the storing of the estimate of its last sample (dt = estimate interval = 10 s, so every
   sample has one);
4. embedded: the same dataflow without Kafka, in this process (one worker): the simulator
   (``--cells``, ``--cycles``, ``--dt``) -> twin -> InfluxDB (through the relay) and the
   Parquet files of an output folder; samples/s and the CPU seconds of the run (the figure
   that other load on a shared machine disturbs least).

``--analytics-cost`` instead times the embedded pipeline (simulator -> twin -> Parquet files,
no services) with and without the per-half analytics measured from the data
(`twin.analytics`), in one run, alternating, best of ``--repeats`` each.

``--profile`` also runs the frame case (``--profile single``: the single-sample case) in this
process under cProfile (one worker, the dataflow in the calling thread) and prints the top
functions. Cell metadata comes from a
config file. Timings on a shared 2-core machine are noisy: compare figures of one run.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

from connectors.kafka_admin import empty_topic, ensure_topics  # noqa: E402
from connectors.sim_producer import (  # noqa: E402
    BLOCK_TICKS, KeyValue, Publisher, SimCell, encode_block, fleet, simulation, stream,
)
from infra.services import free_ports, start_influxdb, start_kafka, start_victoria  # noqa: E402
from connectors.wire import (  # noqa: E402
    MEAS_STATE, OUT_CYCLES, OUT_DQDV, OUT_ESTIMATES, TOPIC_ALERTS, TOPIC_DEADLETTER, TOPIC_META, TOPIC_SAMPLES,
    TOPIC_TWIN,
)

_T0 = 1_767_225_600.0
_INFLUX = ["--influx-token", "bench", "--influx-org", "bench", "--influx-bucket", "bench"]


@dataclass
class _Stored:
    """When each twin_state point (cell, sample time in ms) reached the store.

    The relay only keeps each answered write's body and time; reading their points waits
    until a figure is asked for, so that the bench's own parsing does not take CPU from the
    pipeline it measures on the same cores."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    at: dict[tuple[str, int], float] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None
    answered: list[tuple[float, bytes, bool]] = field(default_factory=list)  # (when, body, gzipped) not yet read

    def count(self, prefix: str) -> int:
        self.settle()
        with self.lock:
            return sum(1 for cell, _ in self.at if cell.startswith(prefix))

    def settle(self) -> None:
        """Note the points of every answered write."""
        measurement = f"{MEAS_STATE},".encode()
        with self.lock:
            answered, self.answered = self.answered, []
        for now, body, gzipped in answered:
            seen = []
            for line in (gzip.decompress(body) if gzipped else body).splitlines():
                if line.startswith(measurement):
                    tags = line.split(b" ", 1)[0].split(b",")
                    cell = next(t[5:] for t in tags if t.startswith(b"cell="))
                    seen.append((cell.decode(), int(line.rsplit(b" ", 1)[1])))
            with self.lock:
                for key in seen:
                    self.at.setdefault(key, now)
                if seen:
                    self.first = min(self.first or now, now)
                    self.last = max(self.last or now, now)


def _relay(store_url: str, stored: _Stored) -> ThreadingHTTPServer:
    """An HTTP server that forwards writes to the store and keeps what was stored when."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
            request = urllib.request.Request(store_url + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, reply = answer.status, answer.read()
            except urllib.error.HTTPError as error:  # the store's refusal goes back to the pipeline
                status, reply = error.code, error.read()
            now = time.time()
            self.send_response(status)
            self.end_headers()
            self.wfile.write(reply)
            self.wfile.flush()
            if status < 300:
                with stored.lock:
                    stored.answered.append((now, body, self.headers.get("Content-Encoding") == "gzip"))

        def log_message(self, *args: object) -> None:
            """Quiet: one line per request would drown the figures."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _messages(cells: Sequence[SimCell], cycles: int, frame_size: int, dt: float = 10.0) -> tuple[list[KeyValue], int]:
    sim = simulation(cells, cycles, dt=dt, t0=_T0)
    ids = [c.cell for c in cells]
    records: list[KeyValue] = []
    count = 0
    for block in sim.blocks(block_ticks=BLOCK_TICKS):
        count += int(block.valid.sum())
        for _, _, messages in encode_block(block, ids, frame_size):
            records.extend(messages)
    return records, count


def _empty_samples(bootstrap: str) -> None:
    """Each phase reads only its own samples."""
    empty_topic(bootstrap, TOPIC_SAMPLES)


def _config(cells: Sequence[SimCell], path: Path) -> Path:
    path.write_text("".join(f'[cells."{c.cell}"]\npreset = "{c.preset}"\nmass_mg = {c.mass_mg}\n'
                            f"c_rate = {c.c_rate}\n" for c in cells))
    return path


def _run_cmd(bootstrap: str, relay: str, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--kafka", bootstrap, "--influx-url", relay, *_INFLUX,
            "--config", str(config), "--no-report", *extra]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _throughput(name: str, bootstrap: str, relay: str, stored: _Stored, work: Path, cells: int, cycles: int,
                frame_size: int, dt: float, processes: int, services: dict[str, int]) -> None:
    prefix = f"{name}-"
    members = fleet(cells, "mixed", prefix=prefix)
    records, samples = _messages(members, cycles, frame_size, dt)
    _empty_samples(bootstrap)
    with Publisher(bootstrap) as publisher:
        publisher.send(TOPIC_SAMPLES, records)
        publisher.flush()
    stored.first = stored.last = None
    cmd = _run_cmd(bootstrap, relay, _config(members, work / f"{name}.toml"), "--exit-when-idle")
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(processes))
    cluster = [[*cmd, "-i", str(k), "-a", addresses] for k in range(processes)] if processes > 1 else [cmd]
    cpu = {service: _cpu_s(pid) for service, pid in services.items()}
    cpu_children, cpu_bench = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
    started = time.time()
    with (work / f"{name}.log").open("wb") as log:
        running = [subprocess.Popen(c, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT) for c in cluster]
        if any(p.wait() != 0 for p in running):
            raise RuntimeError(f"the pipeline failed: {(work / f'{name}.log').read_text()[-3000:]}")
    wall = time.time() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"pipeline": children.ru_utime + children.ru_stime - cpu_children.ru_utime - cpu_children.ru_stime,
           **{service: _cpu_s(pid) - cpu[service] for service, pid in services.items()},
           "bench relay": time.process_time() - cpu_bench}
    done = stored.count(prefix)  # (once every answered write is noted)
    assert stored.first is not None and stored.last is not None
    first, last = stored.first - started, stored.last - started
    steady = (f"{samples / (last - first):,.0f} samples/s between the first and the last"
              if last - first > 0.5 else "all stored in one go at the end")
    print(f"{name:>8}: {len(records):,} messages, {samples:,} samples, {done:,} estimates stored"
          f"{f' by {processes} processes' if processes > 1 else ''}; "
          f"{samples / last:,.0f} samples/s from process start (first stored point after {first:.1f} s, "
          f"last after {last:.1f} s; {steady})")
    # Where the cores went: the broker and the store share them with the pipeline.
    services_s = sum(cpu[service] for service in services)
    print(f"{'':>8}  CPU seconds over the run's {wall:.1f} s on {os.cpu_count()} cores: "
          + ", ".join(f"{who} {seconds:.1f}" for who, seconds in cpu.items())
          + f"; the broker and the store alone leave room for {samples * os.cpu_count() / services_s:,.0f} "
            "samples/s at most")


def _latency(bootstrap: str, relay: str, stored: _Stored, work: Path, cells: int, load: float,
             duration_s: float) -> None:
    prefix = "latency-"
    members = fleet(cells, "mixed", prefix=prefix)
    warm = fleet(1, "mixed", prefix="warmup-")
    config = _config([*members, *warm], work / "latency.toml")
    _empty_samples(bootstrap)
    log = (work / "latency.log").open("wb")
    process = subprocess.Popen(_run_cmd(bootstrap, relay, config), cwd=_REPO, stdout=log, stderr=subprocess.STDOUT)
    sent: dict[tuple[str, int], float] = {}

    class Recording(Publisher):
        def send(self, topic: str, messages) -> None:
            messages = list(messages)
            super().send(topic, messages)
            now = time.time()
            for key, value in messages:
                sent[(key.decode(), round(json.loads(value)["t"][-1] * 1000))] = now

    try:
        # Warm-up: the run is up once a first frame's estimate is stored.
        records, _ = _messages(warm, 1, 100)
        with Publisher(bootstrap) as publisher:
            publisher.send(TOPIC_SAMPLES, records[:1])
            publisher.flush()
        give_up = time.monotonic() + 120
        while stored.count("warmup-") == 0:
            if process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"pipeline not up: {(work / 'latency.log').read_text()[-3000:]}")
            time.sleep(0.2)
        # `load` samples/s: each cell reports every 10 s of sample time.
        speedup = load * 10.0 / cells
        cycles = max(1, int(np.ceil(duration_s * speedup / 7200.0)))
        sim = simulation(members, cycles, dt=10.0, t0=time.time() - 10.0)
        with Recording(bootstrap, producer_config={"linger_ms": 0}) as publisher:
            deadline = time.time() + duration_s

            def stop_when_due(_stats: object) -> None:
                if time.time() > deadline:
                    raise _Enough

            try:
                stream(sim, [c.cell for c in members], publisher, TOPIC_SAMPLES, frame_size=100, speedup=speedup,
                       on_window=stop_when_due)
            except _Enough:
                publisher.flush()
        time.sleep(5.0)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    stored.settle()
    with stored.lock:
        pairs = np.array([(t, stored.at[k] - t) for k, t in sent.items() if k in stored.at])
    when, latencies = pairs[:, 0] - min(sent.values()), pairs[:, 1]
    lost = len(sent) - latencies.size
    p99 = np.percentile(latencies, 99)
    print(f" latency: offered {load:,.0f} samples/s in frames of 100 from {cells} cells for {duration_s:.0f} s: "
          f"{latencies.size} frames, p50 {np.percentile(latencies, 50) * 1000:,.0f} ms, "
          f"p99 {p99 * 1000:,.0f} ms, max {latencies.max() * 1000:,.0f} ms"
          + (f" ({lost} frames not stored within 5 s of the end)" if lost else ""))
    # Whether the slow frames are one stall or spread out: when they were sent.
    slow = np.sort(when[latencies >= p99])
    print(f"          the slowest 1 % ({slow.size} frames) were sent at {', '.join(f'{s:.1f}' for s in slow[:20])} s"
          f" (of {when.max():.0f} s); p99 without the first 5 s: "
          f"{np.percentile(latencies[when >= 5.0], 99) * 1000:,.0f} ms")


class _Enough(Exception):
    """The latency run has produced for its duration."""


def _embedded(relay: str, work: Path, cells: int, cycles: int, dt: float) -> None:
    from bytewax.testing import run_main

    from connectors.config import load_config
    from pipeline.dataflow import build_flow
    from pipeline.health import Progress

    cfg = load_config(env={}, flags={
        "out": str(work / "embedded"), "simulator.cells": cells, "simulator.cycles": cycles, "simulator.dt": dt,
        "influx.url": relay, "influx.token": "bench", "influx.org": "bench", "influx.bucket": "bench"})
    progress = Progress()
    flow = build_flow(cfg, progress)
    cpu, started = time.process_time(), time.perf_counter()
    run_main(flow)
    cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
    samples = progress.snapshot()[0]
    print(f"embedded: {cells} cells, {samples:,} samples, InfluxDB and Parquet: {samples / elapsed:,.0f} samples/s "
          f"({elapsed:.1f} s), CPU {cpu:.1f} s = {samples / cpu:,.0f} samples per CPU second")


def _profile(bootstrap: str, relay: str, work: Path, cells: int, cycles: int, frame_size: int, dt: float,
             top: int) -> None:
    from bytewax.testing import run_main

    from connectors.config import load_config
    from pipeline.dataflow import build_flow

    prefix = "profile-"
    members = fleet(cells, "mixed", prefix=prefix)
    records, samples = _messages(members, cycles, frame_size, dt)
    _empty_samples(bootstrap)
    with Publisher(bootstrap) as publisher:
        publisher.send(TOPIC_SAMPLES, records)
        publisher.flush()
    cfg = load_config(_config(members, work / "profile.toml"), env={}, flags={
        "kafka.bootstrap": bootstrap, "kafka.exit_when_idle": True, "influx.url": relay, "influx.token": "bench",
        "influx.org": "bench", "influx.bucket": "bench"})
    flow = build_flow(cfg)
    profiler = cProfile.Profile()
    started = time.process_time()
    profiler.runcall(run_main, flow)
    elapsed = time.process_time() - started
    print(f"\nprofile: {samples:,} samples in frames of {frame_size}, one worker "
          f"in-process, {elapsed:.1f} s under cProfile; top {top} by own time:")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"top {top} by cumulative time:\n{out.getvalue()}")


def _analytics_cost(cells: int, cycles: int, dt: float, repeats: int) -> None:
    """Wall time of the embedded pipeline with and without the analytics (`ShardLogic(measure=...)`)."""
    from functools import partial

    from bytewax.testing import run_main

    import pipeline.dataflow as dataflow
    from connectors.config import load_config
    from pipeline.twin_step import ShardLogic

    samples = 0
    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for measure in (False, True):
            with tempfile.TemporaryDirectory() as out:
                cfg = load_config(None, env={}, flags={
                    "simulator.cells": cells, "simulator.cycles": cycles, "simulator.dt": dt,
                    "simulator.frame_samples": 100, "out": out})
                dataflow.ShardLogic = partial(ShardLogic, measure=measure)
                try:
                    started = time.process_time()
                    run_main(dataflow.build_flow(cfg))
                    best[measure] = min(best[measure], time.process_time() - started)
                finally:
                    dataflow.ShardLogic = ShardLogic
                if measure:
                    samples = pq.read_table(Path(out) / OUT_ESTIMATES).num_rows
                    halves = pq.read_table(Path(out) / OUT_CYCLES).num_rows
                    curves = pq.read_table(Path(out) / OUT_DQDV).num_rows
    # The twin step alone on frames made beforehand: the analytics' share of the step itself.
    from connectors.wire import Frame
    from pipeline.embedded import simulated_fleet

    metas, make_simulation = simulated_fleet(cfg.simulator)
    frames = []
    for block in make_simulation().blocks():
        for start in range(0, block.t.size, 100):  # interleaved, as the simulator source sends them
            for row, meta in enumerate(metas):
                keep = block.valid[row, start : start + 100]
                if keep.any():
                    part = (row, slice(start, start + 100))
                    frames.append(Frame(meta.cell, block.t[start : start + 100][keep], block.v[part][keep],
                                        block.i[part][keep], block.temp_c[part][keep]))
    step_best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for measure in (False, True):
            logic = ShardLogic({m.cell: m for m in metas}, cfg.estimate_interval_s, close_at_end=True, measure=measure)
            started = time.process_time()
            for k in range(0, len(frames), len(metas)):
                logic.on_batch(frames[k : k + len(metas)])
            logic.on_eof()
            step_best[measure] = min(step_best[measure], time.process_time() - started)
    print(f"embedded, {cells} cells x {cycles} cycles at 1C, dt {dt:g} s, frames of 100 ({samples:,} estimates, "
          f"{halves} half-cycles, {curves:,} dQ/dV points); best of {repeats}:")
    print(f"  without analytics {best[False]:.2f} s, with {best[True]:.2f} s: "
          f"{100 * (best[True] / best[False] - 1):+.1f} %")
    print(f"  the twin step alone (batches of one frame per cell): without {step_best[False]:.2f} s, with "
          f"{step_best[True]:.2f} s: {100 * (step_best[True] / step_best[False] - 1):+.1f} %")


_CASES = ("frames", "single", "latency", "embedded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="cells of the frame throughput run")
    parser.add_argument("--cycles", type=int, default=1, help="1C cycles per cell (composite and MgH2 cells alternate)")
    parser.add_argument("--dt", type=float, default=1.0,
                        help="sampling interval of the throughput runs, s (1 = a 1 Hz cycler, one estimate per "
                             "10 samples; 10 = one estimate per sample, the worst case)")
    parser.add_argument("--processes", type=int, default=1,
                        help="pipeline processes of the throughput runs (a cluster: -i/-a)")
    parser.add_argument("--single-cells", type=int, default=10, help="cells of the single-sample run (1 cycle)")
    parser.add_argument("--load", type=float, default=1000.0, help="offered load of the latency run, samples/s")
    parser.add_argument("--latency-cells", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the latency run")
    parser.add_argument("--profile", nargs="?", const="frames", choices=("frames", "single"),
                        help="also profile a case in-process: frames (the default) or single-sample messages")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--analytics-cost", action="store_true",
                        help="only time the embedded pipeline with and without the measured analytics")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case of --analytics-cost")
    parser.add_argument("--only", nargs="+", choices=_CASES, default=_CASES, help="run only these measurements")
    parser.add_argument("--store", choices=("victoria", "influxdb"), default="victoria",
                        help="the time-series store written to: VictoriaMetrics, or InfluxDB OSS 1.13 "
                             "(built by infra/influxdb/build.sh)")
    options = parser.parse_args()
    if options.analytics_cost:
        _analytics_cost(options.cells, options.cycles, options.dt, options.repeats)
        return
    # A SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C: the services are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    store = start_influxdb(databases=("bench",)) if options.store == "influxdb" else start_victoria()
    with start_kafka() as kafka, store, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ensure_topics(kafka.address, {TOPIC_SAMPLES: 4, TOPIC_META: 1, TOPIC_TWIN: 4, TOPIC_ALERTS: 1,
                                      TOPIC_DEADLETTER: 1})
        stored = _Stored()
        relay = _relay(store.address, stored)
        relay_url = f"http://127.0.0.1:{relay.server_address[1]}"
        try:
            print(f"Kafka {kafka.address}, {store.name} {store.address} behind {relay_url}")
            services = {"broker": kafka.process.pid, "store": store.process.pid}
            if "frames" in options.only:
                _throughput("frames", kafka.address, relay_url, stored, work, options.cells, options.cycles, 100,
                            options.dt, options.processes, services)
            if "single" in options.only:
                _throughput("single", kafka.address, relay_url, stored, work, options.single_cells, 1, 1, options.dt,
                            options.processes, services)
            if "latency" in options.only:
                _latency(kafka.address, relay_url, stored, work, options.latency_cells, options.load,
                         options.duration)
            if "embedded" in options.only:
                _embedded(relay_url, work, options.cells, options.cycles, options.dt)
            if options.profile == "frames":
                _profile(kafka.address, relay_url, work, options.cells, options.cycles, 100, options.dt, options.top)
            elif options.profile == "single":
                _profile(kafka.address, relay_url, work, options.single_cells, 1, 1, options.dt, options.top)
        finally:
            relay.shutdown()


if __name__ == "__main__":
    main()
