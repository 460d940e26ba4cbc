"""Validate datasets: resolve each version, run its plan, compare with the previous version,
cache the result and record validation and profile events in the ledger (one batch).

Results are cached under `.git/mlci/validate/` by (content id, schema hash, mlci version,
and the content ids the result also depends on: the previous version and referenced
datasets), so an unchanged dataset is not read twice.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci_tui import __version__, config
from mlci_tui.data.pointer import parse_pointer
from mlci_tui.errors import EXIT_FAILED, ConfigError, InputError
from mlci_tui.gitio import Repo
from mlci_tui.ledger.query.profiles import stored_profiles
from mlci_tui.ledger.records import derived_id, envelope
from mlci_tui.ledger.store import LedgerStore
from mlci_tui.sanitize import display
from mlci_tui.sql_guard import lock_down
from mlci_tui.validate import engine, source
from mlci_tui.validate.drift import compare
from mlci_tui.validate.results import CheckResult, DatasetResult
from mlci_tui.validate.spec import DatasetSpec, build, check_path, format_of, load_specs

STATE = "validate"
LEDGER_PROFILE_LOOKUP = 64 * 2**20  # bytes: from here on a stored profile is looked up in the ledger too


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, default=str)
    os.replace(tmp, path)


def _label(where: str) -> str:
    return where if where in (source.WORKTREE, source.INDEX) else where[:12]


@dataclass
class Validator:
    repo: Repo
    datasets: dict[str, Any] | None
    where: str = source.WORKTREE  # WORKTREE, INDEX or a commit id
    base: str | None = None  # a commit id; default HEAD (or REV^ for --rev)
    record: bool = True
    use_cache: bool = True
    specs: dict[str, DatasetSpec] = field(init=False)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.specs = load_specs(self.datasets)
        self.state = self.repo.state_dir / STATE
        self.scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=self._mkstate()))
        self._profiles: dict[str, dict[str, Any]] = {}
        self._ledger_profiles: dict[str, dict[str, Any]] | None = None

    def _mkstate(self) -> Path:
        self.state.mkdir(parents=True, exist_ok=True)
        return self.state

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ----------------------------------------------------------------- selection
    def select(self, paths: list[str]) -> list[DatasetSpec]:
        if not paths:
            return list(self.specs.values())
        chosen = []
        for p in paths:
            rel = _repo_rel(self.repo, p)
            hits = [s for s in self.specs.values() if s.name == p or s.path == rel or s.path + ".mlci" == rel]
            if not hits:
                known = ", ".join(f"{s.name} ({s.path})" for s in self.specs.values()) or "none declared"
                raise InputError(f"{p}: not a dataset declared under `datasets:` in mlci.yaml (known: {known})")
            chosen += [h for h in hits if h not in chosen]
        return chosen

    # ----------------------------------------------------------------- running
    def validate_all(self, specs: list[DatasetSpec]) -> list[DatasetResult]:
        try:
            results = [self.validate(s) for s in specs]
            self.flush()
            return results
        finally:
            self.close()

    def base_rev(self) -> str | None:
        if self.base:
            return self.repo.commit_of(self.base) or _bad_rev(self.base)
        if self.where in (source.WORKTREE, source.INDEX):
            return self.repo.commit_of("HEAD")
        return self.repo.commit_of(f"{self.where}^")

    def validate(self, spec: DatasetSpec) -> DatasetResult:
        result = DatasetResult(spec.name, spec.path, _label(self.where))
        try:
            content = source.resolve(self.repo, spec.path, self.where, self.scratch, spec.format or None)
        except source.Unavailable as exc:
            result.status, result.error = "unavailable", str(exc)
            return result
        result.content_hash = content.content_hash
        base = self.base_rev()
        base_content = self._base_content(spec, base, result)
        refs = self._refs(spec)
        key_parts = [
            content.content_hash,
            spec.schema_hash(),
            __version__,
            base_content.content_hash if base_content else "",
        ]
        key_parts += [f"{n}={c.content_hash}" for n, c in sorted(refs.items())]
        key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:32]
        cached = self.state / "results" / f"{key}.json"
        if self.use_cache and cached.is_file():
            try:
                old = DatasetResult.from_dict(json.loads(cached.read_text()))
                old.rev, old.cached = _label(self.where), True
                self._record_validation(old, spec, key)
                return old
            except (ValueError, TypeError, KeyError):
                pass
        try:
            profile = self._check(spec, content, refs, result)
        except engine.DataError as exc:
            fmt = content.format or spec.format or "csv, parquet or jsonl"
            result.status, result.error = "error", f"cannot read {spec.path} as {fmt}: {exc}"
            self._record_validation(result, spec, key)
            return result
        if spec.compare and profile is not None:
            self._compare(spec, base, base_content, profile, result)
        result.finish()
        _atomic_json(cached, result.to_dict())
        self._record_validation(result, spec, key)
        return result

    def _refs(self, spec: DatasetSpec) -> dict[str, source.Content]:
        refs: dict[str, source.Content] = {}
        for col in spec.columns.values():
            for check in col.checks:
                if check.kind == "references":
                    other = self.specs[str(check.value).split(".", 1)[0]]
                    if other.name not in refs:
                        try:
                            refs[other.name] = source.resolve(
                                self.repo, other.path, self.where, self.scratch, other.format or None
                            )
                        except source.Unavailable as exc:
                            raise InputError(f"datasets.{spec.name}: referenced dataset {other.name}: {exc}") from None
        return refs

    def _check(
        self, spec: DatasetSpec, content: source.Content, refs: dict[str, source.Content], result: DatasetResult
    ) -> dict[str, Any] | None:
        import duckdb

        fmt = read_format(spec, content)
        header = precheck_content(content, fmt, spec.csv)
        for other in refs.values():
            other_spec = next(s for s in self.specs.values() if s.path == other.path)
            precheck_content(other, read_format(other_spec, other), other_spec.csv)
        con = engine.connect(self.scratch / "spill")
        # the checks' SQL comes from the config a pull request controls: it reads these files only
        lock_down(
            con,
            read=[f for c in (content, *refs.values()) for f in _files_of(c)],
            directories=[self.scratch / "spill"],
            memory=None,  # engine.connect set validation's own limit
        )
        try:
            ref_views: dict[str, tuple[str, str]] = {}
            for n, (name, other) in enumerate(sorted(refs.items())):
                other_spec = self.specs[name]
                view = f"ref_{n}"
                con.execute(
                    f"CREATE VIEW {view} AS SELECT * FROM "
                    f"{engine.relation_sql(other.read, read_format(other_spec, other), other_spec.csv)}"
                )
                for col in spec.columns.values():
                    for check in col.checks:
                        if check.kind == "references" and str(check.value).startswith(name + "."):
                            ref_views[str(check.value)] = (view, str(check.value).split(".", 1)[1])
            categorical = self._categorical(spec)
            stored = self._stored_profile(content, categorical)
            for all_varchar in (False, True):
                rel = engine.relation_sql(
                    content.read,
                    fmt,
                    spec.csv,
                    all_varchar=all_varchar,
                    text_columns=_text_columns(spec, header),
                )
                try:
                    rel = engine.pin_csv(con, rel, content.read)
                    con.execute(f"CREATE OR REPLACE VIEW raw_data AS SELECT * FROM {rel}")
                    schema = engine.describe(con, "raw_data")
                    plan = engine.plan(spec, schema, fmt, ref_views)
                    # raw SQL checks see `data`: the declared columns as their declared types
                    typed = ", ".join(f"{c.value} AS {engine.q(n)}" for n, c in plan.columns.items())
                    con.execute(f"CREATE OR REPLACE VIEW data AS SELECT {typed} FROM raw_data")
                    rows, values, checks = engine.run_plan(
                        con,
                        "raw_data",
                        plan,
                        spec,
                        categorical,
                        profile=stored is None,
                        columnar=fmt == "parquet",
                    )
                    _locate_samples(con, rel, content, checks, schema)
                    break
                except duckdb.ConversionException as exc:
                    if all_varchar or fmt not in ("csv", "tsv"):
                        raise engine.DataError(_clean_error(exc, content)) from None
                    continue  # the sniffer guessed a type a later row breaks: read as text, cast per column
                except duckdb.BinderException as exc:
                    raise engine.DataError(_clean_error(exc, content)) from None
                except (duckdb.InvalidInputException, duckdb.IOException, duckdb.OutOfMemoryException) as exc:
                    raise engine.DataError(_clean_error(exc, content)) from None
        finally:
            con.close()
        result.rows = rows
        result.checks = checks
        if stored is not None:
            self._record_profile(spec, content.content_hash, stored)
            return stored
        profile = engine.build_profile(plan, values, rows, len(schema))
        self._store_profile(spec, content.content_hash, profile)
        return profile

    def _stored_profile(self, content: source.Content, categorical: set[str]) -> dict[str, Any] | None:
        """The profile already stored for this content (with the histograms needed), so that a
        version is profiled once: re-validating it (another schema, --no-cache, CI) runs only the checks.

        The local copy is always looked up; the ledger (a cache refresh, ~0.1-2 s) only for a
        file large enough that profiling it costs more (the hook's small files skip it)."""
        if content.size < LEDGER_PROFILE_LOOKUP and content.content_hash not in self._profiles:
            local = self.state / "profiles" / f"{_safe(content.content_hash)}.json"
            try:
                old: dict[str, Any] | None = json.loads(local.read_text()) if local.is_file() else None
            except ValueError:
                old = None
        else:
            old = self.profile_of(content.content_hash)
        if old is None or not _has_histograms(old, categorical) or "columns" not in old:
            return None
        return old

    def _categorical(self, spec: DatasetSpec) -> set[str]:
        """Columns whose profile carries a histogram: drift columns, allowed-value and bool columns."""
        names = set()
        if spec.compare and spec.compare.get("drift"):
            names |= set(spec.compare["drift"]["columns"])
        for col in spec.columns.values():
            if col.type in ("bool",) or any(c.kind == "allowed_values" for c in col.checks):
                names.add(col.name)
        return names

    # ----------------------------------------------------------------- comparison
    def _base_content(self, spec: DatasetSpec, base: str | None, result: DatasetResult) -> source.Content | None:
        if not spec.compare:
            return None
        if base is None:
            result.warnings.append("no previous version to compare with (no base commit); comparison skipped")
            return None
        result.base_rev = base[:12]
        try:
            content = source.resolve(self.repo, spec.path, base, self.scratch)
        except source.Absent:
            result.warnings.append(f"no previous version at {base[:12]}; comparison skipped")
            return None
        except source.Unavailable:
            # named, but its data is not here: the stored profile may still be
            hash_ = _pointer_hash(self.repo, spec.path, base)
            if hash_ and self.profile_of(hash_) is not None:
                return source.Content(spec.path, Path(), hash_, base, 0, "pointer")
            result.warnings.append(
                f"previous version ({base[:12]}): neither its profile nor its data is here; comparison skipped"
            )
            return None
        result.base_hash = content.content_hash
        return content

    def _compare(
        self,
        spec: DatasetSpec,
        base: str | None,
        base_content: source.Content | None,
        profile: dict[str, Any],
        result: DatasetResult,
    ) -> None:
        if base_content is None or spec.compare is None:
            return
        result.base_hash = base_content.content_hash
        old = self.profile_of(base_content.content_hash)
        if old is None or not _has_histograms(old, self._categorical(spec)):
            try:
                old = self._profile_only(spec, base_content)
            except engine.DataError as exc:
                result.warnings.append(f"previous version unreadable ({exc}); comparison skipped")
                return
        result.checks += compare(old, profile, spec.compare, (base or "")[:12])

    def _profile_only(self, spec: DatasetSpec, content: source.Content, *, full: bool = False) -> dict[str, Any]:
        import duckdb

        if not all(
            f.is_file() for f in ([content.local] if content.files is None else [s.local for s in content.files])
        ):
            raise engine.DataError("its data is not available")
        fmt = read_format(spec, content)
        header = precheck_content(content, fmt, spec.csv)
        bare = DatasetSpec(
            **{**spec.__dict__, "columns": {}, "checks": [], "row_count": None, "primary_key": [], "strict": False}
        )
        for col_name, col in spec.columns.items():
            bare.columns[col_name] = type(col)(col.name, col.type, [])
        con = engine.connect(self.scratch / "spill")
        try:
            for all_varchar in (False, True):
                try:
                    rel = engine.relation_sql(
                        content.read,
                        fmt,
                        spec.csv,
                        all_varchar=all_varchar,
                        text_columns=_text_columns(spec, header),
                    )
                    rel = engine.pin_csv(con, rel, content.read)
                    con.execute(f"CREATE OR REPLACE VIEW data AS SELECT * FROM {rel}")
                    schema = engine.describe(con, "data")
                    plan = engine.plan(bare, schema, fmt)
                    plan.checks = [p for p in plan.checks if p.result.check not in ("columns",)]
                    wanted = None if full else self._categorical(spec)
                    rows, values, _ = engine.run_plan(con, "data", plan, bare, wanted, columnar=fmt == "parquet")
                    break
                except duckdb.ConversionException as exc:
                    if all_varchar:
                        raise engine.DataError(_clean_error(exc, content)) from None
                except duckdb.Error as exc:
                    raise engine.DataError(_clean_error(exc, content)) from None
        finally:
            con.close()
        profile = engine.build_profile(plan, values, rows, len(schema))
        self._store_profile(spec, content.content_hash, profile)
        return profile

    # ----------------------------------------------------------------- profiles
    def profile_of(self, content_hash: str) -> dict[str, Any] | None:
        if content_hash in self._profiles:
            return self._profiles[content_hash]
        local = self.state / "profiles" / f"{_safe(content_hash)}.json"
        if local.is_file():
            try:
                return json.loads(local.read_text())
            except ValueError:
                pass
        if self._ledger_profiles is None:
            self._ledger_profiles = stored_profiles(self.repo)
        return self._ledger_profiles.get(content_hash)

    def _store_profile(self, spec: DatasetSpec, content_hash: str, profile: dict[str, Any]) -> None:
        self._profiles[content_hash] = profile
        _atomic_json(self.state / "profiles" / f"{_safe(content_hash)}.json", profile)
        self._record_profile(spec, content_hash, profile)

    def _record_profile(self, spec: DatasetSpec, content_hash: str, profile: dict[str, Any]) -> None:
        """A profile event (its id derives from the content, so a profile already in the ledger adds nothing)."""
        if self.record:
            body = {"dataset": spec.name, "path": spec.path, "content_hash": content_hash, **profile}
            self.events.append(
                envelope("profile", body, event_id=derived_id("profile", content_hash, json.dumps(_hist_keys(profile))))
            )

    # ----------------------------------------------------------------- ledger
    def _record_validation(self, result: DatasetResult, spec: DatasetSpec, key: str) -> None:
        if not self.record:
            return
        rev = (
            result.rev
            if result.rev in (source.WORKTREE, source.INDEX)
            else (self.repo.commit_of(self.where) or self.where)
        )
        body = {
            "dataset": spec.name,
            "path": spec.path,
            "content_hash": result.content_hash,
            "rev": rev,
            "schema_hash": spec.schema_hash(),
            "status": result.status,
            "rows": result.rows,
            "base_hash": result.base_hash,
            "error": result.error,
            "warnings": result.warnings,
            "checks": [_compact(c) for c in result.checks],
            "mlci_version": __version__,
        }
        self.events.append(envelope("validation", body, event_id=derived_id("validation", key, rev)))

    def flush(self) -> None:
        if not self.record or not self.events:
            return
        store = LedgerStore(self.repo)
        present = store.has_ids([e["id"] for e in self.events])
        new = [e for e in {e["id"]: e for e in self.events}.values() if e["id"] not in present]
        if new:
            store.append(new, message=f"mlci: {len(new)} validation/profile event(s)")
        self.events = []


def declared_datasets(repo: Repo) -> dict[str, Any] | None:
    """The `datasets:` section of the working tree's config."""
    return config.load(repo.root).data.get("datasets")


def validate_datasets(
    repo: Repo, paths: list[str], where: str, *, base: str | None = None, record: bool = True, use_cache: bool = True
) -> list[DatasetResult]:
    """`mlci data validate`: the declared datasets `paths` name (none: all) checked at `where`."""
    datasets = declared_datasets(repo)
    if not datasets:
        raise InputError(
            "mlci.yaml declares no datasets (add a `datasets:` section; `mlci data infer PATH` starts one)"
        )
    v = Validator(repo, datasets, where, base=base, record=record, use_cache=use_cache)
    return v.validate_all(v.select(paths))


def dataset_at(repo: Repo, user_path: str, *, text_as_csv: bool = False) -> tuple[dict[str, Any] | None, DatasetSpec]:
    """The declared dataset at PATH (or named PATH), else a bare spec for an undeclared file,
    so that `profile`, `diff` and `infer` work before any schema exists; with the datasets
    section that holds it. `text_as_csv`: a file whose extension names no format (`.txt`,
    `.dat`: numpy's dumps) is read as delimited text (`infer` sniffs its delimiter)."""
    rel = _repo_rel(repo, user_path).removesuffix(source.POINTER_SUFFIX)
    datasets = declared_datasets(repo)
    for spec in load_specs(datasets).values():
        if spec.path == rel or spec.name == user_path:
            return datasets, spec
    check_path(rel, user_path)
    raw: dict[str, Any] = {"path": rel}
    try:
        format_of(rel, None, user_path)
    except ConfigError:
        if not text_as_csv:
            raise
        raw["format"] = "csv"
    name = Path(rel).stem
    return {**(datasets or {}), name: raw}, build(name, raw)


def profile_at(repo: Repo, user_path: str, where: str) -> tuple[DatasetSpec, source.Content, dict[str, Any]]:
    """The full profile (histograms included) of the dataset at PATH as `where` holds it:
    the stored one when it is complete, else computed and stored."""
    datasets, spec = dataset_at(repo, user_path)
    v = Validator(repo, datasets, where)
    try:
        content = source.resolve(repo, spec.path, where, v.scratch)
        profile = v.profile_of(content.content_hash)
        columns = (profile or {}).get("columns", {})
        wanted = [n for n, c in columns.items() if "mean" in c or n in v._categorical(spec)]
        if profile is None or not all(columns[n].get("histogram") for n in wanted):
            try:
                profile = v._profile_only(spec, content, full=True)
            except engine.DataError as exc:
                raise InputError(f"cannot read {spec.path} as {spec.format}: {exc}", exit_code=EXIT_FAILED) from None
        v.flush()
    finally:
        v.close()
    return spec, content, profile


def read_format(spec: DatasetSpec, content: source.Content) -> str:
    """The format a version is read as: a folder's data files' (declared or found), else the spec's."""
    fmt = content.format or spec.format
    if not fmt and not content.is_folder:
        raise ConfigError(
            f"mlci.yaml: datasets.{spec.name}.format: {spec.path} is a file without an extension; set csv, parquet or jsonl"
        )
    return fmt


def precheck_content(content: source.Content, fmt: str, csv_opts: dict[str, Any]) -> list[str] | None:
    """engine.precheck of the file, or of every shard of a folder (a bad shard is named); the
    header of the (first) file. A folder without data files fails like an empty file."""
    if content.files is None:
        return engine.precheck(content.local, fmt, csv_opts)
    if not content.files:
        raise engine.DataError(f"empty folder: no {fmt or 'csv, parquet or jsonl'} data files in it")
    header: list[str] | None = None
    for n, shard in enumerate(content.files):
        try:
            found = engine.precheck(shard.local, fmt, csv_opts)
        except engine.DataError as exc:
            raise engine.DataError(f"{display(shard.path)}: {exc}") from None
        if n == 0:
            header = found
    return header


def _clean_error(exc: BaseException, content: source.Content) -> str:
    """engine.clean_error, with a folder's shards named by their repository path (DuckDB names
    the file it read: a cache object or a temp copy of a blob)."""
    text = str(exc)
    for shard in content.files or []:
        text = text.replace(str(shard.local), shard.path)
    return engine.clean_error(Exception(text))


def _locate_samples(
    con: Any, rel: str, content: source.Content, checks: list[CheckResult], schema: list[tuple[str, str]]
) -> None:
    """Failure samples of a folder name the shard and the 0-based row within it (`row`: "N of
    FILE"; `file`, `file_row` and the global `index` for programs). DuckDB reads the shards in
    the listed order, so a global row index falls in the shard whose row counts it passes; the
    counts come from DuckDB's `filename` virtual column. A data column named `filename` hides
    it: the global index stays."""
    import duckdb

    samples = [s for c in checks for s in c.samples if isinstance(s.get("row"), int)]
    if not content.files or not samples or any(name == "filename" for name, _t in schema):
        return
    try:
        counts = dict(con.execute(f"SELECT filename, count(*) FROM {rel} GROUP BY ALL").fetchall())
    except duckdb.Error:
        return
    starts, total = [], 0
    for shard in content.files:
        starts.append(total)
        total += int(counts.get(str(shard.local), 0))
    for sample in samples:
        index = int(sample["row"])
        if not 0 <= index < total:
            continue
        n = bisect.bisect_right(starts, index) - 1
        shard, row = content.files[n], index - starts[n]
        sample.update({"row": f"{row} of {display(shard.path)}", "file": shard.path, "file_row": row, "index": index})


def _text_columns(spec: DatasetSpec, header: list[str] | None) -> list[str]:
    """Declared string columns the CSV header has (DuckDB refuses a type for a column it lacks)."""
    if not header or not spec.csv.get("header", True):
        return []
    return [c.name for c in spec.columns.values() if c.type == "string" and c.name in header]


def _compact(check: CheckResult) -> dict[str, Any]:
    return {
        "check": check.check,
        "column": check.column,
        "status": check.status,
        "severity": check.severity,
        "failures": check.failures,
        "rows": check.rows,
        "params": {k: v for k, v in check.params.items() if k != "sql"},
        "message": check.message,
        "top_values": check.top_values,
    }


def _hist_keys(profile: dict[str, Any]) -> list[str]:
    return sorted(n for n, c in profile.get("columns", {}).items() if c.get("histogram"))


def _has_histograms(profile: dict[str, Any], categorical: set[str]) -> bool:
    cols = profile.get("columns", {})
    return all(cols.get(c, {}).get("histogram") for c in categorical if c in cols)


def _safe(content_hash: str) -> str:
    return content_hash.replace(":", "-").replace("/", "_")


def _bad_rev(rev: str) -> str:
    raise InputError(f"--base {rev}: not a commit in this repository")


def _pointer_hash(repo: Repo, path: str, rev: str) -> str | None:
    name = path + source.POINTER_SUFFIX
    entries = repo.ls_tree(rev, [name])
    if not entries:
        return None
    blob = repo.cat_blobs([entries[0].oid]).get(entries[0].oid, b"")
    try:
        p = parse_pointer(blob.decode("utf-8", "replace"), name)
    except InputError:
        return None
    return p.content_id


def _files_of(content: source.Content) -> list[Path]:
    """The files DuckDB reads for a version: one file, or a folder dataset's shards."""
    read = content.read
    return list(read) if isinstance(read, list) else [read]


def _repo_rel(repo: Repo, user_path: str) -> str:
    """A path given on the command line, relative to the repository root."""
    if "\x00" in user_path:
        raise InputError("path holds a NUL byte")
    full = Path(os.path.abspath(user_path))
    root = repo.root.resolve()
    try:
        rel = full.resolve().relative_to(root) if full.exists() else full.relative_to(root)
    except ValueError:
        rel_try = Path(user_path)
        if not rel_try.is_absolute() and ".." not in rel_try.parts:
            return rel_try.as_posix()
        raise InputError(f"{user_path}: outside the repository") from None
    return rel.as_posix()
