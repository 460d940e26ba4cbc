"""The gate's verdict as text: `mlci gate` and the pre-push hook print it (table, Markdown or JSON).

The JSON carries, per rule, the test behind a rule with a confidence (its interval, level,
n and decision: `RuleResult.doc`), so CI and the report read the same thing."""

from __future__ import annotations

import json
from typing import TextIO

from mlci_tui import output
from mlci_tui.gate import GateResult
from mlci_tui.sanitize import display


def write_gate(result: GateResult, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        doc = {
            "verdict": result.verdict,
            "base": result.base.run_id if result.base else None,
            "head": result.head.run_id,
            "rules": [r.doc() for r in result.rules],
            "warnings": result.warnings,
            "failures": result.failures,
        }
        out.write(json.dumps(output.json_value(doc), indent=2, ensure_ascii=True) + "\n")
        return
    base = result.base.label if result.base else "none"
    width = output.terminal_width(out) if fmt != "md" else None  # a table fits the terminal (output.py)
    out.write(output.fit_text(display(f"gate: candidate {result.head.label} against baseline {base}"), width) + "\n")
    if result.rules:
        out.write("\n")
        columns = ["metric", "baseline", "candidate", "change", "limit", "verdict"]
        if any(r.interval for r in result.rules):
            columns.insert(5, "interval")
        output.write(
            [r.row() for r in result.rules],
            columns,
            "md" if fmt == "md" else "table",
            out,
            compared=("baseline", "candidate"),
            truncate=False,  # an interval is read whole
            width=width,
            fold=True,  # every column, the reason wrapped
        )
    for warning in result.warnings:
        out.write(output.fit_text(display(f"warning: {warning}"), width) + "\n")
    for failure in result.failures:
        out.write(output.fit_text(display(f"fail: {failure}"), width) + "\n")
    out.write(f"\nverdict: {result.verdict.upper()}\n")
