"""Per-sample and per-cell costs of the twin step as counts grow. Prints figures; asserts nothing.

    python benchmarks/costs_bench.py [--baseline REV] [--budget 60]

Three measurements on one shard (`pipeline.twin_step.ShardLogic`), fed in batches of
1,000 items as a Kafka source hands them over:

1. waiting frames: 5k / 10k / 20k / 40k single samples of a cell whose metadata has not
   come (they wait for it), then its metadata (every waiting sample is stepped);
2. registering cells: 1k / 5k / 10k new cells (a `cell.meta` record each), then one
   sample of each, stepped;
3. memory per cell at 10,000 cells: the pickled snapshot and the live state (tracemalloc)
   divided by the cell count.

``--baseline REV`` runs the same measurements on the code of git revision REV (exported
to a temporary folder, run in a subprocess) and prints both columns; a baseline size is
skipped once a smaller one took more than ``--budget`` seconds. Timings on a shared
machine are noisy: compare figures of one run.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent

WAITING = (5_000, 10_000, 20_000, 40_000)
CELLS = (1_000, 5_000, 10_000)
MEMORY_CELLS = 10_000
BATCH = 1_000
_T0 = 1_767_225_600.0


def _batches(items: list) -> list[list]:
    return [items[k : k + BATCH] for k in range(0, len(items), BATCH)]


def _measure(budget: float) -> dict[str, dict[str, float | None]]:
    """The figures of the code on sys.path (imported here so a baseline tree can stand in)."""
    import numpy as np

    from connectors.wire import CellMeta, Frame
    from pipeline.twin_step import ShardLogic

    def sample(cell: str, k: int) -> Frame:
        one = np.ones(1)
        return Frame(cell, one * (_T0 + 10.0 * k), one * 0.9, one * -1e-4, one * np.nan)

    def meta(cell: str) -> CellMeta:
        return CellMeta(cell, 1.0, preset="mgh2")

    def timed(calls: list) -> float:
        start = time.perf_counter()
        for call in calls:
            call()
        return time.perf_counter() - start

    figures: dict[str, dict[str, float | None]] = {"waiting_s": {}, "waiting_then_meta_s": {}, "cells_s": {}}
    over = False
    for n in WAITING:
        if over:
            figures["waiting_s"][str(n)] = figures["waiting_then_meta_s"][str(n)] = None
            continue
        logic = ShardLogic({}, 10.0, meta_wait_s=3600.0)
        waiting = timed([lambda b=b: logic.on_batch(b) for b in _batches([sample("X1", k) for k in range(n)])])
        figures["waiting_s"][str(n)] = waiting
        figures["waiting_then_meta_s"][str(n)] = waiting + timed([lambda: logic.on_batch([meta("X1")])])
        over = waiting > budget
    over = False
    for n in CELLS:
        if over:
            figures["cells_s"][str(n)] = None
            continue
        logic = ShardLogic({}, 10.0)
        names = [f"C{k:05d}" for k in range(n)]
        calls = [lambda b=b: logic.on_batch(b) for b in _batches([meta(c) for c in names])]
        calls += [lambda b=b: logic.on_batch(b) for b in _batches([sample(c, 0) for c in names])]
        figures["cells_s"][str(n)] = elapsed = timed(calls)
        over = elapsed > budget

    tracemalloc.start()
    logic = ShardLogic({}, 10.0)
    names = [f"C{k:05d}" for k in range(MEMORY_CELLS)]
    for batch in _batches([meta(c) for c in names]) + _batches([sample(c, 0) for c in names]):
        logic.on_batch(batch)
    live, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    figures["memory_bytes_per_cell"] = {"snapshot": len(pickle.dumps(logic.snapshot())) / MEMORY_CELLS,
                                        "live": live / MEMORY_CELLS}
    return figures


def _baseline(rev: str, budget: float) -> dict:
    """The figures of git revision `rev`, measured in a subprocess on its exported tree."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(_REPO), "archive", rev], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        done = subprocess.run([sys.executable, __file__, "--measure", tmp, "--budget", str(budget)],
                              check=True, capture_output=True, text=True)
        return json.loads(done.stdout)


def _print(now: dict, before: dict | None, rev: str | None) -> None:
    def cell(value: float | None) -> str:
        return "skipped" if value is None else f"{value:,.2f}"

    print(f"{'':36}{'now':>12}" + (f"{rev[:12]:>14}" if before else ""))
    rows = [("waiting_s", "{:,} waiting samples, s"), ("waiting_then_meta_s", "{:,} waiting + metadata, stepped, s"),
            ("cells_s", "{:,} new cells, s")]
    for key, label in rows:
        for n, value in now[key].items():
            line = f"{label.format(int(n)):36}{cell(value):>12}"
            print(line + (f"{cell(before[key][n]):>14}" if before else ""))
    for kind, value in now["memory_bytes_per_cell"].items():
        line = f"{f'memory per cell at {MEMORY_CELLS:,} ({kind}), B':36}{value:>12,.0f}"
        print(line + (f"{before['memory_bytes_per_cell'][kind]:>14,.0f}" if before else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="git revision to measure as well (e.g. a commit before a change)")
    parser.add_argument("--budget", type=float, default=60.0, help="skip larger sizes after one took longer (s)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure the tree at this path, print JSON
    args = parser.parse_args()
    if args.measure:
        sys.path.insert(0, args.measure)
        print(json.dumps(_measure(args.budget)))
        return
    sys.path.insert(0, str(_REPO))
    before = _baseline(args.baseline, args.budget) if args.baseline else None
    _print(_measure(args.budget), before, args.baseline)


if __name__ == "__main__":
    main()
