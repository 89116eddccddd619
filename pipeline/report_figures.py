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

from pipeline.contracts import THRESHOLDS
from pipeline.report_data import CellData, Columns, minmax_indices

__all__ = ["MAX_POINTS", "timeline_figure", "cycle_figure", "validation_figure"]

MAX_POINTS = 2000
_MEASURED, _TWIN, _RISK2 = "#1f77b4", "#d62728", "#9467bd"
_SEVERITY_COLOUR = {"warning": "#ff7f0e", "critical": "#d62728"}


def _limit(fig: go.Figure, y: float, row: int, label: str) -> None:
    fig.add_hline(y=y, row=row, col=1, line={"dash": "dash", "color": "#888", "width": 1},
                  annotation_text=label, annotation_position="top left",
                  annotation_font_size=10)


def _line(x: np.ndarray, y: np.ndarray, name: str, colour: str, **extra: object) -> go.Scatter:
    return go.Scatter(x=x, y=y, name=name, mode="lines", line={"color": colour, "width": 1.2},
                      **extra)


def timeline_figure(cell: CellData, max_points: int = MAX_POINTS) -> go.Figure:
    """Voltage/current, SOC with its band, impedance growth, risks and alerts over time."""
    state = cell.state
    t0 = float(state["time"][0]) if state.get("time", np.array([])).size else 0.0
    hours = (state.get("time", np.array([])) - t0) / 3600.0
    fig = make_subplots(rows=5, cols=1, shared_xaxes=True, vertical_spacing=0.035,
                        row_heights=[0.24, 0.2, 0.16, 0.2, 0.2],
                        specs=[[{"secondary_y": True}], [{}], [{}], [{}], [{}]],
                        subplot_titles=("Voltage and current", "State of charge (band: +/- soc_std)",
                                        "Impedance growth", "Crack and phase-separation risk",
                                        "Alerts"))
    decimated = False

    def trace(name: str) -> tuple[np.ndarray, np.ndarray]:
        nonlocal decimated
        values = state[name]
        keep = minmax_indices(values, max_points)
        decimated |= keep.size < values.size
        return hours[keep], values[keep]

    fig.add_trace(_line(*trace("v"), "voltage [V]", _MEASURED), row=1, col=1)
    fig.add_trace(_line(*trace("i"), "current [A]", "#2ca02c"), row=1, col=1, secondary_y=True)

    keep = minmax_indices(state["soc"], max_points)
    soc, std = state["soc"][keep], state["soc_std"][keep]
    fig.add_trace(go.Scatter(x=hours[keep], y=soc + std, mode="lines", line={"width": 0},
                             showlegend=False, hoverinfo="skip"), row=2, col=1)
    fig.add_trace(go.Scatter(x=hours[keep], y=soc - std, mode="lines", line={"width": 0},
                             fill="tonexty", fillcolor="rgba(31,119,180,0.25)",
                             name="soc +/- soc_std"), row=2, col=1)
    fig.add_trace(_line(hours[keep], soc, "soc", _MEASURED), row=2, col=1)

    fig.add_trace(_line(*trace("impedance_growth"), "impedance growth", "#8c564b"), row=3, col=1)
    _limit(fig, THRESHOLDS.impedance_growth, 3, "limit")
    fig.add_trace(_line(*trace("crack_risk"), "crack risk", _TWIN), row=4, col=1)
    fig.add_trace(_line(*trace("phase_sep_risk"), "phase-separation risk", _RISK2), row=4, col=1)
    _limit(fig, THRESHOLDS.crack_risk, 4, "crack limit")
    if THRESHOLDS.phase_sep_risk != THRESHOLDS.crack_risk:
        _limit(fig, THRESHOLDS.phase_sep_risk, 4, "phase-separation limit")

    _alert_markers(fig, cell.alerts, t0, hours)
    start = datetime.fromtimestamp(t0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    note = f" - downsampled to <= {max_points} points per trace (min/max kept)" if decimated else ""
    fig.update_layout(title=f"{cell.cell}: time on test from {start}{note}", height=1050,
                      margin={"l": 60, "r": 60, "t": 80, "b": 40}, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.04})
    fig.update_xaxes(title_text="hours on test", row=5, col=1)
    fig.update_yaxes(title_text="V", row=1, col=1)
    fig.update_yaxes(title_text="A", row=1, col=1, secondary_y=True)
    fig.update_yaxes(range=[-0.05, 1.05], row=2, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], row=4, col=1)
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
    for severity, colour in _SEVERITY_COLOUR.items():
        mask = alerts["severity"] == severity
        if not mask.any():
            continue
        fig.add_trace(go.Scatter(
            x=(alerts["time"][mask] - t0) / 3600.0, y=alerts["kind"][mask], mode="markers",
            marker={"color": colour, "size": 9, "symbol": "diamond"}, name=f"{severity} alert",
            text=alerts["message"][mask], hovertemplate="%{y}: %{text}<extra></extra>",
        ), row=5, col=1)


def cycle_figure(cell: CellData) -> go.Figure:
    """Capacity, retention and Coulombic efficiency per cycle against the twin."""
    dis, chg = cell.discharge, cell.charge
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Discharge capacity per cycle", "Retention",
                                        "Coulombic efficiency"))
    if dis.get("cycle", np.array([])).size:
        fig.add_trace(go.Scatter(x=dis["cycle"], y=dis["capacity_mah_g"], mode="lines+markers",
                                 name="measured [mAh/g]", line={"color": _MEASURED}), row=1, col=1)
        fig.add_trace(go.Scatter(x=dis["cycle"], y=dis["expected_mah_g"], mode="lines",
                                 name="twin expectation [mAh/g]",
                                 line={"color": _TWIN, "dash": "dash"}), row=1, col=1)
        fig.add_trace(go.Scatter(x=dis["cycle"], y=dis["retention"], mode="lines+markers",
                                 name="retention", line={"color": "#17becf"}), row=2, col=1)
        _limit(fig, THRESHOLDS.retention_floor, 2, "floor")
    if chg.get("cycle", np.array([])).size:
        fig.add_trace(go.Scatter(x=chg["cycle"], y=chg["coulombic_efficiency"],
                                 mode="lines+markers", name="Coulombic efficiency",
                                 line={"color": "#2ca02c"}), row=3, col=1)
    fig.update_layout(title=f"{cell.cell}: per cycle", height=700,
                      margin={"l": 60, "r": 60, "t": 80, "b": 40},
                      legend={"orientation": "h", "y": -0.08})
    fig.update_xaxes(title_text="cycle", row=3, col=1)
    fig.update_yaxes(title_text="mAh/g", row=1, col=1)
    return fig


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
    fig.update_yaxes(title_text="mAh", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="CE", row=1, col=1, secondary_y=True)
    return fig
