"""The `celltwin` command line: one entry point, one small module per command group.

`main` is the console script. A command that fails says so in one or two lines on
stderr: what failed and what to do, exit status 2 for a setting to change, 1 for a
failure at run time. The traceback is for `--debug` only, and never with local
variables (typer can print them, and they hold tokens and passwords).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Annotated

import typer

from connectors.grafana.cli import grafana_app

from connectors.config import ConfigError, debugging
from .export_cmd import export
from .flags import hide_flag_types, package_version
from connectors.preflight import USAGE, PreflightError
from .produce_cmd import produce
from .replay_cmd import replay
from .report import report_command
from .run_cmd import run
from .simulate_cmd import calibrate, simulate
from .watch_cmd import watch

__all__ = ["app", "main"]

app = typer.Typer(
    help="celltwin: a streaming digital twin of Nd2H5-framed MgH2/Mg2NiH4 anodes on test.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
hide_flag_types()  # a flag that takes no value shows none in --help


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"celltwin {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", envvar="CELLTWIN_DEBUG",
                                        help="On a failure, show the traceback (and the dataflow's own output).")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    if debug:
        os.environ["CELLTWIN_DEBUG"] = "1"  # read by connectors.config.debugging(), also in subprocesses


app.command()(run)  # its docstring is the help: one line for this list, more under `run --help`
app.command(help="Simulate cells on a cycler protocol and write the per-cycle table.")(simulate)
app.command(help="Refit the twin's shared constants to the published figures; print residuals.")(calibrate)
app.command(help="Stream simulated cells into Kafka, paced like live cyclers.")(produce)
app.command(help="Replay archived cycler files through the twin (embedded or into Kafka) and validate it.")(replay)
app.command()(watch)  # its docstring is the help
app.command("report", help="Rebuild the HTML report of an output folder and print its path.")(report_command)
app.command(help="Export an output folder as Battery Data Format CSV, battdat cycle statistics and metadata.")(export)
app.add_typer(grafana_app, name="grafana", help="Grafana dashboards and alert rules as code: generate, publish.")


def _root(error: BaseException) -> BaseException:
    """The first cause: bytewax wraps a step's error in its own."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def main() -> None:
    """The `celltwin` console script: `app` with failures as short messages."""
    # `kill -USR1 PID` prints every thread's stack to stderr: what a run that seems stuck is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app()
    except PreflightError as error:
        if debugging():
            raise
        typer.echo(f"celltwin: {error}", err=True)
        sys.exit(error.exit_code)
    except ConfigError as error:
        if debugging():
            raise
        typer.echo(f"celltwin: {error}", err=True)
        sys.exit(USAGE)
    except Exception as error:  # noqa: BLE001 - every other failure: one line, not a traceback
        if debugging():
            raise
        cause = _root(error)
        text = " ".join(str(cause).split())[:300] or "(no message)"
        typer.echo(f"celltwin: failed: {type(cause).__name__}: {text}\n"
                   "Run again with --debug for the traceback.", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
