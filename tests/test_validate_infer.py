"""`mlci data infer` on delimited text nobody described: a numpy dump (space-separated
floats, no header, CRLF line ends) gets the right columns and a `csv:` block, the written
config validates the file and refuses a truncated one; `--replace` rewrites an entry; a
header row that is really data gets a message naming the real limit."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import run_mlci, write


def numpy_dump(path: Path, rows: int = 60, cols: int = 12, seed: int = 1) -> None:
    """What `numpy.savetxt(path, array)` writes (space-separated `%.18e`), with CRLF line ends."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        for _ in range(rows):
            fh.write(" ".join(f"{rng.uniform(-1, 1):.18e}" for _ in range(cols)) + "\r\n")


def test_infer_sniffs_a_headerless_space_separated_dump(repo: Path) -> None:
    numpy_dump(repo / "data" / "features.txt")
    proc = run_mlci(repo, "data", "infer", "data/features.txt")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert '  format: "csv"' in lines
    assert '  csv: {delimiter: " ", header: false}' in lines
    columns = [line.split(":")[0].strip() for line in lines if line.startswith("    column")]
    assert columns == [f"column{i:02}" for i in range(12)]
    assert "    column00: {type: float64, nullable: false}" in lines

    proc = run_mlci(repo, "data", "infer", "data/features.txt", "--name", "features", "--write")
    assert proc.returncode == 0, proc.stderr
    proc = run_mlci(repo, "data", "validate", "features")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "60 rows: passed" in proc.stdout

    # a truncated file (cut mid-row) is refused by the schema infer wrote
    data = (repo / "data" / "features.txt").read_bytes()
    (repo / "data" / "features.txt").write_bytes(data[: data.index(b" ", len(data) // 2)])  # 30 rows and a bit
    proc = run_mlci(repo, "data", "validate", "features")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "Traceback" not in proc.stderr


def test_write_refuses_an_existing_name_unless_replace(repo: Path) -> None:
    write(repo, {"data/t.csv": "a;b\n1;x\n2;y\n", "mlci.yaml": "datasets:\n  t:\n    path: data/t.csv\n"})
    proc = run_mlci(repo, "data", "infer", "data/t.csv", "--write")
    assert proc.returncode == 2 and "--replace" in proc.stderr, proc.stderr
    proc = run_mlci(repo, "data", "infer", "data/t.csv", "--write", "--replace")
    assert proc.returncode == 0, proc.stderr
    text = (repo / "mlci.yaml").read_text()
    assert 'csv: {delimiter: ";"}' in text and "allowed_values" in text, text
    assert run_mlci(repo, "data", "validate", "t").returncode == 0


def test_a_first_row_too_long_for_a_name_says_so(repo: Path) -> None:
    long_row = ",".join(["x" * 40] * 10)
    write(repo, {"data/odd.csv": long_row.replace(",", "|") + "\n1\n2\n"})
    proc = run_mlci(repo, "data", "infer", "data/odd.csv", "--name", "odd")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "column names are limited to 255" in proc.stderr and "quote" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
