"""The publisher against a local HTTP server that behaves like Grafana's API."""

from __future__ import annotations

import socket

import pytest
from fake_grafana import TOKEN, FakeGrafana

from connectors.grafana.alerts import RULE_GROUP, alert_rules
from connectors.grafana.dashboards import DASHBOARD_UIDS, FOLDER_UID
from connectors.grafana import notifications
from connectors.grafana.datasource import DATASOURCE_UID, InfluxSettings
from connectors.grafana.generate import render
from connectors.grafana.notifications import Notify
from connectors.grafana.publisher import PublishError, publish

INFLUX = InfluxSettings(url="http://influxdb:8086", org="lab", bucket="cells", token="influx-secret")
RULE_UIDS = {rule["uid"] for rule in alert_rules()}


def test_first_publish_creates_everything_with_the_right_payloads(fake_grafana: FakeGrafana) -> None:
    report = publish(fake_grafana.url, TOKEN, INFLUX)

    assert report.grafana_version == "11.2.0"
    assert report.updated == []
    source = fake_grafana.datasources[DATASOURCE_UID]
    assert source["type"] == "influxdb"
    assert source["url"] == INFLUX.url
    assert source["jsonData"] == {"version": "Flux", "organization": "lab", "defaultBucket": "cells",
                                  "tlsSkipVerify": False}
    assert source["secureJsonData"] == {"token": "influx-secret"}
    assert fake_grafana.folders[FOLDER_UID]["uid"] == FOLDER_UID

    assert set(fake_grafana.dashboards) == set(DASHBOARD_UIDS.values())
    for stored in fake_grafana.dashboards.values():
        assert stored["overwrite"] is True
        assert stored["folderUid"] == FOLDER_UID

    assert set(fake_grafana.rules) == RULE_UIDS
    for rule in fake_grafana.rules.values():
        assert rule["folderUID"] == FOLDER_UID
        assert rule["ruleGroup"] == RULE_GROUP
        assert rule["condition"] == "C"
        assert rule["data"][0]["datasourceUid"] == DATASOURCE_UID
    creates = [r.path for r in fake_grafana.calls("POST", "/api/v1/provisioning/alert-rules")]
    assert len(creates) == len(RULE_UIDS)
    assert len(report.created) == 2 + len(DASHBOARD_UIDS) + len(RULE_UIDS)


def test_second_publish_updates_and_never_duplicates(fake_grafana: FakeGrafana) -> None:
    publish(fake_grafana.url, TOKEN, INFLUX)
    first_requests = len(fake_grafana.requests)

    report = publish(fake_grafana.url, TOKEN, INFLUX)

    assert report.created == []
    assert len(report.updated) == 2 + len(DASHBOARD_UIDS) + len(RULE_UIDS)
    second = fake_grafana.requests[first_requests:]
    posts = [r.path for r in second if r.method == "POST"]
    # Dashboards are always saved with POST /api/dashboards/db and overwrite=true.
    assert posts == ["/api/dashboards/db"] * len(DASHBOARD_UIDS)
    puts = {r.path for r in second if r.method == "PUT"}
    assert f"/api/datasources/uid/{DATASOURCE_UID}" in puts
    assert f"/api/folders/{FOLDER_UID}" in puts
    assert {f"/api/v1/provisioning/alert-rules/{uid}" for uid in RULE_UIDS} <= puts
    assert len(fake_grafana.datasources) == 1
    assert len(fake_grafana.folders) == 1
    assert len(fake_grafana.rules) == len(RULE_UIDS)


def test_bad_token_reports_status_and_server_message(fake_grafana: FakeGrafana) -> None:
    with pytest.raises(PublishError) as raised:
        publish(fake_grafana.url, "wrong-token", INFLUX)

    assert raised.value.status == 401
    assert "401" in str(raised.value)
    assert "invalid API key" in str(raised.value)
    assert fake_grafana.datasources == {}


def test_connection_refused_names_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    with pytest.raises(PublishError) as raised:
        publish(url, TOKEN, INFLUX, timeout=2.0)

    assert f"cannot reach Grafana at {url}" in str(raised.value)
    assert raised.value.status == 0


def test_grafana_8_is_refused_before_anything_is_written(fake_grafana: FakeGrafana) -> None:
    fake_grafana.version = "8.5.27"

    with pytest.raises(PublishError, match=r"Grafana 8\.5\.27 .* too old"):
        publish(fake_grafana.url, TOKEN, INFLUX)

    assert [r.path for r in fake_grafana.requests] == ["/api/health"]


def test_missing_alerting_provisioning_api_is_explained(fake_grafana: FakeGrafana) -> None:
    fake_grafana.unified_alerting = False

    with pytest.raises(PublishError, match="unified alerting is missing or disabled") as raised:
        publish(fake_grafana.url, TOKEN, INFLUX)

    assert raised.value.status == 404
    assert fake_grafana.calls("POST") == [] and fake_grafana.calls("PUT") == []


def test_grafana_under_a_sub_path(fake_grafana: FakeGrafana) -> None:
    fake_grafana.prefix = "/grafana"

    report = publish(f"{fake_grafana.url}/grafana", TOKEN, INFLUX)

    assert len(report.created) == 2 + len(DASHBOARD_UIDS) + len(RULE_UIDS)
    assert all(r.path.startswith("/grafana/api/") for r in fake_grafana.requests)


def test_notifications_go_where_the_environment_says_and_other_routes_stay(fake_grafana: FakeGrafana) -> None:
    notify = Notify(webhook_url="https://hooks.example.org/celltwin", email="lab@example.org")
    report = publish(fake_grafana.url, TOKEN, INFLUX, notify=notify)
    assert {"contact-point:celltwin-webhook", "contact-point:celltwin-email"} <= set(report.created)
    webhook = fake_grafana.contact_points["celltwin-webhook"]
    assert (webhook["name"], webhook["type"], webhook["settings"]["url"]) == \
        ("celltwin", "webhook", "https://hooks.example.org/celltwin")
    assert fake_grafana.contact_points["celltwin-email"]["settings"]["addresses"] == "lab@example.org"
    routes = fake_grafana.policies["routes"]
    assert [r["receiver"] for r in routes] == ["other-team", "celltwin"]
    assert routes[1]["object_matchers"] == [["service", "=", "celltwin"]]
    assert all(rule["labels"]["service"] == "celltwin" for rule in fake_grafana.rules.values())

    again = publish(fake_grafana.url, TOKEN, INFLUX, notify=notify)  # updates, never duplicates
    assert "contact-point:celltwin-webhook" in again.updated
    assert [r["receiver"] for r in fake_grafana.policies["routes"]] == ["other-team", "celltwin"]


def test_nothing_is_routed_unless_configured(fake_grafana: FakeGrafana) -> None:
    publish(fake_grafana.url, TOKEN, INFLUX, notify=Notify())
    assert fake_grafana.contact_points == {}
    assert not fake_grafana.calls("PUT", "/api/v1/provisioning/policies")
    assert notifications.provisioning_file(Notify()) is None
    assert "alerting/notifications.yaml" not in render()


def test_provisioned_notifications_name_the_environment_not_the_values() -> None:
    text = render(notify=Notify(webhook_url="https://secret.example.org/hook"))["alerting/notifications.yaml"]
    assert "secret.example.org" not in text
    assert '"${CELLTWIN_ALERT_WEBHOOK_URL}"' in text and "CELLTWIN_ALERT_EMAIL" not in text
    assert "object_matchers" in text and "receiver: celltwin" in text
