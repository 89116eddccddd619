"""What a person sees when a real InfluxDB (1.13, auth on) refuses the token: two lines,
exit status 2 (a setting to fix), no traceback, no secret; and with the right token the
same command gets past the check."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from infra.services import start_influxdb
from tests.integration.conftest import INFLUX_DATABASE, _running
from tests.pipeline.test_cli_errors import TOKEN, _assert_message, _celltwin

pytestmark = pytest.mark.integration

ADMIN = ("lab", "lab-pw-77c1")


@pytest.fixture(scope="module")
def guarded_influx() -> Iterator[str]:
    """InfluxDB with auth on: only ADMIN's "user:password" token may write."""
    yield from _running(lambda: start_influxdb(databases=(INFLUX_DATABASE,), admin=ADMIN))


def _run(url: str, token_file: Path, out: Path) -> list[str]:
    return ["run", "--out", str(out), "--cells", "1", "--cycles", "1", "--influx-url", url,
            "--influx-token-file", str(token_file), "--influx-org", "-", "--influx-bucket", INFLUX_DATABASE]


def test_a_token_the_store_refuses_is_a_setting_to_fix(guarded_influx, tmp_path, monkeypatch, capfd) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{ADMIN[0]}:{TOKEN}\n")  # the right user, a wrong password
    code, output = _celltwin(_run(guarded_influx, token_file, tmp_path / "out"), monkeypatch, capfd,
                             token_in_env=False)

    assert code == 2
    _assert_message(output, "refused the token (401", "CELLTWIN_INFLUX_TOKEN")


def test_the_right_token_passes_the_check(guarded_influx, tmp_path, monkeypatch, capfd) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{ADMIN[0]}:{ADMIN[1]}\n")
    code, output = _celltwin(_run(guarded_influx, token_file, tmp_path / "out"), monkeypatch, capfd,
                             token_in_env=False)

    assert code == 0, output
    assert "refused" not in output and ADMIN[1] not in output
