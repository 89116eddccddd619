"""`celltwin run` embedded, end to end through the command line."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from typer.testing import CliRunner

from connectors.wire import (
    OUT_ALERTS, OUT_CYCLES, OUT_DEADLETTER, OUT_DQDV, OUT_ESTIMATES, OUT_REPORT, STATE_FIELDS,
)
from pipeline.cli import app
from pipeline.report_data import VALIDATION_COLUMNS, VALIDATION_FILE
from pipeline.run_cmd import _summary_table
from pipeline import twin_step
from pipeline.shards import LAYOUT_FILE

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
[simulator]
cells = 2
cycles = 2
dt = 20.0
"""


def test_embedded_run_writes_files_summary_and_report(tmp_path: Path) -> None:
    config = tmp_path / "celltwin.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    out.mkdir()  # holding what an earlier replay left: its validation must not show in this report
    (out / VALIDATION_FILE).write_text(",".join(VALIDATION_COLUMNS) + "\nreplayed-cell,1,1.0,1.0,1.0,1.0\n")

    result = CliRunner().invoke(app, ["run", "--config", str(config), "--out", str(out), "--seed", "4"])

    assert result.exit_code == 0, result.output
    assert not (out / VALIDATION_FILE).exists()
    # 2 cells x 2 cycles: both halves of every cycle, the last one closed at the end of the run.
    assert pq.read_table(out / OUT_CYCLES).num_rows == 2 * 2 * 2
    for name in (OUT_ESTIMATES, OUT_CYCLES, OUT_ALERTS, OUT_DEADLETTER, OUT_REPORT):
        assert (out / name).exists(), name
    estimates = pq.read_table(out / OUT_ESTIMATES)
    assert estimates.column_names == ["time", "cell", "preset", *STATE_FIELDS]
    assert set(estimates.column("cell").to_pylist()) == {"sim-01", "sim-02"}
    assert "sim-01" in result.output and "sim-02" in result.output  # the summary table
    assert re.search(r"(-|\d+\.\d%) \((-|\d+\.\d%)\)", result.output)  # retention: measured (twin)
    assert f"report: {out / OUT_REPORT}" in result.output
    # The analytics measured from the data: in every half, and the dQ/dV curve of each.
    cycles = pq.read_table(out / OUT_CYCLES).to_pylist()
    assert all(r["energy_mwh"] > 0 and 0.3 < r["mean_v"] < 1.0 and r["peak1_v"] > 0.3 for r in cycles)
    charges = [r for r in cycles if r["half"] == "charge"]
    assert all(r["hysteresis_v"] > 0.1 and r["energy_efficiency"] > 0.3 for r in charges)
    # Past the first lithiation (and its irreversible loss) the cell returns less energy than it takes.
    assert all(r["energy_efficiency"] < 1.0 for r in charges if r["cycle"] > 1)
    curves = pq.read_table(out / OUT_DQDV).to_pylist()
    assert {(r["cell"], r["cycle"], r["half"]) for r in curves} == {(r["cell"], r["cycle"], r["half"]) for r in cycles}
    report = (out / OUT_REPORT).read_text()
    assert "sim-01" in report and "Plotly.newPlot(" in report and "measured from the data" in report
    header = report[report.index("<table id='run'>"):]
    assert f"celltwin run --config {config} --out {out} --seed 4" in header and "1C" in header
    assert "replayed-cell" not in report and "id='validation'" not in report
    # The closing table fits an 80-column terminal (or a log) whole: nothing cut short.
    narrow = Console(width=80, record=True, file=io.StringIO())
    narrow.print(_summary_table(out))
    text = narrow.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
    assert re.search(r"sim-01 +nd4mg80ni8 +2 +\d+ +(-|\d+\.\d%) \((-|\d+\.\d%)\) .* \d+ \(\d+\)\n", text), text


def test_recovery_folder_is_initialised_when_empty(tmp_path: Path) -> None:
    recovery = tmp_path / "recovery"
    args = ["run", "--cells", "1", "--cycles", "1", "--dt", "60", "--out", str(tmp_path / "out"),
            "--recovery-dir", str(recovery), "--epoch-interval", "0.2", "--no-report"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in recovery.iterdir()) == [LAYOUT_FILE, "part-0.sqlite3"]
    assert pq.read_table(tmp_path / "out" / OUT_ESTIMATES).num_rows > 0


