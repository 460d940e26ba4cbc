"""Shared helpers for mlci's benchmarks: timing, machine facts, scratch git repos, run records.

Benchmarks report numbers; they are not tests (pytest never collects this folder). Every
figure is measured side by side within one run, variants interleaved round-robin so that
drift on a busy machine hits them all alike; we report medians and ratios.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# Everything generated (repos, ledgers, peer venv) lives outside the checkout.
SCRATCH = Path(os.environ.get("MLCI_BENCH_DIR", Path(tempfile.gettempdir()) / "mlci-bench"))
# The interpreter's own bin dir: its console scripts (`mlci`, `pre-commit`) without any
# version-manager shim in front of them (a pyenv shim alone costs 100-300 ms per process).
BIN_DIR = Path(sys.executable).parent
PYTHON = sys.executable
MLCI = str(BIN_DIR / "mlci")
# The peers (DVC, MLflow) live in their own venv so that installing them never changes
# the environment mlci is developed and tested in; see README.md in this folder.
PEER_VENV = Path(os.environ.get("MLCI_BENCH_PEERS", SCRATCH / "peers"))


def env(**extra: str) -> dict[str, str]:
    """The environment for every timed subprocess: real bin dir first, deterministic git."""
    out = dict(os.environ)
    out["PATH"] = f"{BIN_DIR}{os.pathsep}{out.get('PATH', '')}"
    out.update(
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@localhost",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@localhost",
        GIT_CONFIG_NOSYSTEM="1",
        PRE_COMMIT_HOME=str(SCRATCH / "pre-commit-home"),
    )
    out.pop("MLCI_NO_HOOKS", None)
    # This sandbox sets PYTHONDONTWRITEBYTECODE=1, so every process would compile mlci's
    # modules from source (~70 ms per hook process here). A normal install has bytecode
    # caches: keep them, outside the checkout.
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out["PYTHONPYCACHEPREFIX"] = str(SCRATCH / "pycache")
    out.update(extra)
    return out


# ---------------------------------------------------------------------------- timing
class Deadline:
    """A time budget: loops stop early (with fewer repeats, said in the results) when it runs out."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def over(self) -> bool:
        return self.left() <= 0


def run(
    argv: Sequence[str], cwd: str | Path | None = None, *, check: bool = True, timeout: float = 600, **kw: Any
) -> str:
    proc = subprocess.run(
        list(argv), cwd=cwd, env=kw.pop("env", None) or env(), capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# CPU seconds (user + system) of the last timed call, process tree included. On a contended
# machine wall time includes waiting for a core; CPU time of a single-threaded process is
# close to what its wall time would be on an idle machine. interleave() collects it into
# _CPU_SAMPLES, which summarise() consumes.
_LAST_CPU: list[float | None] = [None, None]  # CPU seconds, peak RSS in MiB (processes only)
_CPU_SAMPLES: dict[str, list[float]] = {}
_RSS_SAMPLES: dict[str, list[float]] = {}


def _cpu(who: int) -> float:
    import resource

    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def note_cpu(seconds: float | None, rss_mib: float | None = None) -> None:
    _LAST_CPU[0] = seconds
    _LAST_CPU[1] = rss_mib


def time_cmd(
    argv: Sequence[str], cwd: str | Path | None = None, *, check: bool = True, rss: bool = False, **kw: Any
) -> float:
    """Wall seconds of one process, start to exit, output discarded; its CPU time (process tree)
    is noted too, and with `rss` its peak resident memory.

    Peak memory comes from GNU time (`/usr/bin/time -f %M`), not from our own wait4(): a child's
    ru_maxrss starts from the RSS of the process that forked it, and this one holds ledgers."""
    environ = kw.pop("env", None) or env()
    gnu_time = Path("/usr/bin/time")
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as mem:
        command = list(argv)
        if rss and gnu_time.exists():
            command = [str(gnu_time), "-f", "%M", "-o", mem.name, *command]
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=environ, stdout=subprocess.DEVNULL, stderr=err, **kw)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = None
        if rss and gnu_time.exists():
            text = mem.read().strip().splitlines()
            peak = int(text[-1]) / 1024 if text and text[-1].isdigit() else None
        note_cpu(usage.ru_utime + usage.ru_stime, peak)
        if check and proc.returncode != 0:
            err.seek(0)
            text = err.read().decode("utf-8", "replace").strip()[-2000:]
            raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): {text}")
    return elapsed


