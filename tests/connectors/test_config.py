"""Configuration layers: file < environment < flags, and the checks that keep runs honest."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import ConfigError, load_config
from connectors.wire import CellMeta

FILE = """
out = "from-file"
estimate_interval_s = 30

[kafka]
bootstrap = "file-broker:9092"
[kafka.client]
security_protocol = "SASL_SSL"
sasl_mechanism = "PLAIN"

[influx]
url = "http://file-influx:8086"
token = "file-token"
org = "lab"
bucket = "twin"

[simulator]
cells = 4

[cells.A01]
preset = "nd4mg80ni8"
mass_mg = 1.5
c_rate = 0.1

[cells.B02]
composition = "MgH2=0.6,Nd2H5=0.4"
mass_mg = 2
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "celltwin.toml"
    path.write_text(FILE)
    return path


def test_defaults_are_embedded_without_outputs() -> None:
    cfg = load_config(env={})

    assert cfg.embedded and cfg.kafka is None and cfg.influx is None and cfg.out is None
    assert (cfg.simulator.cells, cfg.simulator.cycles, cfg.simulator.c_rate, cfg.simulator.dt) == (6, 3, 1.0, 10.0)
    assert cfg.shards is None and cfg.shard_count(workers=3) == 3  # one per worker
    assert cfg.estimate_interval_s == 10.0 and cfg.cells == {}


def test_file_settings_client_table_and_cell_metadata(config_file: Path) -> None:
    cfg = load_config(config_file, env={})

    assert cfg.kafka.bootstrap == "file-broker:9092" and not cfg.kafka.exit_when_idle
    assert cfg.kafka.client == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}
    assert cfg.influx.url == "http://file-influx:8086" and cfg.influx.bucket == "twin"
    assert cfg.out == Path("from-file") and cfg.estimate_interval_s == 30.0 and cfg.simulator.cells == 4
    assert cfg.shards is None
    assert cfg.cells["A01"] == CellMeta(cell="A01", mass_mg=1.5, preset="nd4mg80ni8", c_rate=0.1)
    assert cfg.cells["B02"].label == "MgH2=0.6,Nd2H5=0.4" and cfg.cells["B02"].mass_mg == 2.0


def test_environment_overrides_file_and_flags_override_both(config_file: Path) -> None:
    env = {"CELLTWIN_CONFIG": str(config_file), "CELLTWIN_KAFKA": "env-broker:9092",
           "CELLTWIN_INFLUX_TOKEN": "env-token", "CELLTWIN_OUT": "from-env", "CELLTWIN_SHARDS": "8"}
    cfg = load_config(env=env, flags={"out": "from-flag", "kafka.bootstrap": None, "kafka.exit_when_idle": True})

    assert cfg.kafka.bootstrap == "env-broker:9092"  # a flag left at None does not override
    assert cfg.kafka.exit_when_idle
    assert cfg.influx.token == "env-token" and cfg.influx.org == "lab"
    assert cfg.out == Path("from-flag") and cfg.shards == 8 and cfg.shard_count(workers=3) == 8


@pytest.mark.parametrize(("text", "words"), [
    ("[kafka]\nbootstrp = 'x:1'\n", "unknown settings"),
    ("shards = 0\n", "shards"),
    ("[influx]\nurl = 'http://x'\n", "missing ['bucket', 'org', 'token']"),
    ("[kafka.client]\nsecurity_protocol = 'SSL'\n", "no broker"),
    ("[cells.A01]\npreset = 'mgh2'\n", "mass_mg"),
    ("[cells.A01]\nmass_mg = 1\n", "exactly one of preset, composition or generic"),
    ("[cells.A01]\npreset = 'nope'\nmass_mg = 1\n", "unknown preset"),
    ("shards = [", "cannot read config file"),
])
def test_bad_files_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert words in str(raised.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"\$CELLTWIN_ESTIMATE_INTERVAL_S"):
        load_config(env={"CELLTWIN_ESTIMATE_INTERVAL_S": "soon"})


