"""Folder datasets: a folder of shards (Parquet, CSV, JSONL) is one table, from every place a
dataset's content comes from: a folder tracked in git (working tree, index through the real
pre-commit hook, `--rev`), an mlci folder pointer (`mlci data add`), a `.dvc` file and a
`dvc.lock` output read from DVC's cache. Failure samples name the shard and the row in it;
versions compare (row count, drift); bad input fails cleanly and modifies nothing.

Real git repositories, real `mlci` processes, real DuckDB."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import commit, git, run_mlci, write

ROWS = 100  # per shard

CONFIG = """\
datasets:
  events:
    path: data/events
    format: %(fmt)s
    primary_key: [id]
    columns:
      id: {type: int64, nullable: false}
      score: {type: float64, min: 0, max: 1}
      label: {type: string, allowed_values: ["a", "b"]}
"""


def events_and_logs(events_fmt: str, logs_fmt: str) -> str:
    """An mlci.yaml declaring two folder datasets, `events` (data/events) and `logs` (data/logs)."""
    logs = (CONFIG % {"fmt": logs_fmt}).replace("datasets:\n", "").replace("events:", "logs:")
    return (CONFIG % {"fmt": events_fmt}) + logs.replace("data/events", "data/logs")


def rows(shard: int, n: int = ROWS, *, shift: float = 0.0, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed * 1000 + shard)
    return [
        {
            "id": shard * n + i,
            "score": round(min(1.0, rng.random() * 0.5 + shift), 4),
            "label": rng.choice(["a", "b"]),
        }
        for i in range(n)
    ]


def write_shard(path: Path, data: list[dict[str, Any]], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(data), path)
    elif fmt == "csv":
        path.write_text("id,score,label\n" + "".join(f"{r['id']},{r['score']},{r['label']}\n" for r in data))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in data))


def write_folder(folder: Path, fmt: str, shards: int = 3, *, bad: int | None = None, shift: float = 0.0) -> None:
    """`shards` shards of ROWS rows; `bad`: the shard whose row 7 gets score 5.0 (max is 1)."""
    ext = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}[fmt]
    for n in range(shards):
        data = rows(n, shift=shift)
        if n == bad:
            data[7]["score"] = 5.0
        write_shard(folder / f"part-{n:04d}.{ext}", data, fmt)
    # a writer's bookkeeping, never read as data
    (folder / "_SUCCESS").write_text("")
    (folder / f".part-0000.{ext}.crc").write_bytes(b"\x00crc")


def validate(repo: Path, *args: str) -> tuple[int, str, dict[str, Any] | None]:
    """`mlci data validate ARGS`: exit code, output, and the JSON document with --json."""
    proc = run_mlci(repo, "data", "validate", *args)
    doc = json.loads(proc.stdout) if "--json" in args and proc.stdout.startswith("{") else None
    return proc.returncode, proc.stdout + proc.stderr, doc


validate_ = validate


def sample_of(doc: dict[str, Any], dataset: str = "events") -> dict[str, Any]:
    result = next(d for d in doc["datasets"] if d["dataset"] == dataset)
    failing = [c for c in result["checks"] if c["status"] == "fail" and c["samples"]]
    return failing[0]["samples"][0]  # type: ignore[no-any-return]


def snapshot(*roots: Path) -> dict[str, tuple[int, int, str]]:
    """Every file (and link) under `roots`: size, mtime and content hash, to prove nothing changed."""
    out: dict[str, tuple[int, int, str]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in filenames:
                full = Path(dirpath) / name
                st = full.lstat()
                digest = os.readlink(full) if full.is_symlink() else hashlib.sha1(full.read_bytes()).hexdigest()
                out[str(full)] = (st.st_size, st.st_mtime_ns, digest)
    return out


# ------------------------------------------------------------------------------------ formats
def test_parquet_shards_pass_and_a_planted_failure_names_the_shard_and_row(repo: Path) -> None:
    write_folder(repo / "data" / "events", "parquet")
    write(repo, {"mlci.yaml": CONFIG % {"fmt": "parquet"}, "data/events/README.md": "not data\n"})
    code, out, doc = validate(repo, "--json")
    assert code == 0, out
    assert doc is not None and doc["datasets"][0]["rows"] == 3 * ROWS and doc["datasets"][0]["status"] == "pass"

    write_folder(repo / "data" / "events", "parquet", bad=1)
    code, out, _ = validate(repo)
    assert code == 1, out
    assert "column score: max" in out and "1 of 300 rows" in out
    assert "row 7 of data/events/part-0001.parquet: id=107 score=5.0" in out, out
    code, out, doc = validate(repo, "--json")
    assert doc is not None
    sample = sample_of(doc)
    assert (sample["file"], sample["file_row"], sample["index"]) == ("data/events/part-0001.parquet", 7, ROWS + 7)
    assert "Traceback" not in out


def test_csv_and_jsonl_shards_name_the_failing_shard(repo: Path) -> None:
    config = events_and_logs("csv", "jsonl")
    write(repo, {"mlci.yaml": config})
    write_folder(repo / "data" / "events", "csv", shards=4, bad=2)
    write_folder(repo / "data" / "logs", "jsonl", shards=3, bad=1)
    code, out, doc = validate(repo, "--json")
    assert code == 1 and doc is not None, out
    assert sample_of(doc, "events")["row"] == "7 of data/events/part-0002.csv"
    assert sample_of(doc, "logs")["row"] == "7 of data/logs/part-0001.jsonl"
    assert [d["rows"] for d in doc["datasets"]] == [4 * ROWS, 3 * ROWS]

    # a ragged CSV shard fails the dataset and is named
    write_folder(repo / "data" / "events", "csv", shards=4)
    shard = repo / "data" / "events" / "part-0003.csv"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:50] + ["1,2,3,4\n"] + lines[50:]))
    code, out, _ = validate(repo, "events")
    assert code == 1, out
    assert "data/events/part-0003.csv: ragged rows: line 51 has 4 fields, the header has 3" in out, out
    # past what the precheck reads, DuckDB's error names the shard too
    shard.write_text("".join(lines) + "1,2,3,4\n")
    code, out, _ = validate(repo, "events")
    assert code == 1 and 'file "data/events/part-0003.csv"' in out and "differing numbers of fields" in out, out
    assert "Traceback" not in out


# ------------------------------------------------------------------------------------ sources
def test_folder_pointer_from_mlci_data_add(repo: Path) -> None:
    folder = repo / "data" / "events"
    write_folder(folder, "parquet")
    write(repo, {"mlci.yaml": CONFIG % {"fmt": "parquet"}})
    proc = run_mlci(repo, "data", "add", "data/events")
    assert proc.returncode == 0, proc.stderr
    pointer = (repo / "data" / "events.mlci").read_text()
    digest = next(line.split(": ")[1] for line in pointer.splitlines() if line.startswith("hash:"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "events as a folder pointer")

    cache = repo / ".mlci" / "cache"
    before = snapshot(cache, repo / "data")
    code, out, doc = validate(repo, "--rev", "HEAD", "--json", "--no-cache")
    assert code == 0 and doc is not None, out
    assert doc["datasets"][0]["content_hash"] == f"blake3:{digest}" and doc["datasets"][0]["rows"] == 3 * ROWS
    code, out, doc = validate(repo, "--json")  # the working tree holds what the pointer names
    assert code == 0 and doc is not None and doc["datasets"][0]["content_hash"] == f"blake3:{digest}", out

    # an edited shard in the working tree is what is validated (another content id)
    write_folder(folder, "parquet", bad=2)
    code, out, doc = validate(repo, "--json")
    assert code == 1 and doc is not None, out
    assert doc["datasets"][0]["content_hash"].startswith("blake3:")
    assert doc["datasets"][0]["content_hash"] != f"blake3:{digest}"
    assert sample_of(doc)["row"] == "7 of data/events/part-0002.parquet"
    # ... while the commit still reads the cached objects in place, and names shards by their path
    code, out, _ = validate(repo, "--rev", "HEAD", "--no-cache")
    assert code == 0, out
    assert snapshot(cache) == {k: v for k, v in before.items() if k.startswith(str(cache))}

    # the working-tree folder gone: the pointer's version is read from the cache
    for shard in folder.iterdir():
        shard.unlink()
    folder.rmdir()
    code, out, doc = validate(repo, "--json", "--no-cache")
    assert code == 0 and doc is not None and doc["datasets"][0]["content_hash"] == f"blake3:{digest}", out


def _dvc_cache(repo: Path, files: dict[str, bytes]) -> str:
    """Files of a DVC-tracked folder placed in DVC 3's cache layout; the folder's md5."""
    base = repo / ".dvc" / "cache" / "files" / "md5"
    listing = []
    for rel, data in sorted(files.items()):
        md5 = hashlib.md5(data).hexdigest()
        (base / md5[:2]).mkdir(parents=True, exist_ok=True)
        (base / md5[:2] / md5[2:]).write_bytes(data)
        listing.append({"md5": md5, "relpath": rel})
    raw = json.dumps(listing).encode()
    digest = hashlib.md5(raw).hexdigest()
    (base / digest[:2]).mkdir(parents=True, exist_ok=True)
    (base / digest[:2] / (digest[2:] + ".dir")).write_bytes(raw)
    return digest


def test_dvc_folder_outputs_are_read_from_dvcs_cache(repo: Path, tmp_path: Path) -> None:
    made = tmp_path / "made"
    write_folder(made / "events", "parquet")
    write_folder(made / "logs", "parquet", bad=2)
    ev = _dvc_cache(repo, {p.name: p.read_bytes() for p in (made / "events").iterdir()})
    lg = _dvc_cache(repo, {p.name: p.read_bytes() for p in (made / "logs").iterdir()})
    config = events_and_logs("parquet", "parquet")
    commit(
        repo,
        {
            "mlci.yaml": config,
            ".gitignore": "/.dvc/cache\n/data/events\n/data/logs\n",
            "data/events.dvc": f"outs:\n- md5: {ev}.dir\n  path: events\n  nfiles: 4\n",
            "data/dvc.lock": f"schema: '2.0'\nstages:\n  make:\n    cmd: make\n    outs:\n    - path: logs\n      md5: {lg}.dir\n",
        },
        "dvc-tracked folders",
    )
    code, out, doc = validate(repo, "--rev", "HEAD", "--json")
    assert code == 1 and doc is not None, out
    by_name = {d["dataset"]: d for d in doc["datasets"]}
    assert by_name["events"]["content_hash"] == f"md5:{ev}" and by_name["events"]["status"] == "pass"
    assert by_name["logs"]["content_hash"] == f"md5:{lg}" and by_name["logs"]["rows"] == 3 * ROWS
    assert sample_of(doc, "logs")["row"] == "7 of data/logs/part-0002.parquet"

    # in the working tree, an unchanged folder keeps DVC's id; its data is not in DVC's cache: unavailable
    (repo / "data").mkdir(exist_ok=True)
    os.rename(made / "events", repo / "data" / "events")
    code, out, doc = validate(repo, "events", "--json")
    assert code == 0 and doc is not None and doc["datasets"][0]["content_hash"] == f"md5:{ev}", out
    for obj in (repo / ".dvc" / "cache" / "files" / "md5").glob("*/*"):
        if not obj.name.endswith(".dir"):
            obj.unlink()
    code, out, _ = validate(repo, "logs")
    assert code == 1 and "not in the local cache; run `dvc pull`" in out, out


def test_git_tracked_folder_through_the_pre_commit_hook(repo: Path) -> None:
    assert run_mlci(repo, "install").returncode == 0
    folder = repo / "data" / "events"
    write_folder(folder, "csv")
    write(repo, {"mlci.yaml": CONFIG % {"fmt": "csv"}})
    git(repo, "add", "-A")
    proc = run_git_commit(repo, "events v1")
    assert proc[0] == 0, proc[1]
    first = git(repo, "rev-parse", "HEAD").strip()

    # a bad shard staged: blocked, and the message names the shard and row
    write_folder(folder, "csv", bad=1)
    git(repo, "add", "data/events/part-0001.csv")
    code, out = run_git_commit(repo, "bad shard")
    assert code != 0 and git(repo, "rev-parse", "HEAD").strip() == first, out
    assert "FAIL events (data/events @ index, git:" in out and "row 7 of data/events/part-0001.csv" in out, out
    # fixing only the working tree does not unblock: the hook reads the index
    write_folder(folder, "csv")
    code, out = run_git_commit(repo, "still bad in the index")
    assert code != 0 and git(repo, "rev-parse", "HEAD").strip() == first, out

    # a good shard staged, a bad one only in the working tree: the commit goes through
    write_shard(folder / "part-0003.csv", rows(3), "csv")
    git(repo, "add", "data/events")
    write_folder(folder, "csv", bad=0)
    code, out = run_git_commit(repo, "a fourth shard")
    assert code == 0, out
    tree = git(repo, "rev-parse", "HEAD:data/events").strip()
    proc = run_mlci(
        repo, "sql", "SELECT content_hash, rows FROM validations WHERE rev = 'index' ORDER BY time", "--csv"
    )
    assert proc.stdout.strip().splitlines()[-1] == f"git:{tree},{4 * ROWS}", proc.stdout


def run_git_commit(repo: Path, message: str) -> tuple[int, str]:
    import subprocess

    proc = subprocess.run(["git", "commit", "-m", message], cwd=repo, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_rev_and_comparison_between_folder_versions(repo: Path) -> None:
    config = (CONFIG % {"fmt": "parquet"}) + (
        "    compare:\n      row_count_change: {max_pct: 10}\n      drift: {columns: [score], method: psi}\n"
    )
    write_folder(repo / "data" / "events", "parquet")
    commit(repo, {"mlci.yaml": config}, "v1")
    v1_tree = git(repo, "rev-parse", "HEAD:data/events").strip()
    for n in (3, 4):
        write_shard(repo / "data" / "events" / f"part-{n:04d}.parquet", rows(n, shift=0.5), "parquet")
    git(repo, "add", "-A")
    code, out, doc = validate(repo, "--staged", "--json")
    assert doc is not None, out
    staged_hash = doc["datasets"][0]["content_hash"]
    git(repo, "commit", "-qm", "v2: two more shards, higher scores")
    v2_tree = git(repo, "rev-parse", "HEAD:data/events").strip()
    assert staged_hash == f"git:{v2_tree}"  # the index's id is the tree id git then commits

    code, out, doc = validate(repo, "--rev", "HEAD", "--json")
    assert code == 1 and doc is not None, out
    result = doc["datasets"][0]
    assert result["base_hash"] == f"git:{v1_tree}" and result["rows"] == 5 * ROWS
    failed = {c["check"] for c in result["checks"] if c["status"] == "fail"}
    assert {"row_count_change", "drift"} <= failed, result["checks"]
    code, out, doc = validate(repo, "--rev", "HEAD~1", "--json")
    assert code == 0 and doc is not None and doc["datasets"][0]["content_hash"] == f"git:{v1_tree}", out


# ------------------------------------------------------------------------------------ bad input
def test_bad_folders_fail_cleanly_and_change_nothing(repo: Path, tmp_path: Path) -> None:
    folder = repo / "data" / "events"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").write_text("")
    commit(repo, {"mlci.yaml": CONFIG % {"fmt": "parquet"}}, "an empty folder")

    def validate(repo: Path, *args: str) -> tuple[int, str, None]:
        """Validation that must leave the working tree (and any cache) exactly as it was."""
        before = snapshot(repo)
        code, out, _ = validate_(repo, *args)
        assert snapshot(repo) == before, f"validation {args} changed files"
        return code, out, None

    code, out, _ = validate(repo)  # no data files: fails like an empty file
    assert code == 1 and "cannot read data/events as parquet: empty folder: no parquet data files in it" in out, out
    code, out, _ = validate(repo, "--rev", "HEAD")
    assert code == 1 and "empty folder" in out, out

    write_folder(folder, "parquet")
    data = (folder / "part-0001.parquet").read_bytes()
    (folder / "part-0001.parquet").write_bytes(data[: len(data) // 2])
    code, out, _ = validate(repo)
    assert code == 1 and "data/events/part-0001.parquet: truncated or corrupt Parquet file" in out, out

    write_folder(folder, "parquet")
    write_shard(folder / "extra.csv", rows(9), "csv")
    code, out, _ = validate(repo)
    assert code == 2, out
    assert "data/events: holds data files of two formats" in out
    assert "data/events/extra.csv" in out and "data/events/part-0000.parquet" in out
    (folder / "extra.csv").unlink()

    outside = tmp_path / "outside.parquet"
    write_shard(outside, rows(0), "parquet")
    (folder / "part-0009.parquet").symlink_to(outside)
    code, out, _ = validate(repo)
    assert code == 2 and "symlink" in out and "Traceback" not in out, out
    git(repo, "add", "data/events")
    code, out, _ = validate(repo, "--staged")
    assert code == 2 and "data/events/part-0009.parquet: is a symlink in index" in out, out
    git(repo, "reset", "-q")
    (folder / "part-0009.parquet").unlink()
    assert not (repo / ".mlci").exists()


def test_format_comes_from_the_files_when_not_declared(repo: Path) -> None:
    write_folder(repo / "data" / "events", "jsonl", bad=1)
    write(repo, {"mlci.yaml": (CONFIG % {"fmt": "x"}).replace("    format: x\n", "")})
    code, out, doc = validate(repo, "--json")
    assert code == 1 and doc is not None, out
    assert sample_of(doc)["row"] == "7 of data/events/part-0001.jsonl"


def test_infer_reads_a_folders_shards(repo: Path) -> None:
    write_folder(repo / "data" / "events", "parquet")
    write(repo, {"mlci.yaml": (CONFIG % {"fmt": "parquet"})})
    proc = run_mlci(repo, "data", "infer", "data/events")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "id:" in proc.stdout and "score:" in proc.stdout and "label:" in proc.stdout, proc.stdout


def test_the_hook_validates_dvc_tracked_folders_when_their_dvc_file_or_lock_is_staged(
    repo: Path, tmp_path: Path
) -> None:
    """A staged `.dvc` file or `dvc.lock` is what changes when DVC tracks a new version."""
    assert run_mlci(repo, "install").returncode == 0
    made = tmp_path / "made"
    write_folder(made / "good", "parquet")
    write_folder(made / "bad", "parquet", bad=2)
    good = _dvc_cache(repo, {p.name: p.read_bytes() for p in (made / "good").iterdir()})
    bad = _dvc_cache(repo, {p.name: p.read_bytes() for p in (made / "bad").iterdir()})
    config = events_and_logs("parquet", "parquet")
    dvc_file = "outs:\n- md5: {}.dir\n  path: events\n  nfiles: 4\n"
    lock = "schema: '2.0'\nstages:\n  make:\n    cmd: make\n    outs:\n    - path: logs\n      md5: {}.dir\n"
    write(repo, {"mlci.yaml": config, ".gitignore": "/.dvc/cache\n/data/events\n/data/logs\n"})
    write(repo, {"data/events.dvc": dvc_file.format(good), "data/dvc.lock": lock.format(good)})
    git(repo, "add", "-A")
    code, out = run_git_commit(repo, "dvc-tracked v1")
    assert code == 0, out
    first = git(repo, "rev-parse", "HEAD").strip()

    write(repo, {"data/events.dvc": dvc_file.format(bad)})  # only the .dvc file changes
    git(repo, "add", "data/events.dvc")
    code, out = run_git_commit(repo, "events v2")
    assert code != 0 and git(repo, "rev-parse", "HEAD").strip() == first, out
    assert "FAIL events" in out and "row 7 of data/events/part-0002.parquet" in out, out

    git(repo, "reset", "-q")
    git(repo, "checkout", "--", ".")
    write(repo, {"data/dvc.lock": lock.format(bad)})  # a pipeline's new output, recorded in dvc.lock
    git(repo, "add", "data/dvc.lock")
    code, out = run_git_commit(repo, "logs v2")
    assert code != 0 and git(repo, "rev-parse", "HEAD").strip() == first, out
    assert "FAIL logs" in out and "events" not in out.split("FAIL logs")[0], out


def test_a_staged_dvc_lock_touches_only_the_datasets_whose_record_changed(repo: Path) -> None:
    """DVC rewrites dvc.lock for any stage change (a command, a dependency, another output):
    only a changed record of a dataset's output sends it to validation; an unreadable lock
    sends every dataset it may name."""
    from mlci_tui import config as config_mod
    from mlci_tui.gitio import Repo
    from mlci_tui.validate.hook import affected

    config = events_and_logs("parquet", "parquet")
    lock = (
        "schema: '2.0'\nstages:\n  make:\n    cmd: {cmd}\n    outs:\n"
        "    - path: logs\n      md5: {logs}.dir\n    - path: model.pkl\n      md5: {model}\n"
    )
    md5 = {n: hashlib.md5(n.encode()).hexdigest() for n in ("a", "b", "m1", "m2")}
    commit(repo, {"mlci.yaml": config, "data/dvc.lock": lock.format(cmd="make", logs=md5["a"], model=md5["m1"])}, "v1")
    git_repo = Repo.find(repo)
    datasets = config_mod.load(repo).data["datasets"]

    def staged_lock(text: str) -> list[str]:
        write(repo, {"data/dvc.lock": text})
        git(repo, "add", "data/dvc.lock")
        return affected(datasets, ["data/dvc.lock"], git_repo)

    assert staged_lock(lock.format(cmd="make -j4", logs=md5["a"], model=md5["m1"])) == []  # the command only
    assert staged_lock(lock.format(cmd="make", logs=md5["a"], model=md5["m2"])) == []  # another output
    assert staged_lock(lock.format(cmd="make", logs=md5["b"], model=md5["m1"])) == ["logs"]
    assert staged_lock("stages: [unclosed\n") == ["events", "logs"]  # unreadable: both may be named
    assert affected(datasets, ["data/dvc.lock"]) == ["events", "logs"]  # no repo to read the locks from
    assert affected(datasets, ["data/dvc.lock", "data/events.dvc"], git_repo) == ["events", "logs"]
    git(repo, "rm", "-q", "--cached", "data/dvc.lock")
    assert affected(datasets, ["data/dvc.lock"], git_repo) == ["logs"]  # removed: its outputs' records changed
