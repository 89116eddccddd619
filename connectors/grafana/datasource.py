"""The InfluxDB (Flux) data source every dashboard and alert rule points at.

Its uid is pinned so dashboards and rules can name it before it exists, and the same
definition serves file provisioning (values are ``${ENV}`` references Grafana
expands at start-up) and the publisher (real values from its command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def datasource(settings: InfluxSettings) -> dict[str, Any]:
    """The data source as both the provisioning file and the HTTP API spell it."""
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "influxdb",
        "access": "proxy",
        "url": settings.url,
        "isDefault": True,
        "jsonData": {
            "version": "Flux",
            "organization": settings.org,
            "defaultBucket": settings.bucket,
            "tlsSkipVerify": False,
        },
        "secureJsonData": {"token": settings.token},
    }


def provisioning_file() -> dict[str, Any]:
    """Content of ``provisioning/datasources/influxdb.yaml``."""
    entry = {"orgId": 1, **datasource(ENV_SETTINGS), "editable": False}
    return {"apiVersion": 1, "datasources": [entry]}
