"""mlci's entries added to a team's `.pre-commit-config.yaml` as text, at the lines ruamel.yaml reports.

Re-dumping the file would re-indent it (every line in `git diff`). Instead the file is parsed
only to learn where things are, and lines are inserted there with the file's own indentation;
a one-line flow list (`default_install_hook_types: [pre-commit]`, `skip: [...]`, `repos: []`)
may be the one line rewritten. The result is parsed again and must equal the old data plus
exactly mlci's additions, or nothing is written.

What is added, so that the team's hooks run where they ran before:
- mlci's hooks, each with its `stages:`, at the end of an existing block `repo: local` (else a
  new one at the end of `repos:`);
- `default_install_hook_types`: the types the team installed plus mlci's stages, so a
  teammate's plain `pre-commit install` sets up every mlci stage;
- `default_stages` (when absent): the hook types the team had installed, so a hook without
  `stages:` does not start running at pre-push, post-checkout or post-merge;
- `ci: skip:` with mlci's ids: pre-commit.ci cannot run `language: system` hooks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from mlci_tui.errors import MlciError

INDENT = 2  # for blocks the file gives no example of


def add_mlci(text: str, hooks: list[dict[str, Any]], installed: Sequence[str], *, where: str) -> str | None:
    """`text` with mlci's `hooks` and settings added (None: an `mlci-` hook is there already).
    `installed`: the hook types the team's clone runs today."""
    doc = _load(text, where)
    repos = doc.get("repos")
    for repo in repos or []:
        if any(str(h.get("id", "")).startswith("mlci-") for h in (repo.get("hooks") or []) if hasattr(h, "get")):
            return None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    edits = _Edits(lines)
    ids = [str(h["id"]) for h in hooks]
    stages = [s for h in hooks for s in h["stages"]]
    _add_hooks(doc, edits, hooks)
    existing_types = doc.get("default_install_hook_types")
    before = list(existing_types) if existing_types is not None else list(dict.fromkeys(installed))
    types = list(dict.fromkeys([*before, *stages]))
    tail: list[str] = []
    if existing_types is None:
        tail += [
            "# mlci init: what a plain `pre-commit install` sets up (mlci's stages included)\n",
            f"default_install_hook_types: {_flow(types)}\n",
        ]
    else:
        _extend_list(doc, "default_install_hook_types", [t for t in types if t not in before], edits, 0)
    if "default_stages" not in doc:
        tail += [
            "# mlci init: hooks without `stages:` run where they ran before mlci's hook types were installed\n",
            f"default_stages: {_flow(before)}\n",
        ]
    ci = doc.get("ci")
    if ci is None and "ci" not in doc:
        tail += ["# pre-commit.ci cannot run mlci's `language: system` hooks\n", "ci:\n", f"  skip: {_flow(ids)}\n"]
    elif hasattr(ci, "lc") and not ci.fa.flow_style() and len(ci):
        if "skip" in ci:
            _extend_list(
                ci, "skip", [i for i in ids if i not in (ci["skip"] or [])], edits, ci.lc.key(next(iter(ci)))[1]
            )
        else:
            line, col = ci.lc.key(next(iter(ci)))
            edits.insert(line, [" " * col + f"skip: {_flow(ids)}\n"])
    else:
        raise MlciError(f"{where}: `ci:` is not a block mapping; add `skip: {_flow(ids)}` to it by hand")
    if tail:
        edits.insert(len(lines), tail)
    new = edits.apply()
    _check(doc, new, hooks, types, before, ids, where)
    return new


def install_hook_types(text: str, stages: Sequence[str]) -> list[str]:
    """The hook types `pre-commit install` should set up: the config's
    `default_install_hook_types`, then mlci's `stages`."""
    doc = _load(text, "")
    return list(dict.fromkeys([*(doc.get("default_install_hook_types") or ["pre-commit"]), *stages]))


