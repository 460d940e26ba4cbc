"""The demo's dataset step (called by `mlci demo`): a small customers table tracked with
`mlci data add` and committed, so the demo shows data versioned beside git."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from mlci_tui.data.add import add_paths
from mlci_tui.data.pointer import Pointer

DATASET = "data/customers.csv"
COUNTRIES = ("US", "GB", "NO")  # the allowed values of the example schema


def customers_csv(rows: int = 300, *, seed: int = 11, bad: bool = False) -> str:
    """customer_id,country,income,age,signup_date: clean by default; `bad` plants a negative
    income, an unknown country and a duplicate id (what a schema check should block)."""
    rng = random.Random(seed)
    lines = ["customer_id,country,income,age,signup_date"]
    for i in range(1, rows + 1):
        country = COUNTRIES[rng.randrange(len(COUNTRIES))]
        income = round(rng.lognormvariate(10.5, 0.5), 2)
        age = rng.randint(18, 90)
        day = f"20{rng.randint(15, 24)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"
        lines.append(f"{i},{country},{income},{age},{day}")
    if bad:
        lines[5] = "5,XX,-120.5,41,2019-03-02"
        lines.append(lines[10].replace(lines[10].split(",")[0], "1", 1))
    return "\n".join(lines) + "\n"


def add_demo_dataset(root: Path, *, rows: int = 300, commit: bool = True, message: str | None = None) -> Pointer:
    """Write data/customers.csv in the demo repo, `mlci data add` it, and commit its pointer
    (through the repo's hooks, like every demo commit). Returns the pointer."""
    root = Path(root)
    path = root / DATASET
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(customers_csv(rows))
    (pointer,) = add_paths(root, [DATASET], cwd=root)
    if commit:
        subprocess.run(["git", "add", pointer.pointer_path, ".gitignore"], cwd=root, check=True, capture_output=True)
        subprocess.run(
            ["git", "commit", "-q", "-m", message or f"Track {DATASET} ({rows} rows) with mlci data add"],
            cwd=root,
            check=True,
            capture_output=True,
        )
    return pointer
