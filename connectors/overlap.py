"""A sink partition whose writes overlap the dataflow's next batch.

bytewax calls a partition's ``write_batch`` in the worker's thread and computes nothing
while it runs; a sink that waits for its server there (InfluxDB storing the points, a
broker acknowledging records) idles the twin for that long. :class:`Overlapped` hands
each batch to a writer thread and returns: the next ``write_batch`` (or ``close``) first
waits for the one in flight and raises its error, so at most one batch is in flight, the
order of batches is kept, and a server that slows down or goes away still holds the
dataflow back. A ``close`` while the run stops (Ctrl-C, SIGTERM) holds that error instead
(:func:`connectors.outage.hold_until_stopped`): raised while bytewax unwinds, it would
abort the process.

Only for runs without recovery: with it, bytewax commits an epoch once the sinks have
returned from its batches, and a batch still in flight at a crash would not be replayed.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from bytewax.outputs import StatelessSinkPartition

from connectors.outage import hold_until_stopped, stop_asked

__all__ = ["Overlapped"]

X = TypeVar("X")


class Overlapped(StatelessSinkPartition[X]):
    """Writes `inner`'s batches on a writer thread named `name`, one in flight at most."""

    def __init__(self, inner: StatelessSinkPartition[X], name: str) -> None:
        self._inner = inner
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._in_flight: Future[None] | None = None

    def write_batch(self, items: list[X]) -> None:
        self._wait()
        self._in_flight = self._writer.submit(self._inner.write_batch, items)

    def _wait(self) -> None:
        """Wait for the batch in flight, if any; its failure is raised here."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def close(self) -> None:
        try:
            self._wait()
        except Exception as error:
            if not stop_asked():
                raise
            hold_until_stopped(error)  # e.g. a stop cut the last write's outage short
        finally:
            self._writer.shutdown()
            self._inner.close()
