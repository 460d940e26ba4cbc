"""`mlci diff`, `mlci gate`, `mlci promote` and `mlci stages`: a candidate against its baseline.

`gate` and `promote` are typed command functions: their handlers (`*_handler`) only read the
arguments, and the CI steps (ci/steps.py) call them directly. What a promotion records
(model hash, author) is the core's `mlci_tui.gate.promotion`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mlci_tui import config as config_mod
from mlci_tui import output
from mlci_tui.cli.console import notice, open_ledger, resolve_ref, say
from mlci_tui.cli.options import SubParsers, add_command, add_format_options
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sanitize import display

if TYPE_CHECKING:
    from mlci_tui.ledger.query.groups import Group
    from mlci_tui.ledger.query.run import Run
    from mlci_tui.ledger.resolve import Resolved


def _workspace_run(repo: Repo, cfg: config_mod.Config) -> Run:
    from mlci_tui.capture.build import read_values
    from mlci_tui.ledger.query.names import map_keys
    from mlci_tui.ledger.query.run import Run, param_text
    from mlci_tui.sources import WorkdirSource

    values = read_values(cfg, WorkdirSource(repo.root), strict=True)
    params = {key: param_text(value) for key, value in map_keys(values.params).items()}
    metrics = {key: float(value) for key, value in map_keys(values.metrics).items()}
    return Run("workspace", kind="workspace", params=params, metrics=metrics, how="workspace")


def diff(args: argparse.Namespace) -> int:
    """params, metrics and data between two runs or commits

    Example: mlci diff deployed HEAD --md
    """
    from mlci_tui.ledger.query.baseline import resolve_baseline
    from mlci_tui.ledger.query.compare import diff_maps
    from mlci_tui.ledger.query.groups import Group, group_of
    from mlci_tui.ledger.query.run import load_run
    from mlci_tui.numbers import compared_change

    repo = Repo.find()
    cfg = config_mod.load(repo.root)
    with open_ledger(repo) as con:
        refs = list(args.revs)
        if len(refs) > 2:
            raise InputError("diff takes at most two runs or commits")
        if refs:
            base_res: Resolved | None = resolve_ref(repo, con, refs[0])
        else:
            base_res = resolve_baseline(repo, con, cfg, None)
        if base_res is None:
            raise InputError("no baseline: name one (`mlci diff A [B]`), set gate.baseline, or promote a run")
        base = load_run(con, base_res)
        if args.workspace:
            head = _workspace_run(repo, cfg)
        else:
            head = load_run(con, resolve_ref(repo, con, refs[1] if len(refs) == 2 else "HEAD"))
        seed = cfg.section("train")["repeats"]["seed_param"]
        base_group = group_of(con, base, seed)
        head_group = group_of(con, head, seed) if not args.workspace else Group([head])
    params = diff_maps(base.params, head.params, changed_only=not args.all)
    metrics = diff_maps(base_group.means(), head_group.means(), changed_only=False)
    spreads = {"base": _group_spreads(base_group), "head": _group_spreads(head_group)}
    data = diff_maps(base.datasets, head.datasets, changed_only=not args.all)
    if args.format == "json":
        doc = {
            "base": {"run_id": base.run_id, "commit": base.commit},
            "head": {"run_id": head.run_id, "commit": head.commit},
            "params": [{"name": c.name, "base": c.base, "head": c.head} for c in params],
            "metrics": [
                {"name": c.name, "base": c.base, "head": c.head, "change": c.delta, "change_pct": c.pct}
                | {f"{side}_group": found.doc() for side in spreads if (found := spreads[side].get(c.name))}
                for c in metrics
            ],
            "datasets": [{"path": c.name, "base": c.base, "head": c.head} for c in data],
        }
        print(json.dumps(output.json_value(doc), indent=2, ensure_ascii=True))
        return 0
    fmt = "md" if args.format == "md" else "table"
    width = output.terminal_width(sys.stdout) if fmt == "table" else None
    print(output.fit_text(display(f"{base.label} -> {head.label}"), width))
    print()
    metric_rows = [
        {
            "metric": c.name,
            "base": spreads["base"].get(c.name, c.base),
            "head": spreads["head"].get(c.name, c.head),
            "change": compared_change(c.base, c.head),
        }
        for c in metrics
    ]
    # every column kept, long values wrapped (output.py)
    output.write(
        metric_rows,
        ["metric", "base", "head", "change"],
        fmt,
        sys.stdout,
        compared=("base", "head"),
        width=width,
        fold=True,
    )
    print()
    if params:
        output.write(
            [{"param": c.name, "base": c.base, "head": c.head} for c in params],
            ["param", "base", "head"],
            fmt,
            sys.stdout,
            width=width,
            fold=True,
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
            width=width,
            fold=True,
        )
    return 0


def _group_spreads(group: Group) -> dict[str, output.Spread]:
    """`mean ± sd (n)` for each metric the group has more than one value of."""
    found = {name: group.summary(name) for name in group.metric_names()} if group.n > 1 else {}
    return {name: output.Spread(*summary) for name, summary in found.items() if summary}


def gate_handler(args: argparse.Namespace) -> int:
    """check a candidate against the baseline with gate.rules; exit 1 on failure

    Example: mlci gate --base deployed --head HEAD
    """
    return gate(Repo.find(), base=args.base, head=args.head, fmt=args.format)


def gate(repo: Repo, *, base: str | None = None, head: str = "HEAD", fmt: str = "table") -> int:
    """`mlci gate`: `head` against `base` (None: the configured baseline) with gate.rules; 1 on failure."""
    from mlci_tui.gate import run_gate
    from mlci_tui.report.verdict import write_gate

    cfg = config_mod.load(repo.root)
    result = run_gate(repo, cfg, base, head)
    write_gate(result, fmt, sys.stdout)
    if result.base is None:
        notice(no_baseline_hint(cfg.section("gate")["require_baseline"]))
    return int(result.exit_code)


def no_baseline_hint(required: bool) -> str:
    """How to give the gate a baseline (docs/contracts.md: gate baselines), on stderr."""
    then = (
        "gate.require_baseline is true, so this fails"
        if required
        else "until then the gate passes; gate.require_baseline: true makes it fail"
    )
    return (
        "hint: no baseline to compare with: promote a run (`mlci promote HEAD --stage deployed`), "
        f"set gate.baseline in mlci.yaml, or pass --base REV; {then}"
    )


def promote_handler(args: argparse.Namespace) -> int:
    """record that a run's model is promoted to a stage

    Example: mlci promote HEAD --stage deployed --tag
    """
    return promote(Repo.find(), args.run, stage=args.stage, tag=args.tag, sign=args.sign)


def promote(repo: Repo, ref: str, *, stage: str = "deployed", tag: bool = False, sign: bool = False) -> int:
    """`mlci promote REF --stage STAGE [--tag] [--sign]`: record the promotion (model and hash from the core's
    `promotion`, signed with `sign` or ledger.trust.signing_key), and with `tag` tag the run's commit STAGE/N."""
    from mlci_tui.gate import promotion
    from mlci_tui.ledger import events
    from mlci_tui.ledger.query.run import load_run
    from mlci_tui.ledger.query.stages import promotion_count
    from mlci_tui.ledger.store import LedgerStore

    cfg = config_mod.load(repo.root)
    events.check_label("stage", stage)
    with open_ledger(repo) as con:
        resolved = resolve_ref(repo, con, ref)
        run = load_run(con, resolved)
        count = promotion_count(con, stage)
    promoted = promotion(repo, cfg, run, stage, sign=sign)
    if cfg.model and promoted.model_hash is None:
        notice(f"warning: model {cfg.model} not found in the run's commit or the working tree; no hash recorded")
    LedgerStore(repo).append([promoted.event])
    model_hash = promoted.model_hash
    signer = promoted.event.get("signer")
    say(
        f"promoted {run.label} to {stage}"
        + (f" (model {model_hash[:19]}…)" if model_hash else "")
        + (f", signed by {signer}" if signer else "")
    )
    if tag:
        commit = run.commit
        if not commit:
            raise InputError(f"--tag: run {run.run_id[:8]} has no commit to tag")
        name = f"{stage}/{count + 1}"
        proc = repo.run("tag", name, commit, check=False)
        if proc.returncode != 0:
            raise InputError(f"--tag: git tag {name} failed: {proc.stderr.decode().strip()}")
        say(f"tagged {commit[:12]} as {name}")
    return 0


