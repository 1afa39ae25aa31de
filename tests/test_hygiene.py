"""What is committed stays safe to share: no secrets, no home paths, no unsafe loading."""

from __future__ import annotations

import re
import subprocess

from helpers.runtime.settings import REPO_ROOT

SECRET_PATTERNS = {
    "Hugging Face token": re.compile(r"hf_[A-Za-z0-9]{30,}"),
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "Jupyter token in a URL": re.compile(r"[?&]token=[0-9a-f]{32,}"),
    "absolute home path": re.compile(r"(/home/[a-z_][a-z0-9_-]*/|/Users/[A-Za-z]+/|/root/)"),
}


def _committed_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    suffixes = (".ipynb", ".py", ".md", ".sh", ".txt", ".csv")
    return [name for name in listed.stdout.splitlines() if name.endswith(suffixes)]


def test_no_secrets_or_home_paths_in_committed_text():
    findings = []
    for name in _committed_files():
        if name == "tests/test_hygiene.py":
            continue  # the patterns themselves
        text = (REPO_ROOT / name).read_text(errors="replace")
        for what, pattern in SECRET_PATTERNS.items():
            if pattern.search(text):
                findings.append(f"{name}: {what}")
    assert not findings, findings


def test_models_are_never_loaded_with_remote_code():
    for path in (REPO_ROOT / "helpers").rglob("*.py"):
        assert "trust_remote_code=True" not in path.read_text(), path.name


def test_jupyter_is_never_started_without_its_token():
    for name in _committed_files():
        text = (REPO_ROOT / name).read_text(errors="replace")
        if name != "tests/test_hygiene.py":
            assert "ServerApp.token=''" not in text and 'ServerApp.token=""' not in text, name
