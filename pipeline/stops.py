"""Stopping a bytewax run on Ctrl-C or SIGTERM without a crash report.

bytewax checks for signals between steps and stops by a panic in a worker; a
KeyboardInterrupt raised inside a step's Python code panics too. Rust prints every
panic ("thread '<unnamed>' panicked at src/...", maybe with a long backtrace) straight
to fd 2, so a normal stop read like a crash. `StopBetweenSteps` raises the interrupt
only where bytewax checks, and `quiet_stderr` keeps Rust's panic reports off the
terminal: after a stop always, after a failure unless asked for (the failure itself
reaches the caller as an exception).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Iterator

from connectors.outage import ask_stop

__all__ = ["StopBetweenSteps", "quiet_stderr"]

_PANIC = re.compile(rb"thread '[^']*' panicked at ")
_PANIC_START = b"thread '"


class StopBetweenSteps:
    """A signal handler (Ctrl-C, SIGTERM) that stops a run between two steps.

    bytewax runs signal handlers when it checks for signals, between steps; there the
    innermost Python frame is the one running the dataflow (`runner`, the code that
    called bytewax), and only there a KeyboardInterrupt stops the run cleanly. A signal
    handled anywhere else (in a step) is sent again every `_RETRY_S` until it lands
    there: Python runs a handler at the next bytecode, so re-sending from the handler
    itself would recurse. Once the stop is under way (files being closed), more signals
    change nothing: a second Ctrl-C cannot cut a file short.
    """

    _RETRY_S = 0.0005

    def __init__(self, runner: CodeType) -> None:
        self._runner = runner
        self.stopping = False
        self._pending: int | None = None
        self._resender: threading.Thread | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        ask_stop()  # a sink waiting out an outage gives up rather than hold its step
        if frame is not None and frame.f_code is self._runner:
            self.stopping = True
            raise KeyboardInterrupt
        if self._pending is None:
            self._pending = signum
            self._resender = threading.Thread(target=self._resend, name="celltwin-stop", daemon=True)
            self._resender.start()

    def _resend(self) -> None:
        while not self.stopping and self._pending is not None:
            time.sleep(self._RETRY_S)
            os.kill(os.getpid(), self._pending)

    def finish(self) -> None:
        """The run is over: ignore further signals, send none again."""
        self.stopping = True
        if self._resender is not None:
            self._resender.join()


class _PanicFilter:
    """Drops Rust panic reports from a byte stream: from "thread '...' panicked at" to
    their closing "note: ..." line (the backtrace, if any, lies between)."""

    def __init__(self) -> None:
        self._pending = b""
        self._dropping = False

    def feed(self, chunk: bytes) -> bytes:
        """What of `chunk` (after what came before) may be shown now."""
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        shown = []
        for line in lines:
            if not self._dropping and (panic := _PANIC.search(line)):
                shown.append(line[: panic.start()])
                self._dropping = True
            elif not self._dropping:
                shown.append(line + b"\n")
            elif line.startswith(b"note: "):
                self._dropping = False
        # A partial line (a progress display redraws one) goes out now, unless it may be
        # the start of a panic report.
        tail = self._pending
        if not self._dropping and tail and _PANIC_START not in tail[-256:] and not _PANIC_START.startswith(tail[-8:]):
            shown.append(tail)
            self._pending = b""
        return b"".join(shown)


@contextlib.contextmanager
def quiet_stderr(stop: StopBetweenSteps, show_panics: bool) -> Iterator[None]:
    """Pass the process's stderr (fd 2, where Rust writes) through a pipe that shows
    nothing once `stop` is under way, and no panic report unless `show_panics`."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    panics = _PanicFilter()

    def relay() -> None:
        with open(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                shown = chunk if show_panics else panics.feed(chunk)
                if shown and not stop.stopping:
                    os.write(saved, shown)

    relaying = threading.Thread(target=relay, name="celltwin-stderr", daemon=True)
    relaying.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the relay reads to its end
        relaying.join()
        os.close(saved)
