"""Speed of the twin: simulator and estimator. Prints figures; asserts nothing.

    python benchmarks/twin_bench.py [--only simulator estimator kernel compile]

The estimator three ways in one run: the batched numpy path, the filterpy path (both one
sample per call) and the compiled kernel (`twin.kernel.step_frame`, a frame per call; also
per CPU second, which waiting for a core on a shared machine does not disturb), then what
the kernel's compilation costs a first run, with a cold and a warm cache.

Timings on a shared machine are noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from twin import estimator as est
from twin import kernel
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation


def _best_of(fn, repeats: int = 3, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def simulator() -> None:
    cell = preset("nd4mg80ni8")
    for dt in (10.0, 1.0):
        sim = Simulation([cell], cc_cycles(1.0, 100), dt=dt, noise=SensorNoise())
        t0 = time.perf_counter()
        ticks = sum(b.t.size for b in sim.blocks(block_ticks=4096))
        el = time.perf_counter() - t0
        print(f"simulate 100 cycles, 1 cell, 1C, dt={dt:>4} s: {el:6.2f} s  ({ticks} samples, {ticks / el:,.0f} samples/s)")
    cells = [cell] * 100
    sim = Simulation(cells, cc_cycles(1.0, 10), dt=10.0, noise=SensorNoise())
    t0 = time.perf_counter()
    ticks = sum(b.t.size for b in sim.blocks(block_ticks=4096))
    el = time.perf_counter() - t0
    print(f"simulate 10 cycles, 100 cells, 1C, dt=10 s: {el:6.2f} s  ({100 * ticks / el:,.0f} cell-samples/s)")


def _stream(n_cells: int, n_ticks: int, cycles: int = 1):
    sim = Simulation([preset("nd4mg80ni8")] * n_cells, cc_cycles(1.0, cycles), dt=1.0, noise=SensorNoise())
    b = next(sim.blocks(block_ticks=n_ticks))
    return b


def estimator() -> None:
    """The numpy and filterpy paths, a sample per call."""
    cell = preset("nd4mg80ni8")
    paths = (("batched numpy path", est.step, ((1, 2000), (100, 400), (1000, 200), (10000, 40))),
             ("filterpy path", est.step_filterpy, ((1, 2000), (200, 20))))
    for label, step, sizes in paths:
        for n_cells, n_ticks in sizes:
            b = _stream(n_cells, n_ticks)
            tr = est.new_tracker([cell] * n_cells)

            def run() -> None:
                for k in range(b.t.size):
                    step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k])

            el = _best_of(run, 1)
            print(f"{label + ',':<20}{n_cells:>5} cells: {n_cells * b.t.size / el:>12,.0f} updates/s")


def compiled_kernel() -> None:
    cell = preset("nd4mg80ni8")
    # The kernel: whole frames per call, its rare events (first sample, knees, half-cycle
    # ends) stepped by the numpy path inside; the 1-cell stream spans several half-cycles.
    for n_cells, n_ticks, cycles in ((1, 80_000, 10), (1000, 2000, 1)):
        b = _stream(n_cells, n_ticks, cycles)
        t = np.broadcast_to(b.t, b.v.shape)
        kernel.step_frame(est.new_tracker([cell] * n_cells), t[:, :50], b.v[:, :50], b.i[:, :50], b.temp_c[:, :50])
        trackers = [est.new_tracker([cell] * n_cells) for _ in range(3)]
        el = _best_of(lambda: kernel.step_frame(trackers.pop(), t, b.v, b.i, b.temp_c, b.valid))
        trackers = [est.new_tracker([cell] * n_cells) for _ in range(3)]
        cpu = _best_of(lambda: kernel.step_frame(trackers.pop(), t, b.v, b.i, b.temp_c, b.valid), clock=time.process_time)
        print(f"{'compiled kernel,':<20}{n_cells:>5} cells: {b.v.size / el:>12,.0f} updates/s, "
              f"{b.v.size / cpu:>12,.0f} per CPU second ({b.t.size} samples per cell, one core)")
    one = est.new_tracker([cell])
    print(f"pickled state of one cell: {len(pickle.dumps(one))} bytes; "
          f"per cell in a 1000-cell tracker: {len(pickle.dumps(est.new_tracker([cell] * 1000))) / 1000:.0f} bytes")


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from twin import estimator as est, forecast, kernel
from twin.params import preset
t1 = time.perf_counter()
tr = est.new_tracker([preset("mgh2")])
t = np.arange(100.0)
kernel.step_frame(tr, t, np.full(100, 0.5), np.full(100, -1e-3))
forecast.end_of_life(10.0, 0.01, 0.01, 0.3, 0.95, 1e-4, 1.0, 0.8)  # compiled too: the first half's end
t2 = time.perf_counter()
kernel.step_frame(tr, t + 100.0, np.full(100, 0.5), np.full(100, -1e-3))
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def compile_cost() -> None:
    """A fresh process: import, then the first step_frame call and the first end-of-life
    forecast (compile or cache load)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        for label in ("cold cache (a fresh install)", "warm cache (every later run)"):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True, capture_output=True, text=True)
            imported, first, second = map(float, out.stdout.split())
            print(f"kernel first call, {label}: {first:6.2f} s (import {imported:.2f} s, next call {second * 1e3:.1f} ms)")


_PARTS = {"simulator": simulator, "estimator": estimator, "kernel": compiled_kernel, "compile": compile_cost}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(_PARTS), default=list(_PARTS), help="parts to run")
    for part in parser.parse_args().only:
        _PARTS[part]()
