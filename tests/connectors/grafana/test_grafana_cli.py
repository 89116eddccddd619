"""``celltwin grafana generate|publish`` through Typer."""

from __future__ import annotations

from pathlib import Path

from fake_grafana import TOKEN, FakeGrafana
from typer.testing import CliRunner

from connectors.grafana.cli import grafana_app
from connectors.grafana.dashboards import DASHBOARD_UIDS

ENV = {"INFLUX_URL": "http://influxdb:8086", "INFLUX_ORG": "lab", "INFLUX_BUCKET": "cells",
       "INFLUX_TOKEN": "secret"}


def test_generate_writes_files_and_check_reports_staleness(tmp_path: Path) -> None:
    runner = CliRunner()
    stale = runner.invoke(grafana_app, ["generate", "--out", str(tmp_path), "--check"])
    assert stale.exit_code == 1

    written = runner.invoke(grafana_app, ["generate", "--out", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "alerting" / "rules.yaml").is_file()
    assert (tmp_path / "dashboards" / f"{DASHBOARD_UIDS['fleet']}.json").is_file()

    fresh = runner.invoke(grafana_app, ["generate", "--out", str(tmp_path), "--check"])
    assert fresh.exit_code == 0


def test_publish_reads_url_and_token_from_the_environment(fake_grafana: FakeGrafana) -> None:
    env = {**ENV, "GRAFANA_URL": fake_grafana.url, "GRAFANA_TOKEN": TOKEN}
    result = CliRunner().invoke(grafana_app, ["publish"], env=env)
    assert result.exit_code == 0, result.output
    assert "0 updated" in result.output
    assert f"created dashboard:{DASHBOARD_UIDS['cell']}" in result.output


def test_publish_failure_exits_non_zero_with_the_server_message(fake_grafana: FakeGrafana) -> None:
    args = ["publish", "--url", fake_grafana.url, "--token", "not-the-token"]
    result = CliRunner().invoke(grafana_app, args, env=ENV)
    assert result.exit_code == 2
    assert "401" in result.output and "invalid API key" in result.output


def test_generate_writes_below_the_current_directory_in_either_language(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # as after `pip install .`: never into the installed package
    runner = CliRunner()
    written = runner.invoke(grafana_app, ["generate", "--dialect", "influxql"])
    assert written.exit_code == 0, written.output
    rules = tmp_path / "infra" / "grafana" / "provisioning" / "alerting" / "rules.yaml"
    assert "SELECT last(" in rules.read_text()
    assert runner.invoke(grafana_app, ["generate", "--dialect", "influxql", "--check"]).exit_code == 0
    assert runner.invoke(grafana_app, ["generate", "--check"]).exit_code == 1  # Flux differs
    assert runner.invoke(grafana_app, ["generate", "--dialect", "sql"]).exit_code == 2
