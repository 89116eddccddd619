"""`celltwin produce` / `replay --kafka`: broker and TLS settings checked before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CELLTWIN_KAFKA", "CELLTWIN_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def _tls_config(tmp_path: Path, cafile: Path) -> Path:
    config = tmp_path / "celltwin.toml"
    config.write_text(f'[kafka]\nbootstrap = "127.0.0.1:1"\n[kafka.client]\nsecurity_protocol = "SSL"\n'
                      f'ssl_cafile = "{cafile}"\nsasl_plain_password = "s3cret-pw"\n')
    return config


@pytest.mark.parametrize("command", [["produce"], ["replay", "--kafka", "127.0.0.1:1", "--mass-mg", "1"]])
def test_a_missing_ca_file_is_named_before_connecting(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "cell.csv"
    data.write_text("time_s,voltage_v,current_a\n0,0.5,-0.001\n10,0.49,-0.001\n")
    missing = tmp_path / "certs" / "ca.pem"
    args = [*command, "--config", str(_tls_config(tmp_path, missing))]
    result = CliRunner().invoke(app, args + ([str(data)] if command[0] == "replay" else []), env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert f"ssl_cafile: no such file: {missing}" in " ".join(result.output.split())
    assert "s3cret-pw" not in result.output


def test_produce_without_a_broker_says_where_to_name_one() -> None:
    result = CliRunner().invoke(app, ["produce"])
    assert result.exit_code == 2
    assert "no Kafka broker" in " ".join(result.output.split())


class _Recorded(Exception):
    """Stops the command once the Kafka clients would be made."""


def test_produce_takes_the_tls_and_client_tables_of_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = tmp_path / "celltwin.toml"
    config.write_text(f'[kafka]\nbootstrap = "broker:9093"\n[kafka.client]\nsecurity_protocol = "SSL"\n'
                      f'ssl_cafile = "{ca}"\nfetch_max_bytes = 1024\n[kafka.producer]\nlinger_ms = 7\n')
    made: dict[str, object] = {}

    def topics(bootstrap: str, wanted: object, *, admin_config: dict) -> None:
        made["admin"] = (bootstrap, admin_config)

    def publisher(bootstrap: str, *, producer_config: dict) -> None:
        made["producer"] = (bootstrap, producer_config)
        raise _Recorded

    monkeypatch.setattr("pipeline.produce_cmd.check_kafka", lambda bootstrap, client: made.update(preflight=(bootstrap, client)))
    monkeypatch.setattr("pipeline.produce_cmd.ensure_topics", topics)
    monkeypatch.setattr("pipeline.produce_cmd.Publisher", publisher)
    result = CliRunner().invoke(app, ["produce", "--config", str(config), "--cells", "1", "--cycles", "1"])
    assert isinstance(result.exception, _Recorded), result.output
    tls = {"security_protocol": "SSL", "ssl_cafile": str(ca)}
    assert made == {"preflight": ("broker:9093", tls), "admin": ("broker:9093", tls),
                    "producer": ("broker:9093", {**tls, "linger_ms": 7})}
