"""The `report:` section of mlci.yaml: what `mlci report` draws (see docs/reports.md)."""

from __future__ import annotations

from mlci_tui.config import ListOf, Schema, Str, Struct

SECTIONS: dict[str, Schema] = {
    "report": Struct(
        {
            # the DVC plots to draw, by plot id or data file, in this order (default: at most
            # 6 charts in all, chosen by the gate rules and what changed)
            "plots": (ListOf(Str()), None),
        }
    )
}
