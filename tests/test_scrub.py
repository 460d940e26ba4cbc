"""Secrets never reach the ledger; ids and hashes are left alone.

The shapes are checked in-process; then a params file holding an S3 URL with keys, a GitHub
token and a presigned URL is recorded and captured for real, and every blob and commit
message on `refs/mlci/ledger` is searched for the secret parts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import git, run_mlci, write

from mlci_tui.scrub import MASK, has_secret, scrub, scrub_text

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # real AWS secrets hold `/` and `+`
GH_TOKEN = "ghp_" + "a1B2c3D4e5" * 4
PRESIGNED = (
    "https://bucket.s3.amazonaws.com/model.pt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential={AWS_KEY}%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z"
    "&X-Amz-Expires=3600&X-Amz-Security-Token=FQoGZXIvYXdzEJr1234567890abcdef&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

# (text, fragments that must be gone, fragments that must stay)
SECRETS = {
    "s3-userinfo-placeholder": ("s3://AKIAxxxx:secret@bucket/x", ["AKIAxxxx", "secret"], ["s3://", "@bucket/x"]),
    "s3-userinfo-real-key-with-slashes": (
        f"s3://{AWS_KEY}:{AWS_SECRET}@bucket/x",
        [AWS_KEY, "wJalrXUtnFEMI", "bPxRfiCYEXAMPLEKEY"],
        ["s3://", "@bucket/x"],
    ),
    "password-holding-an-at-sign": ("https://user:p@ss@host/x", ["p@ss", "ss@host"], ["@host/x"]),
    "database-url": ("postgresql://admin:hunter2@db.example:5432/ml", ["hunter2", "admin"], ["@db.example:5432/ml"]),
    "empty-user": ("https://:tok3n@host/x", ["tok3n"], ["@host/x"]),
    "github-classic": (f"token {GH_TOKEN} end", [GH_TOKEN], ["token ", " end"]),
    "github-oauth": ("gho_" + "Z" * 36, ["gho_"], []),
    "github-server": ("ghs_" + "9" * 36, ["ghs_"], []),
    "github-fine-grained": ("github_pat_11ABCDEFG0_" + "x" * 59, ["github_pat_"], []),
    "gitlab": ("glpat-abcdefghij0123456789", ["glpat-"], []),
    "gitlab-longer": ("glpat-abcdefghij0123456789xyzXYZ", ["glpat-", "xyzXYZ"], []),
    "slack": ("xoxb-1234567890-abcdefghij", ["xoxb-"], []),
    "aws-key-alone": (f"key={AWS_KEY}", [AWS_KEY], ["key="]),
    "aws-session-key": ("ASIAIOSFODNN7EXAMPLE", ["ASIA"], []),
    "presigned-s3": (
        PRESIGNED,
        [AWS_KEY, "FQoGZXIvYXdzEJr", "0123456789abcdef0123456789abcdef"],
        ["https://bucket.s3.amazonaws.com/model.pt?", "X-Amz-Expires=3600"],
    ),
    "presigned-gcs": (
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=svc%40proj.iam.gserviceaccount.com&X-Goog-Signature=deadbeefcafe",
        ["svc%40proj", "deadbeefcafe"],
        ["https://storage.googleapis.com/b/o?"],
    ),
    "azure-sas": (
        "https://acct.blob.core.windows.net/c/b?sv=2020-08-04&sr=b&sp=r&sig=abc%2Bdef%3D",
        ["abc%2Bdef"],
        ["sv=2020-08-04"],
    ),
    "private-key": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34\n-----END RSA PRIVATE KEY-----",
        ["MIIBOgIBAAJBAKj34"],
        [],
    ),
    "openai-project-key": ("OPENAI_API_KEY=sk-proj-" + "Ab3dEf6hIj" * 4, ["Ab3dEf6hIj"], ["OPENAI_API_KEY="]),
    "anthropic-key": ("key sk-ant-" + "x1Y2z3W4v5" * 3, ["x1Y2z3W4v5"], ["key "]),
    "hugging-face": ("HF_TOKEN hf_" + "AbCdEfGhIj" * 4, ["AbCdEfGhIj"], ["HF_TOKEN "]),
    "stripe": ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", ["4eC39HqLyjWDarjtT1zdp7dc"], []),
    "jwt": (
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ["eyJzdWIiOiIxMjM0NTY3ODkwIn0", "dozjgNryP4J3jVmNHl0w5N"],
        ["Bearer "],
    ),
    "azure-connection-string": (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsu==;",
        ["Eby8vdM02xNOcqFl"],
        ["AccountName=acct"],
    ),
    "aws-secret-in-a-config-line": (
        f"aws_secret_access_key = {AWS_SECRET}",
        ["wJalrXUtnFEMI"],
        ["aws_secret_access_key"],
    ),
    "password-in-a-log-line": ("connecting with password: hunter22 to db", ["hunter22"], ["to db"]),
    "openssh-private-key": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
        ["b3BlbnNzaC1rZXk"],
        [],
    ),
}

NOT_SECRETS = [
    "0123456789abcdef0123456789abcdef01234567",  # a commit id
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",  # a BLAKE3 hash
    "nl767ug5weexwupbo3c2h36uaa",  # a run id
    "d41d8cd98f00b204e9800998ecf8427e",  # an md5
    "https://registry.example:443/@scope/pkg",  # a port, then `@` in the path
    "https://example.com/path/user@example.com",  # `@` in a path, no user info
    "ssh://git@github.com/org/repo.git",  # a user name is not a secret
    "s3://bucket/data/train.csv",
    "AKIA",
    "ghp_short",
    "lr=0.001, momentum=0.9",
    "email me: ada@example.com",
    "tokenizer=bert-base-uncased",  # a key that merely holds `token`
    "sk-learn",
]


@pytest.mark.parametrize("case", list(SECRETS))
def test_secret_shapes_are_masked(case: str) -> None:
    text, gone, kept = SECRETS[case]
    assert has_secret(text)
    out = scrub_text(text)
    assert MASK in out, out
    for fragment in gone:
        assert fragment not in out, (fragment, out)
    for fragment in kept:
        assert fragment in out, (fragment, out)
    assert scrub_text(out) == out  # masking is stable


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_ids_hashes_and_plain_urls_are_left_alone(text: str) -> None:
    assert scrub_text(text) == text
    assert not has_secret(text)


@pytest.mark.parametrize("text", ["a" * 100_000, "x://a:" * 20_000, "a." * 50_000, "s3://k:" + "@" * 100_000])
def test_scrubbing_long_text_takes_linear_time(text: str) -> None:
    # every commit message and params value goes through here in the post-commit hook:
    # a quadratic pattern made 100 kB of letters take ~25 s, a 1 MB value most of an hour
    started = time.perf_counter()
    scrub_text(text)
    assert time.perf_counter() - started < 2.0


def test_scrub_walks_keys_lists_and_leaves_other_types() -> None:
    value = {"a": [GH_TOKEN, 1, None, 0.5, True], GH_TOKEN: {"b": f"s3://{AWS_KEY}:x@b"}}
    assert scrub(value) == {"a": [MASK, 1, None, 0.5, True], MASK: {"b": "s3://***@b"}}


# ---- end to end: the ledger never holds them --------------------------------------------------

PARAMS = {
    "data": {"train": f"s3://{AWS_KEY}:{AWS_SECRET}@bucket/x", "placeholder": "s3://AKIAxxxx:secret@bucket/x"},
    "hub": {"token": GH_TOKEN},
    "model_url": PRESIGNED,
    "lr": 0.01,
}
SECRET_PARTS = [
    AWS_KEY,
    "wJalrXUtnFEMI",
    "bPxRfiCYEXAMPLEKEY",
    "AKIAxxxx",
    ":secret@",
    GH_TOKEN,
    "FQoGZXIvYXdzEJr",
    "0123456789abcdef0123456789abcdef",
]


def _ledger_text(root: Path) -> str:
    parts = [git(root, "log", "--format=%B", "refs/mlci/ledger")]
    for path in git(root, "ls-tree", "-r", "--name-only", "refs/mlci/ledger").split():
        parts.append(git(root, "cat-file", "-p", f"refs/mlci/ledger:{path}"))
    return "\n".join(parts)


def test_recorded_and_captured_runs_hold_no_secret(repo: Path) -> None:
    write(repo, {"params.yaml": json.dumps(PARAMS, indent=2) + "\n", "metrics.json": '{"acc": 0.5}\n'})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"train on s3://{AWS_KEY}:{AWS_SECRET}@bucket/x\n\nhub token {GH_TOKEN}")
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    capture = run_mlci(repo, "capture")
    assert capture.returncode == 0, capture.stderr
    record = run_mlci(repo, "record", "--name", f"run {GH_TOKEN}", "-m", f"using {PRESIGNED}")
    assert record.returncode == 0, record.stderr
    note = run_mlci(repo, "note", "HEAD", f"the key is {AWS_KEY}, see s3://{AWS_KEY}:{AWS_SECRET}@b/x")
    assert note.returncode == 0, note.stderr

    text = _ledger_text(repo)
    for part in SECRET_PARTS:
        assert part not in text, part
    # what is not a secret is kept exactly: commit id, tree id, run ids, the rest of each value
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    runs = {r["kind"]: r for r in records if r["type"] == "run"}
    assert runs["commit"]["commit"] == head and runs["commit"]["tree"] == tree
    assert runs["workspace"]["commit"] == head
    assert runs["commit"]["patch_id"] and runs["commit"]["patch_id"] in text
    for run in runs.values():
        assert run["run_id"] in text and len(run["run_id"]) == 26
        params = run["params"]["params.yaml"]
        assert params["data.train"] == "s3://***@bucket/x"
        assert params["data.placeholder"] == "s3://***@bucket/x"
        assert params["hub.token"] == MASK
        assert params["model_url"].startswith("https://bucket.s3.amazonaws.com/model.pt?X-Amz-Algorithm=")
        assert params["lr"] == 0.01
    assert runs["commit"]["message"].startswith("train on s3://***@bucket/x")
    assert runs["workspace"]["name"] == f"run {MASK}"
    [note_record] = [r for r in records if r["type"] == "note"]
    assert note_record["target"] == runs["workspace"]["run_id"]


def test_every_event_type_is_scrubbed_before_it_is_written(repo: Path) -> None:
    """Trial log tails, validation and profile values, and password-like params reached the
    shared ledger raw: `LedgerStore.append` now scrubs every record, whoever built it."""
    from mlci_tui.gitio import Repo
    from mlci_tui.ledger import records
    from mlci_tui.ledger.store import LedgerStore

    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    hf = "hf_" + "AbCdEfGhIj" * 4
    openai = "sk-proj-" + "Ab3dEf6hIj" * 4
    batch = [
        records.envelope(
            "trial",
            {"sweep_id": "s" * 26, "trial_id": "t" * 26, "state": "failed", "stderr_tail": f"auth {GH_TOKEN} failed"},
        ),
        records.envelope(
            "validation", {"dataset": "d", "checks": [{"message": f"bad value {openai}"}], "status": "fail"}
        ),
        records.envelope("profile", {"dataset": "d", "columns": {"key": {"min": hf, "top_values": [[openai, 3]]}}}),
        records.envelope(
            "run", {"run_id": "r" * 26, "kind": "workspace", "params": {"params.yaml": {"db.password": "hunter2x"}}}
        ),
    ]
    LedgerStore(Repo.find(repo)).append(batch)
    text = _ledger_text(repo)
    for secret in (GH_TOKEN, hf, openai, "hunter2x"):
        assert secret not in text, secret
    assert text.count(MASK) >= 5 and "t" * 26 in text  # ids stay


def test_every_kind_detect_secrets_knows_stays_out_of_the_ledger_and_the_report(repo: Path) -> None:
    """A params file holding a secret of every kind (tests/test_secrets_detect.py), under plain
    and secret-like names, a commit message and a note holding some: neither the ledger's
    history (`git log -p`) nor the Markdown report holds any random part of any of them."""
    from test_secrets_detect import SECRETS, _parts

    params = {
        "sources": {f"s{i}": secret for i, secret in enumerate(SECRETS.values())},
        "auth": {"hf_token": SECRETS["Hugging Face token"], "db_password": "hunter2hunter2"},
        "train": {"lr": 0.01, "pad_token": "[PAD]"},
    }
    write(repo, {"params.yaml": json.dumps(params, indent=2) + "\n", "metrics.json": '{"acc": 0.5}\n'})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"train with {SECRETS['GitHub token']}\n\n{SECRETS['Slack webhook']}")
    for argv in (["capture"], ["record", "--name", "nightly"], ["note", "HEAD", f"key {SECRETS['OpenAI key']}"]):
        proc = run_mlci(repo, *argv)
        assert proc.returncode == 0, (argv, proc.stderr)
    report = repo / "report.md"
    proc = run_mlci(repo, "report", "--format", "md", "-o", str(report))
    assert proc.returncode == 0, proc.stderr
    history = git(repo, "log", "-p", "refs/mlci/ledger")
    texts = {"git log -p": history, "report": report.read_text()}
    assert "train.pad_token" in history and "[PAD]" in history  # what is not a secret stays
    for kind, secret in SECRETS.items():
        for part in _parts(secret):
            for where, text in texts.items():
                assert part not in text, (kind, part, where)
    assert "hunter2hunter2" not in history
