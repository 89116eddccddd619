"""Memory of live cells: the resident size of one process holding 10,000 cells' twins.

    python benchmarks/memory_bench.py [--cells 10000] [--samples 60] [--shards 1]

The twin step's state as the dataflow keeps it (`pipeline.twin_step.ShardLogic`, one per
shard; one shard per worker by default): each cell's metadata arrives, then frames of
`--samples` simulated samples per cell, stepped in batches of 1,000 cells, so every cell
has a tracker row, its analytics accumulators and its alert latch. Prints the process's
resident set (now and its peak, from /proc) before and after, what that is per cell, the
arrays per cell, and the snapshot bytes per cell (what recovery writes). The target is a
resident set of at most 1 GiB with 10,000 live cells. Linux only (reads /proc/self/status).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
from collections import defaultdict

import numpy as np

from connectors.wire import CellMeta, Frame
from pipeline.shards import shard_keys, shard_of
from pipeline.twin_step import ShardLogic
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation

_BATCH_CELLS = 1000
_MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss() -> tuple[float, float]:
    """(resident now, peak resident) in MiB."""
    gc.collect()
    return _status_kib("VmRSS") / 1024, _status_kib("VmHWM") / 1024


def _nbytes(obj: object) -> int:
    """Bytes of the numpy arrays an object's fields hold (one level deep)."""
    return sum(a.nbytes for a in vars(obj).values() if isinstance(a, np.ndarray))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000, help="live cells in the process")
    parser.add_argument("--samples", type=int, default=60, help="samples stepped per cell (10 s apart)")
    parser.add_argument("--shards", type=int, default=1, help="state shards (the dataflow's default: one per worker)")
    args = parser.parse_args()

    # One simulated stream for all cells (each cell's own twin steps it): the inputs stay small.
    sim = Simulation([preset("nd4mg80ni8")], cc_cycles(1.0, 1), dt=10.0, noise=SensorNoise(), seed=1)
    block = next(sim.blocks(block_ticks=args.samples))
    names = [f"cell{k:05d}" for k in range(args.cells)]
    keys = shard_keys(args.shards, 1)
    rows: dict[str, list[str]] = defaultdict(list)
    for name in names:
        rows[shard_of(name, keys)].append(name)
    before, _ = _rss()
    print(f"{args.cells:,} cells, {args.samples} samples each, {args.shards} shard(s); "
          f"resident before: {before:7.1f} MiB")

    t0 = time.perf_counter()
    logics = {key: ShardLogic({}, estimate_interval_s=10.0) for key in keys}
    emitted = 0
    for key, cells in rows.items():
        logic = logics[key]
        for lo in range(0, len(cells), _BATCH_CELLS):
            chunk = cells[lo:lo + _BATCH_CELLS]
            items: list = [CellMeta(cell=c, mass_mg=1.0, preset="nd4mg80ni8") for c in chunk]
            items += [Frame(c, block.t, block.v[0], block.i[0], block.temp_c[0]) for c in chunk]
            out, _ = logic.on_batch(items)
            emitted += len(out)
    stepped = time.perf_counter() - t0
    now, peak = _rss()
    states = [logic.snapshot() for logic in logics.values()]
    tracker = sum(_nbytes(s.tracker) for s in states if s.tracker is not None)
    measured = sum(_nbytes(s.measured) for s in states if s.measured is not None)
    pickled = sum(len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)) for s in states)
    print(f"stepped in {stepped:.1f} s; resident with the cells live: {now:7.1f} MiB "
          f"(peak {peak:7.1f} MiB; target <= 1024 MiB)")
    print(f"per cell: {(now - before) * _MIB / args.cells:8,.0f} bytes resident, "
          f"{tracker / args.cells:8,.0f} bytes tracker arrays, {measured / args.cells:8,.0f} bytes analytics arrays, "
          f"{pickled / args.cells:8,.0f} bytes snapshot")


if __name__ == "__main__":
    main()
