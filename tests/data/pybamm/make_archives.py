"""Make cycler archives with PyBaMM, an external simulator, to judge the twin on.

The twin must not be judged only on data from its own simulator. This script runs
PyBaMM's SPMe with ageing for three built-in parameter sets of different chemistry
and writes, for each set ``<name>``, into this folder:

- ``<name>.csv``: the archive as a cycler would write it: ``time_s`` (from start),
  ``voltage_v``, ``current_a`` (discharge negative; PyBaMM's own sign is flipped),
  ``temp_c`` (25), with cycler noise (see ``NOISE``) and rounding.
- ``<name>.truth.csv``: noise-free charge moved per cycle (cycle = discharge then
  charge), CC and CV parts together.
- ``<name>.soc.csv``: noise-free state of charge on the archive's 10 s grid (row k
  here is row k of the archive, whose time stamp carries the jitter). Within each
  half-cycle SOC is the fraction of that half's total charge left: 1 at the top after
  the charge's CV hold, 0 at the bottom after the discharge's CV hold; rests keep it.
- ``<name>.json``: how the set was made (parameters, options, scaling, noise, fade).

Protocol, every cycle: CC discharge to the lower cut-off, hold there until C/50,
rest, CC charge to the upper cut-off, hold there until C/50, rest. The first cycle
starts fully charged and relaxed (``initial_soc=1``). Cut-offs are each set's own.

Ageing is accelerated so the discharge capacity fades by about 10 % in the run:

- chen2020 (NMC811 / graphite-SiOx, 1C): "reaction limited" SEI with the SEI exchange
  current density x10, plus reaction-driven loss of negative active material with a
  LAM factor of 3e-5 m3/mol (0 in the set). Fade is near linear.
- prada2013 (LFP / graphite, C/2): "solvent-diffusion limited" SEI; the set has no SEI
  parameters, so they are borrowed from Chen2020 (the same graphite), with the solvent
  diffusivity x1500. Fade follows a square-root law.
- marquis2019 (LiCoO2 / graphite, 2C): SEI ("reaction limited") is left at the set's
  rate, because a faster SEI *raises* this set's capacity: its positive electrode limits
  both ends of the window, so lost lithium lowers the graphite's top stoichiometry and
  the positive is charged further to reach 4.1 V. Fade comes from stress-driven loss of
  positive active material, with the mechanical parameters borrowed from Ai2020 (also
  LiCoO2 / graphite) and the LAM proportional term x4e8 (at Ai2020's value the loss is
  ~1e-9 % a cycle).

Remake (any recent PyBaMM; these were made with the version in the JSON files):

    pip install pybamm
    python tests/data/pybamm/make_archives.py
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# PyBaMM may otherwise ask on first import whether to send usage telemetry.
os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pybamm  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent
SEED = 20250101
MODEL = "SPMe"
PERIOD_S = 10.0
REST = "15 minutes"
TEMP_K = 298.15
MAX_ARCHIVE_BYTES = 2_000_000
NOISE: dict[str, float] = {
    "voltage_sigma_v": 1e-3,  # Gaussian
    "current_sigma_of_1c": 1e-3,  # Gaussian, fraction of the 1C current
    "current_offset_of_1c": 5e-4,  # constant offset, fraction of the 1C current
    "time_jitter_s": 0.2,  # uniform +-, first stamp kept at 0
}
# Step order inside one cycle of the experiment (see cycle_steps).
CC_DISCHARGE, CV_DISCHARGE, CC_CHARGE, CV_CHARGE = 0, 1, 3, 4
N_STEPS = 6

SEI_PARAMETERS = (
    "Initial SEI thickness [m]",
    "Ratio of lithium moles to SEI moles",
    "SEI partial molar volume [m3.mol-1]",
    "SEI resistivity [Ohm.m]",
    "SEI open-circuit potential [V]",
    "SEI growth activation energy [J.mol-1]",
    "SEI reaction exchange current density [A.m-2]",
    "SEI kinetic rate constant [m.s-1]",
    "SEI solvent diffusivity [m2.s-1]",
    "Bulk solvent concentration [mol.m-3]",
    "SEI electron conductivity [S.m-1]",
    "SEI lithium interstitial diffusivity [m2.s-1]",
)
MECHANICS_PARAMETERS = tuple(
    f"{electrode} electrode {name}"
    for electrode in ("Negative", "Positive")
    for name in (
        "Poisson's ratio",
        "Young's modulus [Pa]",
        "reference concentration for free of deformation [mol.m-3]",
        "partial molar volume [m3.mol-1]",
        "volume change",
        "LAM constant proportional term [s-1]",
        "LAM constant exponential term",
        "critical stress [Pa]",
    )
)


@dataclass(frozen=True)
class CellSet:
    """One archive: a PyBaMM parameter set, its protocol and its accelerated ageing."""

    name: str
    parameter_set: str
    chemistry: str
    c_rate: str  # used for both the discharge and the charge
    cycles: int
    options: dict[str, str | tuple[str, str]]
    borrowed_from: str | None = None  # a set lending ageing parameters this one lacks
    borrowed: tuple[str, ...] = ()
    multipliers: dict[str, float] = field(default_factory=dict)  # applied to the value
    overrides: dict[str, float] = field(default_factory=dict)  # set outright


CELL_SETS = (
    CellSet(
        name="chen2020",
        parameter_set="Chen2020",
        chemistry="NMC811 / graphite-SiOx (LG M50 21700; SiOx lumped into graphite)",
        c_rate="1C",
        cycles=40,
        options={"SEI": "reaction limited", "loss of active material": "reaction-driven"},
        multipliers={"SEI reaction exchange current density [A.m-2]": 10.0},
        overrides={"Negative electrode reaction-driven LAM factor [m3.mol-1]": 3e-5},
    ),
    CellSet(
        name="prada2013",
        parameter_set="Prada2013",
        chemistry="LFP / graphite (A123 ANR26650M1, flat OCV)",
        c_rate="C/2",
        cycles=30,
        options={"SEI": "solvent-diffusion limited"},
        borrowed_from="Chen2020",
        borrowed=SEI_PARAMETERS,
        multipliers={"SEI solvent diffusivity [m2.s-1]": 1500.0},
    ),
    CellSet(
        name="marquis2019",
        parameter_set="Marquis2019",
        chemistry="LiCoO2 / graphite (DUALFOIL-derived, Kokam SLPB78205130H in PyBaMM)",
        c_rate="2C",
        cycles=40,
        options={"SEI": "reaction limited", "loss of active material": ("none", "stress-driven")},
        borrowed_from="Ai2020",
        borrowed=MECHANICS_PARAMETERS,
        multipliers={"Positive electrode LAM constant proportional term [s-1]": 4e8},
    ),
)


@dataclass
class Truth:
    """Noise-free results of one run, taken from PyBaMM's solution variables."""

    grid_s: np.ndarray  # the 10 s sampling grid
    voltage_v: np.ndarray  # on the grid
    current_a: np.ndarray  # on the grid, discharge negative
    soc: np.ndarray  # on the grid
    discharge_ah: np.ndarray  # per cycle, CC + CV
    charge_ah: np.ndarray  # per cycle, CC + CV


