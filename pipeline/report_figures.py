"""Plotly figures of the HTML report: one timeline and one per-cycle figure per cell.

Time is shown as hours on test since the cell's first estimate (what a lab reads,
and plain floats keep the page small); long series are decimated with
``minmax_indices`` and the figure title says so.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from connectors.alert_catalogue import CATALOGUE
from connectors.wire import THRESHOLDS
from pipeline.report_data import CellData, Columns, minmax_indices
from twin.estimator import FLAG_RECOVERED, FLAG_UNCONVERGED
from twin.forecast import HORIZON_CYCLES

__all__ = ["MAX_POINTS", "timeline_figure", "cycle_figure", "validation_figure"]

MAX_POINTS = 2000
_MEASURED, _TWIN, _RISK2 = "#1f77b4", "#d62728", "#9467bd"
_SEVERITY_COLOUR = {"warning": "#ff7f0e", "critical": "#d62728"}
# Estimator flags that say how far to trust the SOC at a point: marked on the SOC trace.
_FLAG_MARKERS = (
    (FLAG_UNCONVERGED, f"not converged yet (flag {FLAG_UNCONVERGED})",
     {"color": "#7f7f7f", "symbol": "circle-open", "size": 6}),
    (FLAG_RECOVERED, f"filter re-initialised (flag {FLAG_RECOVERED})",
     {"color": _TWIN, "symbol": "x", "size": 11}),
)


def _limit(fig: go.Figure, y: float, row: int, label: str) -> None:
    fig.add_hline(y=y, row=row, col=1, line={"dash": "dash", "color": "#888", "width": 1},
                  annotation_text=label, annotation_position="top left",
                  annotation_font_size=10)


def _line(x: np.ndarray, y: np.ndarray, name: str, colour: str, **extra: object) -> go.Scatter:
    return go.Scatter(x=x, y=y, name=name, mode="lines", line={"color": colour, "width": 1.2},
                      **extra)


def _band(fig: go.Figure, x: np.ndarray, mid: np.ndarray, std: np.ndarray, row: int, name: str,
          fill: str) -> None:
    """``mid`` +/- ``std`` shaded: plotly fills from a trace to the one before it, so an
    invisible upper edge goes first."""
    fig.add_trace(go.Scatter(x=x, y=mid + std, mode="lines", line={"width": 0},
                             showlegend=False, hoverinfo="skip"), row=row, col=1)
    fig.add_trace(go.Scatter(x=x, y=mid - std, mode="lines", line={"width": 0},
                             fill="tonexty", fillcolor=fill, name=name), row=row, col=1)


def _flag_markers(fig: go.Figure, state: Columns, hours: np.ndarray, max_points: int) -> None:
    # Integer columns with nulls, or from another writer, read back as floats.
    flags = np.nan_to_num(state["flags"]).astype(np.int64)
    # Markers only show where the flagged stretches lie: a tenth of a trace's points, evenly
    # spread, is plenty and keeps the page small.
    budget = max(1, max_points // 10)
    for flag, name, marker in _FLAG_MARKERS:
        rows = np.flatnonzero(flags & flag)
        if rows.size == 0:
            continue
        rows = rows[np.linspace(0, rows.size - 1, min(rows.size, budget)).round().astype(int)]
        fig.add_trace(go.Scatter(x=hours[rows], y=state["soc"][rows], mode="markers", name=name,
                                 marker=marker), row=2, col=1)


def timeline_figure(cell: CellData, max_points: int = MAX_POINTS) -> go.Figure:
    """Voltage/current, SOC with its band, impedance growth, risks and alerts over time."""
    state = cell.state
    t0 = float(state["time"][0]) if state.get("time", np.array([])).size else 0.0
    hours = (state.get("time", np.array([])) - t0) / 3600.0
    fig = make_subplots(rows=5, cols=1, shared_xaxes=True, vertical_spacing=0.035,
                        row_heights=[0.24, 0.2, 0.16, 0.2, 0.2],
                        specs=[[{"secondary_y": True}], [{}], [{}], [{}], [{}]],
                        subplot_titles=("Voltage and current",
                                        "State of charge (band: +/- soc_std; markers: flagged points)",
                                        "Impedance growth", "Crack and phase-separation risk",
                                        "Alerts"))
    decimated = False

    def trace(name: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        nonlocal decimated
        values = state[name] * scale
        keep = minmax_indices(values, max_points)
        decimated |= keep.size < values.size
        return hours[keep], values[keep]

    fig.add_trace(_line(*trace("v"), "voltage [V]", _MEASURED), row=1, col=1)
    # Milliamperes: mg-scale cells draw a few mA, which in A reads as 0.00204.
    fig.add_trace(_line(*trace("i", 1000.0), "current [mA]", "#2ca02c"), row=1, col=1, secondary_y=True)

    keep = minmax_indices(state["soc"], max_points)
    _band(fig, hours[keep], state["soc"][keep], state["soc_std"][keep], 2, "soc +/- soc_std",
          "rgba(31,119,180,0.25)")
    fig.add_trace(_line(hours[keep], state["soc"][keep], "soc", _MEASURED), row=2, col=1)
    _flag_markers(fig, state, hours, max_points)

    fig.add_trace(_line(*trace("impedance_growth"), "impedance growth", "#8c564b"), row=3, col=1)
    _limit(fig, THRESHOLDS.impedance_growth, 3, f"limit {THRESHOLDS.impedance_growth:+.0%}")
    fig.add_trace(_line(*trace("crack_risk"), "crack risk", _TWIN), row=4, col=1)
    fig.add_trace(_line(*trace("phase_sep_risk"), "phase-separation risk", _RISK2), row=4, col=1)
    if THRESHOLDS.phase_sep_risk == THRESHOLDS.crack_risk:
        _limit(fig, THRESHOLDS.crack_risk, 4, f"crack and phase-separation limit {THRESHOLDS.crack_risk:g}")
    else:
        _limit(fig, THRESHOLDS.crack_risk, 4, f"crack limit {THRESHOLDS.crack_risk:g}")
        _limit(fig, THRESHOLDS.phase_sep_risk, 4, f"phase-separation limit {THRESHOLDS.phase_sep_risk:g}")

    _alert_markers(fig, cell.alerts, t0, hours)
    start = datetime.fromtimestamp(t0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    note = f" - downsampled to <= {max_points} points per trace (min/max kept)" if decimated else ""
    fig.update_layout(title=f"{cell.cell}: time on test from {start}{note}", height=1050,
                      margin={"l": 60, "r": 60, "t": 80, "b": 40}, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.04})
    fig.update_xaxes(title_text="hours on test", row=5, col=1)
    fig.update_yaxes(title_text="V", row=1, col=1)
    # Ticks of its own (round numbers), not the voltage grid's positions.
    fig.update_yaxes(title_text="mA", row=1, col=1, secondary_y=True, tickmode="auto", showgrid=False)
    fig.update_yaxes(title_text="SOC (1 = charged)", range=[-0.05, 1.05], row=2, col=1)
    fig.update_yaxes(title_text="growth", tickformat="+.0%", row=3, col=1)
    fig.update_yaxes(title_text="risk (0..1)", range=[-0.02, 1.02], row=4, col=1)
    return fig


def _alert_markers(fig: go.Figure, alerts: Columns, t0: float, hours: np.ndarray) -> None:
    if not alerts or alerts["time"].size == 0:
        # A text trace, not an annotation: plotly.js does not draw an axis pair that
        # holds no trace, and an annotation on it would land on the first subplot.
        middle = float(np.nanmean(hours)) if hours.size else 0.0
        fig.add_trace(go.Scatter(x=[middle], y=[0], mode="text", text=["no alerts"],
                                 showlegend=False, hoverinfo="skip"), row=5, col=1)
        fig.update_yaxes(showticklabels=False, row=5, col=1)
        return
    # Rows named as the alert catalogue names the kinds, in its order.
    titles = {k.kind: k.title for k in CATALOGUE}
    shown = [titles.get(str(kind), str(kind)) for kind in alerts["kind"]]
    fig.update_yaxes(categoryorder="array", row=5, col=1,
                     categoryarray=[k.title for k in CATALOGUE if k.title in shown][::-1])
    for severity, colour in _SEVERITY_COLOUR.items():
        mask = alerts["severity"] == severity
        if not mask.any():
            continue
        fig.add_trace(go.Scatter(
            x=(alerts["time"][mask] - t0) / 3600.0, y=np.array(shown, dtype=object)[mask], mode="markers",
            marker={"color": colour, "size": 9, "symbol": "diamond"}, name=f"{severity} alert",
            text=alerts["message"][mask], hovertemplate="%{y}: %{text}<extra></extra>",
        ), row=5, col=1)


def _has_halves(halves: Columns) -> bool:
    return halves.get("cycle", np.array([])).size > 0


def _retentions(fig: go.Figure, halves: Columns, kind: str, symbol: str, dash: str) -> None:
    if not _has_halves(halves):
        return
    fig.add_trace(go.Scatter(x=halves["cycle"], y=halves["measured_retention"], mode="markers",
                             name=f"measured retention, {kind}",
                             marker={"color": _MEASURED, "symbol": symbol, "size": 8}), row=3, col=1)
    fig.add_trace(go.Scatter(x=halves["cycle"], y=halves["retention"], mode="lines",
                             name=f"twin retention, {kind}",
                             line={"color": _TWIN, "width": 1.2, "dash": dash}), row=3, col=1)


def _eol_fan(fig: go.Figure, halves: Columns) -> None:
    """The newest end-of-life forecast as a fan on the retention plot: from the newest half's
    twin retention, straight to the floor at the forecast's median cycle and its 90 % interval.
    None where the forecast is unknown, or its upper bound is only "at least the horizon"."""
    if any(name not in halves for name in ("eol_low", "eol_cycles", "eol_high")):
        return  # an output folder written before the forecast existed
    known = np.flatnonzero(np.isfinite(halves["eol_cycles"]) & np.isfinite(halves["retention"])
                           & (halves["eol_high"] < HORIZON_CYCLES))
    if not known.size:
        return
    k = known[-1]
    now, start, floor = float(halves["cycle"][k]), float(halves["retention"][k]), THRESHOLDS.retention_floor
    for name, label, style in (
        ("eol_low", None, {"width": 0}),
        ("eol_high", "end-of-life forecast, 90 % interval", {"width": 0}),
        ("eol_cycles", "end-of-life forecast, median", {"color": _TWIN, "dash": "dash"}),
    ):
        fig.add_trace(go.Scatter(x=[now, now + float(halves[name][k])], y=[start, floor], mode="lines",
                                 name=label, showlegend=label is not None, line=style,
                                 fill="tonexty" if name == "eol_high" else None,
                                 fillcolor="rgba(214,39,40,0.15)"), row=3, col=1)


def cycle_figure(cell: CellData) -> go.Figure:
    """Per discharge: capacity against the twin's expectation and its own estimate (+/- 1 std);
    per half of either kind: retention measured (markers) and the twin's (line), and the newest
    end-of-life forecast as a fan to the floor; per charge: Coulombic efficiency."""
    dis, chg = cell.discharge, cell.charge
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        subplot_titles=("Discharge capacity per gram vs the twin's expectation",
                                        "Discharge capacity: counted and the twin's (band: +/- 1 std)",
                                        "Retention: measured and the twin's",
                                        "Coulombic efficiency"))
    if _has_halves(dis):
        cycle = dis["cycle"]
        fig.add_trace(go.Scatter(x=cycle, y=dis["capacity_mah_g"], mode="lines+markers",
                                 name="measured [mAh/g]", line={"color": _MEASURED}), row=1, col=1)
        fig.add_trace(go.Scatter(x=cycle, y=dis["expected_mah_g"], mode="lines",
                                 name="twin's prediction [mAh/g]",
                                 line={"color": _TWIN, "dash": "dash"}), row=1, col=1)
        _band(fig, cycle, dis["twin_capacity_mah"], dis["twin_capacity_std_mah"], 2,
              "twin capacity +/- 1 std", "rgba(214,39,40,0.2)")
        fig.add_trace(_line(cycle, dis["twin_capacity_mah"], "twin capacity [mAh]", _TWIN), row=2, col=1)
        fig.add_trace(go.Scatter(x=cycle, y=dis["capacity_mah"], mode="markers",
                                 name="counted capacity [mAh]", marker={"color": _MEASURED}), row=2, col=1)
    _retentions(fig, dis, "discharge", "circle", "solid")
    _retentions(fig, chg, "charge", "circle-open", "dot")
    if _has_halves(dis) or _has_halves(chg):  # a line on an empty subplot lands elsewhere
        _limit(fig, THRESHOLDS.retention_floor, 3, "floor")
    if _has_halves(chg):
        _eol_fan(fig, chg)
    if _has_halves(chg):
        fig.add_trace(go.Scatter(x=chg["cycle"], y=chg["coulombic_efficiency"],
                                 mode="lines+markers", name="Coulombic efficiency",
                                 line={"color": "#2ca02c"}), row=4, col=1)
    fig.update_layout(title=f"{cell.cell}: per cycle", height=900,
                      margin={"l": 60, "r": 60, "t": 80, "b": 40},
                      legend={"orientation": "h", "y": -0.06})
    fig.update_xaxes(title_text="cycle", row=4, col=1)
    _whole_cycles(fig)
    fig.update_yaxes(title_text="mAh/g", row=1, col=1)
    fig.update_yaxes(title_text="mAh", row=2, col=1)
    fig.update_yaxes(title_text="retention", row=3, col=1)
    fig.update_yaxes(title_text="CE", row=4, col=1)
    return fig


def _whole_cycles(fig: go.Figure) -> None:
    """Cycle ticks on whole numbers only (plotly would put one at 1.5), about ten of them over
    everything drawn: the cycles of the data, and the forecast's fan beyond them."""
    ends = [float(np.nanmax(np.asarray(t.x, dtype=float))) for t in fig.data if t.x is not None and len(t.x)]
    last = max([e for e in ends if np.isfinite(e)], default=1.0)
    fig.update_xaxes(tick0=0, dtick=max(1, int(np.ceil(last / 10))), tickformat="d")


