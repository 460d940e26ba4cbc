"""What `mlci init`, `mlci install` and `mlci uninstall` do: put mlci into a repository, and take it out.

Plain hooks chain to whatever hook was there (kept as `<stage>.pre-mlci`, restored by
uninstall). In a repository that uses the pre-commit framework, mlci's hooks go into
`.pre-commit-config.yaml` as `repo: local` entries instead, installed through the framework.
Running any of these twice changes nothing.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Literal

import mlci_tui
from mlci_tui import config
from mlci_tui.constants import DVC_ROOT_FILES
from mlci_tui.errors import MlciError
from mlci_tui.gitio import Repo
from mlci_tui.hooks import STAGES
from mlci_tui.sanitize import display

MARKER = "# mlci-hook v1"
SAVED_SUFFIX = ".pre-mlci"
GITIGNORE_LINES = (".mlci/", "mlci.local.yaml", "*.mlci-tmp")
FRAMEWORK_CONFIG = ".pre-commit-config.yaml"


def hooks_dir(repo: Repo) -> Path:
    """The hooks directory git uses, honouring core.hooksPath."""
    path = Path(repo.text("rev-parse", "--git-path", "hooks").strip())
    return path if path.is_absolute() else repo.root / path


def generic_script(stage: str) -> str:
    """The script in the repository's `hooks/` folder: calls `mlci` from PATH."""
    return hook_script(stage, python=None, paths=())


def hook_script(stage: str, *, python: str | None, paths: tuple[str, ...]) -> str:
    """A hook that runs the saved previous hook, then mlci's.

    With `python`, it starts that interpreter with -S and an explicit sys.path: no site
    processing, so a no-op hook costs little more than the interpreter itself.
    """
    lines = [
        "#!/bin/sh",
        f"{MARKER}: {stage}. Installed by `mlci install`; `mlci uninstall` restores what was here.",
        f'prev="$0{SAVED_SUFFIX}"',
    ]
    if stage == "pre-push":
        lines += [
            "# git passes the pushed refs on stdin: keep a copy for both hooks",
            'input=$(mktemp "${TMPDIR:-/tmp}/mlci-pre-push.XXXXXX") || exit 1',
            'cat > "$input"',
            'if [ -x "$prev" ]; then "$prev" "$@" < "$input" || { rc=$?; rm -f "$input"; exit $rc; }; fi',
            'exec < "$input"',
            'rm -f "$input"',
        ]
    else:
        lines.append('if [ -x "$prev" ]; then "$prev" "$@" || exit $?; fi')
    lines.append('[ "$MLCI_NO_HOOKS" = "1" ] && exit 0')
    if python:
        path_list = ":".join(paths).replace("'", "")
        code = (
            "import sys; sys.path[:0] = [p for p in sys.argv.pop(1).split(':') if p]; "
            "sys.dont_write_bytecode = False; "
            f"from mlci_tui.hooks import run; sys.exit(run('{stage}', sys.argv[1:]))"
        )
        lines += [
            f"MLCI_PYTHON='{python}'",
            f"MLCI_PATH='{path_list}'",
            'if [ -x "$MLCI_PYTHON" ]; then',
            f'  exec "$MLCI_PYTHON" -S -c "{code}" "$MLCI_PATH" "$@"',
            "fi",
        ]
    lines += [
        "if command -v mlci >/dev/null 2>&1; then",
        f'  exec mlci hook {stage} "$@"',
        "fi",
        f'echo "mlci: {stage} hook skipped: mlci is not installed (reinstall it, then run mlci install)" >&2',
        "exit 0",
        "",
    ]
    return "\n".join(lines)


def _interpreter_paths() -> tuple[str, ...]:
    package_parent = str(Path(mlci_tui.__file__).resolve().parent.parent)
    paths = [package_parent] + [p for p in sys.path if p and os.path.isdir(p) and "site-packages" in p]
    return tuple(dict.fromkeys(paths))


def install_hooks(repo: Repo, stages: tuple[str, ...] = STAGES) -> list[str]:
    directory = hooks_dir(repo)
    directory.mkdir(parents=True, exist_ok=True)
    script_paths = _interpreter_paths()
    changed = []
    for stage in stages:
        if stage not in STAGES:
            raise MlciError(f"--stage {stage!r}: one of {', '.join(STAGES)}")
        path = directory / stage
        script = hook_script(stage, python=sys.executable, paths=script_paths)
        if path.exists() or path.is_symlink():
            current = path.read_text(errors="replace") if path.is_file() else ""
            if MARKER in current:
                if current == script:
                    continue
            else:
                saved = directory / f"{stage}{SAVED_SUFFIX}"
                if saved.exists():
                    raise MlciError(
                        f"{display(str(path))}: a hook is here and {saved.name} exists too; move one of them away first"
                    )
                os.replace(path, saved)
        tmp = path.with_name(f".{stage}.mlci-tmp")
        tmp.write_text(script)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, path)
        changed.append(stage)
    return changed


