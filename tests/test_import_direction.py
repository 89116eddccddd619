"""Imports run one way, pipeline -> connectors -> twin: the physics never reaches for I/O,
and the adapters never reach for the dataflow. Read from the source with `ast`, so an
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package and the first-party packages it must not import.
FORBIDDEN = {"twin": {"connectors", "pipeline"}, "connectors": {"pipeline"}}


def _imported(source: str, package: str) -> set[str]:
    """The top-level packages a module of ``package`` imports (relative imports are its own)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up(package: str) -> None:
    wrong = {str(path.relative_to(ROOT)): _imported(path.read_text(encoding="utf-8"), package) & FORBIDDEN[package]
             for path in sorted((ROOT / package).rglob("*.py"))}
    assert not {path: sorted(names) for path, names in wrong.items() if names}


def test_the_checker_sees_imports_inside_functions() -> None:
    source = "from . import wire\ndef f():\n    from pipeline.config import Config\n    import twin.model\n"
    assert _imported(source, "connectors") == {"connectors", "pipeline", "twin"}


def test_the_wire_module_loads_without_the_estimator() -> None:
    """Producers import the wire module; it must stay light (no filter, no compiled kernel)."""
    code = ("import sys, connectors.wire, connectors.producer; "
            "print(sorted(m for m in sys.modules if m == 'twin.estimator' or m.split('.')[0] == 'pipeline'))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
