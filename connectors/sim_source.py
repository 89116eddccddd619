"""The simulator as a bytewax source: simulated cyclers for the embedded run.

The source is an adapter like the Kafka one: it turns `twin.simulator` blocks into
the same items the Kafka path decodes to (`CellMeta` first, then one `Frame` per cell
and block), so everything downstream is the same dataflow. Time is accelerated: a
block is emitted as soon as the flow asks for the next one.

The resume state is the number of blocks already emitted. The simulation is
deterministic for a seed, so a resumed run rebuilds it and skips those blocks.
"""

from __future__ import annotations

from typing import Callable, Sequence

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.wire import CellMeta, Frame
from twin.simulator import SampleBlock, Simulation

__all__ = ["SimulatorSource"]

SimItem = Frame | CellMeta


class SimulatorSource(FixedPartitionedSource[SimItem, int]):
    """Frames of `make_simulation()`'s cells, named by `metas` (same order), in blocks of
    `frame_samples` ticks; the metadata of every cell comes first."""

    def __init__(self, metas: Sequence[CellMeta], make_simulation: Callable[[], Simulation],
                 frame_samples: int = 60) -> None:
        self._metas = list(metas)
        self._make = make_simulation
        self._frame_samples = frame_samples

    def list_parts(self) -> list[str]:
        # One simulation steps all cells at once (it is vectorised): one partition.
        return ["simulator"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> StatefulSourcePartition[SimItem, int]:
        return _SimulatorPartition(self._metas, self._make(), self._frame_samples, resume_state or 0)


class _SimulatorPartition(StatefulSourcePartition[SimItem, int]):
    def __init__(self, metas: list[CellMeta], sim: Simulation, frame_samples: int, skip: int) -> None:
        self._names = [m.cell for m in metas]
        self._pending_meta: list[SimItem] = list(metas)
        self._blocks = sim.blocks(block_ticks=frame_samples)
        self._emitted = skip
        for _ in range(skip):
            next(self._blocks)

    def next_batch(self) -> list[SimItem]:
        if self._pending_meta:
            batch, self._pending_meta = self._pending_meta, []
            return batch
        block = next(self._blocks)  # StopIteration ends the partition
        self._emitted += 1
        return self._frames(block)

    def _frames(self, block: SampleBlock) -> list[SimItem]:
        frames: list[SimItem] = []
        for row, cell in enumerate(self._names):
            valid = block.valid[row]
            if valid.any():
                frames.append(Frame(cell, block.t[valid].copy(), block.v[row, valid], block.i[row, valid],
                                    block.temp_c[row, valid]))
        return frames

    def snapshot(self) -> int:
        return self._emitted
