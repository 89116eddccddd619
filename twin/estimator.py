"""The per-cell estimator: an extended Kalman filter on the model of `twin.model`.

Why an EKF and not a UKF: given the measured current, the state transition is linear
in the state (`x' = F(i, dt) x + B u`, exactly, with R1 in the state), so only the
voltage equation is nonlinear, and only through the smooth OCV of one variable. One
Jacobian row is cheap and exact there; a UKF would cost 13 model evaluations per
sample for no accuracy gain, and the cost matters at hundreds of cells x 1 Hz.

Fast states x = [soc, h, v1, d, r0, r1, e]: r0, r1 at 130 C and the cell's own
offset e of the plateau potentials are random walks. The offset matters: the plateaus
are flat (50 mV across the whole SOC range), so a 1 mV offset read as SOC would be a
2 % SOC error; as a state, it is pinned at the knees and the phase step instead. Joint
estimation, so a temperature sag that multiplies the resistance by the known LiBH4
factor g(T) is not read as ageing.

Capacity is estimated dually, once per half-cycle, by a scalar Kalman filter: its time
update is the degradation model's own loss for the half (phase separation, contact
loss), its measurement the charge counted over the filter's SOC swing of a deep half.
The same count estimates the cell's diffusion time, which sets how far the bulk SOC lags
the surface the knees pin (`_update_capacity`): at 1C a lag error would read as capacity.
Where the lag weighs as much as the capacity (0.5C and faster), the count is read
through the model's own answer for a constant-current half at that rate (`_at_rate_mah`),
iterated to convergence, so the twin's retention starts from a reference it agrees with.
Inside a half, the capacity's uncertainty enters the SOC variance as a "consider"
parameter: a wrong capacity makes counted SOC drift one way, so that variance grows
with the square of the charge counted, which keeps the SOC band honest. Joint
estimation of 1/capacity in the EKF was tried and rejected: on the flat plateaus a
large initial SOC error leaks into it and the capacity swings by tens of percent.
Resistances get the same model time update at half ends (activation, contact loss).
A learned curve's half that ended on a voltage hold at its cut-off ended at the end of
the curve: its SOC is read as 0 (1) there, less the resistive drop of its last current
(`_pin_end`, `_cut_off_soc`; one that got there on constant current too, as loosely as
its current's diffusion lag says), since on a sloped end the
voltage cannot tell the SOC from an offset that drifted as the cell aged. On the hold
itself, and in the rest after it, the voltage is not used (FLAG_HOLD, `_in_hold`): the
cycler holds it while the cell is still polarised, and the SOC is set to the curve's end
where the hold gives way to the rest (`_pin`).
The degradation model is a prior, not a cage: a capacity measurement far outside what
prior and measurement allow widens the prior (covariance matching), so a cell that
loses 15 % in a cycle is followed within that half.

Never silently lost. A cell's SOC starts from its first voltage (`_start`). Where the
voltage runs up a knee faster than the linearised filter follows, the SOC is read off
the knee (`_knee_update`, flag FLAG_KNEE) instead of the sample being rejected. Five
consecutive rejected samples, a running NIS far above 1, or a state that is no longer
finite mean the filter has lost the cell: it is re-initialised from the voltage
(`_restart`, FLAG_RECOVERED) with its capacity uncertainty widened. Every estimate
until the SOC has converged again carries FLAG_UNCONVERGED. A learned curve's branch
switch after a reversal is not such a loss when the real one runs ahead of the twin's
default rate: while it is under way the branch state is free and read off the voltage
(FLAG_SWITCH where that is more than 0.1 V off), and the first `_TRANSIENT` of the half
does not count towards a restart (`_gate`).

Cycle-level outputs (capacity per half, Coulombic efficiency, measured and twin
retention, impedance growth, crack and phase-separation risk, NIS) come from the same
`Tracker`. Retention is judged at the half's own C-rate, against the cell's first
reversible half of the same kind at that rate: counted over counted, and the twin's
capacity at that rate (`_at_rate_mah`, the model's answer from its current estimates)
over the same at the reference. The twin's reversible capacity alone would miss what a
lab sees at 1C: activation lifts the 1C capacity by 4 % over ten cycles while the
reversible capacity stays flat.

Two numerically identical paths step a `Tracker` of N cells:
`step_filterpy` (filterpy's `predict`/`update`, one cell at a time) and `step`
(the same equations batched over cells with numpy, much faster per cell). A test
holds them equal to 1e-9. The tracker is a small dataclass of arrays: it pickles to a
few KB per cell, which the streaming layer snapshots.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np

from . import degradation as deg
from . import forecast
from .generic import BALANCE_TOLERANCE
from .forecast import RETENTION_FLOOR, RISK_AT_FLOOR
from .model import ocv_inverse, temperature_factor, terminal_voltage
from .params import END_TOLERANCE, CellParams, stack_ocv_tables, stack_params

__all__ = [
    "FLAG_NONFINITE",
    "FLAG_BELOW_WINDOW",
    "FLAG_ABOVE_WINDOW",
    "FLAG_TIME",
    "FLAG_GAP",
    "GAP_S",
    "GAP_PACES",
    "FLAG_OUTLIER",
    "FLAG_IMPLAUSIBLE",
    "FLAG_UNCONVERGED",
    "FLAG_RECOVERED",
    "FLAG_KNEE",
    "FLAG_HOLD",
    "FLAG_SWITCH",
    "Tracker",
    "StepOutput",
    "HalfCycle",
    "new_tracker",
    "concat",
    "step",
    "step_filterpy",
    "finish",
    "RISK_HORIZON_CYCLES",
    "RISK_AT_FLOOR",
    "RETENTION_FLOOR",
]

FLAG_NONFINITE = 1  # NaN / inf in t, v, i or temperature: sample skipped
FLAG_BELOW_WINDOW = 2  # v below the window (hydride: 0.3 V, Li-Mg alloying = abuse); no voltage update
FLAG_ABOVE_WINDOW = 4  # v above the window + margin: outside the model; no voltage update
FLAG_TIME = 8  # time did not advance: sample skipped
FLAG_GAP = 16  # long gap: current over the gap unknown, not counted, uncertainty inflated
FLAG_OUTLIER = 32  # innovation beyond the gate: voltage not used
FLAG_IMPLAUSIBLE = 64  # current beyond 20C or temperature no cell on test can have: sample skipped
FLAG_UNCONVERGED = 128  # the estimate has not converged yet (a new cell, or since a recovery)
FLAG_RECOVERED = 256  # the filter had lost the cell and was re-initialised from this voltage
FLAG_KNEE = 512  # the voltage ran up a knee ahead of the prediction: SOC read off it (see _knee_update)
FLAG_HOLD = 1024  # a learned cell held at its cut-off (constant-voltage tail), or resting after it: voltage not used
FLAG_SWITCH = 2048  # a learned cell's branch switch ran over 0.1 V ahead of its default rate: the branch read off the voltage

N_X = 7
_IZ, _IH, _IV1, _ID, _IR0, _IR1, _IE = range(N_X)
_DIAG = np.arange(N_X)
# Bounds of z, h, v1 (V: no RC branch of a cell on test holds more) and d.
_FAST_LOW, _FAST_HIGH = np.array([-0.05, -1.0, -1.0, -0.5]), np.array([1.05, 1.0, 1.0, 0.5])
_WINDOW_MARGIN_V = 0.02
_MAX_C_RATE = 20.0
_TEMP_RANGE_C = (-50.0, 250.0)
GAP_S = 600.0  # a silence beyond this ...
GAP_PACES = 10.0  # ... and this many of the cell's typical interval is a gap (pipeline.validation's too)
_PACE_MEMORY = 0.05  # weight of each interval in the running mean of the log-interval (the pace)
_GATE_NIS = 36.0  # 6 sigma
_MAX_RESIDUAL_V = 0.1  # a twin this far from the data is not describing the cell: voltage not used
_MAX_REJECTED = 5  # consecutive gated samples: the filter, not the data, is wrong: recover
_LOST_NIS = 25.0  # running mean NIS (1 when consistent) beyond which the filter has lost the cell
_SETTLE_SAMPLES = 10  # voltage updates after a (re)start before an estimate counts as converged
_CONVERGED_SOC_STD = 0.05
_ACTIVE_C = 0.01  # |current| above this fraction of 1C counts as charge or discharge ...
_ACTIVE_SCALE = 0.2  # ... or above this share of the cell's own recent current (slow tests) ...
_CV_TAIL = 0.5  # a half whose last `_CV_SAMPLES` currents are below this share of its mean
_CV_SAMPLES = 3  # current ended on a voltage hold (one short sample at a cut-off does not)
_HOLD_BAND = END_TOLERANCE  # of the window span: a sample this close to the cut-off its half heads for, on a tail
_ACTIVE_FLOOR_C = 0.001  # ... but never below this fraction of 1C (sensor noise at rest)
_SCALE_MEMORY_S = 1800.0  # how long the cell's recent current scale remembers a step
_INITIAL_SD = (0.3, 0.5, 0.01, 0.01)  # soc, h, v1 (V), d at a (re)start; r0, r1 relative 0.15
_KNEE_SLOPE_V = 1.0  # V per unit SOC: a knee, not a plateau (0.05), when reading SOC off the voltage
_KNEE_BAND = 0.15  # share of the window next to the cut-off the current is heading for
_END_KNEE_SOC = 0.05  # surface SOC this close to the end a half heads for, on a knee: the half got there
_KNEE_SOC_SD = 0.005  # SOC: what the knee reading leaves (model shape of the knee)
_ADAPT_SIGMAS = 2.0  # a capacity innovation beyond this many sigma widens the capacity prior
_LOST_CAPACITY_SD = 0.1  # relative: the least capacity uncertainty after a recovery
_REF_SLOTS = 4  # C-rates per half kind that get their own retention reference
_DEEP_HALF = 0.25  # SOC swing a half needs before it measures capacity
_V_STD = 3e-3  # V: sensor noise plus the fast part of model error (the slow part is the offset e)
_Q_RATE = np.array([1.5e-4, 1e-4, 2e-5, 1e-5, 1e-5, 1e-5, 2e-4]) ** 2  # per second (r0, r1: relative)
_CURVE_WALK_V = 0.02  # V per root unit of SOC moved: how a learned curve's error wanders along it
_SWITCHING = 0.5  # hysteresis state this far from the branch the current heads for: a switch under way
_SWITCH_VAR = 1.0  # variance the branch state of a learned curve gains per sample while it switches
_TRANSIENT = 0.05  # of its capacity: the start of a learned cell's half, where the reduced model's transient is approximate
_LEARNED_OFFSET_WALK = 0.3  # of the offset's random walk, for a cell with a learned curve
_TAU_REL_SD = 0.1  # relative: cell-to-cell spread and model error of the diffusion time (its prior)
_INTACT_SHARE = 0.5  # of its material: an electrode whose diffusion time can be measured
_LAG_WEIGHS = 0.7  # ... and where the lag's share of what the count may differ by is at least this of the capacity's
_OCV_OFFSET_SD = 3e-3  # V: cell-to-cell spread of the plateau potentials
_CAPACITY_SD = 0.02  # relative: prior spread of a cell's capacity around its preset
_CAPACITY_WALK = 0.01**2  # relative capacity variance added per half-cycle
_AT_RATE_ITERATIONS = 3  # Gauss-Newton steps of a lag-dominated half's update
_AT_RATE_MODEL_SD = 0.02  # relative: error of the at-rate model's answer for a sampled half
RISK_HORIZON_CYCLES = 100.0
_RISK_AT_FLOOR = -np.log(1.0 - RISK_AT_FLOOR)
_FADE_SMOOTHING = 0.3


@dataclass
class Tracker:
    """Everything the estimator knows about N cells. Arrays only: small and picklable."""

    consts: np.ndarray  # (N, len(_CONSTS)) model constants of each cell
    ocv_table: np.ndarray  # (N, 2, OCV_POINTS) learned OCV of generic cells, NaN for hydride cells
    x: np.ndarray  # (N, N_X) fast states
    P: np.ndarray  # (N, N_X, N_X)
    capacity_mah: np.ndarray
    capacity_var: np.ndarray
    tau_scale: np.ndarray  # the cell's diffusion time over its preset's, estimated (`_update_capacity`)
    tau_var: np.ndarray  # its variance
    irr_left_mah: np.ndarray
    t_last: np.ndarray  # NaN before the first sample
    i_last: np.ndarray  # A: current of the last usable sample (trapezoid counting)
    rejected: np.ndarray  # consecutive gated samples
    nis: np.ndarray  # running mean of the normalised innovation squared
    seg_sign: np.ndarray  # direction of the half-cycle in progress (0 = none yet)
    seg_mah: np.ndarray
    seg_soc0: np.ndarray
    seg_soc_var0: np.ndarray
    seg_d0: np.ndarray  # diffusion lag at the start of the half
    seg_active_s: np.ndarray
    seg_i_end: np.ndarray  # A: the half's latest active current (a CV hold ends on its tail)
    seg_tail_n: np.ndarray  # active samples at the half's end below `_CV_TAIL` of its mean current
    seg_v_end: np.ndarray  # V: the voltage of the half's latest active sample (NaN before one)
    seg_z_end: np.ndarray  # SOC, lag and SOC variance after the half's latest active sample (before
    # the first half: the latest sample's, where it would start)
    seg_d_end: np.ndarray
    seg_var_end: np.ndarray
    seg_from_end: np.ndarray  # 1: the half in progress started at a window end (the one before reached its own)
    seg_pinned: np.ndarray  # 1: the half in progress ended on a hold at its cut-off, its SOC pinned there
    full_discharge_mah: np.ndarray  # count of the last discharge if it ran the window, else NaN
    charges_balanced: np.ndarray  # 1: the last full charge after a full discharge counted no more than it
    cycle: np.ndarray  # completed lithiations
    psi: np.ndarray  # model phase-separation fraction, scaled to the observed fade
    crack: np.ndarray
    psi_rate: np.ndarray  # per-cycle growth, recent
    crack_rate: np.ndarray
    cycle_start_psi: np.ndarray
    cycle_start_crack: np.ndarray
    first_capacity_mah: np.ndarray  # first full reversible capacity (NaN until known)
    r_base: np.ndarray  # (r0 + r1) of the cell's own first full cycle
    last_discharge_mah: np.ndarray
    last_cycle_capacity_mah: np.ndarray
    fade_per_cycle: np.ndarray
    from_voltage: np.ndarray  # 1: SOC starts from the first voltage; 0: from the given soc0
    settled: np.ndarray  # voltage updates since the start or the last recovery
    i_scale: np.ndarray  # A: the cell's recent current scale (decaying peak)
    log_pace: np.ndarray  # log s: running mean of the log of the cell's sampling interval (NaN: none yet)
    ref_rate: np.ndarray  # (N, 2, _REF_SLOTS) C-rate of each retention reference (discharge, charge)
    ref_counted_mah: np.ndarray  # counted capacity of that reference half
    ref_twin_mah: np.ndarray  # the twin's capacity at that rate, at that half

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx) -> "Tracker":
        return Tracker(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


_CONSTS = (
    "capacity_mah", "mass_mg", "one_c_ma", "ni_share", "ocv_shift_v", "tau1_s", "tau_diff_s",
    "activation_factor", "activation_cycles", "hysteresis_rate", "r0_ohm", "r1_ohm",
    "ps_rate", "ps_saturation", "crack_rate", "crack_front_ref", "crack_r_growth", "volume_change",
    "first_irreversible_mah_g", "v_min", "v_max", "confinement",
)
_C = {name: k for k, name in enumerate(_CONSTS)}


@dataclass
class StepOutput:
    """Per-cell result of one sample (arrays of N)."""

    soc: np.ndarray
    soc_std: np.ndarray
    capacity_mah: np.ndarray
    r0_ohm: np.ndarray
    r1_ohm: np.ndarray
    hysteresis: np.ndarray
    v_residual: np.ndarray
    nis: np.ndarray
    flags: np.ndarray  # bit set of FLAG_*
    capacity_std_mah: np.ndarray
    r0_std_ohm: np.ndarray
    r1_std_ohm: np.ndarray
    first_capacity_mah: np.ndarray  # retention's reference: the first full reversible capacity (NaN until known)
    r_base: np.ndarray  # impedance growth's reference: (r0 + r1) of the first full cycle (NaN until known)
    halves: list["HalfCycle"]


@dataclass(frozen=True)
class HalfCycle:
    """Summary of a finished half-cycle of one cell."""

    cell: int  # index in the tracker
    t: float  # time of its end
    cycle: int
    half: str  # "discharge" | "charge"
    capacity_mah: float
    capacity_mah_g: float
    expected_mah_g: float  # the twin's prior prediction of this half's charge (`_at_rate_mah`), per gram
    coulombic_efficiency: float  # charge / preceding discharge (NaN on a discharge)
    measured_retention: float  # capacity_mah / the counted reference (same kind and C-rate), NaN without
    retention: float  # the twin's capacity at this rate / the same at that reference
    twin_capacity_mah: float  # the twin's reversible capacity estimate after this half
    twin_capacity_std_mah: float
    impedance_growth: float
    crack_risk: float
    phase_sep_risk: float
    fade_per_cycle: float
    c_rate: float
    nis: float
    # End of life (`twin.forecast`): cycles from this half until the retention reaches the
    # floor, median and 90 % interval; NaN while unknown (before the first full cycle).
    eol_cycles: float = float("nan")
    eol_low: float = float("nan")
    eol_high: float = float("nan")
    r0_ohm: float = float("nan")  # the twin's ohmic resistance at the end of the half, at 130 C
    rct_ohm: float = float("nan")  # the twin's charge-transfer + interphase resistance, the same
    partial: bool = False  # closed by the end of the data before its cut-off (see `finish`)


def new_tracker(cells: list[CellParams], soc0: float | np.ndarray | None = None, fresh: bool = True) -> Tracker:
    """Trackers for cells whose SOC starts from their first voltage, or at `soc0` when given."""
    p = stack_params(cells)
    n = len(cells)
    consts = np.stack([p[name] for name in _CONSTS], axis=1)
    x = np.zeros((n, N_X))
    x[:, _IZ] = 1.0 if soc0 is None else soc0
    x[:, _IH] = 1.0 if fresh else 0.0
    x[:, _IR0] = p["r0_ohm"]
    x[:, _IR1] = p["r1_ohm"] * (1.0 + p["activation_factor"] * fresh)
    sd = _initial_sd(x)
    nan, zeros = np.full(n, np.nan), np.zeros(n)
    return Tracker(
        consts=consts,
        ocv_table=stack_ocv_tables(cells),
        x=x,
        P=np.einsum("ni,ij->nij", sd**2, np.eye(N_X)),
        capacity_mah=p["capacity_mah"].copy(),
        capacity_var=(_CAPACITY_SD * p["capacity_mah"]) ** 2,
        tau_scale=np.ones(n),
        tau_var=np.full(n, _TAU_REL_SD**2),
        irr_left_mah=p["first_irreversible_mah_g"] * p["mass_mg"] / 1000.0 * fresh,
        t_last=nan.copy(),
        i_last=zeros.copy(),
        rejected=zeros.copy(),
        nis=np.ones(n),
        seg_sign=zeros.copy(),
        seg_mah=zeros.copy(),
        seg_soc0=x[:, _IZ].copy(),
        seg_soc_var0=sd[:, 0] ** 2,
        seg_d0=zeros.copy(),
        seg_active_s=zeros.copy(),
        seg_i_end=zeros.copy(),
        seg_tail_n=zeros.copy(),
        seg_v_end=nan.copy(),
        seg_z_end=x[:, _IZ].copy(),
        seg_d_end=x[:, _ID].copy(),
        seg_var_end=sd[:, 0] ** 2,
        seg_from_end=zeros.copy(),
        seg_pinned=zeros.copy(),
        full_discharge_mah=nan.copy(),
        charges_balanced=zeros.copy(),
        cycle=zeros.copy(),
        psi=zeros.copy(),
        crack=zeros.copy(),
        psi_rate=zeros.copy(),
        crack_rate=zeros.copy(),
        cycle_start_psi=zeros.copy(),
        cycle_start_crack=zeros.copy(),
        first_capacity_mah=nan.copy(),
        r_base=nan.copy(),
        last_discharge_mah=nan.copy(),
        last_cycle_capacity_mah=nan.copy(),
        fade_per_cycle=zeros.copy(),
        from_voltage=np.full(n, float(soc0 is None)),
        settled=zeros.copy(),
        i_scale=zeros.copy(),
        log_pace=np.full(n, np.nan),
        ref_rate=np.full((n, 2, _REF_SLOTS), np.nan),
        ref_counted_mah=np.full((n, 2, _REF_SLOTS), np.nan),
        ref_twin_mah=np.full((n, 2, _REF_SLOTS), np.nan),
    )


def _initial_sd(x: np.ndarray) -> np.ndarray:
    """(N, N_X) standard deviations of a state that has just (re)started."""
    n = x.shape[0]
    fast = np.broadcast_to(np.array(_INITIAL_SD), (n, len(_INITIAL_SD)))
    return np.column_stack([fast, 0.15 * x[:, _IR0], 0.15 * x[:, _IR1], np.full(n, _OCV_OFFSET_SD)])


def concat(trackers: "list[Tracker]") -> Tracker:
    """One tracker holding the cells of `trackers`, in order (copies; inputs unchanged).
    With `Tracker.take` this adds, removes or replaces cells of a running tracker."""
    if not trackers:
        raise ValueError("concat needs at least one tracker")
    return Tracker(**{f.name: np.concatenate([getattr(t, f.name) for t in trackers]) for f in fields(Tracker)})


def _c(tr: Tracker, name: str) -> np.ndarray:
    return tr.consts[:, _C[name]]


def _restart(tr: Tracker, rows: np.ndarray, v: np.ndarray, i: np.ndarray, g: np.ndarray,
             x: np.ndarray, P: np.ndarray) -> None:
    """Re-initialise `rows` of (x, P) in place from this voltage: SOC by inverting the OCV on
    the branch the current says (at rest: the branch the state was on), the start-up
    uncertainty. The polarisation (RC voltage, diffusion lag), resistances and plateau
    offset follow the current and are kept: a lost SOC is what recovery is for."""
    c = tr.consts[rows]
    broken = ~np.isfinite(x[rows]).all(axis=1)
    x[rows, _IR0] = np.where(broken, c[:, _C["r0_ohm"]], x[rows, _IR0])
    x[rows, _IR1] = np.where(broken, c[:, _C["r1_ohm"]], x[rows, _IR1])
    x[rows, _IE] = np.where(broken, 0.0, x[rows, _IE])
    x[rows, _IV1] = np.where(broken, 0.0, x[rows, _IV1])
    x[rows, _ID] = np.where(broken, 0.0, x[rows, _ID])
    active = np.abs(i[rows]) > _ACTIVE_FLOOR_C * c[:, _C["one_c_ma"]] / 1000.0
    h = np.where(active, np.sign(i[rows]), np.clip(np.nan_to_num(x[rows, _IH]), -1.0, 1.0))
    e = v[rows] - i[rows] * x[rows, _IR0] * g[rows] - x[rows, _IV1] - x[rows, _IE] - c[:, _C["ocv_shift_v"]]
    surface = ocv_inverse(e, h, c[:, _C["ni_share"]], tr.ocv_table[rows])
    x[rows, _IZ] = np.clip(surface - x[rows, _ID], _FAST_LOW[0], _FAST_HIGH[0])
    x[rows, _IH] = h
    P[rows] = np.einsum("ni,ij->nij", _initial_sd(x[rows]) ** 2, np.eye(N_X))


def _start(tr: Tracker, pr: "_Prepared", v: np.ndarray) -> None:
    """A cell's first usable sample: its SOC comes from the voltage, not from a guess.

    The branch it is on is unknown (a fresh hydride is delithiated, a cell taken off a
    shelf is anywhere), so the voltage, less the ohmic drop, is inverted on both: where
    they agree (a knee, a sloped curve) that is the SOC; where the voltage lies between
    the plateaus it says little, the middle of the two is taken, and the start-up
    variance holds the rest until a knee pins it."""
    rows = np.flatnonzero(pr.ok & np.isnan(tr.t_last) & (tr.from_voltage > 0) & np.isfinite(v))
    if rows.size == 0:
        return
    c = tr.consts[rows]
    e = v[rows] - pr.i[rows] * tr.x[rows, _IR0] * pr.g[rows] - c[:, _C["ocv_shift_v"]]
    ni, table = c[:, _C["ni_share"]], tr.ocv_table[rows]
    z = 0.5 * (ocv_inverse(e, -1.0, ni, table) + ocv_inverse(e, 1.0, ni, table))
    mid_half = terminal_voltage(z, np.zeros(rows.size), 0.0, 0.0, 0.0, 0.0, 1.0, ni, 0.0, table)
    e_mid, half = mid_half[0], np.maximum(mid_half[2], 1e-6)
    tr.x[rows, _IZ] = z
    tr.x[rows, _IH] = np.clip((e - e_mid) / half, -1.0, 1.0)
    tr.x[rows, _IV1] = tr.x[rows, _ID] = 0.0
    tr.P[rows] = np.einsum("ni,ij->nij", _initial_sd(tr.x[rows]) ** 2, np.eye(N_X))
    tr.seg_soc0[rows] = z
    tr.seg_soc_var0[rows] = tr.P[rows, _IZ, _IZ]
    _mark_end(tr, rows)


@dataclass
class _Prepared:
    ok: np.ndarray  # sample usable for the time update
    use_v: np.ndarray  # and for the voltage update
    flags: np.ndarray
    a_h: np.ndarray  # the non-identity entries of F: (h,h), (v1,v1), (v1,r1), (d,d)
    a_1: np.ndarray
    b_1: np.ndarray
    a_d: np.ndarray
    Bu: np.ndarray  # (N, 6)
    q_diag: np.ndarray  # (N, 6) diagonal process noise
    dt: np.ndarray
    i: np.ndarray
    g: np.ndarray
    sink: np.ndarray

    def F(self) -> np.ndarray:
        """The full (N, 6, 6) transition matrix (the batched path never forms it)."""
        F = np.broadcast_to(np.eye(N_X), (len(self.dt), N_X, N_X)).copy()
        F[:, _IH, _IH], F[:, _IV1, _IV1], F[:, _IV1, _IR1], F[:, _ID, _ID] = self.a_h, self.a_1, self.b_1, self.a_d
        return F


def _validate(tr: Tracker, t, v, i, temp_c) -> tuple[np.ndarray, ...]:
    n = len(tr)
    arrays = []
    for name, a in (("t", t), ("v", v), ("i", i), ("temp_c", temp_c)):
        a = np.asarray(a, dtype=float)
        if a.ndim == 0:
            a = np.full(n, a)
        if a.shape != (n,):
            raise ValueError(f"{name} must be a scalar or have shape ({n},), got {a.shape}")
        arrays.append(a)
    return tuple(arrays)


def gap_limit(log_pace: np.ndarray) -> np.ndarray:
    """The silence beyond which the current between two samples is unknown: `GAP_S`, or
    `GAP_PACES` of the cell's pace where it logs that coarsely (a slow test logged every
    15 min has no gap at every sample); none before a first interval sets the pace."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(log_pace), np.inf, np.maximum(GAP_S, GAP_PACES * np.exp(log_pace)))


