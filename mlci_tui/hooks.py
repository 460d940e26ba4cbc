"""One entry point per git hook stage. Light on purpose: read what git holds, exit fast.

Nothing heavy (duckdb, pyarrow, textual, plotext, GitPython) is imported unless the
stage has work, and a test guards that. Post-* hooks never fail the git operation; a
failed ledger push in pre-push warns and lets the user's push through.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `from typing import ...`: typing alone costs more than a no-op hook's budget
if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlci_tui.config import Config
    from mlci_tui.gitio import Repo
    from mlci_tui.importers.objects import ObjectReader

STAGES = ("pre-commit", "post-commit", "pre-push", "post-checkout", "post-merge")
CANDIDATE_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".csv", ".tsv")
# staged files that may be a dataset or its pointer (validated when `datasets:` names them)
DATASET_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".mlci", ".dvc", "dvc.lock")
ZERO = "0" * 40
BACKFILL_LIMIT = 200


def _git_output(args: list[str]) -> tuple[int, bytes]:
    """Run git in the hook's folder: (exit code, stdout). `gitio.git` imports nothing heavy
    (`os.posix_spawnp`, `select`: no `subprocess`), so even a hook with nothing to do uses it."""
    from mlci_tui.gitio import git

    proc = git(args, check=False)
    return proc.returncode, proc.stdout


def _err(message: str) -> None:
    from mlci_tui.sanitize import display

    print(f"mlci: {display(message)}", file=sys.stderr)


def run(stage: str, argv: Sequence[str] = ()) -> int:
    """Run one hook stage; returns the exit code git should see."""
    if os.environ.get("MLCI_NO_HOOKS") == "1":
        return 0
    handler = {
        "pre-commit": pre_commit,
        "post-commit": post_commit,
        "pre-push": pre_push,
        "post-checkout": post_checkout,
        "post-merge": post_merge,
    }.get(stage)
    if handler is None:
        _err(f"unknown hook stage {stage!r} (one of {', '.join(STAGES)})")
        return 2
    from mlci_tui.errors import MlciError

    blocking = stage == "pre-commit"
    try:
        return handler(list(argv))
    except MlciError as exc:
        _err(str(exc))
        return exc.exit_code if blocking else 0
    except Exception as exc:  # a hook must never greet the user with a traceback
        _err(f"{stage} hook failed: {type(exc).__name__}: {exc} (set MLCI_DEBUG=1 for details)")
        if os.environ.get("MLCI_DEBUG"):
            raise
        return 1 if blocking else 0


def pre_commit(argv: list[str]) -> int:
    """Staged params and metrics files must parse; a bad one blocks the commit. One `git diff
    --cached --raw` lists what is staged, and where there is nothing to check, that is all."""
    _code, raw = _git_output(["diff", "--cached", "--raw", "--no-abbrev", "-z", "--diff-filter=ACMRT", "--no-renames"])
    staged = [p for p in raw.decode("utf-8", "surrogateescape").split("\0")[1::2] if p]  # `:modes oids status\0path\0`
    relevant = [p for p in staged if p.endswith(CANDIDATE_SUFFIXES)]
    data_paths = [p for p in staged if p.endswith(DATASET_SUFFIXES) or p == "mlci.yaml"]
    if not relevant and not data_paths:
        return 0
    from mlci_tui.capture.config_memo import load_from_git
    from mlci_tui.gitio import Repo
    from mlci_tui.importers.objects import ObjectReader

    repo = Repo.at_hook()
    with ObjectReader(repo) as objects:  # one `git cat-file --batch` for the config and the staged files
        cfg = load_from_git(repo, ":", objects)  # a staged, invalid mlci.yaml blocks here
        return _check_staged(repo, cfg, objects, raw, staged, relevant, data_paths)


def _check_staged(
    repo: Repo,
    cfg: Config,
    objects: ObjectReader,
    raw: bytes,
    staged: list[str],
    relevant: list[str],
    data_paths: list[str],
) -> int:
    """pre-commit's checks once the staged config is read: datasets, then params and metrics."""
    from mlci_tui.capture.build import read_values
    from mlci_tui.capture.staged import StagedSource, parse_raw_diff
    from mlci_tui.constants import CONFIG_FILE
    from mlci_tui.sources import IndexSource, matches

    code = 0
    if data_paths and cfg.data.get("datasets"):
        # datasets whose staged content changed are validated (mlci_tui/validate imported only now)
        from mlci_tui.validate.hook import validate_staged

        code = validate_staged(repo, cfg.data["datasets"], staged)
    # the staged files only (the rest passed when committed), unless the config changes what is read
    config_changed = CONFIG_FILE in staged or ("pyproject.toml" in staged and cfg.source == "pyproject.toml")
    patterns = cfg.params_files + cfg.metrics_files
    if not config_changed and not any(
        matches(p, path) or "plots/metrics/" in path for p in patterns for path in relevant
    ):
        return code
    source = IndexSource(repo) if config_changed else StagedSource(repo, parse_raw_diff(raw), objects)
    values = read_values(cfg, source, strict=False)
    errors = [w for w in values.warnings if ": not a number" not in w]
    for warning in values.warnings:
        if warning not in errors:
            _err(f"warning: {warning}")
    for error in errors:
        _err(error)
    if errors:
        _err("commit blocked: fix the file(s) above, or skip this check once with `git commit --no-verify`")
        return 1
    return code


