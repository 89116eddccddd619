"""One vocabulary of flags: a flag several commands share has one name and one help
text everywhere, flags that take no value show none, and every command knows -h."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from pipeline import flags
from pipeline.cli import app

COMMANDS = ("run", "simulate", "produce", "replay", "watch")
# flag -> (its shared help text, the commands that take it)
SHARED = {
    "--preset": (flags.PRESET, {"run", "simulate", "produce", "replay", "watch"}),
    "--composition": (flags.COMPOSITION, {"run", "simulate", "produce", "replay", "watch"}),
    "--speed": (flags.SPEED, {"produce", "replay"}),
    "--start": (flags.START, {"produce", "replay", "watch"}),
    "--mass-mg": (flags.MASS_MG, {"simulate", "produce", "replay", "watch"}),
    "--dt": (flags.DT, {"run", "simulate", "produce"}),
    "--seed": (flags.SEED, {"run", "simulate", "produce"}),
    "--noise": (flags.NOISE, {"simulate", "produce"}),
    "--report": (flags.REPORT, {"run", "replay"}),
    "--config": (flags.CONFIG, {"run", "produce", "replay", "watch"}),
    # how cycler files are read
    "--map": (flags.MAP, {"replay", "watch"}),
    "--mapping": (flags.MAPPING, {"replay", "watch"}),
    "--unit": (flags.UNIT, {"replay", "watch"}),
    "--format": (flags.FORMAT, {"replay", "watch"}),
    "--discharge-positive": (flags.DISCHARGE, {"replay", "watch"}),
}


def _options(command: str) -> dict[str, TyperOption]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {name: param for param in cmd.params if isinstance(param, TyperOption) and not param.hidden
            for name in param.opts}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_a_shared_flag_has_one_name_and_one_help_in_every_command(flag: str) -> None:
    text, expected = SHARED[flag]
    having = {command for command in COMMANDS if flag in _options(command)}
    assert having == expected
    for command in having:
        assert _options(command)[flag].help.startswith(text), (command, _options(command)[flag].help)


def test_no_command_shows_an_old_or_a_second_name() -> None:
    for command in COMMANDS:
        assert "--speedup" not in _options(command)


@pytest.mark.parametrize("command", [*COMMANDS, "calibrate", "report"])
def test_help_takes_h_and_shows_no_value_after_a_flag(command: str) -> None:
    result = CliRunner().invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Usage:" in result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("celltwin ")
    assert result.output.split()[1][0].isdigit() or "unknown" in result.output


def test_produce_still_takes_the_old_speedup_and_start_as_iso_or_epoch() -> None:
    produce = typer.main.get_command(app).commands["produce"]  # type: ignore[attr-defined]
    ctx = produce.make_context("produce", ["--speedup", "60", "--start", "2026-03-01T09:00"])
    assert ctx.params["speedup"] == "60" and ctx.params["start"] == "2026-03-01T09:00"
    assert flags.parse_speed("60") == 60.0 and flags.parse_speed("max") is None
    iso = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc).timestamp()
    assert flags.parse_start("2026-03-01T09:00") == iso
    assert flags.parse_start(str(iso)) == iso
    assert flags.parse_start("2026-03-01T10:00", "Europe/Berlin") == iso
    for bad in ("yesterday", "2026-13-01"):
        with pytest.raises(typer.BadParameter, match="--start takes an ISO time"):
            flags.parse_start(bad)
    with pytest.raises(typer.BadParameter, match="--speed"):
        flags.parse_speed("fast")


def test_mixed_is_one_word_for_every_command_that_simulates_cells(tmp_path) -> None:
    for command in ("run", "simulate", "produce"):
        assert flags.MIXED_CELLS in _options(command)["--preset"].help, command
    assert "mixed" not in _options("replay")["--preset"].help  # a replayed cell has one electrode
    result = CliRunner().invoke(app, ["simulate", "--preset", "mixed", "--cells", "2", "--cycles", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "cycles.csv").read_text().splitlines()
    header = rows[0].split(",")
    presets = {row.split(",")[header.index("cell")]: row.split(",")[header.index("preset")] for row in rows[1:]}
    assert presets == {"cell000": "nd4mg80ni8", "cell001": "mgh2"}
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "cycles.csv"), "--preset", "mixed"])
    words = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "a replayed cell has one electrode" in words


def test_the_report_repeats_the_command_as_given_without_secrets() -> None:
    group = typer.main.get_command(app)
    parent = group.make_context("python -m pipeline.cli", ["run"], resilient_parsing=True)
    args = ["--cells", "2", "--influx-token", "s3cret", "--no-report", "--preset", "mgh2"]
    ctx = group.commands["run"].make_context("run", args, parent=parent)  # type: ignore[attr-defined]
    assert flags.invocation(ctx) == "celltwin run --cells 2 --preset mgh2 --no-report"
