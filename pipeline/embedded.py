"""The simulated fleet of an embedded run: which cells, on which protocol.

By default (preset `mixed`) cells alternate between the two presets the twin is
calibrated on, the Nd2H5-framed composite (`nd4mg80ni8`) and plain MgH2 (`mgh2`), so
even the smallest run shows the framework's effect; one preset or a composition for all
cells can be chosen instead. Each simulated cell differs a little from its preset (`vary`:
manufacturing spread); the metadata handed to the twin is the nominal preset, as a
lab would file it, so the twin has to find the differences itself.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from connectors.config import SimulatorConfig
from connectors.wire import CellMeta
from twin.params import fleet_labels, preset
from twin.protocol import cc_cycles
from twin.simulator import Simulation, vary

__all__ = ["MASS_MG", "simulated_fleet"]

MASS_MG = 1.0  # the paper's cells: 1 mg of hydride


def simulated_fleet(cfg: SimulatorConfig) -> tuple[list[CellMeta], partial[Simulation]]:
    """The cells' metadata and a factory of the (deterministic) simulation."""
    names = fleet_labels(cfg.composition or cfg.preset, cfg.cells)
    kind = "composition" if cfg.composition else "preset"
    metas = [CellMeta(cell=f"sim-{k + 1:02d}", mass_mg=MASS_MG, c_rate=cfg.c_rate, **{kind: name})
             for k, name in enumerate(names)]
    rng = np.random.default_rng(cfg.seed)
    varied = {name: iter(vary(preset(name, MASS_MG), names.count(name), rng)) for name in dict.fromkeys(names)}
    cells = [next(varied[name]) for name in names]
    return metas, partial(Simulation, cells, cc_cycles(cfg.c_rate, cfg.cycles, rest_s=60.0 * cfg.rest_min), dt=cfg.dt, seed=cfg.seed)
