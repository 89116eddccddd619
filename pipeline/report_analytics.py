"""The report's figure of the analytics measured from the data (`twin.analytics`): dQ/dV
curves of selected cycles overlaid, coloured by cycle, and per cycle the energy, the energy
efficiency, the voltage hysteresis, the dQ/dV peak positions, and the pulse resistance beside
the twin's R0 + R_ct."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from pipeline.report_data import CellData, Columns

__all__ = ["OVERLAID_CYCLES", "has_analytics", "overlaid_cycles", "analytics_figure"]

OVERLAID_CYCLES = 6  # dQ/dV curves drawn: the first, the last and evenly spaced between
_DISCHARGE, _CHARGE, _TWIN = "#1f77b4", "#ff7f0e", "#d62728"
_PEAKS = ("peak1_v", "peak2_v", "peak3_v")


def has_analytics(cell: CellData) -> bool:
    """Whether the run wrote the measured analytics for this cell (older folders did not)."""
    return "energy_mwh" in cell.discharge or "energy_mwh" in cell.charge


def overlaid_cycles(cycles: np.ndarray, count: int = OVERLAID_CYCLES) -> list[int]:
    """Up to `count` of the cycles: the first, the last and evenly spaced between."""
    unique = np.unique(cycles)
    if unique.size <= count:
        return unique.tolist()
    return unique[np.unique(np.round(np.linspace(0, unique.size - 1, count)).astype(int))].tolist()


def _curves(fig: go.Figure, curves: Columns) -> None:
    """Lithiation drawn below zero, delithiation above: both halves of a cycle on one axis."""
    chosen = overlaid_cycles(curves["cycle"])
    colours = sample_colorscale("Viridis", [k / max(len(chosen) - 1, 1) for k in range(len(chosen))])
    for cycle, colour in zip(chosen, colours):
        for half, sign in (("discharge", -1.0), ("charge", 1.0)):
            rows = (curves["cycle"] == cycle) & (curves["half"] == half)
            if not rows.any():
                continue
            order = np.argsort(curves["v"][rows])
            fig.add_trace(go.Scatter(x=curves["v"][rows][order], y=sign * curves["dqdv_mah_v"][rows][order],
                                     mode="lines", line={"color": colour, "width": 1.5},
                                     name=f"cycle {cycle}", legendgroup=f"cycle {cycle}",
                                     showlegend=half == "discharge" or not (curves["half"] == "discharge").any()),
                          row=1, col=1)


def _per_cycle(fig: go.Figure, halves: Columns, name: str, row: int, label: str, colour: str,
               symbol: str = "circle") -> None:
    if halves.get("cycle", np.array([])).size and name in halves and np.isfinite(halves[name]).any():
        fig.add_trace(go.Scatter(x=halves["cycle"], y=halves[name], mode="lines+markers", name=label,
                                 line={"color": colour}, marker={"symbol": symbol}), row=row, col=1)


def analytics_figure(cell: CellData) -> go.Figure:
    """dQ/dV overlays (lithiation negative), then per cycle: energy per gram of each half,
    energy efficiency and hysteresis, the peak positions, pulse resistance beside the twin's."""
    dis, chg = cell.discharge, cell.charge
    fig = make_subplots(rows=5, cols=1, vertical_spacing=0.07, specs=[[{}], [{}], [{"secondary_y": True}], [{}], [{}]],
                        subplot_titles=("Measured dQ/dV of selected cycles (lithiation below zero), colour by cycle",
                                        "Measured energy per gram",
                                        "Energy efficiency and voltage hysteresis (charge vs the discharge before)",
                                        "dQ/dV peak positions",
                                        "Pulse resistance measured at current steps, beside the twin's R0 + R_ct"))
    if cell.curves.get("cycle", np.array([])).size:
        _curves(fig, cell.curves)
    _per_cycle(fig, dis, "energy_mwh_g", 2, "discharge [mWh/g]", _DISCHARGE)
    _per_cycle(fig, chg, "energy_mwh_g", 2, "charge [mWh/g]", _CHARGE)
    _per_cycle(fig, chg, "energy_efficiency", 3, "energy efficiency", "#2ca02c")
    if chg.get("cycle", np.array([])).size and "hysteresis_v" in chg:
        fig.add_trace(go.Scatter(x=chg["cycle"], y=chg["hysteresis_v"], mode="lines+markers", name="hysteresis [V]",
                                 line={"color": "#8c564b", "dash": "dot"}), row=3, col=1, secondary_y=True)
    for halves, colour, kind in ((dis, _DISCHARGE, "lithiation"), (chg, _CHARGE, "delithiation")):
        for n, name in enumerate(_PEAKS):
            _per_cycle(fig, halves, name, 4, f"{kind} peak {n + 1} [V]", colour, ("circle", "square", "diamond")[n])
    _per_cycle(fig, dis, "pulse_r_ohm", 5, "pulse resistance, discharge [ohm]", _DISCHARGE)
    _per_cycle(fig, chg, "pulse_r_ohm", 5, "pulse resistance, charge [ohm]", _CHARGE)
    for halves in (dis, chg):
        if halves.get("cycle", np.array([])).size and "r0_ohm" in halves:
            fig.add_trace(go.Scatter(x=halves["cycle"], y=halves["r0_ohm"] + halves["rct_ohm"], mode="lines",
                                     name="twin R0 + R_ct [ohm, 130 C]", line={"color": _TWIN, "dash": "dash"},
                                     showlegend=halves is dis), row=5, col=1)
    fig.update_layout(title=f"{cell.cell}: measured from the data", height=1200,
                      margin={"l": 60, "r": 60, "t": 80, "b": 40}, legend={"orientation": "h", "y": -0.05})
    fig.update_xaxes(title_text="V", row=1, col=1)
    fig.update_xaxes(title_text="cycle", row=5, col=1)
    for row, title in ((1, "mAh/V"), (2, "mWh/g"), (4, "V"), (5, "ohm")):
        fig.update_yaxes(title_text=title, row=row, col=1)
    fig.update_yaxes(title_text="efficiency", row=3, col=1, secondary_y=False)
    fig.update_yaxes(title_text="V", row=3, col=1, secondary_y=True)
    return fig
