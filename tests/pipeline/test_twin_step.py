"""The sharded twin step: the same numbers as the estimator run cell by cell, whatever
the shard count or the batch boundaries; metadata, unknown cells and stale samples."""

from __future__ import annotations

import json
import pickle
import time
from collections import defaultdict

import numpy as np
import pytest

from connectors.wire import MEAS_ALERT, MEAS_CYCLE, MEAS_STATE, STATE_FIELDS, TAG_CELL, TAG_PRESET, Batch, CellMeta, Frame
from pipeline.shards import shard_of
from pipeline.twin_step import STATE_FORMAT, ShardLogic, StateFormatError
from twin.estimator import new_tracker, step
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import Simulation

METAS = [CellMeta("A1", 1.0, preset="nd4mg80ni8"), CellMeta("B2", 1.0, preset="mgh2"),
         CellMeta("C3", 0.8, preset="nd4mg80ni8")]


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[np.ndarray, ...]]:
    """One 1C cycle of three cells at 20 s sampling (they end at different times)."""
    sim = Simulation([m.params() for m in METAS], cc_cycles(1.0, 1), dt=20.0, seed=3)
    blocks = list(sim.blocks(block_ticks=4096))
    out = {}
    for row, meta in enumerate(METAS):
        parts = [(b.t[b.valid[row]], b.v[row, b.valid[row]], b.i[row, b.valid[row]], b.temp_c[row, b.valid[row]])
                 for b in blocks]
        out[meta.cell] = tuple(np.concatenate(column) for column in zip(*parts))
    return out


def _direct(meta: CellMeta, t, v, i, temp) -> tuple[np.ndarray, list[tuple]]:
    """The estimator alone on one cell: soc per sample and the half-cycle capacities."""
    tracker = new_tracker([preset(meta.label, mass_mg=meta.mass_mg)])
    soc, halves = [], []
    for k in range(t.size):
        res = step(tracker, t[k : k + 1], v[k : k + 1], i[k : k + 1], temp[k : k + 1])
        soc.append(res.soc[0])
        halves += [(h.cycle, h.half, h.capacity_mah, h.retention) for h in res.halves]
    return np.array(soc), halves


def _frames(samples, sizes: list[int]) -> list[Frame]:
    """Every cell's samples cut into frames of the given sizes (cycled), interleaved."""
    per_cell = {}
    for cell, (t, v, i, temp) in samples.items():
        frames, start, k = [], 0, 0
        while start < t.size:
            end = start + sizes[k % len(sizes)]
            frames.append(Frame(cell, t[start:end], v[start:end], i[start:end], temp[start:end]))
            start, k = end, k + 1
        per_cell[cell] = frames
    longest = max(len(f) for f in per_cell.values())
    return [fs[k] for k in range(longest) for fs in per_cell.values() if k < len(fs)]


def _run(items: list, shards: int, batch: int, interval: float = 0.0, config=None,
         close_at_end: bool = False) -> dict[str, list]:
    """Route items by shard like the dataflow does, feed each shard in batches of `batch`,
    then end the input."""
    queues: dict[str, list] = defaultdict(list)
    results: dict[str, list] = defaultdict(list)
    keys = [f"shard-{k}" for k in range(shards)]
    for item in items:
        queues[shard_of(item.cell, keys)].append(item)
    for queue in queues.values():
        logic = ShardLogic(config or {}, interval, close_at_end=close_at_end)
        calls = [lambda part=queue[k : k + batch]: logic.on_batch(part) for k in range(0, len(queue), batch)]
        for call in calls + [logic.on_eof]:
            emitted, retain = call()
            assert retain is False  # RETAIN
            for kind, value in emitted:
                results[kind].append(value)
                if kind == "batch":
                    results["point"] += _points(value)
    return results


def _points(batch: Batch) -> list[dict]:
    """A batch as one dict per row (measurement, tags, fields, time), to compare rows."""
    tags, fields = ({name: column.tolist() for name, column in part.items()} for part in (batch.tags, batch.fields))
    return [{"measurement": batch.measurement, "tags": {name: tags[name][row] for name in tags},
             "fields": {name: fields[name][row] for name in fields}, "time": time}
            for row, time in enumerate(batch.time.tolist())]


def _emitted_points(emitted: list) -> list[dict]:
    return [point for kind, value in emitted if kind == "batch" for point in _points(value)]


