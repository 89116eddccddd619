"""Vectorised cycler simulator: many cells, one protocol, the truth kept beside the data.

Every cell runs the same list of `Step`s on its own schedule (a cell that reaches its
cut-off first moves on first). Time advances on one clock with the sampling interval;
inside a tick the model steps with zero-order hold (exact for the linear states), and
a cut-off crossed inside a tick is located by interpolation, so coarse sampling still
gives accurate capacities. The simulator yields blocks of samples (what a cycler would
report, with noise and faults) and keeps the per-half-cycle truth.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from . import degradation as deg
from .model import temperature_factor, terminal_voltage_only, transition
from .params import T_REF_C, CellParams, stack_ocv_tables, stack_params
from .protocol import Step

__all__ = ["SensorNoise", "Faults", "SampleBlock", "HalfCycleTruth", "Simulation", "vary", "simulate_cycles", "cycle_table"]


@dataclass(frozen=True)
class SensorNoise:
    """Cycler measurement noise. Current terms are fractions of the cell's 1C current."""

    v_std: float = 1e-3
    i_std_frac: float = 1e-3
    i_offset_frac: float = 5e-4

    @classmethod
    def none(cls) -> "SensorNoise":
        return cls(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Faults:
    """Optional data faults. Probabilities are per sample."""

    dropout_prob: float = 0.0  # a sample never arrives
    spike_prob: float = 0.0  # a voltage sample jumps by +-spike_v
    spike_v: float = 0.3
    offset_drift_frac_per_h: float = 0.0  # current-sensor offset drift, fraction of 1C per hour
    temp_sag_start_s: float | None = None  # the oven sags ...
    temp_sag_duration_s: float = 3600.0
    temp_sag_c: float = 15.0  # ... by this many degrees


@dataclass
class SampleBlock:
    """K ticks of N cells. `valid` is False where a cell sent nothing (finished or dropped)."""

    t: np.ndarray  # (K,) seconds since the epoch
    v: np.ndarray  # (N, K) measured
    i: np.ndarray  # (N, K) measured, A, lithiation negative
    temp_c: np.ndarray  # (N, K)
    valid: np.ndarray  # (N, K) bool
    soc: np.ndarray  # (N, K) true bulk state of charge
    capacity_mah: np.ndarray  # (N, K) true reversible capacity
    r0_ohm: np.ndarray  # (N, K) true R0 at 130 C
    r1_ohm: np.ndarray  # (N, K) true R1 at 130 C
    cycle: np.ndarray  # (N, K) cycle number (1-based) of each sample
    step: np.ndarray  # (N, K) protocol step index


@dataclass(frozen=True)
class HalfCycleTruth:
    cell: int
    cycle: int  # 1-based; a discharge and the following charge share it
    half: str  # "discharge" | "charge"
    c_rate: float
    capacity_mah: float
    capacity_mah_g: float
    reversible_capacity_mah: float  # model capacity at the end of the half
    psi: float
    crack: float
    r0_ohm: float
    r1_ohm: float
    t_end: float


def vary(base: CellParams, n: int, rng: np.random.Generator, spread: float = 1.0) -> list[CellParams]:
    """Cell-to-cell variability around a preset (manufacturing spread; 1.0 = typical)."""

    def f(sd: float) -> np.ndarray:
        return np.exp(rng.normal(0.0, sd * spread, n))

    util, r0, r1, tau, ps, cr = f(0.01), f(0.08), f(0.08), f(0.08), f(0.25), f(0.25)
    shift = rng.normal(0.0, 0.002 * spread, n)
    return [
        base.with_(
            name=f"{base.name}",
            utilisation=min(base.utilisation * util[k], 1.0),
            r0_ohm=base.r0_ohm * r0[k],
            r1_ohm=base.r1_ohm * r1[k],
            tau_diff_s=base.tau_diff_s * tau[k],
            ps_rate=base.ps_rate * ps[k],
            crack_rate=base.crack_rate * cr[k],
            ocv_shift_v=base.ocv_shift_v + shift[k],
        )
        for k in range(n)
    ]


@dataclass
class Simulation:
    """Run `protocol` on `cells`. Iterate `blocks()` for samples; read `truth` afterwards."""

    cells: list[CellParams]
    protocol: list[Step]
    dt: float = 1.0
    t0: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    temp_c: float = T_REF_C
    noise: SensorNoise = field(default_factory=SensorNoise)
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    initial_soc: float = 1.0  # an as-prepared hydride electrode is fully charged
    truth: list[HalfCycleTruth] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not self.cells or not self.protocol:
            raise ValueError("a simulation needs at least one cell and one protocol step")
        if not self.dt > 0:
            raise ValueError(f"sampling interval must be > 0 s, got {self.dt}")
        self._p = stack_params(self.cells)
        self._table = stack_ocv_tables(self.cells)
        self._rng = np.random.default_rng(self.seed)
        self._steps = _StepTable(self.protocol)

    def blocks(self, block_ticks: int = 1024, max_ticks: int | None = None) -> Iterator[SampleBlock]:
        p, st, n = self._p, self._steps, len(self.cells)
        age = deg.fresh(p)
        z = np.full(n, self.initial_soc)
        h = np.ones(n)  # made by hydrogenation: on the delithiation branch
        v1 = np.zeros(n)
        d = np.zeros(n)
        step = np.zeros(n, dtype=int)
        step_t = np.zeros(n)
        throughput = np.zeros(n)  # mAh in the current half-cycle
        z_start = z.copy()
        one_c_a = p["one_c_ma"] / 1000.0
        offset = self._rng.normal(0.0, 1.0, n) * self.noise.i_offset_frac * one_c_a
        tick = 0
        # Quantities that change only at step changes, half-cycle ends or temperature changes.
        state = _TickCache(self, age, step)
        while True:
            k_max = block_ticks if max_ticks is None else min(block_ticks, max_ticks - tick)
            if k_max <= 0:
                return
            rec = _Recorder(n, k_max)
            for k in range(k_max):
                if not state.active.any():
                    break
                t_rel = (tick + 1) * self.dt
                c = state.at(self._temperature(t_rel))
                # Part of the first lithiation current fills the irreversible sink.
                sink = np.where((c.cur < 0) & (age.irr_left_mah > 0), age.irr_left_mah / (age.irr_left_mah + c.q), 0.0)
                i_in = c.cur * (1 - sink)
                model = (c.q, c.r1, p["tau1_s"], c.tau_d, p["hysteresis_rate"], c.g)
                (z2, h2, v12, d2), _ = transition(z, h, v1, d, i_in, self.dt, *model)
                v2 = terminal_voltage_only(z2, h2, v12, d2, c.cur, c.r0, c.g, p["ni_share"], p["ocv_shift_v"], self._table)
                crossed = c.limited & np.where(c.cur < 0, v2 <= c.lim, v2 >= c.lim)
                frac = np.ones(n)
                if crossed.any():
                    # Voltage limit crossed inside this tick: step only to the crossing,
                    # then the cell rests for the rest of the tick.
                    v_prev = terminal_voltage_only(z, h, v1, d, c.cur, c.r0, c.g, p["ni_share"], p["ocv_shift_v"], self._table)
                    frac = np.where(crossed, np.clip((v_prev - c.lim) / (v_prev - v2 + 1e-300), 0.0, 1.0), 1.0)
                    part, _ = transition(z, h, v1, d, i_in, self.dt * frac, *model)
                    rest, _ = transition(*part, np.zeros(n), self.dt * (1 - frac), *model)
                    z, h, v1, d = (np.where(crossed, r, f) for r, f in zip(rest, (z2, h2, v12, d2)))
                    v2 = np.where(crossed, c.lim, v2)
                else:
                    z, h, v1, d = z2, h2, v12, d2
                i_avg = c.cur * frac
                throughput += np.abs(i_avg) * (self.dt / 3.6)  # mAh
                if c.sink_possible:
                    age.irr_left_mah = np.maximum(age.irr_left_mah - np.abs(i_avg * sink) * self.dt / 3.6, 0.0)
                step_t += self.dt * frac
                rec.put(k, v2, i_avg, c.temp, state.active, z, c.q, c.r0, c.r1, age.cycle + 1, state.sidx)
                done = state.active & (crossed | (c.timed & (step_t >= c.dur - 1e-9)))
                if done.any():
                    sidx = state.sidx
                    nxt = np.where(crossed & (st.skip_to[sidx] >= 0), st.skip_to[sidx], step + 1)
                    half_ends = done & ((nxt >= st.n) | (st.half[np.minimum(nxt, st.n - 1)] != st.half[sidx]))
                    if half_ends.any():
                        age, z = self._close_halves(half_ends, st.sign[sidx], throughput, z_start, z, age, c.q,
                                                    st.c_rate[sidx], self.t0 + t_rel)
                        throughput = np.where(half_ends, 0.0, throughput)
                        z_start = np.where(half_ends, z, z_start)
                    step = np.where(done, nxt, step)
                    step_t = np.where(done, 0.0, step_t)
                    state = _TickCache(self, age, step)
                tick += 1
            if rec.k == 0:
                return
            block = rec.block(self.t0 + (tick - rec.k + np.arange(1, rec.k + 1)) * self.dt)
            self._measure(block, one_c_a, offset)
            yield block
            if not state.active.any():
                return

    def _temperature(self, t_rel: float) -> float:
        f = self.faults
        if f.temp_sag_start_s is not None and f.temp_sag_start_s <= t_rel < f.temp_sag_start_s + f.temp_sag_duration_s:
            return self.temp_c - f.temp_sag_c
        return self.temp_c

    def _close_halves(self, ends, sign, throughput, z_start, z, age, q_before, c_rate, t_end):
        p = self._p
        lith = ends & (sign < 0)
        depth = np.where(ends, np.abs(z - z_start), 0.0)
        new_age = deg.age_half_cycle(p, age, lith, depth, np.where(ends, c_rate, 0.0))
        new_age.irr_left_mah = np.where(lith, 0.0, age.irr_left_mah)  # the sink is a first-lithiation event
        keep = ~ends
        for name in ("cycle", "psi", "crack"):
            setattr(new_age, name, np.where(keep, getattr(age, name), getattr(new_age, name)))
        q_after = deg.capacity_mah(p, new_age)
        # Lost material is in the lithiated state: the charge held by the rest is unchanged.
        z = np.where(ends, np.clip(z * q_before / q_after, 0.0, 1.0), z)
        r0, r1 = deg.resistances(p, new_age)
        for c in np.flatnonzero(ends):
            self.truth.append(
                HalfCycleTruth(
                    cell=int(c),
                    cycle=int(age.cycle[c]) + 1 if sign[c] < 0 else int(age.cycle[c]),
                    half="discharge" if sign[c] < 0 else "charge",
                    c_rate=float(abs(c_rate[c])),
                    capacity_mah=float(throughput[c]),
                    capacity_mah_g=float(throughput[c] / (p["mass_mg"][c] / 1000.0)),
                    reversible_capacity_mah=float(q_after[c]),
                    psi=float(new_age.psi[c]),
                    crack=float(new_age.crack[c]),
                    r0_ohm=float(r0[c]),
                    r1_ohm=float(r1[c]),
                    t_end=float(t_end),
                )
            )
        return new_age, z

    def _measure(self, b: SampleBlock, one_c_a: np.ndarray, offset: np.ndarray) -> None:
        """Turn the true block into what a cycler reports: noise, offsets, faults."""
        rng, nz, f = self._rng, self.noise, self.faults
        n, k = b.v.shape
        hours = (b.t - self.t0)[None, :] / 3600.0
        b.v = b.v + rng.normal(0.0, nz.v_std, (n, k)) if nz.v_std else b.v
        drift = f.offset_drift_frac_per_h * one_c_a[:, None] * hours
        noise_i = rng.normal(0.0, 1.0, (n, k)) * nz.i_std_frac * one_c_a[:, None] if nz.i_std_frac else 0.0
        b.i = b.i + offset[:, None] + drift + noise_i
        if f.spike_prob:
            spikes = rng.random((n, k)) < f.spike_prob
            b.v = np.where(spikes, b.v + rng.choice([-1.0, 1.0], (n, k)) * f.spike_v, b.v)
        if f.dropout_prob:
            b.valid &= rng.random((n, k)) >= f.dropout_prob


class _TickCache:
    """What the inner loop needs that only changes at step changes, half-cycle ends or a
    temperature change, computed once instead of every tick."""

    def __init__(self, sim: "Simulation", age: deg.Ageing, step: np.ndarray):
        p, st = sim._p, sim._steps
        self.active = step < st.n
        self.sidx = np.minimum(step, st.n - 1)
        self.cur = np.where(self.active, st.c_rate[self.sidx] * p["one_c_ma"] / 1000.0, 0.0)
        self.lim = st.until_v[self.sidx]
        self.limited = self.active & ~np.isnan(self.lim)
        self.dur = st.duration_s[self.sidx]
        self.timed = ~np.isnan(self.dur)
        self.q = deg.capacity_mah(p, age)
        self.r0, self.r1 = deg.resistances(p, age)
        self.tau_d = deg.tau_diff_s(p, age)
        self.sink_possible = bool(np.any(age.irr_left_mah > 0))
        self._n = len(step)
        self._table = sim._table
        self._temp_c: float | None = None

    def at(self, temp_c: float) -> "_TickCache":
        if temp_c != self._temp_c:
            self._temp_c = temp_c
            self.temp = np.full(self._n, temp_c)
            self.g = temperature_factor(self.temp, self._table)
        return self


class _StepTable:
    """The protocol as arrays, so every cell can look up its own step at once."""

    def __init__(self, steps: list[Step]):
        self.n = len(steps)
        self.c_rate = np.array([s.c_rate for s in steps])
        self.sign = np.sign(self.c_rate)
        # A rest takes the sign of the half it belongs to (GITT rests sit inside a half).
        for k, s in enumerate(steps):
            if s.is_rest:
                same = [x.c_rate for x in steps if x.half == s.half and not x.is_rest]
                self.sign[k] = np.sign(same[0]) if same else 0.0
        self.until_v = np.array([np.nan if s.until_v is None else s.until_v for s in steps])
        self.duration_s = np.array([np.nan if s.duration_s is None else s.duration_s for s in steps])
        self.half = np.array([s.half for s in steps])
        self.skip_to = np.array([-1 if s.skip_to is None else s.skip_to for s in steps])


class _Recorder:
    def __init__(self, n: int, k: int):
        self.k = 0
        self.arrays = {name: np.zeros((n, k)) for name in ("v", "i", "temp_c", "soc", "capacity_mah", "r0_ohm", "r1_ohm", "cycle", "step")}
        self.valid = np.zeros((n, k), dtype=bool)

    def put(self, k, v, i, temp, valid, soc, q, r0, r1, cycle, step) -> None:
        for name, val in zip(("v", "i", "temp_c", "soc", "capacity_mah", "r0_ohm", "r1_ohm", "cycle", "step"),
                             (v, i, temp, soc, q, r0, r1, cycle, step)):
            self.arrays[name][:, k] = val
        self.valid[:, k] = valid
        self.k = k + 1

    def block(self, t: np.ndarray) -> SampleBlock:
        a = {name: arr[:, : self.k] for name, arr in self.arrays.items()}
        return SampleBlock(t=t, valid=self.valid[:, : self.k].copy(), **a)


def simulate_cycles(
    cells: list[CellParams],
    protocol: list[Step],
    dt: float = 60.0,
    **kwargs,
) -> list[HalfCycleTruth]:
    """Run a protocol to the end and return only the per-half-cycle truth (fast path)."""
    sim = Simulation(cells, protocol, dt=dt, noise=SensorNoise.none(), **kwargs)
    deque(sim.blocks(block_ticks=4096), maxlen=0)  # run to the end; only the truth is kept
    return sim.truth


def cycle_table(truth: list[HalfCycleTruth]) -> list[dict]:
    """One row per cell and cycle: discharge and charge capacity, Coulombic efficiency,
    the rate, retention against the first charge, and the true ageing state."""
    rows: dict[tuple[int, int], dict] = {}
    first_charge: dict[int, float] = {}
    for x in truth:
        row = rows.setdefault((x.cell, x.cycle), {"cell": x.cell, "cycle": x.cycle, "c_rate": x.c_rate})
        row[f"{x.half}_capacity_mah_g"] = x.capacity_mah_g
        if x.half == "charge":
            first_charge.setdefault(x.cell, x.capacity_mah_g)
            row.update(
                reversible_capacity_mah=x.reversible_capacity_mah,
                phase_separation=x.psi,
                crack_damage=x.crack,
                r0_ohm=x.r0_ohm,
                r1_ohm=x.r1_ohm,
            )
    out = []
    for (cell, _), row in sorted(rows.items()):
        d, c = row.get("discharge_capacity_mah_g", float("nan")), row.get("charge_capacity_mah_g", float("nan"))
        row["coulombic_efficiency"] = c / d if d > 0 else float("nan")
        row["retention"] = c / first_charge[cell] if cell in first_charge else float("nan")
        out.append(row)
    return out
