"""The HTML report: numbers, decimation, offline page, and rendering in headless Chromium."""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from plotly.offline import get_plotlyjs_version
from typer.testing import CliRunner

from connectors.alert_catalogue import by_kind
from connectors.wire import (
    CYCLE_FIELDS, OUT_ALERTS, OUT_CYCLES, OUT_DQDV, OUT_ESTIMATES, OUT_REPORT, STATE_FIELDS, THRESHOLDS,
)
from pipeline.report import PLOTLY_JS, build_report, report_command
from pipeline.report_analytics import analytics_figure, overlaid_cycles
from pipeline.report_data import VALIDATION_COLUMNS, load_cells, minmax_indices, summarize, write_run_info
from pipeline.report_figures import MAX_POINTS, cycle_figure, timeline_figure
from twin.estimator import FLAG_GAP, FLAG_RECOVERED, FLAG_UNCONVERGED

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
# cell -> (preset, estimate samples, cycles, final retention, final crack risk); the measured
# retention is 2 points below the twin's, except on B01, whose halves have no reference.
NO_REFERENCE = "B01"
CELLS = {
    "A01": ("nd2h5-mgh2", 5000, 6, 0.75, 0.85),
    "A02": ("nd2h5-mgh2", 400, 4, 0.95, 0.20),
    "B01": ("mg2nih4-rich", 300, 3, 0.90, 0.40),
}


def _estimates(cell: str, preset: str, n: int, retention: float, crack: float) -> dict[str, list]:
    t = T0 + np.arange(n) * 10.0
    phase = np.linspace(0, 6 * np.pi, n)
    ramp = np.linspace(0.0, 1.0, n)
    columns = {name: np.zeros(n) for name in STATE_FIELDS}
    columns.update(
        v=0.6 + 0.3 * np.sin(phase), i=np.where(np.sin(phase) > 0, 0.002, -0.002),
        temp_c=np.full(n, 130.0), soc=0.5 + 0.45 * np.sin(phase), soc_std=np.full(n, 0.03),
        capacity_mah=1.2 - 0.2 * ramp, retention=1.0 - (1.0 - retention) * ramp,
        r0_ohm=2.0 + ramp, rct_ohm=5.0 + 2 * ramp, impedance_growth=0.4 * ramp,
        crack_risk=crack * ramp, phase_sep_risk=0.3 * ramp, flags=_flags(n),
    )
    return {"time": t, "cell": [cell] * n, "preset": [preset] * n, **columns}


