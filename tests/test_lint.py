"""ruff (with notebook support) passes on the package, the tests and every notebook."""

from __future__ import annotations

import subprocess
import sys

from helpers.runtime.settings import REPO_ROOT


def test_ruff_passes_on_code_and_notebooks():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "helpers", "tests", "solutions",
         "notebooks"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
