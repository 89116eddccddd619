"""Write dataflow results to InfluxDB 2 (or anything speaking its write API) from bytewax.

Items are :class:`connectors.wire.Batch` columns (rows of one measurement, times in epoch
seconds), so the dataflow never sees influxdb-client types.

A bytewax batch of them is written inside ``write_batch`` in requests of the write API of
at most about 8 MB of line protocol each (InfluxDB 1.x refuses a body over 25 MB with a 413),
gzipped unless the store is on this machine's loopback, where compressing costs more CPU
than the bytes it saves: when it returns, the server has stored the points (with
``overlap=True``, for runs without recovery, the request runs on a writer thread while the
dataflow computes the next batch: :mod:`connectors.overlap`). Transient failures (HTTP 5xx and 429, connection errors,
timeouts) are retried with exponential backoff in the same call, by default for as long as
the store is away: the worker reads no new input meanwhile (backpressure), and resumes
where it was once the store is back, so nothing is lost (see :mod:`connectors.outage` for
the log lines, and ``max_outage_s`` / ``max_retries`` to stop instead). Anything else (a
4xx such as a bad token, a missing bucket or a field type conflict) raises
:class:`InfluxWriteError` with the server's status and message. Re-writing a point is
harmless: points are keyed by measurement, tags and sample time.

The sink observes itself: with its batches it writes, at most every ``health_interval_s``,
a ``pipeline_health`` point with ``write_errors``, the running total of failed write
attempts of this worker (tag ``worker`` = ``influx-<index>``), so a flaky store shows
before it stops anything. During an outage such a point is added every interval, with
``stalled_s``, how long the outage had lasted then; they are stored with the batch once
the store is back, so the stall shows in ``pipeline_health`` at the times it happened.

Batches become line protocol column by column in :mod:`connectors.line_protocol` (what
influxdb-client's ``Point`` would give, faster). Fields whose value is NaN or infinite are dropped from
their point, because line protocol has no representation for them; a point left without
fields is not written. Time is sent with millisecond precision, the coarsest that keeps
the sub-second part of sample times.
"""

from __future__ import annotations

import gzip
import ipaddress
import math
import re
import time
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import urllib3
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from connectors.line_protocol import lines as line_protocol
from connectors.outage import Outage
from connectors.overlap import Overlapped
from connectors.wire import MEAS_HEALTH, Batch, batches

__all__ = ["InfluxSink", "InfluxWriteError"]

_PRECISION = WritePrecision.MS
# The client gzips at level 9; level 1 takes a quarter of the time for twice the bytes, which
# a store on a local network takes in far less time than level 9 spends on them.
_GZIP_LEVEL = 1
# Line protocol characters per request (bytes but for non-ASCII string fields).
_MAX_BODY_CHARS = 8 * 2**20


class InfluxWriteError(RuntimeError):
    """A batch could not be stored; ``status`` is the HTTP status, None if none came back."""

    def __init__(self, status: int | None, message: str, attempts: int) -> None:
        super().__init__(f"InfluxDB write failed after {attempts} attempt(s): "
                         f"HTTP {status if status is not None else '-'}: {message}")
        self.status = status
        self.message = message
        self.attempts = attempts