def stages(args: argparse.Namespace) -> int:
    """what is promoted where

    Example: mlci stages --history
    """
    from mlci_tui.ledger.query.stages import promotions

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
    width = output.terminal_width(sys.stdout)
    columns = ["stage", "run", "commit", "time", "model", "by"]
    output.write(table, columns, args.format, sys.stdout, width=width, fold=True)
    if not rows and args.format == "table":
        print(output.fit_text("nothing promoted yet: `mlci promote RUN --stage deployed`", width))
    return 0


def add_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "diff", diff)
    p.add_argument("revs", nargs="*", metavar="RUN", help="base and head (default: the baseline and HEAD)")
    p.add_argument("--workspace", action="store_true", help="compare with the working tree instead of HEAD")
    p.add_argument("--all", action="store_true", help="list unchanged params and datasets too")
    add_format_options(p)
    p = add_command(sub, "gate", gate_handler)
    p.add_argument("--base", help="baseline run, stage or commit (default gate.baseline, else stage deployed)")
    p.add_argument("--head", default="HEAD", help="candidate run, stage or commit (default HEAD)")
    add_format_options(p)
    p = add_command(sub, "promote", promote_handler)
    p.add_argument("run", help="run id or prefix, stage, or commit-ish")
    p.add_argument("--stage", default="deployed", help="stage name (default deployed)")
    p.add_argument("--tag", action="store_true", help="also tag the run's commit as STAGE/N")
    p.add_argument(
        "--sign", action="store_true", help="sign with ledger.trust.signing_key or git's user.signingkey (ssh-keygen)"
    )
    p = add_command(sub, "stages", stages)
    p.add_argument("--history", action="store_true", help="every promotion, not only the current one per stage")
    add_format_options(p)
