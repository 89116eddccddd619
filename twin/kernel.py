"""The estimator compiled: a frame of samples per cell, the time loop inside compiled code.

`estimator.step` is numpy batched over cells: some 150 small array calls per sample, so a
cell alone runs at a few thousand samples/s. `step_frame` runs the same equations on
scalars with numba, cell after cell and sample after sample, and returns what `step`
would have returned for each sample, stacked.

What is rare and involved stays in Python, defined once in `twin.estimator`: a cell's
first sample (its SOC read off the voltage), a gated sample that may be a knee and a
filter that has lost the cell (restart): the kernel stops a cell *before* such a sample,
its state untouched, and `step_frame` steps that one sample with `estimator.step`. The
end of a half-cycle (capacity update, ageing, risks, end of life) is `estimator`'s
bookkeeping: the kernel filters the reversing sample and stops *after* it, and
`step_frame` runs that bookkeeping on it. Then the kernel resumes. It holds the hot path
only: time update, measurement, gate, EKF update, commit and Coulomb counting.

The open-circuit curve, the temperature law, the transition terms and the activation are
the very functions the numpy path runs (`model._plateau_branches`, `model._mix`,
`estimator._transition_terms`, `degradation.activation`, ...), compiled here for
scalars. The estimator's tuning constants reach the kernel as an argument (`_limits`),
so numba's on-disk cache (`cache=True`, which watches this file only) cannot hold stale
ones. The first call in a fresh install compiles (see README); later runs load the cache.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, fields, replace

import numpy as np
from numba import njit as _numba_njit

from . import degradation as deg
from . import estimator as est
from . import model
from .params import preset

__all__ = ["FrameOutput", "step_frame", "warm_up"]


def njit(fn):
    """Compiled, cached on disk, and dividing like numpy (inf/NaN, never ZeroDivisionError):
    the numpy path's semantics, and less code to compile."""
    return _numba_njit(cache=True, error_model="numpy")(fn)


# The compiled shared cores (see the module docstring).
_plateau_branches = njit(model._plateau_branches)
_plateau_slopes = njit(model._plateau_slopes)
_mix = njit(model._mix)
_temperature_core = njit(model._temperature_core)
_transition_terms = njit(est._transition_terms)
_consider_soc_q = njit(est._consider_soc_q)
_activation = njit(deg.activation)
_tau_multiplier = njit(deg.tau_multiplier)

# Per-cell scalars of the tracker the hot path reads or writes, packed as columns.
_STATE = ("t_last", "i_last", "rejected", "nis", "settled", "i_scale", "irr_left_mah", "capacity_mah",
          "capacity_var", "cycle", "seg_sign", "seg_mah", "seg_soc0", "seg_soc_var0", "seg_d0", "seg_active_s",
          "seg_i_end", "seg_tail_n", "seg_v_end", "first_capacity_mah", "r_base", "seg_pinned", "seg_z_end",
          "seg_d_end", "seg_var_end", "log_pace")
(_T_LAST, _I_LAST, _REJECTED, _NIS, _SETTLED, _I_SCALE, _IRR_LEFT, _CAP, _CAP_VAR, _CYCLE, _SEG_SIGN, _SEG_MAH,
 _SEG_SOC0, _SEG_SOC_VAR0, _SEG_D0, _SEG_ACTIVE_S, _SEG_I_END, _SEG_TAIL_N, _SEG_V_END, _FIRST_CAP,
 _R_BASE, _SEG_PINNED, _SEG_Z_END, _SEG_D_END, _SEG_VAR_END, _LOG_PACE) = range(len(_STATE))

# Per-cell model constants, in this order (see `_cell_params`).
_PARAMS = ("one_c_ma", "v_min", "v_max", "activation_factor", "activation_cycles", "tau_diff_s", "hysteresis_rate",
           "tau1_s", "ocv_shift_v")
_ONE_C, _V_MIN, _V_MAX, _ACT_FACTOR, _ACT_CYCLES, _TAU_DIFF, _GAMMA, _TAU1, _SHIFT, _LOC, _GENERIC = range(11)