def test_a_recovery_folder_another_release_wrote_ends_the_run_with_one_line(tmp_path: Path, monkeypatch) -> None:
    recovery = tmp_path / "recovery"
    args = ["run", "--cells", "1", "--cycles", "1", "--dt", "60", "--out", str(tmp_path / "out"),
            "--recovery-dir", str(recovery), "--epoch-interval", "0.2", "--no-report"]
    assert CliRunner().invoke(app, args).exit_code == 0
    monkeypatch.setattr(twin_step, "STATE_FORMAT", "0123456789ab")  # the next release's state

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: the recovery folder holds twin state in format ")
    assert line.endswith("start with an empty --recovery-dir (the twins then start again from the data the broker "
                         "still holds)")


def test_help_explains_both_modes() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)

    assert result.exit_code == 0
    for flag in ("--kafka", "--exit-when-idle", "--influx-url", "--influx-token", "--influx-org", "--influx-bucket",
                 "--out", "--config", "--cells", "--cycles", "--c-rate", "--dt", "--seed", "--workers",
                 "--process-id", "--addresses", "--recovery-dir"):
        assert flag in result.output, flag
    assert "embedded" in result.output


def test_the_simulated_cells_take_a_preset_mixed_or_a_composition(tmp_path: Path) -> None:
    base = ["run", "--cells", "2", "--cycles", "1", "--dt", "30", "--no-report"]
    for flags, expected in ((["--preset", "mgh2"], {"mgh2"}), ([], {"nd4mg80ni8", "mgh2"}),
                            (["--composition", "MgH2=0.6,Nd2H5=0.4"], {"MgH2=0.6,Nd2H5=0.4"})):
        out = tmp_path / "-".join(flags or ["default"]).replace("=", "")
        result = CliRunner().invoke(app, [*base, *flags, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert set(pq.read_table(out / OUT_CYCLES).column("preset").to_pylist()) == expected
    for flags, words in ((["--preset", "graphite"], "unknown preset"),
                         (["--preset", "mgh2", "--composition", "MgH2=1"], "a preset or a composition, not both")):
        result = CliRunner().invoke(app, [*base, *flags, "--out", str(tmp_path / "bad")])
        assert result.exit_code == 2 and words in " ".join(result.output.replace("│", " ").split()), result.output


def test_rests_after_each_half_give_measured_pulse_resistances(tmp_path: Path) -> None:
    base = ["run", "--cells", "2", "--cycles", "2", "--no-report"]
    for rest, out in (("0", tmp_path / "no-rest"), ("10", tmp_path / "rest")):
        result = CliRunner().invoke(app, [*base, "--rest-min", rest, "--out", str(out)])
        assert result.exit_code == 0, result.output
    # Straight reversals are no resistance steps (the electrode changes hysteresis branch).
    assert not any(pq.read_table(tmp_path / "no-rest" / OUT_CYCLES).column("pulse_count").to_pylist())
    rows = [r for r in pq.read_table(tmp_path / "rest" / OUT_CYCLES).to_pylist() if r["pulse_count"]]
    assert rows and all(r["pulse_r_ohm"] > 0 and 0 < r["pulse_hold_s"] <= 120 for r in rows)
    result = CliRunner().invoke(app, [*base, "--rest-min", "-1", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "rest_min" in result.output, result.output


def test_bad_settings_are_refused_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--influx-url", "http://localhost:8086", "--out", str(tmp_path)])

    assert result.exit_code == 2
    assert "missing" in result.output and "token" in result.output


def test_ctrl_c_stops_quietly_and_still_builds_the_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Enough cycles that the run cannot end by itself before the signal, on a fast machine.
    command = [sys.executable, "-m", "pipeline.cli", "run", "--cells", "4", "--cycles", "400", "--out", str(out)]
    run = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any((out / OUT_ESTIMATES).glob("part-*[1-9].parquet")):  # past part 0: data is flowing
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGINT)
    output = run.communicate(timeout=120)[0]

    assert run.returncode == 130, output
    assert "panicked" not in output and "Traceback" not in output, output
    assert "embedded, stopped" in output and f"report: {out / OUT_REPORT}" in output
    assert "sim-01" in (out / OUT_REPORT).read_text()