class InfluxSink(DynamicSink[Batch]):
    """A bytewax sink of batches (see the module doc); one HTTP client per worker.

    :arg url: server base URL, e.g. ``http://localhost:8086``.
    :arg token: API token with write access to ``bucket``.
    :arg org: organisation name.
    :arg bucket: destination bucket.
    :arg timeout_s: timeout of one HTTP request.
    :arg max_retries: retries of a transiently failing batch before giving up; None: no limit.
    :arg max_outage_s: how long a store outage is ridden out before the run stops
        (:class:`~connectors.outage.OutageError`); None: no limit.
    :arg backoff_s: wait before the first retry; doubled for each further one.
    :arg max_backoff_s: cap on one wait.
    :arg health_interval_s: least wall time between two health points (and outage log lines).
    :arg overlap: write each batch while the dataflow computes the next
        (:class:`~connectors.overlap.Overlapped`); only for runs without recovery.
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout_s: float = 10.0,
        max_retries: int | None = None,
        max_outage_s: float | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        health_interval_s: float = 10.0,
        overlap: bool = False,
    ) -> None:
        self._overlap = overlap
        self._max_outage_s = max_outage_s
        self._health_interval_s = health_interval_s
        self._url = url
        self._token = token
        self._org = org
        self._bucket = bucket
        self._timeout_ms = int(timeout_s * 1000)
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[Batch]:
        # retries=False: the client's urllib3 retries would hide failures and their count
        # from the loop in write_batch, which owns the retry policy. The body is gzipped here.
        client = InfluxDBClient(
            url=self._url, token=self._token, org=self._org,
            timeout=self._timeout_ms, enable_gzip=False, retries=False,
        )
        outage = Outage(f"InfluxDB {self._url} (worker {worker_index})", max_outage_s=self._max_outage_s,
                        backoff_s=self._backoff_s, max_backoff_s=self._max_backoff_s,
                        log_interval_s=self._health_interval_s)
        partition = _InfluxPartition(
            client, WriteService(client.api_client), self._bucket, self._org,
            self._max_retries, outage, f"influx-{worker_index}", self._health_interval_s,
            gzipped=not _on_loopback(self._url),
        )
        return Overlapped(partition, f"influx-{worker_index}") if self._overlap else partition


class _InfluxPartition(StatelessSinkPartition[Batch]):
    def __init__(
        self,
        client: InfluxDBClient,
        writes: WriteService,
        bucket: str,
        org: str,
        max_retries: int | None,
        outage: Outage,
        worker: str,
        health_interval_s: float,
        *,
        gzipped: bool = True,
    ) -> None:
        self._gzip = gzipped
        self._worker = worker
        self._health_interval_s = health_interval_s
        self._failed_attempts = 0
        self._last_health = -math.inf
        self._client = client
        self._writes = writes
        self._bucket = bucket
        self._org = org
        self._max_retries = max_retries
        self._outage = outage

    def write_batch(self, items: list[Batch]) -> None:
        lines = [line for batch in items for line in line_protocol(batch)]
        if not lines:
            return
        self._add_health(lines)
        for part in _parts(lines, _MAX_BODY_CHARS):
            self._write(part)

    def _write(self, lines: list[str]) -> None:
        """One request, retried as long as the policy allows."""
        attempt = 0
        while True:
            attempt += 1
            try:
                body = "\n".join(lines).encode()
                if self._gzip:
                    body = gzip.compress(body, compresslevel=_GZIP_LEVEL)
                self._writes.post_write(org=self._org, bucket=self._bucket, body=body, precision=_PRECISION,
                                        content_encoding="gzip" if self._gzip else "identity",
                                        content_type="text/plain; charset=utf-8")
                self._outage.succeeded()
                return
            except ApiException as error:
                status, message = error.status, (error.body or error.reason or "").strip()
                transient = status is None or status >= 500 or status == 429
            except (urllib3.exceptions.HTTPError, OSError) as error:
                # urllib3 names the connection object first: "<...HTTPConnection at 0x..>: Failed to ..."
                status, message, transient = None, re.sub(r"^<[^>]*>: ", "", str(error)) or repr(error), True
            self._failed_attempts += 1
            if not transient or (self._max_retries is not None and attempt > self._max_retries):
                raise InfluxWriteError(status, message, attempt)
            wait_s = self._outage.failed(message if status is None else f"HTTP {status}: {message}")
            self._add_health(lines)
            self._outage.wait(wait_s)

    def _add_health(self, lines: list[str]) -> None:
        """Append a pipeline_health point to ``lines`` if one is due."""
        now = time.time()
        if now - self._last_health < self._health_interval_s:
            return
        self._last_health = now
        fields: dict[str, Any] = {"write_errors": self._failed_attempts}
        if self._outage.down:
            fields["stalled_s"] = round(self._outage.duration_s, 3)
        point = {"measurement": MEAS_HEALTH, "tags": {"worker": self._worker}, "fields": fields, "time": now}
        lines.extend(line_protocol(batches([point])[0]))

    def close(self) -> None:
        self._client.close()


def _on_loopback(url: str) -> bool:
    """Whether the store is on this machine's loopback (localhost, 127.x, ::1)."""
    host = urllib3.util.parse_url(url).host or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parts(lines: list[str], max_chars: int) -> Iterator[list[str]]:
    """``lines`` in order, in runs of at most ``max_chars`` characters each once joined by
    line breaks (a longer line alone)."""
    ends = list(accumulate(len(line) + 1 for line in lines))
    max_chars += 1  # the last line of a run has no break after it
    start, done = 0, 0
    while start < len(lines):
        stop = max(bisect_right(ends, done + max_chars, lo=start), start + 1)
        yield lines[start:stop]
        start, done = stop, ends[stop - 1]
