"""`mlci data diff`: rows added, removed and changed between two versions, by key or as multisets.

Real repositories, real DuckDB, `mlci` as a process. The fixture's edits are known exactly:
1,000 rows added, 500 removed, 300 changed (income in all 300, age in 100 of them), `tier`
retyped (integer -> float, the same values), `name` renamed to `full_name`, and `score`
re-exported with float noise under its tolerance.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import duckdb
from conftest import commit, run_mlci, write
from validate_helpers import write_table

COLUMNS = ["customer_id", "income", "age", "score", "name", "tier", "country"]
CONFIG = """\
datasets:
  customers:
    path: data/customers.%(ext)s
    primary_key: [customer_id]
    columns:
      score: {type: float64, diff: {rel: 0.000000001}}
"""
BASE_ROWS = 5000


def base_rows() -> list[dict[str, Any]]:
    rng = random.Random(11)
    return [
        {
            "customer_id": i,
            "income": round(rng.uniform(1000, 90000), 2),
            "age": rng.randint(18, 90),
            "score": rng.random(),
            "name": f"user {i}",
            "tier": i % 3,
            "country": rng.choice(["US", "GB", "NO"]),
        }
        for i in range(1, BASE_ROWS + 1)
    ]


def head_rows(base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """500 removed (ids 1-500), 300 changed (income; age in the first 100), 1,000 added,
    score noise of 1e-12 relative, name -> full_name, tier as floats."""
    out = []
    for j, r in enumerate(base[500:]):
        r = dict(r)
        if j < 300:
            r["income"] = round(r["income"] + 10.5, 2)
            if j < 100:
                r["age"] += 1
        r["score"] = r["score"] * (1 + 1e-12)
        r["tier"] = float(r["tier"])  # the same values, as floats
        out.append({("full_name" if k == "name" else k): v for k, v in r.items()})
    for i in range(BASE_ROWS + 1, BASE_ROWS + 1001):
        out.append(
            {
                "customer_id": i,
                "income": 500.0,
                "age": 30,
                "score": 0.5,
                "full_name": f"user {i}",
                "tier": 1.0,
                "country": "US",
            }
        )
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow([repr(v) if isinstance(v, float) else v for v in r.values()])


def no_traceback(proc: Any) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "internal error" not in text, text


def known_edits(repo: Path, *, promote: str | None = None) -> None:
    """The base version committed (its run promoted to `promote`), the head version in the working tree."""
    write(repo, {"mlci.yaml": CONFIG % {"ext": "csv"}, "metrics.json": '{"acc": 0.8}\n'})
    base = base_rows()
    write_csv(repo / "data" / "customers.csv", base)
    commit(repo, {}, "base", no_verify=True)
    if promote:
        assert run_mlci(repo, "record", "--commit", "HEAD").returncode == 0
        assert run_mlci(repo, "promote", "HEAD", "--stage", promote).returncode == 0
    commit(repo, {"README": "later\n"}, "later", no_verify=True)
    write_csv(repo / "data" / "customers.csv", head_rows(base))


def test_known_edits_every_count_exact(repo: Path, tmp_path: Path) -> None:
    known_edits(repo)
    out = tmp_path / "diff.parquet"
    proc = run_mlci(repo, "data", "diff", "customers", "--json", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    counts = {k: doc[k] for k in ("added", "removed", "changed", "unchanged")}
    assert counts == {"added": 1000, "removed": 500, "changed": 300, "unchanged": 4200}
    assert doc["rows"] == {"old": 5000, "new": 5500} and doc["key"] == ["customer_id"]
    assert {c["column"]: c["changed"] for c in doc["columns"]} == {"income": 300, "age": 100}
    assert doc["schema"] == {
        "added": [],
        "removed": [],
        "retyped": {"tier": ["BIGINT", "DOUBLE"]},
        "renamed": {"name": "full_name"},
        "reordered": False,
    }
    income = doc["columns"][0]
    assert income["examples"][0] == {
        "key": {"customer_id": 501},
        "old": base_rows()[500]["income"],
        "new": round(base_rows()[500]["income"] + 10.5, 2),
    }
    assert len(income["examples"]) == 3
    assert doc["added_examples"][0] == {"customer_id": 5001} and doc["removed_examples"][0] == {"customer_id": 1}
    assert {"income", "age", "score"} <= {d["column"] for d in doc["drift"]}  # the profiles' drift beside it

    # the full row-level diff: one row per added or removed row, one per changed value
    con = duckdb.connect()
    kinds = dict(con.execute(f"SELECT change, count(*) FROM '{out}' GROUP BY 1").fetchall())
    assert kinds == {"added": 1000, "removed": 500, "changed": 400}
    by_column = f"SELECT \"column\", count(*) FROM '{out}' WHERE change = 'changed' GROUP BY 1 ORDER BY 1"
    assert con.execute(by_column).fetchall() == [("age", 100), ("income", 300)]
    assert not list(tmp_path.glob(".diff.parquet.tmp*"))

    # the tolerance is what hides the float noise: a tighter one from the flags counts it
    doc = json.loads(run_mlci(repo, "data", "diff", "customers", "--json", "--no-drift", "--rel", "1e-15").stdout)
    assert doc["changed"] == 4500 and {c["column"]: c["changed"] for c in doc["columns"]}["score"] == 4500

    text = run_mlci(repo, "data", "diff", "data/customers.csv", "HEAD", "--no-drift")
    assert text.returncode == 0, text.stderr
    assert "rows 5,000 -> 5,500: 1,000 added, 500 removed, 300 changed, 4,200 unchanged" in text.stdout
    assert "renamed (same values): name -> full_name" in text.stdout
    assert "retyped: tier BIGINT -> DOUBLE" in text.stdout
    md = run_mlci(repo, "data", "diff", "customers", "--md", "--no-drift").stdout
    assert "| income | 300 | customer\\_id=501:" in md
    rows = list(
        csv.DictReader(
            run_mlci(repo, "data", "diff", "customers", "--csv", "--no-drift", "--rows", "2").stdout.splitlines()
        )
    )
    assert [(r["change"], r["column"]) for r in rows].count(("changed", "income")) == 2
    assert sum(r["change"] == "added" for r in rows) == 2


def test_a_run_id_or_stage_names_a_version(repo: Path) -> None:
    known_edits(repo, promote="prod")
    doc = json.loads(run_mlci(repo, "data", "diff", "customers", "prod", "--json", "--no-drift").stdout)
    assert (doc["added"], doc["removed"], doc["changed"]) == (1000, 500, 300)


def test_duplicate_key_is_an_error_naming_the_key_values(repo: Path) -> None:
    known_edits(repo)
    rows = head_rows(base_rows())
    rows.append(dict(rows[10]))  # customer_id 511 twice in the head version
    write_csv(repo / "data" / "customers.csv", rows)
    proc = run_mlci(repo, "data", "diff", "customers", "--no-drift")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "head version (working tree): key customer_id is not unique: (customer_id=511) x2" in proc.stderr
    no_traceback(proc)


def test_csv_and_parquet_of_the_same_data_diff_as_equal(repo: Path) -> None:
    """A folder dataset: CSV shards at the base, the same rows as Parquet now."""
    write(
        repo,
        {
            "mlci.yaml": "datasets:\n  c:\n    path: data/c\n    primary_key: [customer_id]\n"
            "    columns:\n      zip: {type: string}\n"
        },
    )
    rows = [
        {**r, "zip": f"0{r['customer_id'] % 1000:04d}", "day": f"2024-01-{1 + r['customer_id'] % 28:02d}"}
        for r in base_rows()
    ]
    write_csv(repo / "data" / "c" / "part-0.csv", rows)
    commit(repo, {}, "csv", no_verify=True)
    (repo / "data" / "c" / "part-0.csv").unlink()
    write_table(repo / "data" / "c" / "part-0.parquet", rows, "parquet")
    con = duckdb.connect()
    pq = repo / "data" / "c" / "part-0.parquet"
    con.execute(
        f"COPY (SELECT * REPLACE (CAST(customer_id AS INTEGER) AS customer_id, lpad(CAST(zip AS VARCHAR), 5, '0') AS zip) "
        f"FROM '{pq}') TO '{pq}.tmp' (FORMAT parquet)"
    )
    Path(f"{pq}.tmp").replace(pq)
    proc = run_mlci(repo, "data", "diff", "c", "--json", "--no-drift")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["added"], doc["removed"], doc["changed"], doc["unchanged"]) == (0, 0, 0, BASE_ROWS)
    assert doc["schema"]["retyped"] == {} and doc["columns"] == []


def test_without_a_key_rows_are_multisets(repo: Path) -> None:
    write(repo, {"mlci.yaml": "datasets:\n  t:\n    path: data/t.csv\n"})
    commit(repo, {"data/t.csv": "a,b\n1,x\n1,x\n2,y\n"}, "base", no_verify=True)
    write(repo, {"data/t.csv": "a,b\n1,x\n2,y\n2,y\n3,z\n"})
    proc = run_mlci(repo, "data", "diff", "t", "--json", "--no-drift")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["compared_as"] == "multiset" and doc["key"] == []
    assert (doc["added"], doc["removed"], doc["changed"], doc["unchanged"]) == (2, 1, 0, 2)
    assert doc["removed_examples"] == [{"a": 1, "b": "x"}]
    assert "multisets" in doc["notes"][0]
    text = run_mlci(repo, "data", "diff", "t", "--no-drift").stdout
    assert "rows 3 -> 4: 2 added, 1 removed, 2 unchanged" in text and "multisets" in text
    # --key on the same data: a key that repeats is named
    proc = run_mlci(repo, "data", "diff", "t", "--key", "a", "--no-drift")
    assert proc.returncode == 2 and "key a is not unique: (a=1) x2" in proc.stderr


def test_a_truncated_or_corrupt_version_is_one_line_and_exit_2(repo: Path) -> None:
    write(repo, {"mlci.yaml": CONFIG % {"ext": "parquet"}})
    path = repo / "data" / "customers.parquet"
    write_table(path, base_rows()[:200], "parquet")
    commit(repo, {}, "base", no_verify=True)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    proc = run_mlci(repo, "data", "diff", "customers", "--no-drift")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        "mlci: head version (working tree) of data/customers.parquet: truncated or corrupt Parquet file "
        "(no PAR1 footer at the end)"
    )
    corrupt = bytearray(good)
    corrupt[8:400] = b"\xff" * 392  # magic at both ends, garbage inside
    path.write_bytes(bytes(corrupt))
    proc = run_mlci(repo, "data", "diff", "customers", "--no-drift")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "data/customers.parquet" in proc.stderr
    no_traceback(proc)
    path.write_bytes(good)
    proc = run_mlci(repo, "data", "diff", "customers", "nope", "--no-drift")
    assert proc.returncode == 2 and "'nope' is not a run id, a promoted stage or a commit" in proc.stderr


def test_the_pr_report_shows_the_data_change(repo: Path) -> None:
    """Both versions tracked with `mlci data add` (pointers, the local cache), a run per commit:
    the report's Data section diffs the baseline run's version against the candidate's."""
    write(repo, {"mlci.yaml": CONFIG % {"ext": "parquet"}, "metrics.json": '{"acc": 0.8}\n'})
    path = repo / "data" / "customers.parquet"
    base = base_rows()
    write_table(path, base, "parquet")
    assert run_mlci(repo, "data", "add", "data/customers.parquet").returncode == 0
    commit(repo, {}, "base", no_verify=True)
    assert run_mlci(repo, "record", "--commit", "HEAD").returncode == 0
    path.unlink()
    write_table(path, head_rows(base), "parquet")
    assert run_mlci(repo, "data", "add", "data/customers.parquet").returncode == 0
    commit(repo, {"metrics.json": '{"acc": 0.81}\n'}, "head", no_verify=True)
    assert run_mlci(repo, "record", "--commit", "HEAD").returncode == 0
    proc = run_mlci(repo, "report", "--base", "HEAD~1", "--format", "md")
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    assert "**rows 5,000 → 5,500: 1,000 added, 500 removed, 300 changed, 4,200 unchanged**" in md
    assert "Against the baseline run's version (commit " in md
    [income] = [line for line in md.splitlines() if line.startswith("| income | 300 |")]
    assert income.count("customer\\_id=") == 3
    html = run_mlci(repo, "report", "--base", "HEAD~1", "--format", "html").stdout
    assert "1,000 added, 500 removed, 300 changed" in html and "<td><code>income</code></td><td>300</td>" in html
    doc = json.loads(run_mlci(repo, "report", "--base", "HEAD~1", "--format", "json").stdout)
    [data] = doc["datasets"]
    assert data["diff"]["changed"] == 300 and data["diff_note"] is None

    # a version not in the local cache: the report skips that diff with a note, and still renders
    cache = repo / ".mlci" / "cache"
    for obj in [p for p in cache.rglob("*") if p.is_file()]:
        obj.chmod(0o644)
        obj.unlink()
    proc = run_mlci(repo, "report", "--base", "HEAD~1", "--format", "md")
    assert proc.returncode == 0, proc.stderr
    assert "row diff skipped: baseline version of data/customers.parquet:" in proc.stdout
    assert "mlci data pull" in proc.stdout