class _Edits:
    """Lines inserted before a line number, or one line replaced; applied bottom-up."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.inserts: list[tuple[int, int, list[str]]] = []
        self.replaced: dict[int, str] = {}

    def insert(self, before: int, new: list[str]) -> None:
        self.inserts.append((before, len(self.inserts), new))

    def replace(self, line: int, text: str) -> None:
        self.replaced[line] = text

    def apply(self) -> str:
        lines = [self.replaced.get(i, line) for i, line in enumerate(self.lines)]
        for before, _order, new in sorted(self.inserts, reverse=True):
            lines[before:before] = new
        return "".join(lines)


def _load(text: str, where: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    try:
        doc = YAML().load(text)
    except Exception as exc:
        raise MlciError(f"{where}: cannot parse it ({str(exc).splitlines()[0]})") from None
    if doc is None:
        return CommentedMap()
    if not isinstance(doc, CommentedMap) or (len(doc) and doc.fa.flow_style()):
        raise MlciError(f"{where}: expected a block mapping at the top (repos: ...)")
    return doc


def _add_hooks(doc: Any, edits: _Edits, hooks: list[dict[str, Any]]) -> None:
    """mlci's hooks at the end of the block `repo: local`, else a new `repo: local` at the end of `repos:`."""
    lines = edits.lines
    repos = doc.get("repos")
    if "repos" not in doc or repos is None:
        block = _repo_block(hooks, INDENT, INDENT + 2, INDENT + 4, INDENT + 6)
        if "repos" in doc:  # `repos:` with nothing under it
            edits.insert(doc.lc.key("repos")[0] + 1, block)
        else:
            edits.insert(len(lines), ["repos:\n", *block])
        return
    if repos.fa.flow_style() or not len(repos):
        line = doc.lc.key("repos")[0]
        if len(repos) or not re.search(r"\[\s*\]", lines[line]):
            raise MlciError("repos: a flow list [...]; write it as a block list to let mlci add its hooks")
        edits.replace(line, re.sub(r"\s*\[\s*\]", "", lines[line], count=1))
        edits.insert(line + 1, _repo_block(hooks, INDENT, INDENT + 2, INDENT + 4, INDENT + 6))
        return
    repo_dash, repo_key = _item_columns(lines, repos, 0)
    ends = _top_level_starts(doc, "repos", len(lines))
    for i, repo in enumerate(repos):
        own = repo.get("hooks") if hasattr(repo, "get") else None
        if repo.get("repo") == "local" and own and not own.fa.flow_style():
            dash, key = _item_columns(lines, own, 0)
            after_hooks = [repo.lc.key(k)[0] for k in repo if repo.lc.key(k)[0] > repo.lc.key("hooks")[0]]
            nxt = min([*after_hooks, repos.lc.item(i + 1)[0] if i + 1 < len(repos) else ends])
            edits.insert(_back_over_comments(lines, nxt), [ln for h in hooks for ln in _hook_lines(h, dash, key)])
            return
    hook_dash, hook_key = repo_key + INDENT, repo_key + INDENT + 2
    for repo in repos:  # the file's own hook indentation, relative to its repos
        own = repo.get("hooks") if hasattr(repo, "get") else None
        if own and not own.fa.flow_style():
            dash, key = _item_columns(lines, own, 0)
            hook_dash, hook_key = (
                repo_key + (dash - repo.lc.key("hooks")[1]),
                repo_key + (key - repo.lc.key("hooks")[1]),
            )
            break
    block = _repo_block(hooks, repo_dash, repo_key, hook_dash, hook_key)
    edits.insert(_back_over_comments(lines, ends), block)


def _repo_block(hooks: list[dict[str, Any]], dash: int, key: int, hook_dash: int, hook_key: int) -> list[str]:
    head = [" " * dash + "-" + " " * (key - dash - 1) + "repo: local\n", " " * key + "hooks:\n"]
    return head + [ln for h in hooks for ln in _hook_lines(h, hook_dash, hook_key)]


