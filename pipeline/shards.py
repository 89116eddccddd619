"""Which state key holds a cell's twin: the shard layout of a run.

Cells of one shard are stepped together in one numpy call, whose cost is mostly fixed,
so a few full shards are fastest; shards are what spreads the work over workers. bytewax
sends a state key to worker ``hash(key) % workers``, and plain names spread badly: with
two workers, "shard-0" .. "shard-3" all land on one of them. `shard_keys` therefore
routes candidate names through bytewax once (a few milliseconds) and takes names that
cover the workers evenly.

A run with recovery keeps its layout in the recovery folder (`LAYOUT_FILE`, one key per
line): cells are assigned to keys by position, so a resumed run must use the same keys,
even with another worker count.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Sequence

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main

from connectors.config import Config, ConfigError

__all__ = ["LAYOUT_FILE", "shard_keys", "shard_layout", "shard_of"]

LAYOUT_FILE = "celltwin-shards"
_CANDIDATES_PER_WORKER = 32


def shard_of(cell: str, keys: Sequence[str]) -> str:
    """The state key of a cell: stable across runs and processes (unlike hash())."""
    return keys[zlib.crc32(cell.encode()) % len(keys)]


def _routes(names: list[str], workers: int) -> dict[str, int]:
    """The worker bytewax routes each state key to, in a run of `workers` workers."""
    seen: dict[str, int] = {}
    flow = Dataflow("shard_probe")
    keyed = op.key_on("key", op.input("names", flow, TestingSource(names)), lambda name: name)
    routed = op.stateful_map("route", keyed, lambda _state, name: (None, name))
    op.inspect_debug("where", routed, lambda _step, item, _epoch, worker: seen.__setitem__(item[0], worker))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return seen


def shard_keys(count: int, workers: int) -> list[str]:
    """`count` state keys that bytewax spreads round-robin over `workers` workers."""
    names = [f"shard-{k}" for k in range(max(count, workers * _CANDIDATES_PER_WORKER))]
    if workers == 1:
        return names[:count]
    routes = _routes(names, workers)
    by_worker: dict[int, list[str]] = {}
    for name in names:
        by_worker.setdefault(routes[name], []).append(name)
    keys = []
    for k in range(count):
        pool = by_worker.get(k % workers) or next(p for p in by_worker.values() if p)
        keys.append(pool.pop(0))
    return keys


def shard_layout(cfg: Config, workers: int) -> list[str]:
    """The keys of a run of `workers` workers in all: those its recovery folder recorded,
    else `shard_keys` (recorded there when the run has recovery)."""
    folder = cfg.recovery_dir
    layout = folder / LAYOUT_FILE if folder is not None else None
    if layout is not None and layout.is_file():
        keys = layout.read_text().split()
        if cfg.shards is not None and cfg.shards != len(keys):
            raise ConfigError(f"{folder} holds the state of a run with {len(keys)} shards, not {cfg.shards}: "
                              f"drop --shards / CELLTWIN_SHARDS (or set it to {len(keys)}), or use a new "
                              "recovery folder")
        return keys
    keys = shard_keys(cfg.shard_count(workers), workers)
    if layout is not None:
        _write_atomically(layout, "".join(f"{key}\n" for key in keys))
    return keys


def _write_atomically(path: Path, text: str) -> None:
    """Processes of a cluster may record the same layout at once; none sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)
