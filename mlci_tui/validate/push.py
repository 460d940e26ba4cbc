"""The pre-push side of validation: the dataset versions a push carries are checked, and the
data its pointers name is made fetchable, before the remote ever serves them.

A commit made with `--no-verify`, from a client that skips hooks, or by a merge or rebase
reaches here unchecked. Versions are read from git objects and the content cache, never from
the working tree; a version validated at commit time is one lookup in the result store
(it is validated at the commit that introduced it, against that commit's parent, exactly as
the pre-commit hook did). See docs/hooks.md ("pre-push: the data a push carries").
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui.data.pointer import Pointer
from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo, commit_info
from mlci_tui.sanitize import display
from mlci_tui.validate import source
from mlci_tui.validate.hook import affected
from mlci_tui.validate.spec import load_specs

# (commit, paths it changes), newest first, for the commits one pushed ref brings
Commits = list[tuple[str, list[str]]]
SKIP_HINT = "`git push --no-verify` skips this check once; CI's `mlci data validate` still runs it"


@dataclass
class PushCheck:
    """What the push carries that fails, and whether that refuses the push."""

    repo: Repo
    refused: bool = False
    configs: dict[str, config_mod.Config] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)

    def config_at(self, sha: str) -> config_mod.Config:
        if sha not in self.configs:
            self.configs[sha] = config_mod.load_from_git(self.repo, sha)
        return self.configs[sha]

    def commit_label(self, sha: str) -> str:
        if sha not in self.subjects:
            self.subjects[sha] = commit_info(self.repo, sha).message.split("\n", 1)[0]
        return f'{sha[:12]} ("{display(self.subjects[sha])}")'

    def say(self, message: str) -> None:
        print(f"mlci: {display(message)}", file=sys.stderr)


def check_push(repo: Repo, ranges: list[tuple[str, Commits]]) -> bool:
    """Validate and upload what each pushed tip's commits carry; True refuses the push."""
    check = PushCheck(repo)
    for tip, commits in ranges:
        try:
            settings = check.config_at(tip).data
        except MlciError as exc:
            check.say(f"warning: data checks skipped for {tip[:12]}: {exc}")
            continue
        on_push = settings["data"]["on_push"]
        scope = settings["data"]["push_scope"]
        if settings.get("datasets") and on_push != "off":
            _validate(check, tip, commits, scope, on_push)
        _make_fetchable(check, tip, commits, scope, settings["data"], on_push)
    return check.refused


# ------------------------------------------------------------------------------ validation
def versions_to_validate(check: PushCheck, tip: str, commits: Commits, scope: str) -> dict[str, list[str]]:
    """commit -> dataset names to validate there. `tip`: each dataset the range changes, at
    the newest commit that changed it or mlci.yaml (the version and schema the tip has);
    `all`: every dataset each commit changes, at that commit."""
    wanted: dict[str, list[str]] = {}
    if scope == "all":
        for sha, paths in commits:
            names = affected(_datasets_at(check, sha), paths)
            if names:
                wanted[sha] = names
        return wanted
    for name in affected(_datasets_at(check, tip), [p for _sha, paths in commits for p in paths]):
        introduced = next(
            (sha for sha, paths in commits if name in affected(_datasets_at(check, sha), paths)), commits[0][0]
        )
        wanted.setdefault(introduced, []).append(name)
    return wanted


def _datasets_at(check: PushCheck, sha: str) -> dict[str, Any]:
    try:
        return dict(check.config_at(sha).data.get("datasets") or {})
    except MlciError:
        return {}


def _validate(check: PushCheck, tip: str, commits: Commits, scope: str, on_push: str) -> None:
    # lazy: the engine and the ledger's read layer, only once a pushed commit touches a dataset
    from mlci_tui.validate.report import dataset_lines
    from mlci_tui.validate.run import Validator

    for sha, names in versions_to_validate(check, tip, commits, scope).items():
        datasets = _datasets_at(check, sha)
        specs = load_specs(datasets)
        chosen = [specs[n] for n in names if n in specs]
        kept = source.present(check.repo, sha, [s.path for s in chosen])
        results = Validator(check.repo, datasets, sha).validate_all([s for s in chosen if s.path in kept])
        failed = [r for r in results if r.failed and r.status != "unavailable"]  # unavailable: see _make_fetchable
        for r in results:
            if r.status == "unavailable":  # content only on the data remote: checked where it was added
                check.say(f"warning: dataset {r.dataset} not validated at {sha[:12]}: {r.error}")
            elif r.status != "pass":
                for line in dataset_lines(r):
                    check.say(line)
        if failed:
            what = ", ".join(f"dataset {r.dataset} ({r.path})" for r in failed)
            verb = "fails" if len(failed) == 1 else "fail"
            if on_push == "fail":
                check.refused = True
                check.say(f"push refused: {what} {verb} its checks as committed in {check.commit_label(sha)}")
                check.say(f"fix it in a new commit; {SKIP_HINT}")
            else:
                check.say(
                    f"warning: {what} {verb} its checks as committed in {check.commit_label(sha)} (data.on_push: warn)"
                )


