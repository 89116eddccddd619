"""Start and stop the real services that integration tests and local development use.

Three services, each a child process on free loopback ports with its data in a fresh
temporary folder:

- Apache Kafka, one node in KRaft mode (broker and controller in one JVM), from the jars
  that ``infra/kafka/fetch.sh`` resolves from Maven Central;
- InfluxDB OSS 1.13, built once by ``infra/influxdb/build.sh``: influxdb-client's v2 writes
  (``/api/v2/write``, bucket = database), Flux (``/api/v2/query``) and InfluxQL (``/query``),
  the queries of the Grafana dashboards and alert rules;
- VictoriaMetrics, which accepts the same v2 writes and exports them raw (``/api/v1/export``).

A start returns only once the service just started answers (Kafka serves metadata of the
new cluster id, VictoriaMetrics is healthy and names the new data folder), never another
instance that held the port (InfluxDB names its own config file); a start that fails raises
:class:`ServiceError` carrying the tail of the service's log, so CI shows why. Fault tests take
a service away and bring it back on the same port with the same data (:func:`pause_service`,
:func:`resume_service`). Run one in the foreground for development::

    python infra/services.py kafka [--port 9092]
    python infra/services.py victoria [--port 8428]
    python infra/services.py influxdb [--port 8086]    # with a database "celltwin"
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

__all__ = [
    "INFLUXD_ENV",
    "KAFKA_LIBS_ENV",
    "RunningService",
    "ServiceError",
    "default_influxd",
    "default_kafka_libs",
    "free_ports",
    "pause_service",
    "resume_service",
    "start_influxdb",
    "start_kafka",
    "start_victoria",
]

KAFKA_LIBS_ENV = "CELLTWIN_KAFKA_LIBS"
INFLUXD_ENV = "CELLTWIN_INFLUXD"
INFLUXDB_VERSION = "1.13.2"
_REPO = Path(__file__).resolve().parent.parent
_LOG4J_CONFIG = Path(__file__).resolve().parent / "kafka" / "log4j2.properties"
_LOG_TAIL_CHARS = 6000


class ServiceError(RuntimeError):
    """A service could not be started; the message ends with the tail of its log."""


@dataclass
class RunningService:
    """A started service: where to reach it, and how to stop it."""

    name: str
    address: str  # "127.0.0.1:PORT" for Kafka, "http://127.0.0.1:PORT" for the HTTP stores
    process: subprocess.Popen[bytes]
    workdir: Path  # temporary: data and log, removed by stop()
    log_path: Path
    sasl_address: str | None = None  # Kafka started with SASL users: its SASL/PLAIN listener
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The end of the service's log (empty if it wrote none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-chars:]

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, wait up to ``timeout_s`` for a clean shutdown, then SIGKILL; remove data."""
        if self._stopped:
            return
        self._stopped = True
        _end_process(self.process, timeout_s)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def default_kafka_libs() -> Path:
    """Where ``infra/kafka/fetch.sh`` puts the broker jars (``$CELLTWIN_KAFKA_LIBS`` wins)."""
    override = os.environ.get(KAFKA_LIBS_ENV)
    return Path(override) if override else _REPO / ".services" / "kafka" / "libs"


