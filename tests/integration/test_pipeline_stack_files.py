"""The files users run the stack from: docker compose, the image, the example config.

No Docker engine runs here, so these are held against what they refer to: the compose
file parses, mounts and builds point at files that exist, every variable it gives the
pipeline is one `celltwin run` reads, commands are real `celltwin` commands with real
options, and the example configuration loads.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.main import get_command

from connectors.config import ENV_VARS
from pipeline.cli import app

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _options(command: str) -> set[str]:
    return {name for param in get_command(app).commands[command].params for name in getattr(param, "opts", [])}


def test_compose_has_the_stack_and_the_demo_profile() -> None:
    services = _compose()["services"]
    assert set(services) == {"kafka", "influxdb", "grafana", "pipeline", "producer"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["influxdb"]["image"].startswith("influxdb:2")
    assert services["grafana"]["image"].startswith("grafana/grafana:11")
    assert services["producer"]["profiles"] == ["demo"]
    for name in ("pipeline", "producer"):
        build = services[name]["build"]
        assert (INFRA / build["context"] / build["dockerfile"]).is_file()
    # Both wait for a broker that answers, the pipeline for the store too.
    assert services["pipeline"]["depends_on"] == {"kafka": {"condition": "service_healthy"},
                                                  "influxdb": {"condition": "service_healthy"}}


def test_grafana_gets_the_provisioning_and_what_the_data_source_reads() -> None:
    grafana = _compose()["services"]["grafana"]
    source, target, mode = grafana["volumes"][0].split(":")
    assert (INFRA / source).is_dir() and target == "/etc/grafana/provisioning" and mode == "ro"
    datasource = (INFRA / source / "datasources" / "influxdb.yaml").read_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", datasource))
    assert wanted and wanted <= set(grafana["environment"])
    assert grafana["environment"]["INFLUX_URL"] == "http://influxdb:8086"


def test_pipeline_is_configured_by_variables_it_reads() -> None:
    pipeline = _compose()["services"]["pipeline"]
    given = {k for k in pipeline["environment"]}
    assert given <= set(ENV_VARS), sorted(given - set(ENV_VARS))
    assert {"CELLTWIN_KAFKA", "CELLTWIN_INFLUX_URL", "CELLTWIN_INFLUX_TOKEN", "CELLTWIN_INFLUX_ORG",
            "CELLTWIN_INFLUX_BUCKET", "CELLTWIN_RECOVERY_DIR"} <= given
    command = pipeline["command"]
    assert command[0] == "run"
    assert {arg for arg in command[1:] if arg.startswith("-")} <= _options("run")


def test_demo_producer_uses_real_options() -> None:
    command = _compose()["services"]["producer"]["command"]
    assert command[0] == "produce"
    assert {arg for arg in command[1:] if arg.startswith("-")} <= _options("produce")
    assert command[command.index("--kafka") + 1] == "kafka:9092"


def test_image_is_built_from_the_package_only() -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.MULTILINE)
    repo = INFRA.parent
    assert copied and all((repo / path).exists() for path in copied)
    assert re.search(r'^ENTRYPOINT \["celltwin"\]', dockerfile, flags=re.MULTILINE)
    # The context is the repository root: the ignore file keeps the broker jars out of it.
    rules = [line for line in (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules[0] == "**" and {"!twin/**", "!pipeline/**", "!connectors/**", "!pyproject.toml"} <= set(rules)
