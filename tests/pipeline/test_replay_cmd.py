"""`celltwin replay` from the command line: parse report, mass required, units, joined files, outputs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from connectors.wire import OUT_CYCLES, OUT_DEADLETTER, OUT_ESTIMATES, OUT_REPORT
from pipeline.cli import app
from pipeline.report_data import VALIDATION_FILE, load_validation
from pipeline.validation import verdicts
from tests.connectors.readers.cycler_writers import Synthetic, write_bdf
from twin.generic import generic_params, soc_grid
from twin.params import preset
from twin.protocol import cc_cycles
from twin.simulator import HalfCycleTruth, Simulation

runner = CliRunner()


@pytest.fixture(scope="module")
def cell() -> tuple[Synthetic, list[HalfCycleTruth]]:
    """One composite cell (1 mg), two 1C cycles sampled every 5 s, with sensor noise."""
    sim = Simulation([preset("nd4mg80ni8", mass_mg=1.0)], cc_cycles(1.0, 2), dt=5.0, seed=7)
    blocks = list(sim.blocks())
    t = np.concatenate([b.t for b in blocks])
    i = np.concatenate([b.i[0] for b in blocks])
    synthetic = Synthetic(t, np.concatenate([b.v[0] for b in blocks]), i, np.full(t.size, 130.0),
                          np.concatenate([b.cycle[0] for b in blocks]).astype(int), np.where(i < 0, 1, 3))
    return synthetic, sim.truth


def _replay(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, ["replay", *map(str, args)])
    return result.exit_code, result.output


def test_replay_prints_the_parse_report_and_leaves_run_outputs_and_validation(cell, tmp_path: Path) -> None:
    path = write_bdf(tmp_path / "A7.csv", cell[0])
    out = tmp_path / "out"

    code, output = _replay(path, "--cell", "A7", "--mass-mg", "1", "--out", out)

    assert code == 0, output
    assert f"{len(cell[0].t)} rows read, {len(cell[0].t)} kept, 0 rejected" in output
    assert "units: " in output and "sign: " in output and "nd4mg80ni8" in output
    for name in (OUT_ESTIMATES, OUT_CYCLES, OUT_DEADLETTER, VALIDATION_FILE, OUT_REPORT):
        assert (out / name).exists(), name
    table = load_validation(out)
    assert table is not None and set(table["cell"]) == {"A7"}
    assert [v.tracks for v in verdicts(table)] == [True]
    assert "tracks within its own uncertainty" in output
    assert "Validation: measured vs twin" in (out / OUT_REPORT).read_text()


def test_without_a_mass_the_replay_stops_and_says_how_to_give_one(cell, tmp_path: Path) -> None:
    path = write_bdf(tmp_path / "A7.csv", cell[0])
    code, output = _replay(path, "--out", tmp_path / "out")

    assert code == 2
    assert "has no hydride mass" in output and "--mass-mg" in output
    assert not (tmp_path / "out").exists()

    config = tmp_path / "cells.toml"
    config.write_text('[cells.A7]\npreset = "nd4mg80ni8"\nmass_mg = 1.0\n')
    code, output = _replay(path, "--config", config, "--out", tmp_path / "out", "--no-report")
    assert code == 0, output
    assert not (tmp_path / "out" / OUT_REPORT).exists()


def test_a_csv_of_time_volts_amps_needs_one_error_to_be_read(cell, tmp_path: Path) -> None:
    synthetic, _ = cell
    path = tmp_path / "A7.csv"
    rows = zip((synthetic.t - synthetic.t[0]).tolist(), synthetic.v.tolist(), synthetic.i.tolist())
    path.write_text("time,volts,amps\n" + "".join(f"{t:g},{v!r},{i!r}\n" for t, v, i in rows))

    code, output = _replay(path, "--out", tmp_path / "out", "--no-report")
    assert code == 2
    words = " ".join(output.replace("│", " ").split())
    assert "--unit time=s" in words and "--mass-mg" in words  # everything still needed, in one message
    code, output = _replay(path, "--unit", "time=s", "--mass-mg", "1", "--start", "2026-01-01T00:00",
                           "--out", tmp_path / "out", "--no-report")
    assert code == 0, output
    assert "columns: time='time', voltage='volts', current='amps'" in output
    assert [v.tracks for v in verdicts(load_validation(tmp_path / "out"))] == [True]


def test_a_header_that_lies_about_the_unit_is_caught_and_fixed(cell, tmp_path: Path) -> None:
    synthetic, truth = cell
    in_ma = Synthetic(synthetic.t, synthetic.v, synthetic.i * 1000.0, synthetic.temp_c, synthetic.cycle,
                      synthetic.step)
    path = write_bdf(tmp_path / "A7.csv", in_ma)  # "Current / A" over milliamperes

    code, output = _replay(path, "--mass-mg", "1", "--out", tmp_path / "wrong")
    assert code == 0, output
    assert "does not track" in output  # a thousandfold current: the twin cannot follow it

    code, output = _replay(path, "--mass-mg", "1", "--unit", "current=mA", "--out", tmp_path / "right")
    assert code == 0, output
    table = load_validation(tmp_path / "right")
    assert [v.tracks for v in verdicts(table)] == [True]
    first = next(x for x in truth if x.half == "discharge")
    assert table["measured_discharge_mah"][0] == pytest.approx(first.capacity_mah, rel=0.02)


def test_files_of_one_cell_are_joined_in_time_order_and_must_not_overlap(cell, tmp_path: Path) -> None:
    synthetic, _ = cell
    half = synthetic.t.size // 2

    def part(name: str, index: slice) -> Path:
        piece = Synthetic(*(getattr(synthetic, f)[index] for f in ("t", "v", "i", "temp_c", "cycle", "step")))
        return write_bdf(tmp_path / name, piece)

    late, early = part("late.csv", slice(half, None)), part("early.csv", slice(None, half))
    code, output = _replay(late, early, "--cell", "A7", "--mass-mg", "1", "--out", tmp_path / "out")
    assert code == 0, output
    table = load_validation(tmp_path / "out")
    assert list(table["cycle"]) == [1, 2]

    overlapping = part("again.csv", slice(half - 10, half + 10))
    code, output = _replay(early, overlapping, "--cell", "A7", "--mass-mg", "1", "--out", tmp_path / "x")
    assert code == 2 and "overlap in time" in output


def test_bad_options_are_refused_before_anything_runs(cell, tmp_path: Path) -> None:
    path = write_bdf(tmp_path / "A7.csv", cell[0])
    for args, message in ((("--speed", "fast"), "positive number or 'max'"),
                          (("--map", "volts"), "not role=COLUMN"),
                          (("--unit", "flux=mAh"), "unknown mapping role"),
                          (("--preset", "unobtainium"), "unknown preset")):
        code, output = _replay(path, "--mass-mg", "1", "--out", tmp_path / "out", *args)
        assert code == 2 and message in output, (args, output)
    code, output = _replay(path, "--generic", "--preset", "mgh2", "--out", tmp_path / "out")
    assert code == 2 and "takes no --preset" in output
    code, output = _replay(path, "--v-min", "0.3", "--mass-mg", "1", "--out", tmp_path / "out")
    assert code == 2 and "window of a --generic cell" in output


def test_a_file_whose_voltages_no_cell_has_says_to_give_the_window(cell, tmp_path: Path) -> None:
    """A record at negative volts (a probe on a reference electrode, a shorted channel) gives
    no window a cell can have: the error says where the voltages run and what to give. At
    -4 V no sample is even plausible (-1 .. 6 V), and the error says so first."""
    record = cell[0]
    for shift, expected in ((-1.0, "v_min must be a number"), (-5.0, "no sample within the plausible ranges")):
        shifted = Synthetic(record.t, record.v + shift, record.i, record.temp_c, record.cycle, record.step)
        code, output = _replay(write_bdf(tmp_path / "probe.csv", shifted), "--generic", "--out", tmp_path / "out")
        flat = " ".join(output.replace("│", " ").split())
        assert code == 2 and expected in flat, output
        assert "voltages run" in flat and ("give --v-min and --v-max" in flat or "give --unit" in flat)


@pytest.fixture(scope="module")
def nmc() -> tuple[Synthetic, list[HalfCycleTruth]]:
    """A layered-oxide-like 2 Ah cell (no hydride): a slow first cycle, then 0.5C cycles."""
    z = soc_grid()
    delith = 3.0 + 1.1 * z - 0.25 * np.exp(-z / 0.04) + 0.12 * np.exp(-(1 - z) / 0.03) + 0.05 * np.sin(3 * z)
    true = generic_params("nmc", 2000.0, 2.9, 4.2, np.stack([delith - 0.02, delith]), r_ohm=0.04)
    steps = cc_cycles(0.05, 1, v_min=2.9, v_max=4.2) + cc_cycles(0.5, 2, start_half=2, v_min=2.9, v_max=4.2)
    sim = Simulation([true], steps, dt=20.0, seed=3)
    blocks = list(sim.blocks())
    t = np.concatenate([b.t for b in blocks])
    i = np.concatenate([b.i[0] for b in blocks])
    synthetic = Synthetic(t, np.concatenate([b.v[0] for b in blocks]), i, np.full(t.size, 25.0),
                          np.concatenate([b.cycle[0] for b in blocks]).astype(int), np.where(i < 0, 1, 3))
    return synthetic, sim.truth


def test_generic_cell_of_another_chemistry_replays_with_a_learned_curve(nmc, tmp_path: Path) -> None:
    synthetic, truth = nmc
    path = write_bdf(tmp_path / "B1.csv", synthetic)
    code, output = _replay(path, "--generic", "--v-min", "2.9", "--v-max", "4.2", "--out", tmp_path / "out",
                           "--no-report")
    assert code == 0, output
    assert "learned the open-circuit curve" in output
    halves = pq.read_table(tmp_path / "out" / OUT_CYCLES).to_pylist()
    assert {h["preset"] for h in halves} == {"generic"}
    counted = {(h["cycle"], h["half"]): h["capacity_mah"] for h in halves}
    for x in truth[2:4]:  # the first 0.5C cycle: the twin's count equals the truth
        assert counted[(x.cycle, x.half)] == pytest.approx(x.capacity_mah, rel=0.02)
    estimates = pq.read_table(tmp_path / "out" / OUT_ESTIMATES).to_pylist()
    assert max(e["crack_risk"] for e in estimates) == 0.0


def test_an_impossible_sample_is_a_dead_letter_and_nothing_learned_rests_on_it(nmc, tmp_path: Path) -> None:
    """One current of 1e30 A in the discharge the curve is learned from (cycle 2's, at 0.5C):
    the replay sends it to the dead letters, says so, and learns and validates on the samples
    the twin saw (before, the count made the capacity 4e29 mAh and the replay stopped)."""
    synthetic, truth = nmc
    i = synthetic.i.copy()
    i[np.flatnonzero((synthetic.cycle == 2) & (i < 0))[50]] = -1e30
    path = write_bdf(tmp_path / "B1.csv", dataclasses.replace(synthetic, i=i))
    code, output = _replay(path, "--generic", "--v-min", "2.9", "--v-max", "4.2", "--out", tmp_path / "out",
                           "--no-report")
    assert code == 0, output
    assert "1 sample(s) outside the plausible ranges go to the dead letters" in output
    letters = [json.loads(line) for line in (tmp_path / "out" / OUT_DEADLETTER).read_text().splitlines()]
    assert [letter["reason"] for letter in letters] == ["current_range"]
    second = next(x for x in truth if x.cycle == 2 and x.half == "discharge")
    assert "learned the open-circuit curve from discharge #2" in output
    learned = float(re.search(r"capacity ([0-9.]+) mAh in the", output).group(1))
    assert learned == pytest.approx(second.capacity_mah, rel=0.01)
    table = load_validation(tmp_path / "out")
    row = list(table["cycle"]).index(2)
    assert table["measured_discharge_mah"][row] == pytest.approx(second.capacity_mah, rel=0.01)


def test_hints_are_flags_and_a_few_samples_get_no_verdict(tmp_path: Path) -> None:
    """A 3-sample file with no complete cycle: the hints name the flags to give, and the
    checks that pass on three samples do not make it "track"."""
    path = tmp_path / "three.csv"
    path.write_text("time,volts,amps\n0,0.50,-0.002\n10,0.49,-0.002\n20,0.48,-0.002\n")
    args = [path, "--mass-mg", "1", "--map", "voltage=volts", "--map", "current=amps", "--out", tmp_path / "out",
            "--no-report"]

    def flat(text: str) -> str:  # the words, without the wrapping of a boxed error
        return " ".join(text.replace("│", " ").split())

    code, output = _replay(*args)
    assert code == 2 and "give --unit time=s" in flat(output) and "pass units" not in output

    code, output = _replay(*args, "--unit", "time=s")  # volts and amps say their units
    assert code == 0, output
    assert "give --start 2026-03-01T09:00" in flat(output)
    assert "no verdict: no complete cycle" in flat(output) and "tracks within" not in output
    assert [v.tracks for v in verdicts(load_validation(tmp_path / "out"))] == [False]


def test_an_unused_channel_of_a_multi_cell_file_is_left_out_and_the_others_replay(nmc, tmp_path: Path) -> None:
    """Cell B reads -9.9 V throughout (a channel with nothing on it): every sample a dead
    letter, the cell left out of learning and validation with the ranges it spans; cell A
    replays and is judged as on its own. A file with only such a cell is refused."""
    synthetic, _ = nmc
    lines = ["cell,t,v,i"]
    for name, v in (("A", synthetic.v), ("B", np.full(synthetic.v.size, -9.9))):
        lines += [f"{name},{t:.3f},{x:.6f},{i:.9f}" for t, x, i in zip(synthetic.t, v, synthetic.i)]
    path = tmp_path / "channels.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code, output = _replay(path, "--generic", "--v-min", "2.9", "--v-max", "4.2", "--out", out, "--no-report")
    flat = " ".join(output.replace("│", " ").split())
    assert code == 0, output
    assert "cell 'B': no sample within the plausible ranges" in flat and "voltages run -9.9 to -9.9 V" in flat
    assert "left out; the other cells replay" in flat
    letters = [json.loads(line) for line in (out / OUT_DEADLETTER).read_text().splitlines()]
    assert {letter["reason"] for letter in letters} == {"voltage_range"}
    table = load_validation(out)
    assert set(table["cell"]) == {"A"} and [v.tracks for v in verdicts(table)] == [True]

    code, output = _replay(path, "--cell", "B", "--generic", "--out", out, "--no-report")
    assert code == 2 and "give --unit" in " ".join(output.replace("│", " ").split())


def test_a_cell_that_never_leaves_rest_gets_a_verdict_line_saying_so(tmp_path: Path) -> None:
    """No half-cycle, so no row in validation.csv: the verdict table used to leave it out."""
    path = tmp_path / "rest.csv"
    path.write_text("Time (s),Voltage (V),Current (A)\n" + "".join(f"{10 * k},0.6,0\n" for k in range(100)))
    code, output = _replay(path, "--mass-mg", "1", "--out", tmp_path / "out", "--no-report")
    assert code == 0, output
    flat = " ".join(output.replace("│", " ").split())
    assert "rest 0 no verdict: no half-cycle in the file (the current never left rest)" in flat