def _nothing_to_capture() -> bool:
    """HEAD has no mlci config, no DVC project and none of the default params and metrics files: no run.

    One `git ls-tree` before the capture machinery is imported (~95 ms of CPU), so a commit
    in a repository that records nothing costs about what the pre-commit hook does."""
    from mlci_tui.constants import CONFIG_FILE, DEFAULT_METRICS_FILES, DEFAULT_PARAMS_FILES, DVC_ROOT_FILES

    wanted = [CONFIG_FILE, "pyproject.toml", *DEFAULT_PARAMS_FILES, *DEFAULT_METRICS_FILES, *DVC_ROOT_FILES]
    code, out = _git_output(["ls-tree", "--name-only", "-z", "HEAD", "--", *wanted])
    if code != 0:
        return False  # the capture reports what is wrong
    found = {name for name in out.split(b"\0") if name}
    if found == {b"pyproject.toml"}:  # config.load_from_git reads it only when it mentions mlci
        code, blob = _git_output(["cat-file", "blob", "HEAD:pyproject.toml"])
        return code == 0 and b"mlci" not in blob
    return not found


def post_commit(argv: list[str]) -> int:
    """Capture HEAD into the ledger."""
    if _nothing_to_capture():
        return 0
    from mlci_tui.capture.compact_due import compaction_due
    from mlci_tui.capture.write import capture_revs
    from mlci_tui.gitio import Repo

    repo = Repo.at_hook()
    report = capture_revs(repo, ["HEAD"], branch_of_head=True, quiet=True)
    if report.added and compaction_due(repo, len(report.added)):
        _compact_in_background()
    return 0


