"""The lab's per-half analytics against simulated cells whose truth is known, and on a real
HPPC file: energy, mean voltage, dQ/dV peaks, pulse resistance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from connectors.readers import read_archive
from twin import analytics
from twin.model import ocv_branches
from twin.params import CellParams, preset
from twin.protocol import Step, cc_cycles, gitt
from twin.simulator import SensorNoise, Simulation

HPPC_FILE = Path(__file__).resolve().parents[1] / "data" / "real" / "p492-13-raw.csv"


def _simulate(cell: CellParams, protocol: list[Step], dt: float, noise: SensorNoise) -> dict[str, np.ndarray]:
    """One cell's samples, with the protocol half and the true resistances of each sample."""
    blocks = list(Simulation([cell], protocol, dt=dt, noise=noise, seed=1).blocks(block_ticks=100_000))
    keep = np.concatenate([b.valid[0] for b in blocks])
    columns = {name: np.concatenate([getattr(b, name)[0] for b in blocks])[keep]
               for name in ("v", "i", "step", "r0_ohm", "r1_ohm")}
    columns["t"] = np.concatenate([b.t for b in blocks])[keep]
    columns["half"] = np.array([s.half for s in protocol])[columns["step"].astype(int)]
    return columns


def _analyse(cell: CellParams, data: dict[str, np.ndarray], batch: int) -> list[analytics.HalfFigures]:
    """Stream the samples in batches; each protocol half closes at the first sample of the next."""
    an = analytics.for_cells([cell])
    t, v, i, half = data["t"], data["v"], data["i"], data["half"]
    closing = set((np.flatnonzero(np.diff(half)) + 1).tolist())
    figures = []
    for start in range(0, t.size, batch):
        part = slice(start, start + batch)
        b = analytics.begin(an, t[None, part], v[None, part], i[None, part], np.array([t[part].size]))
        for k in range(t[part].size):
            if start + k in closing:
                figures.append(analytics.close(an, b, 0, k, bool(i[start + k - 1] < 0)))
        analytics.end(an, b)
    figures.append(analytics.close(an, None, 0, 0, bool(i[-1] < 0)))
    return figures


def _true_energy(data: dict[str, np.ndarray]) -> list[tuple[float, float]]:
    """(mWh, mAh) of each protocol half by the trapezoid rule on noise-free 1 s samples."""
    out = []
    for h in np.unique(data["half"]):
        rows = np.flatnonzero(data["half"] == h)
        rows = np.r_[rows[0] - 1, rows] if rows[0] > 0 else rows  # from the half's start
        t, v, i = data["t"][rows], data["v"][rows], np.abs(data["i"][rows])
        dt = np.diff(t)
        out.append((float(np.sum((v[1:] * i[1:] + v[:-1] * i[:-1]) / 2 * dt) / 3.6),
                    float(np.sum((i[1:] + i[:-1]) / 2 * dt) / 3.6)))
    return out


def test_energy_and_mean_voltages_match_the_truth_from_noisy_coarse_samples() -> None:
    cell = preset("nd4mg80ni8")
    protocol = cc_cycles(0.5, 2)
    truth = _true_energy(_simulate(cell, protocol, 1.0, SensorNoise.none()))
    noisy = _simulate(cell, protocol, 10.0, SensorNoise())
    halves = _analyse(cell, noisy, batch=333)

    assert len(halves) == len(truth) == 4
    for figures, (mwh, mah) in zip(halves, truth):
        assert figures.energy_mwh == pytest.approx(mwh, rel=0.01)
        assert figures.energy_mwh_g == pytest.approx(figures.energy_mwh / (cell.mass_mg / 1000.0))
        assert abs(figures.mean_v - mwh / mah) < 0.002
    pairs = zip(halves[::2], halves[1::2], truth[::2], truth[1::2])
    for discharge, charge, (dis_mwh, dis_mah), (ch_mwh, ch_mah) in pairs:
        assert np.isnan(discharge.energy_efficiency) and np.isnan(discharge.hysteresis_v)
        assert charge.energy_efficiency == pytest.approx(dis_mwh / ch_mwh, rel=0.01)
        assert abs(charge.hysteresis_v - (ch_mwh / ch_mah - dis_mwh / dis_mah)) < 0.002
    # Where the batches split the halves does not matter: the sums are the same to the last bit.
    for one, other in zip(halves, _analyse(cell, noisy, batch=29)):
        assert one.fields() == pytest.approx(other.fields(), rel=0, abs=0, nan_ok=True)


