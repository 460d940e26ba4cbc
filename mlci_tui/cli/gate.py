"""`mlci diff`, `mlci gate`, `mlci promote` and `mlci stages`: a candidate against its baseline."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlci_tui import config as config_mod
from mlci_tui import output
from mlci_tui.cli.console import notice, open_ledger, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.baseline import resolve_baseline
from mlci_tui.ledger.query.compare import diff_maps
from mlci_tui.ledger.query.names import map_keys
from mlci_tui.ledger.query.run import Run, load_run, param_text
from mlci_tui.ledger.query.stages import promotion_count, promotions
from mlci_tui.ledger.resolve import Resolved, resolve_run
from mlci_tui.numbers import compared_change


def _resolve(repo: Repo, con: Any, ref: str) -> Resolved:
    resolved = resolve_run(repo, con, ref)
    if resolved.notice:
        notice(resolved.notice)
    return resolved


def _workspace_run(repo: Repo, cfg: config_mod.Config) -> Run:
    from mlci_tui.capture.build import read_values
    from mlci_tui.sources import WorkdirSource

    values = read_values(cfg, WorkdirSource(repo.root), strict=True)
    params = {key: param_text(value) for key, value in map_keys(values.params).items()}
    metrics = {key: float(value) for key, value in map_keys(values.metrics).items()}
    return Run("workspace", kind="workspace", params=params, metrics=metrics, how="workspace")


def diff(args: argparse.Namespace) -> int:
    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    with open_ledger(repo) as con:
        refs = list(args.revs)
        if len(refs) > 2:
            raise InputError("diff takes at most two runs or commits")
        if refs:
            base_res: Resolved | None = _resolve(repo, con, refs[0])
        else:
            base_res = resolve_baseline(repo, con, cfg, None)
        if base_res is None:
            raise InputError("no baseline: name one (`mlci diff A [B]`), set gate.baseline, or promote a run")
        base = load_run(con, base_res)
        if args.workspace:
            head = _workspace_run(repo, cfg)
        else:
            head = load_run(con, _resolve(repo, con, refs[1] if len(refs) == 2 else "HEAD"))
    params = diff_maps(base.params, head.params, changed_only=not args.all)
    metrics = diff_maps(base.metrics, head.metrics, changed_only=False)
    data = diff_maps(base.datasets, head.datasets, changed_only=not args.all)
    if args.format == "json":
        doc = {
            "base": {"run_id": base.run_id, "commit": base.commit},
            "head": {"run_id": head.run_id, "commit": head.commit},
            "params": [{"name": c.name, "base": c.base, "head": c.head} for c in params],
            "metrics": [
                {"name": c.name, "base": c.base, "head": c.head, "change": c.delta, "change_pct": c.pct}
                for c in metrics
            ],
            "datasets": [{"path": c.name, "base": c.base, "head": c.head} for c in data],
        }
        print(json.dumps(output.json_value(doc), indent=2, ensure_ascii=True))
        return 0
    fmt = "md" if args.format == "md" else "table"
    say(f"{base.label} -> {head.label}")
    print()
    metric_rows = [
        {"metric": c.name, "base": c.base, "head": c.head, "change": compared_change(c.base, c.head)} for c in metrics
    ]
    output.write(metric_rows, ["metric", "base", "head", "change"], fmt, sys.stdout, compared=("base", "head"))
    print()
    if params:
        output.write(
            [{"param": c.name, "base": c.base, "head": c.head} for c in params],
            ["param", "base", "head"],
            fmt,
            sys.stdout,
        )
    else:
        print("params: no change")
    if data:
        print()
        output.write(
            [{"dataset": c.name, "base": c.base, "head": c.head} for c in data],
            ["dataset", "base", "head"],
            fmt,
            sys.stdout,
        )
    return 0


def gate(args: argparse.Namespace) -> int:
    from mlci_tui.gate import run_gate
    from mlci_tui.report.verdict import write_gate

    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    result = run_gate(repo, cfg, args.base, args.head)
    write_gate(result, args.format, sys.stdout)
    return int(result.exit_code)


def _model_hash(repo: Repo, model: str, commit: str | None) -> str | None:
    import blake3

    data: bytes | None = None
    if commit:
        proc = repo.run("cat-file", "blob", f"{commit}:{model}", check=False)
        if proc.returncode == 0:
            data = proc.stdout
    if data is None and (repo.root / model).is_file() and not (repo.root / model).is_symlink():
        data = (repo.root / model).read_bytes()
    return f"blake3:{blake3.blake3(data).hexdigest()}" if data is not None else None


def promote(args: argparse.Namespace) -> int:
    from mlci_tui.ledger import events
    from mlci_tui.ledger.store import LedgerStore

    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    events.check_label("stage", args.stage)
    with open_ledger(repo) as con:
        resolved = _resolve(repo, con, args.run)
        run = load_run(con, resolved)
        count = promotion_count(con, args.stage)
    commit = run.commit
    model_hash = _model_hash(repo, cfg.model, commit) if cfg.model else None
    if cfg.model and model_hash is None:
        notice(f"warning: model {cfg.model} not found in the run's commit or the working tree; no hash recorded")
    author = repo.text("var", "GIT_AUTHOR_IDENT", check=False).rsplit(">", 1)[0] + ">"
    event = events.promote(
        run.run_id, args.stage, model=cfg.model, model_hash=model_hash, by=author if author != ">" else None
    )
    LedgerStore(repo).append([event])
    say(f"promoted {run.label} to {args.stage}" + (f" (model {model_hash[:19]}…)" if model_hash else ""))
    if args.tag:
        if not commit:
            raise InputError(f"--tag: run {run.run_id[:8]} has no commit to tag")
        name = f"{args.stage}/{count + 1}"
        proc = repo.run("tag", name, commit, check=False)
        if proc.returncode != 0:
            raise InputError(f"--tag: git tag {name} failed: {proc.stderr.decode().strip()}")
        say(f"tagged {commit[:12]} as {name}")
    return 0


def stages(args: argparse.Namespace) -> int:
    repo = Repo.find()
    with open_ledger(repo) as con:
        rows = promotions(con, history=args.history)
    table = [
        {
            "stage": p.stage,
            "run": (p.run_id or "")[:8],
            "commit": (p.commit or "")[:8],
            "time": p.time,
            "model": p.model_hash,
            "by": p.by,
        }
        for p in rows
    ]
    output.write(table, ["stage", "run", "commit", "time", "model", "by"], args.format, sys.stdout)
    if not rows and args.format == "table":
        print("nothing promoted yet: `mlci promote RUN --stage deployed`")
    return 0


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "diff",
        diff,
        "params, metrics and data between two runs or commits",
        "mlci diff deployed HEAD --md",
    )
    p.add_argument("revs", nargs="*", metavar="RUN", help="base and head (default: the baseline and HEAD)")
    p.add_argument("--workspace", action="store_true", help="compare with the working tree instead of HEAD")
    p.add_argument("--all", action="store_true", help="list unchanged params and datasets too")
    add_format_options(p)
    p = add_command(
        sub,
        "gate",
        gate,
        "check a candidate against the baseline with gate.rules; exit 1 on failure",
        "mlci gate --base deployed --head HEAD",
    )
    p.add_argument("--base", help="baseline run, stage or commit (default gate.baseline, else stage deployed)")
    p.add_argument("--head", default="HEAD", help="candidate run, stage or commit (default HEAD)")
    add_format_options(p)
    p = add_command(
        sub,
        "promote",
        promote,
        "record that a run's model is promoted to a stage",
        "mlci promote HEAD --stage deployed --tag",
    )
    p.add_argument("run", help="run id or prefix, stage, or commit-ish")
    p.add_argument("--stage", default="deployed", help="stage name (default deployed)")
    p.add_argument("--tag", action="store_true", help="also tag the run's commit as STAGE/N")
    p = add_command(sub, "stages", stages, "what is promoted where", "mlci stages --history")
    p.add_argument("--history", action="store_true", help="every promotion, not only the current one per stage")
    add_format_options(p)
