"""Helpers that run the estimator over a simulated cycler stream whose truth is known."""

from dataclasses import dataclass

import numpy as np

from twin import estimator as est
from twin.simulator import Simulation


@dataclass
class Run:
    soc: np.ndarray  # (T, N) estimates
    soc_std: np.ndarray
    soc_true: np.ndarray
    capacity: np.ndarray
    capacity_true: np.ndarray
    r0: np.ndarray
    r0_true: np.ndarray
    r1: np.ndarray
    r1_true: np.ndarray
    halves: list
    first_half_end: np.ndarray  # (N,) sample index where each cell's first half-cycle closed
    tracker: est.Tracker


def run_estimator(sim: Simulation, filter_cells, soc0=1.0) -> Run:
    tr = est.new_tracker(filter_cells, soc0=soc0)
    cols = {k: [] for k in ("soc", "soc_std", "soc_true", "capacity", "capacity_true", "r0", "r0_true", "r1", "r1_true")}
    halves, first = [], np.full(len(filter_cells), -1)
    for b in sim.blocks():
        for k in range(b.t.size):
            o = est.step(tr, b.t[k], b.v[:, k], b.i[:, k], b.temp_c[:, k], present=b.valid[:, k])
            for h in o.halves:
                if first[h.cell] < 0:
                    first[h.cell] = len(cols["soc"])
            halves += o.halves
            for name, val in (("soc", o.soc), ("soc_std", o.soc_std), ("soc_true", b.soc[:, k]),
                              ("capacity", o.capacity_mah), ("capacity_true", b.capacity_mah[:, k]),
                              ("r0", o.r0_ohm), ("r0_true", b.r0_ohm[:, k]), ("r1", o.r1_ohm), ("r1_true", b.r1_ohm[:, k])):
                cols[name].append(val)
    return Run(**{k: np.array(v) for k, v in cols.items()}, halves=halves, first_half_end=first, tracker=tr)
