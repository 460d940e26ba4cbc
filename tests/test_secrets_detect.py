"""The scrubber against detect-secrets: for a realistic secret of every kind detect-secrets has a
plugin for, placed where ML projects leak them (a params value, a key named like a secret, a
metric name, a note, a trial's stderr, a URL's user info, a `password:` line), detect-secrets
flags the record as the ledger would store it, and flags nothing once `scrub` has run. Ids,
digests, paths and ordinary params are left exactly as they are, although detect-secrets'
entropy plugins flag some of them: mlci masks no value for its entropy alone.

detect-secrets is a test dependency only (the `test` extra): importing it costs over 100 ms,
and the scrubber runs on every record on the hook path.
"""

from __future__ import annotations

import importlib.util
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from mlci_tui.ledger.records import dumps
from mlci_tui.scrub import MASK, scrub

needs_detect_secrets = pytest.mark.skipif(
    importlib.util.find_spec("detect_secrets") is None, reason="detect-secrets is in the test extra"
)

RNG = random.Random(2024)
ALNUM = string.ascii_letters + string.digits
LOWER = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"


def rand(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def _b64url(value: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


JWT = ".".join(
    [_b64url({"alg": "HS256", "typ": "JWT"}), _b64url({"sub": "1234567890", "name": "ada"}), rand(ALNUM + "-_", 43)]
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rand(B64, 64) for _ in range(4)) + "\n-----END RSA PRIVATE KEY-----"
)

# kind -> the secret as it appears in text. Kinds detect-secrets only finds in an assignment
# (IBM, Cloudant, SoftLayer, the AWS secret key, keywords) carry their name with them.
SECRETS: dict[str, str] = {
    "AWS access key id": "AKIA" + rand(string.ascii_uppercase + string.digits, 16),
    "AWS session key id": "ASIA" + rand(string.ascii_uppercase + string.digits, 16),
    "AWS secret access key": f'aws_secret_access_key = "{rand(ALNUM + "/+", 40)}"',
    "Azure storage key": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={rand(B64, 86)}==;EndpointSuffix=core.windows.net",
    "Basic auth URL": f"https://admin:{rand(ALNUM, 14)}@db.example.com:5432/ml",
    "Discord bot token": "M" + rand(ALNUM, 23) + "." + rand(ALNUM, 6) + "." + rand(ALNUM, 27),
    "GitHub token": "ghp_" + rand(ALNUM, 36),
    "GitHub app token": "ghs_" + rand(ALNUM, 36),
    "GitLab token": "glpat-" + rand(ALNUM, 20),
    "JSON web token": JWT,
    "Mailchimp key": rand(LOWER, 32) + "-us12",
    "NPM token": "//registry.npmjs.org/:_authToken=npm_" + rand(ALNUM, 36),
    "OpenAI key": "sk-proj-" + rand(ALNUM, 20) + "T3BlbkFJ" + rand(ALNUM, 20),
    "OpenAI legacy key": "sk-" + rand(ALNUM, 20) + "T3BlbkFJ" + rand(ALNUM, 20),
    "Private key": PRIVATE_KEY,
    "SendGrid key": "SG." + rand(ALNUM, 22) + "." + rand(ALNUM, 43),
    "Slack bot token": "xoxb-123456789012-1234567890123-" + rand(LOWER, 24),
    "Slack webhook": f"https://hooks.slack.com/services/T{rand(ALNUM, 8)}/B{rand(ALNUM, 8)}/{rand(ALNUM, 24)}",
    "Square OAuth secret": "sq0csp-" + rand(ALNUM, 43),
    "Stripe live key": "sk_live_" + rand(ALNUM, 24),
    "Stripe restricted key": "rk_live_" + rand(ALNUM, 24),
    "Twilio API key": "SK" + rand(LOWER, 32),
    "Twilio account": "AC" + rand(LOWER, 32),
    "IBM Cloud IAM key": f"ibm_cloud_iam_api_key: {rand(ALNUM + '_-', 44)}",
    "IBM COS HMAC": f'cos_hmac_secret_access_key = "{rand(HEX, 48)}"',
    "Cloudant password": f"cloudant_password = '{rand(HEX, 64)}'",
    "Cloudant URL": f"https://acct:{rand(HEX, 64)}@acct.cloudant.com",
    "SoftLayer key": f"softlayer_api_key = {rand(LOWER, 64)}",
    "SoftLayer URL": f"https://api.softlayer.com/soap/v3/{rand(LOWER, 64)}",
    "Artifactory token": "AKC" + rand(ALNUM, 70),
    "Artifactory password": "AP6" + rand(ALNUM, 10),
    "Telegram bot token": "123456789:" + rand(ALNUM + "_-", 35),
    "PyPI token": "pypi-AgEIcHlwaS5vcmc" + rand(ALNUM, 70),
    "Hugging Face token": "hf_" + rand(ALNUM, 34),
    "password keyword": "password: Tr0ub4dor&3xyz",
    "db_pass keyword": "DB_PASS=hunter2hunter2",
    "secret keyword (JSON)": '"client_secret": "' + rand(ALNUM, 24) + '"',
}

# kinds that are one token (no spaces or line breaks): they also go in URLs and `password:` lines
TOKENS = [k for k, v in SECRETS.items() if not any(c in v for c in " \n;") and "://" not in v]


def _places(secret: str, kind: str) -> dict[str, dict[str, Any]]:
    """The record fragments a secret leaks through, as `LedgerStore.append` receives them."""
    places = {
        "params value": {"params": {"params.yaml": {"data.source": secret, "lr": 0.01}}},
        "note": {"type": "note", "text": f"retrained after rotating {secret} (see ticket 12)"},
        "trial stderr": {
            "stderr_tail": 'Traceback (most recent call last):\n  File "train.py", line 3\n'
            f"RuntimeError: upload failed with {secret}\n"
        },
        "metric name": {"metrics": {"metrics.json": {f"eval/{secret}": 0.5}}},
    }
    if kind in TOKENS:
        places["params key named like a secret"] = {"params": {"params.yaml": {"hub.api_token": secret}}}
        places["URL user info"] = {"params": {"params.yaml": {"data.url": f"https://ml:{secret}@files.example.com/x"}}}
        places["password line"] = {"text": f"config:\n  password: {secret}\n  epochs: 3\n"}
    return places


CASES = [(kind, place, record) for kind, secret in SECRETS.items() for place, record in _places(secret, kind).items()]

INTACT: dict[str, Any] = {
    "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "tree": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    "blake3": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5": "d41d8cd98f00b204e9800998ecf8427e",
    "run_id": "nl767ug5weexwupbo3c2h36uaa",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "datasets": {"data/train.csv": "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
    "params": {
        "params.yaml": {
            "train.lr": 0.001,
            "train.optimizer": "adamw",
            "model.name": "resnet50_imagenet_v2",
            "tokenizer.name": "bert-base-uncased",
            "tokenizer.pad_token": "[PAD]",
            "tokenizer.eos_token": "<|endoftext|>",
            "tokenizer.max_tokens": 512,
            "tokenizer.model_path": "/data/tok/sp_model_2048x7.model",
            "cache.cache_key": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "eval.sort_key": "val_loss",
            "eval.keypoints": [17, 3],
            "data.remote": "s3://bucket/datasets/imagenet/train",
            "data.source": "https://huggingface.co/datasets/imdb",
            "ssh": "ssh://git@github.com/org/repo.git",
        }
    },
    "metrics": {"metrics.json": {"secret_recall": 0.8, "token_acc": 0.9, "passk": 0.4}},
    "message": "train on data/train.csv at 9fceb02d (lr 0.001, seed 7)",
    "author": "Ada Tester <ada@example.com>",
}


def _flagged(records: list[Any], tmp_path: Path, name: str) -> dict[int, set[str]]:
    """detect-secrets' findings (plugin names) by record (1-based), default settings, on each
    record as the ledger stores it (canonical JSON) and as text shows it (each string: a note or
    a log in the Markdown report). A file each: detect-secrets reports a secret once per file,
    however many lines repeat it, and misses a keyword line that follows another line."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    folder = tmp_path / name
    folder.mkdir()
    files = []
    for n, record in enumerate(records, 1):
        (folder / f"{n}.json").write_bytes(dumps(record))
        files.append(f"{n}.json")
        for i, text in enumerate(t for t in _strings(record) if len(t) >= 8):
            (folder / f"{n}.{i}.txt").write_text(text + "\n")
            files.append(f"{n}.{i}.txt")
    with default_settings():
        found = SecretsCollection(root=str(folder))
        found.scan_files(*files, num_processors=1)
    out: dict[int, set[str]] = {}
    for file, secret in found:
        out.setdefault(int(Path(file).name.split(".")[0]), set()).add(secret.type)
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@needs_detect_secrets
def test_detect_secrets_flags_every_case_and_nothing_after_scrub(tmp_path: Path) -> None:
    before = _flagged([record for _, _, record in CASES], tmp_path, "before")
    after = _flagged([scrub(record) for _, _, record in CASES], tmp_path, "after")
    # the corpus means something: detect-secrets finds every kind, in most places (not a keyword
    # line inside a JSON string, for one; test_no_part_of_a_secret_survives covers those)
    found = {CASES[n - 1][0] for n in before}
    assert found == set(SECRETS), set(SECRETS) - found
    assert len(before) > 0.85 * len(CASES), len(before)
    left = {f"{CASES[n - 1][0]} in {CASES[n - 1][1]}": sorted(types) for n, types in after.items()}
    assert not left, left


@pytest.mark.parametrize("kind", list(SECRETS))
def test_no_part_of_a_secret_survives(kind: str) -> None:
    """Beyond detect-secrets' verdict: the random part of each secret is gone from every place."""
    secret = SECRETS[kind]
    core = max((part for part in _parts(secret)), key=len)
    for place, record in _places(secret, kind).items():
        text = dumps(scrub(record)).decode()
        assert core not in text, (place, text)
        assert MASK in text, (place, text)


def _parts(secret: str) -> list[str]:
    """The runs of 8+ token characters a secret holds, but its names (`password`, `https`)."""
    import re

    parts = re.findall(r"[A-Za-z0-9_+/=]{8,}", secret)
    context = ("https", "Default", "AccountName", "EndpointSuffix")
    return [p for p in parts if not p.startswith(context) and not re.fullmatch(r"[a-z_/]+", p)]


@needs_detect_secrets
def test_ids_digests_paths_and_plain_params_are_left_exactly(tmp_path: Path) -> None:
    assert scrub(INTACT) == INTACT
    # detect-secrets' entropy plugins flag the digests here; mlci keeps them (no entropy-only masking)
    flagged = _flagged([INTACT], tmp_path, "intact")
    assert flagged and flagged[1] <= {"Hex High Entropy String", "Base64 High Entropy String"}, flagged