def start_kafka(
    libs: Path | None = None, *, port: int | None = None, sasl_users: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> RunningService:
    """Start a single-node KRaft broker on 127.0.0.1; ``address`` is its bootstrap server.

    Topics are not auto-created (as on a production broker), so a dataflow that reads a
    topic nobody created fails loudly instead of reading an empty one. With ``sasl_users``
    (user -> password) the broker also listens for SASL_PLAINTEXT with PLAIN at
    ``sasl_address``, where only those users get in.
    """
    libs = libs or default_kafka_libs()
    java = shutil.which("java")
    if java is None:
        raise ServiceError("kafka: no `java` on PATH (the broker needs Java 17 or newer)")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"kafka: no broker jars in {libs}; run `bash infra/kafka/fetch.sh`")

    port, controller_port = (port, free_ports()[0]) if port else free_ports(2)
    sasl_port = free_ports()[0] if sasl_users else None
    workdir = Path(tempfile.mkdtemp(prefix="celltwin-kafka-"))
    properties = workdir / "server.properties"
    properties.write_text(_kafka_properties(port, controller_port, workdir / "data", sasl_port, sasl_users))
    log_path = workdir / "kafka.log"
    cluster_id = _kafka_cluster_id()
    base = [
        java,
        "-Xms256m",
        "-Xmx512m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        "-cp",
        str(libs / "*"),
    ]
    # KRaft refuses to start on an unformatted log dir; --standalone makes this node the
    # sole voter of the metadata quorum (Kafka 4 dynamic quorum), with a fresh cluster id.
    with log_path.open("wb") as log:
        try:
            returncode = subprocess.run(
                [*base, "kafka.tools.StorageTool", "format", "--standalone",
                 "-t", cluster_id, "-c", str(properties)],
                stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = None
    if returncode != 0:
        text = log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServiceError(f"kafka: formatting the storage failed ({returncode=}):\n{text}")

    service = _spawn("kafka", [*base, "kafka.Kafka", str(properties)], workdir, log_path,
                     address=f"127.0.0.1:{port}")
    service.sasl_address = f"127.0.0.1:{sasl_port}" if sasl_port else None
    _wait_ready(service, lambda: _kafka_serves_metadata(service.address, cluster_id), timeout_s)
    return service


def default_influxd() -> Path:
    """Where ``infra/influxdb/build.sh`` puts influxd (``$CELLTWIN_INFLUXD`` wins): a cache
    outside the repository, so a fresh clone (CI) reuses the binary built before."""
    override = os.environ.get(INFLUXD_ENV)
    if override:
        return Path(override)
    cache = os.environ.get("CELLTWIN_CACHE") or Path.home() / ".cache" / "celltwin"
    return Path(cache) / f"influxdb-{INFLUXDB_VERSION}" / "influxd"


def start_influxdb(
    binary: Path | None = None, *, port: int | None = None, databases: tuple[str, ...] = (),
    admin: tuple[str, str] | None = None, timeout_s: float = 60.0,
) -> RunningService:
    """Start InfluxDB OSS 1.x on 127.0.0.1 with Flux enabled; ``address`` is its base URL.
    ``databases`` are created (a v2 write's bucket is a database that must exist). Auth is
    off, or with ``admin = (user, password)`` on, with that admin user (a v2 token is
    ``"user:password"``)."""
    binary = binary or default_influxd()
    if not os.access(binary, os.X_OK):
        raise ServiceError(f"influxdb: no influxd at {binary}; run `bash infra/influxdb/build.sh`")
    port, rpc_port = (port, free_ports()[0]) if port else free_ports(2)
    workdir = Path(tempfile.mkdtemp(prefix="celltwin-influxdb-"))
    config = workdir / "influxdb.conf"
    # influxd's own defaults, with these settings applied (INFLUXDB_<SECTION>_<KEY> overrides
    # a key), so a newer influxd's new keys keep their defaults.
    settings = {
        "INFLUXDB_REPORTING_DISABLED": "true",
        "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{rpc_port}",
        "INFLUXDB_META_DIR": str(workdir / "meta"),
        "INFLUXDB_DATA_DIR": str(workdir / "data"),
        "INFLUXDB_DATA_WAL_DIR": str(workdir / "wal"),
        "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false",
        "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{port}",
        "INFLUXDB_HTTP_FLUX_ENABLED": "true",
        "INFLUXDB_HTTP_LOG_ENABLED": "false",
        "INFLUXDB_MONITOR_STORE_ENABLED": "false",
        "INFLUXDB_HTTP_AUTH_ENABLED": "true" if admin else "false",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")} | settings
    try:
        generated = subprocess.run([str(binary), "config"], env=env, capture_output=True,
                                   timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as error:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServiceError(f"influxdb: `{binary} config` failed: {error}") from error
    if generated.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServiceError(f"influxdb: `{binary} config` exited with {generated.returncode}:\n"
                           f"{generated.stderr.decode(errors='replace')[-_LOG_TAIL_CHARS:]}")
    config.write_bytes(generated.stdout)
    service = _spawn("influxdb", [str(binary), "run", "-config", str(config)], workdir,
                     workdir / "influxdb.log", address=f"http://127.0.0.1:{port}")
    _wait_ready(service, lambda: _influxdb_serves(service.address, config), timeout_s)
    if admin:  # the first user may be made without credentials, and must be an admin
        _influxql(service.address, f"CREATE USER \"{admin[0]}\" WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES")
    for database in databases:
        _influxql(service.address, f'CREATE DATABASE "{database}"', admin)
    return service


def start_victoria(*, port: int | None = None, timeout_s: float = 30.0) -> RunningService:
    """Start VictoriaMetrics on 127.0.0.1; ``address`` is its base URL."""
    binary = shutil.which("victoria-metrics")
    if binary is None:
        raise ServiceError(
            "victoria: no `victoria-metrics` on PATH (Debian: apt-get install victoria-metrics)"
        )
    port = port or free_ports()[0]
    workdir = Path(tempfile.mkdtemp(prefix="celltwin-victoria-"))
    args = [
        binary,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={workdir / 'data'}",
        # Samples of one series with the same timestamp collapse into one, as re-written
        # points do in InfluxDB; without it a replay would double every sample.
        "-dedup.minScrapeInterval=1ms",
        # The default (1 month) silently drops older samples: archived runs are older.
        "-retentionPeriod=100y",
    ]
    service = _spawn("victoria", args, workdir, workdir / "victoria.log",
                     address=f"http://127.0.0.1:{port}")
    _wait_ready(service, lambda: _victoria_serves(service.address, workdir), timeout_s)
    return service


def pause_service(service: RunningService, timeout_s: float = 20.0) -> None:
    """Stop the service's process as :meth:`RunningService.stop` does, but keep its data
    folder and port, for :func:`resume_service`: an outage, as clients see one."""
    _end_process(service.process, timeout_s)


def resume_service(service: RunningService, timeout_s: float = 60.0) -> None:
    """Start a paused service again with the same command line, port and data folder;
    return once it answers (Kafka: with the cluster id it had, so the same cluster)."""
    if service.process.poll() is None:
        raise ServiceError(f"{service.name}: still running; pause it first")
    args = [str(arg) for arg in service.process.args]
    restarted = _spawn(service.name, args, service.workdir, service.log_path, address=service.address,
                       append=True)
    service.process = restarted.process
    _wait_ready(service, _answers(service), timeout_s)


def _answers(service: RunningService) -> Callable[[], bool]:
    """How to tell that ``service`` (restarted in its own folder) answers."""
    if service.name == "kafka":
        meta = (service.workdir / "data" / "meta.properties").read_text()
        cluster_id = next(line.split("=", 1)[1].strip() for line in meta.splitlines()
                          if line.startswith("cluster.id="))
        return lambda: _kafka_serves_metadata(service.address, cluster_id)
    if service.name == "victoria":
        return lambda: _victoria_serves(service.address, service.workdir)
    if service.name == "influxdb":
        return lambda: _influxdb_serves(service.address, service.workdir / "influxdb.conf")
    host, _, port = service.address.rpartition("/")[2].rpartition(":")
    return lambda: _accepts(host, int(port))


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _end_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s`` for a clean shutdown, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct loopback ports nobody holds right now.

    They are released at once for the caller to bind. Another process could take one
    in between: rare on loopback, and the start then fails with "Address already in
    use" rather than silently."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:  # all held at once: distinct ports
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _kafka_cluster_id() -> str:
    # Kafka's own format: 16 random bytes, URL-safe base64 without padding. Kafka avoids
    # ids starting with "-" because command lines would read them as options.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _kafka_properties(port: int, controller_port: int, data: Path, sasl_port: int | None = None,
                      sasl_users: Mapping[str, str] | None = None) -> str:
    sasl = [f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}"] if sasl_port else []
    # PLAIN checks the users named in the listener's JAAS line (user_NAME="password").
    accounts = " ".join(f'user_{user}="{password}"' for user, password in (sasl_users or {}).items())
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            "listeners=" + ",".join([f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{controller_port}",
                                     *sasl]),
            "advertised.listeners=" + ",".join([f"PLAINTEXT://127.0.0.1:{port}", *sasl]),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            *([] if not sasl else [
                "sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {accounts};",
            ]),
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"log.dirs={data}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            # One node: internal topics cannot have more than one replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Fewer internal partitions start faster; nothing here needs their parallelism.
            "offsets.topic.num.partitions=1",
            "transaction.state.log.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def _kafka_serves_metadata(bootstrap: str, cluster_id: str) -> bool:
    # The cluster id tells our broker from another one that already held the port.
    # Imported here so `python infra/services.py victoria` needs no Kafka client.
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    # A refused connection costs the admin client its whole bootstrap timeout: ask it only
    # once the listener accepts, and give it little time so a dying broker is noticed soon.
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                 bootstrap_timeout_ms=3000)
    except KafkaError:
        return False
    try:
        cluster = admin.describe_cluster()
        return cluster["cluster_id"] == cluster_id and any(
            not broker.get("is_fenced", False) for broker in cluster["brokers"]
        )
    except KafkaError:
        return False
    finally:
        admin.close()


def _victoria_serves(url: str, workdir: Path) -> bool:
    # Healthy, and ours: its exported flags name our data folder, so another instance
    # that already held the port is not taken for the one just started.
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if response.status != 200:
                return False
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
            return str(workdir) in response.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return False


def _influxdb_serves(url: str, config: Path) -> bool:
    # Answering, and ours: the command line it reports names our config file.
    try:
        with urllib.request.urlopen(f"{url}/debug/vars", timeout=2) as response:
            return str(config) in json.loads(response.read()).get("cmdline", [])
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _influxql(url: str, statement: str, user: tuple[str, str] | None = None) -> None:
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode({"q": statement}).encode())
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        errors = [r["error"] for r in json.loads(response.read()).get("results", []) if "error" in r]
    if errors:
        raise ServiceError(f"influxdb: {statement!r} failed: {errors}")


