"""The HTML report of a run: one self-contained file that opens offline.

``celltwin run`` leaves Parquet files in its output folder; this turns them into
``report.html`` with what ran (command, version, date, input, C-rate, seed) and a fleet table
on top (values beyond the alert catalogue's limits in red), then per cell the time series and
per-cycle figures. plotly.js is inlined once, so the file can be mailed or archived next to
the data and still render offline: its basic bundle (scatter plots are all the report draws;
``assets/plotly-basic.min.js``, the version plotly.py writes figures for), gzipped and
unpacked by the browser, about 0.5 MB where the full bundle would be 4.8 MB. Figure data go
as float32, enough for a plot and half the bytes.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import typer

from connectors.alert_catalogue import by_kind, limits_text
from connectors.wire import OUT_REPORT
from pipeline.report_data import (
    CellData, Columns, SummaryRow, fmt, load_cells, load_run_info, load_validation, summarize,
)
from pipeline.report_analytics import analytics_figure, has_analytics
from pipeline.report_figures import MAX_POINTS, cycle_figure, timeline_figure, validation_figure
from pipeline.validation import verdicts

__all__ = ["PLOTLY_JS", "build_report", "report_command"]

PLOTLY_JS = Path(__file__).with_name("assets") / "plotly-basic.min.js"

# The alert kinds whose values the fleet table shows, as the alert catalogue states them.
_TABLE_KINDS = ("retention_floor", "impedance_growth", "crack_risk", "phase_sep_risk")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0 24px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; } td.name { text-align: left; }
td.ok { background: #e3f4e3; } td.bad { background: #f8d0d0; font-weight: 600; }
section.cell { border-top: 2px solid #ddd; margin-top: 28px; }
p.note { color: #666; font-size: 13px; }
"""


