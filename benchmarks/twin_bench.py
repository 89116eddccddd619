"""Speed of the twin: simulator and estimator. Prints figures; asserts nothing.

    python benchmarks/twin_bench.py

Timings on a shared machine are noisy: compare ratios from one run.
"""

from __future__ import annotations

import pickle
import time


from twin import estimator as est
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import SensorNoise, Simulation


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
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


def _stream(n_cells: int, n_ticks: int):
    sim = Simulation([preset("nd4mg80ni8")] * n_cells, cc_cycles(1.0, 1), dt=1.0, noise=SensorNoise())
    b = next(sim.blocks(block_ticks=n_ticks))
    return b


def estimator() -> None:
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
    one = est.new_tracker([cell])
    print(f"pickled state of one cell: {len(pickle.dumps(one))} bytes; "
          f"per cell in a 1000-cell tracker: {len(pickle.dumps(est.new_tracker([cell] * 1000))) / 1000:.0f} bytes")


if __name__ == "__main__":
    simulator()
    estimator()
