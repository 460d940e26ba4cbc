"""The layering contracts of pyproject.toml `[tool.importlinter]` hold, and can fail.

import-linter reads the import graph statically (function-level imports included), so
these tests import nothing from mlci_tui. Each run is a fresh interpreter: grimp finds the
package through `sys.path`, and the negative test must analyse a copy, not the installed
package. Why each contract exists: docs/architecture.md, "Layering".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest.importorskip("importlinter", reason="import-linter is in the test extra")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlci_tui"

RUN_LINTER = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))\n"
)


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the pyproject.toml of `cwd`, on the mlci_tui found in `cwd`."""
    return subprocess.run(
        [sys.executable, "-c", RUN_LINTER, str(cwd / "pyproject.toml")],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "300"},  # rich wraps the report at 80 columns otherwise
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def top_level_modules() -> set[str]:
    """Every module and package directly under mlci_tui, as import-linter names them."""
    names = {f"mlci_tui.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {f"mlci_tui.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    return names


def test_contracts_are_kept() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout


def test_every_module_is_placed_in_a_layer() -> None:
    """A new top-level module must be classified as core or front end, and the ledger's and
    Textual's contracts must name it, before it lands: a module no list names would be
    free to import anything."""
    c = contracts()
    modules = top_level_modules()
    core = set(c["core-no-front-ends"]["source_modules"])
    front = set(c["core-no-front-ends"]["forbidden_modules"])
    assert not core & front
    assert core | front == modules, f"unclassified: {sorted(modules - core - front)}"
    allowed_below_ledger = {
        f"mlci_tui.{m}"
        for m in (
            "errors",
            "file_lock",
            "values",
            "gitio",
            "sanitize",
            "scrub",
            "constants",
            "config",
            "numbers",
            "sql_guard",
        )
    }
    assert set(c["ledger-below-core"]["forbidden_modules"]) == modules - allowed_below_ledger - {"mlci_tui.ledger"}
    assert set(c["textual-only-in-tui"]["source_modules"]) == modules - {"mlci_tui.tui"}


def test_a_forbidden_import_breaks_its_contract(tmp_path: Path) -> None:
    """A copy of the package with one forbidden import planted per contract: the linter
    reports each contract broken, at the planted line."""
    shutil.copytree(PACKAGE, tmp_path / "mlci_tui", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = {
        "ledger/records.py": "import mlci_tui.cli.main",  # core -> front end, and ledger -> above it
        "capture/readers.py": "import git",  # GitPython on the capture path (need not be installed)
        "report/markdown.py": "import textual",  # Textual outside tui/
    }
    for path, line in planted.items():
        target = tmp_path / "mlci_tui" / path
        target.write_text(
            target.read_text(encoding="utf-8") + f"\n{line}  # planted by test_layering\n", encoding="utf-8"
        )

    proc = lint(tmp_path)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    for contract in ("core-no-front-ends", "ledger-below-core", "no-gitpython-on-hot-paths", "textual-only-in-tui"):
        assert f"{contracts()[contract]['name']} BROKEN" in out, out
    assert "mlci_tui.ledger.records -> mlci_tui.cli.main" in out
    assert "mlci_tui.capture.readers -> git" in out
    assert "mlci_tui.report.markdown -> textual" in out
    assert "4 broken" in out
