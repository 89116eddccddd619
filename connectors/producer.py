"""Stream one cell into the pipeline from a lab script or a vendor bridge.

    from connectors.producer import CellStream

    with CellStream("A01", preset="nd4mg80ni8", mass_mg=1.2, c_rate=0.1, kafka="broker:9092") as cell:
        for t, v, i, temp in channel.readings():
            cell.send(t, v, i, temp_c=temp)

Opening a stream checks the cell id and metadata as the pipeline will and publishes them
to ``cell.meta``, acknowledged before any sample leaves. :meth:`CellStream.send` checks each
sample with the decoder's own checks (:func:`connectors.decode.check_samples`, and time order
against the previous sample), so a bad sample raises :class:`~connectors.decode.Rejected` (a
ValueError naming the field and its allowed range) in the lab's script, where someone can
fix it, and nothing of it is sent: the pipeline would have refused its whole frame.

Samples are gathered into frames, the wire format's fast path. A frame leaves when it holds
``frame_samples`` samples or ``max_delay_s`` after its first sample, whichever comes first
(a background thread sends the frame of a slow channel on time), and at :meth:`flush` and
:meth:`close`. A frame carries a temperature for every sample or for none, as the decoder
wants, so a change between the two starts a new frame. Broker and TLS/SASL settings are
those of `celltwin run`: ``kafka``, else ``$CELLTWIN_KAFKA``, else the ``[kafka]`` tables
of the ``config`` file (or ``$CELLTWIN_CONFIG``).
"""

from __future__ import annotations

import numbers
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from connectors.config import kafka_config
from connectors.decode import check_samples
from connectors.kafka_admin import ensure_topics
from connectors.meta import meta_from_mapping
from connectors.preflight import check_kafka
from connectors.replay_source import MAX_FRAME, WireFrame, encode
from connectors.sim_producer import Publisher
from connectors.wire import TOPIC_META, TOPIC_PARTITIONS, TOPIC_SAMPLES, CellMeta, Rejected

__all__ = ["CellStream", "Rejected"]


class CellStream:
    """One cell's samples into ``cell.samples``, in frames; see the module text.

    Metadata keywords are those of a ``[cells.<id>]`` table: exactly one of ``preset``,
    ``composition`` or ``generic``, ``mass_mg`` (the hydride mass, no default) and
    optionally ``c_rate``. Raises ValueError for bad metadata or settings before anything
    is sent, and PreflightError for a broker that cannot be reached or refuses the
    credentials. ``create_topics`` creates ``cell.samples`` and ``cell.meta`` where missing
    (needs the right to; off where the broker's administrators create them).
    """

    def __init__(
        self, cell: str, *, mass_mg: float | None = None, preset: str | None = None,
        composition: str | None = None, c_rate: float | None = None, generic: dict[str, Any] | None = None,
        kafka: str | None = None, config: Path | str | None = None, frame_samples: int = 100,
        max_delay_s: float = 1.0, create_topics: bool = True,
    ) -> None:
        if not (isinstance(frame_samples, int) and 1 <= frame_samples <= MAX_FRAME):
            raise ValueError(f"frame_samples must be an integer within 1 .. {MAX_FRAME}, not {frame_samples!r}")
        if not max_delay_s > 0:
            raise ValueError(f"max_delay_s must be > 0, not {max_delay_s!r}")
        given = {"mass_mg": mass_mg, "preset": preset, "composition": composition, "c_rate": c_rate,
                 "generic": generic}
        self.meta: CellMeta = meta_from_mapping(cell, {k: v for k, v in given.items() if v is not None})
        settings = kafka_config(Path(config) if config is not None else None, kafka)
        check_kafka(settings.bootstrap, settings.admin_config(), option="kafka=")  # a clear error, not a hang
        if create_topics:
            ensure_topics(settings.bootstrap, {t: TOPIC_PARTITIONS[t] for t in (TOPIC_SAMPLES, TOPIC_META)},
                          admin_config=settings.admin_config())
        self._publisher = Publisher(settings.bootstrap, producer_config=settings.producer_config())
        try:
            self._publisher.send(TOPIC_META, [(cell.encode(), self.meta.to_json())])
            self._publisher.flush()
        except BaseException:
            self._publisher.close()
            raise
        self.frame_samples = frame_samples
        self.max_delay_s = float(max_delay_s)
        self.sent_frames = 0  # frames handed to the client (acknowledged once flush() returns)
        self._rows: list[tuple[float, float, float, float | None]] = []
        self._due = float("inf")  # monotonic time the frame being gathered must leave by
        self._last_t: float | None = None
        self._failure: BaseException | None = None
        self._closed = False
        self._lock = threading.Condition()
        self._timer = threading.Thread(target=self._send_when_due, name=f"CellStream {cell}", daemon=True)
        self._timer.start()

    @property
    def cell(self) -> str:
        return self.meta.cell

    def send(self, t: float, v: float, i: float, temp_c: float | None = None) -> None:
        """Queue one sample: ``t`` in seconds since the epoch, ``v`` in volts, ``i`` in amperes
        (lithiation/discharge negative), ``temp_c`` in C or None. Raises Rejected (a ValueError)
        for a sample the pipeline would refuse, and an earlier delivery failure."""
        values = [_real(name, x) for name, x in (("t", t), ("v", v), ("i", i))]
        temp = None if temp_c is None else _real("temp_c", temp_c)
        with self._lock:
            self._raise_failure()
            if self._closed:
                raise RuntimeError(f"the stream of cell {self.cell!r} is closed")
            check_samples(*(np.array([x]) for x in values), temp, after=self._last_t)
            if self._rows and (self._rows[-1][3] is None) != (temp is None):
                self._send_frame()
            self._rows.append((values[0], values[1], values[2], temp))
            self._last_t = values[0]
            if len(self._rows) >= self.frame_samples:
                self._send_frame()
            elif len(self._rows) == 1:
                self._due = time.monotonic() + self.max_delay_s
                self._lock.notify()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send the frame being gathered and wait until every frame sent is acknowledged."""
        with self._lock:
            self._raise_failure()
            if self._rows:
                self._send_frame()
        self._publisher.flush(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and let go of the broker; a second call does nothing."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify()
            self._timer.join()
            self._publisher.close(timeout_s)

    def __enter__(self) -> CellStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()  # the samples accepted before an error in the block are valid: sent

    def _send_frame(self) -> None:
        """Hand the gathered samples to the client as one frame (the lock is held)."""
        t, v, i, temp = zip(*self._rows)
        frame: WireFrame = {"cell": self.cell, "t": list(t), "v": list(v), "i": list(i)}
        if temp[0] is not None:
            frame["temp_c"] = list(temp)
        self._rows.clear()
        self._due = float("inf")
        self._publisher.send(TOPIC_SAMPLES, [encode(frame)])
        self.sent_frames += 1

    def _send_when_due(self) -> None:
        """The background thread: send a frame that has waited ``max_delay_s``."""
        with self._lock:
            while not self._closed:
                wait = self._due - time.monotonic()
                if wait > 0:
                    self._lock.wait(None if wait == float("inf") else wait)
                    continue
                try:
                    self._send_frame()
                except Exception as error:  # noqa: BLE001 - raised in the caller's thread at its next call
                    self._failure = self._failure or error
                    self._rows.clear()
                    self._due = float("inf")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


def _real(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not True/False), else Rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Rejected("wrong_type", f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)