def _spawn(
    name: str, args: list[str], workdir: Path, log_path: Path, *, address: str, append: bool = False
) -> RunningService:
    with log_path.open("ab" if append else "wb") as log:
        # A session of its own: a Ctrl-C meant for the test run or the foreground runner
        # does not reach the service, which stop() then shuts down in order.
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=workdir, start_new_session=True,
        )
    return RunningService(name, address, process, workdir, log_path)


def _wait_ready(service: RunningService, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if service.process.poll() is not None:
                problem = f"exited with code {service.process.returncode}"
                break
            if ready():
                return
            if time.monotonic() > deadline:
                problem = f"not ready after {timeout_s:.0f} s"
                break
            time.sleep(0.25)
    except BaseException:
        service.stop()  # an interrupted start must not leave an orphan service behind
        raise
    log = service.log_tail()
    service.stop()
    raise ServiceError(f"{service.name}: {problem}; end of its log:\n{log}")


def _main() -> None:
    parser = argparse.ArgumentParser(description="Run one service in the foreground.")
    parser.add_argument("service", choices=["kafka", "victoria", "influxdb"])
    parser.add_argument("--port", type=int, help="listen port (default: any free port)")
    options = parser.parse_args()
    # SIGTERM (e.g. from a process manager) takes the same clean path as Ctrl-C; SIGINT is
    # set explicitly because a shell starting this in the background may have ignored it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if options.service == "kafka":
            service = start_kafka(port=options.port)
        elif options.service == "influxdb":
            service = start_influxdb(port=options.port, databases=("celltwin",))
        else:
            service = start_victoria(port=options.port)
    except ServiceError as error:
        sys.exit(str(error))
    except KeyboardInterrupt:  # stopped while starting: the start has cleaned up already
        sys.exit(130)
    print(f"{service.name} ready at {service.address} (log: {service.log_path}); Ctrl-C stops",
          flush=True)
    try:
        service.process.wait()
        sys.exit(f"{service.name} exited with code {service.process.returncode}:\n"
                 f"{service.log_tail()}")
    except KeyboardInterrupt:
        print(f"stopping {service.name}")  # Ctrl-C is how a foreground service is meant to end
    finally:
        service.stop()


if __name__ == "__main__":
    _main()
