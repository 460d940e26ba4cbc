"""End to end through mlci's plain git hooks (`mlci install`), with real git and a bare upstream.

Covers what issue 2 asks of the hooks without the pre-commit framework: capture on commit,
a malformed file blocks, pre-push back-fills and pushes the ledger (and never blocks on a
failed ledger push), refs/mlci-only pushes return at once, existing hooks are chained and
restored byte for byte, core.hooksPath is honoured, MLCI_NO_HOOKS=1 turns every hook off.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from conftest import commit, git, metrics_json, run_mlci, write

from mlci_tui.gitio import Repo
from mlci_tui.hooks import STAGES
from mlci_tui.install import MARKER, SAVED_SUFFIX, generic_script
from mlci_tui.ledger.cache import cache_is_current

CHECKOUT = Path(__file__).resolve().parent.parent
ZERO = "0" * 40
BAD_METRICS = '{\n  "acc": 0.9,\n  "loss": \n}\n'  # line 4: a value is missing


def gitp(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """git as a process that may fail; `env` is added to the test's environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, input=input, capture_output=True, text=True, timeout=120, check=False
    )


def runs(repo: Path) -> list[dict]:  # type: ignore[type-arg]
    proc = run_mlci(repo, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_commits(repo: Path) -> set[str]:
    return {r["commit"] for r in runs(repo)}


def rev(repo: Path, name: str) -> str | None:
    proc = gitp(repo, "rev-parse", "-q", "--verify", name)
    return proc.stdout.strip() if proc.returncode == 0 else None


def remote_refs(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())  # type: ignore[misc]


def install(repo: Path, *args: str) -> str:
    proc = run_mlci(repo, "install", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def start(repo: Path, upstream: Path | None = None) -> str:
    """params + metrics + mlci.yaml committed before any hook exists; hooks installed after."""
    if upstream is not None:
        git(repo, "remote", "add", "origin", str(upstream))
    write(repo, {"params.yaml": "train:\n  lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)})
    assert run_mlci(repo, "init", "--no-hooks").returncode == 0
    first = commit(repo, {}, "start")
    install(repo)
    return first


def hook_files(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.endswith(".sample")
    }


# --- the scripts in hooks/ -------------------------------------------------------------------


def test_hooks_folder_holds_exactly_the_generic_scripts() -> None:
    folder = CHECKOUT / "hooks"
    assert sorted(p.name for p in folder.iterdir()) == sorted(STAGES)
    for stage in STAGES:
        path = folder / stage
        assert path.read_text() == generic_script(stage), f"hooks/{stage} drifted: regenerate it"
        assert os.access(path, os.X_OK), f"hooks/{stage} is not executable"
        assert path.read_bytes().startswith(b"#!/bin/sh\n")


def test_published_scripts_work_from_path_and_skip_without_mlci(repo: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared-hooks"
    shutil.copytree(CHECKOUT / "hooks", shared)
    git(repo, "config", "core.hooksPath", str(shared))
    write(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)})
    first = commit(repo, {}, "first")
    assert run_commits(repo) == {first}, "the hooks/ scripts call `mlci hook` from PATH"

    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    blocked = gitp(repo, "commit", "-m", "bad")
    assert blocked.returncode != 0
    assert "metrics.json:4" in blocked.stderr

    # without mlci on PATH the commit goes through with a notice, and nothing is captured
    write(repo, {"metrics.json": metrics_json(acc=0.6)})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-m", "no mlci", env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "pre-commit hook skipped: mlci is not installed" in proc.stderr
    assert "post-commit hook skipped" in proc.stderr
    assert run_commits(repo) == {first}


# --- the installed scripts -----------------------------------------------------------------------


def test_installed_hooks_run_python_without_site_and_without_mlci_on_path(repo: Path) -> None:
    start(repo)
    hooks = repo / ".git" / "hooks"
    for stage in STAGES:
        text = (hooks / stage).read_text()
        assert MARKER in text
        assert '"$MLCI_PYTHON" -S -c' in text
    bare_env = {"PATH": "/usr/bin:/bin"}  # no mlci, no pyenv shims: only the recorded interpreter
    proc = subprocess.run(
        [str(hooks / "pre-commit")], cwd=repo, env={**os.environ, **bare_env}, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")

    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    proc = subprocess.run(
        [str(hooks / "pre-commit")], cwd=repo, env={**os.environ, **bare_env}, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "metrics.json:4" in proc.stderr
    assert "not installed" not in proc.stderr


def test_commit_is_captured_and_a_malformed_file_blocks(repo: Path) -> None:
    first = start(repo)
    assert run_commits(repo) == set(), "start() commits before the hooks exist"
    second = commit(repo, {"metrics.json": metrics_json(acc=0.7, loss=0.3)}, "second")
    [run] = runs(repo)
    assert run["commit"] == second
    assert run["kind"] == "commit"
    assert run["metrics"] == {"acc": 0.7, "loss": 0.3}
    assert run["params"] == {"train.lr": "0.1"}

    ledger_before = rev(repo, "refs/mlci/ledger")
    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-m", "bad metrics")
    assert proc.returncode != 0
    first_error = proc.stderr.splitlines()[0]
    assert first_error.startswith("mlci: metrics.json:4"), proc.stderr
    assert "commit blocked" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert rev(repo, "HEAD") == second
    assert rev(repo, "refs/mlci/ledger") == ledger_before

    # an invalid mlci.yaml staged with a good metrics file blocks too, naming the key
    write(repo, {"metrics.json": metrics_json(acc=0.8), "mlci.yaml": "metrics:\n  filez: [metrics.json]\n"})
    git(repo, "add", "metrics.json", "mlci.yaml")
    proc = gitp(repo, "commit", "-m", "bad config")
    assert proc.returncode != 0
    assert "mlci.yaml" in proc.stderr and "filez" in proc.stderr
    assert rev(repo, "HEAD") == second
    assert first != second


def test_hooks_in_a_linked_worktree_and_a_subfolder_find_the_repository(repo: Path, tmp_path: Path) -> None:
    """The commit hooks take the repository from where git starts them (`gitio.Repo.at_hook`:
    no `git rev-parse` for a plain clone); a linked worktree (GIT_DIR set, `.git` a file) asks git,
    and its runs land in the shared ledger, checked, captured and refused as in the main tree."""
    start(repo)
    main_commit = commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "in the main tree")
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", "-b", "side", str(other))
    side_commit = commit(other, {"metrics.json": metrics_json(acc=0.9)}, "in the worktree")
    assert run_commits(repo) == {main_commit, side_commit}
    assert {r["branch"] for r in runs(repo)} == {"main", "side"}
    write(other, {"metrics.json": BAD_METRICS})
    git(other, "add", "metrics.json")
    proc = gitp(other, "commit", "-m", "bad metrics")
    assert proc.returncode != 0 and "commit blocked" in proc.stderr
    # committing from a subfolder: git still starts the hooks at the top of the working tree
    (repo / "src").mkdir()
    write(repo, {"metrics.json": metrics_json(acc=0.65), "src/train.py": "print(1)\n"})
    git(repo, "add", "-A")
    proc = gitp(repo / "src", "commit", "-q", "-m", "from src")
    assert proc.returncode == 0, proc.stderr
    assert rev(repo, "HEAD") in run_commits(repo)


def test_init_and_install_twice_change_nothing(repo: Path) -> None:
    write(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5), ".gitignore": "*.pt"})
    proc = run_mlci(repo, "init")
    assert proc.returncode == 0, proc.stderr
    hooks = repo / ".git" / "hooks"

    def state() -> tuple[object, ...]:
        return tuple((repo / name).read_bytes() for name in ("mlci.yaml", ".gitignore")) + (hook_files(hooks),)

    before = state()
    assert sorted(hook_files(hooks)) == sorted(STAGES)
    assert (repo / ".gitignore").read_text().startswith("*.pt\n")
    proc = run_mlci(repo, "init")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", proc.stdout
    assert "hooks already installed" in install(repo)
    assert state() == before


# --- pre-push ------------------------------------------------------------------------------------


def test_push_backfills_missed_commits_and_pushes_the_ledger(
    repo: Path, upstream: Path, clone_of: Callable[..., Path]
) -> None:
    before_hooks = start(repo, upstream)
    captured = commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "captured")
    no_verify = commit(repo, {"metrics.json": metrics_json(acc=0.65)}, "no verify", no_verify=True)
    write(repo, {"metrics.json": metrics_json(acc=0.7)})
    git(repo, "add", "metrics.json")
    assert gitp(repo, "commit", "-qm", "hooks off", env={"MLCI_NO_HOOKS": "1"}).returncode == 0
    hooks_off = rev(repo, "HEAD")
    assert run_commits(repo) == {captured, no_verify}  # post-commit still runs under --no-verify

    proc = gitp(repo, "push", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert run_commits(repo) == {before_hooks, captured, no_verify, hooks_off}
    remote = remote_refs(upstream)
    assert remote["refs/heads/main"] == hooks_off
    assert remote["refs/mlci/ledger"] == rev(repo, "refs/mlci/ledger")
    assert rev(repo, "refs/mlci-remote/origin/ledger") == remote["refs/mlci/ledger"]

    # a teammate sees every run after pulling the ledger
    mate = clone_of("teammate")
    assert run_mlci(mate, "ledger", "pull").returncode == 0
    assert run_commits(mate) == {before_hooks, captured, no_verify, hooks_off}

    # a second push of a new branch (not a root push): back-filled from the pushed range
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, {"metrics.json": metrics_json(acc=0.9)})
    git(repo, "add", "metrics.json")
    assert gitp(repo, "commit", "-qm", "feature work", env={"MLCI_NO_HOOKS": "1"}).returncode == 0
    feature = rev(repo, "HEAD")
    assert feature not in run_commits(repo)
    proc = gitp(repo, "push", "origin", "feature")
    assert proc.returncode == 0, proc.stderr
    assert feature in run_commits(repo)
    assert remote_refs(upstream)["refs/mlci/ledger"] == rev(repo, "refs/mlci/ledger")


def test_pushing_only_mlci_refs_returns_at_once(repo: Path, upstream: Path) -> None:
    start(repo, upstream)
    assert gitp(repo, "push", "-q", "origin", "main").returncode == 0
    seen = rev(repo, "refs/mlci-remote/origin/ledger")
    assert seen is not None and seen == remote_refs(upstream)["refs/mlci/ledger"]
    # a commit the ledger lacks, and a local ledger record the remote lacks
    write(repo, {"metrics.json": metrics_json(acc=0.8)})
    git(repo, "add", "metrics.json")
    assert gitp(repo, "commit", "-qm", "uncaptured", env={"MLCI_NO_HOOKS": "1"}).returncode == 0
    uncaptured = rev(repo, "HEAD")
    assert run_mlci(repo, "note", "HEAD~1", "a note").returncode == 0
    local_tip = rev(repo, "refs/mlci/ledger")

    proc = gitp(repo, "push", "origin", "refs/mlci/ledger")
    assert proc.returncode == 0, proc.stderr
    assert "mlci:" not in proc.stderr
    # the hook did no work: no back-fill, no ledger sync of its own
    assert uncaptured not in run_commits(repo)
    assert rev(repo, "refs/mlci/ledger") == local_tip
    assert rev(repo, "refs/mlci-remote/origin/ledger") == seen
    assert remote_refs(upstream)["refs/mlci/ledger"] == local_tip  # git's own push did it

    # the stage itself, given git's stdin for a refs/mlci-only push
    stdin = f"refs/mlci/ledger {local_tip} refs/mlci/ledger {ZERO}\nrefs/mlci/x {local_tip} refs/mlci/x {ZERO}\n"
    proc = run_mlci(repo, "hook", "pre-push", "origin", str(upstream), input=stdin)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert uncaptured not in run_commits(repo)


def test_a_failed_ledger_push_warns_and_the_branch_push_succeeds(repo: Path, upstream: Path) -> None:
    receive = upstream / "hooks" / "pre-receive"
    receive.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        '  case "$ref" in refs/mlci/*) echo "upstream refuses $ref" >&2; exit 1;; esac\n'
        "done\n"
    )
    receive.chmod(0o755)
    start(repo, upstream)
    head = commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "second")
    proc = gitp(repo, "push", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert "mlci: warning: the ledger was not pushed to origin" in proc.stderr
    assert "mlci ledger push origin" in proc.stderr
    assert "[remote rejected] (pre-receive hook declined)" in proc.stderr, "the reason, not a retry count"
    assert "Traceback" not in proc.stderr
    remote = remote_refs(upstream)
    assert remote["refs/heads/main"] == head
    assert not any(ref.startswith("refs/mlci/") for ref in remote)


# --- chaining, core.hooksPath, uninstall ---------------------------------------------------------


USER_PRE_COMMIT = b'#!/bin/sh\n# the team\'s own hook\necho "pre-commit ran" >> "$LOG"\nexit "${USER_RC:-0}"\n'
USER_PRE_PUSH = b'#!/bin/sh\necho "pre-push $1" >> "$LOG"\ncat >> "$LOG"\nexit "${USER_RC:-0}"\n'


def test_existing_hooks_are_chained_and_restored_byte_for_byte(
    repo: Path, upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "user-hooks.log"
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.setenv("TMPDIR", str(scratch))
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "pre-commit").write_bytes(USER_PRE_COMMIT)
    (hooks / "pre-commit").chmod(0o750)
    (hooks / "pre-push").write_bytes(USER_PRE_PUSH)
    (hooks / "pre-push").chmod(0o755)
    original = hook_files(hooks)

    git(repo, "remote", "add", "origin", str(upstream))
    write(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5)})
    install(repo)
    assert (hooks / f"pre-commit{SAVED_SUFFIX}").read_bytes() == USER_PRE_COMMIT
    first = commit(repo, {}, "first")
    assert log.read_text() == "pre-commit ran\n"
    assert run_commits(repo) == {first}

    # the user's hook failing blocks the commit (mlci's part never runs)
    write(repo, {"metrics.json": metrics_json(acc=0.6)})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-m", "blocked by the team hook", env={"USER_RC": "3"})
    assert proc.returncode != 0
    assert rev(repo, "HEAD") == first

    # pre-push: both hooks read git's stdin; a failing user hook blocks the push
    log.write_text("")
    proc = gitp(repo, "push", "origin", "main", env={"USER_RC": "4"})
    assert proc.returncode != 0
    assert "refs/heads/main" not in remote_refs(upstream)
    assert f"pre-push origin\nrefs/heads/main {first} refs/heads/main {ZERO}\n" == log.read_text()
    log.write_text("")
    proc = gitp(repo, "push", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert f"refs/heads/main {first} refs/heads/main {ZERO}" in log.read_text()
    remote = remote_refs(upstream)
    assert remote["refs/heads/main"] == first
    assert remote["refs/mlci/ledger"] == rev(repo, "refs/mlci/ledger"), "mlci's pre-push saw the refs too"
    assert list(scratch.iterdir()) == [], "the pre-push stdin copy was left behind"

    out = run_mlci(repo, "uninstall")
    assert out.returncode == 0, out.stderr
    assert hook_files(hooks) == original
    # and the repository works as before
    commit(repo, {"metrics.json": metrics_json(acc=0.7)}, "after uninstall")
    assert len(runs(repo)) == 1


def test_core_hooks_path_is_honoured(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", ".githooks")
    team = repo / ".githooks"
    team.mkdir()
    (team / "post-commit").write_bytes(b'#!/bin/sh\necho "team post-commit" >&2\n')
    (team / "post-commit").chmod(0o755)
    write(repo, {"params.yaml": "lr: 0.1\n", "metrics.json": metrics_json(acc=0.5), "src/model.py": "x = 1\n"})
    original = hook_files(team)
    default_hooks = repo / ".git" / "hooks"
    default_before = hook_files(default_hooks) if default_hooks.exists() else {}

    proc = run_mlci(repo / "src", "install")  # from a subfolder: the relative hooksPath is the root's
    assert proc.returncode == 0, proc.stderr
    assert sorted(hook_files(team)) == sorted([*STAGES, f"post-commit{SAVED_SUFFIX}"])
    assert not (repo / "src" / ".githooks").exists()
    assert (hook_files(default_hooks) if default_hooks.exists() else {}) == default_before

    git(repo, "add", "-A")
    proc = gitp(repo, "commit", "-m", "first")
    assert proc.returncode == 0, proc.stderr
    assert "team post-commit" in proc.stderr
    assert run_commits(repo) == {rev(repo, "HEAD")}

    assert run_mlci(repo, "uninstall").returncode == 0
    assert hook_files(team) == original


# --- post-checkout, post-merge -------------------------------------------------------------------


def test_checkout_and_merge_never_fail(repo: Path) -> None:
    start(repo)
    commit(repo, {"metrics.json": metrics_json(acc=0.6)}, "second")
    state = Repo.find(repo)
    for derived in state.state_dir.glob("cache*"):  # the query cache is derived: drop it
        derived.unlink()
    assert not cache_is_current(state)
    proc = gitp(repo, "checkout", "-b", "feature")
    assert proc.returncode == 0, proc.stderr
    assert cache_is_current(state), "a branch checkout refreshes the query cache"
    assert "mlci" not in proc.stderr

    # a broken mlci.yaml on the branch: checkouts and merges go through with a notice
    write(repo, {"mlci.yaml": "params: [oops\n"})
    git(repo, "add", "mlci.yaml")
    assert gitp(repo, "commit", "-qm", "broken config", env={"MLCI_NO_HOOKS": "1"}).returncode == 0
    git(repo, "checkout", "-q", "main")
    proc = gitp(repo, "merge", "--ff-only", "feature")
    assert proc.returncode == 0, proc.stderr
    assert "mlci: " in proc.stderr and "mlci.yaml" in proc.stderr
    proc = gitp(repo, "checkout", "-b", "other")
    assert proc.returncode == 0, proc.stderr
    assert "mlci.yaml" in proc.stderr
    # a file checkout is not a branch checkout: nothing to do, nothing said
    proc = gitp(repo, "checkout", "HEAD~1", "--", "metrics.json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# --- MLCI_NO_HOOKS -------------------------------------------------------------------------------


def test_no_hooks_env_turns_every_hook_into_a_no_op(repo: Path, upstream: Path) -> None:
    start(repo, upstream)
    off = {"MLCI_NO_HOOKS": "1"}
    hooks = repo / ".git" / "hooks"
    for stage in STAGES:
        proc = subprocess.run(
            [str(hooks / stage), "garbage", "args", "x"],
            cwd=repo,
            env={**os.environ, **off},
            input="not a ref line\n",
            capture_output=True,
            text=True,
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), stage
        proc = run_mlci(repo, "hook", stage, "garbage", input="x\n", env=off)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), stage

    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    proc = gitp(repo, "commit", "-qm", "bad but unchecked", env=off)
    assert proc.returncode == 0, proc.stderr
    proc = gitp(repo, "checkout", "-q", "-b", "feature", env=off)
    assert proc.returncode == 0 and proc.stderr == ""
    proc = gitp(repo, "push", "-q", "origin", "feature", env=off)
    assert proc.returncode == 0, proc.stderr
    assert run_commits(repo) == set()
    assert rev(repo, "refs/mlci/ledger") is None
    assert not any(ref.startswith("refs/mlci/") for ref in remote_refs(upstream))


def test_post_commit_starts_the_background_compaction_only_past_the_threshold(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the threshold a capture spawns no `ledger compact --auto` (it used to start one
    per commit); records that came another way are counted within RECOUNT_EVERY captures."""
    from ledger_helpers import append_runs

    from mlci_tui import hooks
    from mlci_tui.capture import compact_due
    from mlci_tui.ledger import compact

    monkeypatch.setattr(compact, "AUTO_THRESHOLD", 4)
    monkeypatch.setattr(compact_due, "RECOUNT_EVERY", 3)
    spawned: list[str] = []
    monkeypatch.setattr(hooks, "_compact_in_background", lambda: spawned.append(rev(repo, "HEAD") or ""))
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLCI_NO_HOOKS", "1")  # the commits themselves; the hook runs in-process below

    def commit_and_capture(i: int) -> None:
        commit(repo, {"params.yaml": f"lr: {i}\n", "metrics.json": metrics_json(acc=i / 10)}, f"c{i}")
        monkeypatch.delenv("MLCI_NO_HOOKS")
        assert hooks.run("post-commit", []) == 0
        monkeypatch.setenv("MLCI_NO_HOOKS", "1")

    for i in range(3):
        commit_and_capture(i)
    assert spawned == []  # 3 loose records, threshold 4
    commit_and_capture(3)
    assert spawned == [rev(repo, "HEAD")]
    assert (repo / ".git" / "mlci" / "compact-room").read_text().split() == ["0", "0"]
    # compacted meanwhile: room again; then 5 records from elsewhere, seen at the next recount
    assert run_mlci(repo, "ledger", "compact").returncode == 0
    spawned.clear()
    commit_and_capture(4)
    assert spawned == [] and (repo / ".git" / "mlci" / "compact-room").read_text().split() == ["3", "0"]
    append_runs(repo, 5, batch=5)
    commit_and_capture(5)
    commit_and_capture(6)
    assert spawned == []  # not counted yet: 2 captures since the last count, under both limits
    commit_and_capture(7)  # the third capture since: counted, 8 loose
    assert spawned == [rev(repo, "HEAD")]


def test_plain_hooks_compact_in_the_background_past_the_threshold(repo: Path) -> None:
    start(repo)
    env = {"MLCI_COMPACT_THRESHOLD": "3"}
    for i in range(3):
        write(repo, {"metrics.json": metrics_json(acc=i / 10)})
        git(repo, "add", "metrics.json")
        assert gitp(repo, "commit", "-q", "-m", f"m{i}", env=env).returncode == 0
    for _ in range(600):  # the detached `mlci ledger compact --auto`: up to a minute on a loaded machine
        tree = git(repo, "ls-tree", "-r", "--name-only", "refs/mlci/ledger").split()
        if any(p.startswith("segments/") for p in tree):
            break
        import time

        time.sleep(0.1)
    assert not [p for p in tree if p.startswith("events/")] and len(runs(repo)) == 3


def test_pre_commit_checks_what_the_commit_changes_from_its_one_diff(repo: Path, tmp_path: Path) -> None:
    """The staged params and metrics files are found in the hook's own `git diff --cached
    --raw` (no `git ls-files` per pattern): a bad file committed earlier with --no-verify does
    not block a commit that leaves it alone; a staged config makes the whole index checked."""
    start(repo)
    write(repo, {"metrics.json": BAD_METRICS})
    git(repo, "add", "metrics.json")
    assert gitp(repo, "commit", "-qm", "bad, unchecked", "--no-verify").returncode == 0
    write(repo, {"params.yaml": "train:\n  lr: 0.2\n"})
    git(repo, "add", "params.yaml")
    trace = tmp_path / "trace"
    proc = gitp(repo, "commit", "-qm", "params only", env={"GIT_TRACE": str(trace)})
    assert proc.returncode == 0, proc.stderr
    started = [line.split("built-in: ", 1)[1] for line in trace.read_text().splitlines() if "built-in: git" in line]
    # pre-commit's processes: after `git commit` itself, up to post-commit's pre-check (`ls-tree HEAD`)
    hook = started[1 : next(i for i, c in enumerate(started) if c.startswith("git ls-tree --name-only -z HEAD"))]
    hook = [c for c in hook if not c.startswith("git maintenance")]  # git commit's own, after pre-commit
    assert hook[0].startswith("git diff --cached --raw") and not [c for c in hook if c.startswith("git ls-files")]
    assert len(hook) <= 3, hook  # the diff, rev-parse, one cat-file --batch for the config and the blobs
    # the config changes: every params and metrics file of the index is checked again
    write(repo, {"mlci.yaml": (repo / "mlci.yaml").read_text() + "\n"})
    git(repo, "add", "mlci.yaml")
    blocked = gitp(repo, "commit", "-qm", "config")
    assert blocked.returncode == 1 and "metrics.json:4" in blocked.stderr