def _table(points: list[dict]) -> list[tuple]:
    """Points in a canonical order, fields as JSON (so NaN equals NaN)."""
    return sorted((p["measurement"], json.dumps(p["tags"], sort_keys=True), p["time"],
                   json.dumps(p["fields"], sort_keys=True)) for p in points)


def _by_cell(points: list[dict], measurement: str, field: str) -> dict[str, list]:
    out = defaultdict(list)
    for p in sorted((p for p in points if p["measurement"] == measurement), key=lambda p: p["time"]):
        out[p["tags"]["cell"]].append(p["fields"][field])
    return out


def test_sharded_step_equals_the_estimator_cell_by_cell(samples) -> None:
    results = _run(METAS + _frames(samples, [30]), shards=2, batch=4)

    soc = _by_cell(results["point"], MEAS_STATE, "soc")
    capacity = _by_cell(results["point"], MEAS_CYCLE, "capacity_mah")
    for meta in METAS:
        expected_soc, expected_halves = _direct(meta, *samples[meta.cell])
        np.testing.assert_allclose(soc[meta.cell], expected_soc, rtol=1e-12, atol=0)
        assert len(expected_halves) >= 1
        np.testing.assert_allclose(capacity[meta.cell], [h[2] for h in expected_halves], rtol=1e-12)
    assert not results["deadletter"]
    stats = results["stats"]
    assert sum(s.samples for s in stats) == sum(v[0].size for v in samples.values())
    assert sum(s.new_cells for s in stats) == len(METAS)


@pytest.mark.parametrize(("shards", "sizes", "batch"), [(1, [1], 1), (3, [7, 50, 3], 5), (64, [200], 100)])
def test_results_do_not_depend_on_shards_or_batching(samples, shards: int, sizes: list[int], batch: int) -> None:
    reference = _run(METAS + _frames(samples, [30]), shards=2, batch=4, interval=60.0)
    other = _run(METAS + _frames(samples, sizes), shards=shards, batch=batch, interval=60.0)

    assert _table(other["point"]) == _table(reference["point"])
    states = [p for p in reference["point"] if p["measurement"] == MEAS_STATE]
    times = _by_cell(states, MEAS_STATE, "v")
    assert all(len(v) < samples[c][0].size / 2 for c, v in times.items())  # rate-limited: 60 s of 20 s samples


def test_the_end_of_a_finished_input_closes_the_last_half(samples) -> None:
    items = METAS + _frames(samples, [30])
    kept_open = _by_cell(_run(items, shards=1, batch=50)["point"], MEAS_CYCLE, "capacity_mah")
    closed = _by_cell(_run(items, shards=1, batch=50, close_at_end=True)["point"], MEAS_CYCLE, "capacity_mah")

    for meta in METAS:  # one cycle: the discharge closes at the reversal, the charge only at the end
        assert len(kept_open[meta.cell]) == 1 and len(closed[meta.cell]) == 2
        assert closed[meta.cell][0] == kept_open[meta.cell][0]


def test_frames_that_overtake_their_metadata_wait_for_it(samples) -> None:
    a1 = [f for f in _frames(samples, [10]) if f.cell == "A1"][:3]
    early = _run([a1[0], a1[1], METAS[0], a1[2]], shards=1, batch=1)
    in_order = _run([METAS[0], *a1], shards=1, batch=10)

    assert not early["deadletter"]
    assert _table(early["point"]) == _table(in_order["point"])
    assert sum(s.samples for s in early["stats"]) == 30


def test_cell_whose_metadata_never_comes_is_dead_lettered_at_the_end(samples) -> None:
    x9 = [Frame("X9", f.t, f.v, f.i, f.temp_c) for f in _frames(samples, [10]) if f.cell == "A1"][:2]
    results = _run([*x9, METAS[1]], shards=1, batch=1)

    letters = results["deadletter"]
    assert [d.reason for d in letters] == ["unknown_cell", "unknown_cell"]
    assert letters[0].error.startswith("unknown cell: no metadata") and "[cells.X9]" in letters[0].error
    assert json.loads(json.loads(letters[0].to_json())["payload"])["t"] == x9[0].t.tolist()
    assert sum(s.deadletters for s in results["stats"]) == 2
    assert not results["point"]


