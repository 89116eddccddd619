"""The names other people rely on, defined once.

Topics, InfluxDB measurements, their tags and fields, the local output files and
the alert thresholds live here so that the dataflow, the sinks, the Grafana
dashboards, the alert rules and the HTML report all import the same definitions
(a renamed field breaks the build, not a dashboard in production).
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.analytics import FIELDS as _ANALYTICS_FIELDS
from twin.estimator import RETENTION_FLOOR, RISK_AT_FLOOR

__all__ = [
    "TOPIC_SAMPLES",
    "TOPIC_META",
    "TOPIC_DEADLETTER",
    "TOPIC_TWIN",
    "TOPIC_ALERTS",
    "TOPIC_PARTITIONS",
    "MEAS_STATE",
    "MEAS_CYCLE",
    "MEAS_ALERT",
    "MEAS_HEALTH",
    "MEAS_DQDV",
    "TAG_CELL",
    "TAG_PRESET",
    "TAG_HALF",
    "TAG_KIND",
    "TAG_VOLTAGE",
    "STATE_FIELDS",
    "CYCLE_FIELDS",
    "ANALYTICS_FIELDS",
    "DQDV_FIELDS",
    "FIELD_PARTIAL",
    "ALERT_FIELDS",
    "HEALTH_FIELDS",
    "OUT_ESTIMATES",
    "OUT_CYCLES",
    "OUT_ALERTS",
    "OUT_DQDV",
    "OUT_DEADLETTER",
    "OUT_REPORT",
    "AlertThresholds",
    "THRESHOLDS",
]

# Kafka topics (key = cell id on every per-cell topic).
TOPIC_SAMPLES = "cell.samples"
TOPIC_META = "cell.meta"  # compacted: key = cell id, value = CellMeta JSON
TOPIC_DEADLETTER = "cell.deadletter"
TOPIC_TWIN = "cell.twin"
TOPIC_ALERTS = "cell.alerts"
# Partitions of the topics celltwin creates where they do not exist yet (existing ones are kept).
TOPIC_PARTITIONS = {TOPIC_SAMPLES: 8, TOPIC_META: 1, TOPIC_TWIN: 8, TOPIC_ALERTS: 1, TOPIC_DEADLETTER: 1}

# InfluxDB measurements. Timestamps are sample times, so re-writing is idempotent.
MEAS_STATE = "twin_state"
MEAS_CYCLE = "cycle_summary"
MEAS_ALERT = "twin_alert"
MEAS_HEALTH = "pipeline_health"
MEAS_DQDV = "dqdv"  # the dQ/dV curve of each half-cycle: one point per voltage bin

TAG_CELL = "cell"
TAG_PRESET = "preset"
TAG_HALF = "half"  # "discharge" | "charge" on cycle_summary
TAG_KIND = "kind"  # alert kind on twin_alert
TAG_VOLTAGE = "v_mv"  # bin centre in mV on dqdv: each bin its own series, all at the half's end time

# Per-sample estimate (rate-limited per cell), measurement twin_state.
STATE_FIELDS: tuple[str, ...] = (
    "v",  # measured voltage, V
    "i",  # measured current, A (lithiation negative)
    "temp_c",  # cell temperature, C
    "soc",  # state of charge 0..1 (1 = delithiated / charged)
    "soc_std",  # one standard deviation of soc
    "capacity_mah",  # tracked reversible capacity, mAh
    "capacity_std_mah",  # one standard deviation of capacity_mah
    "retention",  # capacity_mah / the twin's capacity at the cell's first reversible half-cycle
    "r0_ohm",  # ohmic resistance at 130 C reference
    "rct_ohm",  # charge-transfer + interphase resistance at reference
    "r0_std_ohm",  # one standard deviation of r0_ohm
    "rct_std_ohm",  # one standard deviation of rct_ohm
    "impedance_growth",  # (r0 + rct) / own baseline - 1
    "crack_risk",  # 0..1
    "phase_sep_risk",  # 0..1
    "hysteresis",  # hysteresis state -1 (lithiation branch) .. +1 (delithiation)
    "v_residual",  # measured - predicted voltage, V
    "nis",  # normalised innovation squared, running mean
    "flags",  # integer: bit-OR of twin.estimator FLAG_* over the samples since the previous point
)

# One point per half-cycle, measurement cycle_summary (tags cell, preset, half).
CYCLE_FIELDS: tuple[str, ...] = (
    "cycle",
    "capacity_mah",  # coulomb-counted capacity of this half-cycle
    "capacity_mah_g",  # the same per gram of hydride
    "expected_mah_g",  # the twin's prediction of this half's charge, from its start to the cut-off
    "coulombic_efficiency",  # on charge halves: charge / preceding discharge
    "measured_retention",  # capacity_mah / the counted capacity of the cell's first reversible half
    #                        of the same kind at the same C-rate (NaN without such a reference)
    "retention",  # the twin's: its capacity at this half's rate / the same at that reference
    "twin_capacity_mah",  # the twin's reversible capacity estimate at the end of the half
    "twin_capacity_std_mah",  # one standard deviation of twin_capacity_mah
    "impedance_growth",
    "crack_risk",
    "phase_sep_risk",
    "fade_per_cycle",  # recent capacity fade rate, fraction per cycle
    "c_rate",
    "nis",
    "eol_cycles",  # forecast cycles from this half until the retention reaches the floor (median) ...
    "eol_low",  # ... and its 90 % interval (5th, 95th percentile); NaN while unknown,
    "eol_high",  #     HORIZON_CYCLES (1000) means at least that (twin.forecast)
    "r0_ohm",  # the twin's R0 at the end of the half (130 C reference), beside pulse_r_ohm
    "rct_ohm",  # the twin's R_ct, the same
    "partial",  # bool: closed by the end of the data before its cut-off (no alert judges it)
) + _ANALYTICS_FIELDS
FIELD_PARTIAL = "partial"
# Of those, measured from the data alone (twin.analytics; README "Output columns" says how):
# energy, mean voltage, energy efficiency and hysteresis (charge halves), up to three dQ/dV
# peaks (voltage, height, time at that plateau), pulse resistance from current steps.
ANALYTICS_FIELDS: tuple[str, ...] = _ANALYTICS_FIELDS

# The dQ/dV curve of each half, measurement dqdv (tags cell, preset, half, v_mv).
DQDV_FIELDS: tuple[str, ...] = ("cycle", "v", "dqdv_mah_v")

# One point per alert, measurement twin_alert (tags cell, preset, kind).
ALERT_FIELDS: tuple[str, ...] = ("value", "threshold", "severity", "message")

# Pipeline self-observation, measurement pipeline_health (tag worker).
HEALTH_FIELDS: tuple[str, ...] = (
    "samples",
    "deadletters",
    "write_errors",
    "consumer_lag",
    "stalled_s",  # the longest broker or store outage since the previous point
)

# Local output folder of `celltwin run` / `celltwin replay`.
OUT_ESTIMATES = "estimates.parquet"
OUT_CYCLES = "cycles.parquet"
OUT_ALERTS = "alerts.parquet"
OUT_DQDV = "dqdv.parquet"
OUT_DEADLETTER = "deadletter.jsonl"
OUT_UNDELIVERED = "deadletter-undelivered.jsonl"  # dead letters the broker refused (also without --out: ./)
OUT_REPORT = "report.html"


@dataclass(frozen=True)
class AlertThresholds:
    """Alert limits shared by the in-stream alerts and the Grafana alert rules."""

    crack_risk: float = RISK_AT_FLOOR  # risk scale: 0.7 = on course to the floor in 100 cycles
    phase_sep_risk: float = RISK_AT_FLOOR
    retention_floor: float = RETENTION_FLOOR
    eol_horizon_cycles: float = 20.0  # the forecast's lower bound (eol_low) of cycles to the floor
    fade_rate_jump: float = 0.01  # fraction of capacity lost per cycle
    impedance_growth: float = 0.5  # +50 % over the cell's own baseline
    temp_low_c: float = 120.0  # LiBH4 loses its conduction below ~107 C
    temp_high_c: float = 140.0
    silent_after_s: float = 300.0  # a cell on test that sends nothing this long
    deadletter_burst_per_min: float = 10.0


THRESHOLDS = AlertThresholds()