# The estimator's constants, in this order; then _Q_RATE, _FAST_LOW, _FAST_HIGH.
_LIMIT_NAMES = ("_MAX_C_RATE", "_WINDOW_MARGIN_V", "GAP_S", "_GATE_NIS", "_MAX_RESIDUAL_V", "_MAX_REJECTED",
                "_LOST_NIS", "_SETTLE_SAMPLES", "_CONVERGED_SOC_STD", "_ACTIVE_C", "_ACTIVE_SCALE", "_ACTIVE_FLOOR_C",
                "_CV_TAIL", "_SCALE_MEMORY_S", "_KNEE_BAND", "_V_STD", "_LEARNED_OFFSET_WALK", "_HOLD_BAND",
                "_CV_SAMPLES", "_CURVE_WALK_V", "_SWITCHING", "_SWITCH_VAR", "_TRANSIENT", "GAP_PACES",
                "_PACE_MEMORY")
(_L_MAX_C, _L_MARGIN, _L_GAP, _L_GATE, _L_MAX_RES, _L_MAX_REJ, _L_LOST_NIS, _L_SETTLE, _L_CONV_SD, _L_ACTIVE_C,
 _L_ACTIVE_SCALE, _L_FLOOR_C, _L_CV_TAIL, _L_MEMORY, _L_KNEE_BAND, _L_V_STD, _L_OFFSET_WALK,
 _L_HOLD_BAND, _L_CV_SAMPLES, _L_CURVE_WALK, _L_SWITCHING, _L_SWITCH_VAR, _L_TRANSIENT, _L_GAP_PACES,
 _L_PACE_MEMORY) = range(len(_LIMIT_NAMES))
_L_T_LOW, _L_T_HIGH = len(_LIMIT_NAMES), len(_LIMIT_NAMES) + 1
_L_Q = _L_T_HIGH + 1
_L_LOW = _L_Q + est.N_X
_L_HIGH = _L_LOW + 4
# Float outputs per sample, in this order.
_OUTPUTS = ("soc", "soc_std", "capacity_mah", "r0_ohm", "r1_ohm", "hysteresis", "v_residual", "nis",
            "capacity_std_mah", "r0_std_ohm", "r1_std_ohm", "first_capacity_mah", "r_base")


def _limits() -> np.ndarray:
    scalars = [float(getattr(est, name)) for name in _LIMIT_NAMES] + list(est._TEMP_RANGE_C)
    return np.concatenate([scalars, est._Q_RATE, est._FAST_LOW, est._FAST_HIGH])


def _cell_params(tr: est.Tracker) -> np.ndarray:
    """(N, 11) the constants of `_PARAMS`, the SOC of the phase switch and 1 for a tabled (generic) cell."""
    columns = [tr.consts[:, est._C[name]] * (tr.tau_scale if name == "tau_diff_s" else 1.0) for name in _PARAMS]
    columns += [model._switch_soc(tr.consts[:, est._C["ni_share"]]), (~np.isnan(tr.ocv_table[:, 0, 0])).astype(float)]
    return np.ascontiguousarray(np.column_stack(columns))


@njit
def _table_branches(zz: float, table: np.ndarray) -> tuple[float, float, float, float]:
    """`model.table_branches` of one cell: linear on a uniform grid, extrapolated past the ends."""
    k = table.shape[1] - 1
    x = zz * k
    j = 0 if np.isnan(x) else int(min(max(np.floor(x), 0.0), k - 1.0))
    lo_l, hi_l, lo_d, hi_d = table[0, j], table[0, j + 1], table[1, j], table[1, j + 1]
    return lo_l + (x - j) * (hi_l - lo_l), lo_d + (x - j) * (hi_d - lo_d), (hi_l - lo_l) * k, (hi_d - lo_d) * k


@njit
def _forward_mah(sign: float, i0: float, i1: float, dt: float) -> float:
    """`estimator._forward_mah` of one cell: mAh passed in direction `sign` on a linear ramp."""
    a, b = sign * i0, sign * i1
    lo, hi = min(a, b), max(a, b)
    if lo >= 0:
        mean = 0.5 * (a + b)
    elif hi > 0:
        mean = 0.5 * hi * hi / max(hi - lo, 1e-300)
    else:
        mean = 0.0
    return mean * dt / 3.6


@njit
def _clip(a: float, lo: float, hi: float) -> float:
    return np.minimum(np.maximum(a, lo), hi)  # ufuncs: NaN stays NaN, as in np.clip


