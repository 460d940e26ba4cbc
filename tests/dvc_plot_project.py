"""A DVC project with plots of every kind, at a baseline and a candidate commit.

Real git, DVC's file layouts written by hand (no DVC installed): a `dvc.yaml` whose stage
declares a ROC JSON (dvclive's `{"roc": [...]}` shape), a precision-recall JSON (a bare list),
a confusion TSV, a PNG image and a training curve CSV, plus a top-level plot id over the
curve. Used by tests/test_report_dvc_plots.py and by the timing in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

MLCI_YAML = """\
params:
  files: [params.yaml]
metrics:
  files: [eval/metrics.json]
  fields:
    auc: {direction: max}
gate:
  rules:
    auc: {max_drop: 0.01}
"""

DVC_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [train.lr]
    outs: [model.pkl]
    metrics:
      - eval/metrics.json: {cache: false}
    plots:
      - eval/roc.json: {template: simple, x: fpr, y: tpr, title: ROC curve}
      - eval/prc.json: {x: recall, y: precision}
      - eval/confusion.tsv: {template: confusion, x: actual, y: predicted}
      - eval/importance.png
      - logs/loss.csv: {x: step, y: loss}
plots:
  - loss_and_acc:
      x: step
      y:
        logs/loss.csv: [loss, acc]
      title: training
"""

ROC_FPR = [0.0, 0.0, 0.03, 0.1, 0.1, 0.27, 0.5, 0.8, 1.0]


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")
    )


def roc(power: float) -> str:
    rows = [{"fpr": f, "tpr": round(f**power, 4), "threshold": round(1 - f, 3)} for f in ROC_FPR]
    rows[1]["tpr"] = 0.2  # a vertical step at fpr 0, as real ROC curves have
    return json.dumps({"roc": rows}) + "\n"


def prc(shift: float) -> str:
    recall = [1.0, 0.9, 0.75, 0.6, 0.42, 0.2, 0.0]
    return json.dumps([{"recall": r, "precision": round(min(1.0, 0.5 + shift + 0.45 * (1 - r)), 4)} for r in recall])


def confusion(errors: int) -> str:
    rows = ["actual\tpredicted"]
    for actual in ("cat", "dog", "bird"):
        for n in range(10):
            wrong = n < errors and actual != "bird"
            predicted = ("dog" if actual == "cat" else "cat") if wrong else actual
            rows.append(f"{actual}\t{predicted}")
    return "\n".join(rows) + "\n"


def curve(losses: list[float]) -> str:
    rows = ["step,loss,acc"] + [f"{i},{v},{round(1 - v / 2, 4)}" for i, v in enumerate(losses)]
    return "\n".join(rows) + "\n"


def files(head: bool) -> dict[str, str | bytes]:
    return {
        "params.yaml": f"train:\n  lr: {0.2 if head else 0.1}\n",
        "eval/metrics.json": json.dumps({"auc": 0.91 if head else 0.87}) + "\n",
        "eval/roc.json": roc(0.3 if head else 0.5),
        "eval/prc.json": prc(0.1 if head else 0.0),
        "eval/confusion.tsv": confusion(2 if head else 4),
        "eval/importance.png": png(4, 3, (31, 111, 235) if head else (150, 150, 150)),
        "logs/loss.csv": curve([0.9, 0.6, 0.45, 0.4] if head else [1.0, 0.8, 0.6, 0.55]),
    }


def build(root: Path, commit: object) -> dict[str, str]:
    """Two commits (`base`, `head`) in `root` made with `commit(root, files, message)`."""
    shas = {}
    shas["base"] = commit(  # type: ignore[operator]
        root,
        {"mlci.yaml": MLCI_YAML, "dvc.yaml": DVC_YAML, ".dvc/config": "", "train.py": "print(1)\n", **files(False)},
        "baseline",
    )
    shas["head"] = commit(root, files(True), "candidate")  # type: ignore[operator]
    return shas
