"""The configuration of `celltwin run`: TOML file, then environment, then flags.

One typed, frozen `Config` is all the dataflow reads. Layers apply in a fixed order,
each overriding the one before: the file (`--config` or `CELLTWIN_CONFIG`), the
environment (`CELLTWIN_*`, what containers set), then the command-line flags. Unknown
keys are errors: a misspelt `bootstrap` must not silently mean "run embedded".

    out = "celltwin-out"            # local Parquet/JSONL output folder
    shards = 2                      # twin state groups [one per worker of the run]
    estimate_interval_s = 10.0      # one twin_state point per cell per this much sample time
    health_interval_s = 10.0        # pipeline_health points, wall time
    epoch_interval_s = 2.0          # bytewax epoch = snapshot interval with recovery
    meta_wait_s = 30.0              # frames of a cell without metadata wait this long for it
    close_last_half = true          # a finite input's end closes each cell's open half-cycle
                                    # (false: leave it open, as a run that is resumed later must)
    recovery_dir = "/var/lib/celltwin/recovery"
    max_outage_s = 600.0            # stop (exit 1) if the broker or store is away longer [no limit]

    [kafka]
    bootstrap = "broker:9092"
    exit_when_idle = false          # stop at the end of the partitions as of startup
    start = "committed"             # without recovery state: "committed" offsets of the group
                                    # (else the first record), "end" (new records only), "beginning"
    group_id = "celltwin"           # the consumer group that commits the offsets read
    [kafka.client]                  # kafka-python settings of every client (TLS/SASL)
    security_protocol = "SASL_SSL"
    sasl_mechanism = "PLAIN"
    ssl_cafile = "/etc/celltwin/ca.pem"
    [kafka.consumer]                # ... of the consumer only (also: producer, admin)
    fetch_max_bytes = 52428800

A key of ``[kafka.client]`` goes to each client that knows it (kafka-python's consumer,
producer and admin client take different settings); one no client knows, or one in a
client's own table that this client does not know, is an error, as is a file setting
(``ssl_cafile``, ``ssl_certfile``...) naming no readable file.

    [influx]
    url = "http://influx:8086"
    token_file = "/run/secrets/influx-token"   # or token = "..." (or $CELLTWIN_INFLUX_TOKEN)
    org = "lab"
    bucket = "celltwin"

    [simulator]                     # embedded mode only
    preset = "mixed"                # nd4mg80ni8, mgh2, or mixed (alternating); or composition = "..."
    cells = 6
    cycles = 3
    c_rate = 1.0
    dt = 10.0
    seed = 0

    [cells.A01]                     # metadata of a cell (or publish it to cell.meta)
    preset = "nd4mg80ni8"           # or composition = "MgH2=0.53,Mg2NiH4=0.28,Nd2H5=0.19"
    mass_mg = 1.0
    c_rate = 0.1
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from connectors.kafka_source import START_POLICIES
from connectors.meta import meta_from_mapping
from connectors.wire import CellMeta, MetaError
from twin.params import MIXED, PRESETS, preset

__all__ = [
    "ConfigError",
    "KafkaConfig",
    "InfluxConfig",
    "SimulatorConfig",
    "Config",
    "ENV_VARS",
    "debugging",
    "load_config",
    "kafka_config",
]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the setting and its source."""


# Each kafka-python client, by the name of its settings table, and the settings it takes.
_KAFKA_CLIENTS: Mapping[str, frozenset[str]] = MappingProxyType({
    "consumer": frozenset(KafkaConsumer.DEFAULT_CONFIG),
    "producer": frozenset(KafkaProducer.DEFAULT_CONFIG),
    "admin": frozenset(KafkaAdminClient.DEFAULT_CONFIG),
})
# Settings that name a file the client reads when it connects (TLS material).
_KAFKA_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str
    client: Mapping[str, Any] = field(default_factory=dict)  # kafka-python extras for every client: TLS/SASL
    exit_when_idle: bool = False
    start: str = "committed"  # where partitions without recovery state start: connectors.kafka_source
    group_id: str = "celltwin"
    consumer: Mapping[str, Any] = field(default_factory=dict)  # extras of one client only
    producer: Mapping[str, Any] = field(default_factory=dict)
    admin: Mapping[str, Any] = field(default_factory=dict)

    def consumer_config(self) -> dict[str, Any]:
        return self._settings("consumer")

    def producer_config(self) -> dict[str, Any]:
        return self._settings("producer")

    def admin_config(self) -> dict[str, Any]:
        return self._settings("admin")

    def _settings(self, kind: str) -> dict[str, Any]:
        known = _KAFKA_CLIENTS[kind]
        return {**{k: v for k, v in self.client.items() if k in known}, **getattr(self, kind)}


