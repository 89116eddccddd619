"""Riding out an outage of the broker or the store: when to retry, what to log, when to give up.

Each connection that can fail (the Kafka source, a Kafka sink, the InfluxDB sink) keeps
one :class:`Outage`. It is told of every failed attempt and of the first success after
them; it says how long to wait before the next attempt (exponential backoff, capped),
logs the stall once per interval rather than once per attempt, and raises
:class:`OutageError` once the outage has lasted longer than ``max_outage_s`` (None:
never, the default: an outage of minutes is ridden out, however many attempts it takes).

Outages are also tallied process-wide (:func:`take_stall`), so the health step can report
them: an outage of the input while it lasts (the source then emits nothing), and one of a
sink once it is over (a sink that waits holds its worker, health step included).

A sink waits between attempts in :meth:`Outage.wait`, which gives up at once with
:class:`OutageError` once a stop was asked for (:func:`ask_stop`: Ctrl-C, SIGTERM): a run
stops only between two steps, and a sink riding out an outage would hold its step until
the service came back.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["OutageError", "Outage", "ask_stop", "clear_stop", "hold_until_stopped", "stop_asked", "take_held",
           "take_stall"]

_log = logging.getLogger("celltwin.outage")
_lock = threading.Lock()
_stalls: dict[str, float] = {}  # what is down -> monotonic time its outage began
_ended = [0.0]  # the longest outage that ended since the last take_stall, seconds
_stop_asked = threading.Event()


class OutageError(RuntimeError):
    """An outage lasted longer than the configured maximum, or a stop cut it short; the
    message is one line."""


_held: list[BaseException] = []  # errors of sinks closed while the run stopped, in order


def ask_stop() -> None:
    """A stop was asked for: waits for a service to come back end now, and from now on."""
    _stop_asked.set()


def stop_asked() -> bool:
    """Whether a stop was asked for since the run began."""
    return _stop_asked.is_set()


def clear_stop() -> None:
    """A new run begins: outages are waited out again."""
    _stop_asked.clear()
    with _lock:
        _held.clear()


def hold_until_stopped(error: BaseException) -> None:
    """Keep the error of a sink closed while the run stops: raised there, while bytewax
    unwinds, it would abort the process; the run raises it once stopped (:func:`take_held`)."""
    with _lock:
        _held.append(error)


def take_held() -> BaseException | None:
    """The first error held since the last call, if any."""
    with _lock:
        first = _held[0] if _held else None
        _held.clear()
    return first


def take_stall() -> float:
    """The longest outage in this process since the last call, in seconds: in progress
    (so far) or ended since; 0 if there was none."""
    now = time.monotonic()
    with _lock:
        longest = max([now - since for since in _stalls.values()] + [_ended[0]])
        _ended[0] = 0.0
    return longest


class Outage:
    """The outage state of one connection; thread-safe, so the partitions of one source
    share one (a broker outage is one outage, logged once, however many partitions see it).

    :arg what: names the connection in logs and errors, e.g. ``"InfluxDB http://influx:8086"``.
    :arg max_outage_s: give up (raise :class:`OutageError`) after this long; None: never.
    :arg backoff_s: wait after the first failure; doubled after each further one.
    :arg max_backoff_s: cap on one wait.
    :arg log_interval_s: least time between two log lines of one outage.
    """

    def __init__(self, what: str, *, max_outage_s: float | None = None, backoff_s: float = 0.5,
                 max_backoff_s: float = 5.0, log_interval_s: float = 10.0) -> None:
        self.what = what
        self._max = max_outage_s
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._log_interval = log_interval_s
        self._since: float | None = None
        self._failures = 0
        self._logged = -float("inf")
        self._mutex = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    @property
    def duration_s(self) -> float:
        """How long the outage in progress has lasted (0 if none)."""
        return 0.0 if self._since is None else time.monotonic() - self._since

    def failed(self, error: BaseException | str) -> float:
        """Note a failed attempt; return the seconds to wait before the next one.
        Raises :class:`OutageError` if the outage has lasted longer than allowed."""
        now = time.monotonic()
        reason = _one_line(error)
        with self._mutex:
            if self._since is None:
                self._since = now
                with _lock:
                    _stalls[self.what] = now
            self._failures += 1
            lasted = now - self._since
            if self._max is not None and lasted > self._max:
                self._end()
                raise OutageError(f"{self.what} unreachable for {lasted:.0f} s, longer than the allowed "
                                  f"{self._max:g} s (--max-outage): {reason}")
            if now - self._logged >= self._log_interval:
                self._logged = now
                _log.warning("%s unreachable for %.0f s (%d failed attempts), retrying: %s",
                             self.what, lasted, self._failures, reason)
            return min(self._backoff * 2 ** min(self._failures - 1, 30), self._max_backoff)

    def wait(self, seconds: float) -> None:
        """Wait before the next attempt (what :meth:`failed` said). Raises :class:`OutageError`
        at once if a stop is asked for meanwhile, or was before: what the caller holds is not
        written."""
        if _stop_asked.wait(seconds):
            raise OutageError(f"stopped while {self.what} was unreachable (for {self.duration_s:.0f} s): "
                              "what it was writing was not written")

    def succeeded(self) -> None:
        """Note a successful attempt; ends (and logs the end of) an outage in progress."""
        if self._since is None:  # the common case, without taking the lock
            return
        with self._mutex:
            if self._since is not None:
                _log.warning("%s is back after %.0f s (%d failed attempts); resuming",
                             self.what, time.monotonic() - self._since, self._failures)
                self._end()

    def _end(self) -> None:
        with _lock:
            _stalls.pop(self.what, None)
            _ended[0] = max(_ended[0], time.monotonic() - (self._since or 0.0))
        self._since = None
        self._failures = 0
        self._logged = -float("inf")


def _one_line(error: BaseException | str) -> str:
    text, name = str(error), type(error).__name__
    if not isinstance(error, str) and not text.startswith(name):
        text = f"{name}: {text}" if text else name
    return " ".join(text.split())[:300]