@njit
def _lost(x: np.ndarray, P: np.ndarray) -> bool:
    """A state or covariance no longer finite, or a negative variance (loops: no allocation per sample)."""
    for r in range(x.size):
        if not np.isfinite(x[r]) or P[r, r] < 0:
            return True
        for c in range(x.size):
            if not np.isfinite(P[r, c]):
                return True
    return False


@njit
def _write(out, flags, k, j, x, P, s, y, f) -> None:
    out[0, k, j] = x[0]
    out[1, k, j] = np.sqrt(P[0, 0])
    out[2, k, j] = s[_CAP]
    out[3, k, j] = x[4]
    out[4, k, j] = x[5]
    out[5, k, j] = x[1]
    out[6, k, j] = y
    out[7, k, j] = s[_NIS]
    out[8, k, j] = np.sqrt(s[_CAP_VAR])
    out[9, k, j] = np.sqrt(P[4, 4])
    out[10, k, j] = np.sqrt(P[5, 5])
    out[11, k, j] = s[_FIRST_CAP]
    out[12, k, j] = s[_R_BASE]
    flags[k, j] = f


@njit
def _run(params, tables, lim, x, P, s, t, v, i, temp, present, count, pos, out, flags, closing) -> int:
    """Step cell k from sample pos[k] up to count[k]; stop before a sample Python must take,
    or after one that ends a half (its filter step done, its bookkeeping left to Python).

    Writes x, P, s and the outputs in place; leaves pos[k] at the stopping sample (count[k]
    when done). A cell stopped after a reversal has `closing[k]` = (its column, its Bu z
    and d, dt, current); the others keep column -1. Returns how many cells stopped. State indices: z, h, v1, d, r0, r1, e."""
    n_x = x.shape[1]
    stopped = 0
    xn = np.empty(n_x)
    Pn = np.empty((n_x, n_x))
    H = np.empty(n_x)
    PHt = np.empty(n_x)
    q = np.empty(n_x)
    for k in range(x.shape[0]):
        p, xk, Pk, sk = params[k], x[k], P[k], s[k]
        one_c_a = p[_ONE_C] / 1000.0
        # Constant between Python's events (the cycle count changes at a half's end) and
        # while the temperature holds: computed once, not per sample.
        tau_d = p[_TAU_DIFF] * _tau_multiplier(_activation(p[_ACT_FACTOR], p[_ACT_CYCLES], sk[_CYCLE]))
        g, g_temp = 1.0, np.nan
        j = pos[k]
        while j < count[k]:
            tj, vj, ij, tc = t[k, j], v[k, j], i[k, j], temp[k, j]
            f = 0
            if not present[k, j]:
                _write(out, flags, k, j, xk, Pk, sk, np.nan, f)
                j += 1
                continue
            finite = np.isfinite(tj) and np.isfinite(vj) and np.isfinite(ij) and np.isfinite(tc)
            implausible = finite and (abs(ij) > lim[_L_MAX_C] * p[_ONE_C] / 1000.0 or tc < lim[_L_T_LOW]
                                      or tc > lim[_L_T_HIGH])
            first = np.isnan(sk[_T_LAST])
            dt = 0.0 if first else tj - sk[_T_LAST]
            backwards = finite and not first and not dt > 0
            if not finite or backwards or implausible:
                f = (est.FLAG_NONFINITE if not finite else 0) | (est.FLAG_TIME if backwards else 0) | (
                    est.FLAG_IMPLAUSIBLE if implausible else 0)
                _write(out, flags, k, j, xk, Pk, sk, np.nan, f)
                j += 1
                continue
            if first:
                break  # the SOC from the first voltage: estimator._start
            # The half-cycle bookkeeping's direction first: a reversal closes a half in Python.
            i_scale = np.maximum(abs(ij), sk[_I_SCALE] * np.exp(-dt / lim[_L_MEMORY]))
            threshold = np.maximum(np.minimum(lim[_L_ACTIVE_C], lim[_L_ACTIVE_SCALE] * i_scale / one_c_a),
                                   lim[_L_FLOOR_C]) * one_c_a
            sign = np.sign(ij) if abs(ij) > threshold else 0.0
            seg_sign = sk[_SEG_SIGN]
            reversal = sign != 0 and seg_sign != 0 and sign != seg_sign
            if sign == 0 and seg_sign != 0 and p[_GENERIC] > 0 and sk[_SEG_PINNED] == 0 and (
                    sk[_SEG_TAIL_N] >= lim[_L_CV_SAMPLES]):
                band = lim[_L_HOLD_BAND] * (p[_V_MAX] - p[_V_MIN])
                if (sk[_SEG_V_END] <= p[_V_MIN] + band if seg_sign < 0 else sk[_SEG_V_END] >= p[_V_MAX] - band):
                    break  # a hold at the cut-off ended in a rest: its SOC is pinned (estimator._bookkeeping)
            below = vj < p[_V_MIN] - (lim[_L_MARGIN] if p[_GENERIC] > 0 else 0.0)
            above = vj > p[_V_MAX] + lim[_L_MARGIN]
            pace = sk[_LOG_PACE]  # estimator.gap_limit
            is_gap = not np.isnan(pace) and dt > max(lim[_L_GAP], lim[_L_GAP_PACES] * np.exp(pace))
            counted = 0.0 if is_gap else dt
            f = (est.FLAG_GAP if is_gap else 0) | (est.FLAG_BELOW_WINDOW if below else 0) | (
                est.FLAG_ABOVE_WINDOW if above else 0)
            # A learned cell held at its cut-off: counted, the voltage not used (estimator._in_hold).
            hold = p[_GENERIC] > 0 and sign == 0 and sk[_SEG_PINNED] > 0  # resting after a pinned hold
            if p[_GENERIC] > 0 and seg_sign != 0 and abs(ij) > threshold and np.sign(ij) == seg_sign:
                band = lim[_L_HOLD_BAND] * (p[_V_MAX] - p[_V_MIN])
                at_cut = vj <= p[_V_MIN] + band if seg_sign < 0 else vj >= p[_V_MAX] - band
                hold = at_cut and sk[_SEG_ACTIVE_S] > 0 and (
                    abs(ij) * sk[_SEG_ACTIVE_S] < lim[_L_CV_TAIL] * sk[_SEG_MAH] * 3.6)
            if hold:
                f |= est.FLAG_HOLD
            use_v = not below and not above and not hold
            if p[_GENERIC] == 0 and tc != g_temp:
                g, g_temp = _temperature_core(tc), tc
            # Time update (estimator._prepare, _propagate).
            cap = sk[_CAP]
            q_as = cap * 3.6
            irr = sk[_IRR_LEFT]
            sink = irr / (irr + cap) if ij < 0 and irr > 0 else 0.0
            a_h, a_1, b_1, a_d, bu_z, bu_h, bu_d = _transition_terms(ij, dt, g, q_as, sink, tau_d, p[_GAMMA], p[_TAU1])
            gap = dt * (10.0 if is_gap else 1.0)
            for m in range(n_x):
                scale = xk[m] if m == 4 or m == 5 else (lim[_L_OFFSET_WALK] if m == 6 and p[_GENERIC] > 0 else 1.0)
                q[m] = lim[_L_Q + m] * scale**2 * gap
            q[0] += _consider_soc_q(sk[_SEG_MAH], cap, sk[_CAP_VAR], bu_z)
            active = abs(ij) > lim[_L_FLOOR_C] * one_c_a
            if p[_GENERIC] > 0:
                q[6] += lim[_L_CURVE_WALK] ** 2 * abs(bu_z)
            # Element loops, not slice assignment: numba's slice assignment brings in ~20 s of
            # compiling its error messages (string formatting) on a fresh install.
            for r in range(n_x):
                xn[r] = xk[r]
                for c in range(n_x):
                    Pn[r, c] = Pk[r, c]
            xn[2] = a_1 * xk[2] + b_1 * xk[5]
            xn[1] *= a_h
            xn[3] *= a_d
            xn[0] += bu_z
            xn[1] += bu_h
            xn[3] += bu_d
            for c in range(n_x):
                Pn[2, c] = a_1 * Pk[2, c] + b_1 * Pk[5, c]
                Pn[1, c] = a_h * Pk[1, c]
                Pn[3, c] = a_d * Pk[3, c]
            for r in range(n_x):
                Pn[r, 2] = a_1 * Pn[r, 2] + b_1 * Pn[r, 5]
                Pn[r, 1] = a_h * Pn[r, 1]
                Pn[r, 3] = a_d * Pn[r, 3]
            for m in range(n_x):
                Pn[m, m] += q[m]
            # Measurement (estimator._measurement, model.terminal_voltage).
            zz = xn[0] + xn[3]
            if p[_GENERIC] > 0:
                e_l, e_d, de_l, de_d = _table_branches(zz, tables[k])
            else:
                e_l, e_d, s_, low, high = _plateau_branches(zz, p[_LOC])
                de_l, de_d = _plateau_slopes(s_, low, high)
            e, de_dz, de_dh = _mix(xn[1], e_l, e_d, de_l, de_d)
            y = vj - (e + p[_SHIFT] + ij * xn[4] * g + xn[2] + xn[6])
            H[0], H[1], H[2], H[3], H[4], H[5], H[6] = de_dz, de_dh, 1.0, de_dz, ij * g, 0.0, 1.0
            # A branch switch under way and ahead of the twin (estimator._switch).
            switching = p[_GENERIC] > 0 and active and abs(np.sign(ij) - xn[1]) > lim[_L_SWITCHING] and (
                np.sign(y) == np.sign(ij))
            if switching:
                Pn[1, 1] += lim[_L_SWITCH_VAR]
            # Gate and EKF update (estimator._gate; a gated sample near the knee the current
            # heads for may be read off the knee: Python, estimator._knee_update).
            rejected, nis = sk[_REJECTED], sk[_NIS]
            use = False
            if use_v:
                S = lim[_L_V_STD] ** 2
                for r in range(n_x):
                    acc = 0.0
                    for c in range(n_x):
                        acc += Pn[r, c] * H[c]
                    PHt[r] = acc
                acc = 0.0
                for r in range(n_x):
                    acc += H[r] * PHt[r]
                S += acc
                nis_y = y * y / S
                if nis_y > lim[_L_GATE] or (abs(y) > lim[_L_MAX_RES] and not switching):
                    span = p[_V_MAX] - p[_V_MIN]
                    if (ij < 0 and vj < p[_V_MIN] + lim[_L_KNEE_BAND] * span) or (
                            ij > 0 and vj > p[_V_MAX] - lim[_L_KNEE_BAND] * span):
                        break
                    f |= est.FLAG_OUTLIER
                    # At rest, or at the start of a learned cell's half (estimator._gate),
                    # outliers do not mean a lost filter.
                    if active and not (p[_GENERIC] > 0 and abs(sk[_SEG_MAH]) < lim[_L_TRANSIENT] * cap):
                        rejected += 1.0
                else:
                    use = True
                    rejected = 0.0
                    if abs(y) > lim[_L_MAX_RES]:  # a branch switch read off the voltage (estimator._gate)
                        f |= est.FLAG_SWITCH
                    nis = 0.99 * nis + 0.01 * min(nis_y, lim[_L_GATE])
                    for r in range(n_x):
                        xn[r] += PHt[r] / S * y
                    for r in range(n_x):
                        for c in range(n_x):
                            Pn[r, c] -= PHt[r] * (PHt[c] / S)
            # Commit (estimator._commit); a lost filter restarts in Python.
            for m in range(4):
                xn[m] = _clip(xn[m], lim[_L_LOW + m], lim[_L_HIGH + m])
            xn[0] = _clip(xn[0], -xn[3], 1.0 - xn[3])
            xn[4] = np.maximum(xn[4], 1e-6)
            xn[5] = np.maximum(xn[5], 1e-6)
            if _lost(xn, Pn) or rejected >= lim[_L_MAX_REJ] or nis > lim[_L_LOST_NIS]:
                break
            sk[_REJECTED], sk[_NIS] = rejected, nis
            if use:
                sk[_SETTLED] += 1.0
            for r in range(n_x):
                xk[r] = xn[r]
                for c in range(n_x):
                    Pk[r, c] = 0.5 * (Pn[r, c] + Pn[c, r])
            if not (sk[_SETTLED] >= lim[_L_SETTLE] and Pk[0, 0] <= lim[_L_CONV_SD] ** 2):
                f |= est.FLAG_UNCONVERGED
            sk[_T_LAST] = tj
            sk[_IRR_LEFT] = np.maximum(irr + ij * sink * dt / 3.6, 0.0)
            if reversal:  # estimator._bookkeeping closes the half; the state's outputs are read after it
                out[6, k, j] = y if use_v else np.nan
                flags[k, j] = f
                c = closing[k]
                c[0], c[1], c[2], c[3], c[4] = j, bu_z, bu_d, dt, ij
                j += 1
                break
            # Coulomb counting per half-cycle (estimator._bookkeeping).
            sk[_I_SCALE] = i_scale
            sk[_SEG_MAH] += _forward_mah(seg_sign, sk[_I_LAST], ij, counted)
            starting = sign != 0 and seg_sign == 0
            if starting:
                sk[_SEG_SIGN] = seg_sign = sign
                sk[_SEG_MAH] = _forward_mah(sign, sk[_I_LAST], ij, counted)
                sk[_SEG_ACTIVE_S] = 0.0
                sk[_SEG_SOC0] = xk[0] - bu_z
                sk[_SEG_SOC_VAR0] = Pk[0, 0]
                sk[_SEG_D0] = xk[3] - bu_d
                sk[_SEG_TAIL_N] = 0.0
                sk[_SEG_V_END] = np.nan
                sk[_SEG_PINNED] = 0.0
            if seg_sign != 0 and sign != 0:
                sk[_SEG_ACTIVE_S] += counted
            if sign != 0 and sign == seg_sign:
                tail_low = sk[_SEG_ACTIVE_S] > 0 and abs(ij) * sk[_SEG_ACTIVE_S] < lim[_L_CV_TAIL] * sk[_SEG_MAH] * 3.6
                sk[_SEG_TAIL_N] = sk[_SEG_TAIL_N] + 1.0 if tail_low else 0.0
                sk[_SEG_I_END] = abs(ij)
                if np.isfinite(vj):
                    sk[_SEG_V_END] = vj
            if sign == seg_sign:  # the half goes on, or none has begun: where it would end (or start)
                sk[_SEG_Z_END], sk[_SEG_D_END], sk[_SEG_VAR_END] = xk[0], xk[3], Pk[0, 0]
            sk[_I_LAST] = ij
            step = np.log(dt)  # estimator._paced (dt > 0 here)
            sk[_LOG_PACE] = step if np.isnan(pace) else pace + lim[_L_PACE_MEMORY] * (step - pace)
            _write(out, flags, k, j, xk, Pk, sk, y if use_v else np.nan, f)
            j += 1
        pos[k] = j
        stopped += j < count[k] or closing[k, 0] >= 0
    return stopped


