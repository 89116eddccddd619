"""Stream the cycler simulator into Kafka, in the wire format of ``cell.samples``.

Stands in for a rack of cyclers: a fleet of simulated cells is run on one protocol and
every sample is published with key = cell id, either as frames of many samples of one
cell ``{"cell","t":[...],"v":[...],"i":[...],"temp_c":[...]}`` (the fast path) or as
single samples ``{"cell","t","v","i","temp_c"}``. Each cell's metadata goes to the
compacted ``cell.meta`` topic first, so the dataflow knows a cell before its first sample.

Encoding is split from sending (:func:`encode_block` is pure) so tests and benchmarks can
feed exactly the bytes that went to Kafka into another run of the dataflow. Floats are
written with Python's shortest round-trip repr: the twin sees the simulator's values
bit for bit. Messages are sent in sample-time order, window by window (a window is
``frame_size`` ticks of every cell), and paced so that sample time advances ``speedup``
times faster than the wall clock.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from connectors import kafka_clients
from twin.params import MIXED, CellParams, fleet_labels
from twin.params import preset as make_preset
from twin.protocol import cc_cycles
from twin.simulator import SampleBlock, SensorNoise, Simulation, vary

__all__ = [
    "MIXED",
    "BLOCK_TICKS",
    "KeyValue",
    "SimCell",
    "ProduceStats",
    "Publisher",
    "fleet",
    "simulation",
    "meta_messages",
    "encode_block",
    "stream",
]

# Simulator ticks per block. Fixed, not derived from the frame size: the sensor noise is
# drawn block by block, so the same options give the same samples however they are framed.
BLOCK_TICKS = 2048

KeyValue = tuple[bytes, bytes]


@dataclass(frozen=True)
class SimCell:
    """One simulated cell: its id on the wire, its parameters, and what ``cell.meta`` says."""

    cell: str
    params: CellParams
    mass_mg: float
    c_rate: float
    preset: str | None = None  # exactly one of preset and composition is set
    composition: str | None = None

    def meta(self) -> dict[str, Any]:
        """The ``cell.meta`` record: the cell's material, hydride mass and nominal C-rate."""
        material = {"preset": self.preset} if self.preset else {"composition": self.composition}
        return {"cell": self.cell, **material, "mass_mg": self.mass_mg, "c_rate": self.c_rate}


@dataclass
class ProduceStats:
    """What a :func:`stream` call has sent so far."""

    cells: int
    messages: int = 0
    samples: int = 0
    bytes: int = 0
    t_first: float | None = None  # sample time of the first sample sent
    t_last: float | None = None  # sample time of the last sample sent
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0


def fleet(
    n: int,
    preset: str = "nd4mg80ni8",
    *,
    composition: str | None = None,
    mass_mg: float = 1.0,
    c_rate: float = 1.0,
    seed: int = 0,
    prefix: str = "cell",
) -> list[SimCell]:
    """``n`` cells with manufacturing spread around a preset, ids ``{prefix}000``...

    ``preset="mixed"`` alternates the named presets cell by cell; ``composition`` (a phase
    mass-fraction string) replaces the preset. Raises ValueError for an unknown preset or
    a composition that does not parse.
    """
    if n < 1:
        raise ValueError(f"a fleet needs at least one cell, not {n}")
    if composition:
        materials: list[tuple[str | None, str | None]] = [(None, composition)] * n
    else:
        materials = [(name, None) for name in fleet_labels(preset, n)]
    rng = np.random.default_rng(seed)
    params: list[CellParams | None] = [None] * n
    for material in dict.fromkeys(materials):
        idx = [k for k, m in enumerate(materials) if m == material]
        base = make_preset(material[0] or material[1] or "", mass_mg=mass_mg)
        varied = [base] if n == 1 else vary(base, len(idx), rng)
        for k, p in zip(idx, varied):
            params[k] = p
    width = max(3, len(str(n - 1)))
    return [
        SimCell(f"{prefix}{k:0{width}d}", p, mass_mg, c_rate, preset=m[0], composition=m[1])
        for k, (p, m) in enumerate(zip(params, materials))
        if p is not None
    ]


def simulation(
    cells: Sequence[SimCell], cycles: int, *, dt: float = 10.0, t0: float, seed: int = 0,
    noise: bool = True, rest_s: float = 0.0,
) -> Simulation:
    """Constant-current cycling of ``cells`` at their nominal C-rate, starting at ``t0``, with
    ``rest_s`` of rest after each half.

    All cells share one protocol, so a fleet is cycled at the first cell's C-rate.
    """
    steps = cc_cycles(cells[0].c_rate, cycles, rest_s=rest_s)
    return Simulation(
        [c.params for c in cells], steps, dt=dt, t0=t0,
        noise=SensorNoise() if noise else SensorNoise.none(), seed=seed,
    )


def meta_messages(cells: Iterable[SimCell]) -> list[KeyValue]:
    """One ``cell.meta`` record per cell, key = cell id."""
    return [(c.cell.encode(), json.dumps(c.meta()).encode()) for c in cells]


