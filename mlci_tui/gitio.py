"""The git plumbing mlci needs, as plain process calls (fast to import, nothing cached).

GitPython is deliberately not used here: the hook path must stay light, and every call
below is a single git process whose output we parse ourselves. Processes start through
`os.posix_spawnp` and are read with `select.poll`, not `subprocess`: its import (with
`threading`, `selectors`, `signal`, `locale`, `contextlib`) costs each commit hook ~5 ms.
"""

from __future__ import annotations

import os
import select
import sys

from mlci_tui.errors import GitError, MlciError
from mlci_tui.values import Frozen

TYPE_CHECKING = False  # not `from typing import ...`: gitio is on every hook's path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path
    from typing import BinaryIO

ZERO_OID = "0" * 40
PACK_ORDER_MIN = 2000  # objects: below this a read in the order asked is as fast as pack order
# Paths per `git ls-tree` call: one path per record passed past ~2M records would exceed the
# system's argument limit (ARG_MAX), so longer lists are split (tests lower it).
PATHS_PER_CALL = 4096
# How much of the packs one `cat-file --batch` maps at once (git's default on 64-bit is no limit):
# streaming a million records mapped all 4.5 GiB of their packs, and mapped pages count in the
# process's RSS (a 4.9 GB `cat-file` in a 1M compaction). A whole 2 GiB pack read in pack order
# costs ~1.5x the time with these bounds (docs/benchmarks.md: the ledger).
BATCH_READ_SETTINGS = ("-c", "core.packedGitLimit=256m", "-c", "core.packedGitWindowSize=32m")