def _compact_in_background() -> None:
    """Start `mlci ledger compact --auto` detached, once the loose records are past the
    threshold (`capture.compact_due` decides without a process): the commit never waits for
    it, and a failure is its own business. One spawn, no wait; no hooks, no terminal."""
    import subprocess

    env = dict(os.environ, MLCI_NO_HOOKS="1", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        subprocess.Popen(
            [sys.executable, "-m", "mlci_tui", "ledger", "compact", "--auto"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    except OSError:
        pass  # no compaction this time; the next capture or `ledger push` tries again


def _pushes_from_stdin() -> list[tuple[str, str, str, str]]:
    if sys.stdin is None or sys.stdin.isatty():
        return []
    lines = []
    for line in sys.stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 4:
            lines.append((parts[0], parts[1], parts[2], parts[3]))
    return lines


def pre_push(argv: list[str]) -> int:
    """Back-fill pushed commits missing from the ledger, then push the ledger (never blocks)."""
    remote = argv[0] if argv else os.environ.get("PRE_COMMIT_REMOTE_NAME", "")
    pushes = _pushes_from_stdin()
    if not pushes and (os.environ.get("PRE_COMMIT_TO_REF") or os.environ.get("PRE_COMMIT_LOCAL_BRANCH")):
        # the pre-commit framework passes only the first pushed ref, through the environment;
        # pushing a root commit (a new ref the remote lacks entirely) sets no FROM/TO refs
        pushes = [
            (
                os.environ.get("PRE_COMMIT_LOCAL_BRANCH", ""),
                os.environ.get("PRE_COMMIT_TO_REF", ZERO),
                os.environ.get("PRE_COMMIT_REMOTE_BRANCH", ""),
                os.environ.get("PRE_COMMIT_FROM_REF", ZERO),
            )
        ]
    if pushes and all(p[0].startswith("refs/mlci") or p[2].startswith("refs/mlci") for p in pushes):
        return 0
    _code, out = _git_output(["remote"])
    named = remote in out.decode("utf-8", "replace").split()
    if _refuse_pushed_data(pushes, remote if named else None):
        return 1
    if not named:
        return 0  # a push to a bare URL: no remote name to keep the ledger's state under
    local_shas = [p[1] for p in pushes if p[1] != ZERO]
    remote_shas = [p[3] for p in pushes if p[3] != ZERO]
    _code, out = _git_output(
        [
            "rev-list",
            "--ignore-missing",  # the remote's old tip may be a commit this clone never had
            f"--max-count={BACKFILL_LIMIT}",
            *local_shas,
            "--branches",
            "--not",
            *remote_shas,
            f"--remotes={remote}",
        ]
    )
    candidates = out.decode().split()
    heads = [p[1] for p in pushes if p[1] not in (ZERO, p[3]) and not p[0].startswith("refs/tags/")]
    gate_heads = [sha for sha in heads if _config_mentions(sha, b"on_push")]
    if candidates and not _all_captured(candidates):
        from mlci_tui.capture.write import backfill
        from mlci_tui.gitio import Repo

        backfill(Repo.find(), local_shas, remote, remote_shas, limit=BACKFILL_LIMIT)
    if gate_heads and _gate_on_push(gate_heads):
        return 1
    from mlci_tui.ledger.refs import LEDGER_REF, remote_ref

    _code, out = _git_output(["for-each-ref", "--format=%(refname) %(objectname)", LEDGER_REF, remote_ref(remote)])
    tips = dict(line.split() for line in out.decode().splitlines() if line.strip())
    tip = tips.get(LEDGER_REF)
    if not tip or tip == tips.get(remote_ref(remote)):
        return 0
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger import sync

    try:
        result = sync.push(Repo.find(), remote)
    except Exception as exc:  # a failed ledger push warns and does not block the user's push
        _err(f"warning: the ledger was not pushed to {remote}: {exc}; retry with `mlci ledger push {remote}`")
        return 0
    for notice in result.notices:
        _err(notice)
    return 0


def _pushed_changes(local: str, remote_sha: str, remote: str | None) -> list[tuple[str, list[str]]]:
    """(commit, paths it changes) for each commit `local` brings that the remote lacks, newest
    first: one `git log` per pushed ref (merges list no paths: what they merge is listed where
    it was committed)."""
    exclude = [remote_sha] if remote_sha != ZERO else []
    if remote:
        exclude.append(f"--remotes={remote}")
    code, out = _git_output(
        ["log", "--ignore-missing", "--no-renames", "--format=%x01%H", "--name-only", "-z", local, "--not", *exclude]
    )
    if code != 0:
        return []
    commits = []
    for chunk in out.decode("utf-8", "surrogateescape").split("\x01")[1:]:
        sha, _nul, names = chunk.partition("\0")  # "<sha>\0\n<path>\0<path>\0"
        commits.append((sha, [n for n in names.removeprefix("\n").split("\0") if n]))
    return commits


def _refuse_pushed_data(pushes: list[tuple[str, str, str, str]], remote: str | None) -> bool:
    """Validate (and upload) the dataset versions a push carries; True refuses the push. A push
    whose commits touch no dataset-like file costs one `git log` per ref and imports nothing."""
    ranges = []
    for local_ref, local_sha, _remote_ref, remote_sha in pushes:
        if local_sha == ZERO or local_ref.startswith("refs/mlci"):
            continue
        commits = _pushed_changes(local_sha, remote_sha, remote)
        if any(p.endswith(DATASET_SUFFIXES) or p == "mlci.yaml" for _sha, paths in commits for p in paths):
            ranges.append((local_sha, commits))
    if not ranges:
        return False
    from mlci_tui.gitio import Repo
    from mlci_tui.validate.push import check_push

    return check_push(Repo.find(), ranges)


def _all_captured(shas: list[str]) -> bool:
    """Every commit already has its run as an event file (the usual case: post-commit ran)."""
    from mlci_tui.ledger.records import derived_id, record_path
    from mlci_tui.ledger.refs import LEDGER_REF

    paths = [record_path(derived_id("commit", sha)) for sha in shas]
    code, out = _git_output(["ls-tree", "--name-only", "-z", LEDGER_REF, "--", *paths])
    return code == 0 and len([p for p in out.split(b"\0") if p]) == len(paths)


def _config_mentions(sha: str, word: bytes) -> bool:
    """Cheap pre-check before loading YAML: can this commit's config even say `word`?"""
    for name in ("mlci.yaml", "pyproject.toml"):
        code, out = _git_output(["cat-file", "blob", f"{sha}:{name}"])
        if code == 0 and word in out:
            return True
    return False


def _gate_on_push(shas: list[str]) -> bool:
    """Run the gate on each pushed head whose config says `gate.on_push`; True refuses the push."""
    from mlci_tui import config as config_mod
    from mlci_tui.errors import MlciError
    from mlci_tui.gitio import Repo

    repo = Repo.find()
    refused = False
    for sha in dict.fromkeys(shas):
        cfg = config_mod.load_from_git(repo, sha)
        if not cfg.section("gate")["on_push"]:
            continue
        from mlci_tui.gate import run_gate
        from mlci_tui.report.verdict import write_gate

        try:
            result = run_gate(repo, cfg, None, sha)
        except MlciError as exc:
            _err(f"warning: gate skipped for {sha[:12]}: {exc}")
            continue
        if not result.passed:
            write_gate(result, "table", sys.stderr)
            _err(
                f"push refused by the mlci gate for {sha[:12]} (gate.on_push); "
                "`git push --no-verify` skips it, CI's `mlci gate` still decides"
            )
            refused = True
    return refused


def _local_refresh() -> None:
    from mlci_tui import config as config_mod
    from mlci_tui.gitio import Repo

    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    if cfg.section("ledger")["auto_pull"]:
        from mlci_tui.ledger import sync

        try:
            sync.pull(repo, cfg.remote)
        except Exception as exc:
            _err(f"warning: ledger pull from {cfg.remote} failed: {exc}")
    from mlci_tui.ledger.cache import LedgerCache, cache_is_current

    if not cache_is_current(repo):
        LedgerCache(repo).refresh()


def _data_checkout() -> None:
    """Check out datasets the new HEAD names from the local data cache (no cache: nothing to do)."""
    if not os.path.isdir(os.path.join(".mlci", "cache")):  # hooks run at the top of the worktree
        return
    from mlci_tui.data.hook import checkout_cached

    checkout_cached()


def post_checkout(argv: list[str]) -> int:
    """Branch checkouts only: data from the local cache; refresh the ledger cache (pull with `ledger.auto_pull`)."""
    if len(argv) >= 3 and argv[2] != "1":
        return 0
    if os.environ.get("PRE_COMMIT_CHECKOUT_TYPE", "1") != "1":
        return 0
    _data_checkout()
    _local_refresh()
    return 0


def post_merge(argv: list[str]) -> int:
    _data_checkout()
    _local_refresh()
    return 0
