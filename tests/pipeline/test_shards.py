"""The shard layout: stable keys, spread evenly over bytewax workers, kept by recovery."""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main

from connectors.config import ConfigError, load_config
from pipeline.shards import LAYOUT_FILE, shard_keys, shard_layout, shard_of


def _threads_per_key(keys: list[str], workers: int) -> dict[str, int]:
    """Which worker thread holds each key's state in a real bytewax run."""
    seen: dict[str, int] = {}
    flow = Dataflow("threads")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys * 3)), lambda key: key)
    op.inspect("seen", op.stateful_map("state", keyed, lambda _s, key: (None, key)),
               lambda _step, item: seen.setdefault(item[0], threading.get_ident()))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return seen


def test_a_cell_keeps_its_key_in_every_process() -> None:
    keys = shard_keys(64, 1)
    assert shard_of("A1", keys) == keys[zlib.crc32(b"A1") % 64]  # not hash(): salted per process
    assert {shard_of(f"cell{k}", keys[:4]) for k in range(100)} == set(keys[:4])


def test_one_worker_uses_plain_names() -> None:
    assert shard_keys(3, 1) == ["shard-0", "shard-1", "shard-2"]


@pytest.mark.parametrize(("count", "workers"), [(2, 2), (4, 2), (3, 3), (4, 4), (8, 4)])
def test_keys_spread_evenly_over_workers(count: int, workers: int) -> None:
    keys = shard_keys(count, workers)

    assert len(set(keys)) == count
    per_thread = Counter(_threads_per_key(keys, workers).values())
    assert sorted(per_thread.values()) == [count // workers] * workers


def test_a_recovery_folder_keeps_its_layout(tmp_path: Path) -> None:
    recovery = tmp_path / "recovery"
    cfg = load_config(env={}, flags={"recovery_dir": str(recovery)})

    first = shard_layout(cfg, workers=2)
    assert (recovery / LAYOUT_FILE).read_text().split() == first and len(first) == 2  # one per worker
    assert shard_layout(cfg, workers=4) == first  # a resumed run keeps the cells' keys
    explicit = load_config(env={}, flags={"recovery_dir": str(recovery), "shards": 3})
    with pytest.raises(ConfigError, match="2 shards, not 3"):
        shard_layout(explicit, workers=2)
