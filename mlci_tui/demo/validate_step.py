"""The demo's validation step (called by `mlci demo`): declare a schema for the demo's
customers table, commit it (it passes), then try to commit a bad version of the data and
show the pre-commit hook blocking it with its message; finally put the good data back.

Works with the dataset tracked by `mlci data add` (a pointer) or, when the data step did not
run, with the CSV tracked in git directly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlci_tui.data.add import add_paths
from mlci_tui.demo.data_step import customers_csv

DATASET = "data/customers.csv"
SCHEMA = """
# data validation (docs/validation.md): checked by the pre-commit hook and `mlci data validate`
datasets:
  customers:
    path: data/customers.csv
    primary_key: [customer_id]
    row_count: {min: 100}
    columns:
      customer_id: {type: int64, nullable: false, unique: true}
      country: {type: string, allowed_values: ["US", "GB", "NO"]}
      income: {type: float64, min: 0}
      age: {type: int64, min: 18, max: 120}
      signup_date: {type: date, min: "2015-01-01"}
    compare:
      row_count_change: {max_pct: 10}
      schema_change: error
      drift: {columns: [income, age], method: psi, threshold: 0.2}
"""


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _stage_data(root: Path, text: str, pointer: bool) -> list[str]:
    """Write the CSV and stage it: through `mlci data add` when the dataset has a pointer."""
    path = root / DATASET
    path.parent.mkdir(parents=True, exist_ok=True)
    if pointer:
        if path.exists():
            path.unlink()  # the checkout may be a read-only link into the cache
        path.write_text(text)
        add_paths(root, [DATASET], cwd=root)
        staged = [DATASET + ".mlci"]
    else:
        path.write_text(text)
        staged = [DATASET]
    _git(root, "add", *staged)
    return staged


def run_validation_demo(root: Path) -> str:
    """Returns the lines to print. Leaves the repository as it found it, plus the schema commit."""
    root = Path(root)
    pointer = (root / (DATASET + ".mlci")).is_file()
    lines: list[str] = []
    if not pointer and not (root / DATASET).is_file():
        _stage_data(root, customers_csv(), pointer=False)
        _git(root, "commit", "-q", "-m", f"Track {DATASET} in git")
    clean = (root / DATASET).read_text()
    rows = clean.count("\n") - 1

    config = root / "mlci.yaml"
    text = config.read_text() if config.exists() else ""
    if "\ndatasets:" not in "\n" + text:
        config.write_text(text.rstrip("\n") + "\n" + SCHEMA)
    _git(root, "add", "mlci.yaml")
    proc = _git(root, "commit", "-q", "-m", "Declare the customers dataset's schema", check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the schema commit was refused: {(proc.stderr or proc.stdout).strip()}")
    how = "its pointer, tracked with mlci data add" if pointer else "tracked in git"
    lines.append(f"  committed: the `datasets:` schema for {DATASET} ({rows} rows, {how}): validated, passed")

    bad = customers_csv(rows, bad=True) if rows > 10 else clean
    staged = _stage_data(root, bad, pointer)
    proc = _git(root, "commit", "-m", "Refresh customers (with bad rows)", check=False)
    output = (proc.stderr + proc.stdout).strip().splitlines()
    if proc.returncode == 0:
        lines.append("  unexpected: the bad data commit went through")
    else:
        lines.append("  a bad version of the data was refused by the pre-commit hook:")
        lines += ["    " + line for line in output if line.startswith("mlci:")]

    # put the good version back: the index and the working tree as they were
    _git(root, "reset", "-q", "HEAD", "--", *staged)
    if pointer:
        _git(root, "checkout", "-q", "HEAD", "--", *staged)
        path = root / DATASET
        if path.exists():
            path.unlink()
        path.write_text(clean)
        add_paths(root, [DATASET], cwd=root)
    else:
        _git(root, "checkout", "-q", "HEAD", "--", DATASET)
    return "\n".join(lines)