@dataclass
class FrameOutput(est.StepOutput):
    """The `StepOutput` of each sample of a frame, stacked: arrays (N, T), the halves in the
    order successive `step` calls give them."""

    half_samples: list[int]  # the sample index (column) that closed each half

    def at(self, k: int) -> est.StepOutput:
        """Sample k of every cell: what the k-th of those `step` calls returned."""
        lo, hi = bisect_left(self.half_samples, k), bisect_right(self.half_samples, k)
        return est.StepOutput(**{name: getattr(self, name)[:, k] for name in (*_OUTPUTS, "flags")},
                              halves=self.halves[lo:hi])


def _frame(a, n: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1 and n == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, T), got {a.shape}")
    return a


def _rows_of(tr: est.Tracker, rows: np.ndarray) -> tuple[est.Tracker, bool]:
    """The tracker of `rows`; the tracker itself when that is every cell (always so for one
    cell), with True when the copy must be written back."""
    whole = rows.size == len(tr)
    return (tr, False) if whole else (tr.take(rows), True)


def _write_back(tr: est.Tracker, rows: np.ndarray, sub: est.Tracker) -> None:
    for f in fields(est.Tracker):
        getattr(tr, f.name)[rows] = getattr(sub, f.name)


def _report(res: est.StepOutput, rows: np.ndarray, cols: np.ndarray, out: np.ndarray, flags: np.ndarray,
            ) -> list[tuple[int, int, est.HalfCycle]]:
    """Write a Python step's outputs at (rows, cols); its halves with their column and row."""
    for m, name in enumerate(_OUTPUTS):
        out[m, rows, cols] = getattr(res, name)
    flags[rows, cols] = res.flags
    return [(int(cols[h.cell]), int(rows[h.cell]), replace(h, cell=int(rows[h.cell]))) for h in res.halves]


