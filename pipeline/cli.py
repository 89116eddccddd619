"""The `celltwin` command line: one entry point, one small module per command group."""

from __future__ import annotations

import typer

from connectors.grafana.cli import grafana_app

from .produce_cmd import produce
from .replay_cmd import replay
from .report import report_command
from .run_cmd import run
from .simulate_cmd import calibrate, simulate

app = typer.Typer(
    help="celltwin: a streaming digital twin of Nd2H5-framed MgH2/Mg2NiH4 anodes on test.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(run)  # its docstring is the help: one line for this list, more under `run --help`
app.command(help="Simulate cells on a cycler protocol and write the per-cycle table.")(simulate)
app.command(help="Refit the twin's shared constants to the published figures; print residuals.")(calibrate)
app.command(help="Stream simulated cells into Kafka, paced like live cyclers.")(produce)
app.command(help="Replay archived cycler files through the twin (embedded or into Kafka) and validate it.")(replay)
app.command("report", help="Rebuild the HTML report of an output folder and print its path.")(report_command)
app.add_typer(grafana_app, name="grafana", help="Grafana dashboards and alert rules as code: generate, publish.")

if __name__ == "__main__":
    app()
