"""Checks before a command starts its work: can it reach the broker and the store, with
these credentials, and write its folders?

Each failure is a `PreflightError` whose message says what failed and what to do, in
one or two lines, and whose exit status says whose move it is: 2 for a setting to
change (credentials, a folder), 1 for a service that is not there now (the same
command may work once it is up). Found here, before the dataflow starts, a bad setting
costs seconds and reads as a sentence, not a traceback from inside a worker.
Secrets (tokens, passwords) never appear in the messages.
"""

from __future__ import annotations

import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from connectors import kafka_clients

__all__ = ["PreflightError", "USAGE", "UNAVAILABLE", "check_folder", "check_kafka", "check_influx"]

USAGE = 2  # a setting must change
UNAVAILABLE = 1  # a service is not reachable now

_CONNECT_TIMEOUT_S = 5.0
_KAFKA_BOOTSTRAP_MS = 10_000


class PreflightError(Exception):
    """What failed and what to do (the message), and the exit status of the command."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_folder(folder: Path, option: str) -> None:
    """`folder` exists or can be made, and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".celltwin-probe-").close()  # made, then removed
    except OSError as error:
        in_the_way = isinstance(error, (FileExistsError, NotADirectoryError))
        reason = "a file is in the way on that path" if in_the_way else _why(error)
        raise PreflightError(f"cannot write to {folder} ({reason}).\n"
                             f"Choose a writable folder with {option}.", USAGE) from None


def _address(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    if not host or not port.isdigit():
        raise PreflightError(f"{server!r} is not a Kafka broker address.\nGive it as host:port, e.g. localhost:9092.",
                             USAGE)
    return host.strip("[]"), int(port)


def check_kafka(bootstrap: str, client: Mapping[str, Any], option: str = "--kafka") -> None:
    """A broker of `bootstrap` ("host:port[,host:port]") accepts a connection, and a Kafka
    client with the `client` settings (TLS/SASL) gets through the handshake."""
    servers = [s for s in bootstrap.split(",") if s.strip()]
    reasons = []
    for host, port in map(_address, servers):
        try:
            socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
            break
        except OSError as error:
            reasons.append(_why(error))
    else:
        raise PreflightError(f"cannot reach the Kafka broker at {bootstrap} ({'; '.join(reasons)}).\n"
                             f"Check {option} (or CELLTWIN_KAFKA) and that the broker is running.", UNAVAILABLE)
    try:
        settings = {**dict(client), "bootstrap_servers": servers, "bootstrap_timeout_ms": _KAFKA_BOOTSTRAP_MS}
        kafka_clients.admin(**settings).close()
        # The admin client keeps the broker's API versions to itself; a consumer's are kept
        # for the process's later clients (connectors.kafka_clients): none asks again, and
        # the Kafka source's first metadata request does not wait out a 0.1 s back-off.
        kafka_clients.consumer(**{key: value for key, value in settings.items()
                                  if key in KafkaConsumer.DEFAULT_CONFIG}).close(autocommit=False)
    except KafkaError as error:
        name = type(error).__name__
        if "Authentication" in name or "Authorization" in name:
            raise PreflightError(f"the Kafka broker at {bootstrap} refused the credentials ({name}).\n"
                                 "Check the SASL user and password of [kafka.client].", USAGE) from None
        # Bad SASL credentials often end so too: the broker drops the connection, the
        # client retries until its bootstrap timeout.
        raise PreflightError(f"connected to {bootstrap}, but no Kafka session came up ({name}).\n"
                             "Check that it is a Kafka listener and that the TLS/SASL settings of [kafka.client] "
                             "(user, password) match it.", USAGE) from None


def check_influx(url: str, token: str, org: str, bucket: str) -> None:
    """The store at `url` answers, and takes writes to `bucket` with `token` (an empty
    write: nothing is stored)."""
    base = url.rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise PreflightError(f"{url!r} is not an InfluxDB URL.\nGive it as http://host:8086 (or https://).", USAGE)
    query = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": "s"})
    request = urllib.request.Request(f"{base}/api/v2/write?{query}", data=b"", method="POST",
                                     headers={"Authorization": f"Token {token}"})
    try:
        urllib.request.urlopen(request, timeout=_CONNECT_TIMEOUT_S).close()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise PreflightError(f"InfluxDB at {url} refused the token ({error.code} {error.reason}).\n"
                                 "Check CELLTWIN_INFLUX_TOKEN (or --influx-token-file) and its write access to "
                                 f"bucket {bucket!r}.", USAGE) from None
        if error.code == 404:
            raise PreflightError(f"InfluxDB at {url} has no bucket {bucket!r} in org {org!r} (404).\n"
                                 "Check --influx-org and --influx-bucket, or create the bucket.", USAGE) from None
        # Other answers (400 for an empty write, say) still show a store that is there.
    except (urllib.error.URLError, OSError) as error:
        reason = _why(getattr(error, "reason", error))
        raise PreflightError(f"cannot reach InfluxDB at {url} ({reason}).\n"
                             "Check --influx-url (or CELLTWIN_INFLUX_URL) and that the server is running.",
                             UNAVAILABLE) from None


def _why(error: object) -> str:
    """A short reason for a failed connection: "connection refused", "timed out", ..."""
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