def _python_step(tr, rows, cols, t, v, i, temp_c, out, flags) -> list[tuple[int, int, est.HalfCycle]]:
    """The samples (rows, cols) the kernel left to `estimator.step`."""
    sub, copied = _rows_of(tr, rows)
    res = est.step(sub, t[rows, cols], v[rows, cols], i[rows, cols], temp_c[rows, cols])
    if copied:
        _write_back(tr, rows, sub)
    return _report(res, rows, cols, out, flags)


def _close(tr, rows, cols, closing, t, v, out, flags) -> list[tuple[int, int, est.HalfCycle]]:
    """The bookkeeping of the reversals (rows, cols) the kernel filtered: `estimator._bookkeeping`
    closes their halves and starts the next; then their outputs are read off the tracker."""
    sub, copied = _rows_of(tr, rows)
    m = rows.size
    bu = np.zeros((m, est.N_X))
    bu[:, est._IZ], bu[:, est._ID] = closing[:, 1], closing[:, 2]
    halves = est._bookkeeping(sub, np.ones(m, dtype=bool), closing[:, 4], closing[:, 3], bu, t[rows, cols],
                              v[rows, cols])
    if copied:
        _write_back(tr, rows, sub)
    return _report(est._outputs(sub, out[6, rows, cols], flags[rows, cols], halves), rows, cols, out, flags)