def _hook_lines(hook: dict[str, Any], dash: int, key: int) -> list[str]:
    out = []
    for n, (name, value) in enumerate(hook.items()):
        lead = " " * dash + "-" + " " * (key - dash - 1) if n == 0 else " " * key
        out.append(f"{lead}{name}: {_scalar(value)}\n")
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return _flow(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z][\w .\-/]*", text) and not text.endswith(" ") and text not in ("true", "false"):
        return text
    return "'" + text.replace("'", "''") + "'"


def _flow(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


def _item_columns(lines: list[str], seq: Any, index: int) -> tuple[int, int]:
    """(column of the dash, column of the content) of a block list's item."""
    line, col = seq.lc.item(index)
    dash = lines[line].rfind("-", 0, col)
    if dash < 0:  # the dash on a line of its own above the content
        dash = max(col - INDENT, 0)
    return dash, col


def _top_level_starts(doc: Any, key: str, end: int) -> int:
    """The line where the top-level key after `key` starts (else `end`)."""
    line = doc.lc.key(key)[0]
    later = [doc.lc.key(k)[0] for k in doc if doc.lc.key(k)[0] > line]
    return min(later, default=end)


def _back_over_comments(lines: list[str], before: int) -> int:
    """Step back over blank and comment lines: they belong to what follows."""
    while before > 0 and (not lines[before - 1].strip() or lines[before - 1].lstrip().startswith("#")):
        before -= 1
    return before


def _extend_list(parent: Any, key: str, added: list[str], edits: _Edits, key_col: int) -> None:
    """Add `added` to the list `parent[key]`: the flow list's line rewritten, or block items inserted."""
    if not added:
        return
    seq = parent[key]
    line = parent.lc.key(key)[0]
    text = edits.lines[line]
    if seq is None or seq.fa.flow_style():
        values = list(seq or [])
        match = re.search(r"\[[^\]\n]*\]", text)
        if seq is not None and (match is None or seq.lc.line != line):
            raise MlciError(f"{key}: a flow list over several lines; add {', '.join(added)} to it by hand")
        listed = _flow([*values, *added])
        if match is not None:
            edits.replace(line, text[: match.start()] + listed + text[match.end() :])
        else:
            edits.replace(line, text.rstrip("\n").rstrip() + f" {listed}\n")
        return
    dash, col = _item_columns(edits.lines, seq, 0)
    last = seq.lc.item(len(seq) - 1)[0]
    edits.insert(last + 1, [" " * dash + "-" + " " * (col - dash - 1) + f"{_scalar(a)}\n" for a in added])


def _plain(node: Any) -> Any:
    if hasattr(node, "items"):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _check(
    old: Any,
    new_text: str,
    hooks: list[dict[str, Any]],
    types: list[str],
    before: list[str],
    ids: list[str],
    where: str,
) -> None:
    """The edited file must hold the old data plus exactly mlci's additions."""
    want = _plain(old)
    repos = want.get("repos") or []
    local = [r for r in repos if r.get("repo") == "local" and r.get("hooks")]
    if local and not _is_flow(old, local, repos):
        local[0]["hooks"] = [*local[0]["hooks"], *hooks]
    else:
        repos = [*repos, {"repo": "local", "hooks": hooks}]
    want["repos"] = repos
    want["default_install_hook_types"] = types
    want.setdefault("default_stages", before)
    ci = want.get("ci") or {}
    ci["skip"] = list(dict.fromkeys([*(ci.get("skip") or []), *ids]))
    want["ci"] = ci
    try:
        got = _plain(_load(new_text, where))
    except MlciError:
        got = None
    if got != want:
        raise MlciError(
            f"{where}: mlci cannot add its hooks without rewriting the file; add them by hand (docs/hooks.md)"
        )


def _is_flow(old: Any, local: list[dict[str, Any]], repos: list[dict[str, Any]]) -> bool:
    """Whether the first `repo: local` with hooks lists them as a flow list (a new block is added then)."""
    index = repos.index(local[0])
    hooks = old["repos"][index]["hooks"]
    return bool(hooks.fa.flow_style())