# ------------------------------------------------------------------------------ data remote
def pushed_pointers(check: PushCheck, tip: str, commits: Commits, scope: str) -> list[tuple[str, Pointer]]:
    """(commit, pointer) for each mlci pointer version the push carries: as the tip has it
    (`tip`), or as each commit of the range wrote it (`all`)."""
    from mlci_tui.data.pointer import POINTER_SUFFIX
    from mlci_tui.data.workspace import pointers_at

    if scope == "all":
        places = [(sha, [p for p in paths if p.endswith(POINTER_SUFFIX)]) for sha, paths in commits]
    else:
        changed = sorted({p for _sha, paths in commits for p in paths if p.endswith(POINTER_SUFFIX)})
        places = [(tip, changed)]
    out: list[tuple[str, Pointer]] = []
    for sha, paths in places:
        pointers, problems = pointers_at(check.repo, sha, paths)
        for problem in problems:
            check.say(f"warning: {problem}")
        for pointer in pointers:
            if scope == "all":
                introduced = sha
            else:
                introduced = next((c for c, ps in commits if pointer.pointer_path in ps), sha)
            out.append((introduced, pointer))
    return out


def _make_fetchable(
    check: PushCheck, tip: str, commits: Commits, scope: str, data: dict[str, Any], on_push: str
) -> None:
    """No pointer reaches the remote without its data somewhere a teammate can fetch it."""
    pointers = pushed_pointers(check, tip, commits, scope)
    if not pointers:
        return
    from mlci_tui.data.cache import DataCache
    from mlci_tui.data.transfer import local_objects

    cache = DataCache.for_repo(check.repo.root)
    local: list[tuple[str, Pointer]] = []
    remote_only: list[tuple[str, Pointer]] = []
    for sha, pointer in pointers:
        _need, absent = local_objects(cache, [pointer])
        (remote_only if absent else local).append((sha, pointer))
    remote = _open_data_remote(check)
    there: set[str] | None = None
    if remote is not None and (remote_only or not data["push_with_git"]):
        from mlci_tui.data.transfer import remote_objects

        there = remote_objects(remote[0], remote[1])
    nowhere = [(sha, p) for sha, p in remote_only if there is None or p.hash not in there]
    for sha, pointer in nowhere:
        check.refused = True
        where = f"nor on data remote {remote[2]}" if remote else "and no data remote is configured"
        check.say(
            f"push refused: {pointer.pointer_path} as committed in {check.commit_label(sha)} names content "
            f"{pointer.hash[:12]} that is not in the local cache {where}; nobody could fetch it"
        )
    if remote is None or not local:
        return
    if data["push_with_git"]:
        _upload(check, cache, [p for _sha, p in local], remote)
        return
    assert there is not None
    missing = [(sha, p) for sha, p in local if p.hash not in there]
    for sha, pointer in missing:
        message = (
            f"{pointer.pointer_path} as committed in {check.commit_label(sha)}: content {pointer.hash[:12]} "
            f"is not on data remote {remote[2]} (data.push_with_git is off; `mlci data push` uploads it)"
        )
        if on_push == "fail":
            check.refused = True
            check.say(f"push refused: {message}")
        else:
            check.say(f"warning: {message}")


def _open_data_remote(check: PushCheck) -> tuple[Any, str, str] | None:
    """The working tree's default data remote opened (as `mlci data push` opens it), or None."""
    from mlci_tui.data.remotes import open_default_remote
    from mlci_tui.errors import ConfigError

    try:
        return open_default_remote(check.repo.root)
    except ConfigError as exc:
        check.say(f"warning: data remote not used: {exc}")
        return None


def _upload(check: PushCheck, cache: Any, pointers: list[Pointer], remote: tuple[Any, str, str]) -> None:
    from mlci_tui.data.add import parallel_jobs
    from mlci_tui.data.transfer import push

    fs, base, name = remote
    try:
        result = push(cache, pointers, fs, base, parallel_jobs(check.repo.root, None))
    except MlciError as exc:
        check.refused = True
        check.say(f"push refused: uploading the pushed data to {name} failed: {exc}")
        return
    if result.failed or result.missing:
        check.refused = True
        shown = "; ".join((result.failed + result.missing)[:3])
        check.say(
            f"push refused: {len(result.failed) + len(result.missing)} object(s) could not be uploaded to "
            f"data remote {name} ({shown}); retry, or run `mlci data push -r {name}`"
        )
    elif result.transferred:
        check.say(f"data: {result.transferred} object(s) uploaded to {name} with the push")
