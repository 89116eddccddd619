"""Archive -> wire frames: contents, frame cuts the decoder accepts, pacing, the bytewax source."""

from __future__ import annotations

import json
import math
import time

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.decode import decode_samples
from connectors.readers import CellRecord
from connectors.replay_source import MAX_FRAME, Pacer, ReplaySource, encode, origin_of, parse_speed, wire_frames
from connectors.wire import TOPIC_SAMPLES, DeadLetter, Frame, KafkaMessage

T0 = 1_767_225_600.0


def _record(name: str = "A1", n: int = 50, dt: float = 5.0, t0: float = T0) -> CellRecord:
    t = t0 + dt * np.arange(n)
    i = np.where(np.arange(n) < n // 2, -1e-3, 1e-3)
    v = 0.6 + 0.01 * np.sin(np.arange(n))
    return CellRecord(name, t, v, i, np.full(n, 130.0))


def _decode(frame: dict) -> Frame | DeadLetter:
    key, value = encode(frame)
    return decode_samples(KafkaMessage(TOPIC_SAMPLES, 0, 0, key, value, 0))


def test_frames_carry_every_sample_and_decode_as_wire_frames() -> None:
    rec = _record(n=1000)
    frames = list(wire_frames([rec], max_frame=300))

    assert [len(f["t"]) for f in frames] == [300, 300, 300, 100]
    decoded = [_decode(f) for f in frames]
    assert all(isinstance(d, Frame) and d.cell == "A1" for d in decoded)
    np.testing.assert_array_equal(np.concatenate([d.t for d in decoded]), rec.t)
    np.testing.assert_array_equal(np.concatenate([d.v for d in decoded]), rec.v)
    np.testing.assert_array_equal(np.concatenate([d.i for d in decoded]), rec.i)
    np.testing.assert_array_equal(np.concatenate([d.temp_c for d in decoded]), rec.temp_c)
    key, value = encode(frames[0])
    assert key == b"A1" and json.loads(value)["t"][0] == rec.t[0]


def test_frames_are_cut_where_time_stalls_or_temperature_comes_and_goes() -> None:
    rec = _record(n=12)
    rec.t[5] = rec.t[4]  # a repeated timestamp
    rec.t[8] = rec.t[7] - 1.0  # time going back
    rec.temp_c[10:] = np.nan  # the probe dropped out
    frames = list(wire_frames([rec]))

    assert [f["t"][0] for f in frames] == [rec.t[0], rec.t[5], rec.t[8], rec.t[10]]
    assert ["temp_c" in f for f in frames] == [True, True, True, False]
    decoded = [_decode(f) for f in frames]
    assert all(isinstance(d, Frame) for d in decoded), decoded  # the decoder takes every frame
    assert sum(len(d) for d in decoded) == len(rec)
    assert np.isnan(decoded[-1].temp_c).all()


def test_pacing_follows_the_file_clock_scaled_and_keeps_gaps() -> None:
    rec = _record(n=20, dt=10.0)
    rec.t[10:] += 3600.0  # an hour without samples
    pacer = Pacer(rec, origin=T0, speed=10.0, max_frame=100)

    assert pacer.take(-1.0) is None
    first = pacer.take(4.5)  # samples at 0..40 s of file time are due by 4.0 s at 10x
    assert first is not None and len(first["t"]) == 5
    assert pacer.next_due() == pytest.approx(5.0)
    rest_before_gap = pacer.take(100.0)
    assert rest_before_gap is not None and len(rest_before_gap["t"]) == 5
    assert pacer.next_due() == pytest.approx((100.0 + 3600.0) / 10.0)  # the gap, scaled, not filled
    assert pacer.take(300.0) is None
    assert len(pacer.take(math.inf)["t"]) == 10 and pacer.done and pacer.next_due() == math.inf


def test_cells_recorded_side_by_side_stay_side_by_side() -> None:
    early, late = _record("E", t0=T0), _record("L", t0=T0 + 100.0)
    origin = origin_of([early, late])
    assert origin == T0
    assert Pacer(late, origin, speed=1.0).next_due() == pytest.approx(100.0)
    assert Pacer(early, origin, speed=1.0).next_due() == 0.0
    assert Pacer(late, origin, speed=None).next_due() == -math.inf


def test_speed_parsing() -> None:
    assert parse_speed("max") is None and parse_speed("MAX") is None
    assert parse_speed("1") == 1.0 and parse_speed("10") == 10.0 and parse_speed(2.5) == 2.5
    for bad in ("0", "-3", "fast", "inf"):
        with pytest.raises(ValueError, match="positive number or 'max'"):
            parse_speed(bad)


def _run(source: ReplaySource) -> list:
    out: list = []
    flow = Dataflow("replay_source")
    op.output("out", op.input("in", flow, source), TestingSink(out))
    run_main(flow)
    return out


def test_a_frame_the_decoder_refuses_is_a_dead_letter_pointing_at_the_sample() -> None:
    rec = _record("X", n=10)
    rec.v[6:8] = 650.0  # two rows logged in mV among rows in V
    part = ReplaySource([rec], speed=None).build_part("in", "X", None)

    items = [part.next_batch()[0] for _ in range(4)]

    assert [type(x).__name__ for x in items] == ["Frame", "DeadLetter", "DeadLetter", "Frame"]
    assert [len(items[0]), len(items[3])] == [6, 2]  # the good rows around them still go through
    assert [x.origin.offset for x in items] == [0, 6, 7, 8]
    assert {x.reason for x in items[1:3]} == {"voltage_range"} and items[1].cell == "X"


def test_the_source_gives_what_the_decoder_makes_of_the_produced_bytes() -> None:
    rec = _record("X", n=40)
    rec.v[6:8] = 650.0  # rows in mV: voltage_range
    rec.i[20] = 500.0  # current_range
    rec.temp_c[30:] = np.nan  # a temperature that stops being reported
    part = ReplaySource([rec], speed=None, max_frame=8).build_part("in", "X", None)
    pacer = Pacer(rec, 0.0, None, max_frame=8)

    while (frame := pacer.take(math.inf)) is not None:
        [got] = part.next_batch()
        want = _decode(frame)
        assert type(got) is type(want)
        if isinstance(want, Frame):
            for name in ("t", "v", "i", "temp_c"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
            assert (got.cell, got.origin.key) == (want.cell, want.origin.key)
        else:
            assert (got.reason, got.error, got.cell, json.loads(got.payload)) == (
                want.reason, want.error, want.cell, json.loads(want.payload))
    with pytest.raises(StopIteration):
        part.next_batch()


def test_bytewax_source_one_partition_per_cell_everything_in_order() -> None:
    records = [_record("A1", n=500), _record("B2", n=300, t0=T0 + 7.0)]
    source = ReplaySource(records, speed=None, max_frame=64)
    assert source.list_parts() == ["A1", "B2"]

    items = _run(source)

    assert all(isinstance(f, Frame) for f in items)
    for number, rec in enumerate(records):
        mine = [f for f in items if f.cell == rec.cell]
        np.testing.assert_array_equal(np.concatenate([f.t for f in mine]), rec.t)
        np.testing.assert_array_equal(np.concatenate([f.i for f in mine]), rec.i)
        assert max(len(f) for f in mine) == 64
        assert [f.origin.offset for f in mine] == list(range(0, len(rec), 64))
        assert {(f.origin.topic, f.origin.partition) for f in mine} == {(TOPIC_SAMPLES, number)}
    with pytest.raises(ValueError, match="unique"):
        ReplaySource([records[0], records[0]])


def test_bytewax_source_paces_and_resumes_at_its_snapshot() -> None:
    rec = _record("P", n=21, dt=1.0)  # 20 s of file time
    started = time.monotonic()
    items = _run(ReplaySource([rec], speed=40.0))
    elapsed = time.monotonic() - started

    assert elapsed >= 0.45  # 20 s at 40x
    assert sum(len(f) for f in items) == 21
    assert len(items) > 3  # released as they came due, not in one burst

    part = ReplaySource([rec], speed=None).build_part("in", "P", 15)
    resumed = part.next_batch()
    assert resumed[0].t[0] == rec.t[15]
    assert part.snapshot() == 21
    assert part.next_awake() is None  # its end is due now: no nap after the last frame
    with pytest.raises(StopIteration):
        part.next_batch()


def test_full_speed_frames_are_larger_the_fewer_the_cells_and_paced_ones_stay_wire_sized() -> None:
    def first_frame(cells: int, speed: float | None) -> int:
        records = [_record(f"C{k}", n=40_000, dt=1.0) for k in range(cells)]
        part = ReplaySource(records, speed=speed).build_part("in", "C0", None)
        time.sleep(0.01)  # paced: every sample is due 40 us after the start
        return len(part.next_batch()[0])

    one, many = first_frame(1, None), first_frame(64, None)
    assert one > 4 * MAX_FRAME  # a long single-cell test: few passes of the twin step
    assert many == MAX_FRAME  # many cells: each pass holds cells x samples arrays
    assert first_frame(1, 1e9) == MAX_FRAME  # paced: what produce would send