def test_a_version_missing_from_the_cache_is_fetched_from_the_data_remote(repo: Path, tmp_path: Path) -> None:
    """As `mlci data pull` would: the diff downloads the old version's objects, never checks it out."""
    store = tmp_path / "store"
    store.mkdir()
    write(
        repo,
        {
            "mlci.yaml": f"data:\n  remotes:\n    store: {{url: 'file://{store}'}}\n"
            "datasets:\n  t:\n    path: data/t.csv\n    primary_key: [id]\n",
            "data/t.csv": "id,v\n1,10\n2,20\n3,30\n",
        },
    )
    assert run_mlci(repo, "data", "add", "data/t.csv").returncode == 0
    commit(repo, {}, "v1", no_verify=True)
    assert run_mlci(repo, "data", "push").returncode == 0
    old = next(
        line.split(":", 1)[1].strip()
        for line in (repo / "data/t.csv.mlci").read_text().splitlines()
        if line.startswith("hash:")
    )
    (repo / "data/t.csv").unlink()
    write(repo, {"data/t.csv": "id,v\n1,10\n2,21\n4,40\n"})
    assert run_mlci(repo, "data", "add", "data/t.csv").returncode == 0
    obj = repo / ".mlci" / "cache" / old[:2] / old[2:]
    obj.parent.chmod(0o755)
    obj.unlink()
    proc = run_mlci(repo, "data", "diff", "t", "HEAD", "--json", "--no-drift")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)
    assert (diff["added"], diff["removed"], diff["changed"]) == (1, 1, 1), diff
    assert obj.exists()  # now in the cache, as a pull would have left it


