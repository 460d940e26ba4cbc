"""`mlci import mlflow PATH`: MLflow runs as `import` runs, model stages as promotions.

Each MLflow run becomes one run record whose id is derived from the MLflow run id, so
importing the same store again adds nothing. Params stay the strings MLflow stored; each
metric's value is the one MLflow reports as latest, and its whole history goes into `steps`.
A run tagged `mlflow.source.git.commit` with a commit this repository has is linked to it.
Registered-model stages (Staging, Production) and aliases become `promote` events.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

from mlci_tui.capture.build import Values, base_record, finish_record
from mlci_tui.gitio import CommitInfo, Repo, commit_info
from mlci_tui.importers.common import ImportReport, append_new
from mlci_tui.importers.mlflow_store import MlflowRun, ModelVersion, Store, latest, open_store
from mlci_tui.ledger import events, records

FILE = "mlflow"  # the `file` of every MLflow param and metric (names keep their `/`)
GIT_COMMIT_TAG = "mlflow.source.git.commit"
PROMOTED_STAGES = ("Staging", "Production")
STATUS = {"FINISHED": "done", "FAILED": "failed", "KILLED": "failed", "RUNNING": "running", "SCHEDULED": "running"}


def run_id_for(mlflow_run_id: str) -> str:
    return records.derived_id("import", "mlflow", mlflow_run_id)


def _iso(ms: int | None) -> str | None:
    return records.epoch_iso(ms / 1000) if ms is not None else None


def existing_commits(repo: Repo, shas: list[str]) -> set[str]:
    """Which of `shas` name a commit in this repository (one `cat-file --batch-check`)."""
    candidates = sorted({s for s in shas if s and len(s) >= 7 and all(c in "0123456789abcdef" for c in s.lower())})
    if not candidates:
        return set()
    proc = subprocess.run(
        ["git", "cat-file", "--batch-check=%(objectname) %(objecttype)"],
        cwd=repo.root,
        input=("\n".join(candidates) + "\n").encode(),
        capture_output=True,
        check=False,
    )
    found = set()
    for asked, line in zip(candidates, proc.stdout.decode().splitlines()):
        parts = line.split()
        if len(parts) == 2 and parts[1] == "commit":
            found.add(asked)
    return found


def run_record(
    repo: Repo, run: MlflowRun, linked: bool, commits: dict[str, CommitInfo] | None = None
) -> dict[str, Any]:
    values = Values()
    if run.params:
        values.params[FILE] = dict(sorted(run.params.items()))
    if run.metrics:
        values.metrics[FILE] = {key: latest(points).value for key, points in sorted(run.metrics.items())}
    record = base_record("import", values)
    record["steps"] = [[FILE, key, p.step, p.value] for key, points in sorted(run.metrics.items()) for p in points]
    rid = run_id_for(run.run_id)
    sha = run.tags.get(GIT_COMMIT_TAG)
    record.update(
        run_id=rid,
        name=run.name,
        status=STATUS.get(run.status, "done"),
        started=_iso(run.start_time),
        ended=_iso(run.end_time),
        source="import:mlflow",
    )
    if linked and sha:
        commits = {} if commits is None else commits
        info = commits.get(sha) or commits.setdefault(sha, commit_info(repo, sha))
        record.update(commit=info.sha, tree=info.tree, author=info.author, message=info.message)
    else:
        record.update(commit=None, tree=None, author=run.tags.get("mlflow.user"), message=None)
    record.update(patch_id=None, branch=run.tags.get("mlflow.source.git.branch"))
    record["import"] = {
        "tool": "mlflow",
        "run_id": run.run_id,
        "experiment_id": run.experiment_id,
        "experiment": run.experiment,
        "status": run.status,
        "artifact_uri": run.artifact_uri,
        "tags": dict(sorted(run.tags.items())),
        "git_commit": sha,
        "linked": bool(linked and sha),
    }
    when = _iso(run.start_time) or _iso(run.end_time) or records.now_iso()
    return finish_record(record, rid, when)


def promotions(model: ModelVersion, known: set[str]) -> list[dict[str, Any]]:
    """`promote` events for a version's current stage and aliases (ids derived: re-import adds none)."""
    if not model.run_id or model.run_id not in known:
        return []
    stages = [model.stage] if model.stage in PROMOTED_STAGES else []
    out = []
    for stage in stages + model.aliases:
        event = events.promote(
            run_id_for(model.run_id), stage, model=f"models:/{model.name}/{model.version}", by="mlflow"
        )
        event["id"] = records.derived_id("promote", "mlflow", model.name, str(model.version), stage)
        if model.updated is not None:
            event["time"] = _iso(model.updated)
        out.append(event)
    return out


def import_store(repo: Repo, path: str, *, dry_run: bool = False) -> ImportReport:
    store: Store = open_store(path)
    report = ImportReport(warnings=list(store.warnings))
    report.skipped = store.deleted
    shas = [r.tags.get(GIT_COMMIT_TAG, "") for r in store.runs]
    found = existing_commits(repo, shas)
    for run in store.runs:
        sha = run.tags.get(GIT_COMMIT_TAG)
        if sha and sha not in found:
            report.warnings.append(f"MLflow run {run.run_id}: commit {sha[:12]} is not in this repository; not linked")
    known = {r.run_id for r in store.runs}

    commits: dict[str, CommitInfo] = {}

    def produce() -> Iterator[dict[str, Any]]:
        for run in store.runs:
            yield run_record(repo, run, linked=run.tags.get(GIT_COMMIT_TAG) in found, commits=commits)
        for model in store.models:
            yield from promotions(model, known)

    if dry_run:
        report.added.extend(produce())
    else:
        append_new(repo, produce(), report)
    return report
