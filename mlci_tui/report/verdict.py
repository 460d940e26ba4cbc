"""The gate's verdict as text: `mlci gate` and the pre-push hook print it (table, Markdown or JSON)."""

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
            "rules": [r.row() | {"verdict": r.verdict, "reason": r.reason} for r in result.rules],
            "warnings": result.warnings,
            "failures": result.failures,
        }
        out.write(json.dumps(output.json_value(doc), indent=2, ensure_ascii=True) + "\n")
        return
    base = result.base.label if result.base else "none"
    out.write(display(f"gate: candidate {result.head.label} against baseline {base}") + "\n")
    if result.rules:
        out.write("\n")
        output.write(
            [r.row() for r in result.rules],
            ["metric", "baseline", "candidate", "change", "limit", "verdict"],
            "md" if fmt == "md" else "table",
            out,
            compared=("baseline", "candidate"),
        )
    for warning in result.warnings:
        out.write(display(f"warning: {warning}") + "\n")
    for failure in result.failures:
        out.write(display(f"fail: {failure}") + "\n")
    out.write(f"\nverdict: {result.verdict.upper()}\n")
