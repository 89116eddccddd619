"""Write Grafana's provisioning files from the Python definitions.

``python -m connectors.grafana.generate`` rewrites ``infra/grafana/provisioning`` (Flux, for
the compose stack's InfluxDB 2); the files are committed so ``docker compose`` needs no
Python, and a test fails when they fall behind the code. ``celltwin grafana generate
--dialect influxql --out DIR`` writes the InfluxQL set for InfluxDB 1.x and 3.x.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from connectors.grafana import alerts, datasource, notifications
from connectors.grafana.dashboards import FOLDER_TITLE, FOLDER_UID, all_dashboards
from connectors.grafana.dialects import Dialect
from connectors.grafana.yamlout import dump

__all__ = [
    "PROVISIONING_DIR",
    "CONTAINER_PROVISIONING_DIR",
    "render",
    "write",
    "stale_files",
    "main",
]

PROVISIONING_DIR = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "provisioning"
# Where the compose stack mounts PROVISIONING_DIR inside the Grafana container.
CONTAINER_PROVISIONING_DIR = "/etc/grafana/provisioning"


def _dashboard_provider() -> dict[str, Any]:
    provider = {
        "name": "celltwin",
        "orgId": 1,
        "folder": FOLDER_TITLE,
        "folderUid": FOLDER_UID,
        "type": "file",
        "disableDeletion": False,
        # Edits belong in connectors/grafana/, not in the UI.
        "allowUiUpdates": False,
        "updateIntervalSeconds": 30,
        "options": {"path": f"{CONTAINER_PROVISIONING_DIR}/dashboards"},
    }
    return {"apiVersion": 1, "providers": [provider]}


def render(dialect: Dialect = "flux", notify: notifications.Notify = notifications.Notify()) -> dict[str, str]:
    """Every provisioning file, path relative to the provisioning folder -> text; the contact
    point and policy only where ``notify`` says where to send."""
    files = {
        "datasources/influxdb.yaml": dump(datasource.provisioning_file(dialect)),
        "dashboards/dashboards.yaml": dump(_dashboard_provider()),
        "alerting/rules.yaml": dump(alerts.provisioning_file(dialect)),
    }
    routing = notifications.provisioning_file(notify)
    if routing is not None:
        files["alerting/notifications.yaml"] = dump(routing)
    for uid, board in all_dashboards(dialect).items():
        files[f"dashboards/{uid}.json"] = json.dumps(board, indent=2) + "\n"
    return files


def write(root: Path = PROVISIONING_DIR, dialect: Dialect = "flux",
          notify: notifications.Notify = notifications.Notify()) -> list[Path]:
    """Rewrite the provisioning files under ``root``; returns the paths written."""
    written = []
    for relative, text in render(dialect, notify).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(root: Path = PROVISIONING_DIR, dialect: Dialect = "flux",
                notify: notifications.Notify = notifications.Notify()) -> list[str]:
    """Files under ``root`` that differ from what the code generates now."""
    stale = []
    for relative, text in render(dialect, notify).items():
        path = root / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(relative)
    return stale


def main() -> None:
    for path in write():
        print(path, file=sys.stdout)


if __name__ == "__main__":
    main()