def _plateaus(cell: CellParams, lithiation: bool) -> list[float]:
    """The model's plateau potentials: its OCV branch at the middle of each phase's SOC range."""
    ranges = ((0.0, 1.0 - cell.ni_share), (1.0 - cell.ni_share, 1.0))
    out = []
    for lo, hi in ranges:
        z = np.linspace(lo, hi, 2001)[1:-1]
        e_lith, e_delith = ocv_branches(z, np.full(z.size, cell.ni_share))[:2]
        out.append(float((e_lith if lithiation else e_delith).mean()) + cell.ocv_shift_v)
    return out


def test_dqdv_peaks_sit_on_the_model_plateaus_shifted_by_the_resistive_drop() -> None:
    cell = preset("nd4mg80ni8")
    data = _simulate(cell, cc_cycles(0.1, 2), 10.0, SensorNoise())
    halves = _analyse(cell, data, batch=500)
    drop = 0.1 * cell.one_c_ma / 1000.0 * (data["r0_ohm"][-1] + data["r1_ohm"][-1])  # at 0.1C, 130 C

    assert len(halves) == 4
    for figures, lithiation in zip(halves[2:], (True, False)):  # the second cycle: past the first lithiation
        expected = [v - drop if lithiation else v + drop for v in _plateaus(cell, lithiation)]
        found = [p.v for p in figures.peaks]
        assert len(found) == 2, found
        assert np.abs(np.array(found) - expected).max() < 0.010, (found, expected)
        assert all(p.dqdv > 0 and p.seconds > 0 for p in figures.peaks)
        # The larger MgH2 plateau takes the longer time, and the curve handed out peaks there.
        assert figures.peaks[0].seconds > figures.peaks[1].seconds
        assert figures.curve_dqdv.max() == pytest.approx(max(p.dqdv for p in figures.peaks))


def test_gitt_pulses_give_the_simulators_r0_plus_rct() -> None:
    cell = preset("nd4mg80ni8")
    data = _simulate(cell, gitt(pulse_c=0.5, pulse_s=600.0, rest_s=1800.0, pulses=12), 10.0, SensorNoise())
    halves = _analyse(cell, data, batch=500)

    assert len(halves) == 2
    for h, figures in enumerate(halves):
        inside = data["half"] == h
        truth = float(np.mean(data["r0_ohm"][inside] + data["r1_ohm"][inside]))
        assert figures.pulse_count >= 10
        assert figures.pulse_hold_s == pytest.approx(analytics.HOLD_CAP_S)
        assert figures.pulse_r_ohm == pytest.approx(truth, rel=0.10)


def test_constant_current_cycles_have_no_resistance_steps() -> None:
    """A reversal swaps hysteresis branches and a cut-off leaves a partial sample: neither is a step."""
    cell = preset("nd4mg80ni8")
    halves = _analyse(cell, _simulate(cell, cc_cycles(1.0, 2), 10.0, SensorNoise()), batch=500)
    assert [f.pulse_count for f in halves] == [0, 0, 0, 0]
    assert all(np.isnan(f.pulse_r_ohm) for f in halves)


def hppc_pulses() -> list[tuple[float, float]]:
    """(ohm, hold s) of every current step of the battery-data-toolkit HPPC file."""
    record = read_archive(HPPC_FILE).only()
    t, v, i = (np.asarray(x, dtype=float)[None, :] for x in (record.t, record.v, record.i))
    an = analytics.new_analytics(np.array([3.0]), np.array([4.2]), np.array([0.19]), np.array([1.0]))
    analytics.end(an, analytics.begin(an, t, v, i, np.array([t.size])))
    return an.pulses[0]


def test_the_hppc_pulses_of_a_real_file_are_found() -> None:
    """p492-13 (NMC532/graphite pouch, ~0.19 Ah): after two C/20 cycles, an HPPC at eight
    SOC levels, each a 10 s discharge pulse at 0.095 A, logged at 5 s."""
    pulses = hppc_pulses()
    ten_s = [ohm for ohm, hold in pulses if 5.0 <= hold <= 15.0]
    assert len(ten_s) >= 8
    assert all(0.8 < ohm < 2.5 for ohm in ten_s)  # a few ohm at most for a cell of this size at 10 s
