"""No credentials in git: every tracked file is scanned for the usual shapes of a secret.

Credentials belong in `.dvc/config.local`, the environment, or Airflow connections (see
docs/security.md). The scanner is tested on planted samples too, so a scan that finds nothing
means something. Samples are assembled at run time, so this file does not trip its own scan.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A value that is clearly a stand-in, not a secret: ${VAR}, $VAR, <...>, ***, xxx, ...
_PLACEHOLDER = re.compile(r"(\$\{?\w+\}?|<[^>]*>|\*+|x+|X+|\.\.\.|password|PASSWORD)")
_RULES: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        r"aws_secret_access_key\W{0,3}\s*[=:]\s*['\"]?([A-Za-z0-9/+]{40})\b", re.IGNORECASE
    ),
    "private key": re.compile(r"-----BEGIN (RSA |DSA |EC |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"]+)@"),
    "GitHub token": re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
}
# Keys that DVC reads as credentials: in the tracked .dvc/config they are always a leak.
_DVC_SECRET = re.compile(
    r"^\s*(access_key_id|secret_access_key|session_token|password|account_key|sas_token|"
    r"connection_string|gdrive_client_secret|key)\s*=",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str


def scan_text(path: str, text: str) -> list[Finding]:
    """Every credential-shaped string in `text`, by line and rule."""
    findings = []
    for rule, pattern in _RULES.items():
        for match in pattern.finditer(text):
            secret = match.group(match.lastindex or 0)
            if rule == "password in a URL" and _PLACEHOLDER.fullmatch(secret):
                continue
            findings.append(Finding(path, text.count("\n", 0, match.start()) + 1, rule))
    if Path(path).as_posix().endswith(".dvc/config"):
        findings.extend(
            Finding(path, text.count("\n", 0, m.start()) + 1, "credential in .dvc/config")
            for m in _DVC_SECRET.finditer(text)
        )
    return sorted(findings, key=lambda f: (f.path, f.line, f.rule))


def scan_files(root: Path, paths: list[str]) -> list[Finding]:
    """Scan the files at `paths` (relative to `root`); unreadable bytes are skipped, not fatal."""
    findings = []
    for rel in paths:
        file = root / rel
        if file.is_file() and not file.is_symlink():
            findings.extend(scan_text(rel, file.read_bytes().decode("utf-8", "replace")))
    return findings


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there are no tracked files to scan")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_holds_a_credential() -> None:
    tracked = _tracked_files()
    assert "pyproject.toml" in tracked  # the scan really sees the repository
    findings = scan_files(ROOT, tracked)
    assert findings == [], "credentials in tracked files; move them out of git:\n" + "\n".join(
        f"{f.path}:{f.line}: {f.rule}" for f in findings
    )


def test_dvc_config_local_is_ignored_by_git() -> None:
    _tracked_files()
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", ".dvc/config.local"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0


_FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
PLANTED = {
    "AWS access key id": "remote_key = AKIA" + "IOSFODNN7EXAMPLE\n",
    "AWS secret access key": "aws_secret_access_key = " + _FAKE_SECRET + "\n",
    "private key": "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n",
    "password in a URL": "url: postgresql://airflow:" + "s3cr3t-Pw@db.internal:5432/airflow\n",
    "GitHub token": "token: ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8\n",
    "Slack token": "hook: xoxb-" + "123456789012-abcdefABCDEF\n",
    "Google API key": "key=AIza" + "SyA-1234567890abcdefghijklmnopqrstu\n",
}


@pytest.mark.parametrize("rule", sorted(PLANTED))
def test_the_scanner_finds_a_planted_credential(tmp_path: Path, rule: str) -> None:
    (tmp_path / "settings.txt").write_text("first line\n" + PLANTED[rule])
    assert scan_files(tmp_path, ["settings.txt"]) == [Finding("settings.txt", 2, rule)]


def test_the_scanner_finds_a_credential_in_a_tracked_dvc_config(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "['remote \"storage\"']\n    url = s3://bucket/prefix\n    access_key_id = " + "x1\n"
    )
    assert scan_files(tmp_path, [".dvc/config"]) == [
        Finding(".dvc/config", 3, "credential in .dvc/config")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "url = s3://mainstem-data/prefix",
        "url: https://user:${MLFLOW_PASSWORD}@127.0.0.1:5000",
        "url: postgresql://airflow:<password>@127.0.0.1/airflow",
        "aws_secret_access_key = <your secret key>",
        "endpointurl: http://127.0.0.1:9000",
    ],
)
def test_the_scanner_lets_placeholders_and_plain_urls_pass(text: str) -> None:
    assert scan_text("docs.md", text) == []
