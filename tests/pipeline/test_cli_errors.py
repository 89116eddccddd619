"""What a person sees when a command cannot work: one or two lines that say what failed
and what to do, exit status 2 for a setting to change and 1 for a service that is not
there, no traceback (unless --debug), and never a token or password."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from infra.services import free_ports
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-5e3f9a1c77"
PASSWORD = "pw-0b8d2e4f19"
ARCHIVE = REPO / "tests" / "data" / "real" / "arbin_example.csv"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_ports()[0]


@pytest.fixture
def sasl_config(tmp_path: Path) -> Path:
    """A config file with a SASL password, which must never be printed."""
    path = tmp_path / "celltwin.toml"
    path.write_text('[kafka.client]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                    f'sasl_plain_username = "lab"\nsasl_plain_password = "{PASSWORD}"\n')
    return path


def _celltwin(args: list[str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
              token_in_env: bool = True) -> tuple[int, str]:
    """Exit status and all output (stdout + stderr) of the `celltwin` console script."""
    monkeypatch.setattr(sys, "argv", ["celltwin", *args])
    if token_in_env:
        monkeypatch.setenv("CELLTWIN_INFLUX_TOKEN", TOKEN)
    monkeypatch.setenv("CELLTWIN_DEBUG", "0")  # restored afterwards, whatever --debug sets
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capfd.readouterr()
    return ended.value.code, out + err


def _assert_message(output: str, *words: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, output
    assert "Traceback" not in output and "panicked" not in output, output
    for word in words:
        assert word in output, (word, output)
    assert TOKEN not in output and PASSWORD not in output, output


def test_run_with_an_unreachable_broker(closed_port, sasl_config, monkeypatch, capfd) -> None:
    code, output = _celltwin(["run", "--config", str(sasl_config), "--kafka", f"127.0.0.1:{closed_port}",
                              "--influx-url", "http://127.0.0.1:1", "--influx-org", "o", "--influx-bucket", "b"],
                             monkeypatch, capfd)

    assert code == 1
    _assert_message(output, f"cannot reach the Kafka broker at 127.0.0.1:{closed_port}", "connection refused",
                    "--kafka")


def test_produce_and_replay_with_an_unreachable_broker(closed_port, tmp_path, monkeypatch, capfd) -> None:
    broker = f"localhost:{closed_port}"
    for args in (["produce", "--kafka", broker], ["replay", str(ARCHIVE), "--kafka", broker, "--mass-mg", "1"],
                 ["watch", str(ARCHIVE), "--kafka", broker, "--state", str(tmp_path / "state.json")]):
        code, output = _celltwin(args, monkeypatch, capfd, token_in_env=False)

        assert code == 1, args
        _assert_message(output, f"cannot reach the Kafka broker at {broker}")


def test_run_with_an_unreachable_store(closed_port, tmp_path, monkeypatch, capfd) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    code, output = _celltwin(["run", "--out", str(tmp_path / "out"), "--influx-url", url, "--influx-org", "lab",
                              "--influx-bucket", "b"], monkeypatch, capfd)

    assert code == 1
    _assert_message(output, f"cannot reach InfluxDB at {url}", "--influx-url")


def test_an_unreadable_token_file_is_a_setting_to_fix(tmp_path, monkeypatch, capfd) -> None:
    code, output = _celltwin(["run", "--influx-url", "http://127.0.0.1:1", "--influx-token-file",
                              str(tmp_path / "missing"), "--influx-org", "lab", "--influx-bucket", "b"],
                             monkeypatch, capfd, token_in_env=False)

    assert code == 2
    assert "cannot read the InfluxDB token file" in output and "Traceback" not in output


def test_a_token_of_the_wrong_type_is_refused_without_echoing_it(tmp_path, monkeypatch, capfd) -> None:
    config = tmp_path / "celltwin.toml"
    config.write_text('[influx]\nurl = "http://127.0.0.1:1"\ntoken = 918273645546\norg = "o"\nbucket = "b"\n')
    monkeypatch.setenv("CELLTWIN_INFLUX_TOKEN", "")
    monkeypatch.setattr(sys, "argv", ["celltwin", "run", "--config", str(config)])
    with pytest.raises(SystemExit) as ended:
        main()
    output = "".join(capfd.readouterr())

    assert ended.value.code == 2
    assert "influx.token" in output and "expected a non-empty string" in output
    assert "918273645546" not in output


@pytest.mark.parametrize("where", ["file in the path", "read-only"])
def test_run_with_an_unwritable_output_folder(where, tmp_path, monkeypatch, capfd) -> None:
    if where == "file in the path":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    elif os.geteuid() == 0:
        out = Path("/sys/celltwin-out")  # read-only even for root
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "out"
    code, output = _celltwin(["run", "--out", str(out), "--cells", "1"], monkeypatch, capfd, token_in_env=False)

    assert code == 2
    _assert_message(output, f"cannot write to {out}", "--out")
    if where == "file in the path":
        assert "a file is in the way" in output


def test_debug_shows_the_traceback_without_local_variables(closed_port, sasl_config) -> None:
    # The interpreter's traceback: typer's pretty one, which can show local variables, is off.
    command = [sys.executable, "-m", "pipeline.cli", "--debug", "run", "--config", str(sasl_config),
               "--kafka", f"127.0.0.1:{closed_port}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CELLTWIN_INFLUX_TOKEN": TOKEN,
           "CELLTWIN_INFLUX_URL": "http://127.0.0.1:1", "CELLTWIN_INFLUX_ORG": "o", "CELLTWIN_INFLUX_BUCKET": "b"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    output = done.stdout + done.stderr

    assert done.returncode == 1
    assert "Traceback (most recent call last)" in output and "PreflightError: cannot reach the Kafka" in output
    assert TOKEN not in output and PASSWORD not in output


@pytest.fixture
def not_kafka() -> Iterator[int]:
    """A loopback port that accepts connections and closes them, as a broker does with a
    client whose TLS/SASL settings do not match it."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                server.accept()[0].close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_run_with_a_listener_that_speaks_no_kafka(not_kafka, sasl_config, monkeypatch, capfd) -> None:
    code, output = _celltwin(["run", "--config", str(sasl_config), "--kafka", f"127.0.0.1:{not_kafka}"],
                             monkeypatch, capfd, token_in_env=False)

    assert code == 2
    _assert_message(output, "no Kafka session came up", "[kafka.client]")
