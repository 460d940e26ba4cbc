"""`mlci data validate|profile|diff|infer` as real processes: exit codes, messages, bad input.

Bad input: each a clear one-line message and never a traceback; unreadable or corrupt data
fails validation (exit 1), a bad pointer, path or config is a usage error (exit 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import git, run_mlci, write
from validate_helpers import clean_rows, planted, write_csv, write_table

CONFIG = """\
datasets:
  customers:
    path: data/customers.csv
    primary_key: [customer_id]
    columns:
      customer_id: {type: int64, nullable: false, unique: true}
      country: {type: string, allowed_values: ["US", "GB", "NO"]}
      income: {type: float64, min: 0}
"""


def one(path: str, fmt: str | None = None) -> str:
    extra = f"\n    format: {fmt}" if fmt else ""
    return f"datasets:\n  d:\n    path: {path}{extra}\n    columns:\n      a: {{type: int64}}\n"


def no_traceback(proc: object) -> None:
    text = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in text and "internal error" not in text, text


def test_validate_pass_fail_json_and_ledger(repo: Path) -> None:
    write(repo, {"mlci.yaml": CONFIG})
    write_csv(repo / "data" / "customers.csv", clean_rows())
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "customers (data/customers.csv @ working tree, git:" in proc.stdout and "passed" in proc.stdout

    rows = planted(clean_rows(), "allowed_values")
    rows[20]["country"] = "FR\x1b[31m"  # an escape sequence in the data is shown inert
    write_csv(repo / "data" / "customers.csv", rows)
    proc = run_mlci(repo, "data", "validate", "data/customers.csv")
    assert proc.returncode == 1
    out = proc.stdout
    assert "FAIL customers (data/customers.csv @ working tree, git:" in out
    assert 'column country: allowed_values (allowed_values=["US", "GB", "NO"]): 2 of 1,200 rows (0.17%) fail' in out
    assert 'most common: "FR" x1, "FR\\x1b[31m" x1' in out
    assert 'row 8: customer_id=9 country="FR"' in out
    assert "hint: fix the rows, or add the value to allowed_values" in out
    assert "\x1b" not in out
    no_traceback(proc)

    proc = run_mlci(repo, "data", "validate", "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    [d] = doc["datasets"]
    assert doc["passed"] is False and d["status"] == "fail" and d["content_hash"].startswith("git:")
    [check] = [c for c in d["checks"] if c["status"] == "fail"]
    assert (check["check"], check["column"], check["failures"], check["rows"]) == ("allowed_values", "country", 2, 1200)
    assert check["samples"][0] == {"row": 8, "values": {"customer_id": 9, "country": "FR"}}

    proc = run_mlci(repo, "sql", "SELECT dataset, status FROM validations ORDER BY time", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in json.loads(proc.stdout)] == ["pass", "fail"]


def test_rev_reads_the_commit_not_the_working_tree(repo: Path) -> None:
    write(repo, {"mlci.yaml": CONFIG})
    write_csv(repo / "data" / "customers.csv", planted(clean_rows(), "min"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "bad data", "--no-verify")
    write_csv(repo / "data" / "customers.csv", clean_rows())
    assert run_mlci(repo, "data", "validate").returncode == 0
    proc = run_mlci(repo, "data", "validate", "--rev", "HEAD")
    assert proc.returncode == 1 and "column income: min" in proc.stdout
    assert "@ " + git(repo, "rev-parse", "HEAD").strip()[:12] in proc.stdout
    assert run_mlci(repo, "data", "validate", "--rev", "nope").returncode == 2


def test_profile_diff_and_infer(repo: Path) -> None:
    write(repo, {"mlci.yaml": CONFIG})
    write_csv(repo / "data" / "customers.csv", clean_rows())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1", "--no-verify")
    proc = run_mlci(repo, "data", "profile", "data/customers.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    prof = json.loads(proc.stdout)
    assert prof["rows"] == 1200 and prof["columns"]["income"]["min"] > 0
    assert run_mlci(repo, "data", "profile", "data/customers.csv").stdout.count("\n") >= 9

    write_csv(repo / "data" / "customers.csv", [{**r, "income": r["income"] * 2} for r in clean_rows()])
    proc = run_mlci(repo, "data", "diff", "data/customers.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    drift = {d["column"]: d["drifted"] for d in json.loads(proc.stdout)["drift"]}
    assert drift["income"] is True and drift["age"] is False
    assert "DRIFT" in run_mlci(repo, "data", "diff", "data/customers.csv", "HEAD").stdout

    write(repo, {"data/flags.csv": "id,answer,score\n1,NO,0.5\n2,YES,0.7\n3,NO,\n"})
    proc = run_mlci(repo, "data", "infer", "data/flags.csv")
    assert proc.returncode == 0, proc.stderr
    assert 'allowed_values: ["NO", "YES"]' in proc.stdout  # quoted: YAML 1.1 would read NO as false
    parsed = yaml.safe_load(proc.stdout)
    assert parsed["flags"]["columns"]["answer"]["allowed_values"] == ["NO", "YES"]
    assert parsed["flags"]["columns"]["score"] == {"type": "float64", "nullable": True}
    assert run_mlci(repo, "data", "infer", "data/flags.csv", "--write").returncode == 0
    assert run_mlci(repo, "data", "validate", "flags").returncode == 0


BAD_FILES: dict[str, tuple[str, bytes, str]] = {
    "truncated_parquet": ("data/d.parquet", b"", "truncated or corrupt Parquet file"),
    "not_utf8": ("data/d.csv", b"a,b\n1,caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9, line 2)"),
    "ragged": ("data/d.csv", b"a,b\n1,2\n3\n4,5\n", "ragged rows: line 3 has 1 fields, the header has 2"),
    "empty": ("data/d.csv", b"", "empty file (0 bytes)"),
    "binary": ("data/d.csv", bytes(range(256)) * 8, "binary data (NUL byte at offset 0), not CSV text"),
    "bad_jsonl": ("data/d.jsonl", b'{"a": 1}\n{"a": \n', "cannot read data/d.jsonl as jsonl"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_unreadable_data_fails_with_a_clear_message(repo: Path, case: str) -> None:
    path, content, message = BAD_FILES[case]
    if case == "truncated_parquet":
        write_table(repo / path, clean_rows(50), "parquet")
        content = (repo / path).read_bytes()[:-100]
    write(repo, {"mlci.yaml": one(path), path: content})
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stdout, proc.stdout
    assert f"cannot read {path}" in proc.stdout
    no_traceback(proc)
    assert (repo / path).read_bytes() == content, "the file is left as it was"


def test_header_only_and_many_columns(repo: Path) -> None:
    write(
        repo,
        {
            "mlci.yaml": one("data/d.csv").replace("columns:", "row_count: {min: 1}\n    columns:"),
            "data/d.csv": "a,b\n",
        },
    )
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 1 and "0 rows, expected at least 1" in proc.stdout, proc.stdout
    header = ",".join(f"c{i}" for i in range(5000))
    body = "\n".join(",".join(str(i + j) for i in range(5000)) for j in range(3))
    write(
        repo,
        {
            "data/d.csv": f"{header}\n{body}\n",
            "mlci.yaml": "datasets:\n  d:\n    path: data/d.csv\n    columns:\n      c7: {type: int64, max: 8}\n",
        },
    )
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "column c7: max" in proc.stdout and "1 of 3 rows" in proc.stdout
    proc = run_mlci(repo, "data", "profile", "data/d.csv")
    assert "(profiled the first 200 of 5000 columns)" in proc.stdout
    no_traceback(proc)


def test_usage_errors_exit_2(repo: Path, tmp_path: Path) -> None:
    write_csv(repo / "data" / "customers.csv", clean_rows(10))
    cases = {
        "datasets:\n  d:\n    path: ../outside.csv\n": "must be relative and stay inside the repository",
        "datasets:\n  d:\n    path: /etc/passwd.csv\n": "must be relative and stay inside the repository",
        "datasets:\n  d:\n    path: data/customers.csv\n    columns:\n      country: {type: string, allowed_values: [US, NO]}\n": "False for a string column: YAML 1.1",
        "datasets:\n  d:\n    path: data/customers.csv\n    columns:\n      c: {tpye: int64}\n": "unknown key",
        "datasets:\n  d:\n    path: data/customers.xlsx\n": "cannot tell the format",
    }
    for config, message in cases.items():
        write(repo, {"mlci.yaml": config})
        proc = run_mlci(repo, "data", "validate")
        assert proc.returncode == 2, (config, proc.stdout, proc.stderr)
        assert message in proc.stderr, (config, proc.stderr)
        no_traceback(proc)

    write(repo, {"mlci.yaml": CONFIG})
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("a\n1\n")
    proc = run_mlci(repo, "data", "validate", str(outside))
    assert proc.returncode == 2 and "outside the repository" in proc.stderr, proc.stderr
    proc = run_mlci(repo, "data", "validate", "nosuch")
    assert proc.returncode == 2 and "not a dataset declared" in proc.stderr

    # a symlink posing as the dataset
    (repo / "data" / "customers.csv").unlink()
    os.symlink(outside, repo / "data" / "customers.csv")
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 2 and "is a symlink" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_pointers_bad_and_missing(repo: Path) -> None:
    write(repo, {"mlci.yaml": CONFIG.replace("data/customers.csv", "data/c.csv")})
    write(repo, {"data/c.csv.mlci": "path: ../x\nalgo: blake3\nhash: " + "a" * 64 + "\nsize: 3\n"})
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 2 and "leaves its folder" in proc.stderr, proc.stderr
    write(repo, {"data/c.csv.mlci": "path: c.csv\nalgo: blake3\nhash: " + "a" * 64 + "\nsize: 3\n"})
    proc = run_mlci(repo, "data", "validate")
    assert proc.returncode == 1 and "mlci data pull" in proc.stdout, proc.stdout + proc.stderr
    no_traceback(proc)


def test_a_pointer_dataset_edited_in_the_working_tree_is_validated_as_edited(repo: Path) -> None:
    """Before `mlci data add`, `mlci data validate` checks the file the user edited, not the
    version the pointer still names; `--rev HEAD` still checks the committed version."""
    write(repo, {"mlci.yaml": CONFIG})
    write_csv(repo / "data" / "customers.csv", clean_rows())
    assert run_mlci(repo, "data", "add", "data/customers.csv").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "data")
    tracked = run_mlci(repo, "data", "validate", "--format", "json")
    assert tracked.returncode == 0, tracked.stdout + tracked.stderr
    [clean] = json.loads(tracked.stdout)["datasets"]
    assert clean["content_hash"].startswith("blake3:")

    path = repo / "data" / "customers.csv"
    path.chmod(0o644)
    path.unlink()  # the checkout may be a read-only copy of the cache object
    write_csv(path, planted(clean_rows(), "allowed_values"))
    edited = run_mlci(repo, "data", "validate", "--format", "json")
    assert edited.returncode == 1, edited.stdout + edited.stderr
    [bad] = json.loads(edited.stdout)["datasets"]
    assert bad["status"] == "fail" and bad["content_hash"].startswith("blake3:")
    assert bad["content_hash"] != clean["content_hash"]
    committed = run_mlci(repo, "data", "validate", "--rev", "HEAD")
    assert committed.returncode == 0, committed.stdout + committed.stderr
    no_traceback(edited)
