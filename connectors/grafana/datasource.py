"""The InfluxDB data source every dashboard and alert rule points at, in Flux or InfluxQL.

Its uid is pinned so dashboards and rules name it by uid alone (never by name or id) before
it exists, and the same definition serves file provisioning (values are ``${ENV}``
references Grafana expands at start-up) and the publisher (real values from its command
line). Flux reads a bucket of an organisation with a token (InfluxDB 2); InfluxQL reads a
database, with the token sent as ``Authorization: Token ...`` (InfluxDB 3, InfluxDB 2's v1
API with a DBRP mapping, and InfluxDB 1.x, where the token is ``user:password`` or anything
with authentication off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.grafana.dialects import Dialect

__all__ = [
    "DATASOURCE_UID",
    "DATASOURCE_NAME",
    "DATASOURCE_REF",
    "InfluxSettings",
    "ENV_SETTINGS",
    "datasource",
    "provisioning_file",
]

DATASOURCE_UID = "celltwin-influx"
DATASOURCE_NAME = "celltwin InfluxDB"
DATASOURCE_REF: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}


@dataclass(frozen=True)
class InfluxSettings:
    """Where Grafana finds the pipeline's InfluxDB, as Grafana (not the host) sees it."""

    url: str
    org: str
    bucket: str
    token: str


# Grafana expands these when it reads the provisioning file, so no secret is committed.
ENV_SETTINGS = InfluxSettings(
    url="${INFLUX_URL}",
    org="${INFLUX_ORG}",
    bucket="${INFLUX_BUCKET}",
    token="${INFLUX_TOKEN}",
)


def datasource(settings: InfluxSettings, dialect: Dialect = "flux") -> dict[str, Any]:
    """The data source as both the provisioning file and the HTTP API spell it."""
    if dialect == "flux":
        json_data = {"version": "Flux", "organization": settings.org, "defaultBucket": settings.bucket}
        secure = {"token": settings.token}
    else:  # the organisation plays no part in InfluxQL
        json_data = {"version": "InfluxQL", "dbName": settings.bucket, "httpMode": "POST",
                     "httpHeaderName1": "Authorization"}
        secure = {"httpHeaderValue1": f"Token {settings.token}"}
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "influxdb",
        "access": "proxy",
        "url": settings.url,
        "isDefault": True,
        "jsonData": {**json_data, "tlsSkipVerify": False},
        "secureJsonData": secure,
    }


def provisioning_file(dialect: Dialect = "flux") -> dict[str, Any]:
    """Content of ``provisioning/datasources/influxdb.yaml``."""
    entry = {"orgId": 1, **datasource(ENV_SETTINGS, dialect), "editable": False}
    return {"apiVersion": 1, "datasources": [entry]}
