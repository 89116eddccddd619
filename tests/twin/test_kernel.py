"""The compiled kernel (`twin.kernel.step_frame`) against the numpy path (`estimator.step`).

Each stream is stepped twice from one starting tracker: sample by sample with `step`, and
in frames of uneven lengths with `step_frame`. Every output of every sample, every closed
half-cycle and the final tracker must agree within 1e-9 plus 1e-11 of the value (two float
paths agree only to rounding relative to a value's size, and mAh/g runs near 1000). The
streams are made to reach the rare paths (first sample, knees, outliers, restarts,
half-cycle ends, gaps, NaN, time going backwards, implausible currents), and each test
checks that they did."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from twin import estimator as est
from twin.generic import generic_params, soc_grid
from twin.kernel import FrameOutput, step_frame
from twin.params import preset
from twin.protocol import cc_cycles, rate_ladder
from twin.simulator import Faults, SensorNoise, Simulation, vary

TOL = 1e-9
RTOL = 1e-11
_VALUES = ("soc", "soc_std", "capacity_mah", "r0_ohm", "r1_ohm", "hysteresis", "v_residual", "nis",
           "capacity_std_mah", "r0_std_ohm", "r1_std_ohm", "first_capacity_mah", "r_base")


def _stream(sim: Simulation) -> dict[str, np.ndarray]:
    blocks = list(sim.blocks(block_ticks=100_000))
    n = len(sim.cells)
    cat = {name: np.concatenate([getattr(b, name) for b in blocks], axis=1) for name in ("v", "i", "temp_c", "valid")}
    cat["t"] = np.broadcast_to(np.concatenate([b.t for b in blocks]), (n, cat["v"].shape[1])).copy()
    return cat


def _spoil(s: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """What cyclers send besides good samples: NaN, time going back, absurd currents and
    temperatures, and a stretch of voltages far off (the filter must restart)."""
    n, width = s["v"].shape
    for name in ("t", "v", "i", "temp_c"):
        s[name][rng.random((n, width)) < 0.003] = np.nan
    back = rng.random((n, width)) < 0.002
    s["t"][back] -= 50.0
    s["i"][rng.random((n, width)) < 0.002] = 1e3
    s["temp_c"][rng.random((n, width)) < 0.002] = 400.0
    for k in range(n):
        start = width // 3 + 17 * k
        s["v"][k, start : start + 8] += 0.12  # mid-plateau: gated, not a knee; five in a row restart


def _reference(tr: est.Tracker, s: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list]:
    cols: dict[str, list] = {name: [] for name in (*_VALUES, "flags")}
    halves = []
    for k in range(s["t"].shape[1]):
        o = est.step(tr, s["t"][:, k], s["v"][:, k], s["i"][:, k], s["temp_c"][:, k], s["valid"][:, k])
        for name in cols:
            cols[name].append(getattr(o, name))
        halves += o.halves
    return {name: np.array(c).T for name, c in cols.items()}, halves


def _in_frames(tr: est.Tracker, s: dict[str, np.ndarray], lengths: list[int]) -> tuple[dict[str, np.ndarray], list]:
    """step_frame over consecutive frames of the given lengths (the rest in one)."""
    width = s["t"].shape[1]
    edges = [0, *np.cumsum(lengths)[np.cumsum(lengths) < width].tolist(), width]
    parts: list[FrameOutput] = []
    for a, b in zip(edges[:-1], edges[1:]):
        parts.append(step_frame(tr, *(s[name][:, a:b] for name in ("t", "v", "i", "temp_c", "valid"))))
    cols = {name: np.concatenate([getattr(p, name) for p in parts], axis=1) for name in (*_VALUES, "flags")}
    return cols, [h for p in parts for h in p.halves]


def _assert_same(tr0: est.Tracker, s: dict[str, np.ndarray], lengths: list[int]) -> dict[str, np.ndarray]:
    ref_tr, ker_tr = copy.deepcopy(tr0), copy.deepcopy(tr0)
    ref, ref_halves = _reference(ref_tr, s)
    got, got_halves = _in_frames(ker_tr, s, lengths)
    np.testing.assert_array_equal(got["flags"], ref["flags"])
    for name in _VALUES:
        np.testing.assert_allclose(got[name], ref[name], rtol=RTOL, atol=TOL, equal_nan=True, err_msg=name)
    assert len(got_halves) == len(ref_halves)
    for mine, theirs in zip(got_halves, ref_halves):
        for f in fields(est.HalfCycle):
            a, b = getattr(mine, f.name), getattr(theirs, f.name)
            if isinstance(a, float):
                np.testing.assert_allclose(a, b, rtol=RTOL, atol=TOL, equal_nan=True, err_msg=f.name)
            else:
                assert a == b, f.name
    for f in fields(est.Tracker):
        np.testing.assert_allclose(getattr(ker_tr, f.name), getattr(ref_tr, f.name), rtol=RTOL, atol=TOL,
                                   equal_nan=True, err_msg=f.name)
    return ref | {"halves": ref_halves}


def _seen(ref: dict, flag: int) -> bool:
    return bool((ref["flags"] & flag).any())


def test_hydride_fleet_with_faults_matches_numpy_step():
    """Cells of both presets with their spread, gaps, spikes, a temperature sag and
    spoiled samples, over a C-rate ladder: every rare path of the estimator is taken."""
    rng = np.random.default_rng(3)
    cells = vary(preset("nd4mg80ni8"), 3, rng) + vary(preset("mgh2"), 2, rng)
    faults = Faults(dropout_prob=0.02, spike_prob=0.01, temp_sag_start_s=20_000.0)
    sim = Simulation(cells, rate_ladder(1, (0.5, 1.0, 2.0)), dt=10.0, noise=SensorNoise(), faults=faults, seed=5)
    s = _stream(sim)
    _spoil(s, rng)
    s["t"][:, 900:] += 3600.0  # an hour without data: FLAG_GAP
    ref = _assert_same(est.new_tracker(cells), s, [1, 2, 37, 500, 1])
    for flag in (est.FLAG_NONFINITE, est.FLAG_TIME, est.FLAG_IMPLAUSIBLE, est.FLAG_GAP, est.FLAG_OUTLIER,
                 est.FLAG_RECOVERED, est.FLAG_KNEE, est.FLAG_UNCONVERGED):
        assert _seen(ref, flag), f"the stream never set flag {flag}"
    assert not s["valid"].all()
    assert len(ref["halves"]) >= 5 * len(cells)


def test_one_cell_long_stream_matches_numpy_step():
    """One cell, 1-D input, six cycles at 1 s: the single-cell case the kernel is for, in
    frames like the pipeline's."""
    cell = preset("nd4mg80ni8")
    sim = Simulation([cell], cc_cycles(2.0, 6), dt=2.0, noise=SensorNoise(), faults=Faults(spike_prob=0.005), seed=2)
    s = _stream(sim)
    ref_tr, ker_tr = est.new_tracker([cell]), est.new_tracker([cell])
    ref, ref_halves = _reference(ref_tr, s)
    got = step_frame(ker_tr, s["t"][0], s["v"][0], s["i"][0], s["temp_c"][0], s["valid"][0])
    np.testing.assert_array_equal(got.flags, ref["flags"])
    np.testing.assert_allclose(got.soc, ref["soc"], rtol=RTOL, atol=TOL)
    assert [h.t for h in got.halves] == [h.t for h in ref_halves] and len(ref_halves) >= 10
    np.testing.assert_allclose([h.crack_risk for h in got.halves], [h.crack_risk for h in ref_halves], rtol=RTOL, atol=TOL)
    assert got.half_samples == [int(np.flatnonzero(s["t"][0] == h.t)[0]) for h in ref_halves]
    for k in (0, got.half_samples[3], s["t"].shape[1] - 1):
        one = got.at(k)
        assert one.halves == [h for h, j in zip(got.halves, got.half_samples) if j == k]
        assert one.flags[0] == ref["flags"][0, k]
        np.testing.assert_allclose(one.r_base[0], ref["r_base"][0, k], rtol=RTOL, atol=TOL, equal_nan=True)
    assert np.isnan(ref["first_capacity_mah"][0, 0]) and np.isfinite(ref["first_capacity_mah"][0, -1])


