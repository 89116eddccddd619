"""Where celltwin's alerts are sent: a contact point and a notification policy route.

Both come from the environment: ``CELLTWIN_ALERT_WEBHOOK_URL`` (a webhook) and
``CELLTWIN_ALERT_EMAIL`` (addresses, comma-separated; Grafana needs its own SMTP settings
to send mail). With neither set nothing is provisioned and Grafana's own default policy
applies, which sends nothing until someone configures it.

The provisioning file names the variables (``${CELLTWIN_ALERT_WEBHOOK_URL}``) for Grafana to
expand when it starts, so no address lands in a generated file; the publisher sends the
values themselves. Every rule carries the label ``service=celltwin``; the route matches it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["WEBHOOK_ENV", "EMAIL_ENV", "CONTACT_POINT", "ROUTE_MATCHER", "Notify", "integrations",
           "route", "provisioning_file"]

WEBHOOK_ENV = "CELLTWIN_ALERT_WEBHOOK_URL"
EMAIL_ENV = "CELLTWIN_ALERT_EMAIL"
CONTACT_POINT = "celltwin"
ROUTE_MATCHER = ["service", "=", "celltwin"]
# One notification per cell and rule, so a fleet-wide excursion names every cell.
_GROUP_BY = ["grafana_folder", "alertname", "cell"]


@dataclass(frozen=True)
class Notify:
    """Where to send: a webhook URL and/or email addresses; empty = not configured."""

    webhook_url: str = ""
    email: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notify:
        return cls(env.get(WEBHOOK_ENV, "").strip(), env.get(EMAIL_ENV, "").strip())

    def configured(self) -> bool:
        return bool(self.webhook_url or self.email)

    def as_references(self) -> Notify:
        """The same integrations, their values replaced by ``${ENV}`` references."""
        return Notify("${%s}" % WEBHOOK_ENV if self.webhook_url else "",
                      "${%s}" % EMAIL_ENV if self.email else "")


def integrations(notify: Notify) -> list[dict[str, Any]]:
    """The contact point's integrations (uids pinned, so publishing again updates them)."""
    found = []
    if notify.webhook_url:
        found.append({"uid": "celltwin-webhook", "type": "webhook",
                      "settings": {"url": notify.webhook_url, "httpMethod": "POST"}})
    if notify.email:
        found.append({"uid": "celltwin-email", "type": "email",
                      "settings": {"addresses": notify.email, "singleEmail": True}})
    return found


def route() -> dict[str, Any]:
    """The policy route that sends celltwin's alerts to its contact point."""
    return {"receiver": CONTACT_POINT, "object_matchers": [ROUTE_MATCHER], "group_by": _GROUP_BY}


def provisioning_file(notify: Notify) -> dict[str, Any] | None:
    """Content of ``provisioning/alerting/notifications.yaml``; None when nothing is configured."""
    if not notify.configured():
        return None
    contact = {"orgId": 1, "name": CONTACT_POINT, "receivers": integrations(notify.as_references())}
    # A file-provisioned Grafana is celltwin's own: its whole policy tree is this one route.
    policy = {"orgId": 1, "receiver": CONTACT_POINT, "group_by": _GROUP_BY, "routes": [route()]}
    return {"apiVersion": 1, "contactPoints": [contact], "policies": [policy]}