@dataclass(frozen=True)
class InfluxConfig:
    url: str
    token: str
    org: str
    bucket: str


@dataclass(frozen=True)
class SimulatorConfig:
    """The embedded run's cells: alternating composite and MgH2 electrodes, CC cycling."""

    preset: str = MIXED  # a preset name or MIXED
    composition: str | None = None  # instead of the preset: phase mass fractions
    cells: int = 6
    cycles: int = 3
    c_rate: float = 1.0
    rest_min: float = 0.0  # rest after each half (cycler schedules rest; its steps show resistance)
    dt: float = 10.0
    seed: int = 0
    frame_samples: int = 60  # samples per frame, as a cycler would batch them


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig | None = None  # None: embedded (simulator in)
    influx: InfluxConfig | None = None
    out: Path | None = None  # local output folder
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    cells: Mapping[str, CellMeta] = field(default_factory=dict)
    # Cells of a shard are stepped in one numpy call, whose cost is mostly fixed, and
    # shards spread over workers (pipeline.shards). None: one per worker of the run, the
    # most cells per call that keeps every worker busy (200 cells on one worker measured
    # 46k samples/s end to end with 1 shard, 24k with 8).
    shards: int | None = None
    estimate_interval_s: float = 10.0
    health_interval_s: float = 10.0
    epoch_interval_s: float = 2.0
    meta_wait_s: float = 30.0
    # When the input ends for good (embedded, replay, a Kafka batch run without recovery),
    # report each cell's last half-cycle, which no current reversal will close.
    close_last_half: bool = True
    recovery_dir: Path | None = None
    max_outage_s: float | None = None  # None: ride out broker and store outages however long

    @property
    def embedded(self) -> bool:
        return self.kafka is None

    def shard_count(self, workers: int) -> int:
        """The shards of a run with `workers` workers in all its processes."""
        return self.shards if self.shards is not None else workers


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    number = int(value)
    if number != float(value) or number < 1:
        raise ValueError("expected an integer >= 1")
    return number


def _number(value: Any, *, zero_ok: bool) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    number = float(value)
    if not (math.isfinite(number) and (number >= 0 if zero_ok else number > 0)):
        raise ValueError("expected a number >= 0" if zero_ok else "expected a positive number")
    return number


def _positive(value: Any) -> float:
    return _number(value, zero_ok=False)


def _not_negative(value: Any) -> float:
    return _number(value, zero_ok=True)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _start(value: Any) -> str:
    text = _text(value)
    if text not in START_POLICIES:
        raise ValueError(f"expected one of {sorted(START_POLICIES)}")
    return text


def _preset(value: Any) -> str:
    name = _text(value).lower()
    if name != MIXED and name not in PRESETS:
        raise ValueError(f"unknown preset: choose one of {sorted(PRESETS)} or {MIXED} (alternating)")
    return name


def _composition(value: Any) -> str:
    preset(_text(value))  # ValueError saying what does not parse
    return _text(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or int(value) != float(value):
        raise ValueError("expected an integer")
    return int(value)


# Every scalar setting: dotted name -> parser. The dotted name is the TOML path, the
# flag's keyword in `load_config(flags=...)`, and (upper-cased) the environment suffix.
_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "out": _text,
    "shards": _integer,
    "estimate_interval_s": _positive,
    "health_interval_s": _positive,
    "epoch_interval_s": _positive,
    "meta_wait_s": _positive,
    "close_last_half": _flag,
    "recovery_dir": _text,
    "max_outage_s": _positive,
    "kafka.bootstrap": _text,
    "kafka.exit_when_idle": _flag,
    "kafka.start": _start,
    "kafka.group_id": _text,
    "influx.url": _text,
    "influx.token": _text,
    "influx.token_file": _text,
    "influx.org": _text,
    "influx.bucket": _text,
    "simulator.preset": _preset,
    "simulator.composition": _composition,
    "simulator.cells": _integer,
    "simulator.cycles": _integer,
    "simulator.c_rate": _positive,
    "simulator.rest_min": _not_negative,
    "simulator.dt": _positive,
    "simulator.seed": _seed,
    "simulator.frame_samples": _integer,
}