def validation_figure(cell: str, rows: Columns) -> go.Figure:
    """Measured capacity per cycle next to the twin's; with a replay's full table also the
    SOC at the window ends (+/- 3 soc_std) and the voltage residual per cycle."""
    order = np.argsort(rows["cycle"], kind="stable")
    cycle = rows["cycle"][order]

    def col(name: str) -> np.ndarray | None:
        return rows[name][order].astype(float) if name in rows else None

    soc = [name for name in ("discharge", "charge") if col(f"soc_end_{name}") is not None]
    residual = col("v_residual_rms")
    titles = ["Capacity per cycle"]
    if soc:
        titles.append("Twin SOC at the window ends (+/- 3 soc_std)")
    if residual is not None:
        titles.append("Voltage residual per cycle")
    panels = len(titles)
    fig = make_subplots(rows=panels, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        specs=[[{"secondary_y": True}]] * panels, subplot_titles=titles)
    fig.add_trace(go.Scatter(x=cycle, y=rows["measured_discharge_mah"][order], mode="markers",
                             name="measured discharge [mAh]", marker={"color": _MEASURED}), row=1, col=1)
    fig.add_trace(go.Scatter(x=cycle, y=rows["measured_charge_mah"][order], mode="markers",
                             name="measured charge [mAh]",
                             marker={"color": "#2ca02c", "symbol": "x"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=cycle, y=rows["twin_capacity_mah"][order], mode="lines",
                             name="twin capacity [mAh]", line={"color": _TWIN}), row=1, col=1)
    fig.add_trace(go.Scatter(x=cycle, y=rows["coulombic_efficiency"][order], mode="lines",
                             name="Coulombic efficiency", line={"color": "#7f7f7f", "dash": "dot"}),
                  row=1, col=1, secondary_y=True)
    row = 1
    if soc:
        row += 1
        for name in soc:
            values, std = col(f"soc_end_{name}"), col(f"soc_std_end_{name}")
            colour = _MEASURED if name == "discharge" else "#2ca02c"
            error = {"type": "data", "array": 3 * std, "visible": True} if std is not None else None
            fig.add_trace(go.Scatter(x=cycle, y=values, mode="markers", error_y=error,
                                     name=f"SOC at end of {name}", marker={"color": colour}), row=row, col=1)
        for level in (0.0, 1.0):
            _limit(fig, level, row, "window end")
        fig.update_yaxes(title_text="SOC", range=[-0.05, 1.05], row=row, col=1, secondary_y=False)
    if residual is not None:
        row += 1
        fig.add_trace(go.Scatter(x=cycle, y=1000 * residual, mode="lines+markers",
                                 name="residual rms [mV]", line={"color": "#8c564b"}), row=row, col=1)
        mean = col("v_residual_mean")
        if mean is not None:
            fig.add_trace(go.Scatter(x=cycle, y=1000 * mean, mode="lines+markers",
                                     name="residual mean [mV]", line={"color": "#bcbd22"}), row=row, col=1)
        nis = col("nis")
        if nis is not None:
            fig.add_trace(go.Scatter(x=cycle, y=nis, mode="lines", name="NIS",
                                     line={"color": _RISK2, "dash": "dot"}), row=row, col=1, secondary_y=True)
            fig.update_yaxes(title_text="NIS", row=row, col=1, secondary_y=True)
        fig.update_yaxes(title_text="mV", row=row, col=1, secondary_y=False)
    fig.update_layout(title=f"{cell}: measured vs twin", height=330 + 260 * (panels - 1),
                      margin={"l": 60, "r": 60, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.12})
    fig.update_xaxes(title_text="cycle", row=panels, col=1)
    _whole_cycles(fig)
    fig.update_yaxes(title_text="mAh", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="CE", row=1, col=1, secondary_y=True)
    return fig
