"""``celltwin grafana generate|publish``: provisioning files and pushing to a Grafana.

Kept as its own Typer app so the main CLI mounts it with one ``add_typer`` call and
its options live next to the code they drive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from connectors.grafana.datasource import InfluxSettings
from connectors.grafana.dialects import DIALECTS, Dialect
from connectors.grafana.generate import stale_files, write
from connectors.grafana.notifications import Notify

__all__ = ["grafana_app"]

grafana_app = typer.Typer(help="Grafana dashboards and alert rules, kept as code.",
                          no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)
# Relative to the current directory: the repository's own folder when run from its root,
# never the installed package's.
_DEFAULT_OUT = Path("infra/grafana/provisioning")
_DIALECT_HELP = ("Query language: flux (InfluxDB 2) or influxql (InfluxDB 1.x and 3.x, and 2.x "
                 "through a DBRP mapping).")


def _dialect(value: str) -> Dialect:
    if value not in DIALECTS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(DIALECTS)}")
    return value  # type: ignore[return-value]  # checked just above


@grafana_app.command()
def generate(
    out: Annotated[Path, typer.Option(
        help="Provisioning folder to write (relative to the current directory).")] = _DEFAULT_OUT,
    dialect: Annotated[str, typer.Option(help=_DIALECT_HELP, callback=_dialect)] = "flux",
    check: Annotated[bool, typer.Option(
        help="Only report files that are out of date; exit 1 if any.")] = False,
) -> None:
    """Write the Grafana provisioning files (data source, dashboards, alert rules; a contact point
    and notification policy when {WEBHOOK_ENV} or {EMAIL_ENV} is set)."""
    notify = Notify.from_env()
    if check:
        stale = stale_files(out, dialect, notify)  # type: ignore[arg-type]  # checked by _dialect
        for relative in stale:
            _err.print(f"out of date: {out / relative}")
        raise typer.Exit(1 if stale else 0)
    for path in write(out, dialect, notify):  # type: ignore[arg-type]
        _out.print(str(path))


@grafana_app.command("publish")
def publish_command(
    url: Annotated[str, typer.Option(
        envvar="GRAFANA_URL", help="Grafana base URL, e.g. http://localhost:3000")],
    token: Annotated[str, typer.Option(
        envvar="GRAFANA_TOKEN", help="Service-account token (Editor or Admin).")],
    influx_url: Annotated[str, typer.Option(
        envvar="INFLUX_URL", help="InfluxDB URL as Grafana's server reaches it.")],
    influx_bucket: Annotated[str, typer.Option(envvar="INFLUX_BUCKET")],
    influx_token: Annotated[str, typer.Option(
        envvar="INFLUX_TOKEN", help="InfluxDB read token for Grafana.")],
    influx_org: Annotated[str, typer.Option(envvar="INFLUX_ORG", help="Organisation (Flux only).")] = "",
    dialect: Annotated[str, typer.Option(help=_DIALECT_HELP, callback=_dialect)] = "flux",
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = 10.0,
) -> None:
    """Create or update the data source, folder, dashboards and alert rules (by uid), and the
    contact point and policy route when CELLTWIN_ALERT_WEBHOOK_URL or CELLTWIN_ALERT_EMAIL is set."""
    from connectors.grafana.publisher import PublishError, publish  # an HTTP client, loaded when publishing only

    if dialect == "flux" and not influx_org:
        raise typer.BadParameter("Flux needs the InfluxDB organisation", param_hint="--influx-org")
    influx = InfluxSettings(url=influx_url, org=influx_org, bucket=influx_bucket, token=influx_token)
    try:
        report = publish(url, token, influx, dialect=dialect, notify=Notify.from_env(),  # type: ignore[arg-type]
                         timeout=timeout)
    except PublishError as error:
        _err.print(f"[red]publish failed:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(2) from error
    _out.print(f"Grafana {report.grafana_version} at {url}: "
               f"{len(report.created)} created, {len(report.updated)} updated")
    for entry in report.created:
        _out.print(f"  created {entry}", highlight=False)
    for entry in report.updated:
        _out.print(f"  updated {entry}", highlight=False)