def uninstall_hooks(repo: Repo) -> list[str]:
    directory = hooks_dir(repo)
    removed = []
    for stage in STAGES:
        path = directory / stage
        saved = directory / f"{stage}{SAVED_SUFFIX}"
        if path.is_file() and MARKER in path.read_text(errors="replace"):
            path.unlink()
            removed.append(stage)
            if saved.exists():
                os.replace(saved, path)
    return removed


STARTER = """\
# mlci.yaml: what mlci captures from each commit. Reference: docs/config.md
params:
  # params files, read as YAML 1.2 (also .json, .toml); nested keys become train.lr
  files: {params}
metrics:
  # metrics files (.json, .yaml, .toml, .csv/.tsv); dvclive's plots/metrics/*.tsv are read too
  files: {metrics}
  # fields:
  #   acc: {{direction: max}}
  #   loss: {{direction: min}}
ledger:
  remote: origin        # where `mlci ledger push/pull` and the pre-push hook share the ledger
  auto_pull: false      # pull the ledger on branch checkout (uses the network)
# train:
#   command: python train.py   # used by the demo, sweeps and CI
#   deps: [train.py, data/]    # a commit changing these but not the metrics is marked stale
"""

PARAM_CANDIDATES = ("params.yaml", "params.yml", "params.json", "params.toml", "config/params.yaml")
METRIC_CANDIDATES = (
    "metrics.json",
    "dvclive/metrics.json",
    "metrics.yaml",
    "scores.json",
    "eval/metrics.json",
    "results/metrics.json",
)


DVC_STARTER = """\
# mlci.yaml: what mlci captures from each commit. Reference: docs/config.md
# A DVC project: each commit's params and metrics are what its dvc.yaml declares (metrics:,
# params:, plots:, live:), read at that commit, as `mlci import dvc` reads history.
# List files here only to add ones dvc.yaml does not declare (globs; .txt: `key: value` lines):
# params:
#   files: [config/*.yaml]
# metrics:
#   files: [reports/metrics.txt]
#   fields:
#     acc: {direction: max}
ledger:
  remote: origin        # where `mlci ledger push/pull` and the pre-push hook share the ledger
  auto_pull: false      # pull the ledger on branch checkout (uses the network)
train:
  command: dvc repro    # used by sweeps and CI (or `dvc exp run`)
"""


def is_dvc_project(root: Path) -> bool:
    """DVC's files or folder at the top of the working tree (what capture asks of a commit)."""
    return any((root / name).exists() for name in DVC_ROOT_FILES)


def starter_config(root: Path) -> str:
    if is_dvc_project(root):
        return DVC_STARTER
    params = [p for p in PARAM_CANDIDATES if (root / p).is_file()] or ["params.yaml"]
    metrics = [m for m in METRIC_CANDIDATES if (root / m).is_file()] or ["metrics.json", "dvclive/metrics.json"]
    return STARTER.format(params="[" + ", ".join(params) + "]", metrics="[" + ", ".join(metrics) + "]")


def write_starter_config(root: Path) -> Literal["pyproject", "written", "kept"]:
    """Give the repository a config unless it has one: `pyproject` when `[tool.mlci]` is
    used (an mlci.yaml would take precedence over it), `written` for a new mlci.yaml, `kept`
    for the existing one. An invalid existing config raises now, before anything is written."""
    if config.load(root).source == "pyproject.toml":
        return "pyproject"
    if (root / "mlci.yaml").exists():
        return "kept"
    (root / "mlci.yaml").write_text(starter_config(root))
    return "written"


def init_notes(repo: Repo) -> list[str]:
    """What `mlci init` tells about where each commit's values will come from: in a DVC
    project, that it follows dvc.yaml and which declared metrics a commit cannot hold;
    anywhere, when no metrics file is to be found."""
    cfg = config.load(repo.root)
    if is_dvc_project(repo.root):
        return _dvc_notes(repo, cfg)
    from mlci_tui.sources import WorkdirSource

    if WorkdirSource(repo.root).find(cfg.metrics_files, []):
        return []
    return [
        f"warning: no metrics file found (looked for {', '.join(cfg.metrics_files)}): "
        "name yours under metrics.files in mlci.yaml, or commits are captured with params only"
    ]