def test_waiting_for_metadata_gives_up_after_meta_wait_s(samples) -> None:
    frame = Frame("X9", *samples["A1"])
    logic = ShardLogic({}, 10.0, meta_wait_s=0.05)
    before = time.time()
    emitted, _ = logic.on_batch([frame])
    after = time.time()
    assert [kind for kind, _ in emitted] == ["stats"]
    due = logic.notify_at()
    # Bounded by the clock around the call, not by a guess of how long it took.
    assert due is not None and before + 0.05 <= due.timestamp() + 1e-6 and due.timestamp() <= after + 0.05 + 1e-6

    time.sleep(0.06)
    emitted, _ = logic.on_notify()
    assert [(kind, getattr(value, "reason", None)) for kind, value in emitted] == [
        ("deadletter", "unknown_cell"), ("stats", None)]
    assert logic.notify_at() is None


def test_config_metadata_is_used_without_a_meta_record(samples) -> None:
    frames = [f for f in _frames(samples, [10]) if f.cell == "B2"][:2]
    results = _run(frames, shards=1, batch=10, config={"B2": METAS[1]})

    assert not results["deadletter"]
    assert {p["tags"]["preset"] for p in results["point"]} == {"mgh2"}


def test_stale_and_replayed_samples_are_dead_letters_with_the_rejected_samples(samples) -> None:
    first, second = [f for f in _frames(samples, [10]) if f.cell == "A1"][:2]
    overlap = Frame("A1", np.concatenate([first.t[-3:], second.t]), np.concatenate([first.v[-3:], second.v]),
                    np.concatenate([first.i[-3:], second.i]), np.concatenate([first.temp_c[-3:], second.temp_c]))
    results = _run([METAS[0], first, first, overlap], shards=1, batch=2)

    letters = results["deadletter"]
    assert [(d.reason, json.loads(json.loads(d.to_json())["payload"])["t"]) for d in letters] == [
        ("stale_time", first.t.tolist()), ("stale_time", first.t[-3:].tolist())]
    assert len(_by_cell(results["point"], MEAS_STATE, "soc")["A1"]) == 20  # every new sample, once


def test_corrected_metadata_restarts_the_cell_and_identical_metadata_does_not(samples) -> None:
    frames = [f for f in _frames(samples, [10]) if f.cell == "A1"][:3]
    heavier = CellMeta("A1", 2.0, preset="nd4mg80ni8")
    results = _run([METAS[0], frames[0], METAS[0], frames[1], heavier, frames[2]], shards=1, batch=6)

    capacity = _by_cell(results["point"], MEAS_STATE, "capacity_mah")["A1"]
    assert capacity[0] == capacity[19]  # repeated identical metadata kept the state
    assert capacity[20] == pytest.approx(2.0 * capacity[0], rel=0.05)  # twice the mass, restarted
    assert sum(s.new_cells for s in results["stats"]) == 1
    assert sum(s.samples for s in results["stats"]) == 30  # those stepped before the correction too


def test_snapshot_resumes_to_the_same_results(samples) -> None:
    items = METAS + _frames(samples, [25])
    whole = ShardLogic({}, 0.0)
    whole_points = _emitted_points(whole.on_batch(items)[0])

    half = len(items) // 2
    first = ShardLogic({}, 0.0)
    points = _emitted_points(first.on_batch(items[:half])[0])
    resumed = ShardLogic({}, 0.0, resume=first.snapshot())
    first.on_batch(items[half:])  # the original goes on; the snapshot must not move with it
    points += _emitted_points(resumed.on_batch(items[half:])[0])

    assert _table(points) == _table(whole_points)


def test_a_snapshot_another_release_wrote_is_refused_with_what_to_do(samples) -> None:
    first = ShardLogic({}, 0.0)
    first.on_batch(METAS + _frames(samples, [25])[:10])
    snapshot = pickle.loads(pickle.dumps(first.snapshot()))  # as the recovery store keeps it
    assert snapshot.state_format == STATE_FORMAT
    ShardLogic({}, 0.0, resume=snapshot)  # this release reads its own

    older = pickle.loads(pickle.dumps(first.snapshot()))
    del older.__dict__["state_format"]  # a snapshot from before the stamp
    with pytest.raises(StateFormatError, match="unstamped.*Resume with the release that wrote it.*--recovery-dir"):
        ShardLogic({}, 0.0, resume=older)
    older.state_format = "0123456789ab"  # a release whose state had other fields
    with pytest.raises(StateFormatError, match="format 0123456789ab and this release reads format"):
        ShardLogic({}, 0.0, resume=older)