def time_call(fn: Callable[[], Any]) -> float:
    """Wall seconds of an in-process call (its CPU time, this process and its children, noted too)."""
    import resource

    c0 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    note_cpu(_cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - c0)
    return elapsed


def interleave(
    variants: dict[str, Callable[[], float]],
    repeats: int,
    deadline: Deadline | None = None,
    *,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Time every variant `repeats` times, round-robin (A B C A B C ...), after `warmup` rounds.

    Each variant is a callable returning its own elapsed seconds (so it can exclude its setup).
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + repeats):
        order = list(variants)
        random.Random(i).shuffle(order)
        for name in order:
            note_cpu(None)
            elapsed = variants[name]()
            if i >= warmup:
                samples[name].append(elapsed)
                if _LAST_CPU[0] is not None:
                    _CPU_SAMPLES.setdefault(name, []).append(_LAST_CPU[0])
                if _LAST_CPU[1] is not None:
                    _RSS_SAMPLES.setdefault(name, []).append(_LAST_CPU[1])
        if deadline and deadline.over() and i >= warmup + 2:
            break
    return samples


def summary(samples: Sequence[float]) -> dict[str, Any]:
    xs = sorted(samples)
    if not xs:
        return {"n": 0}
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {"n": len(xs), "median": statistics.median(xs), "min": xs[0], "q1": q[0], "q3": q[2], "max": xs[-1]}


def summarise(samples: dict[str, list[float]], baseline: str | None = None) -> dict[str, dict[str, Any]]:
    out = {name: summary(xs) for name, xs in samples.items()}
    for name, stats in out.items():
        cpu = _CPU_SAMPLES.pop(name, None)
        if cpu:
            stats["cpu_median"] = statistics.median(cpu)
        rss = _RSS_SAMPLES.pop(name, None)
        if rss:
            stats["peak_rss_mib"] = round(max(rss), 1)
    if baseline and out.get(baseline, {}).get("n"):
        base = out[baseline]["median"]
        base_cpu = out[baseline].get("cpu_median")
        for stats in out.values():
            if stats.get("n"):
                stats["ratio"] = stats["median"] / base
                if base_cpu and stats.get("cpu_median"):
                    stats["cpu_ratio"] = stats["cpu_median"] / base_cpu
    return out


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def print_table(title: str, rows: dict[str, dict[str, Any]], note: str = "") -> None:
    print(f"\n## {title}")
    if note:
        print(note)
    width = max((len(k) for k in rows), default=10)
    for name, s in rows.items():
        if not s.get("n"):
            print(f"  {name:<{width}}  {s.get('error', 'not measured')}")
            continue
        ratio = f"  x{s['ratio']:.2f}" if "ratio" in s else ""
        cpu = f"  cpu {fmt_s(s['cpu_median'])}" if "cpu_median" in s else ""
        print(
            f"  {name:<{width}}  median {fmt_s(s['median']):>10}  (n={s['n']}, q1 {fmt_s(s['q1'])}, "
            f"q3 {fmt_s(s['q3'])}){ratio}{cpu}"
        )
    sys.stdout.flush()


# ---------------------------------------------------------------------------- machine facts
def _version(argv: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, env=env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[-1].strip() if out.returncode == 0 and text else None


def bench_requirements() -> list[str]:
    """The `bench` extra of pyproject.toml: the peers (DVC, MLflow) these benchmarks measure."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["project"]["optional-dependencies"]["bench"])


def setup_peers() -> str:
    """Create the peers' venv (default /tmp/mlci-bench/peers) with the `bench` extra's packages.

    A venv of their own, so that DVC's and MLflow's dependencies never change the environment
    mlci is developed and tested in.
    """
    import venv

    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(PEER_VENV)
    reqs = bench_requirements()
    print(f"installing into {PEER_VENV}: {' '.join(reqs)}", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs], check=True)
    return str(python)


def peer_python() -> str | None:
    """The interpreter that has DVC and MLflow: the peers venv, else this one if it has them."""
    candidate = PEER_VENV / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    code = "import importlib.util as u; print(bool(u.find_spec('mlflow') and u.find_spec('dvc')))"
    if _version([PYTHON, "-c", code]) == "True":
        return PYTHON
    return None


def peer_tool(name: str) -> str | None:
    py = peer_python()
    if py is None:
        return None
    path = Path(py).parent / name
    return str(path) if path.exists() else None


def cpu_pressure() -> str | None:
    """Linux PSI: the share of time some task waited for a CPU (other agents share this machine)."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1048576, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    import duckdb

    import mlci_tui

    peer = peer_python()
    versions: dict[str, Any] = {
        "python": platform.python_version(),
        "git": _version(["git", "--version"]),
        "duckdb": duckdb.__version__,
        "mlci": mlci_tui.__version__,
        "pre-commit": _version([str(BIN_DIR / "pre-commit"), "--version"]),
        "dvc": _version([str(Path(peer).parent / "dvc"), "--version"]) if peer else None,
        "mlflow": _version([peer, "-c", "import mlflow; print(mlflow.__version__)"]) if peer else None,
    }
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in load] if load else None,
        "cpu_pressure": cpu_pressure(),
        "versions": versions,
    }


