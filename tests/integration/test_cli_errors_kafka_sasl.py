"""What a person sees when a real broker (SASL_PLAINTEXT, PLAIN) refuses the password: two
lines, exit status 2 (a setting to fix), no traceback, the password never shown; with the
right password the same check lets the command through."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from infra.services import RunningService, start_kafka
from tests.integration.conftest import _service
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
