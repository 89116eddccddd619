"""Push the data source, folder, dashboards and alert rules to a running Grafana.

For a Grafana that is not started from ``infra/grafana/provisioning`` (a shared
instance, Grafana Cloud). Everything is addressed by its pinned uid, so publishing
twice updates in place and never duplicates. Failures a user can fix (wrong URL,
rejected token, a Grafana without unified alerting) become one ``PublishError``
with the server's own words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from connectors.grafana.alerts import RULE_GROUP, alert_rules
from connectors.grafana.dashboards import FOLDER_TITLE, FOLDER_UID, all_dashboards
from connectors.grafana.datasource import DATASOURCE_UID, InfluxSettings, datasource
from connectors.grafana.dialects import Dialect
from connectors.grafana.notifications import CONTACT_POINT, Notify, integrations, route

__all__ = ["MIN_GRAFANA_MAJOR", "PublishError", "PublishReport", "publish"]

# The alerting provisioning API arrived with unified alerting in Grafana 9.
MIN_GRAFANA_MAJOR = 9
_T = TypeVar("_T")


class PublishError(RuntimeError):
    """Publishing failed for a reason the user can act on; ``status`` is HTTP or 0."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PublishReport:
    """What one publish did, as ``kind:uid`` entries."""

    grafana_version: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def _server_message(error: GrafanaException) -> str:
    response = error.response
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])
    return str(response or error.message)


def _publish_error(what: str, error: Exception) -> PublishError:
    if isinstance(error, GrafanaException):
        status = error.status_code
        if status in (401, 403):
            return PublishError(f"Grafana rejected the token ({status}) while trying to {what}: "
                                f"{_server_message(error)}", status)
        return PublishError(f"could not {what} ({status}): {_server_message(error)}", status)
    # Connection refused, DNS, TLS: niquests' transport errors are OSErrors.
    return PublishError(f"could not {what}: {error}")


def _call(what: str, request: Callable[[], _T]) -> _T:
    try:
        return request()
    except (GrafanaException, OSError) as error:
        raise _publish_error(what, error) from error


def _exists(what: str, request: Callable[[], Any]) -> bool:
    try:
        request()
    except (GrafanaException, OSError) as error:
        if isinstance(error, GrafanaClientError) and error.status_code == 404:
            return False
        raise _publish_error(what, error) from error
    return True


def _check_server(api: GrafanaApi, url: str) -> str:
    try:
        health = api.client.GET("/health")
    except OSError as error:
        raise PublishError(f"cannot reach Grafana at {url}: {error}") from error
    except GrafanaException as error:
        raise PublishError(f"{url} does not answer like Grafana ({error.status_code}): "
                           f"{_server_message(error)}", error.status_code) from error
    version = str(health.get("version", "")) if isinstance(health, dict) else ""
    try:
        major = int(version.split(".")[0])
    except ValueError as error:
        raise PublishError(f"{url} reports no Grafana version ({health!r})") from error
    if major < MIN_GRAFANA_MAJOR:
        raise PublishError(f"Grafana {version} at {url} is too old: alert rules need unified "
                           f"alerting (Grafana {MIN_GRAFANA_MAJOR} or later)")
    return version


def _check_alerting_api(api: GrafanaApi) -> None:
    try:
        api.alertingprovisioning.get_alertrules_all()
    except (GrafanaException, OSError) as error:
        if isinstance(error, GrafanaClientError) and error.status_code == 404:
            raise PublishError("this Grafana has no alerting provisioning API "
                               "(/api/v1/provisioning/alert-rules answered 404): unified "
                               "alerting is missing or disabled", 404) from error
        raise _publish_error("list alert rules", error) from error


def _route_notifications(api: GrafanaApi, notify: Notify, report: PublishReport) -> None:
    """The contact point's integrations by uid, and celltwin's route added to (or replaced in)
    the Grafana's policy tree, whose other routes are kept: a shared Grafana keeps its own."""
    existing = {point.get("uid") for point in _call("list contact points",
                                                    api.alertingprovisioning.get_contactpoints)}
    for integration in integrations(notify):
        uid = integration["uid"]
        body = {**integration, "name": CONTACT_POINT, "disableResolveMessage": False}
        if uid in existing:
            _call(f"update contact point {uid}",
                  lambda: api.alertingprovisioning.update_contactpoint(uid, body))
            report.updated.append(f"contact-point:{uid}")
        else:
            _call(f"create contact point {uid}", lambda: api.alertingprovisioning.create_contactpoint(body))
            report.created.append(f"contact-point:{uid}")
    tree = _call("read the notification policies", api.alertingprovisioning.get_notification_policy_tree)
    routes = [r for r in tree.get("routes") or [] if r.get("receiver") != CONTACT_POINT]
    _call("update the notification policies",
          lambda: api.alertingprovisioning.set_notification_policy_tree({**tree, "routes": [*routes, route()]}))
    report.updated.append(f"policy-route:{CONTACT_POINT}")


def publish(url: str, token: str, influx: InfluxSettings, *, dialect: Dialect = "flux",
            notify: Notify = Notify(), timeout: float = 10.0) -> PublishReport:
    """Create or update everything celltwin needs in the Grafana at ``url``."""
    # grafana-client glues the URL path and "api" together; a trailing slash keeps a
    # Grafana served under a sub-path (https://host/grafana) working.
    api = GrafanaApi.from_url(url.rstrip("/") + "/", credential=token, timeout=timeout)
    report = PublishReport(grafana_version=_check_server(api, url))
    # Before writing anything, so an unusable Grafana is left untouched.
    _check_alerting_api(api)

    def upsert(kind: str, uid: str, get: Callable[[], Any], create: Callable[[], Any],
               update: Callable[[], Any]) -> None:
        if _exists(f"look up {kind} {uid}", get):
            _call(f"update {kind} {uid}", update)
            report.updated.append(f"{kind}:{uid}")
        else:
            _call(f"create {kind} {uid}", create)
            report.created.append(f"{kind}:{uid}")

    source = datasource(influx, dialect)
    upsert("datasource", DATASOURCE_UID,
           lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID),
           lambda: api.datasource.create_datasource(source),
           lambda: api.datasource.update_datasource_by_uid(DATASOURCE_UID, source))
    upsert("folder", FOLDER_UID,
           lambda: api.folder.get_folder(FOLDER_UID),
           lambda: api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID),
           lambda: api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True))
    for uid, board in all_dashboards(dialect).items():
        payload = {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                   "message": "published by celltwin"}
        upsert("dashboard", uid,
               lambda uid=uid: api.dashboard.get_dashboard(uid),
               lambda payload=payload: api.dashboard.update_dashboard(payload),
               lambda payload=payload: api.dashboard.update_dashboard(payload))

    for rule in alert_rules(dialect):
        body = {**rule, "folderUID": FOLDER_UID, "ruleGroup": RULE_GROUP, "orgID": 1}
        uid = rule["uid"]
        upsert("alert-rule", uid,
               lambda uid=uid: api.alertingprovisioning.get_alertrule(uid),
               lambda body=body: api.alertingprovisioning.create_alertrule(body),
               lambda uid=uid, body=body: api.alertingprovisioning.update_alertrule(uid, body))
    if notify.configured():
        _route_notifications(api, notify, report)
    return report
