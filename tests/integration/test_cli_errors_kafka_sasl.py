"""What a person sees when a real broker (SASL_PLAINTEXT, PLAIN) refuses the password: two
lines, exit status 2 (a setting to fix), no traceback, the password never shown; with the
right password the same check lets the command through, and the producer API in."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from connectors.producer import CellStream
from connectors.wire import KafkaMessage
from infra.services import RunningService, start_kafka
from connectors.decode import decode_samples
from connectors.preflight import PreflightError
from connectors.wire import TOPIC_SAMPLES
from tests.integration.conftest import _service
from tests.integration.pipeline_harness import read_topic
from tests.pipeline.test_cli_errors import PASSWORD, _assert_message, _celltwin

pytestmark = pytest.mark.integration

USER, RIGHT = "lab", "lab-kafka-pw-5d1e"


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[RunningService]:
    yield from _service(lambda: start_kafka(sasl_users={USER: RIGHT}))


def _config(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "celltwin.toml"
    path.write_text('[kafka.client]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                    f'sasl_plain_username = "{USER}"\nsasl_plain_password = "{password}"\n')
    return path


def test_a_password_the_broker_refuses_is_a_setting_to_fix(sasl_broker, tmp_path, monkeypatch, capfd) -> None:
    code, output = _celltwin(["run", "--config", str(_config(tmp_path, PASSWORD)), "--kafka", sasl_broker.sasl_address,
                              "--out", str(tmp_path / "out")], monkeypatch, capfd, token_in_env=False)

    assert code == 2
    # kafka-python sees the broker drop the connection: no session, the SASL settings to check.
    _assert_message(output, sasl_broker.sasl_address, "no Kafka session came up", "(user, password)")


def test_the_right_password_passes_the_check(sasl_broker, tmp_path, monkeypatch, capfd) -> None:
    # produce: past the check it creates its topics and sends, through the SASL listener.
    code, output = _celltwin(["produce", "--config", str(_config(tmp_path, RIGHT)), "--kafka", sasl_broker.sasl_address,
                              "--cells", "1", "--cycles", "1", "--speed", "max"], monkeypatch, capfd, token_in_env=False)

    assert code == 0, output
    assert RIGHT not in output


def test_the_producer_api_takes_tls_sasl_from_the_same_config(sasl_broker, tmp_path) -> None:
    cell = "sasl-bridge-A01"
    with CellStream(cell, preset="mgh2", mass_mg=1.0, kafka=sasl_broker.sasl_address,
                    config=_config(tmp_path, RIGHT)) as stream:
        for k in range(3):
            stream.send(1_767_225_600.0 + k, 0.5, -1e-3)
    # Read back through the broker's plain listener: the records went through the SASL one.
    (frame,) = [decode_samples(KafkaMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp))
                for r in read_topic(sasl_broker.address, TOPIC_SAMPLES) if r.key == cell.encode()]
    assert len(frame) == 3
    with pytest.raises(PreflightError, match="refused the credentials|no Kafka session came up"):
        CellStream(cell, preset="mgh2", mass_mg=1.0, kafka=sasl_broker.sasl_address,
                   config=_config(tmp_path, PASSWORD), create_topics=False)
