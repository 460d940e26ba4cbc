"""`mlci import mlflow PATH`: MLflow runs as `import` runs, model stages as promotions.

Each MLflow run becomes one run record whose id is derived from the MLflow run id, so
importing the same store again adds nothing. A run with no params and no metrics is still a
run (its name, status and times); what is not imported is reported with its reason. Params
keep the text MLflow stored (the cache reads a number from it into `params.num`); each
metric's value is the one MLflow reports as latest, and its whole history goes into
`steps`. A run tagged `mlflow.source.git.commit` with a commit this repository has is linked
to it; a nested run's `parent` is its parent run (`mlflow.parentRunId`). Registered-model
stages (Staging, Production) and aliases become `promote` events.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mlci_tui.capture.build import Values, base_record, finish_record
from mlci_tui.errors import InputError
from mlci_tui.gitio import CommitInfo, Repo, commit_info
from mlci_tui.importers.common import ImportReport, append_new
from mlci_tui.importers.mlflow_store import MlflowRun, ModelVersion, Skipped, Store, latest, open_store
from mlci_tui.ledger import events, records
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.progress import count_bar

FILE = "mlflow"  # the `file` of every MLflow param and metric (names keep their `/`)
GIT_COMMIT_TAG = "mlflow.source.git.commit"
PARENT_TAG = "mlflow.parentRunId"
PROMOTED_STAGES = ("Staging", "Production")
STATUS = {"FINISHED": "done", "FAILED": "failed", "KILLED": "failed", "RUNNING": "running", "SCHEDULED": "running"}


@dataclass
class MlflowReport(ImportReport):
    """An import's report, and the store's accounting: every run is imported, present or skipped."""

    store_kind: str = ""
    store_runs: int = 0  # every run the store holds, skipped ones included
    present_runs: int = 0  # runs the ledger already had
    not_imported: list[Skipped] = field(default_factory=list)


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
    repo: Repo,
    run: MlflowRun,
    linked: bool,
    commits: dict[str, CommitInfo] | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """The run record of one MLflow run; `parent` is the MLflow id of its imported parent run."""
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
    record.update(
        patch_id=None,
        branch=run.tags.get("mlflow.source.git.branch"),
        parent=run_id_for(parent) if parent else None,
    )
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


def promotions(model: ModelVersion, known: set[str], skipped: list[Skipped]) -> list[dict[str, Any]]:
    """`promote` events for a version's current stage and aliases (ids derived: re-import adds none);
    one that cannot be made goes into `skipped` with its reason."""
    stages = [model.stage] if model.stage in PROMOTED_STAGES else []
    label = f"model {model.name} version {model.version}"
    if not model.run_id or model.run_id not in known:
        why = "its run is not imported" if model.run_id else "it names no run"
        label += f" (run {model.run_id})" if model.run_id else ""
        skipped.extend(Skipped("promotion", f"{label} to {stage}", why) for stage in stages + model.aliases)
        return []
    out = []
    for stage in stages + model.aliases:
        try:
            event = events.promote(
                run_id_for(model.run_id), stage, model=f"models:/{model.name}/{model.version}", by="mlflow"
            )
        except InputError as exc:
            skipped.append(Skipped("promotion", f"{label} to {stage!r}", str(exc)))
            continue
        event["id"] = records.derived_id("promote", "mlflow", model.name, str(model.version), stage)
        if model.updated is not None:
            event["time"] = _iso(model.updated)
        out.append(event)
    return out


def _parents(store: Store, known: set[str], warnings: list[str]) -> dict[str, str]:
    """MLflow run id -> its parent's, for nested runs whose parent is imported too."""
    out = {}
    for run in store.runs:
        parent = run.tags.get(PARENT_TAG)
        if parent and parent in known:
            out[run.run_id] = parent
        elif parent:
            warnings.append(f"MLflow run {run.run_id}: its parent run {parent} is not imported; no parent")
    return out


def import_store(repo: Repo, path: str, *, dry_run: bool = False) -> MlflowReport:
    store: Store = open_store(path)
    report = MlflowReport(warnings=list(store.warnings), store_kind=store.kind)
    report.not_imported = list(store.skipped)
    report.store_runs = len(store.runs) + sum(1 for s in store.skipped if s.kind == "run")
    shas = [r.tags.get(GIT_COMMIT_TAG, "") for r in store.runs]
    found = existing_commits(repo, shas)
    for run in store.runs:
        sha = run.tags.get(GIT_COMMIT_TAG)
        if sha and sha not in found:
            report.warnings.append(f"MLflow run {run.run_id}: commit {sha[:12]} is not in this repository; not linked")
    known = {r.run_id for r in store.runs}
    parents = _parents(store, known, report.warnings)

    commits: dict[str, CommitInfo] = {}
    bar = count_bar("import mlflow", len(store.runs))  # on a terminal only (progress.py)

    def produce() -> Iterator[dict[str, Any]]:
        for run in store.runs:
            if bar is not None:
                bar.advance_object()
            linked = run.tags.get(GIT_COMMIT_TAG) in found
            yield run_record(repo, run, linked=linked, commits=commits, parent=parents.get(run.run_id))
        for model in store.models:
            yield from promotions(model, known, report.not_imported)

    try:
        if dry_run:
            produced = list(produce())
            present = LedgerStore(repo).has_ids([r["id"] for r in produced])
            report.present = len(present)
            report.added.extend(r for r in produced if r["id"] not in present)
        else:
            append_new(repo, produce(), report)
    finally:
        if bar is not None:
            bar.close()
    report.present_runs = len(store.runs) - report.runs
    return report