class MLflowWorker:
    """MLflow in the peers' interpreter, doing one operation per request, so that its timings
    interleave with mlci's in one run (see peer_mlflow.py)."""

    def __init__(self, db: Path) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.version: str | None = None
        self.error: str | None = None
        py = peer_python()
        if py is None:
            self.error = "MLflow is not installed (see benchmarks/README.md: the bench extra)"
            return
        self.proc = subprocess.Popen(
            [py, str(BENCH_DIR / "peer_mlflow.py"), "worker", "--db", str(db)],
            cwd=db.parent,
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline() or "{}")
        if not ready.get("ready"):
            self.error = "the MLflow worker did not start"
            self.close()
        else:
            self.version = ready["version"]

    def request(self, **req: Any) -> dict[str, Any]:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the MLflow worker stopped while doing {req}")
        return json.loads(line)

    def log_timer(self, *, batched: bool) -> Callable[[], float]:
        def timed() -> float:
            out = self.request(op="log", batched=batched)
            note_cpu(out.get("cpu"))
            return float(out["seconds"])

        return timed

    def search_timer(self, db: Path, *, all_matches: bool, seen: dict[str, int] | None = None) -> Callable[[], float]:
        def timed() -> float:
            out = self.request(op="search", db=str(db), all=all_matches)
            note_cpu(out.get("cpu"))
            if seen is not None:
                seen[f"{db}:{all_matches}"] = out["rows"]
            return float(out["seconds"])

        return timed

    def close(self) -> None:
        if self.proc:
            try:
                self.proc.communicate("quit\n", timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# ---------------------------------------------------------------------------- repos and records
def fresh_dir(name: str) -> Path:
    path = SCRATCH / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def git_init(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q", "-b", "main", str(path)])
    for key, value in (("user.name", "bench"), ("user.email", "bench@localhost"), ("commit.gpgsign", "false")):
        run(["git", "config", key, value], path)
    return path


def params_doc(i: int, rng: random.Random) -> dict[str, Any]:
    """Ten params, as a params.yaml of a small training script would hold them."""
    return {
        "train": {
            "lr": round(10 ** rng.uniform(-4, -1), 6),
            "epochs": rng.choice([5, 10, 20, 40]),
            "batch_size": rng.choice([16, 32, 64, 128]),
            "seed": i,
            "optimizer": rng.choice(["adam", "sgd", "adamw"]),
            "weight_decay": rng.choice([0.0, 1e-5, 1e-4]),
        },
        "model": {
            "depth": rng.randint(2, 12),
            "width": rng.choice([64, 128, 256]),
            "dropout": round(rng.random() / 2, 3),
        },
        "data": {"split": 0.8},
    }


def metrics_doc(rng: random.Random) -> dict[str, float]:
    """Ten metrics, as metrics.json would hold them; `acc` is above 0.9 for about 1 run in 5."""
    acc = round(rng.betavariate(8, 2), 6)
    return {
        "acc": acc,
        "loss": round(rng.uniform(0.05, 2.0), 6),
        "f1": round(acc * rng.uniform(0.9, 1.0), 6),
        "precision": round(rng.random(), 6),
        "recall": round(rng.random(), 6),
        "auc": round(rng.uniform(0.5, 1.0), 6),
        "val_acc": round(acc * rng.uniform(0.95, 1.0), 6),
        "val_loss": round(rng.uniform(0.05, 2.5), 6),
        "train_time": round(rng.uniform(10, 3600), 3),
        "epochs_run": float(rng.randint(1, 40)),
    }


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def run_record(i: int, rng: random.Random, *, commit: str | None = None) -> dict[str, Any]:
    """A `run` record shaped like one `mlci capture` writes for a commit holding params.yaml and
    metrics.json (10 params, 10 metrics, no step series)."""
    from mlci_tui import __version__
    from mlci_tui.ledger import records

    when = records.epoch_iso(1_700_000_000 + i * 60)
    sha = commit or f"{rng.getrandbits(160):040x}"
    body = {
        "run_id": None,
        "kind": "commit",
        "name": None,
        "status": "done",
        "params": {"params.yaml": flatten(params_doc(i, rng))},
        "metrics": {"metrics.json": metrics_doc(rng)},
        "steps": [],
        "warnings": [],
        "datasets": {},
        "deps": {},
        "stale": False,
        "source": "capture",
        "parent": None,
        "sweep_id": None,
        "trial_id": None,
        "mlci_version": __version__,
        "python_version": platform.python_version(),
        "started": when,
        "ended": when,
        "commit": sha,
        "tree": f"{rng.getrandbits(160):040x}",
        "patch_id": f"{rng.getrandbits(160):040x}",
        "branch": "main",
        "author": "bench <bench@localhost>",
        "message": f"experiment {i}: try lr and depth",
    }
    run_id = records.new_id()
    body["run_id"] = run_id
    return records.envelope("run", body, event_id=run_id, time=when)


def build_ledger(
    path: Path, count: int, *, batch: int = 5000, seed: int = 0, derived_ids: bool = False
) -> dict[str, Any]:
    """A repository whose ledger holds `count` run records, written with the batch API.

    Reused when a previous benchmark run built the same one (a marker file says so).
    Returns how long the appends took (only when it was built now). With `derived_ids` each
    run's id derives from its commit, as capture writes it, so that `ledger pull` and `fsck`
    accept the ledger (the default's random ids they refuse).
    """
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger import records
    from mlci_tui.ledger.store import LedgerStore

    marker = path / ".mlci-bench-ledger.json"
    spec: dict[str, Any] = {"count": count, "batch": batch, "seed": seed, "v": 1}
    if derived_ids:
        spec["derived_ids"] = True
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return json.loads(marker.read_text())
    if path.exists():
        shutil.rmtree(path)
    git_init(path)
    (path / "README.md").write_text("benchmark repository\n")
    run(["git", "add", "README.md"], path)
    run(["git", "commit", "-q", "-m", "init"], path)
    store = LedgerStore(Repo.find(path))
    rng = random.Random(seed)
    made = 0
    append_s = 0.0
    build_s = 0.0
    while made < count:
        n = min(batch, count - made)
        t0 = time.perf_counter()
        recs = [run_record(made + k, rng) for k in range(n)]
        if derived_ids:
            for rec in recs:
                rec["id"] = rec["run_id"] = records.derived_id("commit", rec["commit"])
        t1 = time.perf_counter()
        store.append(recs)
        t2 = time.perf_counter()
        build_s += t1 - t0
        append_s += t2 - t1
        made += n
    info = {
        "spec": spec,
        "append_seconds": append_s,
        "records_per_second": count / append_s if append_s else None,
        "record_build_seconds": build_s,
        "git_dir_mib": round(_du(path / ".git") / 1048576, 1),
    }
    marker.write_text(json.dumps(info))
    return info


def compacted_copy(path: Path) -> Path:
    """A copy of the ledger repository at `path` after `mlci ledger compact` (one Parquet segment)."""
    marker_src = path / ".mlci-bench-ledger.json"
    target = path.with_name(path.name + "-compacted")
    marker = target / ".mlci-bench-compacted.json"
    if marker.exists() and marker.read_text() == marker_src.read_text():
        return target
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(path, target, symlinks=True)
    drop_cache(target)
    run([MLCI, "ledger", "compact"], target)
    run(["git", "gc", "-q", "--prune=now"], target)
    marker.write_text(marker_src.read_text())
    return target


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def drop_cache(repo_path: Path) -> None:
    state = repo_path / ".git" / "mlci"
    for name in ("cache.duckdb", "cache.duckdb.wal", "cache.tip"):
        try:
            (state / name).unlink()
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------- results
def write_results(name: str, data: dict[str, Any]) -> Path:
    """results/NAME.json for a full run; --quick results go to the scratch folder (never rendered)."""
    folder = SCRATCH / "results-quick" if data.get("quick") else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    return path


def base_args(description: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (a few minutes)")
    parser.add_argument("--budget", type=float, default=None, help="time budget in seconds for this script")
    return parser