def test_data_fetch_rev_brings_a_commits_versions_into_the_cache_only(repo: Path, tmp_path: Path) -> None:
    """What CI's pull-request job runs for the base commit: its versions cached, the working tree untouched."""
    store = tmp_path / "store"
    store.mkdir()
    write(
        repo,
        {
            "mlci.yaml": f"data:\n  remotes:\n    store: {{url: 'file://{store}'}}\n",
            "data/t.csv": "id,v\n1,10\n",
        },
    )
    assert run_mlci(repo, "data", "add", "data/t.csv").returncode == 0
    base = commit(repo, {}, "v1", no_verify=True)
    assert run_mlci(repo, "data", "push").returncode == 0
    shutil.rmtree(repo / ".mlci" / "cache", onerror=lambda f, p, e: (os.chmod(Path(p).parent, 0o755), f(p)))
    (repo / "data/t.csv").unlink()
    write(repo, {"data/t.csv": "id,v\n2,20\n"})
    proc = run_mlci(repo, "data", "fetch", "--rev", base)
    assert proc.returncode == 0, proc.stderr
    assert "1 objects" in proc.stdout, proc.stdout
    assert (repo / "data/t.csv").read_text() == "id,v\n2,20\n"
    proc = run_mlci(repo, "data", "fetch", "--rev", "no-such-rev")
    assert proc.returncode == 2 and "not a commit" in proc.stderr
