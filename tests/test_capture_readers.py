"""Readers of params and metrics files: names, YAML 1.2, TOML, CSV/TSV, dvclive, NaN, warnings.

Most tests call the readers in-process on bytes; the last ones go through the real `mlci`
process and the DuckDB views to show how values reach the `metrics` map.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_mlci, write

from mlci_tui import config as config_mod
from mlci_tui.capture.build import read_values
from mlci_tui.capture.readers import Limits, flatten, read_metrics, read_params, read_table_metrics
from mlci_tui.errors import InputError
from mlci_tui.gitio import Repo
from mlci_tui.sources import TreeSource, WorkdirSource

LIMITS = Limits()


# ---- names ---------------------------------------------------------------------------------


def test_nested_keys_flatten_to_dotted_names() -> None:
    values = read_params("params.json", b'{"train": {"opt": {"lr": 0.01, "beta": [0.9, 0.99]}}, "seed": 7}', LIMITS)
    assert values == {"train.opt.lr": 0.01, "train.opt.beta": [0.9, 0.99], "seed": 7}


def test_a_key_holding_a_slash_stays_whole() -> None:
    read = read_metrics("metrics.json", b'{"train/acc": 0.9, "eval": {"val/loss": 0.2, "a/b/c": 1}}', LIMITS)
    assert read.values == {"train/acc": 0.9, "eval.val/loss": 0.2, "eval.a/b/c": 1.0}
    assert not read.warnings


def test_a_dotted_key_that_collides_with_a_nested_one_is_reported_not_overwritten() -> None:
    # {"a.b": 1, "a": {"b": 2}} names two values `a.b`: keeping either silently loses the other
    for doc in (b'{"a.b": 1, "a": {"b": 2}}', b'{"a": {"b": 2}, "a.b": 1}'):
        with pytest.raises(InputError, match=r"metrics\.json: a\.b: .*twice"):
            read_metrics("metrics.json", doc, LIMITS)


def test_non_string_keys_become_text() -> None:
    values = read_params("params.yaml", b"layers:\n  1: 64\n  2: 32\nflags:\n  true: x\n", LIMITS)
    assert values == {"layers.1": 64, "layers.2": 32, "flags.true": "x"}


# ---- YAML 1.2 --------------------------------------------------------------------------------


def test_params_yaml_is_read_as_yaml_1_2_not_1_1() -> None:
    doc = b"lr: 1e-5\nflag: NO\nmode: 0755\nratio: 1:20\nanswer: yes\noff: on\nocto: 0o14\nnothing: null\n"
    values = read_params("params.yaml", doc, LIMITS)
    assert values["lr"] == pytest.approx(1e-5) and isinstance(values["lr"], float)
    assert values["flag"] == "NO"  # YAML 1.1 (PyYAML) says False
    assert values["mode"] == 755  # YAML 1.1 says 493 (octal)
    assert values["ratio"] == "1:20"  # YAML 1.1 says 80 (sexagesimal)
    assert values["answer"] == "yes"
    assert values["off"] == "on"  # the key `off` stays a string too
    assert values["octo"] == 12
    assert values["nothing"] is None


def test_yaml_lists_keep_their_1_2_types() -> None:
    assert read_params("params.yml", b"xs: [NO, 0755, 1:20, 1e-5]\n", LIMITS) == {"xs": ["NO", 755, "1:20", 1e-05]}


def test_yaml_metrics_and_special_floats() -> None:
    read = read_metrics("metrics.yaml", b"acc: 0.9\nloss: .nan\nbest: .inf\nworst: -.inf\n", LIMITS)
    assert read.values["acc"] == 0.9
    assert math.isnan(read.values["loss"])
    assert read.values["best"] == math.inf and read.values["worst"] == -math.inf


def test_yaml_dates_become_strings_in_params() -> None:
    assert read_params("params.yaml", b"when: 2024-01-02\n", LIMITS) == {"when": "2024-01-02"}


# ---- TOML ------------------------------------------------------------------------------------


def test_toml_tables_flatten() -> None:
    doc = b'seed = 3\n[train]\nlr = 1e-3\nname = "base"\n[train.sched]\nwarmup = 100\n'
    assert read_params("params.toml", doc, LIMITS) == {
        "seed": 3,
        "train.lr": 0.001,
        "train.name": "base",
        "train.sched.warmup": 100,
    }
    read = read_metrics("metrics.toml", b"[eval]\nacc = 0.75\nloss = nan\n", LIMITS)
    assert read.values["eval.acc"] == 0.75 and math.isnan(read.values["eval.loss"])


# ---- JSON ------------------------------------------------------------------------------------


def test_json_nan_and_infinity_are_kept() -> None:
    read = read_metrics("metrics.json", b'{"loss": NaN, "best": Infinity, "worst": -Infinity, "acc": 1}', LIMITS)
    assert math.isnan(read.values["loss"])
    assert read.values["best"] == math.inf
    assert read.values["worst"] == -math.inf
    assert read.values["acc"] == 1.0
    assert not read.warnings


def test_a_bare_number_is_a_metric_named_after_the_file() -> None:
    assert read_metrics("results/dice.json", b"0.875\n", LIMITS).values == {"dice": 0.875}


def test_a_value_that_is_not_a_number_is_reported_not_silently_dropped() -> None:
    doc = b'{"acc": 0.9, "note": "looks good", "done": true, "none": null, "curve": [1, 2]}'
    read = read_metrics("metrics.json", doc, LIMITS)
    assert read.values == {"acc": 0.9}
    assert len(read.warnings) == 4
    for key in ("note", "done", "none", "curve"):
        assert any(w.startswith(f"metrics.json: {key}: not a number") for w in read.warnings), read.warnings
    assert any('"looks good"' in w for w in read.warnings)


@pytest.mark.parametrize(
    ("name", "doc", "message"),
    [
        ("params.yaml", b"\n  \n", r"^params\.yaml: empty file$"),
        ("params.yaml", b"# nothing yet\n", r"^params\.yaml: empty document$"),
        ("metrics.json", b"[1, 2]", r"^metrics\.json: expected a mapping at the top level, got list$"),
        ("metrics.yaml", b"- 1\n", r"^metrics\.yaml: expected a mapping at the top level, got list$"),
        ("params.yaml", b"a: 1\na: 2\n", r"^params\.yaml:2:1: invalid YAML: found duplicate key"),
        ("metrics.txt", b"acc 1\n", r"^metrics\.txt: no `key: value` or `key=value` line"),
        ("auc.metric", b"acc 1\n", r"^auc\.metric: expected a mapping at the top level, got str"),
    ],
)
def test_documents_that_hold_no_mapping_are_input_errors(name: str, doc: bytes, message: str) -> None:
    reader = read_params if name.startswith("params") else read_metrics
    with pytest.raises(InputError, match=message):
        reader(name, doc, LIMITS)


def test_a_bom_is_ignored() -> None:
    assert read_metrics("metrics.json", b'\xef\xbb\xbf{"acc": 1}', LIMITS).values == {"acc": 1.0}


# ---- CSV / TSV -------------------------------------------------------------------------------


def test_csv_last_row_is_final_all_rows_are_steps() -> None:
    read = read_metrics("train.csv", b"step,acc,loss\n0,0.5,1.0\n1,0.7,0.5\n5,0.9,0.25\n", LIMITS)
    assert read.values == {"acc": 0.9, "loss": 0.25}
    series = {(s.name, s.step): s.value for s in read.steps}
    assert series == {
        ("acc", 0): 0.5,
        ("acc", 1): 0.7,
        ("acc", 5): 0.9,
        ("loss", 0): 1.0,
        ("loss", 1): 0.5,
        ("loss", 5): 0.25,
    }
    assert {s.file for s in read.steps} == {"train.csv"}


def test_csv_without_a_step_column_numbers_rows_from_zero() -> None:
    read = read_metrics("train.csv", b"acc,loss\n0.5,1\n\n0.6,0.8\n", LIMITS)
    assert sorted((s.name, s.step) for s in read.steps) == [("acc", 0), ("acc", 1), ("loss", 0), ("loss", 1)]
    assert read.values == {"acc": 0.6, "loss": 0.8}


def test_tsv_ignores_timestamp_and_keeps_nan() -> None:
    read = read_metrics("train.tsv", b"timestamp\tstep\tloss\n1700000000\t0\t2.5\n1700000001\t1\tnan\n", LIMITS)
    assert [s.step for s in read.steps] == [0, 1]
    assert {s.name for s in read.steps} == {"loss"}
    assert math.isnan(read.values["loss"])


def test_csv_cell_that_is_not_a_number_is_a_warning_with_its_line() -> None:
    read = read_metrics("train.csv", b"step,acc\n0,0.5\n1,oops\n", LIMITS)
    assert read.warnings == ['train.csv:3: acc: not a number ("oops")']
    assert [(s.step, s.value) for s in read.steps] == [(0, 0.5)]


def test_csv_ragged_row_and_bad_step_name_their_line() -> None:
    with pytest.raises(InputError, match=r"^train\.csv:3: expected 2 columns, got 3$"):
        read_metrics("train.csv", b"step,acc\n0,0.5\n1,0.6,7\n", LIMITS)
    with pytest.raises(InputError, match=r"^train\.csv:2: step '1\.5' is not an integer$"):
        read_metrics("train.csv", b"step,acc\n1.5,0.5\n", LIMITS)


def test_csv_line_endings_and_quoted_line_breaks() -> None:
    # old Mac files end lines with a lone CR; Windows with CRLF; a quoted field may hold a newline
    assert read_metrics("m.csv", b"step,acc\r0,0.5\r1,0.6\r", LIMITS).values == {"acc": 0.6}
    assert read_metrics("m.csv", b"step,acc\r\n0,0.5\r\n", LIMITS).values == {"acc": 0.5}
    assert read_metrics("m.csv", b'step,"a\r\nb"\n0,1\n', LIMITS).values == {"a\r\nb": 1.0}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"step,acc\nnan,1\n", r"^m\.csv:2: step 'nan' is not an integer$"),
        (b"step,acc\ninf,1\n", r"^m\.csv:2: step 'inf' is not an integer$"),
        (b"step,acc\n1e300,1\n", r"^m\.csv:2: step '1e300' is not an integer$"),
        (b"step,acc,acc\n0,1,2\n", r"^m\.csv:1: column 'acc' appears twice$"),
        (b'acc\n"' + b"9" * 200_000 + b'"\n', r"^m\.csv:2: invalid CSV: field larger than field limit"),
    ],
)
def test_csv_input_that_cannot_be_a_series_is_an_input_error(doc: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_metrics("m.csv", doc, LIMITS)


def test_single_column_series_takes_the_series_name() -> None:
    read = read_table_metrics("plots/metrics/loss.tsv", b"step\tloss\n0\t1\n1\t0.5\n", LIMITS, series_name="loss")
    assert [(s.name, s.step, s.value) for s in read.steps] == [("loss", 0, 1.0), ("loss", 1, 0.5)]


# ---- limits on in-memory data --------------------------------------------------------------


def test_flatten_enforces_depth_and_key_limits() -> None:
    deep: dict[str, object] = {"x": 1}
    for _ in range(10):
        deep = {"a": deep}
    with pytest.raises(InputError, match="nested deeper than 5 levels"):
        flatten("m.json", deep, Limits(max_depth=5))
    with pytest.raises(InputError, match="more than 3 keys"):
        flatten("m.json", {f"k{i}": i for i in range(4)}, Limits(max_keys=3))
    assert flatten("m.json", {f"k{i}": i for i in range(3)}, Limits(max_keys=3)) == {"k0": 0, "k1": 1, "k2": 2}


def test_string_alias_bomb_is_refused_before_it_reaches_the_ledger() -> None:
    # 2,000 aliases of a 100 kB string: a 100 kB file that would expand into a 200 MB record
    doc = "big: &s " + "x" * 100_000 + "\ncopies: [" + ", ".join(["*s"] * 2000) + "]\n"
    with pytest.raises(InputError, match=r"^params\.yaml: .*expands to more than"):
        read_params("params.yaml", doc.encode(), LIMITS)
    # a few honest aliases are fine
    ok = read_params("params.yaml", b"base: &b 0.1\nlr: *b\n", LIMITS)
    assert ok == {"base": 0.1, "lr": 0.1}


# ---- the fast reader first, ruamel.yaml for the rest ----------------------------------------
# `parse_yaml12` reads plain params YAML with importers/simple_yaml.py (a 50 MB file took
# minutes through ruamel.yaml); anything it does not read exactly goes to ruamel.yaml.

NUMBER_LISTS = [
    "[1, 2.5, -3]",
    "[0.001, -0.0, 1e-5, 1E5, 1.0e+3, -7]",
    "[1e400, -1e400]",  # out of a float's range: infinities either way
    "[123456789012345678901234567890]",
    "[-0]",
    "[[1, 2], [3.5]]",
    "[ ]",
    "[1, 2,]",  # YAML's trailing comma (JSON refuses it)
    "[+1, .5, 1.]",  # number forms JSON refuses
    "[017, 0o17, 0x1f]",
    "[1_000]",
    "[1 2]",
    "[1, , 2]",
    "[1e5e5]",
    "[1, [2]",
    "[-]",
    "[e, E]",
]
PLAIN_SCALARS = ["0.1", "-2", "adam", "'q s'", '"dq"', "true", "null", "~", "1e-5", "NO", "2024-01-01", "1:20"]


def _params_doc(rng: Any) -> str:
    lines = []
    for section in range(rng.randint(1, 3)):
        lines.append(f"s{section}:")
        for key in range(rng.randint(1, 4)):
            value = rng.choice(NUMBER_LISTS) if rng.random() < 0.5 else rng.choice(PLAIN_SCALARS)
            lines.append(f"  k{key}: {value}" + (" " if rng.random() < 0.2 else ""))
        if rng.random() < 0.2:
            lines.append("  # a comment line")
    return "\n".join(lines) + "\n"


def _read(doc: str, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlci_tui.importers import simple_yaml

    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(simple_yaml, "load", lambda text: simple_yaml.NOT_SIMPLE)
        try:
            return read_params("params.yaml", doc.encode(), LIMITS)
        except InputError as exc:
            return f"error: {exc}"


def test_the_fast_reader_and_ruamel_give_the_same_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated params files (numeric flow lists read by JSON, the forms JSON refuses, plain
    scalars): the record is byte for byte the one ruamel.yaml gives, or both refuse alike."""
    import random

    from mlci_tui.importers import simple_yaml
    from mlci_tui.ledger.records import dumps
    from mlci_tui.scrub import scrub

    rng = random.Random(11)
    fast_path = 0
    for _ in range(400):
        doc = _params_doc(rng)
        fast_path += simple_yaml.load(doc) is not simple_yaml.NOT_SIMPLE
        ours, theirs = _read(doc, fast=True, monkeypatch=monkeypatch), _read(doc, fast=False, monkeypatch=monkeypatch)
        assert repr(ours) == repr(theirs), doc
        if not isinstance(ours, str):
            assert dumps({"p": scrub(ours)}) == dumps({"p": scrub(theirs)}), doc
    assert fast_path > 50  # the generator reaches the fast path often enough to mean something


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("a: 1\nb: [1, 2]\na: 2\n", r"^params\.yaml:3:1: invalid YAML: found duplicate key"),
        ("s:\n  x: [1, 2]\n  x: [3]\n", r"^params\.yaml:3:3: invalid YAML: found duplicate key"),
        ("tags: !!set {a, b}\nlr: [1, 2]\n", r"^params\.yaml: tags: a YAML set"),
        ("blob: !!binary aGVsbG8=\nlr: [1.5]\n", r"^params\.yaml: blob: a YAML binary"),
        ("lr: [" + "9" * 400 + "]\n", r"^params\.yaml: lr: integer too large \(400 digits\)"),
    ],
)
def test_what_yaml_refuses_is_still_refused_in_one_line(doc: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        read_params("params.yaml", doc.encode(), LIMITS)
    assert "\n" not in str(caught.value)


def test_a_plain_params_file_is_read_without_ruamel(tmp_path: Path) -> None:
    """Every capture's import time (ruamel.yaml ~77 ms) and a large file's minutes: a plain
    params.yaml never loads ruamel.yaml; one it cannot read exactly does."""
    import subprocess
    import sys

    plain = "train:\n  lr: 0.001\n  layers: [64, 32]\n  opt: adam\nseed: 7\n"
    probe = (
        "import sys; from mlci_tui.capture.readers import Limits, read_params; "
        "print(read_params('params.yaml', sys.stdin.buffer.read(), Limits())); print('ruamel' in sys.modules)"
    )
    for doc, ruamel in ((plain, "False"), (plain + "extra: [a, {b: 1}]\n", "True")):
        out = subprocess.run([sys.executable, "-c", probe], input=doc.encode(), capture_output=True, check=True)
        values, loaded = out.stdout.decode().splitlines()
        assert loaded == ruamel, (doc, out.stderr)
        expected = {"train.lr": 0.001, "train.layers": [64, 32], "train.opt": "adam", "seed": 7}
        assert ast.literal_eval(values).items() >= expected.items()


# ---- sources: the dvclive layout and git objects ----------------------------------------------


def _defaults(root: Path) -> config_mod.Config:
    return config_mod.load(root)


def test_dvclive_layout_gives_final_values_and_step_series_named_like_the_final_values(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "dvclive/metrics.json": json.dumps({"train": {"loss": 0.2}, "eval": {"acc": 0.9}}),
            "dvclive/plots/metrics/train/loss.tsv": "timestamp\tstep\tloss\n1\t0\t1.0\n2\t1\t0.2\n",
            "dvclive/plots/metrics/eval/acc.tsv": "timestamp\tstep\tacc\n1\t0\t0.5\n2\t1\t0.9\n",
            "dvclive/plots/metrics/lr.tsv": "step\tlr\n0\t0.1\n",
            "dvclive/plots/other/ignored.tsv": "step\tx\n0\t1\n",
        },
    )
    values = read_values(_defaults(tmp_path), WorkdirSource(tmp_path), strict=True)
    assert values.metrics == {"dvclive/metrics.json": {"train.loss": 0.2, "eval.acc": 0.9}}
    series = sorted({(s.file, s.name) for s in values.steps})
    assert series == [
        ("dvclive/plots/metrics/eval/acc.tsv", "eval.acc"),
        ("dvclive/plots/metrics/lr.tsv", "lr"),
        ("dvclive/plots/metrics/train/loss.tsv", "train.loss"),
    ]
    # plots/metrics/train/loss.tsv is the series of metrics.json's train.loss: one name for both
    loss = [(s.step, s.value) for s in values.steps if s.name == "train.loss"]
    assert loss == [(0, 1.0), (1, 0.2)]
    assert not values.warnings