def build_parameters(cell: CellSet) -> pybamm.ParameterValues:
    """The set's parameters at 25 C, with borrowed and scaled ageing parameters."""
    params = pybamm.ParameterValues(cell.parameter_set)
    params.update({"Ambient temperature [K]": TEMP_K, "Initial temperature [K]": TEMP_K})
    if cell.borrowed_from is not None:
        donor = pybamm.ParameterValues(cell.borrowed_from)
        params.update({k: donor[k] for k in cell.borrowed}, check_already_exists=False)
    params.update({k: params[k] * factor for k, factor in cell.multipliers.items()})
    params.update(dict(cell.overrides))
    return params


def cycle_steps(c_rate: str, v_min: float, v_max: float) -> tuple[str, ...]:
    """One cycle as PyBaMM experiment strings, in the order the step indices name."""
    return (
        f"Discharge at {c_rate} until {v_min:g} V",
        f"Hold at {v_min:g} V until C/50",
        f"Rest for {REST}",
        f"Charge at {c_rate} until {v_max:g} V",
        f"Hold at {v_max:g} V until C/50",
        f"Rest for {REST}",
    )


def extract_truth(solution: pybamm.Solution) -> Truth:
    """Per-cycle capacities and the SOC / voltage / current on the 10 s grid."""
    times, volts, amps, socs, q_dis, q_chg = [], [], [], [], [], []
    for cycle in solution.cycles:
        if len(cycle.steps) != N_STEPS:
            raise RuntimeError(f"a cycle ran {len(cycle.steps)} steps, expected {N_STEPS}")
        q = [step["Discharge capacity [A.h]"].entries for step in cycle.steps]
        discharged = q[CV_DISCHARGE][-1] - q[CC_DISCHARGE][0]
        charged = q[CC_CHARGE][0] - q[CV_CHARGE][-1]
        q_dis.append(discharged)
        q_chg.append(charged)
        for k, step in enumerate(cycle.steps):
            if k < CC_CHARGE:  # discharge half and the rest after it
                soc = 1.0 - (q[k] - q[CC_DISCHARGE][0]) / discharged
            else:  # charge half and the rest after it
                soc = (q[CC_CHARGE][0] - q[k]) / charged
            times.append(step["Time [s]"].entries)
            volts.append(step["Voltage [V]"].entries)
            amps.append(-step["Current [A]"].entries)  # PyBaMM: discharge positive
            socs.append(np.clip(soc, 0.0, 1.0))
    t = np.concatenate(times)
    keep = np.r_[True, np.diff(t) > 0]  # steps share their boundary instant
    t = t[keep]
    grid = np.arange(0.0, t[-1], PERIOD_S)
    return Truth(
        grid_s=grid,
        voltage_v=np.interp(grid, t, np.concatenate(volts)[keep]),
        current_a=np.interp(grid, t, np.concatenate(amps)[keep]),
        soc=np.interp(grid, t, np.concatenate(socs)[keep]),
        discharge_ah=np.array(q_dis),
        charge_ah=np.array(q_chg),
    )


