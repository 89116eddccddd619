"""What reaches the terminal while a dataflow runs: Rust panic reports kept off, the rest shown."""

from __future__ import annotations

import os
import time

import pytest

from pipeline.stops import StopBetweenSteps, quiet_stderr

PANIC = (b"thread '<unnamed>' panicked at src/run.rs:133:25:\nBox<dyn Any>\nstack backtrace:\n"
         b"   0: rust_begin_unwind\n             at /rustc/library/std/src/panicking.rs:665:5\n"
         b"note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n")


def _through(chunks: list[bytes], show_panics: bool, stop_after: int | None = None) -> None:
    stop = StopBetweenSteps(_through.__code__)
    with quiet_stderr(stop, show_panics):
        for k, chunk in enumerate(chunks):
            if k == stop_after:
                time.sleep(0.2)  # the relay forwards what came before
                stop.finish()
            os.write(2, chunk)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_panic_reports_are_dropped_and_everything_else_shown(size: int, capfd) -> None:
    stream = b"12,000 samples\rwarming up\n" + PANIC + b"after the panic\n"
    _through([stream[k : k + size] for k in range(0, len(stream), size)], show_panics=False)

    assert capfd.readouterr().err == "12,000 samples\rwarming up\nafter the panic\n"


def test_debug_shows_panic_reports(capfd) -> None:
    _through([PANIC], show_panics=True)

    assert capfd.readouterr().err == PANIC.decode()


def test_nothing_is_shown_once_a_stop_is_under_way(capfd) -> None:
    _through([b"before\n", b"bytewax shutting down\n"], show_panics=True, stop_after=1)

    assert capfd.readouterr().err == "before\n"
