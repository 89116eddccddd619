"""`celltwin watch` without a broker: where a cell's metadata comes from, and usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.config import load_config
from connectors.wire import MetaError
from pipeline.cli import app
from pipeline.watch_cmd import cell_meta


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text('[cells.A7]\ncomposition = "MgH2=0.53,Mg2NiH4=0.28,Nd2H5=0.19"\nmass_mg = 2.0\nc_rate = 0.5\n')
    return path


def test_the_sidecar_wins_over_the_flags_which_win_over_the_config(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path), env={})
    source = tmp_path / "A7_run.csv"

    from_config = cell_meta("A7", None, cfg, None, None, source)
    assert (from_config.composition, from_config.mass_mg, from_config.c_rate) == (
        "MgH2=0.53,Mg2NiH4=0.28,Nd2H5=0.19", 2.0, 0.5)
    flagged = cell_meta("A7", None, cfg, 3.0, "mgh2", source)
    assert (flagged.preset, flagged.composition, flagged.mass_mg, flagged.c_rate) == ("mgh2", None, 3.0, 0.5)
    sidecar = cell_meta("A7", {"mass_mg": 1.25, "preset": "nd4mg80ni8"}, cfg, 3.0, "mgh2", source)
    assert (sidecar.preset, sidecar.mass_mg, sidecar.c_rate) == ("nd4mg80ni8", 1.25, 0.5)


def test_a_cell_without_a_mass_says_where_to_give_one(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert cell_meta("B1", {"mass_mg": 1.0}, cfg, None, None, tmp_path / "B1.mpt").preset == "nd4mg80ni8"
    with pytest.raises(MetaError, match=r"add mass_mg to B1\.mpt\.toml, pass --mass-mg, or add \[cells\.B1\]"):
        cell_meta("B1", None, cfg, None, None, tmp_path / "B1.mpt")
    with pytest.raises(MetaError, match="unknown metadata keys"):
        cell_meta("B1", {"mass_mg": 1.0, "mas_mg": 2.0}, cfg, None, None, tmp_path / "B1.mpt")


@pytest.mark.parametrize(("args", "message"), [
    (["--cell-pattern", "*.csv"], "one {cell} field"),
    (["--preset", "mgh2", "--composition", "MgH2=1"], "not both"),
])
def test_usage_errors_before_any_broker_is_asked(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["watch", str(tmp_path), "--kafka", "127.0.0.1:1",
                                      "--state", str(tmp_path / "s.json"), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "s.json").exists()
