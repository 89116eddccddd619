"""`celltwin simulate`: --out is a folder as in the other commands, and several cells
carry the same ids in the per-cycle table, the sample stream and the printed summary."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app


def test_several_cells_have_one_set_of_ids_and_out_is_a_folder(tmp_path: Path) -> None:
    out, samples = tmp_path / "sim", tmp_path / "samples.csv"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--cells", "2", "--cycles", "1",
                                      "--c-rate", "1", "--dt", "60", "--samples", str(samples)],
                                env={"COLUMNS": "120"})

    assert result.exit_code == 0, result.output
    with (out / "cycles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with samples.open() as handle:
        sampled = {row["cell"] for row in csv.DictReader(handle)}
    assert {row["cell"] for row in rows} == sampled == {"cell000", "cell001"}
    assert "cell000" in result.output and "cell001" in result.output  # the summary's cell column


def test_a_csv_path_still_names_the_table_itself(tmp_path: Path) -> None:
    table = tmp_path / "mine.csv"
    result = CliRunner().invoke(app, ["simulate", "--out", str(table), "--cycles", "1", "--c-rate", "1",
                                      "--dt", "60"])

    assert result.exit_code == 0, result.output
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["cycle"] for row in rows] == ["1"] and "cell" not in rows[0]