def write_files(cell: CellSet, truth: Truth, meta: dict[str, object], seed: int) -> None:
    """The noisy archive, the per-cycle truth, the SOC truth and the JSON record."""
    rng = np.random.default_rng(seed)
    n = truth.grid_s.size
    i_1c = float(meta["current_1c_a"])
    stamps = truth.grid_s + rng.uniform(-NOISE["time_jitter_s"], NOISE["time_jitter_s"], n)
    stamps[0] = 0.0
    volts = truth.voltage_v + rng.normal(0.0, NOISE["voltage_sigma_v"], n)
    amps = (
        truth.current_a
        + rng.normal(0.0, NOISE["current_sigma_of_1c"] * i_1c, n)
        + NOISE["current_offset_of_1c"] * i_1c
    )
    np.savetxt(
        OUT_DIR / f"{cell.name}.csv",
        np.column_stack([stamps, volts, amps, np.full(n, TEMP_K - 273.15)]),
        fmt=["%.2f", "%.4f", "%.5f", "%.0f"],
        delimiter=",",
        header="time_s,voltage_v,current_a,temp_c",
        comments="",
    )
    cycles = np.arange(1, truth.discharge_ah.size + 1)
    np.savetxt(
        OUT_DIR / f"{cell.name}.truth.csv",
        np.column_stack([cycles, truth.discharge_ah, truth.charge_ah]),
        fmt=["%d", "%.6f", "%.6f"],
        delimiter=",",
        header="cycle,discharge_capacity_ah,charge_capacity_ah",
        comments="",
    )
    np.savetxt(
        OUT_DIR / f"{cell.name}.soc.csv",
        np.column_stack([truth.grid_s, truth.soc]),
        fmt=["%.0f", "%.6f"],
        delimiter=",",
        header="time_s,soc_true",
        comments="",
    )
    (OUT_DIR / f"{cell.name}.json").write_text(json.dumps(meta, indent=2) + "\n")