def _paced(log_pace: np.ndarray, dt: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The pace after an interval `dt` (its log in the running mean; the first sets it)."""
    step = np.log(np.where(dt > 0, dt, 1.0))
    moved = np.where(np.isnan(log_pace), step, log_pace + _PACE_MEMORY * (step - log_pace))
    return np.where(ok & (dt > 0), moved, log_pace)


def _prepare(tr: Tracker, t, v, i, temp_c, present) -> _Prepared:
    finite = np.isfinite(t) & np.isfinite(v) & np.isfinite(i) & np.isfinite(temp_c)
    with np.errstate(invalid="ignore"):
        implausible = finite & (
            (np.abs(i) > _MAX_C_RATE * tr.consts[:, _C["one_c_ma"]] / 1000.0)
            | (temp_c < _TEMP_RANGE_C[0]) | (temp_c > _TEMP_RANGE_C[1])
        )
    first = np.isnan(tr.t_last)
    dt = np.where(first, 0.0, t - tr.t_last)
    backwards = finite & ~first & ~(dt > 0)
    ok = present & finite & ~backwards & ~implausible
    dt = np.where(ok, dt, 0.0)
    gap = ok & (dt > gap_limit(tr.log_pace))
    # A learned curve's window is the cycler's own cut-offs, which it holds in voltage
    # steps: noise puts half the samples of a hold below the lower one.
    learned = ~np.isnan(tr.ocv_table[:, 0, 0])
    below = v < tr.consts[:, _C["v_min"]] - np.where(learned, _WINDOW_MARGIN_V, 0.0)
    above = v > tr.consts[:, _C["v_max"]] + _WINDOW_MARGIN_V
    flags = (
        np.where(present & ~finite, FLAG_NONFINITE, 0)
        | np.where(present & backwards, FLAG_TIME, 0)
        | np.where(present & implausible, FLAG_IMPLAUSIBLE, 0)
        | np.where(gap, FLAG_GAP, 0)
        | np.where(ok & below, FLAG_BELOW_WINDOW, 0)
        | np.where(ok & above, FLAG_ABOVE_WINDOW, 0)
    )
    i = np.where(ok, i, 0.0)
    hold = ok & learned & _in_hold(tr, v, i, dt)
    flags |= np.where(hold, FLAG_HOLD, 0)
    use_v = ok & ~below & ~above & ~hold
    g = temperature_factor(np.where(ok, temp_c, 130.0), tr.ocv_table)

    c = tr.consts
    q_as = tr.capacity_mah * 3.6
    sink = np.where((i < 0) & (tr.irr_left_mah > 0), tr.irr_left_mah / (tr.irr_left_mah + tr.capacity_mah), 0.0)
    act = deg.activation(c[:, _C["activation_factor"]], c[:, _C["activation_cycles"]], tr.cycle)
    tau_d = c[:, _C["tau_diff_s"]] * tr.tau_scale * deg.tau_multiplier(act)
    a_h, a_1, b_1, a_d, bu_z, bu_h, bu_d = _transition_terms(i, dt, g, q_as, sink, tau_d, c[:, _C["hysteresis_rate"]],
                                                             c[:, _C["tau1_s"]])
    Bu = np.zeros((len(tr), N_X))
    Bu[:, _IZ], Bu[:, _IH], Bu[:, _ID] = bu_z, bu_h, bu_d
    scale = np.ones((len(tr), N_X))
    scale[:, _IR0 : _IR1 + 1] = tr.x[:, _IR0 : _IR1 + 1]
    # A learned curve is the cell's own: its offset moves only as the cell ages, not as
    # freely as the unknown plateau potentials of a hydride cell; left free, it would take
    # up what the steep ends of the curve say about the SOC. Not much slower either (3.6
    # mV per root hour): a hold at a cut-off pulls it by the polarisation the reduced model
    # lacks (tens of mV at an LFP knee), and it must come back within the next half, or
    # the plateau SOC takes up the rest. Since held ends are pinned (`_pin_end`), a
    # faster offset no longer shortens the swing.
    scale[:, _IE] = np.where(learned, _LEARNED_OFFSET_WALK, 1.0)
    q_diag = _Q_RATE * scale**2 * (dt * np.where(gap, 10.0, 1.0))[:, None]
    q_diag[:, _IZ] += _consider_soc_q(tr.seg_mah, tr.capacity_mah, tr.capacity_var, bu_z)
    # ... and a learned curve is one half's voltage, binned: along the SOC its error wanders
    # by a few mV (an LFP charge's graphite steps moved 0.1 in SOC between the curve's half
    # and the 11th cycle), which on a flat plateau the filter would otherwise read as 5-9 %
    # of SOC with a band of 1 %. So the offset also walks with the SOC moved, not only with
    # time: 2 mV per 1 % moved, 20 mV over a whole half.
    q_diag[:, _IE] += np.where(learned, _CURVE_WALK_V**2 * np.abs(bu_z), 0.0)
    return _Prepared(ok, use_v, flags, a_h, a_1, b_1, a_d, Bu, q_diag, dt, i, g, sink)


def _in_hold(tr: Tracker, v: np.ndarray, i: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Samples on a constant-voltage hold: the current still runs the half's way, active
    (`_bookkeeping`'s threshold), but below `_CV_TAIL` of the half's mean, with the voltage
    within `_HOLD_BAND` of the cut-off the half heads for. The cycler holds that voltage
    while the cell is still polarised (solid diffusion at an LFP knee: tens of mV the
    reduced model lacks), so it says nothing about the open circuit: read through the curve
    it stops the SOC where the learned curve meets the cut-off, a few % short of the end
    the hold runs to, while the charge keeps flowing (2.0 V held for 5 % of an LFP cell's
    charge). The SOC is counted there, set to the end of the curve where the hold gives
    way to a rest (`_pin`), and pinned there when the half closes (`_pin_end`)."""
    one_c_a = _c(tr, "one_c_ma") / 1000.0
    i_scale = np.maximum(np.abs(i), tr.i_scale * np.exp(-dt / _SCALE_MEMORY_S))
    threshold = np.maximum(np.minimum(_ACTIVE_C, _ACTIVE_SCALE * i_scale / one_c_a), _ACTIVE_FLOOR_C) * one_c_a
    active = np.abs(i) > threshold
    moving = active & (tr.seg_sign != 0) & (np.sign(i) == tr.seg_sign)
    v_min, v_max = _c(tr, "v_min"), _c(tr, "v_max")
    band = _HOLD_BAND * (v_max - v_min)
    with np.errstate(invalid="ignore"):
        at_cut = np.where(tr.seg_sign < 0, v <= v_min + band, v >= v_max - band)
    tail = (tr.seg_active_s > 0) & (np.abs(i) * tr.seg_active_s < _CV_TAIL * tr.seg_mah * 3.6)
    # The rest after such a hold (pinned at its start, `_bookkeeping`) is the cell relaxing
    # from it: its SOC is where the hold left it, and the voltage, still on its way to the
    # open circuit, is no news about it (read through the steep end of the curve, it moved
    # the SOC 2 % in an Arbin file's 15 min rest).
    relaxing = ~active & (tr.seg_pinned > 0)
    return (moving & at_cut & tail) | relaxing


# `_transition_terms` and `_consider_soc_q` use arithmetic and ufuncs only: the numpy
# path runs them on arrays of cells, `twin.kernel` compiles them as they are for scalars.


def _transition_terms(i, dt, g, q_as, sink, tau_d, gamma, tau1):
    """The non-identity entries of F (a_h, a_1, b_1 = dv1/dr1, a_d) and the input Bu (z, h, d)."""
    a_h = np.exp(-np.abs(i) * gamma * dt / q_as)
    a_1 = np.exp(-dt / tau1)
    a_d = np.exp(-10.0 * dt / tau_d)
    bu_z = i * (1.0 - sink) * dt / q_as
    return a_h, a_1, (1.0 - a_1) * i * g, a_d, bu_z, (1.0 - a_h) * np.sign(i), (1.0 - a_d) * i * tau_d / (3.0 * q_as)


def _consider_soc_q(seg_mah, capacity_mah, capacity_var, bu_z):
    """Capacity is a "consider" parameter: its error makes the counted SOC drift in one
    direction, so the variance grows with the square of the charge counted since the
    half-cycle began, not linearly (white noise would hide a 2 % capacity error)."""
    counted = np.abs(seg_mah / capacity_mah)
    step_z = np.abs(bu_z)
    return capacity_var / capacity_mah**2 * ((counted + step_z) ** 2 - counted**2)


def _propagate(pr: _Prepared, x: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x' = F x + Bu and P' = F P F^T + Q, using that F is the identity but for 4 entries."""
    x = x.copy()
    x[:, _IV1] = pr.a_1 * x[:, _IV1] + pr.b_1 * x[:, _IR1]
    x[:, _IH] *= pr.a_h
    x[:, _ID] *= pr.a_d
    x += pr.Bu
    P = P.copy()
    for axis in (1, 2):
        idx = (slice(None),) * axis
        row = lambda j: P[idx + (j,)]  # noqa: E731  (row j when axis=1, column j when axis=2)
        P[idx + (_IV1,)] = pr.a_1[:, None] * row(_IV1) + pr.b_1[:, None] * row(_IR1)
        P[idx + (_IH,)] = pr.a_h[:, None] * row(_IH)
        P[idx + (_ID,)] = pr.a_d[:, None] * row(_ID)
    P[:, _DIAG, _DIAG] += pr.q_diag
    return x, P


def _measurement(tr: Tracker, x: np.ndarray, pr: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Predicted voltage and the Jacobian row H at state x."""
    v_hat, dv_dz, dv_dh, dv_dr0 = terminal_voltage(
        x[:, _IZ], x[:, _IH], x[:, _IV1], x[:, _ID], pr.i, x[:, _IR0], pr.g, _c(tr, "ni_share"), _c(tr, "ocv_shift_v"),
        tr.ocv_table,
    )
    H = np.zeros((len(tr), N_X))
    H[:, _IZ] = dv_dz
    H[:, _IH] = dv_dh
    H[:, _IV1] = 1.0
    H[:, _ID] = dv_dz
    H[:, _IR0] = dv_dr0
    H[:, _IE] = 1.0
    return v_hat + x[:, _IE], H


def step(tr: Tracker, t, v, i, temp_c=130.0, present=True) -> StepOutput:
    """One sample per cell, batched over cells with numpy. Cells with `present` False
    (no sample this tick) are left untouched."""
    t, v, i, temp_c = _validate(tr, t, v, i, temp_c)
    pr = _prepare(tr, t, v, i, temp_c, np.broadcast_to(np.asarray(present, dtype=bool), t.shape))
    _start(tr, pr, v)
    x, P = _propagate(pr, tr.x, tr.P)
    v_hat, H = _measurement(tr, x, pr)
    y = v - v_hat
    switching = _switch(tr, pr, x, P, y)
    PHt = np.einsum("nij,nj->ni", P, H)
    S = np.einsum("ni,ni->n", H, PHt) + _V_STD**2
    use = _gate(tr, pr, y, S, switching)
    K = PHt / S[:, None]
    x = np.where(use[:, None], x + K * np.where(use, y, 0.0)[:, None], x)
    P = np.where(use[:, None, None], P - np.einsum("ni,nj->nij", PHt, K), P)
    use = _knee_update(tr, pr, v, x, P, use)
    return _commit(tr, pr, t, v, x, P, y, use)


def step_filterpy(tr: Tracker, t, v, i, temp_c=130.0, present=True) -> StepOutput:
    """The same step through filterpy's `predict` and `update`, one cell at a time."""
    # Imported here: filterpy loads scipy.stats (about a second), which no run needs.
    from filterpy.kalman import predict as kf_predict
    from filterpy.kalman import update as kf_update

    t, v, i, temp_c = _validate(tr, t, v, i, temp_c)
    pr = _prepare(tr, t, v, i, temp_c, np.broadcast_to(np.asarray(present, dtype=bool), t.shape))
    _start(tr, pr, v)
    F = pr.F()
    Q = np.einsum("ni,ij->nij", pr.q_diag, np.eye(N_X))
    n = len(tr)
    x, P = np.empty((n, N_X)), np.empty((n, N_X, N_X))
    for k in range(n):
        x[k], P[k] = kf_predict(tr.x[k], tr.P[k], F[k], Q[k], u=1.0, B=pr.Bu[k])
    v_hat, H = _measurement(tr, x, pr)
    y = v - v_hat
    switching = _switch(tr, pr, x, P, y)
    S = np.einsum("ni,nij,nj->n", H, P, H) + _V_STD**2
    use = _gate(tr, pr, y, S, switching)
    R = np.array([[_V_STD**2]])
    for k in np.flatnonzero(use):
        # EKF through the linear update: z_eff makes filterpy's residual v - h(x).
        z_eff = v[k] - v_hat[k] + H[k] @ x[k]
        x[k], P[k] = kf_update(x[k], P[k], z_eff, R, H[k : k + 1])
    use = _knee_update(tr, pr, v, x, P, use)
    return _commit(tr, pr, t, v, x, P, y, use)


def finish(tr: Tracker) -> list[HalfCycle]:
    """Close every half-cycle still open: at the end of a finite stream (a replay, an
    embedded run) the last half has no reversal to end it. One that did not get to its
    cut-off (its last active voltage short of it by more than `END_TOLERANCE` of the window)
    nor into a voltage hold nor onto the knee before it is marked partial: the data stopped
    in it."""
    open_ = np.flatnonzero((tr.seg_sign != 0) & (tr.seg_active_s > 0))
    complete = _at_limit(tr, open_) | (tr.seg_tail_n[open_] >= _CV_SAMPLES) | _on_end_knee(tr, open_)
    halves = [replace(_close_half(tr, k, float(tr.t_last[k]), tr.x[k], tr.P[k, _IZ, _IZ]), partial=not done)
              for k, done in zip(open_, complete)]
    tr.seg_sign[open_] = 0.0
    return halves


def _gate(tr: Tracker, pr: _Prepared, y: np.ndarray, S: np.ndarray, switching: np.ndarray) -> np.ndarray:
    """Use the voltage unless it is out of window or an outlier: beyond the gate of the
    filter's own uncertainty, or further than any twin that describes the cell could be.
    Consecutive outliers under current mean the filter, not the data, is wrong: `_commit`
    recovers. At rest they do not: the SOC cannot move there, and a cell relaxing for hours
    after a deep half (slow diffusion the reduced model only approximates) is not lost.
    Nor do they in the first `_TRANSIENT` of a learned cell's half: a curve learned at
    one rate, a branch switch at a default rate and polarisation building up describe a
    real cell's first minutes after a reversal only roughly (a volt at a steep end, 1.5C).
    While its branch switch is under way (`switching`, from `_switch`), that distance is how
    far the switch has got, for the filter's own uncertainty to judge, not the 0.1 V limit."""
    nis = y * y / S
    learned = ~np.isnan(tr.ocv_table[:, 0, 0])
    far = np.abs(y) > _MAX_RESIDUAL_V
    outlier = pr.use_v & ((nis > _GATE_NIS) | (far & ~switching))
    pr.flags |= np.where(outlier, FLAG_OUTLIER, np.where(pr.use_v & far, FLAG_SWITCH, 0))
    resting = np.abs(pr.i) <= _ACTIVE_FLOOR_C * _c(tr, "one_c_ma") / 1000.0
    transient = learned & (np.abs(tr.seg_mah) < _TRANSIENT * tr.capacity_mah)
    tr.rejected = np.where(outlier & ~resting & ~transient, tr.rejected + 1,
                           np.where(pr.use_v & ~outlier, 0.0, tr.rejected))
    use = pr.use_v & ~outlier
    tr.nis = np.where(use, 0.99 * tr.nis + 0.01 * np.minimum(nis, _GATE_NIS), tr.nis)
    return use


def _switch(tr: Tracker, pr: _Prepared, x: np.ndarray, P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Learned cells whose branch switch is under way and ahead of the twin: under current,
    their hysteresis state still far from the branch the current heads for, and the voltage
    beyond the prediction on that side. How fast a cell swaps branches after a reversal is
    a default (`hysteresis_rate`), not learned: at a steep end the real switch can be over
    in seconds where the default takes 3 % of SOC, a volt apart at 1.5C. So there the branch
    state gains `_SWITCH_VAR` (in P, in place) and the voltage says how far the switch has
    got. Only that way: a voltage on the other side is no switch, and a free branch state
    would fit it instead of the SOC (an HPPC's 0.9C discharges, 40 mV above a curve learned
    at C/23, were read on the charge branch)."""
    learned = ~np.isnan(tr.ocv_table[:, 0, 0])
    active = np.abs(pr.i) > _ACTIVE_FLOOR_C * _c(tr, "one_c_ma") / 1000.0
    switching = learned & active & (np.abs(np.sign(pr.i) - x[:, _IH]) > _SWITCHING) & (np.sign(y) == np.sign(pr.i))
    P[:, _IH, _IH] += np.where(switching, _SWITCH_VAR, 0.0)
    return switching


def _knee_update(tr: Tracker, pr: _Prepared, v, x, P, use) -> np.ndarray:
    """Read the surface SOC off a knee that the EKF gated; returns the new `use` mask.

    At the end of a half the voltage runs up (down) a knee within two or three samples
    while the filter's state is still on the plateau, where the linearised model calls it
    an outlier; rejected, the one reading that pins the SOC is lost, and with it the
    capacity. So for a gated sample whose voltage, inverted through the OCV, lands on a
    steep part of the curve (a few mV there fix the SOC to a fraction of a percent) not
    too far from the filter's belief (a spike on the plateau implies an impossible jump),
    the inverted surface SOC (z + d) is used as a linear measurement instead. Updates x,
    P in place.
    """
    rows = np.flatnonzero((pr.flags & FLAG_OUTLIER).astype(bool) & pr.use_v)
    if rows.size == 0:
        return use
    c = tr.consts[rows]
    h = np.clip(x[rows, _IH], -1.0, 1.0)
    e = v[rows] - pr.i[rows] * x[rows, _IR0] * pr.g[rows] - x[rows, _IV1] - x[rows, _IE] - c[:, _C["ocv_shift_v"]]
    surface, slope = _surface_and_slope(tr, rows, e, h)
    Hs = np.zeros((rows.size, N_X))
    Hs[:, _IZ] = Hs[:, _ID] = 1.0
    PHt = np.einsum("nij,nj->ni", P[rows], Hs)
    prior_var = np.einsum("ni,ni->n", Hs, PHt)
    jump = surface - x[rows, _IZ] - x[rows, _ID]
    # Only the knee the current is driving into: a step between plateaus mid-half, or a
    # spike, is not the end of the curve.
    span = c[:, _C["v_max"]] - c[:, _C["v_min"]]
    toward_end = np.where(pr.i[rows] < 0, v[rows] < c[:, _C["v_min"]] + _KNEE_BAND * span,
                          (pr.i[rows] > 0) & (v[rows] > c[:, _C["v_max"]] - _KNEE_BAND * span))
    knee = toward_end & (slope >= _KNEE_SLOPE_V) & (np.abs(jump) <= 5.0 * np.sqrt(prior_var) + 0.05)
    if not knee.any():
        return use
    rows, PHt, jump = rows[knee], PHt[knee], jump[knee]
    S = prior_var[knee] + (_V_STD / slope[knee]) ** 2 + _KNEE_SOC_SD**2
    K = PHt / S[:, None]
    x[rows] += K * jump[:, None]
    P[rows] -= np.einsum("ni,nj->nij", PHt, K)
    pr.flags[rows] = (pr.flags[rows] & ~FLAG_OUTLIER) | FLAG_KNEE
    tr.rejected[rows] = 0.0
    use = use.copy()
    use[rows] = True
    return use


def _commit(tr: Tracker, pr: _Prepared, t, v, x, P, y, use) -> StepOutput:
    """Recover cells the filter has lost, keep the new state where the sample was usable,
    flag what has not converged; then the cycle bookkeeping."""
    ok = pr.ok
    x[:, _IZ : _ID + 1] = np.clip(x[:, _IZ : _ID + 1], _FAST_LOW, _FAST_HIGH)
    # The surface SOC cannot leave 0..1 either: past a knee the OCV is flat (clipped), and
    # an update that pushed it there would keep pushing.
    x[:, _IZ] = np.clip(x[:, _IZ], -x[:, _ID], 1.0 - x[:, _ID])
    x[:, _IR0 : _IR1 + 1] = np.maximum(x[:, _IR0 : _IR1 + 1], 1e-6)
    with np.errstate(invalid="ignore"):
        lost = ok & (~np.isfinite(x).all(axis=1) | ~np.isfinite(P).all(axis=(1, 2)) | (P[:, _DIAG, _DIAG] < 0).any(axis=1)
                     | (tr.rejected >= _MAX_REJECTED) | (tr.nis > _LOST_NIS))
    if lost.any():
        rows = np.flatnonzero(lost)
        _restart(tr, rows, v, pr.i, pr.g, x, P)
        pr.flags |= np.where(lost, FLAG_RECOVERED, 0)
        tr.rejected[rows], tr.nis[rows], tr.settled[rows] = 0.0, 1.0, 0.0
        # A lost filter may have had the capacity wrong: its SOC band must say so.
        tr.capacity_var[rows] = np.maximum(tr.capacity_var[rows], (_LOST_CAPACITY_SD * tr.capacity_mah[rows]) ** 2)
    tr.settled = np.where(use & ~lost, tr.settled + 1.0, tr.settled)
    tr.x = np.where(ok[:, None], x, tr.x)
    tr.P = np.where(ok[:, None, None], 0.5 * (P + np.swapaxes(P, 1, 2)), tr.P)
    converged = (tr.settled >= _SETTLE_SAMPLES) & (tr.P[:, _IZ, _IZ] <= _CONVERGED_SOC_STD**2)
    pr.flags |= np.where(ok & ~converged, FLAG_UNCONVERGED, 0)
    tr.t_last = np.where(ok, t, tr.t_last)
    tr.irr_left_mah = np.where(ok, np.maximum(tr.irr_left_mah + pr.i * pr.sink * pr.dt / 3.6, 0.0), tr.irr_left_mah)
    halves = _bookkeeping(tr, pr.ok, pr.i, pr.dt, pr.Bu, t, v)
    return _outputs(tr, np.where(pr.use_v, y, np.nan), pr.flags, halves)


def _outputs(tr: Tracker, v_residual: np.ndarray, flags: np.ndarray, halves: list[HalfCycle]) -> StepOutput:
    """What a step reports, read off the tracker after it."""
    return StepOutput(
        soc=tr.x[:, _IZ].copy(),
        soc_std=np.sqrt(tr.P[:, _IZ, _IZ]),
        capacity_mah=tr.capacity_mah.copy(),
        r0_ohm=tr.x[:, _IR0].copy(),
        r1_ohm=tr.x[:, _IR1].copy(),
        hysteresis=tr.x[:, _IH].copy(),
        v_residual=v_residual,
        nis=tr.nis.copy(),
        flags=flags,
        capacity_std_mah=np.sqrt(tr.capacity_var),
        r0_std_ohm=np.sqrt(tr.P[:, _IR0, _IR0]),
        r1_std_ohm=np.sqrt(tr.P[:, _IR1, _IR1]),
        first_capacity_mah=tr.first_capacity_mah.copy(),
        r_base=tr.r_base.copy(),
        halves=halves,
    )


def _bookkeeping(tr: Tracker, ok: np.ndarray, i: np.ndarray, dt: np.ndarray, Bu: np.ndarray, t: np.ndarray,
                 v: np.ndarray) -> list[HalfCycle]:
    """Coulomb counting per half-cycle; close a half when the current reverses. After the
    filter's step: `ok`, `i` (0 where not ok), `dt` and `Bu` as `_prepare` made them.

    Where it ended, and the next one starts: for a learned curve, the state after the
    half's last active sample. Not the reversing sample: its voltage already carries the
    step to the other branch, which the filter, following the table's hysteresis, first
    reads partly as SOC. Nor the end of a rest before it: the voltage relaxing after a
    cut-off is no open circuit yet, and a curve learned under load does not know how far
    it relaxes (a real half-cell's SOC rose 0.04 -> 0.10 over a 900 s rest after its 0.2C
    discharge to 0.05 V, and its capacity, the count over that swing, came out 18 % high).
    For the hydride, the state after the reversing sample: the cycler logs the cut-off
    knee on that sample, and the model's own hysteresis and lag make the branch step and
    the relaxation."""
    learned = ~np.isnan(tr.ocv_table[:, 0, 0])[:, None]
    ended = np.column_stack([tr.seg_z_end, tr.seg_d_end, tr.seg_var_end])
    one_c_a = _c(tr, "one_c_ma") / 1000.0
    # Active relative to the cell's own recent current, so a C/100 test is not "rest".
    decay = np.exp(-dt / _SCALE_MEMORY_S)
    tr.i_scale = np.where(ok, np.maximum(np.abs(i), tr.i_scale * decay), tr.i_scale)
    threshold = np.maximum(np.minimum(_ACTIVE_C, _ACTIVE_SCALE * tr.i_scale / one_c_a), _ACTIVE_FLOOR_C) * one_c_a
    sign = np.where(np.abs(i) > threshold, np.sign(i), 0.0)
    # Trapezoid rule, the interval split where the current crosses zero: a reversal between
    # two samples gives each half its own part, and a step logged late is not over-counted.
    # Over a gap the current is unknown (a paused test passes none): not counted, as the
    # validation's count of the file leaves it.
    counted = np.where(dt > gap_limit(tr.log_pace), 0.0, dt)
    tr.seg_mah = tr.seg_mah + np.where(ok, _forward_mah(tr.seg_sign, tr.i_last, i, counted), 0.0)
    closing = ok & (sign != 0) & (tr.seg_sign != 0) & (sign != tr.seg_sign)
    _pin_end(tr, np.flatnonzero(closing & learned[:, 0]), ended)
    end = np.where(learned, ended, np.column_stack([tr.x[:, _IZ], tr.x[:, _ID], tr.P[:, _IZ, _IZ]]))
    halves = [_close_half(tr, k, float(t[k]), *_ended(end[k]), float(dt[k])) for k in np.flatnonzero(closing)]
    starting = ok & (sign != 0) & (closing | (tr.seg_sign == 0))
    tr.seg_sign = np.where(starting, sign, tr.seg_sign)
    tr.seg_mah = np.where(starting, _forward_mah(sign, tr.i_last, i, counted), tr.seg_mah)
    tr.seg_active_s = np.where(starting, 0.0, tr.seg_active_s)
    # (After the closing: its time update rescales the SOC to the smaller capacity.)
    after = np.column_stack([tr.x[:, _IZ] - Bu[:, _IZ], tr.x[:, _ID] - Bu[:, _ID], tr.P[:, _IZ, _IZ]])
    start = np.where(learned, ended, after)
    tr.seg_soc0 = np.where(starting, start[:, 0], tr.seg_soc0)
    tr.seg_d0 = np.where(starting, start[:, 1], tr.seg_d0)
    tr.seg_soc_var0 = np.where(starting, start[:, 2], tr.seg_soc_var0)
    tr.seg_active_s = tr.seg_active_s + np.where(ok & (tr.seg_sign != 0) & (sign != 0), counted, 0.0)
    same = ok & (sign != 0) & (sign == tr.seg_sign)
    low = (tr.seg_active_s > 0) & (np.abs(i) * tr.seg_active_s < _CV_TAIL * tr.seg_mah * 3.6)
    tail = np.where(starting, 0.0, tr.seg_tail_n)
    tr.seg_tail_n = np.where(same, np.where(low, tail + 1.0, 0.0), tail)
    tr.seg_i_end = np.where(same, np.abs(i), tr.seg_i_end)
    tr.seg_v_end = np.where(same & np.isfinite(v), v, np.where(starting, np.nan, tr.seg_v_end))
    _mark_end(tr, np.flatnonzero(ok & (sign == tr.seg_sign)))  # the half goes on, or none has begun
    tr.seg_pinned = np.where(starting, 0.0, tr.seg_pinned)
    tr.i_last = np.where(ok, i, tr.i_last)
    tr.log_pace = _paced(tr.log_pace, dt, ok)
    # A hold at the cut-off that has just ended in a rest: the SOC is at the end of the
    # curve now, not only when the next half starts (the rest's relaxing voltage is no
    # open circuit either, and mid-rest the filter's SOC would still be the hold's count).
    rested = np.flatnonzero(ok & learned[:, 0] & (sign == 0) & (tr.seg_sign != 0) & (tr.seg_pinned == 0))
    if rested.size:
        rows = _held_at_limit(tr, rested)
        _pin(tr, rows, None)
        _mark_end(tr, rows)  # the hold's end is where the pin put it
        tr.seg_pinned[rows] = 1.0
    return halves


def _mark_end(tr: Tracker, rows: np.ndarray) -> None:
    """The state of `rows` now is where their half in progress ends, unless it goes on."""
    tr.seg_z_end[rows], tr.seg_d_end[rows], tr.seg_var_end[rows] = tr.x[rows, _IZ], tr.x[rows, _ID], tr.P[rows, _IZ, _IZ]


def _pin_end(tr: Tracker, rows: np.ndarray, ended: np.ndarray) -> None:
    """A learned cell's half that ended on a voltage hold at its cut-off ended at the end
    of its curve: the curve's SOC grid is the charge of a half held there, so SOC 0 (1) is
    where such a hold ends, whatever the offset. On a sloped end (NMC at the top: 1 % of
    SOC is 4 mV) the voltage alone cannot tell the SOC from an offset that drifted as the
    cell aged, and a swing short by that 1 % makes the capacity 1 % high. So the surface
    SOC (z + d) is measured there as 0 (1), less the tail current's resistive drop
    (`_cut_off_soc`), with the knee reading's spread plus the diffusion lag I tau_D / 3Q
    that the tail current I still leaves. Updates tr.x, tr.P
    and the `ended` rows (z, d, SOC variance) in place. (A hold that ended in a rest was
    set there already, `_pin`; its rest kept it.)

    A half that got to its cut-off on constant current is pinned there too, as loosely as
    its whole current's lag says: the curve's end is where its own half reached the
    cut-off, and a curve that drifted since (a real half-cell's early cycles, read as 2-4 %
    of charge left at the cut-off, 1.5-6 % on the capacity) cannot tell that from SOC."""
    _pin(tr, rows[_at_limit(tr, rows)], ended)


def _at_limit(tr: Tracker, rows: np.ndarray) -> np.ndarray:
    """Which of `rows` had their half in progress end at its cut-off (the last active voltage)."""
    v_min, v_max = _c(tr, "v_min")[rows], _c(tr, "v_max")[rows]
    band = END_TOLERANCE * (v_max - v_min)
    return np.where(tr.seg_sign[rows] < 0, tr.seg_v_end[rows] <= v_min + band, tr.seg_v_end[rows] >= v_max - band)


def _on_end_knee(tr: Tracker, rows: np.ndarray) -> np.ndarray:
    """Which of `rows` had the last active voltage of their half in progress on the knee it
    was driving into: read through the OCV (less the resistive drop), a steep part of the
    curve within `_END_KNEE_SOC` of the end the current heads for. The cut-off was a sample
    or two on, the sample that crossed it lost (a dropped last sample; 30 s logging over a
    knee run up in 20 s)."""
    c = tr.consts[rows]
    sign = tr.seg_sign[rows]
    h = np.clip(tr.x[rows, _IH], -1.0, 1.0)
    drop = sign * tr.seg_i_end[rows] * (tr.x[rows, _IR0] + tr.x[rows, _IR1])
    e = tr.seg_v_end[rows] - drop - tr.x[rows, _IE] - c[:, _C["ocv_shift_v"]]
    with np.errstate(invalid="ignore"):
        surface, slope = _surface_and_slope(tr, rows, e, h)
    near = np.where(sign < 0, surface <= _END_KNEE_SOC, surface >= 1.0 - _END_KNEE_SOC)
    return near & (slope >= _KNEE_SLOPE_V)


def _surface_and_slope(tr: Tracker, rows: np.ndarray, e: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The surface SOC (z + d) at which `rows`' curves on branch h give the open-circuit
    voltage e, and the curve's slope there (V per unit SOC: a knee when steep)."""
    ni, table = tr.consts[rows, _C["ni_share"]], tr.ocv_table[rows]
    surface = ocv_inverse(e, h, ni, table)
    return surface, terminal_voltage(surface, h, 0.0, 0.0, 0.0, 1.0, 1.0, ni, 0.0, table)[1]


def _held_at_limit(tr: Tracker, rows: np.ndarray) -> np.ndarray:
    """Those of `rows` whose half in progress ended on a voltage hold at its cut-off."""
    return rows[_at_limit(tr, rows) & (tr.seg_tail_n[rows] >= _CV_SAMPLES)]


def _cut_off_soc(tr: Tracker, k: int) -> float:
    """The surface SOC at which cell k's half in progress met its cut-off: where its branch
    of the curve, less (for a charge, plus) the resistive drop of the half's last current,
    is the cut-off voltage. The curve's end (0 or 1) for the current it was learned at or a
    hold's tail; short of it at a faster rate (a 1C charge stops 4 % short of a top that
    rises 1 V over the SOC, through 2 ohm), which the end itself would read as capacity."""
    discharge = tr.seg_sign[k] < 0
    drop = tr.seg_i_end[k] * (tr.x[k, _IR0] + tr.x[k, _IR1])
    v_cut = tr.consts[k, _C["v_min"]] + drop if discharge else tr.consts[k, _C["v_max"]] - drop
    return float(ocv_inverse(v_cut, -1.0 if discharge else 1.0, 0.0, tr.ocv_table[k : k + 1])[0])


def _pin(tr: Tracker, rows: np.ndarray, ended: np.ndarray | None) -> None:
    """Measure the surface SOC (z + d) of `rows` as where their half met its cut-off
    (`_cut_off_soc`; see `_pin_end`). With `ended` (N, 3: z, d, SOC variance where the half ended; its
    rows updated too), the state has moved on since then: the reversing sample (after the
    rest a hold may have ended in, where the voltage is not used)."""
    for k in rows:
        target = _cut_off_soc(tr, k)
        lag = tr.seg_i_end[k] * tr.consts[k, _C["tau_diff_s"]] / (3.0 * tr.capacity_mah[k] * 3.6)
        var = _KNEE_SOC_SD**2 + lag**2
        if ended is None:
            # Where the hold has just ended the SOC is the end of the curve, whatever the
            # count over the half says: on a flat curve the filter's own variance is too
            # small (a CC charge read as 89 % full by a small cell's curve, its 540 s hold
            # adding 4 %, where the hold ends full). The SOC is set there, with the pin's
            # own spread, and loses its correlation with the other states.
            tr.x[k, _IZ] = target - tr.x[k, _ID]
            tr.P[k, _IZ, :] = 0.0
            tr.P[k, :, _IZ] = 0.0
            tr.P[k, _IZ, _IZ] = var
            continue
        # The reversing sample has moved the state a little past the end: measure it there.
        step = tr.x[k, _IZ] + tr.x[k, _ID] - ended[k, 0] - ended[k, 1]
        PHt = tr.P[k, :, _IZ] + tr.P[k, :, _ID]
        S = PHt[_IZ] + PHt[_ID] + var
        tr.x[k] += PHt / S * (target + step - tr.x[k, _IZ] - tr.x[k, _ID])
        tr.P[k] -= np.outer(PHt, PHt) / S
        ended[k, 0] += (target - ended[k, 0] - ended[k, 1]) * ended[k, 2] / (ended[k, 2] + var)
        ended[k, 2] = ended[k, 2] * var / (ended[k, 2] + var)


def _forward_mah(sign: np.ndarray, i0: np.ndarray, i1: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """mAh passed in direction `sign` while the current goes linearly from i0 to i1 over dt s."""
    a, b = sign * i0, sign * i1
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # Positive part of a linear ramp: the whole trapezoid, or the triangle above zero.
    mean = np.where(lo >= 0, 0.5 * (a + b), np.where(hi > 0, 0.5 * hi * hi / np.maximum(hi - lo, 1e-300), 0.0))
    return mean * dt / 3.6


def _ended(row: np.ndarray) -> tuple[np.ndarray, float]:
    """(state with the half's end SOC and lag, its SOC variance) from a (z, d, var) row."""
    x = np.zeros(N_X)
    x[_IZ], x[_ID] = row[0], row[1]
    return x, float(row[2])


def _close_half(tr: Tracker, k: int, t: float, end: np.ndarray, end_var: float, step_s: float = 0.0) -> HalfCycle:
    """Close cell k's half at time t; `end` holds the SOC and lag it ended with, `end_var`
    the SOC's variance then, `step_s` the interval of the sample that closed it."""
    c = {name: tr.consts[k, j] for j, name in enumerate(_CONSTS)}
    discharge = tr.seg_sign[k] < 0
    mah = float(tr.seg_mah[k])
    swing = abs(float(end[_IZ] - tr.seg_soc0[k]))
    fresh_sink = discharge and tr.cycle[k] == 0 and c["first_irreversible_mah_g"] > 0
    # Deep by the filter's SOC and by the charge: a swing the voltage made (a knee read at
    # 2C, where the half moves a few % of the charge) measures nothing.
    deep = swing > _DEEP_HALF and mah > _DEEP_HALF * tr.capacity_mah[k]
    # The swing is end minus start SOC: a recovery inside the half only matters through the
    # end's variance, which weighs the measurement.
    measures = deep and not fresh_sink
    # A learned curve pins the SOC only at its ends, the cycler's cut-offs: mid-window a
    # rested voltage read through a curve learned under load (its hysteresis as learned, or
    # none) can be tens of % off (a real file's first rest read as SOC 0.50, where the charge
    # after it says 0.05) while the filter's variance says 0.2 %. So only a half run between
    # the window ends measures a learned cell's capacity.
    learned = not np.isnan(tr.ocv_table[k, 0, 0])
    reached = _reached_limit(tr, k)
    full = bool(tr.seg_from_end[k]) and reached
    measures = measures and (not learned or full)
    tr.seg_from_end[k] = float(reached)
    if learned:
        _balance(tr, k, discharge, full, mah)
    c_rate = mah * 3.6 / max(tr.seg_active_s[k], 1e-9) / (c["one_c_ma"] / 1000.0)
    # What the twin predicted this half would deliver, before the half's own count corrects it.
    expected = _at_rate_mah(tr, k, c, c_rate, discharge)
    if measures:
        _update_capacity(tr, k, mah, swing, end, end_var,
                         capacity=discharge or not learned or bool(tr.charges_balanced[k]),
                         at_rate=functools.partial(_at_rate_mah, tr, k, c, c_rate, discharge), expected=expected,
                         step_mah=mah * step_s / max(float(tr.seg_active_s[k]), step_s, 1e-9))
    p1 = {name: np.array([v]) for name, v in c.items()}
    age = deg.Ageing(tr.cycle[k : k + 1], tr.psi[k : k + 1], tr.crack[k : k + 1], tr.irr_left_mah[k : k + 1])
    new = deg.age_half_cycle(p1, age, np.array([discharge]), np.array([min(swing, 1.0)]), np.array([c_rate]))
    d_psi, d_crack = float(new.psi[0] - tr.psi[k]), float(new.crack[0] - tr.crack[k])
    # Time update of the capacity: the degradation model's own loss for this half. The lost
    # material is lithiated (segregated Mg + LiH, cut-off grains), so the charge the rest
    # holds is unchanged: the SOC, a share of a smaller capacity, rises.
    keep = (1.0 - d_psi) * (1.0 - d_crack)
    tr.capacity_mah[k] *= keep
    tr.x[k, _IZ] = min(tr.x[k, _IZ] / keep, _FAST_HIGH[0])
    tr.P[k, _IZ, :] /= keep
    tr.P[k, :, _IZ] /= keep
    tr.capacity_var[k] = tr.capacity_var[k] * keep**2 + ((d_psi + d_crack) * tr.capacity_mah[k]) ** 2
    # ... and of the resistances: activation fades, contact loss raises them.
    for j, before, after in zip((_IR0, _IR1), deg.resistances(p1, age), deg.resistances(p1, new)):
        ratio = float(after[0] / before[0])
        tr.x[k, j] *= ratio
        tr.P[k, j, :] *= ratio
        tr.P[k, :, j] *= ratio
    # The twin's capacity at this half's rate as the half left the cell, before a lithiation
    # moves its activation on to the next cycle's: the count it is compared with is this one's.
    at_rate_now = _at_rate_mah(tr, k, c, c_rate, discharge)
    tr.cycle[k] += discharge
    tr.psi[k] += d_psi
    tr.crack[k] += d_crack
    if discharge:
        tr.last_discharge_mah[k] = mah
        ce = float("nan")
        tr.irr_left_mah[k] = 0.0
    else:
        ce = mah / tr.last_discharge_mah[k] if tr.last_discharge_mah[k] > 0 else float("nan")
        _cycle_complete(tr, k)
    r = tr.x[k, _IR0] + tr.x[k, _IR1]
    growth = r / tr.r_base[k] - 1.0 if np.isfinite(tr.r_base[k]) else 0.0
    measured_retention, retention = _retention(tr, k, discharge, c_rate, mah, at_rate_now, deep, measures)
    psi_risk, crack_risk = _risks(tr, k, growth, c)
    eol = forecast.end_of_life(tr.cycle[k], tr.psi[k], tr.crack[k], c["ps_saturation"], tr.capacity_mah[k],
                               tr.capacity_var[k], tr.first_capacity_mah[k], RETENTION_FLOOR)
    grams = c["mass_mg"] / 1000.0
    return HalfCycle(
        cell=k,
        t=t,
        cycle=int(tr.cycle[k]),
        half="discharge" if discharge else "charge",
        capacity_mah=mah,
        capacity_mah_g=mah / grams,
        expected_mah_g=expected / grams,
        coulombic_efficiency=ce,
        measured_retention=float(measured_retention),
        retention=float(retention),
        twin_capacity_mah=float(tr.capacity_mah[k]),
        twin_capacity_std_mah=float(np.sqrt(tr.capacity_var[k])),
        impedance_growth=float(growth),
        crack_risk=crack_risk,
        phase_sep_risk=psi_risk,
        fade_per_cycle=float(tr.fade_per_cycle[k]),
        c_rate=float(c_rate),
        nis=float(tr.nis[k]),
        r0_ohm=float(tr.x[k, _IR0]),
        rct_ohm=float(tr.x[k, _IR1]),
        eol_cycles=eol.cycles,
        eol_low=eol.low,
        eol_high=eol.high,
    )


def _balance(tr: Tracker, k: int, discharge: bool, full: bool, mah: float) -> None:
    """Whether a learned cell's charges measure its capacity. Its capacity is what it delivers
    on discharge (the lab's definition, and the learner's); a charge's count also holds what
    side reactions took (electrolyte oxidation, shuttles, SEI growth: 8 % of every charge at
    C/24 in a real GCPL file), which no voltage tells from stored charge. So a charge's count
    measures the capacity only once the cell has shown that its charges hold none of that: its
    latest full charge after a full discharge counted no more than that discharge delivered
    (within the learner's balance tolerance). Until then a charge measures the diffusion time
    alone."""
    if discharge:
        tr.full_discharge_mah[k] = mah if full else np.nan
    elif full and tr.full_discharge_mah[k] > 0:
        tr.charges_balanced[k] = float(mah <= (1.0 + BALANCE_TOLERANCE) * tr.full_discharge_mah[k])


def _reached_limit(tr: Tracker, k: int) -> bool:
    """Cell k's half in progress got to its cut-off: its last active voltage within
    `END_TOLERANCE` of the window there, or it ended on a voltage hold."""
    return bool(_at_limit(tr, np.array([k]))[0] or tr.seg_tail_n[k] >= _CV_SAMPLES)


def _at_rate_mah(tr: Tracker, k: int, c: dict, c_rate: float, discharge: bool, q_scale: float = 1.0,
                 r: float = 1.0) -> float:
    """The charge the twin says a constant-current half at `c_rate` delivers from where this
    half started (and a constant-voltage hold after it, if this half ended on one): the
    model's own answer, with the state at the start of the half and the parameters as now
    estimated. The cut-off comes when the surface SOC (bulk plus the
    diffusion lag, which relaxes from its start value towards I tau_D / 3Q) meets the OCV
    at the cut-off voltage less the resistive drop. The rate matters: activation,
    resistance growth and loss of material show at 1C long before they show at C/10.
    `q_scale` and `r` scale the capacity and the diffusion time (the lag at the start
    re-split as `_update_capacity` re-splits it): the answer's sensitivity to either."""
    sign = -1.0 if discharge else 1.0
    # Python floats: the bisection below runs 40 times per call, twice per closed half.
    q_mah = float(tr.capacity_mah[k]) * q_scale
    q_as = q_mah * 3.6
    i = float(sign * c_rate * c["one_c_ma"] / 1000.0)
    act = deg.activation(c["activation_factor"], c["activation_cycles"], tr.cycle[k])
    tau = float(c["tau_diff_s"] * tr.tau_scale[k] * r * deg.tau_multiplier(act))
    lag_ss, lag0 = i * tau / (3.0 * q_as), float(tr.seg_d0[k]) * r
    z0 = float(tr.seg_soc0[k] + (1.0 - r) * tr.seg_d0[k])

    def surface_at_cut(amps: float) -> float:
        cut = (c["v_min"] if discharge else c["v_max"]) - amps * (tr.x[k, _IR0] + tr.x[k, _IR1]) - tr.x[k, _IE]
        return ocv_inverse(np.array([cut - c["ocv_shift_v"]]), np.array([sign]), np.array([c["ni_share"]]),
                           tr.ocv_table[k : k + 1])[0]

    i_end = sign * tr.seg_i_end[k]
    if tr.seg_tail_n[k] >= _CV_SAMPLES:
        # A hold at the limit until the current fell to i_end: the half ends where the OCV
        # at the limit less the tail's drop meets the surface, the bulk a tail's lag behind.
        z_end = np.clip(surface_at_cut(i_end) - i_end * tau / (3.0 * q_as), 0.0, 1.0)
        return q_mah * max(sign * (z_end - z0), 0.0)
    surface_cut = float(surface_at_cut(i))

    def short_of_cut(t: float) -> float:  # > 0 while the surface has not reached it
        surface = z0 + i * t / q_as + lag_ss + (lag0 - lag_ss) * math.exp(-10.0 * t / tau)
        return sign * (surface_cut - surface)

    # The surface moves monotonically towards the cut-off: bisect the time it takes.
    lo, hi = 0.0, q_as / abs(i) * 1.5
    if short_of_cut(lo) <= 0:
        return 0.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if short_of_cut(mid) > 0 else (lo, mid)
    z_end = np.clip(z0 + i * lo / q_as, 0.0, 1.0)
    return q_mah * abs(z_end - z0)


def _retention(tr: Tracker, k: int, discharge: bool, c_rate: float, mah: float, at_rate_mah: float,
               deep: bool, reference: bool) -> tuple[float, float]:
    """(measured, twin) retention of a half against the cell's first reversible half of the
    same kind at the same C-rate (within 10 %): counted over counted, the twin's capacity at
    that rate over the same at the reference. A shallow half has neither; the first one
    that can be a reference becomes it (both 1)."""
    if not deep:
        return float("nan"), float("nan")
    kind = 0 if discharge else 1
    rates = tr.ref_rate[k, kind]
    same = np.flatnonzero(np.abs(rates - c_rate) <= 0.1 * c_rate)
    if same.size:
        j = same[0]
        return mah / tr.ref_counted_mah[k, kind, j], at_rate_mah / tr.ref_twin_mah[k, kind, j]
    free = np.flatnonzero(np.isnan(rates))
    if not (reference and free.size and at_rate_mah > 0):
        return float("nan"), float("nan")
    j = free[0]
    tr.ref_rate[k, kind, j], tr.ref_counted_mah[k, kind, j], tr.ref_twin_mah[k, kind, j] = c_rate, mah, at_rate_mah
    return 1.0, 1.0


def _update_capacity(tr: Tracker, k: int, mah: float, swing: float, end: np.ndarray, end_var: float,
                     capacity: bool = True, at_rate: Callable[..., float] | None = None,
                     expected: float | None = None, step_mah: float = 0.0) -> None:
    """Kalman update of capacity and diffusion time from the charge counted over the half
    (of the diffusion time alone, the capacity a "consider" parameter, if not `capacity`).

    The knees pin the surface SOC at both ends of a deep half; the bulk swing is that less
    the diffusion lag built up over the half, which scales with the cell's diffusion time:
    counted = Q (swing + lag (1 - r)), r the true over the filter's diffusion time. At 1C
    the lag is a quarter of the SOC range, so the 8 % cell-to-cell spread of tau_D alone
    moves the swing by several %. Held as independent noise each half, that error would
    average into a capacity several % off (and climbing while the cell fades): it is the
    same every half. So tau_D is estimated beside Q: a slow half (no lag) measures Q, a
    fast one mostly tau_D, whose prior is the wider. The lag is re-split accordingly (the
    surface stays where the knee put it) and the filter runs on the new tau_D.

    Where the lag weighs in the count (`_LAG_WEIGHS`), the count is read through `at_rate`
    (`_at_rate_mah` of this half; `expected` its answer before the update, if known): there
    the lag's charge, I tau_D / 3, does not scale with the capacity as the line above has
    it, and a first half at 1C can miss by a third of its charge, too far for one linear
    step. So the update is iterated (Gauss-Newton on the same prior) until the model's
    answer for this half meets the count; the twin's retention, read off the same model,
    then starts from its reference as the count does. Not only where the lag dominates: a
    first half after a recovery (capacity uncertain by 10 %) left to the line, with tau_D
    only "considered", kept a third of its miss in the model's answer, and the twin's
    retention ran 3-4 points off the count's for the rest of the test. Nor wherever it
    shows: at 0.5C a fast-fading MgH2 cell's loss then piles into tau_D (its capacity's
    mean error +2.4 % at `_LAG_WEIGHS` 0.7, +3.1 % at 0.3).

    The degradation model's loss is the prior, not a cage: an innovation beyond
    `_ADAPT_SIGMAS` of what prior and measurement allow widens the capacity prior to the
    innovation (covariance matching), so a cell that lost 15 % in one cycle is followed
    within that half. Chosen over a fade-rate state because conversion electrodes fade
    unevenly (activation, then segregation that saturates): a rate state lags every change
    of slope."""
    q, q_obs = tr.capacity_mah[k], mah / swing
    lag = tr.seg_sign[k] * (end[_ID] - tr.seg_d0[k])  # lag built up, in the half's direction
    h_q, h_r = swing, -q_obs * lag  # d counted / d Q, d counted / d r
    prior_var = tr.capacity_var[k] + _CAPACITY_WALK * q**2
    tau_var = tr.tau_var[k]  # a constant of the cell (its activation is modelled): no walk
    var_count = q_obs**2 * tr.seg_soc_var0[k] + (0.002 * mah) ** 2  # where it started; the count's own error
    var_obs = var_count + q_obs**2 * end_var
    innovation = mah - q * swing
    # tau_D is measured on a delithiation of an intact electrode, where it, not the fade,
    # dominates what the count may differ by. A lithiation segregates material as it goes
    # (the twin applies that loss at the half's end), so its count mixes loss into the lag;
    # in an electrode that has lost half its material, segregated Mg has changed the paths
    # the lag model assumes, and the fade model's error would pile up in tau_D as the lag's
    # did in the capacity. Elsewhere tau_D only weighs the count ("consider").
    intact = (1.0 - tr.psi[k]) * (1.0 - tr.crack[k]) > _INTACT_SHARE
    measures_tau = tr.seg_sign[k] > 0 and intact and h_r**2 * tau_var > _LAG_WEIGHS * h_q**2 * prior_var
    if measures_tau and at_rate is not None:
        h_q, h_r, innovation = _at_rate_terms(at_rate, q, mah, 1.0, 1.0, expected)
        # The model's half runs from cut-off to cut-off, the sampled one starts and ends
        # within a sample of them; and the model starts from the state the filter had at
        # the reversal (1-2 % off the count at 60 s sampling). The cut-off ends the model's
        # half, not the filter's SOC there: the end's variance does not enter.
        var_obs = var_count + 2.0 * step_mah**2 + (_AT_RATE_MODEL_SD * mah) ** 2
    explained = h_q**2 * prior_var + h_r**2 * tau_var
    if capacity and innovation**2 > _ADAPT_SIGMAS**2 * (explained + var_obs):
        if measures_tau:
            # Either unknown could have made the surprise: widen both alike, so that it is
            # split as the priors split it (a cell diffusing 20 % faster than its
            # composition says has not gained 10 % of capacity in its first cycle).
            widen = (innovation**2 - var_obs) / explained
            prior_var, tau_var = prior_var * widen, tau_var * widen
        else:
            prior_var = max(prior_var, (innovation**2 - h_r**2 * tau_var - var_obs) / h_q**2)

    def spread(h_q: float, h_r: float) -> float:  # what the count may differ from the model by
        return h_q**2 * prior_var + h_r**2 * tau_var + var_obs

    def gains(h_q: float, h_r: float) -> tuple[float, float]:
        s = spread(h_q, h_r)
        return (prior_var * h_q / s if capacity else 0.0), (tau_var * h_r / s if measures_tau else 0.0)

    k_q, k_r = gains(h_q, h_r)
    if measures_tau and at_rate is not None:
        for _ in range(_AT_RATE_ITERATIONS):
            dq, dr = k_q * innovation, k_r * innovation
            h_q, h_r, miss = _at_rate_terms(at_rate, q, mah, 1.0 + dq / q, 1.0 + dr)
            innovation = miss + h_q * dq + h_r * dr  # the count less the model linearised here, at the prior
            k_q, k_r = gains(h_q, h_r)
            if abs(k_q * innovation - dq) <= 1e-4 * q and abs(k_r * innovation - dr) <= 1e-4:
                break  # the step no longer moves: a half that met its prediction needs one pass
        # The count also says where the half started (its share of the miss, d count / d z0
        # = -Q): the model's answer for this half, which the twin's retention reads, starts
        # there. Only the bookkeeping's start moves; the filter's state is its own.
        tr.seg_soc0[k] -= tr.seg_soc_var0[k] * q_obs * innovation / spread(h_q, h_r)
    tr.capacity_mah[k] = q + k_q * innovation
    tr.capacity_var[k] = prior_var * (1.0 - k_q * h_q) if capacity else tr.capacity_var[k]
    tr.tau_var[k] = tau_var * (1.0 - k_r * h_r)
    r = float(np.clip(1.0 + k_r * innovation, 0.5, 2.0))
    tr.tau_scale[k] *= r
    # The surface SOC z + d stays; the lag scales with tau_D. Also at the half's start, which
    # the twin's at-rate capacity starts from.
    A = np.eye(N_X)
    A[_IZ, _ID], A[_ID, _ID] = 1.0 - r, r
    tr.x[k] = A @ tr.x[k]
    tr.P[k] = A @ tr.P[k] @ A.T
    tr.seg_soc0[k] += (1.0 - r) * tr.seg_d0[k]
    tr.seg_d0[k] *= r


def _at_rate_terms(at_rate: Callable[..., float], q: float, mah: float, q_scale: float,
                   r: float, predicted: float | None = None) -> tuple[float, float, float]:
    """d at_rate / d Q, d at_rate / d r and the count's miss, at capacity q q_scale and r
    (`predicted`: at_rate there, if the caller has it)."""
    predicted = at_rate(q_scale, r) if predicted is None else predicted
    step = 0.01
    h_q = (at_rate(q_scale * (1.0 + step), r) - predicted) / (step * q_scale * q)
    h_r = (at_rate(q_scale, r * (1.0 + step)) - predicted) / (step * r)
    return h_q, h_r, mah - predicted


def _cycle_complete(tr: Tracker, k: int) -> None:
    """After a charge: the retention baseline, the observed fade, and each mechanism's
    damage rate. The model's own damage growth of this cycle (from the cell's composition
    and how it was cycled) is the floor; a faster observed fade scales it up. Never down:
    early activation hides fade, and a missed failure costs more than a false alarm."""
    q = tr.capacity_mah[k]
    d_psi, d_crack = tr.psi[k] - tr.cycle_start_psi[k], tr.crack[k] - tr.cycle_start_crack[k]
    tr.cycle_start_psi[k], tr.cycle_start_crack[k] = tr.psi[k], tr.crack[k]
    if not np.isfinite(tr.first_capacity_mah[k]):
        tr.first_capacity_mah[k] = q
        tr.r_base[k] = tr.x[k, _IR0] + tr.x[k, _IR1]
        tr.last_cycle_capacity_mah[k] = q
        tr.psi_rate[k], tr.crack_rate[k] = d_psi, d_crack
        return
    observed = (tr.last_cycle_capacity_mah[k] - q) / tr.first_capacity_mah[k]
    tr.last_cycle_capacity_mah[k] = q
    # Only fade beyond the noise of two capacity estimates says the model is too slow.
    noise = 2.0 * np.sqrt(2.0 * tr.capacity_var[k]) / tr.first_capacity_mah[k]
    modelled = d_psi + d_crack
    scale = max((observed - noise) / modelled, 1.0) if modelled > 1e-12 else 1.0
    a = _FADE_SMOOTHING
    first_fade = tr.cycle[k] <= 2
    tr.fade_per_cycle[k] = observed if first_fade else (1 - a) * tr.fade_per_cycle[k] + a * observed
    tr.psi_rate[k] = (1 - a) * tr.psi_rate[k] + a * d_psi * scale
    tr.crack_rate[k] = (1 - a) * tr.crack_rate[k] + a * d_crack * scale


def _risks(tr: Tracker, k: int, growth: float, c: dict) -> tuple[float, float]:
    """Risk from the share of the allowed loss (down to the retention floor) that a
    mechanism is on course to take within the horizon."""
    allowed = 1.0 - RETENTION_FLOOR
    # Segregation saturates: project the exponential approach, not a straight line.
    room = max(c["ps_saturation"] - tr.psi[k], 1e-12)
    per_cycle = min(tr.psi_rate[k] / room, 1.0)
    # What is already segregated counts: a cell far gone has little room left, not little risk.
    psi_projected = tr.psi[k] + room * (1.0 - (1.0 - per_cycle) ** RISK_HORIZON_CYCLES)
    # Impedance growth is contact loss only where the model has cracking (not generic cells).
    from_impedance = max(growth, 0.0) / c["crack_r_growth"] if c["crack_rate"] > 0 else 0.0
    crack_projected = max(tr.crack[k] + tr.crack_rate[k] * RISK_HORIZON_CYCLES, from_impedance)
    return _to_risk(psi_projected / allowed), _to_risk(crack_projected / allowed)


def _to_risk(share: float) -> float:
    """Map the projected share of the allowed loss to [0, 1): 0.7 (the alert threshold)
    where the mechanism alone reaches the retention floor within the horizon; smooth, so
    cells far past it still rank above cells just past it."""
    return float(1.0 - np.exp(-_RISK_AT_FLOOR * max(share, 0.0)))