class GitResult:
    """A finished git process, as `subprocess.CompletedProcess` describes one."""

    __slots__ = ("args", "returncode", "stdout", "stderr")

    def __init__(self, args: list[str], returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


# Python ignores SIGPIPE (and SIGXFSZ); an ignored signal stays ignored across exec, so git would
# get EPIPE errors where it expects to die quietly: reset both, as subprocess's restore_signals does
try:
    from _signal import SIGPIPE, SIGXFSZ

    _DEFAULT_IN_CHILD: tuple[int, ...] = (SIGPIPE, SIGXFSZ)
except ImportError:  # pragma: no cover - a platform without them
    _DEFAULT_IN_CHILD = ()


def _spawn(
    args: Sequence[str], cwd: str | os.PathLike[str] | None, env: Mapping[str, str] | None, fds: tuple[int, int, int]
) -> int:
    """Start `git ARGS` in `cwd` (as `git -C`: posix_spawn has no working directory) with `fds`
    as its stdin, stdout and stderr; returns its pid."""
    argv = ["git", *(("-C", os.fspath(cwd)) if cwd is not None else ()), *args]
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
    try:
        return os.posix_spawnp(
            "git", argv, os.environ if env is None else env, file_actions=actions, setsigdef=_DEFAULT_IN_CHILD
        )
    except FileNotFoundError as exc:  # pragma: no cover - git missing entirely
        raise MlciError("git is not installed or not on PATH") from exc


def _full_env(env: Mapping[str, str] | None) -> Mapping[str, str] | None:
    if not env:
        return None
    full = dict(os.environ)
    full.update(env)
    return full


def git(
    args: Sequence[str],
    cwd: str | os.PathLike[str] | None = None,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> GitResult:
    """Run git to the end: its stdout and stderr collected, `input` written to its stdin (else
    /dev/null). With `check`, a failure raises GitError with git's last line."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if input else (os.open(os.devnull, os.O_RDONLY), -1)
    try:
        pid = _spawn(args, cwd, _full_env(env), (in_r, out_w, err_w))
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    try:
        stdout, stderr = _communicate(in_w, out_r, err_r, input or b"")
    finally:
        _pid, status = os.waitpid(pid, 0)
    proc = GitResult(["git", *args], os.waitstatus_to_exitcode(status), stdout, stderr)
    if check and proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[-1] if message else f"exit {proc.returncode}"
        raise GitError(f"git {args[0]} failed: {detail}")
    return proc


def _communicate(in_w: int, out_r: int, err_r: int, data: bytes) -> tuple[bytes, bytes]:
    """Write `data` to `in_w` (-1: none) while reading `out_r` and `err_r` to their ends, as
    `Popen.communicate` does (a child that fills one pipe while we wait on another never
    blocks); closes the three."""
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    view, offset = memoryview(data), 0
    if in_w >= 0:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    pending = {fd for fd in (in_w, out_r, err_r) if fd >= 0}
    try:
        while pending:
            for fd, _event in poller.poll():
                if fd == in_w:
                    try:
                        offset += os.write(fd, view[offset : offset + 65536])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        offset = len(view)  # git stopped reading (it failed): its stderr says why
                    if offset < len(view):
                        continue
                else:
                    chunk = os.read(fd, 65536)
                    if chunk:
                        chunks[fd].append(chunk)
                        continue
                poller.unregister(fd)
                os.close(fd)
                pending.discard(fd)
    finally:
        for fd in pending:
            os.close(fd)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


PIPE = -1  # `start_git(stdin=PIPE)`: a pipe to the process's stdin


class GitChild:
    """A running git process started by `start_git`: its stdout (and stdin, when piped) as
    buffered files; `wait()` gives its exit code."""

    def __init__(self, pid: int, stdin: BinaryIO | None, stdout: BinaryIO) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            _pid, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def start_git(args: Sequence[str], cwd: str | os.PathLike[str] | None = None, *, stdin: int | None = None) -> GitChild:
    """Start `git ARGS` to read its output as it writes it (stderr discarded). `stdin`: a file
    descriptor git reads, PIPE for a pipe to write requests to (`GitChild.stdin`), None for
    /dev/null."""
    out_r, out_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    in_r, in_w = os.pipe() if stdin == PIPE else (devnull if stdin is None else stdin, -1)
    try:
        pid = _spawn(args, cwd, None, (in_r, out_w, devnull))
    except BaseException:
        for fd in (out_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, devnull, in_r) if stdin == PIPE else (out_w, devnull):
            os.close(fd)
    return GitChild(pid, os.fdopen(in_w, "wb") if in_w >= 0 else None, os.fdopen(out_r, "rb"))


def git_text(args: Sequence[str], cwd: str | os.PathLike[str] | None = None, **kw: object) -> str:
    return git(args, cwd, **kw).stdout.decode("utf-8", "surrogateescape")  # type: ignore[arg-type]


_set = object.__setattr__  # how a Frozen's __init__ fills its slots


def _path(text: str) -> Path:
    from pathlib import Path  # lazy: see Repo

    return Path(text)


class TreeEntry(Frozen):
    __slots__ = ("mode", "kind", "oid", "path")  # slots: a million entries of a loose ledger, half the memory
    mode: str
    kind: str  # blob, tree, commit
    oid: str
    path: str

    def __init__(self, mode: str, kind: str, oid: str, path: str) -> None:
        _set(self, "mode", mode)
        _set(self, "kind", kind)
        _set(self, "oid", oid)
        _set(self, "path", path)


class Repo(Frozen):
    """A git working tree (or bare repo): where commands run and where mlci keeps state.

    Held as the strings git gives (`toplevel`, `gitdir`, `commondir`, and `state_path`); `root`,
    `git_dir`, `common_dir` and `state_dir` are the same as `pathlib.Path`s, made when asked:
    `pathlib` (with `urllib.parse` and `ipaddress`, ~3.5 ms) is more than a commit hook, which
    needs none of them, can spend on importing it."""

    __slots__ = ("toplevel", "gitdir", "commondir", "_paths")
    toplevel: str
    gitdir: str
    commondir: str
    _paths: dict[str, Path]

    def __init__(
        self, root: str | os.PathLike[str], git_dir: str | os.PathLike[str], common_dir: str | os.PathLike[str]
    ) -> None:
        _set(self, "toplevel", os.fspath(root))
        _set(self, "gitdir", os.fspath(git_dir))
        _set(self, "commondir", os.fspath(common_dir))
        _set(self, "_paths", {})  # the Paths made so far, by the string they stand for

    def _fields(self) -> tuple[object, ...]:
        return self.toplevel, self.gitdir, self.commondir

    def __repr__(self) -> str:
        return f"Repo(root={self.toplevel!r}, git_dir={self.gitdir!r}, common_dir={self.commondir!r})"

    def _path(self, text: str) -> Path:
        made = self._paths.get(text)
        if made is None:
            made = self._paths[text] = _path(text)
        return made

    @property
    def root(self) -> Path:
        return self._path(self.toplevel)

    @property
    def git_dir(self) -> Path:
        return self._path(self.gitdir)

    @property
    def common_dir(self) -> Path:
        return self._path(self.commondir)

    @property
    def state_path(self) -> str:
        """`.git/mlci/`: local, never committed, shared by every worktree of the clone."""
        return os.path.join(self.commondir, "mlci")

    @property
    def state_dir(self) -> Path:
        """`state_path` as a Path."""
        return self._path(self.state_path)

    @classmethod
    def find(cls, start: str | os.PathLike[str] | None = None) -> Repo:
        proc = git(
            ["rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
            start or os.getcwd(),
            check=False,
        )
        if proc.returncode != 0:
            where = os.path.abspath(start or os.getcwd())
            raise MlciError(f"{where}: not inside a git repository (run `git init` first)")
        root, git_dir, common = proc.stdout.decode("utf-8", "surrogateescape").splitlines()[:3]
        if not os.path.isabs(common):
            common = os.path.realpath(os.path.join(start or os.getcwd(), common))
        return cls(root, git_dir, common)

    @classmethod
    def at_hook(cls) -> Repo:
        """The repository a git hook runs in, without `find`'s `git rev-parse` (~2 ms of each
        commit hook) where the answer is certain: git starts a hook at the top of the working
        tree, so a `.git` folder there (no `commondir` file: not a linked worktree's) with no
        GIT_DIR, GIT_WORK_TREE or GIT_COMMON_DIR set is the repository. Anything else asks git."""
        if any(os.environ.get(name) for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")):
            return cls.find()
        top = os.getcwd()
        git_dir = os.path.join(top, ".git")
        if not os.path.isfile(os.path.join(git_dir, "HEAD")) or os.path.exists(os.path.join(git_dir, "commondir")):
            return cls.find()
        return cls(top, git_dir, git_dir)

    def run(self, *args: str, **kw: object) -> GitResult:
        return git(args, self.toplevel, **kw)  # type: ignore[arg-type]

    def text(self, *args: str, **kw: object) -> str:
        return git_text(args, self.toplevel, **kw)

    def rev_parse(self, rev: str) -> str | None:
        proc = git(["rev-parse", "-q", "--verify", "--end-of-options", rev], self.toplevel, check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().strip()

    def commit_of(self, rev: str) -> str | None:
        return self.rev_parse(f"{rev}^{{commit}}")

    def has_object(self, oid: str) -> bool:
        return git(["cat-file", "-e", oid], self.toplevel, check=False).returncode == 0

    def is_shallow(self) -> bool:
        return os.path.exists(os.path.join(self.commondir, "shallow"))

    def shallow_commits(self) -> set[str]:
        """The commits whose parents a shallow clone cut off (git shows them with none)."""
        try:
            with open(os.path.join(self.commondir, "shallow"), encoding="utf-8") as f:
                return set(f.read().split())
        except OSError:
            return set()

    def is_ancestor(self, older: str, newer: str) -> bool:
        return git(["merge-base", "--is-ancestor", older, newer], self.toplevel, check=False).returncode == 0

    def ls_tree(self, treeish: str, paths: Iterable[str] = (), *, recursive: bool = False) -> list[TreeEntry]:
        """The entries at `paths` (the root's when none), in calls of at most PATHS_PER_CALL paths;
        [] when `treeish` is not a tree."""
        args = ["ls-tree", "-z", "--full-tree"]
        if recursive:
            args.append("-r")
        wanted = list(paths)
        out: list[TreeEntry] = []
        for start in range(0, max(len(wanted), 1), PATHS_PER_CALL):
            proc = git([*args, treeish, "--", *wanted[start : start + PATHS_PER_CALL]], self.toplevel, check=False)
            if proc.returncode != 0:
                return []
            out += parse_ls_tree(proc.stdout)
        return out

    def iter_tree(self, treeish: str, paths: Sequence[str] = ()) -> Iterator[TreeEntry]:
        """The blobs under `paths` of `treeish` (`ls-tree -r`), read as git writes them: a million
        records' listing is never held whole (compaction of a loose ledger)."""
        proc = start_git(["ls-tree", "-r", "-z", "--full-tree", treeish, "--", *paths], self.toplevel)
        rest = b""
        try:
            while chunk := proc.stdout.read(1 << 16):
                items = (rest + chunk).split(b"\0")
                rest = items.pop()
                yield from (e for e in parse_ls_tree(b"\0".join(items)) if e.kind == "blob")
        finally:
            proc.stdout.close()
            if proc.wait() != 0:
                raise GitError(f"git ls-tree {treeish[:12]} failed")

    def write_blobs(self, files: Sequence[Path]) -> list[str]:
        """Store files as blobs in one `git hash-object -w` process (their ids, in order): a
        large file goes into git from disk, never as bytes in memory. Unreferenced until a commit
        names them, so a process killed after this leaves only garbage for `git gc`."""
        if not files:
            return []
        listing = "".join(f"{os.fspath(f)}\n" for f in files).encode("utf-8", "surrogateescape")
        proc = git(["hash-object", "-w", "--no-filters", "--stdin-paths"], self.toplevel, input=listing)
        oids = proc.stdout.decode().split()
        if len(oids) != len(files):
            raise GitError(f"git hash-object wrote {len(oids)} of {len(files)} objects")
        return oids

    def cat_blobs(self, oids: Sequence[str]) -> dict[str, bytes]:
        """Read many objects in one `git cat-file --batch` process."""
        unique = list(dict.fromkeys(oids))
        return {unique[n]: body for n, body in self.stream_blobs(unique) if body is not None}

    def cat_blobs_to_lines(
        self, oids: Sequence[str], target: Path, refuse: Callable[[int, bytes], object] | None = None
    ) -> list[int]:
        """Write the objects' contents, one line each, to `target` (NDJSON for records); returns
        the positions in `oids` of the objects left out: missing, or what `refuse(position,
        line)` says (a truthy reason) of their bytes with the newline added.

        The objects are read in the order the object store holds them (`pack_order`) and streamed
        to `target`: reading 740,000 ledger blobs in tree order cost x7 the time of pack order,
        and git's whole output held in memory was most of a 4 GiB peak (issue 19). So lines come
        out in pack order, not in the order of `oids`."""
        skipped: list[int] = []
        wanted = list(oids)
        order = self.pack_order(wanted)
        with open(target, "wb") as out:
            for n, body in self.stream_blobs([wanted[k] for k in order]):
                if body is None:
                    skipped.append(order[n])
                    continue
                line = body if body.endswith(b"\n") else body + b"\n"
                if refuse is not None and refuse(order[n], line):
                    skipped.append(order[n])
                    continue
                out.write(line)
        return sorted(skipped)

    def pack_order(self, oids: Sequence[str]) -> list[int]:
        """The positions of `oids`, sorted by where the object store holds each object (pack
        order: one sequential pass over the pack instead of a seek per object). One `git cat-file
        --batch-all-objects --unordered` listing of names; objects it does not list keep their
        relative order, last. Below a few thousand objects the listing costs more than it saves."""
        if len(oids) < PACK_ORDER_MIN:
            return list(range(len(oids)))
        position = {oid: k for k, oid in enumerate(oids)}
        proc = start_git(
            ["cat-file", "--batch-all-objects", "--batch-check=%(objectname)", "--unordered"], self.toplevel
        )
        order: list[int] = []
        seen: set[int] = set()
        for line in proc.stdout:
            k = position.get(line[:-1].decode())
            if k is not None and k not in seen:
                seen.add(k)
                order.append(k)
        proc.wait()
        if len(seen) < len(oids):
            order += [k for k in range(len(oids)) if k not in seen]
        return order

    def stream_blobs(self, oids: Sequence[str]) -> Iterator[tuple[int, bytes | None]]:
        """(position, bytes or None when missing) for each of `oids`, in order, from one
        `git cat-file --batch` process read as it writes: never the whole output in memory."""
        import tempfile  # lazy: gitio is on `mlci --help`'s and every hook's path; only batch reads need it

        if not oids:
            return
        with tempfile.TemporaryFile() as request:
            request.write(("\n".join(oids) + "\n").encode())
            request.seek(0)
            proc = start_git(
                [*BATCH_READ_SETTINGS, "cat-file", "--batch", "--buffer"], self.toplevel, stdin=request.fileno()
            )
        try:
            out = proc.stdout
            for n in range(len(oids)):
                header = out.readline()
                parts = header.split()
                if len(parts) != 3:
                    if not header:
                        raise GitError(f"git cat-file stopped after {n} of {len(oids)} objects")
                    yield n, None
                    continue
                size = int(parts[2])
                body = out.read(size + 1)[:size]
                yield n, body
        finally:
            proc.stdout.close()
            proc.wait()  # a reader that stopped early closed the pipe; a short output raised above

    def blob_sizes(self, oids: Sequence[str]) -> dict[str, int]:
        if not oids:
            return {}
        proc = git(["cat-file", "--batch-check"], self.toplevel, input=("\n".join(oids) + "\n").encode())
        sizes: dict[str, int] = {}
        for line in proc.stdout.decode().splitlines():
            parts = line.split()
            if len(parts) == 3:
                sizes[parts[0]] = int(parts[2])
        return sizes


# ------------------------------------------------------------------ commits
# What a run records about its commit. Here, in the git plumbing, because capture, the
# importers, the sweep runner and the ledger's run resolution all need it.
COMMIT_FIELDS = ("%H", "%T", "%P", "%an <%ae>", "%at", "%ct", "%B")


class CommitInfo(Frozen):
    __slots__ = ("sha", "tree", "parents", "author", "author_time", "commit_time", "message")
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: str
    author_time: int
    commit_time: int
    message: str

    def __init__(
        self,
        sha: str,
        tree: str,
        parents: tuple[str, ...],
        author: str,
        author_time: int,
        commit_time: int,
        message: str,
    ) -> None:
        for name, value in zip(self.__slots__, (sha, tree, parents, author, author_time, commit_time, message)):
            _set(self, name, value)


def parse_commit(text: str, sep: str) -> CommitInfo:
    """A CommitInfo from git output formatted with COMMIT_FIELDS joined by `sep`."""
    sha, tree, parents, author, at, ct, message = text.split(sep, len(COMMIT_FIELDS) - 1)
    return CommitInfo(sha, tree, tuple(parents.split()), author, int(at), int(ct), message.strip())


def commit_info(repo: Repo, rev: str) -> CommitInfo:
    fmt = "%x00".join(COMMIT_FIELDS)
    raw = repo.run("show", "-s", "--no-show-signature", f"--format={fmt}", rev, "--").stdout
    return parse_commit(raw.decode("utf-8", "replace"), "\x00")


def patch_id(repo: Repo, info: CommitInfo) -> str | None:
    """`git patch-id --stable` of the commit's change: survives rebase and amend."""
    if not info.parents and info.sha in repo.shallow_commits():
        return None  # its parent was cut off by a shallow clone: a whole-tree diff would be wrong
    args = ["diff-tree", "-p", "--no-color", "--full-index"]
    args += [info.parents[0], info.sha] if info.parents else ["--root", info.sha]
    diff = repo.run(*args).stdout
    if not diff.strip():
        return None
    out = git(["patch-id", "--stable"], repo.toplevel, input=diff, check=False).stdout.decode().split()
    return out[0] if out else None


def parse_ls_tree(raw: bytes) -> list[TreeEntry]:
    entries = []
    for item in raw.split(b"\0"):
        if not item:
            continue
        meta, _, path = item.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        # one copy of each mode and kind, not one per entry (a million of them in a loose ledger)
        entries.append(TreeEntry(sys.intern(mode), sys.intern(kind), oid, path.decode("utf-8", "surrogateescape")))
    return entries


def parse_raw_tree(data: bytes) -> Iterator[tuple[str, str, str]]:
    """A raw tree object (`git cat-file tree`): (mode, name, object id) of each
    `<mode> <name>\\0<20-byte id>` entry."""
    pos, end = 0, len(data)
    while pos < end:
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        yield (
            data[pos:space].decode(),
            data[space + 1 : nul].decode("utf-8", "surrogateescape"),
            data[nul + 1 : nul + 21].hex(),
        )
        pos = nul + 21


def parse_cat_file_batch(raw: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    end = len(raw)
    while pos < end:
        nl = raw.index(b"\n", pos)
        header = raw[pos:nl].decode()
        pos = nl + 1
        parts = header.split()
        if len(parts) == 2 and parts[1] == "missing":
            continue
        oid, _kind, size = parts[0], parts[1], int(parts[2])
        out[oid] = raw[pos : pos + size]
        pos += size + 1
    return out


def parse_cat_file_batch_ordered(raw: bytes) -> list[bytes | None]:
    """`git cat-file --batch` output in input order, None for each missing object."""
    out: list[bytes | None] = []
    pos = 0
    while pos < len(raw):
        nl = raw.index(b"\n", pos)
        parts = raw[pos:nl].decode("utf-8", "replace").split()
        pos = nl + 1
        if len(parts) >= 2 and parts[-1] == "missing":
            out.append(None)
            continue
        size = int(parts[2])
        out.append(raw[pos : pos + size])
        pos += size + 1
    return out