def test_kafka_settings_split_by_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: kafka-python reads it")
    path = tmp_path / "celltwin.toml"
    path.write_text(f"""
[kafka]
bootstrap = "b:9093"
start = "end"
[kafka.client]
security_protocol = "SSL"
ssl_cafile = "{ca}"
fetch_max_bytes = 1048576     # a consumer setting: the producer and admin client refuse it
linger_ms = 20                # a producer setting
[kafka.consumer]
max_partition_fetch_bytes = 65536
[kafka.admin]
request_timeout_ms = 5000
""")
    kafka = load_config(path, env={}).kafka
    assert kafka is not None and kafka.start == "end" and kafka.group_id == "celltwin"
    tls = {"security_protocol": "SSL", "ssl_cafile": str(ca)}
    assert kafka.consumer_config() == {**tls, "fetch_max_bytes": 1048576, "max_partition_fetch_bytes": 65536}
    assert kafka.producer_config() == {**tls, "linger_ms": 20}
    assert kafka.admin_config() == {**tls, "request_timeout_ms": 5000}


@pytest.mark.parametrize(("table", "words"), [
    ("[kafka.client]\nfetch_max_bytez = 1\n", "[kafka.client]: ['fetch_max_bytez'] not settings of any kafka-python client"),
    ("[kafka.producer]\nfetch_max_bytes = 1\n", "[kafka.producer]: ['fetch_max_bytes'] not settings of the kafka-python producer"),
    ("[kafka.client]\nssl_cafile = '/nowhere/ca.pem'\n", "[kafka.client] ssl_cafile: no such file: /nowhere/ca.pem"),
    ("start = 'earliest'\n", "expected one of ['beginning', 'committed', 'end']"),
])
def test_bad_kafka_settings_name_the_key(tmp_path: Path, table: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[kafka]\nbootstrap = 'b:1'\n{table}")
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert words in str(raised.value)


def test_a_secret_is_not_echoed_in_a_kafka_table_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[kafka]\nbootstrap = 'b:1'\n[kafka.consumer]\nsasl_plain_password = 'hunter2'\nbogus = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert "bogus" in str(raised.value) and "hunter2" not in str(raised.value)


def test_max_outage_and_start_from_the_environment() -> None:
    cfg = load_config(env={"CELLTWIN_KAFKA": "b:1", "CELLTWIN_MAX_OUTAGE_S": "90", "CELLTWIN_KAFKA_START": "beginning",
                           "CELLTWIN_KAFKA_GROUP_ID": "lab-a"})
    assert cfg.max_outage_s == 90.0 and cfg.kafka is not None
    assert (cfg.kafka.start, cfg.kafka.group_id) == ("beginning", "lab-a")
    assert load_config(env={}).max_outage_s is None  # no limit unless asked


EXAMPLE = Path(__file__).parents[2] / "infra" / "celltwin.example.toml"
# The example's commented lines that switch a copy to Kafka + InfluxDB with recovery.
_LIVE_KEYS = ("[kafka]", "bootstrap", "exit_when_idle", "start", "group_id",
              "[influx]", "url", "token", "org", "bucket", "recovery_dir")


def test_the_example_config_runs_embedded_and_documents_the_finite_run_keys(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, env={})
    assert cfg.kafka is None and cfg.influx is None and cfg.recovery_dir is None
    assert cfg.close_last_half is True and cfg.meta_wait_s == 30.0 and cfg.health_interval_s == 10.0
    assert (cfg.simulator.cells, cfg.simulator.cycles) == (6, 3)
    assert set(cfg.cells) == {"A01", "A02"} and cfg.cells["A02"].composition is not None

    live = tmp_path / "live.toml"
    live.write_text("\n".join(line[2:] if line.startswith("# ") and line[2:].startswith(_LIVE_KEYS) else line
                              for line in EXAMPLE.read_text().splitlines()))
    cfg = load_config(live, env={})
    assert cfg.kafka is not None and cfg.kafka.bootstrap == "localhost:9094"
    assert cfg.influx is not None and cfg.recovery_dir is not None


def test_a_finite_run_closes_its_last_half_by_default() -> None:
    assert load_config(env={}).close_last_half is True
    assert load_config(env={"CELLTWIN_CLOSE_LAST_HALF": "false"}).close_last_half is False