def test_commit_reader_matches_the_working_tree_reader(repo: Path) -> None:
    write(
        repo,
        {
            "params.yaml": "train:\n  lr: 1e-5\n  flag: NO\n",
            "metrics.json": '{"acc": 0.5, "loss": NaN}',
            "dvclive/metrics.json": '{"acc": 0.7}',
            "dvclive/plots/metrics/acc.tsv": "step\tacc\n0\t0.6\n1\t0.7\n",
        },
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "files")
    cfg = _defaults(repo)
    from_tree = read_values(cfg, TreeSource(Repo.find(repo), "HEAD"), strict=True)
    from_disk = read_values(cfg, WorkdirSource(repo), strict=True)
    assert from_tree.params == from_disk.params == {"params.yaml": {"train.lr": 1e-5, "train.flag": "NO"}}
    assert from_tree.metrics["dvclive/metrics.json"] == {"acc": 0.7}
    assert math.isnan(from_tree.metrics["metrics.json"]["loss"])
    assert [(s.name, s.step, s.value) for s in from_tree.steps] == [("acc", 0, 0.6), ("acc", 1, 0.7)]


# ---- through the real process and the DuckDB views ------------------------------------------


def test_same_name_from_two_files_is_file_qualified_and_nan_survives_the_ledger(repo: Path) -> None:
    write(
        repo,
        {
            "mlci.yaml": "metrics:\n  files: [metrics.json, results/eval/metrics.json]\n",
            "metrics.json": '{"dice": 0.8, "loss": NaN, "note": "fine"}',
            "results/eval/metrics.json": '{"dice": 0.6, "best": Infinity}',
        },
    )
    proc = run_mlci(repo, "record", "-m", "two files")
    assert proc.returncode == 0, proc.stderr
    # the non-number is reported on stderr and kept with the run, not silently dropped
    assert 'mlci: warning: metrics.json: note: not a number ("fine")' in proc.stderr
    runs = run_mlci(repo, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    [run] = json.loads(runs.stdout)
    assert run["metrics"] == {
        "metrics.json:dice": 0.8,
        "results/eval/metrics.json:dice": 0.6,
        "loss": "NaN",
        "best": "Infinity",
    }
    assert "dice" not in run["metrics"]
    # the ledger record keeps NaN and Infinity in their canonical wrapper
    blobs = git(repo, "ls-tree", "-r", "--name-only", "refs/mlci/ledger").split()
    [path] = [b for b in blobs if b.startswith("events/")]
    record = json.loads(git(repo, "cat-file", "-p", f"refs/mlci/ledger:{path}"))
    assert record["metrics"]["metrics.json"]["loss"] == {"$float": "NaN"}
    assert record["metrics"]["results/eval/metrics.json"]["best"] == {"$float": "Infinity"}
    assert any("note: not a number" in w for w in record["warnings"])