def test_metadata_corrected_before_the_cell_joins_the_arrays_is_the_one_used(samples) -> None:
    frames = [f for f in _frames(samples, [10]) if f.cell == "A1"][:2]
    heavier = CellMeta("A1", 2.0, preset="nd4mg80ni8")
    corrected = _run([METAS[1], METAS[0], heavier, *frames], shards=1, batch=10)
    only = _run([METAS[1], heavier, *frames], shards=1, batch=10)

    assert _table(corrected["point"]) == _table(only["point"])
    assert sum(s.new_cells for s in corrected["stats"]) == 2


def test_a_full_waiting_queue_gives_up_its_oldest_frames(samples, monkeypatch) -> None:
    monkeypatch.setattr("pipeline.twin_step.WAIT_SAMPLES", 25)
    x9 = [Frame("X9", f.t, f.v, f.i, f.temp_c) for f in _frames(samples, [10]) if f.cell == "A1"][:4]
    results = _run([*x9, CellMeta("X9", 1.0, preset="nd4mg80ni8")], shards=1, batch=10)

    letters = results["deadletter"]
    assert [d.reason for d in letters] == ["unknown_cell", "unknown_cell"]
    assert [json.loads(json.loads(d.to_json())["payload"])["t"] for d in letters] == [f.t.tolist() for f in x9[:2]]
    assert sum(s.samples for s in results["stats"]) == 20  # the two newest frames waited and were stepped


def test_a_half_closed_by_the_end_of_the_input_fires_no_alert() -> None:
    """Data that stops a third into the second charge: the end closes that half, whose
    small count is the data stopping, not a cell that lost capacity."""
    meta = METAS[0]
    sim = Simulation([meta.params()], cc_cycles(1.0, 2), dt=20.0, seed=3)
    blocks = list(sim.blocks(block_ticks=4096))
    parts = [(b.t[b.valid[0]], b.v[0, b.valid[0]], b.i[0, b.valid[0]], b.temp_c[0, b.valid[0]]) for b in blocks]
    t, v, i, temp = (np.concatenate(column) for column in zip(*parts))
    charging = np.flatnonzero(i > 0)
    last_charge = charging[charging > np.flatnonzero(i < 0).max()]
    stop = last_charge[len(last_charge) // 3]
    items = [METAS[0], *_frames({meta.cell: (t[:stop], v[:stop], i[:stop], temp[:stop])}, [30])]

    points = _run(items, shards=1, batch=50, close_at_end=True)["point"]

    halves = [p for p in points if p["measurement"] == MEAS_CYCLE]
    assert [h["tags"]["half"] for h in halves] == ["discharge", "charge", "discharge", "charge"]
    assert halves[-1]["fields"]["measured_retention"] < 0.5  # it would cross the retention floor
    assert not [p for p in points if p["measurement"] == MEAS_ALERT and p["time"] >= t[stop - 1]]


def test_estimates_leave_as_one_columnar_batch_per_pass(samples) -> None:
    """A pass over a bytewax batch gives one twin_state batch: every due row, in step order,
    typed columns (no dict per point), each row the cell's own tags."""
    logic = ShardLogic({}, 0.0)
    emitted = logic.on_batch(METAS + _frames(samples, [40])[:len(METAS)])[0]  # each cell's first 40
    assert not [kind for kind, _ in emitted if kind == "point"]
    states = [value for kind, value in emitted if kind == "batch" and value.measurement == MEAS_STATE]
    assert len(states) == 1
    batch = states[0]
    assert len(batch) == 40 * len(METAS)  # interval 0: every sample is due
    assert set(batch.fields) == set(STATE_FIELDS)
    assert batch.fields["flags"].dtype == np.int64 and batch.fields["soc"].dtype == np.float64
    labels = {m.cell: m.label for m in METAS}
    assert [labels[c] for c in batch.tags[TAG_CELL]] == batch.tags[TAG_PRESET].tolist()
    for meta in METAS:
        times = batch.time[batch.tags[TAG_CELL] == meta.cell]
        assert times.tolist() == samples[meta.cell][0][:40].tolist()