def _flags(n: int) -> np.ndarray:
    """Unconverged for the first tenth, lost and re-initialised at the middle, then unconverged
    again for a while; a gap elsewhere (a flag the SOC figure does not mark)."""
    flags = np.zeros(n, dtype=np.int64)
    flags[: n // 10] = FLAG_UNCONVERGED
    flags[n // 2] = FLAG_RECOVERED | FLAG_UNCONVERGED
    flags[n // 2 + 1: n // 2 + n // 20] = FLAG_UNCONVERGED
    flags[3 * n // 4] = FLAG_GAP
    return flags


def _cycles(cell: str, preset: str, cycles: int, retention: float) -> dict[str, list]:
    rows: dict[str, list] = {"time": [], "cell": [], "preset": [], "half": []}
    rows.update({name: [] for name in CYCLE_FIELDS})
    for cycle in range(1, cycles + 1):
        fade = 1.0 - (1.0 - retention) * (cycle - 1) / max(cycles - 1, 1)
        for k, half in enumerate(("discharge", "charge")):
            values = {name: 0.0 for name in CYCLE_FIELDS}
            values.update(cycle=cycle, capacity_mah=1.2 * fade, capacity_mah_g=600.0 * fade,
                          expected_mah_g=600.0 * (1 - 0.9 * (1 - fade)), retention=fade,
                          measured_retention=np.nan if cell == NO_REFERENCE else fade - 0.02,
                          twin_capacity_mah=1.2 * fade + 0.01, twin_capacity_std_mah=0.02,
                          coulombic_efficiency=0.98 if half == "charge" else np.nan,
                          crack_risk=0.1, c_rate=0.2, eol_cycles=10.0, eol_low=5.0, eol_high=20.0)
            rows["time"].append(T0 + cycle * 7200.0 + k * 3600.0)
            rows["cell"].append(cell)
            rows["preset"].append(preset)
            rows["half"].append(half)
            for name, value in values.items():
                rows[name].append(value)
    return rows


def _write(path: Path, columns: dict[str, list], int_columns: tuple[str, ...] = ()) -> None:
    arrays = {}
    for name, values in columns.items():
        if name in ("cell", "preset", "half", "kind", "severity", "message"):
            arrays[name] = pa.array(list(values), pa.string())
        elif name in int_columns:
            arrays[name] = pa.array(np.asarray(values, dtype=np.int64))
        else:
            arrays[name] = pa.array(np.asarray(values, dtype=np.float64))
    pq.write_table(pa.table(arrays), path)


def _concat(parts: list[dict[str, list]]) -> dict[str, list]:
    return {name: [v for part in parts for v in part[name]] for name in parts[0]}


def _alerts(rows: list[tuple[float, str, str, str]]) -> dict[str, list]:
    return {
        "time": [r[0] for r in rows], "cell": [r[1] for r in rows], "preset": ["nd2h5-mgh2"] * len(rows),
        "kind": [r[2] for r in rows], "value": [0.85] * len(rows),
        "threshold": [THRESHOLDS.crack_risk] * len(rows), "severity": [r[3] for r in rows],
        "message": [f"{r[2]} on {r[1]}" for r in rows],
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A small output folder as `celltwin run` writes it: 3 cells, a few cycles, 3 alerts."""
    out = tmp_path / "run"
    out.mkdir()
    estimates = [_estimates(c, p, n, r, k) for c, (p, n, _, r, k) in CELLS.items()]
    _write(out / OUT_ESTIMATES, _concat(estimates), int_columns=("flags",))
    _write(out / OUT_CYCLES, _concat([_cycles(c, p, m, r) for c, (p, _, m, r, _) in CELLS.items()]),
           int_columns=("cycle",))
    _write(out / OUT_ALERTS, _alerts([(T0 + 40000, "A01", "crack_risk", "critical"),
                                      (T0 + 45000, "A01", "retention_floor", "warning"),
                                      (T0 + 1000, "B01", "temperature", "warning")]))
    return out


def _write_validation(out: Path) -> None:
    lines = [",".join(VALIDATION_COLUMNS)]
    for cell in ("A01", "A02"):
        for cycle in range(1, 5):
            fade = 0.02 * cycle
            lines.append(f"{cell},{cycle},{1.2 - fade},{1.18 - fade},0.98,{1.21 - fade}")
    (out / "validation.csv").write_text("\n".join(lines) + "\n")


def test_summary_values_and_breaches(run_dir: Path) -> None:
    rows = {cell.cell: summarize(cell) for cell in load_cells(run_dir)}

    assert list(rows) == ["A01", "A02", "B01"]
    bad = rows["A01"]
    assert bad.preset == "nd2h5-mgh2" and bad.cycles == 6
    assert bad.retention == pytest.approx(0.75)
    assert bad.measured_retention == pytest.approx(0.73)
    assert bad.retention_text() == "73.0% (75.0%)"
    assert bad.crack_risk == pytest.approx(0.85)
    assert bad.capacity_mah_g == pytest.approx(600.0 * 0.75)
    assert (bad.alerts, bad.critical_alerts) == (2, 1)
    assert bad.breaches() == {"retention": True, "impedance_growth": False, "crack_risk": True,
                              "phase_sep_risk": False}
    assert not any(rows["A02"].breaches().values())
    assert rows["A02"].alerts == 0
    assert rows[NO_REFERENCE].measured_retention is None
    assert rows[NO_REFERENCE].retention_text() == "- (90.0%)"


def test_summary_retentions_are_those_of_the_newest_half_of_either_kind(run_dir: Path) -> None:
    cell = load_cells(run_dir)[0]
    cell.charge["measured_retention"][-1] = 0.5  # the last half of the run is a charge
    cell.charge["retention"][-1] = 0.6
    row = summarize(cell)
    assert (row.measured_retention, row.retention) == (0.5, 0.6)

    cell.charge["measured_retention"][-1] = cell.charge["retention"][-1] = np.nan  # a shallow half
    row = summarize(cell)
    assert (row.measured_retention, row.retention) == (cell.discharge["measured_retention"][-1],
                                                       cell.discharge["retention"][-1])


def test_retention_is_judged_by_the_measured_value_else_the_twins(run_dir: Path) -> None:
    row = summarize(load_cells(run_dir)[0])
    floor = THRESHOLDS.retention_floor

    def breached(measured: float | None, twin: float | None) -> bool:
        return replace(row, measured_retention=measured, retention=twin).breaches()["retention"]

    assert not breached(floor + 0.05, floor - 0.1)  # the counted capacity is what a lab reads
    assert breached(floor - 0.05, floor + 0.1)
    assert breached(None, floor - 0.1)
    assert not breached(None, None)


def test_report_is_one_offline_page_with_every_figure(run_dir: Path) -> None:
    path = build_report(run_dir)

    assert path == run_dir / OUT_REPORT
    page = path.read_text()
    # plotly.js once, packed: the vendored bundle, of the major version plotly.py writes figures for.
    (packed,) = re.findall(r"<script type='application/octet-stream' id='plotly-gz'>([^<]*)</script>", page)
    bundle = gzip.decompress(base64.b64decode(packed))
    assert bundle == PLOTLY_JS.read_bytes()
    vendored = re.search(r"plotly\.js \(basic - minified\) v(\d+)\.", bundle[:200].decode())
    assert vendored and vendored.group(1) == get_plotlyjs_version().split(".")[0]
    assert "<script src=" not in page and "cdn.plot.ly" not in page
    assert page.count("Plotly.newPlot(") == 3 * len(CELLS)  # timeline, cycles, measured analytics
    start = page.index("<table id='fleet'>")
    fleet = page[start:page.index("</table>", start)]
    a01 = fleet[fleet.index("#cell-A01"):fleet.index("#cell-A02")]
    assert a01.count("class=\"bad\"") == 3  # retention, crack risk, a critical alert
    assert "73.0% (75.0%)" in a01 and "0.850" in a01
    assert "validation" not in page.lower()


def test_long_series_are_decimated_and_say_so(run_dir: Path) -> None:
    page = build_report(run_dir).read_text()
    raw = re.findall(r'"title":\{"text":"([^"]*time on test[^"]*)"', page)
    titles = [json.loads(f'"{t}"') for t in raw]  # plotly escapes < and / in its JSON
    assert len(titles) == len(CELLS)
    assert [("downsampled" in t) for t in titles] == [True, False, False]
    assert f"downsampled to <= {MAX_POINTS} points per trace (min/max kept)" in titles[0]


def test_cycle_figure_fans_the_newest_end_of_life_forecast_to_the_floor(run_dir: Path) -> None:
    cell = load_cells(run_dir)[0]
    traces = {trace.name: trace for trace in cycle_figure(cell).data if trace.name}
    last, start = cell.charge["cycle"][-1], cell.charge["retention"][-1]
    median, interval = traces["end-of-life forecast, median"], traces["end-of-life forecast, 90 % interval"]
    assert list(median.x) == [last, last + 10.0] and list(median.y) == pytest.approx([start, THRESHOLDS.retention_floor])
    assert list(interval.x) == [last, last + 20.0] and interval.fill == "tonexty"


def test_cycle_figure_shows_both_retentions_and_the_capacity_band(run_dir: Path) -> None:
    cell = load_cells(run_dir)[0]
    traces = {trace.name: trace for trace in cycle_figure(cell).data if trace.name}

    for kind, halves in (("discharge", cell.discharge), ("charge", cell.charge)):
        measured, twin = traces[f"measured retention, {kind}"], traces[f"twin retention, {kind}"]
        assert (measured.mode, twin.mode) == ("markers", "lines")
        assert list(measured.y) == pytest.approx(list(halves["measured_retention"]))
        assert list(twin.y) == pytest.approx(list(halves["retention"]))
    band = traces["twin capacity +/- 1 std"]
    assert band.fill == "tonexty"
    assert list(band.y) == pytest.approx(list(cell.discharge["twin_capacity_mah"] - 0.02))
    assert list(traces["counted capacity [mAh]"].y) == pytest.approx(list(cell.discharge["capacity_mah"]))


def test_unconverged_and_recovered_points_are_marked_on_the_soc(run_dir: Path) -> None:
    cell = next(c for c in load_cells(run_dir) if c.cell == "A02")  # short: not decimated
    hours = (cell.state["time"] - cell.state["time"][0]) / 3600.0
    flags = cell.state["flags"]
    traces = {trace.name: trace for trace in timeline_figure(cell).data if trace.name}

    unconverged = traces[f"not converged yet (flag {FLAG_UNCONVERGED})"]
    recovered = traces[f"filter re-initialised (flag {FLAG_RECOVERED})"]
    assert list(unconverged.x) == pytest.approx(list(hours[(flags & FLAG_UNCONVERGED) != 0]))
    assert list(recovered.x) == pytest.approx(list(hours[(flags & FLAG_RECOVERED) != 0]))
    assert list(recovered.y) == pytest.approx(list(cell.state["soc"][(flags & FLAG_RECOVERED) != 0]))


def test_flag_markers_are_decimated_but_keep_the_rare_recovery(run_dir: Path) -> None:
    cell = next(c for c in load_cells(run_dir) if c.cell == "A01")
    traces = {trace.name: trace for trace in timeline_figure(cell, max_points=100).data if trace.name}

    assert len(traces[f"not converged yet (flag {FLAG_UNCONVERGED})"].x) <= 100 // 10
    assert len(traces[f"filter re-initialised (flag {FLAG_RECOVERED})"].x) == 1


def test_minmax_decimation_keeps_extremes_and_bounds_size() -> None:
    values = np.sin(np.linspace(0, 40, 100_000))
    values[31_337] = 5.0
    values[77_001] = -4.0
    keep = minmax_indices(values, 2000)

    assert keep.size <= 2000
    assert {0, 31_337, 77_001, values.size - 1} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)
    assert values[keep].max() == 5.0 and values[keep].min() == -4.0
    assert minmax_indices(values[:50], 2000).tolist() == list(range(50))


def test_page_stays_small_for_long_runs(tmp_path: Path) -> None:
    out = tmp_path / "long"
    out.mkdir()
    estimates = [_estimates(f"C{k:02d}", "p", 100_000, 0.9, 0.3) for k in range(3)]
    _write(out / OUT_ESTIMATES, _concat(estimates))
    _write(out / OUT_CYCLES, _concat([_cycles(f"C{k:02d}", "p", 50, 0.9) for k in range(3)]),
           int_columns=("cycle",))

    page = build_report(out).read_text()

    # 3 cells x 100k samples: bounded by the decimation (float32 coordinates), about 0.2 MB a cell
    # with flag markers and the per-cycle capacity band and retentions, plus 0.53 MB of plotly.js;
    # the measured analytics per cycle add about 20 kB a cell.
    assert len(page) < 530_000 + 3 * 250_000, len(page)


def test_a_six_cell_run_gives_a_page_well_under_2_mb(tmp_path: Path) -> None:
    out = tmp_path / "six"
    out.mkdir()
    _write(out / OUT_ESTIMATES, _concat([_estimates(f"C{k:02d}", "p", 20_000, 0.9, 0.3) for k in range(6)]),
           int_columns=("flags",))
    _write(out / OUT_CYCLES, _concat([_cycles(f"C{k:02d}", "p", 20, 0.9) for k in range(6)]), int_columns=("cycle",))

    page = build_report(out).read_text()

    assert len(page) < 1_900_000, len(page)  # the measured analytics' figure adds ~5 kB a cell
    specs = re.findall(r"const spec = (\{.*?\}); Plotly", page)
    assert len(specs) == 3 * 6
    for spec in specs:  # every trace within the decimation
        for trace in json.loads(spec)["data"]:
            x = trace.get("x", [])
            n = len(base64.b64decode(x["bdata"])) // np.dtype(x["dtype"]).itemsize if isinstance(x, dict) else len(x)
            assert n <= MAX_POINTS, (trace.get("name"), n)


def test_header_axes_and_alert_rows_read_as_a_lab_reads_them(run_dir: Path) -> None:
    write_run_info(run_dir, "celltwin run --seed 4", {"C-rate": "0.5C", "seed": "4"})
    page = build_report(run_dir).read_text()
    header = page[page.index("<table id='run'>"):page.index("</table>")]
    for text in ("celltwin run --seed 4", "version", "date", "0.5C", ">4<"):
        assert text in header, text

    cell = load_cells(run_dir)[0]
    timeline = timeline_figure(cell)
    current = next(t for t in timeline.data if t.name == "current [mA]")
    assert np.nanmax(np.abs(current.y)) == pytest.approx(1000 * np.nanmax(np.abs(cell.state["i"])))
    titles = {axis.title.text for axis in (timeline.layout[name] for name in timeline.layout
                                           if name.startswith("yaxis")) if axis.title.text}
    assert {"V", "mA", "SOC (1 = charged)", "growth", "risk (0..1)"} <= titles
    limits = [a.text for a in timeline.layout.annotations if "limit" in (a.text or "")]
    assert f"crack and phase-separation limit {THRESHOLDS.crack_risk:g}" in limits
    alert_rows = {str(y) for t in timeline.data if (t.name or "").endswith(" alert") for y in t.y}
    assert alert_rows == {by_kind("crack_risk").title, by_kind("retention_floor").title}
    cycles = cycle_figure(cell)
    assert cycles.layout.xaxis4.tickformat == "d" and float(cycles.layout.xaxis4.dtick).is_integer()
    # About ten ticks over all that is drawn, the forecast's fan included: not one per cycle.
    drawn = max(float(np.nanmax(np.asarray(t.x, dtype=float))) for t in cycles.data if t.x is not None and len(t.x))
    assert drawn / float(cycles.layout.xaxis4.dtick) <= 12


def test_missing_or_empty_alerts_still_build(run_dir: Path) -> None:
    _write(run_dir / OUT_ALERTS, _alerts([]))
    assert "no alerts" in build_report(run_dir).read_text()
    (run_dir / OUT_ALERTS).unlink()
    page = build_report(run_dir).read_text()
    assert page.count("no alerts") == len(CELLS)


def test_validation_section_when_the_table_exists(run_dir: Path) -> None:
    _write_validation(run_dir)
    page = build_report(run_dir).read_text()

    section = page[page.index("<section id='validation'>"):page.index("</section>")]
    assert "<td class=\"name\">A01</td><td>4</td><td>0.0100</td>" in section
    assert "<td class=\"name\">B01</td>" not in section
    assert page.count("Plotly.newPlot(") == 3 * len(CELLS) + 2


def test_report_command_prints_the_path_and_fails_clearly(run_dir: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(report_command)
    runner = CliRunner()

    done = runner.invoke(app, [str(run_dir)])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == str(run_dir / OUT_REPORT)

    empty = tmp_path / "empty"
    empty.mkdir()
    failed = runner.invoke(app, [str(empty)])
    assert failed.exit_code == 1
    assert OUT_ESTIMATES in failed.output


# --- rendering in a real browser ---------------------------------------------------------

_CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--hide-scrollbars"]

# Injected first into <head> of a copy of the report: collects errors, then writes what
# rendered into the DOM, which --dump-dom returns.
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => __errors.push('error: ' + e.message));
window.addEventListener('unhandledrejection', e => __errors.push('rejection: ' + e.reason));
const __consoleError = console.error;
console.error = (...args) => { __errors.push('console: ' + args.join(' ')); __consoleError(...args); };
window.addEventListener('load', () => setTimeout(() => {
  const plots = [...document.querySelectorAll('div.plotly-graph-div')].map(d => ({
    id: d.id, rendered: d.classList.contains('js-plotly-plot'),
    svgs: d.querySelectorAll('.main-svg').length,
    traces: d.querySelectorAll('.scatterlayer .trace').length,
    points: d.querySelectorAll('.scatterlayer path.js-line, .scatterlayer .point').length}));
  const out = document.createElement('pre');
  out.id = '__probe';
  out.textContent = JSON.stringify({errors: __errors, plots: plots});
  document.body.appendChild(out);
}, 1000));
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    required = (os.environ.get("CI", "").lower() in ("true", "1", "yes")
                or os.environ.get("CELLTWIN_REQUIRE_SERVICES") == "1")
    if required:
        pytest.fail("chromium is required to test the report in CI (Debian package `chromium`)")
    pytest.skip("chromium is not installed (Debian package `chromium`)")


def _run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [_chromium(), *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def _probe(page: str, tmp_path: Path) -> dict:
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + _PROBE, 1))
    result = _run_chromium(["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()],
                           tmp_path / "profile")
    found = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no probe output; chromium said: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_browser_probe_sees_a_broken_page(tmp_path: Path) -> None:
    broken = ("<html><head></head><body><div class='plotly-graph-div' id='p'></div>"
              "<script>Plotly.newPlot('p', [{y: [1, 2]}]);</script></body></html>")

    state = _probe(broken, tmp_path)

    assert any("Plotly is not defined" in e for e in state["errors"])
    assert state["plots"] == [{"id": "p", "rendered": False, "svgs": 0, "traces": 0, "points": 0}]


def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    _write_validation(run_dir)

    state = _probe(build_report(run_dir).read_text(), tmp_path)

    assert state["errors"] == []
    plots = state["plots"]
    assert len(plots) == 3 * len(CELLS) + 2
    for plot in plots:
        assert plot["rendered"] and plot["svgs"] > 0 and plot["traces"] > 0, plot
        assert plot["points"] > 0, plot


def test_report_screenshot(run_dir: Path, tmp_path: Path) -> None:
    report = build_report(run_dir)
    shot = tmp_path / "report.png"

    result = _run_chromium(["--virtual-time-budget=15000", "--window-size=1400,3000",
                            f"--screenshot={shot}", report.as_uri()], tmp_path / "profile")

    assert shot.is_file(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a blank page is a few kB
    print(f"report screenshot: {shot}")


def test_analytics_figure_overlays_dqdv_of_selected_cycles_coloured_by_cycle(run_dir: Path) -> None:
    grid = np.linspace(0.35, 0.70, 50)
    parts = [{"time": [T0 + cycle] * grid.size, "cell": ["A01"] * grid.size, "preset": ["nd4mg80ni8"] * grid.size,
              "half": [half] * grid.size, "v_mv": [f"{v * 1000:.1f}" for v in grid], "cycle": [cycle] * grid.size,
              "v": grid.tolist(), "dqdv_mah_v": (np.exp(-((grid - centre) / 0.01) ** 2) * 20 / cycle).tolist()}
             for cycle in range(1, 11) for half, centre in (("discharge", 0.40), ("charge", 0.57))]
    _write(run_dir / OUT_DQDV, _concat(parts), int_columns=("cycle",))
    cell = load_cells(run_dir)[0]
    overlays = [t for t in analytics_figure(cell).data if t.name and t.name.startswith("cycle ")]

    assert overlaid_cycles(np.arange(1, 11)) == [1, 3, 5, 6, 8, 10]
    drawn = sorted({t.name for t in overlays}, key=lambda n: int(n.split()[1]))
    assert drawn == [f"cycle {c}" for c in (1, 3, 5, 6, 8, 10)]
    assert len(overlays) == 12 and len({t.line.color for t in overlays}) == 6  # one colour per cycle
    lithiation = [t for t in overlays if min(t.y) < 0]
    assert len(lithiation) == 6 and all(abs(t.x[int(np.argmin(t.y))] - 0.40) < 0.01 for t in lithiation)
    names = {t.name for t in analytics_figure(cell).data}
    assert {"energy efficiency", "hysteresis [V]", "twin R0 + R_ct [ohm, 130 C]"} <= names