ENV_VARS: Mapping[str, str] = MappingProxyType({
    "CELLTWIN_KAFKA": "kafka.bootstrap",
    "CELLTWIN_EXIT_WHEN_IDLE": "kafka.exit_when_idle",
    "CELLTWIN_KAFKA_START": "kafka.start",
    "CELLTWIN_KAFKA_GROUP_ID": "kafka.group_id",
    "CELLTWIN_MAX_OUTAGE_S": "max_outage_s",
    "CELLTWIN_INFLUX_URL": "influx.url",
    "CELLTWIN_INFLUX_TOKEN": "influx.token",
    "CELLTWIN_INFLUX_TOKEN_FILE": "influx.token_file",
    "CELLTWIN_INFLUX_ORG": "influx.org",
    "CELLTWIN_INFLUX_BUCKET": "influx.bucket",
    "CELLTWIN_OUT": "out",
    "CELLTWIN_SHARDS": "shards",
    "CELLTWIN_ESTIMATE_INTERVAL_S": "estimate_interval_s",
    "CELLTWIN_HEALTH_INTERVAL_S": "health_interval_s",
    "CELLTWIN_EPOCH_INTERVAL_S": "epoch_interval_s",
    "CELLTWIN_META_WAIT_S": "meta_wait_s",
    "CELLTWIN_CLOSE_LAST_HALF": "close_last_half",
    "CELLTWIN_RECOVERY_DIR": "recovery_dir",
})


# Settings whose values never appear in a message.
_SECRETS = frozenset({"influx.token"})


def debugging() -> bool:
    """`--debug` (or $CELLTWIN_DEBUG): show tracebacks and the dataflow's own error output."""
    try:
        return _flag(os.environ.get("CELLTWIN_DEBUG", ""))
    except ValueError:
        return False