def make(cell: CellSet, seed: int) -> dict[str, object]:
    """Simulate one set, write its four files and return its JSON record."""
    params = build_parameters(cell)
    v_min = float(params["Lower voltage cut-off [V]"])
    v_max = float(params["Upper voltage cut-off [V]"])
    capacity = float(params["Nominal cell capacity [A.h]"])
    steps = cycle_steps(cell.c_rate, v_min, v_max)
    experiment = pybamm.Experiment([steps] * cell.cycles, period=f"{PERIOD_S:g} seconds")
    model = getattr(pybamm.lithium_ion, MODEL)(dict(cell.options))
    simulation = pybamm.Simulation(model, parameter_values=params, experiment=experiment)
    solution = simulation.solve(initial_soc=1.0)
    if len(solution.cycles) != cell.cycles:
        raise RuntimeError(f"{cell.name}: ran {len(solution.cycles)} of {cell.cycles} cycles")
    truth = extract_truth(solution)
    base = pybamm.ParameterValues(cell.parameter_set)
    meta: dict[str, object] = {
        "parameter_set": cell.parameter_set,
        "chemistry": cell.chemistry,
        "model": MODEL,
        "options": cell.options,
        "pybamm_version": pybamm.__version__,
        "v_min": v_min,
        "v_max": v_max,
        "nominal_capacity_ah": capacity,
        "current_1c_a": capacity,
        "c_rate_discharge": cell.c_rate,
        "c_rate_charge": cell.c_rate,
        "protocol_per_cycle": list(steps),
        "initial_soc": 1.0,
        "temperature_c": TEMP_K - 273.15,
        "ageing_scaling": {
            "borrowed_from": cell.borrowed_from,
            "borrowed_parameters": list(cell.borrowed),
            "multipliers": cell.multipliers,
            "overrides": {
                k: {"set_value": base[k] if k in base.keys() else None, "used": v}
                for k, v in cell.overrides.items()
            },
        },
        "seed": seed,
        "noise": NOISE,
        "rounding": {"time_s": 0.01, "voltage_v": 1e-4, "current_a": 1e-5},
        "sampling_period_s": PERIOD_S,
        "cycles": cell.cycles,
        "first_discharge_capacity_ah": float(truth.discharge_ah[0]),
        "last_discharge_capacity_ah": float(truth.discharge_ah[-1]),
        "total_fade": float(truth.discharge_ah[-1] / truth.discharge_ah[0] - 1.0),
    }
    write_files(cell, truth, meta, seed)
    return meta


def self_check(cell: CellSet) -> None:
    """Read the files back and assert what users of the archives rely on."""
    archive = np.loadtxt(OUT_DIR / f"{cell.name}.csv", delimiter=",", skiprows=1)
    truth = np.loadtxt(OUT_DIR / f"{cell.name}.truth.csv", delimiter=",", skiprows=1)
    soc = np.loadtxt(OUT_DIR / f"{cell.name}.soc.csv", delimiter=",", skiprows=1)
    meta = json.loads((OUT_DIR / f"{cell.name}.json").read_text())
    t, amps = archive[:, 0], archive[:, 2]
    assert np.all(np.diff(t) > 0), "time stamps must increase strictly"
    assert archive.shape[0] == soc.shape[0], "SOC truth must be on the archive's grid"
    assert np.all((soc[:, 1] >= 0.0) & (soc[:, 1] <= 1.0)), "SOC out of [0, 1]"
    d_soc = np.diff(soc[:, 1])
    assert amps[1:][d_soc < 0].mean() < 0 < amps[1:][d_soc > 0].mean(), (
        "current must be negative while discharging"
    )
    discharged = -np.sum(np.minimum(amps[1:], 0.0) * np.diff(t)) / 3600.0
    assert abs(discharged / truth[:, 1].sum() - 1.0) < 0.01, "archive charge != truth"
    assert truth.shape[0] == meta["cycles"] >= 30, "need at least 30 cycles"
    assert -0.20 <= meta["total_fade"] <= -0.03, f"fade {meta['total_fade']:.3f} not 3-20 %"
    size = (OUT_DIR / f"{cell.name}.csv").stat().st_size
    assert size < MAX_ARCHIVE_BYTES, f"archive is {size} bytes"


def main() -> None:
    print(f"PyBaMM {pybamm.__version__}, model {MODEL}, writing to {OUT_DIR}")
    for index, cell in enumerate(CELL_SETS):
        start = time.perf_counter()
        meta = make(cell, SEED + index)
        self_check(cell)
        sizes = ", ".join(
            f"{p.name} {p.stat().st_size / 1e3:.0f} kB"
            for p in sorted(OUT_DIR.glob(f"{cell.name}.*"))
        )
        print(
            f"{cell.name}: {meta['cycles']} cycles at {cell.c_rate}, "
            f"{meta['v_min']:g}-{meta['v_max']:g} V, discharge "
            f"{meta['first_discharge_capacity_ah']:.4f} -> "
            f"{meta['last_discharge_capacity_ah']:.4f} Ah "
            f"(fade {100 * meta['total_fade']:.1f} %), "
            f"{time.perf_counter() - start:.0f} s; {sizes}; self-check passed"
        )


if __name__ == "__main__":
    main()