def _dvc_notes(repo: Repo, cfg: config.Config) -> list[str]:
    from mlci_tui.project.reader import ProjectReader
    from mlci_tui.project.worktree import ROOT, WorktreeObjects

    with ProjectReader(repo, WorktreeObjects(repo)) as reader:
        wanted = reader.patterns(ROOT, cfg)
        declared = wanted.declared
        named = list(dict.fromkeys(declared.metrics + [f"{p}.json" for p, summary in declared.live if summary]))
        listed = {p for p in named if reader.objects.lookup(ROOT, p) is not None}
    notes = [
        f"DVC project: mlci follows dvc.yaml ({len(named)} metrics file(s), {len(declared.params)} params file(s), "
        f"{len(declared.plot_decls)} plot(s)); mlci.yaml lists no files. Proposed train.command: dvc repro"
    ]
    notes += [f"warning: {w}" for w in declared.warnings]
    if not named:
        found = bool(wanted.metrics and _workdir_find(repo, wanted.metrics))
        if not found:
            notes.append(
                f"warning: dvc.yaml declares no metrics and none of {', '.join(wanted.metrics)} is here: "
                "commits are captured with params only (declare metrics in dvc.yaml, or list them in mlci.yaml)"
            )
        return notes
    missing = [p for p in named if p not in listed]
    ignored = _ignored(repo, missing)
    kept = [p for p in missing if p in declared.cached or p in ignored]
    if kept:
        why = ", ".join(f"{p} ({'cache: true' if p in declared.cached else '.gitignore'})" for p in kept)
        notes.append(
            f"warning: {why}: DVC outputs kept out of git, so a commit does not hold their values; "
            "record them in CI after `dvc repro` with `mlci record --commit HEAD` "
            "(or set `cache: false` on them in dvc.yaml to commit them)"
        )
    nowhere = [p for p in missing if p not in kept]
    if nowhere:
        notes.append(
            f"warning: {', '.join(nowhere)}: declared in dvc.yaml but nowhere to be found "
            "(not produced yet? run `dvc repro` and commit them)"
        )
    return notes


def _workdir_find(repo: Repo, patterns: list[str]) -> list[str]:
    from mlci_tui.sources import WorkdirSource

    return WorkdirSource(repo.root).find(patterns, [])


def _ignored(repo: Repo, paths: list[str]) -> set[str]:
    """The paths git ignores (whether or not they exist yet)."""
    if not paths:
        return set()
    proc = repo.run(
        "check-ignore", "--no-index", "-z", "--stdin", input=("\0".join(paths) + "\0").encode(), check=False
    )
    return {p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p}


def ensure_gitignore(root: Path) -> bool:
    path = root / ".gitignore"
    text = path.read_text() if path.exists() else ""
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return False
    prefix = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + prefix + "# mlci's local files\n" + "\n".join(missing) + "\n")
    return True


# the files that can matter to mlci-pre-commit (params, metrics, datasets, pointers, mlci.yaml):
# the published hook and `mlci init`'s local entry filter by the same pattern
PRE_COMMIT_FILES = r"(\.(json|ya?ml|toml|csv|tsv|parquet|pq|jsonl|ndjson|mlci|dvc)|dvc\.lock)$"


def framework_hooks() -> list[dict[str, object]]:
    """mlci's `repo: local` entries: each bound to its own stage, quiet when it passes (no
    `verbose`), mlci-pre-commit started only for files it could check (`files:`, as published)."""
    entries = []
    for stage in STAGES:
        entry: dict[str, object] = {
            "id": f"mlci-{stage}",
            "name": f"mlci {stage}",
            "entry": f"mlci hook {stage}",
            "language": "system",
            "stages": [stage],
        }
        if stage == "pre-commit":
            entry["files"] = PRE_COMMIT_FILES
            entry["types_or"] = ["file", "symlink"]  # a staged symlink reaches the hook, which refuses it
        else:
            entry["always_run"] = True  # git runs these stages without files
        entry["pass_filenames"] = False
        entry["require_serial"] = True
        entries.append(entry)
    return entries


def add_to_framework_config(repo: Repo) -> bool:
    """Add mlci to `.pre-commit-config.yaml` without changing what the team's hooks do; False
    when mlci's hooks are there already (framework_config.py: how the file is edited)."""
    from mlci_tui.framework_config import add_mlci

    path = repo.root / FRAMEWORK_CONFIG
    text = path.read_text(encoding="utf-8")
    new = add_mlci(text, framework_hooks(), installed_hook_types(repo), where=FRAMEWORK_CONFIG)
    if new is None:
        return False
    tmp = path.with_name(f".{path.name}.mlci-tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return True


def installed_hook_types(repo: Repo) -> list[str]:
    """The hook types the pre-commit framework runs in this clone (its scripts in the hooks
    folder), at least `pre-commit`: where the team's hooks without `stages:` run today."""
    directory = hooks_dir(repo)
    found = ["pre-commit"]
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix or path.name in found or not path.is_file():
                continue
            try:
                head = path.read_text(errors="replace")[:2000]
            except OSError:
                continue
            if "File generated by pre-commit" in head:
                found.append(path.name)
    return found


def uses_framework(root: Path) -> bool:
    """Whether the repository runs its hooks through the pre-commit framework (mlci's go there too)."""
    return (root / FRAMEWORK_CONFIG).exists()


def install_through_framework(repo: Repo) -> None:
    """`pre-commit install` for the hook types the config names (`default_install_hook_types`,
    which `mlci init` wrote: what a teammate's plain `pre-commit install` sets up too) and mlci's."""
    from mlci_tui.framework_config import install_hook_types

    types = install_hook_types((repo.root / FRAMEWORK_CONFIG).read_text(encoding="utf-8"), STAGES)
    args = [sys.executable, "-m", "pre_commit", "install"]
    for hook_type in types:
        args += ["--hook-type", hook_type]
    proc = subprocess.run(args, cwd=repo.root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip().splitlines()
        raise MlciError(f"pre-commit install failed: {detail[-1] if detail else proc.returncode}")