def _flatten(table: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Scalar settings by dotted name, the kafka-python tables by name ("client",
    "consumer"...), the [cells] tables."""
    flat: dict[str, Any] = {}
    clients: dict[str, Any] = {}
    cells: dict[str, Any] = {}
    for key, value in table.items():
        if key == "cells":
            cells = dict(value)
        elif key in ("kafka", "influx", "simulator") and isinstance(value, Mapping):
            for sub, item in value.items():
                if key == "kafka" and (sub == "client" or sub in _KAFKA_CLIENTS):
                    clients[sub] = _kafka_table(sub, item, source)
                else:
                    flat[f"{key}.{sub}"] = item
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(_SETTINGS))
    if unknown:
        raise ConfigError(f"{source}: unknown settings {unknown}; known: {sorted(_SETTINGS)}")
    return flat, clients, cells


def _kafka_table(name: str, table: Any, source: str) -> dict[str, Any]:
    """A [kafka.<name>] table of kafka-python settings, checked (keys only are named in
    errors: values may be secrets)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [kafka.{name}] must be a table of kafka-python settings")
    known = frozenset().union(*_KAFKA_CLIENTS.values()) if name == "client" else _KAFKA_CLIENTS[name]
    unknown = sorted(set(table) - known)
    if unknown:
        who = "any kafka-python client" if name == "client" else f"the kafka-python {name}"
        raise ConfigError(f"{source}: [kafka.{name}]: {unknown} not settings of {who}")
    for key in _KAFKA_FILES:
        path = table.get(key)
        if path is not None and not (isinstance(path, str) and Path(path).is_file()):
            raise ConfigError(f"{source}: [kafka.{name}] {key}: no such file: {path}")
    return dict(table)


def _cells(tables: Mapping[str, Any], source: str) -> dict[str, CellMeta]:
    metas = {}
    for cell, table in tables.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [cells.{cell}] must be a table (preset/composition, mass_mg, c_rate)")
        try:
            metas[cell] = meta_from_mapping(cell, table)
        except MetaError as error:
            raise ConfigError(f"{source}: [cells.{cell}]: {error}") from None
    return metas


def _section(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(prefix + ".")}


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """The configuration from a TOML file, the environment and flags (None = not given).

    `path` defaults to `$CELLTWIN_CONFIG`; `env` to `os.environ`; `flags` are dotted
    setting names (`"kafka.bootstrap"`, `"simulator.cells"`, ...) with their values.
    """
    env = os.environ if env is None else env
    path = path or (Path(env["CELLTWIN_CONFIG"]) if env.get("CELLTWIN_CONFIG") else None)
    raw: dict[str, tuple[Any, str]] = {}
    clients: dict[str, Any] = {}
    cell_tables: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from None
        flat, clients, cell_tables = _flatten(table, str(path))
        raw.update({name: (value, f"{path}: {name}") for name, value in flat.items()})
    for var, name in ENV_VARS.items():
        if env.get(var, "") != "":
            raw[name] = (env[var], f"${var}")
    for name, value in (flags or {}).items():
        if name not in _SETTINGS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            raw[name] = (value, f"option {name}")
    values: dict[str, Any] = {}
    for name, (value, source) in raw.items():
        try:
            values[name] = _SETTINGS[name](value)
        except (TypeError, ValueError) as error:
            shown = "" if name in _SECRETS else f" = {value!r}"
            raise ConfigError(f"{source}{shown}: {error}") from None
    return _assemble(values, clients, _cells(cell_tables, str(path)))


def kafka_config(path: Path | None, bootstrap: str | None) -> KafkaConfig:
    """The broker and kafka-python settings (TLS/SASL) of `celltwin run`: ``bootstrap``
    (``--kafka``), else ``$CELLTWIN_KAFKA``, else the config file's [kafka] table, which
    also holds the client settings. ConfigError if none names a broker."""
    cfg = load_config(path, flags={"kafka.bootstrap": bootstrap})
    if cfg.kafka is None:
        raise ConfigError("no Kafka broker: give --kafka, $CELLTWIN_KAFKA or [kafka] bootstrap in the --config file")
    return cfg.kafka


def _simulator(values: dict[str, Any]) -> SimulatorConfig:
    if "preset" in values and "composition" in values:
        raise ConfigError("give the simulator a preset or a composition, not both")
    return SimulatorConfig(**values)


def _read_token(path: Path) -> str:
    """The token in a file (a mounted secret, say): its text without surrounding space."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ConfigError(f"cannot read the InfluxDB token file {path}: {reason}") from None
    if not token:
        raise ConfigError(f"the InfluxDB token file {path} is empty")
    return token


def _assemble(values: dict[str, Any], clients: dict[str, Any], cells: dict[str, CellMeta]) -> Config:
    kafka = None
    kafka_values = _section(values, "kafka")
    if "bootstrap" in kafka_values:
        kafka = KafkaConfig(**kafka_values, **clients)
    elif clients or kafka_values:
        raise ConfigError("Kafka settings given but no broker: set kafka.bootstrap, $CELLTWIN_KAFKA or --kafka")
    influx = None
    given = _section(values, "influx")
    if "token_file" in given:
        if "token" in given:
            raise ConfigError("InfluxDB token given twice: set the token or the token file, not both")
        given["token"] = _read_token(Path(given.pop("token_file")))
    if given:
        missing = sorted({"url", "token", "org", "bucket"} - set(given))
        if missing:
            raise ConfigError(f"InfluxDB output needs url, token, org and bucket; missing {missing} "
                              "(flags --influx-*, $CELLTWIN_INFLUX_*, or [influx] in the config file)")
        influx = InfluxConfig(**given)
    return Config(
        kafka=kafka,
        influx=influx,
        out=Path(values["out"]) if "out" in values else None,
        simulator=_simulator(_section(values, "simulator")),
        cells=dict(cells),
        shards=values.get("shards"),
        estimate_interval_s=values.get("estimate_interval_s", 10.0),
        health_interval_s=values.get("health_interval_s", 10.0),
        epoch_interval_s=values.get("epoch_interval_s", 2.0),
        meta_wait_s=values.get("meta_wait_s", 30.0),
        close_last_half=values.get("close_last_half", True),
        recovery_dir=Path(values["recovery_dir"]) if "recovery_dir" in values else None,
        max_outage_s=values.get("max_outage_s"),
    )