def encode_block(
    block: SampleBlock, ids: Sequence[str], frame_size: int
) -> Iterator[tuple[float, int, list[KeyValue]]]:
    """Messages of one sample block, window by window: ``(last sample time, samples, messages)``.

    A window is ``frame_size`` ticks (the last one of a block may be shorter); each cell
    with samples in it gives one frame (or, with ``frame_size == 1``, one single-sample
    message). Cells that sent nothing in a window (finished, dropped samples) give none.
    """
    if frame_size < 1:
        raise ValueError(f"frame_size must be >= 1, not {frame_size}")
    keys = [i.encode() for i in ids]
    if frame_size == 1:
        yield from _single_samples(block, ids, keys)
        return
    ticks = block.t.size
    for start in range(0, ticks, frame_size):
        stop = min(start + frame_size, ticks)
        valid = block.valid[:, start:stop]
        rows = [a[:, start:stop] for a in (block.v, block.i, block.temp_c)]
        t_all = block.t[start:stop].tolist()
        messages: list[KeyValue] = []
        for c in np.flatnonzero(valid.any(axis=1)):
            if valid[c].all():
                t, v, i, temp = t_all, rows[0][c].tolist(), rows[1][c].tolist(), rows[2][c].tolist()
            else:
                keep = valid[c]
                t = block.t[start:stop][keep].tolist()
                v, i, temp = (r[c][keep].tolist() for r in rows)
            frame = {"cell": ids[c], "t": t, "v": v, "i": i, "temp_c": temp}
            messages.append((keys[c], json.dumps(frame).encode()))
        yield t_all[-1], int(valid.sum()), messages


def _single_samples(
    block: SampleBlock, ids: Sequence[str], keys: Sequence[bytes]
) -> Iterator[tuple[float, int, list[KeyValue]]]:
    # Whole arrays to Python lists once: indexing numpy scalars per sample is slower.
    t_all = block.t.tolist()
    v, i, temp = block.v.tolist(), block.i.tolist(), block.temp_c.tolist()
    valid = block.valid
    for k, t in enumerate(t_all):
        messages = [
            (keys[c], json.dumps(
                {"cell": ids[c], "t": t, "v": v[c][k], "i": i[c][k], "temp_c": temp[c][k]}
            ).encode())
            for c in np.flatnonzero(valid[:, k])
        ]
        yield t, len(messages), messages


class Publisher:
    """A kafka-python producer that remembers its first failed record instead of losing it.

    ``send`` does not wait (the client batches); :meth:`flush` waits for every record sent
    so far and raises the first delivery error, so a caller that flushed knows that all
    it sent is stored. Idempotent with ``acks="all"``: client retries neither duplicate
    nor reorder records of a partition.
    """

    def __init__(
        self, bootstrap_servers: str | Sequence[str], *,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._producer = kafka_clients.producer(**{
            # Throughput defaults, overridable: a short linger fills batches of many frames.
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            **dict(producer_config or {}),
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "enable_idempotence": True,
        })
        self._error: BaseException | None = None

    def send(self, topic: str, messages: Iterable[KeyValue]) -> None:
        """Queue ``(key, value)`` records for ``topic``; raises an earlier delivery error."""
        self._raise_failure()
        for key, value in messages:
            self._producer.send(topic, key=key, value=value).add_errback(self._failed)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued record is acknowledged; raise the first that failed."""
        self._producer.flush(timeout=timeout_s)
        self._raise_failure()

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.close(timeout=timeout_s)

    def _failed(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stream(
    sim: Simulation,
    ids: Sequence[str],
    publisher: Publisher,
    topic: str,
    *,
    frame_size: int = 100,
    speedup: float | None = None,
    on_window: Callable[[ProduceStats], None] | None = None,
) -> ProduceStats:
    """Run ``sim`` to its end, publishing every sample to ``topic``; return what was sent.

    ``speedup=None`` sends as fast as the client takes records; a number sends each window
    once ``(sample time - t0) / speedup`` seconds of wall time have passed since the start,
    as a cycler reporting live would. ``on_window`` is called after each window is sent
    (progress displays). Returns after every record is acknowledged.
    """
    if speedup is not None and not speedup > 0:
        raise ValueError(f"speedup must be > 0, not {speedup}")
    stats = ProduceStats(cells=len(ids))
    for block in sim.blocks(block_ticks=BLOCK_TICKS):
        if stats.t_first is None and block.t.size:
            stats.t_first = float(block.t[0])
        for t_last, samples, messages in encode_block(block, ids, frame_size):
            if speedup is not None:
                wait = (t_last - sim.t0) / speedup - stats.elapsed_s
                if wait > 0:
                    time.sleep(wait)
            publisher.send(topic, messages)
            stats.messages += len(messages)
            stats.samples += samples
            stats.bytes += sum(len(v) for _, v in messages)
            stats.t_last = t_last
            if on_window is not None:
                on_window(stats)
    publisher.flush()
    return stats
