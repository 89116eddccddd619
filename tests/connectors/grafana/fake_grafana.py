"""A local HTTP server that answers like the parts of Grafana the publisher uses.

No Grafana can be installed on the test machines, so the publisher talks over real
HTTP to this stand-in: it keeps data sources, folders, dashboards and alert rules
by uid, answers 404 for unknown uids, 409 for duplicate creates, 401 for a wrong
token, and reports a configurable version. Every request is recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

TOKEN = "glsa_test_token"


@dataclass
class Request:
    method: str
    path: str
    body: Any


@dataclass
class FakeGrafana:
    url: str = ""
    version: str = "11.2.0"
    unified_alerting: bool = True
    prefix: str = ""  # serve under a sub-path, as behind a reverse proxy
    requests: list[Request] = field(default_factory=list)
    datasources: dict[str, dict] = field(default_factory=dict)
    folders: dict[str, dict] = field(default_factory=dict)
    dashboards: dict[str, dict] = field(default_factory=dict)
    rules: dict[str, dict] = field(default_factory=dict)
    contact_points: dict[str, dict] = field(default_factory=dict)
    # Grafana's own default tree, with a route of someone else's that must survive.
    policies: dict = field(default_factory=lambda: {
        "receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"],
        "routes": [{"receiver": "other-team", "object_matchers": [["team", "=", "other"]]}]})

    def calls(self, method: str, prefix: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        self.requests.append(Request(method, path, body))
        if not path.startswith(self.prefix + "/api/"):
            return 404, {"message": "Not found"}
        path = path[len(self.prefix):]
        if path == "/api/health":
            return 200, {"database": "ok", "version": self.version, "commit": "test"}
        if auth != f"Bearer {TOKEN}":
            return 401, {"message": "invalid API key", "traceID": ""}
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "provisioning"]:
            if not self.unified_alerting:
                return 404, {"message": "Not found"}
            return self._rules(method, parts[3:], body)
        if parts[:2] == ["api", "datasources"]:
            return self._store(self.datasources, method, parts[2:], body, "Data source")
        if parts[:2] == ["api", "folders"]:
            return self._store(self.folders, method, parts[2:], body, "Folder")
        if parts[:2] == ["api", "dashboards"]:
            return self._dashboards(method, parts[2:], body)
        return 404, {"message": "Not found"}

    @staticmethod
    def _store(store: dict, method: str, rest: list[str], body: Any, what: str) -> tuple[int, Any]:
        uid = rest[-1] if rest else None
        if method == "POST" and not rest:
            if body["uid"] in store:
                return 409, {"message": f"{what} with the same uid already exists"}
            store[body["uid"]] = body
            return 200, {"uid": body["uid"], "message": f"{what} added"}
        if uid not in store:
            return 404, {"message": f"{what} not found"}
        if method == "GET":
            return 200, store[uid]
        if method == "PUT":
            store[uid] = {**store[uid], **body, "uid": uid}
            return 200, {"uid": uid, "message": f"{what} updated"}
        return 405, {"message": "method not allowed"}

    def _dashboards(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and rest == ["db"]:
            uid = body["dashboard"]["uid"]
            if uid in self.dashboards and not body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists",
                             "status": "name-exists"}
            self.dashboards[uid] = body
            return 200, {"uid": uid, "status": "success", "version": 1}
        if method == "GET" and rest[:1] == ["uid"] and rest[1] in self.dashboards:
            stored = self.dashboards[rest[1]]
            return 200, {"dashboard": stored["dashboard"], "meta": {"folderUid": stored["folderUid"]}}
        return 404, {"message": "Dashboard not found"}

    def _rules(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if rest == ["policies"]:
            if method == "PUT":
                self.policies = body
                return 202, {"message": "policies updated"}
            return 200, self.policies
        if rest[:1] == ["contact-points"]:
            return self._contact_points(method, rest[1:], body)
        if rest == ["alert-rules"]:
            if method == "GET":
                return 200, list(self.rules.values())
            if method == "POST":
                if body["uid"] in self.rules:
                    return 409, {"message": "alert rule with the same uid exists"}
                self.rules[body["uid"]] = body
                return 201, body
        if rest[:1] == ["alert-rules"] and len(rest) == 2:
            uid = rest[1]
            if uid not in self.rules:
                return 404, {"message": "rule not found"}
            if method == "GET":
                return 200, self.rules[uid]
            if method == "PUT":
                self.rules[uid] = body
                return 200, body
        return 404, {"message": "Not found"}


    def _contact_points(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and not rest:
            return 200, list(self.contact_points.values())
        if method == "POST" and not rest:
            if body.get("uid") in self.contact_points:
                return 409, {"message": "contact point with the same uid exists"}
            self.contact_points[body["uid"]] = body
            return 202, body
        if method == "PUT" and len(rest) == 1 and rest[0] in self.contact_points:
            self.contact_points[rest[0]] = body
            return 202, {"message": "contactpoint updated"}
        return 404, {"message": "Not found"}


def handler(fake: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, payload = fake.handle(self.command, self.path.split("?")[0],
                                          self.headers.get("Authorization"), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

    return Handler
