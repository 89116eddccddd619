"""KafkaSource and KafkaMessage without a broker (the broker tests are in tests/integration)."""

from __future__ import annotations

import pickle

import pytest

from connectors.kafka_source import KafkaSource
from connectors.wire import KafkaMessage


def test_message_survives_pickling() -> None:
    # bytewax pickles items that move between workers.
    message = KafkaMessage("cell.samples", 2, 41, b"A1", b'{"cell":"A1"}', 1767225600250)
    assert pickle.loads(pickle.dumps(message)) == message


def test_one_topic_name_is_not_taken_for_a_list_of_letters() -> None:
    with pytest.raises(TypeError):
        KafkaSource("127.0.0.1:9092", "cell.samples")


def test_unknown_start_is_refused() -> None:
    with pytest.raises(ValueError, match="start must be one of"):
        KafkaSource("127.0.0.1:9092", ["cell.samples"], start="smallest")
