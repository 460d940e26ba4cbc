"""`mlci sweep ...`: hyperparameter sweeps queued in the ledger (handlers in sweep/commands.py)."""

from __future__ import annotations

import argparse

from mlci_tui.cli.options import add_command, add_format_options, command_group


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = command_group(
        sub, "sweep", "hyperparameter sweeps: queue trials in the ledger, run them here, on Dask or CI"
    )

    p = add_command(
        group,
        "create",
        "sweep.commands:create",
        "queue the trials of sweeps.NAME (mlci.yaml, or --file) against HEAD",
        "mlci sweep create lr-search",
    )
    p.add_argument("name", help="the sweep's name (a key under sweeps: in mlci.yaml)")
    p.add_argument("--file", help="read the sweep from this YAML file instead of mlci.yaml")
    p.add_argument(
        "--workspace", action="store_true", help="run against the working tree (stored as a snapshot commit)"
    )

    p = add_command(
        group,
        "start",
        "sweep.commands:start",
        "run the queued trials of a sweep until none is left",
        "mlci sweep start lr-search -j 4    |    mlci sweep start lr-search --executor dask --scheduler tcp://h:8786",
    )
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument("--executor", choices=("local", "dask", "ci"), help="default: the sweep's executor (local)")
    p.add_argument("-j", "--jobs", type=int, help="trials at a time (default: the sweep's parallel)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler (default: a LocalCluster started here)")

    p = add_command(
        group,
        "status",
        "sweep.commands:status",
        "sweeps and their progress, or the trials of one sweep",
        "mlci sweep status lr-search",
    )
    p.add_argument("name", nargs="?", help="sweep name or id prefix (default: list every sweep)")
    add_format_options(p)

    p = add_command(
        group,
        "logs",
        "sweep.commands:logs",
        "the log of a trial (its full log where it ran, else the stderr tail in the ledger)",
        "mlci sweep logs lr-search-3 -f",
    )
    p.add_argument("trial", help="trial id prefix, or SWEEP-NUMBER")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing while the trial runs")

    p = add_command(
        group, "cancel", "sweep.commands:cancel", "cancel the queued trials of a sweep", "mlci sweep cancel lr-search"
    )
    p.add_argument("name", help="sweep name or id prefix")

    p = add_command(
        group,
        "retry",
        "sweep.commands:retry",
        "queue the failed and cancelled trials of a sweep again",
        "mlci sweep retry lr-search",
    )
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument(
        "--running", action="store_true", help="also trials recorded running with no local worker (lost CI jobs)"
    )

    p = add_command(
        group, "best", "sweep.commands:best", "the best trial of a sweep by its metric", "mlci sweep best lr-search"
    )
    p.add_argument("name", help="sweep name or id prefix")
    add_format_options(p)

    p = add_command(
        group,
        "matrix",
        "sweep.commands:matrix",
        "print the queued trials as a CI matrix (JSON: {include: [{trial, name}]})",
        "mlci sweep matrix lr-search",
    )
    p.add_argument("name", help="sweep name or id prefix")
    p.add_argument("--limit", type=int, default=256, help="at most N trials (default 256, GitHub's matrix limit)")

    p = add_command(
        group,
        "work",
        "sweep.commands:work",
        "run one trial here (a CI job) and push its result to the ledger remote",
        "mlci sweep work --trial 3kq2v5xw",
    )
    p.add_argument("--trial", required=True, help="trial id (or prefix, or SWEEP-NUMBER)")
    p.add_argument("-r", "--remote", help="ledger remote to pull from and push to (default ledger.remote)")
    p.add_argument("--no-push", action="store_true", help="record in the local ledger only")