def warm_up() -> None:
    """Load the compiled kernel now: the first `step_frame` of a process otherwise spends
    ~0.3 s loading it from numba's cache (setting up numba's own machinery). A pipeline
    calls this on a thread of its own while it connects, so its first frame need not wait."""
    step_frame(est.new_tracker([preset("nd4mg80ni8")]), np.array([0.0, 1.0]), np.array([0.9, 0.9]),
               np.array([0.0, 0.0]))


def step_frame(tr: est.Tracker, t, v, i, temp_c=130.0, present=True) -> FrameOutput:
    """Step T samples of each of the N cells of `tr`: arrays (N, T) (a one-cell tracker also
    takes (T,)); sample k of all cells is what `estimator.step` would take in its k-th call.
    `temp_c` and `present` may be scalars. Same results as those T `step` calls."""
    n = len(tr)
    # Fresh writable C arrays of one dtype each: one compiled signature (a read-only or
    # strided input would make numba compile the kernel again).
    t, v, i = (np.array(_frame(a, n, name), dtype=float, order="C") for a, name in ((t, "t"), (v, "v"), (i, "i")))
    shape = t.shape
    if v.shape != shape or i.shape != shape:
        raise ValueError(f"t, v and i must have one shape, got {shape}, {v.shape}, {i.shape}")
    temp_c, present = (np.array(np.broadcast_to(a, shape), dtype=dtype, order="C")
                       for a, dtype in ((temp_c, float), (present, bool)))
    tables, lim = np.array(np.nan_to_num(tr.ocv_table), order="C"), _limits()
    out, flags = np.empty((len(_OUTPUTS), *shape)), np.zeros(shape, dtype=np.int64)
    count, pos = np.full(n, shape[1], dtype=np.int64), np.zeros(n, dtype=np.int64)
    closing = np.empty((n, 5))
    halves: list[tuple[int, int, est.HalfCycle]] = []
    while True:
        params = _cell_params(tr)  # a half's end estimates the cell's diffusion time
        x, P = np.array(tr.x, dtype=float, order="C"), np.array(tr.P, dtype=float, order="C")
        s = np.column_stack([getattr(tr, name) for name in _STATE]).astype(float)
        closing[:, 0] = -1.0
        stopped = _run(params, tables, lim, x, P, s, t, v, i, temp_c, present, count, pos, out, flags, closing)
        tr.x, tr.P = x, P
        for col, name in enumerate(_STATE):
            setattr(tr, name, s[:, col].copy())
        if not stopped:
            break
        closed = closing[:, 0] >= 0
        rows = np.flatnonzero(closed)
        if rows.size:
            cols = closing[rows, 0].astype(np.int64)
            halves.extend(_close(tr, rows, cols, closing[rows], t, v, out, flags))
        rows = np.flatnonzero((pos < count) & ~closed)
        if rows.size:
            cols = pos[rows]
            halves.extend(_python_step(tr, rows, cols, t, v, i, temp_c, out, flags))
            pos[rows] += 1
    halves.sort(key=lambda item: item[:2])
    return FrameOutput(**dict(zip(_OUTPUTS, out)), flags=flags, halves=[h for _, _, h in halves],
                       half_samples=[j for j, _, _ in halves])