def _generic_cell(name: str, capacity_mah: float, r_ohm: float):
    z = soc_grid()
    delith = 3.0 + 1.1 * z - 0.25 * np.exp(-z / 0.04) + 0.12 * np.exp(-(1 - z) / 0.03) + 0.05 * np.sin(3 * z)
    return generic_params(name, capacity_mah, 2.9, 4.2, np.stack([delith - 0.1, delith]), r_ohm=r_ohm)


def test_generic_and_hydride_cells_in_one_tracker_match_numpy_step():
    """Tabled (generic) cells beside hydride cells, SOC started from a given value for
    some: the table interpolation and its temperature-free resistance in the kernel,
    halves that end in a rest (a learned cell's half ends at its last active sample), and
    branch switches far faster than the twin's default rate, read off the voltage."""
    generic = [_generic_cell("a", 2000.0, 0.04), _generic_cell("b", 1500.0, 0.06)]
    gsim = Simulation([c.with_(hysteresis_rate=1000.0) for c in generic],
                      cc_cycles(0.5, 2, rest_s=300.0, v_min=2.9, v_max=4.2), dt=20.0, noise=SensorNoise(),
                      faults=Faults(dropout_prob=0.05, spike_prob=0.01), seed=9)
    hsim = Simulation([preset("mgh2")], cc_cycles(1.0, 3), dt=10.0, noise=SensorNoise(), seed=4)
    g, h = _stream(gsim), _stream(hsim)
    width = min(g["t"].shape[1], h["t"].shape[1])
    s = {name: np.concatenate([g[name][:, :width], h[name][:, :width]]) for name in g}
    cells = [*generic, preset("mgh2")]
    ref = _assert_same(est.concat([est.new_tracker(generic, soc0=1.0), est.new_tracker(cells[2:])]), s, [64, 1000])
    assert {half.cell for half in ref["halves"]} == {0, 1, 2}
    assert (np.abs(g["i"][:, :width]) < 0.01).sum() > 20  # rests inside the compared stretch
    # The default rate moves the branch state by 0.16 per sample here: a larger step is the
    # voltage's, and the filter is not restarted for the switch it did not expect.
    assert (np.abs(np.diff(ref["hysteresis"][:2], axis=1)) > 0.5).any()
    assert not _seen({"flags": ref["flags"][:2]}, est.FLAG_RECOVERED)


def test_frame_shapes_are_checked():
    tr = est.new_tracker([preset("mgh2")] * 2)
    with pytest.raises(ValueError, match="shape"):
        step_frame(tr, np.zeros(5), np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="one shape"):
        step_frame(tr, np.zeros((2, 5)), np.zeros((2, 4)), np.zeros((2, 5)))


def test_warm_up_loads_the_one_signature_that_frames_use():
    # In a fresh process (here the kernel has long been loaded): nothing is loaded before the
    # warm-up, and a real frame of another shape after it needs no second compiled version.
    code = ("import numpy as np\n"
            "from twin import estimator as est, kernel\n"
            "from twin.params import preset\n"
            "before = len(kernel._run.signatures)\n"
            "kernel.warm_up()\n"
            "warmed = len(kernel._run.signatures)\n"
            "t = np.arange(6.0).reshape(3, 2).astype(np.float32)\n"
            "cells = est.new_tracker([preset('mgh2')] * 3)\n"
            "kernel.step_frame(cells, t, np.full((3, 2), 0.5), np.full((3, 2), -1e-3))\n"
            "print(before, warmed, len(kernel._run.signatures))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "1", "1"]
