"""The producer API (`connectors.producer.CellStream`) against the real broker: metadata on
open, frames by size and by time, bad samples refused at the sender, frames the pipeline decodes."""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pytest

from connectors.decode import decode_meta, decode_samples
from connectors.producer import CellStream, Rejected
from connectors.wire import TOPIC_META, TOPIC_SAMPLES, CellMeta, Frame, KafkaMessage
from tests.integration.pipeline_harness import read_topic

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0


def _cell() -> str:
    return f"producer-{uuid.uuid4().hex[:8]}"


def _records(bootstrap: str, topic: str, cell: str) -> list[KafkaMessage]:
    """Every record of ``topic`` keyed ``cell`` (the topics are shared by the session's tests)."""
    return [KafkaMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for r in read_topic(bootstrap, topic) if r.key == cell.encode()]


def _frames(bootstrap: str, cell: str) -> list[Frame]:
    """The cell's frames as the pipeline decodes them; fails on a dead letter."""
    decoded = [decode_samples(m) for m in _records(bootstrap, TOPIC_SAMPLES, cell)]
    assert all(isinstance(f, Frame) for f in decoded), [d for d in decoded if not isinstance(d, Frame)]
    return decoded  # type: ignore[return-value]


def _sample(k: int) -> tuple[float, float, float]:
    return T0 + 10.0 * k, 0.5 + 0.001 * k, -2.0e-3


def test_metadata_on_open_and_frames_by_size_in_order(kafka_bootstrap: str) -> None:
    cell = _cell()
    with CellStream(cell, preset="nd4mg80ni8", mass_mg=1.2, c_rate=0.1, kafka=kafka_bootstrap,
                    frame_samples=50, max_delay_s=600) as stream:
        (meta,) = _records(kafka_bootstrap, TOPIC_META, cell)  # acknowledged before any sample
        assert decode_meta(meta) == CellMeta(cell=cell, mass_mg=1.2, preset="nd4mg80ni8", c_rate=0.1)
        for k in range(120):
            stream.send(*_sample(k), temp_c=130.0 + 0.01 * k)
        stream.flush()
        sent = [_sample(k) for k in range(120)]
        frames = _frames(kafka_bootstrap, cell)
        assert [len(f) for f in frames] == [50, 50, 20]  # two full frames, the rest at flush
    assert len(_frames(kafka_bootstrap, cell)) == 3  # close had nothing left to send
    np.testing.assert_array_equal(np.concatenate([f.t for f in frames]), [s[0] for s in sent])
    np.testing.assert_array_equal(np.concatenate([f.v for f in frames]), [s[1] for s in sent])
    np.testing.assert_array_equal(np.concatenate([f.temp_c for f in frames]), 130.0 + 0.01 * np.arange(120))


def test_a_slow_channel_is_sent_by_time_without_a_flush(kafka_bootstrap: str) -> None:
    cell = _cell()
    stream = CellStream(cell, composition="MgH2=0.53,Mg2NiH4=0.28,Nd2H5=0.19", mass_mg=0.8,
                        kafka=kafka_bootstrap, frame_samples=1000, max_delay_s=0.3)
    try:
        for k in range(5):
            stream.send(*_sample(k))
        deadline = time.monotonic() + 20
        while not (frames := _frames(kafka_bootstrap, cell)):  # no flush: the timer sends it
            assert time.monotonic() < deadline, "the frame of a slow channel was not sent by time"
            time.sleep(0.2)
        assert [len(f) for f in frames] == [5]
        assert all(math.isnan(x) for x in frames[0].temp_c)  # no temperature reported
        for k in range(5, 8):
            stream.send(*_sample(k), temp_c=131.0)  # a temperature from here on: a new frame
    finally:
        stream.close()
    frames = _frames(kafka_bootstrap, cell)
    assert [len(f) for f in frames] == [5, 3]
    np.testing.assert_array_equal(np.concatenate([f.t for f in frames]), [_sample(k)[0] for k in range(8)])
    np.testing.assert_array_equal(frames[1].temp_c, [131.0] * 3)


@pytest.mark.parametrize("bad, words", [
    ((T0 + 20, 7.5, -2e-3), "v = 7.5 is outside -1 .. 6 V"),
    ((T0 + 20, 0.5, 250.0), "i = 250 is outside -100 .. 100 A"),
    ((T0 + 20, float("nan"), -2e-3), "v is nan"),
    ((T0 + 5, 0.5, -2e-3), "is not after the previous sample's"),
    ((T0 + 10, 0.5, -2e-3), "is not after the previous sample's"),
    ((1.7e12, 0.5, -2e-3), "s since the epoch (milliseconds?)"),
    ((T0 + 20, "0.5", -2e-3), "v must be a number, got str"),
])
def test_a_bad_sample_raises_at_the_sender_and_is_not_sent(kafka_bootstrap: str, bad: tuple, words: str) -> None:
    cell = _cell()
    with CellStream(cell, preset="mgh2", mass_mg=1.0, kafka=kafka_bootstrap, max_delay_s=600) as stream:
        stream.send(T0 + 10, 0.5, -2e-3)
        with pytest.raises(Rejected) as raised:
            stream.send(*bad)
        assert words in str(raised.value)
        assert isinstance(raised.value, ValueError)
        stream.send(T0 + 30, 0.6, -2e-3)  # the stream goes on after a refused sample
    (frame,) = _frames(kafka_bootstrap, cell)
    np.testing.assert_array_equal(frame.t, [T0 + 10, T0 + 30])
    np.testing.assert_array_equal(frame.v, [0.5, 0.6])


def test_bad_metadata_or_cell_id_raise_before_anything_is_sent(kafka_bootstrap: str) -> None:
    cell = _cell()
    for bad_id in (cell + '"', " " + cell, ""):
        with pytest.raises(ValueError, match="cell id"):
            CellStream(bad_id, preset="mgh2", mass_mg=1.0, kafka=kafka_bootstrap)
    with pytest.raises(ValueError, match="mass_mg .* is required"):
        CellStream(cell, preset="mgh2", kafka=kafka_bootstrap)
    with pytest.raises(ValueError, match="unknown preset .graphite."):
        CellStream(cell, preset="graphite", mass_mg=1.0, kafka=kafka_bootstrap)
    with pytest.raises(ValueError, match="exactly one of preset, composition or generic"):
        CellStream(cell, preset="mgh2", composition="MgH2=1", mass_mg=1.0, kafka=kafka_bootstrap)
    # Other tests leave keys on cell.meta that are no UTF-8 at all (hostile records).
    metas = [r for r in read_topic(kafka_bootstrap, TOPIC_META)
             if r.key and r.key.decode(errors="replace").strip(' "') == cell]
    assert metas == []