def _td(text: str, css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f"<td{klass}>{html.escape(text)}</td>"


def _summary_table(rows: Iterable[SummaryRow]) -> str:
    head = ("cell", "preset", "cycles", "last capacity [mAh]", "last capacity [mAh/g]",
            "retention measured (twin)", "impedance growth", "crack risk", "phase-sep risk", "alerts")
    lines = ["<table id='fleet'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        breaches = row.breaches()

        def css(name: str, value: float | None) -> str:
            return "" if value is None else ("bad" if breaches[name] else "ok")

        def coloured(name: str, value: float | None, pattern: str = "{:.3f}") -> str:
            return _td(fmt(value, pattern), css(name, value))

        anchor = html.escape(row.cell, quote=True)
        alerts = f"{row.alerts} ({row.critical_alerts} critical)" if row.alerts else "0"
        lines.append(
            "<tr>"
            f"<td class='name'><a href='#cell-{anchor}'>{html.escape(row.cell)}</a></td>"
            + _td(row.preset, "name") + _td(str(row.cycles))
            + _td(fmt(row.capacity_mah)) + _td(fmt(row.capacity_mah_g, "{:.1f}"))
            + _td(row.retention_text(), css("retention", row.lab_retention))
            + coloured("impedance_growth", row.impedance_growth, "{:+.1%}")
            + coloured("crack_risk", row.crack_risk)
            + coloured("phase_sep_risk", row.phase_sep_risk)
            + _td(alerts, "bad" if row.critical_alerts else "")
            + "</tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _plotly_loader() -> str:
    """plotly.js, gzipped in the page; ``plotlyReady`` resolves once the browser unpacked it."""
    packed = base64.b64encode(gzip.compress(PLOTLY_JS.read_bytes(), 9, mtime=0)).decode("ascii")
    return (f"<script type='application/octet-stream' id='plotly-gz'>{packed}</script>\n<script>\n"
            "const plotlyReady = (async () => {\n"
            "  const text = atob(document.getElementById('plotly-gz').textContent);\n"
            "  const bytes = Uint8Array.from(text, c => c.charCodeAt(0));\n"
            "  const unpacked = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));\n"
            "  (0, eval)(await new Response(unpacked).text());  // global: defines window.Plotly\n"
            "})();\n"
            "plotlyReady.catch(error => document.body.insertAdjacentHTML('afterbegin', "
            "'<p class=\"note\">The figures need a browser that unpacks gzip (Chrome 80, Firefox 113, Safari 16.4 "
            "or later): ' + error + '</p>'));\n</script>")


def _float32(fig: go.Figure) -> go.Figure:
    """Plotted coordinates as float32: 7 digits are plenty on screen, and half the page."""
    for trace in fig.data:
        for axis in ("x", "y"):
            values = getattr(trace, axis, None)
            if isinstance(values, np.ndarray) and values.dtype == np.float64:
                trace[axis] = values.astype(np.float32)
    return fig


def _figure(fig: go.Figure, div_id: str) -> str:
    spec = pio.to_json(_float32(fig), validate=False).replace("</", "<\\/")  # no end of <script> inside
    config = json.dumps({"displaylogo": False, "responsive": True})
    return (f"<div id='{div_id}' class='plotly-graph-div' style='height:{fig.layout.height or 450}px; width:100%;'>"
            f"</div>\n<script>plotlyReady.then(() => {{ const spec = {spec}; "
            f"Plotly.newPlot('{div_id}', spec.data, spec.layout, {config}); }});</script>")


def _cell_section(cell: CellData, number: int) -> str:
    parts = [f"<section class='cell' id='cell-{html.escape(cell.cell, quote=True)}'>",
             f"<h2>{html.escape(cell.cell)} <small>({html.escape(cell.preset)})</small></h2>"]
    if cell.state.get("time", np.array([])).size:
        parts.append(_figure(timeline_figure(cell, MAX_POINTS), f"timeline-{number}"))
    parts.append(_figure(cycle_figure(cell), f"cycles-{number}"))
    if has_analytics(cell):
        parts.append(_figure(analytics_figure(cell), f"analytics-{number}"))
    parts.append("</section>")
    return "\n".join(parts)


def _stat(reduce, values: np.ndarray, pattern: str) -> str:
    """A reduction over the finite values, or "-" when there are none (a twin that diverged)."""
    finite = values[np.isfinite(values)]
    return fmt(float(reduce(finite)) if finite.size else None, pattern)


def _validation_section(table: Columns) -> str:
    head = ("cell", "cycles compared", "mean |measured - twin| [mAh]", "max |measured - twin| [mAh]",
            "mean relative error", "mean Coulombic efficiency", "verdict")
    rows, details, figures = [], [], []
    for number, judged in enumerate(verdicts(table)):
        cell = judged.cell
        mask = table["cell"].astype(str) == cell
        picked = {name: values[mask] for name, values in table.items()}
        error = np.abs(picked["measured_discharge_mah"] - picked["twin_capacity_mah"])
        relative = error / np.abs(picked["measured_discharge_mah"])
        rows.append("<tr>" + _td(cell, "name") + _td(str(int(mask.sum())))
                    + _td(_stat(np.nanmean, error, "{:.4f}")) + _td(_stat(np.nanmax, error, "{:.4f}"))
                    + _td(_stat(np.nanmean, relative, "{:.2%}"))
                    + _td(_stat(np.nanmean, picked["coulombic_efficiency"], "{:.4f}"))
                    + _td(judged.summary(), "ok" if judged.tracks else "bad") + "</tr>")
        checks = "".join(
            f"<li>{html.escape(c.name)}: {'n/a' if c.passed is None else 'pass' if c.passed else 'FAIL'}"
            f" - {html.escape(c.detail)}</li>" for c in judged.checks)
        details.append(f"<p class='note'><b>{html.escape(cell)}</b></p><ul class='checks'>{checks}</ul>")
        figures.append(_figure(validation_figure(cell, picked), f"validation-{number}"))
    header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    note = ("<p class='note'>Measured: coulomb counting on the replayed file (half-cycles by current "
            "sign, rests and gaps not counted). Twin: its tracked reversible capacity at the end of the "
            "cycle, so at high rates it exceeds the delivered capacity by what the voltage limit leaves "
            "unreached. The verdict asks whether the twin tracks within its own uncertainty.</p>")
    return ("<section id='validation'><h2>Validation: measured vs twin</h2>"
            f"{note}<table>{header}{''.join(rows)}</table>{''.join(details)}{''.join(figures)}</section>")


def _run_table(info: dict[str, str], source: Path) -> str:
    """What ran: the command, version, date and the input's facts (C-rate, seed...)."""
    rows = {"folder": str(source), **info}
    return ("<table id='run'>" + "".join(f"<tr><th>{html.escape(name)}</th>{_td(str(value), 'name')}</tr>"
                                         for name, value in rows.items()) + "</table>")


def _page(cells: list[CellData], validation: Columns | None, source: Path, info: dict[str, str]) -> str:
    limits = html.escape(", ".join(limits_text(by_kind(kind)) for kind in _TABLE_KINDS))
    body = [
        f"<h1>celltwin report - {len(cells)} cell{'s' if len(cells) != 1 else ''}</h1>",
        _run_table(info, source),
        f"<p class='note'>Red: beyond the limits ({limits}).</p>",
        _summary_table(summarize(cell) for cell in cells),
    ]
    if validation is not None:
        body.append(_validation_section(validation))
    body.extend(_cell_section(cell, n) for n, cell in enumerate(cells))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>celltwin report</title>"
        f"<style>{_CSS}</style>"
        "</head><body>\n" + _plotly_loader() + "\n" + "\n".join(body) + "\n</body></html>\n"
    )


def build_report(out_dir: Path, cells: list[CellData] | None = None) -> Path:
    """Write ``out_dir/report.html`` from the run's output files (``cells``: those files as
    `load_cells` read them, if the caller has them already); returns its path."""
    out_dir = Path(out_dir)
    cells = load_cells(out_dir) if cells is None else cells
    path = out_dir / OUT_REPORT
    partial = path.with_name(f".{path.name}.tmp")  # renamed into place: a stop leaves no half page
    partial.write_text(_page(cells, load_validation(out_dir), out_dir, load_run_info(out_dir)), encoding="utf-8")
    partial.replace(path)
    return path


def report_command(
    out_dir: Annotated[Path, typer.Argument(help="Output folder of `celltwin run`.",
                                            exists=True, file_okay=False)],
) -> None:
    """Write report.html for a run's output folder and print its path."""
    try:
        path = build_report(out_dir)
    except (FileNotFoundError, ValueError) as error:
        typer.echo(f"report failed: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(str(path))
